//! Record, session side: one session's events onto its shard's recorder queue, in order,
//! numbered, never dropped.
//!
//! Events are built and queued synchronously by the stages (which cannot wait); an event that
//! finds the shard's queue full waits in the session's own backlog, and the session's legs call
//! [`SessionRecorder::flush`] before they read more from either peer. A recorder that falls
//! behind therefore slows the sessions that produce the events, and loses none of them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::record::{Body, DecisionInfo, Disconnect, Event, SessionMeta, ShardQueue, Statement};

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A new random session id: 32 lowercase hex digits.
pub fn new_session_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// One session's recording.
pub struct SessionRecorder {
    queue: ShardQueue,
    meta: Arc<SessionMeta>,
    started: Instant,
    seq: Cell<u64>,
    /// Events that found the queue full, oldest first.
    backlog: RefCell<VecDeque<Event>>,
    statements: Cell<u64>,
    denied: Cell<u64>,
    bytes_from_client: Cell<u64>,
    bytes_to_client: Cell<u64>,
}

impl SessionRecorder {
    pub fn new(queue: ShardQueue, meta: SessionMeta) -> SessionRecorder {
        SessionRecorder {
            queue,
            meta: Arc::new(meta),
            started: Instant::now(),
            seq: Cell::new(0),
            backlog: RefCell::new(VecDeque::new()),
            statements: Cell::new(0),
            denied: Cell::new(0),
            bytes_from_client: Cell::new(0),
            bytes_to_client: Cell::new(0),
        }
    }

    pub fn session_id(&self) -> &str {
        &self.meta.id
    }

    /// Result bytes kept per statement (`[record] max_result_bytes`).
    pub fn max_result_bytes(&self) -> usize {
        self.queue.max_result_bytes()
    }

    /// Queues an event that happens now, or behind the backlog when the queue is full.
    pub fn emit(&self, body: Body) {
        self.emit_at(body, now_us());
    }

    /// Queues an event that happened at `at_us` (from [`now_us`]; the caller read the clock
    /// for its own use already).
    pub fn emit_at(&self, body: Body, at_us: i64) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let event = Event {
            session: Arc::clone(&self.meta),
            seq,
            at_us,
            body,
        };
        let mut backlog = self.backlog.borrow_mut();
        if !backlog.is_empty() {
            backlog.push_back(event);
            return;
        }
        if let Err(event) = self.queue.try_push(event) {
            backlog.push_back(event);
        }
    }

    /// Records a statement that arrived at `at_us` and returns its id.
    pub fn statement(
        &self,
        text: Arc<str>,
        params: Vec<Option<String>>,
        fingerprint_hash: u64,
        decision: Option<Arc<DecisionInfo>>,
        at_us: i64,
    ) -> u64 {
        let id = self.statements.get();
        self.statements.set(id + 1);
        if decision.as_ref().is_some_and(|d| d.action != "allow") {
            self.denied.set(self.denied.get() + 1);
        }
        self.emit_at(
            Body::Statement(Statement {
                statement_id: id,
                text,
                params,
                fingerprint_hash,
                decision,
            }),
            at_us,
        );
        id
    }

    pub fn count_from_client(&self, bytes: usize) {
        self.bytes_from_client
            .set(self.bytes_from_client.get() + bytes as u64);
    }

    pub fn count_to_client(&self, bytes: usize) {
        self.bytes_to_client
            .set(self.bytes_to_client.get() + bytes as u64);
    }

    /// True when events wait for room in the queue.
    pub fn is_backlogged(&self) -> bool {
        !self.backlog.borrow().is_empty()
    }

    /// Waits until every event of the session is on the shard's queue. Cancel-safe: an event
    /// leaves the backlog only when the queue took it, so a leg dropped while waiting here
    /// loses nothing, and events never overtake one another.
    pub async fn flush(&self) {
        let mut wait = std::time::Duration::from_micros(50);
        while !self.retry_backlog() {
            crate::runtime::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_millis(5));
        }
    }

    /// Moves what the backlog holds onto the queue, oldest first, as far as there is room;
    /// never waits. True when the backlog is empty.
    pub fn retry_backlog(&self) -> bool {
        let mut backlog = self.backlog.borrow_mut();
        while let Some(event) = backlog.pop_front() {
            if let Err(event) = self.queue.try_push(event) {
                backlog.push_front(event);
                return false;
            }
        }
        true
    }

    /// Records the end of the session and waits until all its events are queued.
    pub async fn disconnect(&self, reason: String) {
        self.emit(Body::Disconnect(Disconnect {
            reason,
            statements: self.statements.get(),
            denied: self.denied.get(),
            bytes_from_client: self.bytes_from_client.get(),
            bytes_to_client: self.bytes_to_client.get(),
            duration_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }));
        self.flush().await;
    }
}
