//! The Engine.IO server machine.
//!
//! # Theory of operation
//!
//! The server owns two tables: *connections* (raw TCP connections speaking
//! HTTP/1.1, requests handed in by an embedding HTTP server, and WebSocket
//! streams) and *sessions* (see `session.rs`). A connection carries at most
//! one request at a time; a GET for a session with nothing to send is held
//! until a packet, a heartbeat or the end of the session answers it.
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

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::{Buf, Bytes, BytesMut};

use super::{
    CloseReason, Config, ConnId, Data, ErrorCode, Event, Packet, PacketType, SharedPacket, Sid,
    Transmit, TransportKind, UsageError, decode_payload, encode_payload,
    session::{Closing, Session, Transport, Upgrade},
};
use crate::{
    entropy::BoxEntropy,
    http::{
        HeadParser, HttpError, Method, RequestHead, ResponseHead,
        body::{BodyReader, Framing},
    },
    idmap::IdMap,
    ws::{self, DataKind, Message},
};

/// How often a pending GET is released with a noop while an upgrade waits
/// for the client's `5` (the official server's interval).
const NOOP_INTERVAL: Duration = Duration::from_millis(100);

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
enum HttpState {
    Head,
    Body {
        head: Box<RequestHead>,
        reader: BodyReader,
    },
    /// A request is being answered (held poll, or the application's turn).
    Busy {
        head: Box<RequestHead>,
    },
}

#[derive(Debug)]
struct HttpConn {
    rbuf: BytesMut,
    parser: HeadParser,
    state: HttpState,
}

#[derive(Debug)]
enum ConnKind {
    Http(HttpConn),
    /// A request given by an embedding server, waiting for its answer.
    Embedded {
        head: Box<RequestHead>,
    },
    Ws {
        ws: Box<ws::Connection>,
        sid: Option<Sid>,
        dirty: bool,
        scheduled: Option<Instant>,
    },
}

#[derive(Debug)]
struct Conn {
    peer: Option<SocketAddr>,
    kind: ConnKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Session(Sid),
    Conn(ConnId),
}

/// The Engine.IO server: many sessions over many connections.
///
/// Inputs: [`accept`](Self::accept) a TCP connection then
/// [`handle_input`](Self::handle_input)/[`handle_eof`](Self::handle_eof)
/// its bytes, or [`handle_request`](Self::handle_request) and
/// [`handle_upgrade`](Self::handle_upgrade) from an embedding HTTP server;
/// and [`handle_timeout`](Self::handle_timeout). Outputs:
/// [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
/// [`poll_timeout`](Self::poll_timeout). After any input or command, drain
/// `poll_transmit`, then `poll_event`, then read `poll_timeout`.
///
/// ```
/// use std::time::Instant;
/// use wsio::{engineio::{Config, Event, Server, Transmit}, entropy::SeededEntropy};
///
/// let mut server = Server::new(Config::default(), Box::new(SeededEntropy::new(1)), Instant::now());
/// let now = Instant::now();
/// let conn = server.accept(now, None);
/// server.handle_input(now, conn, b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
/// let Some(Transmit::Data { data, .. }) = server.poll_transmit() else { panic!() };
/// assert!(data.starts_with(b"HTTP/1.1 200 OK\r\n"));
/// assert!(matches!(server.poll_event(), Some(Event::Open { .. })));
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
    /// The latest time given by any input, for work deferred to
    /// `poll_transmit` (which is not given the time).
    now: Instant,
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
    /// A server with `config`, drawing session ids from `entropy`; `now`
    /// starts its clock (the machine never reads one itself).
    pub fn new(config: Config, entropy: BoxEntropy, now: Instant) -> Self {
        Server {
            resume: Vec::new(),
            polls: IdMap::default(),
            now,
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
                Some(ConnKind::Ws { ws, .. }) => {
                    ws.buffered_amount() == 0 && ws.state() == ws::State::Open
                }
                _ => false,
            },
            None => false,
        }
    }

    // ----- inputs -------------------------------------------------------

    /// Registers a new TCP connection; its bytes go to
    /// [`handle_input`](Self::handle_input).
    pub fn accept(&mut self, _now: Instant, peer: Option<SocketAddr>) -> ConnId {
        let id = self.new_conn_id();
        self.conns.insert(
            id,
            Conn {
                peer,
                kind: ConnKind::Http(HttpConn {
                    rbuf: BytesMut::new(),
                    parser: HeadParser::new(self.config.head_limits),
                    state: HttpState::Head,
                }),
            },
        );
        id
    }

    fn new_conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// Feeds bytes read from a connection. Unknown connections are ignored.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.tick(now);
        self.input(now, conn, bytes);
        self.resume_http(now);
    }

    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        match self.conns.get_mut(&conn).map(|c| &mut c.kind) {
            Some(ConnKind::Http(h)) => {
                h.rbuf.extend_from_slice(bytes);
                self.process_http(now, conn);
            }
            Some(ConnKind::Ws { ws, .. }) => {
                ws.handle_input(now, bytes);
                self.after_ws(now, conn);
            }
            Some(ConnKind::Embedded { .. }) | None => {}
        }
    }

    /// The peer closed a connection.
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        self.tick(now);
        match self.conns.get_mut(&conn).map(|c| &mut c.kind) {
            Some(ConnKind::Ws { ws, .. }) => {
                ws.handle_eof(now);
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
        self.tick(now);
        let id = self.new_conn_id();
        let head = Box::new(head);
        self.conns.insert(
            id,
            Conn {
                peer,
                kind: ConnKind::Embedded { head: head.clone() },
            },
        );
        self.on_request(now, id, head, body);
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
        self.tick(now);
        let id = self.new_conn_id();
        match self.check_upgrade(&head) {
            Ok(checked) => {
                let res = self.upgrade_response(&checked);
                self.conns.insert(
                    id,
                    Conn {
                        peer,
                        kind: ConnKind::Ws {
                            ws: Box::new(ws::Connection::server_upgraded(self.ws_config)),
                            sid: None,
                            dirty: false,
                            scheduled: None,
                        },
                    },
                );
                self.start_ws_transport(now, id, checked);
                Ok((id, res))
            }
            Err(refusal) => Err(refusal),
        }
    }

    /// Runs every timer that is due. Cheap; early or repeated calls do
    /// nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
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
                Target::Conn(conn) => {
                    let Some(Conn {
                        kind: ConnKind::Ws { ws, scheduled, .. },
                        ..
                    }) = self.conns.get_mut(&conn)
                    else {
                        continue;
                    };
                    if *scheduled != Some(at) {
                        continue;
                    }
                    *scheduled = None;
                    ws.handle_timeout(now);
                    self.after_ws(now, conn);
                }
            }
        }
        self.resume_http(now);
    }

    // ----- outputs ------------------------------------------------------

    /// The next bytes to write, response to give, or connection to close.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmits.is_empty() {
            self.flush_dirty();
            self.resume_http(self.now);
        }
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
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
        self.queue_all(sid, Packets::Text(text))
    }

    /// Sends a packet encoded once for many sessions.
    pub fn send_shared(&mut self, sid: Sid, packet: &SharedPacket) -> Result<(), UsageError> {
        self.queue_all(sid, Packets::Shared(std::slice::from_ref(packet)))
    }

    /// Sends several message packets, all or none (an upper layer's packet
    /// and its attachments).
    pub fn send_all(&mut self, sid: Sid, packets: &[Packet]) -> Result<(), UsageError> {
        if packets
            .iter()
            .any(|p| matches!(p.data, Data::Binary(_)) && p.kind != PacketType::Message)
        {
            return Err(UsageError::BinaryNotMessage);
        }
        self.queue_all(sid, Packets::Plain(packets))
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
        self.queue_all(sid, Packets::Plain(std::slice::from_ref(&packet)))
    }

    /// Closes a session: queued packets go out first, then the close
    /// (`forced close`).
    pub fn close(&mut self, now: Instant, sid: Sid) -> Result<(), UsageError> {
        self.tick(now);
        let s = self
            .sessions
            .get_mut(&sid)
            .filter(|s| s.closing.is_none())
            .ok_or(UsageError::UnknownSession(sid))?;
        match &mut s.transport {
            Transport::WebSocket(_) => self.end_session(now, sid, CloseReason::ForcedClose),
            Transport::Polling { get } => {
                if s.buffer.is_empty() {
                    if let Some(conn) = get.take() {
                        let body = encode_payload(&[Packet::new(PacketType::Close)]);
                        self.reply(now, conn, polling_head(), body);
                        self.end_session(now, sid, CloseReason::ForcedClose);
                        return Ok(());
                    }
                }
                s.closing = Some(Closing {
                    deadline: now + self.config.close_timeout,
                    drained: s.buffer.is_empty(),
                });
                self.schedule(Target::Session(sid));
            }
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
        self.tick(now);
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

    // ----- HTTP ---------------------------------------------------------

    fn resume_http(&mut self, now: Instant) {
        while let Some(conn) = self.resume.pop() {
            self.process_http(now, conn);
        }
    }

    fn process_http(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(Conn {
                kind: ConnKind::Http(h),
                ..
            }) = self.conns.get_mut(&conn)
            else {
                return;
            };
            match &mut h.state {
                HttpState::Busy { .. } => return,
                HttpState::Head => match h.parser.parse_request(&h.rbuf) {
                    Ok(None) => return,
                    Err(e) => return self.http_error(conn, e, None),
                    Ok(Some((head, used))) => {
                        h.rbuf.advance(used);
                        let head = Box::new(head);
                        if self.is_engine_path(&head)
                            && head.headers.has_token("upgrade", "websocket")
                        {
                            return self.on_raw_upgrade(now, conn, head);
                        }
                        let framing = match Framing::of_request(&head.headers) {
                            Ok(f) => f,
                            Err(e) => return self.http_error(conn, e, Some(&head)),
                        };
                        let reader = match BodyReader::new(framing, self.config.max_payload) {
                            Ok(r) => r,
                            Err(e) => return self.http_error(conn, e, Some(&head)),
                        };
                        let Some(Conn {
                            kind: ConnKind::Http(h),
                            ..
                        }) = self.conns.get_mut(&conn)
                        else {
                            return;
                        };
                        h.state = HttpState::Body { head, reader };
                    }
                },
                HttpState::Body { reader, head } => match reader.read(&mut h.rbuf) {
                    Ok(None) => return,
                    Err(e) => {
                        let head = head.clone();
                        return self.http_error(conn, e, Some(&head));
                    }
                    Ok(Some(body)) => {
                        let HttpState::Body { head, .. } =
                            std::mem::replace(&mut h.state, HttpState::Head)
                        else {
                            return;
                        };
                        h.state = HttpState::Busy { head: head.clone() };
                        if h.rbuf.is_empty() {
                            h.rbuf = BytesMut::new();
                        }
                        self.on_request(now, conn, head, body);
                    }
                },
            }
        }
    }

    /// A prefix match on the target, as the official server does, less the
    /// paths left to the application.
    fn is_engine_path(&self, head: &RequestHead) -> bool {
        head.target.starts_with(&self.config.path)
            && !self.config.bypass.iter().any(|p| p == head.path())
    }

    /// A head or body the HTTP layer refuses: answer and close (the rest
    /// of an unread body cannot be skipped safely).
    fn http_error(&mut self, conn: ConnId, e: HttpError, head: Option<&RequestHead>) {
        let mut res = ResponseHead::new(e.status());
        let body = if let HttpError::BodyTooLarge(_) = e {
            // The official server answers an oversized POST with an empty
            // 413 that carries the CORS headers.
            if let (Some(cors), Some(head)) =
                (&self.config.cors, head.filter(|h| self.is_engine_path(h)))
            {
                cors.apply(head, &mut res);
            }
            Bytes::new()
        } else {
            res.headers.push("Content-Type", "text/plain");
            Bytes::from(format!("{e}\n"))
        };
        self.write_raw(conn, res, body, true);
    }

    fn on_request(&mut self, now: Instant, conn: ConnId, head: Box<RequestHead>, body: Bytes) {
        if !self.is_engine_path(&head) {
            self.events.push_back(Event::Request { conn, head, body });
            return;
        }
        if head.method == Method::Options {
            if let Some(cors) = &self.config.cors {
                let res = cors.preflight(&head);
                return self.write_response(now, conn, res, Bytes::new());
            }
        }
        let query = head.query();
        let transport = match self.check_transport(query.get("transport")) {
            Ok(t) => t,
            Err(code) => return self.reply_error(now, conn, code, None),
        };
        if has_invalid_header_char(head.headers.get("origin")) {
            return self.reply_error(now, conn, ErrorCode::BadRequest, None);
        }
        if let Some(sid) = query.get("sid") {
            let Some(sid) = Sid::parse(sid).filter(|s| self.sessions.contains_key(s)) else {
                return self.reply_error(now, conn, ErrorCode::UnknownSid, None);
            };
            if self.sessions.get(&sid).map(|s| s.transport.kind()) != Some(transport) {
                return self.reply_error(now, conn, ErrorCode::BadRequest, None);
            }
            return match head.method {
                Method::Get => self.on_poll(now, sid, conn),
                Method::Post => self.on_data(now, sid, conn, &head, body),
                _ => self.write_response(now, conn, ResponseHead::new(500), Bytes::new()),
            };
        }
        if head.method != Method::Get {
            return self.reply_error(now, conn, ErrorCode::BadHandshakeMethod, None);
        }
        if transport == TransportKind::WebSocket {
            return self.reply_error(now, conn, ErrorCode::BadRequest, None);
        }
        if let Some(Err(message)) = self.allow_request.as_ref().map(|f| f(&head)) {
            return self.reply_error(now, conn, ErrorCode::Forbidden, Some(message));
        }
        if query.get("EIO") != Some("4") {
            return self.reply_error(now, conn, ErrorCode::UnsupportedProtocolVersion, None);
        }
        if self.sessions.len() >= self.config.max_sessions {
            let res = ResponseHead::new(503).with_header("Content-Type", "application/json");
            return self.write_response(
                now,
                conn,
                res,
                Bytes::from_static(br#"{"code":3,"message":"Too many sessions"}"#),
            );
        }
        let peer = self.conns.get(&conn).and_then(|c| c.peer);
        let sid = self.open_session(now, Transport::Polling { get: None }, *head, peer);
        self.on_poll(now, sid, conn);
    }

    fn check_transport(&self, t: Option<&str>) -> Result<TransportKind, ErrorCode> {
        match t {
            Some("polling") if self.config.polling => Ok(TransportKind::Polling),
            Some("websocket") if self.config.websocket => Ok(TransportKind::WebSocket),
            _ => Err(ErrorCode::UnknownTransport),
        }
    }

    fn reply_error(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: ErrorCode,
        message: Option<String>,
    ) {
        let message = message.unwrap_or_else(|| code.message().to_owned());
        let body = serde_json_lite(code as u8, &message);
        let res = ResponseHead::new(code.status()).with_header("Content-Type", "application/json");
        self.write_response(now, conn, res, Bytes::from(body));
    }

    /// Answers the request on `conn` with CORS headers (engine responses).
    fn reply(&mut self, now: Instant, conn: ConnId, mut res: ResponseHead, body: Bytes) {
        if let Some(cors) = &self.config.cors {
            let head = match self.conns.get(&conn).map(|c| &c.kind) {
                Some(ConnKind::Http(HttpConn {
                    state: HttpState::Busy { head },
                    ..
                })) => Some(head),
                Some(ConnKind::Embedded { head }) => Some(head),
                _ => None,
            };
            if let Some(head) = head {
                cors.apply(head, &mut res);
            }
        }
        self.write_response(now, conn, res, body);
    }

    fn write_response(&mut self, _now: Instant, conn: ConnId, mut res: ResponseHead, body: Bytes) {
        self.polls.remove(&conn);
        if let Some(cors) = &self.config.cors {
            // Engine errors and preflights carry CORS headers too, as the
            // middleware sets them before the engine answers.
            if res.headers.get("access-control-allow-origin").is_none() && res.status != 204 {
                if let Some(head) = self.request_head(conn) {
                    let head = head.clone();
                    cors.apply(&head, &mut res);
                }
            }
        }
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(ConnKind::Embedded { .. }) => {
                self.conns.remove(&conn);
                self.transmits.push_back(Transmit::Response {
                    conn,
                    head: res,
                    body,
                });
            }
            Some(ConnKind::Http(h)) => {
                let close = match &h.state {
                    HttpState::Busy { head } => !keep_alive(head),
                    _ => true,
                };
                self.write_raw(conn, res, body, close);
                if !close {
                    if let Some(Conn {
                        kind: ConnKind::Http(h),
                        ..
                    }) = self.conns.get_mut(&conn)
                    {
                        h.state = HttpState::Head;
                        // A pipelined request may be waiting; read it once
                        // this turn ends (not here: no recursion per request).
                        if !h.rbuf.is_empty() {
                            self.resume.push(conn);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn request_head(&self, conn: ConnId) -> Option<&RequestHead> {
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(ConnKind::Http(HttpConn {
                state: HttpState::Busy { head } | HttpState::Body { head, .. },
                ..
            })) => Some(head),
            Some(ConnKind::Embedded { head }) => Some(head),
            _ => None,
        }
    }

    /// Serialises a response on a raw connection.
    fn write_raw(&mut self, conn: ConnId, mut res: ResponseHead, body: Bytes, close: bool) {
        if res.headers.get("content-length").is_none() && res.status != 204 && res.status != 304 {
            res.headers.push("Content-Length", body.len().to_string());
        }
        if close {
            res.headers.push("Connection", "close");
        }
        let mut out = BytesMut::with_capacity(256 + body.len().min(16 * 1024));
        res.encode(&mut out);
        if body.len() <= 16 * 1024 {
            out.extend_from_slice(&body);
            self.transmits.push_back(Transmit::Data {
                conn,
                data: out.freeze(),
            });
        } else {
            self.transmits.push_back(Transmit::Data {
                conn,
                data: out.freeze(),
            });
            self.transmits
                .push_back(Transmit::Data { conn, data: body });
        }
        if close {
            self.conns.remove(&conn);
            self.transmits.push_back(Transmit::Close { conn });
        }
    }

    /// A connection went away: a held poll or a probe transport takes its
    /// session's failure with it.
    fn drop_conn(&mut self, now: Instant, conn: ConnId) {
        if self.conns.remove(&conn).is_none() {
            return;
        }
        if let Some(sid) = self.polls.remove(&conn) {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.transport = Transport::Polling { get: None };
            }
            self.end_session(now, sid, CloseReason::TransportError);
        }
        self.transmits.push_back(Transmit::Close { conn });
    }

    // ----- sessions -----------------------------------------------------

    fn open_session(
        &mut self,
        now: Instant,
        transport: Transport,
        head: RequestHead,
        peer: Option<SocketAddr>,
    ) -> Sid {
        let mut sid = Sid::generate(&mut *self.entropy);
        while self.sessions.contains_key(&sid) {
            sid = Sid::generate(&mut *self.entropy);
        }
        let kind = transport.kind();
        let upgrades = if kind == TransportKind::Polling
            && self.config.allow_upgrades
            && self.config.websocket
        {
            r#"["websocket"]"#
        } else {
            "[]"
        };
        let open = format!(
            r#"{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload
        );
        let mut session = Session::new(transport, now + self.config.ping_interval);
        session
            .buffer
            .push(Packet::with_text(PacketType::Open, open));
        self.sessions.insert(sid, session);
        self.schedule(Target::Session(sid));
        self.events.push_back(Event::Open {
            sid,
            handshake: Box::new(super::Handshake {
                head,
                peer,
                transport: kind,
            }),
        });
        sid
    }

    fn on_poll(&mut self, now: Instant, sid: Sid, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Transport::Polling { get } = &mut s.transport else {
            return;
        };
        if get.is_some() {
            // Two polls at once: the official server fails the session
            // ("overlap from client"), then refuses the second.
            self.end_session(now, sid, CloseReason::TransportError);
            return self.write_response(now, conn, ResponseHead::new(400), Bytes::new());
        }
        *get = Some(conn);
        self.polls.insert(conn, sid);
        let probed = s.upgrade.as_ref().is_some_and(|u| u.noop_at.is_some());
        if probed && s.buffer.is_empty() {
            s.buffer.push(Packet::new(PacketType::Noop));
        }
        if !s.buffer.is_empty() || s.closing.is_some() {
            self.flush_polling(now, sid);
        }
    }

    fn on_data(&mut self, now: Instant, sid: Sid, conn: ConnId, head: &RequestHead, body: Bytes) {
        if head.headers.get("content-type") == Some(b"application/octet-stream") {
            // Binary payloads are an Engine.IO v3 feature ("invalid content").
            self.end_session(now, sid, CloseReason::TransportError);
            return self.write_response(now, conn, ResponseHead::new(400), Bytes::new());
        }
        let (packets, error) = decode_payload(body);
        for p in packets {
            if !self.sessions.contains_key(&sid) {
                break;
            }
            self.on_packet(now, sid, p);
        }
        if error.is_some() && self.sessions.contains_key(&sid) {
            self.end_session(now, sid, CloseReason::ParseError);
        }
        let res = ResponseHead::new(200)
            .with_header("Content-Type", "text/html")
            .with_header("cache-control", "no-store");
        self.reply(now, conn, res, Bytes::from_static(b"ok"));
    }

    /// A packet on the session's current transport.
    fn on_packet(&mut self, now: Instant, sid: Sid, p: Packet) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if p.kind != PacketType::Pong && s.pong_deadline.is_some() && !s.pong_extended {
            // A busy client's pong may queue behind its data: the official
            // server extends the wait once per ping.
            s.pong_extended = true;
            s.pong_deadline = Some(now + self.config.ping_timeout);
            self.schedule(Target::Session(sid));
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        match p.kind {
            PacketType::Pong => {
                s.pong_deadline = None;
                s.ping_at = Some(now + self.config.ping_interval);
                self.schedule(Target::Session(sid));
            }
            // Clients never ping in v4 ("invalid heartbeat direction").
            PacketType::Ping => self.end_session(now, sid, CloseReason::TransportError),
            PacketType::Message => self.events.push_back(Event::Message { sid, data: p.data }),
            // Only the polling transport acts on a close packet; over
            // WebSocket the official server ignores it and waits for the
            // socket itself to close.
            PacketType::Close if s.transport.kind() == TransportKind::Polling => {
                self.end_session(now, sid, CloseReason::TransportClose)
            }
            PacketType::Close | PacketType::Open | PacketType::Upgrade | PacketType::Noop => {}
        }
    }

    /// A packet on the WebSocket being probed for an upgrade.
    fn on_probe_packet(&mut self, now: Instant, sid: Sid, conn: ConnId, p: Packet) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let is_probe = matches!(&p.data, Data::Text(t) if t.as_str() == "probe");
        match p.kind {
            PacketType::Ping if is_probe => {
                if let Some(u) = s.upgrade.as_mut() {
                    u.noop_at = Some(now + NOOP_INTERVAL);
                }
                let release = s.pending_get().is_some();
                if release && s.buffer.is_empty() {
                    s.buffer.push(Packet::new(PacketType::Noop));
                }
                self.ws_send(conn, &Packet::with_text(PacketType::Pong, "probe"));
                if release {
                    self.flush_polling(now, sid);
                }
                self.schedule(Target::Session(sid));
            }
            PacketType::Upgrade => {
                s.upgrade = None;
                let old = std::mem::replace(&mut s.transport, Transport::WebSocket(conn));
                let buffered = std::mem::take(&mut s.buffer);
                let closing = s.closing.take();
                if let Transport::Polling { get: Some(get) } = old {
                    // The discarded transport closes its pending poll.
                    let body = encode_payload(&[Packet::new(PacketType::Close)]);
                    self.reply(now, get, polling_head(), body);
                }
                for p in &buffered {
                    self.ws_send(conn, p);
                }
                self.events.push_back(Event::Upgrade { sid });
                if closing.is_some() {
                    self.end_session(now, sid, CloseReason::ForcedClose);
                } else {
                    self.schedule(Target::Session(sid));
                }
            }
            _ => self.cancel_upgrade(now, sid),
        }
    }

    fn cancel_upgrade(&mut self, now: Instant, sid: Sid) {
        let Some(u) = self.sessions.get_mut(&sid).and_then(|s| s.upgrade.take()) else {
            return;
        };
        self.close_ws(now, u.conn);
        self.schedule(Target::Session(sid));
    }

    fn session_timeout(&mut self, now: Instant, sid: Sid) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.pong_deadline.is_some_and(|d| d <= now) {
            return self.end_session(now, sid, CloseReason::PingTimeout);
        }
        if s.closing.is_some_and(|c| c.deadline <= now) {
            return self.end_session(now, sid, CloseReason::ForcedClose);
        }
        if s.upgrade.as_ref().is_some_and(|u| u.deadline <= now) {
            self.cancel_upgrade(now, sid);
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if let Some(u) = s.upgrade.as_mut() {
            if u.noop_at.is_some_and(|d| d <= now) {
                u.noop_at = Some(now + NOOP_INTERVAL);
                if s.pending_get().is_some() {
                    if s.buffer.is_empty() {
                        s.buffer.push(Packet::new(PacketType::Noop));
                    }
                    self.mark_dirty(Target::Session(sid));
                }
            }
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.ping_at.is_some_and(|d| d <= now) {
            s.ping_at = None;
            s.pong_deadline = Some(now + self.config.ping_timeout);
            s.pong_extended = false;
            let _ = self.queue_all(sid, Packets::Plain(&[Packet::new(PacketType::Ping)]));
        }
    }

    /// Queues packets on the session's transport, all or none.
    fn queue_all(&mut self, sid: Sid, packets: Packets<'_>) -> Result<(), UsageError> {
        let s = self
            .sessions
            .get_mut(&sid)
            .filter(|s| s.closing.is_none())
            .ok_or(UsageError::UnknownSession(sid))?;
        match s.transport {
            Transport::Polling { get } => {
                if s.buffer.len() + packets.len() > self.config.max_buffered_packets {
                    return Err(UsageError::BufferFull);
                }
                let separator = |p: &Packet| matches!(&p.data, Data::Text(t) if t.as_bytes().contains(&super::SEPARATOR));
                let has_separator = match packets {
                    Packets::Plain(p) => p.iter().any(separator),
                    Packets::Shared(p) => p.iter().any(|p| separator(&p.packet)),
                    Packets::Text(t) => t.as_bytes().contains(&super::SEPARATOR),
                };
                if has_separator {
                    return Err(UsageError::SeparatorInText);
                }
                match packets {
                    Packets::Plain(p) => s.buffer.extend_from_slice(p),
                    Packets::Shared(p) => s.buffer.extend(p.iter().map(|p| p.packet.clone())),
                    Packets::Text(t) => s.buffer.push(Packet::message(t.to_owned())),
                }
                if get.is_some() {
                    self.mark_dirty(Target::Session(sid));
                }
                Ok(())
            }
            Transport::WebSocket(conn) => self.ws_send_all(conn, packets),
        }
    }

    /// Writes packets as frames, one each.
    fn ws_send_all(&mut self, conn: ConnId, packets: Packets<'_>) -> Result<(), UsageError> {
        let Some(Conn {
            kind: ConnKind::Ws { ws, dirty, .. },
            ..
        }) = self.conns.get_mut(&conn)
        else {
            return Err(UsageError::BufferFull);
        };
        // The entry is at hand: no second lookup through `mark_dirty`.
        flag_dirty(dirty, &mut self.dirty, Target::Conn(conn));
        let sent = match packets {
            Packets::Shared([one]) => ws.send_encoded(&one.frame),
            Packets::Shared(many) => ws.send_encoded_batch(many.iter().map(|p| &p.frame)),
            Packets::Plain([one]) => match &one.data {
                Data::Binary(b) => ws.send(Message::Binary(b.clone())),
                Data::Text(t) => {
                    ws.send_with_prefix(DataKind::Text, &[one.kind.as_char()], t.as_bytes().clone())
                }
            },
            Packets::Plain(many) => ws.send_batch(&many.iter().map(ws_message).collect::<Vec<_>>()),
            Packets::Text(t) => ws.send_slices(
                DataKind::Text,
                &[PacketType::Message.as_char()],
                t.as_bytes(),
            ),
        };
        sent.map_err(|_| UsageError::BufferFull)
    }

    fn ws_send(&mut self, conn: ConnId, packet: &Packet) {
        // Only the server's own packets come here (probe answer, open
        // packet, packets held during an upgrade): a full queue means the
        // peer has stopped reading, and the heartbeat will end it.
        let _ = self.ws_send_all(conn, Packets::Plain(std::slice::from_ref(packet)));
    }

    /// Answers the pending GET with everything buffered (or, once a
    /// closing session is drained, with a noop and the close packet).
    fn flush_polling(&mut self, now: Instant, sid: Sid) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Transport::Polling { get } = &mut s.transport else {
            return;
        };
        let Some(conn) = *get else { return };
        let (packets, end) = match &mut s.closing {
            Some(c) if c.drained => (
                vec![
                    Packet::new(PacketType::Noop),
                    Packet::new(PacketType::Close),
                ],
                true,
            ),
            closing => {
                if s.buffer.is_empty() {
                    return;
                }
                if let Some(c) = closing {
                    c.drained = true;
                }
                (std::mem::take(&mut s.buffer), false)
            }
        };
        *get = None;
        self.reply(now, conn, polling_head(), encode_payload(&packets));
        if end {
            self.end_session(now, sid, CloseReason::ForcedClose);
        }
    }

    /// Ends a session: its transports close, the application hears why.
    fn end_session(&mut self, now: Instant, sid: Sid, reason: CloseReason) {
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        match s.transport {
            Transport::Polling { get: Some(get) } => {
                // A client's own close releases its poll with a noop; any
                // other end closes it with the close packet.
                let last = if reason == CloseReason::TransportClose {
                    PacketType::Noop
                } else {
                    PacketType::Close
                };
                let body = encode_payload(&[Packet::new(last)]);
                self.reply(now, get, polling_head(), body);
            }
            Transport::Polling { get: None } => {}
            Transport::WebSocket(conn) => self.close_ws(now, conn),
        }
        if let Some(u) = s.upgrade {
            self.close_ws(now, u.conn);
        }
        self.events.push_back(Event::Close { sid, reason });
    }

    // ----- WebSocket ----------------------------------------------------

    fn on_raw_upgrade(&mut self, now: Instant, conn: ConnId, head: Box<RequestHead>) {
        match self.check_upgrade(&head) {
            Err((res, body)) => self.write_raw(conn, res, body, true),
            Ok(checked) => {
                let mut out = BytesMut::new();
                self.upgrade_response(&checked).encode(&mut out);
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                let ConnKind::Http(h) = &mut c.kind else {
                    return;
                };
                let leftover = std::mem::take(&mut h.rbuf);
                self.transmits.push_back(Transmit::Data {
                    conn,
                    data: out.freeze(),
                });
                c.kind = ConnKind::Ws {
                    ws: Box::new(ws::Connection::server_upgraded(self.ws_config)),
                    sid: None,
                    dirty: false,
                    scheduled: None,
                };
                self.start_ws_transport(now, conn, checked);
                if !leftover.is_empty() {
                    self.input(now, conn, &leftover);
                }
            }
        }
    }

    /// The engine's checks on a WebSocket request, then the WebSocket
    /// handshake's own. A refusal is the reply to send.
    fn check_upgrade(&self, head: &RequestHead) -> Result<CheckedUpgrade, (ResponseHead, Bytes)> {
        let query = head.query();
        let abort = |code: ErrorCode, message: Option<String>| {
            // The official server answers every refused upgrade 400 with a
            // text body, not JSON.
            let message = message.unwrap_or_else(|| code.message().to_owned());
            let res = ResponseHead::new(400).with_header("Content-type", "text/html");
            (res, Bytes::from(message))
        };
        if !self.is_engine_path(head) {
            return Err((ResponseHead::new(404), Bytes::new()));
        }
        let transport = self
            .check_transport(query.get("transport"))
            .map_err(|c| abort(c, None))?;
        if has_invalid_header_char(head.headers.get("origin")) {
            return Err(abort(ErrorCode::BadRequest, None));
        }
        let sid = match query.get("sid") {
            Some(s) => Some(
                Sid::parse(s)
                    .filter(|s| self.sessions.contains_key(s))
                    .ok_or_else(|| abort(ErrorCode::UnknownSid, None))?,
            ),
            None => {
                if head.method != Method::Get {
                    return Err(abort(ErrorCode::BadHandshakeMethod, None));
                }
                if let Some(Err(m)) = self.allow_request.as_ref().map(|f| f(head)) {
                    return Err(abort(ErrorCode::Forbidden, Some(m)));
                }
                if query.get("EIO") != Some("4") {
                    return Err(abort(ErrorCode::UnsupportedProtocolVersion, None));
                }
                None
            }
        };
        if transport != TransportKind::WebSocket {
            // Polling does not take upgraded connections.
            return Err(abort(ErrorCode::BadRequest, None));
        }
        if sid.is_none() && self.sessions.len() >= self.config.max_sessions {
            return Err((
                ResponseHead::new(503),
                Bytes::from_static(b"Too many sessions"),
            ));
        }
        let request = ws::handshake::validate_request(head.clone()).map_err(|e| {
            let (res, body) = e.response();
            (res, Bytes::from_static(body.as_bytes()))
        })?;
        Ok(CheckedUpgrade { request, sid })
    }

    fn upgrade_response(&self, checked: &CheckedUpgrade) -> ResponseHead {
        let mut res = checked.request.response(&ws::Accept::new());
        if let Some(cors) = &self.config.cors {
            cors.apply(&checked.request.head, &mut res);
        }
        res
    }

    fn start_ws_transport(&mut self, now: Instant, conn: ConnId, checked: CheckedUpgrade) {
        match checked.sid {
            None => {
                let peer = self.conns.get(&conn).and_then(|c| c.peer);
                let sid =
                    self.open_session(now, Transport::WebSocket(conn), checked.request.head, peer);
                if let Some(Conn {
                    kind: ConnKind::Ws { sid: bound, .. },
                    ..
                }) = self.conns.get_mut(&conn)
                {
                    *bound = Some(sid);
                }
                // The open packet waits in the buffer: send it as a frame.
                if let Some(s) = self.sessions.get_mut(&sid) {
                    let buffered = std::mem::take(&mut s.buffer);
                    for p in &buffered {
                        self.ws_send(conn, p);
                    }
                }
            }
            Some(sid) => {
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return self.close_ws(now, conn);
                };
                // Already upgraded, already upgrading, or closing: the
                // official server closes the new WebSocket at once.
                if s.upgrade.is_some()
                    || s.closing.is_some()
                    || s.transport.kind() == TransportKind::WebSocket
                    || !self.config.allow_upgrades
                {
                    return self.close_ws(now, conn);
                }
                s.upgrade = Some(Upgrade {
                    conn,
                    deadline: now + self.config.upgrade_timeout,
                    noop_at: None,
                });
                if let Some(Conn {
                    kind: ConnKind::Ws { sid: bound, .. },
                    ..
                }) = self.conns.get_mut(&conn)
                {
                    *bound = Some(sid);
                }
                self.schedule(Target::Session(sid));
            }
        }
    }

    fn close_ws(&mut self, now: Instant, conn: ConnId) {
        if let Some(Conn {
            kind: ConnKind::Ws { ws, sid, .. },
            ..
        }) = self.conns.get_mut(&conn)
        {
            *sid = None;
            // The official server's close frame has no status code; if the
            // WebSocket is already closing, that handshake finishes it.
            let _ = ws.close_with(now, None);
            self.after_ws(now, conn);
        }
    }

    /// Handles what a WebSocket produced after an input or timeout.
    fn after_ws(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(Conn {
                kind: ConnKind::Ws { ws, sid, .. },
                ..
            }) = self.conns.get_mut(&conn)
            else {
                return;
            };
            let Some(ev) = ws.poll_event() else { break };
            let bound = *sid;
            let Some(sid) = bound else { continue };
            let Some(s) = self.sessions.get(&sid) else {
                continue;
            };
            let active = matches!(s.transport, Transport::WebSocket(c) if c == conn);
            let probe = s.upgrade.as_ref().is_some_and(|u| u.conn == conn);
            match ev {
                ws::Event::Message(m) => {
                    let packet = match m {
                        Message::Binary(b) => Ok(Packet::decode_binary(b)),
                        Message::Text(t) => Packet::decode_text(t),
                    };
                    match (packet, active, probe) {
                        (Ok(p), true, _) => self.on_packet(now, sid, p),
                        (Ok(p), false, true) => self.on_probe_packet(now, sid, conn, p),
                        (Err(_), true, _) => self.end_session(now, sid, CloseReason::ParseError),
                        (Err(_), false, true) => self.cancel_upgrade(now, sid),
                        _ => {}
                    }
                }
                ws::Event::Closed(c) => {
                    if active {
                        let reason = if c.error.is_some() {
                            CloseReason::TransportError
                        } else {
                            CloseReason::TransportClose
                        };
                        self.end_session(now, sid, reason);
                    } else if probe {
                        if let Some(s) = self.sessions.get_mut(&sid) {
                            s.upgrade = None;
                        }
                        self.schedule(Target::Session(sid));
                    }
                }
                _ => {}
            }
        }
        self.mark_dirty(Target::Conn(conn));
    }

    // ----- batching and timers ------------------------------------------

    fn mark_dirty(&mut self, target: Target) {
        let flag = match target {
            Target::Session(sid) => self.sessions.get_mut(&sid).map(|s| &mut s.dirty),
            Target::Conn(c) => match self.conns.get_mut(&c).map(|c| &mut c.kind) {
                Some(ConnKind::Ws { dirty, .. }) => Some(dirty),
                _ => None,
            },
        };
        if let Some(flag) = flag {
            flag_dirty(flag, &mut self.dirty, target);
        }
    }

    fn flush_dirty(&mut self) {
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
                            self.flush_polling(self.now, sid);
                        }
                    }
                    Target::Conn(conn) => self.drain_ws(conn),
                }
            }
            self.dirty_spare = targets;
        }
    }

    /// Moves a WebSocket's output to the transmit queue and re-arms its
    /// timer.
    fn drain_ws(&mut self, conn: ConnId) {
        let Some(Conn {
            kind: ConnKind::Ws { ws, dirty, .. },
            ..
        }) = self.conns.get_mut(&conn)
        else {
            return;
        };
        *dirty = false;
        let mut closed = false;
        while let Some(t) = ws.poll_transmit() {
            match t {
                ws::Transmit::Data(data) => self.transmits.push_back(Transmit::Data { conn, data }),
                ws::Transmit::Close => {
                    closed = true;
                    self.transmits.push_back(Transmit::Close { conn });
                }
            }
        }
        if closed {
            self.conns.remove(&conn);
        } else {
            self.schedule(Target::Conn(conn));
        }
    }

    fn schedule(&mut self, target: Target) {
        let (next, scheduled) = match target {
            Target::Session(sid) => match self.sessions.get_mut(&sid) {
                Some(s) => (s.next_deadline(), &mut s.scheduled),
                None => return,
            },
            Target::Conn(c) => match self.conns.get_mut(&c).map(|c| &mut c.kind) {
                Some(ConnKind::Ws { ws, scheduled, .. }) => (ws.poll_timeout(), scheduled),
                _ => return,
            },
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

#[derive(Clone, Copy)]
enum Packets<'a> {
    Plain(&'a [Packet]),
    Shared(&'a [SharedPacket]),
    /// One message packet, its text borrowed.
    Text(&'a str),
}

impl Packets<'_> {
    fn len(&self) -> usize {
        match self {
            Packets::Plain(p) => p.len(),
            Packets::Shared(p) => p.len(),
            Packets::Text(_) => 1,
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

struct CheckedUpgrade {
    request: ws::UpgradeRequest,
    sid: Option<Sid>,
}

/// The head of a polling response.
fn polling_head() -> ResponseHead {
    ResponseHead::new(200)
        .with_header("Content-Type", "text/plain; charset=UTF-8")
        .with_header("cache-control", "no-store")
}

fn keep_alive(head: &RequestHead) -> bool {
    if head.headers.has_token("connection", "close") {
        return false;
    }
    head.version >= 1 || head.headers.has_token("connection", "keep-alive")
}

/// Node refuses origins with control characters (its `checkInvalidHeaderChar`).
fn has_invalid_header_char(v: Option<&[u8]>) -> bool {
    v.is_some_and(|v| v.iter().any(|&c| (c < 32 && c != b'\t') || c == 127))
}

/// `{"code":N,"message":"..."}` with the message escaped as JSON.
fn serde_json_lite(code: u8, message: &str) -> String {
    let mut out = format!(r#"{{"code":{code},"message":""#);
    for c in message.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    out
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
