//! The client wired in memory to the wsio [`Server`] on a virtual clock, plus
//! the client alone against crafted answers for what a correct server never
//! sends.
//!
//! The network ([`Net`]) turns every connection the client opens into a
//! server connection; each delivery takes a fixed latency, and the server's
//! bytes can be cut into seeded random pieces. The server runs an echo
//! application.

use std::{
    collections::{HashMap, VecDeque},
    ops::ControlFlow,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};

use super::{polling::batch, *};

mod backpressure;
mod compression;
use crate::{
    engineio::{Config, Event, Server, Sid, Transmit, encode_payload},
    entropy::{Entropy, SeededEntropy},
    http::{HeadParser, Limits, Method, RequestHead, ResponseHead},
    machine,
};

const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(200);

fn server_config() -> Config {
    Config::default()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
}

fn client_config(mode: TransportMode) -> ClientConfig {
    ClientConfig::new("localhost").mode(mode)
}

const MODES: [TransportMode; 3] = [
    TransportMode::PollingOnly,
    TransportMode::WebSocketOnly,
    TransportMode::PollingThenUpgrade,
];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ----- the in-memory network -------------------------------------------------

#[derive(Debug)]
enum Delivery {
    ServerInput(ConnId, Bytes),
    ServerEof(ConnId),
    ClientInput(ConnId, Bytes),
    ClientEof(ConnId),
}

struct Net {
    server: Server,
    client: Client,
    now: Instant,
    latency: Duration,
    /// Sorted by time: every delivery takes the same latency.
    queue: VecDeque<(Instant, Delivery)>,
    /// The client's connections and the server's, both ways.
    to_server: HashMap<ConnId, ConnId>,
    to_client: HashMap<ConnId, ConnId>,
    /// Cuts the server's bytes into random pieces.
    chunker: Option<SeededEntropy>,
    /// Drops everything the server sends to the client.
    cut: bool,
    echo: bool,
    /// Every transmit of the client, in order.
    log: Vec<ClientTransmit>,
    events: Vec<(Instant, ClientEvent)>,
    server_events: Vec<Event>,
    sid: Option<Sid>,
    /// Bytes that reached a connection the client had closed.
    late: usize,
    /// Bytes the server wrote.
    from_server: usize,
    closed: std::collections::HashSet<ConnId>,
}

impl Net {
    fn new(server: Config, client: ClientConfig) -> Net {
        Net::with_seed(server, client, 11)
    }

    fn with_seed(server: Config, client: ClientConfig, seed: u64) -> Net {
        let now = Instant::now();
        Net {
            server: Server::new(server, Box::new(SeededEntropy::new(7)), now),
            client: Client::new(client, Box::new(SeededEntropy::new(seed)), now),
            now,
            latency: Duration::ZERO,
            queue: VecDeque::new(),
            to_server: HashMap::new(),
            to_client: HashMap::new(),
            chunker: None,
            cut: false,
            echo: true,
            log: Vec::new(),
            events: Vec::new(),
            server_events: Vec::new(),
            sid: None,
            late: 0,
            from_server: 0,
            closed: Default::default(),
        }
        // Nothing moves until the test says so (after setting latency...).
    }

    fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }

    fn chunked(mut self, seed: u64) -> Self {
        self.chunker = Some(SeededEntropy::new(seed));
        self
    }

    fn schedule(&mut self, d: Delivery) {
        self.queue.push_back((self.now + self.latency, d));
    }

    /// Moves everything that can move at the current instant.
    fn pump(&mut self) {
        let now = self.now;
        for _ in 0..100_000 {
            let (mut to_server, mut from_server) = (Vec::new(), Vec::new());
            let mut moved = false;
            machine::drain(
                &mut self.client,
                now,
                |_, t| {
                    to_server.push(t);
                    ControlFlow::Continue(())
                },
                |_, e| {
                    moved = true;
                    self.events.push((now, e));
                },
            );
            for t in to_server {
                moved = true;
                self.log.push(t.clone());
                self.on_client_transmit(t);
            }
            let echo = self.echo;
            machine::drain(
                &mut self.server,
                now,
                |_, t| {
                    from_server.push(t);
                    ControlFlow::Continue(())
                },
                |server, e| {
                    moved = true;
                    match &e {
                        Event::Open { sid, .. } => self.sid = Some(*sid),
                        Event::Message { sid, data } if echo => {
                            let _ = server.send(*sid, data.clone());
                        }
                        _ => {}
                    }
                    self.server_events.push(e);
                },
            );
            for t in from_server {
                moved = true;
                self.on_server_transmit(t);
            }
            if self.queue.front().is_some_and(|(t, _)| *t <= self.now) {
                if let Some((_, d)) = self.queue.pop_front() {
                    moved = true;
                    self.deliver(d);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never settles");
    }

    fn on_client_transmit(&mut self, t: ClientTransmit) {
        match t {
            ClientTransmit::Connect { conn } => {
                let s = self.server.accept(self.now, None);
                self.to_server.insert(conn, s);
                self.to_client.insert(s, conn);
            }
            ClientTransmit::Data { conn, data } => {
                if let Some(&s) = self.to_server.get(&conn) {
                    self.schedule(Delivery::ServerInput(s, data));
                }
            }
            ClientTransmit::Close { conn } => {
                self.closed.insert(conn);
                if let Some(s) = self.to_server.remove(&conn) {
                    self.schedule(Delivery::ServerEof(s));
                }
            }
        }
    }

    fn on_server_transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Data { conn, data } => {
                self.from_server += data.len();
                if let Some(&c) = self.to_client.get(&conn) {
                    self.schedule(Delivery::ClientInput(c, data));
                }
            }
            Transmit::Close { conn } => {
                if let Some(c) = self.to_client.remove(&conn) {
                    self.schedule(Delivery::ClientEof(c));
                }
            }
            Transmit::Response { .. } => panic!("raw connections only"),
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        match d {
            Delivery::ServerInput(conn, b) => self.server.handle_input(now, conn, &b),
            Delivery::ServerEof(conn) => self.server.handle_eof(now, conn),
            _ if self.cut => {}
            Delivery::ClientInput(conn, _) if self.closed.contains(&conn) => self.late += 1,
            Delivery::ClientInput(conn, b) => match &mut self.chunker {
                None => self.client.handle_input(now, conn, &b),
                Some(rng) => {
                    let mut rest = &b[..];
                    while !rest.is_empty() {
                        let n = 1 + rng.next_u32() as usize % rest.len().min(7);
                        let (piece, tail) = rest.split_at(n);
                        self.client.handle_input(now, conn, piece);
                        rest = tail;
                    }
                }
            },
            Delivery::ClientEof(conn) => self.client.handle_eof(now, conn),
        }
    }

    /// Runs the clock forward by `d`, stopping at every deadline and
    /// delivery on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1_000_000 {
            let next = [
                self.client.poll_timeout(),
                self.server.poll_timeout(),
                self.queue.front().map(|(t, _)| *t),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                    self.pump();
                }
                _ => {
                    self.now = end;
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                    self.pump();
                    return;
                }
            }
        }
        panic!("time does not advance");
    }

    /// Advances in small steps until `f` holds (at most `limit`).
    fn until(&mut self, limit: Duration, mut f: impl FnMut(&Net) -> bool) {
        let end = self.now + limit;
        while !f(self) {
            assert!(self.now < end, "condition not met within {limit:?}");
            self.advance(ms(1));
        }
    }

    fn send(&mut self, data: impl Into<Data>) {
        let now = self.now;
        self.client.send(now, data).expect("send");
        self.pump();
    }

    fn open(&mut self) {
        self.until(ms(1000), |n| n.client.state() == ClientState::Open);
    }

    fn upgraded(&mut self) {
        self.until(ms(2000), |n| {
            n.client.transport() == Some(TransportKind::WebSocket)
        });
    }

    fn client_events(&self) -> Vec<ClientEvent> {
        self.events.iter().map(|(_, e)| e.clone()).collect()
    }

    fn received(&self) -> Vec<Data> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                ClientEvent::Message(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    fn server_received(&self) -> Vec<Data> {
        self.server_events
            .iter()
            .filter_map(|e| match e {
                Event::Message { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect()
    }

    fn client_close(&self) -> Option<(CloseReason, Option<ClientError>)> {
        self.events.iter().find_map(|(_, e)| match e {
            ClientEvent::Close { reason, error } => Some((*reason, error.clone())),
            _ => None,
        })
    }

    fn server_close(&self) -> Option<CloseReason> {
        self.server_events.iter().find_map(|e| match e {
            Event::Close { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    /// The bodies of the client's POSTs.
    fn posts(&self) -> Vec<Bytes> {
        self.log
            .iter()
            .filter_map(request_of)
            .filter(|(head, _)| head.method == Method::Post)
            .map(|(_, body)| body)
            .collect()
    }
}

/// The request a transmit writes, if it is one: its head and body.
fn request_of(t: &ClientTransmit) -> Option<(RequestHead, Bytes)> {
    let ClientTransmit::Data { data, .. } = t else {
        return None;
    };
    let (head, used) = HeadParser::new(Limits::default())
        .parse_request(data)
        .ok()??;
    Some((head, data.slice(used..)))
}

fn text(s: &str) -> Data {
    Data::Text(s.to_owned().into())
}

fn numbered(i: usize) -> Data {
    if i % 5 == 4 {
        Data::Binary(Bytes::from(format!("bin{i}").into_bytes()))
    } else {
        text(&format!("msg{i}"))
    }
}

/// A kind-only transcript of transmits, to read like a script: `connect`,
/// a request (`GET polling`, `POST polling <body>`, `GET websocket`), other
/// bytes (`data`), `close`.
fn kinds(log: &[ClientTransmit]) -> Vec<String> {
    log.iter()
        .map(|t| match (t, request_of(t)) {
            (ClientTransmit::Connect { .. }, _) => "connect".into(),
            (ClientTransmit::Close { .. }, _) => "close".into(),
            (_, Some((head, body))) => {
                let q = head.query();
                let body = String::from_utf8_lossy(&body);
                format!(
                    "{} {}{}",
                    head.method.as_str(),
                    q.get("transport").unwrap_or("?"),
                    if body.is_empty() {
                        String::new()
                    } else {
                        format!(" {body}")
                    }
                )
            }
            (ClientTransmit::Data { .. }, None) => "data".into(),
        })
        .collect()
}

// ----- handshake ---------------------------------------------------------------

#[test]
fn polling_handshake_is_the_official_request() {
    let now = Instant::now();
    let config = ClientConfig::new("example.com:3000")
        .query_param("token", "a b&c")
        .header("Cookie", "x=1");
    let mut c = Client::new(config, Box::new(SeededEntropy::new(1)), now);
    let t = drain(&mut c);
    let [
        ClientTransmit::Connect { conn },
        ClientTransmit::Data { conn: on, .. },
    ] = t[..]
    else {
        panic!("no handshake request: {t:?}")
    };
    assert_eq!((conn, on), (ConnId(1), ConnId(1)));
    let (head, body) = request_of(&t[1]).expect("a request");
    assert_eq!(head.method, Method::Get);
    let target = &head.target;
    assert!(
        target.starts_with("/engine.io/?token=a%20b%26c&EIO=4&transport=polling&t="),
        "{target}"
    );
    let t = head.query().get("t").unwrap().to_owned();
    assert_eq!(t.len(), 8);
    assert!(
        t.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    );
    assert_eq!(head.headers.get_str("host"), Some("example.com:3000"));
    assert_eq!(head.headers.get_str("accept"), Some("*/*"));
    assert_eq!(head.headers.get_str("cookie"), Some("x=1"));
    assert!(body.is_empty());
    assert_eq!(c.poll_transmit(now), None);
    assert_eq!(c.state(), ClientState::Opening);
    assert_eq!(c.transport(), Some(TransportKind::Polling));
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(20)));

    let config = ClientConfig::new("h").timestamp_requests(false).path("/x");
    let mut c = Client::new(config, Box::new(SeededEntropy::new(1)), now);
    let t = drain(&mut c);
    let (head, _) = request_of(&t[1]).expect("a request");
    assert_eq!(head.target, "/x/?EIO=4&transport=polling");
}

#[test]
fn handshake_in_each_mode() {
    for mode in MODES {
        let mut net = Net::new(server_config(), client_config(mode));
        net.open();
        let sid = net.sid.expect("the server opened a session").to_string();
        assert_eq!(net.client.sid(), Some(sid.as_str()));
        let (transport, upgrades) = match mode {
            TransportMode::WebSocketOnly => (TransportKind::WebSocket, vec![]),
            _ => (TransportKind::Polling, vec!["websocket".to_owned()]),
        };
        assert_eq!(
            net.client_events()[0],
            ClientEvent::Open {
                sid: sid.clone(),
                upgrades,
                ping_interval: PING_INTERVAL,
                ping_timeout: PING_TIMEOUT,
                max_payload: Some(1_000_000),
                transport,
            },
            "{mode:?}"
        );
        net.advance(ms(50));
        match mode {
            TransportMode::PollingOnly => {
                assert_eq!(
                    kinds(&net.log),
                    ["connect", "GET polling", "GET polling"],
                    "one poll always in flight, on a kept-alive connection"
                );
                assert_eq!(net.client.transport(), Some(TransportKind::Polling));
            }
            TransportMode::WebSocketOnly => {
                assert_eq!(kinds(&net.log), ["connect", "GET websocket"]);
                let (head, _) = request_of(&net.log[1]).unwrap();
                assert_eq!(head.target, "/engine.io/?EIO=4&transport=websocket");
                assert_eq!(head.headers.get_str("host"), Some("localhost"));
            }
            TransportMode::PollingThenUpgrade => {
                assert_eq!(net.client.transport(), Some(TransportKind::WebSocket));
                assert_eq!(
                    net.server.transport(net.sid.unwrap()),
                    Some(TransportKind::WebSocket)
                );
                assert!(net.client_events().contains(&ClientEvent::Upgrade));
                let (head, _) = net
                    .log
                    .iter()
                    .filter_map(request_of)
                    .find(|(h, _)| h.query().get("transport") == Some("websocket"))
                    .unwrap_or_else(|| panic!("{:?}", kinds(&net.log)));
                assert_eq!(
                    head.target,
                    format!("/engine.io/?EIO=4&transport=websocket&sid={sid}")
                );
            }
        }
    }
}

#[test]
fn upgrade_transcript() {
    let mut net = Net::new(
        server_config(),
        client_config(TransportMode::PollingThenUpgrade),
    )
    .latency(ms(2));
    net.upgraded();
    // handshake; the probe's connection and upgrade request; next poll (on
    // the same connection, kept alive); 2probe; the poll released by the
    // server's noop ends the pause; 5, and polling's connection goes.
    assert_eq!(
        kinds(&net.log),
        [
            "connect",
            "GET polling",
            "connect",
            "GET websocket",
            "GET polling",
            "data",
            "GET polling",
            "data",
            "close"
        ]
    );
    let frames: Vec<ClientTransmit> = net.log.clone();
    let ClientTransmit::Data { data, conn } = &frames[5] else {
        panic!()
    };
    assert_eq!(*conn, ConnId(2));
    assert_eq!(unmask_text(data), "2probe");
    let ClientTransmit::Data { data, .. } = &frames[7] else {
        panic!()
    };
    assert_eq!(unmask_text(data), "5");
    assert_eq!(frames[8], ClientTransmit::Close { conn: ConnId(1) });
    assert_eq!(
        net.client_events()
            .into_iter()
            .filter(|e| !matches!(e, ClientEvent::Open { .. }))
            .collect::<Vec<_>>(),
        [ClientEvent::Upgrade]
    );
}

/// The text of one small masked client frame.
fn unmask_text(frame: &[u8]) -> String {
    assert_eq!(frame[0], 0x81, "a final text frame");
    let len = (frame[1] & 0x7f) as usize;
    assert!(frame[1] & 0x80 != 0 && len < 126);
    let key = &frame[2..6];
    let payload: Vec<u8> = frame[6..6 + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    String::from_utf8(payload).unwrap()
}

// ----- messages ---------------------------------------------------------------

fn samples() -> Vec<Data> {
    vec![
        text("hello"),
        text(""),
        text("héllo ✓"),
        text("4"),
        text("0{}"),
        Data::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        Data::Binary(Bytes::new()),
        Data::Binary(Bytes::from_static(&[0x1e, b'b', 0, 255])),
    ]
}

#[test]
fn echo_text_and_binary_in_each_mode() {
    for mode in MODES {
        let mut net = Net::new(server_config(), client_config(mode));
        // Before the open: buffered, then sent first.
        net.send(text("early"));
        net.open();
        for d in samples() {
            net.send(d);
        }
        net.advance(ms(100));
        if mode == TransportMode::PollingThenUpgrade {
            net.upgraded();
            for d in samples() {
                net.send(d);
            }
            net.advance(ms(50));
        }
        let mut want = vec![text("early")];
        want.extend(samples());
        if mode == TransportMode::PollingThenUpgrade {
            want.extend(samples());
        }
        assert_eq!(net.server_received(), want, "{mode:?}");
        assert_eq!(net.received(), want, "{mode:?}");
    }
}

#[test]
fn separator_in_text_is_refused_over_polling_only() {
    let mut net = Net::new(server_config(), client_config(TransportMode::PollingOnly));
    net.open();
    let now = net.now;
    assert_eq!(
        net.client.send(now, text("a\u{1e}b")),
        Err(ClientUsageError::SeparatorInText)
    );
    let mut net = Net::new(server_config(), client_config(TransportMode::WebSocketOnly));
    net.open();
    net.send(text("a\u{1e}b"));
    net.advance(ms(10));
    assert_eq!(net.received(), [text("a\u{1e}b")]);
}

#[test]
fn send_buffer_limit() {
    let now = Instant::now();
    let mut c = Client::new(
        ClientConfig::new("h").max_buffered_packets(2),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    assert_eq!(c.send(now, "a"), Ok(()));
    assert_eq!(c.send(now, "b"), Ok(()));
    assert_eq!(c.send(now, "c"), Err(ClientUsageError::BufferFull));
    assert_eq!(c.buffered_packets(), 2);
}

// ----- upgrade -----------------------------------------------------------------

/// Sends numbered messages before the open, at every step of the upgrade
/// and after it, while the server sends its own; everything arrives once,
/// in order.
/// Returns how many messages were sent while polling was pausing.
fn upgrade_scenario(latency: Duration, seed: u64) -> usize {
    let mut net = Net::with_seed(
        server_config(),
        client_config(TransportMode::PollingThenUpgrade),
        seed,
    )
    .latency(latency);
    let mut next = 0usize;
    let mut server_next = 0usize;
    let mut during_probe = 0;
    let mut during_pause = 0;
    for _ in 0..3 {
        net.send(numbered(next));
        next += 1;
    }
    let end = net.now + ms(3000);
    let mut after = 0;
    while after < 20 {
        assert!(net.now < end, "no upgrade");
        if net.client.state() == ClientState::Open {
            if net.client.is_upgrading() {
                during_probe += 1;
            }
            if net.client.upgrade_pausing() {
                during_pause += 1;
            }
            if net.client.transport() == Some(TransportKind::WebSocket) {
                after += 1;
            }
            net.send(numbered(next));
            next += 1;
            if let Some(sid) = net.sid {
                net.server
                    .send(sid, format!("srv{server_next}"))
                    .expect("server send");
                server_next += 1;
                net.pump();
            }
        }
        net.advance(ms(1));
    }
    net.advance(ms(200));
    if !latency.is_zero() {
        assert!(
            during_probe > 0,
            "nothing was sent during the upgrade ({latency:?})"
        );
    }
    assert_eq!(net.client.transport(), Some(TransportKind::WebSocket));
    let want: Vec<Data> = (0..next).map(numbered).collect();
    assert_eq!(net.server_received(), want, "latency {latency:?}");
    // The client hears the echoes and the server's own messages, each
    // stream in order and complete.
    let got = net.received();
    let echoes: Vec<Data> = got
        .iter()
        .filter(|d| !matches!(d, Data::Text(t) if t.as_str().starts_with("srv")))
        .cloned()
        .collect();
    let own: Vec<Data> = got
        .iter()
        .filter(|d| matches!(d, Data::Text(t) if t.as_str().starts_with("srv")))
        .cloned()
        .collect();
    assert_eq!(echoes, want, "latency {latency:?}");
    assert_eq!(
        own,
        (0..server_next)
            .map(|i| text(&format!("srv{i}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        net.client_events()
            .iter()
            .filter(|e| matches!(e, ClientEvent::Upgrade))
            .count(),
        1
    );
    assert_eq!(net.client_close(), None);
    during_pause
}

#[test]
fn upgrade_loses_and_repeats_nothing() {
    let mut during_pause = 0;
    for (i, latency) in [0, 1, 3, 7, 20, 45].into_iter().enumerate() {
        during_pause += upgrade_scenario(ms(latency), 100 + i as u64);
    }
    // Some runs send while polling waits for the held poll (released by
    // the server's noop timer).
    assert!(during_pause > 0);
}

#[test]
fn probe_refused_keeps_polling() {
    // The server does not take WebSockets, though it lists the upgrade.
    let now = Instant::now();
    let mut c = Client::new(
        client_config(TransportMode::PollingThenUpgrade),
        Box::new(SeededEntropy::new(3)),
        now,
    );
    let get = take_request(&mut c);
    answer(&mut c, now, get, &open_packet("abcdefghijklmnopqrst", true));
    let t = drain(&mut c);
    assert_eq!(kinds(&t), ["connect", "GET websocket", "GET polling"]);
    let ClientTransmit::Connect { conn: stream } = t[0] else {
        panic!()
    };
    let ClientTransmit::Data { conn: poll, .. } = t[2] else {
        panic!()
    };
    assert_eq!(poll, get, "the poll goes on the handshake's connection");
    assert!(matches!(events(&mut c)[..], [ClientEvent::Open { .. }]));
    c.handle_error(now, stream, "refused");
    assert!(
        drain(&mut c).is_empty(),
        "a failed connection needs no close"
    );
    assert_eq!(
        events(&mut c),
        [ClientEvent::UpgradeFailed(ClientError::ConnectionFailed(
            "refused".into()
        ))]
    );
    assert!(!c.is_upgrading());
    c.send(now, "still here").unwrap();
    assert_eq!(
        kinds(&drain(&mut c)),
        ["connect", "POST polling 4still here"],
        "the poll's connection is busy"
    );
    answer(&mut c, now, poll, "6");
    assert_eq!(kinds(&drain(&mut c)), ["GET polling"]);

    // A probe answered wrongly is closed; polling goes on.
    let mut c = Client::new(
        client_config(TransportMode::PollingThenUpgrade),
        Box::new(SeededEntropy::new(3)),
        now,
    );
    let get = take_request(&mut c);
    answer(&mut c, now, get, &open_packet("abcdefghijklmnopqrst", true));
    let t = drain(&mut c);
    let Some(ClientTransmit::Connect { conn: stream }) = t.first().cloned() else {
        panic!()
    };
    let mut server = FakeWs::accept(&mut c, now, stream, &t);
    assert_eq!(server.texts(), ["2probe"]);
    assert!(matches!(events(&mut c)[..], [ClientEvent::Open { .. }]));
    server.send(&mut c, now, "3nope");
    assert_eq!(
        events(&mut c),
        [ClientEvent::UpgradeFailed(ClientError::BadProbe)]
    );
    let t = drain(&mut c);
    assert_eq!(kinds(&t), ["data"], "a close frame");
    server.feed(now, &t);
    assert_eq!(c.transport(), Some(TransportKind::Polling));
    assert_eq!(c.state(), ClientState::Open);

    // A probe never answered times out.
    let mut c = Client::new(
        client_config(TransportMode::PollingThenUpgrade).request_timeout(ms(400)),
        Box::new(SeededEntropy::new(3)),
        now,
    );
    let get = take_request(&mut c);
    answer(&mut c, now, get, &open_packet("abcdefghijklmnopqrst", true));
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(now + ms(400)));
    c.handle_timeout(now + ms(399));
    assert!(
        events(&mut c)
            .iter()
            .all(|e| matches!(e, ClientEvent::Open { .. }))
    );
    c.handle_timeout(now + ms(400));
    assert_eq!(
        events(&mut c),
        [ClientEvent::UpgradeFailed(ClientError::Timeout)]
    );
    assert_eq!(kinds(&drain(&mut c)), ["close"]);
    assert_eq!(c.state(), ClientState::Open);
}

#[test]
fn no_upgrade_when_not_offered_or_not_wanted() {
    let mut net = Net::new(
        server_config().allow_upgrades(false),
        client_config(TransportMode::PollingThenUpgrade),
    );
    net.open();
    net.advance(ms(1000));
    assert!(!kinds(&net.log).contains(&"GET websocket".to_owned()));
    assert_eq!(net.client.transport(), Some(TransportKind::Polling));
}

// ----- heartbeat ----------------------------------------------------------------

#[test]
fn heartbeat_holds_for_many_intervals() {
    for mode in MODES {
        let mut net = Net::new(server_config(), client_config(mode)).latency(ms(3));
        net.open();
        let sid = net.client.sid().unwrap().to_owned();
        net.advance(PING_INTERVAL * 10);
        assert_eq!(net.client.state(), ClientState::Open, "{mode:?}");
        assert_eq!(net.client.sid(), Some(sid.as_str()));
        assert_eq!(net.server.session_count(), 1);
        assert_eq!(net.server_close(), None);
        // Ten pings answered: over polling each pong is a POST.
        if mode == TransportMode::PollingOnly {
            // A ping every interval after the last pong (3 ms each way).
            assert_eq!(net.posts().len(), 9, "{:?}", kinds(&net.log));
            assert!(net.posts().iter().all(|p| &p[..] == b"3"));
        }
        // The deadline follows the last ping.
        let deadline = net.client.poll_timeout().unwrap();
        assert!(deadline <= net.now + PING_INTERVAL + PING_TIMEOUT);
        net.send("still");
        net.advance(ms(20));
        assert_eq!(net.received(), [text("still")]);
    }
}

#[test]
fn ping_timeout_when_the_server_goes_silent() {
    for mode in MODES {
        let mut net = Net::new(server_config(), client_config(mode));
        net.open();
        let opened = net.events[0].0;
        net.cut = true;
        net.advance(ms(2000));
        let closes: Vec<_> = net
            .events
            .iter()
            .filter(|(_, e)| matches!(e, ClientEvent::Close { .. }))
            .collect();
        assert_eq!(closes.len(), 1);
        assert_eq!(
            closes[0],
            &(
                opened + PING_INTERVAL + PING_TIMEOUT,
                ClientEvent::Close {
                    reason: CloseReason::PingTimeout,
                    error: None
                }
            ),
            "{mode:?}"
        );
        assert_eq!(net.client.state(), ClientState::Closed);
        // A WebSocket waits for the close handshake, then gives up; a
        // farewell POST nobody answers, and the poll beside it, are given
        // up after the request timeout.
        net.advance(ms(21_000));
        assert_eq!(net.client.poll_timeout(), None, "{mode:?}");
        assert!(net.client.is_finished(), "{mode:?}");
        if mode == TransportMode::PollingOnly {
            // As the official client, a last close packet goes out.
            assert_eq!(net.posts().last().map(|b| &b[..]), Some(&b"1"[..]));
        }
    }
}

#[test]
fn ping_timer_restarts_on_each_ping() {
    let now = Instant::now();
    let mut c = Client::new(
        client_config(TransportMode::PollingOnly),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    let get = take_request(&mut c);
    answer(
        &mut c,
        now,
        get,
        &open_packet("abcdefghijklmnopqrst", false),
    );
    let poll = take_request(&mut c);
    assert_eq!(c.poll_timeout(), Some(now + ms(500)));
    let t1 = now + ms(300);
    answer(&mut c, t1, poll, "2");
    assert_eq!(c.poll_timeout(), Some(t1 + ms(500)));
    c.handle_timeout(now + ms(500));
    assert_eq!(c.state(), ClientState::Open);
    c.handle_timeout(t1 + ms(500));
    assert_eq!(c.state(), ClientState::Closed);
}

// ----- closing ------------------------------------------------------------------

#[test]
fn server_close_reaches_the_client() {
    for mode in MODES {
        let mut net = Net::new(server_config(), client_config(mode)).latency(ms(1));
        net.open();
        if mode == TransportMode::PollingThenUpgrade {
            net.upgraded();
        }
        let now = net.now;
        net.server.close(now, net.sid.unwrap()).unwrap();
        net.pump();
        net.advance(ms(100));
        assert_eq!(
            net.client_close(),
            Some((
                CloseReason::TransportClose,
                match mode {
                    TransportMode::PollingOnly => None,
                    _ => Some(ClientError::WebSocketClosed(1005)),
                }
            )),
            "{mode:?}"
        );
        assert_eq!(net.server_close(), Some(CloseReason::ForcedClose));
        net.advance(ms(6000));
        assert_eq!(net.client.poll_timeout(), None);
        assert_eq!(
            net.server.conn_count(),
            0,
            "{mode:?}: every connection ended"
        );
    }
}

#[test]
fn client_close_in_each_mode() {
    for mode in MODES {
        let mut net = Net::new(server_config(), client_config(mode)).latency(ms(1));
        net.open();
        if mode == TransportMode::PollingThenUpgrade {
            net.upgraded();
        }
        // Buffered messages leave before the close.
        net.send("a");
        net.send("b");
        let now = net.now;
        net.client.close(now);
        net.pump();
        assert_eq!(net.client.send(now, "late"), Err(ClientUsageError::Closed));
        net.advance(ms(100));
        assert_eq!(
            net.client_close(),
            Some((CloseReason::ForcedClose, None)),
            "{mode:?}"
        );
        assert_eq!(net.server_received(), [text("a"), text("b")], "{mode:?}");
        assert_eq!(
            net.server_close(),
            Some(CloseReason::TransportClose),
            "{mode:?}"
        );
        assert_eq!(net.client.state(), ClientState::Closed);
        assert_eq!(net.client.sid(), None);
        assert_eq!(net.client.transport(), None);
        if mode == TransportMode::PollingOnly {
            assert_eq!(net.posts().last().map(|b| &b[..]), Some(&b"1"[..]));
            assert_eq!(
                net.late, 0,
                "the held poll is left for the server to release"
            );
        }
        net.advance(ms(6000));
        assert_eq!(net.client.poll_timeout(), None);
        assert_eq!(net.server.conn_count(), 0, "{mode:?}");
        let closes = net
            .client_events()
            .iter()
            .filter(|e| matches!(e, ClientEvent::Close { .. }))
            .count();
        assert_eq!(closes, 1);
        assert!(matches!(
            net.client_events().last(),
            Some(ClientEvent::Close { .. })
        ));
    }
}

#[test]
fn close_while_opening_closes_the_session_it_opens() {
    let mut net =
        Net::new(server_config(), client_config(TransportMode::PollingOnly)).latency(ms(5));
    let now = net.now;
    net.client.close(now);
    net.pump();
    assert_eq!(net.client_close(), Some((CloseReason::ForcedClose, None)));
    net.advance(ms(50));
    assert_eq!(net.posts(), [Bytes::from_static(b"1")]);
    assert_eq!(net.server_close(), Some(CloseReason::TransportClose));
    assert_eq!(net.server.session_count(), 0);
    assert_eq!(
        net.client_events().len(),
        1,
        "nothing after the close: {:?}",
        net.client_events()
    );

    let mut net =
        Net::new(server_config(), client_config(TransportMode::WebSocketOnly)).latency(ms(5));
    let now = net.now;
    net.client.close(now);
    net.pump();
    assert_eq!(kinds(&net.log), ["connect", "GET websocket", "close"]);
    net.advance(ms(50));
    assert_eq!(net.client_close(), Some((CloseReason::ForcedClose, None)));
}

#[test]
fn close_during_an_upgrade_waits_for_it() {
    let mut net = Net::new(
        server_config(),
        client_config(TransportMode::PollingThenUpgrade),
    )
    .latency(ms(5));
    net.open();
    net.until(ms(1000), |n| n.client.upgrade_pausing());
    net.send("during");
    let now = net.now;
    net.client.close(now);
    net.pump();
    assert_eq!(net.client.state(), ClientState::Closing);
    net.advance(ms(200));
    assert!(net.client_events().contains(&ClientEvent::Upgrade));
    assert_eq!(net.client_close(), Some((CloseReason::ForcedClose, None)));
    assert_eq!(net.server_received(), [text("during")]);
    assert_eq!(net.server_close(), Some(CloseReason::TransportClose));
}

// ----- maxPayload ---------------------------------------------------------------

#[test]
fn polling_writes_are_batched_within_max_payload() {
    let mut net = Net::new(
        server_config().max_payload(200),
        client_config(TransportMode::PollingOnly),
    )
    .latency(ms(5));
    // Buffered before the open so they all leave together.
    let sent: Vec<Data> = (0..12)
        .map(|i| {
            if i % 3 == 2 {
                Data::Binary(Bytes::from(vec![i as u8; 30]))
            } else {
                text(&format!("{i:0>40}"))
            }
        })
        .collect();
    for d in &sent {
        net.send(d.clone());
    }
    net.open();
    net.advance(ms(50));
    assert_eq!(net.server_received(), sent);
    let posts = net.posts();
    // 41 bytes a packet: four (167 bytes with separators) fit, five do not.
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert!(posts.iter().all(|p| p.len() <= 200), "{posts:?}");
    // Greedy: each batch but the last could not take one more packet.
    let joined: usize = posts.iter().map(|p| p.len()).sum();
    assert_eq!(
        joined + posts.len() - 1,
        encode_payload(
            &sent
                .iter()
                .map(|d| Packet::message(d.clone()))
                .collect::<Vec<_>>()
        )
        .len()
    );
    assert_eq!(net.server_close(), None);
}

#[test]
fn over_max_payload_ends_the_session() {
    for mode in MODES {
        let mut net = Net::new(server_config().max_payload(200), client_config(mode));
        net.open();
        if mode == TransportMode::PollingThenUpgrade {
            net.upgraded();
        }
        net.send("x".repeat(199));
        net.advance(ms(20));
        assert_eq!(net.client_close(), None, "{mode:?}: 200 bytes fit");
        net.send("x".repeat(200));
        net.advance(ms(20));
        let want = match mode {
            TransportMode::PollingOnly => (
                CloseReason::TransportError,
                Some(ClientError::HttpStatus(413)),
            ),
            _ => (
                CloseReason::TransportClose,
                Some(ClientError::WebSocketClosed(1009)),
            ),
        };
        assert_eq!(net.client_close(), Some(want), "{mode:?}");
    }
}

#[test]
fn batch_sizes_are_exact() {
    let p = |n: usize| Packet::message(text(&"a".repeat(n)));
    let packets = [p(8), p(8), p(8)]; // 9 bytes each, 1 separator
    assert_eq!(batch(&packets, Some(19)).len(), 2);
    assert_eq!(batch(&packets, Some(18)).len(), 1);
    assert_eq!(batch(&packets, Some(29)).len(), 3);
    assert_eq!(batch(&packets, Some(1)).len(), 1, "one always goes");
    assert_eq!(batch(&packets, None).len(), 3);
    let bin = Packet::message(Data::Binary(Bytes::from_static(&[1, 2, 3, 4])));
    assert_eq!(bin.encoded_len(), 9); // b + AQIDBA==
}

// ----- errors -------------------------------------------------------------------

#[test]
fn parse_errors_close_the_session() {
    let now = Instant::now();
    // A bad packet in a poll: the good ones before it are delivered.
    let mut c = Client::new(
        client_config(TransportMode::PollingOnly),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    let get = take_request(&mut c);
    answer(
        &mut c,
        now,
        get,
        &open_packet("abcdefghijklmnopqrst", false),
    );
    let poll = take_request(&mut c);
    answer(&mut c, now, poll, "4good\u{1e}x");
    assert_eq!(
        events(&mut c)[1..],
        [
            ClientEvent::Message(text("good")),
            ClientEvent::Close {
                reason: CloseReason::ParseError,
                error: Some(ClientError::Decode(DecodeError::UnknownType(b'x')))
            }
        ]
    );
    let t = drain(&mut c);
    assert_eq!(kinds(&t), ["POST polling 1"]);

    // Bad handshakes.
    for body in [
        "4hello",
        "0{\"sid\":1}",
        "0not json",
        "0{\"sid\":\"a\",\"pingInterval\":1}",
        "6",
        "",
    ] {
        let mut c = Client::new(
            client_config(TransportMode::PollingOnly),
            Box::new(SeededEntropy::new(1)),
            now,
        );
        let get = take_request(&mut c);
        answer(&mut c, now, get, body);
        let ev = events(&mut c);
        assert!(
            matches!(
                ev.as_slice(),
                [ClientEvent::Close {
                    reason: CloseReason::ParseError,
                    ..
                }]
            ),
            "{body:?}: {ev:?}"
        );
    }

    // Over WebSocket.
    let mut c = Client::new(
        client_config(TransportMode::WebSocketOnly),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    let t = drain(&mut c);
    let ClientTransmit::Connect { conn: id } = t[0] else {
        panic!()
    };
    let mut server = FakeWs::accept(&mut c, now, id, &t);
    server.send(&mut c, now, &open_packet("abcdefghijklmnopqrst", false));
    server.send(&mut c, now, "4ok");
    server.send(&mut c, now, "z");
    let ev = events(&mut c);
    assert_eq!(ev[1], ClientEvent::Message(text("ok")));
    assert_eq!(
        ev[2],
        ClientEvent::Close {
            reason: CloseReason::ParseError,
            error: Some(ClientError::Decode(DecodeError::UnknownType(b'z')))
        }
    );
    // The WebSocket is closed politely, without a status code.
    let t = drain(&mut c);
    server.feed(now, &t);
    assert!(server.closed_with_no_status);
}

#[test]
fn transport_failures() {
    let now = Instant::now();
    let fresh = |mode| {
        Client::new(
            client_config(mode).request_timeout(ms(1000)),
            Box::new(SeededEntropy::new(1)),
            now,
        )
    };
    // No answer to the handshake.
    let mut c = fresh(TransportMode::PollingOnly);
    let get = take_request(&mut c);
    c.handle_timeout(now + ms(999));
    assert_eq!(c.state(), ClientState::Opening);
    c.handle_timeout(now + ms(1000));
    assert_eq!(
        events(&mut c),
        [ClientEvent::Close {
            reason: CloseReason::TransportError,
            error: Some(ClientError::Timeout)
        }]
    );
    assert_eq!(drain(&mut c), [ClientTransmit::Close { conn: get }]);
    // Late answers are ignored.
    answer(
        &mut c,
        now,
        get,
        &open_packet("abcdefghijklmnopqrst", false),
    );
    assert!(events(&mut c).is_empty() && drain(&mut c).is_empty());

    // A refused handshake, a failed request.
    let mut c = fresh(TransportMode::PollingOnly);
    let get = take_request(&mut c);
    respond(&mut c, now, get, 400, r#"{"code":5}"#);
    assert_eq!(
        events(&mut c),
        [ClientEvent::Close {
            reason: CloseReason::TransportError,
            error: Some(ClientError::HttpStatus(400))
        }]
    );
    let mut c = fresh(TransportMode::PollingOnly);
    let get = take_request(&mut c);
    answer(
        &mut c,
        now,
        get,
        &open_packet("abcdefghijklmnopqrst", false),
    );
    let poll = take_request(&mut c);
    c.send(now, "x").unwrap();
    let post = take_request(&mut c);
    // A POST without answer fails at the request timeout.
    assert_eq!(c.poll_timeout(), Some(now + ms(500)), "the heartbeat first");
    c.handle_error(now, poll, "reset");
    assert_eq!(
        events(&mut c)[1..],
        [ClientEvent::Close {
            reason: CloseReason::TransportError,
            error: Some(ClientError::ConnectionFailed("reset".into()))
        }]
    );
    assert_eq!(drain(&mut c), [ClientTransmit::Close { conn: post }]);
    // An answer the client cannot read, or none before the end.
    for (bytes, error) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..],
            ClientError::BadResponse(crate::http::HttpError::BadBody("invalid Content-Length")),
        ),
        (
            &b"HTTP/1.1 200 OK\r\nContent-"[..],
            ClientError::ConnectionClosed,
        ),
    ] {
        let mut c = fresh(TransportMode::PollingOnly);
        let get = take_request(&mut c);
        c.handle_input(now, get, bytes);
        c.handle_eof(now, get);
        assert_eq!(
            events(&mut c),
            [ClientEvent::Close {
                reason: CloseReason::TransportError,
                error: Some(error)
            }]
        );
        assert_eq!(drain(&mut c), [ClientTransmit::Close { conn: get }]);
    }

    // A WebSocket refused, or cut.
    let mut net = Net::new(
        server_config().transports(true, false),
        client_config(TransportMode::WebSocketOnly),
    );
    net.advance(ms(10));
    assert!(matches!(
        net.client_close(),
        Some((CloseReason::TransportError, Some(ClientError::WebSocket(_))))
    ));
    let mut c = fresh(TransportMode::WebSocketOnly);
    let t = drain(&mut c);
    let ClientTransmit::Connect { conn: id } = t[0] else {
        panic!()
    };
    c.handle_error(now, id, "refused");
    assert_eq!(
        events(&mut c),
        [ClientEvent::Close {
            reason: CloseReason::TransportError,
            error: Some(ClientError::ConnectionFailed("refused".into()))
        }]
    );
    assert!(drain(&mut c).is_empty());
    let mut c = fresh(TransportMode::WebSocketOnly);
    let t = drain(&mut c);
    let ClientTransmit::Connect { conn: id } = t[0] else {
        panic!()
    };
    let mut server = FakeWs::accept(&mut c, now, id, &t);
    server.send(&mut c, now, &open_packet("abcdefghijklmnopqrst", false));
    c.handle_eof(now, id);
    assert_eq!(
        events(&mut c)[1..],
        [ClientEvent::Close {
            reason: CloseReason::TransportClose,
            error: Some(ClientError::WebSocketClosed(1006))
        }]
    );
    assert_eq!(drain(&mut c), [ClientTransmit::Close { conn: id }]);
    // A WebSocket that opens but never sends the open packet.
    let mut c = fresh(TransportMode::WebSocketOnly);
    let t = drain(&mut c);
    let ClientTransmit::Connect { conn: id } = t[0] else {
        panic!()
    };
    let _server = FakeWs::accept(&mut c, now, id, &t);
    c.handle_timeout(now + ms(1000));
    assert_eq!(
        events(&mut c),
        [ClientEvent::Close {
            reason: CloseReason::TransportError,
            error: Some(ClientError::Timeout)
        }]
    );
}

#[test]
fn server_close_packet_over_polling() {
    let now = Instant::now();
    let mut c = Client::new(
        client_config(TransportMode::PollingOnly),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    let get = take_request(&mut c);
    answer(
        &mut c,
        now,
        get,
        &open_packet("abcdefghijklmnopqrst", false),
    );
    let poll = take_request(&mut c);
    answer(&mut c, now, poll, "4last\u{1e}6\u{1e}1\u{1e}4never");
    assert_eq!(
        events(&mut c)[1..],
        [
            ClientEvent::Message(text("last")),
            ClientEvent::Close {
                reason: CloseReason::TransportClose,
                error: None
            }
        ]
    );
    assert_eq!(
        drain(&mut c),
        [ClientTransmit::Close { conn: poll }],
        "no poll, no farewell: the connection goes"
    );
}

// ----- HTTP connections ----------------------------------------------------------

#[test]
fn keep_alive_connections_are_reused_and_let_go() {
    let now = Instant::now();
    let mut c = Client::new(
        client_config(TransportMode::PollingOnly).idle_timeout(ms(2000)),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    let get = take_request(&mut c);
    // A slow heartbeat, out of the way.
    let open =
        r#"0{"sid":"abcdefghijklmnopqrst","upgrades":[],"pingInterval":9000,"pingTimeout":9000}"#;
    answer(&mut c, now, get, open);
    assert_eq!(take_request(&mut c), get, "the poll reuses the connection");
    // The poll is out: a POST needs a connection of its own, which then
    // carries the next POST.
    c.send(now, "a").unwrap();
    let t = drain(&mut c);
    assert_eq!(kinds(&t), ["connect", "POST polling 4a"]);
    let post = t[0].conn();
    answer(&mut c, now, post, "ok");
    c.send(now, "b").unwrap();
    assert_eq!(take_request(&mut c), post);
    // `Connection: close` (or bytes past the answer) ends a connection.
    c.handle_input(
        now,
        post,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    );
    assert_eq!(drain(&mut c), [ClientTransmit::Close { conn: post }]);
    c.send(now, "c").unwrap();
    let t = drain(&mut c);
    assert_eq!(kinds(&t), ["connect", "POST polling 4c"]);
    let post = t[0].conn();
    // A chunked answer, cut anywhere, then idle: let go after the idle
    // timeout (a deadline of its own).
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    for piece in chunked.chunks(5) {
        c.handle_input(now, post, piece);
    }
    assert!(drain(&mut c).is_empty());
    let t1 = now + ms(100);
    let idle_until = t1 + ms(2000);
    c.handle_timeout(t1);
    assert!(c.poll_timeout().is_some_and(|t| t <= idle_until));
    c.handle_timeout(now + ms(2000) - ms(1));
    assert!(drain(&mut c).is_empty());
    c.handle_timeout(now + ms(2000));
    assert_eq!(drain(&mut c), [ClientTransmit::Close { conn: post }]);
    // An answer to nothing drops the connection.
    c.send(now, "d").unwrap();
    let post = drain(&mut c)[0].conn();
    answer(&mut c, now, post, "ok");
    c.handle_input(now, post, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(drain(&mut c), [ClientTransmit::Close { conn: post }]);
    // The server's end of the poll's connection fails the session, and is
    // answered with ours.
    answer(&mut c, now, get, "6");
    assert_eq!(take_request(&mut c), get);
    c.handle_eof(now, get);
    assert_eq!(
        events(&mut c)[1..],
        [ClientEvent::Close {
            reason: CloseReason::TransportError,
            error: Some(ClientError::ConnectionClosed)
        }]
    );
    assert_eq!(drain(&mut c), [ClientTransmit::Close { conn: get }]);
    assert!(c.is_finished());
}

// ----- stream input: prefixes and chunking ---------------------------------------

/// Runs a WebSocket session with a scripted exchange, returning the client's
/// events (with times) and transmits.
fn ws_script(
    mode: TransportMode,
    chunk_seed: Option<u64>,
) -> (Vec<(Duration, ClientEvent)>, Vec<ClientTransmit>) {
    let mut net = Net::new(server_config(), client_config(mode)).latency(ms(2));
    if let Some(seed) = chunk_seed {
        net = net.chunked(seed);
    }
    net.open();
    for d in samples() {
        net.send(d);
    }
    net.send("y".repeat(70_000));
    net.send(Bytes::from(vec![7u8; 200]));
    net.advance(PING_INTERVAL * 4);
    let now = net.now;
    net.client.close(now);
    net.pump();
    net.advance(ms(100));
    let start = net.events[0].0;
    let events = net
        .events
        .iter()
        .map(|(t, e)| (t.duration_since(start), e.clone()))
        .collect();
    (events, net.log)
}

#[test]
fn chunked_stream_input_gives_the_same_events() {
    for mode in [
        TransportMode::WebSocketOnly,
        TransportMode::PollingThenUpgrade,
    ] {
        let (whole, whole_log) = ws_script(mode, None);
        assert!(whole.len() > samples().len());
        for seed in 0..6 {
            let (split, log) = ws_script(mode, Some(seed));
            assert_eq!(split, whole, "{mode:?} seed {seed}");
            assert_eq!(log, whole_log, "{mode:?} seed {seed}: same bytes out");
        }
    }
}

#[test]
fn every_strict_prefix_of_stream_input() {
    let id = ConnId(1);
    // Replay: a fresh client with the same seed sends the same key.
    let fresh = || {
        let now = Instant::now();
        let mut c = Client::new(
            client_config(TransportMode::WebSocketOnly),
            Box::new(SeededEntropy::new(11)),
            now,
        );
        c.send(now, "hi").unwrap();
        c.send(now, Bytes::from_static(&[1, 2])).unwrap();
        (c, now)
    };
    // Record what the server sends on the WebSocket, in memory.
    let server_bytes = {
        let mut s = Server::new(
            server_config(),
            Box::new(SeededEntropy::new(7)),
            Instant::now(),
        );
        let (mut c, now) = fresh();
        let conn = s.accept(now, None);
        let mut all = BytesMut::new();
        let mut out = Vec::new();
        for _ in 0..10 {
            while let Some(t) = c.poll_transmit(now) {
                if let ClientTransmit::Data { data, .. } = t {
                    s.handle_input(now, conn, &data);
                }
            }
            while let Some(e) = s.poll_event(now) {
                if let Event::Message { sid, data } = e {
                    s.send(sid, data).unwrap();
                }
            }
            while let Some(t) = s.poll_transmit(now) {
                if let Transmit::Data { data, .. } = t {
                    all.extend_from_slice(&data);
                    c.handle_input(now, id, &data);
                }
            }
            while let Some(e) = c.poll_event(now) {
                out.push(e);
            }
        }
        assert_eq!(
            out[1..],
            [
                ClientEvent::Message(text("hi")),
                ClientEvent::Message(Data::Binary(Bytes::from_static(&[1, 2])))
            ]
        );
        (all.freeze(), out)
    };
    let (bytes, full) = server_bytes;
    let mut last = 0;
    for n in 0..bytes.len() {
        let (mut c, now) = fresh();
        drain(&mut c);
        c.handle_input(now, id, &bytes[..n]);
        let got = events(&mut c);
        assert!(got.len() < full.len(), "prefix {n} gave every event");
        assert_eq!(got[..], full[..got.len()], "prefix {n}");
        assert!(got.len() >= last, "events never vanish");
        last = got.len();
        c.handle_input(now, id, &bytes[n..]);
        let mut all = got;
        all.extend(events(&mut c));
        assert_eq!(all, full, "split at {n}");
    }
}

// ----- robustness ----------------------------------------------------------------

#[test]
fn no_panic_on_any_input() {
    let alphabet: &[&[u8]] = &[
        b"0",
        b"1",
        b"2",
        b"3",
        b"4",
        b"5",
        b"6",
        b"b",
        b"\x1e",
        b"probe",
        b"{",
        b"}",
        b"\"sid\":\"abc\"",
        b"\"pingInterval\":",
        b"\"pingTimeout\":",
        b"\"maxPayload\":",
        b"\"upgrades\":[\"websocket\"]",
        b",",
        b"9",
        b"-1e400",
        b"\xff",
        b"AQID",
        b"[",
        b"]",
        b"\\u",
        b"\"",
    ];
    for seed in 0..300u64 {
        let mut rng = SeededEntropy::new(seed);
        let now = Instant::now();
        let mode = MODES[seed as usize % 3];
        let mut c = Client::new(client_config(mode), Box::new(SeededEntropy::new(seed)), now);
        let mut t = now;
        let mut ids: Vec<ConnId> = vec![ConnId(1), ConnId(2), ConnId(3)];
        let mut closes = 0;
        let mut after_close = 0;
        for step in 0..60 {
            while let Some(tr) = c.poll_transmit(t) {
                if let ClientTransmit::Connect { conn } = tr {
                    ids.push(conn);
                }
            }
            while let Some(e) = c.poll_event(t) {
                if closes > 0 {
                    after_close += 1;
                }
                if matches!(e, ClientEvent::Close { .. }) {
                    closes += 1;
                }
            }
            let id = ids[rng.next_u32() as usize % ids.len()];
            let mut body = Vec::new();
            if step == 0 && seed % 2 == 0 {
                body.extend_from_slice(open_packet("abcdefghijklmnopqrst", true).as_bytes());
            }
            for _ in 0..rng.next_u32() % 12 {
                body.extend_from_slice(alphabet[rng.next_u32() as usize % alphabet.len()]);
            }
            t += ms(u64::from(rng.next_u32() % 400));
            match rng.next_u32() % 9 {
                0 | 1 => {
                    let status = [200, 200, 400, 413, 0][rng.next_u32() as usize % 5];
                    let mut raw = http_answer(status, &body);
                    // Sometimes cut short, or framed by the end.
                    if rng.next_u32() % 4 == 0 {
                        raw.truncate(rng.next_u32() as usize % (raw.len() + 1));
                    }
                    c.handle_input(t, id, &raw);
                }
                2 => c.handle_error(t, id, "x"),
                3 => {
                    let mut raw = body.clone();
                    if rng.next_u32() % 2 == 0 {
                        raw = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
                    }
                    c.handle_input(t, id, &raw);
                    // Frames, well-formed or not.
                    let mut f = vec![0x81, body.len().min(125) as u8];
                    f.extend_from_slice(&body[..body.len().min(125)]);
                    c.handle_input(t, id, &f);
                }
                4 => c.handle_eof(t, id),
                5 => c.handle_error(t, id, "reset"),
                6 => {
                    let _ = c.send(t, Bytes::from(body));
                }
                7 => c.close(t),
                _ => c.handle_timeout(t),
            }
            // After handle_timeout, no deadline is due any more.
            c.handle_timeout(t);
            assert!(
                c.poll_timeout().is_none_or(|n| n > t),
                "seed {seed} step {step}: a due timer survived handle_timeout"
            );
        }
        assert!(closes <= 1, "seed {seed}: {closes} closes");
        assert_eq!(after_close, 0, "seed {seed}: events after the close");
    }
}

#[test]
fn transcripts_are_deterministic() {
    let run = || {
        let mut net = Net::new(
            server_config(),
            client_config(TransportMode::PollingThenUpgrade),
        )
        .latency(ms(3));
        net.open();
        net.send("a");
        net.advance(ms(700));
        net.send(Bytes::from_static(&[9]));
        net.advance(ms(100));
        let events = net.client_events();
        (net.log, events)
    };
    let (a, ea) = run();
    let (b, eb) = run();
    assert_eq!(a, b);
    assert_eq!(ea, eb);
}

// ----- helpers for the client alone ---------------------------------------------

fn open_packet(sid: &str, upgrade: bool) -> String {
    let upgrades = if upgrade { r#"["websocket"]"# } else { "[]" };
    format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}}"#
    )
}

/// An HTTP/1.1 answer with `Content-Length`.
fn http_answer(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    ResponseHead::new(status)
        .with_header("Content-Length", body.len().to_string())
        .encode(&mut out);
    out.extend_from_slice(body);
    out.to_vec()
}

/// The server answers the request on `conn` with `status` and `body`.
fn respond(c: &mut Client, now: Instant, conn: ConnId, status: u16, body: &str) {
    c.handle_input(now, conn, &http_answer(status, body.as_bytes()));
}

/// The server answers the request on `conn` with 200 and `body`.
fn answer(c: &mut Client, now: Instant, conn: ConnId, body: &str) {
    respond(c, now, conn, 200, body);
}

fn drain(c: &mut Client) -> Vec<ClientTransmit> {
    let now = Instant::now();
    std::iter::from_fn(|| c.poll_transmit(now)).collect()
}

fn events(c: &mut Client) -> Vec<ClientEvent> {
    let now = Instant::now();
    std::iter::from_fn(|| c.poll_event(now)).collect()
}

/// The connection of the one request the client has queued (on a new
/// connection or a kept-alive one).
fn take_request(c: &mut Client) -> ConnId {
    let t = drain(c);
    match t.as_slice() {
        [ClientTransmit::Data { conn, .. }]
        | [
            ClientTransmit::Connect { .. },
            ClientTransmit::Data { conn, .. },
        ] if request_of(t.last().unwrap()).is_some() => *conn,
        other => panic!("expected one request, got {:?}", kinds(other)),
    }
}

/// A bare WebSocket server end for crafted frames.
struct FakeWs {
    id: ConnId,
    ws: ws::Connection,
    received: Vec<ws::Message>,
    upgrade_requested: bool,
    closed_with_no_status: bool,
}

impl FakeWs {
    /// Takes the client's handshake from `transmits` and accepts it.
    fn accept(c: &mut Client, now: Instant, id: ConnId, transmits: &[ClientTransmit]) -> FakeWs {
        let mut f = FakeWs {
            id,
            ws: ws::Connection::server(ws::Config::default()),
            received: Vec::new(),
            upgrade_requested: false,
            closed_with_no_status: false,
        };
        f.feed(now, transmits);
        assert!(f.upgrade_requested, "no upgrade request");
        f.ws.accept(now, ws::Accept::new()).unwrap();
        f.flush(c, now);
        f
    }

    fn feed(&mut self, now: Instant, transmits: &[ClientTransmit]) {
        for t in transmits {
            if let ClientTransmit::Data { conn, data } = t {
                if *conn == self.id {
                    self.ws.handle_input(now, data);
                }
            }
        }
        while let Some(e) = self.ws.poll_event(now) {
            match e {
                ws::Event::Message(m) => self.received.push(m),
                ws::Event::Upgrade(_) => self.upgrade_requested = true,
                ws::Event::Closed(c) => {
                    self.closed_with_no_status = c.code == ws::CloseCode::NO_STATUS
                }
                _ => {}
            }
        }
    }

    pub(super) fn flush(&mut self, c: &mut Client, now: Instant) {
        while let Some(t) = self.ws.poll_transmit(now) {
            if let ws::Transmit::Data(b) = t {
                c.handle_input(now, self.id, &b);
            }
        }
        // What the client answered (2probe...).
        let t: Vec<ClientTransmit> = drain(c);
        self.feed(now, &t);
        for other in t {
            if !matches!(other, ClientTransmit::Data { conn, .. } if conn == self.id) {
                panic!("unexpected transmit {other:?}");
            }
        }
    }

    fn send(&mut self, c: &mut Client, now: Instant, text: &str) {
        self.ws.send(ws::Message::text(text.to_owned())).unwrap();
        let mut out = Vec::new();
        while let Some(ws::Transmit::Data(b)) = self.ws.poll_transmit(now) {
            out.push(b);
        }
        for b in out {
            c.handle_input(now, self.id, &b);
        }
    }

    fn texts(&self) -> Vec<String> {
        self.received
            .iter()
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
            .collect()
    }
}
