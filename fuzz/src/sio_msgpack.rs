//! The msgpack parser (`socketio::msgpack`).
//!
//! * Arbitrary bytes, and encodings of arbitrary packets with arbitrary
//!   bytes overwritten or cut off, through `msgpack::decode` never panic;
//!   a packet that decodes re-encodes to bytes that decode to an equal
//!   packet (see [`mp`]; numbers compare numerically, NaN equal to
//!   itself) and that re-encode to the same bytes.
//! * An arbitrary packet (a valid namespace and event name, arbitrary
//!   values) encodes to bytes that decode to the packet as JavaScript
//!   would see it ([`mp`]).
//! * The msgpack `MessageDecoder` gives the same as `decode` for a binary
//!   message and refuses a text one.

use arbitrary::Arbitrary;
use bytes::Bytes;
use wsio::{
    engineio::Data,
    socketio::{
        DecodeError, Packet, Value,
        msgpack::{self, Parser},
    },
};

use crate::values::{Pkt, same};

#[derive(Arbitrary, Debug)]
pub struct Input {
    raw: Vec<u8>,
    packet: Pkt,
    /// Bytes overwritten in the packet's encoding: (position, byte).
    edits: Vec<(u16, u8)>,
    /// Where to cut the edited encoding, if anywhere.
    cut: Option<u16>,
    text: String,
}

/// Runs the checks on one input.
pub fn run(input: Input) {
    decoded(&input.raw);

    let bytes = msgpack::encode(&input.packet.0);
    let back = msgpack::decode(&bytes).expect("an encoded packet decodes");
    let want = mp_packet(&input.packet.0);
    assert!(
        packets_same(&back, &want),
        "packet {:?} encoded {bytes:x?} decoded {back:?}, want {want:?}",
        input.packet.0
    );
    round_trip(&back);

    let mut edited = bytes.to_vec();
    for (at, b) in input.edits.iter().take(8) {
        if let Some(slot) = edited.get_mut(usize::from(*at) % bytes.len().max(1)) {
            *slot = *b;
        }
    }
    if let Some(cut) = input.cut {
        edited.truncate(usize::from(cut));
    }
    decoded(&edited);

    let mut d = Parser::Msgpack.decoder(10);
    assert_eq!(
        d.decode(Data::from(input.text)),
        Err(DecodeError::TextMessage)
    );
    assert!(!d.is_waiting());
}

/// `decode` on `raw`; a packet it gives round-trips.
fn decoded(raw: &[u8]) {
    let raw = Bytes::copy_from_slice(raw);
    let direct = msgpack::decode(&raw);
    let via = Parser::Msgpack.decoder(10).decode(Data::Binary(raw));
    match (&direct, via) {
        (Ok(p), Ok(Some(q))) => assert!(packets_same(p, &q)),
        (Err(e), Err(f)) => assert_eq!(*e, f),
        (a, b) => panic!("decode gave {a:?}, the MessageDecoder {b:?}"),
    }
    if let Ok(p) = direct {
        round_trip(&p);
    }
}

/// A decoded packet re-encodes to bytes that decode to it (as [`mp`] puts
/// it) and then encode to the same bytes.
fn round_trip(p: &Packet) {
    let again = msgpack::encode(p);
    let back = msgpack::decode(&again).expect("re-encoded packet decodes");
    let want = mp_packet(p);
    assert!(
        packets_same(&back, &want),
        "decoded {p:?}, re-encoded {again:x?}, decoded again {back:?}"
    );
    assert_eq!(msgpack::encode(&back), again, "encoding is stable");
}

/// What a value becomes through the msgpack encoder and decoder: object
/// members without `__proto__` (a prototype in JavaScript, not a member),
/// repeated keys merged (first position, last value), array indexes first
/// in ascending order, as `Object.keys` lists them; everything else as
/// it is (binary and non-finite numbers included).
pub fn mp(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(mp).collect()),
        Value::Object(o) => {
            let mut merged: Vec<(String, Value)> = Vec::with_capacity(o.len());
            for (k, v) in o.iter().filter(|(k, _)| k != "__proto__") {
                let v = mp(v);
                match merged.iter_mut().find(|(ek, _)| ek == k) {
                    Some(slot) => slot.1 = v,
                    None => merged.push((k.clone(), v)),
                }
            }
            let mut idx: Vec<(u32, (String, Value))> = Vec::new();
            let mut rest = Vec::new();
            for (k, e) in merged {
                match array_index(&k) {
                    Some(i) => idx.push((i, (k, e))),
                    None => rest.push((k, e)),
                }
            }
            idx.sort_by_key(|(i, _)| *i);
            Value::Object(idx.into_iter().map(|(_, m)| m).chain(rest).collect())
        }
        other => other.clone(),
    }
}

/// JavaScript's array-index keys, which `Object.keys` lists first.
fn array_index(k: &str) -> Option<u32> {
    if k.is_empty()
        || k.len() > 10
        || (k.len() > 1 && k.starts_with('0'))
        || !k.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    k.parse::<u64>()
        .ok()
        .filter(|&n| n < 4_294_967_295)
        .map(|n| n as u32)
}

fn mp_packet(p: &Packet) -> Packet {
    match p {
        Packet::Connect { nsp, data } => Packet::Connect {
            nsp: nsp.clone(),
            data: data.as_ref().map(mp),
        },
        Packet::Disconnect { nsp } => Packet::Disconnect { nsp: nsp.clone() },
        Packet::Event {
            nsp,
            id,
            name,
            args,
        } => Packet::Event {
            nsp: nsp.clone(),
            id: *id,
            name: name.clone(),
            args: args.iter().map(mp).collect(),
        },
        Packet::Ack { nsp, id, args } => Packet::Ack {
            nsp: nsp.clone(),
            id: *id,
            args: args.iter().map(mp).collect(),
        },
        Packet::ConnectError { nsp, data } => Packet::ConnectError {
            nsp: nsp.clone(),
            data: mp(data),
        },
    }
}

fn packets_same(a: &Packet, b: &Packet) -> bool {
    let all =
        |x: &[Value], y: &[Value]| x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b));
    match (a, b) {
        (Packet::Connect { nsp: n1, data: d1 }, Packet::Connect { nsp: n2, data: d2 }) => {
            n1 == n2
                && match (d1, d2) {
                    (Some(x), Some(y)) => same(x, y),
                    (None, None) => true,
                    _ => false,
                }
        }
        (
            Packet::Event {
                nsp: n1,
                id: i1,
                name: m1,
                args: a1,
            },
            Packet::Event {
                nsp: n2,
                id: i2,
                name: m2,
                args: a2,
            },
        ) => n1 == n2 && i1 == i2 && m1 == m2 && all(a1, a2),
        (
            Packet::Ack {
                nsp: n1,
                id: i1,
                args: a1,
            },
            Packet::Ack {
                nsp: n2,
                id: i2,
                args: a2,
            },
        ) => n1 == n2 && i1 == i2 && all(a1, a2),
        (
            Packet::ConnectError { nsp: n1, data: d1 },
            Packet::ConnectError { nsp: n2, data: d2 },
        ) => n1 == n2 && same(d1, d2),
        _ => a == b,
    }
}
