//! Runtime stage: one glommio executor (a *shard*) per core, each with its own SO_REUSEPORT
//! listener, so that a connection and its upstream socket live and die on one thread.
//!
//! glommio is the only executor the gateway uses today, and it is barely maintained; every
//! other module reaches it only through the names re-exported here (`TcpStream`,
//! `spawn_local`, `sleep`, ...), so that swapping the executor touches this folder alone.
//! The workspace builds glommio 0.9.0 from `third_party/glommio` with a patch that cuts the
//! system calls of its event loop (no `membarrier` on every park);
//! `third_party/glommio/TOLLGATE-PATCHES.md` lists the patches and what was tried.

mod limits;
mod signal;
mod split;

use std::future::Future;
use std::time::Duration;

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
