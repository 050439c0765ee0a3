//! wsio's msgpack parser against the official one (`socket.io-msgpack-parser`
//! 3.0.2, run by `tests/node/sio-msgpack-golden.js`): the same packets
//! encode to the same bytes, the official bytes decode to the same packets,
//! and a list of edge messages is accepted or refused as the official
//! decoder does, with the same values, except for the divergences listed
//! here with their reasons.

mod common;

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use wsio::socketio::{Number, Packet, Value, msgpack};

struct Line {
    kind: String,
    bytes: Bytes,
    accepted: bool,
    /// The decoded packet as JSON, or the official error.
    detail: String,
}

/// Runs the Node script; fails with the install command when Node or the
/// package is missing.
fn golden() -> HashMap<String, Line> {
    let mut c = common::node();
    let parser = common::repo().join("tests/node/node_modules/socket.io-msgpack-parser");
    assert!(
        parser.exists(),
        "socket.io-msgpack-parser is missing: run `npm ci --prefix tests/node` (pinned by tests/node/package-lock.json)"
    );
    c.arg("sio-msgpack-golden.js");
    let (ok, out) = common::run("sio-msgpack-golden.js", c, Duration::from_secs(120));
    assert!(ok, "sio-msgpack-golden.js failed");
    let mut lines = HashMap::new();
    let mut count = None;
    for l in out.lines() {
        if let Some(n) = l.strip_suffix(" cases") {
            count = n.parse::<usize>().ok();
            continue;
        }
        let f: Vec<&str> = l.splitn(5, '\t').collect();
        let [kind, name, hex, verdict, detail] = f[..] else {
            panic!("bad line {l:?}");
        };
        let line = Line {
            kind: kind.to_owned(),
            bytes: Bytes::from(unhex(hex)),
            accepted: verdict == "accept",
            detail: detail.to_owned(),
        };
        assert!(
            lines.insert(name.to_owned(), line).is_none(),
            "{name} twice"
        );
    }
    assert_eq!(count, Some(lines.len()), "the script's output is cut short");
    lines
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A packet as the script prints it (see the script's header).
fn canon(p: &Packet) -> String {
    fn num(n: Number) -> Value {
        const SAFE: u64 = (1 << 53) - 1;
        Value::Number(match n {
            Number::U64(u) if u > SAFE => Number::F64(u as f64),
            Number::I64(i) if i.unsigned_abs() > SAFE => Number::F64(i as f64),
            n => n,
        })
    }
    fn value(v: &Value) -> Value {
        match v {
            Value::Binary(b) => Value::object([(
                "$bin",
                Value::from(b.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            )]),
            Value::Number(Number::F64(f)) if !f.is_finite() => {
                let s = if f.is_nan() {
                    "NaN"
                } else if *f > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                Value::object([("$n", Value::from(s))])
            }
            Value::Number(n) => num(*n),
            Value::Array(a) => Value::Array(a.iter().map(value).collect()),
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), value(v))).collect())
            }
            v => v.clone(),
        }
    }
    let (kind, nsp, data, id): (u8, &str, Option<Value>, Option<u64>) = match p {
        Packet::Connect { nsp, data } => (0, nsp, data.clone(), None),
        Packet::Disconnect { nsp } => (1, nsp, None, None),
        Packet::Event {
            nsp,
            id,
            name,
            args,
        } => {
            let mut a = vec![Value::from(name.as_str())];
            a.extend(args.iter().cloned());
            (2, nsp, Some(Value::Array(a)), *id)
        }
        Packet::Ack { nsp, id, args } => (3, nsp, Some(Value::Array(args.clone())), Some(*id)),
        Packet::ConnectError { nsp, data } => (4, nsp, Some(data.clone()), None),
    };
    let mut o = vec![("type", Value::from(kind)), ("nsp", Value::from(nsp))];
    if let Some(d) = data {
        o.push(("data", value(&d)));
    }
    if let Some(id) = id {
        o.push(("id", num(Number::U64(id))));
    }
    Value::object(o).to_json()
}

enum Mode {
    /// wsio writes the official bytes.
    Same,
    /// Only decoded: wsio writes other bytes for it, for this reason.
    DecodeOnly(&'static str),
}

struct Case {
    name: &'static str,
    packet: Packet,
    mode: Mode,
    /// What the official bytes decode to, when not `packet`.
    decoded: Option<Packet>,
}

fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::object(pairs)
}

fn s(x: &str) -> Value {
    Value::from(x)
}

fn bin(b: &[u8]) -> Value {
    Value::Binary(Bytes::copy_from_slice(b))
}

fn counting(n: usize) -> Value {
    Value::Binary((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into())
}

fn sevens(n: usize) -> Value {
    Value::Binary(
        (0..n)
            .map(|i| (i * 7 % 256) as u8)
            .collect::<Vec<u8>>()
            .into(),
    )
}

fn event(nsp: &'static str, name: &str, args: Vec<Value>, id: Option<u64>) -> Packet {
    Packet::Event {
        nsp: nsp.into(),
        id,
        name: name.to_owned(),
        args,
    }
}

fn f(x: f64) -> Value {
    Value::Number(Number::F64(x))
}

fn case(name: &'static str, packet: Packet) -> Case {
    Case {
        name,
        packet,
        mode: Mode::Same,
        decoded: None,
    }
}

fn decode_only(
    name: &'static str,
    why: &'static str,
    packet: Packet,
    decoded: Option<Packet>,
) -> Case {
    Case {
        name,
        packet,
        mode: Mode::DecodeOnly(why),
        decoded,
    }
}

/// The script's `packets`, in Rust.
fn cases() -> Vec<Case> {
    let sid = || s("oSO0OpakMV_3jnilAAAA");
    let x = |n: usize| s(&"x".repeat(n));
    let map16 = Value::object((0..16u64).map(|i| (format!("k{i}"), Value::from(i))));
    let map32 = Value::object((0..65536u64).map(|i| (format!("k{i}"), Value::from(i % 3))));
    vec![
        case(
            "connect_sid",
            Packet::Connect {
                nsp: "/".into(),
                data: Some(obj([("sid", sid())])),
            },
        ),
        case(
            "connect_sid_pid",
            Packet::Connect {
                nsp: "/custom".into(),
                data: Some(obj([("sid", sid()), ("pid", s("YHcX2sdAF1z-mfOW"))])),
            },
        ),
        decode_only(
            "connect_pid_undefined",
            "the official answer has `pid: undefined`, which Value cannot hold; it reads as absent",
            Packet::Connect {
                nsp: "/".into(),
                data: Some(obj([("sid", sid())])),
            },
            None,
        ),
        case(
            "connect_auth",
            Packet::Connect {
                nsp: "/custom".into(),
                data: Some(obj([("token", s("abc")), ("n", Value::from(1))])),
            },
        ),
        case(
            "connect_no_auth",
            Packet::Connect {
                nsp: "/".into(),
                data: None,
            },
        ),
        case(
            "connect_no_auth_custom",
            Packet::Connect {
                nsp: "/custom".into(),
                data: None,
            },
        ),
        case("disconnect", Packet::Disconnect { nsp: "/".into() }),
        case(
            "disconnect_custom",
            Packet::Disconnect {
                nsp: "/custom".into(),
            },
        ),
        case(
            "event_small",
            event("/", "message", vec![s("hello"), Value::from(1)], None),
        ),
        case("event_name_only", event("/", "ping", vec![], None)),
        case(
            "event_ack",
            event("/custom", "hi", vec![s("there")], Some(12)),
        ),
        case("event_ack_zero", event("/", "hi", vec![], Some(0))),
        case(
            "event_ack_large",
            event("/", "hi", vec![], Some(4_294_967_301)),
        ),
        case("event_nsp_unicode", event("/ñ-日本", "x", vec![], None)),
        case(
            "event_uints",
            event(
                "/",
                "uints",
                [
                    0u64,
                    1,
                    127,
                    128,
                    255,
                    256,
                    65535,
                    65536,
                    4_294_967_295,
                    4_294_967_296,
                    (1 << 53) - 1,
                    1 << 63,
                    u64::MAX - 2047,
                ]
                .into_iter()
                .map(Value::from)
                .collect(),
                None,
            ),
        ),
        case(
            "event_negative_ints",
            event(
                "/",
                "ints",
                [
                    -1i64,
                    -32,
                    -33,
                    -128,
                    -129,
                    -32768,
                    -32769,
                    -2_147_483_648,
                    -2_147_483_649,
                    -((1 << 53) - 1),
                    i64::MIN,
                ]
                .into_iter()
                .map(Value::from)
                .collect(),
                None,
            ),
        ),
        case(
            "event_floats",
            event(
                "/",
                "floats",
                [1.5, -0.25, 0.1, -1e-300, 5e-324, 1e-7, 123456.789, -2.5]
                    .into_iter()
                    .map(f)
                    .collect(),
                None,
            ),
        ),
        decode_only(
            "event_huge_whole_floats",
            "notepack.io writes whole doubles from 2^64 up as wrapped integers (these read back as 0); wsio keeps the value as float 64",
            event(
                "/",
                "huge",
                vec![f(18_446_744_073_709_551_616.0), f(1e300), f(f64::MAX)],
                None,
            ),
            Some(event("/", "huge", vec![Value::from(0); 3], None)),
        ),
        case(
            "event_infinities",
            event(
                "/",
                "inf",
                vec![f(f64::INFINITY), f(f64::NEG_INFINITY)],
                None,
            ),
        ),
        case(
            "event_literals",
            event(
                "/",
                "lit",
                vec![Value::Null, Value::Bool(true), Value::Bool(false)],
                None,
            ),
        ),
        case(
            "event_strings",
            event(
                "/",
                "strings",
                vec![
                    s(""),
                    s("a"),
                    x(31),
                    x(32),
                    x(255),
                    x(256),
                    x(65535),
                    x(65536),
                ],
                None,
            ),
        ),
        case(
            "event_unicode",
            event(
                "/",
                "unicode",
                vec![
                    s("héllo wörld"),
                    s("日本語"),
                    s("😀"),
                    s("a\u{0}b\n\"\\"),
                    s("\u{2028}\u{ff}"),
                ],
                None,
            ),
        ),
        case(
            "event_nested",
            event(
                "/",
                "nested",
                vec![obj([
                    (
                        "a",
                        obj([
                            (
                                "b",
                                Value::Array(vec![Value::from(1), obj([("c", Value::Null)])]),
                            ),
                            ("d", Value::Bool(true)),
                        ]),
                    ),
                    (
                        "e",
                        Value::Array(vec![
                            Value::Array(vec![]),
                            Value::Array(vec![Value::Array(vec![])]),
                        ]),
                    ),
                    ("f", s("g")),
                ])],
                None,
            ),
        ),
        Case {
            name: "event_key_order",
            packet: event(
                "/",
                "keys",
                vec![obj([
                    ("b", Value::from(1)),
                    ("2", Value::from(2)),
                    ("1", Value::from(3)),
                    ("a", Value::from(4)),
                    ("01", Value::from(5)),
                    ("4294967295", Value::from(6)),
                    ("4294967294", Value::from(7)),
                ])],
                None,
            ),
            mode: Mode::Same,
            decoded: Some(event(
                "/",
                "keys",
                vec![obj([
                    ("1", Value::from(3)),
                    ("2", Value::from(2)),
                    ("4294967294", Value::from(7)),
                    ("b", Value::from(1)),
                    ("a", Value::from(4)),
                    ("01", Value::from(5)),
                    ("4294967295", Value::from(6)),
                ])],
                None,
            )),
        },
        case(
            "event_empty_containers",
            event(
                "/",
                "empty",
                vec![
                    Value::Array(vec![]),
                    obj([]),
                    Value::Array(vec![obj([])]),
                    obj([("a", Value::Array(vec![]))]),
                ],
                None,
            ),
        ),
        case(
            "event_array16",
            event(
                "/",
                "arr",
                vec![Value::Array((0..16u64).map(Value::from).collect())],
                None,
            ),
        ),
        case(
            "event_array32",
            event(
                "/",
                "arr",
                vec![Value::Array(vec![Value::from(7); 65536])],
                None,
            ),
        ),
        case(
            "event_args16",
            event("/", "many", (0..15u64).map(Value::from).collect(), None),
        ),
        case("event_map16", event("/", "map", vec![map16], None)),
        case("event_map32", event("/", "map", vec![map32], None)),
        case(
            "event_buffers",
            event(
                "/",
                "bin",
                vec![bin(b""), bin(&[1, 2, 3]), counting(255), counting(256)],
                None,
            ),
        ),
        case(
            "event_buffer_64k",
            event("/", "bin", vec![counting(65536)], Some(3)),
        ),
        case(
            "event_buffer_nested",
            event(
                "/",
                "bin",
                vec![obj([
                    ("file", bin(b"abc")),
                    ("meta", obj([("parts", Value::Array(vec![bin(&[0xff])]))])),
                ])],
                None,
            ),
        ),
        decode_only(
            "event_arraybuffer",
            "an ArrayBuffer is ext type 0; wsio writes binary as bin, as a Node Buffer",
            event(
                "/",
                "ab",
                vec![sevens(0), sevens(1), sevens(3), sevens(256)],
                None,
            ),
            None,
        ),
        decode_only(
            "event_arraybuffer_64k",
            "an ArrayBuffer is ext type 0; wsio writes binary as bin",
            event("/", "ab", vec![sevens(65536)], None),
            None,
        ),
        decode_only(
            "event_uint8array",
            "a Uint8Array is ext type 0; wsio writes binary as bin",
            event("/", "u8", vec![bin(&[4, 5, 6])], None),
            None,
        ),
        decode_only(
            "event_date",
            "a Date reads as the string JSON writes for it",
            event(
                "/",
                "date",
                [
                    "1970-01-01T00:00:00.000Z",
                    "2024-02-29T13:05:07.089Z",
                    "1969-12-31T23:59:59.999Z",
                    "-000001-01-01T00:00:00.000Z",
                    "+010000-01-01T00:00:00.000Z",
                    "+275760-09-13T00:00:00.000Z",
                    "-271821-04-20T00:00:00.000Z",
                ]
                .into_iter()
                .map(s)
                .collect(),
                None,
            ),
            None,
        ),
        decode_only(
            "event_undefined",
            "undefined reads as JSON sees it: null in an array, no member in an object",
            event(
                "/",
                "undef",
                vec![Value::Null, obj([("b", Value::from(1))])],
                None,
            ),
            None,
        ),
        case(
            "ack",
            Packet::Ack {
                nsp: "/".into(),
                id: 5,
                args: vec![s("ok"), Value::from(1)],
            },
        ),
        case(
            "ack_empty",
            Packet::Ack {
                nsp: "/custom".into(),
                id: 0,
                args: vec![],
            },
        ),
        case(
            "ack_binary",
            Packet::Ack {
                nsp: "/".into(),
                id: 7,
                args: vec![bin(&[9, 8, 7]), obj([("n", f(-1.5))])],
            },
        ),
        case(
            "connect_error",
            Packet::ConnectError {
                nsp: "/random".into(),
                data: obj([("message", s("Invalid namespace"))]),
            },
        ),
        case(
            "connect_error_data",
            Packet::ConnectError {
                nsp: "/custom".into(),
                data: obj([
                    ("message", s("not authorized")),
                    ("data", obj([("code", Value::from(42))])),
                ]),
            },
        ),
        case(
            "connect_error_string",
            Packet::ConnectError {
                nsp: "/".into(),
                data: s("not authorized"),
            },
        ),
    ]
}

/// Edge messages the official decoder accepts and wsio refuses, on
/// purpose.
const DIVERGENT: &[(&str, &str)] = &[
    (
        "event_empty",
        "an event needs a name, as the default parser checks",
    ),
    (
        "event_number_name",
        "an event name is a string in wsio (Packet::Event)",
    ),
    (
        "event_reserved_name",
        "reserved names are refused, as the default parser does (CVE-2024-38355)",
    ),
    (
        "ack_no_id",
        "an ack without id answers nothing; the default parser refuses it too",
    ),
    ("id_negative", "an ack id is a u64"),
    (
        "key_array",
        "a key JavaScript spells by converting an array",
    ),
    ("key_binary", "a key JavaScript spells by decoding a Buffer"),
    ("key_map", "a key JavaScript spells `[object Object]`"),
    (
        "key_proto_top",
        "`__proto__` is dropped; JavaScript reads the packet's members through the prototype",
    ),
    (
        "deep_128",
        "nesting inside data is limited to 127 levels, as the JSON parser's",
    ),
];

#[test]
fn matches_the_official_parser() {
    let golden = golden();
    let cases = cases();
    let mut failures = Vec::new();
    let mut fail = |name: &str, what: String| failures.push(format!("{name}: {what}"));

    for c in &cases {
        let Some(g) = golden.get(c.name) else {
            fail(c.name, "not in the script's output".into());
            continue;
        };
        assert_eq!(g.kind, "encode", "{}", c.name);
        assert!(
            g.accepted,
            "{}: the official decoder refuses its own encoding",
            c.name
        );
        let ours = msgpack::encode(&c.packet);
        match c.mode {
            Mode::Same if ours != g.bytes => fail(
                c.name,
                format!(
                    "encodes to {} bytes, official {} (first difference at {:?})",
                    ours.len(),
                    g.bytes.len(),
                    ours.iter().zip(g.bytes.iter()).position(|(a, b)| a != b)
                ),
            ),
            Mode::DecodeOnly(why) if ours == g.bytes => {
                fail(c.name, format!("now encodes as the official ({why})"))
            }
            _ => {}
        }
        let want = c.decoded.as_ref().unwrap_or(&c.packet);
        match msgpack::decode(&g.bytes) {
            Ok(p) => {
                if &p != want {
                    fail(c.name, format!("official bytes decode to {}", canon(&p)));
                }
                if canon(&p) != g.detail {
                    fail(
                        c.name,
                        format!("decodes to {}, official {}", canon(&p), g.detail),
                    );
                }
            }
            Err(e) => fail(c.name, format!("official bytes refused: {e}")),
        }
        // What wsio writes reads back the same.
        match msgpack::decode(&ours) {
            Ok(p) if canon(&p) == canon(&c.packet) => {}
            other => fail(c.name, format!("own encoding decodes to {other:?}")),
        }
    }

    let divergent: HashMap<&str, &str> = DIVERGENT.iter().copied().collect();
    let mut edges = 0;
    for (name, g) in &golden {
        if g.kind == "encode" {
            if !cases.iter().any(|c| c.name == name) {
                fail(name, "missing from the Rust table".into());
            }
            continue;
        }
        edges += 1;
        let ours = msgpack::decode(&g.bytes);
        if let Some(why) = divergent.get(name.as_str()) {
            if !(g.accepted && ours.is_err()) {
                fail(
                    name,
                    format!(
                        "listed as divergent ({why}), but official accepts: {}, wsio: {ours:?}",
                        g.accepted
                    ),
                );
            }
            continue;
        }
        match (g.accepted, &ours) {
            (true, Ok(p)) => {
                if canon(p) != g.detail {
                    fail(
                        name,
                        format!("decodes to {}, official {}", canon(p), g.detail),
                    );
                }
                // Re-encoded, it reads the same again.
                match msgpack::decode(&msgpack::encode(p)) {
                    Ok(q) if canon(&q) == canon(p) => {}
                    other => fail(name, format!("re-encoded, decodes to {other:?}")),
                }
            }
            (false, Err(_)) => {}
            (true, Err(e)) => fail(
                name,
                format!("official accepts {}, wsio refuses: {e}", g.detail),
            ),
            (false, Ok(p)) => fail(
                name,
                format!("official refuses ({}), wsio accepts {}", g.detail, canon(p)),
            ),
        }
    }
    for (name, _) in DIVERGENT {
        if !golden.contains_key(*name) {
            fail(
                name,
                "divergence listed for an edge the script lacks".into(),
            );
        }
    }
    assert!(edges > 50, "only {edges} edge messages");
    assert!(
        failures.is_empty(),
        "{} mismatches with socket.io-msgpack-parser:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
