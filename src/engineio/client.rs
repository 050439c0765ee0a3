//! The Engine.IO v4 client machine: one session, seen from the client.
//!
//! # Theory of operation
//!
//! ```text
//!  Opening ──open packet──► Open ──close packet, ping timeout, parse or transport error──► Closed
//!     │                      └──close() and the write buffer drained (and no upgrade pausing)──► Closed
//!     └──refused, failed, timed out, close()──► Closed
//! ```
//!
//! The client never performs I/O. It asks the driver for two kinds of work:
//!
//! * **HTTP requests** ([`ClientTransmit::Request`]) for long-polling. At
//!   most one GET (the poll) and one POST (the writes) are in flight at
//!   once, as in the official `engine.io-client`; a driver that keeps one
//!   keep-alive connection per request in flight needs two.
//! * **Streams** ([`ClientTransmit::OpenStream`]) for WebSockets: the
//!   client runs the WebSocket protocol itself ([`ws::Connection`] in the
//!   client role, masked with the injected entropy), so the driver only
//!   opens a TCP (or TLS) connection to the server and moves bytes.
//!
//! Transports, following `engine.io-client` 6.6:
//!
//! * **Polling**: the handshake is `GET {path}?EIO=4&transport=polling`;
//!   its answer carries the open packet. Then one GET is always in flight
//!   (the server holds it until it has packets). Sends are queued in the
//!   write buffer and leave in one POST at a time, joined with `\x1e`
//!   (binary as `b` + base64), as many as fit the server's `maxPayload`.
//! * **WebSocket**: one packet per frame, binary frames for binary
//!   messages; the target is `{path}?EIO=4&transport=websocket[&sid=..]`.
//! * **Upgrade** (mode [`TransportMode::PollingThenUpgrade`], when the open
//!   packet lists `websocket`): a WebSocket opens with the sid and sends
//!   `2probe`. On `3probe`, writes stop and polling pauses: the GET in
//!   flight (which the server releases with a noop) and any POST in flight
//!   must complete. Then the client sends `5` on the WebSocket, switches,
//!   and flushes its buffer there: no packet is lost or sent twice. Any
//!   other answer, a failure or a timeout abandons the probe
//!   ([`ClientEvent::UpgradeFailed`]) and polling goes on.
//! * **Heartbeat**: every `2` is answered with `3`. If no ping comes within
//!   `pingInterval + pingTimeout` of the last one (or of the open packet),
//!   the session closes with `ping timeout`.
//!
//! [`ClientEvent::Close`] is the last event. After it, [`Client::poll_transmit`]
//! may still give a farewell close packet (polling) or a WebSocket close
//! handshake: keep draining it, and keep feeding a closing stream's bytes.
//!
//! Timers (the heartbeat, a deadline per request, the opening of a
//! WebSocket and its probe, the WebSocket close handshakes) are plain
//! fields; [`Client::poll_timeout`] is their minimum.

use std::{
    collections::VecDeque,
    fmt,
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    CloseReason, Data, DecodeError, Packet, PacketType, SEPARATOR, TransportKind, decode_payload,
};
use crate::{
    entropy::{BoxEntropy, Entropy},
    http::{self, Headers, Method, RequestHead, ResponseHead},
    ws::{self, DataKind, Message},
};

/// Which transports the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransportMode {
    /// Open with long-polling, then upgrade to WebSocket if the server
    /// offers it (the official client's default).
    #[default]
    PollingThenUpgrade,
    /// Open directly with a WebSocket; never poll.
    WebSocketOnly,
    /// Long-polling only; never upgrade.
    PollingOnly,
}

/// Client options; the defaults are the official client's where it has
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The path, with its trailing slash. Default `/engine.io/`.
    pub path: String,
    /// The `Host` header value (`example.com`, `127.0.0.1:3000`).
    pub host: String,
    /// Extra query parameters, sent first in every request (the
    /// application's own).
    pub query: Vec<(String, String)>,
    /// Extra request headers for every request and WebSocket handshake
    /// (`Cookie`, `Authorization`...).
    pub headers: Headers,
    /// Which transports to use. Default [`TransportMode::PollingThenUpgrade`].
    pub mode: TransportMode,
    /// Limits of the WebSocket transport.
    pub ws: ws::Config,
    /// How long a request may go unanswered before the transport fails
    /// (`transport error`): the polling handshake, every POST, and the
    /// opening of a WebSocket up to its open packet (or `3probe` for an
    /// upgrade probe). A poll GET after the handshake is exempt: the server
    /// holds it until it has something to send, and the heartbeat bounds
    /// it instead. Default 20 s.
    pub request_timeout: Duration,
    /// Most packets waiting in the write buffer; sends beyond fail with
    /// [`ClientUsageError::BufferFull`]. Default 10,000.
    pub max_buffered_packets: usize,
    /// Add a random `t` parameter to every polling request, as the official
    /// client does against caches. Default on.
    pub timestamp_requests: bool,
}

impl ClientConfig {
    /// The defaults, for a server reached with `host` as the `Host` header.
    pub fn new(host: impl Into<String>) -> Self {
        ClientConfig {
            path: "/engine.io/".into(),
            host: host.into(),
            query: Vec::new(),
            headers: Headers::new(),
            mode: TransportMode::default(),
            ws: ws::Config::default(),
            request_timeout: Duration::from_secs(20),
            max_buffered_packets: 10_000,
            timestamp_requests: true,
        }
    }

    /// Sets [`path`](Self::path); a trailing slash is added if missing.
    pub fn path(mut self, p: &str) -> Self {
        self.path = if p.ends_with('/') {
            p.to_owned()
        } else {
            format!("{p}/")
        };
        self
    }
    /// Adds a query parameter (see [`query`](Self::query)).
    pub fn query_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }
    /// Adds a request header (see [`headers`](Self::headers)).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(name, value);
        self
    }
    /// Sets [`mode`](Self::mode).
    pub fn mode(mut self, mode: TransportMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets [`ws`](Self::ws).
    pub fn ws(mut self, c: ws::Config) -> Self {
        self.ws = c;
        self
    }
    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// Sets [`max_buffered_packets`](Self::max_buffered_packets).
    pub fn max_buffered_packets(mut self, n: usize) -> Self {
        self.max_buffered_packets = n;
        self
    }
    /// Sets [`timestamp_requests`](Self::timestamp_requests).
    pub fn timestamp_requests(mut self, on: bool) -> Self {
        self.timestamp_requests = on;
        self
    }
}

/// Names one HTTP request or one stream the client asked the driver for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// An HTTP request for the driver to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method, target (path and query) and headers, `Host` and (for a
    /// POST) `Content-Type` and `Content-Length` included.
    pub head: RequestHead,
    /// The body (empty for a GET).
    pub body: Bytes,
}

impl HttpRequest {
    /// The method.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// Serialises the request as HTTP/1.1 bytes, ready for a connection.
    pub fn encode(&self, out: &mut BytesMut) {
        self.head.encode(out);
        out.extend_from_slice(&self.body);
    }
}

/// The driver could not complete a request: no connection, a broken one,
/// or an unreadable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request failed: {message}")]
pub struct RequestFailed {
    /// What went wrong, for people.
    pub message: String,
}

impl RequestFailed {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        RequestFailed {
            message: message.into(),
        }
    }
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTransmit {
    /// Perform this HTTP request on a connection to the server and give the
    /// answer (or the failure) to [`Client::handle_response`] with `id`.
    Request {
        /// The request's name.
        id: RequestId,
        /// What to send.
        request: HttpRequest,
    },
    /// The answer to this request is no longer wanted: the driver may
    /// abandon it (and drop its connection). Answers given anyway are
    /// ignored.
    CancelRequest {
        /// The request.
        id: RequestId,
    },
    /// Open a stream (TCP, or TLS) to the server for a WebSocket. Its
    /// bytes follow as [`StreamData`](Self::StreamData); what the server
    /// sends goes to [`Client::handle_stream_input`]; if it cannot be
    /// opened, call [`Client::handle_stream_error`].
    OpenStream {
        /// The stream's name.
        id: RequestId,
    },
    /// Write these bytes on the stream.
    StreamData {
        /// The stream.
        id: RequestId,
        /// The bytes.
        data: Bytes,
    },
    /// Close the stream, after writing everything before this.
    CloseStream {
        /// The stream.
        id: RequestId,
    },
}

/// What went wrong with a transport or a probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered a request with a status other than 200 (400 for
    /// an unknown session, 413 for a payload over its limit...).
    #[error("the server answered HTTP {0}")]
    HttpStatus(u16),
    /// The driver reported a failed request.
    #[error(transparent)]
    RequestFailed(#[from] RequestFailed),
    /// A request, or the opening of a WebSocket, took longer than
    /// [`ClientConfig::request_timeout`].
    #[error("no answer within the request timeout")]
    Timeout,
    /// The driver reported a failed stream (not opened, or broken).
    #[error("the stream failed")]
    StreamFailed,
    /// The WebSocket failed (handshake refused, protocol error, limit).
    #[error(transparent)]
    WebSocket(#[from] ws::Error),
    /// The WebSocket closed; the server's close code.
    #[error("the WebSocket closed with code {0}")]
    WebSocketClosed(u16),
    /// A packet or payload that cannot be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The handshake was not a valid open packet.
    #[error("invalid handshake: {0}")]
    BadHandshake(&'static str),
    /// The probe was answered with something other than `3probe`.
    #[error("the upgrade probe was not answered with 3probe")]
    BadProbe,
}

/// A misuse of the client's commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientUsageError {
    /// [`Client::close`] was called, or the session ended.
    #[error("the client is closing or closed")]
    Closed,
    /// The write buffer holds [`ClientConfig::max_buffered_packets`].
    #[error("the write buffer is full")]
    BufferFull,
    /// A text message with a `\x1e` would split the polling payload it
    /// travels in (the protocol has no escape for it). Send it as binary,
    /// or once on WebSocket.
    #[error("a text message containing \\x1e cannot travel over polling")]
    SeparatorInText,
}

/// What the application must hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The handshake completed: messages flow (those sent before now leave
    /// first).
    Open {
        /// The session id.
        sid: String,
        /// The transports the server offers to upgrade to.
        upgrades: Vec<String>,
        /// How often the server pings.
        ping_interval: Duration,
        /// How long it waits for the pong.
        ping_timeout: Duration,
        /// The largest payload the server accepts, if it said.
        max_payload: Option<usize>,
        /// The transport that opened the session.
        transport: TransportKind,
    },
    /// A message arrived.
    Message(Data),
    /// The session moved to WebSocket.
    Upgrade,
    /// The upgrade probe failed; the session goes on polling.
    UpgradeFailed(ClientError),
    /// The session ended; this is the last event.
    Close {
        /// Why, as the official client says it.
        reason: CloseReason,
        /// The failure behind it, if any.
        error: Option<ClientError>,
    },
}

/// The client's state as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// The handshake is under way.
    Opening,
    /// The session is open.
    Open,
    /// [`Client::close`] was called; buffered packets are still leaving.
    Closing,
    /// The session is over.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Opening,
    Open,
    Closed,
}

/// A request in flight.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: RequestId,
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct Polling {
    get: Option<Pending>,
    post: Option<Pending>,
    /// An upgrade is pausing polling: no new GET.
    pausing: bool,
}

/// A WebSocket over a driver's stream.
#[derive(Debug)]
struct WsStream {
    id: RequestId,
    ws: Box<ws::Connection>,
    /// Until the open packet (or `3probe`) arrives.
    deadline: Option<Instant>,
}

#[derive(Debug)]
enum Transport {
    Polling(Polling),
    WebSocket(WsStream),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeStage {
    /// The WebSocket handshake is under way.
    Connecting,
    /// `2probe` sent.
    AwaitPong,
    /// `3probe` received: waiting for polling to pause.
    Pausing,
}

#[derive(Debug)]
struct Probe {
    stream: WsStream,
    stage: ProbeStage,
}

/// Which stream an input is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Main,
    Probe,
    Retired(usize),
}

/// The session parameters from the open packet.
#[derive(Debug, Clone)]
struct Params {
    ping_interval: Duration,
    ping_timeout: Duration,
    max_payload: Option<usize>,
}

/// The Engine.IO client: one session, over long-polling, WebSocket, or
/// both with an upgrade.
///
/// # Run loop
///
/// Inputs: [`handle_response`](Self::handle_response) for the answers to
/// requests, [`handle_stream_input`](Self::handle_stream_input),
/// [`handle_stream_eof`](Self::handle_stream_eof) and
/// [`handle_stream_error`](Self::handle_stream_error) for streams, and
/// [`handle_timeout`](Self::handle_timeout). Commands:
/// [`send`](Self::send), [`close`](Self::close). After any input or
/// command, drain [`poll_transmit`](Self::poll_transmit) (perform what it
/// asks), then [`poll_event`](Self::poll_event), then arm a timer for
/// [`poll_timeout`](Self::poll_timeout). Commands issued while handling an
/// event are fine: keep draining until both pollers return `None`.
///
/// ```
/// use std::time::Instant;
/// use wsio::{engineio::{Client, ClientConfig, ClientTransmit}, entropy::SeededEntropy};
///
/// let now = Instant::now();
/// let mut client = Client::new(ClientConfig::new("localhost:3000"), Box::new(SeededEntropy::new(1)), now);
/// let Some(ClientTransmit::Request { request, .. }) = client.poll_transmit() else { panic!() };
/// assert!(request.head.target.starts_with("/engine.io/?EIO=4&transport=polling&t="));
/// ```
pub struct Client {
    config: ClientConfig,
    entropy: BoxEntropy,
    phase: Phase,
    close_requested: bool,
    sid: Option<String>,
    params: Option<Params>,
    transport: Option<Transport>,
    probe: Option<Probe>,
    /// WebSockets finishing their close handshakes.
    retired: Vec<WsStream>,
    /// Packets not yet acknowledged by the transport; the first
    /// `in_flight` are in the POST in flight.
    write_buffer: VecDeque<Packet>,
    in_flight: usize,
    /// Messages among `write_buffer` (what the limit counts).
    queued_messages: usize,
    ping_deadline: Option<Instant>,
    /// A handshake GET still out when [`close`](Self::close) ended the
    /// opening: if it opens a session, that session is closed at once.
    late_handshake: Option<RequestId>,
    next_id: u64,
    transmits: VecDeque<ClientTransmit>,
    events: VecDeque<ClientEvent>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .field("sid", &self.sid)
            .field("transport", &self.transport())
            .field("write_buffer", &self.write_buffer.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client that starts at once: the first transmit is the polling
    /// handshake GET, or (mode [`TransportMode::WebSocketOnly`]) the
    /// stream for the WebSocket. `entropy` supplies every random byte
    /// (`t` parameters, WebSocket keys and masks).
    pub fn new(config: ClientConfig, entropy: BoxEntropy, now: Instant) -> Self {
        let mut c = Client {
            config,
            entropy,
            phase: Phase::Opening,
            close_requested: false,
            sid: None,
            params: None,
            transport: None,
            probe: None,
            retired: Vec::new(),
            write_buffer: VecDeque::new(),
            in_flight: 0,
            queued_messages: 0,
            ping_deadline: None,
            late_handshake: None,
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        match c.config.mode {
            TransportMode::WebSocketOnly => {
                let stream = c.open_ws(now);
                c.transport = Some(Transport::WebSocket(stream));
            }
            TransportMode::PollingThenUpgrade | TransportMode::PollingOnly => {
                c.transport = Some(Transport::Polling(Polling {
                    get: None,
                    post: None,
                    pausing: false,
                }));
                c.send_get(now);
            }
        }
        c
    }

    // ----- queries ------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        match self.phase {
            Phase::Closed => ClientState::Closed,
            _ if self.close_requested => ClientState::Closing,
            Phase::Opening => ClientState::Opening,
            Phase::Open => ClientState::Open,
        }
    }

    /// The session id, once open (and until closed).
    pub fn sid(&self) -> Option<&str> {
        match self.phase {
            Phase::Open => self.sid.as_deref(),
            _ => None,
        }
    }

    /// The transport in use; `None` once closed.
    pub fn transport(&self) -> Option<TransportKind> {
        match (&self.transport, self.phase) {
            (_, Phase::Closed) | (None, _) => None,
            (Some(Transport::Polling(_)), _) => Some(TransportKind::Polling),
            (Some(Transport::WebSocket(_)), _) => Some(TransportKind::WebSocket),
        }
    }

    /// Whether an upgrade probe is under way.
    pub fn is_upgrading(&self) -> bool {
        self.probe.is_some()
    }

    /// Packets sent but not yet taken by the transport (or, over polling,
    /// not yet acknowledged by the server).
    pub fn buffered_packets(&self) -> usize {
        self.write_buffer.len()
    }

    // ----- inputs -------------------------------------------------------

    /// The answer to request `id`: the response head and whole body, or
    /// the driver's failure. Unknown or cancelled ids are ignored.
    pub fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) {
        if self.late_handshake == Some(id) {
            self.late_handshake = None;
            return self.on_late_handshake(response);
        }
        let Some(Transport::Polling(p)) = &mut self.transport else {
            return;
        };
        if self.phase == Phase::Closed {
            return;
        }
        if p.get.is_some_and(|g| g.id == id) {
            p.get = None;
            self.on_poll_response(now, response);
        } else if p.post.is_some_and(|g| g.id == id) {
            p.post = None;
            self.on_post_response(now, response);
        }
        self.after_turn();
    }

    /// Bytes the server sent on stream `id`. Unknown ids are ignored.
    pub fn handle_stream_input(&mut self, now: Instant, id: RequestId, bytes: &[u8]) {
        let Some(which) = self.find_stream(id) else {
            return;
        };
        if let Some(s) = self.stream_mut(which) {
            s.ws.handle_input(now, bytes);
        }
        self.process_stream(now, id);
        self.after_turn();
    }

    /// Stream `id` ended (the server closed it).
    pub fn handle_stream_eof(&mut self, now: Instant, id: RequestId) {
        let Some(which) = self.find_stream(id) else {
            return;
        };
        if let Some(s) = self.stream_mut(which) {
            s.ws.handle_eof(now);
        }
        self.process_stream(now, id);
        self.after_turn();
    }

    /// Stream `id` could not be opened, or broke (a read or write failed).
    /// The driver need not close it: it is already gone.
    pub fn handle_stream_error(&mut self, now: Instant, id: RequestId) {
        let Some(which) = self.find_stream(id) else {
            return;
        };
        match which {
            Which::Main => self.close_session(
                now,
                CloseReason::TransportError,
                Some(ClientError::StreamFailed),
                false,
            ),
            Which::Probe => self.probe_failed(now, ClientError::StreamFailed),
            Which::Retired(_) => {}
        }
        // Whatever is left of it is dropped without a CloseStream.
        self.retired.retain(|s| s.id != id);
        self.transmits.retain(|t| {
            !matches!(t, ClientTransmit::StreamData { id: i, .. } | ClientTransmit::CloseStream { id: i } if *i == id)
        });
        self.after_turn();
    }

    /// Runs every timer that is due. Cheap; early or repeated calls do
    /// nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        // WebSocket close handshakes.
        let mut due: Vec<RequestId> = Vec::new();
        for which in [Which::Main, Which::Probe] {
            if let Some(s) = self.stream_mut(which) {
                if s.ws.poll_timeout().is_some_and(|t| t <= now) {
                    due.push(s.id);
                }
            }
        }
        due.extend(
            self.retired
                .iter()
                .filter(|s| s.ws.poll_timeout().is_some_and(|t| t <= now))
                .map(|s| s.id),
        );
        for id in due {
            if let Some(which) = self.find_stream(id) {
                if let Some(s) = self.stream_mut(which) {
                    s.ws.handle_timeout(now);
                }
                self.process_stream(now, id);
            }
        }
        if self.phase != Phase::Closed {
            if self.ping_deadline.is_some_and(|d| d <= now) {
                self.close_session(now, CloseReason::PingTimeout, None, true);
            }
            let expired = match &self.transport {
                Some(Transport::Polling(p)) => [p.get, p.post]
                    .iter()
                    .flatten()
                    .any(|r| r.deadline.is_some_and(|d| d <= now)),
                Some(Transport::WebSocket(s)) => s.deadline.is_some_and(|d| d <= now),
                None => false,
            };
            if expired {
                self.close_session(
                    now,
                    CloseReason::TransportError,
                    Some(ClientError::Timeout),
                    false,
                );
            }
            let probe_expired = self
                .probe
                .as_ref()
                .is_some_and(|p| p.stream.deadline.is_some_and(|d| d <= now));
            if probe_expired {
                self.probe_failed(now, ClientError::Timeout);
            }
        }
        self.after_turn();
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

    /// When [`handle_timeout`](Self::handle_timeout) should next be called:
    /// the heartbeat, a request or WebSocket opening deadline, or a
    /// WebSocket close handshake. Read it after draining the pollers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let open = self.phase != Phase::Closed;
        let (get, post, main, main_ws) = match &self.transport {
            Some(Transport::Polling(p)) if open => (
                p.get.and_then(|r| r.deadline),
                p.post.and_then(|r| r.deadline),
                None,
                None,
            ),
            Some(Transport::WebSocket(s)) => {
                (None, None, s.deadline.filter(|_| open), s.ws.poll_timeout())
            }
            _ => (None, None, None, None),
        };
        let probe = self.probe.as_ref();
        [
            self.ping_deadline,
            get,
            post,
            main,
            main_ws,
            probe.and_then(|p| p.stream.deadline),
            probe.and_then(|p| p.stream.ws.poll_timeout()),
        ]
        .into_iter()
        .chain(self.retired.iter().map(|s| s.ws.poll_timeout()))
        .flatten()
        .min()
    }

    // ----- commands -----------------------------------------------------

    /// Sends a message. Before the session opens, and while an upgrade
    /// pauses the transport, it waits in the write buffer; everything
    /// leaves in the order sent.
    pub fn send(&mut self, now: Instant, data: impl Into<Data>) -> Result<(), ClientUsageError> {
        if self.phase == Phase::Closed || self.close_requested {
            return Err(ClientUsageError::Closed);
        }
        if self.queued_messages >= self.config.max_buffered_packets {
            return Err(ClientUsageError::BufferFull);
        }
        let data = data.into();
        if let Data::Text(t) = &data {
            let on_websocket = matches!(self.transport, Some(Transport::WebSocket(_)));
            if !on_websocket && t.as_bytes().contains(&SEPARATOR) {
                return Err(ClientUsageError::SeparatorInText);
            }
        }
        self.write_buffer.push_back(Packet::message(data));
        self.queued_messages += 1;
        self.flush(now);
        self.after_turn();
        Ok(())
    }

    /// Closes the session as the official client does: once the write
    /// buffer has drained (and any upgrade in its last step has finished),
    /// a close packet is POSTed (polling) or the WebSocket is closed, and
    /// [`ClientEvent::Close`] comes with `forced close`. Calling it again
    /// does nothing.
    pub fn close(&mut self, now: Instant) {
        if self.phase == Phase::Closed || self.close_requested {
            return;
        }
        self.close_requested = true;
        if self.phase == Phase::Opening && self.write_buffer.is_empty() {
            // Nothing to deliver: end now. A polling handshake already out
            // may still open a session; it is closed when the answer comes.
            if let Some(Transport::Polling(p)) = &mut self.transport {
                self.late_handshake = p.get.take().map(|g| g.id);
            }
            self.close_session(now, CloseReason::ForcedClose, None, false);
        } else {
            self.maybe_finish_close(now);
        }
        self.after_turn();
    }

    // ----- internals: requests ------------------------------------------

    fn next_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    /// `{path}?{app query}&EIO=4&transport=..[&t=..][&sid=..]`.
    fn target(&mut self, kind: TransportKind) -> String {
        let mut t = String::with_capacity(self.config.path.len() + 64);
        t.push_str(&self.config.path);
        t.push('?');
        for (k, v) in &self.config.query {
            t.push_str(&http::percent_encode(k));
            t.push('=');
            t.push_str(&http::percent_encode(v));
            t.push('&');
        }
        t.push_str("EIO=4&transport=");
        t.push_str(kind.as_str());
        if kind == TransportKind::Polling && self.config.timestamp_requests {
            t.push_str("&t=");
            t.push_str(&self.random_string());
        }
        if let Some(sid) = &self.sid {
            t.push_str("&sid=");
            t.push_str(&http::percent_encode(sid));
        }
        t
    }

    /// Eight characters of `[0-9a-z]`, like the official cache buster.
    fn random_string(&mut self) -> String {
        let mut raw = [0u8; 8];
        self.entropy.fill(&mut raw);
        raw.iter()
            .map(|b| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(*b % 36) as usize]))
            .collect()
    }

    fn request(&mut self, method: Method, body: Bytes) -> HttpRequest {
        let target = self.target(TransportKind::Polling);
        let mut head = RequestHead::new(method.clone(), target)
            .with_header("Host", &self.config.host)
            .with_header("Accept", "*/*");
        if method == Method::Post {
            head.headers
                .push("Content-Type", "text/plain;charset=UTF-8");
            head.headers.push("Content-Length", body.len().to_string());
        }
        for (n, v) in self.config.headers.iter() {
            head.headers.push(n, v);
        }
        HttpRequest { head, body }
    }

    fn send_get(&mut self, now: Instant) {
        let id = self.next_id();
        let request = self.request(Method::Get, Bytes::new());
        // The handshake must be answered in time; later polls are held by
        // the server and bounded by the heartbeat.
        let deadline = (self.phase == Phase::Opening).then(|| now + self.config.request_timeout);
        if let Some(Transport::Polling(p)) = &mut self.transport {
            p.get = Some(Pending { id, deadline });
            self.transmits
                .push_back(ClientTransmit::Request { id, request });
        }
    }

    /// Queues a POST of `body`; the caller records it as pending (or not,
    /// for a farewell whose answer is not awaited).
    fn push_post(&mut self, body: Bytes) -> RequestId {
        let id = self.next_id();
        let request = self.request(Method::Post, body);
        self.transmits
            .push_back(ClientTransmit::Request { id, request });
        id
    }

    fn send_post(&mut self, now: Instant, body: Bytes) {
        let id = self.push_post(body);
        let deadline = Some(now + self.config.request_timeout);
        if let Some(Transport::Polling(p)) = &mut self.transport {
            p.post = Some(Pending { id, deadline });
        }
    }

    fn on_poll_response(
        &mut self,
        now: Instant,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) {
        let body = match response {
            Err(e) => {
                return self.close_session(now, CloseReason::TransportError, Some(e.into()), false);
            }
            Ok((head, _)) if head.status != 200 => {
                let e = ClientError::HttpStatus(head.status);
                return self.close_session(now, CloseReason::TransportError, Some(e), false);
            }
            Ok((_, body)) => body,
        };
        let (packets, error) = decode_payload(body);
        for p in packets {
            if self.phase == Phase::Closed {
                return;
            }
            self.on_packet(now, p);
        }
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(e) = error {
            return self.close_session(now, CloseReason::ParseError, Some(e.into()), true);
        }
        if self.phase == Phase::Opening {
            let e = ClientError::BadHandshake("the first poll carried no open packet");
            return self.close_session(now, CloseReason::ParseError, Some(e), false);
        }
        if let Some(Transport::Polling(p)) = &self.transport {
            if !p.pausing && p.get.is_none() {
                self.send_get(now);
            }
        }
        self.check_paused(now);
    }

    fn on_post_response(
        &mut self,
        now: Instant,
        response: Result<(ResponseHead, Bytes), RequestFailed>,
    ) {
        match response {
            Err(e) => {
                return self.close_session(now, CloseReason::TransportError, Some(e.into()), false);
            }
            Ok((head, _)) if head.status != 200 => {
                let e = ClientError::HttpStatus(head.status);
                return self.close_session(now, CloseReason::TransportError, Some(e), false);
            }
            Ok(_) => {}
        }
        let n = self.in_flight.min(self.write_buffer.len());
        for p in self.write_buffer.drain(..n) {
            if p.kind == PacketType::Message {
                self.queued_messages = self.queued_messages.saturating_sub(1);
            }
        }
        self.in_flight = 0;
        self.check_paused(now);
        self.flush(now);
        self.maybe_finish_close(now);
    }

    /// The answer to a handshake abandoned by [`close`](Self::close): a
    /// session it opened is closed at once.
    fn on_late_handshake(&mut self, response: Result<(ResponseHead, Bytes), RequestFailed>) {
        let Ok((head, body)) = response else { return };
        if head.status != 200 {
            return;
        }
        let (packets, _) = decode_payload(body);
        let Some(open) = packets.first().filter(|p| p.kind == PacketType::Open) else {
            return;
        };
        let Data::Text(t) = &open.data else { return };
        if let Ok(h) = parse_open(t.as_str()) {
            self.sid = Some(h.sid);
            self.push_post(encode_packets([&Packet::new(PacketType::Close)]));
        }
    }

    // ----- internals: packets -------------------------------------------

    fn on_packet(&mut self, now: Instant, p: Packet) {
        match self.phase {
            Phase::Closed => {}
            Phase::Opening => match (&p.kind, &p.data) {
                (PacketType::Open, Data::Text(t)) => {
                    let text = t.as_str().to_owned();
                    self.on_open(now, &text);
                }
                _ => {
                    let e = ClientError::BadHandshake("the first packet is not an open packet");
                    self.close_session(now, CloseReason::ParseError, Some(e), false);
                }
            },
            Phase::Open => match p.kind {
                PacketType::Close => {
                    self.close_session(now, CloseReason::TransportClose, None, false)
                }
                PacketType::Ping => {
                    self.reset_ping(now);
                    self.write_buffer.push_back(Packet::new(PacketType::Pong));
                    self.flush(now);
                }
                PacketType::Message => self.events.push_back(ClientEvent::Message(p.data)),
                PacketType::Open | PacketType::Pong | PacketType::Upgrade | PacketType::Noop => {}
            },
        }
    }

    fn on_open(&mut self, now: Instant, json: &str) {
        let h = match parse_open(json) {
            Ok(h) => h,
            Err(e) => {
                let e = ClientError::BadHandshake(e);
                return self.close_session(now, CloseReason::ParseError, Some(e), false);
            }
        };
        self.phase = Phase::Open;
        self.sid = Some(h.sid.clone());
        self.params = Some(Params {
            ping_interval: h.ping_interval,
            ping_timeout: h.ping_timeout,
            max_payload: h.max_payload,
        });
        let kind = match &mut self.transport {
            Some(Transport::WebSocket(s)) => {
                s.deadline = None;
                TransportKind::WebSocket
            }
            _ => TransportKind::Polling,
        };
        let offers_ws = h.upgrades.iter().any(|u| u == "websocket");
        self.events.push_back(ClientEvent::Open {
            sid: h.sid,
            upgrades: h.upgrades,
            ping_interval: h.ping_interval,
            ping_timeout: h.ping_timeout,
            max_payload: h.max_payload,
            transport: kind,
        });
        self.reset_ping(now);
        self.flush(now);
        if self.config.mode == TransportMode::PollingThenUpgrade
            && kind == TransportKind::Polling
            && offers_ws
            && !self.close_requested
        {
            let stream = self.open_ws(now);
            self.probe = Some(Probe {
                stream,
                stage: ProbeStage::Connecting,
            });
        }
        self.maybe_finish_close(now);
    }

    fn reset_ping(&mut self, now: Instant) {
        if let Some(p) = &self.params {
            self.ping_deadline = Some(now + p.ping_interval + p.ping_timeout);
        }
    }

    /// Hands buffered packets to the transport, if it can take them.
    fn flush(&mut self, now: Instant) {
        if self.phase != Phase::Open
            || self.write_buffer.is_empty()
            || self
                .probe
                .as_ref()
                .is_some_and(|p| p.stage == ProbeStage::Pausing)
        {
            return;
        }
        match &mut self.transport {
            Some(Transport::Polling(p)) => {
                if p.post.is_some() || p.pausing {
                    return;
                }
                let max = self.params.as_ref().and_then(|p| p.max_payload);
                let n = batch_len(self.write_buffer.iter(), max);
                let body = encode_packets(self.write_buffer.iter().take(n));
                self.in_flight = n;
                self.send_post(now, body);
            }
            Some(Transport::WebSocket(s)) => {
                for p in self.write_buffer.drain(..) {
                    // The queue is drained into our transmits after every
                    // call, so the WebSocket's own limit is never reached.
                    let _ = ws_send(&mut s.ws, &p);
                }
                self.queued_messages = 0;
                drain_ws(s, &mut self.transmits);
            }
            None => {}
        }
    }

    /// Ends a close requested by [`close`](Self::close) once nothing is
    /// left to deliver.
    fn maybe_finish_close(&mut self, now: Instant) {
        if !self.close_requested
            || self.phase != Phase::Open
            || !self.write_buffer.is_empty()
            || self
                .probe
                .as_ref()
                .is_some_and(|p| p.stage == ProbeStage::Pausing)
        {
            return;
        }
        self.close_session(now, CloseReason::ForcedClose, None, true);
    }

    /// Ends the session: the event, then the transports wind down. With
    /// `farewell`, an open polling transport POSTs a close packet, as the
    /// official client does when it closes one.
    fn close_session(
        &mut self,
        now: Instant,
        reason: CloseReason,
        error: Option<ClientError>,
        farewell: bool,
    ) {
        if self.phase == Phase::Closed {
            return;
        }
        let was_open = self.phase == Phase::Open;
        self.phase = Phase::Closed;
        self.ping_deadline = None;
        self.write_buffer.clear();
        self.in_flight = 0;
        self.queued_messages = 0;
        match self.transport.take() {
            Some(Transport::Polling(p)) => {
                // A second POST next to one in flight is refused by the
                // official server: say goodbye only on a free slot. The
                // server then releases the held poll (with a noop); cutting
                // it first would make the close a transport error there.
                if farewell && was_open && p.post.is_none() {
                    self.push_post(encode_packets([&Packet::new(PacketType::Close)]));
                } else {
                    for r in [p.get, p.post].into_iter().flatten() {
                        self.transmits
                            .push_back(ClientTransmit::CancelRequest { id: r.id });
                    }
                }
            }
            Some(Transport::WebSocket(s)) => self.retire(now, s),
            None => {}
        }
        if let Some(p) = self.probe.take() {
            self.retire(now, p.stream);
        }
        self.events.push_back(ClientEvent::Close { reason, error });
    }

    // ----- internals: WebSocket -----------------------------------------

    fn open_ws(&mut self, now: Instant) -> WsStream {
        let id = self.next_id();
        let target = self.target(TransportKind::WebSocket);
        let mut request = ws::ClientRequest::new(self.config.host.clone(), target);
        request.headers = self.config.headers.clone();
        let ws = Box::new(ws::Connection::client(
            self.config.ws,
            request,
            self.entropy.fork(),
        ));
        let mut stream = WsStream {
            id,
            ws,
            deadline: Some(now + self.config.request_timeout),
        };
        self.transmits.push_back(ClientTransmit::OpenStream { id });
        drain_ws(&mut stream, &mut self.transmits);
        stream
    }

    fn find_stream(&self, id: RequestId) -> Option<Which> {
        if matches!(&self.transport, Some(Transport::WebSocket(s)) if s.id == id) {
            return Some(Which::Main);
        }
        if self.probe.as_ref().is_some_and(|p| p.stream.id == id) {
            return Some(Which::Probe);
        }
        self.retired
            .iter()
            .position(|s| s.id == id)
            .map(Which::Retired)
    }

    fn stream_mut(&mut self, which: Which) -> Option<&mut WsStream> {
        match which {
            Which::Main => match &mut self.transport {
                Some(Transport::WebSocket(s)) => Some(s),
                _ => None,
            },
            Which::Probe => self.probe.as_mut().map(|p| &mut p.stream),
            Which::Retired(i) => self.retired.get_mut(i),
        }
    }

    /// Acts on what WebSocket `id` produced after an input or a timeout.
    /// The stream is looked up again after each event: a probe may become
    /// the main transport half-way, and its next events are then the
    /// session's.
    fn process_stream(&mut self, now: Instant, id: RequestId) {
        loop {
            let Some(which) = self.find_stream(id) else {
                return;
            };
            let Some(s) = self.stream_mut(which) else {
                return;
            };
            let Some(ev) = s.ws.poll_event() else { break };
            match which {
                Which::Main => self.on_main_ws_event(now, ev),
                Which::Probe => self.on_probe_ws_event(now, ev),
                Which::Retired(_) => {}
            }
        }
        if let Some(Which::Retired(i)) = self.find_stream(id) {
            if let Some(s) = self.retired.get_mut(i) {
                if drain_ws(s, &mut self.transmits) {
                    self.retired.remove(i);
                }
            }
        }
    }

    fn on_main_ws_event(&mut self, now: Instant, ev: ws::Event) {
        match ev {
            ws::Event::Message(m) => match decode_ws(m) {
                Ok(p) => self.on_packet(now, p),
                Err(e) => self.close_session(now, CloseReason::ParseError, Some(e.into()), true),
            },
            ws::Event::Closed(c) => {
                let (reason, error) = ws_close_cause(c);
                self.close_session(now, reason, Some(error), false);
            }
            ws::Event::Open { .. } | ws::Event::Ping(_) | ws::Event::Pong(_) => {}
            ws::Event::Upgrade(_) => {}
        }
    }

    fn on_probe_ws_event(&mut self, now: Instant, ev: ws::Event) {
        let Some(stage) = self.probe.as_ref().map(|p| p.stage) else {
            return;
        };
        match (ev, stage) {
            (ws::Event::Open { .. }, ProbeStage::Connecting) => {
                if let Some(p) = self.probe.as_mut() {
                    let _ = ws_send(
                        &mut p.stream.ws,
                        &Packet::with_text(PacketType::Ping, "probe"),
                    );
                    p.stage = ProbeStage::AwaitPong;
                }
            }
            (ws::Event::Message(m), ProbeStage::AwaitPong) => match decode_ws(m) {
                Ok(p)
                    if p.kind == PacketType::Pong
                        && matches!(&p.data, Data::Text(t) if t.as_str() == "probe") =>
                {
                    if let Some(p) = self.probe.as_mut() {
                        p.stage = ProbeStage::Pausing;
                        p.stream.deadline = None;
                    }
                    if let Some(Transport::Polling(p)) = &mut self.transport {
                        p.pausing = true;
                    }
                    self.check_paused(now);
                }
                _ => self.probe_failed(now, ClientError::BadProbe),
            },
            // A conforming server sends nothing else before the switch;
            // deliver it rather than lose it.
            (ws::Event::Message(m), ProbeStage::Pausing) => match decode_ws(m) {
                Ok(p) => self.on_packet(now, p),
                Err(e) => self.probe_failed(now, e.into()),
            },
            (ws::Event::Closed(c), _) => {
                let (_, error) = ws_close_cause(c);
                self.probe_failed(now, error);
            }
            _ => {}
        }
    }

    /// Polling has paused for an upgrade once no request is in flight:
    /// switch to the WebSocket, send `5`, then the buffer.
    fn check_paused(&mut self, now: Instant) {
        if self.phase != Phase::Open
            || self
                .probe
                .as_ref()
                .is_none_or(|p| p.stage != ProbeStage::Pausing)
        {
            return;
        }
        let Some(Transport::Polling(p)) = &self.transport else {
            return;
        };
        if p.get.is_some() || p.post.is_some() {
            return;
        }
        let Some(probe) = self.probe.take() else {
            return;
        };
        let mut stream = probe.stream;
        let _ = ws_send(&mut stream.ws, &Packet::new(PacketType::Upgrade));
        self.transport = Some(Transport::WebSocket(stream));
        self.events.push_back(ClientEvent::Upgrade);
        self.flush(now);
        if let Some(Transport::WebSocket(s)) = &mut self.transport {
            drain_ws(s, &mut self.transmits);
        }
        self.maybe_finish_close(now);
    }

    /// Abandons the probe; polling goes on.
    fn probe_failed(&mut self, now: Instant, error: ClientError) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        self.retire(now, probe.stream);
        self.events.push_back(ClientEvent::UpgradeFailed(error));
        if self.phase != Phase::Open {
            return;
        }
        if let Some(Transport::Polling(p)) = &mut self.transport {
            if p.pausing {
                p.pausing = false;
                if p.get.is_none() {
                    self.send_get(now);
                }
            }
        }
        self.flush(now);
        self.maybe_finish_close(now);
    }

    /// Lets a WebSocket we no longer use finish its close handshake.
    fn retire(&mut self, now: Instant, mut s: WsStream) {
        match s.ws.state() {
            ws::State::Connecting => {
                self.transmits
                    .push_back(ClientTransmit::CloseStream { id: s.id });
                return;
            }
            ws::State::Open => {
                // No status code, as the official client's close() sends.
                let _ = s.ws.close_with(now, None);
            }
            ws::State::Closing | ws::State::Closed => {}
        }
        // Its remaining events (a last message, its close) are not heard.
        while s.ws.poll_event().is_some() {}
        s.deadline = None;
        if !drain_ws(&mut s, &mut self.transmits) {
            self.retired.push(s);
        }
    }

    /// Moves the WebSockets' output to the transmit queue.
    fn after_turn(&mut self) {
        let mut streams: Vec<&mut WsStream> = Vec::new();
        if let Some(Transport::WebSocket(s)) = &mut self.transport {
            streams.push(s);
        }
        if let Some(p) = &mut self.probe {
            streams.push(&mut p.stream);
        }
        for s in streams {
            drain_ws(s, &mut self.transmits);
        }
        let transmits = &mut self.transmits;
        self.retired.retain_mut(|s| {
            while s.ws.poll_event().is_some() {}
            !drain_ws(s, transmits)
        });
    }
}

/// Moves a WebSocket's bytes to `out`; true once it asked for its stream
/// to close.
fn drain_ws(s: &mut WsStream, out: &mut VecDeque<ClientTransmit>) -> bool {
    let mut closed = false;
    while let Some(t) = s.ws.poll_transmit() {
        match t {
            ws::Transmit::Data(data) => {
                out.push_back(ClientTransmit::StreamData { id: s.id, data })
            }
            ws::Transmit::Close => {
                closed = true;
                out.push_back(ClientTransmit::CloseStream { id: s.id });
            }
        }
    }
    closed
}

/// Writes one packet as one frame: binary messages as binary frames, the
/// rest as text with the type digit first.
fn ws_send(ws: &mut ws::Connection, p: &Packet) -> Result<(), ws::UsageError> {
    match &p.data {
        Data::Binary(b) => ws.send(Message::Binary(b.clone())),
        Data::Text(t) => {
            ws.send_with_prefix(DataKind::Text, &[p.kind.as_char()], t.as_bytes().clone())
        }
    }
}

fn decode_ws(m: Message) -> Result<Packet, DecodeError> {
    match m {
        Message::Binary(b) => Ok(Packet::decode_binary(b)),
        Message::Text(t) => Packet::decode_text(t),
    }
}

/// Why a WebSocket transport ended, as the official client reports it: a
/// close (with or without a close frame) is `transport close`; a failure
/// is `transport error`.
fn ws_close_cause(c: ws::Closed) -> (CloseReason, ClientError) {
    match c.error {
        Some(e) => (CloseReason::TransportError, ClientError::WebSocket(e)),
        None => (
            CloseReason::TransportClose,
            ClientError::WebSocketClosed(c.code.0),
        ),
    }
}

/// The encoded length of a packet inside a polling payload.
fn encoded_len(p: &Packet) -> usize {
    match &p.data {
        Data::Text(t) => 1 + t.len(),
        Data::Binary(b) => 1 + base64::encoded_len(b.len(), true).unwrap_or(usize::MAX / 2),
    }
}

/// How many packets from the front fit one payload of at most `max`
/// bytes; always at least one (a packet over the limit goes alone and the
/// server refuses it).
fn batch_len<'a>(packets: impl Iterator<Item = &'a Packet>, max: Option<usize>) -> usize {
    let mut total = 0usize;
    let mut n = 0;
    for p in packets {
        let add = encoded_len(p) + usize::from(n > 0);
        if n > 0 && max.is_some_and(|m| total.saturating_add(add) > m) {
            break;
        }
        total = total.saturating_add(add);
        n += 1;
    }
    n
}

fn encode_packets<'a>(packets: impl IntoIterator<Item = &'a Packet>) -> Bytes {
    let mut out = BytesMut::new();
    for (i, p) in packets.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        p.encode_text(&mut out);
    }
    out.freeze()
}

/// The open packet's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenInfo {
    sid: String,
    upgrades: Vec<String>,
    ping_interval: Duration,
    ping_timeout: Duration,
    max_payload: Option<usize>,
}

/// Reads the open packet's JSON:
/// `{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,"maxPayload":..}`.
fn parse_open(s: &str) -> Result<OpenInfo, &'static str> {
    let json::Value::Object(fields) = json::parse(s).ok_or("the open packet is not JSON")? else {
        return Err("the open packet is not a JSON object");
    };
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let sid = match get("sid") {
        Some(json::Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("missing sid"),
    };
    let upgrades = match get("upgrades") {
        None | Some(json::Value::Null) => Vec::new(),
        Some(json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                json::Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        Some(_) => return Err("upgrades is not an array"),
    };
    let millis = |k: &str| match get(k) {
        Some(json::Value::Number(n)) if n.is_finite() && *n >= 0.0 => {
            Some(Duration::from_millis(n.min(u32::MAX as f64) as u64))
        }
        _ => None,
    };
    let ping_interval = millis("pingInterval").ok_or("missing pingInterval")?;
    let ping_timeout = millis("pingTimeout").ok_or("missing pingTimeout")?;
    let max_payload = match get("maxPayload") {
        Some(json::Value::Number(n)) if n.is_finite() && *n > 0.0 => {
            Some(n.min(usize::MAX as f64) as usize)
        }
        _ => None,
    };
    Ok(OpenInfo {
        sid,
        upgrades,
        ping_interval,
        ping_timeout,
        max_payload,
    })
}

/// Just enough JSON for the open packet (the crate has no JSON dependency):
/// every value is parsed, with a depth limit, so no input can panic.
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    const MAX_DEPTH: usize = 32;

    pub(super) fn parse(s: &str) -> Option<Value> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        (p.i == p.b.len()).then_some(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            self.ws();
            (self.peek()? == c).then(|| self.i += 1)
        }

        fn lit(&mut self, word: &[u8], v: Value) -> Option<Value> {
            let end = self.i.checked_add(word.len())?;
            (self.b.get(self.i..end)? == word).then(|| {
                self.i = end;
                v
            })
        }

        fn value(&mut self, depth: usize) -> Option<Value> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.ws();
            match self.peek()? {
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Some(Value::Object(fields));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        let v = self.value(depth + 1)?;
                        fields.push((k, v));
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                return Some(Value::Object(fields));
                            }
                            _ => return None,
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return Some(Value::Array(items));
                    }
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                return Some(Value::Array(items));
                            }
                            _ => return None,
                        }
                    }
                }
                b'"' => self.string().map(Value::String),
                b't' => self.lit(b"true", Value::Bool(true)),
                b'f' => self.lit(b"false", Value::Bool(false)),
                b'n' => self.lit(b"null", Value::Null),
                b'-' | b'0'..=b'9' => self.number(),
                _ => None,
            }
        }

        fn number(&mut self) -> Option<Value> {
            let start = self.i;
            while matches!(
                self.peek(),
                Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            ) {
                self.i += 1;
            }
            let text = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
            text.parse::<f64>().ok().map(Value::Number)
        }

        fn hex4(&mut self) -> Option<u32> {
            let end = self.i.checked_add(4)?;
            let h = std::str::from_utf8(self.b.get(self.i..end)?).ok()?;
            let v = u32::from_str_radix(h, 16).ok()?;
            self.i = end;
            Some(v)
        }

        fn string(&mut self) -> Option<String> {
            if self.peek()? != b'"' {
                return None;
            }
            self.i += 1;
            let mut out = Vec::new();
            loop {
                let c = self.peek()?;
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).ok(),
                    b'\\' => {
                        let e = self.peek()?;
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi)
                                    && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                                {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return None;
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    hi
                                };
                                char::from_u32(code).unwrap_or('\u{FFFD}')
                            }
                            _ => return None,
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    c if c < 0x20 => return None,
                    c => out.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
