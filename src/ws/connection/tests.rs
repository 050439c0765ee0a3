//! Client and server machines wired back to back in memory.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::entropy::{Entropy, SeededEntropy};
use crate::ws::*;

mod deflate;
mod timeouts;

/// How a test driver hands a connection its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// `handle_input`.
    HandleInput,
    /// `input_buffer` then `commit_input`.
    Ingest,
    /// `read_from` then `commit_input`.
    ReadFrom,
}

/// Splits every transfer into pieces chosen by a seeded generator.
struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    chunks: Option<SeededEntropy>,
    /// How each side's bytes reach the other.
    feed: Feed,
    /// Poll with `poll_event_ref` (copying lent messages) instead of `poll_event`.
    by_ref: bool,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    client_tcp_closed: bool,
    server_tcp_closed: bool,
}

impl Pair {
    fn new(config: Config) -> Pair {
        Self::with_request(config, ClientRequest::new("localhost", "/"))
    }

    fn with_request(config: Config, request: ClientRequest) -> Pair {
        let now = Instant::now();
        let client = Connection::client(config, request, Box::new(SeededEntropy::new(1)));
        let server = Connection::server(config);
        Pair {
            client,
            server,
            now,
            chunks: None,
            feed: Feed::HandleInput,
            by_ref: false,
            client_events: vec![],
            server_events: vec![],
            client_tcp_closed: false,
            server_tcp_closed: false,
        }
    }

    fn chunked(mut self, seed: u64) -> Pair {
        self.chunks = Some(SeededEntropy::new(seed));
        self
    }

    fn feed_by(mut self, feed: Feed) -> Pair {
        self.feed = feed;
        self
    }

    fn by_ref(mut self) -> Pair {
        self.by_ref = true;
        self
    }

    fn feed(
        chunks: &mut Option<SeededEntropy>,
        feed: Feed,
        to: &mut Connection,
        now: Instant,
        data: &[u8],
    ) {
        let mut rest = data;
        while !rest.is_empty() {
            let n = match chunks {
                None => rest.len(),
                Some(rng) => (rng.next_u32() as usize % 7 + 1).min(rest.len()),
            };
            match feed {
                Feed::HandleInput => to.handle_input(now, &rest[..n]),
                Feed::Ingest => feed_ingest(to, now, &rest[..n], 16 * 1024),
                Feed::ReadFrom => feed_read_from(to, now, &rest[..n]),
            }
            rest = &rest[n..];
        }
    }

    /// Moves bytes both ways until neither side has anything to say.
    /// The server accepts upgrades with the first offered protocol.
    fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit(self.now) {
                moved = true;
                match t {
                    Transmit::Data(b) if !self.client_tcp_closed => {
                        Self::feed(&mut self.chunks, self.feed, &mut self.server, self.now, &b)
                    }
                    Transmit::Data(_) => {}
                    Transmit::Close => {
                        self.client_tcp_closed = true;
                        self.server.handle_eof(self.now);
                    }
                }
            }
            while let Some(t) = self.server.poll_transmit(self.now) {
                moved = true;
                match t {
                    Transmit::Data(b) if !self.server_tcp_closed => {
                        Self::feed(&mut self.chunks, self.feed, &mut self.client, self.now, &b)
                    }
                    Transmit::Data(_) => {}
                    Transmit::Close => {
                        self.server_tcp_closed = true;
                        self.client.handle_eof(self.now);
                    }
                }
            }
            while let Some(ev) = next_event(&mut self.server, self.now, self.by_ref) {
                moved = true;
                if let Event::Upgrade(req) = &ev {
                    let accept = Accept {
                        protocol: req.protocols.first().cloned(),
                        ..Accept::default()
                    };
                    self.server.accept(self.now, accept).unwrap();
                }
                self.server_events.push(ev);
            }
            while let Some(ev) = next_event(&mut self.client, self.now, self.by_ref) {
                moved = true;
                self.client_events.push(ev);
            }
            if !moved {
                return;
            }
        }
        panic!("pair did not settle");
    }

    fn open(config: Config) -> Pair {
        let mut p = Pair::new(config);
        p.drive();
        assert_eq!(p.client.state(), State::Open);
        assert_eq!(p.server.state(), State::Open);
        p.client_events.clear();
        p.server_events.clear();
        p
    }
}

/// The next event, through `poll_event` or (`by_ref`) through
/// `poll_event_ref` with a lent message copied.
fn next_event(c: &mut Connection, now: Instant, by_ref: bool) -> Option<Event> {
    if !by_ref {
        return c.poll_event(now);
    }
    match c.poll_event_ref(now)? {
        EventRef::Message(m) => Some(Event::Message(m.into())),
        EventRef::Other(ev) => {
            assert!(!matches!(ev, Event::Message(_)), "a message not lent");
            Some(ev)
        }
    }
}

/// A driver reading `data` through `input_buffer` (`want` bytes a read, or
/// less when the connection offers less) and `commit_input`.
fn feed_ingest(to: &mut Connection, now: Instant, data: &[u8], want: usize) {
    use bytes::BufMut;
    let mut rest = data;
    while !rest.is_empty() {
        let mut room = to.input_buffer(want);
        let n = room.remaining_mut().min(rest.len());
        assert!(n > 0, "input_buffer offered no room");
        room.put_slice(&rest[..n]);
        to.commit_input(now);
        rest = &rest[n..];
    }
}

/// A driver reading `data` through `read_from` and `commit_input`, as from
/// a socket that has exactly `data` to give.
fn feed_read_from(to: &mut Connection, now: Instant, data: &[u8]) {
    let mut socket = data;
    while !socket.is_empty() {
        let n = to.read_from(&mut socket).unwrap();
        assert!(n > 0, "read_from offered no room");
        to.commit_input(now);
    }
}

fn messages(events: &[Event]) -> Vec<Message> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn closed(events: &[Event]) -> Vec<Closed> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Closed(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_transcript_and_subprotocol() {
    let req = ClientRequest::new("localhost", "/chat")
        .protocol("v2")
        .protocol("v1");
    let mut p = Pair::with_request(Config::default(), req);
    assert_eq!(p.client.state(), State::Connecting);
    p.drive();
    assert!(matches!(&p.server_events[0], Event::Upgrade(r) if r.head.path() == "/chat"));
    assert_eq!(
        p.server_events[1],
        Event::Open {
            protocol: Some("v2".into())
        }
    );
    assert_eq!(
        p.client_events,
        vec![Event::Open {
            protocol: Some("v2".into())
        }]
    );
}

#[test]
fn messages_both_ways() {
    let mut p = Pair::open(Config::default());
    let big = Bytes::from(
        (0..100_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    p.client.send(Message::text("héllo")).unwrap();
    p.client.send(Message::binary(big.clone())).unwrap();
    p.server.send(Message::text("")).unwrap();
    p.server.send(Message::binary(big.clone())).unwrap();
    p.drive();
    assert_eq!(
        messages(&p.server_events),
        vec![Message::text("héllo"), Message::Binary(big.clone())]
    );
    assert_eq!(
        messages(&p.client_events),
        vec![Message::text(""), Message::Binary(big)]
    );
}

#[test]
fn fragmented_sends_are_reassembled_with_control_frames_between() {
    let mut p = Pair::open(Config::default());
    // A character split across fragments is fine; only the whole must be UTF-8.
    let text = "añb".as_bytes();
    p.client
        .send_fragment(DataKind::Text, Bytes::copy_from_slice(&text[..2]), false)
        .unwrap();
    p.client.ping(Bytes::from_static(b"mid")).unwrap();
    assert_eq!(
        p.client.send(Message::text("x")),
        Err(UsageError::FragmentInProgress)
    );
    p.client
        .send_fragment(DataKind::Text, Bytes::copy_from_slice(&text[2..]), true)
        .unwrap();
    p.drive();
    assert_eq!(messages(&p.server_events), vec![Message::text("añb")]);
    assert!(
        p.server_events
            .contains(&Event::Ping(Bytes::from_static(b"mid")))
    );
    assert!(
        p.client_events
            .contains(&Event::Pong(Bytes::from_static(b"mid")))
    );
}

#[test]
fn automatic_fragmentation() {
    let config = Config::default().send_fragment_size(Some(10));
    let mut p = Pair::open(config);
    let payload = Bytes::from((0..=255u8).collect::<Vec<_>>());
    p.server.send(Message::Binary(payload.clone())).unwrap();
    let wire: usize = std::iter::from_fn(|| p.server.poll_transmit(p.now))
        .map(|t| match t {
            Transmit::Data(b) => {
                p.client.handle_input(p.now, &b);
                b.len()
            }
            Transmit::Close => 0,
        })
        .sum();
    assert_eq!(wire, 256 + 26 * 2, "26 frames of two-byte headers");
    p.drive();
    assert_eq!(messages(&p.client_events), vec![Message::Binary(payload)]);
}

#[test]
fn close_initiated_by_client() {
    let mut p = Pair::open(Config::default());
    p.client.close(p.now, CloseCode(4000), "bye").unwrap();
    assert_eq!(
        p.client.send(Message::text("late")),
        Err(UsageError::Closing)
    );
    p.drive();
    let s = closed(&p.server_events);
    assert_eq!(
        (s[0].code, s[0].reason.as_str(), s[0].by_peer),
        (CloseCode(4000), "bye", true)
    );
    let c = closed(&p.client_events);
    assert_eq!(
        (c[0].code, c[0].by_peer, c[0].error.clone()),
        (CloseCode(4000), false, None)
    );
    // The server ended TCP first; the client followed on EOF.
    assert!(p.server_tcp_closed && p.client_tcp_closed);
    assert_eq!(p.server.state(), State::Closed);
}

#[test]
fn close_initiated_by_server_and_no_status() {
    let mut p = Pair::open(Config::default());
    p.server.close(p.now, CloseCode::GOING_AWAY, "").unwrap();
    p.drive();
    assert_eq!(closed(&p.client_events)[0].code, CloseCode::GOING_AWAY);
    assert_eq!(closed(&p.server_events)[0].code, CloseCode::GOING_AWAY);
    assert!(p.client_tcp_closed && p.server_tcp_closed);

    // An empty close frame is reported as 1005 and answered empty.
    let mut p = Pair::open(Config::default());
    p.client.send_close(None);
    p.drive();
    assert_eq!(closed(&p.server_events)[0].code, CloseCode::NO_STATUS);
}

#[test]
fn close_timeout_drops_a_silent_peer() {
    let config = Config::default().close_timeout(Duration::from_secs(3));
    let mut p = Pair::open(config);
    p.server.close(p.now, CloseCode::NORMAL, "").unwrap();
    // The client's reply never arrives.
    while p.server.poll_transmit(p.now).is_some() {}
    assert_eq!(
        p.server.poll_timeout(),
        Some(p.now + Duration::from_secs(3))
    );
    p.server.handle_timeout(p.now + Duration::from_secs(2));
    assert_eq!(p.server.poll_event(p.now), None);
    p.server.handle_timeout(p.now + Duration::from_secs(3));
    let Some(Event::Closed(c)) = p.server.poll_event(p.now) else {
        panic!()
    };
    assert_eq!(
        (c.code, c.error),
        (CloseCode::ABNORMAL, Some(Error::CloseTimeout))
    );
    assert_eq!(p.server.poll_transmit(p.now), Some(Transmit::Close));
}

#[test]
fn client_waits_for_server_eof_but_not_forever() {
    let mut p = Pair::open(Config::default());
    p.server.close(p.now, CloseCode::NORMAL, "").unwrap();
    // Deliver the server's close frame but not its TCP close.
    while let Some(Transmit::Data(b)) = p.server.poll_transmit(p.now) {
        p.client.handle_input(p.now, &b);
    }
    assert!(matches!(p.client.poll_event(p.now), Some(Event::Closed(_))));
    assert!(matches!(
        p.client.poll_transmit(p.now),
        Some(Transmit::Data(_))
    ));
    assert_eq!(p.client.poll_transmit(p.now), None);
    assert_eq!(p.client.state(), State::Closing);
    p.client.handle_timeout(p.now + Duration::from_secs(5));
    assert_eq!(p.client.poll_transmit(p.now), Some(Transmit::Close));
}

#[test]
fn eof_without_close_is_abnormal() {
    let mut p = Pair::open(Config::default());
    p.server.handle_eof(p.now);
    let Some(Event::Closed(c)) = p.server.poll_event(p.now) else {
        panic!()
    };
    assert_eq!((c.code, c.by_peer), (CloseCode::ABNORMAL, true));
    assert_eq!(p.server.poll_transmit(p.now), Some(Transmit::Close));
    // Nothing happens after the end.
    p.server.handle_input(p.now, b"\x81\x80");
    p.server.handle_eof(p.now);
    assert_eq!(
        (p.server.poll_event(p.now), p.server.poll_transmit(p.now)),
        (None, None)
    );
}

#[test]
fn same_events_however_the_input_is_split() {
    fn run(seed: Option<u64>) -> (Vec<Event>, Vec<Event>) {
        run_with(seed, Feed::HandleInput, false)
    }
    fn run_with(seed: Option<u64>, feed: Feed, by_ref: bool) -> (Vec<Event>, Vec<Event>) {
        let config = Config::default().send_fragment_size(Some(5));
        let mut p = Pair::new(config).feed_by(feed);
        if let Some(s) = seed {
            p = p.chunked(s);
        }
        if by_ref {
            p = p.by_ref();
        }
        p.drive();
        let mut rng = SeededEntropy::new(99);
        for i in 0..50 {
            let len = rng.next_u32() as usize % 300;
            let mut data = vec![0u8; len];
            rng.fill(&mut data);
            if i % 3 == 0 {
                let text: String = data.iter().map(|b| char::from(b'a' + b % 26)).collect();
                p.client.send(Message::text(text.clone() + "é")).unwrap();
                p.server.send(Message::text(text)).unwrap();
            } else {
                p.client.send(Message::binary(data.clone())).unwrap();
                p.server
                    .ping(Bytes::from(data[..len.min(125)].to_vec()))
                    .unwrap();
            }
            p.drive();
        }
        p.client.close(p.now, CloseCode::NORMAL, "done").unwrap();
        p.drive();
        (p.client_events, p.server_events)
    }
    let whole = run(None);
    assert_eq!(closed(&whole.1).len(), 1);
    assert!(messages(&whole.1).len() == 50);
    for seed in 0..20 {
        assert_eq!(run(Some(seed)), whole, "seed {seed}");
    }
    // The same through the zero-copy ingest APIs, handshake included.
    for feed in [Feed::Ingest, Feed::ReadFrom] {
        assert_eq!(run_with(None, feed, false), whole, "{feed:?}");
        for seed in 0..5 {
            assert_eq!(
                run_with(Some(seed), feed, false),
                whole,
                "{feed:?}, seed {seed}"
            );
        }
    }
    // And with messages lent by `poll_event_ref`.
    assert_eq!(run_with(None, Feed::HandleInput, true), whole);
    for seed in 0..5 {
        assert_eq!(
            run_with(Some(seed), Feed::HandleInput, true),
            whole,
            "by ref, seed {seed}"
        );
        assert_eq!(
            run_with(Some(seed), Feed::Ingest, true),
            whole,
            "both, seed {seed}"
        );
    }
}

#[test]
fn bytes_after_the_head_in_the_same_read_are_kept() {
    let mut client = Connection::client(
        Config::default(),
        ClientRequest::new("h", "/"),
        Box::new(SeededEntropy::new(3)),
    );
    client.send(Message::text("x")).unwrap_err();
    let Some(Transmit::Data(req)) = client.poll_transmit(Instant::now()) else {
        panic!()
    };
    // A masked "hi" frame right after the head, in one read.
    let mut input = BytesMut::from(&req[..]);
    input.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    let mut server = Connection::server(Config::default());
    server.handle_input(Instant::now(), &input);
    assert!(matches!(
        server.poll_event(Instant::now()),
        Some(Event::Upgrade(_))
    ));
    server.accept(Instant::now(), Accept::new()).unwrap();
    assert!(matches!(
        server.poll_event(Instant::now()),
        Some(Event::Open { .. })
    ));
    assert_eq!(
        server.poll_event(Instant::now()),
        Some(Event::Message(Message::text("hi")))
    );
}

#[test]
fn server_response_and_first_frame_in_one_read() {
    let mut p = Pair::new(Config::default());
    let Some(Transmit::Data(req)) = p.client.poll_transmit(p.now) else {
        panic!()
    };
    p.server.handle_input(p.now, &req);
    p.server.poll_event(p.now);
    p.server.accept(p.now, Accept::new()).unwrap();
    p.server.send(Message::text("welcome")).unwrap();
    let mut all = BytesMut::new();
    while let Some(Transmit::Data(b)) = p.server.poll_transmit(p.now) {
        all.extend_from_slice(&b);
    }
    p.client.handle_input(p.now, &all);
    assert!(matches!(
        p.client.poll_event(p.now),
        Some(Event::Open { .. })
    ));
    assert_eq!(
        p.client.poll_event(p.now),
        Some(Event::Message(Message::text("welcome")))
    );
}

#[test]
fn a_huge_declared_length_reserves_nothing() {
    let mut s = Connection::server_upgraded(
        Config::default()
            .max_frame_size(usize::MAX >> 1)
            .max_message_size(usize::MAX >> 1),
    );
    // Declares 2^62 bytes, sends four.
    s.handle_input(
        Instant::now(),
        &[
            0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9, 9,
        ],
    );
    assert_eq!(s.poll_event(Instant::now()), None);
    let debug = format!("{s:?}");
    assert!(debug.contains("buffered_input: 4"), "{debug}");
    // What is held is proportional to what arrived (one first chunk), not
    // to what the header promised.
    let reserved: usize = debug
        .split("reserved_input: ")
        .nth(1)
        .unwrap()
        .split(&[',', ' ', '}'][..])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reserved <= 32 * 1024, "{debug}");
}

#[test]
fn send_queue_limit_and_backpressure() {
    let mut p = Pair::open(Config::default().max_send_queue(1000));
    p.server.send(Message::binary(vec![0u8; 600])).unwrap();
    assert_eq!(p.server.buffered_amount(), 604);
    assert_eq!(
        p.server.send(Message::binary(vec![0u8; 600])),
        Err(UsageError::SendQueueFull)
    );
    p.drive();
    assert_eq!(p.server.buffered_amount(), 0);
    p.server.send(Message::binary(vec![0u8; 600])).unwrap();
    // A peer that pings without reading gets no more pongs once full.
    let mut ping = BytesMut::new();
    for _ in 0..100 {
        ping.extend_from_slice(&[0x89, 0x80 | 100, 0, 0, 0, 0]);
        ping.extend_from_slice(&[0u8; 100]);
    }
    p.server.handle_input(p.now, &ping);
    assert!(p.server.buffered_amount() <= 1000);
}

#[test]
fn encoded_frames_are_shared_not_copied() {
    let frame = EncodedFrame::new(&Message::binary(vec![1u8; 4096]));
    let mut p = Pair::open(Config::default());
    p.server.send_encoded(&frame).unwrap();
    let Some(Transmit::Data(b)) = p.server.poll_transmit(p.now) else {
        panic!()
    };
    assert_eq!(b.as_ptr(), frame.as_bytes().as_ptr());
    assert_eq!(p.client.send_encoded(&frame), Err(UsageError::NotServer));
}

#[test]
fn output_buffer_reuse_never_overwrites_what_the_driver_holds() {
    // The output buffer is reused once the driver drops what it was
    // given; bytes still held, interleaved with bytes dropped, must stay
    // as they were sent.
    let mut p = Pair::open(Config::default());
    let mut held = Vec::new();
    for i in 0..200usize {
        let len = 1 + i * 7 % 300;
        p.server.send(Message::binary(vec![i as u8; len])).unwrap();
        let Some(Transmit::Data(b)) = p.server.poll_transmit(p.now) else {
            panic!()
        };
        if i % 3 == 0 {
            held.push((i, len, b));
        }
    }
    for (i, len, b) in &held {
        assert_eq!(b.len(), len + if *len < 126 { 2 } else { 4 });
        assert!(
            b[b.len() - len..].iter().all(|&x| x == *i as u8),
            "message {i}"
        );
    }
}

#[test]
fn small_encoded_frames_leave_together_in_order_with_large_ones() {
    let small = |s: &'static str| EncodedFrame::new(&Message::text(s));
    let large = EncodedFrame::new(&Message::binary(vec![7u8; 4096]));
    let mut p = Pair::open(Config::default());
    p.server.send_encoded(&small("a")).unwrap();
    p.server.send_encoded(&small("b")).unwrap();
    p.server.send_encoded(&large).unwrap();
    p.server
        .send_encoded_batch([small("c"), small("d")].iter())
        .unwrap();
    let mut pieces = Vec::new();
    while let Some(Transmit::Data(b)) = p.server.poll_transmit(p.now) {
        pieces.push(b);
    }
    // The two small frames before the large one share one piece, the
    // large one is not copied, the two after it share the last piece.
    assert_eq!(pieces.len(), 3, "{pieces:?}");
    assert_eq!(&pieces[0][..], b"\x81\x01a\x81\x01b");
    assert_eq!(pieces[1].as_ptr(), large.as_bytes().as_ptr());
    assert_eq!(&pieces[2][..], b"\x81\x01c\x81\x01d");
    for b in &pieces {
        p.client.handle_input(p.now, b);
    }
    let mut got = Vec::new();
    while let Some(ev) = p.client.poll_event(p.now) {
        got.push(ev);
    }
    assert_eq!(
        messages(&got),
        [
            Message::text("a"),
            Message::text("b"),
            Message::binary(vec![7u8; 4096]),
            Message::text("c"),
            Message::text("d"),
        ]
    );
}

#[test]
fn usage_errors() {
    let mut p = Pair::new(Config::default());
    assert_eq!(p.client.send(Message::text("x")), Err(UsageError::NotOpen));
    assert_eq!(
        p.server.accept(p.now, Accept::new()),
        Err(UsageError::NoPendingRequest)
    );
    p.drive();
    assert_eq!(
        p.client.ping(Bytes::from(vec![0; 126])),
        Err(UsageError::ControlTooLong)
    );
    assert_eq!(
        p.client.close(p.now, CloseCode::ABNORMAL, ""),
        Err(UsageError::InvalidCloseCode(1006))
    );
}

#[test]
fn server_rejects_with_application_status() {
    let mut p = Pair::new(Config::default());
    let Some(Transmit::Data(req)) = p.client.poll_transmit(p.now) else {
        panic!()
    };
    p.server.handle_input(p.now, &req);
    let Some(Event::Upgrade(r)) = p.server.poll_event(p.now) else {
        panic!()
    };
    assert_eq!(r.origin(), None);
    assert_eq!(
        p.server.accept(p.now, Accept::new().protocol("nope")),
        Err(UsageError::ProtocolNotOffered)
    );
    p.server.reject(403).unwrap();
    let Some(Transmit::Data(res)) = p.server.poll_transmit(p.now) else {
        panic!()
    };
    assert!(res.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
    assert_eq!(p.server.poll_transmit(p.now), Some(Transmit::Close));
    p.client.handle_input(p.now, &res);
    let Some(Event::Closed(c)) = p.client.poll_event(p.now) else {
        panic!()
    };
    assert_eq!(
        c.error,
        Some(Error::Handshake(HandshakeError::UnexpectedStatus(403)))
    );
}

#[test]
fn read_buffer_is_given_back_when_idle() {
    let mut p = Pair::open(Config::default());
    p.client.send(Message::binary(vec![0u8; 1 << 20])).unwrap();
    p.drive();
    assert_eq!(p.server.rbuf.capacity(), 0);
}

#[test]
fn no_event_follows_closed() {
    // Found by fuzzing: an invalid text frame fails the connection, and a
    // ping right behind it used to surface after `Closed`.
    let mut c = Connection::client_upgraded(Config::default(), Box::new(SeededEntropy::new(1)));
    c.handle_input(
        Instant::now(),
        &[0x81, 0x01, 0xff, 0x89, 0x01, b'p', 0x8a, 0x00],
    );
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event(Instant::now())).collect();
    assert!(
        matches!(events.as_slice(), [Event::Closed(c)] if c.code == CloseCode::INVALID_PAYLOAD),
        "{events:?}"
    );
}

#[test]
fn large_frames_are_the_same_however_they_arrive() {
    // Frames over the streaming threshold, text with multi-byte characters
    // cut at every kind of boundary, binary, fragmented, both directions.
    fn run(chunk: Option<u64>) -> (Vec<Event>, Vec<Event>) {
        run_with(chunk, Feed::HandleInput, false)
    }
    fn run_with(chunk: Option<u64>, feed: Feed, by_ref: bool) -> (Vec<Event>, Vec<Event>) {
        let mut p = Pair::new(Config::default().send_fragment_size(Some(50_000))).feed_by(feed);
        if let Some(s) = chunk {
            p = p.chunked(s);
        }
        if by_ref {
            p = p.by_ref();
        }
        p.drive();
        let text: String = "añ€😀b".repeat(8_000);
        let bin: Vec<u8> = (0..150_000u32).map(|i| (i * 31) as u8).collect();
        p.client.send(Message::text(text.clone())).unwrap();
        p.server.send(Message::binary(bin.clone())).unwrap();
        p.drive();
        p.client.send(Message::binary(bin)).unwrap();
        p.server.send(Message::text(text)).unwrap();
        p.drive();
        (p.client_events, p.server_events)
    }
    let whole = run(None);
    assert_eq!(messages(&whole.0).len(), 2);
    assert_eq!(messages(&whole.1).len(), 2);
    for seed in 0..3 {
        assert_eq!(run(Some(seed)), whole, "seed {seed}");
    }
    assert_eq!(run_with(None, Feed::Ingest, false), whole);
    assert_eq!(run_with(Some(7), Feed::Ingest, false), whole);
    assert_eq!(run_with(None, Feed::Ingest, true), whole);
    assert_eq!(run_with(Some(7), Feed::HandleInput, true), whole);
    assert_eq!(run_with(None, Feed::ReadFrom, false), whole);
    assert_eq!(run_with(Some(7), Feed::ReadFrom, true), whole);
    // Invalid UTF-8 deep inside a large text frame fails the connection.
    let mut p = Pair::open(Config::default());
    let mut bad = "a".repeat(40_000).into_bytes();
    bad[30_000] = 0xff;
    p.client
        .send_fragment(DataKind::Text, Bytes::from(bad), true)
        .unwrap();
    p.drive();
    assert_eq!(closed(&p.server_events)[0].code, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn borrowed_slices_are_sent_as_one_message_either_way() {
    let mut p = Pair::open(Config::default());
    let long = "é".repeat(40_000);
    p.client.send_slices(DataKind::Text, b"4", b"hi").unwrap();
    p.client
        .send_slices(DataKind::Binary, &[], &[1, 2, 3])
        .unwrap();
    p.server
        .send_slices(DataKind::Text, b"4", long.as_bytes())
        .unwrap();
    p.drive();
    assert_eq!(
        messages(&p.server_events),
        vec![Message::text("4hi"), Message::binary(vec![1u8, 2, 3])]
    );
    assert_eq!(
        messages(&p.client_events),
        vec![Message::text(format!("4{long}"))]
    );
    p.client.send(Message::text("x")).unwrap();
    p.client
        .send_fragment(DataKind::Text, Bytes::from_static(b"a"), false)
        .unwrap();
    assert_eq!(
        p.client.send_slices(DataKind::Text, b"", b"b"),
        Err(UsageError::FragmentInProgress)
    );
}
/// A final masked frame, as a client sends it.
fn masked_frame(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let h = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: OpCode::from_u8(opcode).unwrap(),
        mask: Some(key),
        len: payload.len() as u64,
    };
    let mut out = BytesMut::new();
    frame::encode_header(&h, &mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    mask::apply_mask(&mut out[start..], key, 0);
    out.to_vec()
}

#[test]
fn whole_frames_polled_one_by_one_keep_every_rule() {
    // Several whole frames in one read: after the first, `poll_event`
    // decodes each straight to the caller. Bad text, a reserved bit and an
    // oversized frame must still fail the connection, and nothing follows
    // `Closed`.
    let key = [1, 2, 3, 4];
    let ok = masked_frame(1, "héllo".as_bytes(), key);
    let cases: [(Vec<u8>, CloseCode); 3] = [
        (masked_frame(1, b"a\xffb", key), CloseCode::INVALID_PAYLOAD),
        (masked_frame(1, b"a\xc3", key), CloseCode::INVALID_PAYLOAD),
        (
            {
                let mut f = masked_frame(2, b"xyz", key);
                f[0] |= 0x40; // RSV1 without an extension
                f
            },
            CloseCode::PROTOCOL,
        ),
    ];
    for (bad, code) in cases {
        let mut s = Connection::server_upgraded(Config::default());
        let input = [ok.clone(), ok.clone(), bad, ok.clone()].concat();
        s.handle_input(Instant::now(), &input);
        let events: Vec<Event> = std::iter::from_fn(|| s.poll_event(Instant::now())).collect();
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0], Event::Message(Message::text("héllo")));
        assert_eq!(events[1], Event::Message(Message::text("héllo")));
        assert!(
            matches!(&events[2], Event::Closed(c) if c.code == code),
            "{events:?}"
        );
    }
    let mut s = Connection::server_upgraded(Config::default().max_message_size(6));
    let input = [ok.clone(), ok.clone(), masked_frame(2, b"1234567", key)].concat();
    s.handle_input(Instant::now(), &input);
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event(Instant::now())).collect();
    assert!(
        matches!(&events[..], [Event::Message(_), Event::Message(_), Event::Closed(c)] if c.code == CloseCode::TOO_BIG),
        "{events:?}"
    );
    // A client refuses masked frames from the server.
    let mut c = Connection::client_upgraded(Config::default(), Box::new(SeededEntropy::new(1)));
    c.handle_input(
        Instant::now(),
        &[[0x81, 0x01, b'a'].as_slice(), &ok].concat(),
    );
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event(Instant::now())).collect();
    assert_eq!(events[0], Event::Message(Message::text("a")));
    assert!(
        matches!(&events[1], Event::Closed(c) if c.code == CloseCode::PROTOCOL),
        "{events:?}"
    );
}

/// A client's stream of frames of every kind: small and large text (with
/// multi-byte characters), binary, a fragmented message, a ping, a close.
fn client_stream(big: usize) -> Vec<u8> {
    let mut c = Connection::client_upgraded(
        Config::default().send_fragment_size(Some(big.max(64) / 2 + 3)),
        Box::new(SeededEntropy::new(5)),
    );
    c.send(Message::text("héllo")).unwrap();
    c.send(Message::binary(vec![7u8; 3])).unwrap();
    c.ping(Bytes::from_static(b"p")).unwrap();
    c.send(Message::text("añ€😀".repeat(big / 10 + 1))).unwrap();
    c.send(Message::binary(vec![0u8; 0])).unwrap();
    let bin: Vec<u8> = (0..big as u32).map(|i| (i * 7) as u8).collect();
    c.send_fragment(DataKind::Binary, Bytes::from(bin), true)
        .unwrap();
    c.close(Instant::now(), CloseCode::NORMAL, "bye").unwrap();
    let mut wire = Vec::new();
    while let Some(Transmit::Data(b)) = c.poll_transmit(Instant::now()) {
        wire.extend_from_slice(&b);
    }
    wire
}

fn drain(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event(Instant::now())).collect()
}

#[test]
fn ingest_split_at_every_byte_gives_the_events_of_handle_input() {
    let now = Instant::now();
    let wire = client_stream(40);
    let mut s = Connection::server_upgraded(Config::default());
    s.handle_input(now, &wire);
    let want = drain(&mut s);
    assert_eq!(messages(&want).len(), 5, "{want:?}");
    assert_eq!(closed(&want).len(), 1, "{want:?}");
    for cut in 0..=wire.len() {
        for read in [1, 3, 16 * 1024] {
            let mut s = Connection::server_upgraded(Config::default());
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                feed_ingest(&mut s, now, part, read);
                got.extend(drain(&mut s));
            }
            assert_eq!(got, want, "cut at {cut}, reads of {read}");
            // Lent messages: the same, and nothing lent is overwritten by
            // the next read (it is consumed first).
            let mut s = Connection::server_upgraded(Config::default());
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                feed_ingest(&mut s, now, part, read);
                got.extend(std::iter::from_fn(|| {
                    next_event(&mut s, Instant::now(), true)
                }));
            }
            assert_eq!(got, want, "by ref, cut at {cut}, reads of {read}");
        }
    }
}

#[test]
fn ingest_large_frames_in_any_pieces() {
    let now = Instant::now();
    let wire = client_stream(100_000);
    let mut s = Connection::server_upgraded(Config::default());
    s.handle_input(now, &wire);
    let want = drain(&mut s);
    assert_eq!(messages(&want).len(), 5);
    let mut rng = SeededEntropy::new(3);
    for read in [1000, 4096, 16 * 1024, 64 * 1024, 1 << 20] {
        let mut s = Connection::server_upgraded(Config::default());
        let mut got = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            // The socket gives what it has: often less than the room.
            let n = (rng.next_u32() as usize % (2 * read) + 1).min(rest.len());
            feed_ingest(&mut s, now, &rest[..n], read);
            got.extend(drain(&mut s));
            rest = &rest[n..];
        }
        assert_eq!(got, want, "reads of {read}");
    }
    // Mixed with handle_input and handle_input_bytes.
    let mut s = Connection::server_upgraded(Config::default());
    let mut got = Vec::new();
    for (i, part) in wire.chunks(5000).enumerate() {
        match i % 3 {
            0 => feed_ingest(&mut s, now, part, 3000),
            1 => s.handle_input(now, part),
            _ => s.handle_input_bytes(now, BytesMut::from(part)),
        }
        got.extend(drain(&mut s));
    }
    assert_eq!(got, want);
}

#[test]
fn ingest_reads_end_on_frame_boundaries_and_grow_with_what_arrives() {
    let now = Instant::now();
    let mut s = Connection::server_upgraded(
        Config::default()
            .max_frame_size(usize::MAX >> 1)
            .max_message_size(usize::MAX >> 1),
    );
    // Declares 2^62 bytes, sends four: the room offered is the read size
    // asked for, and what is held stays about that.
    let head = [
        0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9, 9,
    ];
    feed_ingest(&mut s, now, &head, 4096);
    assert_eq!(s.poll_event(now), None);
    assert_eq!(bytes::BufMut::remaining_mut(&s.input_buffer(4096)), 4096);
    assert!(s.rbuf.capacity() + s.ibuf.capacity() <= 3 * 4096, "{s:?}");
    // 64 KiB more arrive: room grows to at most four times that.
    feed_ingest(&mut s, now, &vec![0u8; 64 * 1024], 64 * 1024);
    let _ = s.input_buffer(4096);
    let held = s.rbuf.capacity() + s.ibuf.capacity();
    assert!(held <= 5 * (64 * 1024 + 4096 + 18), "{held}");

    // A 64 KiB frame read 16 KiB at a time: the last read asks for exactly
    // what the frame lacks, so the next frame starts a read of its own.
    let frame = masked_frame(2, &vec![1u8; 64 * 1024], [1, 2, 3, 4]);
    let mut s = Connection::server_upgraded(Config::default());
    let mut rest = &frame[..];
    let mut rooms = Vec::new();
    while !rest.is_empty() {
        let mut room = s.input_buffer(16 * 1024);
        let n = bytes::BufMut::remaining_mut(&room).min(rest.len());
        rooms.push(n);
        bytes::BufMut::put_slice(&mut room, &rest[..n]);
        s.commit_input(now);
        rest = &rest[n..];
        assert_eq!(s.poll_event(now).is_some(), rest.is_empty());
    }
    assert_eq!(rooms.iter().sum::<usize>(), frame.len());
    assert_eq!(rooms.last(), Some(&(frame.len() - 4 * 16 * 1024)));
    assert_eq!(
        bytes::BufMut::remaining_mut(&s.input_buffer(16 * 1024)),
        16 * 1024
    );
}

#[test]
fn ingest_after_a_large_frame_reads_the_next_one_into_its_own_allocation() {
    let now = Instant::now();
    let big = masked_frame(2, &vec![5u8; 256 * 1024], [1, 2, 3, 4]);
    let small = masked_frame(1, b"hi", [4, 3, 2, 1]);
    let mut s = Connection::server_upgraded(Config::default());
    feed_ingest(&mut s, now, &big, 64 * 1024);
    assert!(matches!(s.poll_event(now), Some(Event::Message(m)) if m.len() == 256 * 1024));
    // The next read starts in an allocation the size of the frame just
    // completed, so a second large frame is never copied out of a small one.
    let room = s.input_buffer(64 * 1024);
    assert_eq!(bytes::BufMut::remaining_mut(&room), 64 * 1024);
    assert!(room.get_ref().capacity() >= big.len(), "{s:?}");
    let base = s.ibuf.as_ptr();
    feed_ingest(&mut s, now, &big, 64 * 1024);
    match s.poll_event(now) {
        Some(Event::Message(Message::Binary(b))) => {
            assert_eq!(b.len(), 256 * 1024);
            assert!(b.iter().all(|&x| x == 5));
            assert_eq!(b.as_ptr(), base.wrapping_add(big.len() - b.len()));
        }
        other => panic!("{other:?}"),
    }
    // A small frame ends the streak: reads are of the size asked for again.
    feed_ingest(&mut s, now, &small, 64 * 1024);
    assert_eq!(s.poll_event(now), Some(Event::Message(Message::text("hi"))));
    let room = s.input_buffer(4096);
    assert!(room.get_ref().capacity() < 64 * 1024, "{s:?}");
}

#[test]
fn lent_messages_are_consumed_by_whichever_call_comes_next() {
    let now = Instant::now();
    let a = masked_frame(1, b"first", [1, 2, 3, 4]);
    let b = masked_frame(2, b"second", [5, 6, 7, 8]);
    let text = |ev: Option<EventRef<'_>>| match ev {
        Some(EventRef::Message(m)) => Message::from(m),
        other => panic!("{other:?}"),
    };
    // Lent, then more input before the next poll.
    let mut s = Connection::server_upgraded(Config::default());
    s.handle_input(now, &a);
    assert_eq!(text(s.poll_event_ref(now)), Message::text("first"));
    s.handle_input(now, &b);
    assert_eq!(text(s.poll_event_ref(now)), Message::binary(&b"second"[..]));
    assert_eq!(s.poll_event_ref(now), None);
    // Lent, then a read through `input_buffer`, with a byte appended and
    // not yet committed while the next message is lent.
    let mut s = Connection::server_upgraded(Config::default());
    feed_ingest(&mut s, now, &a, 4096);
    assert_eq!(text(s.poll_event_ref(now)), Message::text("first"));
    bytes::BufMut::put_slice(&mut s.input_buffer(4096), &b[..1]);
    assert_eq!(s.poll_event(now), None);
    bytes::BufMut::put_slice(&mut s.input_buffer(4096), &b[1..]);
    s.commit_input(now);
    assert_eq!(text(s.poll_event_ref(now)), Message::binary(&b"second"[..]));
    assert_eq!(s.poll_event(now), None);
    // Lent, then the end of the stream; then the other poller.
    let mut s = Connection::server_upgraded(Config::default());
    s.handle_input(now, &[&a[..], &b[..]].concat());
    assert_eq!(text(s.poll_event_ref(now)), Message::text("first"));
    s.handle_eof(now);
    assert_eq!(
        s.poll_event(now),
        Some(Event::Message(Message::binary(&b"second"[..])))
    );
    assert!(matches!(s.poll_event(now), Some(Event::Closed(_))));
    assert_eq!(s.poll_event_ref(now), None);
}

#[test]
fn direct_sends_reach_the_peer_in_order_and_are_refused_when_they_could_overtake() {
    let mut p = Pair::open(Config::default().send_fragment_size(Some(100)));
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    // Behind queued bytes: refused, nothing changes.
    p.server.send(Message::text("first")).unwrap();
    assert_eq!(
        p.server.send_direct(DataKind::Binary, big.len()),
        Err(UsageError::TransmitPending)
    );
    p.drive();
    // Nothing queued: the caller writes the header and its own payload.
    for (kind, payload) in [
        (DataKind::Binary, &big[..]),
        (DataKind::Text, "é".as_bytes()),
    ] {
        let head = p.server.send_direct(kind, payload.len()).unwrap();
        let wire = [&head[..], payload].concat();
        Pair::feed(&mut p.chunks, p.feed, &mut p.client, p.now, &wire);
    }
    p.server.send(Message::text("last")).unwrap();
    p.drive();
    assert_eq!(
        messages(&p.client_events),
        vec![
            Message::text("first"),
            Message::binary(big.clone()),
            Message::text("é"),
            Message::text("last"),
        ]
    );
    // A client must mask; a fragmented message in progress; after close.
    assert_eq!(
        p.client.send_direct(DataKind::Text, 1),
        Err(UsageError::NotServer)
    );
    p.server
        .send_fragment(DataKind::Text, Bytes::from_static(b"a"), false)
        .unwrap();
    p.drive();
    assert_eq!(
        p.server.send_direct(DataKind::Text, 1),
        Err(UsageError::FragmentInProgress)
    );
    p.server
        .send_fragment(DataKind::Text, Bytes::from_static(b"b"), true)
        .unwrap();
    p.server.close(p.now, CloseCode::NORMAL, "").unwrap();
    assert_eq!(
        p.server.send_direct(DataKind::Text, 1),
        Err(UsageError::Closing)
    );
}

#[test]
fn ingest_after_close_and_uncommitted_bytes() {
    let now = Instant::now();
    let mut s = Connection::server_upgraded(Config::default());
    // Appended twice before one commit: both count, in order.
    let wire = masked_frame(1, b"abc", [9, 9, 9, 9]);
    bytes::BufMut::put_slice(&mut s.input_buffer(2), &wire[..2]);
    bytes::BufMut::put_slice(&mut s.input_buffer(100), &wire[2..]);
    s.commit_input(now);
    assert_eq!(
        s.poll_event(now),
        Some(Event::Message(Message::text("abc")))
    );
    // A bad frame ends the connection; later input is ignored.
    feed_ingest(&mut s, now, &[0x83, 0x80, 0, 0, 0, 0], 64);
    assert!(matches!(s.poll_event(now), Some(Event::Closed(_))));
    feed_ingest(&mut s, now, &wire, 64);
    assert_eq!(s.poll_event(now), None);
    assert_eq!(s.rbuf.len() + s.ibuf.len(), 0);
    s.commit_input(now);
}

/// Both pollers give the same bytes in the same order, however they are
/// mixed, for a server and a (lazily masking) client; the send-queue count
/// returns to zero.
#[test]
fn vectored_and_plain_pollers_give_the_same_bytes() {
    fn load(ws: &mut Connection) {
        let big = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<u8>>());
        ws.send(Message::text("small")).unwrap();
        ws.send(Message::Binary(big.clone())).unwrap();
        ws.send(Message::Binary(big.slice(..2000))).unwrap();
        // Unshared: a client masks this one in place.
        ws.send(Message::binary(big.slice(..3000).to_vec()))
            .unwrap();
        ws.ping(Bytes::from_static(b"p")).unwrap();
        ws.send(Message::Binary(big.slice(..70_000.min(big.len()))))
            .unwrap();
        ws.send_fragment(DataKind::Binary, big.slice(..1500), false)
            .unwrap();
        ws.send_fragment(DataKind::Binary, big.slice(1500..), true)
            .unwrap();
        ws.close(Instant::now(), CloseCode::NORMAL, "bye").unwrap();
    }
    fn drain(ws: &mut Connection, pattern: &[u8]) -> (Vec<u8>, bool) {
        let mut wire = Vec::new();
        let mut i = 0;
        loop {
            let vectored = pattern[i % pattern.len()] == 1;
            i += 1;
            if vectored {
                match ws.poll_transmit_vectored(Instant::now()) {
                    Some(VectoredTransmit::Data { head, body }) => {
                        wire.extend_from_slice(&head);
                        wire.extend_from_slice(&body);
                    }
                    Some(VectoredTransmit::Close) => return (wire, true),
                    None => return (wire, false),
                }
            } else {
                match ws.poll_transmit(Instant::now()) {
                    Some(Transmit::Data(b)) => wire.extend_from_slice(&b),
                    Some(Transmit::Close) => return (wire, true),
                    None => return (wire, false),
                }
            }
        }
    }
    for make in [
        (|| Connection::server_upgraded(Config::default())) as fn() -> Connection,
        || Connection::client_upgraded(Config::default(), Box::new(SeededEntropy::new(3))),
    ] {
        let mut want = None;
        for pattern in [&[0u8][..], &[1], &[0, 1], &[1, 0, 0], &[1, 1, 0]] {
            let mut ws = make();
            // The same bytes from fresh connections (the masking keys are
            // drawn at send time, so transcripts stay byte-stable).
            let mut rounds = Vec::new();
            for _ in 0..2 {
                let mut one = make();
                load(&mut one);
                assert!(one.buffered_amount() > 0);
                let got = drain(&mut one, pattern);
                assert_eq!(one.buffered_amount(), 0);
                rounds.push(got);
            }
            assert_eq!(rounds[0], rounds[1]);
            load(&mut ws);
            let got = drain(&mut ws, pattern);
            // Our close frame is queued last; TCP closes after the peer's.
            assert!(!got.1);
            match &want {
                None => want = Some(got),
                Some(w) => assert_eq!(w, &got, "pattern {pattern:?}"),
            }
        }
        // And the bytes decode to what was sent.
        let (wire, _) = want.unwrap();
        let client = make().role() == Role::Client;
        let mut peer = if client {
            Connection::server_upgraded(Config::default())
        } else {
            Connection::client_upgraded(Config::default(), Box::new(SeededEntropy::new(9)))
        };
        peer.handle_input(Instant::now(), &wire);
        let mut got = Vec::new();
        while let Some(ev) = peer.poll_event(Instant::now()) {
            got.push(ev);
        }
        let msgs = messages(&got);
        let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        assert_eq!(msgs.len(), 6, "{got:?}");
        assert_eq!(msgs[0], Message::text("small"));
        assert_eq!(msgs[1], Message::binary(big.clone()));
        assert_eq!(msgs[2], Message::binary(big[..2000].to_vec()));
        assert_eq!(msgs[3], Message::binary(big[..3000].to_vec()));
        assert_eq!(msgs[4], Message::binary(big.clone()));
        assert_eq!(msgs[5], Message::binary(big));
        assert!(closed(&got).len() == 1);
    }
}

/// A client's large frames are masked when polled, into one buffer that
/// is reused once the driver has dropped the previous transmit.
#[test]
fn lazily_masked_frames_reuse_the_scratch_buffer() {
    let mut ws = Connection::client_upgraded(Config::default(), Box::new(SeededEntropy::new(5)));
    let payload = Bytes::from(vec![0xAB; 64 * 1024]);
    let mut ptrs = Vec::new();
    for _ in 0..4 {
        ws.send(Message::Binary(payload.clone())).unwrap();
        let Some(Transmit::Data(b)) = ws.poll_transmit(Instant::now()) else {
            panic!()
        };
        assert_eq!(b.len(), 64 * 1024 + 14);
        ptrs.push(b.as_ptr());
        drop(b);
    }
    assert!(ptrs.windows(2).all(|w| w[0] == w[1]), "{ptrs:?}");
    // Held by the driver: a fresh buffer, the held bytes intact.
    ws.send(Message::Binary(payload.clone())).unwrap();
    let Some(Transmit::Data(held)) = ws.poll_transmit(Instant::now()) else {
        panic!()
    };
    let copy = held.to_vec();
    ws.send(Message::Binary(payload.clone())).unwrap();
    let Some(Transmit::Data(next)) = ws.poll_transmit(Instant::now()) else {
        panic!()
    };
    assert_ne!(held.as_ptr(), next.as_ptr());
    assert_eq!(held.to_vec(), copy);
}

/// A client masks a large payload that nobody else holds where it lies
/// (the frame leaves without a copy, through either poller); a shared one
/// is masked into a copy and the application's bytes stay as they were.
#[test]
fn unshared_client_payloads_are_masked_in_place() {
    let original: Vec<u8> = (0..40_000u32).map(|i| (i * 7) as u8).collect();
    for vectored in [false, true] {
        let mut ws =
            Connection::client_upgraded(Config::default(), Box::new(SeededEntropy::new(11)));
        let unique = original.clone();
        let at = unique.as_ptr();
        let shared = Bytes::from(original.clone());
        ws.send(Message::binary(unique)).unwrap();
        ws.send(Message::Binary(shared.clone())).unwrap();
        ws.send(Message::Binary(shared.slice(..2000))).unwrap();
        let mut wire = Vec::new();
        let mut bodies = Vec::new();
        loop {
            if vectored {
                match ws.poll_transmit_vectored(Instant::now()) {
                    Some(VectoredTransmit::Data { head, body }) => {
                        wire.extend_from_slice(&head);
                        wire.extend_from_slice(&body);
                        bodies.push(body);
                    }
                    Some(VectoredTransmit::Close) => panic!("closed"),
                    None => break,
                }
            } else {
                match ws.poll_transmit(Instant::now()) {
                    Some(Transmit::Data(b)) => {
                        wire.extend_from_slice(&b);
                        bodies.push(b);
                    }
                    Some(Transmit::Close) => panic!("closed"),
                    None => break,
                }
            }
        }
        assert_eq!(ws.buffered_amount(), 0);
        let in_place = bodies.iter().find(|b| b.as_ptr() == at);
        assert_eq!(
            in_place.map(Bytes::len),
            Some(original.len()),
            "vectored {vectored}"
        );
        assert_ne!(&in_place.unwrap()[..], &original[..], "masked");
        assert!(bodies.iter().all(|b| b.as_ptr() != shared.as_ptr()));
        assert_eq!(&shared[..], &original[..], "shared bytes untouched");
        let mut server = Connection::server_upgraded(Config::default());
        server.handle_input(Instant::now(), &wire);
        let mut got = Vec::new();
        while let Some(ev) = server.poll_event(Instant::now()) {
            got.push(ev);
        }
        assert_eq!(
            messages(&got),
            [
                Message::binary(original.clone()),
                Message::binary(original.clone()),
                Message::binary(original[..2000].to_vec()),
            ],
            "vectored {vectored}"
        );
    }
}

/// Large frames fed through `handle_input` in reads that do not line up
/// with them are copied once, into the buffer their first read went to:
/// it was given room for the whole frame and becomes the payload's.
#[test]
fn large_frames_from_handle_input_are_copied_once() {
    let key = [9, 8, 7, 6];
    let payloads: Vec<Vec<u8>> = (0..4u8)
        .map(|n| (0..64 * 1024).map(|i| (i as u8) ^ n).collect())
        .collect();
    let wire: Vec<u8> = payloads
        .iter()
        .flat_map(|p| masked_frame(2, p, key))
        .collect();
    let mut s = Connection::server_upgraded(Config::default());
    let now = Instant::now();
    let mut got = Vec::new();
    // Each read ends one frame and starts the next: the new frame's
    // payload goes straight to its own buffer, even behind the message
    // the same read completed (a binary payload cannot fail the
    // connection), and is never moved after.
    let mut landed = Vec::new();
    for read in wire.chunks(64 * 1024) {
        s.handle_input(now, read);
        assert!(s.rbuf.is_empty(), "no payload copied into the input buffer");
        if let Some(b) = &s.big {
            if landed.last() != Some(&b.as_ptr()) {
                landed.push(b.as_ptr());
            }
        }
        while let Some(ev) = s.poll_event(now) {
            got.push(ev);
        }
    }
    assert_eq!(landed.len(), 4);
    let msgs = messages(&got);
    assert_eq!(msgs.len(), 4);
    for (m, (p, at)) in msgs.iter().zip(payloads.iter().zip(&landed)) {
        let Message::Binary(b) = m else { panic!() };
        assert_eq!(&b[..], &p[..]);
        assert_eq!(b.as_ptr(), *at, "copied after its first read");
    }

    // A large text frame behind a message not yet polled is not looked at
    // (its bytes could fail the connection before the application had the
    // message): it waits in the input buffer, given room by its header.
    let text: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let big = masked_frame(1, &text, key);
    let mut s = Connection::server_upgraded(Config::default());
    s.handle_input(now, &masked_frame(1, b"hi", key));
    s.handle_input(now, &big[..60 * 1024]);
    assert!(s.big.is_none());
    let (_, hlen) = frame::decode_header(&s.rbuf).unwrap().unwrap();
    let at = s.rbuf[hlen..].as_ptr();
    assert_eq!(s.poll_event(now), Some(Event::Message(Message::text("hi"))));
    assert_eq!(s.poll_event(now), None);
    s.handle_input(now, &big[60 * 1024..]);
    let Some(Event::Message(Message::Text(t))) = s.poll_event(now) else {
        panic!()
    };
    assert_eq!((&t.as_bytes()[..], t.as_bytes().as_ptr()), (&text[..], at));

    // Nor does a bad one close the connection ahead of that message.
    let mut bad = text.clone();
    bad[100] = 0xff;
    let mut s = Connection::server_upgraded(Config::default());
    s.handle_input(now, &masked_frame(1, b"hi", key));
    s.handle_input(now, &masked_frame(1, &bad, key)[..60 * 1024]);
    assert_eq!(
        s.poll_transmit(now),
        None,
        "nothing sent before the message is polled"
    );
    assert_eq!(s.poll_event(now), Some(Event::Message(Message::text("hi"))));
    let Some(Event::Closed(c)) = s.poll_event(now) else {
        panic!()
    };
    assert_eq!(c.code, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn large_frames_from_owned_reads_are_adopted_or_copied_once() {
    let key = [3, 1, 4, 1];
    // Within four times the first read: room for it all comes at once.
    let payload: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let wire = masked_frame(2, &payload, key);
    let now = Instant::now();

    // Reads of 64 KiB in buffers of 64 KiB: the frame cannot grow where
    // it came, so its payload is copied out of the first read at once
    // (unmasked on the way), into room that is never moved.
    let mut s = Connection::server_upgraded(Config::default());
    let mut landed = None;
    for read in wire.chunks(64 * 1024) {
        let mut owned = BytesMut::with_capacity(read.len());
        owned.extend_from_slice(read);
        s.handle_input_bytes(now, owned);
        assert!(s.rbuf.is_empty(), "no payload left in the input buffer");
        if let (None, Some(b)) = (landed, &s.big) {
            landed = Some(b.as_ptr());
        }
    }
    let Some(Event::Message(Message::Binary(b))) = s.poll_event(now) else {
        panic!()
    };
    assert!(b[..] == payload[..], "payload intact");
    assert_eq!(Some(b.as_ptr()), landed, "copied after its first read");

    // A first read in a buffer with room for the whole frame is adopted:
    // the payload stays where the caller's read put it.
    let mut s = Connection::server_upgraded(Config::default());
    let mut first = BytesMut::with_capacity(wire.len());
    first.extend_from_slice(&wire[..64 * 1024]);
    let hlen = frame::decode_header(&first).unwrap().unwrap().1;
    let at = first[hlen..].as_ptr();
    s.handle_input_bytes(now, first);
    for read in wire[64 * 1024..].chunks(64 * 1024) {
        s.handle_input_bytes(now, BytesMut::from(read));
    }
    let Some(Event::Message(Message::Binary(b))) = s.poll_event(now) else {
        panic!()
    };
    assert!(b[..] == payload[..], "payload intact");
    assert_eq!(b.as_ptr(), at, "adopted where it was read");
}

/// A socket for `read_from`: serves `data` in reads of at most `chunk`
/// bytes, and records, for each read, whether the memory it writes into
/// already held bytes other than zeros (memory reused, not zero-filled
/// again).
struct Socket {
    data: Vec<u8>,
    at: usize,
    chunk: usize,
    reused: Vec<bool>,
}

impl std::io::Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len() - self.at);
        self.reused.push(buf[..n].iter().any(|&b| b != 0));
        if n == 0 && !buf.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Everything `s` makes of `wire` read with `read_from` in reads of at
/// most `chunk` bytes, polled after every read (as a driver does).
fn read_all(s: &mut Connection, wire: &[u8], chunk: usize) -> Vec<Event> {
    let now = Instant::now();
    let mut socket = Socket {
        data: wire.to_vec(),
        at: 0,
        chunk,
        reused: vec![],
    };
    let mut got = Vec::new();
    while let Ok(n) = s.read_from(&mut socket) {
        assert!(n > 0);
        s.commit_input(now);
        got.extend(drain(s));
    }
    assert_eq!(socket.at, wire.len(), "all read");
    got
}

#[test]
fn read_from_gives_the_events_of_handle_input_for_any_read_size() {
    let now = Instant::now();
    for big in [40, 100_000] {
        let wire = client_stream(big);
        let mut s = Connection::server_upgraded(Config::default());
        s.handle_input(now, &wire);
        let want = drain(&mut s);
        assert_eq!(messages(&want).len(), 5);
        for chunk in [big / 1000 + 1, 7, 1000, 16 * 1024, 1 << 20] {
            let mut s = Connection::server_upgraded(Config::default());
            let got = read_all(&mut s, &wire, chunk);
            assert_eq!(got, want, "frames of {big}, reads of {chunk}");
        }
    }
}

#[test]
fn read_from_zero_fills_each_byte_of_an_allocation_once() {
    // Runs of large frames, each message dropped before the next read: the
    // reads after the first frame land in memory reclaimed from it, which
    // is not zero-filled again (the socket sees the old bytes).
    let now = Instant::now();
    for size in [64 * 1024, 1 << 20] {
        let payload: Vec<u8> = (0..size as u32).map(|i| (i % 251 + 1) as u8).collect();
        let frame = masked_frame(2, &payload, [1, 2, 3, 4]);
        let mut s = Connection::server_upgraded(Config::default());
        let mut socket = Socket {
            data: frame.repeat(4),
            at: 0,
            chunk: 64 * 1024,
            reused: vec![],
        };
        let mut first_frame_reads = None;
        let mut count = 0;
        while s.read_from(&mut socket).is_ok() {
            s.commit_input(now);
            for ev in drain(&mut s) {
                assert_eq!(ev, Event::Message(Message::binary(payload.clone())));
                count += 1;
                first_frame_reads.get_or_insert(socket.reused.len());
            }
        }
        assert_eq!(count, 4);
        let first = first_frame_reads.unwrap();
        assert!(socket.reused[..first].iter().all(|&r| !r), "{size}");
        // The last read is the one that found the socket drained.
        let later = &socket.reused[first..socket.reused.len() - 1];
        assert!(
            !later.is_empty() && later.iter().all(|&r| r),
            "{size}: {:?}",
            socket.reused
        );
    }
}

#[test]
fn read_from_takes_a_buffered_large_frame_in_few_reads_ending_on_its_boundary() {
    // A socket already holding a run of large frames (as a kernel buffer
    // does): after the first frame, each read asks for the rest of the
    // frame (or a frame as large), not 64 KiB at a time, and no read
    // crosses into the next frame. A peer that declares a large frame and
    // sends little still gets room only for what came.
    let now = Instant::now();
    for size in [64 * 1024, 1 << 20] {
        let payload: Vec<u8> = (0..size as u32).map(|i| (i % 251) as u8).collect();
        let frame = masked_frame(2, &payload, [1, 2, 3, 4]);
        let mut s = Connection::server_upgraded(Config::default());
        let mut socket = Socket {
            data: frame.repeat(5),
            at: 0,
            chunk: usize::MAX,
            reused: vec![],
        };
        let mut ends = vec![];
        let mut count = 0;
        while s.read_from(&mut socket).is_ok() {
            ends.push(socket.at);
            s.commit_input(now);
            for ev in drain(&mut s) {
                assert_eq!(ev, Event::Message(Message::binary(payload.clone())));
                count += 1;
            }
        }
        assert_eq!(count, 5);
        let after_first: Vec<_> = ends.iter().filter(|&&e| e > frame.len()).collect();
        assert_eq!(after_first.len(), 4, "{size}: one read a frame: {ends:?}");
        assert!(
            after_first.iter().all(|&&e| e % frame.len() == 0),
            "{ends:?}"
        );
    }
    // 16 bytes of a frame that declares 1 GiB: the read is not sized by
    // the header.
    let config = Config::default()
        .max_frame_size(1 << 30)
        .max_message_size(1 << 30);
    let mut s = Connection::server_upgraded(config);
    let mut head = vec![0x82, 0xff];
    head.extend_from_slice(&(1u64 << 30).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 0, 0, 0]);
    assert_eq!(s.read_from(&mut &head[..]).unwrap(), head.len());
    s.commit_input(now);
    assert!(s.poll_event(now).is_none());
    let mut asked = Asked(0);
    let _ = s.read_from(&mut asked);
    assert!(asked.0 <= 64 * 1024, "asked for {}", asked.0);
}

/// A reader that records how much room it was given, and has nothing.
struct Asked(usize);

impl std::io::Read for Asked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0 = buf.len();
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

#[test]
fn read_from_small_reads_share_an_allocation_while_messages_are_held() {
    // A small frame a read, every message kept: reads go on into what is
    // left of the room (each byte zero-filled once), so the messages lie
    // side by side in a few allocations, not one allocation each.
    let now = Instant::now();
    let mut s = Connection::server_upgraded(Config::default());
    let mut kept = Vec::new();
    for i in 0..2000u32 {
        let frame = masked_frame(2, &i.to_le_bytes().repeat(5), [1, 2, 3, 4]);
        let mut socket = &frame[..];
        assert_eq!(s.read_from(&mut socket).unwrap(), frame.len());
        s.commit_input(now);
        match s.poll_event(now) {
            Some(Event::Message(Message::Binary(b))) => kept.push(b),
            other => panic!("{other:?}"),
        }
    }
    let apart = kept
        .windows(2)
        .filter(|w| w[1].as_ptr() != w[0].as_ptr().wrapping_add(w[0].len() + 6))
        .count();
    // 2000 frames of 26 bytes: 52,000 bytes, in reads of at least 16 KiB.
    assert!(apart <= 3, "{apart} allocations");
    for (i, b) in kept.iter().enumerate() {
        assert_eq!(&b[..], &(i as u32).to_le_bytes().repeat(5)[..]);
    }
}

#[test]
fn read_from_passes_errors_and_lying_readers_through_unharmed() {
    struct Liar(usize);
    impl std::io::Read for Liar {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            Ok(buf.len() + self.0)
        }
    }
    let now = Instant::now();
    let frame = masked_frame(1, b"hello", [9, 8, 7, 6]);
    let mut s = Connection::server_upgraded(Config::default());
    for _ in 0..3 {
        let err = s.read_from(&mut Liar(1)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let err = s.read_from(&mut Liar(usize::MAX - (1 << 20))).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let mut empty = Socket {
            data: vec![],
            at: 0,
            chunk: 1,
            reused: vec![],
        };
        let err = s.read_from(&mut empty).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        s.commit_input(now);
        assert_eq!(s.poll_event(now), None);
    }
    // Half a frame, an error, the rest: one message.
    let mut socket: &[u8] = &frame[..4];
    assert_eq!(s.read_from(&mut socket).unwrap(), 4);
    s.commit_input(now);
    assert!(s.read_from(&mut Liar(3)).is_err());
    let mut socket: &[u8] = &frame[4..];
    assert_eq!(s.read_from(&mut socket).unwrap(), frame.len() - 4);
    s.commit_input(now);
    assert_eq!(
        s.poll_event(now),
        Some(Event::Message(Message::text("hello")))
    );
    // The end of the stream.
    assert_eq!(s.read_from(&mut socket).unwrap(), 0);
    s.handle_eof(now);
    assert!(matches!(s.poll_event(now), Some(Event::Closed(c)) if c.code == CloseCode::ABNORMAL));
    // A closed connection still reads (to see the end), and drops it.
    let mut socket: &[u8] = &frame;
    assert_eq!(s.read_from(&mut socket).unwrap(), frame.len());
    s.commit_input(now);
    assert_eq!(s.poll_event(now), None);
}

#[test]
fn read_from_after_input_buffer_and_handle_input() {
    // Mixed with the other ways in: every byte still arrives once, in order.
    let now = Instant::now();
    let wire = client_stream(70_000);
    let mut s = Connection::server_upgraded(Config::default());
    s.handle_input(now, &wire);
    let want = drain(&mut s);
    let mut s = Connection::server_upgraded(Config::default());
    let mut got = Vec::new();
    for (i, part) in wire.chunks(3000).enumerate() {
        match i % 4 {
            0 => feed_ingest(&mut s, now, part, 1000),
            1 => s.handle_input(now, part),
            2 => {
                // Appended to the room and not committed: read_from reads
                // after it, and one commit takes both.
                let (a, b) = part.split_at(1000);
                bytes::BufMut::put_slice(&mut s.input_buffer(1000), a);
                let mut socket = b;
                while !socket.is_empty() {
                    s.read_from(&mut socket).unwrap();
                }
                s.commit_input(now);
            }
            _ => feed_read_from(&mut s, now, part),
        }
        got.extend(drain(&mut s));
    }
    assert_eq!(got, want);
}

/// What the connection holds for input: its buffers' reserved memory and
/// the message being reassembled.
fn held_input(c: &Connection) -> usize {
    c.rbuf.capacity()
        + c.ibuf.capacity()
        + c.big.as_ref().map_or(0, |b| b.capacity())
        + c.partial.as_ref().map_or(0, |p| p.data.capacity())
}

/// One masked frame with `fin` and `opcode` as given.
fn masked_fragment(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = masked_frame(opcode, payload, key);
    if !fin {
        f[0] &= 0x7f;
    }
    f
}

#[test]
fn a_hundred_thousand_fragments_cost_only_their_bytes() {
    // Fragments are reassembled into one buffer: no event, record or
    // allocation per fragment, so memory stays bounded by the message
    // limit however many arrive, with no cap on fragments by default.
    const N: usize = 100_000;
    let key = [3, 1, 4, 1];
    let mut wire = masked_fragment(false, 1, b"a", key);
    let middle = masked_fragment(false, 0, b"b", key);
    for _ in 2..N {
        wire.extend_from_slice(&middle);
    }
    wire.extend_from_slice(&masked_fragment(true, 0, b"c", key));
    let want = format!("a{}c", "b".repeat(N - 2));
    let now = Instant::now();
    for limit in [N, N / 2] {
        let config = Config::default().max_message_size(limit);
        assert_eq!(config.max_fragments, usize::MAX);
        for feed in [Feed::HandleInput, Feed::Ingest, Feed::ReadFrom] {
            let mut s = Connection::server_upgraded(config);
            let mut events = Vec::new();
            for read in wire.chunks(4096) {
                match feed {
                    Feed::HandleInput => s.handle_input(now, read),
                    Feed::Ingest => feed_ingest(&mut s, now, read, 4096),
                    Feed::ReadFrom => feed_read_from(&mut s, now, read),
                }
                events.extend(drain(&mut s));
                // The message so far (grown by doubling) and one read.
                let held = held_input(&s);
                assert!(held <= 2 * limit + 64 * 1024, "{feed:?}: {held}");
            }
            if limit == N {
                assert_eq!(events, [Event::Message(Message::text(want.clone()))]);
            } else {
                assert!(
                    matches!(&events[..], [Event::Closed(c)] if c.code == CloseCode::TOO_BIG),
                    "{feed:?}: {events:?}"
                );
            }
        }
    }
    // A cap, where the application wants one, still holds.
    let mut s = Connection::server_upgraded(Config::default().max_fragments(1000));
    s.handle_input(now, &wire);
    let events = drain(&mut s);
    assert!(
        matches!(&events[..], [Event::Closed(c)] if matches!(c.error, Some(Error::Limit(LimitError::TooManyFragments { max: 1000 })))),
        "{events:?}"
    );
}

#[test]
fn invalid_text_in_a_large_frame_fails_alike_however_it_arrives() {
    // A large text frame that turns out not to be UTF-8: reached through
    // the input buffer (behind a small frame in the same read) or through
    // its own buffer (alone at the front of a read), the connection fails
    // the same way and keeps reading for the peer's close frame.
    let key = [1, 2, 3, 4];
    let small = masked_frame(1, b"a", key);
    let mut big = masked_frame(1, &[0xff; 100], key);
    big[1] = 0x80 | 126;
    big.splice(2..4, 20_000u16.to_be_bytes());
    let mut rest = vec![0u8; 19_900];
    mask::apply_mask(&mut rest, key, 100);
    let close = masked_frame(8, &1000u16.to_be_bytes(), key);
    let run = |pieces: &[&[u8]]| {
        let now = Instant::now();
        let mut s = Connection::server_upgraded(Config::default());
        let mut events = Vec::new();
        for p in pieces {
            s.handle_input(now, p);
            events.extend(drain(&mut s));
        }
        (events, s.state())
    };
    let whole = [small.clone(), big.clone()].concat();
    let a = run(&[&whole, &rest, &close]);
    let b = run(&[&small, &big, &rest, &close]);
    assert_eq!(a, b);
    assert_eq!(a.1, State::Closed);
    assert_eq!(closed(&a.0)[0].code, CloseCode::INVALID_PAYLOAD);
    // Before the peer's close frame, both wait for it.
    assert_eq!(run(&[&whole]).1, State::Closing);
    assert_eq!(run(&[&small, &big]).1, State::Closing);
}

#[test]
fn text_after_a_failure_is_dropped_unread_however_it_arrives() {
    // After failing the connection the server only waits for the peer's
    // close frame: a later text frame is dropped, valid or not, whole or
    // in pieces (a fuzz finding: whole, it failed the connection again).
    let key = [0x81, 0xad, 0xad, 0xad];
    let bad = masked_frame(1, &[0xba], key);
    let cut_short = masked_frame(1, &[0xc3], key);
    let mut wire = [bad, cut_short].concat();
    wire.push(0x82);
    let run = |cuts: &[usize]| {
        let now = Instant::now();
        let mut s = Connection::server_upgraded(Config::default());
        let mut events = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain([&wire.len()]) {
            s.handle_input(now, &wire[at..c]);
            events.extend(drain(&mut s));
            at = c;
        }
        (events, s.state())
    };
    let whole = run(&[]);
    assert_eq!(whole.1, State::Closing);
    assert_eq!(closed(&whole.0).len(), 1);
    for cut in 1..wire.len() {
        assert_eq!(run(&[cut]), whole, "cut at {cut}");
    }
}
