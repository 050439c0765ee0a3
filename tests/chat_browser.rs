//! The browser chat (`examples/chat.rs`): its HTTP side over TCP, and the
//! page in Debian's Chromium driven by `tests/node/chat-browser.js`
//! (playwright-core), including a server restart on the same port.
//!
//! Nothing here is skipped: without Chromium, Node, playwright-core or the
//! chat's local copy of the official client, the tests fail and say how to
//! install them. `WSIO_CHAT_SCREENSHOT=docs/chat.png` saves the screenshot
//! of two browsers chatting there (by default it goes to `target/tmp`).

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use common::*;

const CLIENT_JS: &str = "examples/chat/node_modules/socket.io-client/dist/socket.io.min.js";

/// The chat's local copy of the official client (`npm ci --prefix examples/chat`).
fn local_client() -> Vec<u8> {
    let path = repo().join(CLIENT_JS);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "the chat's copy of socket.io-client is missing ({}: {e}): run `npm ci --prefix examples/chat`",
            path.display()
        )
    })
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("WSIO_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "Chromium is required for the browser chat test ({} is missing): \
         `sudo apt-get install -y chromium chromium-driver` (or set WSIO_CHROMIUM to a Chromium binary)",
        path.display()
    );
    path
}

fn chat(port: u16) -> Proc {
    let mut c = example("chat");
    c.args(["--port", &port.to_string()]);
    spawn_ready("chat", c)
}

/// One request on a fresh connection: status, head, body.
fn http(port: u16, request: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read the answer");
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head[9..12].parse().expect("status");
    (status, head, out[end + 4..].to_vec())
}

fn get(port: u16, method: &str, target: &str) -> (u16, String, Vec<u8>) {
    http(
        port,
        &format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn chat_serves_its_page_the_client_and_socket_io_on_one_port() {
    let client = local_client();
    let server = chat(0);
    let port = server.port;

    let (status, head, body) = get(port, "GET", "/");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains(r#"<script src="/chat.js" defer>"#));
    for (path, mime) in [("/chat.js", "text/javascript"), ("/chat.css", "text/css")] {
        let (status, head, _) = get(port, "GET", path);
        assert!(status == 200 && head.contains(mime), "{path}: {head}");
    }

    // The official client, byte for byte the npm file, as a Node server
    // serves it at this path.
    let (status, head, body) = get(port, "GET", "/socket.io/socket.io.min.js");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/javascript"), "{head}");
    assert!(body == client, "the bundle differs from {CLIENT_JS}");
    let (status, head, body) = get(port, "HEAD", "/socket.io/socket.io.min.js");
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!("Content-Length: {}", client.len())),
        "{head}"
    );
    assert!(body.is_empty());

    // Socket.IO on the same port, default path.
    let (status, head, body) = get(port, "GET", "/socket.io/?EIO=4&transport=polling");
    assert_eq!(status, 200, "{head}");
    let open = String::from_utf8_lossy(&body);
    assert!(
        open.starts_with("0{\"sid\":")
            && open.contains("\"pingInterval\":25000,\"pingTimeout\":20000"),
        "{open}"
    );

    assert_eq!(get(port, "GET", "/nope").0, 404);
    assert_eq!(get(port, "GET", "/socket.io/socket.io.js").0, 404);
    let (status, head, _) = get(port, "POST", "/");
    assert!(status == 405 && head.contains("Allow: GET, HEAD"), "{head}");
}

#[test]
fn chat_without_a_local_client_says_how_to_install_it() {
    let mut c = example("chat");
    c.args([
        "--port",
        "0",
        "--client-js",
        "/nonexistent/socket.io.min.js",
    ]);
    let (server, log) = spawn_ready_logged("chat", c);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("npm ci --prefix examples/chat"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no install advice on stderr: {seen:#?}"),
        }
    }
    // The page then falls back to the CDN (checked in Chromium below).
    assert_eq!(
        get(server.port, "GET", "/socket.io/socket.io.min.js").0,
        404
    );
    assert_eq!(get(server.port, "GET", "/").0, 200);
}

#[test]
fn chat_in_chromium_two_browsers_polling_websocket_and_a_restart() {
    let chromium = chromium();
    local_client();
    let mut node = node();
    assert!(
        repo()
            .join("tests/node/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run `npm ci --prefix tests/node`"
    );
    let screenshot = match std::env::var_os("WSIO_CHAT_SCREENSHOT") {
        Some(p) => repo().join(p),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chat.png"),
    };

    let mut server = Some(chat(0));
    let port = server.as_ref().map(|s| s.port).unwrap_or_default();
    node.arg("chat-browser.js")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--chromium")
        .arg(&chromium)
        .arg("--screenshot")
        .arg(&screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = node.spawn().expect("start node chat-browser.js");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // The script asks for the restart: KILL, then START, on stdin/stdout.
    let deadline = Instant::now() + Duration::from_secs(200);
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "chat-browser.js did not finish in time:\n{}",
                    out.join("\n")
                );
            }
        };
        eprintln!("{line}");
        match line.as_str() {
            "KILL" => {
                drop(server.take()); // SIGKILL, then reaped
                writeln!(stdin, "KILLED").expect("write to the script");
            }
            "START" => {
                server = Some(chat(port));
                writeln!(stdin, "STARTED").expect("write to the script");
            }
            _ => out.push(line),
        }
    }
    let status = child.wait().expect("wait for node");
    let summary = out.last().cloned().unwrap_or_default();
    let failures: Vec<&String> = out.iter().filter(|l| l.starts_with("fail")).collect();
    assert!(
        status.success() && summary.ends_with(" 0 failed") && !summary.starts_with("0 passed"),
        "chat-browser.js: {summary}\n{failures:#?}"
    );
}
