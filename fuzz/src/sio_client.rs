//! A sans-IO `socketio::Client` (and through it `engineio::Client`) driven
//! by an arbitrary list of actions, as the server end of every connection
//! it opens: answers to its HTTP requests (any status; framed by
//! `Content-Length`, `chunked`, `Connection: close` or the end; polling
//! payloads of open packets, heartbeats, Socket.IO packets with
//! attachments, garbage), failed and dropped connections; for its
//! WebSockets, a server-side `ws::Connection` that accepts the handshake
//! and sends Engine.IO packets, cut at arbitrary points, plus raw bytes,
//! closes, EOFs and errors; time; and the application's commands (socket,
//! emit, emit_with_ack with and without timeouts, emit_volatile, ack,
//! disconnect, close, clear_send_buffer).
//!
//! Checked after every action, once the client is drained:
//!
//! * connection ids are never reused; nothing is written on a connection
//!   after the client closed it or after its failure was reported; only
//!   connections it opened are written or closed; an HTTP connection
//!   carries one request at a time;
//! * `poll_timeout()` is never before `now` after `handle_timeout(now)`;
//! * every `Ack`, `AckTimeout` or `AckLost` is for a (namespace, id) that
//!   `emit_with_ack` returned, and at most one of them comes per emit;
//! * `Connect` and `Disconnect` alternate per namespace socket, starting
//!   with `Connect`; events and acks name a socket `socket()` made.

use crate::{HashMap, HashSet, wire::TYPES};
use std::{
    ops::ControlFlow,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use wsio::{
    engineio::{
        self, ClientTransmit, ConnId, Packet as EPacket, PacketType, TransportMode, encode_payload,
    },
    entropy::SeededEntropy,
    http::{HeadParser, Limits, RequestHead, ResponseHead},
    machine::drain,
    socketio::{Client, ClientConfig, ClientEvent, ClientUsageError, NspId, Packet, Value},
    ws::{self, Accept, CloseCode, Message},
};

use crate::values::{AnyPkt, Args, NSPS, Name, Val};

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Mode {
    Polling,
    WebSocket,
    Upgrade,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct ConfigIn {
    mode: Mode,
    reconnection: bool,
    attempts: Option<u8>,
    delay_ms: u16,
    delay_max_ms: u16,
    factor: u8,
    timeout_ms: u16,
    request_timeout_ms: u16,
    send_buffer: bool,
    max_send_buffer: u8,
    max_attachments: u8,
    max_buffered_packets: u8,
}

impl ConfigIn {
    fn build(self) -> ClientConfig {
        const FACTORS: [f64; 6] = [0.0, 0.5, 1.0, 1.5, -1.0, f64::NAN];
        let ms = |n: u16| Duration::from_millis(u64::from(n));
        let mode = match self.mode {
            Mode::Polling => TransportMode::PollingOnly,
            Mode::WebSocket => TransportMode::WebSocketOnly,
            Mode::Upgrade => TransportMode::PollingThenUpgrade,
        };
        let engine = engineio::ClientConfig::new("localhost")
            .path("/socket.io/")
            .mode(mode)
            .request_timeout(ms(self.request_timeout_ms))
            .max_buffered_packets(usize::from(self.max_buffered_packets % 16) + 1);
        ClientConfig::new("localhost")
            .engine(engine)
            .reconnection(self.reconnection)
            .reconnection_attempts(self.attempts.map(|a| u32::from(a % 4)))
            .reconnection_delay(ms(self.delay_ms))
            .reconnection_delay_max(ms(self.delay_max_ms))
            .randomization_factor(FACTORS[usize::from(self.factor) % FACTORS.len()])
            .timeout(ms(self.timeout_ms))
            .send_buffer(self.send_buffer)
            .max_send_buffer(usize::from(self.max_send_buffer % 8))
            .max_attachments(usize::from(self.max_attachments % 4))
    }
}

/// The open packet's JSON.
#[derive(Arbitrary, Debug, Clone)]
pub enum OpenIn {
    Good {
        upgrades: bool,
        ping_interval: u16,
        ping_timeout: u16,
        max_payload: Option<u16>,
    },
    Raw(String),
}

impl OpenIn {
    fn json(&self) -> String {
        match self {
            OpenIn::Good {
                upgrades,
                ping_interval,
                ping_timeout,
                max_payload,
            } => {
                let mut s = format!(
                    r#"{{"sid":"s1","upgrades":{},"pingInterval":{ping_interval},"pingTimeout":{ping_timeout}"#,
                    if *upgrades { r#"["websocket"]"# } else { "[]" }
                );
                if let Some(m) = max_payload {
                    s.push_str(&format!(r#","maxPayload":{m}"#));
                }
                s.push('}');
                s
            }
            OpenIn::Raw(s) => s.clone(),
        }
    }
}

/// What the server sends: Engine.IO packets, some carrying Socket.IO ones.
#[derive(Arbitrary, Debug, Clone)]
pub enum ServerPkt {
    Open(OpenIn),
    /// A namespace's connect answer, with a sid.
    ConnectOk {
        nsp: u8,
    },
    /// An answer to the client's ack `id` (small, so it names one).
    AckFor {
        nsp: u8,
        id: u8,
        args: Args,
    },
    /// An event, with a small ack id if any.
    EventFor {
        nsp: u8,
        ack: Option<u8>,
        name: Name,
        args: Args,
    },
    Sio(AnyPkt),
    SioRaw {
        prefix: u8,
        rest: String,
    },
    Ping,
    /// `3probe`.
    ProbeOk,
    Noop,
    Close,
    Text {
        kind: u8,
        text: String,
    },
    Binary(Vec<u8>),
}

impl ServerPkt {
    fn packets(&self) -> Vec<EPacket> {
        let sio = |p: &Packet| {
            let (text, att) = p.encode();
            let mut v = vec![EPacket::message(text)];
            v.extend(att.into_iter().map(EPacket::message));
            v
        };
        match self {
            ServerPkt::Open(o) => vec![EPacket::with_text(PacketType::Open, o.json())],
            ServerPkt::ConnectOk { nsp } => sio(&Packet::Connect {
                nsp: NSPS[usize::from(*nsp) % NSPS.len()].to_owned().into(),
                data: Some(Value::object([("sid", Value::from("sock"))])),
            }),
            ServerPkt::AckFor { nsp, id, args } => sio(&Packet::Ack {
                nsp: NSPS[usize::from(*nsp) % NSPS.len()].to_owned().into(),
                id: u64::from(*id % 8),
                args: args.0.clone(),
            }),
            ServerPkt::EventFor {
                nsp,
                ack,
                name,
                args,
            } => {
                let mut name = name.0.clone();
                if wsio::socketio::RESERVED_EVENTS.contains(&name.as_str()) {
                    name.push('!');
                }
                sio(&Packet::Event {
                    nsp: NSPS[usize::from(*nsp) % NSPS.len()].to_owned().into(),
                    id: ack.map(|a| u64::from(a % 8)),
                    name,
                    args: args.0.clone(),
                })
            }
            ServerPkt::Sio(p) => sio(&p.0),
            ServerPkt::SioRaw { prefix, rest } => {
                const PREFIXES: [&str; 8] = ["0", "1", "2", "3", "4", "51-", "0/chat,", "2/chat,7"];
                let prefix = PREFIXES[usize::from(*prefix) % PREFIXES.len()];
                vec![EPacket::message(format!("{prefix}{rest}"))]
            }
            ServerPkt::Ping => vec![EPacket::new(PacketType::Ping)],
            ServerPkt::ProbeOk => vec![EPacket::with_text(PacketType::Pong, "probe")],
            ServerPkt::Noop => vec![EPacket::new(PacketType::Noop)],
            ServerPkt::Close => vec![EPacket::new(PacketType::Close)],
            ServerPkt::Text { kind, text } => {
                vec![EPacket::with_text(
                    TYPES[usize::from(*kind) % TYPES.len()],
                    text.clone(),
                )]
            }
            ServerPkt::Binary(b) => vec![EPacket::message(b.clone())],
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub enum BodyIn {
    Payload(Vec<ServerPkt>),
    Ok,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum NspIn {
    Known(u8),
    Name(String),
}

#[derive(Arbitrary, Debug)]
pub enum Action {
    /// Answers a pending request, framed by `Content-Length`, `chunked`,
    /// `Connection: close` then the end, or the end alone (by `framing`).
    Respond {
        req: u8,
        status: u8,
        body: BodyIn,
        framing: u8,
    },
    /// The connection of a pending request fails.
    Fail {
        req: u8,
    },
    /// The server closes an HTTP connection (idle or not).
    HttpEof {
        conn: u8,
    },
    /// The server side of a stream sends packets; the bytes reach the
    /// client in pieces of `chunk` (0: whole).
    StreamSend {
        stream: u8,
        packets: Vec<ServerPkt>,
        chunk: u8,
    },
    StreamRaw {
        stream: u8,
        data: Vec<u8>,
    },
    StreamClose {
        stream: u8,
        code: u16,
    },
    StreamEof {
        stream: u8,
    },
    StreamError {
        stream: u8,
    },
    Advance {
        ms: u16,
    },
    AdvanceToDeadline,
    Socket {
        nsp: NspIn,
        auth: Option<Val>,
    },
    Emit {
        nsp: u8,
        name: Name,
        args: Args,
    },
    EmitWithAck {
        nsp: u8,
        name: Name,
        args: Args,
        timeout_ms: Option<u16>,
    },
    EmitVolatile {
        nsp: u8,
        args: Args,
    },
    Ack {
        which: u8,
        args: Args,
    },
    Disconnect {
        nsp: u8,
    },
    Close,
    ClearSendBuffer {
        nsp: u8,
    },
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    config: ConfigIn,
    seed: u64,
    /// Whether streams refuse the WebSocket handshake (by index).
    refuse: u8,
    actions: Vec<Action>,
}

#[derive(PartialEq, Eq)]
enum Role {
    /// Nothing written yet.
    Unknown,
    Http,
    Ws,
}

/// The server end of one connection the client opened.
struct Conn {
    id: ConnId,
    role: Role,
    /// For a WebSocket.
    server: Box<ws::Connection>,
    /// What the client wrote on an HTTP connection, not yet read as requests.
    wbuf: BytesMut,
    /// The client closed it.
    closed: bool,
    /// The harness gave the client an EOF, or an error.
    eof: bool,
    failed: bool,
}

impl Conn {
    /// Whether bytes may still reach the client.
    fn readable(&self) -> bool {
        !self.closed && !self.eof && !self.failed
    }
}

struct Sim {
    client: Client,
    base: Instant,
    ms: u64,
    refuse: u8,
    /// Requests waiting for an answer, oldest first.
    requests: Vec<(ConnId, RequestHead)>,
    seen_ids: HashSet<ConnId>,
    conns: Vec<Conn>,
    /// Acks waiting: (socket, id).
    acks: HashSet<(NspId, u64)>,
    acks_done: HashSet<(NspId, u64)>,
    connected: HashSet<NspId>,
    nsps: Vec<NspId>,
    asked: Vec<(NspId, u64)>,
    /// Events heard, by kind (for the tests).
    heard: HashMap<&'static str, usize>,
}

impl Sim {
    fn new(config: ConfigIn, seed: u64, refuse: u8) -> Sim {
        let base = crate::base_instant();
        let client = Client::new(config.build(), Box::new(SeededEntropy::new(seed)), base);
        let mut sim = Sim {
            client,
            base,
            ms: 0,
            refuse,
            requests: Vec::new(),
            seen_ids: HashSet::default(),
            conns: Vec::new(),
            acks: HashSet::default(),
            acks_done: HashSet::default(),
            connected: HashSet::default(),
            nsps: Vec::new(),
            asked: Vec::new(),
            heard: HashMap::default(),
        };
        sim.pump();
        // The main namespace, as the official `io()` makes it.
        let root = sim.client.socket(base, "/", None).expect("socket /");
        sim.nsps.push(root);
        sim.pump();
        sim
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.ms)
    }

    /// The `i`-th WebSocket (by index among them).
    fn stream(&self, i: u8) -> Option<usize> {
        let ws: Vec<usize> = (0..self.conns.len())
            .filter(|k| self.conns[*k].role == Role::Ws)
            .collect();
        (!ws.is_empty()).then(|| ws[usize::from(i) % ws.len()])
    }

    fn conn_mut(&mut self, id: ConnId) -> &mut Conn {
        self.conns
            .iter_mut()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id:?} was never opened"))
    }

    /// Drains the client until quiet, serving its connections.
    fn pump(&mut self) {
        let now = self.now();
        for _ in 0..10_000 {
            let (mut transmits, mut events) = (Vec::new(), Vec::new());
            drain(
                &mut self.client,
                now,
                |_, t| {
                    transmits.push(t);
                    ControlFlow::Continue(())
                },
                |_, ev| events.push(ev),
            );
            let mut moved = !transmits.is_empty() || !events.is_empty();
            for t in transmits {
                self.transmit(now, t);
            }
            let mut to_client: Vec<(ConnId, Bytes)> = Vec::new();
            let refuse = self.refuse;
            for (k, c) in self.conns.iter_mut().enumerate() {
                if c.role != Role::Ws {
                    continue;
                }
                let (id, readable) = (c.id, c.readable());
                drain(
                    &mut *c.server,
                    now,
                    |_, t| {
                        if let ws::Transmit::Data(b) = t
                            && readable
                        {
                            to_client.push((id, b));
                        }
                        ControlFlow::Continue(())
                    },
                    |server, ev| {
                        moved = true;
                        if let ws::Event::Upgrade(_) = ev {
                            if refuse & (1 << (k % 8)) != 0 {
                                let _ = server.reject(403);
                            } else {
                                let _ = server.accept(now, Accept::new());
                            }
                        }
                    },
                );
            }
            for ev in events {
                self.event(ev);
            }
            for (id, b) in to_client {
                moved = true;
                self.client.handle_input(now, id, &b);
            }
            if !moved {
                return;
            }
        }
        panic!("the client never went quiet");
    }

    fn transmit(&mut self, now: Instant, t: ClientTransmit) {
        match t {
            ClientTransmit::Connect { conn } => {
                assert!(self.seen_ids.insert(conn), "connection id {conn:?} reused");
                let server = ws::Connection::server(
                    ws::Config::default().close_timeout(Duration::from_secs(3600)),
                );
                self.conns.push(Conn {
                    id: conn,
                    role: Role::Unknown,
                    server: Box::new(server),
                    wbuf: BytesMut::new(),
                    closed: false,
                    eof: false,
                    failed: false,
                });
            }
            ClientTransmit::Data { conn, data } => {
                let c = self.conn_mut(conn);
                assert!(!c.closed && !c.failed, "data on {conn:?} after it ended");
                if c.role == Role::Unknown {
                    let head = String::from_utf8_lossy(&data[..data.len().min(256)]);
                    c.role = if head.contains("transport=websocket") {
                        Role::Ws
                    } else {
                        Role::Http
                    };
                }
                if c.role == Role::Ws {
                    c.server.handle_input(now, &data);
                    return;
                }
                c.wbuf.extend_from_slice(&data);
                let mut heads = Vec::new();
                while let Ok(Some((head, used))) =
                    HeadParser::new(Limits::default()).parse_request(&c.wbuf)
                {
                    let len: usize = head
                        .headers
                        .get_str("content-length")
                        .map_or(0, |l| l.parse().expect("a Content-Length"));
                    if c.wbuf.len() < used + len {
                        break;
                    }
                    let _ = c.wbuf.split_to(used + len);
                    heads.push(head);
                }
                for head in heads {
                    assert!(
                        !self.requests.iter().any(|(r, _)| *r == conn),
                        "two requests at once on {conn:?}"
                    );
                    self.requests.push((conn, head));
                }
            }
            ClientTransmit::Close { conn } => {
                let c = self.conn_mut(conn);
                assert!(!c.closed && !c.failed, "{conn:?} closed after it ended");
                c.closed = true;
                if c.role == Role::Ws {
                    c.server.handle_eof(now);
                }
                self.requests.retain(|(r, _)| *r != conn);
            }
        }
    }

    /// The server ends connection `conn`: the client hears its end.
    fn end(&mut self, now: Instant, conn: ConnId) {
        let c = self.conn_mut(conn);
        if c.readable() {
            c.eof = true;
            self.requests.retain(|(r, _)| *r != conn);
            self.client.handle_eof(now, conn);
        }
    }

    fn event(&mut self, ev: ClientEvent) {
        let kind = match &ev {
            ClientEvent::Connect { .. } => "connect",
            ClientEvent::ConnectError { .. } => "connect_error",
            ClientEvent::Event { .. } => "event",
            ClientEvent::Ack { .. } => "ack",
            ClientEvent::AckTimeout { .. } => "ack_timeout",
            ClientEvent::AckLost { .. } => "ack_lost",
            ClientEvent::Disconnect { .. } => "disconnect",
            ClientEvent::OpenError { .. } => "open_error",
            ClientEvent::Reconnecting { .. } => "reconnecting",
            ClientEvent::ReconnectError { .. } => "reconnect_error",
            ClientEvent::ReconnectFailed => "reconnect_failed",
            ClientEvent::Reconnected { .. } => "reconnected",
        };
        *self.heard.entry(kind).or_default() += 1;
        match ev {
            ClientEvent::Connect { nsp, .. } => {
                assert!(self.nsps.contains(&nsp), "Connect for unknown {nsp:?}");
                assert!(self.connected.insert(nsp), "Connect of connected {nsp:?}");
            }
            ClientEvent::Disconnect { nsp, .. } => {
                assert!(
                    self.connected.remove(&nsp),
                    "Disconnect of {nsp:?}, not connected"
                );
            }
            ClientEvent::Ack { nsp, id, .. }
            | ClientEvent::AckTimeout { nsp, id }
            | ClientEvent::AckLost { nsp, id } => {
                assert!(
                    self.acks.remove(&(nsp, id)),
                    "{kind} for ({nsp:?}, {id}): not waiting"
                );
                assert!(self.acks_done.insert((nsp, id)), "second end of ack {id}");
            }
            ClientEvent::Event { nsp, ack, .. } => {
                assert!(self.nsps.contains(&nsp), "event for unknown {nsp:?}");
                if let Some(id) = ack {
                    self.asked.push((nsp, id));
                }
            }
            ClientEvent::ConnectError { nsp, .. } => {
                assert!(
                    self.nsps.contains(&nsp),
                    "connect_error for unknown {nsp:?}"
                );
            }
            _ => {}
        }
    }

    fn act(&mut self, action: Action) {
        let now = self.now();
        match action {
            Action::Respond {
                req,
                status,
                body,
                framing,
            } => {
                if self.requests.is_empty() {
                    return;
                }
                let (id, _) = self.requests.remove(usize::from(req) % self.requests.len());
                const STATUS: [u16; 8] = [200, 200, 200, 200, 400, 404, 413, 500];
                let status = STATUS[usize::from(status) % STATUS.len()];
                let body = match body {
                    BodyIn::Payload(p) => {
                        let packets: Vec<EPacket> =
                            p.iter().take(8).flat_map(ServerPkt::packets).collect();
                        encode_payload(&packets)
                    }
                    BodyIn::Ok => Bytes::from_static(b"ok"),
                    BodyIn::Raw(b) => Bytes::from(b),
                };
                let mut head = ResponseHead::new(status)
                    .with_header("Content-Type", "text/plain; charset=UTF-8");
                let mut wire = BytesMut::new();
                let ends = framing % 4 >= 2;
                match framing % 4 {
                    1 => {
                        head = head.with_header("Transfer-Encoding", "chunked");
                        head.encode(&mut wire);
                        let (a, b) = body.split_at(body.len() / 2);
                        for part in [a, b] {
                            if !part.is_empty() {
                                wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                                wire.extend_from_slice(part);
                                wire.extend_from_slice(b"\r\n");
                            }
                        }
                        wire.extend_from_slice(b"0\r\n\r\n");
                    }
                    3 => {
                        head.encode(&mut wire);
                        wire.extend_from_slice(&body);
                    }
                    other => {
                        head = head.with_header("Content-Length", body.len().to_string());
                        if other == 2 {
                            head = head.with_header("Connection", "close");
                        }
                        head.encode(&mut wire);
                        wire.extend_from_slice(&body);
                    }
                }
                self.client.handle_input(now, id, &wire);
                if ends {
                    self.pump();
                    self.end(now, id);
                }
            }
            Action::Fail { req } => {
                if self.requests.is_empty() {
                    return;
                }
                let (id, _) = self.requests.remove(usize::from(req) % self.requests.len());
                let c = self.conn_mut(id);
                if !c.closed && !c.failed {
                    c.failed = true;
                    self.client.handle_error(now, id, "reset");
                }
            }
            Action::HttpEof { conn } => {
                let http: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|c| c.role == Role::Http && c.readable())
                    .map(|c| c.id)
                    .collect();
                if let Some(&id) = http.get(usize::from(conn) % http.len().max(1)) {
                    self.end(now, id);
                }
            }
            Action::StreamSend {
                stream,
                packets,
                chunk,
            } => {
                let Some(i) = self.stream(stream) else { return };
                let s = &mut self.conns[i];
                for p in packets.iter().take(8).flat_map(ServerPkt::packets) {
                    let m = match &p.data {
                        engineio::Data::Binary(b) => Message::binary(b.clone()),
                        engineio::Data::Text(t) => {
                            Message::text(format!("{}{}", char::from(p.kind.as_char()), t.as_str()))
                        }
                    };
                    let _ = s.server.send(m);
                }
                let mut bytes = Vec::new();
                while let Some(t) = s.server.poll_transmit(now) {
                    if let ws::Transmit::Data(b) = t {
                        bytes.extend_from_slice(&b);
                    }
                }
                let (id, readable) = (s.id, s.readable());
                if !readable {
                    return;
                }
                let step = if chunk == 0 {
                    bytes.len().max(1)
                } else {
                    usize::from(chunk)
                };
                for piece in bytes.chunks(step) {
                    self.client.handle_input(now, id, piece);
                    self.pump();
                }
            }
            Action::StreamRaw { stream, data } => {
                let Some(i) = self.stream(stream) else { return };
                let s = &self.conns[i];
                if s.readable() {
                    self.client.handle_input(now, s.id, &data);
                }
            }
            Action::StreamClose { stream, code } => {
                let Some(i) = self.stream(stream) else { return };
                let _ = self.conns[i].server.close(now, CloseCode(code), "");
            }
            Action::StreamEof { stream } => {
                let Some(i) = self.stream(stream) else { return };
                let id = self.conns[i].id;
                self.end(now, id);
            }
            Action::StreamError { stream } => {
                let Some(i) = self.stream(stream) else { return };
                let s = &mut self.conns[i];
                if !s.closed && !s.failed {
                    s.failed = true;
                    let id = s.id;
                    self.client.handle_error(now, id, "reset");
                }
            }
            Action::Advance { ms } => self.advance_to(self.ms + u64::from(ms)),
            Action::AdvanceToDeadline => {
                if let Some(d) = self.client.poll_timeout() {
                    let ms = d.saturating_duration_since(self.base).as_millis() as u64;
                    let ms = if self.base + Duration::from_millis(ms) < d {
                        ms + 1
                    } else {
                        ms
                    };
                    self.advance_to(ms.max(self.ms));
                }
            }
            Action::Socket { nsp, auth } => {
                let name = match nsp {
                    NspIn::Known(i) => NSPS[usize::from(i) % NSPS.len()].to_owned(),
                    NspIn::Name(s) => s,
                };
                if let Ok(id) = self.client.socket(now, &name, auth.map(|a| a.0))
                    && !self.nsps.contains(&id)
                {
                    self.nsps.push(id);
                }
            }
            Action::Emit { nsp, name, args } => {
                let Some(id) = self.known(nsp) else { return };
                let r = self.client.emit(now, id, &name.0, args.0);
                expect_usage(r);
            }
            Action::EmitWithAck {
                nsp,
                name,
                args,
                timeout_ms,
            } => {
                let Some(id) = self.known(nsp) else { return };
                let timeout = timeout_ms.map(|t| Duration::from_millis(u64::from(t)));
                match self.client.emit_with_ack(now, id, &name.0, args.0, timeout) {
                    Ok(ack) => {
                        assert!(
                            !self.acks_done.contains(&(id, ack)) && !self.acks.contains(&(id, ack)),
                            "ack id {ack} reused"
                        );
                        self.acks.insert((id, ack));
                    }
                    Err(e) => expect_usage(Err(e)),
                }
            }
            Action::EmitVolatile { nsp, args } => {
                let Some(id) = self.known(nsp) else { return };
                let r = self.client.emit_volatile(now, id, "v", args.0);
                expect_usage(r.map(|_| ()));
            }
            Action::Ack { which, args } => {
                if self.asked.is_empty() {
                    return;
                }
                let (nsp, id) = self.asked.remove(usize::from(which) % self.asked.len());
                let r = self.client.ack(now, nsp, id, args.0);
                expect_usage(r);
            }
            Action::Disconnect { nsp } => {
                let Some(id) = self.known(nsp) else { return };
                assert_eq!(self.client.disconnect(now, id), Ok(()));
            }
            Action::Close => self.client.close(now),
            Action::ClearSendBuffer { nsp } => {
                let Some(id) = self.known(nsp) else { return };
                self.client.clear_send_buffer(id);
            }
        }
        self.pump();
    }

    fn known(&self, i: u8) -> Option<NspId> {
        (!self.nsps.is_empty()).then(|| self.nsps[usize::from(i) % self.nsps.len()])
    }

    fn advance_to(&mut self, ms: u64) {
        self.ms = ms;
        let now = self.now();
        self.client.handle_timeout(now);
        for c in &mut self.conns {
            c.server.handle_timeout(now);
        }
        self.pump();
        if let Some(t) = self.client.poll_timeout() {
            assert!(t >= now, "poll_timeout {:?} before now", now - t);
        }
    }
}

/// Commands on a socket `socket()` made may be refused for their state,
/// never for the socket.
fn expect_usage(r: Result<(), ClientUsageError>) {
    assert!(
        !matches!(r, Err(ClientUsageError::UnknownNsp(_))),
        "a known socket refused: {r:?}"
    );
}

/// Runs the actions and the checks.
pub fn run(input: Input) {
    let mut sim = Sim::new(input.config, input.seed, input.refuse);
    for a in input.actions.into_iter().take(64) {
        sim.act(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: Mode) -> ConfigIn {
        ConfigIn {
            mode,
            reconnection: true,
            attempts: Some(2),
            delay_ms: 100,
            delay_max_ms: 500,
            factor: 1,
            timeout_ms: 2000,
            request_timeout_ms: 2000,
            send_buffer: true,
            max_send_buffer: 7,
            max_attachments: 2,
            max_buffered_packets: 15,
        }
    }

    fn open() -> ServerPkt {
        ServerPkt::Open(OpenIn::Good {
            upgrades: true,
            ping_interval: 300,
            ping_timeout: 200,
            max_payload: None,
        })
    }

    fn simulate(mode: Mode, actions: Vec<Action>) -> Sim {
        let mut sim = Sim::new(config(mode), 5, 0);
        for a in actions {
            sim.act(a);
        }
        sim
    }

    fn ack(id: u64) -> ServerPkt {
        ServerPkt::Sio(AnyPkt(Packet::Ack {
            nsp: "/".into(),
            id,
            args: vec![],
        }))
    }

    #[test]
    fn websocket_session_acks_then_loses_the_connection() {
        use Action::*;
        let name = || Name("q".into());
        let sim = simulate(
            Mode::WebSocket,
            vec![
                StreamSend {
                    stream: 0,
                    packets: vec![open()],
                    chunk: 3,
                },
                StreamSend {
                    stream: 0,
                    packets: vec![ServerPkt::ConnectOk { nsp: 0 }],
                    chunk: 0,
                },
                EmitWithAck {
                    nsp: 0,
                    name: name(),
                    args: Args(vec![]),
                    timeout_ms: None,
                },
                EmitWithAck {
                    nsp: 0,
                    name: name(),
                    args: Args(vec![]),
                    timeout_ms: Some(50),
                },
                EmitWithAck {
                    nsp: 0,
                    name: name(),
                    args: Args(vec![]),
                    timeout_ms: None,
                },
                StreamSend {
                    stream: 0,
                    packets: vec![ack(0)],
                    chunk: 0,
                },
                Advance { ms: 60 },
                StreamEof { stream: 0 },
                Advance { ms: 1000 },
            ],
        );
        let heard = |k| sim.heard.get(k).copied().unwrap_or(0);
        assert_eq!((heard("connect"), heard("disconnect")), (1, 1));
        assert_eq!(
            (heard("ack"), heard("ack_timeout"), heard("ack_lost")),
            (1, 1, 1)
        );
        assert!(heard("reconnecting") >= 1);
        let streams = sim.conns.iter().filter(|c| c.role == Role::Ws).count();
        assert!(streams >= 2, "a reconnection opened a new WebSocket");
    }

    #[test]
    fn polling_session_upgrades() {
        use Action::*;
        let payload = |p: Vec<ServerPkt>| BodyIn::Payload(p);
        let sim = simulate(
            Mode::Upgrade,
            vec![
                Respond {
                    req: 0,
                    status: 0,
                    body: payload(vec![open()]),
                    framing: 0,
                },
                // The client now polls and POSTs its CONNECT.
                Respond {
                    req: 1,
                    status: 0,
                    body: BodyIn::Ok,
                    framing: 1,
                },
                Respond {
                    req: 0,
                    status: 0,
                    body: payload(vec![ServerPkt::ConnectOk { nsp: 0 }]),
                    framing: 0,
                },
                StreamSend {
                    stream: 0,
                    packets: vec![ServerPkt::ProbeOk],
                    chunk: 0,
                },
                Respond {
                    req: 0,
                    status: 0,
                    body: payload(vec![ServerPkt::Noop]),
                    framing: 3,
                },
            ],
        );
        assert_eq!(sim.heard.get("connect"), Some(&1));
        assert_eq!(
            sim.client.transport(),
            Some(engineio::TransportKind::WebSocket)
        );
    }
}
