//! The client's msgpack parser and connection state recovery, against the
//! wsio server on the in-memory network of `client_tests.rs`.

use super::*;
use crate::socketio::{Parser, RecoveryConfig};

fn msgpack_net(mode: TransportMode) -> Net {
    Net::with_server(
        client_config(mode).parser(Parser::Msgpack),
        server_config().parser(Parser::Msgpack),
    )
}

fn recovery_config() -> Config {
    server_config().recovery(Some(
        RecoveryConfig::default().max_disconnection_duration(ms(2000)),
    ))
}

impl Net {
    /// Every connection breaks at once (a network reset): both ends hear
    /// of it after the latency; the server keeps running.
    fn reset(&mut self) {
        self.to_server.clear();
        let mut ends: Vec<(ConnId, ConnId)> = self.to_client.drain().collect();
        ends.sort_unstable();
        for (s, c) in ends {
            self.schedule(Delivery::ServerEof(self.epoch, s));
            self.schedule(Delivery::ClientError(c, "connection reset"));
        }
        self.pump();
    }

    /// The `Connect` events of a socket: sid and `recovered`.
    fn connects(&self, nsp: NspId) -> Vec<(String, bool)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                ClientEvent::Connect {
                    nsp: n,
                    sid,
                    recovered,
                } if *n == nsp => Some((sid.clone(), *recovered)),
                _ => None,
            })
            .collect()
    }

    /// The first argument of every `name` event of a socket.
    fn firsts(&self, nsp: NspId, name: &str) -> Vec<Value> {
        self.got(nsp, name)
            .into_iter()
            .filter_map(|a| a.first().cloned())
            .collect()
    }
}

fn bin(b: &[u8]) -> Value {
    Value::Binary(Bytes::copy_from_slice(b))
}

// ----- msgpack ---------------------------------------------------------------------

#[test]
fn msgpack_conformance_in_every_mode() {
    for mode in MODES {
        let mut n = msgpack_net(mode);
        let auth = obj(&[("token", "abc".into())]);
        let root = n.socket("/", Some(auth.clone()));
        let custom = n.socket("/custom", None);
        n.connected(root);
        n.connected(custom);
        assert_eq!(n.wait_event(root, "auth"), vec![auth], "{mode:?}");
        assert_eq!(n.wait_event(custom, "auth"), vec![obj(&[])], "{mode:?}");
        n.advance(ms(500));
        // Mixed values, binary inline, nested.
        let args = vec![
            "é\u{1e}".into(),
            num(1),
            Value::from(-2.5),
            Value::Null,
            obj(&[("b", bin(&[1, 2, 3])), ("a", Value::Array(vec![bin(&[])]))]),
            bin(&vec![7u8; 100_000]),
        ];
        n.emit(root, "message", args.clone());
        assert_eq!(n.wait_event(root, "message-back"), args, "{mode:?}");
        n.emit(root, "binary", vec![bin(&[9])]);
        assert_eq!(n.wait_event(root, "binary-back"), vec![bin(&[9])]);
        // Acks both ways.
        let id = n.emit_ack(root, "message-with-ack", vec![bin(&[4]), num(5)], None);
        assert_eq!(n.wait_ack(root, id), vec![bin(&[4]), num(5)]);
        let id = n.emit_ack(root, "server-ack", vec!["q".into()], None);
        n.until(ms(1000), |n| !n.got(root, "ask").is_empty());
        let ask = n
            .events
            .iter()
            .find_map(|(_, e)| match e {
                ClientEvent::Event {
                    name, ack: Some(a), ..
                } if name == "ask" => Some(*a),
                _ => None,
            })
            .unwrap();
        let now = n.now;
        n.client.ack(now, root, ask, vec![bin(&[8])]).unwrap();
        n.pump();
        assert_eq!(n.wait_ack(root, id), vec![bin(&[8])]);
        // Rooms.
        let id = n.emit_ack(root, "join", vec!["r".into()], None);
        assert_eq!(n.wait_ack(root, id), vec![Value::Bool(true)]);
        let count = n
            .server
            .of("/")
            .to("r")
            .emit("room", vec![bin(&[1])])
            .unwrap();
        assert_eq!(count, 1);
        n.pump();
        assert_eq!(n.wait_event(root, "room"), vec![bin(&[1])]);
        // An unknown namespace is refused as with the default parser.
        let other = n.socket("/nope", None);
        n.until(ms(1000), |n| {
            n.client_events()
                .iter()
                .any(|e| matches!(e, ClientEvent::ConnectError { nsp, .. } if *nsp == other))
        });
        assert!(n.client.is_connected(root), "{mode:?}");
    }
}

#[test]
fn msgpack_packets_are_one_binary_message_each() {
    let mut n = msgpack_net(TransportMode::PollingOnly);
    let root = n.socket("/", Some(obj(&[("a", num(1))])));
    n.connected(root);
    n.emit(root, "message", vec![bin(&[1, 2])]);
    n.wait_event(root, "message-back");
    let posts: Vec<Vec<u8>> = n
        .log
        .iter()
        .filter_map(|(_, t)| match t {
            ClientTransmit::Data { data, .. } => {
                let (head, used) = HeadParser::new(Limits::default())
                    .parse_request(data)
                    .ok()??;
                (head.method == Method::Post).then(|| data[used..].to_vec())
            }
            _ => None,
        })
        .collect();
    // A polling body: `b` and the base64 of the msgpack map.
    let connect = Packet::Connect {
        nsp: "/".into(),
        data: Some(obj(&[("a", num(1))])),
    };
    let want = format!(
        "b{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            crate::socketio::msgpack::encode(&connect)
        )
    );
    assert_eq!(posts[0], want.as_bytes());
}

#[test]
fn a_text_message_to_a_msgpack_client_is_a_parse_error() {
    let mut n = msgpack_net(TransportMode::WebSocketOnly);
    let root = n.socket("/", None);
    n.connected(root);
    let socket = n.server.sockets("/")[0];
    let sid = n.server.session_of(socket).unwrap();
    n.server.engine().send(sid, "2[\"e\"]").unwrap();
    n.pump();
    n.until(ms(1000), |n| !n.disconnects().is_empty());
    assert_eq!(
        n.disconnects(),
        vec![(root, ClientDisconnectReason::ParseError)]
    );
}

#[test]
fn a_default_client_cannot_talk_to_a_msgpack_server() {
    let mut n = Net::with_server(
        client_config(TransportMode::WebSocketOnly).reconnection(false),
        server_config().parser(Parser::Msgpack),
    );
    let root = n.socket("/", None);
    n.advance(ms(500));
    assert!(!n.client.is_connected(root));
    assert_eq!(n.server.sockets("/"), vec![]);
}

// ----- connection state recovery ----------------------------------------------

#[test]
fn recovers_after_a_short_absence_in_every_mode_and_parser() {
    for parser in [Parser::Default, Parser::Msgpack] {
        for mode in MODES {
            // Over polling the server hears of the reset when the session
            // times out (ping interval and timeout: 500 ms), as the
            // official one does: a client that comes back sooner gets a
            // new session.
            let mut n = Net::with_server(
                client_config(mode)
                    .parser(parser)
                    .reconnection_delay(ms(700))
                    .randomization_factor(0.0),
                recovery_config().parser(parser),
            );
            let auth = obj(&[("token", "t".into())]);
            let root = n.socket("/", Some(auth.clone()));
            n.connected(root);
            let first = n.wait_event(root, "auth");
            assert_eq!(first.first(), Some(&auth));
            assert!(matches!(first.last(), Some(Value::String(_))), "an offset");
            let id = n.emit_ack(root, "join", vec!["r".into()], None);
            n.wait_ack(root, id);
            n.advance(ms(500));
            let sid = n.client.sid(root).unwrap().to_owned();
            assert_eq!(n.connects(root), vec![(sid.clone(), false)]);
            assert!(!n.client.recovered(root));

            n.server.of("/").to("r").emit("news", vec![num(0)]).unwrap();
            n.reset();
            // Before and after the server hears of it.
            n.server.of("/").to("r").emit("news", vec![num(1)]).unwrap();
            n.server.of("/").emit("news", vec![num(2)]).unwrap();
            n.advance(ms(50));
            n.server.of("/").to("r").emit("news", vec![num(3)]).unwrap();
            n.server
                .of("/")
                .to("elsewhere")
                .emit("news", vec![num(99)])
                .unwrap();
            n.pump();
            n.until(ms(1500), |n| n.connects(root).len() == 2);
            assert_eq!(
                n.connects(root),
                vec![(sid.clone(), false), (sid.clone(), true)],
                "{parser:?} {mode:?}"
            );
            assert!(n.client.recovered(root));
            // The connection handler ran again, and saw pid and offset.
            n.until(ms(500), |n| n.got(root, "auth").len() == 2);
            let again = &n.got(root, "auth")[1];
            let seen = again.first().cloned().unwrap_or_default();
            assert_eq!(seen.get("token"), Some(&Value::from("t")));
            assert!(seen.get("pid").and_then(Value::as_str).is_some());
            assert!(seen.get("offset").and_then(Value::as_str).is_some());
            n.server.of("/").to("r").emit("news", vec![num(4)]).unwrap();
            n.pump();
            n.advance(ms(200));
            assert_eq!(
                n.firsts(root, "news"),
                (0..5).map(num).collect::<Vec<_>>(),
                "{parser:?} {mode:?}: every event once, in order"
            );
            assert_eq!(n.server.rooms(n.server.sockets("/")[0]), vec!["r"]);
        }
    }
}

#[test]
fn a_long_absence_is_not_recovered() {
    let mut n = Net::with_server(
        client_config(TransportMode::WebSocketOnly)
            .reconnection_delay(ms(100))
            .randomization_factor(0.0),
        recovery_config(),
    );
    let root = n.socket("/", None);
    n.connected(root);
    n.wait_event(root, "auth");
    let id = n.emit_ack(root, "join", vec!["r".into()], None);
    n.wait_ack(root, id);
    let sid = n.client.sid(root).unwrap().to_owned();
    n.reset();
    n.up = false;
    n.advance(ms(100));
    n.server.of("/").to("r").emit("news", vec![num(0)]).unwrap();
    n.advance(ms(2500));
    n.start();
    n.until(ms(6000), |n| n.connects(root).len() == 2);
    let (new_sid, recovered) = n.connects(root)[1].clone();
    assert!(!recovered);
    assert_ne!(new_sid, sid);
    n.advance(ms(200));
    assert_eq!(n.firsts(root, "news"), vec![]);
    assert_eq!(
        n.server.rooms(n.server.sockets("/")[0]),
        Vec::<String>::new()
    );
}

#[test]
fn a_server_without_recovery_gets_the_auth_alone() {
    let mut n = Net::new(
        client_config(TransportMode::WebSocketOnly)
            .reconnection_delay(ms(100))
            .randomization_factor(0.0),
    );
    let root = n.socket("/", Some(obj(&[("k", num(1))])));
    n.connected(root);
    n.wait_event(root, "auth");
    n.reset();
    n.until(ms(1500), |n| n.connects(root).len() == 2);
    assert_eq!(n.wait_event(root, "auth"), vec![obj(&[("k", num(1))])]);
    assert!(!n.connects(root)[1].1);
}

#[test]
fn the_recovery_payload_is_pid_and_offset_under_the_auth() {
    assert_eq!(
        super::super::nsp::recovery_auth("p", Some("o"), Some(&obj(&[("a", num(1))]))),
        obj(&[("pid", "p".into()), ("offset", "o".into()), ("a", num(1))])
    );
    // The auth's own members win, in the place of the first.
    assert_eq!(
        super::super::nsp::recovery_auth("p", None, Some(&obj(&[("pid", num(2)), ("b", num(3))]))),
        obj(&[("pid", num(2)), ("b", num(3))])
    );
    assert_eq!(
        super::super::nsp::recovery_auth("p", None, None),
        obj(&[("pid", "p".into())])
    );
}

#[test]
fn offsets_come_from_events_without_ack_and_a_string_last() {
    let mut n = Net::with_server(
        client_config(TransportMode::WebSocketOnly)
            .reconnection_delay(ms(100))
            .randomization_factor(0.0),
        recovery_config(),
    );
    let root = n.socket("/", None);
    n.connected(root);
    let auth = n.wait_event(root, "auth");
    let offset = auth.last().cloned().unwrap();
    // An event with an ack id ("ask") carries none, and leaves it.
    n.emit_ack(root, "server-ack", vec!["x".into()], None);
    n.until(ms(1000), |n| !n.got(root, "ask").is_empty());
    n.reset();
    n.until(ms(1500), |n| n.connects(root).len() == 2);
    let seen = n.got(root, "auth")[1].first().cloned().unwrap();
    assert_eq!(seen.get("offset"), Some(&offset));
    assert!(n.connects(root)[1].1);
}

#[test]
fn events_before_the_answer_are_held_up_to_the_bound() {
    let mut n = Net::new(client_config(TransportMode::WebSocketOnly).max_receive_buffer(3));
    n.server.add_namespace("/decide", Admission::Decide);
    let nsp = n.socket("/decide", None);
    n.until(ms(1000), |n| {
        n.server_events
            .iter()
            .any(|e| matches!(e, Event::ConnectRequest { .. }))
    });
    let socket = n
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::ConnectRequest { socket, .. } => Some(*socket),
            _ => None,
        })
        .unwrap();
    let sid = n.server.session_of(socket).unwrap();
    for i in 0..5 {
        let text = format!("2/decide,[\"early\",{i}]");
        n.server.engine().send(sid, text).unwrap();
    }
    n.advance(ms(50));
    assert!(n.got(nsp, "early").is_empty(), "held");
    let now = n.now;
    n.server.admit(now, socket).unwrap();
    n.pump();
    n.until(ms(500), |n| n.client.is_connected(nsp));
    n.advance(ms(10));
    assert_eq!(n.firsts(nsp, "early"), vec![num(0), num(1), num(2)]);
    let order: Vec<&str> = n
        .client_events()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Connect { .. } => Some("connect"),
            ClientEvent::Event { name, .. } if name == "early" => Some("early"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["connect", "early", "early", "early"]);
}
