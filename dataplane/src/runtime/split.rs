//! Splitting a stream into a read half and a write half for the two legs of a relay.
//!
//! Both halves live on one shard, and a poll of one never polls the other, so a `RefCell`
//! is enough: no lock and no atomic reference count per poll, unlike a general-purpose split.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// The read half of a stream split with [`split`].
pub struct ReadHalf<T>(Rc<RefCell<T>>);

/// The write half of a stream split with [`split`].
pub struct WriteHalf<T>(Rc<RefCell<T>>);

/// Splits `stream` into halves that can be polled from two futures of the same task.
pub fn split<T: AsyncRead + AsyncWrite + Unpin>(stream: T) -> (ReadHalf<T>, WriteHalf<T>) {
    let shared = Rc::new(RefCell::new(stream));
    (ReadHalf(Rc::clone(&shared)), WriteHalf(shared))
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadHalf<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteHalf<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn halves_read_and_write_the_same_stream() {
        futures_lite::future::block_on(async {
            let stream = futures_lite::io::Cursor::new(b"hello".to_vec());
            let (mut r, mut w) = split(stream);
            let mut got = [0u8; 5];
            r.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"hello");
            w.write_all(b" world").await.expect("write");
            w.flush().await.expect("flush");
            drop(r);
            let Ok(cursor) = Rc::try_unwrap(w.0) else {
                panic!("only the write half is left");
            };
            assert_eq!(cursor.into_inner().into_inner(), b"hello world");
        });
    }
}
