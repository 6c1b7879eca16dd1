//! Record stage, shard side: the bounded queue a shard's sessions push their events onto.
//!
//! One queue per shard, so shards share no lock; a push is a move into a crossbeam array slot
//! (no I/O, no allocation, no hashing). The recorder thread polls the queues, so a push never
//! has to wake it with a system call. A full queue makes [`ShardQueue::push`] wait with a
//! growing sleep: the session that fills the queue slows down, and no event is dropped.

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::event::Event;

/// First wait of [`ShardQueue::push`] on a full queue.
const FIRST_BACKOFF: Duration = Duration::from_micros(50);
/// Longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_millis(5);

/// A shard's handle onto the recorder; cheap to clone (one per session is fine).
#[derive(Clone, Debug)]
pub struct ShardQueue {
    tx: Sender<Event>,
    max_result_bytes: usize,
}

/// A queue that no recorder drains: for benchmarks and tests that consume the events
/// themselves.
pub fn channel(capacity: usize, max_result_bytes: usize) -> (ShardQueue, Receiver<Event>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    (
        ShardQueue {
            tx,
            max_result_bytes,
        },
        rx,
    )
}

impl ShardQueue {
    /// Queues `e` if there is room; gives it back otherwise (queue full, or the recorder has
    /// shut down). Never blocks.
    // The event comes back by value so that a refused push loses nothing; boxing it would
    // cost every push an allocation.
    #[allow(clippy::result_large_err)]
    pub fn try_push(&self, e: Event) -> Result<(), Event> {
        self.tx.try_send(e).map_err(|err| match err {
            TrySendError::Full(e) | TrySendError::Disconnected(e) => e,
        })
    }

    /// Queues `e`, sleeping on this shard (from 50 µs, doubling up to 5 ms) while the queue is
    /// full. Must run on a shard (it uses the runtime's timer).
    ///
    /// After [`super::Recorder::shutdown`] nothing drains the queue any more: the event is
    /// then logged as not recorded and dropped rather than waiting forever.
    pub async fn push(&self, e: Event) {
        let mut e = e;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.tx.try_send(e) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    e = back;
                    crate::runtime::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(TrySendError::Disconnected(lost)) => {
                    tracing::error!(
                        session = %lost.session.id,
                        seq = lost.seq,
                        kind = lost.body.kind(),
                        "record: the recorder has stopped; event not recorded"
                    );
                    return;
                }
            }
        }
    }

    /// Result bytes a session keeps per statement (`[record] max_result_bytes`).
    pub fn max_result_bytes(&self) -> usize {
        self.max_result_bytes
    }

    /// Events waiting in this queue.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// True when no event waits in this queue.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(0)
    }
}
