//! The official Node clients against the `conformance` example, and the
//! example against the official Node server, answer for answer.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use common::*;

fn check_runner(script: &str, url: &str, extra: &[&str]) {
    let mut c = node();
    c.arg(script).arg(url).args(extra);
    let (ok, out) = run(script, c, Duration::from_secs(240));
    let summary = out.lines().last().unwrap_or_default().to_owned();
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("fail")).collect();
    assert!(
        ok && summary.ends_with(" 0 failed"),
        "{script} {extra:?}: {summary}\n{}",
        failures.join("\n")
    );
    assert!(
        !summary.starts_with("0 passed"),
        "{script} ran nothing: {out}"
    );
}

/// Every driver of the conformance example (`--driver`) serves the
/// official Socket.IO client in each transport mode, and the official
/// Engine.IO client on the echo path.
fn official_clients_on(driver: &str) {
    // The 300 ms heartbeat stays (the silence scenario waits three of
    // them), but a pong may take 5 s: 200 polling clients in one Node
    // process on a busy 2-core machine can answer a ping later than
    // 200 ms, and no scenario here is about the timeout.
    let server = conformance_with(&["--driver", driver, "--ping-timeout", "5000"]);
    let url = format!("http://127.0.0.1:{}", server.port);
    for mode in ["websocket", "polling", "both"] {
        check_runner("sio-client-check.js", &url, &["--transports", mode]);
    }
    for mode in ["websocket", "polling", "both"] {
        check_runner(
            "eio-client-check.js",
            &url,
            &["--path", "/engine.io/", "--transports", mode],
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn official_clients_on_the_epoll_driver() {
    official_clients_on("epoll");
}

#[test]
fn official_clients_on_the_tokio_driver() {
    official_clients_on("tokio");
}

#[test]
fn official_clients_on_the_axum_driver() {
    official_clients_on("axum");
}

/// Embedded in axum: the app's own route answers next to Socket.IO, and
/// the official client connects by polling and upgrades (the machine's
/// paths go through the tower layer, hyper's upgrade included).
#[test]
fn axum_embedding_serves_socket_io_next_to_an_ordinary_route() {
    let server = conformance_with(&["--driver", "axum"]);
    let hello = http(
        server.port,
        "GET /hello HTTP/1.1\nHost: x\nConnection: close\n\n",
    );
    assert!(hello.starts_with("HTTP/1.1 200 OK"), "{hello}");
    assert!(hello.ends_with("hello from axum"), "{hello}");
    let other = http(
        server.port,
        "GET /nope HTTP/1.1\nHost: x\nConnection: close\n\n",
    );
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    check_runner(
        "sio-client-check.js",
        &format!("http://127.0.0.1:{}", server.port),
        &["--transports", "both"],
    );
}

#[test]
fn official_clients_on_the_smol_driver() {
    official_clients_on("smol");
}

/// The msgpack scenarios pass against the official server with the
/// official msgpack parser: the yardstick itself is right.
#[test]
fn the_msgpack_check_passes_against_the_official_server() {
    let mut c = node();
    c.args(["sio-server.js", "--port", "0", "--parser", "msgpack"]);
    let server = spawn_ready("node sio-server.js --parser msgpack", c);
    for mode in ["websocket", "polling", "both"] {
        check_runner(
            "sio-client-check.js",
            &format!("http://127.0.0.1:{}", server.port),
            &[
                "--transports",
                mode,
                "--parser",
                "msgpack",
                "--clients",
                "50",
            ],
        );
    }
}

#[test]
fn official_clients_on_the_blocking_driver() {
    official_clients_on("blocking");
}

// ----- answer for answer against the official server ---------------------

/// One raw HTTP exchange on a fresh connection: status line, the headers
/// that matter, and the body.
fn http(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.replace('\n', "\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    // Read until the body announced by Content-Length (or chunked end) is in.
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if let Some((head, body)) = split_response(&raw) {
            if let Some(len) = header(&head, "content-length") {
                if body.len() >= len.parse::<usize>().unwrap() {
                    break;
                }
            } else if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                if body.ends_with(b"0\r\n\r\n") {
                    break;
                }
            } else if head.starts_with("HTTP/1.1 204") || head.starts_with("HTTP/1.1 101") {
                break;
            }
        }
    }
    let (head, body) =
        split_response(&raw).unwrap_or_else(|| panic!("no response to {request:?}: {raw:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(&body) } else { body };
    let status = head.lines().next().unwrap_or_default().to_owned();
    let mut kept = vec![status];
    for name in [
        "content-type",
        "access-control-allow-origin",
        "access-control-allow-methods",
        "cache-control",
        "keep-alive",
    ] {
        if let Some(v) = header(&head, name) {
            kept.push(format!("{name}: {v}"));
        }
    }
    kept.push(normalize_sids(&String::from_utf8_lossy(&body)));
    kept.join("\n")
}

fn split_response(raw: &[u8]) -> Option<(String, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        raw[end + 4..].to_vec(),
    ))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

/// Session and socket ids differ from run to run: replace each with its
/// shape.
fn normalize_sids(s: &str) -> String {
    let mut out = s.to_owned();
    for key in ["\"sid\":\""] {
        while let Some(i) = out.find(key) {
            let start = i + key.len();
            let end = out[start..].find('"').map_or(out.len(), |e| start + e);
            out.replace_range(i..end + 1, &format!("\"SID\":<{} chars>", end - start));
        }
    }
    out
}

fn open_sid(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = vec![0u8; 4096];
    let n = s.read(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw[..n]).into_owned();
    let i = text.find("\"sid\":\"").unwrap() + 7;
    text[i..i + 20].to_owned()
}

/// The raw HTTP answers of a driver, compared with the official server's.
fn http_answers_match_the_official_server_on(driver: &str) {
    let ours = conformance_with(&["--driver", driver]);
    let node = node_reference();
    // On axum, hyper frames the answers: it closes no idle connection, so
    // it sends no keep-alive hint.
    let http = |port: u16, req: &str| {
        let answer = http(port, req);
        if driver == "axum" {
            answer.replace("keep-alive: timeout=5\n", "")
        } else {
            answer
        }
    };
    let requests = [
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\nHost: x\n\n",
        "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\nHost: x\n\n",
        "GET /socket.io/?transport=polling HTTP/1.1\nHost: x\n\n",
        "GET /socket.io/?EIO=3&transport=polling HTTP/1.1\nHost: x\n\n",
        "GET /socket.io/?EIO=4 HTTP/1.1\nHost: x\n\n",
        "GET /socket.io/?EIO=4&transport=__proto__ HTTP/1.1\nHost: x\n\n",
        "POST /socket.io/?EIO=4&transport=polling HTTP/1.1\nHost: x\nContent-Length: 0\n\n",
        "PUT /socket.io/?EIO=4&transport=polling HTTP/1.1\nHost: x\nContent-Length: 0\n\n",
        "GET /socket.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\nHost: x\n\n",
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\nHost: x\n\n",
        "OPTIONS /socket.io/?EIO=4&transport=polling HTTP/1.1\nHost: x\nOrigin: http://a\n\n",
    ];
    for req in requests {
        assert_eq!(
            http(ours.port, req),
            http(node.port, req),
            "request {req:?}"
        );
    }
    // Polling exchanges on a session of each.
    let script = |port: u16| {
        let sid = open_sid(port);
        let url = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        let mut log = Vec::new();
        let post = |body: &str| {
            format!(
                "POST {url} HTTP/1.1\nHost: x\nContent-Type: text/plain;charset=UTF-8\nContent-Length: {}\n\n{body}",
                body.len()
            )
        };
        let get = format!("GET {url} HTTP/1.1\nHost: x\n\n");
        log.push(http(port, &post("40")));
        log.push(http(port, &get));
        log.push(http(
            port,
            &post("42[\"message\",1,\"\\u001e\",{\"a\":[null,1.5,\"é\"]}]\u{1e}42[\"nope\"]"),
        ));
        log.push(http(port, &get));
        log.push(http(
            port,
            &post("421[\"message-with-ack\",\"x\"]\u{1e}40/custom,"),
        ));
        log.push(http(port, &get));
        log.push(http(port, &post("40/random,")));
        log.push(http(port, &get));
        // wsio closes a connection whose body it did not read (Node keeps
        // it and says for how long): the rest of the answer is the same.
        let too_large = http(port, &post(&format!("4{}", "x".repeat(1_000_001))));
        log.push(too_large.replace("keep-alive: timeout=5\n", ""));
        log.push(http(port, &post("42[\"disconnect-me\"]")));
        log.push(http(port, &get));
        log.push(http(port, &get));
        log.push(http(port, &get));
        log
    };
    let a = script(ours.port);
    let b = script(node.port);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "step {i}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn http_answers_match_the_official_server_on_epoll() {
    http_answers_match_the_official_server_on("epoll");
}

#[test]
fn http_answers_match_the_official_server_on_tokio() {
    http_answers_match_the_official_server_on("tokio");
}

#[test]
fn http_answers_match_the_official_server_on_axum() {
    http_answers_match_the_official_server_on("axum");
}

#[test]
fn http_answers_match_the_official_server_on_smol() {
    http_answers_match_the_official_server_on("smol");
}

#[test]
fn http_answers_match_the_official_server_on_blocking() {
    http_answers_match_the_official_server_on("blocking");
}

// ----- the official client across a restart of the wsio server -------------

/// The official client reconnects by itself when the conformance server is
/// killed and started again on the same port, with both namespaces back.
fn reconnect_after_restart(mode: &str) {
    use std::io::{BufRead, BufReader};
    let first = conformance();
    let port = first.port;
    let mut server = Some(first);
    let mut c = node();
    c.args([
        "sio-reconnect-check.js",
        &format!("http://127.0.0.1:{port}"),
        "--transports",
        mode,
    ]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().expect("node");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut out = Vec::new();
    for line in stdout.lines().map_while(Result::ok) {
        match line.as_str() {
            "KILL" => {
                drop(server.take());
                writeln!(stdin, "KILLED").unwrap();
            }
            "START" => {
                let mut again = example("conformance");
                again.args(["--port", &port.to_string()]);
                server = Some(spawn_ready("conformance (restarted)", again));
                writeln!(stdin, "STARTED").unwrap();
            }
            _ => out.push(line),
        }
    }
    let status = child.wait().unwrap();
    let text = out.join("\n");
    assert!(
        status.success() && text.ends_with("1 passed, 0 failed"),
        "{text}"
    );
}

#[test]
fn official_client_reconnects_after_the_server_restarts_websocket() {
    reconnect_after_restart("websocket");
}

#[test]
fn official_client_reconnects_after_the_server_restarts_polling() {
    reconnect_after_restart("polling");
}

#[test]
fn official_client_reconnects_after_the_server_restarts_both() {
    reconnect_after_restart("both");
}
