//! Socket.IO arguments: JSON values with binary leaves.
//!
//! [`Value`] is what an event carries. Binary data stays [`Bytes`] end to
//! end: on the wire it becomes a placeholder plus an attachment, never
//! base64 (except where Engine.IO long-polling itself needs it).
//!
//! Serialisation matches `JSON.stringify`, so that what wsio sends is
//! byte for byte what the official server would send for the same values:
//! integer-like object keys first in ascending order, then the others in
//! insertion order; numbers in JavaScript's format (`1e+21`, `1e-7`,
//! `100` for `1E2`); control characters escaped, everything else raw.

use std::fmt::{self, Write as _};

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON number as JavaScript sees it (integers beyond 2^53 lose
/// precision there too, but are kept exact here). Equality is numeric, as
/// in JavaScript: `3` and `3.0` are the same number (and print the same).
#[derive(Debug, Clone, Copy)]
pub enum Number {
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// Anything else.
    F64(f64),
}

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        match (self, other) {
            (Number::U64(a), Number::U64(b)) => a == b,
            (Number::I64(a), Number::I64(b)) => a == b,
            _ => self.as_f64() == other.as_f64(),
        }
    }
}

impl Number {
    /// The value as an `f64`.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::U64(n) => n as f64,
            Number::I64(n) => n as f64,
            Number::F64(f) => f,
        }
    }

    /// The value as a `u64`, if it is a non-negative integer.
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Number::U64(n) => Some(n),
            Number::I64(_) => None,
            Number::F64(f) if f >= 0.0 && f.fract() == 0.0 && f < 18_446_744_073_709_551_616.0 => {
                Some(f as u64)
            }
            Number::F64(_) => None,
        }
    }

    /// The value as an `i64`, if it is an integer in range.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Number::U64(n) => i64::try_from(n).ok(),
            Number::I64(n) => Some(n),
            Number::F64(f)
                if f.fract() == 0.0
                    && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) =>
            {
                Some(f as i64)
            }
            Number::F64(_) => None,
        }
    }
}

/// One argument of an event or acknowledgement.
///
/// ```
/// use wsio::socketio::Value;
/// let v = Value::from_json(r#"{"b":1,"2":[true,null,1.5]}"#).unwrap();
/// assert_eq!(v["2"][2].as_f64(), Some(1.5));
/// // Serialised as JSON.stringify would: integer-like keys first.
/// assert_eq!(v.to_json(), r#"{"2":[true,null,1.5],"b":1}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `null`.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, in insertion order.
    Object(Vec<(String, Value)>),
    /// Binary data (an attachment on the wire).
    Binary(Bytes),
}

static NULL: Value = Value::Null;

impl Value {
    /// Parses JSON text (without placeholders resolved: see
    /// [`Value::resolve_placeholders`]).
    pub fn from_json(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Serialises as `JSON.stringify` would; binary leaves become `null`
    /// (use the packet encoder to send them as attachments).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        write_json(self, &mut out, &mut None);
        out
    }

    /// An object from pairs.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number as `f64`, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(n.as_f64()),
            _ => None,
        }
    }

    /// The number as `u64`, if this is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The bytes, if this is binary.
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Value::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The member `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(o) => o.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// How many leaves are binary (the attachments this value needs).
    pub fn binary_count(&self) -> usize {
        match self {
            Value::Binary(_) => 1,
            Value::Array(a) => a.iter().map(Value::binary_count).sum(),
            Value::Object(o) => o.iter().map(|(_, v)| v.binary_count()).sum(),
            _ => 0,
        }
    }

    /// A guess at the length of the value's JSON (exact for plain strings
    /// and small numbers), for sizing buffers.
    pub(crate) fn size_hint(&self) -> usize {
        match self {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 12,
            Value::String(s) => s.len() + 3,
            Value::Binary(_) => 32,
            Value::Array(a) => 2 + a.iter().map(|v| v.size_hint() + 1).sum::<usize>(),
            Value::Object(o) => {
                2 + o
                    .iter()
                    .map(|(k, v)| k.len() + 4 + v.size_hint())
                    .sum::<usize>()
            }
        }
    }

    /// Whether any leaf is binary.
    pub fn has_binary(&self) -> bool {
        match self {
            Value::Binary(_) => true,
            Value::Array(a) => a.iter().any(Value::has_binary),
            Value::Object(o) => o.iter().any(|(_, v)| v.has_binary()),
            _ => false,
        }
    }

    /// Replaces every placeholder object (`{"_placeholder":true,"num":N}`)
    /// with attachment `N`; a placeholder whose index is not an attachment
    /// is an error (CVE-2022-2421 abused unchecked indexes).
    pub fn resolve_placeholders(&mut self, attachments: &[Bytes]) -> Result<(), PlaceholderError> {
        match self {
            Value::Object(o) => {
                if o.iter()
                    .any(|(k, v)| k == "_placeholder" && *v == Value::Bool(true))
                {
                    let num = o
                        .iter()
                        .rev()
                        .find(|(k, _)| k == "num")
                        .and_then(|(_, v)| v.as_f64());
                    let idx = num.filter(|n| {
                        n.fract() == 0.0 && *n >= 0.0 && (*n as usize) < attachments.len()
                    });
                    match idx {
                        Some(i) => *self = Value::Binary(attachments[i as usize].clone()),
                        None => return Err(PlaceholderError),
                    }
                } else {
                    for (_, v) in o.iter_mut() {
                        v.resolve_placeholders(attachments)?;
                    }
                }
            }
            Value::Array(a) => {
                for v in a.iter_mut() {
                    v.resolve_placeholders(attachments)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A placeholder refers to an attachment that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("placeholder refers to a missing attachment")]
pub struct PlaceholderError;

impl std::ops::Index<&str> for Value {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl std::ops::Index<usize> for Value {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        self.as_array().and_then(|a| a.get(i)).unwrap_or(&NULL)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

macro_rules! from_uint {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self { Value::Number(Number::U64(n as u64)) }
        }
    )*};
}
macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                if n >= 0 { Value::Number(Number::U64(n as u64)) } else { Value::Number(Number::I64(n as i64)) }
            }
        }
    )*};
}
from_uint!(u8, u16, u32, u64, usize);
from_int!(i8, i16, i32, i64, isize);

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Number(Number::F64(f))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Binary(b)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Binary(b.into())
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Null, Into::into)
    }
}

// ----- parsing ----------------------------------------------------------

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(Number::U64(n)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(if n >= 0 {
            Value::Number(Number::U64(n as u64))
        } else {
            Value::Number(Number::I64(n))
        })
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Number(Number::F64(f)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Binary(Bytes::copy_from_slice(b)))
    }
    fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Binary(b.into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(e) = seq.next_element()? {
            v.push(e);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut o: Vec<(String, Value)> = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(k) = map.next_key::<String>()? {
            let v: Value = map.next_value()?;
            o.push((k, v));
        }
        Ok(Value::Object(merge_repeated_keys(o)))
    }
}

/// Merges repeated keys as JavaScript does: a key stays at its first
/// position and takes its last value. Small objects compare pairwise;
/// larger ones sort an index, so that an object with many keys (up to the
/// payload limit) costs O(n log n), not O(n²).
pub(crate) fn merge_repeated_keys<T: Default>(mut entries: Vec<(String, T)>) -> Vec<(String, T)> {
    if entries.len() <= 16 {
        let mut i = 1;
        while i < entries.len() {
            match entries[..i].iter().position(|(k, _)| *k == entries[i].0) {
                Some(first) => {
                    let (_, v) = entries.remove(i);
                    entries[first].1 = v;
                }
                None => i += 1,
            }
        }
        return entries;
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by(|&a, &b| entries[a].0.cmp(&entries[b].0).then(a.cmp(&b)));
    let mut keep = vec![true; entries.len()];
    let mut moves = Vec::new();
    for run in order.chunk_by(|&a, &b| entries[a].0 == entries[b].0) {
        if let [first, .., last] = *run {
            moves.push((first, last));
            for &dup in &run[1..] {
                keep[dup] = false;
            }
        }
    }
    for (first, last) in moves {
        entries[first].1 = std::mem::take(&mut entries[last].1);
    }
    let mut keep = keep.into_iter();
    entries.retain(|_| keep.next().unwrap_or(true));
    entries
}

// ----- serialisation ----------------------------------------------------

/// Whether `k` is an array index as JavaScript orders object keys.
pub(crate) fn is_array_index(k: &str) -> Option<u32> {
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

pub(crate) fn write_json(v: &Value, out: &mut String, attachments: &mut Option<&mut Vec<Bytes>>) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(*n, out),
        Value::String(s) => write_string(s, out),
        Value::Binary(b) => match attachments {
            Some(list) => {
                let _ = write!(out, r#"{{"_placeholder":true,"num":{}}}"#, list.len());
                list.push(b.clone());
            }
            None => out.push_str("null"),
        },
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(e, out, attachments);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            let mut first = true;
            let mut member =
                |k: &str, v: &Value, out: &mut String, att: &mut Option<&mut Vec<Bytes>>| {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                    write_string(k, out);
                    out.push(':');
                    write_json(v, out, att);
                };
            if o.iter().any(|(k, _)| is_array_index(k).is_some()) {
                let mut idx: Vec<(u32, &Value, &str)> = o
                    .iter()
                    .filter_map(|(k, v)| is_array_index(k).map(|i| (i, v, k.as_str())))
                    .collect();
                idx.sort_by_key(|(i, _, _)| *i);
                for (_, v, k) in idx {
                    member(k, v, out, attachments);
                }
                for (k, v) in o.iter().filter(|(k, _)| is_array_index(k).is_none()) {
                    member(k, v, out, attachments);
                }
            } else {
                for (k, v) in o {
                    member(k, v, out, attachments);
                }
            }
            out.push('}');
        }
    }
}

pub(crate) fn write_string(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push('"');
    let mut start = 0;
    let mut i = first_escape(bytes, 0);
    while let Some(&b) = bytes.get(i) {
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
        i = first_escape(bytes, start);
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The index of the first byte at or after `from` that JSON must escape
/// (a control character, `"` or `\\`), or the length. Eight bytes at a time.
#[inline]
fn first_escape(bytes: &[u8], from: usize) -> usize {
    let rest = bytes.get(from..).unwrap_or_default();
    let mut words = rest.chunks_exact(8);
    let mut i = from;
    for w in &mut words {
        if let Ok(w) = <[u8; 8]>::try_from(w) {
            let m = escape_mask(u64::from_le_bytes(w));
            if m != 0 {
                return i + (m.trailing_zeros() / 8) as usize;
            }
        }
        i += 8;
    }
    let tail = words.remainder();
    if tail.is_empty() {
        return i;
    }
    // The tail as one word: the last eight bytes, overlapping bytes already
    // checked (clean, so they flag nothing) when there are at least eight.
    if rest.len() >= 8 {
        if let Ok(w) = <[u8; 8]>::try_from(&rest[rest.len() - 8..]) {
            let m = escape_mask(u64::from_le_bytes(w)) >> ((8 - tail.len()) * 8);
            return if m != 0 {
                i + (m.trailing_zeros() / 8) as usize
            } else {
                i + tail.len()
            };
        }
    }
    for &b in tail {
        if b < 0x20 || b == b'"' || b == b'\\' {
            return i;
        }
        i += 1;
    }
    i
}

/// The high bit of every byte of the word that is a control character,
/// `"` or `\\`. Bytes above a match may be flagged too (borrows carry
/// upwards), but the lowest flagged byte is always a real match.
#[inline]
fn escape_mask(v: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte below n leaves its high bit set in (v - n) & !v (exact for
    // n <= 0x80); a byte equal to c is a zero byte of v ^ c.
    let below = |n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    below(0x20) | zero(v ^ (ONES * u64::from(b'"'))) | zero(v ^ (ONES * u64::from(b'\\')))
}

/// Formats a number as JavaScript's `Number.prototype.toString` does.
pub(crate) fn write_number(n: Number, out: &mut String) {
    match n {
        Number::U64(u) => {
            let _ = write!(out, "{u}");
        }
        Number::I64(i) => {
            let _ = write!(out, "{i}");
        }
        Number::F64(f) => write_f64(f, out),
    }
}

fn write_f64(f: f64, out: &mut String) {
    if !f.is_finite() {
        // JSON.stringify writes NaN and the infinities as null.
        out.push_str("null");
        return;
    }
    if f == 0.0 {
        out.push('0');
        return;
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as
    // JavaScript does; only the layout differs.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i32;
    let n = exp + 1; // position of the decimal point after the first digit
    if f < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{}", if e >= 0 { "+" } else { "-" }, e.abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(f: f64) -> String {
        let mut s = String::new();
        write_f64(f, &mut s);
        s
    }

    #[test]
    fn first_escape_finds_exactly_the_first_byte_to_escape() {
        // Every length up to 40 and start, with the one byte to find (or
        // none) at every position, among bytes on both sides of each class.
        let fill = [b'a', 0x20, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff];
        let special = [0x00, 0x1f, b'"', b'\\', b'\n'];
        for len in 0..40usize {
            for from in 0..=len {
                for at in (0..len).map(Some).chain([None]) {
                    for (k, &sp) in special.iter().enumerate() {
                        let mut bytes: Vec<u8> =
                            (0..len).map(|j| fill[(j + k + len) % fill.len()]).collect();
                        if let Some(at) = at {
                            bytes[at] = sp;
                        }
                        let naive = (from..len)
                            .find(|&j| bytes[j] < 0x20 || bytes[j] == b'"' || bytes[j] == b'\\')
                            .unwrap_or(len);
                        assert_eq!(first_escape(&bytes, from), naive, "{bytes:?} from {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn numbers_format_as_javascript() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-0.0, "0"),
            (100.0, "100"),
            (1.5, "1.5"),
            (1e16, "10000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (123456.789, "123456.789"),
            (12345678901234567890.0, "12345678901234567000"),
            (-3.75, "-3.75"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "null"),
        ];
        for (f, want) in cases {
            assert_eq!(js(*f), *want, "{f}");
        }
    }

    #[test]
    fn reserialises_like_json_stringify() {
        let cases = [
            (
                r#"{"b":1,"2":0,"a":3,"1":4}"#,
                r#"{"1":4,"2":0,"b":1,"a":3}"#,
            ),
            (
                r#"[1.0, -0, 1E2, 1e16, 1e21, 0.000001, 1e-7]"#,
                "[1,0,100,10000000000000000,1e+21,0.000001,1e-7]",
            ),
            (r#"{"a":1,"a":2,"b":3}"#, r#"{"a":2,"b":3}"#),
            (
                "\"\\u001e\\u007f \u{2028} \\/ é \\b\"",
                "\"\\u001e\u{7f} \u{2028} / é \\b\"",
            ),
            (
                r#"{"01":1,"4294967295":2,"4294967294":3}"#,
                r#"{"4294967294":3,"01":1,"4294967295":2}"#,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Value::from_json(input).unwrap().to_json(), want, "{input}");
        }
    }

    #[test]
    fn floats_round_trip_exactly() {
        // Found by fuzzing: without serde_json's float_roundtrip feature,
        // some shortest-form floats parsed a few ULPs off.
        for text in [
            "3.569680106589172e-307",
            "3.9770393112151377e+77",
            "1.9071335452284722e-236",
            "6.050395239608202e+233",
        ] {
            let want: f64 = text.parse().unwrap();
            let Value::Number(Number::F64(got)) = Value::from_json(text).unwrap() else {
                panic!("{text}")
            };
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
            assert_eq!(Value::Number(Number::F64(want)).to_json(), text);
        }
    }

    #[test]
    fn string_escaping_agrees_with_the_bytewise_definition() {
        fn reference(s: &str) -> String {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        let mut rng = crate::entropy::SeededEntropy::new(5);
        let alphabet: Vec<char> = (0u8..0x80)
            .map(char::from)
            .chain("éü€😀\u{7f}\u{2028}".chars())
            .collect();
        for len in 0..60 {
            for _ in 0..20 {
                let s: String = (0..len)
                    .map(|_| {
                        alphabet
                            [crate::entropy::Entropy::next_u32(&mut rng) as usize % alphabet.len()]
                    })
                    .collect();
                let mut out = String::new();
                write_string(&s, &mut out);
                assert_eq!(out, reference(&s), "{s:?}");
            }
        }
        // One or two escapes at every position, in and across whole words.
        for len in 0..40 {
            for at in 0..len {
                for (c, d) in [('"', 'é'), ('\u{1}', '\\'), ('\n', 'x'), ('é', '\u{1f}')] {
                    let s: String = (0..len)
                        .map(|k| match k {
                            k if k == at => c,
                            k if k == (at * 7 + 3) % len => d,
                            _ => 'a',
                        })
                        .collect();
                    let mut out = String::new();
                    write_string(&s, &mut out);
                    assert_eq!(out, reference(&s), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn placeholders() {
        let mut v = Value::from_json(
            r#"[{"_placeholder":true,"num":0},{"x":{"_placeholder":true,"num":1}}]"#,
        )
        .unwrap();
        let att = [Bytes::from_static(b"a"), Bytes::from_static(b"bc")];
        v.resolve_placeholders(&att).unwrap();
        assert_eq!(v[1]["x"], Value::Binary(att[1].clone()));
        let mut out = String::new();
        let mut list = Vec::new();
        write_json(&v, &mut out, &mut Some(&mut list));
        assert_eq!(
            out,
            r#"[{"_placeholder":true,"num":0},{"x":{"_placeholder":true,"num":1}}]"#
        );
        assert_eq!(list, att);
        for bad in [
            r#"{"_placeholder":true,"num":2}"#,
            r#"{"_placeholder":true,"num":-1}"#,
            r#"{"_placeholder":true,"num":"0"}"#,
            r#"{"_placeholder":true}"#,
            r#"{"_placeholder":true,"num":0.5}"#,
        ] {
            let mut v = Value::from_json(bad).unwrap();
            assert_eq!(v.resolve_placeholders(&att), Err(PlaceholderError), "{bad}");
        }
    }

    #[test]
    fn repeated_keys_keep_their_first_position_and_last_value() {
        // 40 keys, every one repeated, as in JavaScript; and small objects
        // merge the same way as large ones.
        let mut text = String::from("{");
        for round in 0..3 {
            for k in 0..40 {
                if text.len() > 1 {
                    text.push(',');
                }
                text.push_str(&format!("\"k{}\":{}", (k * 7) % 40, round * 100 + k));
            }
        }
        text.push('}');
        let Value::Object(o) = Value::from_json(&text).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(o.len(), 40);
        for (i, (k, v)) in o.iter().enumerate() {
            assert_eq!(k, &format!("k{}", (i * 7) % 40));
            assert_eq!(v, &Value::from(200 + i as u64));
        }
        assert_eq!(
            Value::from_json(r#"{"a":1,"b":2,"a":3}"#).unwrap(),
            Value::object([("a", Value::from(3)), ("b", Value::from(2))])
        );
    }

    #[test]
    fn many_distinct_keys_parse() {
        // 100,000 keys: merging them pairwise would take 5e9 comparisons.
        let mut text = String::from("{");
        for k in 0..100_000 {
            if k > 0 {
                text.push(',');
            }
            text.push_str(&format!("\"{k}\":0"));
        }
        text.push('}');
        let Value::Object(o) = Value::from_json(&text).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(o.len(), 100_000);
        assert_eq!(o[99_999].0, "99999");
    }
}
