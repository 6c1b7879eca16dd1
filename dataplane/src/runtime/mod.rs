//! Runtime stage: one glommio executor (a *shard*) per core, each with its own SO_REUSEPORT
//! listener, so that a connection and its upstream socket live and die on one thread.
//!
//! glommio is the only executor the gateway uses today, and it is barely maintained; every
//! other module reaches it only through the names re-exported here (`TcpStream`,
//! `spawn_local`, `sleep`, ...), so that swapping the executor touches this folder alone.
//! The workspace builds glommio 0.9.0 from `third_party/glommio` with patches that cut the
//! system calls of its event loop and fix a shard that parked with runnable tasks;
//! `third_party/glommio/TOLLGATE-PATCHES.md` lists them with what each measured.

mod alloc;
mod limits;
mod signal;
mod split;

use std::future::Future;
use std::time::Duration;

pub use alloc::tune_allocator;
pub use glommio::net::{TcpListener, TcpStream};
pub use limits::{check_memlock, Error};
pub use signal::{Phase, PhaseWatch, Shutdown, ShutdownSignal};
pub use split::{split, ReadHalf, WriteHalf};

/// Runs `make_shard()` on `shards` executor threads and waits for all of them.
///
/// `io_memory` bytes of io_uring buffers are registered per shard; they count against
/// RLIMIT_MEMLOCK, which the caller must have checked with [`check_memlock`].
pub fn run_shards<G, F, T>(shards: usize, io_memory: usize, make_shard: G) -> Result<Vec<T>, Error>
where
    G: FnOnce() -> F + Clone + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let handles = glommio::LocalExecutorPoolBuilder::new(glommio::PoolPlacement::Unbound(shards))
        .name("tollgate-shard")
        .io_memory(io_memory)
        .ring_depth(256)
        .on_all_shards(make_shard)
        .map_err(|e| Error::Start(e.to_string()))?;
    handles
        .join_all()
        .into_iter()
        .map(|r| r.map_err(|e| Error::Start(e.to_string())))
        .collect()
}

/// The index of the shard the caller runs on (0 when called outside a shard).
pub fn shard_id() -> usize {
    // glommio numbers executors from 1 within a process.
    glommio::executor().id().saturating_sub(1)
}

/// Spawns a task on the caller's shard; it runs until it completes.
pub fn spawn_local<F>(future: F)
where
    F: Future + 'static,
    F::Output: 'static,
{
    glommio::spawn_local(future).detach();
}

/// Runs blocking or CPU-heavy work (password hashing, file I/O) on the shard's helper thread
/// so that the shard keeps serving other sessions.
pub async fn spawn_blocking<F, R>(work: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(work).await
}

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await
}

/// Runs `future` for at most `duration`; `None` when the time ran out first.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(future.await) }, async {
        sleep(duration).await;
        None
    })
    .await
}

/// Lets other tasks on the shard run if this one has used its time slice.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await
}

/// Connects to `addr` with a deadline.
pub async fn connect(addr: std::net::SocketAddr, deadline: Duration) -> std::io::Result<TcpStream> {
    match TcpStream::connect_timeout(addr, deadline).await {
        Ok(stream) => Ok(stream),
        Err(glommio::GlommioError::IoError(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// Accepts the next connection, mapping glommio's error into `std::io::Error`.
pub async fn accept(listener: &TcpListener) -> std::io::Result<TcpStream> {
    match listener.accept().await {
        Ok(stream) => Ok(stream),
        Err(glommio::GlommioError::IoError(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// Binds a shard's listener (SO_REUSEPORT, so every shard binds the same address).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    match TcpListener::bind(addr) {
        Ok(l) => Ok(l),
        Err(glommio::GlommioError::IoError(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::mpsc;
    use std::time::Duration;

    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    /// Runs `body` (which makes its own executor) on a fresh thread and fails the test if it
    /// has not returned within `limit`: a shard asleep for good.
    fn run_on_thread(limit: Duration, body: impl FnOnce() + Send + 'static) {
        let (done_tx, done_rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            body();
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(limit)
            .expect("the executor stopped making progress (asleep with work to do)");
        worker.join().expect("executor thread panicked");
    }

    fn executor(preempt: Duration) -> glommio::LocalExecutor {
        glommio::LocalExecutorBuilder::default()
            .preempt_timer(preempt)
            .io_memory(512 * 1024)
            .make()
            .expect("executor starts")
    }

    /// A preemption that lands before the first task runs must not park the shard while the
    /// task is runnable (glommio 0.9.0 parked and slept until unrelated I/O, and never ran a
    /// task at all with a preemption period this short; patch `progress-before-preempt` in
    /// third_party/glommio).
    #[test]
    fn runnable_tasks_survive_a_preemption_before_they_run() {
        let preempt = Duration::from_nanos(1);
        run_on_thread(Duration::from_secs(30), move || {
            let ex = executor(preempt);
            let mut ran = 0u32;
            for _ in 0..1_000 {
                ran += ex.run(async { 1 });
            }
            assert_eq!(ran, 1_000);
        });
    }

    /// Echo server on a plain thread: answers `rounds` 64-byte messages on each of `conns`
    /// connections.
    fn echo_server(
        conns: usize,
        rounds: usize,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let workers: Vec<_> = (0..conns)
                .map(|_| {
                    let (mut conn, _) = listener.accept().expect("accept");
                    std::thread::spawn(move || {
                        conn.set_nodelay(true).expect("nodelay");
                        let mut buf = [0u8; 64];
                        for _ in 0..rounds {
                            conn.read_exact(&mut buf).expect("read");
                            conn.write_all(&buf).expect("write");
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().expect("echo worker");
            }
        });
        (addr, server)
    }

    /// Request/response over loopback, the shard parking between replies while preemption
    /// timers fire at every period from "always expired" to longer than a round trip: every
    /// completion must wake the shard (patches `keep-timers`, `submit-and-wait`,
    /// `one-link-poll` and `progress-before-preempt` in third_party/glommio).
    #[test]
    fn a_parked_shard_wakes_for_every_reply() {
        const CONNS: usize = 2;
        const ROUNDS: usize = 3_000;
        for preempt in [
            Duration::from_nanos(1),
            Duration::from_micros(20),
            Duration::from_millis(2),
        ] {
            let (addr, server) = echo_server(CONNS, ROUNDS);
            run_on_thread(Duration::from_secs(60), move || {
                let ex = executor(preempt);
                ex.run(async move {
                    let clients: Vec<_> = (0..CONNS)
                        .map(|c| {
                            glommio::spawn_local(async move {
                                let mut conn = super::connect(addr, Duration::from_secs(5))
                                    .await
                                    .expect("connect");
                                conn.set_nodelay(true).expect("nodelay");
                                let mut buf = [c as u8; 64];
                                for round in 0..ROUNDS {
                                    buf[1] = round as u8;
                                    conn.write_all(&buf).await.expect("send");
                                    let mut reply = [0u8; 64];
                                    conn.read_exact(&mut reply).await.expect("receive");
                                    assert_eq!(reply, buf, "connection {c}, round {round}");
                                }
                                ROUNDS
                            })
                        })
                        .collect();
                    let mut answered = 0;
                    for client in clients {
                        answered += client.await;
                    }
                    assert_eq!(answered, CONNS * ROUNDS, "preempt period {preempt:?}");
                });
            });
            server.join().expect("echo server");
        }
    }
}
