//! Record stage, hash chain: each event's hash covers the previous event's hash of the same
//! session, so an edit, a removal or a reordering inside a session shows.
//!
//! ```text
//! hash(e) = SHA-256( prev_hash(e) || canonical(e) )
//! prev_hash(e) = hash of the session's previous event; 32 zero bytes for its first event
//! ```
//!
//! `canonical(e)` encodes every stored field of the event, in a fixed order, with lengths in
//! front of everything variable, so that no two different events encode alike:
//!
//! | value        | encoding                                              |
//! |--------------|-------------------------------------------------------|
//! | string       | u64 little-endian byte length, then the UTF-8 bytes   |
//! | u64 / i64    | 8 bytes little-endian                                 |
//! | u32          | 4 bytes little-endian                                 |
//! | bool         | one byte, 0 or 1                                      |
//! | optional `x` | byte 0 for none; byte 1, then `x`                     |
//! | list of `x`  | u64 little-endian count, then each `x`                |
//!
//! Fields, in order: the string `"tollgate.record.v1"`, instance, session id, principal,
//! groups, connection, protocol, seq, at_us, kind, then the kind's own fields in the order of
//! their struct in `event.rs`. A result's rows are covered in their stored (decoded) form —
//! list of rows, each a list of optional strings — followed by `rows_error`, so the hash can
//! be recomputed from the archive alone. The README lists the full field order.

use aws_lc_rs::digest;

use super::event::{Body, Event};
use super::rows::Rows;

/// Length of a hash.
pub const HASH_LEN: usize = 32;

/// The `prev_hash` of a session's first event.
pub const ZERO_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

const DOMAIN: &str = "tollgate.record.v1";

/// Computes an event's hash. `rows` is the decoded form of a result's rows (ignored for other
/// kinds); `scratch` is reused between calls to avoid allocating.
pub(crate) fn event_hash(
    prev: &[u8; HASH_LEN],
    instance: &str,
    e: &Event,
    rows: &Rows,
    scratch: &mut Vec<u8>,
) -> [u8; HASH_LEN] {
    scratch.clear();
    scratch.extend_from_slice(prev);
    let mut w = Canonical(scratch);
    w.str(DOMAIN);
    w.str(instance);
    let s = &e.session;
    w.str(&s.id);
    w.str(&s.principal);
    w.strs(&s.groups);
    w.str(&s.connection);
    w.str(&s.protocol);
    w.u64(e.seq);
    w.i64(e.at_us);
    w.str(e.body.kind());
    match &e.body {
        Body::Connect(c) => {
            w.str(&c.client_addr);
            w.str(&c.application_name);
            w.bool(c.tls);
            w.str(&c.principal_kind);
        }
        Body::Statement(st) => {
            w.u64(st.statement_id);
            w.str(&st.text);
            w.len(st.params.len());
            for p in &st.params {
                w.opt_str(p.as_deref());
            }
            w.u64(st.fingerprint_hash);
            match &st.decision {
                None => w.bool(false),
                Some(d) => {
                    w.bool(true);
                    w.str(&d.action);
                    w.strs(&d.rules);
                    w.str(&d.reason);
                    w.str(&d.fingerprint);
                    w.strs(&d.tables);
                }
            }
        }
        Body::Result(r) => {
            w.u64(r.statement_id);
            w.u64(r.rows);
            w.u64(r.bytes);
            w.u64(r.duration_us);
            w.opt_str(r.command_tag.as_deref());
            w.opt_str(r.sqlstate.as_deref());
            w.opt_str(r.error.as_deref());
            w.len(r.columns.len());
            for c in &r.columns {
                w.str(&c.name);
                w.u32(c.type_id);
                w.bool(c.binary);
            }
            w.str(super::schema::rows_encoding_name(r.rows_encoding));
            w.len(rows.len());
            for i in 0..rows.len() {
                w.len(rows.row_len(i));
                for v in rows.row(i) {
                    w.opt_str(v);
                }
            }
            w.opt_str(rows.error.as_deref());
            w.u64(r.kept_rows);
            w.bool(r.truncated);
        }
        Body::Approval(a) => {
            w.u64(a.statement_id);
            w.str(&a.request_id);
            w.str(&a.outcome);
            w.opt_str(a.approver.as_deref());
        }
        Body::Disconnect(d) => {
            w.str(&d.reason);
            w.u64(d.statements);
            w.u64(d.denied);
            w.u64(d.bytes_from_client);
            w.u64(d.bytes_to_client);
            w.u64(d.duration_us);
        }
    }
    let d = digest::digest(&digest::SHA256, scratch);
    let mut out = ZERO_HASH;
    out.copy_from_slice(d.as_ref());
    out
}

/// The canonical encoding's writer.
struct Canonical<'a>(&'a mut Vec<u8>);

impl Canonical<'_> {
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
        }
    }
    fn strs(&mut self, list: &[String]) {
        self.len(list.len());
        for s in list {
            self.str(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::record::event::{Disconnect, SessionMeta};

    fn event(reason: &str, groups: Vec<String>) -> Event {
        Event {
            session: Arc::new(SessionMeta {
                id: "s".into(),
                principal: "p".into(),
                groups,
                connection: "c".into(),
                protocol: "postgres".into(),
            }),
            seq: 0,
            at_us: 1,
            body: Body::Disconnect(Disconnect {
                reason: reason.into(),
                statements: 0,
                denied: 0,
                bytes_from_client: 0,
                bytes_to_client: 0,
                duration_us: 0,
            }),
        }
    }

    #[test]
    fn hash_is_sha256_of_prev_and_encoding_and_moves_with_every_field() {
        let mut scratch = Vec::new();
        let rows = Rows::default();
        let e = event("x", vec!["ab".into()]);
        let h = event_hash(&ZERO_HASH, "gw", &e, &rows, &mut scratch);
        let again = event_hash(&ZERO_HASH, "gw", &e, &rows, &mut scratch);
        assert_eq!(h, again);
        assert_ne!(h, event_hash(&h, "gw", &e, &rows, &mut scratch));
        assert_ne!(h, event_hash(&ZERO_HASH, "gw2", &e, &rows, &mut scratch));
        // Moving bytes between neighbouring strings changes the hash (lengths are encoded).
        let split = event("x", vec!["a".into(), "b".into()]);
        assert_ne!(h, event_hash(&ZERO_HASH, "gw", &split, &rows, &mut scratch));
        let mut later = e.clone();
        later.at_us += 1;
        assert_ne!(h, event_hash(&ZERO_HASH, "gw", &later, &rows, &mut scratch));
    }
}
