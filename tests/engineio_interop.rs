//! The wsio Engine.IO client against the official Node `engine.io` server
//! (tests/node/sio-server.js: a raw echo on `/engine.io/`, pingInterval 300,
//! pingTimeout 200, maxPayload 1,000,000), in each transport mode.
//!
//! The driver here is a small blocking one: it opens the connections the
//! client asks for, each with a reader thread, and everything they read
//! comes back to the test thread over a channel, which waits at most until
//! the client's next deadline. It moves bytes and nothing else (HTTP and
//! WebSockets are the client's). Node and the packages in
//! tests/node/node_modules are required: without them these tests fail and
//! say how to install them.

use std::{
    collections::{HashMap, VecDeque},
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    ops::ControlFlow,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    thread,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use wsio::{
    engineio::{
        Client, ClientConfig, ClientEvent, ClientState, ClientTransmit, CloseReason, ConnId, Data,
        TransportKind, TransportMode,
    },
    entropy::OsEntropy,
    http::{HeadParser, Limits, Method, client::ResponseReader},
    machine::drain,
};

const PING_INTERVAL: Duration = Duration::from_millis(300);
const CASE_LIMIT: Duration = Duration::from_secs(15);

// ----- the Node server ---------------------------------------------------------

/// The official server, killed when dropped (also when a test panics).
struct NodeServer {
    child: Child,
    addr: SocketAddr,
}

impl NodeServer {
    fn start() -> NodeServer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
        let install = "install the Node peers with `npm ci --prefix tests/node` (Node >= 18)";
        assert!(
            dir.join("node_modules/engine.io/package.json").exists(),
            "tests/node/node_modules is missing: {install}"
        );
        let mut child = Command::new("node")
            .arg(dir.join("sio-server.js"))
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` ({e}): {install}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut server = NodeServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("sio-server.js did not print READY within 20 s");
        let port: u16 = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from sio-server.js: {line:?}"));
        server.addr.set_port(port);
        server
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- the blocking driver ---------------------------------------------------------

enum Input {
    Connected(ConnId, TcpStream),
    Data(ConnId, Vec<u8>),
    Eof(ConnId),
    Failed(ConnId, String),
}

enum Conn {
    /// Connecting (once its first bytes are known): writes wait here;
    /// `close` if asked to close meanwhile.
    Pending {
        writes: Vec<Bytes>,
        close: bool,
        started: bool,
    },
    Open(TcpStream),
}

/// The connections, and what was written on them.
struct Net {
    addr: SocketAddr,
    tx: Sender<Input>,
    conns: HashMap<ConnId, Conn>,
    /// Delay before a WebSocket's TCP connection is made (a slow network).
    ws_delay: Duration,
    /// Bytes written in POST bodies, for checks.
    posted: Vec<Bytes>,
    /// Bytes read from the server, for checks.
    read: usize,
}

struct Driver {
    client: Client,
    rx: Receiver<Input>,
    net: Net,
    events: VecDeque<ClientEvent>,
    /// The upgrade event came (it may come between any two others, so
    /// the event getters below record it rather than return it).
    upgraded: bool,
}

impl Driver {
    fn new(server: &NodeServer, mode: TransportMode) -> Driver {
        Driver::with_ws_delay(server, mode, Duration::ZERO)
    }

    fn with_ws_delay(server: &NodeServer, mode: TransportMode, ws_delay: Duration) -> Driver {
        let config = ClientConfig::new(server.addr.to_string()).mode(mode);
        Driver::with_config(server, config, ws_delay)
    }

    fn with_config(server: &NodeServer, config: ClientConfig, ws_delay: Duration) -> Driver {
        let (tx, rx) = mpsc::channel();
        let mut d = Driver {
            client: Client::new(config, Box::new(OsEntropy::new().unwrap()), Instant::now()),
            rx,
            net: Net {
                addr: server.addr,
                tx,
                conns: HashMap::new(),
                ws_delay,
                posted: Vec::new(),
                read: 0,
            },
            events: VecDeque::new(),
            upgraded: false,
        };
        d.flush();
        d
    }

    /// Performs the client's transmits and collects its events.
    fn flush(&mut self) {
        let now = Instant::now();
        let (net, events) = (&mut self.net, &mut self.events);
        drain(
            &mut self.client,
            now,
            |client, t| {
                if let Err((conn, why)) = net.perform(t) {
                    client.handle_error(now, conn, &why);
                }
                ControlFlow::Continue(())
            },
            |_, e| events.push_back(e),
        );
    }

    fn feed(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Connected(conn, mut s) => {
                let Some(Conn::Pending { writes, close, .. }) = self.net.conns.remove(&conn) else {
                    let _ = s.shutdown(Shutdown::Both);
                    return;
                };
                let ok = writes.iter().all(|w| s.write_all(w).is_ok());
                if close {
                    let _ = s.shutdown(Shutdown::Both);
                } else if ok {
                    self.net.conns.insert(conn, Conn::Open(s));
                } else {
                    self.client.handle_error(now, conn, "write failed");
                }
            }
            Input::Data(conn, b) => {
                self.net.read += b.len();
                self.client.handle_input(now, conn, &b)
            }
            // The client closes its side when it is done with it.
            Input::Eof(conn) => self.client.handle_eof(now, conn),
            Input::Failed(conn, why) => {
                if self.net.conns.remove(&conn).is_some() {
                    self.client.handle_error(now, conn, &why);
                }
            }
        }
    }

    /// One turn of the loop: wait for an input until the client's next
    /// deadline (at most `max_wait`), feed it, run due timers, flush.
    fn turn(&mut self, max_wait: Duration) {
        self.flush();
        let wait = self
            .client
            .poll_timeout()
            .map_or(max_wait, |t| {
                t.saturating_duration_since(Instant::now()).min(max_wait)
            })
            .max(Duration::from_millis(1));
        match self.rx.recv_timeout(wait) {
            Ok(input) => self.feed(input),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("the driver holds a sender"),
        }
        self.client.handle_timeout(Instant::now());
        self.flush();
    }

    /// Drives until an event other than the upgrade comes.
    fn next_event(&mut self) -> ClientEvent {
        let end = Instant::now() + CASE_LIMIT;
        loop {
            match self.events.pop_front() {
                Some(ClientEvent::Upgrade) => {
                    assert!(!self.upgraded, "a second upgrade");
                    self.upgraded = true;
                    continue;
                }
                Some(e) => return e,
                None => {}
            }
            assert!(Instant::now() < end, "no event within {CASE_LIMIT:?}");
            self.turn(Duration::from_millis(50));
        }
    }

    /// Drives for `d`, returning the events meanwhile (but the upgrade).
    fn run_for(&mut self, d: Duration) -> Vec<ClientEvent> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.turn(end.saturating_duration_since(Instant::now()));
        }
        let events: Vec<ClientEvent> = self.events.drain(..).collect();
        self.upgraded |= events.contains(&ClientEvent::Upgrade);
        events
            .into_iter()
            .filter(|e| *e != ClientEvent::Upgrade)
            .collect()
    }

    fn open(&mut self) -> String {
        match self.next_event() {
            ClientEvent::Open { sid, .. } => sid,
            other => panic!("expected the open event, got {other:?}"),
        }
    }

    /// In mode PollingThenUpgrade, waits for the upgrade.
    fn settle(&mut self, mode: TransportMode) {
        if mode == TransportMode::PollingThenUpgrade {
            let end = Instant::now() + CASE_LIMIT;
            while !self.upgraded {
                assert!(Instant::now() < end, "no upgrade");
                let unexpected = self.run_for(Duration::from_millis(5));
                assert!(unexpected.is_empty(), "{unexpected:?}");
            }
            assert_eq!(self.client.transport(), Some(TransportKind::WebSocket));
        } else {
            assert!(!self.upgraded);
        }
    }

    fn send(&mut self, data: impl Into<Data>) {
        self.client.send(Instant::now(), data).expect("send");
        self.flush();
    }

    /// The next `n` messages; any other event fails the test.
    fn messages(&mut self, n: usize) -> Vec<Data> {
        (0..n)
            .map(|_| match self.next_event() {
                ClientEvent::Message(d) => d,
                other => panic!("expected a message, got {other:?}"),
            })
            .collect()
    }

    fn close(&mut self) -> CloseReason {
        self.client.close(Instant::now());
        self.flush();
        loop {
            match self.next_event() {
                ClientEvent::Close { reason, .. } => return reason,
                ClientEvent::Message(_) | ClientEvent::UpgradeFailed(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

impl Net {
    fn perform(&mut self, t: ClientTransmit) -> Result<(), (ConnId, String)> {
        match t {
            ClientTransmit::Connect { conn } => {
                let pending = Conn::Pending {
                    writes: Vec::new(),
                    close: false,
                    started: false,
                };
                self.conns.insert(conn, pending);
            }
            ClientTransmit::Data { conn, data } => {
                let request = HeadParser::new(Limits::default())
                    .parse_request(&data)
                    .ok()
                    .flatten();
                if let Some((head, used)) = &request {
                    if head.method == Method::Post {
                        self.posted.push(data.slice(*used..));
                    }
                }
                let to_ws = request.is_some_and(|(h, _)| h.target.contains("transport=websocket"));
                match self.conns.get_mut(&conn) {
                    Some(Conn::Pending {
                        writes, started, ..
                    }) => {
                        writes.push(data);
                        if !*started {
                            *started = true;
                            let delay = if to_ws { self.ws_delay } else { Duration::ZERO };
                            self.connect(conn, delay);
                        }
                    }
                    Some(Conn::Open(s)) => {
                        if let Err(e) = s.write_all(&data) {
                            self.conns.remove(&conn);
                            return Err((conn, e.to_string()));
                        }
                    }
                    None => {}
                }
            }
            ClientTransmit::Close { conn } => match self.conns.get_mut(&conn) {
                Some(Conn::Pending { close, .. }) => *close = true,
                Some(Conn::Open(s)) => {
                    let _ = s.shutdown(Shutdown::Both);
                    self.conns.remove(&conn);
                }
                None => {}
            },
        }
        Ok(())
    }

    /// Connects on a thread of its own (after `delay`), which then reads.
    fn connect(&self, conn: ConnId, delay: Duration) {
        let (addr, tx) = (self.addr, self.tx.clone());
        thread::spawn(move || {
            thread::sleep(delay);
            let stream = match TcpStream::connect(addr) {
                Ok(s) => s,
                Err(e) => return drop(tx.send(Input::Failed(conn, e.to_string()))),
            };
            let _ = stream.set_nodelay(true);
            let Ok(mut reader) = stream.try_clone() else {
                return drop(tx.send(Input::Failed(conn, "clone failed".into())));
            };
            if tx.send(Input::Connected(conn, stream)).is_err() {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let input = match reader.read(&mut buf) {
                    Ok(0) => Input::Eof(conn),
                    Ok(n) => Input::Data(conn, buf[..n].to_vec()),
                    Err(e) => Input::Failed(conn, e.to_string()),
                };
                let last = !matches!(input, Input::Data(..));
                if tx.send(input).is_err() || last {
                    return;
                }
            }
        });
    }
}

/// A one-off request with `Connection: close`, outside the client.
fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.write_all(req.as_bytes()).expect("write");
    let mut all = Vec::new();
    conn.read_to_end(&mut all).expect("read");
    let mut reader = ResponseReader::new(Limits::default(), 1 << 20);
    let mut buf = BytesMut::from(&all[..]);
    let (head, body) = match reader.read(&mut buf).expect("a response") {
        Some(r) => r,
        None => reader.finish().expect("a response"),
    };
    (head.status, String::from_utf8_lossy(&body).into_owned())
}

fn text(s: &str) -> Data {
    Data::Text(s.to_owned().into())
}

fn numbered(i: usize) -> Data {
    if i % 10 == 9 {
        Data::Binary(Bytes::from(format!("bin{i}").into_bytes()))
    } else {
        text(&format!("msg{i}"))
    }
}

// ----- the cases -----------------------------------------------------------------

fn open(mode: TransportMode) {
    let server = NodeServer::start();
    let mut d = Driver::new(&server, mode);
    let (transport, upgrades) = match mode {
        TransportMode::WebSocketOnly => (TransportKind::WebSocket, vec![]),
        _ => (TransportKind::Polling, vec!["websocket".to_owned()]),
    };
    let sid = match d.next_event() {
        ClientEvent::Open {
            sid,
            upgrades: u,
            ping_interval,
            ping_timeout,
            max_payload,
            transport: t,
        } => {
            assert_eq!(sid.len(), 20);
            assert_eq!(u, upgrades);
            assert_eq!(ping_interval, PING_INTERVAL);
            assert_eq!(ping_timeout, Duration::from_millis(200));
            assert_eq!(max_payload, Some(1_000_000));
            assert_eq!(t, transport);
            sid
        }
        other => panic!("expected the open event, got {other:?}"),
    };
    assert_eq!(d.client.sid(), Some(sid.as_str()));
    d.settle(mode);
    if mode == TransportMode::PollingOnly {
        assert!(d.run_for(Duration::from_millis(200)).is_empty());
        assert_eq!(d.client.transport(), Some(TransportKind::Polling));
    }
    assert_eq!(d.close(), CloseReason::ForcedClose);
    assert_eq!(d.client.state(), ClientState::Closed);
    // The server forgot the session (at once for a polling close packet;
    // a WebSocket close takes a moment).
    let target = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        d.run_for(Duration::from_millis(20));
        let (status, body) = raw_get(server.addr, &target);
        if status == 400 {
            assert!(body.contains(r#""code":1"#), "{body}");
            break;
        }
        assert!(
            Instant::now() < end,
            "the session outlived the close: {status} {body}"
        );
    }
}

fn samples() -> Vec<Data> {
    vec![
        text("hello"),
        text("héllo ✓ wörld"),
        text(""),
        text("4"),
        text("0{}"),
        text("b not base64"),
        text("quotes \" backslash \\ newline \n tab \t"),
        Data::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        Data::Binary(Bytes::new()),
        Data::Binary(Bytes::from_static(&[0x1e, b'b', 0, 255])),
        Data::Binary(Bytes::from(
            (0..65_536u32)
                .map(|i| (i * 7 % 251) as u8)
                .collect::<Vec<_>>(),
        )),
    ]
}

fn echo(mode: TransportMode) {
    let server = NodeServer::start();
    let mut d = Driver::new(&server, mode);
    d.open();
    for s in samples() {
        d.send(s);
    }
    assert_eq!(d.messages(samples().len()), samples());
    d.settle(mode);
    for s in samples() {
        d.send(s);
    }
    assert_eq!(d.messages(samples().len()), samples());
    assert_eq!(d.close(), CloseReason::ForcedClose);
}

fn near_max_payload(mode: TransportMode) {
    let server = NodeServer::start();
    let mut d = Driver::new(&server, mode);
    d.open();
    d.settle(mode);
    let big_text = text(&"é".repeat(450_000)); // 900,000 bytes of UTF-8
    let big_binary = Data::Binary(Bytes::from(
        (0..600_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
    ));
    d.send(big_text.clone());
    d.send(big_binary.clone());
    d.send("after");
    assert_eq!(d.messages(3), [big_text, big_binary, text("after")]);
    if mode == TransportMode::PollingOnly {
        // Batched within maxPayload: the two big ones went in two POSTs.
        assert!(d.net.posted.iter().all(|p| p.len() <= 1_000_000));
    }
    assert_eq!(d.close(), CloseReason::ForcedClose);
}

fn over_max_payload(mode: TransportMode) {
    let server = NodeServer::start();
    let mut d = Driver::new(&server, mode);
    d.open();
    d.settle(mode);
    d.send("x".repeat(1_000_001));
    match d.next_event() {
        ClientEvent::Close { reason, error } => match mode {
            // 413 for the POST.
            TransportMode::PollingOnly => assert_eq!(
                (reason, error),
                (
                    CloseReason::TransportError,
                    Some(wsio::engineio::ClientError::HttpStatus(413))
                )
            ),
            // Close 1009 on the WebSocket.
            _ => assert_eq!(
                (reason, error),
                (
                    CloseReason::TransportClose,
                    Some(wsio::engineio::ClientError::WebSocketClosed(1009))
                )
            ),
        },
        other => panic!("expected the close, got {other:?}"),
    }
    // A fresh session works.
    let mut d = Driver::new(&server, mode);
    d.open();
    d.send("again");
    assert_eq!(d.messages(1), [text("again")]);
}

fn silence(mode: TransportMode) {
    let server = NodeServer::start();
    let mut d = Driver::new(&server, mode);
    let sid = d.open();
    d.settle(mode);
    // Three ping intervals and more: only pings and pongs flow.
    let events = d.run_for(PING_INTERVAL * 4);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(d.client.state(), ClientState::Open);
    assert_eq!(d.client.sid(), Some(sid.as_str()));
    if mode == TransportMode::PollingOnly {
        let pongs = d.net.posted.iter().filter(|p| &p[..] == b"3").count();
        assert!(pongs >= 3, "{pongs} pongs");
    }
    d.send("awake");
    assert_eq!(d.messages(1), [text("awake")]);
    assert_eq!(d.close(), CloseReason::ForcedClose);
}

fn stream_in_order(mode: TransportMode) {
    let server = NodeServer::start();
    // A slow WebSocket: polling carries messages while it connects, then
    // the upgrade pauses it.
    let mut d = Driver::with_ws_delay(&server, mode, Duration::from_millis(250));
    let mut sent = 0;
    for _ in 0..5 {
        d.send(numbered(sent));
        sent += 1;
    }
    d.open();
    let mut got = Vec::new();
    let mut after = 0;
    let mut during_probe = 0;
    let end = Instant::now() + CASE_LIMIT;
    while after < 30 {
        assert!(
            Instant::now() < end,
            "stuck: {} of {sent} echoed",
            got.len()
        );
        if d.client.is_upgrading() {
            during_probe += 1;
        }
        d.send(numbered(sent));
        sent += 1;
        if d.upgraded || mode != TransportMode::PollingThenUpgrade {
            after += 1;
        }
        got.extend(
            d.run_for(Duration::from_millis(5))
                .into_iter()
                .map(|e| match e {
                    ClientEvent::Message(m) => m,
                    other => panic!("unexpected {other:?}"),
                }),
        );
    }
    let rest = sent - got.len();
    got.extend(d.messages(rest));
    assert_eq!(got, (0..sent).map(numbered).collect::<Vec<_>>());
    assert_eq!(d.upgraded, mode == TransportMode::PollingThenUpgrade);
    if mode == TransportMode::PollingThenUpgrade {
        assert!(
            during_probe > 10,
            "only {during_probe} sent during the probe"
        );
    }
    let want = match mode {
        TransportMode::PollingOnly => TransportKind::Polling,
        _ => TransportKind::WebSocket,
    };
    assert_eq!(d.client.transport(), Some(want));
    assert_eq!(d.close(), CloseReason::ForcedClose);
}

/// The official server's `httpCompression` (on by default): the client
/// asks for compressed polling answers and decodes them; large echoes
/// cross gzip-encoded, and as they are when the client does not ask.
#[test]
fn compressed_long_polling() {
    let server = NodeServer::start();
    let json: String = (0..2000)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"user\":\"user{}\",\"online\":true}},",
                i % 13
            )
        })
        .collect();
    let size = json.len();
    for ask in [true, false] {
        let config = ClientConfig::new(server.addr.to_string())
            .mode(TransportMode::PollingOnly)
            .http_compression(ask);
        let mut d = Driver::with_config(&server, config, Duration::ZERO);
        d.open();
        let before = d.net.read;
        for _ in 0..3 {
            d.send(text(&json));
        }
        assert_eq!(d.messages(3), vec![text(&json); 3]);
        let read = d.net.read - before;
        if ask {
            assert!(read < size, "{read} bytes read for 3 x {size}");
        } else {
            assert!(read > 3 * size, "{read} bytes read for 3 x {size}");
        }
        assert_eq!(d.close(), CloseReason::ForcedClose);
    }
}

macro_rules! in_each_mode {
    ($($case:ident),* $(,)?) => {
        mod polling_only {
            $(#[test] fn $case() { super::$case(super::TransportMode::PollingOnly) })*
        }
        mod websocket_only {
            $(#[test] fn $case() { super::$case(super::TransportMode::WebSocketOnly) })*
        }
        mod polling_then_upgrade {
            $(#[test] fn $case() { super::$case(super::TransportMode::PollingThenUpgrade) })*
        }
    };
}

in_each_mode!(
    open,
    echo,
    near_max_payload,
    over_max_payload,
    silence,
    stream_in_order,
);
