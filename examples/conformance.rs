//! The reference behaviour of `../shared/CONFORMANCE.md`: the server every
//! interop test and the official protocol suites run against.
//!
//! `cargo run --example conformance -- --port 3000 [--ping-interval MS] [--ping-timeout MS] [--driver epoll|smol] [--recovery] [--compress]`
//!
//! * `/socket.io/`: Socket.IO with namespaces `/` and `/custom`.
//! * `/engine.io/`: a raw Engine.IO echo, served by a second Engine.IO
//!   server behind the first: requests for that path are handed across
//!   (polling as embedded requests, WebSockets by moving the connection).
//! * anything else: 404.
//!
//! `--recovery` turns on connection state recovery as the official
//! `connectionStateRecovery: { maxDisconnectionDuration: 2000,
//! skipMiddlewares: true }` (CONFORMANCE.md, "Flag `--recovery`").
//!
//! `--compress` turns on permessage-deflate on both paths, as the official
//! `perMessageDeflate: true` (threshold 1,024 bytes). Polling responses
//! are compressed with or without it, as the official `httpCompression`
//! default (gzip or deflate as the request accepts, from 1,024 bytes).
//!
//! The sockets are driven by `common::epoll::serve` (Linux; the default
//! there) or `common::net::serve` on smol (`--driver smol`, and elsewhere).

mod common;

use std::{collections::HashMap, ops::ControlFlow, time::Duration};

use bytes::{Bytes, BytesMut};
use common::net::{Conns, Handler, IdMap, Io};
use wsio::{
    engineio::{self, ConnId, Cors, CorsOrigin},
    entropy::OsEntropy,
    http::ResponseHead,
    machine::drain,
    socketio::{self, Admission, Event, SocketId, Value},
    ws::deflate::DeflateConfig,
};

/// Which server a TCP connection currently talks to.
#[derive(Clone, Copy)]
enum Owner {
    Sio(ConnId),
    Eio(ConnId),
}

struct App {
    sio: socketio::Server,
    eio: engineio::Server,
    wire: Wire,
}

/// Everything but the two machines, so that each can be drained while the
/// other and this are at hand.
struct Wire {
    net: Conns,
    owners: IdMap<u64, Owner>,
    sio_keys: IdMap<ConnId, u64>,
    eio_keys: IdMap<ConnId, u64>,
    /// Polling requests handed to the echo server: where to answer.
    handed: HashMap<ConnId, ConnId>,
    /// The server's own `ask` emits: which client ack each one answers.
    asks: HashMap<(SocketId, u64), u64>,
}

fn engine_config(ping_interval: u64, ping_timeout: u64, path: &str) -> engineio::Config {
    engineio::Config::default()
        .path(path)
        .ping_interval(Duration::from_millis(ping_interval))
        .ping_timeout(Duration::from_millis(ping_timeout))
        .max_payload(1_000_000)
        .cors(Some(Cors::new(CorsOrigin::Any)))
}

impl App {
    fn step(&mut self, io: Io<'_>) {
        let now = std::time::Instant::now();
        let w = &mut self.wire;
        match io {
            Io::Timeout => {
                self.sio.handle_timeout(now);
                self.eio.handle_timeout(now);
            }
            Io::Accepted(key, peer) => {
                let conn = self.sio.accept(now, peer);
                w.owners.insert(key, Owner::Sio(conn));
                w.sio_keys.insert(conn, key);
            }
            Io::Data(key, bytes) => match w.owners.get(&key) {
                Some(Owner::Sio(c)) => self.sio.handle_input(now, *c, bytes),
                Some(Owner::Eio(c)) => self.eio.handle_input(now, *c, bytes),
                None => {}
            },
            Io::Eof(key) => match w.owners.remove(&key) {
                Some(Owner::Sio(c)) => {
                    self.sio.handle_eof(now, c);
                    // A poll held by the echo server loses its client too.
                    let handed: Vec<ConnId> = w
                        .handed
                        .iter()
                        .filter(|(_, s)| **s == c)
                        .map(|(e, _)| *e)
                        .collect();
                    for e in handed {
                        w.handed.remove(&e);
                        self.eio.handle_eof(now, e);
                    }
                }
                Some(Owner::Eio(c)) => self.eio.handle_eof(now, c),
                None => {}
            },
        }
        self.settle(now);
    }

    /// Drains both machines until neither has anything left to say.
    fn settle(&mut self, now: std::time::Instant) {
        let App { sio, eio, wire } = self;
        // The Socket.IO server's writes wait for the end of its drain:
        // its events need the wire too.
        let mut out = Vec::new();
        loop {
            let (mut sent, mut heard) = (false, false);
            drain(
                sio,
                now,
                |_, t| {
                    out.push(t);
                    ControlFlow::Continue(())
                },
                |sio, ev| {
                    heard = true;
                    on_event(sio, eio, wire, now, ev);
                },
            );
            for t in out.drain(..) {
                sent = true;
                wire.sio_transmit(t);
            }
            drain(
                eio,
                now,
                |_, t| {
                    sent = true;
                    match t {
                        engineio::Transmit::Response { conn, head, body } => {
                            if let Some(sconn) = wire.handed.remove(&conn) {
                                let _ = sio.respond(now, sconn, head, body);
                            }
                        }
                        t => wire.eio_transmit(t),
                    }
                    ControlFlow::Continue(())
                },
                |eio, ev| {
                    heard = true;
                    if let engineio::Event::Message { sid, data } = ev {
                        let _ = eio.send(sid, data);
                    }
                },
            );
            if !sent && !heard {
                return;
            }
        }
    }
}

impl Wire {
    fn sio_transmit(&mut self, t: engineio::Transmit) {
        match t {
            engineio::Transmit::Data { conn, data } => {
                if let Some(k) = self.sio_keys.get(&conn) {
                    self.net.write(*k, data);
                }
            }
            engineio::Transmit::Close { conn } => {
                if let Some(k) = self.sio_keys.remove(&conn) {
                    self.owners.remove(&k);
                    self.net.close(k);
                }
            }
            engineio::Transmit::Response { .. } => {}
        }
    }

    fn eio_transmit(&mut self, t: engineio::Transmit) {
        match t {
            engineio::Transmit::Data { conn, data } => {
                if let Some(k) = self.eio_keys.get(&conn) {
                    self.net.write(*k, data);
                }
            }
            engineio::Transmit::Close { conn } => {
                if let Some(k) = self.eio_keys.remove(&conn) {
                    self.owners.remove(&k);
                    self.net.close(k);
                }
            }
            engineio::Transmit::Response { .. } => {}
        }
    }
}

fn on_event(
    sio: &mut socketio::Server,
    eio: &mut engineio::Server,
    w: &mut Wire,
    now: std::time::Instant,
    ev: Event,
) {
    match ev {
        Event::Connection { socket, auth, .. } => {
            let _ = sio.emit(socket, "auth", vec![auth]);
        }
        Event::Event {
            socket,
            name,
            args,
            ack,
        } => on_client_event(sio, w, now, socket, &name, args, ack),
        Event::Ack { socket, id, args } => {
            if let Some(original) = w.asks.remove(&(socket, id)) {
                let _ = sio.ack(socket, original, args);
            }
        }
        Event::Disconnect { socket, reason, .. } => {
            if std::env::var_os("WSIO_TRACE").is_some() {
                eprintln!("disconnect {socket} {reason}");
            }
            w.asks.retain(|(s, _), _| *s != socket)
        }
        Event::Request { conn, head, body } => route_request(sio, eio, w, now, conn, *head, body),
        _ => {}
    }
}

fn on_client_event(
    sio: &mut socketio::Server,
    w: &mut Wire,
    now: std::time::Instant,
    socket: SocketId,
    name: &str,
    args: Vec<Value>,
    ack: Option<u64>,
) {
    if sio.namespace_of(socket) != Some("/") {
        return;
    }
    let io = sio;
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
                let _ = io
                    .of("/")
                    .to(&room)
                    .emit("room-message", args[1..].to_vec());
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
                w.asks.insert((socket, ask), id);
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
fn route_request(
    sio: &mut socketio::Server,
    eio: &mut engineio::Server,
    w: &mut Wire,
    now: std::time::Instant,
    conn: ConnId,
    head: wsio::http::RequestHead,
    body: Bytes,
) {
    if !head.target.starts_with("/engine.io/") {
        let res = ResponseHead::new(404).with_header("Content-Type", "text/plain");
        let _ = sio.respond(now, conn, res, Bytes::from_static(b"Not Found"));
        return;
    }
    if !head.headers.has_token("upgrade", "websocket") {
        let econn = eio.handle_request(now, head, body, None);
        w.handed.insert(econn, conn);
        return;
    }
    // A WebSocket: the connection moves to the echo server.
    let Some(key) = w.sio_keys.remove(&conn) else {
        return;
    };
    let leftover = sio.release(conn).unwrap_or_default();
    let mut out = BytesMut::new();
    match eio.handle_upgrade(now, head, None) {
        Ok((econn, res)) => {
            res.encode(&mut out);
            w.net.write(key, out.freeze());
            w.owners.insert(key, Owner::Eio(econn));
            w.eio_keys.insert(econn, key);
            if !leftover.is_empty() {
                eio.handle_input(now, econn, &leftover);
            }
        }
        Err((res, body)) => {
            res.with_header("Content-Length", body.len().to_string())
                .with_header("Connection", "close")
                .encode(&mut out);
            out.extend_from_slice(&body);
            w.net.write(key, out.freeze());
            w.owners.remove(&key);
            w.net.close(key);
        }
    }
}

impl Handler for App {
    fn conns(&mut self) -> &mut Conns {
        &mut self.wire.net
    }

    fn handle(&mut self, io: Io<'_>) {
        self.step(io);
    }

    fn deadline(&self) -> Option<std::time::Instant> {
        match (self.sio.poll_timeout(), self.eio.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn main() -> std::io::Result<()> {
    let port: u16 = common::arg("--port").unwrap_or(3000);
    let ping_interval: u64 = common::arg("--ping-interval").unwrap_or(300);
    let ping_timeout: u64 = common::arg("--ping-timeout").unwrap_or(200);
    let smol = match common::arg::<String>("--driver").as_deref() {
        None | Some("epoll") => !cfg!(target_os = "linux"),
        Some("smol") => true,
        Some(other) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("--driver {other}: epoll (Linux) or smol"),
            ));
        }
    };

    let recovery = common::flag("--recovery").then(|| {
        socketio::RecoveryConfig::default()
            .max_disconnection_duration(Duration::from_millis(2000))
            .skip_middlewares(true)
    });
    let deflate = DeflateConfig::default().enabled(common::flag("--compress"));
    let config = socketio::Config::default()
        .engine(
            engine_config(ping_interval, ping_timeout, "/socket.io/").per_message_deflate(deflate),
        )
        .connect_timeout(Duration::from_millis(1000))
        .recovery(recovery);
    let mut sio = socketio::Server::new(
        config,
        Box::new(OsEntropy::new()?),
        std::time::Instant::now(),
    );
    sio.add_namespace("/custom", Admission::AcceptAll);
    let eio = engineio::Server::new(
        engine_config(ping_interval, ping_timeout, "/engine.io/").per_message_deflate(deflate),
        Box::new(OsEntropy::new()?),
        std::time::Instant::now(),
    );

    let listener = common::net::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();
    println!("READY {port}");
    let app = App {
        sio,
        eio,
        wire: Wire {
            net: Conns::new(),
            owners: IdMap::default(),
            sio_keys: IdMap::default(),
            eio_keys: IdMap::default(),
            handed: HashMap::new(),
            asks: HashMap::new(),
        },
    };
    if smol {
        common::net::serve(listener, app)
    } else {
        #[cfg(target_os = "linux")]
        return common::epoll::serve(listener, app);
        #[cfg(not(target_os = "linux"))]
        common::net::serve(listener, app)
    }
}
