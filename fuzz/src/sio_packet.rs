//! The Socket.IO packet codec, `Value`'s JSON and the serde bridge.
//!
//! * A `Decoder` fed an arbitrary interleaving of text and binary messages
//!   (arbitrary strings, encodings of arbitrary packets, attachments) never
//!   panics; every packet it gives, re-encoded with `Packet::encode`,
//!   decodes to the same packet (numbers compare numerically) and encodes
//!   to the same text and attachments again. After an error the decoder is
//!   replaced, as a server drops the connection.
//! * An arbitrary packet (a valid namespace and event name, arbitrary
//!   values) encodes to text and attachments that decode to the packet as
//!   JavaScript would see it (see `values::js_packet`), and that re-encodes to
//!   the same bytes.
//! * `Value::from_json` (wsio's own parser) gives exactly what serde_json
//!   driving `Value`'s `Deserialize` gives, compared through `Debug` (so
//!   `1` and `1.0` differ), or both refuse.
//! * `Value::from_json` on an arbitrary string: a parsed value serialises
//!   (`to_json`) to JSON that parses to its JavaScript form, and
//!   serialising is idempotent. An arbitrary value round-trips through
//!   `to_json` to its JavaScript form (binary leaves as `null`).
//! * `to_value(&v)` and `from_value::<Value>(v)` give `v` with repeated
//!   keys merged; `from_value` into assorted typed shapes never panics, and
//!   a typed value read back from its own `to_value` is unchanged.

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wsio::socketio::{Decoder, Packet, Value, from_value, to_value};

use crate::values::{self, AnyPkt, Pkt, Val, decode_encoded, js, js_packet, same};

#[derive(Arbitrary, Debug)]
pub enum Msg {
    Text(String),
    Binary(Vec<u8>),
    /// An encoded packet: its text, then up to `keep` of its attachments.
    Packet {
        packet: AnyPkt,
        keep: u8,
    },
    /// A fixed prefix (type, attachment count, namespace, ack id) before
    /// arbitrary text.
    Prefixed {
        prefix: u8,
        rest: String,
    },
}

const PREFIXES: [&str; 12] = [
    "0", "1", "2", "3", "4", "51-", "52-", "61-", "0/admin,", "2/x,12", "3/y,7", "511-",
];

#[derive(Arbitrary, Debug)]
pub struct Input {
    max_attachments: u8,
    msgs: Vec<Msg>,
    packet: Pkt,
    json: String,
    value: Val,
}

/// Runs the checks on one input.
pub fn run(input: Input) {
    decoder(usize::from(input.max_attachments % 12), input.msgs);
    packet(&input.packet.0);
    json(&input.json);
    value(&input.value.0);
}

fn decoder(max: usize, msgs: Vec<Msg>) {
    let mut d = Decoder::new(max);
    let feed = |d: &mut Decoder, text: Option<&str>, bin: Option<Bytes>| {
        let r = match (text, bin) {
            (Some(t), _) => d.decode_text(t),
            (None, Some(b)) => d.decode_binary(b),
            (None, None) => return,
        };
        match r {
            Ok(Some(p)) => {
                assert!(
                    !d.is_waiting(),
                    "a packet came out with attachments pending"
                );
                round_trip(&p);
            }
            Ok(None) => assert!(d.is_waiting(), "nothing decoded, nothing pending"),
            Err(_) => *d = Decoder::new(max),
        }
    };
    for m in msgs.into_iter().take(32) {
        match m {
            Msg::Text(t) => feed(&mut d, Some(&t), None),
            Msg::Binary(b) => feed(&mut d, None, Some(Bytes::from(b))),
            Msg::Packet { packet, keep } => {
                let (text, att) = packet.0.encode();
                feed(&mut d, Some(&text), None);
                for a in att.into_iter().take(usize::from(keep)) {
                    feed(&mut d, None, Some(a));
                }
            }
            Msg::Prefixed { prefix, rest } => {
                let t = format!("{}{rest}", PREFIXES[usize::from(prefix) % PREFIXES.len()]);
                feed(&mut d, Some(&t), None);
            }
        }
    }
}

/// A decoded packet re-encodes to one that decodes to it, and encoding is
/// then stable.
fn round_trip(p: &Packet) {
    let (text, att) = p.encode();
    let back = decode_encoded(&text, &att).expect("re-encoded packet decodes to a packet");
    assert!(
        packets_same(&back, p),
        "decoded {p:?}, re-encoded {text:?}, decoded again {back:?}"
    );
    assert_eq!(back.encode(), (text, att), "encoding is stable");
}

fn packet(p: &Packet) {
    let (text, att) = p.encode();
    let back = decode_encoded(&text, &att).expect("an encoded packet decodes");
    let want = js_packet(p);
    assert!(
        packets_same(&back, &want),
        "packet {p:?} encoded {text:?} decoded {back:?}, want {want:?}"
    );
    // Not byte-stable from `p` itself (repeated keys are written twice),
    // but from what the decoder made of it.
    round_trip(&back);
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

fn json(text: &str) {
    let fast = Value::from_json(text).map(|v| format!("{v:?}")).ok();
    let reference = serde_json::from_str::<Value>(text)
        .map(|v| format!("{v:?}"))
        .ok();
    assert_eq!(
        fast, reference,
        "from_json and serde_json disagree on {text:?}"
    );
    let Ok(v) = Value::from_json(text) else {
        return;
    };
    let out = v.to_json();
    let back = Value::from_json(&out).expect("to_json output parses");
    assert!(
        same(&back, &js(&v, true)),
        "{text:?} -> {out:?} -> {back:?}"
    );
    assert_eq!(back.to_json(), out, "to_json is stable");
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Kind {
    Unit,
    New(i64),
    Tuple(u8, String),
    Named { x: u32, y: Option<bool> },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Typed {
    a: u64,
    b: Option<String>,
    c: Vec<i32>,
    d: Kind,
    e: BTreeMap<String, bool>,
    f: Option<Bytes>,
    g: (u8, char),
    #[serde(default)]
    h: Vec<Kind>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Unit;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Newtype(Vec<u16>);

/// `from_value` into `T`; if it fits, `to_value` and back gives the same.
fn typed<T>(v: &Value)
where
    T: Serialize + for<'de> Deserialize<'de> + std::fmt::Debug,
{
    if let Ok(t) = from_value::<T>(v.clone()) {
        let again = to_value(&t).expect("a typed value serialises");
        let back = from_value::<T>(again).expect("its own value reads back");
        // Debug, not PartialEq: floats may be NaN.
        assert_eq!(
            format!("{back:?}"),
            format!("{t:?}"),
            "typed round trip of {v:?}"
        );
    }
}

fn value(v: &Value) {
    let out = v.to_json();
    let back = Value::from_json(&out).expect("to_json output parses");
    assert!(same(&back, &js(v, true)), "{v:?} -> {out:?} -> {back:?}");
    // Stable from what was parsed (`v` itself may repeat keys).
    json(&out);

    let want = values::dedup(v);
    let tv = to_value(v).expect("a Value serialises");
    assert!(same(&tv, &want), "to_value({v:?}) = {tv:?}");
    let fv = from_value::<Value>(v.clone()).expect("a Value deserialises as a Value");
    assert!(same(&fv, &want), "from_value({v:?}) = {fv:?}");

    typed::<Typed>(v);
    typed::<Kind>(v);
    typed::<Vec<Kind>>(v);
    typed::<Unit>(v);
    typed::<Newtype>(v);
    typed::<Option<bool>>(v);
    typed::<(u8, String)>(v);
    typed::<BTreeMap<String, i64>>(v);
    typed::<BTreeMap<String, Vec<u8>>>(v);
    typed::<Vec<Option<f64>>>(v);
    typed::<f32>(v);
    // Read, not written: serde's default `serialize_i128` refuses.
    let _ = from_value::<i128>(v.clone());
    typed::<char>(v);
    typed::<Bytes>(v);
    typed::<String>(v);
    typed::<()>(v);
}
