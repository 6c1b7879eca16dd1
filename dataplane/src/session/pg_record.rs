//! Record, PostgreSQL side: which statement each result belongs to.
//!
//! The client leg tells the tracker what it sent (a Query, or a Parse/Bind/Execute); each
//! execution becomes a statement event and a pending result. The upstream leg shows it every
//! backend message; a pending result collects its columns, rows (as the client received them,
//! up to `[record] max_result_bytes`), command tag or error, and becomes a result event when
//! the protocol says it ended:
//!
//! ```text
//! simple Query     ─▶ ends at ReadyForQuery (a batch is one statement)
//! Execute          ─▶ ends at CommandComplete, EmptyQueryResponse, PortalSuspended or
//!                     ErrorResponse; skipped ones (after an error) end at ReadyForQuery
//! FunctionCall     ─▶ ends at ReadyForQuery
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

use super::recording::{now_us, SessionRecorder};
use crate::proto::pg::{self, Frame};
use crate::record::{Body, Column, DecisionInfo, RowsEncoding, StatementResult};

/// A prepared statement as the client parsed it.
struct Prepared {
    text: Arc<str>,
    fingerprint: u64,
    decision: Option<Arc<DecisionInfo>>,
}

/// A bound portal: its statement and parameter values as recorded.
struct Portal {
    statement: Rc<Prepared>,
    params: Vec<Option<String>>,
}

/// When a pending result is complete.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// At the ReadyForQuery answering its sync point (simple query, function call).
    Ready,
    /// At its CommandComplete (or error, empty query, suspension).
    Complete,
}

struct Pending {
    id: u64,
    /// The sync point (counted from 0) whose ReadyForQuery ends it at the latest.
    sync: u64,
    until: Until,
    /// When its statement was recorded ([`now_us`]); the result's duration counts from here.
    started_us: i64,
    result: StatementResult,
}

/// The last RowDescription and CommandComplete of a session, as the server sent them and as
/// recorded: a result described with the same bytes shares them rather than decoding and
/// allocating again (a session mostly repeats a few statements).
#[derive(Default)]
struct Described {
    row_description: Vec<u8>,
    columns: Option<Arc<[Column]>>,
    command_tag: Option<Arc<str>>,
}

impl Described {
    /// The columns a RowDescription body describes.
    fn columns(&mut self, frame: Frame<'_>) -> Arc<[Column]> {
        if let Some(columns) = &self.columns {
            if self.row_description == frame.body {
                return Arc::clone(columns);
            }
        }
        let columns: Arc<[Column]> = match pg::BackendMessage::decode(frame) {
            Ok(pg::BackendMessage::RowDescription(fields)) => fields
                .iter()
                .map(|f| Column {
                    name: f.name.to_owned(),
                    type_id: f.type_oid,
                    binary: f.format == 1,
                })
                .collect(),
            _ => return Arc::from([]),
        };
        self.row_description.clear();
        self.row_description.extend_from_slice(frame.body);
        self.columns = Some(Arc::clone(&columns));
        columns
    }

    /// The tag of a CommandComplete body.
    fn command_tag(&mut self, frame: Frame<'_>) -> Option<Arc<str>> {
        if let Some(tag) = &self.command_tag {
            if frame.body.strip_suffix(&[0]) == Some(tag.as_bytes()) {
                return Some(Arc::clone(tag));
            }
        }
        let Ok(pg::BackendMessage::CommandComplete { tag }) = pg::BackendMessage::decode(frame)
        else {
            return None;
        };
        let tag: Arc<str> = Arc::from(tag);
        self.command_tag = Some(Arc::clone(&tag));
        Some(tag)
    }
}

/// The PostgreSQL recording of one session.
pub struct PgRecording {
    pub rec: SessionRecorder,
    cap: usize,
    prepared: RefCell<HashMap<String, Rc<Prepared>>>,
    portals: RefCell<HashMap<String, Portal>>,
    pending: RefCell<VecDeque<Pending>>,
    described: RefCell<Described>,
    /// The columns of a result before (or without) a RowDescription, shared by all of them:
    /// `Arc::from([])` allocates.
    no_columns: Arc<[Column]>,
    /// ReadyForQuery messages seen so far: the sync point being answered.
    answered: std::cell::Cell<u64>,
}

impl PgRecording {
    pub fn new(rec: SessionRecorder) -> PgRecording {
        let cap = rec.max_result_bytes();
        PgRecording {
            rec,
            cap,
            prepared: RefCell::default(),
            portals: RefCell::default(),
            pending: RefCell::default(),
            described: RefCell::default(),
            no_columns: Arc::from([]),
            answered: std::cell::Cell::new(0),
        }
    }

    // ---- client → upstream ---------------------------------------------------------------

    /// A simple Query (one statement event for the whole batch), answered at sync point `sync`.
    pub fn query(
        &self,
        sql: &str,
        fingerprint: u64,
        decision: Option<Arc<DecisionInfo>>,
        sync: u64,
    ) {
        self.statement_now(sql, fingerprint, decision, sync, Until::Ready);
    }

    /// A Parse the policy let through: remembered until an Execute runs it.
    pub fn parse(
        &self,
        name: &str,
        sql: &str,
        fingerprint: u64,
        decision: Option<Arc<DecisionInfo>>,
    ) {
        let prepared = Rc::new(Prepared {
            text: Arc::from(sql),
            fingerprint,
            decision,
        });
        self.prepared.borrow_mut().insert(name.to_owned(), prepared);
    }

    /// A Parse the policy refused: recorded as a statement now (nothing of its pipeline will
    /// run); its result is the refusal the upstream raises before sync point `sync`.
    pub fn parse_refused(
        &self,
        sql: &str,
        fingerprint: u64,
        decision: Option<Arc<DecisionInfo>>,
        sync: u64,
    ) {
        self.statement_now(sql, fingerprint, decision, sync, Until::Complete);
    }

    /// Records a statement without parameters, its result ending as `until` says.
    fn statement_now(
        &self,
        sql: &str,
        fingerprint: u64,
        decision: Option<Arc<DecisionInfo>>,
        sync: u64,
        until: Until,
    ) {
        let at = now_us();
        let id = self
            .rec
            .statement(Arc::from(sql), Vec::new(), fingerprint, decision, at);
        self.expect(id, sync, until, at);
    }

    pub fn bind(&self, bind: &pg::Bind<'_>) {
        let Some(statement) = self.prepared.borrow().get(bind.statement).cloned() else {
            // The server answers this Bind with an error; nothing runs.
            return;
        };
        let params = bind
            .params
            .iter()
            .enumerate()
            .map(|(i, value)| {
                value.map(|bytes| {
                    let binary = match bind.param_formats.as_slice() {
                        [] => false,
                        [one] => *one == 1,
                        all => all.get(i) == Some(&1),
                    };
                    param_text(bytes, binary)
                })
            })
            .collect();
        self.portals
            .borrow_mut()
            .insert(bind.portal.to_owned(), Portal { statement, params });
    }

    /// An Execute: one statement event for this run of the portal.
    pub fn execute(&self, portal: &str, sync: u64) {
        let (text, params, fingerprint, decision) = match self.portals.borrow().get(portal) {
            Some(p) => (
                Arc::clone(&p.statement.text),
                p.params.clone(),
                p.statement.fingerprint,
                p.statement.decision.clone(),
            ),
            // Unknown portal: the server will say so; the attempt is still recorded.
            None => (
                Arc::from(format!("<execute of unknown portal {portal:?}>")),
                Vec::new(),
                0,
                None,
            ),
        };
        let at = now_us();
        let id = self.rec.statement(text, params, fingerprint, decision, at);
        self.expect(id, sync, Until::Complete, at);
    }

    /// A fast-path FunctionCall, answered at sync point `sync`.
    pub fn function_call(
        &self,
        oid: u32,
        fingerprint: u64,
        decision: Option<Arc<DecisionInfo>>,
        sync: u64,
    ) {
        let text = format!("<function call {oid}>");
        self.statement_now(&text, fingerprint, decision, sync, Until::Ready);
    }

    /// A Close of a statement (`b'S'`) or portal (`b'P'`).
    pub fn close(&self, kind: u8, name: &str) {
        match kind {
            b'S' => {
                self.prepared.borrow_mut().remove(name);
            }
            _ => {
                self.portals.borrow_mut().remove(name);
            }
        }
    }

    fn expect(&self, id: u64, sync: u64, until: Until, started_us: i64) {
        self.pending.borrow_mut().push_back(Pending {
            id,
            sync,
            until,
            started_us,
            result: StatementResult {
                statement_id: id,
                rows: 0,
                bytes: 0,
                duration_us: 0,
                command_tag: None,
                sqlstate: None,
                error: None,
                columns: Arc::clone(&self.no_columns),
                rows_data: Vec::new(),
                rows_encoding: RowsEncoding::PgDataRow,
                kept_rows: 0,
                truncated: false,
            },
        });
    }

    // ---- upstream → client ---------------------------------------------------------------

    /// One backend message on its way to the client (`delivered`: the bytes the client gets
    /// for it, which differ from the frame for a rewritten refusal).
    pub fn backend(&self, frame: Frame<'_>, delivered: usize) {
        let mut pending = self.pending.borrow_mut();
        if frame.tag == b'Z' {
            let answered = self.answered.get();
            self.answered.set(answered + 1);
            while pending.front().is_some_and(|p| p.sync <= answered) {
                if let Some(mut p) = pending.pop_front() {
                    if p.until == Until::Complete
                        && p.result.command_tag.is_none()
                        && p.result.sqlstate.is_none()
                    {
                        p.result.error =
                            Some("not executed: an earlier message of its pipeline failed".into());
                    }
                    self.finish(p);
                }
            }
            // Outside a transaction block the server has dropped every portal.
            if frame.body.first() == Some(&b'I') {
                self.portals.borrow_mut().retain(|name, _| name.is_empty());
            }
            return;
        }
        let Some(p) = pending.front_mut() else {
            return;
        };
        p.result.bytes += delivered as u64;
        match frame.tag {
            b'T' => p.result.columns = self.described.borrow_mut().columns(frame),
            b'D' => {
                p.result.rows += 1;
                if !p.result.truncated && p.result.rows_data.len() + frame.body.len() <= self.cap {
                    p.result.rows_data.extend_from_slice(frame.body);
                    p.result.kept_rows += 1;
                } else {
                    p.result.truncated = true;
                }
            }
            b'd' => p.result.rows += 1,
            b'C' | b'I' | b's' => {
                if frame.tag == b'C' {
                    p.result.command_tag = self.described.borrow_mut().command_tag(frame);
                }
                if p.until == Until::Complete {
                    if let Some(p) = pending.pop_front() {
                        self.finish(p);
                    }
                }
            }
            b'E' => {
                if let Ok(pg::BackendMessage::ErrorResponse(fields)) =
                    pg::BackendMessage::decode(frame)
                {
                    p.result.sqlstate = fields.sqlstate().map(str::to_owned);
                    p.result.error = fields.message().map(str::to_owned);
                }
                if p.until == Until::Complete {
                    if let Some(p) = pending.pop_front() {
                        self.finish(p);
                    }
                }
            }
            _ => {}
        }
    }

    fn finish(&self, mut p: Pending) {
        // One clock read gives the event's time and its duration. Both are wall-clock time: a
        // clock stepped back during the statement shows as a duration of 0.
        let now = now_us();
        p.result.duration_us = u64::try_from(now.saturating_sub(p.started_us)).unwrap_or(0);
        debug_assert_eq!(p.id, p.result.statement_id);
        self.rec.emit_at(Body::Result(p.result), now);
    }

    /// Results still open when the session ends are recorded as interrupted.
    pub fn abandon(&self, why: &str) {
        let open: Vec<Pending> = self.pending.borrow_mut().drain(..).collect();
        for mut p in open {
            if p.result.error.is_none() {
                p.result.error = Some(format!("interrupted: {why}"));
            }
            self.finish(p);
        }
    }
}

/// A parameter value as recorded: text as text (invalid UTF-8 replaced), binary as `\x` hex.
fn param_text(bytes: &[u8], binary: bool) -> String {
    if !binary {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{self, Event, SessionMeta};

    /// The body (after tag and length) of a message `encode` writes.
    fn body(encode: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut message = Vec::new();
        encode(&mut message);
        message.split_off(5)
    }

    /// A RowDescription body: text columns of these names.
    fn row_description(names: &[&str]) -> Vec<u8> {
        let fields = names
            .iter()
            .map(|name| pg::FieldDescription {
                name,
                table_oid: 0,
                column: 0,
                type_oid: 25,
                type_size: -1,
                type_modifier: -1,
                format: 0,
            })
            .collect();
        body(|out| pg::BackendMessage::RowDescription(fields).encode(out))
    }

    /// Runs one simple query answered by one row of one value, returns its result event.
    fn one_row_query(
        rec: &PgRecording,
        rx: &crossbeam_channel::Receiver<Event>,
        sync: u64,
        columns: &[&str],
        tag: &str,
    ) -> StatementResult {
        rec.query("select", 1, None, sync);
        let description = row_description(columns);
        let row = body(|out| pg::encode_data_row(out, [Some(b"x".as_slice())]));
        let complete = format!("{tag}\0");
        for (tag, body) in [
            (b'T', description.as_slice()),
            (b'D', row.as_slice()),
            (b'C', complete.as_bytes()),
            (b'Z', b"I".as_slice()),
        ] {
            rec.backend(Frame { tag, body }, body.len() + 5);
        }
        let statement = rx.try_recv().expect("statement event");
        let result = rx.try_recv().expect("result event");
        assert!(result.at_us >= statement.at_us);
        match result.body {
            Body::Result(r) => r,
            other => panic!("expected a result, got {}", other.kind()),
        }
    }

    /// A session shares the columns and tag of a result described with the same bytes as the
    /// one before, and records new ones as soon as the server describes something else.
    #[test]
    fn results_share_repeated_descriptions_and_see_changed_ones() {
        let (queue, rx) = record::channel(64, 1 << 20);
        let rec = PgRecording::new(SessionRecorder::new(
            queue,
            SessionMeta {
                id: "s".into(),
                principal: "p".into(),
                groups: vec![],
                connection: "c".into(),
                protocol: "postgres".into(),
            },
        ));
        let names = |r: &StatementResult| -> Vec<String> {
            r.columns.iter().map(|c| c.name.clone()).collect()
        };

        let first = one_row_query(&rec, &rx, 0, &["aid", "abalance"], "SELECT 1");
        let second = one_row_query(&rec, &rx, 1, &["aid", "abalance"], "SELECT 1");
        assert_eq!(names(&first), ["aid", "abalance"]);
        assert_eq!(first.command_tag.as_deref(), Some("SELECT 1"));
        assert!(Arc::ptr_eq(&first.columns, &second.columns));
        match (&first.command_tag, &second.command_tag) {
            (Some(a), Some(b)) => assert!(Arc::ptr_eq(a, b)),
            other => panic!("expected two tags, got {other:?}"),
        }

        // Same column count and types, another name; another tag.
        let third = one_row_query(&rec, &rx, 2, &["aid", "balance"], "SELECT 2");
        assert_eq!(names(&third), ["aid", "balance"]);
        assert_eq!(third.command_tag.as_deref(), Some("SELECT 2"));
        assert_eq!((third.rows, third.kept_rows), (1, 1));

        // And back: the table holds one description, which is the last one.
        let fourth = one_row_query(&rec, &rx, 3, &["aid", "abalance"], "SELECT 1");
        assert_eq!(names(&fourth), ["aid", "abalance"]);
        assert_eq!(fourth.command_tag.as_deref(), Some("SELECT 1"));
        assert!(!Arc::ptr_eq(&first.columns, &fourth.columns));
    }

    #[test]
    fn params_are_text_or_hex() {
        assert_eq!(param_text(b"abc", false), "abc");
        assert_eq!(param_text(&[0, 1, 0xff], true), "\\x0001ff");
        assert_eq!(param_text(&[0xff], false), "\u{fffd}");
    }
}
