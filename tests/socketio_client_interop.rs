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
//! Node and tests/node/node_modules are required: without them these tests
//! fail and say how to install them (`npm ci --prefix tests/node`).

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use common::*;
use wsio::{
    blocking::{Client, ClientOptions},
    engineio::TransportMode,
    socketio::{ClientDisconnectReason, ClientEvent, Value},
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
