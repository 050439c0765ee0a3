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
//!
//! This file holds the public surface and the client's state; the rest is
//! one file per concern:
//!
//! * `client/config.rs`: the options;
//! * `client/requests.rs`: the work asked of the driver, and the HTTP
//!   requests of the polling transport;
//! * `client/polling.rs`: the long-polling transport (the GET held by the
//!   server, POSTs of the write buffer, their answers);
//! * `client/websocket.rs`: the WebSocket transport (streams, frames,
//!   WebSockets winding down);
//! * `client/upgrade.rs`: the upgrade probe;
//! * `client/session.rs`: the session (handshake, heartbeat, the write
//!   buffer, close).

mod config;
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

use bytes::Bytes;

pub use self::{
    config::{ClientConfig, TransportMode},
    requests::{ClientTransmit, HttpRequest, RequestFailed, RequestId},
};
use self::{
    polling::Polling,
    session::{Params, Phase},
    upgrade::Probe,
    websocket::{Which, WsStream},
};
use super::{CloseReason, Data, DecodeError, Packet, SEPARATOR, TransportKind};
use crate::{entropy::BoxEntropy, http::ResponseHead, ws};

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

#[derive(Debug)]
enum Transport {
    Polling(Polling),
    WebSocket(WsStream),
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
}

#[cfg(test)]
mod tests;
