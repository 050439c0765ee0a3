//! Compression against real peers beyond the WebSocket ones of
//! `ws_interop.rs`: the official `socket.io-client` against the
//! `conformance` example with `--compress` (permessage-deflate) and its
//! compressed long-polling, and Chromium's own WebSocket against `ws_echo`.
//!
//! Nothing here is skipped: without Node, the npm peers or Chromium the
//! tests fail and say how to install them.

mod common;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::PathBuf,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use common::*;
use wsio::{
    engineio::TransportMode,
    socketio::{ClientEvent, Value},
    ws::{OpCode, deflate::DeflateConfig, frame::decode_header},
};
use wsio_tokio::ClientOptions;

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

/// What [`frame_watching_proxy`] saw: (RSV1, payload length) per data frame.
type Seen = Arc<Mutex<Vec<(bool, usize)>>>;

/// The data frames a client sends on WebSockets through this proxy to
/// `upstream`, as (RSV1, payload length), in order; everything else goes
/// through as it is.
fn frame_watching_proxy(upstream: u16) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Seen::default();
    let record = seen.clone();
    thread::spawn(move || {
        for down in listener.incoming().flatten() {
            let up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let (mut from_up, mut to_down) = (up.try_clone().unwrap(), down.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut from_up, &mut to_down);
                let _ = to_down.shutdown(Shutdown::Both);
            });
            let record = record.clone();
            thread::spawn(move || {
                let (mut from, mut to) = (down, up);
                let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 64 * 1024]);
                let mut in_head = true;
                loop {
                    let n = match from.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if to.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if in_head {
                        let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        if !head.contains("upgrade: websocket") {
                            // Polling: nothing to watch.
                            let _ = std::io::copy(&mut from, &mut to);
                            break;
                        }
                        buf.drain(..i + 4);
                        in_head = false;
                    }
                    while let Ok(Some((h, hlen))) = decode_header(&buf) {
                        let end = hlen + h.len as usize;
                        if buf.len() < end {
                            break;
                        }
                        if matches!(h.opcode, OpCode::Text | OpCode::Binary) {
                            record
                                .lock()
                                .unwrap()
                                .push((h.rsv & 0b100 != 0, h.len as usize));
                        }
                        buf.drain(..end);
                    }
                }
                let _ = to.shutdown(Shutdown::Both);
            });
        }
    });
    (port, seen)
}

/// The wsio client's `emit_compressed(.., false)` (the official
/// `socket.compress(false).emit(..)`) against the official server with
/// `perMessageDeflate: true`: on the permessage-deflate WebSocket, a 2 KiB
/// emit goes compressed by default and without RSV1 with the flag, and
/// both arrive (the server echoes them); over polling the flag changes
/// nothing and the emit arrives.
#[test]
fn the_clients_compress_false_goes_uncompressed_to_the_official_server() {
    let mut c = node();
    c.args(["sio-compress-check.js", "server", "--port", "0"]);
    let server = spawn_ready("sio-compress-check.js server", c);
    let (port, seen) = frame_watching_proxy(server.port);
    let big = "hello compressible world, ".repeat(80);
    assert!(big.len() >= 2048);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for mode in [TransportMode::WebSocketOnly, TransportMode::PollingOnly] {
            let options = ClientOptions::new()
                .transports(mode)
                .reconnection(false)
                .connect_timeout(Duration::from_secs(10))
                .configure(|mut c| {
                    c.engine.ws = c.engine.ws.deflate(DeflateConfig::default().enabled(true));
                    c
                });
            let url = format!("http://127.0.0.1:{port}");
            let (io, mut events) = wsio_tokio::connect(&url, options).await.unwrap();
            for (i, compress) in [true, false, true].into_iter().enumerate() {
                let text = format!("{i}{big}");
                io.emit_compressed("message", vec![Value::from(text.as_str())], compress)
                    .await
                    .unwrap();
                loop {
                    let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
                        .await
                        .expect("the echo")
                        .expect("an event");
                    if let ClientEvent::Event { name, args, .. } = ev {
                        if name == "message-back" {
                            assert_eq!(args, [Value::from(text.as_str())], "{mode:?}");
                            break;
                        }
                    }
                }
            }
            io.close().await.unwrap();
        }
    });
    // Only the WebSocket went through frames; its three emits, in order.
    let emits: Vec<(bool, usize)> = seen
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&(rsv1, len)| rsv1 || len >= 1024)
        .collect();
    assert_eq!(emits.len(), 3, "{emits:?}");
    assert!(emits[0].0 && emits[0].1 < 512, "{emits:?}");
    assert!(!emits[1].0 && emits[1].1 > big.len(), "{emits:?}");
    assert!(emits[2].0 && emits[2].1 < 512, "{emits:?}");
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
