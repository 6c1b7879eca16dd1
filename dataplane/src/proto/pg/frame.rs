//! Codec stage, first step for every tagged message: find where one message ends.
//!
//! After start-up, both directions carry tagged messages
//! (<https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS>):
//!
//! ```text
//! Byte1 tag | Int32 length (counts itself and the body, not the tag) | body
//! ```
//!
//! [`frame`] is the cheap check run on every read: it looks at five bytes, caps the length and
//! says "need more" until the whole message is buffered. It does not look inside the body, so
//! forwarding an unchanged message is a slice of the read buffer.

use super::wire;
use super::ProtocolError;

/// One tagged message exactly as it arrived: tag byte + body (the bytes after the 4-byte length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The type byte, e.g. `b'Q'`.
    pub tag: u8,
    /// The bytes after the length field.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Bytes the message takes on the wire: tag, length field and body.
    #[inline]
    pub fn wire_len(&self) -> usize {
        5 + self.body.len()
    }

    /// Writes the message back out unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) {
        wire::message(out, self.tag, |out| out.extend_from_slice(self.body));
    }
}

/// Cheap check for a whole tagged message at the start of `buf`: `Ok(None)` = need more bytes.
///
/// `max_len` caps the length field as PostgreSQL counts it (body plus the four length bytes).
/// A length field below 4 is [`ProtocolError::BadLength`]; one above `max_len` is
/// [`ProtocolError::TooLong`] as soon as the five header bytes are in, before anything is
/// buffered or allocated for the body.
#[inline]
pub fn frame(buf: &[u8], max_len: usize) -> Result<Option<Frame<'_>>, ProtocolError> {
    let Some((&tag, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((len, rest)) = rest.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let raw = i32::from_be_bytes(*len);
    let len = match usize::try_from(raw) {
        Ok(len) if len >= 4 => len,
        _ => return Err(ProtocolError::BadLength(raw)),
    };
    if len > max_len {
        return Err(ProtocolError::TooLong { len, max: max_len });
    }
    Ok(rest.get(..len - 4).map(|body| Frame { tag, body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `select 1;` as psql 15 sends it.
    const PSQL_QUERY: &[u8] = b"Q\x00\x00\x00\x0eselect 1;\x00";

    #[test]
    fn whole_message_is_found_and_the_rest_left() {
        let mut buf = PSQL_QUERY.to_vec();
        buf.extend_from_slice(b"S\x00\x00\x00\x04");
        let f = frame(&buf, 1 << 20).unwrap().unwrap();
        assert_eq!(
            f,
            Frame {
                tag: b'Q',
                body: b"select 1;\0"
            }
        );
        assert_eq!(f.wire_len(), PSQL_QUERY.len());
        let next = frame(&buf[f.wire_len()..], 1 << 20).unwrap().unwrap();
        assert_eq!(
            next,
            Frame {
                tag: b'S',
                body: b""
            }
        );
    }

    #[test]
    fn partial_message_needs_more() {
        for n in 0..PSQL_QUERY.len() {
            assert_eq!(
                frame(&PSQL_QUERY[..n], 1 << 20),
                Ok(None),
                "prefix of {n} bytes"
            );
        }
    }

    #[test]
    fn length_below_four_is_an_error() {
        assert_eq!(
            frame(b"Q\x00\x00\x00\x03", 100),
            Err(ProtocolError::BadLength(3))
        );
        assert_eq!(
            frame(b"Q\xff\xff\xff\xff", 100),
            Err(ProtocolError::BadLength(-1))
        );
    }

    #[test]
    fn length_above_cap_is_refused_from_the_header_alone() {
        assert_eq!(
            frame(b"D\x40\x00\x00\x00", 1 << 20),
            Err(ProtocolError::TooLong {
                len: 1 << 30,
                max: 1 << 20
            })
        );
        // Exactly at the cap is fine.
        assert_eq!(
            frame(b"S\x00\x00\x00\x04", 4),
            Ok(Some(Frame {
                tag: b'S',
                body: b""
            }))
        );
    }

    #[test]
    fn encode_writes_the_same_bytes() {
        let f = frame(PSQL_QUERY, 100).unwrap().unwrap();
        let mut out = Vec::new();
        f.encode(&mut out);
        assert_eq!(out, PSQL_QUERY);
    }
}
