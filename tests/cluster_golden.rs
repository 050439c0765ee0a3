//! wsio's Redis adapter against the official one (`@socket.io/redis-adapter`
//! 8.3.0 with `socket.io` 4.8.4, and `@socket.io/redis-emitter` 5.1.0, run
//! by `tests/node/redis-adapter-golden.js` over a fake Redis client):
//!
//! - the same operations give the same Redis commands, byte for byte, in
//!   the same order (subscriptions, publishes, `PUBSUB NUMSUB`), and the
//!   same answers to the same requests;
//! - every message the official adapter and emitter publish reads as the
//!   cluster message wsio would have sent for the operation;
//! - what wsio publishes, fed to an official node with four official
//!   clients, does there what it means: events reach the right clients,
//!   rooms are joined and left, sockets are disconnected, the server-side
//!   handler runs, the node's own requests get wsio's answers, and its
//!   answers to wsio's requests read back as wsio expects.

mod common;

use std::{collections::BTreeMap, time::Duration, time::Instant};

use bytes::Bytes;
use wsio::{
    cluster::{Event, Link, RedisAdapter, RedisCommand, RedisConfig},
    entropy::SeededEntropy,
    socketio::{ClusterAnswer, ClusterMessage, RequestId, Selection, SocketInfo, Value},
};

/// What the official node did on Redis, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cmd {
    NumSub(String),
    Publish(String, Bytes),
}

#[derive(Default)]
struct Golden {
    /// (namespace, psubscribe|subscribe, channel), in order.
    subscriptions: Vec<(String, String, String)>,
    /// Per case, in order.
    commands: BTreeMap<String, Vec<Cmd>>,
    /// The requests delivered to the node by `answer_*` cases.
    delivered: BTreeMap<String, (String, Bytes)>,
}

fn unhex(s: &str) -> Bytes {
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect::<Vec<u8>>(),
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs the script (with `input` on stdin in feed mode); its lines, split
/// at tabs. Fails with the install command when a package is missing.
fn script(feed: Option<&str>) -> Vec<Vec<String>> {
    let mut c = common::node();
    let adapter = common::repo().join("tests/node/node_modules/@socket.io/redis-adapter");
    let emitter = common::repo().join("tests/node/node_modules/@socket.io/redis-emitter");
    assert!(
        adapter.exists() && emitter.exists(),
        "@socket.io/redis-adapter or @socket.io/redis-emitter is missing: run `npm ci --prefix tests/node` (pinned by tests/node/package-lock.json)"
    );
    c.arg("redis-adapter-golden.js");
    if let Some(input) = feed {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-feed.tsv");
        std::fs::write(&path, input).expect("write the feed");
        c.arg("--feed");
        c.stdin(std::fs::File::open(&path).expect("open the feed"));
    }
    let (ok, out) = common::run("redis-adapter-golden.js", c, Duration::from_secs(60));
    assert!(ok, "redis-adapter-golden.js failed");
    let mut lines: Vec<Vec<String>> = out
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    let count = lines
        .pop()
        .and_then(|l| l[0].strip_suffix(" lines")?.parse::<usize>().ok());
    assert_eq!(count, Some(lines.len()), "the script's output is cut short");
    lines
}

fn golden() -> Golden {
    let mut g = Golden::default();
    for l in script(None) {
        match l[0].as_str() {
            "subscribe" => g
                .subscriptions
                .push((l[1].clone(), l[2].clone(), l[3].clone())),
            "numsub" => g
                .commands
                .entry(l[1].clone())
                .or_default()
                .push(Cmd::NumSub(l[2].clone())),
            "publish" => g
                .commands
                .entry(l[1].clone())
                .or_default()
                .push(Cmd::Publish(l[2].clone(), unhex(&l[3]))),
            "deliver" => {
                g.delivered
                    .insert(l[1].clone(), (l[2].clone(), unhex(&l[3])));
            }
            other => panic!("unexpected line {other}"),
        }
    }
    g
}

fn adapter(seed: u64, now: Instant) -> RedisAdapter {
    let mut a = RedisAdapter::new(RedisConfig::default(), Box::new(SeededEntropy::new(seed)));
    a.add_namespace("/");
    a.add_namespace("/custom");
    a.handle_connected(now, Link::Publisher);
    a.handle_connected(now, Link::Subscriber);
    a
}

fn commands(a: &mut RedisAdapter, now: Instant) -> Vec<RedisCommand> {
    std::iter::from_fn(|| a.poll_transmit(now)).collect()
}

fn cluster(a: &mut RedisAdapter, now: Instant) -> Vec<ClusterMessage> {
    std::iter::from_fn(|| a.poll_event(now))
        .filter_map(|e| match e {
            Event::Cluster(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Bytes with the official node's uids (NODEU1 on `/`, NODEU2 on
/// `/custom`) in place of this adapter's, which are as long.
fn as_official(a: &RedisAdapter, b: &[u8]) -> Bytes {
    let mut b = b.to_vec();
    for (nsp, theirs) in [("/", b"NODEU1"), ("/custom", b"NODEU2")] {
        let ours = a.uid(nsp).expect("uid").as_bytes();
        while let Some(i) = b.windows(6).position(|w| w == ours) {
            b[i..i + 6].copy_from_slice(theirs);
        }
    }
    Bytes::from(b)
}

/// Runs a message through the adapter, answering each node count with
/// `nodes`; its commands.
fn run(a: &mut RedisAdapter, now: Instant, msg: ClusterMessage, nodes: usize) -> Vec<Cmd> {
    a.send(now, msg);
    let mut out = Vec::new();
    loop {
        let batch = commands(a, now);
        if batch.is_empty() {
            break;
        }
        for c in batch {
            match c {
                RedisCommand::NumSub { token, channel } => {
                    out.push(Cmd::NumSub(channel));
                    a.handle_numsub(now, token, nodes);
                }
                RedisCommand::Publish { channel, payload } => {
                    out.push(Cmd::Publish(channel, payload))
                }
                c => panic!("unexpected {c:?}"),
            }
        }
    }
    cluster(a, now);
    out
}

fn official_uids(a: &RedisAdapter, cmds: Vec<Cmd>) -> Vec<Cmd> {
    cmds.into_iter()
        .map(|c| match c {
            Cmd::Publish(channel, payload) => Cmd::Publish(channel, as_official(a, &payload)),
            c => c,
        })
        .collect()
}

fn sel(rooms: &[&str], except: &[&str]) -> Selection {
    Selection {
        rooms: rooms.iter().map(|s| (*s).to_owned()).collect(),
        except: except.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn rid(s: &str) -> RequestId {
    RequestId::new(s)
}

fn bin(b: &[u8]) -> Value {
    Value::Binary(Bytes::copy_from_slice(b))
}

fn json(s: &str) -> Value {
    Value::from_json(s).expect("json")
}

#[allow(clippy::too_many_arguments)]
fn bc(
    nsp: &str,
    to: Selection,
    volatile: bool,
    compress: bool,
    name: &str,
    args: Vec<Value>,
    ack: Option<(&str, u64)>,
) -> ClusterMessage {
    ClusterMessage::Broadcast {
        nsp: nsp.into(),
        to,
        volatile,
        compress,
        name: name.into(),
        args,
        ack: ack.map(|(r, ms)| (rid(r), Duration::from_millis(ms))),
    }
}

/// The golden cases of the official node, as wsio's server hands them to
/// its adapter, with the node count Redis answers.
fn operations() -> Vec<(&'static str, ClusterMessage, usize)> {
    let all = Selection::default;
    vec![
        (
            "emit_all",
            bc(
                "/",
                all(),
                false,
                true,
                "all",
                vec!["x".into(), bin(&[1, 2])],
                None,
            ),
            2,
        ),
        (
            "emit_room",
            bc(
                "/",
                sel(&["r1"], &[]),
                false,
                true,
                "room",
                vec![1.into()],
                None,
            ),
            2,
        ),
        (
            "emit_rooms_except",
            bc(
                "/",
                sel(&["r1", "r2"], &["r3"]),
                false,
                true,
                "rooms",
                vec![json(r#"{"a":1,"b":[true,null]}"#)],
                None,
            ),
            2,
        ),
        (
            "emit_except",
            bc(
                "/",
                sel(&[], &["r3", "r4"]),
                false,
                true,
                "except",
                vec![],
                None,
            ),
            2,
        ),
        (
            "emit_volatile",
            bc("/", all(), true, true, "v", vec![1.5.into()], None),
            2,
        ),
        (
            "emit_compress_false",
            bc("/", all(), false, false, "c", vec![(-3).into()], None),
            2,
        ),
        (
            "emit_volatile_room_compress",
            bc("/", sel(&["r1"], &[]), true, false, "vrc", vec![], None),
            2,
        ),
        (
            "emit_custom",
            bc(
                "/custom",
                all(),
                false,
                true,
                "custom",
                vec![json("[1,2]"), "ñ".into()],
                None,
            ),
            2,
        ),
        (
            "emit_binary_nested",
            bc(
                "/",
                all(),
                false,
                true,
                "bin",
                vec![Value::object([
                    ("file", bin(&[0, 255])),
                    ("list", Value::Array(vec![bin(&[])])),
                ])],
                None,
            ),
            2,
        ),
        (
            "emit_ack",
            bc(
                "/",
                all(),
                false,
                true,
                "ask",
                vec![1.into()],
                Some(("RQACK1", 1000)),
            ),
            2,
        ),
        (
            "emit_ack_room",
            bc(
                "/",
                sel(&["r1"], &["r2"]),
                false,
                true,
                "ask2",
                vec!["a".into(), bin(&[9])],
                Some(("RQACK2", 2500)),
            ),
            2,
        ),
        (
            "sockets_join",
            ClusterMessage::SocketsJoin {
                nsp: "/".into(),
                to: all(),
                rooms: vec!["a".into(), "b".into()],
            },
            2,
        ),
        (
            "sockets_join_room",
            ClusterMessage::SocketsJoin {
                nsp: "/".into(),
                to: sel(&["r1"], &["r2"]),
                rooms: vec!["x".into()],
            },
            2,
        ),
        (
            "sockets_leave",
            ClusterMessage::SocketsLeave {
                nsp: "/".into(),
                to: sel(&[], &["r1"]),
                rooms: vec!["a".into()],
            },
            2,
        ),
        (
            "disconnect_close",
            ClusterMessage::DisconnectSockets {
                nsp: "/".into(),
                to: sel(&["r1"], &[]),
                close: true,
            },
            2,
        ),
        (
            "disconnect",
            ClusterMessage::DisconnectSockets {
                nsp: "/".into(),
                to: all(),
                close: false,
            },
            2,
        ),
        (
            "fetch",
            ClusterMessage::FetchSockets {
                nsp: "/".into(),
                to: all(),
                request: rid("RQFET1"),
            },
            2,
        ),
        (
            "fetch_room",
            ClusterMessage::FetchSockets {
                nsp: "/".into(),
                to: sel(&["r1"], &["r2"]),
                request: rid("RQFET2"),
            },
            2,
        ),
        (
            "fetch_alone",
            ClusterMessage::FetchSockets {
                nsp: "/".into(),
                to: all(),
                request: rid("ALONE1"),
            },
            1,
        ),
        (
            "server_side",
            ClusterMessage::ServerSideEmit {
                nsp: "/".into(),
                name: "hello".into(),
                args: vec!["hi".into(), 1.into()],
                request: None,
            },
            2,
        ),
        (
            "server_side_ack",
            ClusterMessage::ServerSideEmit {
                nsp: "/".into(),
                name: "hello".into(),
                args: vec!["hi".into()],
                request: Some(rid("RQSSE1")),
            },
            2,
        ),
        (
            "server_side_ack_alone",
            ClusterMessage::ServerSideEmit {
                nsp: "/".into(),
                name: "hello".into(),
                args: vec![],
                request: Some(rid("ALONE2")),
            },
            1,
        ),
    ]
}

/// What wsio makes of the emitter's messages.
fn emitter_messages() -> Vec<(&'static str, ClusterMessage)> {
    vec![
        (
            "emitter_emit",
            bc(
                "/",
                Selection::default(),
                false,
                true,
                "from-emitter",
                vec![1.into(), bin(&[3])],
                None,
            ),
        ),
        (
            "emitter_room",
            bc(
                "/",
                sel(&["r1"], &["r2"]),
                false,
                true,
                "e-room",
                vec![],
                None,
            ),
        ),
        (
            "emitter_volatile",
            bc("/", Selection::default(), true, false, "e-v", vec![], None),
        ),
        (
            "emitter_custom",
            bc(
                "/custom",
                Selection::default(),
                false,
                true,
                "e-custom",
                vec![],
                None,
            ),
        ),
        (
            "emitter_join",
            ClusterMessage::SocketsJoin {
                nsp: "/".into(),
                to: sel(&["r1"], &[]),
                rooms: vec!["j1".into(), "j2".into()],
            },
        ),
        (
            "emitter_leave",
            ClusterMessage::SocketsLeave {
                nsp: "/".into(),
                to: Selection::default(),
                rooms: vec!["j1".into()],
            },
        ),
        (
            "emitter_disconnect",
            ClusterMessage::DisconnectSockets {
                nsp: "/".into(),
                to: sel(&[], &["r1"]),
                close: true,
            },
        ),
        (
            "emitter_server_side",
            ClusterMessage::ServerSideEmit {
                nsp: "/".into(),
                name: "hello".into(),
                args: vec![json(r#"{"k":"v"}"#)],
                request: None,
            },
        ),
    ]
}

/// Feeds an official publish to a wsio node; the messages it hands its
/// server.
fn receive(r: &mut RedisAdapter, now: Instant, cmd: &Cmd) -> Vec<ClusterMessage> {
    let Cmd::Publish(channel, payload) = cmd else {
        return Vec::new();
    };
    r.handle_message(now, channel.as_bytes(), payload.clone(), &());
    cluster(r, now)
}

#[test]
fn the_same_operations_give_the_official_bytes_and_read_back() {
    let g = golden();
    let now = Instant::now();
    let mut a = adapter(1, now);
    // Subscriptions, namespace by namespace.
    let mut subs = Vec::new();
    for c in commands(&mut a, now) {
        match c {
            RedisCommand::PSubscribe { pattern } => subs.push(("psubscribe".to_owned(), pattern)),
            RedisCommand::Subscribe { channels } => {
                subs.extend(channels.into_iter().map(|c| ("subscribe".to_owned(), c)))
            }
            RedisCommand::Connect(_) => {}
            c => panic!("unexpected {c:?}"),
        }
    }
    let subs: Vec<(String, String)> = subs
        .into_iter()
        .map(|(k, c)| {
            (
                k,
                String::from_utf8(as_official(&a, c.as_bytes()).to_vec()).unwrap(),
            )
        })
        .collect();
    let official: Vec<(String, String)> = g
        .subscriptions
        .iter()
        .map(|(_, k, c)| (k.clone(), c.clone()))
        .collect();
    assert_eq!(subs, official);

    // Operations: the same commands; and the official bytes read as the
    // same message on another wsio node.
    let mut r = adapter(2, now);
    commands(&mut r, now);
    let mut seen = 0;
    for (case, msg, nodes) in operations() {
        let official = g
            .commands
            .get(case)
            .unwrap_or_else(|| panic!("no case {case}"));
        let ours = run(&mut a, now, msg.clone(), nodes);
        let ours = official_uids(&a, ours);
        assert_eq!(&ours, official, "{case}");
        let back: Vec<ClusterMessage> = official
            .iter()
            .flat_map(|c| receive(&mut r, now, c))
            .collect();
        let expected: Vec<ClusterMessage> = if ours.iter().any(|c| matches!(c, Cmd::Publish(..))) {
            vec![msg]
        } else {
            vec![]
        };
        assert_eq!(back, expected, "{case}");
        seen += 1;
    }
    for (case, msg) in emitter_messages() {
        let official = g
            .commands
            .get(case)
            .unwrap_or_else(|| panic!("no case {case}"));
        let back: Vec<ClusterMessage> = official
            .iter()
            .flat_map(|c| receive(&mut r, now, c))
            .collect();
        assert_eq!(back, [msg], "{case}");
        seen += 1;
    }

    // Answers: the request the official node got reads as what wsio's
    // server would answer; the answer is the official's.
    let answers = [
        (
            "answer_fetch",
            ClusterMessage::FetchSockets {
                nsp: "/".into(),
                to: Selection::default(),
                request: rid("RQ0001"),
            },
            ClusterAnswer::Sockets(vec![]),
        ),
        (
            "answer_server_side",
            ClusterMessage::ServerSideEmit {
                nsp: "/".into(),
                name: "hello".into(),
                args: vec!["x".into()],
                request: Some(rid("RQ0002")),
            },
            ClusterAnswer::ServerSideAck("node".into()),
        ),
        (
            "answer_broadcast",
            bc(
                "/",
                Selection::default(),
                false,
                true,
                "q",
                vec![1.into()],
                Some(("RQ0003", 1000)),
            ),
            ClusterAnswer::ClientCount(0),
        ),
    ];
    for (case, request, answer) in answers {
        let (channel, payload) = &g.delivered[case];
        a.handle_message(now, channel.as_bytes(), payload.clone(), &());
        assert_eq!(
            cluster(&mut a, now),
            std::slice::from_ref(&request),
            "{case}"
        );
        let id = match &request {
            ClusterMessage::FetchSockets { request, .. } => request.clone(),
            ClusterMessage::ServerSideEmit {
                request: Some(r), ..
            } => r.clone(),
            ClusterMessage::Broadcast {
                ack: Some((r, _)), ..
            } => r.clone(),
            m => panic!("{m:?}"),
        };
        let msg = ClusterMessage::Response {
            nsp: "/".into(),
            request: id,
            answer,
        };
        let ours = run(&mut a, now, msg, 2);
        let ours = official_uids(&a, ours);
        assert_eq!(&ours, &g.commands[case], "{case}");
        seen += 1;
    }
    assert_eq!(
        seen,
        g.commands.len(),
        "a case of the script is not checked"
    );
    let s = r.stats();
    assert_eq!((s.malformed, s.unsupported), (0, 0));
}

/// One official client's view, from the feed's lines.
#[derive(Debug, Default)]
struct Feed {
    recv: BTreeMap<String, Vec<(String, String)>>,
    disconnect: BTreeMap<String, String>,
    rooms: BTreeMap<String, String>,
    server_side: Vec<(String, String, String)>,
    publishes: Vec<(String, Bytes)>,
    results: BTreeMap<String, String>,
}

fn feed(input: &str) -> Feed {
    let mut f = Feed::default();
    for l in script(Some(input)) {
        match l[0].as_str() {
            "recv" => f
                .recv
                .entry(l[1].clone())
                .or_default()
                .push((l[2].clone(), l[3].clone())),
            "disconnect" => {
                f.disconnect.insert(l[1].clone(), l[2].clone());
            }
            "rooms" => {
                f.rooms.insert(l[1].clone(), l[2].clone());
            }
            "server-side" => f
                .server_side
                .push((l[1].clone(), l[2].clone(), l[3].clone())),
            "publish" => f.publishes.push((l[2].clone(), unhex(&l[3]))),
            "result" => {
                f.results.insert(l[1].clone(), l[2].clone());
            }
            "subscribe" | "numsub" => {}
            other => panic!("unexpected line {other}"),
        }
    }
    f
}

#[test]
fn an_official_node_does_what_wsio_publishes() {
    let now = Instant::now();
    let mut w = adapter(3, now);
    commands(&mut w, now);
    let all = Selection::default;
    let sock = SocketInfo {
        id: "wsio-sock".into(),
        handshake: json(r#"{"headers":{"host":"localhost"},"query":{"EIO":"4"},"auth":{}}"#),
        rooms: vec!["wsio-sock".into(), "r1".into()],
        data: json(r#"{"k":1}"#),
    };
    let response = |request: &str, answer| ClusterMessage::Response {
        nsp: "/".into(),
        request: rid(request),
        answer,
    };
    let messages = vec![
        bc(
            "/",
            all(),
            false,
            true,
            "all",
            vec!["x".into(), bin(&[1, 2])],
            None,
        ),
        bc(
            "/",
            sel(&["r1"], &[]),
            false,
            true,
            "room",
            vec![1.into()],
            None,
        ),
        bc(
            "/",
            sel(&["r1"], &["r2"]),
            false,
            true,
            "narrow",
            vec![json(r#"{"a":[true,null]}"#)],
            None,
        ),
        bc(
            "/custom",
            all(),
            false,
            true,
            "custom",
            vec!["ñ".into()],
            None,
        ),
        bc("/", sel(&["r2"], &[]), true, false, "vol", vec![], None),
        bc(
            "/",
            all(),
            false,
            true,
            "bqw",
            vec!["w".into()],
            Some(("BQW", 2000)),
        ),
        ClusterMessage::SocketsJoin {
            nsp: "/".into(),
            to: sel(&["r2"], &[]),
            rooms: vec!["j".into()],
        },
        ClusterMessage::SocketsJoin {
            nsp: "/".into(),
            to: sel(&[], &["r1"]),
            rooms: vec!["j2".into()],
        },
        ClusterMessage::SocketsLeave {
            nsp: "/".into(),
            to: sel(&["r2"], &[]),
            rooms: vec!["r1".into()],
        },
        bc(
            "/",
            sel(&["j"], &[]),
            false,
            true,
            "after-join",
            vec![],
            None,
        ),
        bc(
            "/",
            sel(&["nobody-here"], &[]),
            false,
            true,
            "lost",
            vec![],
            None,
        ),
        ClusterMessage::ServerSideEmit {
            nsp: "/".into(),
            name: "hello".into(),
            args: vec!["w1".into(), 2.into()],
            request: None,
        },
        ClusterMessage::ServerSideEmit {
            nsp: "/".into(),
            name: "hello".into(),
            args: vec!["w2".into()],
            request: Some(rid("SW1")),
        },
        ClusterMessage::FetchSockets {
            nsp: "/".into(),
            to: sel(&["r1"], &[]),
            request: rid("FW1"),
        },
        response("FETCH1", ClusterAnswer::Sockets(vec![sock])),
        response("SSEAK1", ClusterAnswer::ServerSideAck("wsio".into())),
        response("BCAST1", ClusterAnswer::ClientCount(1)),
        response(
            "BCAST1",
            ClusterAnswer::BroadcastAck(vec!["w-answer".into()]),
        ),
        ClusterMessage::DisconnectSockets {
            nsp: "/".into(),
            to: sel(&["j2"], &[]),
            close: true,
        },
    ];
    let mut input = String::new();
    for m in messages {
        for c in run(&mut w, now, m, 2) {
            if let Cmd::Publish(channel, payload) = c {
                input.push_str(&format!("{channel}\t{}\n", hex(&payload)));
            }
        }
    }
    let f = feed(&input);

    let recv = |c: &str| -> Vec<String> {
        f.recv.get(c).map_or_else(Vec::new, |v| {
            v.iter().map(|(e, a)| format!("{e} {a}")).collect()
        })
    };
    assert_eq!(
        recv("c0"),
        [
            r#"bq ["from-node"]"#,
            r#"all ["x",{"$bin":"0102"}]"#,
            "room [1]",
            r#"narrow [{"a":[true,null]}]"#,
            r#"bqw ["w"]"#,
        ]
    );
    assert_eq!(
        recv("c1"),
        [
            r#"bq ["from-node"]"#,
            r#"all ["x",{"$bin":"0102"}]"#,
            "room [1]",
            "vol []",
            r#"bqw ["w"]"#,
            "after-join []",
        ]
    );
    assert_eq!(
        recv("c2"),
        [
            r#"bq ["from-node"]"#,
            r#"all ["x",{"$bin":"0102"}]"#,
            r#"bqw ["w"]"#
        ]
    );
    assert_eq!(recv("c3"), [r#"custom ["ñ"]"#]);
    assert_eq!(
        f.disconnect.get("c2").map(String::as_str),
        Some("io server disconnect")
    );
    assert_eq!(f.disconnect.len(), 1, "{:?}", f.disconnect);
    assert_eq!(f.rooms.get("c0").map(String::as_str), Some(r#"["r1"]"#));
    assert_eq!(f.rooms.get("c1").map(String::as_str), Some(r#"["j","r2"]"#));
    assert_eq!(
        f.server_side,
        [
            ("/".to_owned(), r#"["w1",2]"#.to_owned(), "noack".to_owned()),
            ("/".to_owned(), r#"["w2"]"#.to_owned(), "ack".to_owned()),
        ]
    );
    // The node's own requests, answered by wsio.
    assert_eq!(
        f.results.get("fetch").map(String::as_str),
        Some(
            r#"[{"id":"wsio-sock","rooms":["wsio-sock","r1"],"data":{"k":1},"handshake":{"headers":{"host":"localhost"},"query":{"EIO":"4"},"auth":{}}}]"#
        )
    );
    assert_eq!(
        f.results.get("server-side").map(String::as_str),
        Some(r#"["wsio"]"#)
    );
    assert_eq!(
        f.results.get("broadcast").map(String::as_str),
        Some(r#"{"error":null,"answers":["bq-answer","bq-answer","bq-answer","w-answer"]}"#)
    );

    // The node's answers to wsio's requests, read by wsio.
    let mut answers: BTreeMap<String, Vec<ClusterAnswer>> = BTreeMap::new();
    for (channel, payload) in &f.publishes {
        if !channel.starts_with("socket.io-response#") {
            continue;
        }
        w.handle_message(now, channel.as_bytes(), payload.clone(), &());
        for m in cluster(&mut w, now) {
            let ClusterMessage::Response {
                request, answer, ..
            } = m
            else {
                panic!("{m:?}")
            };
            answers
                .entry(request.as_str().to_owned())
                .or_default()
                .push(answer);
        }
    }
    assert_eq!(
        answers.get("BQW"),
        Some(&vec![
            ClusterAnswer::ClientCount(3),
            ClusterAnswer::BroadcastAck(vec!["bqw-answer".into()]),
            ClusterAnswer::BroadcastAck(vec!["bqw-answer".into()]),
            ClusterAnswer::BroadcastAck(vec!["bqw-answer".into()]),
        ])
    );
    assert_eq!(
        answers.get("SW1"),
        Some(&vec![ClusterAnswer::ServerSideAck("node".into())])
    );
    let Some([ClusterAnswer::Sockets(sockets)]) = answers.get("FW1").map(Vec::as_slice) else {
        panic!("no fetch answer: {answers:?}")
    };
    // c0, the one socket left in r1, with the official handshake.
    assert_eq!(sockets.len(), 1);
    let s = &sockets[0];
    assert_eq!(s.rooms, [s.id.clone(), "r1".to_owned()]);
    assert_eq!(s.handshake["auth"]["name"].as_str(), Some("c0"));
    assert_eq!(
        s.handshake["query"]["transport"].as_str(),
        Some("websocket")
    );
    assert_eq!(s.handshake["address"].as_str(), Some("127.0.0.1"));
    assert!(s.handshake["time"].as_str().is_some() && s.handshake["issued"].as_f64().is_some());
    assert_eq!(s.data, Value::Object(vec![]));
    let st = w.stats();
    assert_eq!((st.malformed, st.unsupported), (0, 0));
}
