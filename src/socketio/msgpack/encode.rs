//! Encoding: the bytes notepack.io writes for the packet object the
//! official server builds.

use rmp::encode as w;

use crate::socketio::{
    packet::Body,
    value::{Number, Value, is_array_index},
};

/// `undefined` as notepack.io writes it: fixext 1, type 0, one zero byte.
const UNDEFINED: [u8; 3] = [0xd4, 0x00, 0x00];
const TYPE: &[u8] = b"\xa4type";
const NSP: &[u8] = b"\xa3nsp";
const DATA: &[u8] = b"\xa4data";
const ID: &[u8] = b"\xa2id";

/// 2^64 and −2^63: the whole doubles notepack.io writes exactly as
/// integers lie between them.
const U64_END: f64 = 18_446_744_073_709_551_616.0;
const I64_MIN: f64 = -9_223_372_036_854_775_808.0;

/// Appends one packet's message to `out` (member order: see
/// [`super::encode`]).
pub(crate) fn encode_into(kind: u8, nsp: &str, id: Option<u64>, body: Body<'_>, out: &mut Vec<u8>) {
    // Only events and acks carry an id.
    let id = id.filter(|_| matches!(kind, 2 | 3));
    out.reserve(packet_size(kind, nsp, id, body));
    let members = match kind {
        1 => 2,
        _ => 3 + usize::from(id.is_some()),
    };
    put_map_len(out, members);
    let put_type = |out: &mut Vec<u8>| {
        out.extend_from_slice(TYPE);
        out.push(kind);
    };
    let put_nsp = |out: &mut Vec<u8>| {
        out.extend_from_slice(NSP);
        put_str(out, nsp);
    };
    let put_id = |out: &mut Vec<u8>| {
        if let Some(id) = id {
            out.extend_from_slice(ID);
            let _ = w::write_uint(out, id);
        }
    };
    let put_data = |out: &mut Vec<u8>| {
        out.extend_from_slice(DATA);
        put_body(out, body);
    };
    match kind {
        1 => {
            put_type(out);
            put_nsp(out);
        }
        2 => {
            put_type(out);
            put_data(out);
            put_id(out);
            put_nsp(out);
        }
        3 => {
            put_id(out);
            put_type(out);
            put_data(out);
            put_nsp(out);
        }
        4 => {
            put_type(out);
            put_nsp(out);
            put_data(out);
        }
        _ => {
            put_type(out);
            put_data(out);
            put_nsp(out);
        }
    }
}

fn put_body(out: &mut Vec<u8>, body: Body<'_>) {
    match body {
        Body::Empty => out.extend_from_slice(&UNDEFINED),
        Body::Json(v) => put_value(out, v),
        Body::Event(name, args) => {
            put_array_len(out, args.len().saturating_add(1));
            put_str(out, name);
            for a in args {
                put_value(out, a);
            }
        }
        Body::Args(args) => {
            put_array_len(out, args.len());
            for a in args {
                put_value(out, a);
            }
        }
    }
}

/// Lengths beyond 32 bits do not fit msgpack (notepack.io throws); they
/// are written as the largest length, so the message fails to decode
/// rather than reading as something else.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) fn put_map_len(out: &mut Vec<u8>, n: usize) {
    let _ = w::write_map_len(out, len32(n));
}

pub(crate) fn put_array_len(out: &mut Vec<u8>, n: usize) {
    let _ = w::write_array_len(out, len32(n));
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let _ = w::write_str_len(out, len32(s.len()));
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_number(out: &mut Vec<u8>, n: Number) {
    match n {
        Number::U64(u) => {
            let _ = w::write_uint(out, u);
        }
        Number::I64(i) if i >= 0 => {
            let _ = w::write_uint(out, i.unsigned_abs());
        }
        Number::I64(i) => {
            let _ = w::write_sint(out, i);
        }
        // JavaScript has only doubles, and notepack.io writes a whole one
        // as the smallest integer (−0 as 0) and the rest as float 64.
        // Past 64 bits it would write a wrapped integer: a float keeps
        // the value.
        Number::F64(f) if f.fract() == 0.0 && (0.0..U64_END).contains(&f) => {
            let _ = w::write_uint(out, f as u64);
        }
        Number::F64(f) if f.fract() == 0.0 && (I64_MIN..0.0).contains(&f) => {
            let _ = w::write_sint(out, f as i64);
        }
        Number::F64(f) => {
            let _ = w::write_f64(out, f);
        }
    }
}

pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Number(n) => put_number(out, *n),
        Value::String(s) => put_str(out, s),
        // As a Node `Buffer` (bin); the official client reads bin and ext
        // type 0 alike.
        Value::Binary(b) => {
            let _ = w::write_bin_len(out, len32(b.len()));
            out.extend_from_slice(b);
        }
        Value::Array(a) => {
            put_array_len(out, a.len());
            for e in a {
                put_value(out, e);
            }
        }
        Value::Object(o) => {
            put_map_len(out, o.len());
            // `Object.keys` order: array indexes ascending, then the
            // other keys in insertion order.
            if o.iter().any(|(k, _)| is_array_index(k).is_some()) {
                let mut idx: Vec<(u32, &str, &Value)> = o
                    .iter()
                    .filter_map(|(k, v)| is_array_index(k).map(|i| (i, k.as_str(), v)))
                    .collect();
                idx.sort_by_key(|(i, _, _)| *i);
                let rest = o.iter().filter(|(k, _)| is_array_index(k).is_none());
                for (k, v) in idx
                    .into_iter()
                    .map(|(_, k, v)| (k, v))
                    .chain(rest.map(|(k, v)| (k.as_str(), v)))
                {
                    put_str(out, k);
                    put_value(out, v);
                }
            } else {
                for (k, v) in o {
                    put_str(out, k);
                    put_value(out, v);
                }
            }
        }
    }
}

fn header_size(n: usize, fix: usize) -> usize {
    if n < fix {
        1
    } else if n <= 0xffff {
        3
    } else {
        5
    }
}

fn str_size(s: &str) -> usize {
    let n = s.len();
    let h = if n < 32 {
        1
    } else if n < 256 {
        2
    } else {
        header_size(n, 0)
    };
    h + n
}

fn number_size(n: Number) -> usize {
    let u = |u: u64| match u {
        0..0x80 => 1,
        0x80..0x100 => 2,
        0x100..0x1_0000 => 3,
        0x1_0000..0x1_0000_0000 => 5,
        _ => 9,
    };
    let i = |i: i64| match i {
        -32..0 => 1,
        -128..-32 => 2,
        -32768..-128 => 3,
        -2_147_483_648..-32768 => 5,
        _ => 9,
    };
    match n {
        Number::U64(n) => u(n),
        Number::I64(n) if n >= 0 => u(n.unsigned_abs()),
        Number::I64(n) => i(n),
        Number::F64(f) if f.fract() == 0.0 && (0.0..U64_END).contains(&f) => u(f as u64),
        Number::F64(f) if f.fract() == 0.0 && (I64_MIN..0.0).contains(&f) => i(f as i64),
        Number::F64(_) => 9,
    }
}

/// The exact size of a value's encoding, so that a message is written
/// into one allocation.
fn value_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(n) => number_size(*n),
        Value::String(s) => str_size(s),
        Value::Binary(b) => {
            let h = if b.len() < 256 {
                2
            } else {
                header_size(b.len(), 0)
            };
            h + b.len()
        }
        Value::Array(a) => header_size(a.len(), 16) + a.iter().map(value_size).sum::<usize>(),
        Value::Object(o) => {
            header_size(o.len(), 16)
                + o.iter()
                    .map(|(k, v)| str_size(k) + value_size(v))
                    .sum::<usize>()
        }
    }
}

/// The exact size of a packet's message.
pub(super) fn packet_size(kind: u8, nsp: &str, id: Option<u64>, body: Body<'_>) -> usize {
    let body = match body {
        Body::Empty => UNDEFINED.len(),
        Body::Json(v) => value_size(v),
        Body::Event(name, args) => {
            header_size(args.len().saturating_add(1), 16)
                + str_size(name)
                + args.iter().map(value_size).sum::<usize>()
        }
        Body::Args(args) => {
            header_size(args.len(), 16) + args.iter().map(value_size).sum::<usize>()
        }
    };
    1 + TYPE.len()
        + 1
        + NSP.len()
        + str_size(nsp)
        + if kind == 1 { 0 } else { DATA.len() + body }
        + id.map_or(0, |id| ID.len() + number_size(Number::U64(id)))
}
