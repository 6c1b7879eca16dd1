//! The read buffer of one leg of a session. Bytes are read once into it, messages are parsed
//! as slices of it, and the unchanged ones are forwarded from it as the bytes that arrived.

use std::io;

use futures_lite::io::{AsyncRead, AsyncReadExt};

/// Bytes a buffer starts with; enough for a whole pgbench round trip. Idle sessions keep this
/// much per leg, which is what bounds the gateway's memory per idle connection.
pub const INITIAL_CAPACITY: usize = 8 * 1024;

/// A growable window `data[start..end]` of received, not yet consumed bytes.
pub struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for ReadBuf {
    fn default() -> Self {
        Self::with_capacity(INITIAL_CAPACITY)
    }
}

impl ReadBuf {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            data: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// The received bytes not consumed yet.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops the first `n` received bytes (they were handled).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once from `source`, making room for at least `want` bytes of unconsumed data in
    /// total (the length of a message whose header has arrived). Returns the number of bytes
    /// read; 0 means the peer closed.
    pub async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        source: &mut R,
        want: usize,
    ) -> io::Result<usize> {
        self.make_room(want);
        let n = source.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    fn make_room(&mut self, want: usize) {
        let len = self.end - self.start;
        if self.start > 0 && (self.end == self.data.len() || self.start + want > self.data.len()) {
            self.data.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = len;
        }
        let need = want.max(len + 1);
        if need > self.data.len() {
            self.data.resize(need.next_power_of_two(), 0);
        }
        if self.end == self.data.len() {
            self.data.resize(self.data.len() * 2, 0);
        }
    }

    /// Gives memory back after a large message, so one big result does not pin it forever.
    pub fn shrink_if_idle(&mut self) {
        if self.is_empty() && self.data.len() > INITIAL_CAPACITY * 8 {
            self.data = vec![0; INITIAL_CAPACITY];
        }
    }
}

/// Total length on the wire of the PostgreSQL message whose header starts `buf`, once the
/// header has arrived (tag byte + 4-byte length); 0 before that. Only a sizing hint for
/// [`ReadBuf::fill`]: the codec validates the length when the message is parsed.
pub fn pg_message_len_hint(buf: &[u8]) -> usize {
    match buf.get(1..5) {
        Some(len) => {
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            usize::try_from(len).map_or(0, |l| l.saturating_add(1))
        }
        None => 0,
    }
}

/// The same for an untagged start-up packet (4-byte length first).
pub fn pg_startup_len_hint(buf: &[u8]) -> usize {
    match buf.get(0..4) {
        Some(len) => {
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            usize::try_from(len).unwrap_or(0)
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures_lite::future::block_on(f)
    }

    #[test]
    fn fills_consumes_and_grows_for_a_large_message() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut src = futures_lite::io::Cursor::new(payload.clone());
        let mut buf = ReadBuf::with_capacity(16);
        let mut seen = Vec::new();
        loop {
            let n = block_on(buf.fill(&mut src, 70_000)).expect("read");
            if n == 0 {
                break;
            }
            if buf.filled().len() >= 1000 {
                seen.extend_from_slice(&buf.filled()[..1000]);
                buf.consume(1000);
            }
        }
        seen.extend_from_slice(buf.filled());
        assert_eq!(seen, payload);
    }

    #[test]
    fn consume_past_end_is_clamped() {
        let mut src = futures_lite::io::Cursor::new(vec![1u8, 2, 3]);
        let mut buf = ReadBuf::with_capacity(4);
        block_on(buf.fill(&mut src, 1)).expect("read");
        buf.consume(10);
        assert!(buf.is_empty());
    }
}
