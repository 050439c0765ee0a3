//! The Engine.IO packet codec and the long-polling payload.
//!
//! * `Packet::decode_binary` on arbitrary bytes is a binary message of
//!   those bytes.
//! * `Packet::decode_text` on arbitrary UTF-8: fails exactly on an empty
//!   packet, an unknown type character or bad base64; a decoded packet
//!   re-encodes (`encode_text`) to text that decodes to the same packet.
//! * `decode_payload` on arbitrary bytes: refuses non-UTF-8 alone; gives at
//!   most one packet per separator-delimited piece; the packets it decoded
//!   (if any) re-encode with `encode_payload` to a payload that decodes to
//!   the same packets without error.
//! * An arbitrary non-empty list of packets survives `encode_payload` then
//!   `decode_payload` unless a text holds the `\x1e` separator; each packet
//!   alone survives `encode_text` then `decode_text` regardless.

use crate::wire::TYPES;
use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use wsio::{
    engineio::{Data, DecodeError, Packet, PacketType, SEPARATOR, decode_payload, encode_payload},
    ws::Utf8Bytes,
};

#[derive(Arbitrary, Debug)]
pub enum PacketIn {
    Text { kind: u8, text: String },
    Binary(Vec<u8>),
}

impl PacketIn {
    fn build(&self) -> Packet {
        match self {
            PacketIn::Text { kind, text } => {
                Packet::with_text(TYPES[usize::from(*kind) % TYPES.len()], text.clone())
            }
            PacketIn::Binary(b) => Packet::message(b.clone()),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    raw: Vec<u8>,
    packets: Vec<PacketIn>,
}

/// Runs the checks on one input.
pub fn run(input: Input) {
    let raw = Bytes::from(input.raw);

    assert_eq!(
        Packet::decode_binary(raw.clone()),
        Packet::message(raw.clone()),
        "a binary frame is a message"
    );

    if let Ok(text) = Utf8Bytes::try_from(raw.clone()) {
        check_text(text);
    }

    check_payload(raw);

    let packets: Vec<Packet> = input.packets.iter().take(16).map(PacketIn::build).collect();
    for p in &packets {
        let mut out = BytesMut::new();
        p.encode_text(&mut out);
        let text = Utf8Bytes::try_from(out.freeze()).expect("encode_text gives UTF-8");
        assert_eq!(
            Packet::decode_text(text).as_ref(),
            Ok(p),
            "packet round trip"
        );
    }
    if !packets.is_empty() {
        let separated = packets
            .iter()
            .any(|p| matches!(&p.data, Data::Text(t) if t.as_bytes().contains(&SEPARATOR)));
        let (back, err) = decode_payload(encode_payload(&packets));
        if !separated {
            assert_eq!(err, None, "payload of {packets:?}");
            assert_eq!(back, packets, "payload round trip");
        }
    }
}

fn check_text(text: Utf8Bytes) {
    let first = text.as_bytes().first().copied();
    match Packet::decode_text(text.clone()) {
        Ok(p) => {
            let first = first.expect("an empty packet decoded");
            match &p.data {
                Data::Binary(_) => {
                    assert_eq!(first, b'b');
                    assert_eq!(p.kind, PacketType::Message);
                }
                Data::Text(t) => {
                    assert_eq!(p.kind.as_char(), first);
                    assert_eq!(
                        t.as_bytes()[..],
                        text.as_bytes()[1..],
                        "text data is the rest"
                    );
                }
            }
            let mut out = BytesMut::new();
            p.encode_text(&mut out);
            let again = Utf8Bytes::try_from(out.freeze()).expect("encode_text gives UTF-8");
            assert_eq!(Packet::decode_text(again), Ok(p), "re-encoded packet");
        }
        Err(DecodeError::Empty) => assert_eq!(first, None),
        Err(DecodeError::UnknownType(c)) => {
            assert_eq!(Some(c), first);
            assert!(!matches!(c, b'0'..=b'6' | b'b'), "type {c:#x} refused");
        }
        Err(DecodeError::Base64) => assert_eq!(first, Some(b'b')),
        Err(e) => panic!("decode_text: {e:?}"),
    }
}

fn check_payload(raw: Bytes) {
    let utf8 = std::str::from_utf8(&raw).is_ok();
    let pieces = raw.iter().filter(|&&b| b == SEPARATOR).count() + 1;
    let (packets, err) = decode_payload(raw);
    if !utf8 {
        assert_eq!((packets.len(), err), (0, Some(DecodeError::Utf8)));
        return;
    }
    assert_ne!(err, Some(DecodeError::Utf8));
    assert!(
        packets.len() <= pieces,
        "{} packets from {pieces} pieces",
        packets.len()
    );
    if err.is_none() {
        assert_eq!(packets.len(), pieces, "every piece decoded");
    }
    for p in &packets {
        if let Data::Text(t) = &p.data {
            assert!(
                !t.as_bytes().contains(&SEPARATOR),
                "separator inside a packet"
            );
        }
    }
    if !packets.is_empty() {
        let (back, err) = decode_payload(encode_payload(&packets));
        assert_eq!(err, None, "re-encoded payload of {packets:?}");
        assert_eq!(back, packets, "re-encoded payload");
    }
}
