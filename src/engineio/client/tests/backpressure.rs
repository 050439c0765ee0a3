//! The client over a connection whose socket is full, and the limits no
//! other test crosses.

use super::*;

#[test]
fn a_full_socket_keeps_packets_in_the_bounded_write_buffer_and_stops_decoding() {
    let config = client_config(TransportMode::WebSocketOnly).max_buffered_packets(5);
    let mut n = Net::new(server_config(), config);
    n.echo = false;
    n.open();
    let conn = *n.to_server.keys().next().unwrap();
    // The socket took part of a transmit: the rest comes back.
    let now = n.now;
    n.client.send(now, text("partial")).unwrap();
    let Some(ClientTransmit::Data { data, .. }) = n.client.poll_transmit(now) else {
        panic!()
    };
    let server_conn = n.to_server[&conn];
    n.server.handle_input(now, server_conn, &data[..3]);
    n.client.handle_write_blocked(now, conn, data.slice(3..));
    for i in 0..5 {
        n.client.send(now, numbered(i)).unwrap();
    }
    assert_eq!(
        n.client.send(now, numbered(5)),
        Err(ClientUsageError::BufferFull)
    );
    n.pump();
    assert_eq!(n.client.buffered_packets(), 5);
    assert!(n.server_received().is_empty());
    // The server's ping arrives but is not decoded: no pong is queued.
    n.advance(PING_INTERVAL);
    assert_eq!(n.client.poll_transmit(n.now), None);
    // Writable again: the rest of the first frame, the pong, the packets.
    n.client.handle_writable(n.now, conn);
    n.pump();
    let mut want = vec![text("partial")];
    want.extend((0..5).map(numbered));
    assert_eq!(n.server_received(), want);
    n.advance(PING_INTERVAL + PING_TIMEOUT);
    assert_eq!(n.server_close(), None, "the pong went out in time");
}

#[test]
fn an_answer_declaring_a_body_over_64_mib_ends_the_session_at_once() {
    let now = Instant::now();
    let mut c = Client::new(
        client_config(TransportMode::PollingOnly),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    let get = take_request(&mut c);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n0",
        (64 << 20) + 1
    );
    c.handle_input(now, get, head.as_bytes());
    let evs = events(&mut c);
    let [ClientEvent::Close { reason, error }] = evs.as_slice() else {
        panic!("{evs:?}")
    };
    assert_eq!(*reason, CloseReason::TransportError);
    assert!(
        matches!(
            error,
            Some(ClientError::BadResponse(HttpError::BodyTooLarge(_)))
        ),
        "{error:?}"
    );
}
