//! The Redis adapter (`cluster::RedisAdapter`), two of them on one
//! in-memory bus.
//!
//! * Arbitrary cluster messages (namespaces, selections, flags, names,
//!   values, request ids, acknowledgement timeouts) sent by node A reach
//!   node B as the same message, values as JavaScript sees them after the
//!   trip (msgpack for broadcasts and acknowledgements, JSON elsewhere,
//!   where binary becomes a Node `Buffer`'s JSON); selections lose repeated
//!   rooms, as the official's sets do. B's answers to A's open requests
//!   reach A the same way, and none after the request timed out.
//! * Arbitrary bytes, and A's publishes with arbitrary bytes overwritten or
//!   cut off, on any of the adapter's channels (or any other), never
//!   panic; every message is counted exactly once (delivered, ignored,
//!   malformed or unsupported).
//! * Then arbitrary link losses and recoveries, node counts, time and
//!   sends and node counts: commands always go on their link, publishes only while the
//!   publisher is up, the backlog stays within its bound, `poll_timeout`
//!   is never in the past after `handle_timeout`.

use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use wsio::{
    cluster::{Event, Link, LinkState, RedisAdapter, RedisCommand, RedisConfig},
    entropy::SeededEntropy,
    socketio::{ClusterAnswer, ClusterMessage, RequestId, Selection, SocketInfo, Value},
};

use crate::{
    sio_msgpack::mp,
    values::{Args, Name, PlainVal, js, nsp, same, string},
};

fn rooms(u: &mut Unstructured) -> Result<Vec<String>> {
    const ROOMS: [&str; 5] = ["r1", "r2", "a#b", "", "7"];
    let n = u.int_in_range(0..=3)?;
    (0..n)
        .map(|_| {
            if u.ratio(2, 3)? {
                Ok(u.choose(&ROOMS)?.to_string())
            } else {
                string(u, 8)
            }
        })
        .collect()
}

fn selection(u: &mut Unstructured) -> Result<Selection> {
    Ok(Selection {
        rooms: rooms(u)?,
        except: rooms(u)?,
    })
}

fn request_id(u: &mut Unstructured) -> Result<RequestId> {
    Ok(RequestId::new(&string(u, 12)?))
}

/// A message of the server for the other nodes, as node A sends it.
#[derive(Debug)]
pub struct Msg(ClusterMessage);

impl<'a> Arbitrary<'a> for Msg {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let nsp = nsp(u, false)?;
        let to = selection(u)?;
        Ok(Msg(match u.int_in_range(0..=6)? {
            0 | 1 => ClusterMessage::Broadcast {
                nsp,
                to,
                volatile: u.arbitrary()?,
                compress: u.arbitrary()?,
                name: Name::arbitrary(u)?.0,
                args: Args::arbitrary(u)?.0,
                ack: if u.arbitrary()? {
                    let ms = u64::from(u.int_in_range(0..=20_000u16)?);
                    Some((request_id(u)?, Duration::from_millis(ms)))
                } else {
                    None
                },
            },
            2 => ClusterMessage::SocketsJoin {
                nsp,
                to,
                rooms: rooms(u)?,
            },
            3 => ClusterMessage::SocketsLeave {
                nsp,
                to,
                rooms: rooms(u)?,
            },
            4 => ClusterMessage::DisconnectSockets {
                nsp,
                to,
                close: u.arbitrary()?,
            },
            5 => ClusterMessage::FetchSockets {
                nsp,
                to,
                request: request_id(u)?,
            },
            _ => ClusterMessage::ServerSideEmit {
                nsp,
                name: Name::arbitrary(u)?.0,
                args: Args::arbitrary(u)?.0,
                request: if u.arbitrary()? {
                    Some(request_id(u)?)
                } else {
                    None
                },
            },
        }))
    }
}

/// An answer of B's, to one of A's open requests (picked by index).
#[derive(Debug, Arbitrary)]
pub enum Reply {
    Sockets(Vec<(String, PlainVal, PlainVal)>),
    ServerSide(PlainVal),
    Count(u32),
    Ack(Args),
}

/// A channel a raw message comes on.
#[derive(Debug, Arbitrary)]
pub enum Chan {
    Broadcast,
    Room(String),
    Request,
    Response,
    Specific,
    Custom,
    Any(String),
}

#[derive(Debug, Arbitrary)]
pub enum Step {
    /// A sends a message; B receives its publishes.
    Send(Msg),
    /// B answers A's open request number `.0` (modulo how many).
    Answer(u8, Reply),
    /// Time passes on both nodes.
    Wait(u16),
    /// A's next publish, edited, then cut, reaches B.
    Mangle(Msg, Vec<(u16, u8)>, Option<u16>),
    /// Raw bytes on a channel.
    Raw(Chan, Vec<u8>),
}

#[derive(Debug, Arbitrary)]
pub enum Chaos {
    Send(Msg),
    Count,
    Down(bool),
    Up(bool),
    NumSub(u8, u8),
    Wait(u16),
    Timeout,
}

#[derive(Debug, Arbitrary)]
pub struct Input {
    steps: Vec<Step>,
    chaos: Vec<Chaos>,
    backlog: (u8, u16),
}

struct Open {
    nsp: String,
    id: RequestId,
    kind: u8,
    deadline: Instant,
    /// A's timers ran at or after the deadline.
    expired: bool,
}

fn node(seed: u64, config: RedisConfig, now: Instant) -> RedisAdapter {
    let mut a = RedisAdapter::new(config, Box::new(SeededEntropy::new(seed)));
    a.handle_connected(now, Link::Publisher);
    a.handle_connected(now, Link::Subscriber);
    a
}

fn commands(a: &mut RedisAdapter, now: Instant) -> Vec<RedisCommand> {
    let cmds: Vec<RedisCommand> = std::iter::from_fn(|| a.poll_transmit(now)).collect();
    for c in &cmds {
        let link = c.link();
        assert!(
            matches!(c, RedisCommand::Connect(_)) || a.link_state(link) == LinkState::Up,
            "{c:?} on a link that is not up"
        );
    }
    cmds
}

fn messages(a: &mut RedisAdapter, now: Instant) -> Vec<ClusterMessage> {
    std::iter::from_fn(|| a.poll_event(now))
        .filter_map(|e| match e {
            Event::Cluster(m) => Some(m),
            Event::Dropped { .. } | Event::ServerCount { .. } => None,
            e => panic!("unexpected {e:?}"),
        })
        .collect()
}

fn counted(a: &RedisAdapter) {
    let s = a.stats();
    assert_eq!(
        s.received,
        s.delivered + s.ignored + s.malformed + s.unsupported,
        "{s:?}"
    );
}

/// A's commands for `msg`, node counts answered with 2; its publishes.
fn publishes(a: &mut RedisAdapter, now: Instant, msg: ClusterMessage) -> Vec<(String, Bytes)> {
    a.send(now, msg);
    let mut out = Vec::new();
    loop {
        let cmds = commands(a, now);
        if cmds.is_empty() {
            break;
        }
        for c in cmds {
            match c {
                RedisCommand::NumSub { token, .. } => a.handle_numsub(now, token, 2),
                RedisCommand::Publish { channel, payload } => out.push((channel, payload)),
                // A namespace the node meets for the first time.
                RedisCommand::PSubscribe { .. } | RedisCommand::Subscribe { .. } => {}
                c => panic!("unexpected {c:?}"),
            }
        }
    }
    out
}

/// A value as JSON from Node carries it: binary as a `Buffer`'s JSON.
fn buffers(v: &Value) -> Value {
    match v {
        Value::Binary(b) => Value::object([
            ("type", Value::from("Buffer")),
            (
                "data",
                Value::Array(b.iter().map(|&x| Value::from(x)).collect()),
            ),
        ]),
        Value::Array(a) => Value::Array(a.iter().map(buffers).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), buffers(v))).collect()),
        v => v.clone(),
    }
}

fn json(v: &Value) -> Value {
    js(&buffers(v), false)
}

fn unique(list: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in list {
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

fn trip(to: &Selection) -> Selection {
    Selection {
        rooms: unique(&to.rooms),
        except: unique(&to.except),
    }
}

/// What B hears of A's message.
fn expected(msg: &ClusterMessage) -> ClusterMessage {
    let mut m = msg.clone();
    match &mut m {
        ClusterMessage::Broadcast { to, args, ack, .. } => {
            *to = trip(to);
            *args = args.iter().map(mp).collect();
            if let Some((_, t)) = ack {
                *t = Duration::from_millis(u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
            }
        }
        ClusterMessage::SocketsJoin { to, .. }
        | ClusterMessage::SocketsLeave { to, .. }
        | ClusterMessage::DisconnectSockets { to, .. }
        | ClusterMessage::FetchSockets { to, .. } => *to = trip(to),
        ClusterMessage::ServerSideEmit { args, .. } => *args = args.iter().map(json).collect(),
        _ => {}
    }
    m
}

fn values_same(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

fn messages_same(a: &ClusterMessage, b: &ClusterMessage) -> bool {
    use ClusterMessage as M;
    match (a, b) {
        (
            M::Broadcast {
                nsp: n1,
                to: t1,
                volatile: v1,
                compress: c1,
                name: m1,
                args: a1,
                ack: k1,
            },
            M::Broadcast {
                nsp: n2,
                to: t2,
                volatile: v2,
                compress: c2,
                name: m2,
                args: a2,
                ack: k2,
            },
        ) => {
            n1 == n2
                && t1 == t2
                && v1 == v2
                && c1 == c2
                && m1 == m2
                && k1 == k2
                && values_same(a1, a2)
        }
        (
            M::ServerSideEmit {
                nsp: n1,
                name: m1,
                args: a1,
                request: r1,
            },
            M::ServerSideEmit {
                nsp: n2,
                name: m2,
                args: a2,
                request: r2,
            },
        ) => n1 == n2 && m1 == m2 && r1 == r2 && values_same(a1, a2),
        (
            M::Response {
                nsp: n1,
                request: r1,
                answer: x,
            },
            M::Response {
                nsp: n2,
                request: r2,
                answer: y,
            },
        ) => {
            n1 == n2
                && r1 == r2
                && match (x, y) {
                    (ClusterAnswer::Sockets(s1), ClusterAnswer::Sockets(s2)) => {
                        s1.len() == s2.len()
                            && s1.iter().zip(s2).all(|(p, q)| {
                                p.id == q.id
                                    && p.rooms == q.rooms
                                    && same(&p.handshake, &q.handshake)
                                    && same(&p.data, &q.data)
                            })
                    }
                    (ClusterAnswer::ServerSideAck(p), ClusterAnswer::ServerSideAck(q)) => {
                        same(p, q)
                    }
                    (ClusterAnswer::BroadcastAck(p), ClusterAnswer::BroadcastAck(q)) => {
                        values_same(p, q)
                    }
                    (p, q) => p == q,
                }
        }
        (a, b) => a == b,
    }
}

fn namespace(m: &ClusterMessage) -> &str {
    match m {
        ClusterMessage::Broadcast { nsp, .. }
        | ClusterMessage::SocketsJoin { nsp, .. }
        | ClusterMessage::SocketsLeave { nsp, .. }
        | ClusterMessage::DisconnectSockets { nsp, .. }
        | ClusterMessage::FetchSockets { nsp, .. }
        | ClusterMessage::ServerSideEmit { nsp, .. }
        | ClusterMessage::Response { nsp, .. } => nsp,
        _ => "",
    }
}

fn channel(chan: &Chan, nsp: &str, uid: &str) -> String {
    match chan {
        Chan::Broadcast => format!("socket.io#{nsp}#"),
        Chan::Room(r) => format!("socket.io#{nsp}#{r}#"),
        Chan::Request => format!("socket.io-request#{nsp}#"),
        Chan::Response => format!("socket.io-response#{nsp}#"),
        Chan::Specific => format!("socket.io-response#{nsp}#{uid}#"),
        Chan::Custom => "socket.io#/custom#".to_owned(),
        Chan::Any(s) => s.clone(),
    }
}

/// Notes the request a message of A's opens (replacing one of the same
/// id, as A does).
fn record(open: &mut Vec<Open>, msg: &ClusterMessage, now: Instant) {
    let opened = match msg {
        ClusterMessage::FetchSockets { request, .. } => {
            Some((request.clone(), 0, Duration::from_secs(5)))
        }
        ClusterMessage::ServerSideEmit {
            request: Some(request),
            ..
        } => Some((request.clone(), 1, Duration::from_secs(5))),
        ClusterMessage::Broadcast {
            ack: Some((request, t)),
            ..
        } => Some((request.clone(), 2, *t)),
        _ => None,
    };
    if let Some((id, kind, t)) = opened {
        open.retain(|o| o.id != id);
        open.push(Open {
            nsp: namespace(msg).to_owned(),
            id,
            kind,
            deadline: now + t,
            expired: false,
        });
    }
}

/// Runs the checks on one input.
pub fn run(input: Input) {
    let start = crate::base_instant();
    let mut now = start;
    let mut a = node(1, RedisConfig::default(), now);
    let mut b = node(2, RedisConfig::default(), now);
    for n in [&mut a, &mut b] {
        n.add_namespace("/");
        n.add_namespace("/custom");
        commands(n, now);
    }
    let mut open: Vec<Open> = Vec::new();
    for step in input.steps.into_iter().take(48) {
        match step {
            Step::Send(Msg(msg)) => {
                let nsp = namespace(&msg).to_owned();
                b.add_namespace(&nsp);
                let sent = publishes(&mut a, now, msg.clone());
                commands(&mut b, now);
                for (channel, payload) in sent {
                    b.handle_message(now, channel.as_bytes(), payload, &());
                }
                let got = messages(&mut b, now);
                if a.uid(&nsp) != b.uid(&nsp) {
                    let want = expected(&msg);
                    assert!(
                        got.len() == 1 && messages_same(&got[0], &want),
                        "sent {msg:?}, got {got:?}, want {want:?}"
                    );
                }
                record(&mut open, &msg, now);
                // A's node counts.
                messages(&mut a, now);
            }
            Step::Answer(i, reply) => {
                let Some(o) = open.get(usize::from(i) % open.len().max(1)) else {
                    continue;
                };
                let answer = match (o.kind, reply) {
                    (0, Reply::Sockets(list)) => ClusterAnswer::Sockets(
                        list.into_iter()
                            .take(3)
                            .map(|(id, h, d)| SocketInfo {
                                rooms: vec![id.clone(), "r1".to_owned()],
                                id,
                                handshake: h.0,
                                data: d.0,
                            })
                            .collect(),
                    ),
                    (1, Reply::ServerSide(v)) => ClusterAnswer::ServerSideAck(v.0),
                    (2, Reply::Count(n)) => ClusterAnswer::ClientCount(n as usize),
                    (2, Reply::Ack(args)) => ClusterAnswer::BroadcastAck(args.0),
                    _ => continue,
                };
                let msg = ClusterMessage::Response {
                    nsp: o.nsp.clone(),
                    request: o.id.clone(),
                    answer,
                };
                let live = !o.expired;
                for (channel, payload) in publishes(&mut b, now, msg.clone()) {
                    a.handle_message(now, channel.as_bytes(), payload, &());
                }
                let got = messages(&mut a, now);
                if live {
                    let want = match msg {
                        ClusterMessage::Response {
                            nsp,
                            request,
                            answer,
                        } => ClusterMessage::Response {
                            nsp,
                            request,
                            answer: match answer {
                                ClusterAnswer::Sockets(s) => ClusterAnswer::Sockets(
                                    s.into_iter()
                                        .map(|s| SocketInfo {
                                            handshake: json(&s.handshake),
                                            data: json(&s.data),
                                            ..s
                                        })
                                        .collect(),
                                ),
                                ClusterAnswer::ServerSideAck(v) => {
                                    ClusterAnswer::ServerSideAck(json(&v))
                                }
                                ClusterAnswer::BroadcastAck(args) => ClusterAnswer::BroadcastAck(
                                    args.first().map(mp).into_iter().collect(),
                                ),
                                other => other,
                            },
                        },
                        m => m,
                    };
                    assert!(
                        got.len() == 1 && messages_same(&got[0], &want),
                        "answered {want:?}, got {got:?}"
                    );
                } else {
                    assert!(got.is_empty(), "an answer after the timeout: {got:?}");
                }
            }
            Step::Wait(ms) => {
                now += Duration::from_millis(u64::from(ms));
                a.handle_timeout(now);
                b.handle_timeout(now);
                for o in open.iter_mut() {
                    o.expired |= o.deadline <= now;
                }
                for n in [&mut a, &mut b] {
                    if let Some(t) = n.poll_timeout() {
                        assert!(t > now, "poll_timeout in the past");
                    }
                }
            }
            Step::Mangle(Msg(msg), edits, cut) => {
                b.add_namespace(namespace(&msg));
                commands(&mut b, now);
                record(&mut open, &msg, now);
                for (channel, payload) in publishes(&mut a, now, msg) {
                    let mut p = payload.to_vec();
                    for (at, x) in edits.iter().take(8) {
                        if let Some(slot) = p.get_mut(usize::from(*at) % payload.len().max(1)) {
                            *slot = *x;
                        }
                    }
                    if let Some(c) = cut {
                        p.truncate(usize::from(c));
                    }
                    b.handle_message(now, channel.as_bytes(), Bytes::from(p), &());
                }
                messages(&mut b, now);
                messages(&mut a, now);
            }
            Step::Raw(chan, bytes) => {
                let uid = b.uid("/").unwrap_or_default().to_owned();
                let ch = channel(&chan, "/", &uid);
                b.handle_message(now, ch.as_bytes(), Bytes::from(bytes), &());
                messages(&mut b, now);
            }
        }
        counted(&a);
        counted(&b);
    }

    // Chaos on a node with a small backlog.
    let (count, bytes) = input.backlog;
    let config = RedisConfig::default().max_backlog(usize::from(count % 8), usize::from(bytes));
    let mut c = node(3, config, now);
    c.add_namespace("/");
    let mut tokens = Vec::new();
    for step in input.chaos.into_iter().take(48) {
        let link = |publisher: bool| {
            if publisher {
                Link::Publisher
            } else {
                Link::Subscriber
            }
        };
        match step {
            Chaos::Send(Msg(m)) => c.send(now, m),
            Chaos::Count => c.server_count(now, "/"),
            Chaos::Down(p) => c.handle_disconnected(now, link(p)),
            Chaos::Up(p) => c.handle_connected(now, link(p)),
            Chaos::NumSub(i, n) => {
                if let Some(t) = tokens.get(usize::from(i) % tokens.len().max(1)) {
                    c.handle_numsub(now, *t, usize::from(n));
                }
            }
            Chaos::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
            Chaos::Timeout => {
                c.handle_timeout(now);
                if let Some(t) = c.poll_timeout() {
                    assert!(t > now, "poll_timeout in the past");
                }
            }
        }
        for cmd in commands(&mut c, now) {
            if let RedisCommand::NumSub { token, .. } = cmd {
                tokens.push(token);
            }
        }
        messages(&mut c, now);
        let s = c.stats();
        assert!(s.backlog <= usize::from(count % 8), "{s:?}");
    }
}
