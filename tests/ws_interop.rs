//! WebSocket interop with real peers: the npm `ws` package and Python
//! `websockets`, each as client of `ws_echo` and as server for the wsio
//! blocking client, with and without permessage-deflate (RFC 7692).

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use bytes::Bytes;
use common::*;
use wsio::{
    blocking::{Error, WebSocket},
    ws::{
        CloseCode, Config, DataKind, Message,
        deflate::{DeflateConfig, Params},
    },
};

fn ws_echo() -> Proc {
    let mut c = example("ws_echo");
    c.args(["--port", "0", "--close-command"]);
    spawn_ready("ws_echo", c)
}

/// A Python with `websockets`: `$WSIO_PYTHON`, or the venv scripts/test.sh
/// makes.
fn python() -> Command {
    let venv = repo().join("target/py-venv/bin/python");
    let py = std::env::var_os("WSIO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or(venv);
    let ok = Command::new(&py)
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "Python `websockets` is required at {}: run `python3 -m venv target/py-venv && target/py-venv/bin/pip install -r tests/python/requirements.txt` (or set WSIO_PYTHON)",
        py.display()
    );
    let mut c = Command::new(py);
    c.current_dir(repo());
    c
}

#[test]
fn npm_ws_client_against_ws_echo() {
    let server = ws_echo();
    let mut c = node();
    c.args([
        "ws-peer.js",
        "client",
        &format!("ws://127.0.0.1:{}/", server.port),
        "--no-deflate",
    ]);
    let (ok, out) = run("ws-peer.js client", c, Duration::from_secs(120));
    assert!(ok && out.trim_end().ends_with(" 0 failed"), "{out}");
}

/// npm `ws` as a client of `ws_echo`, offering permessage-deflate with
/// these `perMessageDeflate` options: the echo server's answer holds what
/// was asked, and large messages cross the socket compressed both ways.
#[test]
fn npm_ws_client_with_deflate_against_ws_echo() {
    let server = ws_echo();
    let cases: [(&str, &[&str]); 4] = [
        // ws's default offer: `permessage-deflate; client_max_window_bits`.
        ("{}", &["{}"]),
        (
            r#"{"serverNoContextTakeover":true,"clientNoContextTakeover":true}"#,
            &[
                r#""server_no_context_takeover":true"#,
                r#""client_no_context_takeover":true"#,
            ],
        ),
        (
            r#"{"serverMaxWindowBits":10,"clientMaxWindowBits":9}"#,
            &[
                r#""server_max_window_bits":10"#,
                r#""client_max_window_bits":9"#,
            ],
        ),
        (
            r#"{"serverMaxWindowBits":8,"threshold":0}"#,
            &[r#""server_max_window_bits":8"#],
        ),
    ];
    for (opts, answer) in cases {
        let mut c = node();
        c.args([
            "ws-peer.js",
            "client",
            &format!("ws://127.0.0.1:{}/", server.port),
            "--deflate-opts",
            opts,
            "--expect-deflate",
        ]);
        let (ok, out) = run("ws-peer.js client", c, Duration::from_secs(180));
        assert!(ok && out.trim_end().ends_with(" 0 failed"), "{opts}: {out}");
        let line = out
            .lines()
            .find(|l| l.starts_with("extensions: permessage-deflate "))
            .unwrap_or_else(|| panic!("{opts}: no extension line in {out}"));
        for a in answer {
            assert!(line.contains(a), "{opts}: {line} lacks {a}");
        }
    }
}

const PY_SCRIPT: &str = r#"
{"op": "send", "text": "héllo"}
{"op": "expect_echo"}
{"op": "send", "type": "binary", "hex": "00fffe"}
{"op": "expect_echo"}
{"op": "send", "type": "binary", "repeat_hex": "a5", "count": 1048576}
{"op": "expect_echo", "timeout": 20}
{"op": "send_fragmented", "type": "text", "fragments": ["fr", "ag-\u00e9", "-end"]}
{"op": "expect_echo"}
{"op": "send_fragmented", "type": "binary", "repeat_hex": "0102", "count": 5000, "fragment_size": 333}
{"op": "expect_echo"}
{"op": "send", "type": "text", "hex": "6f6bc0af"}
{"op": "expect_close", "code": 1007}
"#;

#[test]
fn python_websockets_client_against_ws_echo() {
    let server = ws_echo();
    let script = std::env::temp_dir().join(format!("wsio-py-script-{}.jsonl", std::process::id()));
    std::fs::write(&script, PY_SCRIPT).unwrap();
    let mut c = python();
    c.args([
        "tests/python/ws_peer.py",
        "client",
        "--url",
        &format!("ws://127.0.0.1:{}/", server.port),
    ]);
    c.arg("--script").arg(&script);
    let (ok, out) = run("ws_peer.py client", c, Duration::from_secs(120));
    let _ = std::fs::remove_file(&script);
    assert!(ok, "{out}");
    assert!(out.contains("RESULT pass=12 fail=0"), "{out}");
}

/// What Python `websockets` (compression on, its default) does against
/// `ws_echo`: it compresses every message, small ones and fragments too.
/// (As a server it asks for 12-bit windows both ways: see
/// `wsio_client_with_deflate_against_python_websockets_server`.)
const PY_DEFLATE_SCRIPT: &str = r#"
{"op": "expect_extension", "contains": "permessage-deflate"}
{"op": "send", "text": "héllo"}
{"op": "expect_echo"}
{"op": "send", "repeat": "{\"id\":1,\"text\":\"hello there\"},", "count": 8000}
{"op": "expect_echo"}
{"op": "send", "type": "binary", "repeat_hex": "00010203", "count": 300000}
{"op": "expect_echo", "timeout": 20}
{"op": "send_fragmented", "type": "text", "repeat": "frag-\u00e9-", "count": 2000, "fragment_size": 999}
{"op": "expect_echo"}
{"op": "ping", "hex": "0102"}
{"op": "send", "type": "text", "hex": "6f6bc0af"}
{"op": "expect_close", "code": 1007}
"#;

#[test]
fn python_websockets_client_with_deflate_against_ws_echo() {
    let server = ws_echo();
    let script = std::env::temp_dir().join(format!(
        "wsio-py-deflate-script-{}.jsonl",
        std::process::id()
    ));
    std::fs::write(&script, PY_DEFLATE_SCRIPT).unwrap();
    let mut c = python();
    c.args([
        "tests/python/ws_peer.py",
        "client",
        "--compression",
        "deflate",
        "--url",
        &format!("ws://127.0.0.1:{}/", server.port),
    ]);
    c.arg("--script").arg(&script);
    let (ok, out) = run("ws_peer.py client", c, Duration::from_secs(120));
    let _ = std::fs::remove_file(&script);
    assert!(ok, "{out}");
    assert!(out.contains("RESULT pass=12 fail=0"), "{out}");
}

/// JSON-like text: what compression is for.
fn json(n: usize, seed: usize) -> String {
    let mut s = String::from("[");
    let mut i = seed;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"u{}\",\"ok\":true}},",
            i % 13
        ));
        i += 1;
    }
    s.truncate(n - 1);
    s.push(']');
    s
}

/// The same checks of the wsio blocking client against any echo server
/// that understands `close:CODE:REASON`, offering permessage-deflate as
/// `deflate` says and expecting the server to agree to `agreed`.
fn client_checks(port: u16) {
    client_checks_with(port, DeflateConfig::default(), None);
}

fn client_checks_with(port: u16, deflate: DeflateConfig, agreed: Option<Params>) {
    let url = format!("ws://127.0.0.1:{port}/");
    let config = Config::default()
        .max_message_size(4 << 20)
        .max_frame_size(4 << 20)
        .deflate(deflate);
    let mut ws = WebSocket::connect_with(&url, config, |r| r).unwrap();
    assert_eq!(ws.connection().deflate_params(), agreed);
    // Compressible messages, large and many (context from one to the next).
    let mut sent = vec![Message::text(json(200 * 1024, 0))];
    sent.extend((0..30).map(|i| Message::text(json(1000 + i * 97, i))));
    sent.push(Message::binary(json(5000, 7).into_bytes()));
    for m in &sent {
        ws.send(m.clone()).unwrap();
    }
    for m in &sent {
        assert_eq!(&ws.read().unwrap(), m);
    }
    for m in [
        Message::text("hello"),
        Message::text("héllo wörld ✓ 日本語 😀"),
        Message::text(""),
        Message::binary(vec![0u8, 1, 2, 253, 254, 255]),
        Message::binary(Vec::<u8>::new()),
    ] {
        ws.send(m.clone()).unwrap();
        assert_eq!(ws.read().unwrap(), m);
    }
    for n in [125usize, 126, 127, 65535, 65536, 70000, 1 << 20] {
        let m = Message::binary((0..n).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
        ws.send(m.clone()).unwrap();
        assert_eq!(ws.read().unwrap(), m, "{n} bytes");
    }
    // A fragmented text message split inside a character.
    let whole = "frag-é-日本-end".as_bytes();
    let c = ws.connection();
    c.send_fragment(DataKind::Text, Bytes::copy_from_slice(&whole[..6]), false)
        .unwrap();
    c.send_fragment(DataKind::Text, Bytes::copy_from_slice(&whole[6..9]), false)
        .unwrap();
    c.send_fragment(DataKind::Text, Bytes::copy_from_slice(&whole[9..]), true)
        .unwrap();
    ws.flush().unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("frag-é-日本-end"));
    // Ping: the pong comes back as an event.
    ws.ping(Bytes::from_static(b"ping-payload")).unwrap();
    match ws.next_event().unwrap() {
        wsio::ws::Event::Pong(p) => assert_eq!(&p[..], b"ping-payload"),
        other => panic!("expected a pong, got {other:?}"),
    }
    // Client-initiated close: the server echoes the code.
    ws.close(CloseCode(4000), "client bye").unwrap();
    match ws.read() {
        Err(Error::Closed(c)) => assert_eq!((c.code, c.by_peer), (CloseCode(4000), false)),
        other => panic!("expected the close, got {other:?}"),
    }
    // Server-initiated close with a code and reason.
    let mut ws = WebSocket::connect(&url).unwrap();
    ws.send(Message::text("close:4001:server: bye")).unwrap();
    match ws.read() {
        Err(Error::Closed(c)) => assert_eq!(
            (c.code, c.reason.as_str(), c.by_peer),
            (CloseCode(4001), "server: bye", true)
        ),
        other => panic!("expected the server's close, got {other:?}"),
    }
}

#[test]
fn wsio_client_against_npm_ws_server() {
    let mut c = node();
    c.args(["ws-peer.js", "server", "--port", "0"]);
    let server = spawn_ready("ws-peer.js server", c);
    client_checks(server.port);
}

#[test]
fn wsio_client_against_python_websockets_server() {
    let mut c = python();
    c.args(["tests/python/ws_peer.py", "server", "--port", "0"]);
    let server = spawn_ready("ws_peer.py server", c);
    client_checks(server.port);
}

#[test]
fn wsio_client_against_wsio_server() {
    let server = ws_echo();
    client_checks(server.port);
    client_checks_with(
        server.port,
        DeflateConfig::default().enabled(true),
        Some(Params::default()),
    );
}

/// The wsio client offering permessage-deflate to the npm `ws` server
/// under several of its `perMessageDeflate` settings, and with offers of
/// its own.
#[test]
fn wsio_client_with_deflate_against_npm_ws_server() {
    let on = DeflateConfig::default().enabled(true);
    let params = |snct, cnct, server_bits, client_bits| Params {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    };
    let cases = [
        ("true", on, params(false, false, 15, 15)),
        (
            r#"{"serverNoContextTakeover":true,"clientNoContextTakeover":true}"#,
            on,
            params(true, true, 15, 15),
        ),
        (
            r#"{"serverMaxWindowBits":10,"clientMaxWindowBits":9}"#,
            on,
            params(false, false, 10, 9),
        ),
        (
            "true",
            on.server_no_context_takeover(true)
                .server_max_window_bits(12)
                .client_max_window_bits(11),
            params(true, false, 12, 11),
        ),
        (
            r#"{"threshold":0}"#,
            on.client_no_context_takeover(true)
                .server_max_window_bits(9),
            params(false, true, 9, 15),
        ),
    ];
    for (server_opts, client, want) in cases {
        let mut c = node();
        c.args(["ws-peer.js", "server", "--port", "0"]);
        if server_opts == "true" {
            c.arg("--deflate");
        } else {
            c.args(["--deflate-opts", server_opts]);
        }
        let server = spawn_ready("ws-peer.js server", c);
        client_checks_with(server.port, client, Some(want));
    }
}

#[test]
fn wsio_client_with_deflate_against_python_websockets_server() {
    let mut c = python();
    c.args([
        "tests/python/ws_peer.py",
        "server",
        "--port",
        "0",
        "--compression",
        "deflate",
    ]);
    let server = spawn_ready("ws_peer.py server", c);
    let want = Params {
        server_max_window_bits: 12,
        client_max_window_bits: 12,
        ..Params::default()
    };
    client_checks_with(
        server.port,
        DeflateConfig::default().enabled(true),
        Some(want),
    );
}

/// The blocking client over `wss://` (feature `tls`) against npm `ws` on
/// Node's `https`, with a certificate made here by rcgen: an echo of a
/// text and a 1 MiB binary message, and a close handshake; without the
/// certificate among its roots, the handshake fails.
#[cfg(feature = "tls")]
#[test]
fn wsio_client_over_tls_against_npm_ws_server() {
    use std::sync::Arc;
    const WSS_ECHO: &str = r#"
const fs = require("fs"), https = require("https"), { WebSocketServer } = require("ws");
const [key, cert] = process.argv.slice(-2);
const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) });
new WebSocketServer({ server }).on("connection", (ws) =>
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })));
server.listen(0, "127.0.0.1", () => console.log("READY " + server.address().port));
"#;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("wsio-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut c = node();
    c.args(["-e", WSS_ECHO])
        .arg(dir.join("key.pem"))
        .arg(dir.join("cert.pem"));
    let server = spawn_ready("node (wss echo)", c);
    let url = format!("wss://localhost:{}/", server.port);
    let mut ws = WebSocket::connect_tls(&url, Config::default(), Arc::new(tls), |r| r).unwrap();
    ws.send(Message::text("héllo")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("héllo"));
    let big = Message::Binary(vec![0xa5; 1 << 20].into());
    ws.send(big.clone()).unwrap();
    assert_eq!(ws.read().unwrap(), big);
    ws.close(CloseCode::NORMAL, "bye").unwrap();
    match ws.read() {
        Err(Error::Closed(c)) => assert_eq!(c.code, CloseCode::NORMAL),
        other => panic!("expected the close, got {other:?}"),
    }
    match WebSocket::connect(&url) {
        Err(Error::Io(e)) => eprintln!("refused: {e}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
