//! Shutdown: SIGTERM/SIGINT move the process from `Running` to `Draining` (stop accepting,
//! let sessions finish) and, after the drain timeout, to `Closing` (end the sessions that are
//! left with a proper error). A signal thread sets the process-wide phase; each shard watches
//! it and wakes its own sessions through a shard-local [`ShutdownSignal`], so no session polls.
//!
//! Nor does a shard: [`Shutdown::advance`] wakes every shard's [`PhaseWatch`], so a shard
//! learns of a new phase without a timer. (With a timer always pending, glommio arms a kernel
//! timeout on every park of the shard, and the timer itself wakes an idle shard.) The wake-up
//! crosses threads: glommio hands a waker woken on another thread to its executor and writes
//! the executor's eventfd if it sleeps.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running = 0,
    Draining = 1,
    Closing = 2,
}

/// The process-wide phase, shared by the signal thread and every shard.
#[derive(Debug, Default)]
pub struct Shutdown {
    phase: AtomicU8,
    /// One per shard that watches the phase.
    watchers: Mutex<Vec<Arc<WatchSlot>>>,
}

/// Where [`Shutdown::advance`] leaves a wake-up for one [`PhaseWatch`].
#[derive(Debug, Default)]
struct WatchSlot {
    woken: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Shutdown {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Closing,
        }
    }

    /// Moves forward to `phase` (never backwards) and wakes every shard's watcher.
    pub fn advance(&self, phase: Phase) {
        let before = self.phase.fetch_max(phase as u8, Ordering::AcqRel);
        if before >= phase as u8 {
            return;
        }
        let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for slot in watchers.iter() {
            slot.woken.store(true, Ordering::Release);
            let waker = slot.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// A watcher of the phase for the calling shard.
    pub fn watch(self: &Arc<Self>) -> PhaseWatch {
        let slot = Arc::new(WatchSlot::default());
        self.watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&slot));
        PhaseWatch {
            shutdown: Arc::clone(self),
            slot,
        }
    }

    /// Starts a thread that turns SIGTERM/SIGINT into `Draining`, then `Closing` after
    /// `drain_timeout` (or at once on a second signal), and calls `on_hangup` on SIGHUP.
    pub fn watch_signals(
        self: &Arc<Self>,
        drain_timeout: Duration,
        on_hangup: impl Fn() + Send + 'static,
    ) -> std::io::Result<()> {
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ])?;
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("tollgate-signals".into())
            .spawn(move || {
                let mut first = true;
                for sig in signals.forever() {
                    if sig == signal_hook::consts::SIGHUP {
                        tracing::info!("SIGHUP: reloading");
                        on_hangup();
                        continue;
                    }
                    if first {
                        tracing::info!(
                            signal = sig,
                            drain_timeout_s = drain_timeout.as_secs(),
                            "shutting down: no new connections, draining sessions"
                        );
                        me.advance(Phase::Draining);
                        first = false;
                        let closer = Arc::clone(&me);
                        std::thread::spawn(move || {
                            std::thread::sleep(drain_timeout);
                            closer.advance(Phase::Closing);
                        });
                    } else {
                        tracing::info!(signal = sig, "second signal: closing sessions now");
                        me.advance(Phase::Closing);
                    }
                }
            })?;
        Ok(())
    }
}

/// A shard's view of the process-wide phase: [`PhaseWatch::changed`] completes when the phase
/// has moved, woken by [`Shutdown::advance`] rather than by a timer.
pub struct PhaseWatch {
    shutdown: Arc<Shutdown>,
    slot: Arc<WatchSlot>,
}

impl PhaseWatch {
    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.shutdown.phase()
    }

    /// Waits until the phase has moved since the last call (or since [`Shutdown::watch`]),
    /// and returns it.
    pub async fn changed(&mut self) -> Phase {
        std::future::poll_fn(|cx| {
            if self.slot.woken.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            *self.slot.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            // `advance` may have run between the check and storing the waker.
            if self.slot.woken.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        self.shutdown.phase()
    }
}

impl Drop for PhaseWatch {
    /// Forgets the shard: [`Shutdown::advance`] must not wake a task of an executor that has
    /// stopped (its waker would be sent to a shard that no longer runs).
    fn drop(&mut self) {
        self.shutdown
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|slot| !Arc::ptr_eq(slot, &self.slot));
        drop(
            self.slot
                .waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }
}

#[derive(Default)]
struct SignalState {
    phase: Option<Phase>,
    waiters: Vec<Waker>,
}

/// A shard-local broadcast of the phase: sessions await [`ShutdownSignal::closing`] without
/// polling, and the shard's watcher calls [`ShutdownSignal::set`].
#[derive(Clone, Default)]
pub struct ShutdownSignal {
    state: Rc<RefCell<SignalState>>,
}

impl ShutdownSignal {
    pub fn set(&self, phase: Phase) {
        let waiters = {
            let mut s = self.state.borrow_mut();
            if s.phase.is_some_and(|p| p >= phase) {
                return;
            }
            s.phase = Some(phase);
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }

    pub fn phase(&self) -> Phase {
        self.state.borrow().phase.unwrap_or(Phase::Running)
    }

    /// Completes once the phase reaches `phase`.
    pub fn reached(&self, phase: Phase) -> impl Future<Output = ()> + '_ {
        Reached {
            signal: self,
            phase,
        }
    }
}

struct Reached<'a> {
    signal: &'a ShutdownSignal,
    phase: Phase,
}

impl Future for Reached<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.signal.state.borrow_mut();
        if s.phase.is_some_and(|p| p >= self.phase) {
            return Poll::Ready(());
        }
        if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            s.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_only_moves_forward() {
        let s = Shutdown::default();
        assert_eq!(s.phase(), Phase::Running);
        s.advance(Phase::Closing);
        s.advance(Phase::Draining);
        assert_eq!(s.phase(), Phase::Closing);
    }

    #[test]
    fn advance_wakes_a_watcher_without_polling() {
        let shutdown = Shutdown::new();
        let mut watch = shutdown.watch();
        let waiting = watch.changed();
        let mut waiting = std::pin::pin!(waiting);
        let woken = Arc::new(Flag::default());
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        let other = Arc::clone(&shutdown);
        std::thread::spawn(move || other.advance(Phase::Draining))
            .join()
            .expect("advance");
        assert!(woken.0.load(Ordering::Acquire), "advance woke the watcher");
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(Phase::Draining));
    }

    #[test]
    fn a_dropped_watcher_is_not_woken() {
        let shutdown = Shutdown::new();
        let watch = shutdown.watch();
        drop(watch);
        assert!(shutdown
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty());
        shutdown.advance(Phase::Closing);
        assert_eq!(shutdown.phase(), Phase::Closing);
    }

    #[derive(Default)]
    struct Flag(AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::Release);
        }
    }

    #[test]
    fn signal_wakes_waiters() {
        let signal = ShutdownSignal::default();
        let waiting = signal.reached(Phase::Closing);
        let mut waiting = std::pin::pin!(waiting);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        signal.set(Phase::Draining);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        signal.set(Phase::Closing);
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
    }
}
