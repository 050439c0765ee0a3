//! The msgpack parser with the official client: `socket.io-client` 4.8.4
//! with `socket.io-msgpack-parser` 3.0.2 (tests/node/package.json) runs
//! every scenario of `tests/node/sio-client-check.js` (CONFORMANCE.md)
//! against the `conformance` example started with `--parser msgpack`, over
//! polling, WebSocket and polling then upgrade, and the recovery scenarios
//! of `tests/node/sio-recovery-check.js` against it with `--recovery
//! --parser msgpack`. The same scripts pass against the official server
//! (tests/sio_interop.rs, tests/sio_recovery.rs).
//!
//! Nothing is skipped: without Node or the npm peers the tests fail and say
//! how to install them.

mod common;

use std::time::Duration;

use common::*;

/// The official parser, installed from tests/node/package-lock.json.
fn require_the_parser() {
    let dir = repo().join("tests/node/node_modules/socket.io-msgpack-parser");
    assert!(
        dir.join("package.json").exists(),
        "socket.io-msgpack-parser is missing ({}): run `npm ci --prefix tests/node --no-audit --no-fund`",
        dir.display()
    );
}

fn run_script(script: &str, port: u16, transports: &str, extra: &[&str]) {
    require_the_parser();
    let mut c = node();
    c.arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["--transports", transports, "--parser", "msgpack"])
        .args(extra);
    let (ok, out) = run(script, c, Duration::from_secs(240));
    let summary = out.lines().last().unwrap_or_default().to_owned();
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("fail")).collect();
    assert!(
        ok && summary.ends_with(" 0 failed") && !summary.starts_with("0 passed"),
        "{script} --transports {transports} --parser msgpack: {summary}\n{}",
        failures.join("\n")
    );
}

fn conformance_msgpack(transports: &str) {
    let server = conformance_with(&["--parser", "msgpack"]);
    // Fifty clients at once, as the run against the official server: on a
    // loaded machine two hundred polling clients with 300 ms pings miss
    // heartbeats (seen with either parser), and msgpack costs the Node
    // side more. The default parser's runs keep the two hundred.
    run_script(
        "sio-client-check.js",
        server.port,
        transports,
        &["--clients", "50"],
    );
}

fn recovery_msgpack(transports: &str) {
    let server = conformance_with(&["--recovery", "--parser", "msgpack"]);
    run_script("sio-recovery-check.js", server.port, transports, &[]);
}

#[test]
fn official_client_with_msgpack_websocket_only() {
    conformance_msgpack("websocket");
}

#[test]
fn official_client_with_msgpack_polling_only() {
    conformance_msgpack("polling");
}

#[test]
fn official_client_with_msgpack_polling_then_upgrade() {
    conformance_msgpack("both");
}

#[test]
fn official_client_with_msgpack_recovers_over_websocket() {
    recovery_msgpack("websocket");
}

#[test]
fn official_client_with_msgpack_recovers_over_polling() {
    recovery_msgpack("polling");
}

#[test]
fn official_client_with_msgpack_recovers_across_the_upgrade() {
    recovery_msgpack("both");
}
