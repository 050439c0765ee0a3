//! wsio on tokio: Socket.IO (or Engine.IO, or plain WebSockets) served from
//! one task, stand-alone or inside hyper/axum.
//!
//! ```no_run
//! use wsio::socketio::{Config, Event};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> std::io::Result<()> {
//!     let server = wsio_tokio::bind("127.0.0.1:3000", Config::default()).await?;
//!     server
//!         .on_event(|io, ev, _now| {
//!             if let Event::Event { socket, name, args, .. } = ev {
//!                 let _ = io.emit(socket, &name, args); // echo
//!             }
//!         })
//!         .await
//! }
//! ```
//!
//! The loop, the application API and the driver rules are
//! [`wsio_adapter`]'s, re-exported here; this crate adds tokio's sockets
//! and timer, and (feature `hyper`, or `axum`) `SocketIoLayer`, a tower
//! layer that serves the machine's path inside an existing app.
//!
//! The clients: [`connect`] (Socket.IO, its driver a tokio task) and
//! [`connect_websocket`]; `https://` and `wss://` with the `tls` feature
//! (rustls through tokio-rustls).
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod client;
#[cfg(feature = "hyper")]
mod http_server;
#[cfg(feature = "hyper")]
mod layer;

use std::{
    io::{self, IoSlice},
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

pub use client::{
    TokioConnector, TokioRuntime, connect, connect_websocket, connect_websocket_with, connect_with,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
/// The rustls the clients use (feature `tls`), to build a configuration
/// of the application's own (its roots, client certificates).
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;
/// rustls with the ring provider and Mozilla's roots: what
/// [`TokioConnector::new`] trusts.
#[cfg(feature = "tls")]
pub use wsio_adapter::connector::default_tls_config;
pub use wsio_adapter::{
    AckError, Client, ClientError, ClientOptions, Closed, Embed, Events, Handle, IntoMachine,
    Options, Serve, Server, ServerMachine, Shutdown, SocketIo, TypedOrClosed, WebSocket, WsError,
    WsEvent, WsServer, args, runtime,
};

#[cfg(feature = "hyper")]
pub use http_server::{HEAD_TIMEOUT, serve_http};
#[cfg(feature = "hyper")]
pub use layer::{Embedded, SocketIoLayer, SocketIoService, embed};

/// Any tokio byte stream (a `TcpStream`, a hyper upgrade...) as the
/// loop's [`runtime::Stream`].
#[derive(Debug)]
pub struct TokioStream<T>(pub T);

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> runtime::Stream for TokioStream<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match unbudgeted(cx, |cx| Pin::new(&mut self.0).poll_read(cx, &mut rb)) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // One buffer goes out as `send`, as the epoll driver writes it:
        // `writev` takes the longer way through the kernel's file layer.
        unbudgeted(cx, |cx| match bufs {
            [one] => Pin::new(&mut self.0).poll_write(cx, one),
            _ => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        })
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        unbudgeted(cx, |cx| Pin::new(&mut self.0).poll_shutdown(cx))
    }
}

/// Runs one poll outside tokio's cooperative budget.
///
/// Tokio lets a task do 128 operations on its resources per poll; past
/// that, every one answers `Pending` (and wakes the task) whether or not
/// the socket is ready. The loops that poll these streams serve many
/// connections from one task and bound their own work per poll (and
/// yield); under the budget, the 129th write of a broadcast would find a
/// socket with room "full", hand its bytes back to the machine, and take
/// them again a poll later, for most of the sockets of a broadcast to
/// thousands.
fn unbudgeted<T>(cx: &mut Context<'_>, f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
    let mut f = Some(f);
    let once = tokio::task::unconstrained(std::future::poll_fn(move |cx| match f.take() {
        Some(f) => f(cx),
        None => Poll::Pending,
    }));
    std::pin::pin!(once).poll(cx)
}

/// A tokio listener as the loop's [`runtime::Listener`].
#[derive(Debug)]
pub struct TokioListener(pub tokio::net::TcpListener);

impl runtime::Listener for TokioListener {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<runtime::Accepted>> {
        match unbudgeted(cx, |cx| self.0.poll_accept(cx)) {
            Poll::Ready(Ok((stream, peer))) => {
                let _ = stream.set_nodelay(true);
                Poll::Ready(Ok((Box::new(TokioStream(stream)), Some(peer))))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// tokio's timer as the loop's [`runtime::Sleep`].
#[derive(Debug)]
pub struct TokioSleep(Pin<Box<tokio::time::Sleep>>);

impl TokioSleep {
    /// A timer, not armed until reset.
    pub fn new() -> TokioSleep {
        TokioSleep(Box::pin(tokio::time::sleep_until(
            tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365),
        )))
    }
}

impl Default for TokioSleep {
    fn default() -> Self {
        TokioSleep::new()
    }
}

impl runtime::Sleep for TokioSleep {
    fn reset(&mut self, deadline: Instant) {
        self.0
            .as_mut()
            .reset(tokio::time::Instant::from_std(deadline));
    }

    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        unbudgeted(cx, |cx| self.0.as_mut().poll(cx))
    }
}

use std::future::Future as _;

/// A listener on `addr` with room for 1024 connections waiting to be
/// accepted (the default of 128 drops SYNs when a few hundred clients
/// connect at once).
pub async fn listen(addr: impl tokio::net::ToSocketAddrs) -> io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

/// A server for `machine` (a `socketio::Config` or `Server`, or any
/// [`ServerMachine`] that can [`Shutdown`]) listening on `addr`. Await it to serve.
pub async fn bind<I: IntoMachine>(
    addr: impl tokio::net::ToSocketAddrs,
    machine: I,
) -> io::Result<Server<I::Machine>> {
    let listener = listen(addr).await?;
    serve(listener, machine, Options::default())
}

/// A server for `machine` on an existing listener, with options.
pub fn serve<I: IntoMachine>(
    listener: tokio::net::TcpListener,
    machine: I,
    options: Options,
) -> io::Result<Server<I::Machine>> {
    Ok(Server::with_options(
        machine.into_machine()?,
        Some(Box::new(TokioListener(listener))),
        Box::new(TokioSleep::new()),
        options,
    ))
}
