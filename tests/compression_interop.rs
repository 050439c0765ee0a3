//! Compression against real peers beyond the WebSocket ones of
//! `ws_interop.rs`: the official `socket.io-client` against the
//! `conformance` example with `--compress` (permessage-deflate) and its
//! compressed long-polling, and Chromium's own WebSocket against `ws_echo`.
//!
//! Nothing here is skipped: without Node, the npm peers or Chromium the
//! tests fail and say how to install them.

mod common;

use std::{path::PathBuf, time::Duration};

use common::*;

/// Runs a Node check script and asserts every scenario passed.
fn check_runner(args: &[&str]) {
    let mut c = node();
    c.args(args);
    let (ok, out) = run(args[0], c, Duration::from_secs(240));
    let summary = out.lines().last().unwrap_or_default().to_owned();
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("fail")).collect();
    assert!(
        ok && summary.ends_with(" 0 failed") && !summary.starts_with("0 passed"),
        "{args:?}: {summary}\n{}",
        failures.join("\n")
    );
}

/// The scenarios of `sio-compress-check.js`: polling answers come back
/// gzip- and deflate-encoded, WebSocket messages cross compressed (before
/// and after an upgrade), binary and acks, a broadcast to a compressing
/// and a plain client; `compress(false)` emits and broadcasts cross
/// uncompressed on the WebSocket (the bytes on the socket), and a polling
/// answer that carries only such packets is not encoded.
#[test]
fn official_socket_io_client_compression_against_conformance() {
    let server = conformance_with(&["--compress"]);
    check_runner(&[
        "sio-compress-check.js",
        "client",
        &format!("http://127.0.0.1:{}", server.port),
    ]);
}

/// The same scenarios against the official server with
/// `perMessageDeflate: true`: what they expect is what Node does, but for
/// `compress(false)` on a WebSocket, which engine.io 6.6 no longer obeys
/// (wsio does, as its documentation promises).
#[test]
fn official_socket_io_client_compression_against_the_official_server() {
    let mut c = node();
    c.args(["sio-compress-check.js", "server", "--port", "0"]);
    let server = spawn_ready("sio-compress-check.js server", c);
    check_runner(&[
        "sio-compress-check.js",
        "client",
        &format!("http://127.0.0.1:{}", server.port),
        "--official",
    ]);
}

/// Every conformance scenario of the official client, with its default
/// permessage-deflate offer accepted.
#[test]
fn official_socket_io_client_scenarios_with_per_message_deflate() {
    let server = conformance_with(&["--compress"]);
    for mode in ["websocket", "both"] {
        check_runner(&[
            "sio-client-check.js",
            &format!("http://127.0.0.1:{}", server.port),
            "--transports",
            mode,
        ]);
    }
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("WSIO_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "Chromium is required ({} is missing): `sudo apt-get install -y chromium` \
         (or set WSIO_CHROMIUM to a Chromium binary)",
        path.display()
    );
    path
}

/// Chromium offers permessage-deflate on every WebSocket: `ws_echo` accepts
/// it, and large messages cross the wire compressed both ways (counted by a
/// relay in `ws-browser.js`).
#[test]
fn chromium_websocket_against_ws_echo() {
    let chromium = chromium();
    assert!(
        repo()
            .join("tests/node/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run `npm ci --prefix tests/node`"
    );
    let mut c = example("ws_echo");
    c.args(["--port", "0"]);
    let server = spawn_ready("ws_echo", c);
    check_runner(&[
        "ws-browser.js",
        &format!("ws://127.0.0.1:{}/", server.port),
        "--chromium",
        chromium.to_str().unwrap_or("/usr/bin/chromium"),
    ]);
}
