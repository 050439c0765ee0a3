//! Limits of the server that no other test crosses: a reader that stops
//! among many (issue 19: broadcasts go on reaching the others, and the one
//! that reads nothing is dropped at its bound with a reason the
//! application hears), and a connection that never joins a namespace.

use super::*;

fn bounded(max_send_queue: usize) -> Config {
    Config::default().engine(
        crate::engineio::Config::default()
            .path("/socket.io/")
            .max_send_queue(max_send_queue),
    )
}

#[test]
fn a_broadcast_to_a_reader_that_stops_drops_it_and_reaches_the_others() {
    let mut h = H::new(bounded(32 * 1024));
    let slow = h.init();
    let mut fast = h.init();
    let mut third = h.init();
    h.full.insert(slow.conn);
    let payload = "p".repeat(500);
    for i in 0..200 {
        let args = vec![Value::from(f64::from(i)), Value::from(payload.as_str())];
        h.io.of("/").emit("news", args).unwrap();
        h.pump();
        h.sync(&mut fast);
        h.sync(&mut third);
    }
    assert_eq!(h.disconnects(), [DisconnectReason::SendQueueFull]);
    assert_eq!(DisconnectReason::SendQueueFull.as_str(), "send queue full");
    assert!(h.closed.contains(&slow.conn), "its connection is dropped");
    for p in [&fast, &third] {
        assert_eq!(p.got.len(), 200);
        for (i, m) in p.got.iter().enumerate() {
            assert_eq!(
                m,
                &ws::Message::text(format!(r#"42["news",{i},"{payload}"]"#))
            );
        }
    }
    // Later broadcasts do not count it.
    assert_eq!(h.io.of("/").emit("news", vec![]), Ok(2));
}

#[test]
fn a_client_whose_answers_cannot_be_written_is_read_again_once_writable() {
    // Events a client sends while its socket is full wait undecoded; once
    // it is writable they are read and answered in order, the burst of
    // answers of that one turn not counted against the bound.
    let mut h = H::new(bounded(8 * 1024));
    let mut p = h.init();
    h.full.insert(p.conn);
    let big = "m".repeat(2000);
    for _ in 0..20 {
        p.ws.send(ws::Message::text(format!(r#"42["message","{big}"]"#)))
            .unwrap();
        h.sync(&mut p);
    }
    let heard = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::Event { .. }))
        .count();
    assert_eq!(heard, 1, "nothing decoded after the first answer blocked");
    h.full.remove(&p.conn);
    h.io.handle_writable(h.now, p.conn);
    h.sync(&mut p);
    let heard = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::Event { .. }))
        .count();
    assert_eq!(heard, 20);
    assert_eq!(p.got.len(), 20, "every answer, in order");
    assert!(h.disconnects().is_empty());
}

#[test]
fn a_connection_that_joins_no_namespace_is_closed_at_the_connect_timeout() {
    let mut h = H::new(
        bounded(1 << 20)
            .engine(
                crate::engineio::Config::default()
                    .path("/socket.io/")
                    .ping_interval(Duration::from_secs(600)),
            )
            .connect_timeout(Duration::from_secs(45)),
    );
    let mut p = h.connect();
    h.advance(44_999);
    h.sync(&mut p);
    assert!(!p.closed);
    h.advance(2);
    h.sync(&mut p);
    assert!(p.closed, "closed at the connect timeout");
    assert!(h.closed.contains(&p.conn));
}
