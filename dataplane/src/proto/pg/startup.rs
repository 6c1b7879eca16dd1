//! Codec stage, client side of the start-up phase: the untagged first packets of a connection.
//!
//! Before any tagged message, the client sends packets without a type byte
//! (<https://www.postgresql.org/docs/current/protocol-message-formats.html>):
//!
//! ```text
//! Int32 length (counts itself) | Int32 code | ...
//!   code 80877103  SSLRequest       (nothing follows)
//!   code 80877104  GSSENCRequest    (nothing follows)
//!   code 80877102  CancelRequest    Int32 process id | Byten secret key (4 bytes in 3.0, up to 256 in 3.2)
//!   code 3.x       StartupMessage   (String name, String value)* | Byte1 0
//! ```
//!
//! The protocol version of a StartupMessage is `major << 16 | minor`; the special requests use
//! major 1234 so no real version collides with them. Packets are capped at
//! [`MAX_STARTUP_LEN`], as PostgreSQL caps them.

use super::wire::{self, Cursor};
use super::ProtocolError;

/// Longest startup-phase packet accepted (PostgreSQL uses 10000).
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Request code of an SSLRequest.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// Request code of a GSSENCRequest.
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// Request code of a CancelRequest.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Protocol version 3.0 as a StartupMessage carries it.
pub const PROTOCOL_3_0: u32 = 3 << 16;

/// Shortest cancel key (protocol 3.0 keys are exactly 4 bytes).
pub const MIN_CANCEL_KEY_LEN: usize = 4;
/// Longest cancel key (protocol 3.2 allows up to 256 bytes).
pub const MAX_CANCEL_KEY_LEN: usize = 256;

/// One start-up phase packet from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupRequest<'a> {
    /// SSLRequest: the client asks for TLS; the answer is one byte, `S` or `N`.
    Ssl,
    /// GSSENCRequest: the client asks for GSSAPI encryption; the answer is `G` or `N`.
    GssEnc,
    /// CancelRequest, sent on a fresh connection to cancel a query running on another one.
    Cancel {
        /// Backend process id from BackendKeyData.
        process_id: i32,
        /// Secret key from BackendKeyData: 4 to 256 bytes.
        secret_key: &'a [u8],
    },
    /// StartupMessage with the protocol version and the session parameters.
    Startup(Startup<'a>),
}

/// A StartupMessage: protocol version and the client's parameters in the order sent.
///
/// Names are unique: a packet that repeats a name is refused, because PostgreSQL keeps the last
/// `user` or `database` while a reader that stops at the first would check a different one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup<'a> {
    /// `major << 16 | minor`; decoding accepts major 3 only.
    pub version: u32,
    /// `(name, value)` pairs, e.g. `("user", "alice")`, `("database", "orders")`.
    pub params: Vec<(&'a str, &'a str)>,
}

impl Startup<'_> {
    /// Value of parameter `name` (`user`, `database`, `application_name`, ...).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// Writes the packet with this version and these parameters.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_startup_version(out, self.version, &self.params);
    }
}

impl StartupRequest<'_> {
    /// Writes the packet.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            StartupRequest::Ssl => encode_ssl_request(out),
            StartupRequest::GssEnc => encode_code(out, GSSENC_REQUEST_CODE),
            StartupRequest::Cancel {
                process_id,
                secret_key,
            } => encode_cancel_request(out, *process_id, secret_key),
            StartupRequest::Startup(s) => s.encode(out),
        }
    }
}

/// Untagged start-up phase packet (client side): `Ok(Some((request, bytes_used)))`,
/// `Ok(None)` = need more bytes.
///
/// A length field below 8 is [`ProtocolError::BadLength`]; above [`MAX_STARTUP_LEN`] it is
/// [`ProtocolError::TooLong`] from the first four bytes alone.
pub fn startup(buf: &[u8]) -> Result<Option<(StartupRequest<'_>, usize)>, ProtocolError> {
    let Some(len) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let raw = i32::from_be_bytes(*len);
    let len = match usize::try_from(raw) {
        Ok(len) if len >= 8 => len,
        _ => return Err(ProtocolError::BadLength(raw)),
    };
    if len > MAX_STARTUP_LEN {
        return Err(ProtocolError::TooLong {
            len,
            max: MAX_STARTUP_LEN,
        });
    }
    let Some(packet) = buf.get(4..len) else {
        return Ok(None);
    };
    let mut cur = Cursor::new(packet);
    let request = match cur.u32()? {
        SSL_REQUEST_CODE => StartupRequest::Ssl,
        GSSENC_REQUEST_CODE => StartupRequest::GssEnc,
        CANCEL_REQUEST_CODE => {
            let process_id = cur.i32()?;
            let secret_key = cur.rest();
            if !(MIN_CANCEL_KEY_LEN..=MAX_CANCEL_KEY_LEN).contains(&secret_key.len()) {
                return Err(ProtocolError::Malformed("cancel key is not 4 to 256 bytes"));
            }
            StartupRequest::Cancel {
                process_id,
                secret_key,
            }
        }
        version if version >> 16 == 3 => StartupRequest::Startup(Startup {
            version,
            params: params(&mut cur)?,
        }),
        other => return Err(ProtocolError::UnsupportedVersion(other)),
    };
    cur.finish()?;
    Ok(Some((request, len)))
}

/// Reads `(name, value)` pairs up to the empty name that ends the list.
fn params<'a>(cur: &mut Cursor<'a>) -> Result<Vec<(&'a str, &'a str)>, ProtocolError> {
    let mut params = Vec::new();
    loop {
        let name = cur.cstr()?;
        if name.is_empty() {
            break;
        }
        params.push((name, cur.cstr()?));
    }
    let mut names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(ProtocolError::Malformed("start-up parameter given twice"));
    }
    Ok(params)
}

fn encode_code(out: &mut Vec<u8>, code: u32) {
    wire::packet(out, |out| wire::put_u32(out, code));
}

/// Writes an SSLRequest (to ask the upstream server for TLS).
pub fn encode_ssl_request(out: &mut Vec<u8>) {
    encode_code(out, SSL_REQUEST_CODE);
}

/// Writes a CancelRequest for the upstream server.
pub fn encode_cancel_request(out: &mut Vec<u8>, process_id: i32, secret_key: &[u8]) {
    wire::packet(out, |out| {
        wire::put_u32(out, CANCEL_REQUEST_CODE);
        wire::put_i32(out, process_id);
        out.extend_from_slice(secret_key);
    });
}

/// Writes a protocol 3.0 StartupMessage with `params` (the gateway's own upstream login).
pub fn encode_startup(out: &mut Vec<u8>, params: &[(&str, &str)]) {
    encode_startup_version(out, PROTOCOL_3_0, params);
}

fn encode_startup_version(out: &mut Vec<u8>, version: u32, params: &[(&str, &str)]) {
    wire::packet(out, |out| {
        wire::put_u32(out, version);
        for (name, value) in params {
            wire::put_cstr(out, name);
            wire::put_cstr(out, value);
        }
        out.push(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What psql 15 sends for `psql "host=127.0.0.1 user=alice dbname=orders"` after the
    /// server refused TLS.
    const PSQL_STARTUP: &[u8] = b"\x00\x00\x00\x3a\x00\x03\x00\x00user\x00alice\x00database\x00orders\x00application_name\x00psql\x00\x00";
    /// The SSLRequest psql 15 sends first.
    const PSQL_SSL_REQUEST: &[u8] = b"\x00\x00\x00\x08\x04\xd2\x16\x2f";

    #[test]
    fn psql_startup_message() {
        let (req, used) = startup(PSQL_STARTUP).unwrap().unwrap();
        assert_eq!(used, PSQL_STARTUP.len());
        let StartupRequest::Startup(s) = req else {
            panic!("not a StartupMessage: {req:?}")
        };
        assert_eq!(s.version, PROTOCOL_3_0);
        assert_eq!(s.get("user"), Some("alice"));
        assert_eq!(s.get("database"), Some("orders"));
        assert_eq!(s.get("application_name"), Some("psql"));
        assert_eq!(s.get("options"), None);
        let mut out = Vec::new();
        encode_startup(&mut out, &s.params);
        assert_eq!(out, PSQL_STARTUP);
    }

    #[test]
    fn psql_ssl_request() {
        assert_eq!(
            startup(PSQL_SSL_REQUEST),
            Ok(Some((StartupRequest::Ssl, 8)))
        );
        let mut out = Vec::new();
        encode_ssl_request(&mut out);
        assert_eq!(out, PSQL_SSL_REQUEST);
    }

    #[test]
    fn gssenc_request() {
        assert_eq!(
            startup(b"\x00\x00\x00\x08\x04\xd2\x16\x30"),
            Ok(Some((StartupRequest::GssEnc, 8)))
        );
    }

    #[test]
    fn cancel_request_with_3_0_and_3_2_keys() {
        let mut out = Vec::new();
        encode_cancel_request(&mut out, 8764, b"\xb5\x70\x99\xe6");
        assert_eq!(
            out,
            b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x22\x3c\xb5\x70\x99\xe6"
        );
        assert_eq!(
            startup(&out),
            Ok(Some((
                StartupRequest::Cancel {
                    process_id: 8764,
                    secret_key: b"\xb5\x70\x99\xe6"
                },
                16
            )))
        );
        let long = [7u8; 256];
        out.clear();
        encode_cancel_request(&mut out, 1, &long);
        assert!(
            matches!(startup(&out), Ok(Some((StartupRequest::Cancel { secret_key, .. }, _))) if secret_key == long)
        );
        out.clear();
        encode_cancel_request(&mut out, 1, &[7u8; 257]);
        assert!(startup(&out).is_err(), "257-byte key");
        out.clear();
        encode_cancel_request(&mut out, 1, b"abc");
        assert!(startup(&out).is_err(), "3-byte key");
    }

    #[test]
    fn partial_packet_needs_more() {
        for n in 0..PSQL_STARTUP.len() {
            assert_eq!(startup(&PSQL_STARTUP[..n]), Ok(None), "prefix of {n} bytes");
        }
    }

    #[test]
    fn second_packet_is_left_in_the_buffer() {
        let mut buf = PSQL_SSL_REQUEST.to_vec();
        buf.extend_from_slice(PSQL_STARTUP);
        let (_, used) = startup(&buf).unwrap().unwrap();
        assert!(matches!(
            startup(&buf[used..]),
            Ok(Some((StartupRequest::Startup(_), _)))
        ));
    }

    #[test]
    fn lengths_are_checked_before_buffering() {
        assert_eq!(
            startup(b"\x00\x00\x00\x07"),
            Err(ProtocolError::BadLength(7))
        );
        assert_eq!(
            startup(b"\xff\xff\xff\xf0"),
            Err(ProtocolError::BadLength(-16))
        );
        assert_eq!(
            startup(b"\x00\x00\x27\x11"),
            Err(ProtocolError::TooLong {
                len: 10_001,
                max: MAX_STARTUP_LEN
            })
        );
    }

    #[test]
    fn other_protocol_versions_are_refused() {
        // Protocol 2.0 and an unknown 1234.x request.
        assert_eq!(
            startup(b"\x00\x00\x00\x09\x00\x02\x00\x00\x00"),
            Err(ProtocolError::UnsupportedVersion(2 << 16))
        );
        assert_eq!(
            startup(b"\x00\x00\x00\x08\x04\xd2\x16\x31"),
            Err(ProtocolError::UnsupportedVersion(80_877_105))
        );
        // 3.2 is accepted; the version is kept for negotiation.
        let mut out = Vec::new();
        Startup {
            version: 3 << 16 | 2,
            params: vec![("user", "a")],
        }
        .encode(&mut out);
        assert!(matches!(
            startup(&out),
            Ok(Some((
                StartupRequest::Startup(Startup {
                    version: 0x30002,
                    ..
                }),
                _
            )))
        ));
    }

    /// Prefixes `body` with its length field.
    fn packet(body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn malformed_startup_messages() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (
                b"\x00\x03\x00\x00user\x00",
                ProtocolError::Malformed("string without its NUL terminator"),
            ),
            (
                b"\x00\x03\x00\x00user\x00bob\x00",
                ProtocolError::Malformed("string without its NUL terminator"),
            ),
            (
                b"\x00\x03\x00\x00user\x00bob\x00\x00x",
                ProtocolError::Malformed("bytes after the last field"),
            ),
            (
                b"\x04\xd2\x16\x2f\x00\x00\x00\x00",
                ProtocolError::Malformed("bytes after the last field"),
            ),
            (b"\x00\x03\x00\x00user\x00\xff\x00\x00", ProtocolError::Utf8),
        ];
        for (body, err) in cases {
            assert_eq!(startup(&packet(body)), Err(err.clone()), "{body:?}");
        }
    }

    #[test]
    fn repeated_parameter_is_refused() {
        let mut out = Vec::new();
        encode_startup(
            &mut out,
            &[("user", "alice"), ("database", "x"), ("user", "postgres")],
        );
        assert_eq!(
            startup(&out),
            Err(ProtocolError::Malformed("start-up parameter given twice"))
        );
    }
}
