//! Record stage, hash chain: each event's hash covers the previous event's hash of the same
//! session, so an edit, a removal or a reordering inside a session shows.
//!
//! ```text
//! hash(e) = SHA-256( prev_hash(e) || session(e) || canonical(e) )          (encoding v3)
//! prev_hash(e) = hash of the session's previous event; 32 zero bytes for its first event
//! session(e) = SHA-256 of the canonical domain "tollgate.record.v3.session", instance,
//!              session id, principal, groups, connection, protocol
//! ```
//!
//! `canonical(e)` encodes every stored field of the event, in a fixed order, with lengths in
//! front of everything variable, so that no two different events encode alike:
//!
//! | value        | encoding                                              |
//! |--------------|-------------------------------------------------------|
//! | length       | v2, v3: unsigned LEB128; v1: u64 little-endian        |
//! | string       | length in bytes, then the UTF-8 bytes                 |
//! | u64 / i64    | 8 bytes little-endian                                 |
//! | u32          | 4 bytes little-endian                                 |
//! | bool         | one byte, 0 or 1                                      |
//! | optional `x` | byte 0 for none; byte 1, then `x`                     |
//! | list of `x`  | length (the count), then each `x`                     |
//!
//! Fields, in order: seq, at_us, kind, then the kind's own fields in the order of their struct
//! in `event.rs`, a statement's decision as its digest (SHA-256 of the domain
//! `"tollgate.record.v3.decision"`, action, rules, reason, fingerprint, tables). A result's
//! rows are covered in their stored (decoded) form — list of rows, each a list of optional
//! strings — followed by `rows_error`, so the hash can be recomputed from the archive alone.
//! The README lists the full field order. Encodings v1 and v2 have no digests: after the
//! previous hash come the domain string `"tollgate.record.v1"` or `"…v2"`, the instance and the
//! session fields, and a decision's fields stand in place of its digest.
//!
//! Encoding v2 (written since archive format 2) differs from v1 only in the domain string and
//! in how lengths are written: a result's values are mostly a few bytes long, and v1's 9 bytes
//! of marker and length per value made SHA-256 hash 1.7 times the rows' text.
//!
//! Encoding v3 (written since archive format 3) hashes what events share once: in place of the
//! domain string, instance and session fields it puts the session's digest, and in place of a
//! statement's decision fields the decision's digest (each a SHA-256 of those fields under a
//! domain string of its own, in v2's encoding). A pgbench statement then hashes 4 SHA-256 blocks
//! instead of 6, its result 3 instead of 4; the recorder computes a session's digest once and a
//! decision's once per cached decision. Files written with v1 or v2 still verify:
//! [`super::read::Recorded::computed_hash`] tries every encoding.

use aws_lc_rs::digest;

use super::event::{Body, DecisionInfo, Event, SessionMeta};
use super::rows::Rows;

/// Length of a hash.
pub const HASH_LEN: usize = 32;

/// The `prev_hash` of a session's first event.
pub const ZERO_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

/// A version of the canonical encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Lengths and counts as u64 little-endian (archive format 1).
    V1,
    /// Lengths and counts as unsigned LEB128 (archive format 2).
    V2,
    /// V2's encoding with the session's and the decision's fields replaced by their digests
    /// (archive format 3).
    V3,
}

impl Encoding {
    /// The encoding the recorder writes.
    pub(crate) const CURRENT: Encoding = Encoding::V3;
    /// Every encoding, the current one first (the order [`super::read`] tries them in).
    pub(crate) const ALL: [Encoding; 3] = [Encoding::V3, Encoding::V2, Encoding::V1];

    fn domain(self) -> &'static str {
        match self {
            Encoding::V1 => "tollgate.record.v1",
            Encoding::V2 => "tollgate.record.v2",
            Encoding::V3 => "tollgate.record.v3",
        }
    }
}

/// V3: the digest of what every event of a session carries (instance and session fields).
pub(crate) fn session_digest(
    instance: &str,
    s: &SessionMeta,
    scratch: &mut Vec<u8>,
) -> [u8; HASH_LEN] {
    scratch.clear();
    let mut w = Canonical {
        out: scratch,
        encoding: Encoding::V3,
    };
    w.session("tollgate.record.v3.session", instance, s);
    sha256(scratch)
}

/// V3: the digest of a statement's decision.
pub(crate) fn decision_digest(d: &DecisionInfo, scratch: &mut Vec<u8>) -> [u8; HASH_LEN] {
    scratch.clear();
    let mut w = Canonical {
        out: scratch,
        encoding: Encoding::V3,
    };
    w.str("tollgate.record.v3.decision");
    w.decision(d);
    sha256(scratch)
}

fn sha256(bytes: &[u8]) -> [u8; HASH_LEN] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = ZERO_HASH;
    out.copy_from_slice(d.as_ref());
    out
}

/// Computes an event's hash with the current encoding. `rows` is the decoded form of a
/// result's rows (ignored for other kinds); `scratch` is reused between calls to avoid
/// allocating. (The recorder calls [`event_hash_v3`] with the digests it keeps.)
#[cfg(test)]
pub(crate) fn event_hash(
    prev: &[u8; HASH_LEN],
    instance: &str,
    e: &Event,
    rows: &Rows,
    scratch: &mut Vec<u8>,
) -> [u8; HASH_LEN] {
    event_hash_with(Encoding::CURRENT, prev, instance, e, rows, scratch)
}

/// [`event_hash`] with a given encoding.
pub(crate) fn event_hash_with(
    encoding: Encoding,
    prev: &[u8; HASH_LEN],
    instance: &str,
    e: &Event,
    rows: &Rows,
    scratch: &mut Vec<u8>,
) -> [u8; HASH_LEN] {
    if encoding == Encoding::V3 {
        let session = session_digest(instance, &e.session, scratch);
        let decision = match &e.body {
            Body::Statement(st) => st.decision.as_ref().map(|d| decision_digest(d, scratch)),
            _ => None,
        };
        return event_hash_v3(prev, &session, decision.as_ref(), e, rows, scratch);
    }
    scratch.clear();
    scratch.extend_from_slice(prev);
    let mut w = Canonical {
        out: scratch,
        encoding,
    };
    w.session(encoding.domain(), instance, &e.session);
    w.body(e, rows, None);
    sha256(scratch)
}

/// An event's hash in encoding v3, given its session's digest and, for a statement with a
/// decision, the decision's ([`session_digest`], [`decision_digest`]): the recorder keeps
/// both, so that it hashes what events share once.
pub(crate) fn event_hash_v3(
    prev: &[u8; HASH_LEN],
    session: &[u8; HASH_LEN],
    decision: Option<&[u8; HASH_LEN]>,
    e: &Event,
    rows: &Rows,
    scratch: &mut Vec<u8>,
) -> [u8; HASH_LEN] {
    scratch.clear();
    scratch.extend_from_slice(prev);
    scratch.extend_from_slice(session);
    let mut w = Canonical {
        out: scratch,
        encoding: Encoding::V3,
    };
    w.body(e, rows, Some(decision));
    sha256(scratch)
}

impl Canonical<'_> {
    /// A domain string, then what every event of a session carries.
    fn session(&mut self, domain: &str, instance: &str, s: &SessionMeta) {
        self.str(domain);
        self.str(instance);
        self.str(&s.id);
        self.str(&s.principal);
        self.strs(&s.groups);
        self.str(&s.connection);
        self.str(&s.protocol);
    }

    /// A decision's fields.
    fn decision(&mut self, d: &DecisionInfo) {
        self.str(&d.action);
        self.strs(&d.rules);
        self.str(&d.reason);
        self.str(&d.fingerprint);
        self.strs(&d.tables);
    }

    /// Everything after the session's fields: seq, at, kind, the kind's fields. `decision`:
    /// `None` writes a statement's decision fields (v1, v2), `Some(digest)` its digest (v3;
    /// `Some(None)` for a statement without a decision).
    fn body(&mut self, e: &Event, rows: &Rows, decision: Option<Option<&[u8; HASH_LEN]>>) {
        let w = self;
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
                match (&st.decision, decision) {
                    (None, _) => w.bool(false),
                    (Some(d), None) => {
                        w.bool(true);
                        w.decision(d);
                    }
                    (Some(d), Some(digest)) => {
                        w.bool(true);
                        match digest {
                            Some(digest) => w.out.extend_from_slice(digest),
                            None => w
                                .out
                                .extend_from_slice(&decision_digest(d, &mut Vec::new())),
                        }
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
                for c in r.columns.iter() {
                    w.str(&c.name);
                    w.u32(c.type_id);
                    w.bool(c.binary);
                }
                w.str(super::schema::rows_encoding_name(r.rows_encoding));
                w.rows(rows);
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
    }
}

/// The canonical encoding's writer.
struct Canonical<'a> {
    out: &'a mut Vec<u8>,
    encoding: Encoding,
}

impl Canonical<'_> {
    fn len(&mut self, n: usize) {
        match self.encoding {
            Encoding::V1 => self.u64(n as u64),
            Encoding::V2 | Encoding::V3 => {
                let mut n = n as u64;
                while n >= 0x80 {
                    self.out.push(n as u8 | 0x80);
                    n >>= 7;
                }
                self.out.push(n as u8);
            }
        }
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.out.push(0),
            Some(s) => {
                self.out.push(1);
                self.str(s);
            }
        }
    }
    /// Result rows: a list of rows, each a list of optional strings. Walks the flat form
    /// directly (most values are a few bytes, so per-value overhead is what counts).
    fn rows(&mut self, rows: &Rows) {
        let (text, value_ends, value_null, row_ends) = rows.parts();
        let text = text.as_bytes();
        self.out
            .reserve(text.len() + 2 * value_ends.len() + row_ends.len());
        self.len(row_ends.len());
        let (mut value, mut start) = (0, 0);
        for &row_end in row_ends {
            self.len(row_end.saturating_sub(value));
            for (&end, &null) in value_ends
                .get(value..row_end)
                .unwrap_or_default()
                .iter()
                .zip(value_null.get(value..row_end).unwrap_or_default())
            {
                if null {
                    self.out.push(0);
                } else {
                    let bytes = text.get(start..end).unwrap_or_default();
                    self.out.push(1);
                    self.len(bytes.len());
                    self.out.extend_from_slice(bytes);
                }
                start = end;
            }
            value = row_end;
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
    use crate::record::event::{Column, Disconnect, RowsEncoding, SessionMeta, StatementResult};

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

    /// LEB128 as the README describes it, written out independently of `Canonical`.
    fn leb128(c: &mut Vec<u8>, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                c.push(byte);
                return;
            }
            c.push(byte | 0x80);
        }
    }

    /// The canonical encoding of a result, written out field by field as README.md documents
    /// it, hashes to what `event_hash_with` computes, in both encodings.
    #[test]
    fn a_result_hashes_as_documented() {
        for encoding in Encoding::ALL {
            a_result_hashes_as_documented_in(encoding);
        }
    }

    fn a_result_hashes_as_documented_in(encoding: Encoding) {
        let columns = vec![
            Column {
                name: "id".into(),
                type_id: 20,
                binary: false,
            },
            Column {
                name: "photo".into(),
                type_id: 17,
                binary: true,
            },
        ];
        let mut data = crate::record::rows::data_row(&[Some(b"1"), Some(&[0x00, 0xff])]);
        data.extend(crate::record::rows::data_row(&[None, Some(b"")]));
        let mut e = event("x", vec!["g".into()]);
        e.seq = 3;
        e.body = Body::Result(StatementResult {
            statement_id: 1,
            rows: 2,
            bytes: 40,
            duration_us: 5,
            command_tag: Some("SELECT 2".into()),
            sqlstate: None,
            error: None,
            columns: columns.clone().into(),
            rows_data: data.clone(),
            rows_encoding: RowsEncoding::PgDataRow,
            kept_rows: 2,
            truncated: false,
        });
        let mut rows = Rows::default();
        rows.decode_pg(&data, &columns);

        let prev = [7u8; HASH_LEN];
        let mut c = prev.to_vec();
        let len = |c: &mut Vec<u8>, n: usize| match encoding {
            Encoding::V1 => c.extend_from_slice(&(n as u64).to_le_bytes()),
            Encoding::V2 | Encoding::V3 => leb128(c, n as u64),
        };
        let s = |c: &mut Vec<u8>, v: &str| {
            len(c, v.len());
            c.extend_from_slice(v.as_bytes());
        };
        let u = |c: &mut Vec<u8>, v: u64| c.extend_from_slice(&v.to_le_bytes());
        let domain = match encoding {
            Encoding::V1 => "tollgate.record.v1",
            Encoding::V2 => "tollgate.record.v2",
            Encoding::V3 => "tollgate.record.v3.session",
        };
        // The session's fields: in v1 and v2 inline, in v3 as the SHA-256 of the same bytes.
        let mut session = Vec::new();
        for v in [domain, "gw", "s", "p"] {
            s(&mut session, v);
        }
        len(&mut session, 1); // groups
        s(&mut session, "g");
        for v in ["c", "postgres"] {
            s(&mut session, v);
        }
        match encoding {
            Encoding::V3 => c.extend_from_slice(digest::digest(&digest::SHA256, &session).as_ref()),
            _ => c.extend_from_slice(&session),
        }
        u(&mut c, 3); // seq
        c.extend_from_slice(&1i64.to_le_bytes()); // at
        s(&mut c, "result");
        for v in [1, 2, 40, 5] {
            u(&mut c, v); // statement_id, rows, bytes, duration_us
        }
        c.push(1);
        s(&mut c, "SELECT 2");
        c.extend_from_slice(&[0, 0]); // sqlstate, error
        len(&mut c, 2); // columns
        s(&mut c, "id");
        c.extend_from_slice(&20u32.to_le_bytes());
        c.push(0);
        s(&mut c, "photo");
        c.extend_from_slice(&17u32.to_le_bytes());
        c.push(1);
        s(&mut c, "pg_datarow");
        len(&mut c, 2); // rows
        len(&mut c, 2);
        c.push(1);
        s(&mut c, "1");
        c.push(1);
        s(&mut c, "\\x00ff");
        len(&mut c, 2);
        c.push(0);
        c.push(1);
        s(&mut c, "\\x");
        c.push(0); // rows_error
        u(&mut c, 2); // kept_rows
        c.push(0); // truncated
        let want = digest::digest(&digest::SHA256, &c);

        let got = event_hash_with(encoding, &prev, "gw", &e, &rows, &mut Vec::new());
        assert_eq!(got.as_slice(), want.as_ref(), "{encoding:?}");
    }

    /// A statement's decision in v3: its digest, as README.md documents it; and the
    /// recorder's path (digests computed once and passed in) hashes as the verifier's does.
    #[test]
    fn a_statement_hashes_its_decision_digest_in_v3() {
        let decision = Arc::new(crate::record::event::DecisionInfo {
            action: "allow".into(),
            rules: vec!["r1".into(), "r2".into()],
            reason: "ok".into(),
            fingerprint: "select ?".into(),
            tables: vec!["t".into()],
        });
        let mut e = event("x", vec![]);
        e.seq = 1;
        e.body = Body::Statement(crate::record::event::Statement {
            statement_id: 0,
            text: "select 1".into(),
            params: vec![Some("a".into()), None],
            fingerprint_hash: 9,
            decision: Some(decision.clone()),
        });
        let rows = Rows::default();
        let prev = [3u8; HASH_LEN];

        let mut d = Vec::new();
        for v in ["tollgate.record.v3.decision", "allow"] {
            leb128(&mut d, v.len() as u64);
            d.extend_from_slice(v.as_bytes());
        }
        leb128(&mut d, 2);
        for v in ["r1", "r2", "ok", "select ?"] {
            leb128(&mut d, v.len() as u64);
            d.extend_from_slice(v.as_bytes());
        }
        leb128(&mut d, 1);
        leb128(&mut d, 1);
        d.push(b't');
        let decision_digest_want = digest::digest(&digest::SHA256, &d);
        assert_eq!(
            decision_digest(&decision, &mut Vec::new()).as_slice(),
            decision_digest_want.as_ref()
        );

        let session = session_digest("gw", &e.session, &mut Vec::new());
        let mut c = prev.to_vec();
        c.extend_from_slice(&session);
        c.extend_from_slice(&1u64.to_le_bytes()); // seq
        c.extend_from_slice(&1i64.to_le_bytes()); // at
        leb128(&mut c, 9);
        c.extend_from_slice(b"statement");
        c.extend_from_slice(&0u64.to_le_bytes()); // statement_id
        leb128(&mut c, 8);
        c.extend_from_slice(b"select 1");
        leb128(&mut c, 2); // params
        c.extend_from_slice(&[1, 1, b'a', 0]);
        c.extend_from_slice(&9u64.to_le_bytes()); // fingerprint_hash
        c.push(1);
        c.extend_from_slice(decision_digest_want.as_ref());
        let want = digest::digest(&digest::SHA256, &c);

        let verifier = event_hash_with(Encoding::V3, &prev, "gw", &e, &rows, &mut Vec::new());
        assert_eq!(verifier.as_slice(), want.as_ref());
        let digest = decision_digest(&decision, &mut Vec::new());
        let recorder = event_hash_v3(&prev, &session, Some(&digest), &e, &rows, &mut Vec::new());
        assert_eq!(recorder, verifier);
        assert_eq!(
            event_hash(&prev, "gw", &e, &rows, &mut Vec::new()),
            verifier
        );
    }

    #[test]
    fn v2_lengths_are_leb128_and_differ_from_v1() {
        let mut out = Vec::new();
        let mut w = Canonical {
            out: &mut out,
            encoding: Encoding::V2,
        };
        for n in [0, 127, 128, 300] {
            w.len(n);
        }
        assert_eq!(out, [0x00, 0x7f, 0x80, 0x01, 0xac, 0x02]);
        let e = event("x", vec!["ab".into()]);
        let rows = Rows::default();
        let mut scratch = Vec::new();
        assert_ne!(
            event_hash_with(Encoding::V1, &ZERO_HASH, "gw", &e, &rows, &mut scratch),
            event_hash_with(Encoding::V2, &ZERO_HASH, "gw", &e, &rows, &mut scratch)
        );
    }
}
