//! The messages of `@socket.io/redis-adapter` 8.3, encoded and decoded.
//!
//! Broadcasts are msgpack (notepack.io 3): `[uid, packet, opts]`. Requests
//! and answers are JSON, except the two that carry a packet or a client's
//! answer (a broadcast with acknowledgements, and each acknowledgement),
//! which are msgpack maps; a receiver tells them apart by the first byte
//! (`{` is JSON). Members come in the order the official code creates
//! them, so the bytes are the ones it publishes; receivers read members by
//! name, in any order, and take what JavaScript would (a room that is a
//! number is the room of that name).

use std::time::Duration;

use bytes::Bytes;

use crate::socketio::{
    ClusterAnswer, ClusterMessage, Number, RequestId, Selection, SocketInfo, Value,
    msgpack::{decode_value, put_array_len, put_map_len, put_number, put_str, put_value},
};

/// The request types of the official adapter.
pub(super) mod kind {
    // 0 and 1, `SOCKETS` (`allSockets` of older nodes) and `ALL_ROOMS`
    // (`allRooms`), are not served here.
    pub(crate) const REMOTE_JOIN: u64 = 2;
    pub(crate) const REMOTE_LEAVE: u64 = 3;
    pub(crate) const REMOTE_DISCONNECT: u64 = 4;
    pub(crate) const REMOTE_FETCH: u64 = 5;
    pub(crate) const SERVER_SIDE_EMIT: u64 = 6;
    pub(crate) const BROADCAST: u64 = 7;
    pub(crate) const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub(crate) const BROADCAST_ACK: u64 = 9;
}

/// The Socket.IO packet type of an event.
const EVENT: u64 = 2;

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reject {
    /// Not JSON, or not msgpack, or not the shape of its type.
    Malformed,
    /// A well-formed request of a kind this adapter does not serve.
    Unsupported,
}

type Decoded<T> = Result<T, Reject>;

// ----- encoding --------------------------------------------------------------

/// A selection's lists as the official writes them: `[...new Set(list)]`.
fn unique(list: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(list.len());
    for r in list {
        if !out.contains(&r.as_str()) {
            out.push(r);
        }
    }
    out
}

/// The channel a broadcast goes to: the namespace's, or the room's when
/// it targets exactly one.
pub(super) fn broadcast_channel(base: &str, to: &Selection) -> String {
    match unique(&to.rooms)[..] {
        [room] => format!("{base}{room}#"),
        _ => base.to_owned(),
    }
}

fn put_strs(out: &mut Vec<u8>, list: &[&str]) {
    put_array_len(out, list.len());
    for s in list {
        put_str(out, s);
    }
}

fn put_uint(out: &mut Vec<u8>, n: u64) {
    put_number(out, Number::U64(n));
}

/// `{type: 2, data: [name, ...args], nsp}`.
fn put_packet(out: &mut Vec<u8>, nsp: &str, name: &str, args: &[Value]) {
    put_map_len(out, 3);
    put_str(out, "type");
    put_uint(out, EVENT);
    put_str(out, "data");
    put_array_len(out, args.len().saturating_add(1));
    put_str(out, name);
    for a in args {
        put_value(out, a);
    }
    put_str(out, "nsp");
    put_str(out, nsp);
}

/// What a broadcast carries besides its packet.
pub(super) struct Flags {
    pub(super) volatile: bool,
    pub(super) compress: bool,
    /// With acknowledgements: how long the sender waits.
    pub(super) timeout: Option<Duration>,
}

/// `{rooms, except, flags}`; a flag is written only when set, as the
/// official's operators do (`compress` only when off).
fn put_opts(out: &mut Vec<u8>, to: &Selection, flags: &Flags) {
    put_map_len(out, 3);
    put_str(out, "rooms");
    put_strs(out, &unique(&to.rooms));
    put_str(out, "except");
    put_strs(out, &unique(&to.except));
    put_str(out, "flags");
    let n = usize::from(flags.volatile)
        + usize::from(!flags.compress)
        + usize::from(flags.timeout.is_some());
    put_map_len(out, n);
    if flags.volatile {
        put_str(out, "volatile");
        out.push(0xc3);
    }
    if !flags.compress {
        put_str(out, "compress");
        out.push(0xc2);
    }
    if let Some(t) = flags.timeout {
        put_str(out, "timeout");
        put_uint(out, u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
    }
}

/// A broadcast: `[uid, packet, opts]`.
pub(super) fn broadcast(
    uid: &str,
    nsp: &str,
    to: &Selection,
    flags: &Flags,
    name: &str,
    args: &[Value],
) -> Bytes {
    let mut out = Vec::with_capacity(64);
    put_array_len(&mut out, 3);
    put_str(&mut out, uid);
    put_packet(&mut out, nsp, name, args);
    put_opts(&mut out, to, flags);
    Bytes::from(out)
}

/// A broadcast with acknowledgements (`BROADCAST`): `{uid, requestId,
/// type, packet, opts}`.
#[allow(clippy::too_many_arguments)]
pub(super) fn broadcast_request(
    uid: &str,
    request: &RequestId,
    nsp: &str,
    to: &Selection,
    flags: &Flags,
    name: &str,
    args: &[Value],
) -> Bytes {
    let mut out = Vec::with_capacity(96);
    put_map_len(&mut out, 5);
    put_str(&mut out, "uid");
    put_str(&mut out, uid);
    put_str(&mut out, "requestId");
    put_str(&mut out, request.as_str());
    put_str(&mut out, "type");
    put_uint(&mut out, kind::BROADCAST);
    put_str(&mut out, "packet");
    put_packet(&mut out, nsp, name, args);
    put_str(&mut out, "opts");
    put_opts(&mut out, to, flags);
    Bytes::from(out)
}

/// One client's acknowledgement of another node's broadcast
/// (`BROADCAST_ACK`): `{type, requestId, packet}`, where `packet` is the
/// client's first argument (the official passes on only that one) and is
/// left out when there is none, as `undefined` is.
pub(super) fn broadcast_ack(request: &RequestId, args: &[Value]) -> Bytes {
    let mut out = Vec::with_capacity(32);
    put_map_len(&mut out, if args.is_empty() { 2 } else { 3 });
    put_str(&mut out, "type");
    put_uint(&mut out, kind::BROADCAST_ACK);
    put_str(&mut out, "requestId");
    put_str(&mut out, request.as_str());
    if let Some(first) = args.first() {
        put_str(&mut out, "packet");
        put_value(&mut out, first);
    }
    Bytes::from(out)
}

/// A value as `JSON.stringify` writes it from Node: binary is a `Buffer`,
/// `{"type":"Buffer","data":[...bytes]}`.
fn node_json(v: &Value) -> Value {
    match v {
        Value::Binary(b) => Value::object([
            ("type", Value::from("Buffer")),
            (
                "data",
                Value::Array(b.iter().map(|&x| Value::from(x)).collect()),
            ),
        ]),
        Value::Array(a) => Value::Array(a.iter().map(node_json).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), node_json(v))).collect())
        }
        v => v.clone(),
    }
}

fn strs(list: &[&str]) -> Value {
    Value::Array(list.iter().map(|s| Value::from(*s)).collect())
}

fn selection(to: &Selection) -> Value {
    Value::object([
        ("rooms", strs(&unique(&to.rooms))),
        ("except", strs(&unique(&to.except))),
    ])
}

fn json(fields: Vec<(&str, Value)>) -> Bytes {
    Bytes::from(Value::object(fields).to_json())
}

/// `REMOTE_JOIN` or `REMOTE_LEAVE`: `{uid, type, opts, rooms}` (the rooms
/// as given, repeats included).
pub(super) fn sockets_rooms(uid: &str, join: bool, to: &Selection, rooms: &[String]) -> Bytes {
    let kind = if join {
        kind::REMOTE_JOIN
    } else {
        kind::REMOTE_LEAVE
    };
    json(vec![
        ("uid", Value::from(uid)),
        ("type", Value::from(kind)),
        ("opts", selection(to)),
        (
            "rooms",
            Value::Array(rooms.iter().map(|r| Value::from(r.as_str())).collect()),
        ),
    ])
}

/// `REMOTE_DISCONNECT`: `{uid, type, opts, close}`.
pub(super) fn disconnect(uid: &str, to: &Selection, close: bool) -> Bytes {
    json(vec![
        ("uid", Value::from(uid)),
        ("type", Value::from(kind::REMOTE_DISCONNECT)),
        ("opts", selection(to)),
        ("close", Value::from(close)),
    ])
}

/// `REMOTE_FETCH`: `{uid, requestId, type, opts}`.
pub(super) fn fetch(uid: &str, request: &RequestId, to: &Selection) -> Bytes {
    json(vec![
        ("uid", Value::from(uid)),
        ("requestId", Value::from(request.as_str())),
        ("type", Value::from(kind::REMOTE_FETCH)),
        ("opts", selection(to)),
    ])
}

/// `SERVER_SIDE_EMIT`: `{uid, requestId?, type, data: [name, ...args]}`.
pub(super) fn server_side(
    uid: &str,
    request: Option<&RequestId>,
    name: &str,
    args: &[Value],
) -> Bytes {
    let mut fields = vec![("uid", Value::from(uid))];
    if let Some(r) = request {
        fields.push(("requestId", Value::from(r.as_str())));
    }
    let data = std::iter::once(Value::from(name))
        .chain(args.iter().map(node_json))
        .collect();
    fields.push(("type", Value::from(kind::SERVER_SIDE_EMIT)));
    fields.push(("data", Value::Array(data)));
    json(fields)
}

/// The answer to a `REMOTE_FETCH`: `{requestId, sockets: [{id, handshake,
/// rooms, data}]}`.
pub(super) fn sockets_answer(request: &RequestId, sockets: &[SocketInfo]) -> Bytes {
    let sockets = sockets
        .iter()
        .map(|s| {
            Value::object([
                ("id", Value::from(s.id.as_str())),
                ("handshake", node_json(&s.handshake)),
                (
                    "rooms",
                    Value::Array(s.rooms.iter().map(|r| Value::from(r.as_str())).collect()),
                ),
                ("data", node_json(&s.data)),
            ])
        })
        .collect();
    json(vec![
        ("requestId", Value::from(request.as_str())),
        ("sockets", Value::Array(sockets)),
    ])
}

/// The answer to a `SERVER_SIDE_EMIT`: `{type, requestId, data}`.
pub(super) fn server_side_answer(request: &RequestId, answer: &Value) -> Bytes {
    json(vec![
        ("type", Value::from(kind::SERVER_SIDE_EMIT)),
        ("requestId", Value::from(request.as_str())),
        ("data", node_json(answer)),
    ])
}

/// How many clients a broadcast with acknowledgements reached here
/// (`BROADCAST_CLIENT_COUNT`): `{type, requestId, clientCount}`.
pub(super) fn client_count(request: &RequestId, n: usize) -> Bytes {
    json(vec![
        ("type", Value::from(kind::BROADCAST_CLIENT_COUNT)),
        ("requestId", Value::from(request.as_str())),
        ("clientCount", Value::from(n)),
    ])
}

// ----- decoding --------------------------------------------------------------

/// A request or answer: JSON when it starts with `{`, msgpack otherwise.
fn parse(payload: &Bytes) -> Decoded<Value> {
    if payload.first() == Some(&b'{') {
        let text = std::str::from_utf8(payload).map_err(|_| Reject::Malformed)?;
        Value::from_json(text).map_err(|_| Reject::Malformed)
    } else {
        // A lone `undefined` is nothing the adapter can use.
        decode_value(payload)
            .ok()
            .flatten()
            .ok_or(Reject::Malformed)
    }
}

/// An object's members, to be taken out by name.
struct Members(Vec<(String, Value)>);

impl Members {
    fn of(v: Value) -> Decoded<Members> {
        match v {
            Value::Object(o) => Ok(Members(o)),
            _ => Err(Reject::Malformed),
        }
    }

    /// A member; `null` counts as absent, as JavaScript's `!x` tests and
    /// `new Set(null)` do.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.take_raw(key).filter(|v| !v.is_null())
    }

    /// A member, `null` included.
    fn take_raw(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(i).1)
    }
}

/// `x === n`.
fn is_number(v: Option<&Value>, n: u64) -> bool {
    matches!(v, Some(Value::Number(x)) if x.as_f64() == n as f64)
}

/// A room name: a string, or a number as JavaScript spells it.
fn room(v: Value) -> Decoded<String> {
    match v {
        Value::String(s) => Ok(s),
        Value::Number(n) if n.as_f64().is_finite() => Ok(Value::Number(n).to_json()),
        _ => Err(Reject::Malformed),
    }
}

/// A list of rooms (`new Set(list)`): absent is empty.
fn rooms(v: Option<Value>) -> Decoded<Vec<String>> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a.into_iter().map(room).collect(),
        Some(_) => Err(Reject::Malformed),
    }
}

/// `opts`: `{rooms, except}` (and, on broadcasts, `flags`).
fn opts(v: Option<Value>) -> Decoded<(Selection, Members)> {
    let mut m = Members::of(v.ok_or(Reject::Malformed)?)?;
    let to = Selection {
        rooms: rooms(m.take("rooms"))?,
        except: rooms(m.take("except"))?,
    };
    Ok((to, m))
}

/// JavaScript truthiness.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => {
            let f = n.as_f64();
            f != 0.0 && !f.is_nan()
        }
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// An event's `[name, ...args]`.
fn event(v: Option<Value>) -> Decoded<(String, Vec<Value>)> {
    let Some(Value::Array(mut data)) = v else {
        return Err(Reject::Malformed);
    };
    if !matches!(data.first(), Some(Value::String(_))) {
        return Err(Reject::Malformed);
    }
    match data.remove(0) {
        Value::String(name) => Ok((name, data)),
        _ => Err(Reject::Malformed),
    }
}

/// A request id: only strings are ids here.
fn request_id(v: Option<Value>) -> Decoded<Option<RequestId>> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(RequestId::new(&s))),
        Some(_) => Err(Reject::Malformed),
    }
}

/// A broadcast's packet (an event) and options, as the receiving server
/// takes them.
struct Packet {
    nsp: Option<String>,
    name: String,
    args: Vec<Value>,
    to: Selection,
    volatile: bool,
    compress: bool,
    timeout: Option<Duration>,
}

fn packet(packet: Option<Value>, options: Option<Value>) -> Decoded<Packet> {
    let mut p = Members::of(packet.ok_or(Reject::Malformed)?)?;
    match p.take("type") {
        Some(Value::Number(n)) if n.as_f64() == EVENT as f64 => {}
        // Other packets are never broadcast by the official code.
        Some(Value::Number(_)) => return Err(Reject::Unsupported),
        _ => return Err(Reject::Malformed),
    }
    let nsp = match p.take("nsp") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(Reject::Malformed),
    };
    let (name, args) = event(p.take("data"))?;
    let (to, mut rest) = opts(options)?;
    let mut flags = match rest.take("flags") {
        None => Members(Vec::new()),
        Some(f) => Members::of(f)?,
    };
    let timeout = match flags.take("timeout") {
        Some(Value::Number(n)) => n
            .as_f64()
            .is_finite()
            .then(|| Duration::from_millis(n.as_f64().max(0.0) as u64)),
        _ => None,
    };
    Ok(Packet {
        nsp,
        name,
        args,
        to,
        volatile: truthy(flags.take("volatile").as_ref()),
        // The engine compresses unless told exactly `false`.
        compress: !matches!(flags.take("compress"), Some(Value::Bool(false))),
        timeout,
    })
}

/// Another node's broadcast, with its uid (any value: it is only compared)
/// and the namespace its packet names (`/` when it names none).
pub(super) fn decode_broadcast(payload: &Bytes) -> Decoded<(Value, ClusterMessage)> {
    let Value::Array(parts) = decode_value(payload)
        .ok()
        .flatten()
        .ok_or(Reject::Malformed)?
    else {
        return Err(Reject::Malformed);
    };
    let mut parts = parts.into_iter();
    let uid = parts.next().unwrap_or_default();
    let p = packet(parts.next(), parts.next())?;
    Ok((
        uid,
        ClusterMessage::Broadcast {
            nsp: p.nsp.unwrap_or_else(|| "/".to_owned()),
            to: p.to,
            volatile: p.volatile,
            compress: p.compress,
            name: p.name,
            args: p.args,
            ack: None,
        },
    ))
}

/// Another node's request, with its uid (`Null` when it has none, as the
/// emitter's joins) and, for a broadcast with acknowledgements, whose
/// timeout is missing, `default_timeout`.
pub(super) fn decode_request(
    nsp: &str,
    payload: &Bytes,
    default_timeout: Duration,
) -> Decoded<(Value, ClusterMessage)> {
    let mut m = Members::of(parse(payload)?)?;
    let uid = m.take("uid").unwrap_or_default();
    let ty = m.take("type");
    let nsp = nsp.to_owned();
    let ty = match ty {
        Some(Value::Number(n)) => n.as_u64().ok_or(Reject::Malformed)?,
        _ => return Err(Reject::Malformed),
    };
    let msg = match ty {
        kind::REMOTE_JOIN | kind::REMOTE_LEAVE => {
            // Without `opts`, the form of old nodes that names one socket
            // and waits for an answer.
            let (to, _) = opts(Some(m.take("opts").ok_or(Reject::Unsupported)?))?;
            let rooms = match m.take("rooms") {
                Some(Value::Array(a)) => a.into_iter().map(room).collect::<Decoded<_>>()?,
                Some(single) => vec![room(single)?],
                None => Vec::new(),
            };
            if ty == kind::REMOTE_JOIN {
                ClusterMessage::SocketsJoin { nsp, to, rooms }
            } else {
                ClusterMessage::SocketsLeave { nsp, to, rooms }
            }
        }
        kind::REMOTE_DISCONNECT => {
            let (to, _) = opts(Some(m.take("opts").ok_or(Reject::Unsupported)?))?;
            let close = truthy(m.take("close").as_ref());
            ClusterMessage::DisconnectSockets { nsp, to, close }
        }
        kind::REMOTE_FETCH => {
            let request = request_id(m.take("requestId"))?.ok_or(Reject::Malformed)?;
            let (to, _) = opts(m.take("opts"))?;
            ClusterMessage::FetchSockets { nsp, to, request }
        }
        kind::SERVER_SIDE_EMIT => {
            let request = request_id(m.take("requestId"))?;
            let (name, args) = event(m.take("data"))?;
            ClusterMessage::ServerSideEmit {
                nsp,
                name,
                args,
                request,
            }
        }
        kind::BROADCAST => {
            let request = request_id(m.take("requestId"))?.ok_or(Reject::Malformed)?;
            let p = packet(m.take("packet"), m.take("opts"))?;
            ClusterMessage::Broadcast {
                nsp,
                to: p.to,
                volatile: p.volatile,
                compress: p.compress,
                name: p.name,
                args: p.args,
                ack: Some((request, p.timeout.unwrap_or(default_timeout))),
            }
        }
        // `SOCKETS` and `ALL_ROOMS` among them.
        _ => return Err(Reject::Unsupported),
    };
    Ok((uid, msg))
}

/// What kind of answers a request of ours waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Awaits {
    Sockets,
    ServerSide,
    BroadcastAcks,
}

/// An answer: its request id (`None`: not a string, so none of ours), and
/// a way to read the rest once the request is known.
pub(super) struct Answer(Members);

impl Answer {
    pub(super) fn decode(payload: &Bytes) -> Decoded<(Option<RequestId>, Answer)> {
        let mut m = Members::of(parse(payload)?)?;
        let id = request_id(m.take("requestId")).unwrap_or(None);
        Ok((id, Answer(m)))
    }

    /// The answer, read as the official reads one to a request of this
    /// kind; `None` when it reads nothing from it.
    pub(super) fn read(self, awaits: Awaits) -> Decoded<Option<ClusterAnswer>> {
        let mut m = self.0;
        Ok(match awaits {
            // Counted even without a list of sockets.
            Awaits::Sockets => Some(ClusterAnswer::Sockets(match m.take("sockets") {
                Some(Value::Array(list)) => list.into_iter().filter_map(socket).collect(),
                _ => Vec::new(),
            })),
            Awaits::ServerSide => Some(ClusterAnswer::ServerSideAck(
                m.take("data").unwrap_or_default(),
            )),
            Awaits::BroadcastAcks => {
                let ty = m.take("type");
                if is_number(ty.as_ref(), kind::BROADCAST_CLIENT_COUNT) {
                    let n = match m.take("clientCount") {
                        Some(Value::Number(n)) => n.as_u64().ok_or(Reject::Malformed)?,
                        _ => return Err(Reject::Malformed),
                    };
                    Some(ClusterAnswer::ClientCount(
                        usize::try_from(n).map_err(|_| Reject::Malformed)?,
                    ))
                } else if is_number(ty.as_ref(), kind::BROADCAST_ACK) {
                    Some(ClusterAnswer::BroadcastAck(
                        m.take_raw("packet").into_iter().collect(),
                    ))
                } else {
                    None
                }
            }
        })
    }
}

/// One socket of a `REMOTE_FETCH` answer; one without a string id is
/// left out.
fn socket(v: Value) -> Option<SocketInfo> {
    let mut m = Members::of(v).ok()?;
    let Some(Value::String(id)) = m.take("id") else {
        return None;
    };
    let rooms = match m.take("rooms") {
        Some(Value::Array(a)) => a.into_iter().filter_map(|r| room(r).ok()).collect(),
        _ => Vec::new(),
    };
    Some(SocketInfo {
        id,
        handshake: m.take("handshake").unwrap_or_default(),
        rooms,
        data: m.take("data").unwrap_or_default(),
    })
}
