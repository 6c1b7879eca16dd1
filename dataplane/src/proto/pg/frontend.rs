//! Codec stage, client to server: the tagged messages a frontend sends after start-up.
//!
//! Formats from <https://www.postgresql.org/docs/current/protocol-message-formats.html>
//! (all after `Byte1 tag | Int32 length`):
//!
//! ```text
//! 'Q' Query          String sql
//! 'P' Parse          String statement | String sql | Int16 n | Int32 type oid × n
//! 'B' Bind           String portal | String statement | Int16 f | Int16 format × f
//!                    | Int16 n | (Int32 len, -1 = NULL | Byte len) × n | Int16 r | Int16 format × r
//! 'E' Execute        String portal | Int32 max rows (0 = all)
//! 'D' Describe       Byte1 'S' or 'P' | String name
//! 'C' Close          Byte1 'S' or 'P' | String name
//! 'S' Sync  'H' Flush  'X' Terminate  'c' CopyDone     (empty)
//! 'd' CopyData       Byten data
//! 'f' CopyFail       String message
//! 'F' FunctionCall   Int32 oid | Int16 f | Int16 format × f | Int16 n | (Int32 len | Byte len) × n
//!                    | Int16 result format
//! 'p' PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse (see `auth.rs`)
//! ```
//!
//! Decoding borrows every string and value from the frame; it allocates only the small vectors
//! of parameter types, formats and values, each bounded by the bytes actually received.

use super::wire::{self, Cursor};
use super::{Frame, ProtocolError};

/// A message from client to server, borrowing from the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    /// 'Q': simple query, possibly several statements.
    Query {
        /// The query text.
        sql: &'a str,
    },
    /// 'P': prepare a statement (extended query protocol).
    Parse {
        /// Prepared statement name; empty is the unnamed statement.
        name: &'a str,
        /// The statement text, with `$n` placeholders.
        sql: &'a str,
        /// Parameter type OIDs the client fixes; 0 leaves one to the server.
        param_types: Vec<u32>,
    },
    /// 'B': bind parameter values to a prepared statement, making a portal.
    Bind(Bind<'a>),
    /// 'E': run a portal.
    Execute {
        /// Portal name; empty is the unnamed portal.
        portal: &'a str,
        /// Row limit; 0 (or less, as PostgreSQL reads it) means no limit.
        max_rows: i32,
    },
    /// 'D': describe a statement (`b'S'`) or portal (`b'P'`).
    Describe {
        /// `b'S'` or `b'P'`.
        kind: u8,
        /// Statement or portal name.
        name: &'a str,
    },
    /// 'C': close a statement (`b'S'`) or portal (`b'P'`).
    Close {
        /// `b'S'` or `b'P'`.
        kind: u8,
        /// Statement or portal name.
        name: &'a str,
    },
    /// 'S': end of an extended-query batch.
    Sync,
    /// 'H': ask the server to send what it has buffered.
    Flush,
    /// 'X': the client is leaving.
    Terminate,
    /// 'd': COPY FROM STDIN data.
    CopyData(&'a [u8]),
    /// 'c': end of COPY FROM STDIN data.
    CopyDone,
    /// 'f': the client aborts COPY FROM STDIN.
    CopyFail {
        /// Why the client gave up.
        message: &'a str,
    },
    /// 'F': call a function by OID (legacy fast-path interface).
    FunctionCall {
        /// OID of the function.
        function_oid: u32,
        /// Argument format codes: none (all text), one (for all) or one per argument.
        arg_formats: Vec<i16>,
        /// Argument values; `None` is SQL NULL.
        args: Vec<Option<&'a [u8]>>,
        /// Format of the result: 0 text, 1 binary.
        result_format: i16,
    },
    /// 'p': PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse; meaning depends
    /// on the auth exchange, so the raw body is kept (read it with `password_text`,
    /// `SaslInitialResponse::decode`, ...).
    Password(&'a [u8]),
}

/// The body of a Bind message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Destination portal; empty is the unnamed portal.
    pub portal: &'a str,
    /// Source prepared statement; empty is the unnamed statement.
    pub statement: &'a str,
    /// Parameter format codes: none (all text), one (for all) or one per parameter.
    pub param_formats: Vec<i16>,
    /// Parameter values as sent; `None` is SQL NULL.
    pub params: Vec<Option<&'a [u8]>>,
    /// Result column format codes: none (all text), one (for all) or one per column.
    pub result_formats: Vec<i16>,
}

impl Bind<'_> {
    /// Format code of parameter `index` (0 text, 1 binary), applying the none/one/each rule.
    pub fn param_format(&self, index: usize) -> i16 {
        match self.param_formats.as_slice() {
            [one] => *one,
            each => each.get(index).copied().unwrap_or(0),
        }
    }
}

impl<'a> FrontendMessage<'a> {
    /// Decodes a frame the client sent.
    pub fn decode(frame: Frame<'a>) -> Result<Self, ProtocolError> {
        let mut cur = Cursor::new(frame.body);
        let msg = match frame.tag {
            b'Q' => FrontendMessage::Query { sql: cur.cstr()? },
            b'P' => {
                let name = cur.cstr()?;
                let sql = cur.cstr()?;
                let n = cur.count16(4)?;
                let mut param_types = Vec::with_capacity(n);
                for _ in 0..n {
                    param_types.push(cur.u32()?);
                }
                FrontendMessage::Parse {
                    name,
                    sql,
                    param_types,
                }
            }
            b'B' => {
                let portal = cur.cstr()?;
                let statement = cur.cstr()?;
                let param_formats = formats(&mut cur)?;
                let params = values(&mut cur)?;
                check_format_count(param_formats.len(), params.len())?;
                let result_formats = formats(&mut cur)?;
                FrontendMessage::Bind(Bind {
                    portal,
                    statement,
                    param_formats,
                    params,
                    result_formats,
                })
            }
            b'E' => FrontendMessage::Execute {
                portal: cur.cstr()?,
                max_rows: cur.i32()?,
            },
            b'D' => FrontendMessage::Describe {
                kind: target(&mut cur)?,
                name: cur.cstr()?,
            },
            b'C' => FrontendMessage::Close {
                kind: target(&mut cur)?,
                name: cur.cstr()?,
            },
            b'S' => FrontendMessage::Sync,
            b'H' => FrontendMessage::Flush,
            b'X' => FrontendMessage::Terminate,
            b'd' => FrontendMessage::CopyData(cur.rest()),
            b'c' => FrontendMessage::CopyDone,
            b'f' => FrontendMessage::CopyFail {
                message: cur.cstr()?,
            },
            b'F' => {
                let function_oid = cur.u32()?;
                let arg_formats = formats(&mut cur)?;
                let args = values(&mut cur)?;
                check_format_count(arg_formats.len(), args.len())?;
                let result_format = wire::format_code(cur.i16()?)?;
                FrontendMessage::FunctionCall {
                    function_oid,
                    arg_formats,
                    args,
                    result_format,
                }
            }
            b'p' => FrontendMessage::Password(cur.rest()),
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        cur.finish()?;
        Ok(msg)
    }

    /// The message's type byte.
    pub fn tag(&self) -> u8 {
        match self {
            FrontendMessage::Query { .. } => b'Q',
            FrontendMessage::Parse { .. } => b'P',
            FrontendMessage::Bind(_) => b'B',
            FrontendMessage::Execute { .. } => b'E',
            FrontendMessage::Describe { .. } => b'D',
            FrontendMessage::Close { .. } => b'C',
            FrontendMessage::Sync => b'S',
            FrontendMessage::Flush => b'H',
            FrontendMessage::Terminate => b'X',
            FrontendMessage::CopyData(_) => b'd',
            FrontendMessage::CopyDone => b'c',
            FrontendMessage::CopyFail { .. } => b'f',
            FrontendMessage::FunctionCall { .. } => b'F',
            FrontendMessage::Password(_) => b'p',
        }
    }

    /// Appends the message, tag and length included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        wire::message(out, self.tag(), |out| match self {
            FrontendMessage::Query { sql } => wire::put_cstr(out, sql),
            FrontendMessage::Parse {
                name,
                sql,
                param_types,
            } => {
                wire::put_cstr(out, name);
                wire::put_cstr(out, sql);
                wire::put_array16(out, param_types, |out, t| wire::put_u32(out, *t));
            }
            FrontendMessage::Bind(b) => {
                wire::put_cstr(out, b.portal);
                wire::put_cstr(out, b.statement);
                wire::put_array16(out, &b.param_formats, |out, f| wire::put_i16(out, *f));
                wire::put_array16(out, &b.params, |out, v| wire::put_value(out, *v));
                wire::put_array16(out, &b.result_formats, |out, f| wire::put_i16(out, *f));
            }
            FrontendMessage::Execute { portal, max_rows } => {
                wire::put_cstr(out, portal);
                wire::put_i32(out, *max_rows);
            }
            FrontendMessage::Describe { kind, name } | FrontendMessage::Close { kind, name } => {
                out.push(*kind);
                wire::put_cstr(out, name);
            }
            FrontendMessage::Sync
            | FrontendMessage::Flush
            | FrontendMessage::Terminate
            | FrontendMessage::CopyDone => {}
            FrontendMessage::CopyData(data) | FrontendMessage::Password(data) => {
                out.extend_from_slice(data)
            }
            FrontendMessage::CopyFail { message } => wire::put_cstr(out, message),
            FrontendMessage::FunctionCall {
                function_oid,
                arg_formats,
                args,
                result_format,
            } => {
                wire::put_u32(out, *function_oid);
                wire::put_array16(out, arg_formats, |out, f| wire::put_i16(out, *f));
                wire::put_array16(out, args, |out, v| wire::put_value(out, *v));
                wire::put_i16(out, *result_format);
            }
        });
    }
}

/// `Int16 n | Int16 format × n`, each format 0 or 1.
fn formats(cur: &mut Cursor<'_>) -> Result<Vec<i16>, ProtocolError> {
    let n = cur.count16(2)?;
    let mut formats = Vec::with_capacity(n);
    for _ in 0..n {
        formats.push(wire::format_code(cur.i16()?)?);
    }
    Ok(formats)
}

/// `Int16 n | (Int32 len | Byte len) × n`.
fn values<'a>(cur: &mut Cursor<'a>) -> Result<Vec<Option<&'a [u8]>>, ProtocolError> {
    let n = cur.count16(4)?;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        values.push(cur.value()?);
    }
    Ok(values)
}

/// There must be no format code, one for all, or one per value (PostgreSQL refuses the rest).
fn check_format_count(formats: usize, values: usize) -> Result<(), ProtocolError> {
    if formats <= 1 || formats == values {
        Ok(())
    } else {
        Err(ProtocolError::Malformed(
            "format code count matches neither 0, 1 nor the value count",
        ))
    }
}

/// Describe and Close name a statement (`S`) or a portal (`P`).
fn target(cur: &mut Cursor<'_>) -> Result<u8, ProtocolError> {
    match cur.u8()? {
        kind @ (b'S' | b'P') => Ok(kind),
        _ => Err(ProtocolError::Malformed(
            "Describe or Close target is neither 'S' nor 'P'",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pg::frame;

    fn decode(bytes: &[u8]) -> Result<FrontendMessage<'_>, ProtocolError> {
        let f = frame(bytes, 1 << 20)?.ok_or(ProtocolError::Malformed("incomplete test input"))?;
        assert_eq!(
            f.wire_len(),
            bytes.len(),
            "test input holds one whole message"
        );
        FrontendMessage::decode(f)
    }

    fn encode(m: &FrontendMessage<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    /// `psql -c "select 1;"` (psql 15).
    const PSQL_QUERY: &[u8] = b"Q\x00\x00\x00\x0eselect 1;\x00";

    #[test]
    fn psql_simple_query() {
        let m = decode(PSQL_QUERY).unwrap();
        assert_eq!(m, FrontendMessage::Query { sql: "select 1;" });
        assert_eq!(encode(&m), PSQL_QUERY);
    }

    #[test]
    fn parse_bind_describe_execute_close_sync() {
        // The batch a driver sends for `select $1::int4 + 1` with the text parameter "41"
        // and binary results.
        let parse = b"P\x00\x00\x00\x21s1\x00select $1::int4 + 1\x00\x00\x01\x00\x00\x00\x17";
        assert_eq!(
            decode(parse).unwrap(),
            FrontendMessage::Parse {
                name: "s1",
                sql: "select $1::int4 + 1",
                param_types: vec![23]
            }
        );
        let bind = b"B\x00\x00\x00\x18\x00s1\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x0241\x00\x01\x00\x01";
        let m = decode(bind).unwrap();
        let FrontendMessage::Bind(b) = &m else {
            panic!("{m:?}")
        };
        assert_eq!(b.portal, "");
        assert_eq!(b.statement, "s1");
        assert_eq!(b.param_formats, [0]);
        assert_eq!(b.params, [Some(&b"41"[..])]);
        assert_eq!(b.result_formats, [1]);
        assert_eq!(b.param_format(0), 0);
        assert_eq!(encode(&m), bind);
        assert_eq!(
            decode(b"D\x00\x00\x00\x06P\x00").unwrap(),
            FrontendMessage::Describe {
                kind: b'P',
                name: ""
            }
        );
        assert_eq!(
            decode(b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00").unwrap(),
            FrontendMessage::Execute {
                portal: "",
                max_rows: 0
            }
        );
        assert_eq!(
            decode(b"C\x00\x00\x00\x08Ss1\x00").unwrap(),
            FrontendMessage::Close {
                kind: b'S',
                name: "s1"
            }
        );
        assert_eq!(decode(b"S\x00\x00\x00\x04").unwrap(), FrontendMessage::Sync);
        assert_eq!(
            decode(b"H\x00\x00\x00\x04").unwrap(),
            FrontendMessage::Flush
        );
        assert_eq!(
            decode(b"X\x00\x00\x00\x04").unwrap(),
            FrontendMessage::Terminate
        );
    }

    #[test]
    fn bind_with_null_and_many_parameters() {
        let b = Bind {
            portal: "p",
            statement: "",
            param_formats: vec![],
            params: vec![None, Some(b""), Some(b"x")],
            result_formats: vec![],
        };
        let bytes = encode(&FrontendMessage::Bind(b.clone()));
        assert_eq!(decode(&bytes).unwrap(), FrontendMessage::Bind(b));
        // 40000 parameters: more than i16::MAX, as libpq allows; the count is unsigned.
        let many = Bind {
            params: vec![None; 40_000],
            ..Bind {
                portal: "",
                statement: "",
                param_formats: vec![1],
                params: vec![],
                result_formats: vec![],
            }
        };
        let bytes = encode(&FrontendMessage::Bind(many.clone()));
        assert_eq!(decode(&bytes).unwrap(), FrontendMessage::Bind(many));
    }

    #[test]
    fn copy_and_function_call() {
        for m in [
            FrontendMessage::CopyData(b"1\talice\n"),
            FrontendMessage::CopyDone,
            FrontendMessage::CopyFail {
                message: "cancelled by user",
            },
            FrontendMessage::FunctionCall {
                function_oid: 1598,
                arg_formats: vec![1],
                args: vec![Some(b"\x00\x00\x00\x01"), None],
                result_format: 1,
            },
            FrontendMessage::Password(b"secret\0"),
        ] {
            assert_eq!(decode(&encode(&m)).unwrap(), m);
        }
        assert_eq!(encode(&FrontendMessage::CopyDone), b"c\x00\x00\x00\x04");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"Q\x00\x00\x00\x0eselect 1;\x00" as &[u8],
                "valid control case",
            ),
            (b"Q\x00\x00\x00\x0dselect 1;", "no NUL"),
            (b"Q\x00\x00\x00\x0fselect 1;\x00x", "trailing byte"),
            (b"S\x00\x00\x00\x05x", "Sync with a body"),
            (b"D\x00\x00\x00\x06X\x00", "Describe of neither S nor P"),
            (b"E\x00\x00\x00\x07\x00\x00\x00", "Execute without max rows"),
            (
                b"P\x00\x00\x00\x0a\x00\x00\x00\x02\x00\x00",
                "two OIDs announced, two bytes sent",
            ),
            (
                b"B\x00\x00\x00\x0e\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe",
                "length -2",
            ),
            (
                b"B\x00\x00\x00\x0e\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00",
                "format code 2",
            ),
            (
                b"B\x00\x00\x00\x12\x00\x00\x00\x02\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff",
                "2 formats for 1 value",
            ),
            (b"Z\x00\x00\x00\x04", "backend tag"),
        ];
        for (i, (bytes, why)) in cases.iter().enumerate() {
            assert_eq!(decode(bytes).is_ok(), i == 0, "{why}");
        }
        assert_eq!(
            decode(b"Z\x00\x00\x00\x04"),
            Err(ProtocolError::UnknownTag(b'Z'))
        );
    }
}
