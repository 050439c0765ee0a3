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
//! [`ClientTransmit`] work items and `handle_*` inputs. Request and stream
//! ids carry the engine's generation in their upper bits, so they stay
//! unique across reconnections, and inputs for an engine that is gone (or
//! still finishing its close handshake) reach the right one or are ignored.
//!
//! Timers (the engine's, the open timeout, the reconnection delay, ack
//! timeouts) are combined by [`Client::poll_timeout`].

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    fmt,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{Decoder, Packet, RESERVED_EVENTS, Value};
use crate::{
    engineio::{
        self, ClientError, ClientEvent as EngineEvent, ClientTransmit, CloseReason, Data,
        RequestFailed, RequestId, TransportKind,
    },
    entropy::{BoxEntropy, Entropy, SeededEntropy},
    http::ResponseHead,
};

/// Bits of a request id that belong to the engine; the bits above count
/// engines. 2^40 requests per engine is decades of polling.
const GEN_SHIFT: u32 = 40;
const INNER_MASK: u64 = (1 << GEN_SHIFT) - 1;

/// Events that arrive for a socket still waiting for its `CONNECT` answer
/// are held, up to this many (a correct server sends none).
const MAX_RECEIVE_BUFFER: usize = 1024;

/// Names one namespace socket of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NspId(u32);

/// Client options; the defaults are the official client's.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The Engine.IO options; the path defaults to `/socket.io/`.
    pub engine: engineio::ClientConfig,
    /// Whether to reconnect after the connection is lost. Default on.
    pub reconnection: bool,
    /// How many reconnection attempts before giving up; `None` (the
    /// default) never gives up.
    pub reconnection_attempts: Option<u32>,
    /// The delay before the first attempt, doubled for each next one.
    /// Default 1000 ms.
    pub reconnection_delay: Duration,
    /// The longest delay. Default 5000 ms.
    pub reconnection_delay_max: Duration,
    /// How far (as a fraction, 0 to 1) each delay is moved at random up or
    /// down. Default 0.5; a value outside `(0, 1]` means none.
    pub randomization_factor: f64,
    /// How long the engine may take to open (the official `timeout`).
    /// Default 20 s.
    pub timeout: Duration,
    /// Whether emits made while a socket is not connected wait for its next
    /// connection (the official `sendBuffer`). Default on; off, they fail
    /// with [`ClientUsageError::NotConnected`].
    pub send_buffer: bool,
    /// Most emits waiting in one socket's send buffer; beyond, emits fail
    /// with [`ClientUsageError::BufferFull`]. Default 10,000.
    pub max_send_buffer: usize,
    /// Most attachments in one packet received. Default 10, as the
    /// official parser.
    pub max_attachments: usize,
}

impl ClientConfig {
    /// The defaults, for a server reached with `host` as the `Host` header.
    pub fn new(host: impl Into<String>) -> Self {
        ClientConfig {
            engine: engineio::ClientConfig::new(host).path("/socket.io/"),
            reconnection: true,
            reconnection_attempts: None,
            reconnection_delay: Duration::from_millis(1000),
            reconnection_delay_max: Duration::from_millis(5000),
            randomization_factor: 0.5,
            timeout: Duration::from_secs(20),
            send_buffer: true,
            max_send_buffer: 10_000,
            max_attachments: 10,
        }
    }

    /// Sets [`engine`](Self::engine).
    pub fn engine(mut self, e: engineio::ClientConfig) -> Self {
        self.engine = e;
        self
    }
    /// Sets the engine's transport mode.
    pub fn mode(mut self, mode: engineio::TransportMode) -> Self {
        self.engine.mode = mode;
        self
    }
    /// Sets [`reconnection`](Self::reconnection).
    pub fn reconnection(mut self, on: bool) -> Self {
        self.reconnection = on;
        self
    }
    /// Sets [`reconnection_attempts`](Self::reconnection_attempts).
    pub fn reconnection_attempts(mut self, n: Option<u32>) -> Self {
        self.reconnection_attempts = n;
        self
    }
    /// Sets [`reconnection_delay`](Self::reconnection_delay).
    pub fn reconnection_delay(mut self, d: Duration) -> Self {
        self.reconnection_delay = d;
        self
    }
    /// Sets [`reconnection_delay_max`](Self::reconnection_delay_max).
    pub fn reconnection_delay_max(mut self, d: Duration) -> Self {
        self.reconnection_delay_max = d;
        self
    }
    /// Sets [`randomization_factor`](Self::randomization_factor).
    pub fn randomization_factor(mut self, f: f64) -> Self {
        self.randomization_factor = f;
        self
    }
    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Sets [`send_buffer`](Self::send_buffer).
    pub fn send_buffer(mut self, on: bool) -> Self {
        self.send_buffer = on;
        self
    }
    /// Sets [`max_send_buffer`](Self::max_send_buffer).
    pub fn max_send_buffer(mut self, n: usize) -> Self {
        self.max_send_buffer = n;
        self
    }
    /// Sets [`max_attachments`](Self::max_attachments).
    pub fn max_attachments(mut self, n: usize) -> Self {
        self.max_attachments = n;
        self
    }
}

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
            CloseReason::TransportError => ClientDisconnectReason::TransportError,
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
    /// A namespace socket connected (its send buffer is being sent).
    Connect {
        /// The socket.
        nsp: NspId,
        /// Its id on the server.
        sid: String,
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
    send_buffer: VecDeque<Packet>,
    receive_buffer: VecDeque<ClientEvent>,
    next_ack: u64,
    /// Emits waiting for an answer, with their deadlines.
    acks: std::collections::BTreeMap<u64, Option<Instant>>,
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
/// # Run loop
///
/// Inputs are the engine client's: [`handle_response`](Self::handle_response),
/// [`handle_stream_input`](Self::handle_stream_input),
/// [`handle_stream_eof`](Self::handle_stream_eof),
/// [`handle_stream_error`](Self::handle_stream_error) and
/// [`handle_timeout`](Self::handle_timeout). Commands: [`socket`](Self::socket),
/// [`emit`](Self::emit), [`emit_with_ack`](Self::emit_with_ack),
/// [`ack`](Self::ack), [`disconnect`](Self::disconnect), [`close`](Self::close)...
/// After any input or command, drain [`poll_transmit`](Self::poll_transmit)
/// (perform the work it gives, see [`ClientTransmit`]), then
/// [`poll_event`](Self::poll_event), then arm a timer for
/// [`poll_timeout`](Self::poll_timeout). Commands issued while handling an
/// event are fine: keep draining until both pollers return `None`.
///
/// ```
/// use std::time::Instant;
/// use wsio::{engineio::ClientTransmit, entropy::SeededEntropy, socketio::{Client, ClientConfig, Value}};
///
/// let now = Instant::now();
/// let mut io = Client::new(ClientConfig::new("localhost:3000"), Box::new(SeededEntropy::new(1)), now);
/// let chat = io.socket(now, "/chat", Some(Value::object([("token", Value::from("abc"))]))).unwrap();
/// io.emit(now, chat, "hello", vec![Value::from(1)]).unwrap(); // buffered until connected
/// let Some(ClientTransmit::Request { request, .. }) = io.poll_transmit() else { panic!() };
/// assert!(request.head.target.starts_with("/socket.io/?EIO=4&transport=polling"));
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
    decoder: Decoder,
    nsps: Vec<Nsp>,
    ack_timers: BinaryHeap<Reverse<(Instant, NspId, u64)>>,
    transmits: VecDeque<ClientTransmit>,
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
            decoder: Decoder::new(config.max_attachments),
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
            ack_timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        c.open_engine(now, false);
        c.pump(now);
        c
    }

    // ----- queries ------------------------------------------------------

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

    /// How many emits wait in a socket's send buffer.
    pub fn buffered(&self, nsp: NspId) -> usize {
        self.get(nsp).map_or(0, |n| n.send_buffer.len())
    }

    // ----- inputs (the engine client's) -----------------------------------

    /// The answer to request `id` (see
    /// [`engineio::Client::handle_response`]). Unknown ids are ignored.
    pub fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) {
        if let Some((e, inner)) = self.route(id) {
            e.handle_response(now, inner, response);
        }
        self.pump(now);
    }

    /// Bytes the server sent on stream `id`. Unknown ids are ignored.
    pub fn handle_stream_input(&mut self, now: Instant, id: RequestId, bytes: &[u8]) {
        if let Some((e, inner)) = self.route(id) {
            e.handle_stream_input(now, inner, bytes);
        }
        self.pump(now);
    }

    /// Stream `id` ended (the server closed it).
    pub fn handle_stream_eof(&mut self, now: Instant, id: RequestId) {
        if let Some((e, inner)) = self.route(id) {
            e.handle_stream_eof(now, inner);
        }
        self.pump(now);
    }

    /// Stream `id` could not be opened, or broke.
    pub fn handle_stream_error(&mut self, now: Instant, id: RequestId) {
        if let Some((e, inner)) = self.route(id) {
            e.handle_stream_error(now, inner);
        }
        self.pump(now);
    }

    /// Runs every timer that is due. Cheap; early or repeated calls do
    /// nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(e) = &mut self.engine {
            e.client.handle_timeout(now);
        }
        for e in &mut self.closing {
            e.client.handle_timeout(now);
        }
        // Let the engine report what its timers did before ours act.
        self.pump(now);
        if self.open_deadline.is_some_and(|d| d <= now) && self.ready == Ready::Opening {
            self.open_deadline = None;
            self.retire_engine(now, true);
            self.on_open_error(now, CloseReason::TransportError, Some(ClientError::Timeout));
        }
        if self.reconnect_at.is_some_and(|d| d <= now) {
            self.reconnect_at = None;
            if !self.skip_reconnect && self.ready == Ready::Closed {
                self.open_engine(now, true);
            }
        }
        while let Some(Reverse((at, nsp, id))) = self.ack_timers.peek().copied() {
            if at > now {
                break;
            }
            self.ack_timers.pop();
            let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
                continue;
            };
            if n.acks.get(&id) == Some(&Some(at)) {
                n.acks.remove(&id);
                n.send_buffer
                    .retain(|p| !matches!(p, Packet::Event { id: Some(i), .. } if *i == id));
                self.events.push_back(ClientEvent::AckTimeout { nsp, id });
            }
        }
        self.pump(now);
    }

    // ----- outputs ------------------------------------------------------

    /// The next piece of work for the driver. Poll after every input and
    /// command until `None`.
    pub fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application. Poll after every input and
    /// command until `None`.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
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
            self.ack_timers.peek().map(|Reverse((at, _, _))| *at),
        ];
        engines.chain(own.into_iter().flatten()).min()
    }

    // ----- commands -----------------------------------------------------

    /// The socket of namespace `name` (`/`, `/admin`...), connecting with
    /// `auth` (an object, or none). Asking again for a namespace gives the
    /// same socket; if it had left, it becomes active again with the new
    /// auth. If the client is closed (and not about to reconnect), a new
    /// connection opens.
    pub fn socket(
        &mut self,
        now: Instant,
        name: &str,
        auth: Option<Value>,
    ) -> Result<NspId, ClientUsageError> {
        if !name.starts_with('/') || name.contains(',') || name.chars().any(char::is_control) {
            return Err(ClientUsageError::InvalidNamespace(name.to_owned()));
        }
        if auth
            .as_ref()
            .is_some_and(|a| !matches!(a, Value::Object(_)))
        {
            return Err(ClientUsageError::InvalidAuth);
        }
        let id = match self.nsp(name) {
            Some(id) => id,
            None => {
                let id = NspId(u32::try_from(self.nsps.len()).unwrap_or(u32::MAX));
                self.nsps.push(Nsp {
                    name: name.to_owned(),
                    auth: None,
                    active: false,
                    state: NspState::Idle,
                    send_buffer: VecDeque::new(),
                    receive_buffer: VecDeque::new(),
                    next_ack: 0,
                    acks: Default::default(),
                });
                id
            }
        };
        let Some(n) = self.nsps.get_mut(id.0 as usize) else {
            return Err(ClientUsageError::UnknownNsp(id));
        };
        let was_active = std::mem::replace(&mut n.active, true);
        if !was_active {
            n.auth = auth;
        }
        match self.ready {
            Ready::Open if !was_active => self.send_connect(now, id),
            Ready::Open | Ready::Opening => {}
            Ready::Closed if self.reconnecting => {}
            Ready::Closed => self.open_engine(now, false),
        }
        self.pump(now);
        Ok(id)
    }

    /// Emits an event. On a socket that is not connected it waits in the
    /// send buffer (see [`ClientConfig::send_buffer`]).
    pub fn emit(
        &mut self,
        now: Instant,
        nsp: NspId,
        name: &str,
        args: Vec<Value>,
    ) -> Result<(), ClientUsageError> {
        self.emit_packet(now, nsp, name, args, None)
    }

    /// Emits an event whose answer comes as [`ClientEvent::Ack`] with the
    /// returned id; or [`ClientEvent::AckTimeout`] once `timeout` passes
    /// (none: wait for ever), or [`ClientEvent::AckLost`] if the socket
    /// disconnects after sending it.
    pub fn emit_with_ack(
        &mut self,
        now: Instant,
        nsp: NspId,
        name: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<u64, ClientUsageError> {
        check_event_name(name)?;
        let deadline = timeout.map(|t| later(now, t));
        let n = self
            .nsps
            .get_mut(nsp.0 as usize)
            .ok_or(ClientUsageError::UnknownNsp(nsp))?;
        let id = n.next_ack;
        // Registered first: sending may end the connection at once, and
        // the ack must then be reported lost like the others.
        n.acks.insert(id, deadline);
        if let Err(e) = self.emit_packet(now, nsp, name, args, Some(id)) {
            if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
                n.acks.remove(&id);
            }
            return Err(e);
        }
        if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
            n.next_ack += 1;
        }
        if let Some(d) = deadline {
            self.ack_timers.push(Reverse((d, nsp, id)));
        }
        Ok(id)
    }

    /// Emits an event only if it can leave at once: the socket is
    /// connected and the transport is not busy (the official `volatile`
    /// flag). `Ok(false)` when it was dropped.
    pub fn emit_volatile(
        &mut self,
        now: Instant,
        nsp: NspId,
        name: &str,
        args: Vec<Value>,
    ) -> Result<bool, ClientUsageError> {
        check_event_name(name)?;
        let n = self.get(nsp).ok_or(ClientUsageError::UnknownNsp(nsp))?;
        let writable = self.ready == Ready::Open
            && n.connected()
            && n.send_buffer.is_empty()
            && self
                .engine()
                .is_some_and(|e| e.buffered_packets() == 0 && e.transport().is_some());
        if !writable {
            return Ok(false);
        }
        let packet = Packet::Event {
            nsp: n.name.clone().into(),
            id: None,
            name: name.to_owned(),
            args,
        };
        let sent = self.write_packet(now, &packet);
        self.pump(now);
        Ok(sent)
    }

    /// Answers an event that asked for it ([`ClientEvent::Event`]'s `ack`).
    pub fn ack(
        &mut self,
        now: Instant,
        nsp: NspId,
        id: u64,
        args: Vec<Value>,
    ) -> Result<(), ClientUsageError> {
        let n = self.get(nsp).ok_or(ClientUsageError::UnknownNsp(nsp))?;
        if !n.connected() || self.ready != Ready::Open {
            return Err(ClientUsageError::NotConnected);
        }
        let packet = Packet::Ack {
            nsp: n.name.clone().into(),
            id,
            args,
        };
        if !self.write_packet(now, &packet) {
            return Err(ClientUsageError::BufferFull);
        }
        self.pump(now);
        Ok(())
    }

    /// Drops what waits in a socket's send buffer (the official
    /// `socket.sendBuffer = []`); acks among them end with
    /// [`ClientEvent::AckLost`]. Returns how many were dropped.
    pub fn clear_send_buffer(&mut self, nsp: NspId) -> usize {
        let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
            return 0;
        };
        let dropped: Vec<Packet> = n.send_buffer.drain(..).collect();
        for p in &dropped {
            if let Packet::Event { id: Some(id), .. } = p {
                if n.acks.remove(id).is_some() {
                    self.events.push_back(ClientEvent::AckLost { nsp, id: *id });
                }
            }
        }
        dropped.len()
    }

    /// Leaves a namespace: a `DISCONNECT` if connected, then
    /// [`ClientEvent::Disconnect`] with `io client disconnect`. The socket
    /// no longer reconnects (until [`socket`](Self::socket) is called
    /// again). When no socket is left active, the connection closes.
    pub fn disconnect(&mut self, now: Instant, nsp: NspId) -> Result<(), ClientUsageError> {
        let n = self.get(nsp).ok_or(ClientUsageError::UnknownNsp(nsp))?;
        if n.connected() && self.ready == Ready::Open {
            let packet = Packet::Disconnect {
                nsp: n.name.clone().into(),
            };
            self.write_packet(now, &packet);
        }
        self.leave(now, nsp, ClientDisconnectReason::IoClientDisconnect);
        self.pump(now);
        Ok(())
    }

    /// Leaves every namespace (as [`disconnect`](Self::disconnect) does)
    /// and closes the connection once what was sent has left; no
    /// reconnection. [`socket`](Self::socket) opens a new one.
    pub fn close(&mut self, now: Instant) {
        for i in 0..self.nsps.len() {
            let nsp = NspId(i as u32);
            let Some(n) = self.get(nsp) else { continue };
            if !n.active {
                continue;
            }
            if n.connected() && self.ready == Ready::Open {
                let packet = Packet::Disconnect {
                    nsp: n.name.clone().into(),
                };
                self.write_packet(now, &packet);
            }
            if let Some(n) = self.nsps.get_mut(i) {
                n.active = false;
            }
            self.socket_closed(nsp, ClientDisconnectReason::IoClientDisconnect);
        }
        self.shutdown(now);
        self.pump(now);
    }

    // ----- internals: engines -------------------------------------------

    fn get(&self, nsp: NspId) -> Option<&Nsp> {
        self.nsps.get(nsp.0 as usize)
    }

    fn open_engine(&mut self, now: Instant, is_reconnect: bool) {
        if self.engine.is_some() {
            self.retire_engine(now, true);
        }
        let generation = self.next_gen;
        self.next_gen += 1;
        let client = engineio::Client::new(self.config.engine.clone(), self.entropy.fork(), now);
        self.engine = Some(Engine { generation, client });
        self.ready = Ready::Opening;
        self.skip_reconnect = false;
        self.open_is_reconnect = is_reconnect;
        self.open_deadline = Some(later(now, self.config.timeout));
    }

    /// Lets go of the engine: its later events are not heard, its transmits
    /// still leave. With `close`, it is asked to close first.
    fn retire_engine(&mut self, now: Instant, close: bool) {
        let Some(mut e) = self.engine.take() else {
            return;
        };
        if close {
            e.client.close(now);
        }
        self.drain_transmits_of(&mut e);
        while e.client.poll_event().is_some() {}
        self.closing.push(e);
        self.decoder = Decoder::new(self.config.max_attachments);
    }

    /// The engine (current or closing) a request id belongs to, and the id
    /// it knows it by.
    fn route(&mut self, id: RequestId) -> Option<(&mut engineio::Client, RequestId)> {
        let generation = id.0 >> GEN_SHIFT;
        let inner = RequestId(id.0 & INNER_MASK);
        if let Some(e) = self.engine.as_mut().filter(|e| e.generation == generation) {
            return Some((&mut e.client, inner));
        }
        self.closing
            .iter_mut()
            .find(|e| e.generation == generation)
            .map(|e| (&mut e.client, inner))
    }

    fn drain_transmits_of(&mut self, e: &mut Engine) -> bool {
        let mut moved = false;
        while let Some(t) = e.client.poll_transmit() {
            moved = true;
            self.transmits.push_back(outer_transmit(e.generation, t));
        }
        moved
    }

    /// Moves the engines' output along and acts on the current engine's
    /// events, until nothing moves.
    fn pump(&mut self, now: Instant) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            if let Some(mut e) = self.engine.take() {
                moved |= self.drain_transmits_of(&mut e);
                let ev = e.client.poll_event();
                self.engine = Some(e);
                if let Some(ev) = ev {
                    self.on_engine_event(now, ev);
                    continue;
                }
            }
            let mut closing = std::mem::take(&mut self.closing);
            for e in &mut closing {
                moved |= self.drain_transmits_of(e);
                while e.client.poll_event().is_some() {}
            }
            closing.retain(|e| e.client.poll_timeout().is_some());
            closing.append(&mut self.closing);
            self.closing = closing;
            moved |= self.flush_send_buffers(now);
            if !moved {
                return;
            }
        }
    }

    fn on_engine_event(&mut self, now: Instant, ev: EngineEvent) {
        match ev {
            EngineEvent::Open { .. } => self.on_open(now),
            EngineEvent::Message(data) => self.on_data(now, data),
            EngineEvent::Upgrade | EngineEvent::UpgradeFailed(_) => {}
            EngineEvent::Close { reason, error } => {
                self.retire_engine(now, false);
                match self.ready {
                    Ready::Opening => self.on_open_error(now, reason, error),
                    Ready::Open => self.on_close(now, ClientDisconnectReason::from_engine(reason)),
                    Ready::Closed => {}
                }
            }
        }
    }

    fn on_open(&mut self, now: Instant) {
        self.ready = Ready::Open;
        self.open_deadline = None;
        self.decoder = Decoder::new(self.config.max_attachments);
        for i in 0..self.nsps.len() {
            if self.nsps.get(i).is_some_and(|n| n.active) {
                self.send_connect(now, NspId(i as u32));
            }
        }
        if std::mem::take(&mut self.open_is_reconnect) {
            let attempt = self.attempts;
            self.reconnecting = false;
            self.attempts = 0;
            self.events.push_back(ClientEvent::Reconnected { attempt });
        }
    }

    /// The engine failed before opening (the engine is already retired).
    fn on_open_error(&mut self, now: Instant, reason: CloseReason, error: Option<ClientError>) {
        self.ready = Ready::Closed;
        self.open_deadline = None;
        if std::mem::take(&mut self.open_is_reconnect) {
            self.reconnecting = false;
            self.events.push_back(ClientEvent::ReconnectError {
                attempt: self.attempts,
                reason,
                error,
            });
            self.reconnect(now);
        } else {
            self.events
                .push_back(ClientEvent::OpenError { reason, error });
            if !self.reconnecting && self.config.reconnection && self.attempts == 0 {
                self.reconnect(now);
            }
        }
    }

    /// The open connection ended (the engine is already retired).
    fn on_close(&mut self, now: Instant, reason: ClientDisconnectReason) {
        self.ready = Ready::Closed;
        self.attempts = 0;
        for i in 0..self.nsps.len() {
            if self.nsps.get(i).is_some_and(|n| n.active) {
                self.socket_closed(NspId(i as u32), reason);
            }
        }
        if self.config.reconnection && !self.skip_reconnect {
            self.reconnect(now);
        }
    }

    fn reconnect(&mut self, now: Instant) {
        if self.reconnecting || self.skip_reconnect {
            return;
        }
        if self
            .config
            .reconnection_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            self.attempts = 0;
            self.reconnecting = false;
            self.events.push_back(ClientEvent::ReconnectFailed);
            return;
        }
        let delay = self.backoff();
        self.reconnecting = true;
        self.reconnect_at = Some(later(now, delay));
        self.events.push_back(ClientEvent::Reconnecting {
            attempt: self.attempts,
            delay,
        });
    }

    /// The delay of the next attempt (socket.io-client's `Backoff`): the
    /// base doubled per attempt, moved by up to `randomization_factor` of
    /// itself, then capped.
    fn backoff(&mut self) -> Duration {
        let min = self.config.reconnection_delay.as_secs_f64() * 1000.0;
        let max = self.config.reconnection_delay_max.as_secs_f64() * 1000.0;
        // Past 2^62 the cap has long been reached; stay finite.
        let exp = i32::try_from(self.attempts.min(62)).unwrap_or(62);
        self.attempts = self.attempts.saturating_add(1);
        let mut ms = min * 2f64.powi(exp);
        let factor = self.config.randomization_factor;
        if factor > 0.0 && factor <= 1.0 {
            let r = self.jitter.next_u64();
            // 53 random bits as a fraction in [0, 1); one more bit for the
            // direction.
            let rand = (r >> 11) as f64 / (1u64 << 53) as f64;
            let deviation = (rand * factor * ms).floor();
            ms = if r & 1 == 0 {
                ms - deviation
            } else {
                ms + deviation
            };
        }
        let ms = ms.min(max).max(0.0);
        if ms.is_finite() {
            Duration::from_millis(ms as u64)
        } else {
            self.config.reconnection_delay_max
        }
    }

    /// Closes for good: no reconnection, the engine closes.
    fn shutdown(&mut self, now: Instant) {
        self.skip_reconnect = true;
        self.reconnecting = false;
        self.reconnect_at = None;
        self.open_is_reconnect = false;
        self.open_deadline = None;
        self.attempts = 0;
        if self.engine.is_some() {
            self.retire_engine(now, true);
        }
        if self.ready == Ready::Open {
            // Sockets still active (none when called from `leave`) hear it.
            for i in 0..self.nsps.len() {
                if self.nsps.get(i).is_some_and(|n| n.active) {
                    self.socket_closed(NspId(i as u32), ClientDisconnectReason::IoClientDisconnect);
                }
            }
        }
        self.ready = Ready::Closed;
    }

    // ----- internals: packets -------------------------------------------

    fn on_data(&mut self, now: Instant, data: Data) {
        let decoded = match &data {
            Data::Text(t) => self.decoder.decode_text(t.as_str()),
            Data::Binary(b) => self.decoder.decode_binary(b.clone()),
        };
        match decoded {
            Ok(Some(p)) => self.on_packet(now, p),
            Ok(None) => {}
            Err(_) => {
                self.retire_engine(now, true);
                self.on_close(now, ClientDisconnectReason::ParseError);
            }
        }
    }

    fn on_packet(&mut self, now: Instant, p: Packet) {
        let Some(nsp) = self
            .nsps
            .iter()
            .position(|n| n.active && n.name == p.nsp())
            .map(|i| NspId(i as u32))
        else {
            return;
        };
        let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
            return;
        };
        match p {
            Packet::Connect { data, .. } => {
                if n.state != NspState::Connecting {
                    return;
                }
                match data
                    .as_ref()
                    .and_then(|d| d.get("sid"))
                    .and_then(Value::as_str)
                {
                    Some(sid) => {
                        n.state = NspState::Connected(sid.to_owned());
                        self.events.push_back(ClientEvent::Connect {
                            nsp,
                            sid: sid.to_owned(),
                        });
                        let held: Vec<ClientEvent> = n.receive_buffer.drain(..).collect();
                        self.events.extend(held);
                        self.flush_send_buffer(now, nsp);
                    }
                    None => {
                        // A v2 server answers CONNECT without a sid.
                        let message = "It seems you are trying to reach a Socket.IO server in v2.x with a v3.x client, but they are not compatible";
                        self.refused(now, nsp, Value::object([("message", Value::from(message))]));
                    }
                }
            }
            Packet::ConnectError { data, .. } => self.refused(now, nsp, data),
            Packet::Disconnect { .. } => {
                self.leave(now, nsp, ClientDisconnectReason::IoServerDisconnect);
            }
            Packet::Event { id, name, args, .. } => {
                let ev = ClientEvent::Event {
                    nsp,
                    name,
                    args,
                    ack: id,
                };
                if n.connected() {
                    self.events.push_back(ev);
                } else if n.receive_buffer.len() < MAX_RECEIVE_BUFFER {
                    n.receive_buffer.push_back(ev);
                }
            }
            Packet::Ack { id, args, .. } => {
                if n.acks.remove(&id).is_some() {
                    self.events.push_back(ClientEvent::Ack { nsp, id, args });
                }
            }
        }
    }

    /// The server refused a namespace: the socket leaves for good.
    fn refused(&mut self, now: Instant, nsp: NspId, data: Value) {
        if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
            n.active = false;
            n.state = NspState::Idle;
            n.receive_buffer.clear();
        }
        self.events
            .push_back(ClientEvent::ConnectError { nsp, data });
        self.maybe_close_all(now);
    }

    /// A socket leaves (the official `destroy` then `onclose`).
    fn leave(&mut self, now: Instant, nsp: NspId, reason: ClientDisconnectReason) {
        if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
            n.active = false;
        }
        self.socket_closed(nsp, reason);
        self.maybe_close_all(now);
    }

    /// When no socket is active any more, the connection closes.
    fn maybe_close_all(&mut self, now: Instant) {
        if self.nsps.iter().all(|n| !n.active) {
            self.shutdown(now);
        }
    }

    /// A socket is no longer connected: [`ClientEvent::Disconnect`] if it
    /// was, and its acks that were sent are lost.
    fn socket_closed(&mut self, nsp: NspId, reason: ClientDisconnectReason) {
        let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
            return;
        };
        let was_connected = n.connected();
        n.state = NspState::Idle;
        n.receive_buffer.clear();
        if !was_connected {
            return;
        }
        self.events
            .push_back(ClientEvent::Disconnect { nsp, reason });
        let buffered: Vec<u64> = n
            .send_buffer
            .iter()
            .filter_map(|p| match p {
                Packet::Event { id: Some(id), .. } => Some(*id),
                _ => None,
            })
            .collect();
        let lost: Vec<u64> = n
            .acks
            .keys()
            .copied()
            .filter(|id| !buffered.contains(id))
            .collect();
        for id in lost {
            n.acks.remove(&id);
            self.events.push_back(ClientEvent::AckLost { nsp, id });
        }
    }

    fn send_connect(&mut self, now: Instant, nsp: NspId) {
        let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
            return;
        };
        n.state = NspState::Connecting;
        let packet = Packet::Connect {
            nsp: n.name.clone().into(),
            data: n.auth.clone(),
        };
        self.write_packet(now, &packet);
    }

    fn emit_packet(
        &mut self,
        now: Instant,
        nsp: NspId,
        name: &str,
        args: Vec<Value>,
        id: Option<u64>,
    ) -> Result<(), ClientUsageError> {
        check_event_name(name)?;
        let n = self.get(nsp).ok_or(ClientUsageError::UnknownNsp(nsp))?;
        let packet = Packet::Event {
            nsp: n.name.clone().into(),
            id,
            name: name.to_owned(),
            args,
        };
        let connected = n.connected() && self.ready == Ready::Open;
        if connected && n.send_buffer.is_empty() && self.write_packet(now, &packet) {
            self.pump(now);
            return Ok(());
        }
        // On a connected socket the buffer only holds what the engine could
        // not take yet; it leaves as soon as it can.
        if !connected && !self.config.send_buffer {
            return Err(ClientUsageError::NotConnected);
        }
        let max = self.config.max_send_buffer;
        let n = self
            .nsps
            .get_mut(nsp.0 as usize)
            .ok_or(ClientUsageError::UnknownNsp(nsp))?;
        if n.send_buffer.len() >= max {
            return Err(ClientUsageError::BufferFull);
        }
        n.send_buffer.push_back(packet);
        Ok(())
    }

    /// Writes a packet and its attachments to the open engine, all or
    /// nothing: false if the engine cannot take them now.
    fn write_packet(&mut self, now: Instant, packet: &Packet) -> bool {
        let Some(e) = self.engine.as_mut().filter(|_| self.ready == Ready::Open) else {
            return false;
        };
        let (text, attachments) = packet.encode();
        let room = e
            .client
            .config()
            .max_buffered_packets
            .saturating_sub(e.client.buffered_packets());
        if room < 1 + attachments.len() {
            return false;
        }
        if e.client.send(now, text).is_err() {
            return false;
        }
        for a in attachments {
            let _ = e.client.send(now, a);
        }
        true
    }

    /// Sends what waits in the send buffers of connected sockets, as far as
    /// the engine takes it.
    fn flush_send_buffers(&mut self, now: Instant) -> bool {
        if self.ready != Ready::Open {
            return false;
        }
        let mut moved = false;
        for i in 0..self.nsps.len() {
            moved |= self.flush_send_buffer(now, NspId(i as u32));
        }
        moved
    }

    fn flush_send_buffer(&mut self, now: Instant, nsp: NspId) -> bool {
        let mut moved = false;
        loop {
            let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
                return moved;
            };
            if !n.connected() {
                return moved;
            }
            let Some(p) = n.send_buffer.pop_front() else {
                return moved;
            };
            if !self.write_packet(now, &p) {
                if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
                    n.send_buffer.push_front(p);
                }
                return moved;
            }
            moved = true;
        }
    }
}

/// `now + d`, or a year from now if that overflows (a huge configured
/// duration must not panic).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

fn check_event_name(name: &str) -> Result<(), ClientUsageError> {
    if RESERVED_EVENTS.contains(&name) {
        Err(ClientUsageError::ReservedEvent(name.to_owned()))
    } else {
        Ok(())
    }
}

fn outer_id(generation: u64, id: RequestId) -> RequestId {
    RequestId((generation << GEN_SHIFT) | (id.0 & INNER_MASK))
}

fn outer_transmit(generation: u64, t: ClientTransmit) -> ClientTransmit {
    match t {
        ClientTransmit::Request { id, request } => ClientTransmit::Request {
            id: outer_id(generation, id),
            request,
        },
        ClientTransmit::CancelRequest { id } => ClientTransmit::CancelRequest {
            id: outer_id(generation, id),
        },
        ClientTransmit::OpenStream { id } => ClientTransmit::OpenStream {
            id: outer_id(generation, id),
        },
        ClientTransmit::StreamData { id, data } => ClientTransmit::StreamData {
            id: outer_id(generation, id),
            data,
        },
        ClientTransmit::CloseStream { id } => ClientTransmit::CloseStream {
            id: outer_id(generation, id),
        },
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
