//! What the fuzz targets found in wsio, kept as tests of the behaviour wsio
//! now has (both fixed; see "Findings" in README.md).

use std::time::Instant;

use bytes::Bytes;
use wsio::{
    engineio::{Config, Data, Event, Packet, Server, Transmit, decode_payload},
    entropy::SeededEntropy,
    socketio::{Number, Value},
};

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
