//! wsio on smol (async-io): Socket.IO (or Engine.IO, or plain WebSockets)
//! served from one task.
//!
//! ```no_run
//! use wsio::socketio::{Config, Event};
//!
//! fn main() -> std::io::Result<()> {
//!     async_io::block_on(async {
//!         let server = wsio_smol::bind("127.0.0.1:3000", Config::default())?;
//!         server
//!             .on_event(|io, ev, _now| {
//!                 if let Event::Event { socket, name, args, .. } = ev {
//!                     let _ = io.emit(socket, &name, args); // echo
//!                 }
//!             })
//!             .await
//!     })
//! }
//! ```
//!
//! The loop, the application API and the driver rules are
//! [`wsio_adapter`]'s, re-exported here; this crate adds async-io's
//! sockets and timer.
//!
//! The clients: [`connect`] (Socket.IO, its driver a task on smol's
//! global executor) and [`connect_websocket`]; `https://` and `wss://`
//! with the `tls` feature (rustls through futures-rustls).
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod client;

use std::{
    future::Future as _,
    io::{self, IoSlice},
    net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use async_io::{Async, Timer};
pub use client::{
    SmolConnector, SmolRuntime, connect, connect_websocket, connect_websocket_with, connect_with,
};
use futures_io::{AsyncRead, AsyncWrite};
/// The rustls the clients use (feature `tls`), to build a configuration
/// of the application's own (its roots, client certificates).
#[cfg(feature = "tls")]
pub use futures_rustls::rustls;
/// rustls with the ring provider and Mozilla's roots: what
/// [`SmolConnector::new`] trusts.
#[cfg(feature = "tls")]
pub use wsio_adapter::connector::default_tls_config;
pub use wsio_adapter::{
    AckError, Client, ClientError, ClientOptions, Closed, Embed, Events, Handle, IntoMachine,
    Options, Serve, Server, ServerMachine, Shutdown, SocketIo, TypedOrClosed, WebSocket, WsError,
    WsEvent, WsServer, args, runtime,
};

/// Any futures-io byte stream as the loop's [`runtime::Stream`].
#[derive(Debug)]
pub struct SmolStream<T>(pub T);

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> runtime::Stream for SmolStream<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // One buffer goes out as `send`, as the epoll driver writes it:
        // `writev` takes the longer way through the kernel's file layer.
        match bufs {
            [one] => Pin::new(&mut self.0).poll_write(cx, one),
            _ => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// An async-io listener as the loop's [`runtime::Listener`].
#[derive(Debug)]
pub struct SmolListener(pub Async<TcpListener>);

impl runtime::Listener for SmolListener {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<runtime::Accepted>> {
        loop {
            match self.0.get_ref().accept() {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let stream: Async<TcpStream> = Async::new(stream)?;
                    return Poll::Ready(Ok((Box::new(SmolStream(stream)), Some(peer))));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.0.poll_readable(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

/// async-io's timer as the loop's [`runtime::Sleep`].
#[derive(Debug)]
pub struct SmolSleep(Timer);

impl SmolSleep {
    /// A timer, not armed until reset.
    pub fn new() -> SmolSleep {
        SmolSleep(Timer::never())
    }
}

impl Default for SmolSleep {
    fn default() -> Self {
        SmolSleep::new()
    }
}

impl runtime::Sleep for SmolSleep {
    fn reset(&mut self, deadline: Instant) {
        self.0.set_at(deadline);
    }

    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A listener on `addr` with room for 1024 connections waiting to be
/// accepted.
pub fn listen(addr: impl ToSocketAddrs) -> io::Result<Async<TcpListener>> {
    let listener = TcpListener::bind(addr)?;
    // std's backlog is 128; a second listen on the same socket raises it.
    let listener = Async::new(listener)?;
    Ok(listener)
}

/// A server for `machine` (a `socketio::Config` or `Server`, or any
/// [`ServerMachine`] that can [`Shutdown`]) listening on `addr`. Await it to serve.
pub fn bind<I: IntoMachine>(
    addr: impl ToSocketAddrs,
    machine: I,
) -> io::Result<Server<I::Machine>> {
    serve(listen(addr)?, machine, Options::default())
}

/// A server for `machine` on an existing listener, with options.
pub fn serve<I: IntoMachine>(
    listener: Async<TcpListener>,
    machine: I,
    options: Options,
) -> io::Result<Server<I::Machine>> {
    Ok(Server::with_options(
        machine.into_machine()?,
        Some(Box::new(SmolListener(listener))),
        Box::new(SmolSleep::new()),
        options,
    ))
}
