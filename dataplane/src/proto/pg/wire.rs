//! Codec stage, shared by every PostgreSQL message: a checked reader and the writers.
//!
//! The data types are those of
//! <https://www.postgresql.org/docs/current/protocol-message-types.html>: integers are big-endian
//! two's complement (`Int8`, `Int16`, `Int32`), a `String` ends at its first NUL byte, a `Byten`
//! run is either a known count or "the rest of the message". Every read here returns a `Result`,
//! so a short or lying peer gives an error instead of a panic, and every read borrows from the
//! input.

use super::ProtocolError;

/// Error for a body that ends before the fields its type declares.
pub(super) const SHORT: ProtocolError = ProtocolError::Malformed("message ends inside a field");

/// A read position inside one message body.
#[derive(Debug, Clone)]
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf }
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let (head, tail) = self.buf.split_first_chunk::<N>().ok_or(SHORT)?;
        self.buf = tail;
        Ok(*head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, ProtocolError> {
        let (&b, tail) = self.buf.split_first().ok_or(SHORT)?;
        self.buf = tail;
        Ok(b)
    }

    pub(super) fn i16(&mut self) -> Result<i16, ProtocolError> {
        self.array().map(i16::from_be_bytes)
    }

    pub(super) fn u16(&mut self) -> Result<u16, ProtocolError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(super) fn i32(&mut self) -> Result<i32, ProtocolError> {
        self.array().map(i32::from_be_bytes)
    }

    pub(super) fn u32(&mut self) -> Result<u32, ProtocolError> {
        self.array().map(u32::from_be_bytes)
    }

    /// `Byten` with a known count.
    pub(super) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(SHORT)?;
        self.buf = tail;
        Ok(head)
    }

    /// `Byten` that runs to the end of the message.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// A NUL-terminated `String`, checked to be UTF-8; the NUL is consumed, not returned.
    pub(super) fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        let end = memchr::memchr(0, self.buf).ok_or(ProtocolError::Malformed(
            "string without its NUL terminator",
        ))?;
        let (text, tail) = self.buf.split_at_checked(end).ok_or(SHORT)?;
        self.buf = tail.get(1..).unwrap_or_default();
        std::str::from_utf8(text).map_err(|_| ProtocolError::Utf8)
    }

    /// An `Int32` length followed by that many bytes; length -1 is SQL NULL.
    pub(super) fn value(&mut self) -> Result<Option<&'a [u8]>, ProtocolError> {
        match self.i32()? {
            -1 => Ok(None),
            len => {
                let len = usize::try_from(len)
                    .map_err(|_| ProtocolError::Malformed("negative value length"))?;
                self.bytes(len).map(Some)
            }
        }
    }

    /// An `Int16` element count. PostgreSQL reads these counts as unsigned (libpq allows up to
    /// 65535 bind parameters), so this does too. The count is checked against the bytes left,
    /// each element taking at least `min_item` bytes, so a vector sized by it is bounded by the
    /// message the peer actually sent.
    pub(super) fn count16(&mut self, min_item: usize) -> Result<usize, ProtocolError> {
        let n = usize::from(self.u16()?);
        Self::fits(n, min_item, self.remaining())
    }

    /// An `Int32` element count, checked as [`Cursor::count16`] does; negative is an error.
    pub(super) fn count32(&mut self, min_item: usize) -> Result<usize, ProtocolError> {
        let n = usize::try_from(self.i32()?)
            .map_err(|_| ProtocolError::Malformed("negative element count"))?;
        Self::fits(n, min_item, self.remaining())
    }

    fn fits(n: usize, min_item: usize, remaining: usize) -> Result<usize, ProtocolError> {
        match n.checked_mul(min_item) {
            Some(need) if need <= remaining => Ok(n),
            _ => Err(ProtocolError::Malformed(
                "element count exceeds the message",
            )),
        }
    }

    /// Ends a decode: a body with bytes after its declared fields is malformed.
    pub(super) fn finish(self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed("bytes after the last field"))
        }
    }
}

/// Checks a format code (0 = text, 1 = binary); PostgreSQL rejects any other value.
pub(super) fn format_code(code: i16) -> Result<i16, ProtocolError> {
    match code {
        0 | 1 => Ok(code),
        _ => Err(ProtocolError::Malformed(
            "format code is neither 0 (text) nor 1 (binary)",
        )),
    }
}

/// Writes one tagged message: the tag, a length placeholder, the body `f` writes, then the real
/// length. A body too large for the `Int32` length (over 2 GiB, which the gateway never builds)
/// gets the largest length the field can hold.
pub(super) fn message(out: &mut Vec<u8>, tag: u8, f: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    packet(out, f);
}

/// Writes one untagged start-up packet: length placeholder, body, real length.
pub(super) fn packet(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    f(out);
    let len = i32::try_from(out.len() - start).unwrap_or(i32::MAX);
    if let Some(field) = out.get_mut(start..start + 4) {
        field.copy_from_slice(&len.to_be_bytes());
    }
}

/// Writes a `String`. A NUL inside `s` would end the field early and let the text after it be
/// read as the following fields (a forged SQLSTATE or detail, say), so the string is cut at its
/// first NUL.
pub(super) fn put_cstr(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    out.extend_from_slice(bytes.get(..end).unwrap_or_default());
    out.push(0);
}

pub(super) fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(super) fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(super) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes an `Int16` count of `items` and each item with `put`. The count field holds at most
/// 65535; past that the items are cut so the message stays consistent with its count (only a
/// gateway bug could build such a vector: the decoder never does).
pub(super) fn put_array16<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut put: impl FnMut(&mut Vec<u8>, &T),
) {
    let n = items.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
    for item in items.iter().take(n) {
        put(out, item);
    }
}

/// Writes an `Int32` length and the bytes, or -1 for SQL NULL.
pub(super) fn put_value(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => put_i32(out, -1),
        Some(bytes) => {
            let n = bytes.len().min(i32::MAX as usize);
            put_i32(out, i32::try_from(n).unwrap_or(i32::MAX));
            out.extend_from_slice(bytes.get(..n).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fail_on_short_input_instead_of_panicking() {
        let mut c = Cursor::new(&[0x00, 0x01, 0x02]);
        assert_eq!(c.i32(), Err(SHORT));
        assert_eq!(c.i16(), Ok(1));
        assert_eq!(c.bytes(2), Err(SHORT));
        assert_eq!(c.u8(), Ok(2));
        assert_eq!(c.u8(), Err(SHORT));
        assert!(c.finish().is_ok());
    }

    #[test]
    fn cstr_needs_terminator_and_utf8() {
        assert_eq!(
            Cursor::new(b"abc").cstr(),
            Err(ProtocolError::Malformed(
                "string without its NUL terminator"
            ))
        );
        assert_eq!(Cursor::new(b"\xff\0").cstr(), Err(ProtocolError::Utf8));
        let mut c = Cursor::new(b"ab\0\0x");
        assert_eq!(c.cstr(), Ok("ab"));
        assert_eq!(c.cstr(), Ok(""));
        assert_eq!(c.rest(), b"x");
    }

    #[test]
    fn values_reject_negative_lengths_other_than_null() {
        assert_eq!(Cursor::new(&(-1i32).to_be_bytes()).value(), Ok(None));
        assert!(Cursor::new(&(-2i32).to_be_bytes()).value().is_err());
        assert!(Cursor::new(&(5i32).to_be_bytes()).value().is_err());
    }

    #[test]
    fn counts_are_bounded_by_the_bytes_left() {
        // 65535 elements of 4 bytes announced, 8 bytes present.
        let mut c = Cursor::new(&[0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(c.count16(4).is_err());
        let mut c = Cursor::new(&[0x80, 0, 0, 0]);
        assert!(c.count32(0).is_err(), "negative Int32 count");
    }

    #[test]
    fn encoded_strings_stop_at_an_embedded_nul() {
        let mut out = Vec::new();
        put_cstr(&mut out, "boom\0Cforged");
        assert_eq!(out, b"boom\0");
    }
}
