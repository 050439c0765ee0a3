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
//! The client never performs I/O. It asks the driver to open connections
//! to the server ([`ClientTransmit::Connect`]), write bytes on them and
//! close them, and hears back what the server sends on each; TLS, if any,
//! is the driver's, around those bytes. Everything else is the client's:
//!
//! * **HTTP/1.1** for long-polling: it writes the requests and reads the
//!   answers (`Content-Length`, `chunked` or until the end), reuses
//!   keep-alive connections, and closes a connection to abandon its
//!   request. At most one GET (the poll) and one POST (the writes) are in
//!   flight at once, as in the official `engine.io-client`, so at most two
//!   connections are busy at once.
//! * **WebSockets**: the client runs the protocol itself
//!   ([`ws::Connection`] in the client role, masked with the injected
//!   entropy) over a connection of its own.
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
//! handshake: keep draining it, and keep feeding those connections' bytes.
//! Once every connection it opened is closed, the client is done.
//!
//! Timers (the heartbeat, a deadline per request, the opening of a
//! WebSocket and its probe, the WebSocket close handshakes, idle
//! keep-alive connections) are plain fields; [`Client::poll_timeout`] is
//! their minimum.
//!
//! This file holds the public surface and the client's state; the rest is
//! one file per concern:
//!
//! * `client/config.rs`: the options;
//! * `client/requests.rs`: the work asked of the driver, and the HTTP
//!   requests of the polling transport;
//! * `client/http.rs`: the HTTP connections (requests in flight, answers,
//!   keep-alive);
//! * `client/polling.rs`: the long-polling transport (the GET held by the
//!   server, POSTs of the write buffer, their answers);
//! * `client/websocket.rs`: the WebSocket transport (streams, frames,
//!   WebSockets winding down);
//! * `client/upgrade.rs`: the upgrade probe;
//! * `client/session.rs`: the session (handshake, heartbeat, the write
//!   buffer, close).

mod config;
mod http;
mod polling;
mod requests;
mod session;
mod upgrade;
mod websocket;

use std::{
    collections::VecDeque,
    fmt,
    time::{Duration, Instant},
};

pub use self::{
    config::{ClientConfig, TransportMode},
    requests::ClientTransmit,
};
use self::{
    http::{HttpConn, Purpose},
    polling::Polling,
    session::Params,
    upgrade::Probe,
    websocket::{Which, WsStream},
};
use super::{CloseReason, ConnId, Data, DecodeError, Packet, SEPARATOR, TransportKind};
use crate::{entropy::BoxEntropy, http::HttpError, machine::Backlog, ws};

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Opening,
    Open,
    Closed,
}

/// What went wrong with a transport or a probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered a request with a status other than 200 (400 for
    /// an unknown session, 413 for a payload over its limit...).
    #[error("the server answered HTTP {0}")]
    HttpStatus(u16),
    /// The server's answer was not HTTP/1.1 this client reads (or was over
    /// its limits).
    #[error("bad HTTP answer: {0}")]
    BadResponse(HttpError),
    /// The server closed the connection before its whole answer.
    #[error("the connection closed before the whole answer")]
    ConnectionClosed,
    /// The driver reported a failed connection (not opened, or broken),
    /// with its reason.
    #[error("connection failed: {0}")]
    ConnectionFailed(String),
    /// A request, or the opening of a WebSocket, took longer than
    /// [`ClientConfig::request_timeout`].
    #[error("no answer within the request timeout")]
    Timeout,
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

#[derive(Debug)]
enum Transport {
    Polling(Polling),
    WebSocket(WsStream),
}

/// A packet waiting in the client's write buffer, and whether it may be
/// compressed (see [`Client::send_compressed`]).
#[derive(Debug)]
struct Queued {
    packet: Packet,
    compress: bool,
}

impl std::borrow::Borrow<Packet> for Queued {
    fn borrow(&self) -> &Packet {
        &self.packet
    }
}

/// The Engine.IO client: one session, over long-polling, WebSocket, or
/// both with an upgrade.
///
/// Inputs: [`handle_input`](Self::handle_input),
/// [`handle_eof`](Self::handle_eof) and [`handle_error`](Self::handle_error)
/// for the connections it asked for, and
/// [`handle_timeout`](Self::handle_timeout). Commands:
/// [`send`](Self::send), [`close`](Self::close). It is a
/// [`ConnMachine`](crate::machine::ConnMachine) whose transmits ask the
/// driver to open connections: drive it as [`machine`](crate::machine)
/// says.
///
/// ```
/// use std::time::Instant;
/// use wsio::{engineio::{Client, ClientConfig, ClientTransmit}, entropy::SeededEntropy};
///
/// let now = Instant::now();
/// let mut client = Client::new(ClientConfig::new("localhost:3000"), Box::new(SeededEntropy::new(1)), now);
/// let Some(ClientTransmit::Connect { conn }) = client.poll_transmit(now) else { panic!() };
/// let Some(ClientTransmit::Data { data, .. }) = client.poll_transmit(now) else { panic!() };
/// assert!(data.starts_with(b"GET /engine.io/?EIO=4&transport=polling&t="));
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
    write_buffer: VecDeque<Queued>,
    in_flight: usize,
    /// Messages among `write_buffer` (what the limit counts).
    queued_messages: usize,
    ping_deadline: Option<Instant>,
    /// The HTTP connections, busy or idle.
    http: Vec<HttpConn>,
    next_conn: u64,
    transmits: VecDeque<ClientTransmit>,
    /// Output of connections whose sockets are full.
    held: Backlog<ClientTransmit>,
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
    /// A client that starts at once: the first transmits open a connection
    /// for the polling handshake GET, or (mode
    /// [`TransportMode::WebSocketOnly`]) for the WebSocket. `entropy`
    /// supplies every random byte (`t` parameters, WebSocket keys and
    /// masks).
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
            http: Vec::new(),
            next_conn: 0,
            transmits: VecDeque::new(),
            held: Backlog::default(),
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

    /// Whether the session is over and every connection it opened is
    /// closed: nothing more will be asked of the driver.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Closed
            && self.http.is_empty()
            && self.retired.is_empty()
            && self.transmits.is_empty()
    }

    // ----- inputs -------------------------------------------------------

    /// Bytes the server sent on connection `conn`. Unknown connections are
    /// ignored.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        if !self.http_input(now, conn, bytes) {
            if let Some(which) = self.find_stream(conn) {
                let max = self.config.ws.max_message_size;
                let blocked = match self.held.get_mut(conn) {
                    Some(h) => {
                        h.input = h.input.saturating_add(bytes.len());
                        if h.input > max {
                            // The driver went on reading a full connection.
                            return self.handle_error(now, conn, "input while blocked");
                        }
                        true
                    }
                    None => false,
                };
                if let Some(s) = self.stream_mut(which) {
                    s.ws.handle_input(now, bytes);
                }
                // A WebSocket whose socket is full decodes nothing more:
                // its answers (pongs) could not be written.
                if !blocked {
                    self.process_stream(now, conn);
                }
            }
        }
        self.after_turn(now);
    }

    /// The server closed connection `conn` (a read returned 0). The client
    /// answers with [`ClientTransmit::Close`] once it has written what it
    /// must.
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        if !self.http_end(now, conn, None) {
            if let Some(which) = self.find_stream(conn) {
                if let Some(s) = self.stream_mut(which) {
                    s.ws.handle_eof(now);
                }
                self.process_stream(now, conn);
            }
        }
        self.after_turn(now);
    }

    /// Connection `conn` could not be opened, or broke (a read or a write
    /// failed); `error` says how, for people. The connection is gone: the
    /// client asks nothing more of it.
    pub fn handle_error(&mut self, now: Instant, conn: ConnId, error: &str) {
        // What was still to be written on it goes nowhere.
        self.transmits.retain(|t| t.conn() != conn);
        self.held.remove(conn);
        if !self.http_end(now, conn, Some(error)) {
            let failed = ClientError::ConnectionFailed(error.to_owned());
            match self.find_stream(conn) {
                Some(Which::Main) => {
                    self.close_session(now, CloseReason::TransportError, Some(failed), false)
                }
                Some(Which::Probe) => self.probe_failed(now, failed),
                Some(Which::Retired(_)) | None => {}
            }
            // Whatever is left of it is dropped without a Close.
            self.retired.retain(|s| s.conn != conn);
            self.transmits.retain(|t| t.conn() != conn);
        }
        self.after_turn(now);
    }

    /// The socket of `conn` is full: the driver could not write
    /// `unwritten`, the rest of a transmit it took, and gives it back (see
    /// [`machine`](crate::machine), "Backpressure"). Until
    /// [`handle_writable`](Self::handle_writable) nothing more comes out
    /// for `conn` but a [`ClientTransmit::Close`] (which drops what was
    /// held: the server is not reading), the WebSocket on it decodes
    /// nothing and takes no packet from the write buffer (sends beyond
    /// [`ClientConfig::max_buffered_packets`] fail); the driver reads
    /// nothing from it. The client's own timers (the heartbeat, request
    /// deadlines) end a connection that never drains.
    pub fn handle_write_blocked(&mut self, now: Instant, conn: ConnId, unwritten: bytes::Bytes) {
        self.held.block(conn, unwritten, now);
    }

    /// The socket of `conn` takes bytes again: what was held comes out
    /// first, and the WebSocket on it goes on.
    pub fn handle_writable(&mut self, now: Instant, conn: ConnId) {
        let Some(queue) = self.held.release(conn) else {
            return;
        };
        for t in queue.into_iter().rev() {
            self.transmits.push_front(t);
        }
        if self.find_stream(conn).is_some() {
            self.process_stream(now, conn);
        }
        self.flush(now);
        self.after_turn(now);
    }

    /// Runs every timer that is due. Cheap; early or repeated calls do
    /// nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        // WebSocket close handshakes.
        let mut due: Vec<ConnId> = Vec::new();
        for which in [Which::Main, Which::Probe] {
            if let Some(s) = self.stream_mut(which) {
                if s.ws.poll_timeout().is_some_and(|t| t <= now) {
                    due.push(s.conn);
                }
            }
        }
        due.extend(
            self.retired
                .iter()
                .filter(|s| s.ws.poll_timeout().is_some_and(|t| t <= now))
                .map(|s| s.conn),
        );
        for conn in due {
            if let Some(which) = self.find_stream(conn) {
                if let Some(s) = self.stream_mut(which) {
                    s.ws.handle_timeout(now);
                }
                self.process_stream(now, conn);
            }
        }
        if self.phase != Phase::Closed {
            if self.ping_deadline.is_some_and(|d| d <= now) {
                self.close_session(now, CloseReason::PingTimeout, None, true);
            }
            let expired = match &self.transport {
                Some(Transport::Polling(_)) => self.polling_expired(now),
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
        self.http_timeouts(now);
        self.after_turn(now);
    }

    // ----- outputs ------------------------------------------------------

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

    /// When [`handle_timeout`](Self::handle_timeout) should next be called:
    /// the heartbeat, a request or WebSocket opening deadline, a WebSocket
    /// close handshake, or an idle connection to let go.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let open = self.phase != Phase::Closed;
        let (main, main_ws) = match &self.transport {
            Some(Transport::WebSocket(s)) => (s.deadline.filter(|_| open), s.ws.poll_timeout()),
            _ => (None, None),
        };
        let probe = self.probe.as_ref();
        [
            self.ping_deadline,
            self.http_deadline(),
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
        self.send_compressed(now, data, true)
    }

    /// [`send`](Self::send), saying whether the message may be compressed
    /// (the official `socket.send(data, { compress })`). With `false` it
    /// goes uncompressed on a WebSocket with permessage-deflate whatever
    /// its size; on polling it changes nothing, as the official client's
    /// requests are never compressed.
    pub fn send_compressed(
        &mut self,
        now: Instant,
        data: impl Into<Data>,
        compress: bool,
    ) -> Result<(), ClientUsageError> {
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
        self.write_buffer.push_back(Queued {
            packet: Packet::message(data),
            compress,
        });
        self.queued_messages += 1;
        self.flush(now);
        self.after_turn(now);
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
            if let Some(get) = self.polling_mut().and_then(|p| p.get.take()) {
                if let Some(c) = self.http.iter_mut().find(|c| c.id == get) {
                    c.purpose = Some(Purpose::LateHandshake);
                }
            }
            self.close_session(now, CloseReason::ForcedClose, None, false);
        } else {
            self.maybe_finish_close(now);
        }
        self.after_turn(now);
    }
}

crate::machine::by_inherent_methods!(Client: Machine<ClientTransmit, ClientEvent>);
crate::machine::by_inherent_methods!(Client: ConnMachine(handle_error));

#[cfg(test)]
mod tests;
