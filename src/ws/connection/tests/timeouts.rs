//! The opening handshake's timer, both roles.

use super::*;

#[test]
fn a_request_head_sent_a_byte_a_second_is_answered_408_at_the_head_timeout() {
    let config = Config::default().head_timeout(Duration::from_secs(10));
    let mut server = Connection::server(config);
    let start = Instant::now();
    // The driver drains the new connection: the clock starts.
    assert_eq!(server.poll_transmit(start), None);
    assert_eq!(server.poll_timeout(), Some(start + Duration::from_secs(10)));
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let mut now = start;
    for b in head.iter().take(10) {
        server.handle_input(now, &[*b]);
        server.handle_timeout(now);
        assert_eq!(server.poll_event(now), None);
        now += Duration::from_secs(1);
    }
    server.handle_timeout(now);
    let Some(Event::Closed(c)) = server.poll_event(now) else {
        panic!()
    };
    assert_eq!(c.error, Some(Error::Handshake(HandshakeError::Timeout)));
    let Some(Transmit::Data(answer)) = server.poll_transmit(now) else {
        panic!()
    };
    assert!(answer.starts_with(b"HTTP/1.1 408 "), "{answer:?}");
    assert_eq!(server.poll_transmit(now), Some(Transmit::Close));
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn a_request_in_time_stops_the_clock() {
    let mut p = Pair::new(Config::default());
    p.server.poll_transmit(p.now);
    p.drive();
    assert_eq!(p.server.state(), State::Open);
    assert_eq!(p.server.poll_timeout(), None);
    assert_eq!(p.client.poll_timeout(), None);
}

#[test]
fn a_client_whose_answer_never_comes_gives_up_at_the_head_timeout() {
    let mut client = Connection::client(
        Config::default(),
        ClientRequest::new("localhost", "/"),
        Box::new(SeededEntropy::new(1)),
    );
    let now = Instant::now();
    assert!(matches!(client.poll_transmit(now), Some(Transmit::Data(_))));
    let deadline = now + Duration::from_secs(30);
    assert_eq!(client.poll_timeout(), Some(deadline));
    client.handle_input(deadline - Duration::from_secs(1), b"HTTP/1.1 101 Switch");
    client.handle_timeout(deadline);
    let Some(Event::Closed(c)) = client.poll_event(deadline) else {
        panic!()
    };
    assert_eq!(c.error, Some(Error::Handshake(HandshakeError::Timeout)));
    assert_eq!(client.poll_transmit(deadline), Some(Transmit::Close));
}
