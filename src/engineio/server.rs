//! The Engine.IO server machine.
//!
//! # Theory of operation
//!
//! The server owns two tables: *connections* (raw TCP connections speaking
//! HTTP/1.1, requests handed in by an embedding HTTP server, and WebSocket
//! streams) and *sessions* (see `server/session.rs`). A connection carries
//! at most one request at a time; a GET for a session with nothing to send
//! is held until a packet, a heartbeat or the end of the session answers it.
//!
//! Requests are checked in the order of the official server, so that each
//! refusal carries the same code: transport, origin, then the sid (unknown:
//! 1; wrong transport: 3), or for a handshake the method (2), the transport
//! (3), the application's `allow_request` (4) and the protocol version (5).
//!
//! Writes are batched: commands queue packets and mark the session or
//! WebSocket dirty; [`Server::poll_transmit`] flushes them, so everything
//! queued during one turn leaves in one response or one write.
//!
//! Timers: each session and WebSocket enters its earliest deadline in one
//! binary heap. Entries that have gone stale (the deadline moved) are
//! skipped when they come up, so rescheduling is O(log n) and
//! [`Server::poll_timeout`] is O(1).
//!
//! This file holds the public surface, the connection table and the
//! routing between connections and sessions, the timers and the batching.
//! The rest is one file per concern:
//!
//! * `server/http.rs`: raw HTTP connections, request dispatch, responses,
//!   CORS and error bodies;
//! * `server/polling.rs`: the long-polling transport (held GETs, POST
//!   bodies, payloads);
//! * `server/websocket.rs`: the WebSocket transport (upgrade requests,
//!   frames, the probe connection);
//! * `server/session.rs`: one session (handshake, heartbeat, upgrade,
//!   close);
//! * `server/backpressure.rs`: connections whose sockets are full, the
//!   bound on what waits for a peer, connections dropped at once.

mod backpressure;
mod http;
mod polling;
mod session;
mod websocket;

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    net::SocketAddr,
    time::Instant,
};

use bytes::{Bytes, BytesMut};

use self::{
    http::{HttpConn, HttpState},
    session::{Session, Transport},
    websocket::WsConn,
};
use super::{
    CloseReason, Config, ConnId, Data, Event, Packet, PacketType, SharedPacket, Sid, Transmit,
    TransportKind, UsageError,
};
use crate::{
    entropy::BoxEntropy,
    http::{HeadParser, RequestHead, ResponseHead},
    idmap::IdMap,
    machine::{Backlog, later},
    ws::{self, Message},
};

/// The request that opened a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The request head: path, query (`EIO`, `transport`, the
    /// application's own parameters), headers.
    pub head: RequestHead,
    /// The peer's address, if the driver gave it.
    pub peer: Option<SocketAddr>,
    /// The transport of the first request.
    pub transport: TransportKind,
}

/// The application's verdict on a handshake: `Err(message)` refuses it with
/// 403 and that message.
pub type AllowRequest = Box<dyn Fn(&RequestHead) -> Result<(), String> + Send>;

#[derive(Debug)]
enum ConnKind {
    Http(HttpConn),
    /// A request given by an embedding server, waiting for its answer.
    Embedded {
        head: Box<RequestHead>,
    },
    Ws(WsConn),
}

#[derive(Debug)]
struct Conn {
    peer: Option<SocketAddr>,
    kind: ConnKind,
}

impl Conn {
    fn new(peer: Option<SocketAddr>, kind: ConnKind) -> Self {
        Conn { peer, kind }
    }

    /// The HTTP state, if the connection is a raw HTTP one.
    fn http_mut(&mut self) -> Option<&mut HttpConn> {
        match &mut self.kind {
            ConnKind::Http(h) => Some(h),
            _ => None,
        }
    }

    /// The WebSocket, if the connection speaks it.
    fn ws_mut(&mut self) -> Option<&mut WsConn> {
        match &mut self.kind {
            ConnKind::Ws(w) => Some(w),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Session(Sid),
    /// A WebSocket's timer, or a raw HTTP connection's.
    Conn(ConnId),
    /// The deadline of a connection whose socket is full.
    Blocked(ConnId),
}

/// The Engine.IO server: many sessions over many connections.
///
/// Inputs: [`accept`](Self::accept) a TCP connection then
/// [`handle_input`](Self::handle_input)/[`handle_eof`](Self::handle_eof)
/// its bytes, or [`handle_request`](Self::handle_request) and
/// [`handle_upgrade`](Self::handle_upgrade) from an embedding HTTP server;
/// and [`handle_timeout`](Self::handle_timeout). Outputs:
/// [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
/// [`poll_timeout`](Self::poll_timeout). It is a
/// [`ServerMachine`](crate::machine::ServerMachine): drive it as
/// [`machine`](crate::machine) says.
///
/// ```
/// use std::time::Instant;
/// use wsio::{engineio::{Config, Event, Server, Transmit}, entropy::SeededEntropy};
///
/// let mut server = Server::new(Config::default(), Box::new(SeededEntropy::new(1)), Instant::now());
/// let now = Instant::now();
/// let conn = server.accept(now, None);
/// server.handle_input(now, conn, b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
/// let Some(Transmit::Data { data, .. }) = server.poll_transmit(now) else { panic!() };
/// assert!(data.starts_with(b"HTTP/1.1 200 OK\r\n"));
/// assert!(matches!(server.poll_event(now), Some(Event::Open { .. })));
/// ```
pub struct Server {
    config: Config,
    ws_config: ws::Config,
    entropy: BoxEntropy,
    allow_request: Option<AllowRequest>,
    conns: IdMap<ConnId, Conn>,
    next_conn: u64,
    sessions: IdMap<Sid, Session>,
    timers: BinaryHeap<Reverse<(Instant, Target)>>,
    dirty: Vec<Target>,
    /// `dirty`'s allocation while it is being flushed.
    dirty_spare: Vec<Target>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Connections whose next pipelined request may now be read.
    resume: Vec<ConnId>,
    /// Held polls: the session each waiting GET belongs to.
    polls: IdMap<ConnId, Sid>,
    /// Output of connections whose sockets are full.
    held: Backlog<Transmit>,
    /// The deadline each blocked connection has in `timers`: one entry per
    /// connection however often it blocks and drains.
    blocked_timers: IdMap<ConnId, Instant>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("conns", &self.conns.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with `config`, drawing session ids from `entropy`. `now`
    /// is the time of its creation (the machine never reads a clock).
    pub fn new(config: Config, entropy: BoxEntropy, now: Instant) -> Self {
        let _ = now;
        Server {
            resume: Vec::new(),
            polls: IdMap::default(),
            held: Backlog::default(),
            blocked_timers: IdMap::default(),
            ws_config: config.ws_config(),
            config,
            entropy,
            allow_request: None,
            conns: IdMap::default(),
            next_conn: 0,
            sessions: IdMap::default(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            dirty_spare: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets the application's decision on handshakes (refusals answer 403
    /// with code 4).
    pub fn set_allow_request(&mut self, f: AllowRequest) {
        self.allow_request = Some(f);
    }

    // ----- queries ------------------------------------------------------

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The number of connections.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// A session's transport, if it is open.
    pub fn transport(&self, sid: Sid) -> Option<TransportKind> {
        self.sessions.get(&sid).map(|s| s.transport.kind())
    }

    /// Whether a packet sent now would go out at once rather than wait: the
    /// test for volatile sends.
    pub fn is_writable(&self, sid: Sid) -> bool {
        match self.sessions.get(&sid).map(|s| &s.transport) {
            Some(Transport::Polling { get }) => get.is_some(),
            Some(Transport::WebSocket(c)) => match self.conns.get(c).map(|c| &c.kind) {
                Some(ConnKind::Ws(w)) => {
                    w.ws.buffered_amount() == 0
                        && w.ws.state() == ws::State::Open
                        && !self.held.is_blocked(*c)
                }
                _ => false,
            },
            None => false,
        }
    }

    // ----- inputs -------------------------------------------------------

    /// Registers a new TCP connection; its bytes go to
    /// [`handle_input`](Self::handle_input).
    pub fn accept(&mut self, now: Instant, peer: Option<SocketAddr>) -> ConnId {
        let id = self.new_conn_id();
        let http = HttpConn {
            rbuf: BytesMut::new(),
            parser: HeadParser::new(self.config.head_limits),
            state: HttpState::Head,
            started: now,
            idle: false,
            deadline: Some(later(now, self.config.head_timeout)),
            scheduled: None,
        };
        self.conns.insert(id, Conn::new(peer, ConnKind::Http(http)));
        self.schedule(Target::Conn(id));
        id
    }

    fn new_conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// Feeds bytes read from a connection. Unknown connections are ignored.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.input(now, conn, bytes);
        self.resume_http(now);
    }

    fn input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        // A blocked connection's input waits undecoded (see
        // `backpressure`).
        let blocked = self.held.is_blocked(conn);
        if blocked && !self.keep_blocked_input(conn, bytes.len()) {
            return;
        }
        match self.conns.get_mut(&conn).map(|c| &mut c.kind) {
            Some(ConnKind::Http(h)) => {
                h.rbuf.extend_from_slice(bytes);
                self.process_http(now, conn);
            }
            Some(ConnKind::Ws(w)) => {
                w.ws.handle_input(now, bytes);
                self.after_ws(now, conn);
            }
            Some(ConnKind::Embedded { .. }) | None => {}
        }
    }

    /// The peer closed a connection.
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        match self.conns.get_mut(&conn).map(|c| &mut c.kind) {
            Some(ConnKind::Ws(w)) => {
                w.ws.handle_eof(now);
                self.after_ws(now, conn);
            }
            Some(_) => self.drop_conn(now, conn),
            None => {}
        }
    }

    /// A request parsed by an embedding HTTP server (not an upgrade: see
    /// [`handle_upgrade`](Self::handle_upgrade)). Its answer comes out as
    /// [`Transmit::Response`] for the returned id, possibly much later
    /// (a held poll); call [`handle_eof`](Self::handle_eof) if the client
    /// goes away first.
    pub fn handle_request(
        &mut self,
        now: Instant,
        head: RequestHead,
        body: Bytes,
        peer: Option<SocketAddr>,
    ) -> ConnId {
        let id = self.new_conn_id();
        let head = Box::new(head);
        let kind = ConnKind::Embedded { head: head.clone() };
        self.conns.insert(id, Conn::new(peer, kind));
        if body.len() > self.config.max_payload && self.is_engine_path(&head) {
            // As on a raw connection: an empty 413 with the CORS headers.
            let mut res = ResponseHead::new(413);
            if let Some(cors) = &self.config.cors {
                cors.apply(&head, &mut res);
            }
            self.write_response(now, id, res, Bytes::new());
        } else {
            self.on_request(now, id, head, body);
        }
        self.resume_http(now);
        id
    }

    /// An upgrade request parsed by an embedding HTTP server. On success,
    /// answer the client with the returned 101 head, then feed the upgraded
    /// stream's bytes (including any already read) to
    /// [`handle_input`](Self::handle_input) with the returned id, and write
    /// its transmits. On refusal, answer with the returned head and body.
    pub fn handle_upgrade(
        &mut self,
        now: Instant,
        head: RequestHead,
        peer: Option<SocketAddr>,
    ) -> Result<(ConnId, ResponseHead), (ResponseHead, Bytes)> {
        let id = self.new_conn_id();
        match self.check_upgrade(&head) {
            Ok(checked) => {
                let res = self.upgrade_response(&checked);
                let ws = WsConn::new(self.ws_config);
                self.conns.insert(id, Conn::new(peer, ConnKind::Ws(ws)));
                self.start_ws_transport(now, id, checked);
                Ok((id, res))
            }
            Err(refusal) => Err(refusal),
        }
    }

    /// Runs every timer that is due. Cheap; early or repeated calls do
    /// nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, target))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match target {
                Target::Session(sid) => {
                    let Some(s) = self.sessions.get_mut(&sid) else {
                        continue;
                    };
                    if s.scheduled != Some(at) {
                        continue;
                    }
                    s.scheduled = None;
                    self.session_timeout(now, sid);
                    self.schedule(Target::Session(sid));
                }
                Target::Conn(conn) => match self.conns.get_mut(&conn).map(|c| &mut c.kind) {
                    Some(ConnKind::Ws(w)) if w.scheduled == Some(at) => {
                        w.scheduled = None;
                        w.ws.handle_timeout(now);
                        self.after_ws(now, conn);
                    }
                    Some(ConnKind::Http(h)) if h.scheduled == Some(at) => {
                        h.scheduled = None;
                        self.http_timeout(now, conn);
                        self.schedule(Target::Conn(conn));
                    }
                    _ => {}
                },
                Target::Blocked(conn) => {
                    if self.blocked_timers.get(&conn) == Some(&at) {
                        self.blocked_timers.remove(&conn);
                        self.blocked_timeout(now, conn);
                    }
                }
            }
        }
        self.resume_http(now);
    }

    // ----- outputs ------------------------------------------------------

    /// The next bytes to write, response to give, or connection to close.
    /// What commands queued since the last call is flushed here, so that
    /// everything queued in one turn leaves together.
    /// Nothing comes out for a connection whose socket is full (see
    /// [`handle_write_blocked`](Self::handle_write_blocked)) but its
    /// close.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        loop {
            if self.transmits.is_empty() {
                self.flush_dirty(now);
                self.resume_http(now);
            }
            let t = self.transmits.pop_front()?;
            if let Some(t) = self.held.hold(t) {
                return Some(t);
            }
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        let _ = now;
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    // ----- commands -----------------------------------------------------

    /// Sends a message packet to a session.
    pub fn send(&mut self, sid: Sid, data: impl Into<Data>) -> Result<(), UsageError> {
        self.send_packet(sid, Packet::message(data))
    }

    /// Sends a text message from a borrowed string. On WebSocket the text
    /// is copied straight into the frame, so a caller that encodes into a
    /// reusable buffer sends without allocating; on polling it is queued
    /// as [`Server::send`] would.
    pub fn send_text(&mut self, sid: Sid, text: &str) -> Result<(), UsageError> {
        self.queue_all(sid, Packets::Text(text, true))
    }

    /// [`send_text`](Self::send_text), saying whether the message may be
    /// compressed (the official `socket.send(data, { compress })`; the
    /// other sends say yes). With `false`, on WebSocket it goes
    /// uncompressed whatever its size; on polling, a response is
    /// compressed (`httpCompression`) only if some packet in it may be.
    pub fn send_text_compressed(
        &mut self,
        sid: Sid,
        text: &str,
        compress: bool,
    ) -> Result<(), UsageError> {
        self.queue_all(sid, Packets::Text(text, compress))
    }

    /// Sends a packet encoded once for many sessions, compressed if it may
    /// be ([`SharedPacket::compress`]).
    pub fn send_shared(&mut self, sid: Sid, packet: &SharedPacket) -> Result<(), UsageError> {
        self.queue_all(sid, Packets::Shared(std::slice::from_ref(packet)))
    }

    /// Sends several message packets, all or none (an upper layer's packet
    /// and its attachments).
    pub fn send_all(&mut self, sid: Sid, packets: &[Packet]) -> Result<(), UsageError> {
        self.send_all_compressed(sid, packets, true)
    }

    /// [`send_all`](Self::send_all), saying whether the packets may be
    /// compressed (see [`send_text_compressed`](Self::send_text_compressed)).
    pub fn send_all_compressed(
        &mut self,
        sid: Sid,
        packets: &[Packet],
        compress: bool,
    ) -> Result<(), UsageError> {
        if packets
            .iter()
            .any(|p| matches!(p.data, Data::Binary(_)) && p.kind != PacketType::Message)
        {
            return Err(UsageError::BinaryNotMessage);
        }
        self.queue_all(sid, Packets::Plain(packets, compress))
    }

    /// Sends several packets encoded once for many sessions, all or none.
    pub fn send_shared_all(
        &mut self,
        sid: Sid,
        packets: &[SharedPacket],
    ) -> Result<(), UsageError> {
        self.queue_all(sid, Packets::Shared(packets))
    }

    /// Sends any packet (message, or noop; the server runs the heartbeat and
    /// the handshake itself).
    pub fn send_packet(&mut self, sid: Sid, packet: Packet) -> Result<(), UsageError> {
        if matches!(packet.data, Data::Binary(_)) && packet.kind != PacketType::Message {
            return Err(UsageError::BinaryNotMessage);
        }
        self.queue_all(sid, Packets::Plain(std::slice::from_ref(&packet), true))
    }

    /// Closes a session: queued packets go out first, then the close
    /// (`forced close`).
    pub fn close(&mut self, now: Instant, sid: Sid) -> Result<(), UsageError> {
        let deadline = now + self.config.close_timeout;
        let s = self.live_session(sid)?;
        if s.transport.kind() == TransportKind::WebSocket {
            self.end_session(now, sid, CloseReason::ForcedClose);
            return Ok(());
        }
        match s.start_close(deadline) {
            Some(get) => {
                self.answer_poll(now, get, &[Packet::new(PacketType::Close)], true);
                self.end_session(now, sid, CloseReason::ForcedClose);
            }
            None => self.schedule(Target::Session(sid)),
        }
        Ok(())
    }

    /// Answers a [`Event::Request`] (a path the server does not serve). A
    /// `Content-Length` is added if missing.
    pub fn respond(
        &mut self,
        now: Instant,
        conn: ConnId,
        head: ResponseHead,
        body: Bytes,
    ) -> Result<(), UsageError> {
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(ConnKind::Http(HttpConn {
                state: HttpState::Busy { .. },
                ..
            }))
            | Some(ConnKind::Embedded { .. }) => {
                self.write_response(now, conn, head, body);
                self.resume_http(now);
                Ok(())
            }
            _ => Err(UsageError::NotAwaitingResponse(conn)),
        }
    }

    /// Detaches a raw connection whose request was handed out as
    /// [`Event::Request`], returning the bytes it had read beyond that
    /// request: for a driver that takes the connection elsewhere (a
    /// WebSocket endpoint of its own, another server on another path).
    pub fn release(&mut self, conn: ConnId) -> Option<Bytes> {
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(ConnKind::Http(HttpConn {
                state: HttpState::Busy { .. },
                ..
            })) => {}
            _ => return None,
        }
        match self.conns.remove(&conn).map(|c| c.kind) {
            Some(ConnKind::Http(h)) => Some(h.rbuf.freeze()),
            _ => None,
        }
    }

    // ----- batching and timers ------------------------------------------

    fn mark_dirty(&mut self, target: Target) {
        let flag = match target {
            Target::Session(sid) => self.sessions.get_mut(&sid).map(|s| &mut s.dirty),
            Target::Conn(c) => self
                .conns
                .get_mut(&c)
                .and_then(Conn::ws_mut)
                .map(|w| &mut w.dirty),
            Target::Blocked(_) => None,
        };
        if let Some(flag) = flag {
            flag_dirty(flag, &mut self.dirty, target);
        }
    }

    fn flush_dirty(&mut self, now: Instant) {
        // Flushing polling sessions can dirty WebSockets (upgrade) and the
        // reverse, so loop until quiet.
        while !self.dirty.is_empty() {
            // Swapped with a spare list rather than taken, so that neither
            // allocates again on the next flush.
            let mut targets = std::mem::take(&mut self.dirty_spare);
            std::mem::swap(&mut targets, &mut self.dirty);
            for target in targets.drain(..) {
                match target {
                    Target::Session(sid) => {
                        if let Some(s) = self.sessions.get_mut(&sid) {
                            s.dirty = false;
                            self.flush_polling(now, sid);
                        }
                    }
                    Target::Conn(conn) => self.drain_ws(now, conn),
                    Target::Blocked(_) => {}
                }
            }
            self.dirty_spare = targets;
        }
    }

    fn schedule(&mut self, target: Target) {
        let (next, scheduled) = match target {
            Target::Session(sid) => match self.sessions.get_mut(&sid) {
                Some(s) => (s.next_deadline(), &mut s.scheduled),
                None => return,
            },
            Target::Conn(c) => match self.conns.get_mut(&c).map(|c| &mut c.kind) {
                Some(ConnKind::Ws(w)) => (w.ws.poll_timeout(), &mut w.scheduled),
                Some(ConnKind::Http(h)) => (h.deadline, &mut h.scheduled),
                _ => return,
            },
            Target::Blocked(c) => {
                // An entry already due earlier finds the later deadline
                // when it fires (a connection that drains and blocks again
                // often adds nothing).
                let Some(at) = self.held.get(c).map(|h| h.deadline) else {
                    return;
                };
                if self.blocked_timers.get(&c).is_none_or(|t| at < *t) {
                    self.blocked_timers.insert(c, at);
                    self.timers.push(Reverse((at, target)));
                }
                return;
            }
        };
        if let Some(next) = next {
            if scheduled.is_none_or(|s| next < s) {
                *scheduled = Some(next);
                self.timers.push(Reverse((next, target)));
            }
        }
    }
}

/// Sets a session's or connection's dirty flag, listing it for the next
/// flush the first time.
fn flag_dirty(flag: &mut bool, dirty: &mut Vec<Target>, target: Target) {
    if !*flag {
        *flag = true;
        dirty.push(target);
    }
}

/// Packets to send, and whether they may be compressed (shared packets
/// say it each).
#[derive(Clone, Copy)]
enum Packets<'a> {
    Plain(&'a [Packet], bool),
    Shared(&'a [SharedPacket]),
    /// One message packet, its text borrowed.
    Text(&'a str, bool),
}

impl Packets<'_> {
    fn len(&self) -> usize {
        match self {
            Packets::Plain(p, _) => p.len(),
            Packets::Shared(p) => p.len(),
            Packets::Text(..) => 1,
        }
    }

    /// Whether any of them may be compressed.
    fn compress(&self) -> bool {
        match self {
            Packets::Plain(_, c) | Packets::Text(_, c) => *c,
            Packets::Shared(p) => p.iter().any(|p| p.compress),
        }
    }

    /// What they take in a polling payload: type digits, separators,
    /// binary as base64.
    fn polling_len(&self) -> usize {
        fn one(p: &Packet) -> usize {
            match &p.data {
                Data::Text(t) => t.len() + 2,
                Data::Binary(b) => b.len().div_ceil(3) * 4 + 2,
            }
        }
        match self {
            Packets::Plain(p, _) => p.iter().map(one).sum(),
            Packets::Shared(p) => p.iter().map(|p| one(&p.packet)).sum(),
            Packets::Text(t, _) => t.len() + 2,
        }
    }

    /// About what they take on a WebSocket: payloads, type digits, the
    /// longest frame headers.
    fn ws_len(&self) -> usize {
        const OVERHEAD: usize = 1 + ws::frame::MAX_HEADER_LEN;
        match self {
            Packets::Plain(p, _) => p.iter().map(|p| p.data.len() + OVERHEAD).sum(),
            Packets::Shared(p) => p.iter().map(|p| p.frame.as_bytes().len()).sum(),
            Packets::Text(t, _) => t.len() + OVERHEAD,
        }
    }
}

/// A packet as one WebSocket message (type digit before text; binary raw).
fn ws_message(p: &Packet) -> Message {
    match &p.data {
        Data::Binary(b) => Message::Binary(b.clone()),
        Data::Text(t) => {
            let mut s = String::with_capacity(1 + t.len());
            s.push(char::from(p.kind.as_char()));
            s.push_str(t);
            Message::Text(ws::Utf8Bytes::from(s))
        }
    }
}

crate::machine::by_inherent_methods!(Server: Machine<Transmit, Event>);
crate::machine::by_inherent_methods!(Server: ConnMachine);
crate::machine::by_inherent_methods!(Server: ServerMachine);

#[cfg(test)]
mod tests;
