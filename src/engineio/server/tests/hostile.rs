//! Hostile and broken peers: full sockets, the bound on what waits for a
//! peer, the HTTP timeouts, and requests framed two ways.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ws_session(h: &mut H) -> (WsPeer, Sid) {
    let p = h.ws_connect("/engine.io/?EIO=4&transport=websocket");
    let sid = h
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Open { sid, .. } => Some(*sid),
            _ => None,
        })
        .unwrap();
    (p, sid)
}

fn messages(h: &H) -> Vec<String> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                data: Data::Text(t),
                ..
            } => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

fn ws_buffered(h: &H, conn: ConnId) -> usize {
    match h.server.conns.get(&conn).map(|c| &c.kind) {
        Some(ConnKind::Ws(w)) => w.ws.buffered_amount(),
        _ => 0,
    }
}

// ----- backpressure ------------------------------------------------------

#[test]
fn a_reader_that_stops_is_dropped_past_its_bound_and_the_others_go_on() {
    let mut h = H::new(Config::default().max_send_queue(64 * 1024));
    h.echo = false;
    let (slow, slow_sid) = ws_session(&mut h);
    let (mut fast, fast_sid) = ws_session(&mut h);
    h.full.insert(slow.conn);
    let chunk = "x".repeat(1000);
    let mut refused = 0;
    for _ in 0..200 {
        assert_eq!(h.server.send(fast_sid, chunk.clone()), Ok(()));
        if h.server.send(slow_sid, chunk.clone()).is_err() {
            refused += 1;
        }
        h.pump();
        h.ws_sync(&mut fast);
    }
    // Refused once (the send that would have crossed the bound), then
    // the session is gone.
    assert_eq!(refused, 200 - 65);
    assert_eq!(h.closes(), [CloseReason::SendQueueFull]);
    assert!(h.closed.contains(&slow.conn), "the connection is dropped");
    assert_eq!(h.server.session_count(), 1);
    let got = texts(&fast);
    assert_eq!(got.len(), 201, "the open packet, then every message");
    assert!(got[1..].iter().all(|t| *t == format!("4{chunk}")));
}

#[test]
fn a_blocked_websocket_decodes_nothing_until_it_is_writable() {
    let mut h = H::new(Config::default());
    let (mut p, _) = ws_session(&mut h);
    h.full.insert(p.conn);
    h.ws_text(&mut p, "4first");
    // The echo could not be written: the rest waits, undecoded, pings
    // and their pongs included.
    for i in 0..50 {
        p.ws.send(ws::Message::text(format!("4m{i}"))).unwrap();
        p.ws.ping(Bytes::from_static(b"ping")).unwrap();
    }
    h.ws_sync(&mut p);
    assert_eq!(messages(&h), ["first"]);
    assert!(ws_buffered(&h, p.conn) < 64, "no pong piled up");
    assert!(
        texts(&p).iter().all(|t| t.starts_with('0')),
        "nothing written"
    );
    // Writable again: the echo first, then everything else in order.
    h.full.remove(&p.conn);
    h.server.handle_writable(h.now, p.conn);
    h.ws_sync(&mut p);
    let mut want = vec!["first".to_owned()];
    want.extend((0..50).map(|i| format!("m{i}")));
    assert_eq!(messages(&h), want);
    let echoed: Vec<String> = texts(&p)[1..].iter().map(|t| t[1..].to_owned()).collect();
    assert_eq!(echoed, want);
}

#[test]
fn pings_from_a_peer_that_never_reads_do_not_pile_up() {
    let mut h = H::new(Config::default());
    let (mut p, _) = ws_session(&mut h);
    h.full.insert(p.conn);
    // Each read of pings is answered; once the pongs cannot be written,
    // the reads after it are not even decoded.
    for _ in 0..50 {
        for _ in 0..1000 {
            p.ws.ping(Bytes::from_static(b"0123456789")).unwrap();
        }
        h.ws_sync(&mut p);
    }
    assert!(h.closes().is_empty());
    let held = h.server.held.bytes(p.conn) + ws_buffered(&h, p.conn);
    assert!(held <= 1000 * 12 + 12, "{held} bytes wait for the peer");
}

#[test]
fn a_connection_blocked_past_the_send_timeout_is_dropped() {
    let mut h = H::new(Config::default().send_timeout(ms(1000)));
    let (p, sid) = ws_session(&mut h);
    h.full.insert(p.conn);
    h.server.send(sid, "x").unwrap();
    h.pump();
    h.advance(999);
    assert!(h.closes().is_empty() && !h.closed.contains(&p.conn));
    // Writable for a moment, full again: the clock starts over.
    h.server.handle_writable(h.now, p.conn);
    h.server.send(sid, "y").unwrap();
    h.pump();
    h.advance(999);
    assert!(h.closes().is_empty());
    h.advance(2);
    assert_eq!(h.closes(), [CloseReason::SendTimeout]);
    assert!(h.closed.contains(&p.conn));
}

#[test]
fn a_blocked_websocket_the_server_closes_is_dropped_at_the_close_timeout() {
    let mut h = H::new(Config::default().ws(ws::Config::default().close_timeout(ms(500))));
    let (p, sid) = ws_session(&mut h);
    h.full.insert(p.conn);
    h.server.send(sid, "x").unwrap();
    h.pump();
    h.server.close(h.now, sid).unwrap();
    h.pump();
    assert_eq!(h.closes(), [CloseReason::ForcedClose]);
    assert!(!h.closed.contains(&p.conn), "the close frame waits");
    h.advance(501);
    assert!(h.closed.contains(&p.conn));
    assert_eq!(h.server.conn_count(), 0);
}

#[test]
fn a_polling_session_that_never_polls_is_dropped_past_its_bound_in_bytes() {
    let mut h = H::new(Config::default());
    let s = Sid::parse(&h.open_polling()).unwrap();
    let kb = "y".repeat(1024);
    let mut sent = 0;
    while h.server.send(s, kb.clone()).is_ok() {
        sent += 1;
    }
    // 1,026 bytes each in a payload: 1 MiB holds 1,022 of them.
    assert_eq!(sent, (1 << 20) / 1026);
    h.pump();
    assert_eq!(h.closes(), [CloseReason::SendQueueFull]);
    assert_eq!(h.server.session_count(), 0);
}

#[test]
fn a_lone_packet_over_the_bound_still_goes() {
    let mut h = H::new(Config::default().max_send_queue(100));
    h.echo = false;
    let s = Sid::parse(&h.open_polling()).unwrap();
    let big = "z".repeat(1000);
    assert_eq!(h.server.send(s, big.clone()), Ok(()));
    let r = h.request(
        "GET",
        &format!("/engine.io/?EIO=4&transport=polling&sid={s}"),
        b"",
    );
    assert_eq!(r.text(), format!("4{big}"));
    let (mut p, ws_sid) = ws_session(&mut h);
    assert_eq!(h.server.send(ws_sid, big.clone()), Ok(()));
    h.ws_sync(&mut p);
    assert_eq!(texts(&p).last(), Some(&format!("4{big}")));
    assert!(h.closes().is_empty());
}

#[test]
fn input_fed_to_a_blocked_connection_past_the_bound_drops_it() {
    let mut h = H::new(Config::default().max_send_queue(10_000).max_payload(10_000));
    let (mut p, _) = ws_session(&mut h);
    h.full.insert(p.conn);
    h.ws_text(&mut p, "4first");
    for _ in 0..20 {
        p.ws.send(ws::Message::text(format!("4{}", "a".repeat(1000))))
            .unwrap();
    }
    h.ws_sync(&mut p);
    assert_eq!(h.closes(), [CloseReason::TransportError]);
    assert!(h.closed.contains(&p.conn));
}

#[test]
fn a_blocked_http_connection_reads_no_pipelined_request() {
    let mut h = H::new(Config::default());
    let conn = h.server.accept(h.now, None);
    h.full.insert(conn);
    let one = "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";
    h.server.handle_input(h.now, conn, one.as_bytes());
    h.pump();
    // The answer could not be written: the next requests wait unread.
    h.server.handle_input(h.now, conn, one.repeat(2).as_bytes());
    h.pump();
    assert_eq!(h.server.session_count(), 1);
    h.full.remove(&conn);
    h.server.handle_writable(h.now, conn);
    h.pump();
    assert_eq!(h.server.session_count(), 3);
    for _ in 0..3 {
        assert_eq!(h.response(conn).unwrap().status, 200);
    }
}

// ----- HTTP timeouts ---------------------------------------------------------

/// Feeds `bytes` to `conn` one a second, until the server closes it;
/// returns how many it took.
fn drip(h: &mut H, conn: ConnId, bytes: &[u8]) -> usize {
    for (i, b) in bytes.iter().enumerate() {
        if h.closed.contains(&conn) {
            return i;
        }
        h.server.handle_input(h.now, conn, &[*b]);
        h.pump();
        h.advance(1000);
    }
    bytes.len()
}

#[test]
fn a_head_sent_a_byte_a_second_is_answered_408_at_the_head_timeout() {
    let mut h = H::new(Config::default().head_timeout(Duration::from_secs(10)));
    let conn = h.server.accept(h.now, None);
    let head = format!(
        "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(100)
    );
    assert_eq!(drip(&mut h, conn, head.as_bytes()), 10);
    let r = h.response(conn).unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(h.server.conn_count(), 0);
}

#[test]
fn the_default_head_timeout_is_thirty_seconds() {
    let mut h = H::new(Config::default());
    let conn = h.server.accept(h.now, None);
    h.advance(29_999);
    assert!(!h.closed.contains(&conn));
    h.advance(2);
    assert_eq!(h.response(conn).unwrap().status, 408);
    assert!(h.closed.contains(&conn));
}

#[test]
fn a_body_shorter_than_declared_is_answered_408_at_the_request_timeout() {
    let mut h = H::new(Config::default().request_timeout(Duration::from_secs(10)));
    h.echo = false;
    let sid = h.open_polling();
    let conn = h.server.accept(h.now, None);
    let req = format!(
        "POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Length: 1000\r\n\r\n4hello"
    );
    h.server.handle_input(h.now, conn, req.as_bytes());
    h.pump();
    h.advance(9_999);
    assert!(!h.closed.contains(&conn));
    h.advance(2);
    assert_eq!(h.response(conn).unwrap().status, 408);
    assert!(h.closed.contains(&conn));
    assert!(messages(&h).is_empty(), "nothing of the body was taken");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_keep_alive_timeout() {
    let mut h = H::new(Config::default());
    let conn = h.send("GET", "/engine.io/?EIO=4&transport=polling", &[], b"");
    assert_eq!(h.response(conn).unwrap().status, 200);
    h.advance(4_000);
    // Another request in time: the wait starts over after its answer.
    h.send_on(conn, "GET", "/engine.io/?EIO=4&transport=polling", &[], b"");
    assert_eq!(h.response(conn).unwrap().status, 200);
    h.advance(4_999);
    assert!(!h.closed.contains(&conn));
    h.advance(2);
    assert!(h.closed.contains(&conn));
    assert!(h.out[&conn].is_empty(), "closed without an answer");
}

#[test]
fn a_held_poll_has_no_http_deadline() {
    let mut h = H::new(Config::default().ping_interval(Duration::from_secs(120)));
    let sid = h.open_polling();
    let get = h.send(
        "GET",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        &[],
        b"",
    );
    h.advance(100_000);
    assert!(!h.closed.contains(&get));
    assert!(h.response(get).is_none());
}

// ----- request framing -------------------------------------------------------

#[test]
fn a_request_with_content_length_and_chunked_is_answered_then_closed() {
    let mut h = H::new(Config::default());
    h.echo = false;
    let sid = h.open_polling();
    let conn = h.server.accept(h.now, None);
    let req = format!(
        "POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n4hello\r\n0\r\n\r\n\
         GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    h.server.handle_input(h.now, conn, req.as_bytes());
    h.pump();
    // Read by its chunked framing, answered, and the connection closed:
    // the request smuggled after it is not served.
    assert_eq!(messages(&h), ["hello"]);
    let r = h.response(conn).unwrap();
    assert_eq!((r.status, r.text()), (200, "ok"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(h.closed.contains(&conn));
    assert!(h.response(conn).is_none());
    assert_eq!(h.server.session_count(), 1);
}

#[test]
fn a_closing_polling_session_no_poll_comes_for_ends_at_the_close_timeout() {
    let mut h = H::new(
        Config::default()
            .close_timeout(Duration::from_secs(10))
            .ping_interval(Duration::from_secs(600)),
    );
    let s = Sid::parse(&h.open_polling()).unwrap();
    h.server.send(s, "bye").unwrap();
    h.server.close(h.now, s).unwrap();
    h.pump();
    h.advance(9_999);
    assert_eq!(h.server.session_count(), 1);
    h.advance(2);
    assert_eq!(h.closes(), [CloseReason::ForcedClose]);
    assert_eq!(h.server.session_count(), 0);
}

#[test]
fn a_connection_that_blocks_and_drains_often_keeps_one_timer() {
    let mut h = H::new(Config::default());
    h.echo = false;
    let (p, sid) = ws_session(&mut h);
    let timers = h.server.timers.len();
    for _ in 0..1000 {
        h.full.insert(p.conn);
        h.server.send(sid, "x").unwrap();
        h.pump();
        h.full.remove(&p.conn);
        h.server.handle_writable(h.now, p.conn);
        h.pump();
        h.now += ms(1);
    }
    assert!(
        h.server.timers.len() <= timers + 2,
        "{}",
        h.server.timers.len()
    );
}
