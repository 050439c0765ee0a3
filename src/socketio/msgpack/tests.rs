use super::*;
use crate::socketio::{Number, Value};

fn dec(bytes: &[u8]) -> Result<Packet, DecodeError> {
    decode(&Bytes::copy_from_slice(bytes))
}

fn event(args: Vec<Value>) -> Packet {
    Packet::Event {
        nsp: "/".into(),
        id: None,
        name: "x".into(),
        args,
    }
}

/// `{"type":2,"data":["x", <item>],"nsp":"/"}` with `item` raw.
fn with_arg(item: &[u8]) -> Vec<u8> {
    let mut m = b"\x83\xa4type\x02\xa4data\x92\xa1x".to_vec();
    m.extend_from_slice(item);
    m.extend_from_slice(b"\xa3nsp\xa1/");
    m
}

fn arg(item: &[u8]) -> Result<Value, DecodeError> {
    match dec(&with_arg(item))? {
        Packet::Event { mut args, .. } => Ok(args.remove(0)),
        p => panic!("{p:?}"),
    }
}

fn packets() -> Vec<Packet> {
    vec![
        Packet::Connect {
            nsp: "/".into(),
            data: None,
        },
        Packet::Connect {
            nsp: "/admin".into(),
            data: Some(Value::object([("token", Value::from("t"))])),
        },
        Packet::Disconnect {
            nsp: "/admin".into(),
        },
        event(vec![]),
        Packet::Event {
            nsp: "/chat".into(),
            id: Some(u64::MAX),
            name: "é".repeat(40),
            args: vec![
                Value::Binary(Bytes::from(vec![1u8; 300])),
                Value::Array((0..20u64).map(Value::from).collect()),
                Value::object((0..20).map(|i| (format!("k{i}"), Value::from(-i)))),
                Value::from(-1.5),
                Value::Null,
                Value::Bool(true),
                Value::from("s".repeat(70_000)),
            ],
        },
        Packet::Ack {
            nsp: "/".into(),
            id: 3,
            args: vec![Value::from(1u64 << 40)],
        },
        Packet::ConnectError {
            nsp: "/x".into(),
            data: Value::object([("message", Value::from("no"))]),
        },
        Packet::ConnectError {
            nsp: "/".into(),
            data: Value::from("no"),
        },
    ]
}

#[test]
fn packets_round_trip_and_sizes_are_exact() {
    for p in packets() {
        let bytes = encode(&p);
        assert_eq!(decode(&bytes).as_ref(), Ok(&p));
        let (kind, nsp, id, body) = p.parts();
        let id = id.filter(|_| matches!(kind, 2 | 3));
        assert_eq!(
            encode::packet_size(kind, nsp, id, body),
            bytes.len(),
            "{p:?}"
        );
    }
}

#[test]
fn exact_bytes() {
    let cases: &[(Packet, &[u8])] = &[
        (
            Packet::Connect {
                nsp: "/".into(),
                data: None,
            },
            b"\x83\xa4type\x00\xa4data\xd4\x00\x00\xa3nsp\xa1/",
        ),
        (
            Packet::Disconnect { nsp: "/".into() },
            b"\x82\xa4type\x01\xa3nsp\xa1/",
        ),
        (
            Packet::Ack {
                nsp: "/".into(),
                id: 300,
                args: vec![],
            },
            b"\x84\xa2id\xcd\x01\x2c\xa4type\x03\xa4data\x90\xa3nsp\xa1/",
        ),
        (
            Packet::ConnectError {
                nsp: "/a".into(),
                data: Value::from("no"),
            },
            b"\x83\xa4type\x04\xa3nsp\xa2/a\xa4data\xa2no",
        ),
    ];
    for (p, want) in cases {
        assert_eq!(&encode(p)[..], *want, "{p:?}");
    }
}

#[test]
fn numbers_encode_as_notepack_does() {
    let cases: &[(Number, &[u8])] = &[
        (Number::U64(0), b"\x00"),
        (Number::U64(200), b"\xcc\xc8"),
        (Number::I64(5), b"\x05"),
        (Number::I64(-33), b"\xd0\xdf"),
        (Number::F64(3.0), b"\x03"),
        (Number::F64(-0.0), b"\x00"),
        (Number::F64(-40_000.0), b"\xd2\xff\xff\x63\xc0"),
        (
            Number::F64(4_294_967_296.0),
            b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00",
        ),
        (
            Number::F64(-9_223_372_036_854_775_808.0),
            b"\xd3\x80\0\0\0\0\0\0\0",
        ),
        (Number::F64(1.5), b"\xcb\x3f\xf8\0\0\0\0\0\0"),
        (
            Number::F64(18_446_744_073_709_551_616.0),
            b"\xcb\x43\xf0\0\0\0\0\0\0",
        ),
        (Number::F64(f64::INFINITY), b"\xcb\x7f\xf0\0\0\0\0\0\0"),
    ];
    for (n, want) in cases {
        let bytes = encode(&event(vec![Value::Number(*n)]));
        assert_eq!(&bytes[..], &with_arg(want)[..], "{n:?}");
        assert_eq!(arg(want), Ok(Value::Number(*n)), "{n:?}");
    }
    // NaN keeps its bits.
    let nan = f64::from_bits(0x7ff8_0000_0000_0001);
    let bytes = encode(&event(vec![Value::from(nan)]));
    let mut want = vec![0xcb];
    want.extend_from_slice(&nan.to_bits().to_be_bytes());
    assert_eq!(&bytes[..], &with_arg(&want)[..]);
}

#[test]
fn object_keys_come_in_javascript_order() {
    let v = Value::object(
        [("b", 1u64), ("7", 2), ("a", 3), ("1", 4), ("b", 5)].map(|(k, n)| (k, Value::from(n))),
    );
    let bytes = encode(&event(vec![v]));
    assert_eq!(
        &bytes[..],
        &with_arg(b"\x85\xa11\x04\xa17\x02\xa1b\x01\xa1a\x03\xa1b\x05")[..]
    );
    // Repeated keys: the first place, the last value.
    let back = match decode(&bytes) {
        Ok(Packet::Event { args, .. }) => args,
        other => panic!("{other:?}"),
    };
    let want = Value::object(
        [("1", 4u64), ("7", 2), ("b", 5), ("a", 3)].map(|(k, n)| (k, Value::from(n))),
    );
    assert_eq!(back, [want]);
}

#[test]
fn binary_is_a_slice_of_the_message() {
    for item in [&b"\xc4\x03abc"[..], b"\xc7\x03\x00abc"] {
        let msg = Bytes::from(with_arg(item));
        let Ok(Packet::Event { args, .. }) = decode(&msg) else {
            panic!()
        };
        let Value::Binary(b) = &args[0] else { panic!() };
        assert_eq!(&b[..], b"abc");
        let range = msg.as_ptr_range();
        assert!(range.contains(&b.as_ptr()));
    }
}

#[test]
fn every_strict_prefix_is_truncated_and_trailing_bytes_refused() {
    for p in packets() {
        let bytes = encode(&p);
        for n in 0..bytes.len() {
            let got = decode(&bytes.slice(..n));
            assert!(
                matches!(got, Err(DecodeError::Msgpack(MsgpackError::Truncated))),
                "{p:?} cut at {n}: {got:?}"
            );
        }
        let mut long = bytes.to_vec();
        long.push(0xc0);
        assert_eq!(
            dec(&long),
            Err(DecodeError::Msgpack(MsgpackError::TrailingBytes))
        );
    }
}

#[test]
fn declared_lengths_beyond_the_message_are_refused_up_front() {
    for item in [
        &b"\xdb\xff\xff\xff\xff"[..],
        b"\xc6\xff\xff\xff\xff",
        b"\xc9\xff\xff\xff\xff\x00",
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xdc\x00\x03\xc0\xc0",
        b"\xde\x00\x02\xa0\xc0\xa0",
    ] {
        assert_eq!(
            arg(item),
            Err(DecodeError::Msgpack(MsgpackError::Truncated)),
            "{item:x?}"
        );
    }
    assert_eq!(
        dec(b"\xdf\xff\xff\xff\xff\xa4type"),
        Err(DecodeError::Msgpack(MsgpackError::Truncated))
    );
}

#[test]
fn nesting_is_limited() {
    let nested = |n: usize| {
        let mut item = vec![0x91; n - 1];
        item.push(0x90);
        item
    };
    // `data` holds the name and a value nested `n` deep: 127 levels in all.
    assert!(arg(&nested(126)).is_ok());
    assert_eq!(
        arg(&nested(127)),
        Err(DecodeError::Msgpack(MsgpackError::TooDeep))
    );
    // Deep maps are stopped before they exhaust the stack.
    let mut maps = b"\x81\xa1k".repeat(100_000);
    maps.push(0xc0);
    assert_eq!(arg(&maps), Err(DecodeError::Msgpack(MsgpackError::TooDeep)));
}

#[test]
fn values_as_javascript_sees_them() {
    let s = |x: &str| Ok(Value::from(x));
    // Malformed UTF-8 as Node decodes it.
    assert_eq!(arg(b"\xa4\xff\x41\xe2\x82"), s("\u{fffd}A\u{fffd}"));
    // Dates as JSON writes them.
    assert_eq!(
        arg(b"\xd7\x00\0\0\0\0\0\0\0\0"),
        s("1970-01-01T00:00:00.000Z")
    );
    assert_eq!(
        arg(b"\xd7\x00\x00\x00\x01\x8d\xf4\xf7\xf4\x11"),
        s("2024-02-29T13:05:07.089Z")
    );
    assert_eq!(arg(b"\xd7\x00\x80\0\0\0\0\0\0\0"), Ok(Value::Null));
    // Other extensions as [type, bytes].
    assert_eq!(
        arg(b"\xd5\x09\x01\x02"),
        Ok(Value::Array(vec![
            Value::from(9),
            Value::Binary(Bytes::from_static(b"\x01\x02"))
        ]))
    );
    // Keys.
    let keys = arg(b"\x85\x01\x00\xcb\x80\0\0\0\0\0\0\0\x01\xcb\x44\x4b\x1a\xe4\xd6\xe2\xef\x50\x02\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x03\xc2\x04");
    let names: Vec<String> = match keys {
        Ok(Value::Object(o)) => o.into_iter().map(|(k, _)| k).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names, ["1", "0", "1e+21", "18446744073709552000", "false"]);
    assert_eq!(
        arg(b"\x81\x90\xc0"),
        Err(DecodeError::Msgpack(MsgpackError::UnsupportedKey))
    );
    assert_eq!(
        arg(b"\x81\xd4\x01\x00\xc0"),
        Err(DecodeError::Msgpack(MsgpackError::UnsupportedKey))
    );
    assert_eq!(
        arg(b"\xc1"),
        Err(DecodeError::Msgpack(MsgpackError::ReservedMarker))
    );
}

#[test]
fn packet_checks() {
    use DecodeError::*;
    let cases: &[(&[u8], DecodeError)] = &[
        (b"\x92\x02\xa1/", Msgpack(MsgpackError::NotAMap)),
        (b"\x82\xa4type\x07\xa3nsp\xa1/", UnknownType),
        (b"\x81\xa4type\x01", BadNamespace),
        (b"\x82\xa4type\x01\xa3nsp\x01", BadNamespace),
        (b"\x83\xa4type\x01\xa3nsp\xa1/\xa4data\x80", BadPayload),
        (b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x90", BadPayload),
        (b"\x83\xa4type\x03\xa3nsp\xa1/\xa4data\x90", BadPayload),
        (
            b"\x84\xa4type\x03\xa3nsp\xa1/\xa4data\x90\xa2id\xff",
            BadAckId,
        ),
        (
            b"\x84\xa4type\x03\xa3nsp\xa1/\xa4data\x90\xa2id\xcb\x43\xf0\0\0\0\0\0\0",
            BadAckId,
        ),
        (b"\x83\xa4type\x00\xa3nsp\xa1/\xa2id\xa11", BadAckId),
    ];
    for (input, want) in cases {
        assert_eq!(dec(input), Err(want.clone()), "{input:x?}");
    }
    // A whole float is an integer, as `Number.isInteger` says.
    assert_eq!(
        dec(b"\x84\xa4type\xcb\x40\x08\0\0\0\0\0\0\xa3nsp\xa1/\xa4data\x90\xa2id\xca\x40\x40\0\0"),
        Ok(Packet::Ack {
            nsp: "/".into(),
            id: 3,
            args: vec![]
        })
    );
}

#[test]
fn parser_entry_points() {
    let p = event(vec![Value::Binary(Bytes::from_static(b"\x01"))]);
    assert_eq!(
        Parser::Default.encode(&p),
        Encoded::Text {
            text: p.encode().0,
            attachments: p.encode().1
        }
    );
    assert_eq!(Parser::Msgpack.encode(&p), Encoded::Binary(encode(&p)));
    for parser in [Parser::Default, Parser::Msgpack] {
        let mut d = parser.decoder(10);
        assert_eq!(d.parser(), parser);
        let mut out = None;
        for m in parser.encode(&p).into_messages() {
            assert_eq!(out, None);
            out = d.decode(m).unwrap();
        }
        assert_eq!(out, Some(p.clone()));
        assert!(!d.is_waiting());
    }
    let mut d = Parser::Msgpack.decoder(10);
    assert_eq!(
        d.decode(Data::from("2[\"x\"]")),
        Err(DecodeError::TextMessage)
    );
    let mut d = Parser::Default.decoder(10);
    assert_eq!(
        d.decode(Data::Binary(encode(&p))),
        Err(DecodeError::UnexpectedBinary)
    );
}
