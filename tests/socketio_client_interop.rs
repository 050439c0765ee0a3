//! The wsio Socket.IO client against the official Node `socket.io` server.
//!
//! * The `conformance_client` example runs every client scenario of
//!   CONFORMANCE.md against tests/node/sio-server.js, in each transport
//!   mode; every scenario must pass.
//! * A real restart: tests/node/sio-restart-server.js is killed and started
//!   again on the same port while a `blocking::Client` joined to `/` and
//!   `/custom` emits a numbered stream. The client must reconnect and rejoin
//!   both namespaces with their auth, and the server side must see every
//!   number emitted once the client knew it was disconnected, in order and
//!   once (numbers in flight at the moment of the kill may be lost, as with
//!   the official client: there is no delivery guarantee without acks).
//!
//! * The msgpack parser: a `blocking::Client` with `socket.io-msgpack-parser`
//!   against tests/node/sio-server.js `--parser msgpack`, on every transport:
//!   auth, both namespaces, every kind of value with binary inline, acks
//!   both ways, rooms, an unknown namespace.
//! * Connection state recovery: a `blocking::Client` behind a proxy that the
//!   test cuts, against sio-server.js `--recovery` (also with msgpack) and
//!   the `conformance` example `--recovery`: after a short cut it is
//!   recovered (same id, the room's events it missed once and in order, its
//!   room kept), after a long one it is not.
//!
//! Node and tests/node/node_modules are required: without them these tests
//! fail and say how to install them (`npm ci --prefix tests/node`).

mod common;

use std::{
    io::{BufRead, BufReader},
    net::{Shutdown, TcpListener, TcpStream},
    process::{Child, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use common::*;
use wsio::{
    blocking::{Client, ClientOptions},
    engineio::{TransportKind, TransportMode},
    socketio::{ClientDisconnectReason, ClientEvent, NspId, Parser, Value},
};

fn conformance_client(mode: &str) {
    let server = node_reference();
    let mut c = example("conformance_client");
    c.arg(format!("http://127.0.0.1:{}", server.port))
        .args(["--transports", mode]);
    let (ok, out) = run("conformance_client", c, Duration::from_secs(400));
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or_default()
        .to_owned();
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("fail")).collect();
    assert!(
        ok && summary.ends_with(" 0 failed"),
        "{mode}: {summary}\n{}",
        failures.join("\n")
    );
    let passed: usize = summary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 24, "{mode}: only {passed} scenarios ran:\n{out}");
    eprintln!("conformance_client --transports {mode}: {summary}");
}

#[test]
fn conformance_client_websocket_only() {
    conformance_client("websocket");
}

#[test]
fn conformance_client_polling_only() {
    conformance_client("polling");
}

#[test]
fn conformance_client_polling_then_upgrade() {
    conformance_client("both");
}

// ----- the restart test ------------------------------------------------------------

/// The logging server; its stdout lines come through `lines`.
struct LogServer {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LogServer {
    fn start(port: u16) -> LogServer {
        let mut cmd = node();
        cmd.args(["sio-restart-server.js", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start node sio-restart-server.js");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = LogServer {
            child,
            port: 0,
            lines,
            seen: Vec::new(),
        };
        let ready = s.wait_line(Duration::from_secs(20), |l| l.starts_with("READY "));
        s.port = ready
            .and_then(|l| l["READY ".len()..].trim().parse().ok())
            .expect("sio-restart-server.js printed no READY <port>");
        s
    }

    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    fn wait_line(&mut self, limit: Duration, f: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + limit;
        let mut i = 0;
        loop {
            while let Some(l) = self.seen.get(i) {
                if f(l) {
                    return Some(l.clone());
                }
                i += 1;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => return None,
            }
        }
    }

    fn counts(&mut self) -> Vec<u64> {
        self.drain();
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix("COUNT / "))
            .filter_map(|n| n.trim().parse().ok())
            .collect()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain();
    }
}

impl Drop for LogServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn restart(mode: TransportMode) {
    let mut s1 = LogServer::start(0);
    let port = s1.port;
    let root_auth = Value::object([("who", Value::from("root"))]);
    let custom_auth = Value::object([("who", Value::from("custom"))]);
    let options = ClientOptions::new()
        .mode(mode)
        .auth(root_auth.clone())
        .configure(|c| {
            c.reconnection_delay(Duration::from_millis(200))
                .reconnection_delay_max(Duration::from_millis(1000))
        });
    let mut client = Client::connect(&format!("http://127.0.0.1:{port}"), options)
        .unwrap_or_else(|e| panic!("{mode:?}: connect: {e}"));
    let root = client.nsp();
    let custom = client.socket("/custom", Some(custom_auth.clone())).unwrap();
    for nsp in ["/", "/custom"] {
        assert!(
            s1.wait_line(Duration::from_secs(10), |l| l
                .starts_with(&format!("CONNECT {nsp} ")))
                .is_some(),
            "{mode:?}: {nsp} did not connect"
        );
    }

    let mut n = 0u64;
    let mut killed_at = None;
    let mut s2: Option<LogServer> = None;
    let mut first_buffered = None;
    let mut disconnects = Vec::new();
    let mut reconnected = None;
    let mut rejoined = (false, false);
    let mut last = None;
    let end = Instant::now() + Duration::from_secs(40);
    loop {
        assert!(Instant::now() < end, "{mode:?}: no reconnection in time");
        client.emit("count", vec![Value::from(n)]).unwrap();
        n += 1;
        if n == 50 {
            s1.kill();
            killed_at = Some(Instant::now());
        }
        if s2.is_none() && killed_at.is_some_and(|t| t.elapsed() > Duration::from_millis(1000)) {
            s2 = Some(LogServer::start(port));
        }
        while let Ok(Some(ev)) = client.next_event(Some(Duration::ZERO)) {
            match ev {
                ClientEvent::Disconnect { nsp, reason } => {
                    if nsp == root && first_buffered.is_none() {
                        first_buffered = Some(n);
                    }
                    disconnects.push((nsp, reason));
                }
                ClientEvent::Reconnected { attempt } => reconnected = Some(attempt),
                ClientEvent::Connect { nsp, .. } if reconnected.is_some() => {
                    if nsp == root {
                        rejoined.0 = true;
                    } else if nsp == custom {
                        rejoined.1 = true;
                    }
                }
                _ => {}
            }
        }
        if last.is_none() && rejoined == (true, true) {
            last = Some(n + 30);
        }
        if last == Some(n) {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let last = n - 1;
    let mut s2 = s2.expect("the server was restarted");
    assert!(
        s2.wait_line(Duration::from_secs(10), |l| l == format!("COUNT / {last}"))
            .is_some(),
        "{mode:?}: the last number never arrived: {:?}",
        s2.counts()
    );
    s2.drain();
    client.close();

    let first_buffered = first_buffered.expect("the client saw the disconnect");
    let a = s1.counts();
    let b = s2.counts();
    // Before the kill: everything, in order, from 0.
    assert!(
        a.iter().enumerate().all(|(i, k)| *k == i as u64),
        "{mode:?}: first server got {a:?}"
    );
    // After: in order, once, and nothing that the first server had.
    assert!(
        b.windows(2).all(|w| w[0] < w[1]),
        "{mode:?}: second server got {b:?}"
    );
    assert!(
        a.last().zip(b.first()).is_none_or(|(x, y)| x < y),
        "{mode:?}: {a:?} then {b:?}"
    );
    // Everything emitted once the disconnect was known arrived.
    let missing: Vec<u64> = (0..=last)
        .filter(|k| !a.contains(k) && !b.contains(k))
        .collect();
    assert!(
        missing.iter().all(|k| *k < first_buffered),
        "{mode:?}: lost {missing:?}, buffering started at {first_buffered}"
    );
    assert!((first_buffered..=last).all(|k| b.contains(&k)));
    // Both namespaces rejoined with their auth.
    assert!(
        s2.seen
            .contains(&format!("CONNECT / {}", root_auth.to_json()))
    );
    assert!(
        s2.seen
            .contains(&format!("CONNECT /custom {}", custom_auth.to_json()))
    );
    assert!(reconnected.is_some_and(|a| a >= 1));
    assert_eq!(disconnects.len(), 2, "{mode:?}: {disconnects:?}");
    assert!(disconnects.iter().all(|(_, r)| matches!(
        r,
        ClientDisconnectReason::TransportClose | ClientDisconnectReason::TransportError
    )));
    eprintln!(
        "{mode:?}: {} before the kill, {} after (buffered from #{first_buffered}), lost in flight {:?}, reconnected at attempt {:?}",
        a.len(),
        b.len(),
        missing,
        reconnected
    );
}

#[test]
fn restart_of_the_official_server_websocket_only() {
    restart(TransportMode::WebSocketOnly);
}

#[test]
fn restart_of_the_official_server_polling_only() {
    restart(TransportMode::PollingOnly);
}

#[test]
fn restart_of_the_official_server_polling_then_upgrade() {
    restart(TransportMode::PollingThenUpgrade);
}

// ----- the msgpack parser ------------------------------------------------------------

/// The official server with extra flags, on a free port.
fn node_server(flags: &[&str]) -> Proc {
    let mut c = node();
    c.args(["sio-server.js", "--port", "0"]).args(flags);
    spawn_ready("node sio-server.js", c)
}

/// The next event named `name` on `nsp` (others are dropped), within 10 s.
fn next_named(client: &mut Client, nsp: NspId, name: &str) -> (Vec<Value>, Option<u64>) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {name:?} within 10 s");
        if let Ok(Some(ClientEvent::Event {
            nsp: n,
            name: got,
            args,
            ack,
        })) = client.next_event(Some(left))
        {
            if n == nsp && got == name {
                return (args, ack);
            }
        }
    }
}

fn bin(b: &[u8]) -> Value {
    Value::Binary(b.to_vec().into())
}

fn msgpack_against_the_official_server(mode: TransportMode) {
    let server = node_server(&["--parser", "msgpack"]);
    let url = format!("http://127.0.0.1:{}", server.port);
    let auth = Value::object([("token", Value::from("abc"))]);
    let options = ClientOptions::new()
        .mode(mode)
        .auth(auth.clone())
        .configure(|c| c.parser(Parser::Msgpack));
    let mut client = Client::connect(&url, options).expect("connect with msgpack");
    let root = client.nsp();
    assert_eq!(next_named(&mut client, root, "auth").0, vec![auth]);
    // The second namespace, over the same connection.
    let custom = client.socket("/custom", None).unwrap();
    assert_eq!(
        next_named(&mut client, custom, "auth").0,
        vec![Value::object::<String>([])]
    );
    // Every kind of value, binary inline at any depth.
    let mixed = vec![
        Value::from("é\u{1e}\u{0}"),
        Value::from(42),
        Value::from(-1.5),
        Value::from(9_007_199_254_740_991u64),
        Value::Null,
        Value::Bool(true),
        Value::object([
            ("b", bin(&[0, 255])),
            ("list", Value::Array(vec![bin(b"x"), Value::from("t")])),
        ]),
        bin(&vec![7u8; 100 * 1024]),
        bin(&[]),
    ];
    client.emit("message", mixed.clone()).unwrap();
    assert_eq!(next_named(&mut client, root, "message-back").0, mixed);
    client.emit("binary", vec![bin(&[1, 2, 3])]).unwrap();
    assert_eq!(
        next_named(&mut client, root, "binary-back").0,
        vec![bin(&[1, 2, 3])]
    );
    // Acks both ways.
    let answer = client
        .emit_with_ack(
            "message-with-ack",
            vec![bin(&[9]), Value::from("x")],
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(answer, vec![bin(&[9]), Value::from("x")]);
    client
        .with(|io, now| {
            let root = io.nsp("/").unwrap();
            io.emit_with_ack(
                now,
                root,
                "server-ack",
                vec![Value::from(1)],
                Some(Duration::from_secs(5)),
            )
        })
        .unwrap()
        .unwrap();
    let (args, ask) = next_named(&mut client, root, "ask");
    assert_eq!(args, vec![Value::from(1)]);
    client
        .ack(root, ask.expect("ask has an ack id"), vec![bin(&[4, 2])])
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        assert!(Instant::now() < end, "no answer to server-ack");
        if let Ok(Some(ClientEvent::Ack { args, .. })) =
            client.next_event(Some(Duration::from_millis(100)))
        {
            break args;
        }
    };
    assert_eq!(answer, vec![bin(&[4, 2])]);
    // Rooms.
    let joined = client
        .emit_with_ack("join", vec![Value::from("r")], Duration::from_secs(5))
        .unwrap();
    assert_eq!(joined, vec![Value::Bool(true)]);
    client
        .emit("to-room", vec![Value::from("r"), bin(&[5])])
        .unwrap();
    assert_eq!(
        next_named(&mut client, root, "room-message").0,
        vec![bin(&[5])]
    );
    // An unknown namespace is refused.
    let nope = client.socket("/nope", None).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < end, "/nope was not refused");
        if let Ok(Some(ClientEvent::ConnectError { nsp, data })) =
            client.next_event(Some(Duration::from_millis(100)))
        {
            assert_eq!(nsp, nope);
            assert_eq!(data.get("message"), Some(&Value::from("Invalid namespace")));
            break;
        }
    }
    let want = match mode {
        TransportMode::PollingOnly => TransportKind::Polling,
        _ => TransportKind::WebSocket,
    };
    let end = Instant::now() + Duration::from_secs(5);
    while client.transport() != Some(want) {
        assert!(Instant::now() < end, "{mode:?}: never on {want:?}");
        thread::sleep(Duration::from_millis(20));
    }
    client.close();
}

#[test]
fn msgpack_against_the_official_server_websocket_only() {
    msgpack_against_the_official_server(TransportMode::WebSocketOnly);
}

#[test]
fn msgpack_against_the_official_server_polling_only() {
    msgpack_against_the_official_server(TransportMode::PollingOnly);
}

#[test]
fn msgpack_against_the_official_server_polling_then_upgrade() {
    msgpack_against_the_official_server(TransportMode::PollingThenUpgrade);
}

// ----- connection state recovery -----------------------------------------------------

/// A TCP proxy in front of a server, whose connections the test can cut:
/// both ends see them close, and while it is down new ones are closed at
/// once.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, live2) = (up.clone(), live.clone());
        thread::spawn(move || {
            for down in listener.incoming().map_while(Result::ok) {
                if !up2.load(Ordering::SeqCst) {
                    let _ = down.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upper) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = down.set_nodelay(true);
                let _ = upper.set_nodelay(true);
                if let (Ok(d), Ok(u)) = (down.try_clone(), upper.try_clone()) {
                    let mut l = live2.lock().unwrap();
                    l.push(d);
                    l.push(u);
                }
                pipe(down, upper);
            }
        });
        Proxy { port, up, live }
    }

    /// Closes every connection, and refuses new ones until
    /// [`resume`](Self::resume).
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn resume(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies both ways until either side ends.
fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
        thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}

/// Events of the recovering client until `done` says stop (or 10 s).
fn collect(client: &mut Client, mut done: impl FnMut(&[ClientEvent]) -> bool) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while !done(&seen) {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; events so far: {seen:#?}");
        if let Ok(Some(ev)) = client.next_event(Some(left)) {
            seen.push(ev);
        }
    }
    seen
}

fn connects(events: &[ClientEvent]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Connect { sid, recovered, .. } => Some((sid.clone(), *recovered)),
            _ => None,
        })
        .collect()
}

fn named<'a>(events: &'a [ClientEvent], want: &str) -> Vec<&'a [Value]> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Event { name, args, .. } if name == want => Some(args.as_slice()),
            _ => None,
        })
        .collect()
}

/// The wsio client recovers from a short cut (same id, `recovered`, each
/// event it missed once and in order, its room kept) and not from a long
/// one (new id, nothing replayed), against a server with recovery on
/// (sessions kept 2000 ms).
fn recovery(server: &Proc, mode: TransportMode, parser: Parser) {
    let proxy = Proxy::start(server.port);
    let direct = format!("http://127.0.0.1:{}", server.port);
    // Longer than the server's heartbeat (300 + 200 ms), which is how it
    // notices a polling connection that went between two requests.
    let options = ClientOptions::new().mode(mode).configure(|c| {
        c.parser(parser)
            .reconnection_delay(Duration::from_millis(700))
            .randomization_factor(0.0)
    });
    let mut client = Client::connect(&format!("http://127.0.0.1:{}", proxy.port), options)
        .expect("connect through the proxy");
    let root = client.nsp();
    let mut other = Client::connect(
        &direct,
        ClientOptions::new().configure(|c| c.parser(parser)),
    )
    .expect("the other client");
    let (auth, _) = next_named(&mut client, root, "auth");
    assert!(
        matches!(auth.last(), Some(Value::String(_))),
        "an offset: {auth:?}"
    );
    client
        .emit_with_ack("join", vec![Value::from("r")], Duration::from_secs(5))
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let first = client
        .with(move |io, _| io.sid(root).map(str::to_owned))
        .unwrap();
    let first = first.expect("connected");

    // A short cut: the room's events meanwhile come once it is back.
    proxy.cut();
    thread::sleep(Duration::from_millis(100));
    for m in ["m1", "m2", "m3"] {
        other
            .emit("to-room", vec![Value::from("r"), Value::from(m)])
            .unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    proxy.resume();
    let events = collect(&mut client, |seen| {
        named(seen, "room-message").len() >= 3 && named(seen, "auth").len() == 1
    });
    assert_eq!(
        connects(&events),
        vec![(first.clone(), true)],
        "{events:#?}"
    );
    let missed: Vec<&Value> = named(&events, "room-message")
        .iter()
        .filter_map(|a| a.first())
        .collect();
    assert_eq!(
        missed,
        [&Value::from("m1"), &Value::from("m2"), &Value::from("m3")]
    );
    // The server saw the pid and offset the client sent.
    let seen = named(&events, "auth")[0]
        .first()
        .cloned()
        .unwrap_or_default();
    assert!(
        seen.get("pid").and_then(Value::as_str).is_some(),
        "{seen:?}"
    );
    assert!(
        seen.get("offset").and_then(Value::as_str).is_some(),
        "{seen:?}"
    );
    // The room was kept.
    other
        .emit("to-room", vec![Value::from("r"), Value::from("m4")])
        .unwrap();
    assert_eq!(
        next_named(&mut client, root, "room-message").0.first(),
        Some(&Value::from("m4"))
    );
    assert!(
        client
            .next_event(Some(Duration::from_millis(300)))
            .ok()
            .flatten()
            .is_none_or(
                |e| !matches!(&e, ClientEvent::Event { name, .. } if name == "room-message")
            ),
        "an event twice"
    );

    // A long cut: a new socket, nothing replayed.
    proxy.cut();
    thread::sleep(Duration::from_millis(100));
    other
        .emit("to-room", vec![Value::from("r"), Value::from("lost")])
        .unwrap();
    thread::sleep(Duration::from_millis(2600));
    proxy.resume();
    let events = collect(&mut client, |seen| named(seen, "auth").len() == 1);
    let back = connects(&events);
    assert_eq!(back.len(), 1, "{events:#?}");
    assert!(!back[0].1 && back[0].0 != first, "{back:?}");
    assert!(named(&events, "room-message").is_empty(), "{events:#?}");
    client.close();
    other.close();
}

#[test]
fn recovery_with_the_official_server_websocket_only() {
    let server = node_server(&["--recovery"]);
    recovery(&server, TransportMode::WebSocketOnly, Parser::Default);
}

#[test]
fn recovery_with_the_official_server_polling_only() {
    let server = node_server(&["--recovery"]);
    recovery(&server, TransportMode::PollingOnly, Parser::Default);
}

#[test]
fn recovery_with_the_official_server_and_msgpack() {
    let server = node_server(&["--recovery", "--parser", "msgpack"]);
    recovery(&server, TransportMode::PollingThenUpgrade, Parser::Msgpack);
}

#[test]
fn recovery_with_the_wsio_server() {
    let server = conformance_with(&["--recovery"]);
    for mode in [TransportMode::WebSocketOnly, TransportMode::PollingOnly] {
        recovery(&server, mode, Parser::Default);
    }
}
