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
//!
//! The server may also have connection state recovery, be a node of a
//! cluster, decide the events of `/chat` and clean up dynamic namespaces.
//! The input then also has clients that come back with another client's
//! `pid` and last offset (or made-up ones), operations on selections
//! (`sockets_join`/`sockets_leave`/`fetch_sockets`), broadcasts with
//! acknowledgements, server-side emits, per-socket data, watched sockets,
//! verdicts on held events, a shutdown, and messages from another node of
//! the cluster (requests and answers, to requests of ours or to none).
//! Checked as well:
//!
//! * with recovery, every event a client gets without an ack id ends with a
//!   string offset; each client's offsets increase; a client that
//!   recovered another's session gets none of the offsets that one got; a
//!   `Connection` that says `recovered` is for a socket id that was
//!   connected before in that namespace and is not any more, and takes its
//!   rooms back;
//! * each request id (`fetch_sockets`, `emit_with_ack` on a broadcast,
//!   `server_side_emit_with_ack`) ends in exactly one event; outside a
//!   cluster a fetch ends at once with exactly the sockets the model
//!   selects, with their rooms; outside a cluster nothing but answers goes
//!   to `poll_cluster`;
//! * `Outgoing` only for watched sockets, `EventRequest` only for `/chat`,
//!   one at a time per socket.

use std::{
    collections::BTreeSet,
    ops::ControlFlow,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use bytes::Bytes;
use wsio::{
    engineio::{self, ConnId, Data, Transmit},
    entropy::SeededEntropy,
    machine::drain,
    socketio::{
        Admission, Broadcast, ClusterAnswer, ClusterMessage, Config, Decoder, Event, Packet,
        RESERVED_EVENTS, RecoveryConfig, RequestId, Selection, Server, SocketId, SocketInfo,
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
    recovery: Option<RecoveryIn>,
    cluster: bool,
    cleanup: bool,
    decide_events: bool,
    max_held: u8,
}

/// Connection state recovery, with small bounds so that they are crossed.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct RecoveryIn {
    duration_ms: u16,
    skip_middlewares: bool,
    max_packets: u8,
    max_packet_bytes: u16,
    max_sessions: u8,
    max_session_bytes: u16,
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
        let recovery = self.recovery.map(|r| {
            RecoveryConfig::default()
                .max_disconnection_duration(ms(r.duration_ms))
                .skip_middlewares(r.skip_middlewares)
                .max_packets(usize::from(r.max_packets), usize::from(r.max_packet_bytes))
                .max_sessions(
                    usize::from(r.max_sessions),
                    usize::from(r.max_session_bytes),
                )
        });
        Config::default()
            .engine(engine)
            .connect_timeout(ms(self.connect_timeout_ms))
            .max_attachments(usize::from(self.max_attachments % 5))
            .recovery(recovery)
            .cluster(self.cluster)
            .cleanup_empty_child_namespaces(self.cleanup)
            .max_held_events(1 + usize::from(self.max_held % 8))
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
    /// A new client asks for the session of the client `from` in `nsp`,
    /// with its `pid` and last offset (made-up ones when it has none, or
    /// with `fake`).
    Recover {
        from: u8,
        nsp: u8,
        fake: bool,
    },
    /// An operation on a selection.
    Select {
        op: SelectOp,
        nsp: u8,
        rooms: Vec<u8>,
        except: Vec<u8>,
        room: u8,
    },
    BroadcastWithAck {
        nsp: u8,
        rooms: Vec<u8>,
        except: Vec<u8>,
        from: Option<u8>,
        timeout_ms: u16,
        args: Args,
    },
    ServerSideEmit {
        ack_ms: Option<u16>,
        args: Args,
    },
    SetData {
        socket: u8,
        data: Val,
    },
    Watch {
        socket: u8,
        on: bool,
    },
    /// A verdict on an event held for one.
    Verdict {
        which: u8,
        pass: bool,
    },
    /// A message from another node of the cluster.
    Cluster(ClusterIn),
    CloseAll,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum SelectOp {
    Join,
    Leave,
    Fetch,
}

/// What another node of a cluster may send.
#[derive(Arbitrary, Debug)]
pub enum ClusterIn {
    Broadcast {
        nsp: u8,
        rooms: Vec<u8>,
        except: Vec<u8>,
        volatile: bool,
        args: Args,
        ack: Option<(u8, u16)>,
    },
    Join {
        nsp: u8,
        rooms: Vec<u8>,
        except: Vec<u8>,
        room: u8,
        leave: bool,
    },
    Disconnect {
        nsp: u8,
        rooms: Vec<u8>,
        close: bool,
    },
    Fetch {
        nsp: u8,
        rooms: Vec<u8>,
        except: Vec<u8>,
        request: u8,
    },
    ServerSideEmit {
        name: Name,
        args: Args,
        request: Option<u8>,
    },
    /// An answer to one of our requests (or to a made-up one).
    Answer { request: u8, answer: AnswerIn },
}

#[derive(Arbitrary, Debug)]
pub enum AnswerIn {
    Nodes(u8),
    Sockets(u8),
    ServerSideAck(Val),
    ClientCount(u8),
    BroadcastAck(Args),
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
    /// The auth payload of its CONNECT.
    auth: Option<Value>,
    /// Whether the server has recovery on: every event without an ack id
    /// ends with an offset.
    recovery: bool,
    /// The private id of each namespace's socket, from its CONNECT answer.
    pids: HashMap<String, String>,
    /// The last offset received in each namespace, and every one.
    last_offset: HashMap<String, String>,
    offsets: HashSet<String>,
    /// The sequence number of the last offset received.
    last_seq: Option<u64>,
    /// The client whose session this one asked for: (peer, nsp, pid).
    from: Option<(usize, String, String)>,
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
                        data: self.auth.clone(),
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
            Packet::Connect {
                nsp,
                data: Some(data),
            } => {
                if let Some(pid) = data.get("pid").and_then(Value::as_str) {
                    self.pids.insert(nsp.into_owned(), pid.to_owned());
                }
            }
            Packet::Event {
                nsp,
                id: None,
                name,
                args,
            } if self.recovery && args.last() != Some(&Value::Null) => {
                // (A volatile event has no offset: the harness ends those
                // with `null`.)
                let offset = args.last().and_then(Value::as_str);
                let offset = offset.unwrap_or_else(|| panic!("{name} came without an offset"));
                let seq = offset_seq(offset).expect("an offset of the server's shape");
                assert!(
                    self.last_seq.is_none_or(|last| seq > last),
                    "offsets out of order: {seq} after {:?}",
                    self.last_seq
                );
                self.last_seq = Some(seq);
                assert!(
                    self.offsets.insert(offset.to_owned()),
                    "offset {offset} twice"
                );
                self.last_offset.insert(nsp.into_owned(), offset.to_owned());
                self.heard.insert(name);
            }
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

/// The sequence number of an offset: what follows its 4-character prefix,
/// in base64url (the shape `socketio::Server` gives them).
fn offset_seq(offset: &str) -> Option<u64> {
    const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let rest = offset.as_bytes().get(4..)?;
    rest.iter().try_fold(0u64, |n, c| {
        let d = DIGITS.iter().position(|x| x == c)? as u64;
        n.checked_mul(64)?.checked_add(d)
    })
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
    config: ConfigIn,
    /// The rooms of sockets that went, for a recovery.
    gone_rooms: HashMap<SocketId, BTreeSet<String>>,
    /// Requests that end in one event, open and ended.
    requests: Vec<RequestId>,
    requests_done: HashSet<RequestId>,
    /// Events held for a verdict: (socket, check).
    checks: Vec<(SocketId, u64)>,
    watched: HashSet<SocketId>,
    /// The last fetch's sockets, by request.
    fetched: HashMap<RequestId, Vec<SocketInfo>>,
}

impl Sim {
    fn new(config: ConfigIn, seed: u64, decide: Decide) -> Sim {
        let base = crate::base_instant();
        let mut io = Server::new(config.build(), Box::new(SeededEntropy::new(seed)), base);
        io.add_namespace(DECIDE, Admission::Decide);
        io.add_namespace("/chat", Admission::AcceptAll);
        io.set_dynamic_namespaces(Box::new(|nsp, _| nsp.starts_with("/dyn")));
        if config.decide_events {
            io.set_event_admission("/chat", Admission::Decide);
        }
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
            config,
            gone_rooms: HashMap::default(),
            requests: Vec::new(),
            requests_done: HashSet::default(),
            checks: Vec::new(),
            watched: HashSet::default(),
            fetched: HashMap::default(),
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
        self.connect_with(target, auto_pong, sentinel, join, None, None);
    }

    fn connect_with(
        &mut self,
        target: Target,
        auto_pong: bool,
        sentinel: bool,
        join: Option<&str>,
        auth: Option<Value>,
        from: Option<(usize, String, String)>,
    ) {
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
            auth,
            recovery: self.config.recovery.is_some(),
            pids: HashMap::default(),
            last_offset: HashMap::default(),
            offsets: HashSet::default(),
            last_seq: None,
            from,
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
            let (mut transmits, mut events) = (Vec::new(), Vec::new());
            drain(
                &mut self.io,
                now,
                |_, t| {
                    transmits.push(t);
                    ControlFlow::Continue(())
                },
                |_, ev| events.push(ev),
            );
            let mut moved = !transmits.is_empty() || !events.is_empty();
            for t in transmits {
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
                while let Some(ev) = p.ws.poll_event(now) {
                    moved = true;
                    if let ws::Event::Message(m) = ev {
                        p.on_message(m);
                    }
                }
                while let Some(t) = p.ws.poll_transmit(now) {
                    if let ws::Transmit::Data(b) = t
                        && !p.server_closed
                        && !p.eof
                    {
                        out.push((p.conn, b));
                    }
                }
            }
            for ev in events {
                self.event(ev);
            }
            while let Some(m) = self.io.poll_cluster() {
                moved = true;
                assert!(
                    self.config.cluster || matches!(m, ClusterMessage::Response { .. }),
                    "a cluster message outside a cluster: {m:?}"
                );
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
            Event::Connection {
                socket,
                nsp,
                recovered,
                ..
            } => {
                assert!(!self.live.contains(&socket), "{socket:?} connected twice");
                let before = self
                    .sockets
                    .iter()
                    .find(|(s, _)| *s == socket)
                    .map(|(_, n)| n.clone());
                let skip = self.config.recovery.is_some_and(|r| r.skip_middlewares);
                if recovered {
                    assert!(self.config.recovery.is_some(), "recovered without recovery");
                    assert_eq!(
                        before.as_deref(),
                        Some(nsp.as_str()),
                        "recovered {socket:?}, never connected to {nsp}"
                    );
                    let rooms = self.gone_rooms.remove(&socket).unwrap_or_default();
                    self.rooms.insert(socket, rooms);
                } else if before.is_some() {
                    // A claimed session whose packets fell out while the
                    // application decided: the old id, not recovered.
                    assert!(
                        self.config.recovery.is_some() && !skip && nsp == DECIDE,
                        "{socket:?} connected twice"
                    );
                    self.gone_rooms.remove(&socket);
                }
                if nsp == DECIDE && !(recovered && skip) {
                    assert!(
                        self.admitted.contains(&socket),
                        "Connection to {nsp} without admit"
                    );
                }
                if before.is_none() {
                    self.sockets.push((socket, nsp));
                }
                self.live.insert(socket);
            }
            Event::EventRequest { socket, check, .. } => {
                assert!(
                    self.live.contains(&socket),
                    "EventRequest from a gone socket"
                );
                let nsp = self.sockets.iter().find(|(s, _)| *s == socket);
                assert!(
                    self.config.decide_events && nsp.is_some_and(|(_, n)| n == "/chat"),
                    "EventRequest outside /chat"
                );
                assert!(
                    !self.checks.iter().any(|(s, _)| *s == socket),
                    "two events of one socket asked about"
                );
                self.checks.push((socket, check));
            }
            Event::Outgoing { socket, .. } => {
                assert!(
                    self.watched.contains(&socket) && self.live.contains(&socket),
                    "Outgoing for an unwatched socket"
                );
            }
            Event::BroadcastAck { request, .. } | Event::ServerSideAcks { request, .. } => {
                self.request_done(request);
            }
            Event::Fetched {
                request, sockets, ..
            } => {
                self.fetched.insert(request.clone(), sockets);
                self.request_done(request);
            }
            Event::ServerSideEmit {
                reply: Some(reply), ..
            } => {
                self.io.server_side_reply(reply, Value::from("answer"));
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
                if let Some(rooms) = self.rooms.remove(&socket) {
                    self.gone_rooms.insert(socket, rooms);
                }
                self.watched.remove(&socket);
                self.checks.retain(|(s, _)| *s != socket);
                self.acks.retain(|(s, _)| *s != socket);
                self.asked.retain(|(s, _)| *s != socket);
                if self.sentinel == Some(socket) {
                    assert!(self.may_drop_sentinel, "the sentinel was disconnected");
                    self.sentinel = None;
                    self.sentinel_exempt = true;
                }
            }
            Event::Request { .. } => {}
            _ => {}
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
        // A client that recovered another's session got none of what that
        // one got.
        for p in &self.peers {
            let Some((from, nsp, pid)) = &p.from else {
                continue;
            };
            if p.pids.get(nsp) == Some(pid) {
                let twice = p.offsets.intersection(&self.peers[*from].offsets).next();
                assert!(
                    twice.is_none(),
                    "{twice:?} delivered twice across a recovery"
                );
            }
        }
    }

    fn request_done(&mut self, request: RequestId) {
        assert!(
            self.requests.contains(&request),
            "an answer to {request:?}, never asked"
        );
        assert!(
            self.requests_done.insert(request),
            "a request answered twice"
        );
    }

    fn request(&mut self, request: RequestId) {
        assert!(
            !self.requests.contains(&request),
            "request id {request:?} given twice"
        );
        self.requests.push(request);
    }

    /// The live sockets of `nsp` a selection names, as the model has them.
    fn selected(
        &self,
        nsp: &str,
        rooms: &[String],
        except: &[String],
        from: Option<SocketId>,
    ) -> BTreeSet<SocketId> {
        let in_room = |s: &SocketId, r: &String| {
            s.as_str() == r || self.rooms.get(s).is_some_and(|set| set.contains(r))
        };
        self.sockets
            .iter()
            .filter(|(s, n)| *n == nsp && self.live.contains(s))
            .map(|(s, _)| *s)
            .filter(|s| rooms.is_empty() || rooms.iter().any(|r| in_room(s, r)))
            .filter(|s| !except.iter().any(|r| in_room(s, r)))
            .filter(|s| Some(*s) != from)
            .collect()
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
                b.disconnect_sockets(now, close);
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
            Action::Recover { from, nsp, fake } => {
                if self.peers.len() >= 12 {
                    return;
                }
                let nsp = NSPS[usize::from(nsp) % NSPS.len()];
                let i = usize::from(from) % self.peers.len();
                let p = &self.peers[i];
                let (pid, offset) = match (p.pids.get(nsp), p.last_offset.get(nsp), fake) {
                    (Some(pid), Some(offset), false) => (pid.clone(), offset.clone()),
                    (Some(pid), None, false) => (pid.clone(), "AAAAA".to_owned()),
                    _ => ("nope".to_owned(), "x".to_owned()),
                };
                let auth = Value::object([
                    ("pid", Value::from(pid.as_str())),
                    ("offset", Value::from(offset)),
                ]);
                let origin = Some((i, nsp.to_owned(), pid));
                self.connect_with(Target::Normal, true, false, Some(nsp), Some(auth), origin);
            }
            Action::Select {
                op,
                nsp,
                rooms,
                except,
                room,
            } => {
                let nsp = NSPS[usize::from(nsp) % NSPS.len()];
                let rooms = self.room_names(&rooms);
                let except = self.room_names(&except);
                let room = ROOMS[usize::from(room) % ROOMS.len()];
                let want = self.selected(nsp, &rooms, &except, None);
                let b = build(&mut self.io, None, nsp, &rooms, &except, false);
                match op {
                    SelectOp::Join => {
                        b.sockets_join(&[room]);
                        for s in &want {
                            self.rooms.entry(*s).or_default().insert(room.to_owned());
                        }
                    }
                    SelectOp::Leave => {
                        b.sockets_leave(&[room]);
                        for s in &want {
                            self.rooms.entry(*s).or_default().remove(room);
                        }
                    }
                    SelectOp::Fetch => {
                        let r = b.fetch_sockets(now, Duration::from_millis(500));
                        self.request(r.clone());
                        self.pump();
                        if !self.config.cluster {
                            let got = self.fetched.get(&r).expect("a fetch ends at once");
                            let ids: BTreeSet<SocketId> = got
                                .iter()
                                .map(|i| SocketId::parse(&i.id).expect("a socket id"))
                                .collect();
                            assert_eq!(ids, want, "fetch in {nsp} to {rooms:?} except {except:?}");
                            for i in got {
                                let id = SocketId::parse(&i.id).expect("a socket id");
                                let mut model = vec![i.id.clone()];
                                model.extend(self.rooms.get(&id).into_iter().flatten().cloned());
                                assert_eq!(i.rooms, model, "rooms of {id:?}");
                            }
                        }
                    }
                }
            }
            Action::BroadcastWithAck {
                nsp,
                rooms,
                except,
                from,
                timeout_ms,
                args,
            } => {
                let nsp = NSPS[usize::from(nsp) % NSPS.len()];
                let from = from.and_then(|f| self.socket(f)).map(|(id, _)| id);
                let rooms = self.room_names(&rooms);
                let except = self.room_names(&except);
                let timeout = Duration::from_millis(u64::from(timeout_ms % 2000));
                let b = build(&mut self.io, from, nsp, &rooms, &except, false);
                match b.emit_with_ack(now, timeout, "q", args.0) {
                    Ok(r) => self.request(r),
                    Err(e) => panic!("broadcast with ack: {e:?}"),
                }
            }
            Action::ServerSideEmit { ack_ms, args } => match ack_ms {
                None => self
                    .io
                    .server_side_emit("/", "hello", args.0)
                    .expect("server-side emit"),
                Some(ms) => {
                    let timeout = Duration::from_millis(u64::from(ms % 2000));
                    let r = self
                        .io
                        .server_side_emit_with_ack(now, "/", "hello", args.0, timeout);
                    self.request(r.expect("server-side emit"));
                }
            },
            Action::SetData { socket, data } => {
                let Some((id, _)) = self.socket(socket) else {
                    return;
                };
                let r = self.io.set_data(id, data.0.clone());
                self.expect(id, "", r);
                if self.live.contains(&id) {
                    // (Compared as text: NaN is not equal to itself.)
                    let got = self.io.data(id).map(|d| format!("{d:?}"));
                    assert_eq!(got, Some(format!("{:?}", data.0)));
                }
            }
            Action::Watch { socket, on } => {
                let Some((id, _)) = self.socket(socket) else {
                    return;
                };
                let r = self.io.watch_outgoing(id, on);
                if r.is_ok() {
                    if on {
                        self.watched.insert(id);
                    } else {
                        self.watched.remove(&id);
                    }
                }
                self.expect(id, "", r);
            }
            Action::Verdict { which, pass } => {
                if self.checks.is_empty() {
                    return;
                }
                let (id, check) = self.checks.remove(usize::from(which) % self.checks.len());
                let r = if pass {
                    self.io.pass_event(id, check)
                } else {
                    self.io.refuse_event(id, check)
                };
                self.expect(id, "", r);
            }
            Action::Cluster(msg) => {
                let msg = self.cluster_message(msg);
                self.may_drop_sentinel = true;
                self.io.handle_cluster(now, msg);
            }
            Action::CloseAll => {
                self.may_drop_sentinel = true;
                self.io.close_all(now);
            }
        }
        self.pump();
    }

    /// A request id: one of ours, or a made-up one.
    fn request_id(&self, pick: u8) -> RequestId {
        match self.requests.get(usize::from(pick)) {
            Some(r) => r.clone(),
            None => RequestId::new(&format!("other-{pick}")),
        }
    }

    fn cluster_message(&mut self, msg: ClusterIn) -> ClusterMessage {
        let nsp = |n: u8| NSPS[usize::from(n) % NSPS.len()].to_owned();
        let selection = |sim: &Sim, rooms: &[u8], except: &[u8]| Selection {
            rooms: sim.room_names(rooms),
            except: sim.room_names(except),
        };
        match msg {
            ClusterIn::Broadcast {
                nsp: n,
                rooms,
                except,
                volatile,
                args,
                ack,
            } => {
                let mut args = args.0;
                if volatile {
                    args.push(Value::Null);
                }
                ClusterMessage::Broadcast {
                    nsp: nsp(n),
                    to: selection(self, &rooms, &except),
                    volatile,
                    compress: true,
                    name: "remote".into(),
                    args,
                    ack: ack.map(|(r, ms)| {
                        (
                            RequestId::new(&format!("remote-{r}")),
                            Duration::from_millis(u64::from(ms % 2000)),
                        )
                    }),
                }
            }
            ClusterIn::Join {
                nsp: n,
                rooms,
                except,
                room,
                leave,
            } => {
                let to = selection(self, &rooms, &except);
                let room = ROOMS[usize::from(room) % ROOMS.len()].to_owned();
                let nsp = nsp(n);
                for s in self.selected(&nsp, &to.rooms, &to.except, None) {
                    let set = self.rooms.entry(s).or_default();
                    if leave {
                        set.remove(&room);
                    } else {
                        set.insert(room.clone());
                    }
                }
                let rooms = vec![room];
                match leave {
                    true => ClusterMessage::SocketsLeave { nsp, to, rooms },
                    false => ClusterMessage::SocketsJoin { nsp, to, rooms },
                }
            }
            ClusterIn::Disconnect {
                nsp: n,
                rooms,
                close,
            } => ClusterMessage::DisconnectSockets {
                nsp: nsp(n),
                to: selection(self, &rooms, &[]),
                close,
            },
            ClusterIn::Fetch {
                nsp: n,
                rooms,
                except,
                request,
            } => ClusterMessage::FetchSockets {
                nsp: nsp(n),
                to: selection(self, &rooms, &except),
                request: RequestId::new(&format!("remote-{request}")),
            },
            ClusterIn::ServerSideEmit {
                name,
                args,
                request,
            } => ClusterMessage::ServerSideEmit {
                nsp: "/".into(),
                name: name.0,
                args: args.0,
                request: request.map(|r| RequestId::new(&format!("remote-{r}"))),
            },
            ClusterIn::Answer { request, answer } => ClusterMessage::Response {
                nsp: "/".into(),
                request: self.request_id(request),
                answer: match answer {
                    AnswerIn::Nodes(n) => ClusterAnswer::Nodes(usize::from(n % 4)),
                    AnswerIn::Sockets(n) => ClusterAnswer::Sockets(
                        (0..n % 3)
                            .map(|i| SocketInfo {
                                id: format!("remote-socket-{i}"),
                                handshake: Value::Null,
                                rooms: Vec::new(),
                                data: Value::Null,
                            })
                            .collect(),
                    ),
                    AnswerIn::ServerSideAck(v) => ClusterAnswer::ServerSideAck(v.0),
                    AnswerIn::ClientCount(n) => ClusterAnswer::ClientCount(usize::from(n % 4)),
                    AnswerIn::BroadcastAck(a) => ClusterAnswer::BroadcastAck(a.0),
                },
            },
        }
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
        let want = self.selected(&nsp, &rooms, &except, from);
        let mut args = args;
        if volatile {
            // No offset on a volatile event: this ends it instead.
            args.push(Value::Null);
        }
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
        simulate_with(None, false, actions)
    }

    fn simulate_with(recovery: Option<RecoveryIn>, cluster: bool, actions: Vec<Action>) -> Sim {
        let config = ConfigIn {
            ping_interval_ms: 250,
            ping_timeout_ms: 200,
            connect_timeout_ms: 1000,
            max_payload: None,
            max_attachments: 2,
            recovery,
            cluster,
            cleanup: false,
            decide_events: true,
            max_held: 3,
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

    #[test]
    fn a_client_that_comes_back_recovers_what_it_missed() {
        use Action::*;
        let recovery = RecoveryIn {
            duration_ms: 2000,
            skip_middlewares: true,
            max_packets: 50,
            max_packet_bytes: 60_000,
            max_sessions: 5,
            max_session_bytes: 60_000,
        };
        let sim = simulate_with(
            Some(recovery),
            false,
            vec![
                Connect {
                    target: Target::Normal,
                    auto_pong: true,
                    join: Some(0),
                },
                Join { socket: 1, room: 0 },
                Emit {
                    socket: 1,
                    name: Name("x".into()),
                    args: Args(vec![]),
                },
                Eof { peer: 0 },
                Broadcast {
                    nsp: 0,
                    rooms: vec![0],
                    except: vec![],
                    from: None,
                    volatile: false,
                    args: Args(vec![Value::from(1)]),
                },
                Recover {
                    from: 1,
                    nsp: 0,
                    fake: false,
                },
                Select {
                    op: SelectOp::Fetch,
                    nsp: 0,
                    rooms: vec![0],
                    except: vec![],
                    room: 0,
                },
                BroadcastWithAck {
                    nsp: 0,
                    rooms: vec![],
                    except: vec![],
                    from: None,
                    timeout_ms: 100,
                    args: Args(vec![]),
                },
                Advance { ms: 200 },
            ],
        );
        // The socket came back with its id and its room, and got the
        // broadcast it missed.
        assert_eq!(sim.sockets.len(), 2);
        assert!(sim.live.contains(&sim.sockets[1].0));
        assert!(sim.peers[2].heard.contains("bc1"));
        assert!(!sim.peers[1].heard.contains("bc1"));
        assert_eq!(sim.requests_done.len(), 2);
        let fetched = sim.fetched.values().next().expect("a fetch");
        assert_eq!(fetched.len(), 1, "the recovered socket, in its room again");
    }

    #[test]
    fn another_node_asks_and_answers() {
        use Action::*;
        let sim = simulate_with(
            None,
            true,
            vec![
                Cluster(ClusterIn::Fetch {
                    nsp: 0,
                    rooms: vec![],
                    except: vec![],
                    request: 1,
                }),
                Cluster(ClusterIn::Broadcast {
                    nsp: 0,
                    rooms: vec![],
                    except: vec![],
                    volatile: false,
                    args: Args(vec![]),
                    ack: Some((3, 50)),
                }),
                ServerSideEmit {
                    ack_ms: Some(100),
                    args: Args(vec![]),
                },
                Cluster(ClusterIn::Answer {
                    request: 0,
                    answer: AnswerIn::Nodes(1),
                }),
                Cluster(ClusterIn::Answer {
                    request: 0,
                    answer: AnswerIn::ServerSideAck(crate::values::Val(Value::from("n"))),
                }),
                Echo,
            ],
        );
        assert_eq!(sim.requests_done.len(), 1);
        assert!(sim.peers[0].heard.contains("remote"));
    }
}
