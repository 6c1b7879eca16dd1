//! Codec stage, server to client: the tagged messages a backend sends.
//!
//! Formats from <https://www.postgresql.org/docs/current/protocol-message-formats.html>
//! (all after `Byte1 tag | Int32 length`):
//!
//! ```text
//! 'R' Authentication*         see `auth.rs`
//! 'K' BackendKeyData          Int32 process id | Byten secret key (4 bytes in 3.0, up to 256 in 3.2)
//! '2' BindComplete  '3' CloseComplete  '1' ParseComplete  's' PortalSuspended
//! 'I' EmptyQueryResponse  'n' NoData  'c' CopyDone             (empty)
//! 'C' CommandComplete         String tag, e.g. "SELECT 1"
//! 'd' CopyData                Byten data
//! 'G' CopyInResponse, 'H' CopyOutResponse, 'W' CopyBothResponse
//!                             Int8 format | Int16 n | Int16 format × n
//! 'D' DataRow, 'T' RowDescription                              see `rows.rs`
//! 'E' ErrorResponse, 'N' NoticeResponse                        see `fields.rs`
//! 'V' FunctionCallResponse    Int32 len (-1 = NULL) | Byte len
//! 'v' NegotiateProtocolVersion Int32 newest minor | Int32 n | String option × n
//! 'A' NotificationResponse    Int32 process id | String channel | String payload
//! 't' ParameterDescription    Int16 n | Int32 type OID × n
//! 'S' ParameterStatus         String name | String value
//! 'Z' ReadyForQuery           Byte1 'I' idle, 'T' in transaction, 'E' failed transaction
//! ```

use super::auth::Authentication;
use super::fields::Fields;
use super::rows::{self, DataRow, FieldDescription};
use super::startup::{MAX_CANCEL_KEY_LEN, MIN_CANCEL_KEY_LEN};
use super::wire::{self, Cursor};
use super::{Frame, ProtocolError};

/// A message from server to client, borrowing from the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage<'a> {
    /// 'R': an authentication request or its outcome.
    Authentication(Authentication<'a>),
    /// 'K': what a client needs to cancel a query of this session later.
    BackendKeyData {
        /// Backend process id.
        process_id: i32,
        /// Secret key: 4 bytes in protocol 3.0, up to 256 in 3.2.
        secret_key: &'a [u8],
    },
    /// '2': Bind done.
    BindComplete,
    /// '3': Close done.
    CloseComplete,
    /// 'C': a statement finished.
    CommandComplete {
        /// Command tag, e.g. `SELECT 1`, `INSERT 0 5`.
        tag: &'a str,
    },
    /// 'd': COPY TO STDOUT data.
    CopyData(&'a [u8]),
    /// 'c': end of COPY TO STDOUT data.
    CopyDone,
    /// 'G': the server is ready for COPY FROM STDIN data.
    CopyInResponse(CopyResponse<'a>),
    /// 'H': COPY TO STDOUT data follows.
    CopyOutResponse(CopyResponse<'a>),
    /// 'W': both directions carry COPY data (replication).
    CopyBothResponse(CopyResponse<'a>),
    /// 'D': one result row.
    DataRow(DataRow<'a>),
    /// 'I': the query string was empty.
    EmptyQueryResponse,
    /// 'E': an error.
    ErrorResponse(Fields<'a>),
    /// 'N': a notice.
    NoticeResponse(Fields<'a>),
    /// 'V': result of a FunctionCall; `None` is SQL NULL.
    FunctionCallResponse(Option<&'a [u8]>),
    /// 'v': the server supports an older minor version or not all `_pq_.` options.
    NegotiateProtocolVersion {
        /// Newest minor protocol version the server supports.
        newest_minor: i32,
        /// Protocol options the server did not recognise.
        unrecognized: Vec<&'a str>,
    },
    /// 'n': the statement returns no rows.
    NoData,
    /// 'A': a NOTIFY arrived.
    NotificationResponse {
        /// Process id of the notifying backend.
        process_id: i32,
        /// Channel name.
        channel: &'a str,
        /// Payload string.
        payload: &'a str,
    },
    /// 't': parameter types of a prepared statement.
    ParameterDescription(Vec<u32>),
    /// 'S': a run-time parameter's value (sent at start-up and when it changes).
    ParameterStatus {
        /// Parameter name, e.g. `server_version`.
        name: &'a str,
        /// Its value.
        value: &'a str,
    },
    /// '1': Parse done.
    ParseComplete,
    /// 's': Execute hit its row limit.
    PortalSuspended,
    /// 'Z': ready for the next query.
    ReadyForQuery {
        /// `b'I'` idle, `b'T'` in a transaction, `b'E'` in a failed transaction.
        status: u8,
    },
    /// 'T': the columns of the rows that follow.
    RowDescription(Vec<FieldDescription<'a>>),
}

/// Body of CopyInResponse, CopyOutResponse and CopyBothResponse, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyResponse<'a> {
    /// Overall format: 0 text, 1 binary.
    pub format: u8,
    /// Per-column format codes, `Int16` each, as received (checked to be 0 or 1).
    column_formats: &'a [u8],
}

impl<'a> CopyResponse<'a> {
    /// Decodes the body of a 'G', 'H' or 'W' message.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut cur = Cursor::new(body);
        let format = cur.u8()?;
        if format > 1 {
            return Err(ProtocolError::Malformed(
                "COPY format is neither 0 (text) nor 1 (binary)",
            ));
        }
        let n = cur.count16(2)?;
        let column_formats = cur.bytes(n * 2)?;
        let mut formats = Cursor::new(column_formats);
        for _ in 0..n {
            wire::format_code(formats.i16()?)?;
        }
        cur.finish()?;
        Ok(CopyResponse {
            format,
            column_formats,
        })
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        self.column_formats.len() / 2
    }

    /// Per-column format codes (0 text, 1 binary).
    pub fn column_formats(&self) -> impl ExactSizeIterator<Item = i16> + 'a {
        self.column_formats
            .chunks_exact(2)
            .map(|c| <[u8; 2]>::try_from(c).map_or(0, i16::from_be_bytes))
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.format);
        // At most 65535: `decode` read the count as an unsigned Int16.
        let n = u16::try_from(self.columns()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(self.column_formats);
    }
}

impl<'a> BackendMessage<'a> {
    /// Decodes a frame the server sent.
    pub fn decode(frame: Frame<'a>) -> Result<Self, ProtocolError> {
        let body = frame.body;
        // Messages whose layout lives in a sibling module check their own body.
        match frame.tag {
            b'R' => return Authentication::decode(body).map(BackendMessage::Authentication),
            b'D' => return DataRow::decode(body).map(BackendMessage::DataRow),
            b'T' => return rows::decode_row_description(body).map(BackendMessage::RowDescription),
            b'E' => return Fields::decode(body).map(BackendMessage::ErrorResponse),
            b'N' => return Fields::decode(body).map(BackendMessage::NoticeResponse),
            b'G' => return CopyResponse::decode(body).map(BackendMessage::CopyInResponse),
            b'H' => return CopyResponse::decode(body).map(BackendMessage::CopyOutResponse),
            b'W' => return CopyResponse::decode(body).map(BackendMessage::CopyBothResponse),
            _ => {}
        }
        let mut cur = Cursor::new(body);
        let msg = match frame.tag {
            b'K' => {
                let process_id = cur.i32()?;
                let secret_key = cur.rest();
                if !(MIN_CANCEL_KEY_LEN..=MAX_CANCEL_KEY_LEN).contains(&secret_key.len()) {
                    return Err(ProtocolError::Malformed("cancel key is not 4 to 256 bytes"));
                }
                BackendMessage::BackendKeyData {
                    process_id,
                    secret_key,
                }
            }
            b'2' => BackendMessage::BindComplete,
            b'3' => BackendMessage::CloseComplete,
            b'C' => BackendMessage::CommandComplete { tag: cur.cstr()? },
            b'd' => BackendMessage::CopyData(cur.rest()),
            b'c' => BackendMessage::CopyDone,
            b'I' => BackendMessage::EmptyQueryResponse,
            b'V' => BackendMessage::FunctionCallResponse(cur.value()?),
            b'v' => {
                let newest_minor = cur.i32()?;
                let n = cur.count32(1)?;
                let mut unrecognized = Vec::with_capacity(n);
                for _ in 0..n {
                    unrecognized.push(cur.cstr()?);
                }
                BackendMessage::NegotiateProtocolVersion {
                    newest_minor,
                    unrecognized,
                }
            }
            b'n' => BackendMessage::NoData,
            b'A' => BackendMessage::NotificationResponse {
                process_id: cur.i32()?,
                channel: cur.cstr()?,
                payload: cur.cstr()?,
            },
            b't' => {
                let n = cur.count16(4)?;
                let mut types = Vec::with_capacity(n);
                for _ in 0..n {
                    types.push(cur.u32()?);
                }
                BackendMessage::ParameterDescription(types)
            }
            b'S' => BackendMessage::ParameterStatus {
                name: cur.cstr()?,
                value: cur.cstr()?,
            },
            b'1' => BackendMessage::ParseComplete,
            b's' => BackendMessage::PortalSuspended,
            b'Z' => match cur.u8()? {
                status @ (b'I' | b'T' | b'E') => BackendMessage::ReadyForQuery { status },
                _ => {
                    return Err(ProtocolError::Malformed(
                        "ReadyForQuery status is not I, T or E",
                    ))
                }
            },
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        cur.finish()?;
        Ok(msg)
    }

    /// The message's type byte.
    pub fn tag(&self) -> u8 {
        match self {
            BackendMessage::Authentication(_) => b'R',
            BackendMessage::BackendKeyData { .. } => b'K',
            BackendMessage::BindComplete => b'2',
            BackendMessage::CloseComplete => b'3',
            BackendMessage::CommandComplete { .. } => b'C',
            BackendMessage::CopyData(_) => b'd',
            BackendMessage::CopyDone => b'c',
            BackendMessage::CopyInResponse(_) => b'G',
            BackendMessage::CopyOutResponse(_) => b'H',
            BackendMessage::CopyBothResponse(_) => b'W',
            BackendMessage::DataRow(_) => b'D',
            BackendMessage::EmptyQueryResponse => b'I',
            BackendMessage::ErrorResponse(_) => b'E',
            BackendMessage::NoticeResponse(_) => b'N',
            BackendMessage::FunctionCallResponse(_) => b'V',
            BackendMessage::NegotiateProtocolVersion { .. } => b'v',
            BackendMessage::NoData => b'n',
            BackendMessage::NotificationResponse { .. } => b'A',
            BackendMessage::ParameterDescription(_) => b't',
            BackendMessage::ParameterStatus { .. } => b'S',
            BackendMessage::ParseComplete => b'1',
            BackendMessage::PortalSuspended => b's',
            BackendMessage::ReadyForQuery { .. } => b'Z',
            BackendMessage::RowDescription(_) => b'T',
        }
    }

    /// Appends the message, tag and length included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        wire::message(out, self.tag(), |out| match self {
            BackendMessage::Authentication(auth) => auth.encode_body(out),
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            } => {
                wire::put_i32(out, *process_id);
                out.extend_from_slice(secret_key);
            }
            BackendMessage::BindComplete
            | BackendMessage::CloseComplete
            | BackendMessage::CopyDone
            | BackendMessage::EmptyQueryResponse
            | BackendMessage::NoData
            | BackendMessage::ParseComplete
            | BackendMessage::PortalSuspended => {}
            BackendMessage::CommandComplete { tag } => wire::put_cstr(out, tag),
            BackendMessage::CopyData(data) => out.extend_from_slice(data),
            BackendMessage::CopyInResponse(c)
            | BackendMessage::CopyOutResponse(c)
            | BackendMessage::CopyBothResponse(c) => c.encode_body(out),
            BackendMessage::DataRow(row) => out.extend_from_slice(row.as_bytes()),
            BackendMessage::ErrorResponse(f) | BackendMessage::NoticeResponse(f) => {
                out.extend_from_slice(f.as_bytes())
            }
            BackendMessage::FunctionCallResponse(v) => wire::put_value(out, *v),
            BackendMessage::NegotiateProtocolVersion {
                newest_minor,
                unrecognized,
            } => {
                wire::put_i32(out, *newest_minor);
                let n = unrecognized.len().min(i32::MAX as usize);
                wire::put_i32(out, i32::try_from(n).unwrap_or(i32::MAX));
                for option in unrecognized.iter().take(n) {
                    wire::put_cstr(out, option);
                }
            }
            BackendMessage::NotificationResponse {
                process_id,
                channel,
                payload,
            } => {
                wire::put_i32(out, *process_id);
                wire::put_cstr(out, channel);
                wire::put_cstr(out, payload);
            }
            BackendMessage::ParameterDescription(types) => {
                wire::put_array16(out, types, |out, t| wire::put_u32(out, *t))
            }
            BackendMessage::ParameterStatus { name, value } => {
                wire::put_cstr(out, name);
                wire::put_cstr(out, value);
            }
            BackendMessage::ReadyForQuery { status } => out.push(*status),
            BackendMessage::RowDescription(fields) => {
                rows::encode_row_description_body(out, fields)
            }
        });
    }
}

/// Writes ParameterStatus (`server_version`, `client_encoding`, ... as the gateway reports them).
pub fn encode_parameter_status(out: &mut Vec<u8>, name: &str, value: &str) {
    BackendMessage::ParameterStatus { name, value }.encode(out);
}

/// Writes BackendKeyData with the gateway's own process id and key for this client (the
/// upstream's key stays with the gateway).
pub fn encode_backend_key_data(out: &mut Vec<u8>, process_id: i32, secret_key: &[u8]) {
    BackendMessage::BackendKeyData {
        process_id,
        secret_key,
    }
    .encode(out);
}

/// Writes ReadyForQuery with `status` `b'I'`, `b'T'` or `b'E'`.
pub fn encode_ready_for_query(out: &mut Vec<u8>, status: u8) {
    BackendMessage::ReadyForQuery { status }.encode(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pg::frame;

    /// Decodes every message in `bytes`, checking each re-encodes to the bytes received.
    fn decode_all(bytes: &[u8]) -> Vec<BackendMessage<'_>> {
        let mut rest = bytes;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let f = frame(rest, 1 << 20).unwrap().expect("whole message");
            let m = BackendMessage::decode(f).unwrap();
            let mut again = Vec::new();
            m.encode(&mut again);
            assert_eq!(again, &rest[..f.wire_len()], "{m:?}");
            rest = &rest[f.wire_len()..];
            out.push(m);
        }
        out
    }

    #[test]
    fn postgres_login_tail() {
        // AuthenticationOk, two ParameterStatus, BackendKeyData, ReadyForQuery from PostgreSQL 15.
        let bytes = b"R\x00\x00\x00\x08\x00\x00\x00\x00\
S\x00\x00\x00\x19client_encoding\x00UTF8\x00\
S\x00\x00\x00\x32server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00\
K\x00\x00\x00\x0c\x00\x00\x22\x3c\xb5\x70\x99\xe6\
Z\x00\x00\x00\x05I";
        let msgs = decode_all(bytes);
        assert_eq!(
            msgs,
            [
                BackendMessage::Authentication(Authentication::Ok),
                BackendMessage::ParameterStatus {
                    name: "client_encoding",
                    value: "UTF8"
                },
                BackendMessage::ParameterStatus {
                    name: "server_version",
                    value: "15.18 (Debian 15.18-0+deb12u1)"
                },
                BackendMessage::BackendKeyData {
                    process_id: 8764,
                    secret_key: b"\xb5\x70\x99\xe6"
                },
                BackendMessage::ReadyForQuery { status: b'I' },
            ]
        );
        let mut out = Vec::new();
        encode_parameter_status(&mut out, "client_encoding", "UTF8");
        encode_backend_key_data(&mut out, 8764, b"\xb5\x70\x99\xe6");
        encode_ready_for_query(&mut out, b'I');
        assert_eq!(out, [&bytes[9..35], &bytes[86..]].concat());
    }

    #[test]
    fn postgres_extended_query_answer() {
        // ParseComplete, BindComplete, RowDescription, DataRow (binary int4 42),
        // CommandComplete, CloseComplete, ReadyForQuery from PostgreSQL 15.
        let bytes = b"1\x00\x00\x00\x042\x00\x00\x00\x04\
T\x00\x00\x00\x21\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x01\
D\x00\x00\x00\x0e\x00\x01\x00\x00\x00\x04\x00\x00\x00\x2a\
C\x00\x00\x00\x0dSELECT 1\x00\
3\x00\x00\x00\x04Z\x00\x00\x00\x05I";
        let msgs = decode_all(bytes);
        assert_eq!(msgs[0], BackendMessage::ParseComplete);
        assert_eq!(msgs[1], BackendMessage::BindComplete);
        let BackendMessage::RowDescription(fields) = &msgs[2] else {
            panic!("{:?}", msgs[2])
        };
        assert_eq!(
            (fields[0].name, fields[0].type_oid, fields[0].format),
            ("?column?", 23, 1)
        );
        let BackendMessage::DataRow(row) = &msgs[3] else {
            panic!("{:?}", msgs[3])
        };
        assert_eq!(row.iter().next(), Some(Ok(Some(&42i32.to_be_bytes()[..]))));
        assert_eq!(msgs[4], BackendMessage::CommandComplete { tag: "SELECT 1" });
        assert_eq!(msgs[5], BackendMessage::CloseComplete);
        assert_eq!(msgs[6], BackendMessage::ReadyForQuery { status: b'I' });
    }

    #[test]
    fn postgres_notice_and_empty_query() {
        let bytes = b"N\x00\x00\x00\x6fSNOTICE\x00VNOTICE\x00C00000\x00Mtable \"nope\" does not exist, skipping\x00Ftablecmds.c\x00L1310\x00RDropErrorMsgNonExistent\x00\x00\
C\x00\x00\x00\x0fDROP TABLE\x00I\x00\x00\x00\x04";
        let msgs = decode_all(bytes);
        let BackendMessage::NoticeResponse(f) = &msgs[0] else {
            panic!("{:?}", msgs[0])
        };
        assert_eq!(f.severity(), Some("NOTICE"));
        assert_eq!(f.sqlstate(), Some("00000"));
        assert_eq!(msgs[2], BackendMessage::EmptyQueryResponse);
    }

    #[test]
    fn copy_responses() {
        let body = b"\x00\x00\x02\x00\x00\x00\x01";
        let c = CopyResponse::decode(body).unwrap();
        assert_eq!((c.format, c.columns()), (0, 2));
        assert_eq!(c.column_formats().collect::<Vec<_>>(), [0, 1]);
        for tag in [b'G', b'H', b'W'] {
            let m = BackendMessage::decode(Frame { tag, body }).unwrap();
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(&out[5..], body);
        }
        for bad in [
            &b"\x02\x00\x00"[..],
            b"\x00\x00\x01\x00\x05",
            b"\x00\x00\x02\x00\x00",
            b"\x00\x00\x00\x00",
        ] {
            assert!(CopyResponse::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn other_backend_messages() {
        let cases = [
            BackendMessage::FunctionCallResponse(None),
            BackendMessage::FunctionCallResponse(Some(b"\x00\x01")),
            BackendMessage::NegotiateProtocolVersion {
                newest_minor: 0,
                unrecognized: vec!["_pq_.compression"],
            },
            BackendMessage::NotificationResponse {
                process_id: 7,
                channel: "jobs",
                payload: "42",
            },
            BackendMessage::ParameterDescription(vec![23, 25]),
            BackendMessage::NoData,
            BackendMessage::PortalSuspended,
            BackendMessage::CopyData(b"1\talice\n"),
            BackendMessage::CopyDone,
        ];
        for m in cases {
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(decode_all(&out), [m]);
        }
    }

    #[test]
    fn malformed_backend_messages() {
        let cases: &[(u8, &[u8])] = &[
            (b'Z', b"X"),
            (b'Z', b"II"),
            (b'K', b"\x00\x00\x00\x01abc"),
            (b'v', b"\x00\x00\x00\x00\xff\xff\xff\xff"),
            (b'v', b"\x00\x00\x00\x00\x00\x00\x00\x02a\x00"),
            (b't', b"\x00\x01\x00\x00"),
            (b'1', b"x"),
            (b'V', b"\xff\xff\xff\xfe"),
            (b'Q', b""),
        ];
        for &(tag, body) in cases {
            assert!(
                BackendMessage::decode(Frame { tag, body }).is_err(),
                "{} {body:?}",
                tag as char
            );
        }
    }
}
