//! Socket.IO v5: packets with binary attachments, and the server machine
//! with namespaces, rooms, broadcasts and acknowledgements, as the official
//! `socket.io` 4.x server speaks it (github socketio/socket.io-protocol).
//!
//! [`Server`] sits on an [`engineio::Server`]: it
//! takes the same inputs (connections, bytes, time) and gives the same
//! transmits, and turns Engine.IO sessions into namespace sockets.
//! [`Client`] does the same over one [`engineio::Client`] at a time,
//! reconnecting when the connection is lost.
//!
//! # Where things are
//!
//! * `value.rs`: [`Value`], JSON with binary leaves, written as
//!   `JSON.stringify` writes it; `typed.rs`: to and from serde types;
//! * `packet.rs`: the packet codec ([`Packet`], [`Decoder`]); `msgpack.rs`:
//!   the `socket.io-msgpack-parser` wire format;
//! * `server/` and `client/`: the two machines, each opening with its
//!   theory of operation and a map of its files;
//! * `ack.rs` and `timer.rs`: the acknowledgement table and the deadline
//!   heap that both machines keep.

mod ack;
mod client;
pub mod msgpack;
mod packet;
#[cfg(test)]
mod reference_app;
mod server;
mod timer;
mod typed;
mod value;

use std::{fmt, time::Duration};

pub use client::{
    Client, ClientConfig, ClientDisconnectReason, ClientEvent, ClientState, ClientUsageError, NspId,
};
pub use msgpack::Parser;
pub use packet::{DecodeError, Decoder, Packet, RESERVED_EVENTS};
pub use server::{
    Broadcast, ClusterAnswer, ClusterMessage, RecoveryConfig, RequestId, Selection, Server,
    ServerSideReply, SocketInfo,
};
pub use typed::{TypedError, from_value, to_value};
pub use value::{Number, PlaceholderError, Value};

use crate::engineio;

/// A socket id: like an Engine.IO session id, 20 URL-safe characters from
/// the injected entropy. Each namespace connection has its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(engineio::Sid);

impl SocketId {
    /// The id as text (as the client sees it in `40{"sid":...}`).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Parses an id of the right shape.
    pub fn parse(s: &str) -> Option<SocketId> {
        engineio::Sid::parse(s).map(SocketId)
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketId({})", self.as_str())
    }
}

/// Why a socket left its namespace, with the official server's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client left the namespace.
    ClientNamespaceDisconnect,
    /// The server removed the socket.
    ServerNamespaceDisconnect,
    /// The connection closed.
    TransportClose,
    /// The connection failed.
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client sent a packet that cannot be decoded.
    ParseError,
    /// The connection was closed by the server.
    ForcedClose,
    /// The connection was closed by the server for another socket, or
    /// because the client broke the protocol's order (a second CONNECT).
    ForcedServerClose,
    /// The server is shutting down ([`Server::close_all`]).
    ServerShuttingDown,
    /// The client read too slowly: what waited for it would have crossed
    /// the engine's `max_send_queue`, and its connection was dropped.
    SendQueueFull,
    /// The client read nothing for the engine's `send_timeout` while its
    /// socket was full, and its connection was dropped.
    SendTimeout,
}

impl DisconnectReason {
    /// The reason as the official server reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::SendQueueFull => "send queue full",
            DisconnectReason::SendTimeout => "send timeout",
        }
    }

    fn from_engine(r: engineio::CloseReason) -> Self {
        match r {
            engineio::CloseReason::TransportClose => DisconnectReason::TransportClose,
            engineio::CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            engineio::CloseReason::ParseError => DisconnectReason::ParseError,
            engineio::CloseReason::TransportError => DisconnectReason::TransportError,
            engineio::CloseReason::ForcedClose => DisconnectReason::ForcedClose,
            engineio::CloseReason::SendQueueFull => DisconnectReason::SendQueueFull,
            engineio::CloseReason::SendTimeout => DisconnectReason::SendTimeout,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the application must hear from the server.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A namespace that decides its connections was asked to connect:
    /// answer with [`Server::admit`] or [`Server::refuse`].
    ConnectRequest {
        /// The socket the connection would create.
        socket: SocketId,
        /// The namespace.
        nsp: String,
        /// The client's auth payload (`{}` when none).
        auth: Value,
    },
    /// A socket joined a namespace.
    Connection {
        /// The new socket.
        socket: SocketId,
        /// The namespace.
        nsp: String,
        /// The client's auth payload (`{}` when none; with recovery, its
        /// `pid` and `offset` are left in, as the official server does).
        auth: Value,
        /// Whether the socket's earlier state was restored (the official
        /// `socket.recovered`): its id, rooms and data are those it had,
        /// and the packets it missed were sent (see [`RecoveryConfig`]).
        recovered: bool,
    },
    /// A socket emitted an event.
    Event {
        /// The sender.
        socket: SocketId,
        /// The event name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
        /// Set when the client waits for an answer: pass it to
        /// [`Server::ack`].
        ack: Option<u64>,
    },
    /// A socket of a namespace whose events are decided
    /// ([`Server::set_event_admission`]) sent an event: answer with
    /// [`Server::pass_event`] or [`Server::refuse_event`]. The socket's
    /// later events wait for the verdict.
    EventRequest {
        /// The sender.
        socket: SocketId,
        /// Names this verdict.
        check: u64,
        /// The event name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
        /// The ack id, if the client waits for an answer.
        ack: Option<u64>,
    },
    /// An event was sent to a watched socket ([`Server::watch_outgoing`]).
    Outgoing {
        /// The socket.
        socket: SocketId,
        /// The event name.
        name: String,
        /// The arguments as sent.
        args: Vec<Value>,
    },
    /// A socket answered an emit made with
    /// [`Server::emit_with_ack`].
    Ack {
        /// The socket.
        socket: SocketId,
        /// The id `emit_with_ack` returned.
        id: u64,
        /// The answer.
        args: Vec<Value>,
    },
    /// An emit made with [`Server::emit_with_ack`] got no answer in time.
    AckTimeout {
        /// The socket.
        socket: SocketId,
        /// The id `emit_with_ack` returned.
        id: u64,
    },
    /// A socket left its namespace.
    Disconnect {
        /// The socket.
        socket: SocketId,
        /// Its namespace.
        nsp: String,
        /// Why.
        reason: DisconnectReason,
    },
    /// A broadcast made with [`Broadcast::emit_with_ack`] ended.
    BroadcastAck {
        /// The id `emit_with_ack` returned.
        request: RequestId,
        /// Each recipient's answer, in the order they came.
        answers: Vec<Vec<Value>>,
        /// Whether the timeout ended it (some recipients did not answer).
        timed_out: bool,
    },
    /// A [`Broadcast::fetch_sockets`] ended.
    Fetched {
        /// The id `fetch_sockets` returned.
        request: RequestId,
        /// The selected sockets of this node, then those of the other
        /// nodes as they answered.
        sockets: Vec<SocketInfo>,
        /// Whether the timeout ended it (some nodes did not answer).
        timed_out: bool,
    },
    /// Another node of the cluster sent a server-side event
    /// ([`Server::server_side_emit`]).
    ServerSideEmit {
        /// The namespace.
        nsp: String,
        /// The event name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
        /// Set when the sender waits for an answer: pass it to
        /// [`Server::server_side_reply`].
        reply: Option<ServerSideReply>,
    },
    /// A [`Server::server_side_emit_with_ack`] ended.
    ServerSideAcks {
        /// The id `server_side_emit_with_ack` returned.
        request: RequestId,
        /// Each other node's answer, in the order they came.
        answers: Vec<Value>,
        /// Whether the timeout ended it (some nodes did not answer).
        timed_out: bool,
    },
    /// A request for another path: answer it with [`Server::respond`].
    Request {
        /// Where to answer.
        conn: engineio::ConnId,
        /// The request head.
        head: Box<crate::http::RequestHead>,
        /// The body.
        body: bytes::Bytes,
    },
}

/// A misuse of the server's commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// No connected socket has this id.
    #[error("no connected socket {0}")]
    UnknownSocket(SocketId),
    /// The socket is not waiting for a connection decision.
    #[error("socket {0} is not waiting for a decision")]
    NotPending(SocketId),
    /// The event name is reserved.
    #[error("event name {0:?} is reserved")]
    ReservedEvent(String),
    /// No held event of this socket waits for this verdict.
    #[error("no event waits for verdict {0}")]
    UnknownCheck(u64),
    /// The connection's send buffer is full: nothing was sent.
    #[error(transparent)]
    Engine(#[from] engineio::UsageError),
}

/// Whether a namespace accepts every connection (or event) at once, or asks
/// the application first: the sans-IO form of the official middlewares.
/// For connections ([`Server::add_namespace`]) it is `io.use` /
/// `namespace.use`; for the events of its sockets
/// ([`Server::set_event_admission`]) it is `socket.use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// Let every one through at once.
    #[default]
    AcceptAll,
    /// Emit [`Event::ConnectRequest`] (or [`Event::EventRequest`]) and wait
    /// for a decision.
    Decide,
}

/// Server options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The Engine.IO options; the path defaults to `/socket.io/`.
    pub engine: engineio::Config,
    /// How long a connection may stay without joining a namespace.
    /// Default 45 s, as the official server.
    pub connect_timeout: Duration,
    /// Most attachments in one packet (default parser). Default 10, as the
    /// official parser.
    pub max_attachments: usize,
    /// Whether this server is a node of a cluster: operations not marked
    /// `local` are also handed to the other nodes by
    /// [`Server::poll_cluster`], and requests wait for their answers.
    /// Default off.
    pub cluster: bool,
    /// Whether requests for the official client's files under the path
    /// (`socket.io.min.js`, `socket.io.js.map`...) come to the application
    /// as [`Event::Request`] (so it can serve them, as the official
    /// server's `serveClient` does) instead of to the engine. Default on.
    pub client_files: bool,
    /// Connection state recovery (the official `connectionStateRecovery`).
    /// Default off.
    pub recovery: Option<RecoveryConfig>,
    /// Whether a namespace created by [`Server::set_dynamic_namespaces`]
    /// is removed when its last socket leaves (the official
    /// `cleanupEmptyChildNamespaces`). Default off.
    pub cleanup_empty_child_namespaces: bool,
    /// Most events one socket may have waiting for the application's
    /// verdict ([`Server::set_event_admission`]); past it the connection
    /// is closed. Default 64.
    pub max_held_events: usize,
    /// The Socket.IO parser every client must speak (the official
    /// `parser` option): the default one, or `socket.io-msgpack-parser`.
    pub parser: Parser,
}

/// The file names of the official browser client, as the official server
/// serves them under its path.
pub const CLIENT_FILES: &[&str] = &[
    "socket.io.js",
    "socket.io.js.map",
    "socket.io.min.js",
    "socket.io.min.js.map",
    "socket.io.esm.min.js",
    "socket.io.esm.min.js.map",
    "socket.io.msgpack.min.js",
    "socket.io.msgpack.min.js.map",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            engine: engineio::Config::default().path("/socket.io/"),
            connect_timeout: Duration::from_secs(45),
            max_attachments: 10,
            cluster: false,
            client_files: true,
            recovery: None,
            cleanup_empty_child_namespaces: false,
            max_held_events: 64,
            parser: Parser::Default,
        }
    }
}

impl Config {
    /// Sets [`engine`](Self::engine).
    pub fn engine(mut self, e: engineio::Config) -> Self {
        self.engine = e;
        self
    }
    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`max_attachments`](Self::max_attachments).
    pub fn max_attachments(mut self, n: usize) -> Self {
        self.max_attachments = n;
        self
    }
    /// Sets [`client_files`](Self::client_files).
    pub fn client_files(mut self, on: bool) -> Self {
        self.client_files = on;
        self
    }
    /// Sets [`cluster`](Self::cluster).
    pub fn cluster(mut self, on: bool) -> Self {
        self.cluster = on;
        self
    }
    /// Sets [`recovery`](Self::recovery).
    pub fn recovery(mut self, r: Option<RecoveryConfig>) -> Self {
        self.recovery = r;
        self
    }
    /// Sets [`max_held_events`](Self::max_held_events).
    pub fn max_held_events(mut self, n: usize) -> Self {
        self.max_held_events = n;
        self
    }
    /// Sets [`parser`](Self::parser).
    pub fn parser(mut self, p: Parser) -> Self {
        self.parser = p;
        self
    }
    /// Sets [`cleanup_empty_child_namespaces`](Self::cleanup_empty_child_namespaces).
    pub fn cleanup_empty_child_namespaces(mut self, on: bool) -> Self {
        self.cleanup_empty_child_namespaces = on;
        self
    }
}
