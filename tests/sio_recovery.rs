//! Connection state recovery with the official `socket.io-client` 4.8.4:
//! `tests/node/sio-recovery-check.js` against the `conformance` example
//! started with `--recovery` (CONFORMANCE.md), over polling and over
//! WebSocket: a short absence (recovered, same id, missed events exactly
//! once and in order), a long one (new id, nothing replayed), and the
//! disconnections that keep nothing. The same script passes against the
//! official server (`sio-server.js --recovery`), which the last test checks
//! so that the yardstick itself is right.

mod common;

use std::time::Duration;

use common::*;

fn check(port: u16, transports: &str) {
    check_with(port, transports, &[]);
}

fn check_with(port: u16, transports: &str, extra: &[&str]) {
    let script = "sio-recovery-check.js";
    let mut c = node();
    c.arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["--transports", transports])
        .args(extra);
    let (ok, out) = run(script, c, Duration::from_secs(120));
    let summary = out.lines().last().unwrap_or_default().to_owned();
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("fail")).collect();
    assert!(
        ok && summary.ends_with(" 0 failed") && !summary.starts_with("0 passed"),
        "{script} --transports {transports}: {summary}\n{}",
        failures.join("\n")
    );
}

#[test]
fn official_client_recovers_over_websocket() {
    let server = conformance_with(&["--recovery"]);
    check(server.port, "websocket");
}

#[test]
fn official_client_recovers_over_polling() {
    let server = conformance_with(&["--recovery"]);
    check(server.port, "polling");
}

#[test]
fn official_client_recovers_across_the_upgrade() {
    let server = conformance_with(&["--recovery"]);
    check(server.port, "both");
}

#[test]
fn the_check_passes_against_the_official_server() {
    let mut c = node();
    c.args(["sio-server.js", "--port", "0", "--recovery"]);
    let server = spawn_ready("node sio-server.js --recovery", c);
    check(server.port, "websocket");
}

#[test]
fn the_msgpack_check_passes_against_the_official_server() {
    let mut c = node();
    c.args([
        "sio-server.js",
        "--port",
        "0",
        "--recovery",
        "--parser",
        "msgpack",
    ]);
    let server = spawn_ready("node sio-server.js --recovery --parser msgpack", c);
    check_with(server.port, "both", &["--parser", "msgpack"]);
}
