//! The reference behaviour of `../shared/CONFORMANCE.md`: the server every
//! interop test and the official protocol suites run against.
//!
//! ```text
//! cargo run --example conformance -- [--port 3000] [--ping-interval MS] [--ping-timeout MS]
//!     [--driver epoll|tokio|axum|smol|blocking] [--recovery] [--parser msgpack] [--compress]
//!     [--redis redis://127.0.0.1:R --node-name NAME] [--workers N]
//! ```
//!
//! * `/socket.io/`: Socket.IO with namespaces `/` and `/custom`.
//! * `/engine.io/`: a raw Engine.IO echo, served by a second Engine.IO
//!   server behind the first: requests for that path are handed across
//!   (polling as embedded requests, WebSockets by moving the connection).
//! * anything else: 404.
//!
//! Both servers and the routing between them are one machine,
//! [`Conformance`]; `--driver` picks what runs it: the raw `epoll` loop of
//! the load benchmarks (the default on Linux), `wsio-tokio` stand-alone,
//! `wsio-tokio` inside an axum app (`axum`: the machine's paths through
//! the tower layer, 404 from axum for the rest), `wsio-smol`, or
//! `wsio::blocking::Server` (std threads).
//!
//! `--recovery` turns on connection state recovery as the official
//! `connectionStateRecovery: { maxDisconnectionDuration: 2000,
//! skipMiddlewares: true }` (CONFORMANCE.md, "Flag `--recovery`").
//!
//! `--parser msgpack` makes `socket.io-msgpack-parser` the Socket.IO
//! parser on `/socket.io/` (CONFORMANCE.md, "Flag `--parser msgpack`");
//! the `/engine.io/` echo is unchanged.
//!
//! `--compress` turns on permessage-deflate on both paths, as the official
//! `perMessageDeflate: true` (threshold 1,024 bytes). Polling responses
//! are compressed with or without it, as the official `httpCompression`
//! default (gzip or deflate as the request accepts, from 1,024 bytes).
//!
//! `--redis URL --node-name NAME` makes the server a node of a Redis
//! cluster, wire-compatible with `@socket.io/redis-adapter` 8.3.0
//! (CONFORMANCE.md, "Flags `--redis URL --node-name NAME`"), through
//! `wsio-cluster`; drivers `tokio` and `axum` only. Besides the four cluster
//! events of CONFORMANCE.md, three more serve the cluster tests (and are
//! answered the same by `tests/node/cluster-node.js`): `sockets-leave`
//! (room, ack: `io.socketsLeave(room)`, acks `true`), `broadcast-ack`
//! (args..., ack: `io.timeout(2000).emit("question", args..., cb)`, acks
//! with the answers' first arguments sorted, or the string `timeout`) and
//! `fetch-ids` (ack: the ids of every socket of `/` on all nodes, sorted).
//!
//! `--workers N` (driver `tokio`) serves with N machines on N threads
//! (`wsio_cluster::workers`): each connection goes to the worker its
//! session id names, and the workers form one cluster in the process, so
//! `emit-all`, `to-room` and `broadcast` reach the sockets of every worker.
//! With `--redis` too, each worker is a node of the Redis cluster (the
//! cluster events count and ask every worker, as with a Node cluster of
//! that many processes); with `--node-name NAME` alone, the cluster events
//! are answered on the in-process cluster of the workers.

mod common;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use wsio::{
    cluster::RedisConfig,
    engineio::{self, ConnId, Cors, CorsOrigin, Transmit},
    entropy::{BoxEntropy, OsEntropy},
    http::{RequestHead, ResponseHead},
    machine::{ConnMachine, Machine, ServerMachine, Shutdown},
    socketio::{self, Admission, Event, RequestId, SocketId, Value},
    ws::deflate::DeflateConfig,
};
use wsio_adapter::{Embed, machine::under};
use wsio_cluster::{
    RedisLink,
    workers::{Cluster, ShardEntropy},
};

const USAGE: &str = "usage: conformance [--port PORT] [--ping-interval MS] [--ping-timeout MS] \
    [--driver epoll|tokio|axum|smol|blocking] [--recovery] [--parser default|msgpack] [--compress] \
    [--redis URL --node-name NAME] [--workers N]";

/// How long cluster requests wait for the other nodes (the official
/// adapter's default requests timeout).
const CLUSTER_TIMEOUT: Duration = Duration::from_millis(5000);

/// What a cluster request's answer is for: the client event to ack.
enum Pending {
    Count(SocketId, u64),
    Ids(SocketId, u64),
    ServerSide(SocketId, u64),
    BroadcastAck(SocketId, u64),
}

/// Which server one of our connections talks to.
#[derive(Clone, Copy)]
enum Owner {
    Sio(ConnId),
    Eio(ConnId),
}

/// Echo-server connection ids, as we show them to the driver, live above
/// this bit (Socket.IO's are shown as they are).
const EIO_BIT: u64 = 1 << 62;

/// The two servers and the routing between them, as one machine.
struct Conformance {
    sio: socketio::Server,
    eio: engineio::Server,
    /// Connections that moved to the echo server, by our id.
    moved: HashMap<ConnId, ConnId>,
    /// Our id of each echo-server connection.
    eio_out: HashMap<ConnId, ConnId>,
    /// Polling requests handed to the echo server: where to answer.
    handed: HashMap<ConnId, ConnId>,
    /// The server's own `ask` emits: which client ack each one answers.
    asks: HashMap<(SocketId, u64), u64>,
    /// Transmits of our own (the 101 of a moved connection).
    out: VecDeque<Transmit>,
    /// `auth` emits waiting for their turn (see [`AUTH_DELAY`]).
    auths: VecDeque<(Instant, SocketId, Value)>,
    /// `--node-name`: set when the server is a node of a cluster.
    node_name: Option<String>,
    /// Cluster requests whose answer acks a client event.
    pending: HashMap<RequestId, Pending>,
}

/// How long after the CONNECT answer `auth` is emitted on a session that
/// opened on WebSocket (on polling both wait for the next poll, and leave
/// in its answer as the official server's do). The official
/// server writes a WebSocket's packets one write at a time (the next waits
/// for the previous write's callback), so its `auth` usually reaches the
/// client in a read of its own; the official socket.io-protocol suite
/// counts on it (its listeners for the two messages are added one after
/// the other, and ws emits both messages of one read at once). Emitted
/// in the same turn, wsio's two packets always share a write (a delay of
/// zero, the next turn of the driver, still shared one read in 20 of 20
/// tries; 1 ms, none).
const AUTH_DELAY: Duration = Duration::from_millis(1);

wsio_adapter::identity_into_machine!(Conformance);

fn engine_config(ping_interval: u64, ping_timeout: u64, path: &str) -> engineio::Config {
    engineio::Config::default()
        .path(path)
        .ping_interval(Duration::from_millis(ping_interval))
        .ping_timeout(Duration::from_millis(ping_timeout))
        .max_payload(1_000_000)
        .cors(Some(Cors::new(CorsOrigin::Any)))
}

impl Conformance {
    fn new(
        ping_interval: u64,
        ping_timeout: u64,
        recovery: bool,
        parser: socketio::Parser,
        compress: bool,
        node_name: Option<String>,
        shard: Option<usize>,
    ) -> std::io::Result<Conformance> {
        let deflate = DeflateConfig::default().enabled(compress);
        // A worker of `--workers` draws ids that name it.
        let entropy = |shard: Option<usize>| -> std::io::Result<BoxEntropy> {
            let os: BoxEntropy = Box::new(OsEntropy::new()?);
            Ok(match shard {
                Some(k) => Box::new(ShardEntropy::new(os, k)),
                None => os,
            })
        };
        let recovery = recovery.then(|| {
            socketio::RecoveryConfig::default()
                .max_disconnection_duration(Duration::from_millis(2000))
                .skip_middlewares(true)
        });
        let config = socketio::Config::default()
            .engine(
                engine_config(ping_interval, ping_timeout, "/socket.io/")
                    .per_message_deflate(deflate),
            )
            .connect_timeout(Duration::from_millis(1000))
            .recovery(recovery)
            .parser(parser)
            .cluster(node_name.is_some() || shard.is_some());
        let mut sio = socketio::Server::new(config, entropy(shard)?, Instant::now());
        sio.add_namespace("/custom", Admission::AcceptAll);
        let eio = engineio::Server::new(
            engine_config(ping_interval, ping_timeout, "/engine.io/").per_message_deflate(deflate),
            entropy(shard)?,
            Instant::now(),
        );
        Ok(Conformance {
            sio,
            eio,
            moved: HashMap::new(),
            eio_out: HashMap::new(),
            handed: HashMap::new(),
            asks: HashMap::new(),
            out: VecDeque::new(),
            auths: VecDeque::new(),
            node_name,
            pending: HashMap::new(),
        })
    }

    /// The Socket.IO server, for the Redis link.
    fn sio_mut(&mut self) -> &mut socketio::Server {
        &mut self.sio
    }

    fn owner(&self, conn: ConnId) -> Owner {
        match self.moved.get(&conn) {
            Some(e) => Owner::Eio(*e),
            None if conn.0 & EIO_BIT != 0 => Owner::Eio(ConnId(conn.0 & !EIO_BIT)),
            None => Owner::Sio(conn),
        }
    }

    /// Our id of an echo-server connection.
    fn eio_id(&self, econn: ConnId) -> ConnId {
        self.eio_out
            .get(&econn)
            .copied()
            .unwrap_or(ConnId(econn.0 | EIO_BIT))
    }

    fn on_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Connection { socket, auth, .. } => {
                let ws = self
                    .sio
                    .handshake(socket)
                    .is_some_and(|h| h.transport == engineio::TransportKind::WebSocket);
                if ws {
                    self.auths.push_back((now + AUTH_DELAY, socket, auth));
                } else {
                    let _ = self.sio.emit(socket, "auth", vec![auth]);
                }
            }
            Event::Event {
                socket,
                name,
                args,
                ack,
            } => self.on_client_event(now, socket, &name, args, ack),
            Event::Ack { socket, id, args } => {
                if let Some(original) = self.asks.remove(&(socket, id)) {
                    let _ = self.sio.ack(socket, original, args);
                }
            }
            Event::Disconnect { socket, reason, .. } => {
                if std::env::var_os("WSIO_TRACE").is_some() {
                    eprintln!("disconnect {socket} {reason}");
                }
                self.asks.retain(|(s, _), _| *s != socket)
            }
            Event::Request { conn, head, body } => self.route_request(now, conn, *head, body),
            ev => self.on_cluster_event(ev),
        }
    }

    /// The cluster's answers to this node's requests, and the other
    /// nodes' server-side events.
    fn on_cluster_event(&mut self, ev: Event) {
        let io = &mut self.sio;
        match ev {
            Event::Fetched {
                request,
                sockets,
                timed_out,
            } => match self.pending.remove(&request) {
                // A node that did not answer in time: no ack.
                Some(Pending::Count(..) | Pending::Ids(..)) if timed_out => {}
                Some(Pending::Count(socket, id)) => {
                    let _ = io.ack(socket, id, vec![Value::from(sockets.len() as u64)]);
                }
                Some(Pending::Ids(socket, id)) => {
                    let mut ids: Vec<String> = sockets.into_iter().map(|s| s.id).collect();
                    ids.sort();
                    let ids = ids.into_iter().map(Value::from).collect();
                    let _ = io.ack(socket, id, vec![Value::Array(ids)]);
                }
                _ => {}
            },
            Event::ServerSideAcks {
                request, answers, ..
            } => {
                if let Some(Pending::ServerSide(socket, id)) = self.pending.remove(&request) {
                    let _ = io.ack(socket, id, vec![Value::Array(sorted(answers))]);
                }
            }
            Event::BroadcastAck {
                request,
                answers,
                timed_out,
            } => {
                if let Some(Pending::BroadcastAck(socket, id)) = self.pending.remove(&request) {
                    let answer = if timed_out {
                        Value::from("timeout")
                    } else {
                        let firsts = answers
                            .into_iter()
                            .map(|a| a.into_iter().next().unwrap_or(Value::Null))
                            .collect();
                        Value::Array(sorted(firsts))
                    };
                    let _ = io.ack(socket, id, vec![answer]);
                }
            }
            Event::ServerSideEmit {
                name,
                reply: Some(reply),
                ..
            } if name == "hello" => {
                if let Some(node) = &self.node_name {
                    io.server_side_reply(reply, Value::from(node.as_str()));
                }
            }
            _ => {}
        }
    }

    /// The cluster events of `/` (only with `--redis`); whether `name`
    /// was one.
    fn on_cluster_client_event(
        &mut self,
        now: Instant,
        socket: SocketId,
        name: &str,
        args: &[Value],
        ack: Option<u64>,
    ) -> bool {
        let io = &mut self.sio;
        let room = args.first().and_then(Value::as_str).map(str::to_owned);
        match (name, ack, room) {
            ("cluster-count", Some(id), _) => {
                let request = io.of("/").fetch_sockets(now, CLUSTER_TIMEOUT);
                self.pending.insert(request, Pending::Count(socket, id));
            }
            ("fetch-ids", Some(id), _) => {
                let request = io.of("/").fetch_sockets(now, CLUSTER_TIMEOUT);
                self.pending.insert(request, Pending::Ids(socket, id));
            }
            ("server-side-emit", Some(id), _) => {
                if let Ok(request) =
                    io.server_side_emit_with_ack(now, "/", "hello", args.to_vec(), CLUSTER_TIMEOUT)
                {
                    self.pending
                        .insert(request, Pending::ServerSide(socket, id));
                }
            }
            ("sockets-join", Some(id), Some(room)) => {
                io.of("/").sockets_join(&[&room]);
                let _ = io.ack(socket, id, vec![Value::from(true)]);
            }
            ("sockets-leave", Some(id), Some(room)) => {
                io.of("/").sockets_leave(&[&room]);
                let _ = io.ack(socket, id, vec![Value::from(true)]);
            }
            ("disconnect-room", _, Some(room)) => {
                io.of("/").to(&room).disconnect_sockets(now, true);
            }
            ("broadcast-ack", Some(id), _) => {
                let timeout = Duration::from_millis(2000);
                if let Ok(request) =
                    io.of("/")
                        .emit_with_ack(now, timeout, "question", args.to_vec())
                {
                    self.pending
                        .insert(request, Pending::BroadcastAck(socket, id));
                }
            }
            _ => return false,
        }
        true
    }

    fn on_client_event(
        &mut self,
        now: Instant,
        socket: SocketId,
        name: &str,
        args: Vec<Value>,
        ack: Option<u64>,
    ) {
        if self.sio.namespace_of(socket) != Some("/") {
            return;
        }
        if self.node_name.is_some() && self.on_cluster_client_event(now, socket, name, &args, ack) {
            return;
        }
        let io = &mut self.sio;
        match (name, ack) {
            ("message", _) => {
                let _ = io.emit(socket, "message-back", args);
            }
            ("message-with-ack", Some(id)) => {
                let _ = io.ack(socket, id, args);
            }
            ("join", Some(id)) => {
                if let Some(room) = args.first().and_then(Value::as_str) {
                    let _ = io.join(socket, room);
                    let _ = io.ack(socket, id, vec![Value::from(true)]);
                }
            }
            ("to-room", _) => {
                if let Some(room) = args.first().and_then(Value::as_str).map(str::to_owned) {
                    let rest = args.get(1..).unwrap_or_default().to_vec();
                    let _ = io.of("/").to(&room).emit("room-message", rest);
                }
            }
            ("broadcast", _) => {
                let _ = io.broadcast_from(socket).emit("broadcast", args);
            }
            ("emit-all", _) => {
                let _ = io.of("/").emit("all", args);
            }
            // `socket.compress(false)` and `io.compress(false)` (not in
            // CONFORMANCE.md: `tests/node/sio-compress-check.js` uses them).
            ("message-uncompressed", _) => {
                let _ = io.emit_compressed(socket, "message-back", args, false);
            }
            ("emit-all-uncompressed", _) => {
                let _ = io.of("/").compress(false).emit("all", args);
            }
            ("disconnect-me", _) => {
                let _ = io.disconnect(now, socket, true);
            }
            ("server-ack", Some(id)) => {
                if let Ok(ask) = io.emit_with_ack(now, socket, "ask", args, None) {
                    self.asks.insert((socket, ask), id);
                }
            }
            ("binary", _) => {
                let _ = io.emit(socket, "binary-back", args);
            }
            // Events that need an ack but came without one, and unknown
            // events, are ignored.
            _ => {}
        }
    }

    /// A request the Socket.IO server does not serve: the echo server's
    /// path, or 404.
    fn route_request(&mut self, now: Instant, conn: ConnId, head: RequestHead, body: Bytes) {
        if !head.target.starts_with("/engine.io/") {
            let res = ResponseHead::new(404).with_header("Content-Type", "text/plain");
            let _ = self
                .sio
                .respond(now, conn, res, Bytes::from_static(b"Not Found"));
            return;
        }
        if !head.headers.has_token("upgrade", "websocket") {
            let econn = self.eio.handle_request(now, head, body, None);
            self.handed.insert(econn, conn);
            return;
        }
        // A WebSocket: the connection moves to the echo server.
        let Some(leftover) = self.sio.release(conn) else {
            return;
        };
        let mut out = BytesMut::new();
        match self.eio.handle_upgrade(now, head, None) {
            Ok((econn, res)) => {
                res.encode(&mut out);
                self.out.push_back(Transmit::Data {
                    conn,
                    data: out.freeze(),
                });
                self.moved.insert(conn, econn);
                self.eio_out.insert(econn, conn);
                if !leftover.is_empty() {
                    self.eio.handle_input(now, econn, &leftover);
                }
            }
            Err((res, body)) => {
                res.with_header("Content-Length", body.len().to_string())
                    .with_header("Connection", "close")
                    .encode(&mut out);
                out.extend_from_slice(&body);
                self.out.push_back(Transmit::Data {
                    conn,
                    data: out.freeze(),
                });
                self.out.push_back(Transmit::Close { conn });
            }
        }
    }

    /// An echo-server connection is gone: forget our id for it.
    fn forget_eio(&mut self, econn: ConnId) -> ConnId {
        let conn = self.eio_id(econn);
        self.eio_out.remove(&econn);
        self.moved.remove(&conn);
        conn
    }
}

impl Machine for Conformance {
    type Transmit = Transmit;
    /// The application runs inside the machine: nothing to hear outside.
    type Event = ();

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, ..)) = self.auths.front() {
            if at > now {
                break;
            }
            if let Some((_, socket, auth)) = self.auths.pop_front() {
                let _ = self.sio.emit(socket, "auth", vec![auth]);
            }
        }
        self.sio.handle_timeout(now);
        self.eio.handle_timeout(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.out.pop_front() {
            return Some(t);
        }
        if let Some(t) = self.sio.poll_transmit(now) {
            return Some(t);
        }
        loop {
            return match self.eio.poll_transmit(now)? {
                Transmit::Data { conn, data } => Some(Transmit::Data {
                    conn: self.eio_id(conn),
                    data,
                }),
                Transmit::Close { conn } => Some(Transmit::Close {
                    conn: self.forget_eio(conn),
                }),
                Transmit::Response { conn, head, body } => match self.handed.remove(&conn) {
                    Some(sconn) => {
                        let _ = self.sio.respond(now, sconn, head, body);
                        match self.sio.poll_transmit(now) {
                            Some(t) => Some(t),
                            None => continue,
                        }
                    }
                    None => Some(Transmit::Response {
                        conn: self.forget_eio(conn),
                        head,
                        body,
                    }),
                },
            };
        }
    }

    fn poll_event(&mut self, now: Instant) -> Option<()> {
        if let Some(ev) = self.eio.poll_event(now) {
            if let engineio::Event::Message { sid, data } = ev {
                let _ = self.eio.send(sid, data);
            }
            return Some(());
        }
        let ev = self.sio.poll_event(now)?;
        self.on_event(now, ev);
        Some(())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let auth = self.auths.front().map(|&(at, ..)| at);
        match (
            [self.sio.poll_timeout(), auth].into_iter().flatten().min(),
            self.eio.poll_timeout(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl ConnMachine for Conformance {
    fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        match self.owner(conn) {
            Owner::Sio(c) => self.sio.handle_input(now, c, bytes),
            Owner::Eio(c) => self.eio.handle_input(now, c, bytes),
        }
    }

    fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        match self.owner(conn) {
            Owner::Sio(c) => {
                self.sio.handle_eof(now, c);
                // A poll held by the echo server loses its client too.
                let handed: Vec<ConnId> = self
                    .handed
                    .iter()
                    .filter(|(_, s)| **s == c)
                    .map(|(e, _)| *e)
                    .collect();
                for e in handed {
                    self.handed.remove(&e);
                    self.eio.handle_eof(now, e);
                }
            }
            Owner::Eio(c) => self.eio.handle_eof(now, c),
        }
    }

    fn handle_write_blocked(&mut self, now: Instant, conn: ConnId, unwritten: Bytes) {
        match self.owner(conn) {
            Owner::Sio(c) => self.sio.handle_write_blocked(now, c, unwritten),
            Owner::Eio(c) => self.eio.handle_write_blocked(now, c, unwritten),
        }
    }

    fn handle_writable(&mut self, now: Instant, conn: ConnId) {
        match self.owner(conn) {
            Owner::Sio(c) => self.sio.handle_writable(now, c),
            Owner::Eio(c) => self.eio.handle_writable(now, c),
        }
    }
}

impl ServerMachine for Conformance {
    fn accept(&mut self, now: Instant, peer: Option<SocketAddr>) -> ConnId {
        self.sio.accept(now, peer)
    }
}

impl Shutdown for Conformance {
    fn shutdown(&mut self, now: Instant) {
        self.sio.close_all(now);
    }

    fn is_idle(&self) -> bool {
        self.sio.client_count() == 0 && self.eio.session_count() == 0
    }
}

impl Embed for Conformance {
    fn paths(&self) -> Vec<String> {
        vec!["/socket.io/".into(), "/engine.io/".into()]
    }

    fn handle_request(
        &mut self,
        now: Instant,
        head: RequestHead,
        body: Bytes,
        peer: Option<SocketAddr>,
    ) -> ConnId {
        if under("/engine.io/", head.path()) {
            let econn = self.eio.handle_request(now, head, body, peer);
            self.eio_id(econn)
        } else {
            self.sio.handle_request(now, head, body, peer)
        }
    }

    fn handle_upgrade(
        &mut self,
        now: Instant,
        head: RequestHead,
        peer: Option<SocketAddr>,
    ) -> Result<(ConnId, ResponseHead), (ResponseHead, Bytes)> {
        if under("/engine.io/", head.path()) {
            let (econn, res) = self.eio.handle_upgrade(now, head, peer)?;
            Ok((self.eio_id(econn), res))
        } else {
            self.sio.handle_upgrade(now, head, peer)
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = common::args::Args::parse(
        USAGE,
        &[
            ("--port", true),
            ("--ping-interval", true),
            ("--ping-timeout", true),
            ("--driver", true),
            ("--recovery", false),
            ("--parser", true),
            ("--compress", false),
            ("--redis", true),
            ("--node-name", true),
            ("--workers", true),
        ],
    );
    let port: u16 = args.value("--port").unwrap_or(3000);
    let ping_interval: u64 = args.value("--ping-interval").unwrap_or(300);
    let ping_timeout: u64 = args.value("--ping-timeout").unwrap_or(200);
    let default = if cfg!(target_os = "linux") {
        "epoll"
    } else {
        "tokio"
    };
    let driver = args
        .choice("--driver", &["epoll", "tokio", "axum", "smol", "blocking"])
        .unwrap_or(default);
    common::log_to_stderr();
    let redis: Option<String> = args.value("--redis");
    let node_name: Option<String> = args.value("--node-name");
    let workers: Option<usize> = args.value("--workers");
    // `--workers` with `--node-name` alone: the cluster events on the
    // in-process cluster.
    if redis.is_some() && node_name.is_none()
        || node_name.is_some() && redis.is_none() && workers.is_none()
    {
        eprintln!("--redis and --node-name go together\n\n{USAGE}");
        std::process::exit(2);
    }
    if redis.is_some() && !matches!(driver, "tokio" | "axum") {
        eprintln!(
            "--redis needs --driver tokio or axum (the Redis link, wsio-cluster, runs on tokio); \
             --driver {driver} cannot join a cluster\n\n{USAGE}"
        );
        std::process::exit(2);
    }
    let recovery = args.flag("--recovery");
    let compress = args.flag("--compress");
    let parser = match args.choice("--parser", &["default", "msgpack"]) {
        Some("msgpack") => socketio::Parser::Msgpack,
        _ => socketio::Parser::Default,
    };
    if let Some(n) = workers {
        let why = if driver != "tokio" {
            Some(format!("--workers needs --driver tokio, not {driver}"))
        } else if recovery {
            Some("--workers does not combine with --recovery (a session is kept by one worker; its client's reconnection may reach another)".to_owned())
        } else if !(1..=wsio_cluster::workers::MAX_WORKERS).contains(&n) {
            Some(format!(
                "--workers takes 1 to {}",
                wsio_cluster::workers::MAX_WORKERS
            ))
        } else {
            None
        };
        if let Some(why) = why {
            eprintln!("{why}\n\n{USAGE}");
            std::process::exit(2);
        }
        return tokio_rt()?.block_on(async move {
            let listener = wsio_tokio::listen(("127.0.0.1", port)).await?;
            ready(listener.local_addr().ok());
            let cluster = match redis {
                Some(url) => Cluster::Redis {
                    url,
                    config: RedisConfig::default().requests_timeout(CLUSTER_TIMEOUT),
                    namespaces: vec!["/".into(), "/custom".into()],
                },
                None => Cluster::Local,
            };
            let make = move |k| {
                Conformance::new(
                    ping_interval,
                    ping_timeout,
                    false,
                    parser,
                    compress,
                    node_name.clone(),
                    Some(k),
                )
            };
            let sio = Conformance::sio_mut;
            wsio_cluster::workers::serve(listener, n, make, sio, cluster, Default::default()).await
        });
    }
    let machine = Conformance::new(
        ping_interval,
        ping_timeout,
        recovery,
        parser,
        compress,
        node_name,
        None,
    )?;
    let addr = ("127.0.0.1", port);
    match driver {
        #[cfg(target_os = "linux")]
        "epoll" => {
            let listener = common::epoll::bind(addr)?;
            println!("READY {}", listener.local_addr()?.port());
            common::epoll::serve_machine(listener, machine)
        }
        "tokio" => tokio_rt()?.block_on(async {
            let mut machine = machine;
            let link = join_cluster(redis.as_deref(), &mut machine).await?;
            let mut server = wsio_tokio::bind(addr, machine).await?;
            if let Some(link) = link {
                server = server.with_sidecar(link);
            }
            ready(server.local_addr());
            server.await
        }),
        "axum" => tokio_rt()?.block_on(async {
            let mut machine = machine;
            let link = join_cluster(redis.as_deref(), &mut machine).await?;
            let (layer, mut server) = wsio_tokio::embed(machine)?;
            if let Some(link) = link {
                server = server.with_sidecar(link);
            }
            tokio::spawn(server);
            // An ordinary route of the app, next to the machine's paths.
            let app = axum::Router::new()
                .route("/hello", axum::routing::get(|| async { "hello from axum" }))
                .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "Not Found") })
                .layer(layer);
            let listener = wsio_tokio::listen(addr).await?;
            ready(listener.local_addr().ok());
            wsio_tokio::serve_http(listener, app).await
        }),
        "smol" => smol::block_on(async {
            let server = wsio_smol::bind(addr, machine)?;
            ready(server.local_addr());
            server.await
        }),
        "blocking" => {
            let server = wsio::blocking::Server::bind(addr, machine)?;
            ready(server.local_addr().ok());
            server.run()
        }
        other => {
            eprintln!("--driver {other} is not available on this system\n\n{USAGE}");
            std::process::exit(2);
        }
    }
}

/// With `--redis`: the Redis link of the machine, connected and
/// subscribed (a node serves only once it hears the cluster).
async fn join_cluster(
    url: Option<&str>,
    machine: &mut Conformance,
) -> std::io::Result<Option<RedisLink<Conformance>>> {
    let Some(url) = url else {
        return Ok(None);
    };
    let mut link = RedisLink::start(
        url,
        RedisConfig::default().requests_timeout(CLUSTER_TIMEOUT),
        &["/", "/custom"],
        Conformance::sio_mut,
    )?;
    link.connect(machine, Duration::from_secs(10)).await?;
    Ok(Some(link))
}

/// Values in a stable order: strings by their text, the rest by their JSON.
fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_cached_key(|v| v.as_str().map_or_else(|| v.to_json(), str::to_owned));
    values
}

fn ready(addr: Option<SocketAddr>) {
    println!("READY {}", addr.map_or(0, |a| a.port()));
}

fn tokio_rt() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
