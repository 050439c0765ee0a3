//! What the fuzz targets found in wsio, kept as tests of the behaviour wsio
//! now has (all fixed; see "Findings" in README.md). Each input in
//! `findings/` is also replayed through its target here and by
//! `tests/replay.rs` and `smoke.sh`.

use std::time::Instant;

use bytes::Bytes;
use wsio::{
    engineio::{Config, Data, Event, Packet, Server, Transmit, decode_payload},
    entropy::SeededEntropy,
    socketio::{Number, Value},
    ws,
};
use wsio_fuzz::{run_bytes, ws_handshake};

fn finding(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("findings")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Finding 1 (`sio_packet`, input `findings/sio_packet-float-parse`): a
/// float written by `to_json` (JavaScript's shortest round-trip form) does
/// not parse back to the same double: serde_json is built without its
/// `float_roundtrip` feature.
#[test]
fn sio_packet_float_parse_is_exact() {
    for text in [
        "3.569680106589172e-307",
        "3.9770393112151377e+77",
        "1.9071335452284722e-236",
        "6.050395239608202e+233",
    ] {
        let want: f64 = text.parse().unwrap();
        let Value::Number(Number::F64(got)) = Value::from_json(text).unwrap() else {
            panic!("{text}: not a float");
        };
        assert_eq!(got.to_bits(), want.to_bits(), "{text} parsed as {got:e}");
        assert_eq!(Value::Number(Number::F64(want)).to_json(), text);
    }
}

/// Finding 2 (`eio_server`): `Server::send` takes a text containing the
/// payload separator `\x1e` for a polling session and writes it raw, so the
/// client reads two packets (here the message `a` and an empty binary
/// one). `engineio::Client::send` refuses the same with
/// `SeparatorInText`.
#[test]
fn eio_server_text_with_separator_over_polling() {
    let now = Instant::now();
    let mut s = Server::new(Config::default(), Box::new(SeededEntropy::new(1)), now);
    let c = s.accept(now, None);
    s.handle_input(
        now,
        c,
        b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    while s.poll_transmit(now).is_some() {}
    let Some(Event::Open { sid, .. }) = s.poll_event(now) else {
        panic!("no session");
    };
    if s.send(sid, "a\u{1e}b").is_err() {
        return; // Refusing it is a fix too.
    }
    let poll =
        format!("GET /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.handle_input(now, c, poll.as_bytes());
    let mut wire = Vec::new();
    while let Some(t) = s.poll_transmit(now) {
        if let Transmit::Data { data, .. } = t {
            wire.extend_from_slice(&data);
        }
    }
    let body_at = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let (packets, err) = decode_payload(Bytes::copy_from_slice(&wire[body_at..]));
    assert_eq!(err, None);
    assert_eq!(packets, [Packet::message(Data::from("a\u{1e}b"))]);
}

/// Finding 3 (`ws_handshake`, input
/// `findings/ws_handshake-big-text-invalid-utf8-split`): a text frame of
/// 16 KiB or more whose payload is not UTF-8 failed an open connection two
/// ways depending on how its bytes arrived. Read whole, or with its header
/// cut, the rest of the frame was skipped and the connection stayed
/// `Closing`, reading on for the peer's close frame; with the header and the
/// first bytes of the payload in one read (the large-frame path), the input
/// was dropped and the connection went straight to `Closed`.
#[test]
fn ws_big_text_invalid_utf8_same_in_any_split() {
    run_bytes(
        &finding("ws_handshake-big-text-invalid-utf8-split"),
        ws_handshake::run,
    );

    for role in [ws::Role::Client, ws::Role::Server] {
        // A text frame of 33214 bytes whose second payload byte is a stray
        // continuation byte, then the peer's close frame (1007).
        let key = (role == ws::Role::Server).then_some([1u8, 2, 3, 4]);
        let mut payload = vec![0x00, 0xbe];
        payload.resize(33214, b'a');
        let mut frame = vec![0x81, 0x7e, 0x81, 0xbe];
        let mut close = vec![0x88, 0x02];
        let mut close_payload = vec![0x03, 0xef];
        if let Some(k) = key {
            frame[1] |= 0x80;
            frame.extend_from_slice(&k);
            close[1] |= 0x80;
            close.extend_from_slice(&k);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
            for (i, b) in close_payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        frame.extend_from_slice(&payload);
        close.extend_from_slice(&close_payload);

        // Each split of the frame, in up to three reads, gives the same
        // close frame, event and state (`Closing`) as the whole frame in
        // one read, and the same again once the peer's close frame is read
        // (a server is then `Closed`; a client waits for the server to end
        // TCP).
        let whole = feed(role, &[&frame]);
        assert_eq!(whole.2, ws::State::Closing, "{role:?}");
        let closed = feed(role, &[&frame, &close]);
        if role == ws::Role::Server {
            assert_eq!(closed.2, ws::State::Closed);
        }
        let mut splits: Vec<Vec<&[u8]>> = Vec::new();
        for a in [1, 3, 4, 5, 6, 8, 12, 100, 16384, 20000, frame.len() - 1] {
            splits.push(vec![&frame[..a], &frame[a..]]);
            for b in [a + 1, a + 4096, a + 16384] {
                if b < frame.len() {
                    splits.push(vec![&frame[..a], &frame[a..b], &frame[b..]]);
                }
            }
        }
        for pieces in &mut splits {
            let sizes: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
            assert_eq!(feed(role, pieces), whole, "{role:?}, reads of {sizes:?}");
            pieces.push(&close);
            assert_eq!(
                feed(role, pieces),
                closed,
                "{role:?}, reads of {sizes:?} then a close"
            );
        }
    }

    /// Feeds `pieces` to an upgraded connection, draining it after each as
    /// a driver would: what it wrote, what it said, and its state.
    fn feed(role: ws::Role, pieces: &[&[u8]]) -> (Vec<u8>, Vec<ws::Event>, ws::State) {
        let now = Instant::now();
        let config = ws::Config::default();
        let mut c = match role {
            ws::Role::Client => {
                ws::Connection::client_upgraded(config, Box::new(SeededEntropy::new(7)))
            }
            ws::Role::Server => ws::Connection::server_upgraded(config),
        };
        let (mut wire, mut events) = (Vec::new(), Vec::new());
        for p in pieces {
            c.handle_input(now, p);
            while let Some(t) = c.poll_transmit(now) {
                if let ws::Transmit::Data(b) = t {
                    wire.extend_from_slice(&b);
                }
            }
            events.extend(std::iter::from_fn(|| c.poll_event(now)));
        }
        (wire, events, c.state())
    }
}

/// Finding 4 (`ws_handshake`, input
/// `findings/ws_handshake-cut-short-text-after-our-close`): once a server
/// had failed the connection over a text frame that was not UTF-8 (close
/// frame sent, `Closed` emitted, waiting for the peer's close frame), a
/// second text frame ending in a cut-short UTF-8 sequence failed the
/// connection again when it arrived in one read, but was dropped as data
/// after our close when its payload came in a later read than its header.
/// Data after our close frame is now dropped unread however it arrives, so
/// the connection stays `Closing`, waiting for the peer's close frame.
#[test]
fn ws_cut_short_text_after_our_close_same_in_any_split() {
    run_bytes(
        &finding("ws_handshake-cut-short-text-after-our-close"),
        ws_handshake::run,
    );

    let key = [1u8, 2, 3, 4];
    let masked = |opcode: u8, payload: &[u8]| {
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    };
    // A stray continuation byte fails the connection; then "é" cut short.
    let mut wire = masked(1, &[0x80]);
    wire.extend(masked(1, b"ok \xc3"));
    let feed = |pieces: &[&[u8]]| {
        let now = Instant::now();
        let mut c = ws::Connection::server_upgraded(ws::Config::default());
        let (mut out, mut events) = (Vec::new(), Vec::new());
        for p in pieces {
            c.handle_input(now, p);
            while let Some(t) = c.poll_transmit(now) {
                if let ws::Transmit::Data(b) = t {
                    out.extend_from_slice(&b);
                }
            }
            events.extend(std::iter::from_fn(|| c.poll_event(now)));
        }
        (out, events, c.state())
    };
    let whole = feed(&[&wire]);
    assert_eq!(whole.2, ws::State::Closing);
    for a in 1..wire.len() {
        for b in a..wire.len() {
            let pieces: [&[u8]; 3] = [&wire[..a], &wire[a..b], &wire[b..]];
            assert_eq!(feed(&pieces), whole, "reads cut at {a} and {b}");
        }
    }
}

/// Finding 5 (`sio_server`, input
/// `findings/sio_server-ack-to-a-socket-closed-by-the-same-input`), in the
/// harness: a client sent an event that wants an ack and, in the same
/// input, a binary message no packet announced. The server queued the
/// event, then closed the malformed client and dropped its socket (queuing
/// its `Disconnect`), so the application's `ack`, given while it handled
/// the event, found no such socket. The harness required success for any
/// socket whose `Disconnect` it had not seen; it now accepts
/// `UnknownSocket` there if the `Disconnect` follows in the same drain.
/// The same sequence over HTTP long-polling, straight on the server:
#[test]
fn sio_ack_to_a_socket_closed_by_the_same_input() {
    use wsio::socketio::{self, UsageError};

    run_bytes(
        &finding("sio_server-ack-to-a-socket-closed-by-the-same-input"),
        wsio_fuzz::sio_server::run,
    );

    let now = Instant::now();
    let mut s = socketio::Server::new(
        socketio::Config::default(),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    let request = |s: &mut socketio::Server, head: &str, body: &str| {
        let c = s.accept(now, None);
        let req = format!(
            "{head}\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.handle_input(now, c, req.as_bytes());
        let mut wire = Vec::new();
        while let Some(t) = s.poll_transmit(now) {
            if let wsio::engineio::Transmit::Data { data, .. } = t {
                wire.extend_from_slice(&data);
            }
        }
        String::from_utf8_lossy(&wire).into_owned()
    };
    let open = request(
        &mut s,
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1",
        "",
    );
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let post = format!("POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1");
    request(&mut s, &post, "40");
    let Some(socketio::Event::Connection { socket, .. }) = s.poll_event(now) else {
        panic!("no connection");
    };
    // An event that wants ack 1, then a binary message out of nowhere.
    request(&mut s, &post, "421[\"echo\"]\u{1e}bAQI=");
    let Some(socketio::Event::Event { ack: Some(1), .. }) = s.poll_event(now) else {
        panic!("no event");
    };
    assert_eq!(
        s.ack(socket, 1, Vec::new()),
        Err(UsageError::UnknownSocket(socket))
    );
    assert!(matches!(
        s.poll_event(now),
        Some(socketio::Event::Disconnect { socket: gone, .. }) if gone == socket
    ));
}

/// Finding 6 (`ws_handshake`, input
/// `findings/ws_handshake-big-text-invalid-utf8-cut-short-client`): finding
/// 3 again, on a client, with the frame cut short. The header of a text
/// frame of 33214 bytes and its first four payload bytes, a stray
/// continuation byte among them, in one read (the large-frame path) left
/// an upgraded client `Closed`; the same bytes in three reads of 3, 3 and 2
/// bytes left it `Closing`, reading on for the server's close frame. Both
/// roles now fail the connection the same way however the bytes arrive.
#[test]
fn ws_big_text_invalid_utf8_cut_short_same_in_any_split() {
    run_bytes(
        &finding("ws_handshake-big-text-invalid-utf8-cut-short-client"),
        ws_handshake::run,
    );

    for role in [ws::Role::Client, ws::Role::Server] {
        let mut wire = vec![0x81, 0x7e, 0x81, 0xbe];
        let mut payload = vec![0x00, 0xbe, 0x41, 0x00];
        if role == ws::Role::Server {
            let key = [9u8, 8, 7, 6];
            wire[1] |= 0x80;
            wire.extend_from_slice(&key);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        wire.extend_from_slice(&payload);
        let feed = |pieces: &[&[u8]]| {
            let now = Instant::now();
            let config = ws::Config::default();
            let mut c = match role {
                ws::Role::Client => {
                    ws::Connection::client_upgraded(config, Box::new(SeededEntropy::new(7)))
                }
                ws::Role::Server => ws::Connection::server_upgraded(config),
            };
            let (mut out, mut events) = (Vec::new(), Vec::new());
            for p in pieces {
                c.handle_input(now, p);
                while let Some(t) = c.poll_transmit(now) {
                    if let ws::Transmit::Data(b) = t {
                        out.extend_from_slice(&b);
                    }
                }
                events.extend(std::iter::from_fn(|| c.poll_event(now)));
            }
            (out, events, c.state())
        };
        let whole = feed(&[&wire]);
        assert_eq!(whole.2, ws::State::Closing, "{role:?}");
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let pieces: [&[u8]; 3] = [&wire[..a], &wire[a..b], &wire[b..]];
                assert_eq!(feed(&pieces), whole, "{role:?}, reads cut at {a} and {b}");
            }
        }
    }
}
