//! The server on a virtual clock, spoken to in raw HTTP and WebSocket bytes.
//!
//! The first group mirrors, case by case, every test of the official
//! engine.io-protocol suite (github socketio/engine.io-protocol,
//! `test-suite/test-suite.js`), against a server configured as that suite
//! expects (300 ms / 200 ms heartbeat, CORS `*`, an echo application). The
//! suite itself runs against the `conformance` example in CI when a copy is
//! available (scripts/protocol-suite.sh eio).

mod hostile;

use std::{
    collections::{HashMap, HashSet},
    ops::ControlFlow,
    time::Duration,
};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::{
    engineio::{Cors, CorsOrigin},
    entropy::SeededEntropy,
    http::{HeadParser, Limits},
    machine::drain,
    ws::{self, ClientRequest, CloseCode},
};

mod compression;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Resp {
    status: u16,
    headers: crate::http::Headers,
    body: Bytes,
}

impl Resp {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get_str(name)
    }
}

struct WsPeer {
    conn: ConnId,
    ws: ws::Connection,
    messages: Vec<ws::Message>,
    closed: Option<CloseCode>,
}

/// The server, its clock, and what it wrote on each connection.
struct H {
    server: Server,
    now: Instant,
    out: HashMap<ConnId, BytesMut>,
    closed: Vec<ConnId>,
    events: Vec<Event>,
    echo: bool,
    /// Connections whose socket is full: what comes for them is given back.
    full: HashSet<ConnId>,
}

fn suite_config() -> Config {
    Config::default()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .cors(Some(Cors::new(CorsOrigin::Any)))
}

impl H {
    fn new(config: Config) -> H {
        let now = Instant::now();
        H {
            server: Server::new(config, Box::new(SeededEntropy::new(7)), now),
            now,
            out: HashMap::new(),
            closed: Vec::new(),
            events: Vec::new(),
            echo: true,
            full: HashSet::new(),
        }
    }

    fn suite() -> H {
        H::new(suite_config())
    }

    /// Drains the server; the echo application sends every message back.
    fn pump(&mut self) {
        let echo = self.echo;
        let now = self.now;
        drain(
            &mut self.server,
            self.now,
            |server, t| {
                match t {
                    Transmit::Data { conn, data } if self.full.contains(&conn) => {
                        server.handle_write_blocked(now, conn, data)
                    }
                    Transmit::Data { conn, data } => {
                        self.out.entry(conn).or_default().extend_from_slice(&data)
                    }
                    Transmit::Close { conn } => self.closed.push(conn),
                    Transmit::Response { conn, head, body } => {
                        let mut b = BytesMut::new();
                        head.clone()
                            .with_header("Content-Length", body.len().to_string())
                            .encode(&mut b);
                        b.extend_from_slice(&body);
                        self.out.entry(conn).or_default().extend_from_slice(&b);
                    }
                }
                ControlFlow::Continue(())
            },
            |server, ev| {
                if let (true, Event::Message { sid, data }) = (echo, &ev) {
                    let _ = server.send(*sid, data.clone());
                }
                self.events.push(ev);
            },
        );
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        // Step through every deadline on the way, as a driver would.
        while let Some(t) = self.server.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.server.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
        self.server.handle_timeout(self.now);
        self.pump();
    }

    /// Sends a request on a new connection.
    fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> ConnId {
        let conn = self.server.accept(self.now, None);
        self.send_on(conn, method, target, headers, body);
        conn
    }

    fn send_on(
        &mut self,
        conn: ConnId,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.server.handle_input(self.now, conn, &bytes);
        self.pump();
    }

    /// The next complete response on `conn`, if any.
    fn response(&mut self, conn: ConnId) -> Option<Resp> {
        let buf = self.out.get_mut(&conn)?;
        let (head, used) = HeadParser::new(Limits::default())
            .parse_response(buf)
            .unwrap()?;
        let len: usize = head
            .headers
            .get_str("content-length")
            .map_or(0, |l| l.parse().unwrap());
        if buf.len() < used + len {
            return None;
        }
        let mut all = buf.split_to(used + len);
        let body = all.split_off(used).freeze();
        Some(Resp {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    fn request(&mut self, method: &str, target: &str, body: &[u8]) -> Resp {
        let conn = self.send(method, target, &[], body);
        self.response(conn)
            .unwrap_or_else(|| panic!("no response to {method} {target}"))
    }

    fn open_polling(&mut self) -> String {
        let r = self.request("GET", "/engine.io/?EIO=4&transport=polling", b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let open: serde_json::Value = serde_json::from_str(&r.text()[1..]).unwrap();
        open["sid"].as_str().unwrap().to_owned()
    }

    fn ws_connect(&mut self, target: &str) -> WsPeer {
        let conn = self.server.accept(self.now, None);
        let mut ws = ws::Connection::client(
            ws::Config::default()
                .max_message_size(4 << 20)
                .max_frame_size(4 << 20),
            ClientRequest::new("localhost", target),
            Box::new(SeededEntropy::new(conn.0)),
        );
        while let Some(ws::Transmit::Data(b)) = ws.poll_transmit(self.now) {
            self.server.handle_input(self.now, conn, &b);
        }
        self.pump();
        let mut peer = WsPeer {
            conn,
            ws,
            messages: vec![],
            closed: None,
        };
        self.ws_sync(&mut peer);
        peer
    }

    /// Moves bytes between the server and one WebSocket peer.
    fn ws_sync(&mut self, p: &mut WsPeer) {
        for _ in 0..100 {
            self.pump();
            let mut moved = false;
            if let Some(buf) = self.out.get_mut(&p.conn) {
                if !buf.is_empty() {
                    let data = buf.split();
                    p.ws.handle_input(self.now, &data);
                    moved = true;
                }
            }
            if self.closed.contains(&p.conn) && p.ws.state() != ws::State::Closed {
                p.ws.handle_eof(self.now);
            }
            while let Some(ev) = p.ws.poll_event(self.now) {
                match ev {
                    ws::Event::Message(m) => p.messages.push(m),
                    ws::Event::Closed(c) => p.closed = Some(c.code),
                    _ => {}
                }
            }
            while let Some(t) = p.ws.poll_transmit(self.now) {
                moved = true;
                match t {
                    ws::Transmit::Data(b) => self.server.handle_input(self.now, p.conn, &b),
                    ws::Transmit::Close => self.server.handle_eof(self.now, p.conn),
                }
            }
            if !moved {
                return;
            }
        }
    }

    pub(super) fn ws_send(&mut self, p: &mut WsPeer, m: ws::Message) {
        p.ws.send(m).unwrap();
        self.ws_sync(p);
    }

    fn ws_text(&mut self, p: &mut WsPeer, t: &str) {
        self.ws_send(p, ws::Message::text(t.to_owned()));
    }

    fn closes(&self) -> Vec<CloseReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Close { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

fn texts(p: &WsPeer) -> Vec<String> {
    p.messages
        .iter()
        .map(|m| match m {
            ws::Message::Text(t) => t.to_string(),
            ws::Message::Binary(b) => format!("<binary {b:?}>"),
        })
        .collect()
}

fn open_packet_keys(text: &str) -> serde_json::Value {
    assert!(text.starts_with('0'), "{text}");
    serde_json::from_str(&text[1..]).unwrap()
}

// ----- engine.io-protocol suite: handshake --------------------------------

#[test]
fn suite_handshake_polling_successfully_opens_a_session() {
    let mut h = H::suite();
    let r = h.request("GET", "/engine.io/?EIO=4&transport=polling", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let v = open_packet_keys(r.text());
    let sid = v["sid"].as_str().unwrap();
    assert_eq!(sid.len(), 20);
    assert_eq!(
        r.text(),
        format!(
            r#"0{{"sid":"{sid}","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}}"#
        )
    );
}

#[test]
fn suite_handshake_polling_fails_with_an_invalid_eio() {
    let mut h = H::suite();
    for target in [
        "/engine.io/?transport=polling",
        "/engine.io/?EIO=abc&transport=polling",
    ] {
        let r = h.request("GET", target, b"");
        assert_eq!(
            (r.status, r.text()),
            (
                400,
                r#"{"code":5,"message":"Unsupported protocol version"}"#
            )
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
}

#[test]
fn suite_handshake_polling_fails_with_an_invalid_transport() {
    let mut h = H::suite();
    for target in [
        "/engine.io/?EIO=4",
        "/engine.io/?EIO=4&transport=abc",
        "/engine.io/?EIO=4&transport=__proto__",
    ] {
        let r = h.request("GET", target, b"");
        assert_eq!(
            (r.status, r.text()),
            (400, r#"{"code":0,"message":"Transport unknown"}"#)
        );
    }
}

#[test]
fn suite_handshake_polling_fails_with_an_invalid_request_method() {
    let mut h = H::suite();
    for method in ["POST", "PUT"] {
        let r = h.request(method, "/engine.io/?EIO=4&transport=polling", b"");
        assert_eq!(
            (r.status, r.text()),
            (400, r#"{"code":2,"message":"Bad handshake method"}"#)
        );
    }
}

#[test]
fn a_refused_handshake_carries_the_applications_message() {
    let mut h = H::suite();
    h.server
        .set_allow_request(Box::new(|head| match head.query().get("token") {
            Some("ok") => Ok(()),
            _ => Err("no \"token\"\n\u{1}\\/\u{7f}é".into()),
        }));
    let r = h.request("GET", "/engine.io/?EIO=4&transport=polling", b"");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Escaped as the official server's JSON.stringify does it.
    assert_eq!(
        r.text(),
        "{\"code\":4,\"message\":\"no \\\"token\\\"\\n\\u0001\\\\/\u{7f}é\"}"
    );
    let r = h.request("GET", "/engine.io/?EIO=4&transport=polling&token=ok", b"");
    assert_eq!(r.status, 200);
}

#[test]
fn suite_handshake_websocket_successfully_opens_a_session() {
    let mut h = H::suite();
    let p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    let t = texts(&p);
    let v = open_packet_keys(&t[0]);
    assert_eq!(v.as_object().unwrap().len(), 5);
    assert_eq!(v["upgrades"], serde_json::json!([]));
    assert_eq!(
        (
            v["pingInterval"].as_u64(),
            v["pingTimeout"].as_u64(),
            v["maxPayload"].as_u64()
        ),
        (Some(300), Some(200), Some(1_000_000))
    );
}

#[test]
fn suite_handshake_websocket_fails_with_an_invalid_eio_or_transport() {
    let mut h = H::suite();
    for (target, body) in [
        (
            "/engine.io/?transport=websocket",
            "Unsupported protocol version",
        ),
        (
            "/engine.io/?EIO=abc&transport=websocket",
            "Unsupported protocol version",
        ),
        ("/engine.io/?EIO=4", "Transport unknown"),
        ("/engine.io/?EIO=4&transport=abc", "Transport unknown"),
    ] {
        let p = h.ws_connect(target);
        assert!(p.closed.is_some(), "{target}");
        let r = h.response(p.conn);
        assert!(h.closed.contains(&p.conn));
        // The client machine consumed the refusal; check it on a raw request.
        let _ = r;
        let conn = h.send(
            "GET",
            target,
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            b"",
        );
        let r = h.response(conn).unwrap();
        assert_eq!((r.status, r.text()), (400, body), "{target}");
    }
}

// ----- engine.io-protocol suite: message ----------------------------------

#[test]
fn suite_message_polling_one_plain_text_packet() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let r = h.request(
        "POST",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        b"4hello",
    );
    assert_eq!((r.status, r.text()), (200, "ok"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    let r = h.request(
        "GET",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        b"",
    );
    assert_eq!((r.status, r.text()), (200, "4hello"));
}

#[test]
fn suite_message_polling_several_plain_text_packets() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(
        h.request("POST", &url, b"4test1\x1e4test2\x1e4test3")
            .text(),
        "ok"
    );
    assert_eq!(
        h.request("GET", &url, b"").text(),
        "4test1\x1e4test2\x1e4test3"
    );
}

#[test]
fn suite_message_polling_plain_text_and_binary_packets() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(h.request("POST", &url, b"4hello\x1ebAQIDBA==").text(), "ok");
    assert_eq!(h.request("GET", &url, b"").text(), "4hello\x1ebAQIDBA==");
    assert!(h.events.contains(&Event::Message {
        sid: Sid::parse(&sid).unwrap(),
        data: Data::Binary(Bytes::from_static(&[1, 2, 3, 4]))
    }));
}

#[test]
fn suite_message_polling_closes_the_session_upon_invalid_packet_format() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(h.request("POST", &url, b"abc").text(), "ok");
    let r = h.request("GET", &url, b"");
    assert_eq!(
        (r.status, r.text()),
        (400, r#"{"code":1,"message":"Session ID unknown"}"#)
    );
    assert_eq!(h.closes(), [CloseReason::ParseError]);
}

#[test]
fn suite_message_polling_closes_the_session_upon_duplicate_poll_requests() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let first = h.send("GET", &url, &[], b"");
    assert_eq!(h.response(first), None, "the first poll is held");
    let second = h.send("GET", &format!("{url}&t=burst"), &[], b"");
    let r1 = h.response(first).unwrap();
    let r2 = h.response(second).unwrap();
    assert_eq!((r1.status, r1.text()), (200, "1"));
    assert_eq!((r2.status, r2.text()), (400, ""));
    assert_eq!(h.request("GET", &url, b"").status, 400);
    assert_eq!(h.closes(), [CloseReason::TransportError]);
}

#[test]
fn suite_message_websocket_plain_text_packet() {
    let mut h = H::suite();
    let mut p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    h.ws_text(&mut p, "4hello");
    assert_eq!(texts(&p)[1], "4hello");
}

#[test]
fn suite_message_websocket_binary_packet() {
    let mut h = H::suite();
    let mut p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    h.ws_send(&mut p, ws::Message::binary(vec![1u8, 2, 3, 4]));
    assert_eq!(p.messages[1], ws::Message::binary(vec![1u8, 2, 3, 4]));
}

#[test]
fn suite_message_websocket_closes_the_session_upon_invalid_packet_format() {
    let mut h = H::suite();
    let mut p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    h.ws_text(&mut p, "abc");
    assert_eq!(p.closed, Some(CloseCode::NO_STATUS));
    assert_eq!(h.closes(), [CloseReason::ParseError]);
}

// ----- engine.io-protocol suite: heartbeat --------------------------------

#[test]
fn suite_heartbeat_polling_sends_ping_pong_packets() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    for _ in 0..3 {
        let get = h.send("GET", &url, &[], b"");
        assert_eq!(h.response(get), None);
        h.advance(299);
        assert_eq!(h.response(get), None, "no ping before pingInterval");
        h.advance(1);
        assert_eq!(h.response(get).unwrap().text(), "2");
        h.advance(10);
        assert_eq!(h.request("POST", &url, b"3").text(), "ok");
    }
    assert!(h.closes().is_empty());
}

#[test]
fn suite_heartbeat_polling_closes_the_session_upon_ping_timeout() {
    let mut h = H::suite();
    let sid = h.open_polling();
    h.advance(499);
    assert!(h.closes().is_empty());
    h.advance(1);
    assert_eq!(h.closes(), [CloseReason::PingTimeout]);
    let r = h.request(
        "GET",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        b"",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn suite_heartbeat_websocket_sends_ping_pong_packets() {
    let mut h = H::suite();
    let mut p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    for i in 0..3 {
        h.advance(300);
        h.ws_sync(&mut p);
        assert_eq!(texts(&p).last().unwrap(), "2", "ping {i}");
        h.advance(50);
        h.ws_text(&mut p, "3");
    }
    assert_eq!(p.closed, None);
}

#[test]
fn suite_heartbeat_websocket_closes_the_session_upon_ping_timeout() {
    let mut h = H::suite();
    let mut p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    h.advance(500);
    h.ws_sync(&mut p);
    assert_eq!(texts(&p)[1], "2");
    assert_eq!(p.closed, Some(CloseCode::NO_STATUS));
    assert_eq!(h.closes(), [CloseReason::PingTimeout]);
}

// ----- engine.io-protocol suite: close ------------------------------------

#[test]
fn suite_close_polling_forcefully_closes_the_session() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let get = h.send("GET", &url, &[], b"");
    assert_eq!(h.request("POST", &url, b"1").text(), "ok");
    assert_eq!(h.response(get).unwrap().text(), "6");
    assert_eq!(h.request("GET", &url, b"").status, 400);
    assert_eq!(h.closes(), [CloseReason::TransportClose]);
}

#[test]
fn suite_close_websocket_forcefully_closes_the_session() {
    // The official server ignores a close packet on WebSocket; the
    // unanswered ping ends the session.
    let mut h = H::suite();
    let mut p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    h.ws_text(&mut p, "1");
    assert_eq!(p.closed, None);
    h.advance(500);
    h.ws_sync(&mut p);
    assert_eq!(p.closed, Some(CloseCode::NO_STATUS));
}

// ----- engine.io-protocol suite: upgrade ----------------------------------

#[test]
fn suite_upgrade_successfully_upgrades_from_polling_to_websocket() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let mut p = h.ws_connect(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    h.ws_text(&mut p, "2probe");
    assert_eq!(texts(&p), ["3probe"]);
    let get = h.send("GET", &url, &[], b"");
    assert_eq!(h.response(get).unwrap().text(), "6");
    h.ws_text(&mut p, "5");
    h.ws_text(&mut p, "4hello");
    assert_eq!(texts(&p), ["3probe", "4hello"]);
    assert_eq!(
        h.server.transport(Sid::parse(&sid).unwrap()),
        Some(TransportKind::WebSocket)
    );
}

#[test]
fn suite_upgrade_ignores_http_requests_with_same_sid_after_upgrade() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let mut p = h.ws_connect(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    p.ws.send(ws::Message::text("2probe")).unwrap();
    h.ws_text(&mut p, "5");
    let r = h.request(
        "GET",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        b"",
    );
    assert_eq!(
        (r.status, r.text()),
        (400, r#"{"code":3,"message":"Bad request"}"#)
    );
    h.ws_text(&mut p, "4hello");
    assert_eq!(texts(&p), ["3probe", "4hello"]);
}

#[test]
fn suite_upgrade_ignores_websocket_connection_with_same_sid_after_upgrade() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let target = format!("/engine.io/?EIO=4&transport=websocket&sid={sid}");
    let mut p = h.ws_connect(&target);
    p.ws.send(ws::Message::text("2probe")).unwrap();
    h.ws_text(&mut p, "5");
    let second = h.ws_connect(&target);
    assert_eq!(second.closed, Some(CloseCode::NO_STATUS));
    h.ws_text(&mut p, "4hello");
    assert_eq!(texts(&p), ["3probe", "4hello"]);
}

// ----- beyond the suite: the official server's behaviour ------------------

#[test]
fn post_over_max_payload_is_413_and_the_session_survives() {
    let mut h = H::new(suite_config().max_payload(100));
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let ok = format!("4{}", "x".repeat(99));
    assert_eq!(h.request("POST", &url, ok.as_bytes()).text(), "ok");
    let big = format!("4{}", "x".repeat(100));
    let r = h.request("POST", &url, big.as_bytes());
    assert_eq!((r.status, r.text()), (413, ""));
    assert_eq!(h.request("GET", &url, b"").text(), ok);
    assert!(h.closes().is_empty());
}

#[test]
fn websocket_message_over_max_payload_closes_1009() {
    let mut h = H::new(suite_config().max_payload(1000));
    let mut p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    h.ws_text(&mut p, &format!("4{}", "x".repeat(999)));
    assert_eq!(texts(&p).len(), 2, "exactly max_payload is accepted");
    h.ws_text(&mut p, &format!("4{}", "x".repeat(1000)));
    assert_eq!(p.closed, Some(CloseCode::TOO_BIG));
    assert_eq!(h.closes(), [CloseReason::TransportError]);
}

#[test]
fn cors_preflight_and_headers() {
    let mut h = H::suite();
    let conn = h.send(
        "OPTIONS",
        "/engine.io/?anything",
        &[
            ("Origin", "http://a"),
            ("Access-Control-Request-Headers", "x-y"),
        ],
        b"",
    );
    let r = h.response(conn).unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,HEAD,PUT,PATCH,POST,DELETE")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-headers"), Some("x-y"));
    let r = h.request("GET", "/engine.io/?EIO=4", b"");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    let mut h = H::new(suite_config().cors(Some(
        Cors::new(CorsOrigin::List(vec!["http://ok".into()])).credentials(true),
    )));
    let conn = h.send(
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        &[("Origin", "http://ok")],
        b"",
    );
    let r = h.response(conn).unwrap();
    assert_eq!(r.header("access-control-allow-origin"), Some("http://ok"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let conn = h.send(
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        &[("Origin", "http://evil")],
        b"",
    );
    let r = h.response(conn).unwrap();
    assert_eq!(r.header("access-control-allow-origin"), None);
    // The headers are set once, as the middleware sets them.
    let count = |name: &str| {
        r.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .count()
    };
    assert_eq!(
        (count("vary"), count("access-control-allow-credentials")),
        (1, 1)
    );
}

#[test]
fn other_paths_go_to_the_application_and_connections_are_kept_alive() {
    let mut h = H::suite();
    let conn = h.send("GET", "/index.html", &[], b"");
    let Some(Event::Request { conn: c, head, .. }) = h.events.pop() else {
        panic!()
    };
    assert_eq!((c, head.path()), (conn, "/index.html"));
    h.server
        .respond(
            h.now,
            conn,
            ResponseHead::new(200).with_header("Content-Type", "text/html"),
            Bytes::from_static(b"<p>hi"),
        )
        .unwrap();
    h.pump();
    assert_eq!(h.response(conn).unwrap().text(), "<p>hi");
    // The same connection then opens a session and polls.
    h.send_on(conn, "GET", "/engine.io/?EIO=4&transport=polling", &[], b"");
    let sid = open_packet_keys(h.response(conn).unwrap().text())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    h.send_on(
        conn,
        "POST",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        &[],
        b"4x",
    );
    assert_eq!(h.response(conn).unwrap().text(), "ok");
    assert!(!h.closed.contains(&conn));
    assert_eq!(
        h.server
            .respond(h.now, conn, ResponseHead::new(200), Bytes::new()),
        Err(UsageError::NotAwaitingResponse(conn))
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut h = H::suite();
    let conn = h.server.accept(h.now, None);
    let mut all = Vec::new();
    for _ in 0..50 {
        all.extend_from_slice(b"GET /engine.io/?EIO=4 HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    h.server.handle_input(h.now, conn, &all);
    h.pump();
    for _ in 0..50 {
        assert_eq!(h.response(conn).unwrap().status, 400);
    }
}

#[test]
fn server_close_of_a_polling_session_matches_the_official_bytes() {
    let mut h = H::suite();
    // Nothing buffered, no poll pending: the next poll gets noop + close.
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    h.server.close(h.now, Sid::parse(&sid).unwrap()).unwrap();
    assert_eq!(h.request("GET", &url, b"").text(), "6\x1e1");
    assert_eq!(h.closes(), [CloseReason::ForcedClose]);
    // A pending poll gets the close packet alone.
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let get = h.send("GET", &url, &[], b"");
    h.server.close(h.now, Sid::parse(&sid).unwrap()).unwrap();
    h.pump();
    assert_eq!(h.response(get).unwrap().text(), "1");
    // Buffered packets leave first, then noop + close.
    let sid = h.open_polling();
    let s = Sid::parse(&sid).unwrap();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    h.server.send(s, "bye").unwrap();
    h.server.close(h.now, s).unwrap();
    assert_eq!(h.server.send(s, "late"), Err(UsageError::UnknownSession(s)));
    assert_eq!(h.request("GET", &url, b"").text(), "4bye");
    assert_eq!(h.request("GET", &url, b"").text(), "6\x1e1");
}

#[test]
fn binary_post_wrong_method_and_bad_origin() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(h.request("PUT", &url, b"").status, 500);
    let conn = h.send(
        "POST",
        &url,
        &[("Content-Type", "application/octet-stream")],
        b"\x04x",
    );
    assert_eq!(h.response(conn).unwrap().status, 400);
    assert_eq!(h.closes(), [CloseReason::TransportError]);
    let conn = h.send(
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        &[("Origin", "a\x01b")],
        b"",
    );
    let r = h.response(conn);
    // httparse refuses the control character outright; either way, 400.
    assert_eq!(r.map(|r| r.status), Some(400));
}

#[test]
fn a_packet_while_awaiting_the_pong_extends_the_deadline_once() {
    let mut h = H::suite();
    let mut p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    h.advance(300); // ping
    h.advance(150);
    h.ws_text(&mut p, "4a"); // extends to 450 + 200
    h.advance(100);
    h.ws_text(&mut p, "4b"); // no second extension
    h.advance(99);
    assert!(h.closes().is_empty());
    h.advance(1);
    assert_eq!(h.closes(), [CloseReason::PingTimeout]);
}

#[test]
fn upgrade_timeout_and_a_bad_probe_keep_polling() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let mut p = h.ws_connect(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    h.ws_text(&mut p, "4nope");
    assert_eq!(p.closed, Some(CloseCode::NO_STATUS));
    assert_eq!(
        h.server.transport(Sid::parse(&sid).unwrap()),
        Some(TransportKind::Polling)
    );
    assert_eq!(h.request("POST", &url, b"3").text(), "ok");

    let mut h = H::new(
        suite_config()
            .ping_interval(Duration::from_secs(60))
            .upgrade_timeout(Duration::from_millis(1000)),
    );
    let sid = h.open_polling();
    let mut p = h.ws_connect(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    h.advance(1000);
    h.ws_sync(&mut p);
    assert_eq!(p.closed, Some(CloseCode::NO_STATUS));
    assert!(h.closes().is_empty());
}

#[test]
fn packets_queued_during_an_upgrade_are_not_lost_or_reordered() {
    let mut h = H::suite();
    h.echo = false;
    let sid = h.open_polling();
    let s = Sid::parse(&sid).unwrap();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    h.server.send(s, "a").unwrap();
    let mut p = h.ws_connect(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"));
    h.server.send(s, "b").unwrap();
    h.ws_text(&mut p, "2probe");
    h.server.send(s, "c").unwrap();
    h.pump();
    // The poll takes what was queued so far.
    assert_eq!(h.request("GET", &url, b"").text(), "4a\x1e4b\x1e4c");
    h.server.send(s, "d").unwrap();
    let get = h.send("GET", &url, &[], b"");
    assert_eq!(h.response(get).unwrap().text(), "4d");
    h.server.send(s, Bytes::from_static(b"\x01")).unwrap();
    h.ws_text(&mut p, "5");
    h.server.send(s, "f").unwrap();
    h.ws_sync(&mut p);
    assert_eq!(texts(&p), ["3probe", "<binary b\"\\x01\">", "4f"]);
    assert_eq!(
        h.events
            .iter()
            .filter(|e| matches!(e, Event::Upgrade { .. }))
            .count(),
        1
    );
}

#[test]
fn limits_sessions_and_buffered_packets() {
    let mut h = H::new(suite_config().max_sessions(2).max_buffered_packets(3));
    let a = h.open_polling();
    h.open_polling();
    let r = h.request("GET", "/engine.io/?EIO=4&transport=polling", b"");
    assert_eq!(
        (r.status, r.text()),
        (503, r#"{"code":3,"message":"Too many sessions"}"#)
    );
    let s = Sid::parse(&a).unwrap();
    for _ in 0..3 {
        h.server.send(s, "x").unwrap();
    }
    // One more crosses the bound: the session ends, as one that crosses
    // `max_send_queue` does.
    assert_eq!(h.server.send(s, "x"), Err(UsageError::BufferFull));
    h.pump();
    assert!(h.events.contains(&Event::Close {
        sid: s,
        reason: CloseReason::SendQueueFull
    }));
    assert_eq!(
        h.request(
            "GET",
            &format!("/engine.io/?EIO=4&transport=polling&sid={a}"),
            b""
        )
        .status,
        400
    );
}

#[test]
fn a_dropped_poll_connection_is_a_transport_error() {
    let mut h = H::suite();
    let sid = h.open_polling();
    let get = h.send(
        "GET",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        &[],
        b"",
    );
    h.server.handle_eof(h.now, get);
    h.pump();
    assert_eq!(h.closes(), [CloseReason::TransportError]);
}

#[test]
fn embedded_requests_and_upgrades() {
    let mut h = H::suite();
    let head = crate::http::RequestHead::new(
        crate::http::Method::Get,
        "/engine.io/?EIO=4&transport=polling",
    );
    let conn = h.server.handle_request(h.now, head, Bytes::new(), None);
    let Some(Transmit::Response {
        conn: c,
        head,
        body,
    }) = h.server.poll_transmit(h.now)
    else {
        panic!()
    };
    assert_eq!((c, head.status), (conn, 200));
    let sid = open_packet_keys(std::str::from_utf8(&body).unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    h.pump();

    let req = ClientRequest::new(
        "x",
        format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"),
    )
    .head("dGhlIHNhbXBsZSBub25jZQ==");
    let (conn, res) = h.server.handle_upgrade(h.now, req, None).unwrap();
    assert_eq!(res.status, 101);
    let mut client =
        ws::Connection::client_upgraded(ws::Config::default(), Box::new(SeededEntropy::new(1)));
    client.send(ws::Message::text("2probe")).unwrap();
    while let Some(ws::Transmit::Data(b)) = client.poll_transmit(h.now) {
        h.server.handle_input(h.now, conn, &b);
    }
    h.pump();
    client.handle_input(h.now, &h.out.remove(&conn).unwrap());
    assert_eq!(
        client.poll_event(h.now),
        Some(ws::Event::Message(ws::Message::text("3probe")))
    );

    let bad = ClientRequest::new("x", "/engine.io/?EIO=4&transport=websocket&sid=nope")
        .head("dGhlIHNhbXBsZSBub25jZQ==");
    let (res, body) = h.server.handle_upgrade(h.now, bad, None).unwrap_err();
    assert_eq!((res.status, &body[..]), (400, &b"Session ID unknown"[..]));
}

#[test]
fn timers_scale_to_many_sessions() {
    let mut h = H::new(Config::default());
    h.echo = false;
    for _ in 0..10_000 {
        let conn = h.server.accept(h.now, None);
        h.server.handle_input(h.now, conn, b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
        h.now += Duration::from_micros(10);
    }
    h.pump();
    h.out.clear();
    assert_eq!(h.server.session_count(), 10_000);
    let first = h.server.poll_timeout().unwrap();
    // Every session pings once at its own time, in one sweep.
    h.now += Duration::from_millis(25_200);
    h.server.handle_timeout(h.now);
    h.pump();
    assert!(first <= h.now);
    assert_eq!(h.out.len(), 10_000);
    assert_eq!(h.server.session_count(), 10_000);
    h.now += Duration::from_millis(20_000);
    h.server.handle_timeout(h.now);
    h.pump();
    assert_eq!(h.server.session_count(), 0);
    assert_eq!(h.closes().len(), 10_000);
}

// ----- advisories and malformed input ---------------------------------------

/// CVE-2022-21676: bytes after the upgrade request that parse as a frame
/// with a reserved bit crashed the official server.
#[test]
fn upgrade_followed_by_a_frame_with_rsv_bits_fails_only_that_connection() {
    let mut h = H::suite();
    let mut bystander = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    let conn = h.server.accept(h.now, None);
    let mut req = b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    req.extend_from_slice(&[0xC1, 0x81, 0, 0, 0, 0, b'4']);
    h.server.handle_input(h.now, conn, &req);
    h.pump();
    let out = h.out.remove(&conn).unwrap();
    assert!(out.starts_with(b"HTTP/1.1 101 "));
    // The open packet, then a close frame with 1002.
    let tail = &out[out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let close = tail
        .windows(2)
        .position(|w| w[0] == 0x88)
        .expect("a close frame");
    assert_eq!(&tail[close + 2..close + 4], &1002u16.to_be_bytes());
    assert!(h.closed.contains(&conn));
    assert_eq!(h.closes(), [CloseReason::TransportError]);
    h.ws_text(&mut bystander, "4still");
    assert_eq!(texts(&bystander).last().unwrap(), "4still");
}

/// CVE-2022-41940: a connection reset during an invalid upgrade crashed the
/// official server.
#[test]
fn reset_during_an_invalid_upgrade() {
    let mut h = H::suite();
    let sid = h.open_polling();
    for target in [
        "/engine.io/?EIO=4&transport=polling&sid=SID",
        "/engine.io/?EIO=4&transport=__proto__&sid=SID",
        "/engine.io/?EIO=4&transport=websocket&sid=unknown",
        "/engine.io/?EIO=4&transport=websocket&sid=SID",
    ] {
        let conn = h.server.accept(h.now, None);
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            target.replace("SID", &sid)
        );
        // Half the request, then the reset; and the whole request, then
        // the reset before anything is read back.
        h.server
            .handle_input(h.now, conn, &req.as_bytes()[..req.len() / 2]);
        h.server.handle_eof(h.now, conn);
        let conn = h.server.accept(h.now, None);
        h.server.handle_input(h.now, conn, req.as_bytes());
        h.server.handle_eof(h.now, conn);
        h.pump();
    }
    // The polling session survives all of it.
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(h.request("POST", &url, b"4ok").text(), "ok");
    assert_eq!(h.request("GET", &url, b"").text(), "4ok");
}

#[test]
fn malformed_payloads_close_only_their_session() {
    for body in [
        &b"bAQ!D"[..],
        b"4a\x1e\x1e4b",
        b"",
        b"\x1e",
        b"9",
        b"4\xff\xfe",
        b"2",
    ] {
        let mut h = H::suite();
        let other = h.open_polling();
        let sid = h.open_polling();
        let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
        let r = h.request("POST", &url, body);
        assert_eq!(r.status, 200, "{body:?}");
        assert_eq!(
            h.request("GET", &url, b"").status,
            400,
            "{body:?} closed the session"
        );
        let other = format!("/engine.io/?EIO=4&transport=polling&sid={other}");
        assert_eq!(h.request("POST", &other, b"4x").text(), "ok");
    }
    // Bad body framing: answered 400 and the connection closed.
    let mut h = H::suite();
    let sid = h.open_polling();
    let url = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let conn = h.send(
        "POST",
        &url,
        &[("Content-Length", "5"), ("Transfer-Encoding", "gzip")],
        b"4abcd",
    );
    assert_eq!(h.response(conn).unwrap().status, 400);
    assert!(h.closed.contains(&conn));
}

/// Found by fuzzing: a text with the payload separator, sent to a polling
/// session, was written raw and read back as two packets.
#[test]
fn a_text_with_the_separator_is_refused_over_polling_only() {
    let mut h = H::suite();
    h.echo = false;
    let sid = Sid::parse(&h.open_polling()).unwrap();
    assert_eq!(
        h.server.send(sid, "a\u{1e}b"),
        Err(UsageError::SeparatorInText)
    );
    let mut p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    let ws_sid = *h
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Open { sid, .. } => Some(sid),
            _ => None,
        })
        .unwrap();
    h.server.send(ws_sid, "a\u{1e}b").unwrap();
    h.ws_sync(&mut p);
    assert_eq!(texts(&p).last().unwrap(), "4a\u{1e}b");
}

#[test]
fn the_cookie_option_sets_the_sid_on_the_polling_handshake_only() {
    let mut h = H::new(suite_config().cookie(Some(crate::engineio::Cookie::default())));
    let r = h.request("GET", "/engine.io/?EIO=4&transport=polling", b"");
    let open: serde_json::Value = serde_json::from_str(&r.text()[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    assert_eq!(
        r.header("set-cookie"),
        Some(format!("io={sid}; Path=/; HttpOnly; SameSite=Lax").as_str())
    );
    // Later requests of the session, and refused handshakes, set nothing.
    let target = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let r = h.request("POST", &target, b"4x");
    assert_eq!(r.header("set-cookie"), None);
    let r = h.request("GET", &target, b"");
    assert_eq!(r.header("set-cookie"), None);
    let r = h.request("GET", "/engine.io/?EIO=3&transport=polling", b"");
    assert_eq!((r.status, r.header("set-cookie")), (400, None));
    // Without the option, none (the official default).
    let mut h = H::suite();
    let r = h.request("GET", "/engine.io/?EIO=4&transport=polling", b"");
    assert_eq!(r.header("set-cookie"), None);
}
