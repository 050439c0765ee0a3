//! In-memory streams for the benches: a type with `next_bytes(max)` (the
//! next bytes a read gets, empty when none are left) and `sink(bytes)`
//! (what a write does with its bytes) becomes a `std::io` and a tokio
//! stream through [`mem_io!`], and [`block_on`] runs a future over it
//! without a runtime. An empty read would block, as a drained socket does.

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

/// Implements `std::io::{Read, Write}` and tokio's `AsyncRead`/`AsyncWrite`
/// for `$t` from its `next_bytes` and `sink`.
macro_rules! mem_io {
    ($t:ty) => {
        impl std::io::Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let c = self.next_bytes(buf.len());
                if c.is_empty() && !buf.is_empty() {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                let n = c.len();
                buf[..n].copy_from_slice(c);
                Ok(n)
            }
        }

        impl std::io::Write for $t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.sink(buf);
                Ok(buf.len())
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                bufs.iter().for_each(|b| self.sink(b));
                Ok(bufs.iter().map(|b| b.len()).sum())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl tokio::io::AsyncRead for $t {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                let c = this.next_bytes(buf.remaining());
                if c.is_empty() && buf.remaining() > 0 {
                    // `block_on` panics: the input is exhausted.
                    return std::task::Poll::Pending;
                }
                buf.put_slice(c);
                std::task::Poll::Ready(Ok(()))
            }
        }

        impl tokio::io::AsyncWrite for $t {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                b: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.get_mut().sink(b);
                std::task::Poll::Ready(Ok(b.len()))
            }
            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                bufs.iter().for_each(|b| this.sink(b));
                std::task::Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
            }
            fn is_write_vectored(&self) -> bool {
                true
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
        }
    };
}
pub(crate) use mem_io;

/// Polls a future that never waits (in-memory I/O) to completion: no runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("in-memory I/O would block"),
    }
}
