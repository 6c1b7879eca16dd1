//! Shutdown: SIGTERM/SIGINT move the process from `Running` to `Draining` (stop accepting,
//! let sessions finish) and, after the drain timeout, to `Closing` (end the sessions that are
//! left with a proper error). A signal thread sets the process-wide phase; each shard watches
//! it and wakes its own sessions through a shard-local [`ShutdownSignal`], so no session polls.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
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

    /// Moves forward to `phase` (never backwards).
    pub fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
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
