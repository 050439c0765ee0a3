//! permessage-deflate between two connections, and against frames made by
//! hand with flate2.

use flate2::{Compress, Compression, FlushCompress};

use super::*;
use crate::ws::deflate::{DeflateConfig, Params};

fn on() -> DeflateConfig {
    DeflateConfig::default().enabled(true)
}

/// A pair whose client and server have their own configs.
fn pair(client: Config, server: Config) -> Pair {
    let mut p = Pair::new(client);
    p.server = Connection::server(server);
    p
}

fn open(client: Config, server: Config) -> Pair {
    let mut p = pair(client, server);
    p.drive();
    assert_eq!(p.client.state(), State::Open);
    assert_eq!(p.server.state(), State::Open);
    p.client_events.clear();
    p.server_events.clear();
    p
}

/// Text that compresses like JSON does.
fn json(n: usize) -> String {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user{i}\",\"online\":true,\"room\":\"lobby\"}},"
        ));
        i += 1;
    }
    s.truncate(n - 1);
    s.push(']');
    s
}

/// The frames in `wire` (whole frames only): (fin, rsv, opcode, payload
/// unmasked).
fn frames(wire: &[u8]) -> Vec<(bool, u8, OpCode, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = wire;
    while let Ok(Some((h, hlen))) = frame::decode_header(rest) {
        let end = hlen + h.len as usize;
        let mut payload = rest[hlen..end].to_vec();
        if let Some(key) = h.mask {
            mask::apply_mask(&mut payload, key, 0);
        }
        out.push((h.fin, h.rsv, h.opcode, payload));
        rest = &rest[end..];
    }
    assert!(rest.is_empty(), "a partial frame");
    out
}

/// Everything one side has to transmit, without delivering it.
fn take_wire(c: &mut Connection) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(t) = c.poll_transmit(Instant::now()) {
        if let Transmit::Data(b) = t {
            wire.extend_from_slice(&b);
        }
    }
    wire
}

/// A raw DEFLATE stream of `data` with a sync flush, less the trailing
/// `00 00 ff ff`, as RFC 7692 frames it.
fn deflate_raw(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut input = data;
    loop {
        out.reserve(64 * 1024);
        let before = c.total_in();
        c.compress_vec(input, &mut out, FlushCompress::Sync)
            .unwrap();
        input = &input[(c.total_in() - before) as usize..];
        if input.is_empty() && out.capacity() > out.len() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A masked frame with the given header bits, as a client sends it.
fn client_frame(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let key = [9, 8, 7, 6];
    let h = FrameHeader {
        fin,
        rsv,
        opcode,
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

/// A server that agreed to the default parameters, fed `wire`.
fn server_fed(config: Config, wire: &[u8]) -> (Connection, Vec<Event>) {
    let mut s = Connection::server_upgraded(config).with_deflate(Params::default());
    s.handle_input(Instant::now(), wire);
    let events = drain(&mut s);
    (s, events)
}

#[test]
fn negotiated_only_when_both_ends_want_it() {
    let cases = [
        (on(), on(), true),
        (on(), DeflateConfig::default(), false),
        (DeflateConfig::default(), on(), false),
    ];
    for (client, server, agreed) in cases {
        let p = open(
            Config::default().deflate(client),
            Config::default().deflate(server),
        );
        let want = agreed.then(Params::default);
        assert_eq!(p.client.deflate_params(), want);
        assert_eq!(p.server.deflate_params(), want);
    }
}

#[test]
fn the_application_decides_per_connection_through_accept() {
    let mut p = pair(
        Config::default().deflate(on()),
        Config::default().deflate(on()),
    );
    // Drive by hand: accept with compression off, and then with other
    // parameters.
    for (accept, want) in [
        (Accept::new().deflate(DeflateConfig::default()), None),
        (
            Accept::new().deflate(on().server_no_context_takeover(true)),
            Some(Params {
                server_no_context_takeover: true,
                ..Params::default()
            }),
        ),
    ] {
        p.client = Connection::client(
            Config::default().deflate(on()),
            ClientRequest::new("h", "/"),
            Box::new(SeededEntropy::new(3)),
        );
        p.server = Connection::server(Config::default().deflate(on()));
        let request = take_wire(&mut p.client);
        p.server.handle_input(p.now, &request);
        assert!(matches!(
            p.server.poll_event(p.now),
            Some(Event::Upgrade(_))
        ));
        p.server.accept(p.now, accept).unwrap();
        let response = take_wire(&mut p.server);
        p.client.handle_input(p.now, &response);
        assert!(matches!(
            p.client.poll_event(p.now),
            Some(Event::Open { .. })
        ));
        assert_eq!(p.server.deflate_params(), want);
        assert_eq!(p.client.deflate_params(), want);
    }
}

#[test]
fn handshake_headers_both_ways() {
    let client = Config::default().deflate(on().client_max_window_bits(10));
    let server = Config::default().deflate(on().server_max_window_bits(12));
    let mut p = pair(client, server);
    let request = String::from_utf8(take_wire(&mut p.client)).unwrap();
    assert!(
        request.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n"
        ),
        "{request}"
    );
    p.server.handle_input(p.now, request.as_bytes());
    assert!(matches!(
        p.server.poll_event(p.now),
        Some(Event::Upgrade(_))
    ));
    p.server.accept(p.now, Accept::new()).unwrap();
    let response = take_wire(&mut p.server);
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.contains("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12; client_max_window_bits=10\r\n"),
        "{text}"
    );
    p.client.handle_input(p.now, &response);
    let params = Params {
        server_max_window_bits: 12,
        client_max_window_bits: 10,
        ..Params::default()
    };
    assert_eq!(p.client.deflate_params(), Some(params));
    assert_eq!(p.server.deflate_params(), Some(params));
}

#[test]
fn a_malformed_extension_header_is_refused_only_when_compression_is_on() {
    let request = |ext: &str| {
        format!(
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Extensions: {ext}\r\n\r\n"
        )
    };
    for (deflate, status) in [(on(), Some("400")), (DeflateConfig::default(), None)] {
        let mut s = Connection::server(Config::default().deflate(deflate));
        s.handle_input(
            Instant::now(),
            request("permessage-deflate; a=\"b c\"").as_bytes(),
        );
        let events = drain(&mut s);
        match status {
            Some(code) => {
                let wire = String::from_utf8(take_wire(&mut s)).unwrap();
                assert!(wire.starts_with(&format!("HTTP/1.1 {code}")), "{wire}");
                assert!(matches!(
                    &closed(&events)[0].error,
                    Some(Error::Handshake(HandshakeError::Extension(_)))
                ));
            }
            None => assert!(matches!(events[0], Event::Upgrade(_))),
        }
    }
    // An offer the server cannot take is declined, not refused.
    let mut s = Connection::server(Config::default().deflate(on()));
    s.handle_input(
        Instant::now(),
        request("permessage-deflate; server_max_window_bits=16, x-other").as_bytes(),
    );
    assert!(matches!(
        s.poll_event(Instant::now()),
        Some(Event::Upgrade(_))
    ));
    s.accept(Instant::now(), Accept::new()).unwrap();
    assert_eq!(s.deflate_params(), None);
    let wire = String::from_utf8(take_wire(&mut s)).unwrap();
    assert!(!wire.contains("Sec-WebSocket-Extensions"), "{wire}");
}

#[test]
fn a_client_fails_on_a_bad_answer() {
    let answers = [
        // Not offered: a parameter the client did not allow.
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; foo",
        "permessage-deflate, permessage-deflate",
        "x-webkit-deflate-frame",
    ];
    for answer in answers {
        let mut c = Connection::client(
            Config::default().deflate(on()),
            ClientRequest::new("h", "/"),
            Box::new(SeededEntropy::new(1)),
        );
        let request = take_wire(&mut c);
        let mut s = Connection::server(Config::default());
        s.handle_input(Instant::now(), &request);
        let Some(Event::Upgrade(req)) = s.poll_event(Instant::now()) else {
            panic!()
        };
        let mut head = req.response(&Accept::new());
        head.headers.push("Sec-WebSocket-Extensions", answer);
        let mut out = BytesMut::new();
        head.encode(&mut out);
        c.handle_input(Instant::now(), &out);
        let events = drain(&mut c);
        assert!(
            matches!(
                &closed(&events)[0].error,
                Some(Error::Handshake(HandshakeError::Extension(_)))
            ),
            "{answer}: {events:?}"
        );
    }
    // Without an offer, any extension is refused as before.
    let mut c = Connection::client(
        Config::default(),
        ClientRequest::new("h", "/"),
        Box::new(SeededEntropy::new(1)),
    );
    let request = take_wire(&mut c);
    assert!(!String::from_utf8_lossy(&request).contains("Extensions"));
}

#[test]
fn messages_round_trip_compressed_however_they_arrive() {
    let big = json(100_000);
    let binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 13) as u8).collect();
    for feed in [Feed::HandleInput, Feed::Ingest, Feed::ReadFrom] {
        for seed in [None, Some(5)] {
            for by_ref in [false, true] {
                let config = Config::default().deflate(on());
                let mut p = pair(config, config).feed_by(feed);
                if let Some(seed) = seed {
                    p = p.chunked(seed);
                }
                if by_ref {
                    p = p.by_ref();
                }
                p.drive();
                p.client_events.clear();
                p.server_events.clear();
                let sent = [
                    Message::text(json(2000)),
                    Message::text("small"),
                    Message::text(big.clone()),
                    Message::binary(binary.clone()),
                    Message::text(json(3000)),
                ];
                for m in &sent {
                    p.client.send(m.clone()).unwrap();
                    p.server.send(m.clone()).unwrap();
                }
                p.drive();
                assert_eq!(messages(&p.server_events), sent, "{feed:?} {seed:?}");
                assert_eq!(messages(&p.client_events), sent, "{feed:?} {seed:?}");
            }
        }
    }
}

#[test]
fn rsv1_marks_compressed_messages_and_the_threshold_picks_them() {
    let config = Config::default().deflate(on());
    let mut p = open(config, config);
    let long = json(4000);
    p.server.send(Message::text(long.clone())).unwrap();
    p.server.send(Message::text("short")).unwrap();
    p.server
        .send_compressed(Message::text("short"), true)
        .unwrap();
    p.server
        .send_compressed(Message::text(long.clone()), false)
        .unwrap();
    p.server.ping(Bytes::from(json(100))).unwrap();
    let wire = take_wire(&mut p.server);
    let f = frames(&wire);
    let rsv: Vec<u8> = f.iter().map(|f| f.1).collect();
    assert_eq!(rsv, [4, 0, 4, 0, 0]);
    assert!(f[0].3.len() < 1000, "4 KB of JSON compresses well");
    assert_eq!(f[1].3, b"short");
    assert_eq!(f[3].3, long.as_bytes());
    p.client.handle_input(p.now, &wire);
    let events = drain(&mut p.client);
    assert_eq!(
        messages(&events),
        [
            Message::text(long.clone()),
            Message::text("short"),
            Message::text("short"),
            Message::text(long)
        ]
    );
}

#[test]
fn every_send_path_compresses() {
    let config = Config::default().deflate(on());
    for server in [true, false] {
        let mut p = open(config, config);
        let (from, to) = if server {
            (&mut p.server, &mut p.client)
        } else {
            (&mut p.client, &mut p.server)
        };
        let text = json(3000);
        let (head, tail) = text.split_at(1);
        from.send_slices(DataKind::Text, head.as_bytes(), tail.as_bytes())
            .unwrap();
        from.send_with_prefix(
            DataKind::Text,
            head.as_bytes(),
            Bytes::copy_from_slice(tail.as_bytes()),
        )
        .unwrap();
        from.send_batch(&[Message::text(text.clone()), Message::text("x")])
            .unwrap();
        if server {
            let shared = EncodedFrame::new(&Message::text(text.clone()));
            from.send_encoded(&shared).unwrap();
            from.send_encoded_batch([&shared, &EncodedFrame::new(&Message::text("y"))].into_iter())
                .unwrap();
        }
        let wire = take_wire(from);
        let rsv: Vec<u8> = frames(&wire).iter().map(|f| f.1).collect();
        let want: &[u8] = if server {
            &[4, 4, 4, 0, 4, 4, 0]
        } else {
            &[4, 4, 4, 0]
        };
        assert_eq!(rsv, want);
        to.handle_input(p.now, &wire);
        let got = messages(&drain(to));
        assert_eq!(got.len(), want.len());
        assert!(
            got.iter()
                .all(|m| m.as_bytes() == text.as_bytes() || m.len() == 1)
        );
    }
}

#[test]
fn with_compression_off_every_send_path_goes_as_it_is() {
    let config = Config::default().deflate(on());
    for server in [true, false] {
        let mut p = open(config, config);
        let (from, to) = if server {
            (&mut p.server, &mut p.client)
        } else {
            (&mut p.client, &mut p.server)
        };
        let text = json(3000);
        let (head, tail) = text.split_at(1);
        from.set_compress(false);
        from.send(Message::text(text.clone())).unwrap();
        from.send_slices(DataKind::Text, head.as_bytes(), tail.as_bytes())
            .unwrap();
        from.send_with_prefix(
            DataKind::Text,
            head.as_bytes(),
            Bytes::copy_from_slice(tail.as_bytes()),
        )
        .unwrap();
        from.send_batch(&[Message::text(text.clone())]).unwrap();
        from.send_fragment(DataKind::Text, Bytes::from(text.clone()), true)
            .unwrap();
        if server {
            let shared = EncodedFrame::new(&Message::text(text.clone()));
            from.send_encoded(&shared).unwrap();
            from.send_encoded_batch([&shared].into_iter()).unwrap();
        }
        // Asked for by the message, it is still compressed; and back on,
        // sizes decide again.
        from.send_compressed(Message::text(text.clone()), true)
            .unwrap();
        from.set_compress(true);
        from.send(Message::text(text.clone())).unwrap();
        let wire = take_wire(from);
        let rsv: Vec<u8> = frames(&wire).iter().map(|f| f.1).collect();
        let want: &[u8] = if server {
            &[0, 0, 0, 0, 0, 0, 0, 4, 4]
        } else {
            &[0, 0, 0, 0, 0, 4, 4]
        };
        assert_eq!(rsv, want);
        to.handle_input(p.now, &wire);
        let got = messages(&drain(to));
        assert_eq!(got.len(), want.len());
        assert!(got.iter().all(|m| m.as_bytes() == text.as_bytes()));
    }
}

#[test]
fn fragmented_compressed_messages_both_ways() {
    // Automatic fragmentation splits the compressed payload: RSV1 on the
    // first frame only.
    let config = Config::default()
        .deflate(on())
        .send_fragment_size(Some(100));
    let mut p = open(config, config);
    let text = json(5000);
    p.server.send(Message::text(text.clone())).unwrap();
    let wire = take_wire(&mut p.server);
    let f = frames(&wire);
    assert!(f.len() > 2);
    assert_eq!(f[0].1, 4);
    assert!(
        f[1..]
            .iter()
            .all(|f| f.1 == 0 && f.2 == OpCode::Continuation)
    );
    p.client.handle_input(p.now, &wire);
    assert_eq!(
        messages(&drain(&mut p.client)),
        [Message::text(text.clone())]
    );

    // Streamed fragments: the first one's size decides; control frames
    // between them are never compressed.
    let config = Config::default().deflate(on());
    let mut p = open(config, config);
    let bytes = text.as_bytes();
    let parts = [&bytes[..2000], &bytes[2000..2001], &bytes[2001..]];
    for (i, part) in parts.iter().enumerate() {
        p.client
            .send_fragment(DataKind::Text, Bytes::copy_from_slice(part), i == 2)
            .unwrap();
        p.client.ping(Bytes::from_static(b"between")).unwrap();
    }
    // A first fragment under the threshold sends the message as it is.
    p.client
        .send_fragment(DataKind::Binary, Bytes::from_static(b"ab"), false)
        .unwrap();
    p.client
        .send_fragment(DataKind::Binary, Bytes::from(vec![1u8; 5000]), true)
        .unwrap();
    let wire = take_wire(&mut p.client);
    let rsv: Vec<(u8, OpCode)> = frames(&wire).iter().map(|f| (f.1, f.2)).collect();
    use OpCode::*;
    assert_eq!(
        rsv,
        [
            (4, Text),
            (0, Ping),
            (0, Continuation),
            (0, Ping),
            (0, Continuation),
            (0, Ping),
            (0, Binary),
            (0, Continuation)
        ]
    );
    p.server.handle_input(p.now, &wire);
    let mut want = b"ab".to_vec();
    want.extend([1u8; 5000]);
    assert_eq!(
        messages(&drain(&mut p.server)),
        [Message::text(text), Message::binary(want)]
    );
}

#[test]
fn context_takeover_or_not() {
    let text = json(3000);
    let sizes = |server: DeflateConfig| {
        let mut p = open(
            Config::default().deflate(on()),
            Config::default().deflate(server),
        );
        let mut sizes = Vec::new();
        for _ in 0..3 {
            p.server.send(Message::text(text.clone())).unwrap();
            let wire = take_wire(&mut p.server);
            sizes.push(wire.len());
            p.client.handle_input(p.now, &wire);
            assert_eq!(
                messages(&drain(&mut p.client)),
                [Message::text(text.clone())]
            );
        }
        sizes
    };
    // With context takeover the repeats refer to the first message.
    let with = sizes(on());
    assert!(with[1] < with[0] / 4, "{with:?}");
    // Without it, each message is compressed alone: the same bytes.
    let without = sizes(on().server_no_context_takeover(true));
    assert_eq!(without, [with[0]; 3]);
}

#[test]
fn small_windows() {
    for bits in [8, 9, 10, 12, 15] {
        let d = on()
            .server_max_window_bits(bits)
            .client_max_window_bits(bits);
        let config = Config::default().deflate(d);
        let mut p = open(config, config);
        let params = p.server.deflate_params().unwrap();
        assert_eq!(
            (params.server_max_window_bits, params.client_max_window_bits),
            (bits, bits)
        );
        let sent: Vec<Message> = (0..4)
            .map(|i| Message::text(json(2000 + i * 1500)))
            .collect();
        for m in &sent {
            p.client.send(m.clone()).unwrap();
            p.server.send(m.clone()).unwrap();
        }
        p.drive();
        assert_eq!(messages(&p.server_events), sent);
        assert_eq!(messages(&p.client_events), sent);
    }
}

#[test]
fn a_zip_bomb_closes_1009_without_growing_past_the_limit() {
    let limit = 64 * 1024;
    let bomb = deflate_raw(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
    for fragmented in [false, true] {
        let wire = if fragmented {
            let (a, b) = bomb.split_at(bomb.len() / 2);
            let mut w = client_frame(false, 4, OpCode::Binary, a);
            w.extend(client_frame(true, 0, OpCode::Continuation, b));
            w
        } else {
            client_frame(true, 4, OpCode::Binary, &bomb)
        };
        let (s, events) = server_fed(Config::default().max_message_size(limit), &wire);
        let c = &closed(&events)[0];
        assert_eq!(c.code, CloseCode::TOO_BIG, "{c:?}");
        assert!(messages(&events).is_empty());
        assert!(held_input(&s) <= 2 * limit, "{}", held_input(&s));
    }
    // At the limit exactly, the message passes.
    let exact = deflate_raw(&vec![0u8; limit]);
    let (_, events) = server_fed(
        Config::default().max_message_size(limit),
        &client_frame(true, 4, OpCode::Binary, &exact),
    );
    assert_eq!(messages(&events), [Message::binary(vec![0u8; limit])]);
}

#[test]
fn compressed_frames_larger_than_the_limit_are_fine_if_they_inflate_within_it() {
    // Random bytes grow a little when compressed: the limit is on what
    // the message inflates to.
    let mut e = SeededEntropy::new(7);
    let mut data = vec![0u8; 4000];
    e.fill(&mut data);
    let z = deflate_raw(&data);
    assert!(z.len() > data.len());
    let (_, events) = server_fed(
        Config::default().max_message_size(4000),
        &client_frame(true, 4, OpCode::Binary, &z),
    );
    assert_eq!(messages(&events), [Message::binary(data)]);
}

#[test]
fn bad_frames_fail_with_the_right_code() {
    let hello = deflate_raw(b"Hello");
    let cases: Vec<(Vec<u8>, CloseCode)> = vec![
        // RSV1 on a control frame.
        (
            client_frame(true, 4, OpCode::Ping, b""),
            CloseCode::PROTOCOL,
        ),
        // RSV1 on a continuation.
        (
            [
                client_frame(false, 4, OpCode::Text, &hello),
                client_frame(true, 4, OpCode::Continuation, b""),
            ]
            .concat(),
            CloseCode::PROTOCOL,
        ),
        // RSV2 and RSV3 stay reserved.
        (
            client_frame(true, 2, OpCode::Text, b"a"),
            CloseCode::PROTOCOL,
        ),
        (
            client_frame(true, 6, OpCode::Text, &hello),
            CloseCode::PROTOCOL,
        ),
        // Not DEFLATE data (a reserved block type).
        (
            client_frame(true, 4, OpCode::Text, &[0xff, 0xff]),
            CloseCode::INVALID_PAYLOAD,
        ),
        // Invalid UTF-8 once inflated.
        (
            client_frame(true, 4, OpCode::Text, &deflate_raw(&[b'a', 0xff, b'b'])),
            CloseCode::INVALID_PAYLOAD,
        ),
        // A character cut off at the message's end.
        (
            client_frame(
                true,
                4,
                OpCode::Text,
                &deflate_raw("é".as_bytes().get(..1).unwrap()),
            ),
            CloseCode::INVALID_PAYLOAD,
        ),
    ];
    for (wire, code) in cases {
        let (_, events) = server_fed(Config::default(), &wire);
        assert_eq!(closed(&events)[0].code, code, "{events:?}");
        assert!(messages(&events).is_empty(), "{events:?}");
    }
    // RSV1 without the extension.
    let mut s = Connection::server_upgraded(Config::default());
    s.handle_input(Instant::now(), &client_frame(true, 4, OpCode::Text, &hello));
    assert_eq!(closed(&drain(&mut s))[0].code, CloseCode::PROTOCOL);
    // The RFC's examples: one frame, and the same message in two.
    let (_, events) = server_fed(
        Config::default(),
        &[
            client_frame(
                true,
                4,
                OpCode::Text,
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            ),
            client_frame(false, 4, OpCode::Text, &[0xf2, 0x48, 0xcd]),
            client_frame(true, 0, OpCode::Continuation, &[0xc9, 0xc9, 0x07, 0x00]),
        ]
        .concat(),
    );
    assert_eq!(
        messages(&events),
        [Message::text("Hello"), Message::text("Hello")]
    );
}

#[test]
fn uncompressed_messages_still_flow_on_a_compressed_connection() {
    let (_, events) = server_fed(
        Config::default(),
        &[
            client_frame(true, 0, OpCode::Text, b"plain"),
            client_frame(false, 0, OpCode::Binary, b"a"),
            client_frame(true, 0, OpCode::Continuation, b"b"),
            client_frame(true, 4, OpCode::Binary, &deflate_raw(b"zz")),
        ]
        .concat(),
    );
    assert_eq!(
        messages(&events),
        [
            Message::text("plain"),
            Message::binary(b"ab".to_vec()),
            Message::binary(b"zz".to_vec())
        ]
    );
}

#[test]
fn idle_connections_give_compression_state_back() {
    let client = Config::default().deflate(on());
    let server = Config::default().deflate(on().client_no_context_takeover(true));
    let mut p = open(client, server);
    assert!(!p.server.holds_compression_state());
    let text = json(3000);
    p.client.send(Message::text(text.clone())).unwrap();
    p.server.send(Message::text(text.clone())).unwrap();
    p.drive();
    assert!(p.server.holds_compression_state());
    assert!(p.client.holds_compression_state());
    p.server.release_compression();
    // The client keeps its context: its decompressor stays (the server
    // may refer to earlier messages); its compressor goes.
    p.client.release_compression();
    assert!(!p.server.holds_compression_state());
    assert!(p.client.holds_compression_state());
    // Both still understand each other.
    for _ in 0..2 {
        p.client.send(Message::text(text.clone())).unwrap();
        p.server.send(Message::text(text.clone())).unwrap();
        p.drive();
        p.server.release_compression();
        p.client.release_compression();
    }
    assert_eq!(messages(&p.server_events).len(), 3);
    assert_eq!(messages(&p.client_events).len(), 3);
    p.server.release_compression();
    // On a timer: busy connections keep their state, quiet ones give it
    // back.
    p.server.send(Message::text(text.clone())).unwrap();
    p.drive();
    assert!(p.server.holds_compression_state());
    p.server.release_idle_compression();
    assert!(p.server.holds_compression_state());
    p.server
        .send(Message::text("small, so not compressed"))
        .unwrap();
    p.drive();
    p.server.release_idle_compression();
    assert!(!p.server.holds_compression_state());
    // A connection that ends gives everything back.
    p.client.close(p.now, CloseCode::NORMAL, "").unwrap();
    p.drive();
    assert!(!p.client.holds_compression_state());
    assert!(!p.server.holds_compression_state());
}

#[test]
fn each_way_is_released_on_its_own_when_idle() {
    // The client compresses every message (as browsers do), the server
    // only large ones: small traffic keeps the server's decompressor busy,
    // while its compressor, unused, is given back.
    let client = Config::default().deflate(on().threshold(0));
    let server = Config::default().deflate(on().client_no_context_takeover(true));
    let mut p = open(client, server);
    let text = json(3000);
    p.client.send(Message::text(text.clone())).unwrap();
    p.server.send(Message::text(text.clone())).unwrap();
    p.drive();
    let held = |c: &Connection| {
        let d = c.deflate.as_ref().unwrap();
        (d.deflater.holds_state(), d.inflater.holds_state())
    };
    assert_eq!(held(&p.server), (true, true));
    for _ in 0..3 {
        p.client.send(Message::text("pong")).unwrap();
        p.server.send(Message::text("ping")).unwrap();
        p.drive();
        p.server.release_idle_compression();
    }
    assert_eq!(held(&p.server), (false, true));
    // Quiet both ways: both go.
    p.server.release_idle_compression();
    p.server.release_idle_compression();
    assert_eq!(held(&p.server), (false, false));
    assert_eq!(
        messages(&p.client_events).len() + messages(&p.server_events).len(),
        8
    );
}

#[test]
fn large_compressed_frames_read_a_piece_at_a_time() {
    // Polled after every read, as a `read_from` driver does: each large
    // frame is decoded while it arrives, not once it is whole.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let text = json(300_000);
    let binary = deflate_raw(&noise);
    let squeezed = deflate_raw(text.as_bytes());
    assert!(binary.len() > 150_000 && squeezed.len() > 16 * 1024);
    let mut wire = client_frame(true, 4, OpCode::Binary, &binary);
    wire.extend(client_frame(true, 4, OpCode::Text, &squeezed));
    let want = [Message::binary(noise), Message::text(text)];
    for chunk in [7, 1000, 16 * 1024, 64 * 1024] {
        let mut s = Connection::server_upgraded(Config::default()).with_deflate(Params::default());
        let got = read_all(&mut s, &wire, chunk);
        assert_eq!(messages(&got), want, "reads of {chunk}");
    }
}
