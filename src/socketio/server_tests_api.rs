//! The rest of the server API the official users call: a second CONNECT to
//! a joined namespace (issue 19), shutting down, dynamic namespaces that go
//! when empty.

use super::*;

/// A polling session: its sid, and the connection the requests go on.
struct Poll {
    conn: ConnId,
    sid: String,
}

impl H {
    fn poll_open(&mut self) -> Poll {
        let conn = self.io.accept(self.now, None);
        self.io.handle_input(
            self.now,
            conn,
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        self.pump();
        let body = self.poll_body(conn);
        let sid = Value::from_json(&body[1..]).unwrap()["sid"]
            .as_str()
            .unwrap()
            .to_owned();
        Poll { conn, sid }
    }

    fn poll_body(&mut self, conn: ConnId) -> String {
        let raw = self.out.remove(&conn).unwrap_or_default();
        let (head, used) = HeadParser::new(Limits::default())
            .parse_response(&raw)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 200);
        String::from_utf8(raw[used..].to_vec()).unwrap()
    }

    fn poll_post(&mut self, p: &Poll, body: &str) {
        let post = format!(
            "POST /socket.io/?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            p.sid,
            body.len()
        );
        self.io.handle_input(self.now, p.conn, post.as_bytes());
        self.pump();
        assert_eq!(self.poll_body(p.conn), "ok");
    }

    fn poll_get(&mut self, p: &Poll) -> Vec<String> {
        let get = format!(
            "GET /socket.io/?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: x\r\n\r\n",
            p.sid
        );
        self.io.handle_input(self.now, p.conn, get.as_bytes());
        self.pump();
        self.poll_body(p.conn)
            .split('\u{1e}')
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn a_second_connect_in_one_batch_is_answered_then_closed() {
    // Issue 19: the official server closes the connection for a CONNECT to
    // a namespace the client is in ("invalid state"), but its close waits
    // for what was written, so the first CONNECT's answer (and what the
    // connection handler sent) still reaches the client.
    let mut h = H::suite();
    let p = h.poll_open();
    h.poll_post(&p, "40\u{1e}40\u{1e}42[\"message\",\"ignored\"]");
    let got = h.poll_get(&p);
    assert!(got[0].starts_with("40{\"sid\":"), "{got:?}");
    assert_eq!(got[1], r#"42["auth",{}]"#);
    assert_eq!(got.len(), 2, "{got:?}");
    // Then a noop and the close packet, as the official server sends them.
    assert_eq!(h.poll_get(&p), ["6", "1"]);
    assert_eq!(h.disconnects(), [DisconnectReason::ForcedServerClose]);
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, Event::Event { name, .. } if name == "message")),
        "nothing after the bad packet is read"
    );
    assert_eq!(h.io.client_count(), 0);
}

#[test]
fn a_second_connect_after_the_first_completed_closes_at_once() {
    // Over WebSocket, and in two polling requests: the first CONNECT is
    // answered before the second is read.
    let mut h = H::suite();
    let mut w = h.init();
    h.text(&mut w, "40");
    assert!(w.closed);
    let p = h.poll_open();
    h.poll_post(&p, "40");
    h.poll_post(&p, "40");
    let got = h.poll_get(&p);
    assert!(got[0].starts_with("40{\"sid\":"), "{got:?}");
    assert_eq!(got[1], r#"42["auth",{}]"#);
    assert_eq!(h.poll_get(&p), ["6", "1"]);
    assert_eq!(h.disconnects(), [DisconnectReason::ForcedServerClose; 2]);
    // The same for a client's CONNECT_ERROR and for a packet to a
    // namespace it has not joined.
    for bad in [r#"44{"message":"x"}"#, r#"42/custom,["message"]"#] {
        let mut w = h.init();
        h.text(&mut w, bad);
        assert!(w.closed, "{bad}");
        assert_eq!(
            h.disconnects().last(),
            Some(&DisconnectReason::ForcedServerClose)
        );
    }
}

#[test]
fn close_all_shuts_every_connection() {
    let mut h = H::suite();
    let mut a = h.init();
    h.text(&mut a, "40/custom,");
    a.got.clear();
    let mut b = h.init();
    h.io.close_all(h.now);
    h.sync(&mut a);
    h.sync(&mut b);
    // No DISCONNECT: the clients see their transport close, and reconnect.
    assert!(a.got.is_empty() && b.got.is_empty());
    assert!(a.closed && b.closed);
    assert_eq!(h.disconnects(), [DisconnectReason::ServerShuttingDown; 3]);
    assert_eq!(
        DisconnectReason::ServerShuttingDown.as_str(),
        "server shutting down"
    );
    assert_eq!(h.io.client_count(), 0);
}

#[test]
fn dynamic_namespaces_go_when_empty_if_asked() {
    for cleanup in [false, true] {
        let mut h = H::new(suite_config().cleanup_empty_child_namespaces(cleanup));
        h.io.set_dynamic_namespaces(Box::new(|name, _| name.starts_with("/dyn-")));
        h.io.add_namespace("/static", Admission::AcceptAll);
        let mut p = h.connect();
        h.text(&mut p, "40/dyn-1,");
        h.text(&mut p, "40/static,");
        h.text(&mut p, "40/dyn-2,");
        let mut q = h.connect();
        h.text(&mut q, "40/dyn-1,");
        assert!(h.io.has_namespace("/dyn-1"));
        h.text(&mut p, "41/dyn-1,");
        h.text(&mut p, "41/static,");
        assert!(h.io.has_namespace("/dyn-1"), "q is still in it");
        h.text(&mut q, "41/dyn-1,");
        assert_eq!(h.io.has_namespace("/dyn-1"), !cleanup);
        assert!(h.io.has_namespace("/static"), "registered ones stay");
        // A connection lost takes its dynamic namespaces along too; a new
        // CONNECT creates one again.
        h.io.handle_eof(h.now, p.conn);
        h.pump();
        assert_eq!(h.io.has_namespace("/dyn-2"), !cleanup);
        h.text(&mut q, "40/dyn-2,");
        assert!(h.io.has_namespace("/dyn-2"));
    }
}

#[test]
fn decided_events_wait_for_a_verdict_in_order() {
    let mut h = H::new(suite_config().max_held_events(3));
    h.io.set_event_admission("/", Admission::Decide);
    let mut p = h.init();
    let socket = h.connections()[0];
    let before = h.events.len();
    h.text(&mut p, r#"42["message","a"]"#);
    h.text(&mut p, r#"421["message-with-ack","b"]"#);
    h.text(&mut p, r#"42["message","c"]"#);
    // One question at a time: the first event only.
    let asked: Vec<Event> = h.events[before..].to_vec();
    let [
        Event::EventRequest {
            check,
            name,
            args,
            ack: None,
            ..
        },
    ] = &asked[..]
    else {
        panic!("{asked:?}")
    };
    assert_eq!((name.as_str(), args), ("message", &vec![Value::from("a")]));
    assert!(p.got.is_empty(), "nothing reached the application yet");
    assert_eq!(
        h.io.refuse_event(socket, check + 7),
        Err(UsageError::UnknownCheck(check + 7))
    );
    h.io.pass_event(socket, *check).unwrap();
    h.sync(&mut p);
    assert_eq!(p.texts(), [r#"42["message-back","a"]"#]);
    // The next one is asked about now; refusing it drops it, ack and all.
    let Some(Event::EventRequest {
        check,
        ack: Some(1),
        ..
    }) = h.events.last().cloned()
    else {
        panic!("{:?}", h.events.last())
    };
    h.io.refuse_event(socket, check).unwrap();
    h.pump();
    let Some(Event::EventRequest { check, args, .. }) = h.events.last().cloned() else {
        panic!()
    };
    assert_eq!(args, [Value::from("c")]);
    h.io.pass_event(socket, check).unwrap();
    h.sync(&mut p);
    assert_eq!(
        p.texts(),
        [r#"42["message-back","a"]"#, r#"42["message-back","c"]"#]
    );
    // A client that sends faster than the verdicts come is closed.
    for i in 0..4 {
        h.text(&mut p, &format!(r#"42["message",{i}]"#));
    }
    assert!(p.closed);
    assert_eq!(h.disconnects(), [DisconnectReason::ForcedServerClose]);
    // Other namespaces are not decided.
    let mut q = h.connect();
    h.text(&mut q, "40/custom,");
    q.got.clear();
    h.text(&mut q, r#"42/custom,["x"]"#);
    assert!(matches!(h.events.last(), Some(Event::Event { name, .. }) if name == "x"));
}

#[test]
fn watched_sockets_report_their_outgoing_events() {
    let mut h = H::suite();
    let mut a = h.init();
    let mut b = h.init();
    let ids = h.connections();
    h.io.watch_outgoing(ids[0], true).unwrap();
    h.io.emit(ids[0], "one", vec![1.into()]).unwrap();
    h.io.emit(ids[1], "other", vec![]).unwrap();
    h.io.of("/").emit("all", vec![2.into()]).unwrap();
    h.io.emit_with_ack(h.now, ids[0], "ask", vec![], None)
        .unwrap();
    h.text(&mut a, r#"421["message-with-ack"]"#);
    h.io.watch_outgoing(ids[0], false).unwrap();
    h.io.emit(ids[0], "after", vec![]).unwrap();
    h.sync(&mut b);
    let seen: Vec<(SocketId, String, Vec<Value>)> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Outgoing { socket, name, args } => Some((*socket, name.clone(), args.clone())),
            _ => None,
        })
        .collect();
    // Emits and broadcasts, not acks; only while watched.
    assert_eq!(
        seen,
        [
            (ids[0], "one".into(), vec![1.into()]),
            (ids[0], "all".into(), vec![2.into()]),
            (ids[0], "ask".into(), vec![]),
        ]
    );
    assert_eq!(
        h.io.watch_outgoing(SocketId::parse("AAAAAAAAAAAAAAAAAAAA").unwrap(), true),
        Err(UsageError::UnknownSocket(
            SocketId::parse("AAAAAAAAAAAAAAAAAAAA").unwrap()
        ))
    );
}
