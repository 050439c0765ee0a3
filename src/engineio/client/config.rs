//! The client's options.

use std::time::Duration;

use crate::{engineio::with_trailing_slash, http::Headers, ws};

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
    /// How long a keep-alive HTTP connection may wait idle for the next
    /// request before it is closed (the server may be closing it: Node
    /// closes idle ones after 5 s). Default 2 s.
    pub idle_timeout: Duration,
    /// Most packets waiting in the write buffer; sends beyond fail with
    /// [`ClientUsageError::BufferFull`](super::ClientUsageError::BufferFull). Default 10,000.
    pub max_buffered_packets: usize,
    /// Add a random `t` parameter to every polling request, as the official
    /// client does against caches. Default on.
    pub timestamp_requests: bool,
    /// Ask for compressed polling answers: every polling request says
    /// `Accept-Encoding: gzip, deflate` (unless [`headers`](Self::headers)
    /// has an `Accept-Encoding` of its own), and a server with
    /// `httpCompression` encodes large answers (a browser asks the same).
    /// Answers that come encoded are decoded either way, within the same
    /// 64 MiB as a plain body. Default on.
    pub http_compression: bool,
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
            idle_timeout: Duration::from_secs(2),
            max_buffered_packets: 10_000,
            timestamp_requests: true,
            http_compression: true,
        }
    }

    /// Sets [`path`](Self::path); a trailing slash is added if missing.
    pub fn path(mut self, p: &str) -> Self {
        self.path = with_trailing_slash(p);
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
    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
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
    /// Sets [`http_compression`](Self::http_compression).
    pub fn http_compression(mut self, on: bool) -> Self {
        self.http_compression = on;
        self
    }
}
