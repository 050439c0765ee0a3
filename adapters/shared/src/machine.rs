//! What the server loop drives: any [`wsio::machine::ServerMachine`] that
//! transmits [`engineio::Transmit`] and can [`Shutdown`] (the core's
//! contract, which every driver obeys: see [`Serve`]), and [`Embed`] for
//! machines an embedding HTTP server can hand parsed requests to.
//!
//! The loop never looks inside a transmit or an event: it moves bytes,
//! time and connection open/close. Protocol decisions stay in the machine.

use std::{net::SocketAddr, time::Instant};

use bytes::Bytes;
use wsio::{
    engineio::{self, ConnId},
    http::{RequestHead, ResponseHead},
};

pub use wsio::machine::{ConnMachine, Machine, ServerMachine, Shutdown};

/// The machines the loop serves: the core's [`ServerMachine`] with
/// [`Shutdown`], whose transmits are [`engineio::Transmit`]s, sendable to
/// the loop's task with its events. A name for those bounds, implemented
/// for every such machine: there is nothing to implement.
pub trait Serve:
    Shutdown<Transmit = engineio::Transmit, Event: Send + 'static> + Send + 'static
{
}

impl<M> Serve for M where
    M: Shutdown<Transmit = engineio::Transmit, Event: Send + 'static> + Send + 'static
{
}

/// A server machine an embedding HTTP server (hyper, axum) can hand
/// requests to: parsed requests and upgrades instead of raw bytes.
pub trait Embed: Serve {
    /// The path prefixes whose requests are the machine's (`/socket.io/`);
    /// the rest stays with the embedding application (see [`under`]).
    fn paths(&self) -> Vec<String>;
    /// A parsed request (not an upgrade); its answer comes out later as
    /// [`Transmit::Response`](wsio::engineio::Transmit::Response) for the
    /// returned id.
    fn handle_request(
        &mut self,
        now: Instant,
        head: RequestHead,
        body: Bytes,
        peer: Option<SocketAddr>,
    ) -> ConnId;
    /// A parsed upgrade request: on success the 101 head to answer with,
    /// and the id whose bytes the upgraded stream carries.
    #[allow(clippy::type_complexity)]
    fn handle_upgrade(
        &mut self,
        now: Instant,
        head: RequestHead,
        peer: Option<SocketAddr>,
    ) -> Result<(ConnId, ResponseHead), (ResponseHead, Bytes)>;
}

/// Whether `path` lies under an engine's `prefix` (`/socket.io/`), the
/// prefix without its slash included.
pub fn under(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix) || Some(path) == prefix.strip_suffix('/')
}

impl Embed for engineio::Server {
    fn paths(&self) -> Vec<String> {
        vec![self.config().path.clone()]
    }
    fn handle_request(
        &mut self,
        now: Instant,
        head: RequestHead,
        body: Bytes,
        peer: Option<SocketAddr>,
    ) -> ConnId {
        engineio::Server::handle_request(self, now, head, body, peer)
    }
    fn handle_upgrade(
        &mut self,
        now: Instant,
        head: RequestHead,
        peer: Option<SocketAddr>,
    ) -> Result<(ConnId, ResponseHead), (ResponseHead, Bytes)> {
        engineio::Server::handle_upgrade(self, now, head, peer)
    }
}
