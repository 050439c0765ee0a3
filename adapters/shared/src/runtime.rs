//! The tiny runtime trait: what an executor must give the server loop.
//!
//! Three poll-style traits, so the loop is one future that any executor can
//! run: a byte [`Stream`] (a TCP connection, or a stream an embedding HTTP
//! server upgraded), a [`Listener`] that accepts them, and a resettable
//! [`Sleep`]. `wsio-tokio` and `wsio-smol` implement them in a few lines
//! each. All three are polled from the loop's own task; a stream is polled
//! with a waker that names its connection, so a wake-up costs the loop one
//! look at that connection, not a scan of all of them.

use std::{
    io::{self, IoSlice},
    net::SocketAddr,
    task::{Context, Poll},
    time::Instant,
};

/// A non-blocking byte stream.
///
/// Each method follows the usual poll contract: `Poll::Pending` means the
/// waker of `cx` is woken once the operation may succeed.
pub trait Stream: Send + 'static {
    /// Reads into `buf`; `Ok(0)` is the peer's end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes some of `bufs`, in order; returns how many bytes were taken.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    /// Shuts the write side (TCP: sends FIN) once written bytes are out.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Stream for Box<dyn Stream> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        (**self).poll_read(cx, buf)
    }
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        (**self).poll_write_vectored(cx, bufs)
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_shutdown(cx)
    }
}

/// A stream accepted from a [`Listener`], with its peer's address.
pub type Accepted = (Box<dyn Stream>, Option<SocketAddr>);

/// A listening socket.
pub trait Listener: Send + 'static {
    /// Accepts one connection. An error (out of descriptors, a connection
    /// aborted before it was accepted...) is reported as is: the loop logs
    /// it, backs off and tries again; it never ends the server.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>>;
    /// The address it listens on.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A timer the loop re-arms for its next deadline.
pub trait Sleep: Send + 'static {
    /// Sets the instant at which [`poll_sleep`](Self::poll_sleep) becomes
    /// ready.
    fn reset(&mut self, deadline: Instant);
    /// Ready once the deadline has passed.
    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// A connection being opened by a [`Connector`].
pub type Connecting = std::pin::Pin<
    Box<dyn std::future::Future<Output = io::Result<Box<dyn Stream>>> + Send + 'static>,
>;

/// What the clients need of a runtime: connections and timers.
pub trait Connector: Send + Sync + 'static {
    /// Opens a TCP connection to `host:port`; with `secure`, TLS runs
    /// around it (the server's name checked against `host`), or the
    /// connection fails when the connector has no TLS.
    fn connect(&self, host: &str, port: u16, secure: bool) -> Connecting;
    /// A new timer, not armed until reset.
    fn sleep(&self) -> Box<dyn Sleep>;
}
