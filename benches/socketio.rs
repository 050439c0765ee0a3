//! Socket.IO: packet encode/decode, the default (JSON) parser and the
//! msgpack one side by side on the same events, and a broadcast to 10,000
//! sockets in one room through the server machine (time per broadcast, and
//! heap allocations per recipient, counted).
//!
//! `cargo bench --bench socketio`

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    ops::ControlFlow,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wsio::{
    engineio::{self, Transmit},
    entropy::SeededEntropy,
    machine::drain,
    socketio::{self, Decoder, Event, Packet, Value, msgpack::Parser},
};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn nested() -> Value {
    let item = |i: u64| {
        Value::object([
            ("id", Value::from(i)),
            ("name", Value::from(format!("user-{i}"))),
            ("tags", Value::Array(vec!["a".into(), "b".into()])),
            ("score", Value::from(i as f64 * 1.5)),
            ("active", Value::from(i % 2 == 0)),
        ])
    };
    Value::object([
        ("users", Value::Array((0..20).map(item).collect())),
        ("page", Value::from(1)),
    ])
}

fn packets() -> Vec<(&'static str, Packet)> {
    vec![
        (
            "small_event",
            Packet::Event {
                nsp: "/".into(),
                id: None,
                name: "message".into(),
                args: vec!["hello".into(), 1.into()],
            },
        ),
        (
            "binary_64KiB",
            Packet::Event {
                nsp: "/".into(),
                id: Some(7),
                name: "upload".into(),
                args: vec![Value::Binary(Bytes::from(vec![7u8; 64 * 1024]))],
            },
        ),
        (
            "nested_json",
            Packet::Event {
                nsp: "/".into(),
                id: None,
                name: "state".into(),
                args: vec![nested()],
            },
        ),
    ]
}

fn codec(c: &mut Criterion) {
    for (name, packet) in packets() {
        let (text, attachments) = packet.encode();
        let size = text.len() + attachments.iter().map(Bytes::len).sum::<usize>();
        let decode = |text: &str, attachments: &[Bytes]| {
            let mut d = Decoder::new(10);
            let mut p = d.decode_text(text).expect("valid");
            for a in attachments {
                p = d.decode_binary(a.clone()).expect("valid");
            }
            p.expect("complete")
        };
        assert_eq!(decode(&text, &attachments), packet);
        let mut g = c.benchmark_group(format!("sio_packet/{name}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("encode", |b| {
            b.iter(|| black_box(black_box(&packet).encode()))
        });
        g.bench_function("decode", |b| {
            b.iter(|| black_box(decode(black_box(&text), &attachments)))
        });
        g.finish();
    }
}

/// The same events through both parsers: `sio_parser/<event>` with
/// `encode/json`, `encode/msgpack`, `decode/json`, `decode/msgpack`. Decoding
/// starts from the Engine.IO messages each parser's encoding gives, through
/// the decoder a connection would hold.
fn parsers(c: &mut Criterion) {
    let event = |name: &str, args: Vec<Value>, id| Packet::Event {
        nsp: "/".into(),
        id,
        name: name.into(),
        args,
    };
    let events = [
        (
            "small_event",
            event("message", vec!["hello".into(), 1.into()], None),
        ),
        (
            "string_1KiB",
            event("message", vec![Value::from("a".repeat(1024))], None),
        ),
        ("nested_object", event("state", vec![nested()], None)),
        (
            "binary_64KiB",
            event(
                "upload",
                vec![Value::Binary(Bytes::from(vec![7u8; 64 * 1024]))],
                Some(7),
            ),
        ),
        (
            "ack",
            Packet::Ack {
                nsp: "/".into(),
                id: 5,
                args: vec!["ok".into(), 1.into()],
            },
        ),
    ];
    let decode = |parser: Parser, messages: &[engineio::Data]| {
        let mut d = parser.decoder(10);
        let mut out = None;
        for m in messages {
            out = d.decode(m.clone()).expect("valid");
        }
        out.expect("complete")
    };
    for (name, packet) in events {
        let mut g = c.benchmark_group(format!("sio_parser/{name}"));
        for (label, parser) in [("json", Parser::Default), ("msgpack", Parser::Msgpack)] {
            let messages = parser.encode(&packet).into_messages();
            assert_eq!(decode(parser, &messages), packet);
            let size: usize = messages.iter().map(|m| m.as_bytes().len()).sum();
            eprintln!(
                "sio_parser/{name}: {label} {size} bytes in {} messages",
                messages.len()
            );
            g.bench_function(format!("encode/{label}"), |b| {
                b.iter(|| black_box(parser.encode(black_box(&packet))))
            });
            g.bench_function(format!("decode/{label}"), |b| {
                b.iter(|| black_box(decode(parser, black_box(&messages))))
            });
        }
        g.finish();
    }
}

const RECIPIENTS: usize = 10_000;

/// A server with `RECIPIENTS` WebSocket sockets in room "room".
fn server_with_room() -> socketio::Server {
    let now = Instant::now();
    let engine = engineio::Config::default()
        .path("/socket.io/")
        .ping_interval(Duration::from_secs(3600))
        .ping_timeout(Duration::from_secs(3600))
        .ws(wsio::ws::Config::default().max_send_queue(1 << 30));
    let config = socketio::Config::default()
        .engine(engine)
        .connect_timeout(Duration::from_secs(3600));
    let mut io = socketio::Server::new(config, Box::new(SeededEntropy::new(1)), now);
    let upgrade = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let connect = [0x81u8, 0x82, 0, 0, 0, 0, b'4', b'0'];
    for _ in 0..RECIPIENTS {
        let conn = io.accept(now, None);
        io.handle_input(now, conn, upgrade);
        io.handle_input(now, conn, &connect);
        drain(
            &mut io,
            now,
            |_, _| ControlFlow::Continue(()),
            |io, ev| {
                if let Event::Connection { socket, .. } = ev {
                    io.join(socket, "room").expect("connected");
                }
            },
        );
    }
    io
}

fn broadcast_once(io: &mut socketio::Server, args: Vec<Value>) -> usize {
    let n = io
        .of("/")
        .to("room")
        .emit("news", args)
        .expect("not reserved");
    let mut transmits = 0;
    // The transmits alone: this measures the broadcast's fan-out.
    let now = Instant::now();
    while let Some(t) = io.poll_transmit(now) {
        if let Transmit::Data { data, .. } = &t {
            black_box(data);
        }
        transmits += 1;
    }
    assert_eq!(n, RECIPIENTS);
    transmits
}

fn broadcast(c: &mut Criterion) {
    let mut io = server_with_room();
    let small = vec![Value::from("hello everyone")];
    let binary = vec![Value::Binary(Bytes::from(vec![1u8; 4096]))];
    // Allocations per recipient, counted outside the timing, once warm (the
    // first broadcast gives each connection its output queue).
    broadcast_once(&mut io, small.clone());
    for (name, args) in [("small", &small), ("binary_4KiB", &binary)] {
        let before = ALLOCS.load(Ordering::Relaxed);
        let transmits = broadcast_once(&mut io, args.clone());
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        eprintln!(
            "broadcast {name} to {RECIPIENTS}: {transmits} transmits, {:.2} allocations per recipient",
            allocs as f64 / RECIPIENTS as f64
        );
    }
    let mut g = c.benchmark_group("sio_broadcast_10k");
    g.throughput(Throughput::Elements(RECIPIENTS as u64));
    g.sample_size(20);
    g.bench_function("small", |b| {
        b.iter(|| broadcast_once(&mut io, small.clone()))
    });
    g.bench_function("binary_4KiB", |b| {
        b.iter(|| broadcast_once(&mut io, binary.clone()))
    });
    g.finish();
}

criterion_group!(benches, codec, parsers, broadcast);
criterion_main!(benches);
