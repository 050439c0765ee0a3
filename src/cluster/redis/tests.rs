//! The adapter on its own: bytes against the official adapter's (a few
//! cases of `tests/node/redis-adapter-golden.js`, whose whole table
//! `tests/cluster_golden.rs` runs), filters, node counts, the links and
//! the backlog, and two adapters on one in-memory bus.

use std::collections::BTreeSet;

use super::*;
use crate::{
    cluster::Rooms,
    entropy::SeededEntropy,
    socketio::{Selection, SocketInfo, Value},
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Official bytes, with the official node's uids (NODEU1 on `/`, NODEU2 on
/// `/custom`) replaced by this adapter's, which are as long.
fn golden(a: &RedisAdapter, h: &str) -> Bytes {
    let mut b = hex(h);
    for (theirs, nsp) in [(b"NODEU1", "/"), (b"NODEU2", "/custom")] {
        let ours = a.uid(nsp).unwrap().as_bytes();
        while let Some(i) = b.windows(6).position(|w| w == theirs) {
            b[i..i + 6].copy_from_slice(ours);
        }
    }
    Bytes::from(b)
}

struct Bus {
    now: Instant,
}

impl Bus {
    fn new() -> Self {
        Bus {
            now: Instant::now(),
        }
    }

    fn at(&self, d: Duration) -> Instant {
        self.now + d
    }

    /// An adapter on `/` and `/custom`, both links up, commands drained.
    fn adapter(&self, seed: u64) -> RedisAdapter {
        let mut a = RedisAdapter::new(RedisConfig::default(), Box::new(SeededEntropy::new(seed)));
        a.add_namespace("/");
        a.add_namespace("/custom");
        a.handle_connected(self.now, Link::Publisher);
        a.handle_connected(self.now, Link::Subscriber);
        commands(&mut a, self.now);
        a
    }
}

fn commands(a: &mut RedisAdapter, now: Instant) -> Vec<RedisCommand> {
    std::iter::from_fn(|| a.poll_transmit(now)).collect()
}

fn publishes(a: &mut RedisAdapter, now: Instant) -> Vec<(String, Bytes)> {
    commands(a, now)
        .into_iter()
        .filter_map(|c| match c {
            RedisCommand::Publish { channel, payload } => Some((channel, payload)),
            _ => None,
        })
        .collect()
}

fn events(a: &mut RedisAdapter, now: Instant) -> Vec<Event> {
    std::iter::from_fn(|| a.poll_event(now)).collect()
}

fn cluster(a: &mut RedisAdapter, now: Instant) -> Vec<ClusterMessage> {
    events(a, now)
        .into_iter()
        .filter_map(|e| match e {
            Event::Cluster(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn sel(rooms: &[&str], except: &[&str]) -> Selection {
    Selection {
        rooms: rooms.iter().map(|s| (*s).to_owned()).collect(),
        except: except.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn broadcast(nsp: &str, to: Selection, name: &str, args: Vec<Value>) -> ClusterMessage {
    ClusterMessage::Broadcast {
        nsp: nsp.into(),
        to,
        volatile: false,
        compress: true,
        name: name.into(),
        args,
        ack: None,
    }
}

fn rid(s: &str) -> RequestId {
    RequestId::new(s)
}

/// Local rooms for the room-channel filter.
struct Members(BTreeSet<(&'static str, &'static str)>);

impl Rooms for Members {
    fn has_room(&self, nsp: &str, room: &str) -> bool {
        self.0.iter().any(|(n, r)| *n == nsp && *r == room)
    }
}

#[test]
fn subscriptions_as_the_official_makes_them_and_again_after_a_loss() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = RedisAdapter::new(RedisConfig::default(), Box::new(SeededEntropy::new(1)));
    assert_eq!(
        commands(&mut a, now),
        [
            RedisCommand::Connect(Link::Publisher),
            RedisCommand::Connect(Link::Subscriber)
        ]
    );
    a.add_namespace("/");
    // Nothing is subscribed before the subscriber is up.
    assert!(commands(&mut a, now).is_empty());
    a.handle_connected(now, Link::Subscriber);
    let uid = a.uid("/").unwrap().to_owned();
    assert_eq!(uid.len(), 6);
    let expected = |uid: &str, nsp: &str| {
        vec![
            RedisCommand::PSubscribe {
                pattern: format!("socket.io#{nsp}#*"),
            },
            RedisCommand::Subscribe {
                channels: vec![
                    format!("socket.io-request#{nsp}#"),
                    format!("socket.io-response#{nsp}#"),
                    format!("socket.io-response#{nsp}#{uid}#"),
                ],
            },
        ]
    };
    assert_eq!(commands(&mut a, now), expected(&uid, "/"));
    a.add_namespace("/custom");
    a.add_namespace("/custom");
    let custom = a.uid("/custom").unwrap().to_owned();
    assert_ne!(custom, uid);
    let out = commands(&mut a, now);
    assert_eq!(out, expected(&custom, "/custom"));
    assert!(out.iter().all(|c| c.link() == Link::Subscriber));
    // Lost, then back: everything again.
    a.handle_disconnected(now, Link::Subscriber);
    a.handle_timeout(bus.at(Duration::from_millis(50)));
    assert_eq!(
        commands(&mut a, now),
        [RedisCommand::Connect(Link::Subscriber)]
    );
    a.handle_connected(now, Link::Subscriber);
    let mut again = expected(&uid, "/");
    again.extend(expected(&custom, "/custom"));
    assert_eq!(commands(&mut a, now), again);
    a.remove_namespace("/custom");
    assert_eq!(
        commands(&mut a, now),
        [
            RedisCommand::PUnsubscribe {
                pattern: "socket.io#/custom#*".into()
            },
            RedisCommand::Unsubscribe {
                channels: vec![
                    "socket.io-request#/custom#".into(),
                    "socket.io-response#/custom#".into(),
                    format!("socket.io-response#/custom#{custom}#"),
                ]
            }
        ]
    );
}

#[test]
fn broadcasts_are_the_official_bytes() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(2);
    let cases: Vec<(ClusterMessage, &str, &str)> = vec![
        (
            broadcast(
                "/",
                sel(&[], &[]),
                "all",
                vec!["x".into(), Value::Binary(Bytes::from_static(&[1, 2]))],
            ),
            "socket.io#/#",
            "93a64e4f4445553183a47479706502a46461746193a3616c6ca178c4020102a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380",
        ),
        (
            broadcast("/", sel(&["r1"], &[]), "room", vec![1.into()]),
            "socket.io#/#r1#",
            "93a64e4f4445553183a47479706502a46461746192a4726f6f6d01a36e7370a12f83a5726f6f6d7391a27231a665786365707490a5666c61677380",
        ),
        (
            broadcast(
                "/",
                sel(&["r1", "r2"], &["r3"]),
                "rooms",
                vec![Value::object([
                    ("a", Value::from(1)),
                    ("b", Value::Array(vec![true.into(), Value::Null])),
                ])],
            ),
            "socket.io#/#",
            "93a64e4f4445553183a47479706502a46461746192a5726f6f6d7382a16101a16292c3c0a36e7370a12f83a5726f6f6d7392a27231a27232a665786365707491a27233a5666c61677380",
        ),
        (
            ClusterMessage::Broadcast {
                nsp: "/".into(),
                to: sel(&["r1"], &[]),
                volatile: true,
                compress: false,
                name: "vrc".into(),
                args: vec![],
                ack: None,
            },
            "socket.io#/#r1#",
            "93a64e4f4445553183a47479706502a46461746191a3767263a36e7370a12f83a5726f6f6d7391a27231a665786365707490a5666c61677382a8766f6c6174696c65c3a8636f6d7072657373c2",
        ),
        (
            broadcast(
                "/custom",
                sel(&[], &[]),
                "custom",
                vec![Value::Array(vec![1.into(), 2.into()]), "ñ".into()],
            ),
            "socket.io#/custom#",
            "93a64e4f4445553283a47479706502a46461746193a6637573746f6d920102a2c3b1a36e7370a72f637573746f6d83a5726f6f6d7390a665786365707490a5666c61677380",
        ),
        (
            ClusterMessage::Broadcast {
                nsp: "/".into(),
                to: sel(&["r1"], &["r2"]),
                volatile: false,
                compress: true,
                name: "ask2".into(),
                args: vec!["a".into(), Value::Binary(Bytes::from_static(&[9]))],
                ack: Some((rid("RQACK2"), Duration::from_millis(2500))),
            },
            "socket.io-request#/#",
            "85a3756964a64e4f44455531a9726571756573744964a6525141434b32a47479706507a67061636b657483a47479706502a46461746193a461736b32a161c40109a36e7370a12fa46f70747383a5726f6f6d7391a27231a665786365707491a27232a5666c61677381a774696d656f7574cd09c4",
        ),
    ];
    for (msg, channel, h) in cases {
        a.send(now, msg.clone());
        let expected = golden(&a, h);
        let got = publishes(&mut a, now);
        assert_eq!(got, [(channel.to_owned(), expected)], "{msg:?}");
    }
}

#[test]
fn requests_and_answers_are_the_official_bytes() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(3);
    let request = "socket.io-request#/#";
    let response = "socket.io-response#/#";
    let cases: Vec<(ClusterMessage, &str, &str)> = vec![
        (
            ClusterMessage::SocketsJoin {
                nsp: "/".into(),
                to: sel(&["r1"], &["r2"]),
                rooms: vec!["x".into()],
            },
            request,
            "7b22756964223a224e4f44455531222c2274797065223a322c226f707473223a7b22726f6f6d73223a5b227231225d2c22657863657074223a5b227232225d7d2c22726f6f6d73223a5b2278225d7d",
        ),
        (
            ClusterMessage::SocketsLeave {
                nsp: "/".into(),
                to: sel(&[], &["r1"]),
                rooms: vec!["a".into()],
            },
            request,
            "7b22756964223a224e4f44455531222c2274797065223a332c226f707473223a7b22726f6f6d73223a5b5d2c22657863657074223a5b227231225d7d2c22726f6f6d73223a5b2261225d7d",
        ),
        (
            ClusterMessage::DisconnectSockets {
                nsp: "/".into(),
                to: sel(&["r1"], &[]),
                close: true,
            },
            request,
            "7b22756964223a224e4f44455531222c2274797065223a342c226f707473223a7b22726f6f6d73223a5b227231225d2c22657863657074223a5b5d7d2c22636c6f7365223a747275657d",
        ),
        (
            ClusterMessage::ServerSideEmit {
                nsp: "/".into(),
                name: "hello".into(),
                args: vec!["hi".into(), 1.into()],
                request: None,
            },
            request,
            "7b22756964223a224e4f44455531222c2274797065223a362c2264617461223a5b2268656c6c6f222c226869222c315d7d",
        ),
        (
            ClusterMessage::Response {
                nsp: "/".into(),
                request: rid("RQ0001"),
                answer: ClusterAnswer::Sockets(vec![]),
            },
            response,
            "7b22726571756573744964223a22525130303031222c22736f636b657473223a5b5d7d",
        ),
        (
            ClusterMessage::Response {
                nsp: "/".into(),
                request: rid("RQ0002"),
                answer: ClusterAnswer::ServerSideAck("node".into()),
            },
            response,
            "7b2274797065223a362c22726571756573744964223a22525130303032222c2264617461223a226e6f6465227d",
        ),
        (
            ClusterMessage::Response {
                nsp: "/".into(),
                request: rid("RQ0003"),
                answer: ClusterAnswer::ClientCount(0),
            },
            response,
            "7b2274797065223a382c22726571756573744964223a22525130303033222c22636c69656e74436f756e74223a307d",
        ),
    ];
    for (msg, channel, h) in cases {
        a.send(now, msg.clone());
        let expected = golden(&a, h);
        assert_eq!(
            publishes(&mut a, now),
            [(channel.to_owned(), expected)],
            "{msg:?}"
        );
    }
    // A fetch asks for the node count first, and publishes once another
    // node is known to hear it.
    a.send(
        now,
        ClusterMessage::FetchSockets {
            nsp: "/".into(),
            to: sel(&["r1"], &["r2"]),
            request: rid("RQFET2"),
        },
    );
    let [RedisCommand::NumSub { token, channel }] = &commands(&mut a, now)[..] else {
        panic!("no NUMSUB")
    };
    assert_eq!(channel, request);
    a.handle_numsub(now, *token, 2);
    let fetch = "7b22756964223a224e4f44455531222c22726571756573744964223a22525146455432222c2274797065223a352c226f707473223a7b22726f6f6d73223a5b227231225d2c22657863657074223a5b227232225d7d7d";
    assert_eq!(
        publishes(&mut a, now),
        [(request.to_owned(), golden(&a, fetch))]
    );
    assert_eq!(
        cluster(&mut a, now),
        [ClusterMessage::Response {
            nsp: "/".into(),
            request: rid("RQFET2"),
            answer: ClusterAnswer::Nodes(1),
        }]
    );
}

#[test]
fn alone_nothing_is_published_and_no_node_is_waited_for() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(4);
    a.send(
        now,
        ClusterMessage::ServerSideEmit {
            nsp: "/".into(),
            name: "hello".into(),
            args: vec![],
            request: Some(rid("SSE")),
        },
    );
    let [RedisCommand::NumSub { token, .. }] = &commands(&mut a, now)[..] else {
        panic!("no NUMSUB")
    };
    a.handle_numsub(now, *token, 1);
    assert!(commands(&mut a, now).is_empty());
    assert_eq!(
        cluster(&mut a, now),
        [ClusterMessage::Response {
            nsp: "/".into(),
            request: rid("SSE"),
            answer: ClusterAnswer::Nodes(0),
        }]
    );
    // A second answer to the same question is ignored.
    a.handle_numsub(now, *token, 3);
    assert!(commands(&mut a, now).is_empty() && events(&mut a, now).is_empty());
}

#[test]
fn official_messages_become_cluster_messages() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(5);
    let members = Members(BTreeSet::from([("/", "r1")]));
    let cases: Vec<(&str, &str, ClusterMessage)> = vec![
        (
            "socket.io#/#",
            "93a64e4f4445553183a47479706502a46461746193a3616c6ca178c4020102a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380",
            broadcast(
                "/",
                sel(&[], &[]),
                "all",
                vec!["x".into(), Value::Binary(Bytes::from_static(&[1, 2]))],
            ),
        ),
        (
            "socket.io#/#",
            "93a64e4f4445553183a47479706502a46461746192a176cb3ff8000000000000a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677381a8766f6c6174696c65c3",
            ClusterMessage::Broadcast {
                nsp: "/".into(),
                to: sel(&[], &[]),
                volatile: true,
                compress: true,
                name: "v".into(),
                args: vec![1.5.into()],
                ack: None,
            },
        ),
        (
            "socket.io#/#r1#",
            "93a7656d697474657283a47479706502a46461746191a6652d726f6f6da36e7370a12f83a5726f6f6d7391a27231a5666c61677380a665786365707491a27232",
            broadcast("/", sel(&["r1"], &["r2"]), "e-room", vec![]),
        ),
        (
            "socket.io-request#/#",
            "85a3756964a64e4f44455531a9726571756573744964a6525141434b31a47479706507a67061636b657483a47479706502a46461746192a361736b01a36e7370a12fa46f70747383a5726f6f6d7390a665786365707490a5666c61677381a774696d656f7574cd03e8",
            ClusterMessage::Broadcast {
                nsp: "/".into(),
                to: sel(&[], &[]),
                volatile: false,
                compress: true,
                name: "ask".into(),
                args: vec![1.into()],
                ack: Some((rid("RQACK1"), Duration::from_millis(1000))),
            },
        ),
        (
            "socket.io-request#/#",
            "7b2274797065223a322c226f707473223a7b22726f6f6d73223a5b227231225d2c22657863657074223a5b5d7d2c22726f6f6d73223a5b226a31222c226a32225d7d",
            ClusterMessage::SocketsJoin {
                nsp: "/".into(),
                to: sel(&["r1"], &[]),
                rooms: vec!["j1".into(), "j2".into()],
            },
        ),
        (
            "socket.io-request#/#",
            "7b2274797065223a342c226f707473223a7b22726f6f6d73223a5b5d2c22657863657074223a5b227231225d7d2c22636c6f7365223a747275657d",
            ClusterMessage::DisconnectSockets {
                nsp: "/".into(),
                to: sel(&[], &["r1"]),
                close: true,
            },
        ),
        (
            "socket.io-request#/#",
            "7b22756964223a224e4f44455531222c22726571756573744964223a22525146455431222c2274797065223a352c226f707473223a7b22726f6f6d73223a5b5d2c22657863657074223a5b5d7d7d",
            ClusterMessage::FetchSockets {
                nsp: "/".into(),
                to: sel(&[], &[]),
                request: rid("RQFET1"),
            },
        ),
        (
            "socket.io-request#/#",
            "7b22756964223a22656d6974746572222c2274797065223a362c2264617461223a5b2268656c6c6f222c7b226b223a2276227d5d7d",
            ClusterMessage::ServerSideEmit {
                nsp: "/".into(),
                name: "hello".into(),
                args: vec![Value::object([("k", Value::from("v"))])],
                request: None,
            },
        ),
        (
            "socket.io-request#/#",
            "7b22756964223a224e4f44455531222c22726571756573744964223a22525153534531222c2274797065223a362c2264617461223a5b2268656c6c6f222c226869225d7d",
            ClusterMessage::ServerSideEmit {
                nsp: "/".into(),
                name: "hello".into(),
                args: vec!["hi".into()],
                request: Some(rid("RQSSE1")),
            },
        ),
    ];
    for (channel, h, expected) in cases {
        // The official node's uid, not this one's.
        a.handle_message(now, channel.as_bytes(), Bytes::from(hex(h)), &members);
        assert_eq!(cluster(&mut a, now), [expected], "{channel} {h}");
    }
    assert_eq!(a.stats().delivered, 9);
}

#[test]
fn what_is_not_for_this_node_is_ignored_and_bad_bytes_are_counted() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(6);
    let mut b = bus.adapter(7);
    let nobody = Members(BTreeSet::new());
    // Own messages come back from Redis.
    a.send(now, broadcast("/", sel(&[], &[]), "x", vec![]));
    a.send(
        now,
        ClusterMessage::SocketsJoin {
            nsp: "/".into(),
            to: sel(&[], &[]),
            rooms: vec!["r".into()],
        },
    );
    for (channel, payload) in publishes(&mut a, now) {
        a.handle_message(now, channel.as_bytes(), payload.clone(), &());
        // Another node takes them.
        b.handle_message(now, channel.as_bytes(), payload, &());
    }
    assert!(events(&mut a, now).is_empty());
    assert_eq!(cluster(&mut b, now).len(), 2);
    // A room nobody here is in: not even decoded.
    b.handle_message(
        now,
        b"socket.io#/#r9#",
        Bytes::from_static(b"\xc1"),
        &nobody,
    );
    // Unknown namespaces, other channels.
    b.handle_message(now, b"socket.io#/other#", Bytes::from_static(b"\x90"), &());
    b.handle_message(
        now,
        b"socket.io-request#/other#",
        Bytes::from_static(b"{}"),
        &(),
    );
    b.handle_message(now, b"elsewhere", Bytes::from_static(b"{}"), &());
    b.handle_message(now, b"socket.io#\xff#", Bytes::from_static(b"{}"), &());
    // A packet for another namespace on this one's channel.
    a.send(now, broadcast("/custom", sel(&[], &[]), "x", vec![]));
    let (_, payload) = publishes(&mut a, now).remove(0);
    b.handle_message(now, b"socket.io#/#", payload, &());
    // An answer to a request nobody here made.
    let answer = wire::client_count(&rid("nobody"), 1);
    b.handle_message(now, b"socket.io-response#/#", answer, &());
    assert!(events(&mut b, now).is_empty());
    assert_eq!(b.stats().ignored, 7);
    // Malformed: not msgpack, wrong shapes, bad JSON; unsupported kinds.
    for (channel, payload) in [
        ("socket.io#/#", &b"\xc1"[..]),
        ("socket.io#/#", b"\x93\xa1u\x80\x80"),
        (
            "socket.io#/#",
            b"\x93\xa1u\x83\xa4type\x02\xa4data\x91\x01\xa3nsp\xa1/\x80",
        ),
        (
            "socket.io-request#/#",
            b"{\"type\":2,\"opts\":{\"rooms\":[{}]}}",
        ),
        ("socket.io-request#/#", b"{\"type\":5,\"requestId\":\"r\"}"),
        ("socket.io-request#/#", b"{\"type\":6,\"data\":[1]}"),
        ("socket.io-request#/#", b"{not json"),
        ("socket.io-request#/#", b"[1]"),
        ("socket.io-response#/#", b"{\"requestId\":"),
    ] {
        b.handle_message(
            now,
            channel.as_bytes(),
            Bytes::copy_from_slice(payload),
            &(),
        );
    }
    for payload in [
        &br#"{"type":1,"requestId":"r"}"#[..],
        br#"{"type":2,"sid":"s","room":"r","requestId":"q"}"#,
        br#"{"type":42}"#,
    ] {
        b.handle_message(
            now,
            b"socket.io-request#/#",
            Bytes::from_static(payload),
            &(),
        );
    }
    assert!(events(&mut b, now).is_empty());
    let s = b.stats();
    assert_eq!((s.malformed, s.unsupported), (9, 3));
    assert_eq!(
        s.received,
        s.delivered + s.ignored + s.malformed + s.unsupported
    );
}

#[test]
fn answers_reach_their_request_until_it_times_out() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(8);
    let send_fetch = |a: &mut RedisAdapter, id: &str| {
        a.send(
            now,
            ClusterMessage::FetchSockets {
                nsp: "/".into(),
                to: Selection::default(),
                request: rid(id),
            },
        );
        commands(a, now);
    };
    send_fetch(&mut a, "F1");
    let socket = SocketInfo {
        id: "abc".into(),
        handshake: Value::object([("url", Value::from("/socket.io/"))]),
        rooms: vec!["abc".into(), "r1".into()],
        data: Value::object([("user", Value::from(7))]),
    };
    let answer = wire::sockets_answer(&rid("F1"), std::slice::from_ref(&socket));
    a.handle_message(now, b"socket.io-response#/#", answer.clone(), &());
    // On the specific response channel too (a node that publishes there).
    let specific = format!("socket.io-response#/#{}#", a.uid("/").unwrap());
    a.handle_message(now, specific.as_bytes(), answer.clone(), &());
    let expected = ClusterMessage::Response {
        nsp: "/".into(),
        request: rid("F1"),
        answer: ClusterAnswer::Sockets(vec![socket]),
    };
    assert_eq!(cluster(&mut a, now), [expected.clone(), expected]);
    // On another namespace's channel, it is not this request's.
    a.handle_message(now, b"socket.io-response#/custom#", answer.clone(), &());
    assert!(events(&mut a, now).is_empty());
    // After the requests timeout, forgotten.
    assert_eq!(a.poll_timeout(), Some(bus.at(Duration::from_secs(5))));
    a.handle_timeout(bus.at(Duration::from_secs(5)));
    a.handle_message(now, b"socket.io-response#/#", answer, &());
    assert!(events(&mut a, now).is_empty());
    // A broadcast's answers: counts and acknowledgements, for its own
    // timeout.
    let now = bus.at(Duration::from_secs(5));
    a.send(
        now,
        ClusterMessage::Broadcast {
            nsp: "/".into(),
            to: Selection::default(),
            volatile: false,
            compress: true,
            name: "q".into(),
            args: vec![],
            ack: Some((rid("B1"), Duration::from_millis(300))),
        },
    );
    commands(&mut a, now);
    for payload in [
        wire::client_count(&rid("B1"), 2),
        wire::broadcast_ack(&rid("B1"), &["yes".into(), "ignored".into()]),
        wire::broadcast_ack(&rid("B1"), &[]),
        wire::broadcast_ack(&rid("B1"), &[Value::Null]),
        // An answer of another kind is not read.
        wire::server_side_answer(&rid("B1"), &1.into()),
    ] {
        a.handle_message(now, b"socket.io-response#/#", payload, &());
    }
    let answers: Vec<ClusterAnswer> = cluster(&mut a, now)
        .into_iter()
        .map(|m| match m {
            ClusterMessage::Response { answer, .. } => answer,
            m => panic!("{m:?}"),
        })
        .collect();
    assert_eq!(
        answers,
        [
            ClusterAnswer::ClientCount(2),
            ClusterAnswer::BroadcastAck(vec!["yes".into()]),
            ClusterAnswer::BroadcastAck(vec![]),
            ClusterAnswer::BroadcastAck(vec![Value::Null]),
        ]
    );
    let later = now + Duration::from_millis(300);
    a.handle_timeout(later);
    a.handle_message(
        later,
        b"socket.io-response#/#",
        wire::client_count(&rid("B1"), 1),
        &(),
    );
    assert!(events(&mut a, later).is_empty());
}

#[test]
fn while_the_publisher_is_away_publishes_wait_within_bounds() {
    let bus = Bus::new();
    let now = bus.now;
    let config = RedisConfig::default().max_backlog(2, 1000);
    let mut a = RedisAdapter::new(config, Box::new(SeededEntropy::new(9)));
    a.add_namespace("/");
    a.handle_connected(now, Link::Publisher);
    commands(&mut a, now);
    a.handle_disconnected(now, Link::Publisher);
    assert_eq!(a.link_state(Link::Publisher), LinkState::Down);
    for i in 0..5 {
        a.send(now, broadcast("/", sel(&[], &[]), &format!("m{i}"), vec![]));
    }
    a.send(
        now,
        ClusterMessage::FetchSockets {
            nsp: "/".into(),
            to: Selection::default(),
            request: rid("F"),
        },
    );
    assert!(commands(&mut a, now).is_empty());
    assert_eq!(events(&mut a, now), [Event::Dropped { total: 1 }]);
    let s = a.stats();
    assert_eq!((s.backlog, s.dropped, s.published), (2, 3, 0));
    // Retries: 50 ms, then 100 ms after each failure, at most 500 ms.
    let mut t = now;
    for delay in [50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 500] {
        assert_eq!(a.poll_timeout(), Some(t + Duration::from_millis(delay)));
        t += Duration::from_millis(delay);
        a.handle_timeout(t);
        assert_eq!(
            commands(&mut a, t),
            [RedisCommand::Connect(Link::Publisher)]
        );
        assert_eq!(a.link_state(Link::Publisher), LinkState::Connecting);
        a.handle_disconnected(t, Link::Publisher);
    }
    a.handle_timeout(t + Duration::from_millis(500));
    commands(&mut a, t);
    a.handle_connected(t, Link::Publisher);
    let out = commands(&mut a, t);
    // The node count still wanted, then the backlog in order.
    assert!(matches!(&out[0], RedisCommand::NumSub { .. }));
    let names: Vec<&[u8]> = out[1..]
        .iter()
        .map(|c| match c {
            RedisCommand::Publish { payload, .. } => &payload[..],
            c => panic!("{c:?}"),
        })
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names[0].windows(2).any(|w| w == b"m0"));
    assert!(names[1].windows(2).any(|w| w == b"m1"));
    assert_eq!(a.stats().backlog, 0);
    // A later outage says so again.
    a.handle_disconnected(t, Link::Publisher);
    for i in 0..3 {
        a.send(t, broadcast("/", sel(&[], &[]), &format!("n{i}"), vec![]));
    }
    assert_eq!(events(&mut a, t), [Event::Dropped { total: 4 }]);
}

#[test]
fn two_adapters_carry_every_message_and_answer() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(10);
    let mut b = bus.adapter(11);
    let socket = SocketInfo {
        id: "s1".into(),
        handshake: Value::object([("auth", Value::object([("bin", Value::from(vec![1u8]))]))]),
        rooms: vec!["s1".into(), "7".into()],
        data: Value::Null,
    };
    let messages = vec![
        broadcast(
            "/",
            sel(&["r1"], &["s9", "r3"]),
            "e",
            vec![Value::from(vec![0u8, 255])],
        ),
        broadcast("/custom", sel(&["a", "b"], &[]), "e2", vec![(-3.25).into()]),
        ClusterMessage::SocketsLeave {
            nsp: "/custom".into(),
            to: sel(&["x"], &[]),
            rooms: vec!["y".into(), "y".into()],
        },
        ClusterMessage::DisconnectSockets {
            nsp: "/".into(),
            to: Selection::default(),
            close: false,
        },
        ClusterMessage::ServerSideEmit {
            nsp: "/".into(),
            name: "hello".into(),
            args: vec![Value::object([("deep", Value::Array(vec![Value::Null]))])],
            request: None,
        },
    ];
    for m in &messages {
        a.send(now, m.clone());
    }
    for (channel, payload) in publishes(&mut a, now) {
        b.handle_message(now, channel.as_bytes(), payload, &());
    }
    assert_eq!(cluster(&mut b, now), messages);
    // Requests with answers, both ways.
    let requests = vec![
        ClusterMessage::FetchSockets {
            nsp: "/".into(),
            to: sel(&["r"], &[]),
            request: rid("F"),
        },
        ClusterMessage::ServerSideEmit {
            nsp: "/".into(),
            name: "hello".into(),
            args: vec![],
            request: Some(rid("S")),
        },
    ];
    for m in &requests {
        a.send(now, m.clone());
    }
    for c in commands(&mut a, now) {
        if let RedisCommand::NumSub { token, .. } = c {
            a.handle_numsub(now, token, 2);
        }
    }
    for (channel, payload) in publishes(&mut a, now) {
        b.handle_message(now, channel.as_bytes(), payload, &());
    }
    assert_eq!(cluster(&mut b, now), requests);
    let answers = [
        (rid("F"), ClusterAnswer::Sockets(vec![socket.clone()])),
        (rid("S"), ClusterAnswer::ServerSideAck("b".into())),
    ];
    for (request, answer) in answers {
        b.send(
            now,
            ClusterMessage::Response {
                nsp: "/".into(),
                request,
                answer,
            },
        );
    }
    for (channel, payload) in publishes(&mut b, now) {
        a.handle_message(now, channel.as_bytes(), payload, &());
    }
    let got = cluster(&mut a, now);
    // The node counts first, then the answers; binary became a Node
    // Buffer's JSON on the way.
    assert_eq!(got.len(), 4);
    let ClusterMessage::Response {
        answer: ClusterAnswer::Sockets(sockets),
        ..
    } = &got[2]
    else {
        panic!("{got:?}")
    };
    assert_eq!(
        sockets[0].handshake.to_json(),
        r#"{"auth":{"bin":{"type":"Buffer","data":[1]}}}"#
    );
    assert_eq!(sockets[0].rooms, socket.rooms);
    assert_eq!(
        got[3],
        ClusterMessage::Response {
            nsp: "/".into(),
            request: rid("S"),
            answer: ClusterAnswer::ServerSideAck("b".into()),
        }
    );
}

#[test]
fn dates_and_numeric_rooms_read_as_javascript_has_them() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(12);
    // ["u", {type: 2, data: ["d", <timestamp 32: 1 s>], nsp: "/"}, {rooms: [7], except: [1.5]}]
    let mut m =
        b"\x93\xa1u\x83\xa4type\x02\xa4data\x92\xa1d\xd6\xff\x00\x00\x00\x01\xa3nsp\xa1/".to_vec();
    m.extend_from_slice(b"\x82\xa5rooms\x91\x07\xa6except\x91\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00");
    a.handle_message(now, b"socket.io#/#7#", Bytes::from(m), &());
    assert_eq!(
        cluster(&mut a, now),
        [broadcast(
            "/",
            sel(&["7"], &["1.5"]),
            "d",
            vec!["1970-01-01T00:00:01.000Z".into()]
        )]
    );
}

#[test]
fn commands_not_handed_out_when_a_link_drops_are_kept_or_made_again() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(13);
    a.send(now, broadcast("/", sel(&[], &[]), "kept", vec![]));
    a.add_namespace("/late");
    // The publisher drops before the driver took the publish: it waits.
    a.handle_disconnected(now, Link::Publisher);
    // The subscriber drops before the driver took the subscriptions: they
    // are made again with the others.
    a.handle_disconnected(now, Link::Subscriber);
    assert!(commands(&mut a, now).is_empty());
    assert_eq!((a.stats().backlog, a.stats().published), (1, 0));
    a.handle_connected(now, Link::Publisher);
    let out = publishes(&mut a, now);
    assert_eq!(out.len(), 1);
    assert!(out[0].1.windows(4).any(|w| w == b"kept"));
    a.handle_connected(now, Link::Subscriber);
    let subs = commands(&mut a, now);
    assert_eq!(subs.len(), 6, "{subs:?}");
    assert!(a.is_up());
    assert_eq!(a.stats().published, 1);
}

/// Two servers, each behind its adapter, on a bus that delivers every
/// publish to both subscribers (their own included, as Redis does).
struct Cluster {
    now: Instant,
    nodes: Vec<(socketio::Server, RedisAdapter)>,
}

impl Cluster {
    fn new(n: u64) -> Self {
        let now = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let config = socketio::Config::default().cluster(true);
                let server =
                    socketio::Server::new(config, Box::new(SeededEntropy::new(100 + i)), now);
                let mut a =
                    RedisAdapter::new(RedisConfig::default(), Box::new(SeededEntropy::new(i)));
                a.add_namespace("/");
                a.handle_connected(now, Link::Publisher);
                a.handle_connected(now, Link::Subscriber);
                (server, a)
            })
            .collect();
        Cluster { now, nodes }
    }

    /// Runs until quiet; the servers' events.
    fn settle(&mut self) -> Vec<Vec<socketio::Event>> {
        let now = self.now;
        let count = self.nodes.len();
        let mut events = vec![Vec::new(); count];
        loop {
            let mut published = Vec::new();
            let mut busy = false;
            for (i, (server, adapter)) in self.nodes.iter_mut().enumerate() {
                adapter.exchange(now, server);
                while let Some(e) = server.poll_event(now) {
                    events[i].push(e);
                    busy = true;
                }
                adapter.exchange(now, server);
                for c in commands(adapter, now) {
                    busy = true;
                    match c {
                        RedisCommand::Publish { channel, payload } => {
                            published.push((channel, payload))
                        }
                        RedisCommand::NumSub { token, .. } => {
                            adapter.handle_numsub(now, token, count)
                        }
                        _ => {}
                    }
                }
            }
            if !busy {
                return events;
            }
            for (channel, payload) in published {
                for (server, adapter) in self.nodes.iter_mut() {
                    adapter.handle_message(now, channel.as_bytes(), payload.clone(), &*server);
                }
            }
        }
    }
}

#[test]
fn servers_behind_adapters_answer_each_other() {
    let mut c = Cluster::new(3);
    let now = c.now;
    c.settle();
    let fetch = c.nodes[0]
        .0
        .of("/")
        .fetch_sockets(now, Duration::from_secs(5));
    let sse = c.nodes[0]
        .0
        .server_side_emit_with_ack(now, "/", "hello", vec!["hi".into()], Duration::from_secs(5))
        .unwrap();
    let acks = c.nodes[0]
        .0
        .of("/")
        .emit_with_ack(now, Duration::from_secs(5), "q", vec![])
        .unwrap();
    c.nodes[0].0.of("/").sockets_join(&["lobby"]);
    let mut events = c.settle();
    // The other two nodes hear the server-side event once each, and answer.
    let mut replied = 0;
    for (i, evs) in events.iter_mut().enumerate().skip(1) {
        let replies: Vec<_> = evs
            .drain(..)
            .filter_map(|e| match e {
                socketio::Event::ServerSideEmit {
                    name, args, reply, ..
                } => {
                    assert_eq!((name.as_str(), args), ("hello", vec![Value::from("hi")]));
                    reply
                }
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), 1);
        for r in replies {
            c.nodes[i]
                .0
                .server_side_reply(r, Value::from(format!("node{i}")));
            replied += 1;
        }
    }
    assert_eq!(replied, 2);
    // The fetch and the broadcast end once every other node has answered;
    // the server-side emit when both applications have.
    let mut first = std::mem::take(&mut events[0]);
    assert_eq!(first.len(), 2, "{first:?}");
    first.extend(c.settle().swap_remove(0));
    let mut ended = 0;
    for e in &first {
        match e {
            socketio::Event::Fetched {
                request,
                sockets,
                timed_out,
            } => {
                assert_eq!((request, sockets.len(), *timed_out), (&fetch, 0, false));
                ended += 1;
            }
            socketio::Event::ServerSideAcks {
                request,
                answers,
                timed_out,
            } => {
                assert_eq!(request, &sse);
                assert!(!timed_out);
                let mut answers = answers.clone();
                answers.sort_by_key(|v| v.to_json());
                assert_eq!(answers, [Value::from("node1"), Value::from("node2")]);
                ended += 1;
            }
            socketio::Event::BroadcastAck {
                request,
                answers,
                timed_out,
            } => {
                assert_eq!((request, answers.len(), *timed_out), (&acks, 0, false));
                ended += 1;
            }
            e => panic!("{e:?}"),
        }
    }
    assert_eq!(ended, 3);
    // Every adapter read everything it got: no malformed message, and each
    // node's own messages came back and were ignored.
    for (_, a) in &c.nodes {
        let s = a.stats();
        assert_eq!((s.malformed, s.unsupported), (0, 0), "{s:?}");
        assert!(s.ignored > 0);
    }
}

#[test]
fn the_node_count_is_asked_of_redis() {
    let bus = Bus::new();
    let now = bus.now;
    let mut a = bus.adapter(14);
    a.server_count(now, "/");
    let [RedisCommand::NumSub { token, channel }] = &commands(&mut a, now)[..] else {
        panic!("no NUMSUB")
    };
    assert_eq!(channel, "socket.io-request#/#");
    a.handle_numsub(now, *token, 3);
    assert_eq!(
        events(&mut a, now),
        [Event::ServerCount {
            nsp: "/".into(),
            count: 3
        }]
    );
    // Unanswered, it is forgotten after the requests timeout.
    a.server_count(now, "/");
    let [RedisCommand::NumSub { token, .. }] = &commands(&mut a, now)[..] else {
        panic!("no NUMSUB")
    };
    a.handle_timeout(bus.at(Duration::from_secs(5)));
    a.handle_numsub(now, *token, 3);
    assert!(events(&mut a, now).is_empty());
}
