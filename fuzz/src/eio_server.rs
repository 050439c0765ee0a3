//! An `engineio::Server` driven by an arbitrary list of actions: raw TCP
//! connections carrying arbitrary bytes or well-formed requests of the
//! Engine.IO kind (polling GETs and POSTs with known, unknown or malformed
//! sids, arbitrary queries, headers and payloads, WebSocket upgrades) cut at
//! arbitrary points, WebSocket frames on upgraded connections, requests and
//! upgrades from an embedding server, EOFs, time, and the application's
//! commands (send, close, respond, release).
//!
//! Checked after every action, once the server is drained:
//!
//! * nothing comes for a connection after its `Transmit::Close` (or after
//!   the `Transmit::Response` of an embedded request); raw connections get
//!   bytes, embedded requests one response;
//! * every byte written on a raw connection parses as HTTP responses, each
//!   polling payload decodes, and after a 101 the frames are ones a client
//!   accepts, each text frame an Engine.IO packet;
//! * `Event::Open` once per sid; `Event::Close` at most once, for an opened
//!   sid; messages and upgrades only between the two; the session count is
//!   the number of sessions opened and not closed, and never exceeds
//!   `max_sessions`;
//! * `poll_timeout()` is never before `now` after `handle_timeout(now)`;
//! * `send` and `close` on a session that is open (and not closing) never
//!   answer `UnknownSession`, and a text with `\x1e` is refused exactly
//!   over polling (where it would split the payload); `respond` and `release` work on a request the
//!   application was handed (unless its connection went away).

use std::{
    ops::ControlFlow,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use bytes::Bytes;
use wsio::{
    engineio::{
        Config, ConnId, Cors, CorsOrigin, Data, Event, Packet, PacketType, Server, SharedPacket,
        Sid, Transmit, TransportKind, UsageError,
    },
    entropy::SeededEntropy,
    http::ResponseHead,
    machine::drain,
};

use crate::{
    HashMap, HashSet,
    wire::{FrameIn, Reader, Req},
};

const PATH: &str = "/engine.io/";
const BYPASS: &str = "/engine.io/client.js";

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct ConfigIn {
    ping_interval_ms: u16,
    ping_timeout_ms: u16,
    upgrade_timeout_ms: u16,
    close_timeout_ms: u16,
    max_payload: Option<u16>,
    polling: bool,
    websocket: bool,
    allow_upgrades: bool,
    cors: bool,
    max_sessions: u8,
    max_buffered_packets: Option<u8>,
}

impl ConfigIn {
    fn build(self) -> Config {
        let ms = |n: u16| Duration::from_millis(u64::from(n));
        let mut c = Config::default()
            .ping_interval(ms(self.ping_interval_ms))
            .ping_timeout(ms(self.ping_timeout_ms))
            .upgrade_timeout(ms(self.upgrade_timeout_ms))
            .close_timeout(ms(self.close_timeout_ms))
            .transports(self.polling || !self.websocket, self.websocket)
            .allow_upgrades(self.allow_upgrades)
            .max_sessions(usize::from(self.max_sessions % 8))
            .bypass(BYPASS);
        if let Some(p) = self.max_payload {
            c = c.max_payload(usize::from(p));
        }
        if let Some(n) = self.max_buffered_packets {
            c = c.max_buffered_packets(usize::from(n));
        }
        if self.cors {
            c = c.cors(Some(Cors::new(CorsOrigin::Any)));
        }
        c
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub enum DataIn {
    Text(String),
    Binary(Vec<u8>),
}

impl DataIn {
    fn build(&self) -> wsio::engineio::Data {
        match self {
            DataIn::Text(t) => t.clone().into(),
            DataIn::Binary(b) => b.clone().into(),
        }
    }

    /// A text with the polling separator (finding 2 of the README: it
    /// split its polling payload; now refused on polling).
    fn separator(&self) -> bool {
        matches!(self, DataIn::Text(t) if t.contains('\u{1e}'))
    }
}

#[derive(Arbitrary, Debug)]
pub enum Action {
    /// A new raw connection.
    Accept,
    /// A request on a raw connection, fed in pieces of the given sizes.
    Request {
        conn: u8,
        req: Req,
        cuts: Vec<u8>,
    },
    /// Arbitrary bytes on a raw connection.
    Raw {
        conn: u8,
        data: Vec<u8>,
    },
    /// A client frame on a connection (meaningful once upgraded).
    Frame {
        conn: u8,
        frame: FrameIn,
        key: [u8; 4],
    },
    Eof {
        conn: u8,
    },
    /// A request from an embedding HTTP server.
    Embedded {
        req: Req,
    },
    /// An upgrade from an embedding HTTP server.
    EmbeddedUpgrade {
        req: Req,
    },
    Advance {
        ms: u16,
    },
    /// Jumps to the server's next deadline.
    AdvanceToDeadline,
    Send {
        sid: u8,
        data: DataIn,
    },
    SendAll {
        sid: u8,
        data: Vec<DataIn>,
    },
    SendShared {
        sid: u8,
        text: String,
    },
    SendNoop {
        sid: u8,
    },
    Close {
        sid: u8,
    },
    Respond {
        req: u8,
        status: u8,
        body: Vec<u8>,
    },
    Release {
        req: u8,
    },
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    config: ConfigIn,
    seed: u64,
    actions: Vec<Action>,
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Kind {
    Raw,
    Embedded,
}

struct Conn {
    kind: Kind,
    reader: Reader,
    done: bool,
    /// The harness sent EOF.
    eof: bool,
}

struct Sim {
    server: Server,
    max_sessions: usize,
    base: Instant,
    ms: u64,
    seed: u64,
    conns: HashMap<ConnId, Conn>,
    /// Raw and upgraded connections, in creation order (actions name them
    /// by index).
    raw: Vec<ConnId>,
    sids: Vec<Sid>,
    open: HashSet<Sid>,
    closed: HashSet<Sid>,
    closing: HashSet<Sid>,
    /// Requests handed to the application, not yet answered.
    requests: Vec<ConnId>,
    /// Messages and upgrades heard, texts with `\x1e` clients read over
    /// WebSocket (for the tests).
    messages: usize,
    upgrades: usize,
    ws_texts_with_separator: usize,
}

impl Sim {
    fn new(config: ConfigIn, seed: u64) -> Sim {
        let base = crate::base_instant();
        let config = config.build();
        Sim {
            max_sessions: config.max_sessions,
            server: Server::new(config, Box::new(SeededEntropy::new(seed)), base),
            base,
            ms: 0,
            seed,
            conns: HashMap::default(),
            raw: Vec::new(),
            sids: Vec::new(),
            open: HashSet::default(),
            closed: HashSet::default(),
            closing: HashSet::default(),
            requests: Vec::new(),
            messages: 0,
            upgrades: 0,
            ws_texts_with_separator: 0,
        }
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.ms)
    }

    fn conn(&self, i: u8) -> Option<ConnId> {
        (!self.raw.is_empty()).then(|| self.raw[usize::from(i) % self.raw.len()])
    }

    fn sid(&self, i: u8) -> Option<Sid> {
        (!self.sids.is_empty()).then(|| self.sids[usize::from(i) % self.sids.len()])
    }

    fn is_live(&self, sid: Sid) -> bool {
        self.open.contains(&sid) && !self.closing.contains(&sid)
    }

    /// Drains the server (and the clients' answers) until quiet, checking
    /// every transmit and event.
    fn pump(&mut self) {
        let now = self.now();
        for _ in 0..10_000 {
            let mut answers: Vec<(ConnId, Bytes)> = Vec::new();
            let (mut transmits, mut events) = (Vec::new(), Vec::new());
            drain(
                &mut self.server,
                now,
                |_, t| {
                    transmits.push(t);
                    ControlFlow::Continue(())
                },
                |_, ev| events.push(ev),
            );
            let mut moved = !transmits.is_empty() || !events.is_empty();
            for t in transmits {
                let id = t.conn();
                let c = self
                    .conns
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("transmit for a connection never made: {t:?}"));
                assert!(!c.done, "transmit after the connection ended: {t:?}");
                match t {
                    Transmit::Data { data, .. } => {
                        assert_eq!(c.kind, Kind::Raw, "bytes for an embedded request");
                        let name = format!("{id:?}");
                        let (answer, packets) = c.reader.read(now, &data, self.seed ^ id.0, &name);
                        for p in packets {
                            let p = p.unwrap_or_else(|e| panic!("{name}: bad packet: {e:?}"));
                            if matches!(&p.data, Data::Text(t) if t.contains('\u{1e}')) {
                                self.ws_texts_with_separator += 1;
                            }
                        }
                        if !c.eof {
                            answers.extend(answer.into_iter().map(|b| (id, b)));
                        }
                    }
                    Transmit::Response { .. } => {
                        assert_eq!(c.kind, Kind::Embedded, "a response on a raw connection");
                        c.done = true;
                    }
                    Transmit::Close { .. } => c.done = true,
                }
            }
            for ev in events {
                self.event(ev);
            }
            for (id, b) in answers {
                if self.conns.get(&id).is_some_and(|c| !c.done) {
                    moved = true;
                    self.server.handle_input(now, id, &b);
                }
            }
            if !moved {
                self.check();
                return;
            }
        }
        panic!("the server never went quiet");
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Open { sid, .. } => {
                assert!(!self.sids.contains(&sid), "{sid:?} opened twice");
                self.sids.push(sid);
                self.open.insert(sid);
            }
            Event::Close { sid, .. } => {
                assert!(self.sids.contains(&sid), "close of {sid:?}, never opened");
                assert!(self.closed.insert(sid), "{sid:?} closed twice");
                self.open.remove(&sid);
                self.closing.remove(&sid);
            }
            Event::Message { sid, .. } => {
                assert!(self.open.contains(&sid), "{ev:?} outside its session");
                self.messages += 1;
            }
            Event::Upgrade { sid } => {
                assert!(self.open.contains(&sid), "{ev:?} outside its session");
                self.upgrades += 1;
            }
            Event::Request { conn, head, .. } => {
                let c = self
                    .conns
                    .get(&conn)
                    .expect("request on an unknown connection");
                assert!(!c.done, "request on an ended connection");
                assert!(
                    !head.target.starts_with(PATH) || head.path() == BYPASS,
                    "engine request handed out: {}",
                    head.target
                );
                self.requests.push(conn);
            }
        }
    }

    fn check(&self) {
        let n = self.server.session_count();
        assert_eq!(n, self.open.len(), "session count vs Open/Close events");
        assert!(
            n <= self.max_sessions,
            "{n} sessions, limit {}",
            self.max_sessions
        );
    }

    fn feed(&mut self, id: ConnId, data: &[u8]) {
        let now = self.now();
        if let Some(c) = self.conns.get(&id)
            && (c.done || c.eof)
        {
            return;
        }
        self.server.handle_input(now, id, data);
        self.pump();
    }

    fn new_conn(&mut self, id: ConnId, kind: Kind, reader: Reader) {
        assert!(!self.conns.contains_key(&id), "connection id {id:?} reused");
        self.conns.insert(
            id,
            Conn {
                kind,
                reader,
                done: false,
                eof: false,
            },
        );
        if kind == Kind::Raw {
            self.raw.push(id);
        }
    }

    fn act(&mut self, action: Action) {
        let now = self.now();
        let seed = self.seed.wrapping_add(self.ms);
        match action {
            Action::Accept => {
                let id = self.server.accept(now, None);
                self.new_conn(id, Kind::Raw, Reader::http());
            }
            Action::Request { conn, req, cuts } => {
                let Some(id) = self.conn(conn) else { return };
                let bytes = req.encode(PATH, BYPASS, &self.sids, seed);
                let mut rest = &bytes[..];
                for cut in cuts.iter().take(8) {
                    let (a, b) = rest.split_at(usize::from(*cut).min(rest.len()));
                    self.feed(id, a);
                    rest = b;
                }
                self.feed(id, rest);
            }
            Action::Raw { conn, data } => {
                if let Some(id) = self.conn(conn) {
                    self.feed(id, &data);
                }
            }
            Action::Frame { conn, frame, key } => {
                if let Some(id) = self.conn(conn) {
                    self.feed(id, &frame.encode(key));
                }
            }
            Action::Eof { conn } => {
                let Some(id) = self.conn(conn) else { return };
                if let Some(c) = self.conns.get_mut(&id) {
                    if c.eof {
                        return;
                    }
                    c.eof = true;
                }
                self.server.handle_eof(now, id);
            }
            Action::Embedded { req } => {
                let Some((head, body)) = req.head_and_body(PATH, BYPASS, &self.sids, seed) else {
                    return;
                };
                let id = self.server.handle_request(now, head, body, None);
                self.new_conn(id, Kind::Embedded, Reader::http());
            }
            Action::EmbeddedUpgrade { req } => {
                let Some((head, _)) = req.head_and_body(PATH, BYPASS, &self.sids, seed) else {
                    return;
                };
                if let Ok((id, res)) = self.server.handle_upgrade(now, head, None) {
                    assert_eq!(res.status, 101);
                    self.new_conn(id, Kind::Raw, Reader::ws(seed));
                }
            }
            Action::Advance { ms } => self.advance_to(self.ms + u64::from(ms)),
            Action::AdvanceToDeadline => {
                if let Some(d) = self.server.poll_timeout() {
                    let ms = d.saturating_duration_since(self.base).as_millis() as u64;
                    let ms = if self.base + Duration::from_millis(ms) < d {
                        ms + 1
                    } else {
                        ms
                    };
                    self.advance_to(ms.max(self.ms));
                }
            }
            Action::Send { sid, data } => {
                let Some(sid) = self.sid(sid) else { return };
                let r = self.server.send(sid, data.build());
                self.expect_sent(sid, data.separator(), r);
            }
            Action::SendAll { sid, data } => {
                let Some(sid) = self.sid(sid) else { return };
                let packets: Vec<Packet> = data
                    .iter()
                    .take(8)
                    .map(|d| Packet::message(d.build()))
                    .collect();
                let r = self.server.send_all(sid, &packets);
                let separator = data.iter().take(8).any(DataIn::separator);
                self.expect_sent(sid, separator, r);
            }
            Action::SendShared { sid, text } => {
                let Some(sid) = self.sid(sid) else { return };
                let p = SharedPacket::new(Packet::message(text.clone()));
                let r = self.server.send_shared(sid, &p);
                self.expect_sent(sid, text.contains('\u{1e}'), r);
            }
            Action::SendNoop { sid } => {
                let Some(sid) = self.sid(sid) else { return };
                let r = self.server.send_packet(sid, Packet::new(PacketType::Noop));
                self.expect_sent(sid, false, r);
            }
            Action::Close { sid } => {
                let Some(sid) = self.sid(sid) else { return };
                let live = self.is_live(sid);
                let r = self.server.close(now, sid);
                if live {
                    assert_eq!(r, Ok(()), "close of a live session");
                    self.closing.insert(sid);
                } else {
                    assert_eq!(r, Err(UsageError::UnknownSession(sid)));
                }
            }
            Action::Respond { req, status, body } => {
                if self.requests.is_empty() {
                    return;
                }
                let id = self.requests.remove(usize::from(req) % self.requests.len());
                const STATUS: [u16; 7] = [200, 201, 204, 304, 400, 404, 500];
                let status = STATUS[usize::from(status) % STATUS.len()];
                // No body where HTTP allows none.
                let body = if matches!(status, 204 | 304) {
                    Vec::new()
                } else {
                    body
                };
                let r = self
                    .server
                    .respond(now, id, ResponseHead::new(status), body.into());
                if self.conns.get(&id).is_some_and(|c| !c.done && !c.eof) {
                    assert_eq!(r, Ok(()), "respond to a pending request");
                }
            }
            Action::Release { req } => {
                if self.requests.is_empty() {
                    return;
                }
                let i = usize::from(req) % self.requests.len();
                let id = self.requests[i];
                let pending = self.conns.get(&id).is_some_and(|c| !c.done && !c.eof);
                if self
                    .conns
                    .get(&id)
                    .is_some_and(|c| c.kind == Kind::Embedded)
                {
                    assert_eq!(
                        self.server.release(id),
                        None,
                        "released an embedded request"
                    );
                    return;
                }
                let r = self.server.release(id);
                if pending {
                    assert!(r.is_some(), "release of a pending request");
                }
                if r.is_some() {
                    self.requests.remove(i);
                    // The connection is the driver's now.
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.done = true;
                    }
                }
            }
        }
        self.pump();
    }

    /// What a send answers: on a live session, `Ok` or a full buffer, or
    /// (over polling, for a text with `\x1e`) a refusal; else
    /// `UnknownSession`. (The transport is read after the send, which does
    /// not change it.)
    fn expect_sent(&mut self, sid: Sid, separator: bool, r: Result<(), UsageError>) {
        if self.is_live(sid) {
            if separator && self.server.transport(sid) == Some(TransportKind::Polling) {
                assert!(
                    matches!(r, Err(UsageError::SeparatorInText | UsageError::BufferFull)),
                    "text with \\x1e over polling: {r:?}"
                );
            } else {
                assert!(
                    matches!(r, Ok(()) | Err(UsageError::BufferFull)),
                    "send on a live session: {r:?}"
                );
            }
        } else {
            assert_eq!(
                r,
                Err(UsageError::UnknownSession(sid)),
                "send on a dead session"
            );
        }
    }

    fn advance_to(&mut self, ms: u64) {
        self.ms = ms;
        let now = self.now();
        self.server.handle_timeout(now);
        self.pump();
        if let Some(t) = self.server.poll_timeout() {
            assert!(t >= now, "poll_timeout {:?} before now", now - t);
        }
    }
}

/// Runs the actions and the checks.
pub fn run(input: Input) {
    let mut sim = Sim::new(input.config, input.seed);
    // Two connections to start with; `Accept` makes more.
    for _ in 0..2 {
        sim.act(Action::Accept);
    }
    for a in input.actions.into_iter().take(64) {
        sim.act(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{BodyIn, EioPacket, MethodIn, PathIn, SidIn, TransportIn};

    fn config() -> ConfigIn {
        ConfigIn {
            ping_interval_ms: 300,
            ping_timeout_ms: 200,
            upgrade_timeout_ms: 1000,
            close_timeout_ms: 1000,
            max_payload: None,
            polling: true,
            websocket: true,
            allow_upgrades: true,
            cors: false,
            max_sessions: 4,
            max_buffered_packets: None,
        }
    }

    fn req(method: MethodIn, sid: SidIn, transport: TransportIn, body: BodyIn) -> Req {
        Req {
            method,
            path: PathIn::Engine,
            sid,
            transport,
            eio: Some(4),
            extra_query: None,
            upgrade: false,
            http10: false,
            connection: None,
            origin: None,
            octet_stream: None,
            body,
            chunked: false,
        }
    }

    fn simulate(actions: Vec<Action>) -> Sim {
        let mut sim = Sim::new(config(), 1);
        for a in actions {
            sim.act(a);
        }
        sim
    }

    #[test]
    fn a_polling_session_upgrades_then_times_out() {
        use Action::*;
        let get = |sid| req(MethodIn::Get, sid, TransportIn::Polling, BodyIn::None);
        let mut upgrade = req(
            MethodIn::Get,
            SidIn::Known(0),
            TransportIn::WebSocket,
            BodyIn::None,
        );
        upgrade.upgrade = true;
        let post = req(
            MethodIn::Post,
            SidIn::Known(0),
            TransportIn::Polling,
            BodyIn::Payload(vec![EioPacket::Text {
                kind: 4,
                text: "hi".into(),
            }]),
        );
        let key = [1, 2, 3, 4];
        let sim = simulate(vec![
            Accept,
            Accept,
            Request {
                conn: 0,
                req: get(SidIn::None),
                cuts: vec![3, 40],
            },
            Request {
                conn: 0,
                req: get(SidIn::Known(0)),
                cuts: vec![],
            },
            Request {
                conn: 1,
                req: post,
                cuts: vec![],
            },
            Send {
                sid: 0,
                data: DataIn::Text("back".into()),
            },
            // Refused over polling, where it would split the payload.
            Send {
                sid: 0,
                data: DataIn::Text("a\u{1e}b".into()),
            },
            Request {
                conn: 2,
                req: upgrade,
                cuts: vec![],
            },
            Frame {
                conn: 2,
                frame: FrameIn::Packet(EioPacket::Probe),
                key,
            },
            Frame {
                conn: 2,
                frame: FrameIn::Packet(EioPacket::Upgrade),
                key,
            },
            Send {
                sid: 0,
                data: DataIn::Binary(vec![1, 2]),
            },
            // Fine over WebSocket.
            Send {
                sid: 0,
                data: DataIn::Text("a\u{1e}b".into()),
            },
            Advance { ms: 400 },
            AdvanceToDeadline,
        ]);
        assert_eq!((sim.sids.len(), sim.messages, sim.upgrades), (1, 1, 1));
        assert_eq!(sim.ws_texts_with_separator, 1);
        assert!(sim.closed.contains(&sim.sids[0]), "ping timeout ends it");
        assert_eq!(sim.server.session_count(), 0);
    }
}
