//! The runtime-agnostic half of wsio's async adapters.
//!
//! `wsio-tokio` and `wsio-smol` are thin: each implements the tiny runtime
//! trait of [`runtime`] (a stream, a listener, a timer) and re-exports
//! what is here. This crate holds the rest, written once:
//!
//! * [`Server`]: the server loop, one future owning a machine and all its
//!   connections (one machine on one task: one core), under the driver
//!   rules of its module docs (bounded output per connection, a full socket
//!   waited on, descriptors released at once, accept errors survived,
//!   graceful shutdown);
//! * the application API: [`Server::on_event`] (a callback run inside the
//!   machine's task, with the machine), [`Server::events`] (a stream) and
//!   [`Handle`] (cloneable; commands cross to the machine's task over a
//!   bounded channel), acks as futures with timeouts
//!   ([`Handle::emit_with_ack`]) and serde-typed arguments ([`args`]);
//! * [`ServerMachine`] and [`Embed`]: what the loop drives; implemented for
//!   [`SocketIo`] (a `socketio::Server` with its awaited acks),
//!   `engineio::Server` and [`WsServer`] (plain WebSockets);
//! * the clients ([`Client`], [`WebSocket`]) and their [`RuntimeConnector`]
//!   (TCP, TLS with rustls under the `tls` feature), over the few things a
//!   runtime gives them ([`ClientRuntime`]).
//!
//! No protocol decision is made here: bytes, time and connection
//! open/close go in and out of the machine, nothing else.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod app;
pub mod client;
pub mod connector;
pub mod machine;
pub mod runtime;
mod server;
pub mod sidecar;
mod sio;
mod wake;
mod ws;
mod ws_client;

pub use app::{Closed, Events, Handle, Response, Upgrade};
pub use client::{Client, ClientDriver, ClientError, ClientOptions};
pub use connector::{ClientRuntime, RuntimeConnector};
pub use machine::{ConnMachine, Embed, Machine, Serve, ServerMachine, Shutdown};
pub use server::{Options, Server};
pub use sidecar::Sidecar;
pub use sio::{AckError, SocketIo, TypedOrClosed, args};
pub use ws::{WsEvent, WsServer};
pub use ws_client::{WebSocket, WsError};

/// What a server can be built from: a machine, or a Socket.IO config or
/// server (which become a [`SocketIo`]). A machine of the application's
/// own implements it as itself (see [`identity_into_machine`]).
pub trait IntoMachine {
    /// The machine.
    type Machine: Serve;
    /// Builds it.
    fn into_machine(self) -> std::io::Result<Self::Machine>;
}

/// Implements [`IntoMachine`] for machines that are already machines.
#[macro_export]
macro_rules! identity_into_machine {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::IntoMachine for $t {
            type Machine = $t;
            fn into_machine(self) -> ::std::io::Result<$t> {
                Ok(self)
            }
        }
    )*};
}

identity_into_machine!(SocketIo, WsServer, wsio::engineio::Server);

impl IntoMachine for wsio::socketio::Config {
    type Machine = SocketIo;
    fn into_machine(self) -> std::io::Result<SocketIo> {
        SocketIo::new(self)
    }
}

impl IntoMachine for wsio::socketio::Server {
    type Machine = SocketIo;
    fn into_machine(self) -> std::io::Result<SocketIo> {
        Ok(SocketIo::from(self))
    }
}
