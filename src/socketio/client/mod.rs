//! The Socket.IO v5 client machine: a manager over one Engine.IO client at
//! a time, multiplexing namespace sockets, with reconnection.
//!
//! # Theory of operation
//!
//! The [`Client`] plays the part of the official client's `Manager` and of
//! its `Socket`s at once. It owns at most one live [`engineio::Client`]
//! (the *engine*); each namespace joined with [`Client::socket`] is a
//! *namespace socket*, named by a small [`NspId`].
//!
//! ```text
//!            engine open                    engine closed (not by us)
//!  Opening ─────────────► Open ───────────────────────────────────────► Reconnecting
//!     │  ▲                  │  close(), or the last socket leaves           │   │
//!     │  └──────────────────┼───────────── delay elapsed (attempt n) ◄───────┘   │
//!     │ open failed         ▼                                                    │
//!     └───────────────► Closed ◄────── attempts exhausted, or close() ───────────┘
//! ```
//!
//! * **Namespaces.** A socket is *active* from [`Client::socket`] until it
//!   leaves ([`Client::disconnect`], a server `DISCONNECT`, or a
//!   `CONNECT_ERROR`). Whenever the engine opens, every active socket sends
//!   its `CONNECT` (with its auth payload); the server's answer gives
//!   [`ClientEvent::Connect`]. When the last active socket leaves, the
//!   engine is closed and nothing reconnects, as in the official client.
//! * **Emits** on a connected socket go straight to the engine. Emits made
//!   while it is not connected wait in its *send buffer* and leave in order
//!   right after its next `Connect` (unless [`ClientConfig::send_buffer`] is
//!   off, when they are refused). Volatile emits
//!   ([`Client::emit_volatile`]) are dropped instead whenever the transport
//!   could not take them at once.
//! * **Acknowledgements.** Each emit made with [`Client::emit_with_ack`]
//!   ends in exactly one of [`ClientEvent::Ack`], [`ClientEvent::AckTimeout`]
//!   (its timeout passed; if it was still buffered it is never sent) or
//!   [`ClientEvent::AckLost`] (the socket disconnected after it was sent,
//!   the official "socket has been disconnected"). Ack ids count per socket.
//! * **Connection state recovery**, when the server keeps state (the
//!   official `connectionStateRecovery`): a socket keeps the private id
//!   (`pid`) of the server's `CONNECT` answer and the offset of the last
//!   event it handed out (the last argument of an event without ack id,
//!   when it is a string; left in the arguments, as the official client
//!   does). Its next `CONNECT` carries `{pid, offset, ...auth}`; when the
//!   answer repeats the pid, the server restored the socket (its id,
//!   rooms, and the events it missed, which follow
//!   [`ClientEvent::Connect`] with `recovered` set).
//! * **Reconnection** (socket.io-client `Manager`): when the engine closes
//!   for any reason but ours or the server's explicit disconnect, every
//!   connected socket hears [`ClientEvent::Disconnect`] with the official
//!   reason, and after a delay a new engine opens. The delay of attempt `n`
//!   is `reconnection_delay * 2^(n-1)`, moved up or down by a random
//!   fraction of at most `randomization_factor` (drawn from the injected
//!   entropy), then capped at `reconnection_delay_max`. A successful open
//!   gives [`ClientEvent::Reconnected`] and resets the count; a failed one
//!   gives [`ClientEvent::ReconnectError`] and schedules the next; after
//!   `reconnection_attempts` failures, [`ClientEvent::ReconnectFailed`].
//!
//! The driver-facing surface is the engine client's: the same
//! [`ClientTransmit`] work items (open a connection, write, close) and
//! `handle_*` inputs. Connection ids carry the engine's generation in their
//! upper bits, so they stay unique across reconnections, and inputs for an
//! engine that is gone (or still finishing its close handshake) reach the
//! right one or are ignored.
//!
//! Timers (the engine's, the open timeout, the reconnection delay, ack
//! timeouts) are combined by [`Client::poll_timeout`].
//!
//! # Where things are
//!
//! * this file: the public types, the client's state, the queries and the
//!   pollers;
//! * `config.rs`: the options;
//! * `manager.rs`: the engine's lifecycle and inputs, and reconnection;
//! * `nsp.rs`: namespace sockets, joining and leaving, and the packets the
//!   server sends them;
//! * `send_buffer.rs`: emits, and the send buffer of those that cannot
//!   leave yet;
//! * `ack.rs`: emits that wait for an answer, and answers (the table
//!   itself is `../ack.rs`, shared with the server, as is the deadline heap
//!   in `../timer.rs`).

mod ack;
mod config;
mod manager;
mod nsp;
mod send_buffer;

use std::{
    collections::VecDeque,
    fmt,
    time::{Duration, Instant},
};

pub use config::ClientConfig;

use super::{Packet, Value, ack::Pending, msgpack::MessageDecoder, timer::Deadlines};
use crate::{
    engineio::{self, ClientError, ClientTransmit, CloseReason, TransportKind},
    entropy::{BoxEntropy, SeededEntropy},
};

/// Names one namespace socket of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NspId(u32);

/// Why a namespace socket disconnected, with the official client's
/// wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientDisconnectReason {
    /// The server disconnected the socket (a `DISCONNECT` packet): no
    /// reconnection.
    IoServerDisconnect,
    /// The application disconnected it ([`Client::disconnect`] or
    /// [`Client::close`]).
    IoClientDisconnect,
    /// The connection was closed (by the server, or the network).
    TransportClose,
    /// The connection failed.
    TransportError,
    /// The server stopped pinging.
    PingTimeout,
    /// The server sent something that cannot be decoded.
    ParseError,
}

impl ClientDisconnectReason {
    /// The reason as the official client reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientDisconnectReason::IoServerDisconnect => "io server disconnect",
            ClientDisconnectReason::IoClientDisconnect => "io client disconnect",
            ClientDisconnectReason::TransportClose => "transport close",
            ClientDisconnectReason::TransportError => "transport error",
            ClientDisconnectReason::PingTimeout => "ping timeout",
            ClientDisconnectReason::ParseError => "parse error",
        }
    }

    /// Whether the client reconnects after it (with reconnection on).
    pub fn reconnects(self) -> bool {
        !matches!(
            self,
            ClientDisconnectReason::IoServerDisconnect | ClientDisconnectReason::IoClientDisconnect
        )
    }

    fn from_engine(r: CloseReason) -> Self {
        match r {
            CloseReason::TransportClose => ClientDisconnectReason::TransportClose,
            CloseReason::PingTimeout => ClientDisconnectReason::PingTimeout,
            CloseReason::ParseError => ClientDisconnectReason::ParseError,
            CloseReason::TransportError | CloseReason::SendQueueFull | CloseReason::SendTimeout => {
                ClientDisconnectReason::TransportError
            }
            // Only our own close ends an engine with this reason.
            CloseReason::ForcedClose => ClientDisconnectReason::IoClientDisconnect,
        }
    }
}

impl fmt::Display for ClientDisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the application must hear.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A namespace socket connected (its send buffer is being sent). The
    /// events the server sent before its answer follow it.
    Connect {
        /// The socket.
        nsp: NspId,
        /// Its id on the server.
        sid: String,
        /// Whether the server restored the socket's earlier state (the
        /// official `socket.recovered`; see the module docs): it kept its
        /// id and rooms, and the events it missed follow.
        recovered: bool,
    },
    /// The server refused a namespace (`{"message": ..., "data": ...}`,
    /// e.g. `Invalid namespace`). The socket is no longer active: it does
    /// not retry.
    ConnectError {
        /// The socket.
        nsp: NspId,
        /// The server's payload.
        data: Value,
    },
    /// The server emitted an event.
    Event {
        /// The socket.
        nsp: NspId,
        /// The event name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
        /// Set when the server waits for an answer: pass it to
        /// [`Client::ack`].
        ack: Option<u64>,
    },
    /// The answer to an emit made with [`Client::emit_with_ack`].
    Ack {
        /// The socket.
        nsp: NspId,
        /// The id `emit_with_ack` returned.
        id: u64,
        /// The answer.
        args: Vec<Value>,
    },
    /// An emit made with [`Client::emit_with_ack`] got no answer in time.
    AckTimeout {
        /// The socket.
        nsp: NspId,
        /// The id `emit_with_ack` returned.
        id: u64,
    },
    /// An emit made with [`Client::emit_with_ack`] will get no answer: the
    /// socket disconnected after it was sent.
    AckLost {
        /// The socket.
        nsp: NspId,
        /// The id `emit_with_ack` returned.
        id: u64,
    },
    /// A connected socket disconnected.
    Disconnect {
        /// The socket.
        nsp: NspId,
        /// Why; see [`ClientDisconnectReason::reconnects`].
        reason: ClientDisconnectReason,
    },
    /// The first connection could not be opened (reconnection follows if
    /// it is on).
    OpenError {
        /// How the engine ended.
        reason: CloseReason,
        /// The failure behind it.
        error: Option<ClientError>,
    },
    /// A reconnection attempt is scheduled.
    Reconnecting {
        /// The attempt's number, from 1.
        attempt: u32,
        /// How long until it starts.
        delay: Duration,
    },
    /// A reconnection attempt failed (the next one is scheduled, or
    /// [`ReconnectFailed`](Self::ReconnectFailed) follows).
    ReconnectError {
        /// The attempt's number.
        attempt: u32,
        /// How the engine ended.
        reason: CloseReason,
        /// The failure behind it.
        error: Option<ClientError>,
    },
    /// Every reconnection attempt failed; the client is closed.
    ReconnectFailed,
    /// A reconnection attempt opened the connection; the active sockets
    /// are connecting again.
    Reconnected {
        /// The attempt's number.
        attempt: u32,
    },
}

/// A misuse of the client's commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientUsageError {
    /// No socket has this id.
    #[error("unknown namespace socket {0:?}")]
    UnknownNsp(NspId),
    /// A namespace must start with `/` and hold no `,` or control
    /// character.
    #[error("invalid namespace name {0:?}")]
    InvalidNamespace(String),
    /// The auth payload must be an object.
    #[error("the auth payload must be an object")]
    InvalidAuth,
    /// The event name is reserved.
    #[error("event name {0:?} is reserved")]
    ReservedEvent(String),
    /// The socket is not connected (and emits are not buffered, or this
    /// is an ack).
    #[error("the socket is not connected")]
    NotConnected,
    /// The socket's send buffer holds [`ClientConfig::max_send_buffer`]
    /// emits.
    #[error("the send buffer is full")]
    BufferFull,
}

/// The client's state as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// A connection is opening.
    Opening,
    /// The connection is open.
    Open,
    /// Waiting for the delay before a reconnection attempt.
    Reconnecting,
    /// No connection, and none coming (closed, or reconnection gave up or
    /// is off).
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NspState {
    /// Not connected; `CONNECT` goes out when the engine opens.
    Idle,
    /// `CONNECT` sent.
    Connecting,
    /// Connected with this id.
    Connected(String),
}

#[derive(Debug)]
struct Nsp {
    name: String,
    auth: Option<Value>,
    /// Reconnects with the manager (the official `socket.active`).
    active: bool,
    state: NspState,
    /// Emits waiting to leave, each with whether it may be compressed.
    send_buffer: VecDeque<(Packet, bool)>,
    receive_buffer: VecDeque<ClientEvent>,
    /// The private id of the server's last answer, with connection state
    /// recovery on the server.
    pid: Option<String>,
    /// The offset of the last event handed out (see `nsp.rs`).
    offset: Option<String>,
    /// Whether the last connection restored the earlier state.
    recovered: bool,
    next_ack: u64,
    /// Emits waiting for an answer, with their deadlines.
    acks: Pending,
}

impl Nsp {
    fn connected(&self) -> bool {
        matches!(self.state, NspState::Connected(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ready {
    Opening,
    Open,
    Closed,
}

struct Engine {
    generation: u64,
    client: engineio::Client,
}

/// The Socket.IO client: namespace sockets over one Engine.IO connection,
/// reconnecting when it is lost.
///
/// Inputs are the engine client's: [`handle_input`](Self::handle_input),
/// [`handle_eof`](Self::handle_eof), [`handle_error`](Self::handle_error)
/// and [`handle_timeout`](Self::handle_timeout). Commands:
/// [`socket`](Self::socket), [`emit`](Self::emit),
/// [`emit_with_ack`](Self::emit_with_ack), [`ack`](Self::ack),
/// [`disconnect`](Self::disconnect), [`close`](Self::close)... It is a
/// [`ConnMachine`](crate::machine::ConnMachine) whose transmits
/// ([`ClientTransmit`]) ask the driver to open connections: drive it as
/// [`machine`](crate::machine) says.
///
/// ```
/// use std::time::Instant;
/// use wsio::{engineio::ClientTransmit, entropy::SeededEntropy, socketio::{Client, ClientConfig, Value}};
///
/// let now = Instant::now();
/// let mut io = Client::new(ClientConfig::new("localhost:3000"), Box::new(SeededEntropy::new(1)), now);
/// let chat = io.socket(now, "/chat", Some(Value::object([("token", Value::from("abc"))]))).unwrap();
/// io.emit(now, chat, "hello", vec![Value::from(1)]).unwrap(); // buffered until connected
/// let Some(ClientTransmit::Connect { conn }) = io.poll_transmit(now) else { panic!() };
/// let Some(ClientTransmit::Data { data, .. }) = io.poll_transmit(now) else { panic!() };
/// assert!(data.starts_with(b"GET /socket.io/?EIO=4&transport=polling"));
/// ```
pub struct Client {
    config: ClientConfig,
    entropy: BoxEntropy,
    /// Jitter for the reconnection delays, seeded from `entropy`.
    jitter: SeededEntropy,
    engine: Option<Engine>,
    /// Engines we let go of, finishing their close handshakes.
    closing: Vec<Engine>,
    next_gen: u64,
    ready: Ready,
    /// The engine opening now is a reconnection attempt.
    open_is_reconnect: bool,
    open_deadline: Option<Instant>,
    reconnecting: bool,
    skip_reconnect: bool,
    /// Backoff attempts so far.
    attempts: u32,
    reconnect_at: Option<Instant>,
    decoder: MessageDecoder,
    nsps: Vec<Nsp>,
    ack_timers: Deadlines<(NspId, u64)>,
    transmits: VecDeque<ClientTransmit>,
    /// Output of connections whose sockets are full (outer ids).
    held: crate::machine::Backlog<ClientTransmit>,
    events: VecDeque<ClientEvent>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .field("engine", &self.engine.as_ref().map(|e| &e.client))
            .field(
                "nsps",
                &self
                    .nsps
                    .iter()
                    .map(|n| (&n.name, &n.state))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client that starts connecting at once (the official
    /// `autoConnect`): the first transmit opens the engine. Namespaces are
    /// joined with [`socket`](Self::socket). `entropy` supplies every
    /// random byte (the engine's, and the reconnection jitter).
    pub fn new(config: ClientConfig, mut entropy: BoxEntropy, now: Instant) -> Self {
        let jitter = SeededEntropy::from_entropy(&mut *entropy);
        let mut c = Client {
            decoder: config.parser.decoder(config.max_attachments),
            config,
            entropy,
            jitter,
            engine: None,
            closing: Vec::new(),
            next_gen: 0,
            ready: Ready::Closed,
            open_is_reconnect: false,
            open_deadline: None,
            reconnecting: false,
            skip_reconnect: false,
            attempts: 0,
            reconnect_at: None,
            nsps: Vec::new(),
            ack_timers: Deadlines::default(),
            transmits: VecDeque::new(),
            held: crate::machine::Backlog::default(),
            events: VecDeque::new(),
        };
        c.open_engine(now, false);
        c.pump(now);
        c
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        match self.ready {
            Ready::Opening => ClientState::Opening,
            Ready::Open => ClientState::Open,
            Ready::Closed if self.reconnect_at.is_some() => ClientState::Reconnecting,
            Ready::Closed => ClientState::Closed,
        }
    }

    /// The engine in use (opening or open), for its own queries.
    pub fn engine(&self) -> Option<&engineio::Client> {
        self.engine.as_ref().map(|e| &e.client)
    }

    /// The transport of the open connection.
    pub fn transport(&self) -> Option<TransportKind> {
        match self.ready {
            Ready::Open => self.engine().and_then(|e| e.transport()),
            _ => None,
        }
    }

    /// The socket of a namespace, if [`socket`](Self::socket) made one.
    pub fn nsp(&self, name: &str) -> Option<NspId> {
        self.nsps
            .iter()
            .position(|n| n.name == name)
            .map(|i| NspId(i as u32))
    }

    /// A socket's namespace.
    pub fn nsp_name(&self, nsp: NspId) -> Option<&str> {
        self.get(nsp).map(|n| n.name.as_str())
    }

    /// A connected socket's id on the server.
    pub fn sid(&self, nsp: NspId) -> Option<&str> {
        match &self.get(nsp)?.state {
            NspState::Connected(sid) => Some(sid),
            _ => None,
        }
    }

    /// Whether a socket is connected.
    pub fn is_connected(&self, nsp: NspId) -> bool {
        self.get(nsp).is_some_and(Nsp::connected)
    }

    /// Whether a socket is active: it connects whenever the connection
    /// opens (see the module docs).
    pub fn is_active(&self, nsp: NspId) -> bool {
        self.get(nsp).is_some_and(|n| n.active)
    }

    /// Whether a socket's last connection restored its earlier state
    /// (the official `socket.recovered`).
    pub fn recovered(&self, nsp: NspId) -> bool {
        self.get(nsp).is_some_and(|n| n.recovered)
    }

    /// How many emits wait in a socket's send buffer.
    pub fn buffered(&self, nsp: NspId) -> usize {
        self.get(nsp).map_or(0, |n| n.send_buffer.len())
    }

    /// The next piece of work for the driver.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<ClientTransmit> {
        let _ = now;
        self.held.next(&mut self.transmits)
    }

    /// The next event for the application.
    pub fn poll_event(&mut self, now: Instant) -> Option<ClientEvent> {
        let _ = now;
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let engines = self
            .engine
            .iter()
            .chain(self.closing.iter())
            .filter_map(|e| e.client.poll_timeout());
        let own = [
            self.open_deadline.filter(|_| self.ready == Ready::Opening),
            self.reconnect_at,
            self.ack_timers.next(),
        ];
        engines.chain(own.into_iter().flatten()).min()
    }

    fn get(&self, nsp: NspId) -> Option<&Nsp> {
        self.nsps.get(nsp.0 as usize)
    }

    /// The sockets that are active now, in the order they were made.
    fn active_nsps(&self) -> Vec<NspId> {
        self.nsps
            .iter()
            .enumerate()
            .filter(|(_, n)| n.active)
            .map(|(i, _)| NspId(i as u32))
            .collect()
    }
}

crate::machine::by_inherent_methods!(Client: Machine<ClientTransmit, ClientEvent>);
crate::machine::by_inherent_methods!(Client: ConnMachine(handle_error));

#[cfg(test)]
#[path = "../client_tests.rs"]
mod tests;
