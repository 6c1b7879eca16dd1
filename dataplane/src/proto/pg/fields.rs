//! Codec stage, server reports: the fields of ErrorResponse ('E') and NoticeResponse ('N').
//!
//! Both bodies are `(Byte1 code | String value)* | Byte1 0`
//! (<https://www.postgresql.org/docs/current/protocol-message-formats.html>), with the codes of
//! <https://www.postgresql.org/docs/current/protocol-error-fields.html>: `S` localized
//! severity, `V` severity never localized, `C` SQLSTATE, `M` message, `D` detail, `H` hint,
//! `P` position, and more. Clients ignore codes they do not know, so any non-zero code is kept.
//!
//! [`Fields`] is lazy: decoding checks the layout and UTF-8 once, then lookups walk the body.
//! [`encode_error`] and [`encode_notice`] build the gateway's own reports (a denied statement,
//! a review notice, a protocol violation).

use super::wire::{self, Cursor};
use super::ProtocolError;

/// Field codes of ErrorResponse and NoticeResponse.
pub mod field {
    /// Severity, possibly localized: `ERROR`, `FATAL`, `PANIC`, `WARNING`, `NOTICE`, ...
    pub const SEVERITY: u8 = b'S';
    /// Severity, never localized (PostgreSQL 9.6 and later).
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    /// SQLSTATE code.
    pub const SQLSTATE: u8 = b'C';
    /// Primary message.
    pub const MESSAGE: u8 = b'M';
    /// Detail.
    pub const DETAIL: u8 = b'D';
    /// Hint.
    pub const HINT: u8 = b'H';
    /// Cursor position in the query text, 1-based, in characters.
    pub const POSITION: u8 = b'P';
}

/// The fields of an ErrorResponse or NoticeResponse, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    body: &'a [u8],
}

impl<'a> Fields<'a> {
    /// Checks the body of an 'E' or 'N' message: code/value pairs with UTF-8 values, a final
    /// zero byte and nothing after it.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut cur = Cursor::new(body);
        while cur.u8()? != 0 {
            cur.cstr()?;
        }
        cur.finish()?;
        Ok(Fields { body })
    }

    /// The fields in the order sent.
    pub fn iter(&self) -> FieldsIter<'a> {
        FieldsIter {
            cur: Cursor::new(self.body),
        }
    }

    /// The first value with field code `code`.
    pub fn get(&self, code: u8) -> Option<&'a str> {
        self.iter().find(|(c, _)| *c == code).map(|(_, v)| v)
    }

    /// The SQLSTATE (`C`), e.g. `42P01`.
    pub fn sqlstate(&self) -> Option<&'a str> {
        self.get(field::SQLSTATE)
    }

    /// The primary message (`M`).
    pub fn message(&self) -> Option<&'a str> {
        self.get(field::MESSAGE)
    }

    /// The severity, preferring the never-localized `V` and falling back to `S` (servers
    /// before 9.6 send only `S`).
    pub fn severity(&self) -> Option<&'a str> {
        self.get(field::SEVERITY_NONLOCALIZED)
            .or_else(|| self.get(field::SEVERITY))
    }

    /// The body as received, for forwarding unchanged.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.body
    }
}

impl<'a> IntoIterator for &Fields<'a> {
    type Item = (u8, &'a str);
    type IntoIter = FieldsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over `(code, value)` pairs of [`Fields`].
#[derive(Debug, Clone)]
pub struct FieldsIter<'a> {
    cur: Cursor<'a>,
}

impl<'a> Iterator for FieldsIter<'a> {
    type Item = (u8, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        // `Fields::decode` checked the layout, so the reads below cannot fail; if they did,
        // the iteration would simply end.
        let code = self.cur.u8().ok().filter(|&c| c != 0)?;
        let value = self.cur.cstr().ok()?;
        Some((code, value))
    }
}

/// Writes the body of an 'E' or 'N' message from `(code, value)` pairs. A zero code would end
/// the list early, so such a pair is skipped.
pub(super) fn encode_fields_body<'v>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = (u8, &'v str)>,
) {
    for (code, value) in fields {
        if code != 0 {
            out.push(code);
            wire::put_cstr(out, value);
        }
    }
    out.push(0);
}

/// Writes a report with the given tag and fields (both severity fields from `severity`).
fn encode_report(
    out: &mut Vec<u8>,
    tag: u8,
    severity: &str,
    sqlstate: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    let fields = [
        Some((field::SEVERITY, severity)),
        Some((field::SEVERITY_NONLOCALIZED, severity)),
        Some((field::SQLSTATE, sqlstate)),
        Some((field::MESSAGE, message)),
        detail.map(|d| (field::DETAIL, d)),
        hint.map(|h| (field::HINT, h)),
    ];
    wire::message(out, tag, |out| {
        encode_fields_body(out, fields.into_iter().flatten())
    });
}

/// Writes a gateway-generated ErrorResponse. `severity` is `ERROR` (the statement fails, the
/// session goes on) or `FATAL` (the session ends); it goes into both `S` and `V`.
pub fn encode_error(
    out: &mut Vec<u8>,
    severity: &str,
    sqlstate: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    encode_report(out, b'E', severity, sqlstate, message, detail, hint);
}

/// Writes a gateway-generated NoticeResponse (`NOTICE`, `WARNING`, `INFO`, ...), e.g. "your
/// statement waits for review, request id ...".
pub fn encode_notice(
    out: &mut Vec<u8>,
    severity: &str,
    sqlstate: &str,
    message: &str,
    detail: Option<&str>,
) {
    encode_report(out, b'N', severity, sqlstate, message, detail, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 15's ErrorResponse body for `select * from nope`.
    const PG_ERROR: &[u8] = b"SERROR\0VERROR\0C42P01\0Mrelation \"nope\" does not exist\0P15\0Fparse_relation.c\0L1392\0RparserOpenTable\0\0";

    #[test]
    fn postgres_error_response() {
        let f = Fields::decode(PG_ERROR).unwrap();
        assert_eq!(f.severity(), Some("ERROR"));
        assert_eq!(f.sqlstate(), Some("42P01"));
        assert_eq!(f.message(), Some("relation \"nope\" does not exist"));
        assert_eq!(f.get(field::POSITION), Some("15"));
        assert_eq!(f.get(field::HINT), None);
        assert_eq!(f.iter().count(), 8);
        let mut out = Vec::new();
        encode_fields_body(&mut out, f.iter());
        assert_eq!(out, PG_ERROR);
    }

    #[test]
    fn severity_falls_back_to_the_localized_field() {
        let f = Fields::decode(b"SFEHLER\0C42501\0Mverboten\0\0").unwrap();
        assert_eq!(f.severity(), Some("FEHLER"));
        let f = Fields::decode(b"SFEHLER\0VERROR\0\0").unwrap();
        assert_eq!(f.severity(), Some("ERROR"));
    }

    #[test]
    fn gateway_error() {
        let mut out = Vec::new();
        encode_error(
            &mut out,
            "ERROR",
            "42501",
            "denied by policy",
            Some("rule prod-no-ddl"),
            Some("ask a DBA"),
        );
        let expected_body: &[u8] =
            b"SERROR\0VERROR\0C42501\0Mdenied by policy\0Drule prod-no-ddl\0Hask a DBA\0\0";
        assert_eq!(out[0], b'E');
        assert_eq!(
            &out[1..5],
            &((expected_body.len() + 4) as i32).to_be_bytes()
        );
        assert_eq!(&out[5..], expected_body);
    }

    #[test]
    fn gateway_notice_without_detail() {
        let mut out = Vec::new();
        encode_notice(&mut out, "NOTICE", "01000", "waiting for review", None);
        assert_eq!(
            &out[5..],
            b"SNOTICE\0VNOTICE\0C01000\0Mwaiting for review\0\0"
        );
        assert_eq!(out[0], b'N');
    }

    #[test]
    fn text_cannot_forge_fields() {
        let mut out = Vec::new();
        encode_error(
            &mut out,
            "ERROR",
            "42501",
            "denied: \0C00000\0Mall good",
            None,
            None,
        );
        let f = Fields::decode(&out[5..]).unwrap();
        assert_eq!(f.sqlstate(), Some("42501"));
        assert_eq!(f.message(), Some("denied: "));
    }

    #[test]
    fn malformed_fields_are_refused() {
        for body in [
            &b""[..],
            b"SERROR\0",
            b"SERROR",
            b"S\xff\0\0",
            b"SERROR\0\0x",
        ] {
            assert!(Fields::decode(body).is_err(), "{body:?}");
        }
        assert_eq!(Fields::decode(b"\0").map(|f| f.iter().count()), Ok(0));
    }
}
