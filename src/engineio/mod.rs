//! Engine.IO v4: packets, long-polling payloads, and the server and client
//! machines, as the official `engine.io` 6.x server and `engine.io-client`
//! speak it (github socketio/engine.io-protocol).
//!
//! [`Server`] serves many sessions: it parses HTTP on raw TCP connections
//! (or takes requests already parsed by another HTTP stack), answers
//! long-polling requests, runs WebSocket transports and the upgrade from
//! polling, and keeps every session's heartbeat. [`Client`] is one session
//! seen from the other side.

mod client;
mod compression;
mod cookie;
mod cors;
mod frame;
mod open;
mod packet;
mod server;

use std::{fmt, time::Duration};

pub use client::{
    Client, ClientConfig, ClientError, ClientEvent, ClientState, ClientTransmit, ClientUsageError,
    TransportMode,
};
pub use compression::HttpCompression;
pub use cookie::{Cookie, SameSite};
pub use cors::{Cors, CorsOrigin};
pub use packet::{
    Data, DecodeError, Packet, PacketType, SEPARATOR, decode_payload, encode_payload,
};
pub use server::{Handshake, Server};

use crate::{http, ws};

/// A session id, as the official server makes them: 15 random bytes in
/// URL-safe base64, 20 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid([u8; 20]);

impl Sid {
    /// A new id from 15 bytes of entropy.
    pub fn generate(entropy: &mut dyn crate::entropy::Entropy) -> Sid {
        use base64::Engine as _;
        let mut raw = [0u8; 15];
        entropy.fill(&mut raw);
        let mut out = [0u8; 20];
        // 15 bytes are exactly 20 base64 characters, without padding.
        let _ = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(raw, &mut out);
        Sid(out)
    }

    /// Parses an id of the right shape (as sent back in `?sid=`).
    pub fn parse(s: &str) -> Option<Sid> {
        let b: [u8; 20] = s.as_bytes().try_into().ok()?;
        b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
            .then_some(Sid(b))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from base64url characters.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

/// A connection handle: one TCP connection the server accepted (or one
/// request from an embedding HTTP server), or one the client asked its
/// driver to open.
pub use crate::machine::ConnId;

/// Which transport a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

impl TransportKind {
    /// The name used in `?transport=`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// Why a session ended, with the official server's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client closed (close packet, or the transport ended cleanly).
    TransportClose,
    /// No pong within `pingTimeout` of a ping.
    PingTimeout,
    /// The client sent a packet that cannot be decoded.
    ParseError,
    /// The transport failed (overlapping polls, a broken connection, a
    /// WebSocket protocol error or limit).
    TransportError,
    /// The server closed the session.
    ForcedClose,
    /// The peer read too slowly: what waited for it would have crossed
    /// [`Config::max_send_queue`]. Its connection was dropped.
    SendQueueFull,
    /// The peer read nothing for [`Config::send_timeout`] while its socket
    /// was full. Its connection was dropped.
    SendTimeout,
}

impl CloseReason {
    /// The reason as the official server reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::TransportError => "transport error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::SendQueueFull => "send queue full",
            CloseReason::SendTimeout => "send timeout",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The official error codes of a refused request, answered as
/// `{"code":N,"message":"..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: `Transport unknown`.
    UnknownTransport = 0,
    /// 1: `Session ID unknown`.
    UnknownSid = 1,
    /// 2: `Bad handshake method`.
    BadHandshakeMethod = 2,
    /// 3: `Bad request`.
    BadRequest = 3,
    /// 4: `Forbidden` (status 403).
    Forbidden = 4,
    /// 5: `Unsupported protocol version`.
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    /// The official message.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status: 403 for `Forbidden`, else 400.
    pub fn status(self) -> u16 {
        if self == ErrorCode::Forbidden {
            403
        } else {
            400
        }
    }
}

/// What the application must hear from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session opened.
    Open {
        /// Its id.
        sid: Sid,
        /// The request that opened it.
        handshake: Box<Handshake>,
    },
    /// A message packet arrived.
    Message {
        /// The session.
        sid: Sid,
        /// Text or binary data.
        data: Data,
    },
    /// The session moved from polling to WebSocket.
    Upgrade {
        /// The session.
        sid: Sid,
    },
    /// The session ended; nothing more will be sent or received on it.
    Close {
        /// The session.
        sid: Sid,
        /// Why.
        reason: CloseReason,
    },
    /// A request for a path the server does not serve: answer it with
    /// [`Server::respond`].
    Request {
        /// Where to answer.
        conn: ConnId,
        /// The request head.
        head: Box<http::RequestHead>,
        /// The request body.
        body: bytes::Bytes,
    },
}

/// What the driver must do with a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Write these bytes on the connection.
    Data {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: bytes::Bytes,
    },
    /// Answer an embedded request (one given by
    /// [`Server::handle_request`]); raw connections get bytes instead.
    Response {
        /// The request.
        conn: ConnId,
        /// Status and headers.
        head: http::ResponseHead,
        /// The body.
        body: bytes::Bytes,
    },
    /// Close the connection after writing everything before this.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

impl Transmit {
    /// The connection concerned.
    pub fn conn(&self) -> ConnId {
        match self {
            Transmit::Data { conn, .. }
            | Transmit::Response { conn, .. }
            | Transmit::Close { conn } => *conn,
        }
    }
}

impl crate::machine::Holdable for Transmit {
    fn held_conn(&self) -> Option<ConnId> {
        match self {
            Transmit::Data { conn, .. } | Transmit::Close { conn } => Some(*conn),
            // The embedding HTTP server writes these.
            Transmit::Response { .. } => None,
        }
    }
    fn held_len(&self) -> usize {
        match self {
            Transmit::Data { data, .. } => data.len(),
            Transmit::Response { .. } | Transmit::Close { .. } => 0,
        }
    }
    fn data(conn: ConnId, data: bytes::Bytes) -> Self {
        Transmit::Data { conn, data }
    }
}

/// A misuse of the server's commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// No open session has this id.
    #[error("no open session {0}")]
    UnknownSession(Sid),
    /// No connection has this id, or it is not waiting for a response.
    #[error("connection {0:?} is not waiting for a response")]
    NotAwaitingResponse(ConnId),
    /// The packet would have crossed the session's bound
    /// ([`Config::max_send_queue`] or [`Config::max_buffered_packets`]):
    /// it was not accepted, and the session ends with
    /// [`CloseReason::SendQueueFull`].
    #[error("the session's send buffer is full")]
    BufferFull,
    /// Binary data in a packet type that only carries text.
    #[error("only message packets carry binary data")]
    BinaryNotMessage,
    /// A text containing the record separator (`\x1e`) cannot travel over
    /// long-polling, where it separates packets (the official server sends
    /// it anyway and the client reads two packets).
    #[error("text with a record separator cannot be sent over long-polling")]
    SeparatorInText,
}

/// Server options; the defaults are the official server's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The path served, with its trailing slash. Default `/engine.io/`.
    pub path: String,
    /// How often the server pings. Default 25 s.
    pub ping_interval: Duration,
    /// How long it waits for the pong. Default 20 s.
    pub ping_timeout: Duration,
    /// How long a started upgrade may take. Default 10 s.
    pub upgrade_timeout: Duration,
    /// Largest POST body or WebSocket message accepted (413 or close 1009
    /// beyond). Default 1,000,000 bytes.
    pub max_payload: usize,
    /// Whether long-polling is served. Default on.
    pub polling: bool,
    /// Whether WebSocket is served. Default on.
    pub websocket: bool,
    /// Whether polling sessions may upgrade to WebSocket. Default on.
    pub allow_upgrades: bool,
    /// CORS headers for polling responses. Default none.
    pub cors: Option<Cors>,
    /// The cookie set on the answer to a polling handshake (the official
    /// `cookie` option), for load balancers with sticky sessions. Default
    /// none, as the official server.
    pub cookie: Option<Cookie>,
    /// Most sessions at once; handshakes beyond are answered 503.
    /// Default 100,000.
    pub max_sessions: usize,
    /// Most packets waiting in one session's polling buffer while no poll
    /// is there to carry them; a send beyond ends the session as
    /// [`max_send_queue`](Self::max_send_queue) does. Default 10,000.
    pub max_buffered_packets: usize,
    /// Most bytes waiting for one session's peer while it is not taking
    /// them: its polling buffer while no poll is there to carry it, or,
    /// once the driver said its socket is full (see
    /// [`machine`](crate::machine), "Backpressure"), what the driver gave
    /// back and everything queued since. A send that would cross it fails
    /// with [`UsageError::BufferFull`], the session ends with
    /// [`CloseReason::SendQueueFull`] and its connection is dropped. What
    /// one turn queues for a peer that is reading leaves at the end of the
    /// turn and is not held to it (the WebSocket's own
    /// [`ws::Config::max_send_queue`] still is), nor is a lone packet
    /// larger than the bound. Default 1 MiB (uWebSockets'
    /// `maxBackpressure`).
    pub max_send_queue: usize,
    /// How long a connection's socket may stay full (the driver said so
    /// with `handle_write_blocked`, and not since that it is writable)
    /// before the connection is dropped; the session it carries ends with
    /// [`CloseReason::SendTimeout`]. Default 30 s.
    pub send_timeout: Duration,
    /// How long a raw HTTP connection may take to send a request head,
    /// counted from its first byte (or from the connection's start); then
    /// it is answered 408 and closed. Default 30 s (hyper's
    /// `header_read_timeout`; Node's `headersTimeout` is 60 s).
    pub head_timeout: Duration,
    /// How long a raw HTTP connection may take to send a whole request,
    /// body included, counted as [`head_timeout`](Self::head_timeout) is;
    /// then it is answered 408 and closed. Default 300 s (Node's
    /// `requestTimeout`).
    pub request_timeout: Duration,
    /// How long a raw HTTP connection may wait idle for its next request
    /// once a response has been written; then it is closed. Default 5 s
    /// (Node's `keepAliveTimeout`).
    pub keep_alive_timeout: Duration,
    /// How long a closing polling session waits for a poll to carry its
    /// close packet. Default 30 s.
    pub close_timeout: Duration,
    /// Limits of the WebSocket transport (its message limit is raised or
    /// lowered to `max_payload`), and its compression: see
    /// [`per_message_deflate`](Self::per_message_deflate).
    pub ws: ws::Config,
    /// Compression of long-polling responses (the official
    /// `httpCompression`): gzip or deflate, as the request's
    /// `Accept-Encoding` prefers, for bodies of at least its threshold.
    /// Default on, threshold 1,024 bytes, as the official server; `None`
    /// turns it off.
    pub http_compression: Option<HttpCompression>,
    /// Limits on HTTP heads.
    pub head_limits: http::Limits,
    /// Paths under [`path`](Self::path) that are handed to the application
    /// as [`Event::Request`] instead (a client bundle served from the same
    /// prefix, say).
    pub bypass: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: "/engine.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            polling: true,
            websocket: true,
            allow_upgrades: true,
            cors: None,
            cookie: None,
            max_sessions: 100_000,
            max_buffered_packets: 10_000,
            max_send_queue: 1 << 20,
            send_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            keep_alive_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(30),
            ws: ws::Config::default(),
            http_compression: Some(HttpCompression::default()),
            head_limits: http::Limits::default(),
            bypass: Vec::new(),
        }
    }
}

impl Config {
    /// Sets [`path`](Self::path); a trailing slash is added if missing.
    pub fn path(mut self, p: &str) -> Self {
        self.path = with_trailing_slash(p);
        self
    }
    /// Sets [`ping_interval`](Self::ping_interval).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }
    /// Sets [`ping_timeout`](Self::ping_timeout).
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.ping_timeout = d;
        self
    }
    /// Sets [`upgrade_timeout`](Self::upgrade_timeout).
    pub fn upgrade_timeout(mut self, d: Duration) -> Self {
        self.upgrade_timeout = d;
        self
    }
    /// Sets [`max_payload`](Self::max_payload).
    pub fn max_payload(mut self, n: usize) -> Self {
        self.max_payload = n;
        self
    }
    /// Chooses the transports served.
    pub fn transports(mut self, polling: bool, websocket: bool) -> Self {
        self.polling = polling;
        self.websocket = websocket;
        self
    }
    /// Sets [`allow_upgrades`](Self::allow_upgrades).
    pub fn allow_upgrades(mut self, on: bool) -> Self {
        self.allow_upgrades = on;
        self
    }
    /// Sets [`cors`](Self::cors).
    pub fn cors(mut self, cors: Option<Cors>) -> Self {
        self.cors = cors;
        self
    }
    /// Sets [`cookie`](Self::cookie).
    pub fn cookie(mut self, cookie: Option<Cookie>) -> Self {
        self.cookie = cookie;
        self
    }
    /// Sets [`max_sessions`](Self::max_sessions).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }
    /// Sets [`max_buffered_packets`](Self::max_buffered_packets).
    pub fn max_buffered_packets(mut self, n: usize) -> Self {
        self.max_buffered_packets = n;
        self
    }
    /// Sets [`max_send_queue`](Self::max_send_queue).
    pub fn max_send_queue(mut self, n: usize) -> Self {
        self.max_send_queue = n;
        self
    }
    /// Sets [`send_timeout`](Self::send_timeout).
    pub fn send_timeout(mut self, d: Duration) -> Self {
        self.send_timeout = d;
        self
    }
    /// Sets [`head_timeout`](Self::head_timeout).
    pub fn head_timeout(mut self, d: Duration) -> Self {
        self.head_timeout = d;
        self
    }
    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// Sets [`keep_alive_timeout`](Self::keep_alive_timeout).
    pub fn keep_alive_timeout(mut self, d: Duration) -> Self {
        self.keep_alive_timeout = d;
        self
    }
    /// Sets [`close_timeout`](Self::close_timeout).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }
    /// Sets [`ws`](Self::ws).
    pub fn ws(mut self, c: ws::Config) -> Self {
        self.ws = c;
        self
    }
    /// Sets [`head_limits`](Self::head_limits).
    pub fn head_limits(mut self, l: http::Limits) -> Self {
        self.head_limits = l;
        self
    }
    /// permessage-deflate on the WebSocket transport (the official
    /// `perMessageDeflate`): sets the `deflate` of [`ws`](Self::ws). Off by
    /// default, as in engine.io 6; the official `perMessageDeflate: true`
    /// is `DeflateConfig::default().enabled(true)` (threshold 1,024 bytes,
    /// both windows 15 bits, context takeover as the client offers).
    ///
    /// ```
    /// use wsio::{engineio::Config, ws::deflate::DeflateConfig};
    /// let config = Config::default().per_message_deflate(DeflateConfig::default().enabled(true));
    /// assert!(config.ws.deflate.enabled);
    /// ```
    pub fn per_message_deflate(mut self, d: ws::deflate::DeflateConfig) -> Self {
        self.ws.deflate = d;
        self
    }
    /// Sets [`http_compression`](Self::http_compression).
    pub fn http_compression(mut self, c: Option<HttpCompression>) -> Self {
        self.http_compression = c;
        self
    }

    /// Adds a path to [`bypass`](Self::bypass).
    pub fn bypass(mut self, path: impl Into<String>) -> Self {
        self.bypass.push(path.into());
        self
    }

    /// The WebSocket config with the message limit set to `max_payload`.
    fn ws_config(&self) -> ws::Config {
        self.ws
            .max_message_size(self.max_payload)
            .max_frame_size(self.max_payload)
            .head_limits(self.head_limits)
    }
}

/// An engine path as both sides spell it: a prefix ending in `/`.
fn with_trailing_slash(path: &str) -> String {
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}

/// A packet encoded once for many recipients: a broadcast costs one
/// encoding, and each recipient gets a reference, not a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPacket {
    pub(crate) packet: Packet,
    pub(crate) frame: ws::EncodedFrame,
    pub(crate) compress: bool,
}

impl SharedPacket {
    /// Encodes `packet` for the WebSocket transport now; polling sessions
    /// take the packet itself.
    pub fn new(packet: Packet) -> Self {
        let frame = frame::encode(&packet);
        SharedPacket {
            packet,
            frame,
            compress: true,
        }
    }

    /// Whether the packet may be compressed (the default; see
    /// [`Server::send_text_compressed`]).
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Whether the packet may be compressed.
    pub fn may_compress(&self) -> bool {
        self.compress
    }

    /// The packet.
    pub fn packet(&self) -> &Packet {
        &self.packet
    }
}
