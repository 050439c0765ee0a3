//! Decoding: msgpack to [`Value`] as JavaScript sees what notepack.io
//! gives it, then the packet checks of `socket.io-msgpack-parser`.

use std::borrow::Cow;

use bytes::Bytes;
use rmp::Marker;

use super::error::MsgpackError;
use crate::socketio::{
    packet::{DecodeError, Packet, RESERVED_EVENTS},
    value::{Number, Value, merge_repeated_keys, write_number},
};

/// Most arrays and maps nested in one message, the packet's own map
/// included, so that `data` may nest as deep as the JSON parser allows
/// (127 levels) and deep input cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Dates beyond ±10^8 days from the epoch are invalid in JavaScript, and
/// JSON writes an invalid date as `null`.
const MAX_DATE_MS: i64 = 8_640_000_000_000_000;

/// A decoded item: a value, or `undefined` (fixext 1 of type 0), which
/// [`Value`] has no room for.
type Item = Option<Value>;

/// A cursor over one message. Every read checks the length first, so a
/// truncated message is an error before anything is allocated for it.
struct Reader<'a> {
    input: &'a Bytes,
    pos: usize,
    /// notepack.io 3 (the Redis adapter's) reads the msgpack timestamp
    /// extension (type −1) as a `Date`; 2.2 (the parser's) as `[−1, bytes]`.
    timestamps: bool,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        let input: &'a [u8] = self.input;
        let end = self.pos.checked_add(n).ok_or(MsgpackError::Truncated)?;
        let s = input.get(self.pos..end).ok_or(MsgpackError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// The next `n` bytes as a slice of the input, without copying.
    fn take_bytes(&mut self, n: usize) -> Result<Bytes, MsgpackError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.input.slice(start..self.pos))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        self.take(N)?
            .try_into()
            .map_err(|_| MsgpackError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, MsgpackError> {
        self.array::<1>().map(|[b]| b)
    }

    fn marker(&mut self) -> Result<Marker, MsgpackError> {
        self.u8().map(Marker::from_u8)
    }

    /// A length field of 1, 2 or 4 bytes (as given by the marker).
    fn len(&mut self, marker: Marker) -> Result<usize, MsgpackError> {
        let n = match marker {
            Marker::Str8 | Marker::Bin8 | Marker::Ext8 => u32::from(self.u8()?),
            Marker::Str16 | Marker::Bin16 | Marker::Ext16 | Marker::Array16 | Marker::Map16 => {
                u32::from(u16::from_be_bytes(self.array()?))
            }
            _ => u32::from_be_bytes(self.array()?),
        };
        usize::try_from(n).map_err(|_| MsgpackError::Truncated)
    }

    /// A length of `n` items each at least `min` bytes long, refused if
    /// the rest of the message cannot hold them: a declared length can
    /// never make the decoder reserve more than the input justifies.
    fn count(&self, n: usize, min: usize) -> Result<usize, MsgpackError> {
        match n.checked_mul(min) {
            Some(need) if need <= self.remaining() => Ok(n),
            _ => Err(MsgpackError::Truncated),
        }
    }

    /// Checks that the whole input was one value.
    fn finish(&self) -> Result<(), MsgpackError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(MsgpackError::TrailingBytes)
        }
    }

    fn string(&mut self, n: usize) -> Result<String, MsgpackError> {
        let b = self.take(n)?;
        Ok(match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            // Node's `buffer.toString('utf8')` replaces malformed
            // sequences with U+FFFD, as `from_utf8_lossy` does, rather
            // than refusing.
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        })
    }

    /// The packet member a key names: compared in place when it is a
    /// fixstr, as keys from a JavaScript encoder are, so the packet's own
    /// keys cost no allocation.
    fn member(&mut self) -> Result<Option<Member>, MsgpackError> {
        let which = |k: &[u8]| match k {
            b"type" => Some(Member::Type),
            b"nsp" => Some(Member::Nsp),
            b"data" => Some(Member::Data),
            b"id" => Some(Member::Id),
            _ => None,
        };
        if let Some(&m @ 0xa0..=0xbf) = self.input.get(self.pos) {
            self.pos = self.pos.saturating_add(1);
            return self.take(usize::from(m & 0x1f)).map(which);
        }
        self.key().map(|k| which(k.as_bytes()))
    }

    /// One item; `depth` counts the arrays and maps it sits in.
    fn item(&mut self, depth: usize) -> Result<Item, MsgpackError> {
        let b = self.u8()?;
        // The forms a JavaScript encoder writes most (short strings, small
        // integers, small containers) by plain tests first: they predict
        // better than the full match's jump table.
        match b {
            0xa0..=0xbf => self
                .string(usize::from(b & 0x1f))
                .map(|s| Some(Value::String(s))),
            0x00..=0x7f => Ok(Some(Value::Number(Number::U64(u64::from(b))))),
            0x80..=0x8f => self.map_items(usize::from(b & 0x0f), depth),
            0x90..=0x9f => self.array_items(usize::from(b & 0x0f), depth),
            _ => self.item_after(Marker::from_u8(b), depth),
        }
    }

    fn item_after(&mut self, marker: Marker, depth: usize) -> Result<Item, MsgpackError> {
        let uint = |n: u64| Ok(Some(Value::Number(Number::U64(n))));
        let int = |n: i64| {
            Ok(Some(Value::Number(if n >= 0 {
                Number::U64(n.unsigned_abs())
            } else {
                Number::I64(n)
            })))
        };
        match marker {
            Marker::FixPos(n) => uint(u64::from(n)),
            Marker::FixNeg(n) => int(i64::from(n)),
            Marker::U8 => uint(u64::from(self.u8()?)),
            Marker::U16 => uint(u64::from(u16::from_be_bytes(self.array()?))),
            Marker::U32 => uint(u64::from(u32::from_be_bytes(self.array()?))),
            Marker::U64 => uint(u64::from_be_bytes(self.array()?)),
            Marker::I8 => int(i64::from(i8::from_be_bytes(self.array()?))),
            Marker::I16 => int(i64::from(i16::from_be_bytes(self.array()?))),
            Marker::I32 => int(i64::from(i32::from_be_bytes(self.array()?))),
            Marker::I64 => int(i64::from_be_bytes(self.array()?)),
            Marker::F32 => Ok(Some(Value::Number(Number::F64(f64::from(
                f32::from_be_bytes(self.array()?),
            ))))),
            Marker::F64 => Ok(Some(Value::Number(Number::F64(f64::from_be_bytes(
                self.array()?,
            ))))),
            Marker::Null => Ok(Some(Value::Null)),
            Marker::False => Ok(Some(Value::Bool(false))),
            Marker::True => Ok(Some(Value::Bool(true))),
            Marker::FixStr(n) => self.string(usize::from(n)).map(|s| Some(Value::String(s))),
            Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let n = self.len(marker)?;
                self.string(n).map(|s| Some(Value::String(s)))
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                let n = self.len(marker)?;
                self.take_bytes(n).map(|b| Some(Value::Binary(b)))
            }
            Marker::FixArray(n) => self.array_items(usize::from(n), depth),
            Marker::Array16 | Marker::Array32 => {
                let n = self.len(marker)?;
                self.array_items(n, depth)
            }
            Marker::FixMap(n) => self.map_items(usize::from(n), depth),
            Marker::Map16 | Marker::Map32 => {
                let n = self.len(marker)?;
                self.map_items(n, depth)
            }
            Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => {
                let n = self.len(marker)?;
                self.ext(n, false)
            }
            Marker::FixExt1 => self.ext(1, true),
            Marker::FixExt2 => self.ext(2, true),
            Marker::FixExt4 => self.ext(4, true),
            Marker::FixExt8 => self.ext(8, true),
            Marker::FixExt16 => self.ext(16, true),
            Marker::Reserved => Err(MsgpackError::ReservedMarker),
        }
    }

    /// An extension of `n` data bytes after its type byte. notepack.io
    /// gives type 0 a meaning by size: `undefined` in a fixext 1, a `Date`
    /// in a fixext 8, an `ArrayBuffer` in an ext 8/16/32; anything else is
    /// the array `[type, Buffer]`.
    fn ext(&mut self, n: usize, fixed: bool) -> Result<Item, MsgpackError> {
        let ty = i8::from_be_bytes(self.array()?);
        if ty == -1 && self.timestamps {
            if let Some(date) = self.timestamp(n, fixed)? {
                return Ok(Some(date));
            }
        }
        if ty != 0 {
            let data = self.take_bytes(n)?;
            let ty = Value::Number(if ty >= 0 {
                Number::U64(u64::from(ty.unsigned_abs()))
            } else {
                Number::I64(i64::from(ty))
            });
            return Ok(Some(Value::Array(vec![ty, Value::Binary(data)])));
        }
        match (fixed, n) {
            (true, 1) => self.take(1).map(|_| None),
            (true, 8) => {
                let ms = i64::from_be_bytes(self.array()?);
                Ok(Some(date(ms)))
            }
            (true, _) => {
                let data = self.take_bytes(n)?;
                Ok(Some(Value::Array(vec![
                    Value::Number(Number::U64(0)),
                    Value::Binary(data),
                ])))
            }
            (false, _) => self.take_bytes(n).map(|b| Some(Value::Binary(b))),
        }
    }

    /// A msgpack timestamp (32, 64 or 96 bits) as notepack.io 3 reads it,
    /// then as JSON writes that `Date`; `None` for other sizes, which it
    /// reads as `[−1, bytes]`. The arithmetic is JavaScript's, in doubles.
    fn timestamp(&mut self, n: usize, fixed: bool) -> Result<Option<Value>, MsgpackError> {
        let ms = match (fixed, n) {
            (true, 4) => f64::from(u32::from_be_bytes(self.array()?)) * 1e3,
            (true, 8) => {
                let hi = u32::from_be_bytes(self.array()?);
                let lo = u32::from_be_bytes(self.array()?);
                let s = f64::from(hi & 3) * 4_294_967_296.0 + f64::from(lo);
                s * 1e3 + f64::from(hi >> 2) / 1e6
            }
            (false, 12) => {
                let ns = u32::from_be_bytes(self.array()?);
                let hi = i32::from_be_bytes(self.array()?);
                let lo = u32::from_be_bytes(self.array()?);
                (f64::from(hi) * 4_294_967_296.0 + f64::from(lo)) * 1e3 + f64::from(ns) / 1e6
            }
            _ => return Ok(None),
        };
        // `new Date(ms)` truncates toward zero; beyond its range it is
        // invalid, which `date` writes as `null`.
        let ms = ms.trunc();
        Ok(Some(if ms.abs() <= MAX_DATE_MS as f64 {
            date(ms as i64)
        } else {
            Value::Null
        }))
    }

    fn array_items(&mut self, n: usize, depth: usize) -> Result<Item, MsgpackError> {
        let depth = deeper(depth)?;
        let n = self.count(n, 1)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            // An `undefined` element is what JSON would make of it.
            items.push(self.item(depth)?.unwrap_or(Value::Null));
        }
        Ok(Some(Value::Array(items)))
    }

    fn map_items(&mut self, n: usize, depth: usize) -> Result<Item, MsgpackError> {
        let depth = deeper(depth)?;
        let n = self.count(n, 2)?;
        let mut entries: Vec<(String, Item)> = Vec::with_capacity(n);
        let mut undefined = false;
        for _ in 0..n {
            let key = self.key()?;
            let value = self.item(depth)?;
            // notepack.io assigns `obj[key] = value`, so `__proto__` sets
            // the object's prototype instead of adding a member: it never
            // shows among the keys, in JSON or in a re-encoding.
            if key == "__proto__" {
                continue;
            }
            undefined |= value.is_none();
            entries.push((key, value));
        }
        // A repeated key keeps its first position and takes its last value;
        // a member left `undefined` is one JSON leaves out.
        let entries = merge_repeated_keys(entries);
        let entries: Vec<(String, Value)> = if undefined {
            entries
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        } else {
            entries
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect()
        };
        Ok(Some(Value::Object(entries)))
    }

    /// A map key as the JavaScript property name it becomes: a string as
    /// it is, a number, boolean, nil or `undefined` as `String(key)` spells
    /// it. Other keys (binary, arrays, maps, extensions) are refused; they
    /// would become names like `[object Object]`.
    fn key(&mut self) -> Result<String, MsgpackError> {
        let marker = self.marker()?;
        let simple = matches!(
            marker,
            Marker::FixStr(_)
                | Marker::Str8
                | Marker::Str16
                | Marker::Str32
                | Marker::FixPos(_)
                | Marker::FixNeg(_)
                | Marker::U8
                | Marker::U16
                | Marker::U32
                | Marker::U64
                | Marker::I8
                | Marker::I16
                | Marker::I32
                | Marker::I64
                | Marker::F32
                | Marker::F64
                | Marker::Null
                | Marker::True
                | Marker::False
        );
        let undefined = marker == Marker::FixExt1 && self.input.get(self.pos) == Some(&0);
        if !simple && !undefined {
            return Err(MsgpackError::UnsupportedKey);
        }
        Ok(match self.item_after(marker, 0)? {
            None => "undefined".to_owned(),
            Some(Value::String(s)) => s,
            Some(Value::Null) => "null".to_owned(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(Number::F64(f))) if f.is_nan() => "NaN".to_owned(),
            Some(Value::Number(Number::F64(f))) if f.is_infinite() => {
                if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
            }
            Some(Value::Number(n)) => {
                let mut s = String::new();
                // JavaScript holds every number as a double.
                let js = match n {
                    Number::U64(u) if u > MAX_SAFE => Number::F64(u as f64),
                    Number::I64(i) if i.unsigned_abs() > MAX_SAFE => Number::F64(i as f64),
                    n => n,
                };
                write_number(js, &mut s);
                s
            }
            Some(_) => return Err(MsgpackError::UnsupportedKey),
        })
    }
}

/// 2^53 − 1: integers up to here are exact in a double.
const MAX_SAFE: u64 = (1 << 53) - 1;

fn deeper(depth: usize) -> Result<usize, MsgpackError> {
    let depth = depth.saturating_add(1);
    if depth > MAX_DEPTH {
        Err(MsgpackError::TooDeep)
    } else {
        Ok(depth)
    }
}

/// A notepack.io date (milliseconds since the epoch) as JSON writes a
/// `Date`: its ISO 8601 form, or `null` when JavaScript holds it invalid.
fn date(ms: i64) -> Value {
    if !(-MAX_DATE_MS..=MAX_DATE_MS).contains(&ms) {
        return Value::Null;
    }
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Days to a civil date in the proleptic Gregorian calendar, counted
    // in 400-year eras from 0000-03-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{}{:06}", if year < 0 { '-' } else { '+' }, year.abs())
    };
    Value::String(format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    ))
}

/// The members a packet is read from.
#[derive(Clone, Copy)]
enum Member {
    Type,
    Nsp,
    Data,
    Id,
}

/// Their values.
#[derive(Default)]
struct Fields {
    kind: Item,
    nsp: Item,
    /// `nsp` is `/`, read in place.
    root: bool,
    data: Item,
    id: Item,
}

pub(super) fn decode(input: &Bytes) -> Result<Packet, DecodeError> {
    let mut r = Reader {
        input,
        pos: 0,
        timestamps: false,
    };
    let fields = fields(&mut r)?;
    r.finish()?;
    build(fields)
}

/// One whole message as one value, as notepack.io 3 decodes it (the Redis
/// adapter's messages): `None` is `undefined`.
pub(super) fn value(input: &Bytes) -> Result<Item, MsgpackError> {
    let mut r = Reader {
        input,
        pos: 0,
        timestamps: true,
    };
    let item = r.item(0)?;
    r.finish()?;
    Ok(item)
}

/// Reads the packet's map, keeping the last value of each member the
/// packet uses; the others (such as the `options` the official client
/// adds) are read, so that they are checked, and dropped.
fn fields(r: &mut Reader<'_>) -> Result<Fields, MsgpackError> {
    let marker = r.marker()?;
    let n = match marker {
        Marker::FixMap(n) => usize::from(n),
        Marker::Map16 | Marker::Map32 => r.len(marker)?,
        other => {
            r.item_after(other, 0)?;
            r.finish()?;
            return Err(MsgpackError::NotAMap);
        }
    };
    let n = r.count(n, 2)?;
    let mut f = Fields::default();
    for _ in 0..n {
        let member = r.member()?;
        // The root namespace, the usual one, costs no allocation.
        if matches!(member, Some(Member::Nsp)) && r.input.get(r.pos..r.pos + 2) == Some(b"\xa1/") {
            r.pos += 2;
            f.nsp = None;
            f.root = true;
            continue;
        }
        let value = r.item(1)?;
        match member {
            Some(Member::Type) => f.kind = value,
            Some(Member::Nsp) => {
                f.nsp = value;
                f.root = false;
            }
            Some(Member::Data) => f.data = value,
            Some(Member::Id) => f.id = value,
            None => {}
        }
    }
    Ok(f)
}

/// `Number.isInteger`: finite and whole.
fn integer(v: &Item) -> Option<Number> {
    match v {
        Some(Value::Number(n)) => match *n {
            Number::F64(f) if !f.is_finite() || f.fract() != 0.0 => None,
            n => Some(n),
        },
        _ => None,
    }
}

/// Applies the official decoder's checks (type, namespace, payload, id,
/// in its order), then the shapes a [`Packet`] needs.
fn build(f: Fields) -> Result<Packet, DecodeError> {
    let kind = match integer(&f.kind).map(|n| n.as_f64()) {
        Some(k) if (0.0..=4.0).contains(&k) => k as u8,
        _ => return Err(DecodeError::UnknownType),
    };
    let nsp: Cow<'static, str> = match f.nsp {
        _ if f.root => Cow::Borrowed("/"),
        Some(Value::String(s)) if s == "/" => Cow::Borrowed("/"),
        Some(Value::String(s)) => Cow::Owned(s),
        _ => return Err(DecodeError::BadNamespace),
    };
    let data = f.data;
    let shape_ok = matches!(
        (kind, &data),
        (0, None | Some(Value::Object(_)))
            | (1, None)
            | (2 | 3, Some(Value::Array(_)))
            | (4, Some(Value::String(_) | Value::Object(_)))
    );
    if !shape_ok {
        return Err(DecodeError::BadPayload);
    }
    let id = match (&f.id, integer(&f.id)) {
        (None, _) => None,
        (Some(_), Some(n)) => Some(n),
        (Some(_), None) => return Err(DecodeError::BadAckId),
    };
    // The official accepts any integer; an ack id here is a `u64`.
    let ack_id = || {
        id.map(|n| n.as_u64().ok_or(DecodeError::BadAckId))
            .transpose()
    };
    Ok(match (kind, data) {
        (0, data) => Packet::Connect { nsp, data },
        (1, _) => Packet::Disconnect { nsp },
        (2, Some(Value::Array(mut args))) => {
            // As the default parser: a name first, and not a reserved one.
            let name = match args.first() {
                Some(Value::String(name)) if !RESERVED_EVENTS.contains(&name.as_str()) => {
                    match args.remove(0) {
                        Value::String(name) => name,
                        _ => return Err(DecodeError::BadPayload),
                    }
                }
                _ => return Err(DecodeError::BadPayload),
            };
            Packet::Event {
                nsp,
                id: ack_id()?,
                name,
                args,
            }
        }
        (3, Some(Value::Array(args))) => Packet::Ack {
            nsp,
            id: ack_id()?.ok_or(DecodeError::BadPayload)?,
            args,
        },
        (4, Some(data)) => Packet::ConnectError { nsp, data },
        _ => return Err(DecodeError::BadPayload),
    })
}
