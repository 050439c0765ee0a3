//! Engine.IO: long-polling payload codec throughput, and handshakes through
//! the server machine.
//!
//! `cargo bench --bench engineio`

use std::{hint::black_box, ops::ControlFlow, time::Instant};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wsio::{
    engineio::{self, Packet, decode_payload, encode_payload},
    entropy::SeededEntropy,
    machine::drain,
};

fn payloads() -> Vec<(&'static str, Vec<Packet>)> {
    let text: Vec<Packet> = (0..100)
        .map(|i| Packet::message(format!("{i:>50}")))
        .collect();
    let binary: Vec<Packet> = (0..10)
        .map(|i| Packet::message(vec![i as u8; 4096]))
        .collect();
    let small: Vec<Packet> = (0..1000).map(|_| Packet::message("x")).collect();
    vec![
        ("text_100x50B", text),
        ("binary_10x4KiB_base64", binary),
        ("small_1000x1B", small),
    ]
}

fn codec(c: &mut Criterion) {
    for (name, packets) in payloads() {
        let encoded = encode_payload(&packets);
        // Check once that decoding gives the packets back.
        let (back, err) = decode_payload(encoded.clone());
        assert!(err.is_none() && back == packets);
        let mut g = c.benchmark_group(format!("eio_payload/{name}"));
        g.throughput(Throughput::Bytes(encoded.len() as u64));
        g.bench_function("decode", |b| {
            b.iter(|| black_box(decode_payload(black_box(encoded.clone()))))
        });
        g.bench_function("encode", |b| {
            b.iter(|| black_box(encode_payload(black_box(&packets))))
        });
        g.finish();
    }
}

const HANDSHAKE: &[u8] = b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost:3000\r\nUser-Agent: bench\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n";
const UPGRADE: &[u8] = b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost:3000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("eio_server/handshake");
    g.throughput(Throughput::Elements(1000));
    for (name, request) in [("polling", HANDSHAKE), ("websocket", UPGRADE)] {
        g.bench_function(format!("{name}_x1000"), |b| {
            b.iter_batched(
                || {
                    engineio::Server::new(
                        engineio::Config::default(),
                        Box::new(SeededEntropy::new(1)),
                        Instant::now(),
                    )
                },
                |mut server| {
                    let now = Instant::now();
                    for _ in 0..1000 {
                        let conn = server.accept(now, None);
                        server.handle_input(now, conn, request);
                        drain(
                            &mut server,
                            now,
                            |_, t| {
                                black_box(t);
                                ControlFlow::Continue(())
                            },
                            |_, e| {
                                black_box(e);
                            },
                        );
                    }
                    server
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
    let _ = Bytes::new();
}

criterion_group!(benches, codec, handshakes);
criterion_main!(benches);
