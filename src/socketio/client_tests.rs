//! The client wired in memory to the wsio [`Server`] on a virtual clock.
//!
//! The network ([`Net`]) turns every connection the client opens into a
//! server connection, with a fixed latency. The server can be killed (every
//! connection ends, new ones are refused) and started again, which is how
//! reconnection is tested. The server runs the reference application of
//! CONFORMANCE.md (`reference_app.rs`).

use std::{collections::HashMap, ops::ControlFlow};

use bytes::Bytes;

use super::{manager::GEN_SHIFT, *};
use crate::{
    engineio::{ConnId, Transmit, TransportMode},
    entropy::{Entropy, SeededEntropy},
    http::{HeadParser, Limits, Method, ResponseHead},
    machine,
    socketio::{
        Admission, Config, DisconnectReason, Event, RESERVED_EVENTS, Server,
        reference_app::ReferenceApp,
    },
};

const SEED: u64 = 42;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const MODES: [TransportMode; 3] = [
    TransportMode::PollingOnly,
    TransportMode::WebSocketOnly,
    TransportMode::PollingThenUpgrade,
];

fn server_config() -> Config {
    Config::default()
        .engine(
            engineio::Config::default()
                .path("/socket.io/")
                .ping_interval(ms(300))
                .ping_timeout(ms(200)),
        )
        .connect_timeout(ms(1000))
}

fn client_config(mode: TransportMode) -> ClientConfig {
    ClientConfig::new("localhost").mode(mode)
}

fn obj(pairs: &[(&str, Value)]) -> Value {
    Value::object(pairs.iter().map(|(k, v)| (*k, v.clone())))
}

// ----- the in-memory network -------------------------------------------------

#[derive(Debug)]
enum Delivery {
    /// For the server of this epoch only.
    ServerInput(u32, ConnId, Bytes),
    ServerEof(u32, ConnId),
    ClientInput(ConnId, Bytes),
    ClientEof(ConnId),
    ClientError(ConnId, &'static str),
}

struct Net {
    server: Server,
    /// What a started server is made with.
    server_config: Config,
    /// Bumped when the server is killed: deliveries to an older one vanish.
    epoch: u32,
    up: bool,
    client: Client,
    now: Instant,
    latency: Duration,
    queue: VecDeque<(Instant, Delivery)>,
    /// The client's connections and the server's, both ways.
    to_server: HashMap<ConnId, ConnId>,
    to_client: HashMap<ConnId, ConnId>,
    /// Drops everything the server sends to the client.
    cut: bool,
    /// Every transmit of the client, with its time.
    log: Vec<(Instant, ClientTransmit)>,
    events: Vec<(Instant, ClientEvent)>,
    server_events: Vec<Event>,
    app: ReferenceApp,
    /// How many events of each name [`Net::wait_event`] has handed out.
    taken: HashMap<(NspId, String), usize>,
}

fn new_server(config: &Config, epoch: u32, now: Instant) -> Server {
    let mut s = Server::new(
        config.clone(),
        Box::new(SeededEntropy::new(100 + u64::from(epoch))),
        now,
    );
    s.add_namespace("/custom", Admission::AcceptAll);
    s
}

impl Net {
    fn new(config: ClientConfig) -> Net {
        Net::with_server(config, server_config())
    }

    fn with_server(config: ClientConfig, server: Config) -> Net {
        let now = Instant::now();
        let mut n = Net {
            server: new_server(&server, 0, now),
            server_config: server,
            epoch: 0,
            up: true,
            client: Client::new(config, Box::new(SeededEntropy::new(SEED)), now),
            now,
            latency: ms(1),
            queue: VecDeque::new(),
            to_server: HashMap::new(),
            to_client: HashMap::new(),
            cut: false,
            log: Vec::new(),
            events: Vec::new(),
            server_events: Vec::new(),
            app: ReferenceApp::default(),
            taken: HashMap::new(),
        };
        n.pump();
        n
    }

    fn schedule(&mut self, d: Delivery) {
        self.queue.push_back((self.now + self.latency, d));
    }

    /// Moves everything that can move at the current instant.
    fn pump(&mut self) {
        let now = self.now;
        for _ in 0..1_000_000 {
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
                self.log.push((now, t.clone()));
                self.on_client_transmit(t);
            }
            machine::drain(
                &mut self.server,
                now,
                |_, t| {
                    from_server.push(t);
                    ControlFlow::Continue(())
                },
                |server, e| {
                    moved = true;
                    self.app.handle(server, now, &e);
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
                if !self.up {
                    return self.schedule(Delivery::ClientError(conn, "connection refused"));
                }
                let s = self.server.accept(self.now, None);
                self.to_server.insert(conn, s);
                self.to_client.insert(s, conn);
            }
            ClientTransmit::Data { conn, data } => {
                if let Some(&s) = self.to_server.get(&conn) {
                    self.schedule(Delivery::ServerInput(self.epoch, s, data));
                }
            }
            ClientTransmit::Close { conn } => {
                if let Some(s) = self.to_server.remove(&conn) {
                    self.schedule(Delivery::ServerEof(self.epoch, s));
                }
            }
        }
    }

    fn on_server_transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Data { conn, data } => {
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
            Delivery::ServerInput(epoch, conn, b) => {
                if epoch == self.epoch && self.up {
                    self.server.handle_input(now, conn, &b)
                }
            }
            Delivery::ServerEof(epoch, conn) => {
                if epoch == self.epoch && self.up {
                    self.server.handle_eof(now, conn)
                }
            }
            _ if self.cut => {}
            Delivery::ClientInput(conn, b) => self.client.handle_input(now, conn, &b),
            Delivery::ClientEof(conn) => self.client.handle_eof(now, conn),
            Delivery::ClientError(conn, why) => self.client.handle_error(now, conn, why),
        }
    }

    /// The server process dies: every connection ends (the client sees its
    /// requests fail and its streams end), and new ones are refused until
    /// [`start`](Self::start).
    fn kill(&mut self) {
        self.up = false;
        self.epoch += 1;
        self.server = new_server(&self.server_config, self.epoch, self.now);
        // The process's sockets close with it.
        self.to_server.clear();
        let mut ends: Vec<ConnId> = std::mem::take(&mut self.to_client).into_values().collect();
        ends.sort_unstable();
        for conn in ends {
            self.schedule(Delivery::ClientEof(conn));
        }
        self.server_events.clear();
        self.pump();
    }

    fn start(&mut self) {
        self.up = true;
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
            assert!(
                self.now < end,
                "condition not met within {limit:?}; events: {:#?}",
                self.events
            );
            self.advance(ms(1));
        }
    }

    fn socket(&mut self, name: &str, auth: Option<Value>) -> NspId {
        let now = self.now;
        let id = self.client.socket(now, name, auth).unwrap();
        self.pump();
        id
    }

    fn connected(&mut self, nsp: NspId) {
        self.until(ms(3000), |n| n.client.is_connected(nsp));
    }

    fn emit(&mut self, nsp: NspId, name: &str, args: Vec<Value>) {
        let now = self.now;
        self.client.emit(now, nsp, name, args).unwrap();
        self.pump();
    }

    fn emit_ack(&mut self, nsp: NspId, name: &str, args: Vec<Value>, t: Option<Duration>) -> u64 {
        let now = self.now;
        let id = self.client.emit_with_ack(now, nsp, name, args, t).unwrap();
        self.pump();
        id
    }

    fn client_events(&self) -> Vec<ClientEvent> {
        self.events.iter().map(|(_, e)| e.clone()).collect()
    }

    /// The arguments of every `name` event the client got on `nsp`.
    fn got(&self, nsp: NspId, want: &str) -> Vec<Vec<Value>> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                ClientEvent::Event {
                    nsp: n, name, args, ..
                } if *n == nsp && name == want => Some(args.clone()),
                _ => None,
            })
            .collect()
    }

    /// The next `name` event on `nsp` not taken yet by this function.
    fn wait_event(&mut self, nsp: NspId, name: &str) -> Vec<Value> {
        let key = (nsp, name.to_owned());
        let taken = self.taken.get(&key).copied().unwrap_or(0);
        self.until(ms(3000), |n| n.got(nsp, name).len() > taken);
        self.taken.insert(key, taken + 1);
        self.got(nsp, name).swap_remove(taken)
    }

    fn ack_of(&self, nsp: NspId, id: u64) -> Option<Vec<Value>> {
        self.events.iter().find_map(|(_, e)| match e {
            ClientEvent::Ack {
                nsp: n,
                id: i,
                args,
            } if *n == nsp && *i == id => Some(args.clone()),
            _ => None,
        })
    }

    fn wait_ack(&mut self, nsp: NspId, id: u64) -> Vec<Value> {
        self.until(ms(3000), |n| n.ack_of(nsp, id).is_some());
        self.ack_of(nsp, id).unwrap_or_default()
    }

    /// The arguments of every `name` event the (current) server got.
    fn server_got(&self, want: &str) -> Vec<Vec<Value>> {
        self.server_events
            .iter()
            .filter_map(|e| match e {
                Event::Event { name, args, .. } if name == want => Some(args.clone()),
                _ => None,
            })
            .collect()
    }

    fn disconnects(&self) -> Vec<(NspId, ClientDisconnectReason)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                ClientEvent::Disconnect { nsp, reason } => Some((*nsp, *reason)),
                _ => None,
            })
            .collect()
    }

    fn reconnecting(&self) -> Vec<(Instant, u32, Duration)> {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                ClientEvent::Reconnecting { attempt, delay } => Some((*t, *attempt, *delay)),
                _ => None,
            })
            .collect()
    }

    /// When each engine started: its first transmit.
    fn engine_starts(&self) -> Vec<Instant> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (t, tr) in &self.log {
            if seen.insert(tr.conn().0 >> GEN_SHIFT) {
                out.push(*t);
            }
        }
        out
    }
}

fn num(n: u64) -> Value {
    Value::from(n)
}

// ----- connection, namespaces, auth -------------------------------------------

#[test]
fn connects_with_auth_in_every_mode() {
    for mode in MODES {
        let mut n = Net::new(client_config(mode));
        let auth = obj(&[("token", "abc".into()), ("clé", "välue".into())]);
        let root = n.socket("/", Some(auth.clone()));
        n.connected(root);
        assert_eq!(n.wait_event(root, "auth"), vec![auth.clone()], "{mode:?}");
        let sid = n.client.sid(root).unwrap().to_owned();
        let server_socket = n.server.sockets("/")[0];
        assert_eq!(sid, server_socket.as_str());
        assert_eq!(n.client.state(), ClientState::Open);
        assert!(matches!(
            n.client_events()[0],
            ClientEvent::Connect { nsp, .. } if nsp == root
        ));
        // Echo still works, and after the upgrade (in that mode) too.
        n.advance(ms(500));
        let want = match mode {
            TransportMode::PollingOnly => TransportKind::Polling,
            _ => TransportKind::WebSocket,
        };
        assert_eq!(n.client.transport(), Some(want), "{mode:?}");
        n.emit(root, "message", vec!["hi".into(), num(1)]);
        assert_eq!(
            n.wait_event(root, "message-back"),
            vec!["hi".into(), num(1)]
        );
    }
}

#[test]
fn no_auth_gives_an_empty_object() {
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly));
    let root = n.socket("/", None);
    n.connected(root);
    assert_eq!(n.wait_event(root, "auth"), vec![Value::Object(vec![])]);
}

#[test]
fn two_namespaces_share_one_connection() {
    for mode in MODES {
        let mut n = Net::new(client_config(mode));
        let root = n.socket("/", Some(obj(&[("who", "root".into())])));
        let custom = n.socket("/custom", Some(obj(&[("who", "custom".into())])));
        assert_eq!(n.client.socket(n.now, "/custom", None), Ok(custom));
        n.connected(root);
        n.connected(custom);
        assert_eq!(
            n.wait_event(custom, "auth"),
            vec![obj(&[("who", "custom".into())])]
        );
        assert_eq!(
            n.got(root, "auth"),
            vec![vec![obj(&[("who", "root".into())])]]
        );
        assert_ne!(n.client.sid(root), n.client.sid(custom));
        assert_eq!(n.server.client_count(), 1, "{mode:?}: one engine");
        assert_eq!(n.client.nsp("/custom"), Some(custom));
        assert_eq!(n.client.nsp_name(custom), Some("/custom"));
        n.emit(root, "message", vec!["still".into()]);
        assert_eq!(
            n.wait_event(root, "message-back"),
            vec![Value::from("still")]
        );
        assert!(n.got(custom, "message-back").is_empty());
    }
}

#[test]
fn unknown_namespace_is_refused_and_does_not_retry() {
    let mut n = Net::new(client_config(TransportMode::PollingOnly));
    let root = n.socket("/", None);
    let nope = n.socket("/nope", None);
    n.connected(root);
    n.until(ms(2000), |n| {
        n.client_events()
            .iter()
            .any(|e| matches!(e, ClientEvent::ConnectError { .. }))
    });
    let err = n
        .client_events()
        .into_iter()
        .find_map(|e| match e {
            ClientEvent::ConnectError { nsp, data } => Some((nsp, data)),
            _ => None,
        })
        .unwrap();
    assert_eq!(err.0, nope);
    assert_eq!(err.1["message"].as_str(), Some("Invalid namespace"));
    assert!(!n.client.is_active(nope));
    // `/` is unaffected.
    n.emit(root, "message", vec![num(7)]);
    assert_eq!(n.wait_event(root, "message-back"), vec![num(7)]);

    // Alone, the refusal closes the connection, for good.
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly));
    let nope = n.socket("/nope", None);
    n.until(ms(2000), |n| n.client.state() == ClientState::Closed);
    n.advance(ms(10_000));
    assert_eq!(n.client.state(), ClientState::Closed);
    assert!(n.reconnecting().is_empty());
    assert!(!n.client.is_connected(nope));
    assert_eq!(n.engine_starts().len(), 1);
}

#[test]
fn invalid_commands_are_refused() {
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly));
    let now = n.now;
    for bad in ["chat", "/a,b", "/x\u{1e}"] {
        assert_eq!(
            n.client.socket(now, bad, None),
            Err(ClientUsageError::InvalidNamespace(bad.into()))
        );
    }
    assert_eq!(
        n.client.socket(now, "/", Some(Value::from(1))),
        Err(ClientUsageError::InvalidAuth)
    );
    let root = n.socket("/", None);
    for name in RESERVED_EVENTS {
        assert_eq!(
            n.client.emit(now, root, name, vec![]),
            Err(ClientUsageError::ReservedEvent((*name).into()))
        );
    }
    assert_eq!(
        n.client.emit(now, NspId(9), "x", vec![]),
        Err(ClientUsageError::UnknownNsp(NspId(9)))
    );
    assert_eq!(
        n.client.ack(now, root, 1, vec![]),
        Err(ClientUsageError::NotConnected)
    );
}

// ----- events, acks, binary --------------------------------------------------

#[test]
fn echo_of_mixed_arguments() {
    for mode in MODES {
        let mut n = Net::new(client_config(mode));
        let root = n.socket("/", None);
        n.connected(root);
        let args = vec![
            "héllo ✓ 😀".into(),
            "record\u{1e}separator".into(),
            "quotes \" \\ \n \t \0".into(),
            "".into(),
            num(42),
            Value::from(-1.5),
            Value::Null,
            true.into(),
            obj(&[("nested", obj(&[("arr", vec![num(1), "x".into()].into())]))]),
            Value::Array(vec![Value::Array(vec![])]),
        ];
        n.emit(root, "message", args.clone());
        assert_eq!(n.wait_event(root, "message-back"), args, "{mode:?}");
        n.emit(root, "message", vec![]);
        assert_eq!(n.wait_event(root, "message-back"), vec![]);
    }
}

#[test]
fn acks_both_ways() {
    for mode in MODES {
        let mut n = Net::new(client_config(mode));
        let root = n.socket("/", None);
        n.connected(root);
        let a = n.emit_ack(root, "message-with-ack", vec![num(1), "two".into()], None);
        assert_eq!(n.wait_ack(root, a), vec![num(1), "two".into()]);
        let b = n.emit_ack(root, "message-with-ack", vec![], Some(ms(1000)));
        assert_eq!(n.wait_ack(root, b), vec![]);
        assert_eq!(b, a + 1, "ack ids count per socket");
        // Twenty in flight.
        let ids: Vec<u64> = (0..20)
            .map(|i| n.emit_ack(root, "message-with-ack", vec![num(i)], None))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(n.wait_ack(root, *id), vec![num(i as u64)]);
        }
        // The server asks; the client answers; the server acks with it.
        let q = n.emit_ack(root, "server-ack", vec![num(1), "x".into()], None);
        n.until(ms(2000), |n| !n.got(root, "ask").is_empty());
        let (args, ack) = n
            .client_events()
            .into_iter()
            .find_map(|e| match e {
                ClientEvent::Event {
                    name, args, ack, ..
                } if name == "ask" => Some((args, ack)),
                _ => None,
            })
            .unwrap();
        assert_eq!(args, vec![num(1), "x".into()]);
        let now = n.now;
        n.client
            .ack(
                now,
                root,
                ack.expect("ask wants an ack"),
                vec!["answer".into()],
            )
            .unwrap();
        n.pump();
        assert_eq!(n.wait_ack(root, q), vec![Value::from("answer")], "{mode:?}");
    }
}

#[test]
fn ack_timeout_fires_once_and_late_answers_are_ignored() {
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly));
    let root = n.socket("/", None);
    n.connected(root);
    let start = n.now;
    // Nobody answers `silent`.
    let id = n.emit_ack(root, "silent", vec![], Some(ms(500)));
    n.advance(ms(499));
    assert!(
        !n.client_events()
            .contains(&ClientEvent::AckTimeout { nsp: root, id })
    );
    n.advance(ms(2));
    let at = n
        .events
        .iter()
        .find(|(_, e)| *e == ClientEvent::AckTimeout { nsp: root, id })
        .map(|(t, _)| *t)
        .expect("timed out");
    assert_eq!(at, start + ms(500));
    n.advance(ms(2000));
    let timeouts = n
        .client_events()
        .iter()
        .filter(|e| matches!(e, ClientEvent::AckTimeout { .. }))
        .count();
    assert_eq!(timeouts, 1);
    // A timed-out ack that is still buffered is never sent.
    n.kill();
    n.until(ms(1000), |n| !n.client.is_connected(root));
    let late = n.emit_ack(root, "message-with-ack", vec![num(5)], Some(ms(100)));
    assert_eq!(n.client.buffered(root), 1);
    n.advance(ms(150));
    assert!(n.client_events().contains(&ClientEvent::AckTimeout {
        nsp: root,
        id: late
    }));
    assert_eq!(n.client.buffered(root), 0);
    n.start();
    n.until(ms(10_000), |n| n.client.is_connected(root));
    n.advance(ms(500));
    assert!(n.server_got("message-with-ack").is_empty());
}

#[test]
fn binary_round_trips() {
    for mode in MODES {
        let mut n = Net::new(client_config(mode));
        let root = n.socket("/", None);
        n.connected(root);
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let args = vec![
            Value::Binary(Bytes::new()),
            Value::Binary(Bytes::from_static(&[1, 2, 3])),
            Value::Binary(big.into()),
            obj(&[(
                "list",
                vec![
                    Value::Binary(Bytes::from_static(b"\x1e\x00b")),
                    "text".into(),
                ]
                .into(),
            )]),
            "tail".into(),
        ];
        n.emit(root, "binary", args.clone());
        assert_eq!(n.wait_event(root, "binary-back"), args, "{mode:?}");
        let id = n.emit_ack(
            root,
            "message-with-ack",
            vec![Value::Binary(Bytes::from_static(&[9, 8])), "x".into()],
            None,
        );
        assert_eq!(
            n.wait_ack(root, id),
            vec![Value::Binary(Bytes::from_static(&[9, 8])), "x".into()]
        );
        // The server asks with binary; the client answers with binary.
        let q = n.emit_ack(
            root,
            "server-ack",
            vec![Value::Binary(vec![1u8].into())],
            None,
        );
        n.until(ms(2000), |n| !n.got(root, "ask").is_empty());
        let ack = n
            .client_events()
            .into_iter()
            .find_map(|e| match e {
                ClientEvent::Event {
                    name, ack, args, ..
                } if name == "ask" => {
                    assert_eq!(args, vec![Value::Binary(vec![1u8].into())]);
                    ack
                }
                _ => None,
            })
            .unwrap();
        let now = n.now;
        n.client
            .ack(now, root, ack, vec![Value::Binary(vec![0xde, 0xad].into())])
            .unwrap();
        n.pump();
        assert_eq!(
            n.wait_ack(root, q),
            vec![Value::Binary(vec![0xde, 0xad].into())]
        );
    }
}

// ----- disconnections -----------------------------------------------------------

#[test]
fn io_server_disconnect_does_not_reconnect() {
    for mode in MODES {
        let mut n = Net::new(client_config(mode));
        let root = n.socket("/", None);
        let custom = n.socket("/custom", None);
        n.connected(root);
        n.connected(custom);
        n.emit(root, "disconnect-me", vec![]);
        n.until(ms(2000), |n| n.disconnects().len() == 2);
        assert_eq!(
            n.disconnects(),
            vec![
                (root, ClientDisconnectReason::IoServerDisconnect),
                (custom, ClientDisconnectReason::IoServerDisconnect)
            ],
            "{mode:?}"
        );
        n.advance(ms(10_000));
        assert!(n.reconnecting().is_empty(), "{mode:?}");
        assert_eq!(n.engine_starts().len(), 1);
        assert_eq!(n.client.state(), ClientState::Closed);
        assert!(!n.client.is_active(root));
        assert_eq!(n.server.client_count(), 0);
        // Asking for the socket again opens a new connection.
        let again = n.socket("/", None);
        assert_eq!(again, root);
        n.connected(root);
        assert_eq!(n.engine_starts().len(), 2);
    }
}

#[test]
fn client_disconnect_and_close() {
    for mode in MODES {
        let mut n = Net::new(client_config(mode));
        let root = n.socket("/", None);
        let custom = n.socket("/custom", None);
        n.connected(root);
        n.connected(custom);
        let pending = n.emit_ack(root, "silent", vec![], None);
        let now = n.now;
        n.client.disconnect(now, custom).unwrap();
        n.pump();
        assert_eq!(
            n.disconnects(),
            vec![(custom, ClientDisconnectReason::IoClientDisconnect)]
        );
        n.advance(ms(100));
        assert!(n.server_events.iter().any(|e| matches!(
            e,
            Event::Disconnect { nsp, reason: DisconnectReason::ClientNamespaceDisconnect, .. } if nsp == "/custom"
        )), "{mode:?}");
        assert_eq!(n.client.state(), ClientState::Open);
        let now = n.now;
        n.client.close(now);
        n.pump();
        assert_eq!(
            n.disconnects()[1],
            (root, ClientDisconnectReason::IoClientDisconnect)
        );
        assert!(n.client_events().contains(&ClientEvent::AckLost {
            nsp: root,
            id: pending
        }));
        n.advance(ms(5000));
        assert_eq!(n.client.state(), ClientState::Closed);
        assert_eq!(n.server.client_count(), 0, "{mode:?}");
        assert!(n.reconnecting().is_empty());
        assert_eq!(
            n.client.poll_timeout(),
            None,
            "{mode:?}: nothing left to do"
        );
    }
}

#[test]
fn lost_heartbeat_is_a_ping_timeout_and_reconnects() {
    let mut n = Net::new(client_config(TransportMode::PollingOnly));
    let root = n.socket("/", None);
    n.connected(root);
    n.cut = true;
    n.until(ms(2000), |n| !n.disconnects().is_empty());
    assert_eq!(
        n.disconnects(),
        vec![(root, ClientDisconnectReason::PingTimeout)]
    );
    n.cut = false;
    n.until(ms(5000), |n| n.client.is_connected(root));
    assert!(matches!(
        n.client_events()
            .iter()
            .find(|e| matches!(e, ClientEvent::Reconnected { .. })),
        Some(ClientEvent::Reconnected { attempt: 1 })
    ));
}

#[test]
fn undecodable_packet_is_a_parse_error_and_reconnects() {
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly));
    let root = n.socket("/", None);
    n.connected(root);
    let socket = n.server.sockets("/")[0];
    let sid = n.server.session_of(socket).unwrap();
    n.server.engine().send(sid, "9garbage").unwrap();
    n.pump();
    n.until(ms(1000), |n| !n.disconnects().is_empty());
    assert_eq!(
        n.disconnects(),
        vec![(root, ClientDisconnectReason::ParseError)]
    );
    n.until(ms(5000), |n| n.client.is_connected(root));
}

// ----- reconnection ----------------------------------------------------------------

/// The delays socket.io-client's backoff gives with the same random draws.
fn expected_delays(n: usize, min: f64, max: f64, factor: f64) -> Vec<Duration> {
    let mut e = SeededEntropy::new(SEED);
    let mut jitter = SeededEntropy::from_entropy(&mut e);
    (0..n)
        .map(|i| {
            let base = min * 2f64.powi(i as i32);
            let r = jitter.next_u64();
            let rand = (r >> 11) as f64 / (1u64 << 53) as f64;
            let dev = (rand * factor * base).floor();
            let ms = if r & 1 == 0 { base - dev } else { base + dev };
            Duration::from_millis(ms.min(max) as u64)
        })
        .collect()
}

#[test]
fn backoff_schedule_is_exact() {
    let mut n = Net::new(client_config(TransportMode::PollingThenUpgrade));
    let root = n.socket("/", None);
    n.connected(root);
    n.kill();
    n.advance(ms(60_000));
    let r = n.reconnecting();
    assert!(r.len() >= 8, "{r:?}");
    let delays: Vec<Duration> = r.iter().take(8).map(|(_, _, d)| *d).collect();
    assert_eq!(delays, expected_delays(8, 1000.0, 5000.0, 0.5));
    for (i, (_, attempt, d)) in r.iter().take(8).enumerate() {
        assert_eq!(*attempt, i as u32 + 1);
        let base = 1000.0 * 2f64.powi(i as i32);
        let lo = Duration::from_millis((base * 0.5) as u64).min(ms(5000));
        let hi = Duration::from_millis((base * 1.5) as u64).min(ms(5000));
        assert!(*d >= lo && *d <= hi, "attempt {}: {d:?}", i + 1);
    }
    // Each attempt starts exactly when its delay ends, and each failure is
    // reported before the next one is scheduled.
    let starts = n.engine_starts();
    for (i, (t, _, d)) in r.iter().take(8).enumerate() {
        assert_eq!(starts[i + 1], *t + *d, "attempt {}", i + 1);
    }
    let errors = n
        .client_events()
        .iter()
        .filter(|e| matches!(e, ClientEvent::ReconnectError { .. }))
        .count();
    assert!(errors >= 7);
    assert_eq!(n.client.state(), ClientState::Reconnecting);

    // Without jitter: the doubling, capped.
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly).randomization_factor(0.0));
    let root = n.socket("/", None);
    n.connected(root);
    n.kill();
    n.advance(ms(40_000));
    let delays: Vec<u64> = n
        .reconnecting()
        .iter()
        .take(8)
        .map(|(_, _, d)| d.as_millis() as u64)
        .collect();
    assert_eq!(delays, [1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000]);
}

#[test]
fn reconnection_gives_up_after_the_attempts() {
    let config = client_config(TransportMode::WebSocketOnly)
        .reconnection_attempts(Some(3))
        .reconnection_delay(ms(100))
        .randomization_factor(0.0);
    let mut n = Net::new(config);
    let root = n.socket("/", None);
    n.connected(root);
    n.kill();
    n.advance(ms(5000));
    let tail: Vec<ClientEvent> = n
        .client_events()
        .into_iter()
        .skip_while(|e| !matches!(e, ClientEvent::Disconnect { .. }))
        .collect();
    use ClientEvent::*;
    let ws_err = |attempt| ReconnectError {
        attempt,
        reason: CloseReason::TransportError,
        error: Some(ClientError::ConnectionFailed("connection refused".into())),
    };
    assert_eq!(
        tail,
        vec![
            Disconnect {
                nsp: root,
                reason: ClientDisconnectReason::TransportClose
            },
            Reconnecting {
                attempt: 1,
                delay: ms(100)
            },
            ws_err(1),
            Reconnecting {
                attempt: 2,
                delay: ms(200)
            },
            ws_err(2),
            Reconnecting {
                attempt: 3,
                delay: ms(400)
            },
            ws_err(3),
            ReconnectFailed,
        ]
    );
    assert_eq!(n.client.state(), ClientState::Closed);
    assert_eq!(n.client.poll_timeout(), None);
    // The server is back: asking for the socket again opens a connection.
    n.start();
    let now = n.now;
    n.client.socket(now, "/", None).unwrap();
    n.pump();
    n.connected(root);
}

#[test]
fn reconnection_off_stays_down() {
    let mut n = Net::new(client_config(TransportMode::PollingOnly).reconnection(false));
    let root = n.socket("/", None);
    n.connected(root);
    n.kill();
    n.start();
    n.advance(ms(10_000));
    assert_eq!(
        n.disconnects(),
        vec![(root, ClientDisconnectReason::TransportError)]
    );
    assert!(n.reconnecting().is_empty());
    assert_eq!(n.client.state(), ClientState::Closed);
}

#[test]
fn first_connection_failing_retries() {
    let mut n = Net::new(client_config(TransportMode::PollingOnly));
    n.kill(); // before the handshake answer
    let root = n.socket("/", None);
    n.advance(ms(100));
    assert!(matches!(
        n.client_events()[0],
        ClientEvent::OpenError {
            reason: CloseReason::TransportError,
            ..
        }
    ));
    assert!(matches!(
        n.client_events()[1],
        ClientEvent::Reconnecting { attempt: 1, .. }
    ));
    n.start();
    n.until(ms(5000), |n| n.client.is_connected(root));
    assert!(
        n.client_events()
            .contains(&ClientEvent::Reconnected { attempt: 1 })
    );
}

#[test]
fn open_timeout_counts_as_a_failed_attempt() {
    let config = client_config(TransportMode::PollingOnly)
        .timeout(ms(500))
        .randomization_factor(0.0);
    let mut n = Net::new(config);
    n.cut = true; // the handshake is never answered
    let root = n.socket("/", None);
    n.advance(ms(600));
    let first = n.client_events()[0].clone();
    assert_eq!(
        first,
        ClientEvent::OpenError {
            reason: CloseReason::TransportError,
            error: Some(ClientError::Timeout)
        }
    );
    n.cut = false;
    n.until(ms(3000), |n| n.client.is_connected(root));
}

#[test]
fn buffered_emits_arrive_in_order_exactly_once_after_reconnection() {
    for mode in MODES {
        let mut n = Net::new(client_config(mode));
        let auth = obj(&[("token", "t".into())]);
        let root = n.socket("/", Some(auth.clone()));
        let custom = n.socket("/custom", Some(obj(&[("c", num(1))])));
        n.connected(root);
        n.connected(custom);
        n.advance(ms(400));
        for i in 0..10 {
            n.emit(root, "count", vec![num(i)]);
        }
        let in_flight = n.emit_ack(root, "silent", vec![], None);
        n.advance(ms(50));
        assert_eq!(n.server_got("count").len(), 10);
        n.kill();
        n.until(ms(2000), |n| n.disconnects().len() == 2);
        let reason = n.disconnects()[0].1;
        assert!(
            matches!(
                reason,
                ClientDisconnectReason::TransportClose | ClientDisconnectReason::TransportError
            ),
            "{mode:?}: {reason:?}"
        );
        assert!(n.client_events().contains(&ClientEvent::AckLost {
            nsp: root,
            id: in_flight
        }));
        // Emits while disconnected wait, in order; volatile ones are dropped.
        for i in 10..30 {
            n.emit(root, "count", vec![num(i)]);
            if i == 15 {
                let now = n.now;
                assert_eq!(
                    n.client.emit_volatile(now, root, "count", vec![num(999)]),
                    Ok(false)
                );
            }
        }
        let buffered_ack = n.emit_ack(root, "message-with-ack", vec!["later".into()], None);
        n.emit(custom, "count", vec![num(1000)]);
        assert_eq!(n.client.buffered(root), 21);
        n.advance(ms(3000));
        n.start();
        n.until(ms(10_000), |n| {
            n.client.is_connected(root) && n.client.is_connected(custom)
        });
        // Both namespaces connected again with their auth.
        n.advance(ms(200));
        let auths: Vec<Value> = n
            .server_events
            .iter()
            .filter_map(|e| match e {
                Event::Connection { auth, .. } => Some(auth.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(auths, vec![auth.clone(), obj(&[("c", num(1))])], "{mode:?}");
        for i in 30..40 {
            n.emit(root, "count", vec![num(i)]);
        }
        n.advance(ms(500));
        let got: Vec<u64> = n
            .server_got("count")
            .iter()
            .filter_map(|a| a.first().and_then(Value::as_u64))
            .collect();
        let mut want: Vec<u64> = (10..40).collect();
        want.insert(20, 1000); // the /custom emit, after /'s buffer
        assert_eq!(got, want, "{mode:?}");
        assert_eq!(
            n.ack_of(root, buffered_ack),
            Some(vec![Value::from("later")])
        );
        assert!(
            n.client_events()
                .iter()
                .any(|e| matches!(e, ClientEvent::Reconnected { .. }))
        );
        // Ids stay unique across the engines.
        let mut ids: Vec<u64> = n
            .log
            .iter()
            .filter_map(|(_, t)| match t {
                ClientTransmit::Connect { conn } => Some(conn.0),
                _ => None,
            })
            .collect();
        let total = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), total, "{mode:?}: connection ids repeat");
    }
}

#[test]
fn send_buffer_off_refuses_emits_while_disconnected() {
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly).send_buffer(false));
    let root = n.socket("/", None);
    let now = n.now;
    assert_eq!(
        n.client.emit(now, root, "x", vec![]),
        Err(ClientUsageError::NotConnected)
    );
    n.connected(root);
    n.emit(root, "message", vec![num(1)]);
    assert_eq!(n.wait_event(root, "message-back"), vec![num(1)]);
    // Cleared buffers report their acks lost.
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly));
    let root = n.socket("/", None);
    let id = n.emit_ack(root, "message-with-ack", vec![], None);
    n.emit(root, "message", vec![]);
    assert_eq!(n.client.clear_send_buffer(root), 2);
    n.pump();
    assert!(
        n.client_events()
            .contains(&ClientEvent::AckLost { nsp: root, id })
    );
    n.connected(root);
    n.advance(ms(200));
    assert!(n.server_got("message").is_empty());
}

#[test]
fn emits_before_connect_leave_after_the_connect() {
    let mut n = Net::new(client_config(TransportMode::PollingThenUpgrade));
    let root = n.socket("/", None);
    for i in 0..5 {
        n.emit(root, "message", vec![num(i)]);
    }
    n.connected(root);
    n.advance(ms(300));
    let back: Vec<Vec<Value>> = n.got(root, "message-back");
    assert_eq!(back, (0..5).map(|i| vec![num(i)]).collect::<Vec<_>>());
}

#[test]
fn the_transcript_of_a_polling_connection() {
    let mut n = Net::new(client_config(TransportMode::PollingOnly));
    let root = n.socket("/", Some(obj(&[("a", num(1))])));
    n.connected(root);
    let posts: Vec<String> = n
        .log
        .iter()
        .filter_map(|(_, t)| match t {
            ClientTransmit::Data { data, .. } => {
                let (head, used) = HeadParser::new(Limits::default())
                    .parse_request(data)
                    .ok()??;
                (head.method == Method::Post)
                    .then(|| String::from_utf8_lossy(&data[used..]).into_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(posts[0], r#"40{"a":1}"#);
}

#[test]
fn no_panic_on_arbitrary_input() {
    let mut rng = SeededEntropy::new(9);
    for mode in MODES {
        let mut c = Client::new(
            client_config(mode),
            Box::new(SeededEntropy::new(1)),
            Instant::now(),
        );
        let now = Instant::now();
        c.socket(now, "/", None).unwrap();
        let mut ids = Vec::new();
        for step in 0..3000u64 {
            let t = now + ms(step);
            while let Some(tr) = c.poll_transmit(t) {
                if let ClientTransmit::Connect { conn } = tr {
                    ids.push(conn);
                }
            }
            while c.poll_event(t).is_some() {}
            let pick = rng.next_u32() as usize;
            let id = ids
                .get(pick % ids.len().max(1))
                .copied()
                .unwrap_or(ConnId(pick as u64));
            let mut junk = vec![0u8; rng.next_u32() as usize % 40];
            rng.fill(&mut junk);
            let body: &[u8] = match pick % 6 {
                0 => b"0{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200}",
                1 => b"40{\"sid\":\"x\"}\x1e42[\"e\",1]\x1e451-[\"b\",{\"_placeholder\":true,\"num\":0}]",
                2 => b"44{\"message\":\"no\"}\x1e41\x1e43[1]",
                _ => &junk,
            };
            match pick % 6 {
                0 => {
                    let mut raw = bytes::BytesMut::new();
                    ResponseHead::new(200)
                        .with_header("Content-Length", body.len().to_string())
                        .encode(&mut raw);
                    raw.extend_from_slice(body);
                    c.handle_input(t, id, &raw);
                }
                1 => c.handle_input(t, id, body),
                2 => c.handle_eof(t, id),
                4 => c.handle_error(t, id, "reset"),
                3 => {
                    let _ = c.emit(t, NspId(0), "e", vec![Value::Binary(junk.clone().into())]);
                }
                _ => c.handle_timeout(t),
            }
        }
    }
}

#[test]
fn huge_durations_do_not_panic() {
    let config = client_config(TransportMode::WebSocketOnly)
        .timeout(Duration::MAX)
        .reconnection_delay(Duration::MAX)
        .reconnection_delay_max(Duration::MAX)
        .randomization_factor(1.0);
    let mut n = Net::new(config);
    let root = n.socket("/", None);
    n.connected(root);
    n.emit_ack(root, "silent", vec![], Some(Duration::MAX));
    n.kill();
    n.advance(ms(1000));
    assert_eq!(n.client.state(), ClientState::Reconnecting);
    assert!(n.client.poll_timeout().is_some());
}

// ----- limits no other test crosses ------------------------------------------------

#[test]
fn the_send_buffer_holds_at_most_max_send_buffer_emits() {
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly).max_send_buffer(3));
    let root = n.socket("/", None);
    for i in 0..3 {
        n.emit(root, "message", vec![num(i)]);
    }
    let now = n.now;
    assert_eq!(
        n.client.emit(now, root, "message", vec![num(3)]),
        Err(ClientUsageError::BufferFull)
    );
    n.connected(root);
    n.advance(ms(300));
    let back: Vec<Vec<Value>> = n.got(root, "message-back");
    assert_eq!(back, (0..3).map(|i| vec![num(i)]).collect::<Vec<_>>());
}

#[test]
fn events_before_the_connect_answer_are_held_up_to_the_default_max_receive_buffer() {
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly));
    n.server.add_namespace("/slow", Admission::Decide);
    let root = n.socket("/", None);
    n.connected(root);
    let slow = n.socket("/slow", None);
    n.advance(ms(50));
    let request = n.server_events.iter().find_map(|e| match e {
        Event::ConnectRequest { socket, .. } => Some(*socket),
        _ => None,
    });
    let socket = request.expect("the CONNECT waits for a verdict");
    // A server that talks before it answers (a correct one does not).
    let sid = n.server.session_of(n.server.sockets("/")[0]).unwrap();
    for i in 0..10_100 {
        let packet = format!(r#"2/slow,["early",{i}]"#);
        n.server.engine().send(sid, packet).unwrap();
    }
    n.pump();
    n.advance(ms(50));
    let now = n.now;
    n.server.admit(now, socket).unwrap();
    n.pump();
    n.advance(ms(50));
    let early = n.got(slow, "early");
    assert_eq!(early.len(), 10_000);
    assert_eq!(early.last(), Some(&vec![num(9_999)]));
}

#[path = "client_tests_parity.rs"]
mod parity;

/// `emit_compressed(.., false)` (the official `socket.compress(false)`) on
/// a permessage-deflate WebSocket: no RSV1 however large, also after
/// waiting in the send buffer; a default emit of the same size is
/// compressed; the server gets every one.
#[test]
fn emit_compressed_false_goes_without_rsv1() {
    let on = crate::ws::deflate::DeflateConfig::default().enabled(true);
    let mut server = server_config();
    server.engine = server.engine.per_message_deflate(on);
    let mut client = client_config(TransportMode::WebSocketOnly);
    client.engine.ws = client.engine.ws.deflate(on);
    let mut n = Net::with_server(client, server);
    let big = "compress me, compress me, ".repeat(80);
    let root = n.socket("/", None);
    // Not connected yet: it waits in the send buffer with its flag.
    let now = n.now;
    n.client
        .emit_compressed(now, root, "message", vec![big.as_str().into()], false)
        .unwrap();
    n.connected(root);
    n.emit(root, "message", vec![big.as_str().into()]);
    let now = n.now;
    n.client
        .emit_compressed(now, root, "message", vec![big.as_str().into()], false)
        .unwrap();
    n.pump();
    n.until(ms(3000), |n| n.server_got("message").len() == 3);
    assert!(
        n.server_got("message")
            .iter()
            .all(|a| a[..] == [big.as_str().into()])
    );
    // The client's bytes on its WebSocket, after the request's head.
    let mut wire: HashMap<ConnId, Vec<u8>> = HashMap::new();
    for (_, t) in &n.log {
        if let ClientTransmit::Data { conn, data } = t {
            wire.entry(*conn).or_default().extend_from_slice(data);
        }
    }
    let (_, bytes) = wire
        .iter()
        .find(|(_, b)| b.starts_with(b"GET ") && b.windows(9).any(|w| w == b"websocket"))
        .expect("the WebSocket");
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = &bytes[head..];
    let mut large = Vec::new();
    while let Ok(Some((h, hlen))) = crate::ws::frame::decode_header(rest) {
        let len = h.len as usize;
        if h.rsv != 0 || len >= 1024 {
            large.push((h.rsv, len));
        }
        rest = &rest[hlen + len..];
    }
    assert_eq!(large.len(), 3, "{large:?}");
    assert!(large[0].0 == 0 && large[0].1 > big.len(), "{large:?}");
    assert!(large[1].0 == 0b100 && large[1].1 < 512, "{large:?}");
    assert!(large[2].0 == 0 && large[2].1 > big.len(), "{large:?}");
}
