//! The server API that official clients can observe, on a wsio server with
//! the application of `tests/node/sio-api-server.js`, checked by
//! `tests/node/sio-api-check.js` with the official `socket.io-client` 4.8.4
//! (also with `socket.io-msgpack-parser`): connection admission refusing
//! with data (`io.use`), `set_data` and the handshake in `fetch_sockets`,
//! `sockets_join` / `sockets_leave` / `disconnect_sockets` on selections,
//! broadcasts with acknowledgements (every answer, rooms, the timeout with
//! the answers so far), event admission refusing an event (`socket.use`)
//! watched outgoing events (`socket.onAnyOutgoing`), and dynamic
//! namespaces removed when empty (`cleanupEmptyChildNamespaces`), and the
//! shutdown (`close_all`, the official `io.close()`). The same
//! script passes against the official
//! server (the last test), so the yardstick itself is right.
//!
//! The server runs in this process on plain threads: one per connection
//! reads, one loop owns the machine and writes.

mod common;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    ops::ControlFlow,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use common::*;
use wsio::{
    engineio::{self, ConnId},
    entropy::OsEntropy,
    machine::drain,
    socketio::{self, Admission, Broadcast, Event, Parser, RequestId, Server, SocketId, Value},
};

enum Input {
    Accepted(u64, TcpStream, Option<SocketAddr>),
    Data(u64, Vec<u8>),
    Eof(u64),
}

/// Starts the server; returns its port. It lives as long as the test
/// process.
fn serve(parser: Parser) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local address").port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for (key, stream) in (0u64..).zip(listener.incoming()) {
            let Ok(stream) = stream else { continue };
            let Ok(mut reader) = stream.try_clone() else {
                continue;
            };
            let peer = stream.peer_addr().ok();
            if tx.send(Input::Accepted(key, stream, peer)).is_err() {
                return;
            }
            let tx = tx.clone();
            thread::spawn(move || {
                let mut buf = vec![0; 64 * 1024];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(Input::Eof(key));
                            return;
                        }
                        Ok(n) => {
                            if tx.send(Input::Data(key, buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    thread::spawn(move || run_server(rx, parser));
    port
}

fn run_server(rx: mpsc::Receiver<Input>, parser: Parser) {
    let engine = engineio::Config::default()
        .path("/socket.io/")
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200));
    let config = socketio::Config::default()
        .engine(engine)
        .parser(parser)
        .cleanup_empty_child_namespaces(true);
    let entropy = OsEntropy::new().expect("entropy");
    let mut io = Server::new(config, Box::new(entropy), Instant::now());
    io.add_namespace("/", Admission::Decide);
    io.set_event_admission("/", Admission::Decide);
    // As the official io.of(/^\/dyn-\d+$/).
    io.set_dynamic_namespaces(Box::new(|name, _| {
        name.strip_prefix("/dyn-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }));
    let mut app = App::default();
    let mut conns: HashMap<u64, ConnId> = HashMap::new();
    let mut streams: HashMap<ConnId, (u64, TcpStream)> = HashMap::new();
    loop {
        let wait = io.poll_timeout().map_or(Duration::from_secs(1), |t| {
            t.saturating_duration_since(Instant::now())
        });
        let input = rx.recv_timeout(wait);
        let now = Instant::now();
        match input {
            Ok(Input::Accepted(key, stream, peer)) => {
                let conn = io.accept(now, peer);
                conns.insert(key, conn);
                streams.insert(conn, (key, stream));
            }
            Ok(Input::Data(key, bytes)) => {
                if let Some(&conn) = conns.get(&key) {
                    io.handle_input(now, conn, &bytes);
                }
            }
            Ok(Input::Eof(key)) => {
                if let Some(conn) = conns.remove(&key) {
                    streams.remove(&conn);
                    io.handle_eof(now, conn);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => io.handle_timeout(now),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        drain(
            &mut io,
            now,
            |_, t| {
                match t {
                    engineio::Transmit::Data { conn, data } => {
                        if let Some((_, s)) = streams.get_mut(&conn) {
                            let _ = s.write_all(&data);
                        }
                    }
                    engineio::Transmit::Close { conn } => {
                        if let Some((key, s)) = streams.remove(&conn) {
                            conns.remove(&key);
                            let _ = s.shutdown(Shutdown::Both);
                        }
                    }
                    _ => {}
                }
                ControlFlow::Continue(())
            },
            |io, event| app.on_event(io, now, event),
        );
    }
}

/// The application of sio-api-server.js.
#[derive(Default)]
struct App {
    /// Requests (`fetch_sockets`, `emit_with_ack`) and the client ack each
    /// answers.
    waiting: HashMap<RequestId, (SocketId, u64)>,
    /// The names of the events sent to each socket.
    sent: HashMap<SocketId, Vec<Value>>,
}

/// `{to?: [rooms], except?: [rooms]}` as a broadcast of `/`.
fn select<'a>(io: &'a mut Server, sel: Option<&Value>) -> Broadcast<'a> {
    let rooms = |key: &str| -> Vec<String> {
        sel.and_then(|s| s.get(key))
            .and_then(Value::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect()
    };
    let (to, except) = (rooms("to"), rooms("except"));
    let mut b = io.of("/");
    for r in &to {
        b = b.to(r);
    }
    for r in &except {
        b = b.except(r);
    }
    b
}

impl App {
    fn on_event(&mut self, io: &mut Server, now: Instant, event: Event) {
        match event {
            Event::ConnectRequest { socket, auth, .. } => {
                if auth
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty())
                {
                    io.admit(now, socket).unwrap();
                } else {
                    let data = Value::object([("code", Value::from(42))]);
                    io.refuse(now, socket, "name required", Some(data)).unwrap();
                }
            }
            Event::Connection { socket, nsp, .. } if nsp != "/" => {
                io.emit(socket, "hello", vec![Value::from(nsp)]).unwrap();
            }
            Event::Connection { socket, auth, .. } => {
                let name = auth.get("name").cloned().unwrap_or(Value::Null);
                io.set_data(socket, Value::object([("name", name)]))
                    .unwrap();
                io.watch_outgoing(socket, true).unwrap();
            }
            Event::EventRequest {
                socket,
                check,
                name,
                ..
            } => {
                if name == "forbidden" {
                    io.refuse_event(socket, check).unwrap();
                } else {
                    io.pass_event(socket, check).unwrap();
                }
            }
            Event::Outgoing { socket, name, .. } => {
                self.sent.entry(socket).or_default().push(Value::from(name));
            }
            Event::Disconnect { socket, .. } => {
                self.sent.remove(&socket);
            }
            Event::Event {
                socket,
                name,
                args,
                ack: Some(ack),
            } => {
                let sel = args.first();
                let room = args.get(1).and_then(Value::as_str).unwrap_or("");
                match name.as_str() {
                    "fetch" => {
                        let request = select(io, sel).fetch_sockets(now, Duration::from_secs(5));
                        self.waiting.insert(request, (socket, ack));
                    }
                    "join" => {
                        select(io, sel).sockets_join(&[room]);
                        let _ = io.ack(socket, ack, vec![Value::from(true)]);
                    }
                    "leave" => {
                        select(io, sel).sockets_leave(&[room]);
                        let _ = io.ack(socket, ack, vec![Value::from(true)]);
                    }
                    "forbidden" => {
                        let _ = io.ack(socket, ack, vec![Value::from("handled")]);
                    }
                    "has-namespace" => {
                        let has = args
                            .first()
                            .and_then(Value::as_str)
                            .is_some_and(|n| io.has_namespace(n));
                        let _ = io.ack(socket, ack, vec![Value::from(has)]);
                    }
                    "sent" => {
                        let sent = self.sent.get(&socket).cloned().unwrap_or_default();
                        let _ = io.ack(socket, ack, vec![Value::Array(sent)]);
                    }
                    "ask" => {
                        let ms = args.get(1).and_then(Value::as_u64).unwrap_or(0);
                        let request = select(io, sel)
                            .emit_with_ack(
                                now,
                                Duration::from_millis(ms),
                                "question",
                                vec![Value::from("who?")],
                            )
                            .unwrap();
                        self.waiting.insert(request, (socket, ack));
                    }
                    _ => {}
                }
            }
            Event::Event {
                name,
                args,
                ack: None,
                ..
            } if name == "kick" => {
                let close = args.get(1).and_then(Value::as_bool).unwrap_or(false);
                select(io, args.first()).disconnect_sockets(now, close);
            }
            Event::Event {
                name, ack: None, ..
            } if name == "shutdown" => io.close_all(now),
            Event::Fetched {
                request, sockets, ..
            } => {
                let Some((socket, ack)) = self.waiting.remove(&request) else {
                    return;
                };
                let mut list: Vec<(String, Value)> = sockets
                    .into_iter()
                    .map(|s| {
                        let mut rooms = s.rooms;
                        rooms.sort();
                        let name = s
                            .data
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned();
                        let auth = s.handshake.get("auth").cloned().unwrap_or(Value::Null);
                        let view = Value::object([
                            ("id", Value::from(s.id)),
                            (
                                "rooms",
                                Value::Array(rooms.into_iter().map(Value::from).collect()),
                            ),
                            ("data", s.data),
                            ("auth", auth),
                        ]);
                        (name, view)
                    })
                    .collect();
                list.sort_by(|x, y| x.0.cmp(&y.0));
                let list = list.into_iter().map(|(_, v)| v).collect();
                let _ = io.ack(socket, ack, vec![Value::Array(list)]);
            }
            Event::BroadcastAck {
                request,
                answers,
                timed_out,
            } => {
                let Some((socket, ack)) = self.waiting.remove(&request) else {
                    return;
                };
                let mut answers: Vec<String> = answers
                    .iter()
                    .map(|a| {
                        a.first()
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect();
                answers.sort();
                let answer = Value::object([
                    ("timedOut", Value::from(timed_out)),
                    (
                        "answers",
                        Value::Array(answers.into_iter().map(Value::from).collect()),
                    ),
                ]);
                let _ = io.ack(socket, ack, vec![answer]);
            }
            _ => {}
        }
    }
}

fn check(port: u16, transports: &str, extra: &[&str]) {
    let script = "sio-api-check.js";
    let mut c = node();
    c.arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["--transports", transports])
        .args(extra);
    let (ok, out) = run(script, c, Duration::from_secs(120));
    let summary = out.lines().last().unwrap_or_default().to_owned();
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("fail")).collect();
    assert!(
        ok && summary.ends_with(" 0 failed") && !summary.starts_with("0 passed"),
        "{script} --transports {transports} {extra:?}: {summary}\n{}",
        failures.join("\n")
    );
}

#[test]
fn official_client_sees_the_server_api_over_websocket() {
    check(serve(Parser::Default), "websocket", &[]);
}

#[test]
fn official_client_sees_the_server_api_over_polling() {
    check(serve(Parser::Default), "polling", &[]);
}

#[test]
fn official_client_sees_the_server_api_across_the_upgrade() {
    check(serve(Parser::Default), "both", &[]);
}

#[test]
fn official_client_sees_the_server_api_with_msgpack() {
    // A server each: the last check shuts it down.
    for transports in ["websocket", "polling"] {
        check(serve(Parser::Msgpack), transports, &["--parser", "msgpack"]);
    }
}

#[test]
fn the_check_passes_against_the_official_server() {
    let mut c = node();
    c.args(["sio-api-server.js", "--port", "0"]);
    let server = spawn_ready("node sio-api-server.js", c);
    check(server.port, "both", &[]);
    let mut c = node();
    c.args(["sio-api-server.js", "--port", "0", "--parser", "msgpack"]);
    let server = spawn_ready("node sio-api-server.js --parser msgpack", c);
    check(server.port, "websocket", &["--parser", "msgpack"]);
}
