//! The server on a virtual clock, spoken to in raw WebSocket and HTTP bytes.
//!
//! The first group mirrors each Socket.IO test of the official
//! socket.io-protocol suite (github socketio/socket.io-protocol,
//! `test-suite/test-suite.js`), against the reference application of
//! CONFORMANCE.md (`reference_app.rs`), which does what the suite's does:
//! `/` and `/custom` emit `auth` on connection; `message` is echoed as
//! `message-back`; `message-with-ack` is acked with its arguments.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    ops::ControlFlow,
    time::Duration,
};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::{
    engineio::{ConnId, Cors, CorsOrigin, Transmit},
    entropy::SeededEntropy,
    http::{HeadParser, Limits},
    machine::drain,
    socketio::{DisconnectReason, reference_app::ReferenceApp},
    ws::{self, ClientRequest},
};

struct Peer {
    conn: ConnId,
    ws: ws::Connection,
    got: Vec<ws::Message>,
    closed: bool,
}

struct H {
    io: Server,
    app: ReferenceApp,
    now: Instant,
    out: HashMap<ConnId, BytesMut>,
    closed: Vec<ConnId>,
    events: Vec<Event>,
    /// Connections whose socket is full: what comes for them is given back.
    full: HashSet<ConnId>,
}

fn suite_config() -> Config {
    Config::default()
        .engine(
            crate::engineio::Config::default()
                .path("/socket.io/")
                .ping_interval(Duration::from_millis(300))
                .ping_timeout(Duration::from_millis(200))
                .cors(Some(Cors::new(CorsOrigin::Any))),
        )
        .connect_timeout(Duration::from_millis(1000))
}

impl H {
    fn new(config: Config) -> H {
        let now = Instant::now();
        let mut io = Server::new(config, Box::new(SeededEntropy::new(3)), now);
        io.add_namespace("/custom", Admission::AcceptAll);
        H {
            io,
            app: ReferenceApp::default(),
            now,
            out: HashMap::new(),
            closed: Vec::new(),
            events: Vec::new(),
            full: HashSet::new(),
        }
    }

    fn suite() -> H {
        H::new(suite_config())
    }

    /// Drains the server, running the suite's application.
    fn pump(&mut self) {
        let now = self.now;
        drain(
            &mut self.io,
            now,
            |io, t| {
                match t {
                    Transmit::Data { conn, data } if self.full.contains(&conn) => {
                        io.handle_write_blocked(now, conn, data)
                    }
                    Transmit::Data { conn, data } => {
                        self.out.entry(conn).or_default().extend_from_slice(&data)
                    }
                    Transmit::Close { conn } => self.closed.push(conn),
                    Transmit::Response { .. } => {}
                }
                ControlFlow::Continue(())
            },
            |io, ev| {
                self.app.handle(io, now, &ev);
                self.events.push(ev);
            },
        );
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        while let Some(t) = self.io.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.io.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
        self.io.handle_timeout(self.now);
        self.pump();
    }

    fn connect(&mut self) -> Peer {
        let conn = self.io.accept(self.now, None);
        let mut ws = ws::Connection::client(
            ws::Config::default(),
            ClientRequest::new("localhost", "/socket.io/?EIO=4&transport=websocket"),
            Box::new(SeededEntropy::new(conn.0)),
        );
        while let Some(ws::Transmit::Data(b)) = ws.poll_transmit(self.now) {
            self.io.handle_input(self.now, conn, &b);
        }
        let mut p = Peer {
            conn,
            ws,
            got: Vec::new(),
            closed: false,
        };
        self.sync(&mut p);
        assert!(p.text(0).starts_with("0{"), "open packet");
        p.got.clear();
        p
    }

    fn sync(&mut self, p: &mut Peer) {
        for _ in 0..100 {
            self.pump();
            let mut moved = false;
            if let Some(buf) = self.out.get_mut(&p.conn) {
                if !buf.is_empty() {
                    let d = buf.split();
                    p.ws.handle_input(self.now, &d);
                    moved = true;
                }
            }
            if self.closed.contains(&p.conn) && p.ws.state() != ws::State::Closed {
                p.ws.handle_eof(self.now);
            }
            while let Some(ev) = p.ws.poll_event(self.now) {
                match ev {
                    ws::Event::Message(m) => p.got.push(m),
                    ws::Event::Closed(_) => p.closed = true,
                    _ => {}
                }
            }
            while let Some(t) = p.ws.poll_transmit(self.now) {
                moved = true;
                match t {
                    ws::Transmit::Data(b) => self.io.handle_input(self.now, p.conn, &b),
                    ws::Transmit::Close => self.io.handle_eof(self.now, p.conn),
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn text(&mut self, p: &mut Peer, t: &str) {
        p.ws.send(ws::Message::text(t.to_owned())).unwrap();
        self.sync(p);
    }

    fn binary(&mut self, p: &mut Peer, b: &[u8]) {
        p.ws.send(ws::Message::binary(b.to_vec())).unwrap();
        self.sync(p);
    }

    /// The suite's `initSocketIOConnection`: connect to `/`, take the
    /// CONNECT answer and the `auth` event.
    fn init(&mut self) -> Peer {
        let mut p = self.connect();
        self.text(&mut p, "40");
        assert_eq!(p.got.len(), 2);
        p.got.clear();
        p
    }

    /// The sockets that connected, in order.
    fn connections(&self) -> Vec<SocketId> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Connection { socket, .. } => Some(*socket),
                _ => None,
            })
            .collect()
    }

    fn disconnects(&self) -> Vec<DisconnectReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Disconnect { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

impl Peer {
    fn text(&self, i: usize) -> String {
        match &self.got[i] {
            ws::Message::Text(t) => t.to_string(),
            ws::Message::Binary(b) => format!("<binary {:?}>", &b[..]),
        }
    }
    fn texts(&self) -> Vec<String> {
        (0..self.got.len()).map(|i| self.text(i)).collect()
    }
}

fn sid_only(json: &str) -> String {
    let v = Value::from_json(json).unwrap();
    let Value::Object(o) = &v else {
        panic!("{json}")
    };
    assert_eq!(o.len(), 1, "{json}");
    v["sid"].as_str().unwrap().to_owned()
}

// ----- socket.io-protocol suite: connect ----------------------------------

#[test]
fn suite_connect_main_namespace() {
    let mut h = H::suite();
    let mut p = h.connect();
    h.text(&mut p, "40");
    let t = p.texts();
    assert!(t[0].starts_with("40"));
    assert_eq!(sid_only(&t[0][2..]).len(), 20);
    assert_eq!(t[1], r#"42["auth",{}]"#);
}

#[test]
fn suite_connect_main_namespace_with_a_payload() {
    let mut h = H::suite();
    let mut p = h.connect();
    h.text(&mut p, r#"40{"token":"123"}"#);
    let t = p.texts();
    sid_only(&t[0][2..]);
    assert_eq!(t[1], r#"42["auth",{"token":"123"}]"#);
}

#[test]
fn suite_connect_custom_namespace() {
    let mut h = H::suite();
    let mut p = h.connect();
    h.text(&mut p, "40/custom,");
    let t = p.texts();
    assert!(t[0].starts_with("40/custom,"));
    sid_only(&t[0][10..]);
    assert_eq!(t[1], r#"42/custom,["auth",{}]"#);
}

#[test]
fn suite_connect_custom_namespace_with_a_payload() {
    let mut h = H::suite();
    let mut p = h.connect();
    h.text(&mut p, r#"40/custom,{"token":"abc"}"#);
    let t = p.texts();
    sid_only(&t[0][10..]);
    assert_eq!(t[1], r#"42/custom,["auth",{"token":"abc"}]"#);
}

#[test]
fn suite_connect_disallows_an_unknown_namespace() {
    let mut h = H::suite();
    let mut p = h.connect();
    h.text(&mut p, "40/random");
    assert_eq!(p.texts(), [r#"44/random,{"message":"Invalid namespace"}"#]);
    assert!(!p.closed);
}

#[test]
fn suite_connect_disallows_an_invalid_handshake() {
    let mut h = H::suite();
    let mut p = h.connect();
    h.text(&mut p, "4abc");
    assert!(p.closed);
}

#[test]
fn suite_connect_closes_without_a_handshake() {
    let mut h = H::suite();
    let mut p = h.connect();
    // The client answers pings, so only the connect timeout can end it.
    for _ in 0..3 {
        h.advance(300);
        h.sync(&mut p);
        if p.texts().last().map(String::as_str) == Some("2") {
            h.text(&mut p, "3");
        }
    }
    h.advance(200);
    h.sync(&mut p);
    assert!(p.closed);
}

// ----- socket.io-protocol suite: disconnect -------------------------------

#[test]
fn suite_disconnect_from_the_main_namespace() {
    let mut h = H::suite();
    let mut p = h.init();
    h.text(&mut p, "41");
    assert!(p.got.is_empty(), "no answer to a DISCONNECT");
    h.advance(300);
    h.sync(&mut p);
    assert_eq!(p.texts(), ["2"], "the connection stays open");
    assert_eq!(
        h.disconnects(),
        [DisconnectReason::ClientNamespaceDisconnect]
    );
}

#[test]
fn suite_connect_then_disconnect_from_a_custom_namespace() {
    let mut h = H::suite();
    let mut p = h.init();
    h.advance(300);
    h.sync(&mut p);
    assert_eq!(p.texts(), ["2"]);
    p.got.clear();
    h.text(&mut p, "40/custom");
    assert_eq!(p.got.len(), 2);
    p.got.clear();
    h.text(&mut p, "41/custom");
    h.text(&mut p, r#"42["message","message to main namespace"]"#);
    assert_eq!(
        p.texts(),
        [r#"42["message-back","message to main namespace"]"#]
    );
}

// ----- socket.io-protocol suite: message ----------------------------------

#[test]
fn suite_message_plain_text() {
    let mut h = H::suite();
    let mut p = h.init();
    h.text(&mut p, r#"42["message",1,"2",{"3":[true]}]"#);
    assert_eq!(p.texts(), [r#"42["message-back",1,"2",{"3":[true]}]"#]);
}

#[test]
fn suite_message_with_binary_attachments() {
    let mut h = H::suite();
    let mut p = h.init();
    h.text(
        &mut p,
        r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    );
    h.binary(&mut p, &[1, 2, 3]);
    h.binary(&mut p, &[4, 5, 6]);
    assert_eq!(
        p.texts(),
        [
            r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            "<binary [1, 2, 3]>",
            "<binary [4, 5, 6]>"
        ]
    );
}

#[test]
fn suite_message_plain_text_with_an_ack() {
    let mut h = H::suite();
    let mut p = h.init();
    h.text(&mut p, r#"42456["message-with-ack",1,"2",{"3":[false]}]"#);
    assert_eq!(p.texts(), [r#"43456[1,"2",{"3":[false]}]"#]);
}

#[test]
fn suite_message_binary_with_an_ack() {
    let mut h = H::suite();
    let mut p = h.init();
    h.text(&mut p, r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    h.binary(&mut p, &[1, 2, 3]);
    h.binary(&mut p, &[4, 5, 6]);
    assert_eq!(
        p.texts(),
        [
            r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            "<binary [1, 2, 3]>",
            "<binary [4, 5, 6]>"
        ]
    );
}

#[test]
fn suite_message_closes_upon_invalid_format() {
    for bad in [
        "4abc",
        "42{}",
        r#"42abc["message-with-ack",1,"2",{"3":[false]}]"#,
    ] {
        let mut h = H::suite();
        let mut p = h.init();
        h.text(&mut p, bad);
        assert!(p.closed, "{bad}");
        // As the official server reports it (checked against socket.io 4.8.4).
        assert_eq!(h.disconnects(), [DisconnectReason::ForcedClose], "{bad}");
    }
}

// ----- beyond the suite -------------------------------------------------------

#[test]
fn malformed_packets_close_only_their_connection() {
    let cases: &[&[&str]] = &[
        &[r#"42["connect"]"#],
        &["42[]"],
        &[r#"42[1,"x"]"#],
        &["41{}"],
        &["40[]"],
        &["40"],
        &[r#"44{"message":"x"}"#],
        &[r#"42/custom,["message"]"#],
        &[r#"4511-["message"]"#],
        &[r#"45-["message"]"#],
        &[r#"451-["message"]"#, "42[\"x\"]"],
        &["4"],
    ];
    for case in cases {
        let mut h = H::suite();
        let mut bystander = h.init();
        let mut p = h.init();
        for t in *case {
            h.text(&mut p, t);
        }
        assert!(p.closed, "{case:?}");
        h.text(&mut bystander, r#"42["message","still here"]"#);
        assert_eq!(
            bystander.texts(),
            [r#"42["message-back","still here"]"#],
            "{case:?}"
        );
    }
    // CVE-2024-38355 crashed the official server with an event named
    // "error"; here it is an ordinary event.
    let mut h = H::suite();
    let mut p = h.init();
    h.text(&mut p, r#"42["error","x"]"#);
    assert!(!p.closed);
    assert!(matches!(h.events.last(), Some(Event::Event { name, .. }) if name == "error"));
    // A binary frame with nothing pending, and a placeholder out of range.
    let mut h = H::suite();
    let mut p = h.init();
    h.binary(&mut p, &[1]);
    assert!(p.closed);
    let mut p = h.init();
    h.text(&mut p, r#"451-["message",{"_placeholder":true,"num":1}]"#);
    h.binary(&mut p, &[1]);
    assert!(p.closed);
}

#[test]
fn rooms_broadcasts_and_exclusions() {
    let mut h = H::suite();
    let mut peers: Vec<Peer> = (0..3).map(|_| h.init()).collect();
    let ids = h.connections();
    h.io.join(ids[0], "r").unwrap();
    h.io.join(ids[1], "r").unwrap();
    assert_eq!(
        h.io.of("/").to("r").emit("in-r", vec![1.into()]).unwrap(),
        2
    );
    assert_eq!(h.io.of("/").except("r").emit("not-r", vec![]).unwrap(), 1);
    assert_eq!(h.io.broadcast_from(ids[0]).emit("b", vec![]).unwrap(), 2);
    assert_eq!(
        h.io.of("/")
            .to(ids[2].as_str())
            .emit("direct", vec![])
            .unwrap(),
        1
    );
    assert_eq!(
        h.io.of("/")
            .to("r")
            .to(ids[2].as_str())
            .except(ids[1].as_str())
            .sockets(),
        {
            let mut v = vec![ids[0], ids[2]];
            v.sort();
            v
        }
    );
    for p in peers.iter_mut() {
        h.sync(p);
    }
    assert_eq!(peers[0].texts(), [r#"42["in-r",1]"#]);
    assert_eq!(peers[1].texts(), [r#"42["in-r",1]"#, r#"42["b"]"#]);
    assert_eq!(
        peers[2].texts(),
        [r#"42["not-r"]"#, r#"42["b"]"#, r#"42["direct"]"#]
    );
    h.io.leave(ids[0], "r").unwrap();
    assert_eq!(h.io.rooms(ids[1]), ["r"]);
    assert_eq!(h.io.of("/").to("r").sockets(), [ids[1]]);
}

#[test]
fn a_broadcast_reaches_exactly_the_sockets_it_names() {
    // Rooms a = {0, 1} and b = {1, 2}; socket 3 is in none. For every mix
    // of target rooms (overlapping, repeated, unknown, socket ids),
    // exclusions and a sending socket, `sockets()` names exactly the
    // sockets `emit` reaches, and `emit` counts them.
    let mut h = H::suite();
    let mut peers: Vec<Peer> = (0..4).map(|_| h.init()).collect();
    let ids = h.connections();
    for (i, room) in [(0, "a"), (1, "a"), (1, "b"), (2, "b")] {
        h.io.join(ids[i], room).unwrap();
    }
    let (id0, id3) = (ids[0].to_string(), ids[3].to_string());
    let tos: [Vec<&str>; 8] = [
        vec![],
        vec!["a"],
        vec!["b"],
        vec!["a", "b"],
        vec!["a", "a"],
        vec!["nope"],
        vec![&id3],
        vec!["b", &id3, &id0],
    ];
    let excepts: [Vec<&str>; 5] = [vec![], vec!["b"], vec![&id0], vec!["nope"], vec!["a", "b"]];
    fn build<'a>(
        io: &'a mut Server,
        to: &[&str],
        except: &[&str],
        from: Option<SocketId>,
    ) -> Broadcast<'a> {
        let mut b = match from {
            Some(s) => io.broadcast_from(s),
            None => io.of("/"),
        };
        for r in to {
            b = b.to(r);
        }
        for r in except {
            b = b.except(r);
        }
        b
    }
    let mut case = 0u64;
    for to in &tos {
        for except in &excepts {
            for from in [None, Some(ids[1])] {
                let named = build(&mut h.io, to, except, from).sockets();
                let count = build(&mut h.io, to, except, from)
                    .emit("n", vec![case.into()])
                    .unwrap();
                let want = format!(r#"42["n",{case}]"#);
                let mut reached = Vec::new();
                for (i, p) in peers.iter_mut().enumerate() {
                    h.sync(p);
                    if p.texts().contains(&want) {
                        reached.push(ids[i]);
                    }
                    p.got.clear();
                }
                reached.sort();
                let what = format!("to {to:?} except {except:?} from {from:?}");
                assert_eq!(named, reached, "{what}");
                assert_eq!(count, reached.len(), "{what}");
                case += 1;
            }
        }
    }
}

#[test]
fn a_broadcast_is_encoded_once_and_shared() {
    let mut h = H::suite();
    let mut a = h.init();
    let mut b = h.init();
    let big = Bytes::from(vec![7u8; 4096]);
    h.io.of("/")
        .emit("x", vec![Value::Binary(big.clone())])
        .unwrap();
    // Both connections get the very same attachment bytes, not copies.
    let mut ptrs = Vec::new();
    while let Some(t) = h.io.poll_transmit(h.now) {
        if let Transmit::Data { conn, data } = &t {
            if data.len() > 4096 {
                ptrs.push(data.as_ptr());
            }
            h.out.entry(*conn).or_default().extend_from_slice(data);
        }
    }
    assert_eq!(ptrs.len(), 2);
    h.sync(&mut a);
    h.sync(&mut b);
    assert_eq!(a.got, b.got);
    assert_eq!(a.got[1], ws::Message::Binary(big));
}

#[test]
fn server_acks_and_timeouts() {
    let mut h = H::suite();
    let mut p = h.init();
    let socket = h.io.sockets("/")[0];
    let id =
        h.io.emit_with_ack(
            h.now,
            socket,
            "ask",
            vec!["q".into()],
            Some(Duration::from_millis(100)),
        )
        .unwrap();
    let id2 =
        h.io.emit_with_ack(
            h.now,
            socket,
            "ask",
            vec![],
            Some(Duration::from_millis(100)),
        )
        .unwrap();
    h.sync(&mut p);
    assert_eq!(
        p.texts(),
        [
            format!(r#"42{id}["ask","q"]"#),
            format!(r#"42{id2}["ask"]"#)
        ]
    );
    h.text(&mut p, &format!("43{id}[\"a\"]"));
    h.text(&mut p, &format!("43{id}[\"again\"]"));
    h.advance(100);
    let acks: Vec<&Event> = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::Ack { .. } | Event::AckTimeout { .. }))
        .collect();
    assert_eq!(
        acks,
        [
            &Event::Ack {
                socket,
                id,
                args: vec!["a".into()]
            },
            &Event::AckTimeout { socket, id: id2 }
        ]
    );
}

#[test]
fn decided_namespaces_and_refusals() {
    let mut h = H::suite();
    h.io.add_namespace("/private", Admission::Decide);
    let mut p = h.connect();
    h.text(&mut p, r#"40/private,{"token":"bad"}"#);
    let Some(Event::ConnectRequest { socket, auth, .. }) = h.events.pop() else {
        panic!()
    };
    assert_eq!(auth["token"].as_str(), Some("bad"));
    h.io.refuse(
        h.now,
        socket,
        "Not authorized",
        Some(Value::object([("code", Value::from(4))])),
    )
    .unwrap();
    h.sync(&mut p);
    assert_eq!(
        p.texts(),
        [r#"44/private,{"message":"Not authorized","data":{"code":4}}"#]
    );
    h.text(&mut p, r#"40/private,{"token":"good"}"#);
    let Some(Event::ConnectRequest { socket, .. }) = h.events.pop() else {
        panic!()
    };
    h.io.admit(h.now, socket).unwrap();
    h.sync(&mut p);
    assert!(p.text(1).starts_with("40/private,{\"sid\":"));
    assert_eq!(
        h.io.admit(h.now, socket),
        Err(UsageError::NotPending(socket))
    );
}

#[test]
fn dynamic_namespaces() {
    let mut h = H::suite();
    h.io.set_dynamic_namespaces(Box::new(|name, _| name.starts_with("/dyn-")));
    let mut p = h.connect();
    h.text(&mut p, "40/dyn-1,");
    h.text(&mut p, "40/other,");
    let t = p.texts();
    assert!(t[0].starts_with("40/dyn-1,"));
    assert_eq!(t[2], r#"44/other,{"message":"Invalid namespace"}"#);
}

#[test]
fn disconnect_with_close_ends_every_namespace_then_the_connection() {
    let mut h = H::suite();
    let mut p = h.init();
    h.text(&mut p, "40/custom,");
    p.got.clear();
    let main = h.io.sockets("/")[0];
    h.io.disconnect(h.now, main, true).unwrap();
    h.sync(&mut p);
    assert_eq!(p.texts(), ["41", "41/custom,"]);
    assert!(p.closed);
    assert_eq!(
        h.disconnects(),
        [DisconnectReason::ServerNamespaceDisconnect; 2]
    );
}

#[test]
fn polling_clients_get_batched_packets() {
    let mut h = H::suite();
    let conn = h.io.accept(h.now, None);
    h.io.handle_input(
        h.now,
        conn,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    h.pump();
    let raw = h.out.remove(&conn).unwrap();
    let (head, used) = HeadParser::new(Limits::default())
        .parse_response(&raw)
        .unwrap()
        .unwrap();
    assert_eq!(head.status, 200);
    let body = std::str::from_utf8(&raw[used..]).unwrap();
    let sid = Value::from_json(&body[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n40"
    );
    h.io.handle_input(h.now, conn, post.as_bytes());
    h.pump();
    h.out.remove(&conn);
    let get =
        format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
    h.io.handle_input(h.now, conn, get.as_bytes());
    h.pump();
    let raw = h.out.remove(&conn).unwrap();
    let (_, used) = HeadParser::new(Limits::default())
        .parse_response(&raw)
        .unwrap()
        .unwrap();
    let body = std::str::from_utf8(&raw[used..]).unwrap();
    let (connect, auth) = body.split_once('\u{1e}').unwrap();
    assert!(connect.starts_with("40{\"sid\":"));
    assert_eq!(auth, r#"42["auth",{}]"#);
}

#[test]
fn engine_close_reasons_reach_every_socket() {
    let mut h = H::suite();
    let mut p = h.init();
    h.text(&mut p, "40/custom,");
    h.advance(500); // no pong
    assert_eq!(h.disconnects(), [DisconnectReason::PingTimeout; 2]);
    assert_eq!(h.io.sockets("/").len() + h.io.sockets("/custom").len(), 0);
}

#[test]
fn usage_errors() {
    let mut h = H::suite();
    let _p = h.init();
    let s = h.io.sockets("/")[0];
    assert_eq!(
        h.io.emit(s, "disconnect", vec![]),
        Err(UsageError::ReservedEvent("disconnect".into()))
    );
    let gone = SocketId::parse("AAAAAAAAAAAAAAAAAAAA").unwrap();
    assert_eq!(
        h.io.emit(gone, "x", vec![]),
        Err(UsageError::UnknownSocket(gone))
    );
    assert_eq!(h.io.join(gone, "r"), Err(UsageError::UnknownSocket(gone)));
}

#[path = "server_tests_api.rs"]
mod api;
#[path = "server_tests_cluster.rs"]
mod cluster;
#[path = "server_tests_compress.rs"]
mod compress;
#[path = "server_tests_limits.rs"]
mod limits;
#[path = "server_tests_recovery.rs"]
mod recovery;
