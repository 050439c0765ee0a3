//! The wsio Engine.IO client against the official Node `engine.io` server
//! (tests/node/sio-server.js: a raw echo on `/engine.io/`, pingInterval 300,
//! pingTimeout 200, maxPayload 1,000,000), in each transport mode.
//!
//! The driver here is a small blocking one: every HTTP request runs on a
//! thread of its own over a pool of keep-alive connections, each WebSocket
//! stream has a reader thread, and everything they learn comes back to the
//! test thread over a channel, which waits at most until the client's next
//! deadline. Node and the packages in tests/node/node_modules are required:
//! without them these tests fail and say how to install them.

use std::{
    collections::{HashMap, VecDeque},
    io::{self, BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
    },
    thread,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use wsio::{
    engineio::{
        Client, ClientConfig, ClientEvent, ClientState, ClientTransmit, CloseReason, Data,
        RequestFailed, RequestId, TransportKind, TransportMode,
    },
    entropy::OsEntropy,
    http::{Limits, ResponseHead, client::ResponseReader},
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
    Response(RequestId, Result<(ResponseHead, Bytes), RequestFailed>),
    StreamOpened(RequestId, TcpStream),
    StreamData(RequestId, Vec<u8>),
    StreamEof(RequestId),
    StreamError(RequestId),
}

enum Stream {
    /// Connecting: writes wait here; `close` if asked to close meanwhile.
    Pending {
        writes: Vec<Bytes>,
        close: bool,
    },
    Open(TcpStream),
}

struct Driver {
    client: Client,
    addr: SocketAddr,
    tx: Sender<Input>,
    rx: Receiver<Input>,
    pool: Arc<Mutex<Vec<TcpStream>>>,
    streams: HashMap<RequestId, Stream>,
    /// Delay before a WebSocket's TCP connection is made (a slow network).
    ws_delay: Duration,
    events: VecDeque<ClientEvent>,
    /// Bytes written in POST bodies, for checks.
    posted: Vec<Bytes>,
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
        let (tx, rx) = mpsc::channel();
        let mut d = Driver {
            client: Client::new(config, Box::new(OsEntropy::new().unwrap()), Instant::now()),
            addr: server.addr,
            tx,
            rx,
            pool: Arc::new(Mutex::new(Vec::new())),
            streams: HashMap::new(),
            ws_delay,
            events: VecDeque::new(),
            posted: Vec::new(),
            upgraded: false,
        };
        d.flush();
        d
    }

    /// Performs the client's transmits and collects its events.
    fn flush(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                moved = true;
                self.perform(t);
            }
            while let Some(e) = self.client.poll_event() {
                moved = true;
                self.events.push_back(e);
            }
            if !moved {
                return;
            }
        }
    }

    fn perform(&mut self, t: ClientTransmit) {
        match t {
            ClientTransmit::Request { id, request } => {
                if !request.body.is_empty() {
                    self.posted.push(request.body.clone());
                }
                let mut bytes = BytesMut::new();
                request.encode(&mut bytes);
                let (addr, pool, tx) = (self.addr, self.pool.clone(), self.tx.clone());
                thread::spawn(move || {
                    let result = http_exchange(addr, &pool, &bytes)
                        .map_err(|e| RequestFailed::new(e.to_string()));
                    let _ = tx.send(Input::Response(id, result));
                });
            }
            // The thread finishes on its own; its answer is ignored.
            ClientTransmit::CancelRequest { .. } => {}
            ClientTransmit::OpenStream { id } => {
                self.streams.insert(
                    id,
                    Stream::Pending {
                        writes: Vec::new(),
                        close: false,
                    },
                );
                let (addr, tx, delay) = (self.addr, self.tx.clone(), self.ws_delay);
                thread::spawn(move || {
                    thread::sleep(delay);
                    let stream = match TcpStream::connect(addr) {
                        Ok(s) => s,
                        Err(_) => return drop(tx.send(Input::StreamError(id))),
                    };
                    let _ = stream.set_nodelay(true);
                    let Ok(mut reader) = stream.try_clone() else {
                        return drop(tx.send(Input::StreamError(id)));
                    };
                    if tx.send(Input::StreamOpened(id, stream)).is_err() {
                        return;
                    }
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let input = match reader.read(&mut buf) {
                            Ok(0) => Input::StreamEof(id),
                            Ok(n) => Input::StreamData(id, buf[..n].to_vec()),
                            Err(_) => Input::StreamError(id),
                        };
                        let last = !matches!(input, Input::StreamData(..));
                        if tx.send(input).is_err() || last {
                            return;
                        }
                    }
                });
            }
            ClientTransmit::StreamData { id, data } => {
                let failed = match self.streams.get_mut(&id) {
                    Some(Stream::Pending { writes, .. }) => {
                        writes.push(data);
                        false
                    }
                    Some(Stream::Open(s)) => s.write_all(&data).is_err(),
                    None => false,
                };
                if failed {
                    self.streams.remove(&id);
                    self.client.handle_stream_error(Instant::now(), id);
                }
            }
            ClientTransmit::CloseStream { id } => match self.streams.get_mut(&id) {
                Some(Stream::Pending { close, .. }) => *close = true,
                Some(Stream::Open(s)) => {
                    let _ = s.shutdown(Shutdown::Both);
                    self.streams.remove(&id);
                }
                None => {}
            },
        }
    }

    fn feed(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Response(id, r) => self.client.handle_response(now, id, r),
            Input::StreamOpened(id, mut s) => {
                if let Some(Stream::Pending { writes, close }) = self.streams.remove(&id) {
                    let ok = writes.iter().all(|w| s.write_all(w).is_ok());
                    if close {
                        let _ = s.shutdown(Shutdown::Both);
                    } else if ok {
                        self.streams.insert(id, Stream::Open(s));
                    } else {
                        self.client.handle_stream_error(now, id);
                    }
                }
            }
            Input::StreamData(id, b) => self.client.handle_stream_input(now, id, &b),
            Input::StreamEof(id) => {
                self.streams.remove(&id);
                self.client.handle_stream_eof(now, id);
            }
            Input::StreamError(id) => {
                self.streams.remove(&id);
                self.client.handle_stream_error(now, id);
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

/// One HTTP exchange on a pooled keep-alive connection (or a new one; a
/// pooled connection the server closed meanwhile is replaced once).
fn http_exchange(
    addr: SocketAddr,
    pool: &Mutex<Vec<TcpStream>>,
    request: &[u8],
) -> io::Result<(ResponseHead, Bytes)> {
    let pooled = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
    if let Some(conn) = pooled {
        match exchange_on(conn, request) {
            Ok((res, Some(conn))) => {
                pool.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
                return Ok(res);
            }
            Ok((res, None)) => return Ok(res),
            Err(ExchangeError::BeforeResponse(_)) => {}
            Err(ExchangeError::During(e)) => return Err(e),
        }
    }
    let conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    match exchange_on(conn, request) {
        Ok((res, Some(conn))) => {
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            Ok(res)
        }
        Ok((res, None)) => Ok(res),
        Err(ExchangeError::BeforeResponse(e) | ExchangeError::During(e)) => Err(e),
    }
}

enum ExchangeError {
    /// Nothing of a response came: a stale pooled connection.
    BeforeResponse(io::Error),
    During(io::Error),
}

type Exchange = ((ResponseHead, Bytes), Option<TcpStream>);

fn exchange_on(mut conn: TcpStream, request: &[u8]) -> Result<Exchange, ExchangeError> {
    let before = ExchangeError::BeforeResponse;
    conn.write_all(request).map_err(before)?;
    // Polls are held up to a ping interval; this only stops a hung test.
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(ExchangeError::During)?;
    let mut reader = ResponseReader::new(Limits::default(), 64 << 20);
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let bad = |e: wsio::http::HttpError| {
            ExchangeError::During(io::Error::new(io::ErrorKind::InvalidData, e))
        };
        if let Some((head, body)) = reader.read(&mut buf).map_err(bad)? {
            let keep = wsio::http::client::keeps_alive(&head) && buf.is_empty();
            return Ok(((head, body), keep.then_some(conn)));
        }
        match conn.read(&mut chunk) {
            Ok(0) if !reader.in_progress() && buf.is_empty() => {
                return Err(ExchangeError::BeforeResponse(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(0) => return reader.finish().map(|r| (r, None)).map_err(bad),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if !reader.in_progress() && buf.is_empty() => {
                return Err(ExchangeError::BeforeResponse(e));
            }
            Err(e) => return Err(ExchangeError::During(e)),
        }
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
        assert!(d.posted.iter().all(|p| p.len() <= 1_000_000));
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
        let pongs = d.posted.iter().filter(|p| &p[..] == b"3").count();
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
