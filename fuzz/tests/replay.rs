//! Runs every fuzz target's checks on stable, without libFuzzer: on each file
//! of `corpus/<target>/` and `artifacts/<target>/` when those exist (to
//! replay a crash: `cargo test --test replay -- --nocapture`), and on a few
//! thousand inputs from a seeded generator, so `cargo test` in `fuzz/` is a
//! quick smoke test of the harnesses themselves.

use std::path::Path;

use wsio::entropy::{Entropy, SeededEntropy};
use wsio_fuzz::{
    cluster_redis, eio_packet, eio_server, http_head, run_bytes, sio_client, sio_msgpack,
    sio_packet, sio_server, ws_connection, ws_frame, ws_handshake,
};

fn inputs(target: &str, seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["corpus", "artifacts"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) {
            for e in entries.flatten() {
                if let Ok(data) = std::fs::read(e.path()) {
                    out.push(data);
                }
            }
        }
    }
    let mut rng = SeededEntropy::new(seed);
    for i in 0..count {
        let mut data = vec![0u8; (i * 7) % 600];
        rng.fill(&mut data);
        out.push(data);
    }
    out
}

#[test]
fn http_head() {
    for data in inputs("http_head", 1, 3000) {
        run_bytes(&data, http_head::run);
    }
}

#[test]
fn ws_handshake() {
    for data in inputs("ws_handshake", 2, 3000) {
        run_bytes(&data, ws_handshake::run);
    }
}

#[test]
fn ws_frame() {
    for data in inputs("ws_frame", 3, 3000) {
        run_bytes(&data, ws_frame::run);
    }
}

#[test]
fn ws_connection() {
    for data in inputs("ws_connection", 4, 3000) {
        run_bytes(&data, ws_connection::run);
    }
}

#[test]
fn eio_packet() {
    for data in inputs("eio_packet", 5, 3000) {
        run_bytes(&data, eio_packet::run);
    }
}

#[test]
fn eio_server() {
    for data in inputs("eio_server", 6, 3000) {
        run_bytes(&data, eio_server::run);
    }
}

#[test]
fn sio_packet() {
    for data in inputs("sio_packet", 7, 3000) {
        run_bytes(&data, sio_packet::run);
    }
}

#[test]
fn sio_msgpack() {
    for data in inputs("sio_msgpack", 10, 3000) {
        run_bytes(&data, sio_msgpack::run);
    }
}

#[test]
fn sio_server() {
    for data in inputs("sio_server", 8, 3000) {
        run_bytes(&data, sio_server::run);
    }
}

#[test]
fn sio_client() {
    for data in inputs("sio_client", 9, 3000) {
        run_bytes(&data, sio_client::run);
    }
}

#[test]
fn cluster_redis() {
    for data in inputs("cluster_redis", 11, 3000) {
        run_bytes(&data, cluster_redis::run);
    }
}
