//! Runs every fuzz target's checks on stable, without libFuzzer: on each
//! committed seed (`seeds/<target>/`) and finding (`findings/`, all of them
//! through every target, as `smoke.sh` replays them), on each file of
//! libFuzzer's working directories `corpus/<target>/` and
//! `artifacts/<target>/` when those exist (to replay a crash:
//! `cargo test --test replay -- --nocapture`), and on a few thousand inputs
//! from a seeded generator, so `cargo test` in `fuzz/` is a quick smoke test
//! of the harnesses themselves.

use std::path::Path;

use wsio::entropy::{Entropy, SeededEntropy};
use wsio_fuzz::{
    cluster_redis, eio_packet, eio_server, http_head, run_bytes, sio_client, sio_msgpack,
    sio_packet, sio_server, ws_connection, ws_frame, ws_handshake,
};

/// The files of `dir`, in name order (none if it does not exist).
fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn inputs(target: &str, seed: u64, count: usize) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = files(&root.join("seeds").join(target));
    let findings = files(&root.join("findings"));
    assert!(
        !seeds.is_empty() && !findings.is_empty(),
        "{target}: no committed seeds or findings"
    );
    let mut out = seeds;
    out.extend(findings);
    for dir in ["corpus", "artifacts"] {
        out.extend(files(&root.join(dir).join(target)));
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

/// The targets `cargo fuzz list` names: the `[[bin]]`s of `Cargo.toml`.
fn targets(root: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(value) = line.strip_prefix("name = ") {
            names.push(value.trim_matches('"').to_owned());
        }
    }
    names
}

/// Every target (each `[[bin]]` of `Cargo.toml` and each file of
/// `fuzz_targets/`) has committed seeds, which `smoke.sh` replays and
/// explores from (made as README.md says), and a test above that replays
/// them here.
#[test]
fn every_target_has_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = targets(root);
    for e in std::fs::read_dir(root.join("fuzz_targets"))
        .unwrap()
        .flatten()
    {
        let path = e.path();
        names.push(path.file_stem().unwrap().to_str().unwrap().to_owned());
    }
    names.sort();
    names.dedup();
    assert!(names.len() > 1, "no targets found");
    let this = std::fs::read_to_string(root.join("tests").join("replay.rs")).unwrap();
    let mut missing = Vec::new();
    for name in &names {
        let seeds = files(&root.join("seeds").join(name));
        if !seeds.iter().any(|s| !s.is_empty()) {
            missing.push(format!("no seeds/{name}/"));
        }
        if !this.contains(&format!("fn {name}() {{")) {
            missing.push(format!("no test {name} in tests/replay.rs"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join(", "));
}
