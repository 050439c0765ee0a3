//! Bounded generators shared by the Engine.IO and Socket.IO targets, and the
//! normalisations their round-trip checks compare against.
//!
//! * [`Val`] is a Socket.IO [`Value`] of bounded depth and size, with the
//!   numbers, keys and strings that matter (integer-like object keys, which
//!   `JSON.stringify` moves first; NaN and the infinities, which it writes
//!   as `null`; `_placeholder`, which binary packets give a meaning).
//! * [`js`] is what a value becomes after `to_json` and a parse: object
//!   members deduplicated (first position, last value) and in JavaScript's
//!   order, non-finite numbers and (optionally) binary leaves `null`.
//! * [`dedup`] is what `to_value` and `from_value::<Value>` give back:
//!   repeated keys merged, nothing reordered; [`same`] compares values with
//!   NaN equal to itself.

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use wsio::socketio::{Number, Packet, RESERVED_EVENTS, Value};

/// Object keys the generator favours; the rest are arbitrary strings.
const KEYS: [&str; 14] = [
    "a",
    "b",
    "0",
    "1",
    "10",
    "01",
    "4294967294",
    "4294967295",
    "_placeholder",
    "num",
    "sid",
    "message",
    "data",
    "",
];

const FLOATS: [f64; 12] = [
    0.0,
    -0.0,
    1.5,
    -3.75,
    1e21,
    1e-7,
    0.000001,
    1e16,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    5e-324,
];

/// An arbitrary string of at most `max` bytes (cut at a char boundary).
pub fn string(u: &mut Unstructured, max: usize) -> Result<String> {
    let mut s: String = u.arbitrary()?;
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    Ok(s)
}

/// Arbitrary bytes, at most `max`.
pub fn bytes(u: &mut Unstructured, max: usize) -> Result<Vec<u8>> {
    let n = u.int_in_range(0..=max)?;
    Ok(u.bytes(n)?.to_vec())
}

/// An arbitrary number: any `u64`, `i64` or `f64` bit pattern, small
/// fractions, and the awkward floats.
pub fn number(u: &mut Unstructured) -> Result<Number> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Number::U64(u.arbitrary()?),
        1 => Number::I64(u.arbitrary()?),
        2 => Number::F64(f64::from_bits(u.arbitrary()?)),
        3 => Number::F64(f64::from(u.arbitrary::<i32>()?) / 8.0),
        4 => Number::F64(*u.choose(&FLOATS)?),
        _ => Number::U64(u.int_in_range(0..=16)?),
    })
}

/// A value of depth at most `depth`; `_placeholder` keys only if
/// `placeholder_keys`.
pub fn value(u: &mut Unstructured, depth: u32, placeholder_keys: bool) -> Result<Value> {
    let top = if depth == 0 { 5 } else { 7 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(number(u)?),
        3 => Value::String(string(u, 24)?),
        4 => Value::Binary(Bytes::from(bytes(u, 24)?)),
        5 => Value::String(u.choose(&KEYS)?.to_string()),
        6 => {
            let n = u.int_in_range(0..=4)?;
            let mut a = Vec::with_capacity(n);
            for _ in 0..n {
                a.push(value(u, depth - 1, placeholder_keys)?);
            }
            Value::Array(a)
        }
        _ => {
            let n = u.int_in_range(0..=4)?;
            let mut o = Vec::with_capacity(n);
            for _ in 0..n {
                o.push((
                    key(u, placeholder_keys)?,
                    value(u, depth - 1, placeholder_keys)?,
                ));
            }
            Value::Object(o)
        }
    })
}

fn key(u: &mut Unstructured, placeholder_keys: bool) -> Result<String> {
    let k = if u.arbitrary()? {
        u.choose(&KEYS)?.to_string()
    } else {
        string(u, 12)?
    };
    Ok(if !placeholder_keys && k == "_placeholder" {
        "_placeholder_".to_owned()
    } else {
        k
    })
}

/// A value of depth at most 4 that may use `_placeholder` keys.
#[derive(Debug, Clone)]
pub struct Val(pub Value);

impl<'a> Arbitrary<'a> for Val {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        value(u, 4, true).map(Val)
    }
}

/// A value of depth at most 4 without `_placeholder` keys (so that binary
/// packets built from it are not ambiguous).
#[derive(Debug, Clone)]
pub struct PlainVal(pub Value);

impl<'a> Arbitrary<'a> for PlainVal {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        value(u, 4, false).map(PlainVal)
    }
}

/// Up to `max` values.
pub fn values(u: &mut Unstructured, max: usize, placeholder_keys: bool) -> Result<Vec<Value>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| value(u, 3, placeholder_keys)).collect()
}

/// Arguments for an emit: up to 3 values without `_placeholder` keys.
#[derive(Debug, Clone)]
pub struct Args(pub Vec<Value>);

impl<'a> Arbitrary<'a> for Args {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        values(u, 3, false).map(Args)
    }
}

/// Namespaces the upper-layer targets use, the first ones registered on
/// their servers.
pub const NSPS: [&str; 6] = ["/", "/admin", "/chat", "/dyn-x", "/nope", "/a/b"];

/// An event name: a few fixed ones (reserved ones included), or arbitrary.
#[derive(Debug, Clone)]
pub struct Name(pub String);

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        const NAMES: [&str; 5] = ["message", "echo", "x", "connect", "disconnect"];
        Ok(Name(if u.arbitrary()? {
            u.choose(&NAMES)?.to_string()
        } else {
            string(u, 16)?
        }))
    }
}

/// A namespace: one of [`NSPS`], or `/` and an arbitrary tail (commas
/// dropped when `clean`).
pub fn nsp(u: &mut Unstructured, clean: bool) -> Result<String> {
    if u.ratio(3, 4)? {
        return Ok(u.choose(&NSPS)?.to_string());
    }
    let tail = string(u, 12)?;
    let tail = if clean { tail.replace(',', "") } else { tail };
    Ok(format!("/{tail}"))
}

/// A Socket.IO packet, valid for `Packet::encode` (a namespace that starts
/// with `/` and has no comma; a connect payload that is an object; a
/// non-reserved event name), optionally with `_placeholder` keys.
pub fn packet(u: &mut Unstructured, placeholder_keys: bool) -> Result<Packet> {
    let nsp = nsp(u, true)?;
    Ok(match u.int_in_range(0..=4)? {
        0 => Packet::Connect {
            nsp: nsp.into(),
            data: if u.arbitrary()? {
                Some(object(u, placeholder_keys)?)
            } else {
                None
            },
        },
        1 => Packet::Disconnect { nsp: nsp.into() },
        2 => {
            let mut name = Name::arbitrary(u)?.0;
            if RESERVED_EVENTS.contains(&name.as_str()) {
                name.push('!');
            }
            Packet::Event {
                nsp: nsp.into(),
                id: if u.arbitrary()? {
                    Some(u.arbitrary()?)
                } else {
                    None
                },
                name,
                args: values(u, 4, placeholder_keys)?,
            }
        }
        3 => Packet::Ack {
            nsp: nsp.into(),
            id: u.arbitrary()?,
            args: values(u, 4, placeholder_keys)?,
        },
        _ => Packet::ConnectError {
            nsp: nsp.into(),
            data: if u.arbitrary()? {
                object(u, placeholder_keys)?
            } else {
                Value::String(string(u, 16)?)
            },
        },
    })
}

fn object(u: &mut Unstructured, placeholder_keys: bool) -> Result<Value> {
    let n = u.int_in_range(0..=3)?;
    let mut o = Vec::with_capacity(n);
    for _ in 0..n {
        o.push((key(u, placeholder_keys)?, value(u, 2, placeholder_keys)?));
    }
    Ok(Value::Object(o))
}

/// A packet from [`packet`] without `_placeholder` keys.
#[derive(Debug, Clone)]
pub struct Pkt(pub Packet);

impl<'a> Arbitrary<'a> for Pkt {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        packet(u, false).map(Pkt)
    }
}

/// A packet from [`packet`] that may hold `_placeholder` keys.
#[derive(Debug, Clone)]
pub struct AnyPkt(pub Packet);

impl<'a> Arbitrary<'a> for AnyPkt {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        packet(u, true).map(AnyPkt)
    }
}

// ----- normalisations ------------------------------------------------------

/// JavaScript's array-index keys, which `JSON.stringify` writes first.
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

/// Repeated keys merged as JavaScript does: first position, last value.
fn merge(o: &[(String, Value)], f: &impl Fn(&Value) -> Value) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::with_capacity(o.len());
    for (k, v) in o {
        let v = f(v);
        match out.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k.clone(), v)),
        }
    }
    out
}

/// What `v` becomes through `to_json` and a parse (see the module docs);
/// binary leaves become `null` when `binary_null`, else stay.
pub fn js(v: &Value, binary_null: bool) -> Value {
    match v {
        Value::Number(Number::F64(f)) if !f.is_finite() => Value::Null,
        Value::Binary(_) if binary_null => Value::Null,
        Value::Array(a) => Value::Array(a.iter().map(|e| js(e, binary_null)).collect()),
        Value::Object(o) => {
            let merged = merge(o, &|e| js(e, binary_null));
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

/// Repeated object keys merged, nothing else changed.
pub fn dedup(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(dedup).collect()),
        Value::Object(o) => Value::Object(merge(o, &dedup)),
        other => other.clone(),
    }
}

/// Structural equality with numbers compared numerically and NaN equal to
/// NaN. Floats must come back exactly: finding 1 of the README (serde_json
/// without `float_roundtrip` parsed some a few ULPs off) is fixed.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().is_nan() && y.as_f64().is_nan()) || x == y
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

/// What a packet becomes through `Packet::encode` and the decoder: values
/// as [`js`] makes them, binary leaves kept where attachments carry them
/// (events and acks) and `null` where they cannot (connect payloads).
pub fn js_packet(p: &Packet) -> Packet {
    match p {
        Packet::Connect { nsp, data } => Packet::Connect {
            nsp: nsp.clone(),
            data: data.as_ref().map(|d| js(d, true)),
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
            args: args.iter().map(|a| js(a, false)).collect(),
        },
        Packet::Ack { nsp, id, args } => Packet::Ack {
            nsp: nsp.clone(),
            id: *id,
            args: args.iter().map(|a| js(a, false)).collect(),
        },
        Packet::ConnectError { nsp, data } => Packet::ConnectError {
            nsp: nsp.clone(),
            data: js(data, true),
        },
    }
}

/// Feeds an encoded packet to a fresh decoder: the packet once the last
/// attachment is in (and `None` before), or the first error.
pub fn decode_encoded(text: &str, attachments: &[Bytes]) -> Option<Packet> {
    let mut d = wsio::socketio::Decoder::new(attachments.len().max(1));
    let first = d.decode_text(text);
    if attachments.is_empty() {
        return first.expect("re-encoded packet decodes");
    }
    assert_eq!(
        first,
        Ok(None),
        "binary packet {text:?} decoded before its attachments"
    );
    let mut out = None;
    for (i, a) in attachments.iter().enumerate() {
        let r = d.decode_binary(a.clone()).expect("attachment accepted");
        if i + 1 < attachments.len() {
            assert_eq!(r, None, "packet complete before its last attachment");
        } else {
            out = r;
        }
    }
    assert!(!d.is_waiting());
    out
}
