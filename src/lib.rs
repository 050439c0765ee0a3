//! # wsio
//!
//! WebSocket (RFC 6455), Engine.IO v4 and Socket.IO v5 as pure protocol state
//! machines, for clients and servers.
//!
//! ## Deterministic by construction
//!
//! No machine in this crate touches a socket, reads a clock, spawns a task or
//! draws randomness. Bytes and time go in (`handle_input`, `handle_eof`,
//! `handle_timeout`, each given `now`), bytes and events come out
//! (`poll_transmit`, `poll_event`), and `poll_timeout` says when to call
//! again. Randomness comes from an [`entropy::Entropy`] the caller supplies.
//! The same inputs give the same outputs, byte for byte, which is what lets
//! the same code run under any executor, inside another HTTP server, or in a
//! simulation on a virtual clock.
//!
//! ## Layers
//!
//! ```text
//!  bytes in ──► http ──► ws ──► (engineio ──► socketio) ──► events out
//!  bytes out ◄── http ◄── ws ◄── (engineio ◄── socketio) ◄── calls in
//! ```
//!
//! * [`http`]: HTTP/1.1 heads and bodies, parsed incrementally with limits.
//! * [`ws`]: the WebSocket handshake, frame codec and [`ws::Connection`].
//! * [`blocking`]: drivers over `std::net`, the only code here that performs
//!   I/O or reads the clock.
//!
//! ## Errors
//!
//! Each layer has its own error types; every one says whose fault it is
//! ([`Fault`]: the peer, a limit, the caller or the transport), and all of
//! them convert into [`Error`] for code that just wants `?`. The table is in
//! [`error`].
//!
//! ## Run loop
//!
//! Every machine follows the same contract, stated once in [`machine`]:
//! after any input or command, drain `poll_transmit` (write what it gives),
//! then `poll_event`, again until `poll_transmit` is quiet right after
//! `poll_event`, then arm a timer for `poll_timeout`. [`machine::drain`] is
//! that loop.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod blocking;
pub mod cluster;
pub mod engineio;
pub mod entropy;
pub mod error;
pub mod http;
mod idmap;
pub mod machine;
pub mod sim;
pub mod socketio;
pub mod ws;

pub use error::{Error, Fault};
