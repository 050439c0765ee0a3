//! A `socketio::Server` with WebSocket clients driven by an arbitrary list
//! of actions. One client, the *sentinel*, behaves: it joins `/`, answers
//! every ping and every event that wants an ack, and echoes on demand. The
//! others send what the input says: Socket.IO packets of any type with
//! arbitrary namespaces, ack ids, values and attachments (some missing,
//! some extra), raw Engine.IO packets, malformed packets, WebSocket garbage,
//! closes and EOFs. The application, also from the input, emits (with and
//! without acks and timeouts), acks, joins and leaves rooms, broadcasts
//! through `of().to().except().emit()`, disconnects, admits and refuses
//! connections to the namespace that asks (or, as the input says, admits
//! or refuses them all as they come); and time passes.
//!
//! Checked after every action, once everything is drained:
//!
//! * nothing comes for a connection after its `Transmit::Close`, and every
//!   Socket.IO packet a client receives decodes;
//! * `ConnectRequest` only for the deciding namespace; `Connection` once per
//!   socket (for that namespace, only after `admit`); events, acks and
//!   `Disconnect` only for connected sockets, `Disconnect` once;
//! * every `Ack` or `AckTimeout` is for a (socket, id) `emit_with_ack`
//!   returned, and at most one of them per emit;
//! * commands on connected sockets succeed (or find the buffer full), on
//!   others fail with `UnknownSocket`, as does an ack given while handling
//!   an event whose client the same input closed, but then the socket's
//!   `Disconnect` is already queued behind the event; a broadcast reaches
//!   exactly the connected sockets of its namespace in its rooms and not
//!   excepted, as a model of the rooms computes them;
//! * `poll_timeout()` is never before `now` after `handle_timeout(now)`;
//! * a client that sends a malformed Socket.IO packet is closed, but the
//!   sentinel stays connected (unless the application disconnected it),
//!   gets each broadcast meant for it, and has each echo answered.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use bytes::Bytes;
use wsio::{
    engineio::{self, ConnId, Data, Transmit},
    entropy::SeededEntropy,
    socketio::{
        Admission, Broadcast, Config, Decoder, Event, Packet, RESERVED_EVENTS, Server, SocketId,
        UsageError, Value,
    },
    ws::{self, ClientRequest, CloseCode, Message},
};

use crate::{
    HashMap, HashSet,
    values::{AnyPkt, Args, NSPS, Name, Val},
    wire::EioPacket,
};

const ROOMS: [&str; 3] = ["r0", "r1", "r2"];
/// The namespace that decides its connections.
const DECIDE: &str = "/admin";

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct ConfigIn {
    ping_interval_ms: u16,
    ping_timeout_ms: u16,
    connect_timeout_ms: u16,
    max_payload: Option<u16>,
    max_attachments: u8,
}

impl ConfigIn {
    fn build(self) -> Config {
        let ms = |n: u16| Duration::from_millis(u64::from(n));
        // A ping interval of at least 1 s bounds the heartbeats the clients
        // answer while time advances (each is a step of `advance_to`), which
        // keeps executions fast; `eio_server` tries the short ones. A
        // timeout of at least 1 ms gives the sentinel's pong (sent at the
        // very instant of the ping) its chance.
        let mut engine = engineio::Config::default()
            .path("/socket.io/")
            .ping_interval(ms(self.ping_interval_ms.saturating_add(1000)))
            .ping_timeout(ms(self.ping_timeout_ms.max(1)));
        if let Some(p) = self.max_payload {
            // Room for the sentinel's own messages.
            engine = engine.max_payload(usize::from(p).max(256));
        }
        Config::default()
            .engine(engine)
            .connect_timeout(ms(self.connect_timeout_ms))
            .max_attachments(usize::from(self.max_attachments % 5))
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Target {
    Normal,
    WrongVersion,
    Polling,
    OtherPath,
}

#[derive(Arbitrary, Debug)]
pub enum Action {
    /// A new client on WebSocket; with `join`, it asks for that namespace
    /// as soon as the session opens.
    Connect {
        target: Target,
        auto_pong: bool,
        join: Option<u8>,
    },
    /// A Socket.IO packet: its text, then `keep` of its attachments (all if
    /// `None`), then `extra` binary messages.
    Sio {
        peer: u8,
        packet: AnyPkt,
        keep: Option<u8>,
        extra: u8,
    },
    /// A Socket.IO packet with a fixed prefix and an arbitrary rest.
    SioRaw {
        peer: u8,
        prefix: u8,
        rest: String,
    },
    /// A packet the server cannot accept: the client must be closed.
    Malformed {
        peer: u8,
        which: u8,
    },
    Engine {
        peer: u8,
        packet: EioPacket,
    },
    /// Bytes on the connection, below WebSocket.
    Garbage {
        peer: u8,
        data: Vec<u8>,
    },
    WsClose {
        peer: u8,
        code: u16,
    },
    Eof {
        peer: u8,
    },
    /// The client answers an event it received.
    PeerAck {
        peer: u8,
        which: u8,
        args: Args,
    },
    /// The sentinel emits `echo` with an ack; the application answers it.
    Echo,
    Emit {
        socket: u8,
        name: Name,
        args: Args,
    },
    EmitWithAck {
        socket: u8,
        name: Name,
        args: Args,
        timeout_ms: Option<u16>,
    },
    Ack {
        which: u8,
        args: Args,
    },
    Join {
        socket: u8,
        room: u8,
    },
    Leave {
        socket: u8,
        room: u8,
    },
    Broadcast {
        nsp: u8,
        rooms: Vec<u8>,
        except: Vec<u8>,
        /// From this socket (excluded).
        from: Option<u8>,
        volatile: bool,
        args: Args,
    },
    BroadcastDisconnect {
        nsp: u8,
        rooms: Vec<u8>,
        close: bool,
    },
    Disconnect {
        socket: u8,
        close: bool,
    },
    Admit {
        which: u8,
    },
    Refuse {
        which: u8,
        message: String,
        data: Option<Val>,
    },
    Advance {
        ms: u16,
    },
    AdvanceToDeadline,
}

/// How the application answers `ConnectRequest`.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decide {
    /// Through `Admit` and `Refuse` actions.
    Actions,
    AdmitAll,
    RefuseAll,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    config: ConfigIn,
    seed: u64,
    decide: Decide,
    actions: Vec<Action>,
}

struct Peer {
    conn: ConnId,
    ws: Box<ws::Connection>,
    decoder: Decoder,
    auto_pong: bool,
    sentinel: bool,
    /// The namespace to join once the session opens.
    join: Option<String>,
    /// The Engine.IO open packet arrived.
    engine_open: bool,
    /// The server gave `Transmit::Close`.
    server_closed: bool,
    /// The harness gave the server EOF.
    eof: bool,
    /// Raw bytes were fed to the server on this connection: the server
    /// may be in the middle of a frame that swallows what follows.
    garbled: bool,
    /// Events received with an ack id: (namespace, id).
    asked: Vec<(String, u64)>,
    /// Ack ids answered (the sentinel's echoes).
    answered: HashSet<u64>,
    /// Events received, by name.
    heard: HashSet<String>,
}

impl Peer {
    fn send_text(&mut self, text: String) {
        let _ = self.ws.send(Message::text(text));
    }

    fn send_sio(&mut self, p: &Packet) {
        let (text, att) = p.encode();
        self.send_text(format!("4{text}"));
        for a in att {
            let _ = self.ws.send(Message::binary(a));
        }
    }

    fn healthy(&self) -> bool {
        self.engine_open
            && !self.server_closed
            && !self.eof
            && !self.garbled
            && self.ws.state() == ws::State::Open
    }

    /// A message from the server.
    fn on_message(&mut self, m: Message) {
        let packet = match m {
            Message::Text(t) => {
                engineio::Packet::decode_text(t).expect("engine packet from server")
            }
            Message::Binary(b) => engineio::Packet::decode_binary(b),
        };
        let decoded = match (packet.kind, packet.data) {
            (engineio::PacketType::Open, _) => {
                assert!(!self.engine_open, "open packet twice");
                self.engine_open = true;
                if let Some(nsp) = self.join.clone() {
                    self.send_sio(&Packet::Connect {
                        nsp: nsp.into(),
                        data: None,
                    });
                }
                return;
            }
            (engineio::PacketType::Ping, _) => {
                if self.auto_pong {
                    self.send_text("3".into());
                }
                return;
            }
            (engineio::PacketType::Message, Data::Text(t)) => self.decoder.decode_text(&t),
            (engineio::PacketType::Message, Data::Binary(b)) => self.decoder.decode_binary(b),
            _ => return,
        };
        let Some(p) = decoded.unwrap_or_else(|e| panic!("server sent a bad packet: {e:?}")) else {
            return;
        };
        match p {
            Packet::Event { nsp, id, name, .. } => {
                self.heard.insert(name);
                if let Some(id) = id {
                    if self.sentinel {
                        self.send_sio(&Packet::Ack {
                            nsp,
                            id,
                            args: Vec::new(),
                        });
                    } else {
                        self.asked.push((nsp.into_owned(), id));
                    }
                }
            }
            Packet::Ack { id, .. } => {
                self.answered.insert(id);
            }
            _ => {}
        }
    }
}

struct Sim {
    io: Server,
    base: Instant,
    ms: u64,
    seed: u64,
    peers: Vec<Peer>,
    by_conn: HashMap<ConnId, usize>,
    closed_conns: HashSet<ConnId>,
    /// Every socket ever connected, in order, with its namespace.
    sockets: Vec<(SocketId, String)>,
    live: HashSet<SocketId>,
    rooms: HashMap<SocketId, BTreeSet<String>>,
    /// Sockets waiting for admit/refuse.
    pending: Vec<SocketId>,
    admitted: HashSet<SocketId>,
    /// Emits waiting for an ack: (socket, id).
    acks: HashSet<(SocketId, u64)>,
    acks_done: HashSet<(SocketId, u64)>,
    /// Events that want the application's ack: (socket, id).
    asked: Vec<(SocketId, u64)>,
    /// Sockets an echo's ack found gone while answering their event: the
    /// server already dropped them (the same input closed their client),
    /// and their `Disconnect` must be queued behind the event.
    gone: Vec<SocketId>,
    /// The sentinel's socket, once connected; `None` again once the
    /// application disconnected it.
    sentinel: Option<SocketId>,
    sentinel_exempt: bool,
    /// Whether this action may disconnect the sentinel.
    may_drop_sentinel: bool,
    echoes: u64,
    broadcasts: u64,
    decide: Decide,
}

impl Sim {
    fn new(config: ConfigIn, seed: u64, decide: Decide) -> Sim {
        let base = crate::base_instant();
        let mut io = Server::new(config.build(), Box::new(SeededEntropy::new(seed)), base);
        io.add_namespace(DECIDE, Admission::Decide);
        io.add_namespace("/chat", Admission::AcceptAll);
        io.set_dynamic_namespaces(Box::new(|nsp, _| nsp.starts_with("/dyn")));
        Sim {
            io,
            base,
            ms: 0,
            seed,
            peers: Vec::new(),
            by_conn: HashMap::default(),
            closed_conns: HashSet::default(),
            sockets: Vec::new(),
            live: HashSet::default(),
            rooms: HashMap::default(),
            pending: Vec::new(),
            admitted: HashSet::default(),
            acks: HashSet::default(),
            acks_done: HashSet::default(),
            asked: Vec::new(),
            gone: Vec::new(),
            sentinel: None,
            sentinel_exempt: false,
            may_drop_sentinel: false,
            echoes: 0,
            broadcasts: 0,
            decide,
        }
    }

    /// Connects the sentinel, which joins `/` at once.
    fn start(&mut self) {
        self.connect(Target::Normal, true, true, Some("/"));
        let first = self.sockets.first().cloned();
        let (id, nsp) = first.expect("the sentinel connected");
        assert_eq!(nsp, "/");
        self.sentinel = Some(id);
        self.check();
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.ms)
    }

    fn connect(&mut self, target: Target, auto_pong: bool, sentinel: bool, join: Option<&str>) {
        let now = self.now();
        let conn = self.io.accept(now, None);
        let path = match target {
            Target::Normal => "/socket.io/?EIO=4&transport=websocket",
            Target::WrongVersion => "/socket.io/?EIO=3&transport=websocket",
            Target::Polling => "/socket.io/?EIO=4&transport=polling",
            Target::OtherPath => "/elsewhere/?EIO=4&transport=websocket",
        };
        let ws = ws::Connection::client(
            ws::Config::default().max_message_size(64 << 20),
            ClientRequest::new("localhost", path),
            Box::new(SeededEntropy::new(self.seed ^ conn.0)),
        );
        self.by_conn.insert(conn, self.peers.len());
        self.peers.push(Peer {
            conn,
            ws: Box::new(ws),
            decoder: Decoder::new(1_000_000),
            auto_pong: auto_pong || sentinel,
            sentinel,
            join: join.map(str::to_owned),
            engine_open: false,
            server_closed: false,
            eof: false,
            garbled: false,
            asked: Vec::new(),
            answered: HashSet::default(),
            heard: HashSet::default(),
        });
        self.pump();
    }

    /// A peer that is not the sentinel.
    fn peer(&self, i: u8) -> Option<usize> {
        let n = self.peers.len().checked_sub(1)?;
        (n > 0).then(|| 1 + usize::from(i) % n)
    }

    fn socket(&self, i: u8) -> Option<(SocketId, String)> {
        (!self.sockets.is_empty())
            .then(|| self.sockets[usize::from(i) % self.sockets.len()].clone())
    }

    /// Drains the server and the clients until nothing moves.
    fn pump(&mut self) {
        let now = self.now();
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(t) = self.io.poll_transmit() {
                moved = true;
                let conn = t.conn();
                assert!(
                    !self.closed_conns.contains(&conn),
                    "transmit after Close: {t:?}"
                );
                let Some(&i) = self.by_conn.get(&conn) else {
                    panic!("transmit for an unknown connection: {t:?}");
                };
                let p = &mut self.peers[i];
                match t {
                    Transmit::Data { data, .. } => p.ws.handle_input(now, &data),
                    Transmit::Close { .. } => {
                        self.closed_conns.insert(conn);
                        p.server_closed = true;
                        p.ws.handle_eof(now);
                    }
                    Transmit::Response { .. } => panic!("a response on a raw connection"),
                }
            }
            let mut out: Vec<(ConnId, Bytes)> = Vec::new();
            for p in &mut self.peers {
                while let Some(ev) = p.ws.poll_event() {
                    moved = true;
                    if let ws::Event::Message(m) = ev {
                        p.on_message(m);
                    }
                }
                while let Some(t) = p.ws.poll_transmit() {
                    if let ws::Transmit::Data(b) = t
                        && !p.server_closed
                        && !p.eof
                    {
                        out.push((p.conn, b));
                    }
                }
            }
            while let Some(ev) = self.io.poll_event() {
                moved = true;
                self.event(ev);
            }
            for (conn, b) in out {
                moved = true;
                self.io.handle_input(now, conn, &b);
            }
            if !moved {
                self.check();
                return;
            }
        }
        panic!("never went quiet");
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::ConnectRequest { socket, nsp, .. } => {
                assert_eq!(nsp, DECIDE, "ConnectRequest for {nsp}");
                assert!(!self.pending.contains(&socket), "second ConnectRequest");
                let now = self.now();
                match self.decide {
                    Decide::Actions => self.pending.push(socket),
                    Decide::AdmitAll => {
                        self.admitted.insert(socket);
                        assert_eq!(self.io.admit(now, socket), Ok(()), "admit on request");
                    }
                    Decide::RefuseAll => {
                        let r = self.io.refuse(now, socket, "no", None);
                        assert_eq!(r, Ok(()), "refuse on request");
                    }
                }
            }
            Event::Connection { socket, nsp, .. } => {
                assert!(
                    !self.sockets.iter().any(|(s, _)| *s == socket),
                    "{socket:?} connected twice"
                );
                if nsp == DECIDE {
                    assert!(
                        self.admitted.contains(&socket),
                        "Connection to {nsp} without admit"
                    );
                }
                self.sockets.push((socket, nsp));
                self.live.insert(socket);
            }
            Event::Event {
                socket, name, ack, ..
            } => {
                assert!(
                    self.live.contains(&socket),
                    "event from {socket:?}, not connected"
                );
                if let Some(id) = ack {
                    if name == "echo" {
                        match self.io.ack(socket, id, vec![Value::from(id)]) {
                            Ok(()) | Err(UsageError::Engine(_)) => {}
                            Err(UsageError::UnknownSocket(s)) if s == socket => {
                                self.gone.push(socket);
                            }
                            r => panic!("{r:?}"),
                        }
                    } else {
                        self.asked.push((socket, id));
                    }
                }
            }
            Event::Ack { socket, id, .. } | Event::AckTimeout { socket, id } => {
                assert!(
                    self.live.contains(&socket),
                    "ack for {socket:?}, not connected"
                );
                assert!(
                    self.acks.remove(&(socket, id)),
                    "ack {id} for {socket:?}: not waiting"
                );
                assert!(
                    self.acks_done.insert((socket, id)),
                    "second answer to ack {id}"
                );
            }
            Event::Disconnect { socket, .. } => {
                assert!(
                    self.live.remove(&socket),
                    "Disconnect of {socket:?}, not connected"
                );
                self.rooms.remove(&socket);
                self.acks.retain(|(s, _)| *s != socket);
                self.asked.retain(|(s, _)| *s != socket);
                if self.sentinel == Some(socket) {
                    assert!(self.may_drop_sentinel, "the sentinel was disconnected");
                    self.sentinel = None;
                    self.sentinel_exempt = true;
                }
            }
            Event::Request { .. } => {}
        }
    }

    fn check(&mut self) {
        for s in self.gone.drain(..) {
            assert!(
                !self.live.contains(&s),
                "an ack found {s:?} gone, but it was never disconnected"
            );
        }
        if !self.sentinel_exempt && self.sentinel.is_some() {
            assert!(self.peers[0].healthy(), "the sentinel lost its connection");
        }
    }

    fn act(&mut self, action: Action) {
        let now = self.now();
        self.may_drop_sentinel = false;
        match action {
            Action::Connect {
                target,
                auto_pong,
                join,
            } => {
                if self.peers.len() < 8 {
                    let join = join.map(|j| NSPS[usize::from(j) % NSPS.len()]);
                    self.connect(target, auto_pong, false, join);
                }
            }
            Action::Sio {
                peer,
                packet,
                keep,
                extra,
            } => {
                let Some(i) = self.peer(peer) else { return };
                let p = &mut self.peers[i];
                let (text, att) = packet.0.encode();
                p.send_text(format!("4{text}"));
                let keep = keep.map_or(att.len(), usize::from);
                for a in att.into_iter().take(keep) {
                    let _ = p.ws.send(Message::binary(a));
                }
                for k in 0..(extra % 3) {
                    let _ = p.ws.send(Message::binary(vec![k]));
                }
            }
            Action::SioRaw { peer, prefix, rest } => {
                const PREFIXES: [&str; 10] = [
                    "0",
                    "1",
                    "2",
                    "3",
                    "4",
                    "51-",
                    "0/admin,",
                    "0/chat,",
                    "2/chat,12",
                    "3/x,7",
                ];
                let Some(i) = self.peer(peer) else { return };
                let prefix = PREFIXES[usize::from(prefix) % PREFIXES.len()];
                self.peers[i].send_text(format!("4{prefix}{rest}"));
            }
            Action::Malformed { peer, which } => {
                const BAD: [&str; 8] = [
                    "9",
                    "2{}",
                    "2[]",
                    r#"2["connect"]"#,
                    "3[1]",
                    "1{}",
                    "0[]",
                    r#"4{"a":1}"#,
                ];
                let Some(i) = self.peer(peer) else { return };
                let healthy = self.peers[i].healthy();
                let bad = BAD[usize::from(which) % BAD.len()];
                self.peers[i].send_text(format!("4{bad}"));
                self.pump();
                if healthy {
                    assert!(
                        self.peers[i].server_closed,
                        "a client that sent {bad:?} is still open"
                    );
                }
            }
            Action::Engine { peer, packet } => {
                let Some(i) = self.peer(peer) else { return };
                let p = packet.build();
                let m = match &p.data {
                    Data::Binary(b) => Message::binary(b.clone()),
                    Data::Text(t) => {
                        Message::text(format!("{}{}", char::from(p.kind.as_char()), t.as_str()))
                    }
                };
                let _ = self.peers[i].ws.send(m);
            }
            Action::Garbage { peer, data } => {
                let Some(i) = self.peer(peer) else { return };
                let p = &mut self.peers[i];
                if !p.server_closed && !p.eof {
                    p.garbled |= !data.is_empty();
                    let conn = p.conn;
                    self.io.handle_input(now, conn, &data);
                }
            }
            Action::WsClose { peer, code } => {
                let Some(i) = self.peer(peer) else { return };
                let _ = self.peers[i].ws.close(now, CloseCode(code), "bye");
            }
            Action::Eof { peer } => {
                let Some(i) = self.peer(peer) else { return };
                let p = &mut self.peers[i];
                if !p.eof && !p.server_closed {
                    p.eof = true;
                    let conn = p.conn;
                    self.io.handle_eof(now, conn);
                }
            }
            Action::PeerAck { peer, which, args } => {
                let Some(i) = self.peer(peer) else { return };
                let p = &mut self.peers[i];
                if !p.asked.is_empty() {
                    let (nsp, id) = p.asked.remove(usize::from(which) % p.asked.len());
                    p.send_sio(&Packet::Ack {
                        nsp: nsp.into(),
                        id,
                        args: args.0,
                    });
                }
            }
            Action::Echo => {
                if self.sentinel.is_some() && !self.sentinel_exempt {
                    self.echoes += 1;
                    let id = 1_000_000 + self.echoes;
                    self.peers[0].send_sio(&Packet::Event {
                        nsp: "/".into(),
                        id: Some(id),
                        name: "echo".into(),
                        args: vec![Value::from(id)],
                    });
                    self.pump();
                    if !self.sentinel_exempt {
                        assert!(self.peers[0].answered.contains(&id), "echo {id} unanswered");
                    }
                }
            }
            Action::Emit { socket, name, args } => {
                let Some((id, _)) = self.socket(socket) else {
                    return;
                };
                let r = self.io.emit(id, &name.0, args.0);
                self.expect(id, &name.0, r.map(|_| ()));
            }
            Action::EmitWithAck {
                socket,
                name,
                args,
                timeout_ms,
            } => {
                let Some((id, _)) = self.socket(socket) else {
                    return;
                };
                let timeout = timeout_ms.map(|t| Duration::from_millis(u64::from(t)));
                let r = self.io.emit_with_ack(now, id, &name.0, args.0, timeout);
                if let Ok(ack) = r {
                    assert!(self.acks.insert((id, ack)), "ack id {ack} given twice");
                    assert!(!self.acks_done.contains(&(id, ack)), "ack id {ack} reused");
                }
                self.expect(id, &name.0, r.map(|_| ()));
            }
            Action::Ack { which, args } => {
                if self.asked.is_empty() {
                    return;
                }
                let (id, ack) = self.asked.remove(usize::from(which) % self.asked.len());
                let r = self.io.ack(id, ack, args.0);
                self.expect(id, "", r);
            }
            Action::Join { socket, room } => {
                let Some((id, _)) = self.socket(socket) else {
                    return;
                };
                let room = ROOMS[usize::from(room) % ROOMS.len()];
                let r = self.io.join(id, room);
                if r.is_ok() {
                    self.rooms.entry(id).or_default().insert(room.to_owned());
                }
                self.expect(id, "", r);
            }
            Action::Leave { socket, room } => {
                let Some((id, _)) = self.socket(socket) else {
                    return;
                };
                let room = ROOMS[usize::from(room) % ROOMS.len()];
                let r = self.io.leave(id, room);
                if r.is_ok() {
                    self.rooms.entry(id).or_default().remove(room);
                }
                self.expect(id, "", r);
            }
            Action::Broadcast {
                nsp,
                rooms,
                except,
                from,
                volatile,
                args,
            } => self.broadcast(nsp, &rooms, &except, from, volatile, args.0),
            Action::BroadcastDisconnect { nsp, rooms, close } => {
                let nsp = NSPS[usize::from(nsp) % NSPS.len()];
                let rooms = self.room_names(&rooms);
                let mut b = self.io.of(nsp);
                for r in &rooms {
                    b = b.to(r);
                }
                self.may_drop_sentinel = true;
                b.disconnect(now, close);
            }
            Action::Disconnect { socket, close } => {
                let Some((id, _)) = self.socket(socket) else {
                    return;
                };
                self.may_drop_sentinel = self.sentinel == Some(id);
                let r = self.io.disconnect(now, id, close);
                self.expect(id, "", r);
            }
            Action::Admit { which } => {
                if self.pending.is_empty() {
                    return;
                }
                let id = self.pending.remove(usize::from(which) % self.pending.len());
                self.admitted.insert(id);
                let r = self.io.admit(now, id);
                // The client may have gone meanwhile.
                assert!(
                    matches!(r, Ok(()) | Err(UsageError::NotPending(_))),
                    "{r:?}"
                );
            }
            Action::Refuse {
                which,
                message,
                data,
            } => {
                if self.pending.is_empty() {
                    return;
                }
                let id = self.pending.remove(usize::from(which) % self.pending.len());
                let r = self.io.refuse(now, id, &message, data.map(|d| d.0));
                assert!(
                    matches!(r, Ok(()) | Err(UsageError::NotPending(_))),
                    "{r:?}"
                );
            }
            Action::Advance { ms } => self.advance_to(self.ms + u64::from(ms)),
            Action::AdvanceToDeadline => {
                if let Some(d) = self.io.poll_timeout() {
                    let ms = d.saturating_duration_since(self.base).as_millis() as u64;
                    let ms = if self.base + Duration::from_millis(ms) < d {
                        ms + 1
                    } else {
                        ms
                    };
                    self.advance_to(ms.max(self.ms));
                }
            }
        }
        self.pump();
    }

    fn room_names(&self, picks: &[u8]) -> Vec<String> {
        picks
            .iter()
            .take(3)
            .map(|&r| match usize::from(r) % (ROOMS.len() + 1) {
                i if i < ROOMS.len() => ROOMS[i].to_owned(),
                // A socket id names the room of that socket.
                _ => self
                    .socket(r / 4)
                    .map_or_else(|| "nobody".to_owned(), |(id, _)| id.as_str().to_owned()),
            })
            .collect()
    }

    fn broadcast(
        &mut self,
        nsp: u8,
        rooms: &[u8],
        except: &[u8],
        from: Option<u8>,
        volatile: bool,
        args: Vec<Value>,
    ) {
        let from = from.and_then(|f| self.socket(f)).map(|(id, _)| id);
        let nsp = match from {
            // `broadcast_from` takes the socket's namespace; a socket that
            // is gone has none.
            Some(id) => self
                .sockets
                .iter()
                .find(|(s, _)| *s == id && self.live.contains(s))
                .map_or(String::new(), |(_, n)| n.clone()),
            None => NSPS[usize::from(nsp) % NSPS.len()].to_owned(),
        };
        let rooms = self.room_names(rooms);
        let except = self.room_names(except);
        let in_room = |s: &SocketId, r: &String| {
            s.as_str() == r || self.rooms.get(s).is_some_and(|set| set.contains(r))
        };
        let want: BTreeSet<SocketId> = self
            .sockets
            .iter()
            .filter(|(s, n)| *n == nsp && self.live.contains(s))
            .map(|(s, _)| *s)
            .filter(|s| rooms.is_empty() || rooms.iter().any(|r| in_room(s, r)))
            .filter(|s| !except.iter().any(|r| in_room(s, r)))
            .filter(|s| Some(*s) != from)
            .collect();
        let targets: BTreeSet<SocketId> =
            build(&mut self.io, from, &nsp, &rooms, &except, volatile)
                .sockets()
                .into_iter()
                .collect();
        assert_eq!(
            targets, want,
            "broadcast targets in {nsp} to {rooms:?} except {except:?}"
        );
        self.broadcasts += 1;
        let name = format!("bc{}", self.broadcasts);
        let count = build(&mut self.io, from, &nsp, &rooms, &except, volatile)
            .emit(&name, args)
            .expect("broadcast");
        assert!(
            count <= targets.len(),
            "{count} deliveries for {} targets",
            targets.len()
        );
        self.pump();
        if let Some(s) = self.sentinel
            && targets.contains(&s)
            && !volatile
            && !self.sentinel_exempt
        {
            assert!(
                self.peers[0].heard.contains(&name),
                "the sentinel missed {name}"
            );
        }
    }

    /// What a command on `socket` may answer.
    fn expect(&self, socket: SocketId, name: &str, r: Result<(), UsageError>) {
        if RESERVED_EVENTS.contains(&name) {
            assert_eq!(r, Err(UsageError::ReservedEvent(name.to_owned())));
        } else if self.live.contains(&socket) {
            assert!(
                matches!(r, Ok(()) | Err(UsageError::Engine(_))),
                "command on a live socket: {r:?}"
            );
        } else {
            assert_eq!(
                r,
                Err(UsageError::UnknownSocket(socket)),
                "command on a gone socket"
            );
        }
    }

    fn advance_to(&mut self, ms: u64) {
        let end = ms;
        // Step through the deadlines on the way, as a driver's timer would,
        // so that the clients answer pings in time.
        for _ in 0..1000 {
            let Some(d) = self.io.poll_timeout() else {
                break;
            };
            let at = d.saturating_duration_since(self.base).as_millis() as u64;
            let at = if self.base + Duration::from_millis(at) < d {
                at + 1
            } else {
                at
            };
            if at > end {
                break;
            }
            self.step(at.max(self.ms));
        }
        self.step(end.max(self.ms));
    }

    fn step(&mut self, ms: u64) {
        self.ms = ms;
        let now = self.now();
        self.io.handle_timeout(now);
        self.pump();
        if let Some(t) = self.io.poll_timeout() {
            assert!(t >= now, "poll_timeout {:?} before now", now - t);
        }
    }
}

/// The broadcast an action describes.
fn build<'a>(
    io: &'a mut Server,
    from: Option<SocketId>,
    nsp: &str,
    rooms: &[String],
    except: &[String],
    volatile: bool,
) -> Broadcast<'a> {
    let mut b = match from {
        Some(id) => io.broadcast_from(id),
        None => io.of(nsp),
    };
    for r in rooms {
        b = b.to(r);
    }
    for r in except {
        b = b.except(r);
    }
    if volatile {
        b = b.volatile();
    }
    b
}

/// Runs the actions and the checks.
pub fn run(input: Input) {
    let mut sim = Sim::new(input.config, input.seed, input.decide);
    sim.start();
    for a in input.actions.into_iter().take(64) {
        sim.act(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{AnyPkt, Args, Name};

    fn simulate(actions: Vec<Action>) -> Sim {
        let config = ConfigIn {
            ping_interval_ms: 250,
            ping_timeout_ms: 200,
            connect_timeout_ms: 1000,
            max_payload: None,
            max_attachments: 2,
        };
        let mut sim = Sim::new(config, 9, Decide::Actions);
        sim.start();
        for a in actions {
            sim.act(a);
        }
        sim
    }

    fn connect(nsp: &str) -> AnyPkt {
        AnyPkt(Packet::Connect {
            nsp: nsp.to_owned().into(),
            data: None,
        })
    }

    #[test]
    fn garbage_closes_its_client_and_the_sentinel_goes_on() {
        use Action::*;
        let sim = simulate(vec![
            Connect {
                target: Target::Normal,
                auto_pong: true,
                join: None,
            },
            Sio {
                peer: 0,
                packet: connect("/chat"),
                keep: None,
                extra: 0,
            },
            Sio {
                peer: 0,
                packet: connect("/admin"),
                keep: None,
                extra: 0,
            },
            Admit { which: 0 },
            Join { socket: 0, room: 1 },
            Join { socket: 1, room: 1 },
            EmitWithAck {
                socket: 1,
                name: Name("q".into()),
                args: Args(vec![]),
                timeout_ms: Some(10),
            },
            EmitWithAck {
                socket: 0,
                name: Name("q".into()),
                args: Args(vec![]),
                timeout_ms: None,
            },
            Broadcast {
                nsp: 0,
                rooms: vec![1],
                except: vec![],
                from: None,
                volatile: false,
                args: Args(vec![Value::from(1)]),
            },
            Echo,
            Advance { ms: 5000 },
            Malformed { peer: 0, which: 0 },
            Echo,
            Advance { ms: 5000 },
            Echo,
        ]);
        // Sentinel on `/`, then the peer on `/chat` and `/admin`.
        assert_eq!(sim.sockets.len(), 3);
        assert_eq!(
            sim.acks_done.len(),
            2,
            "the sentinel's ack and the peer's timeout"
        );
        assert!(sim.peers[1].server_closed);
        assert!(sim.peers[0].healthy() && sim.echoes == 3 && sim.broadcasts == 1);
        assert!(sim.peers[0].heard.contains("bc1"));
    }
}
