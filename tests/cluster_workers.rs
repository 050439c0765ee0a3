//! The multi-core server (`conformance --workers 2`, `wsio_cluster::workers`)
//! with the official client on polling, on WebSocket and upgrading
//! (`tests/node/workers-check.js`): every session reaches the worker its sid
//! names, sessions are spread over the workers, and broadcasts and rooms
//! reach the sockets of every worker once.

mod common;

use std::time::Duration;

use common::{conformance_with, example, node, run};

/// One server at a time: the clients' 300 ms pings must not be stretched
/// by a loaded machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn official_client_on_two_workers() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = conformance_with(&["--driver", "tokio", "--workers", "2"]);
    let mut check = node();
    check.args([
        "workers-check.js",
        "--port",
        &server.port.to_string(),
        "--workers",
        "2",
    ]);
    let (ok, out) = run("workers-check.js", check, Duration::from_secs(120));
    println!("{out}");
    assert!(ok, "the multi-core server failed:\n{out}");
}

/// The cluster operations across the workers' in-process cluster
/// (`--node-name` turns on the cluster events without Redis).
#[test]
fn cluster_operations_across_two_workers() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = conformance_with(&["--driver", "tokio", "--workers", "2", "--node-name", "rust"]);
    let mut check = node();
    check.args([
        "workers-check.js",
        "--port",
        &server.port.to_string(),
        "--workers",
        "2",
    ]);
    check.args(["--cluster-events", "1"]);
    let (ok, out) = run("workers-check.js", check, Duration::from_secs(120));
    println!("{out}");
    assert!(ok, "the in-process cluster failed:\n{out}");
}

#[test]
fn workers_need_the_tokio_driver_and_no_recovery() {
    for extra in [
        &["--driver", "smol", "--workers", "2"][..],
        &["--driver", "tokio", "--workers", "2", "--recovery"],
        &["--driver", "tokio", "--workers", "0"],
    ] {
        let out = example("conformance")
            .args(["--port", "0"])
            .args(extra)
            .output()
            .expect("run conformance");
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--workers"),
            "{extra:?}"
        );
    }
}

/// Reads an HTTP response until the server closes the connection (at most
/// 5 s): the response, and whether it was closed.
fn response_then_close(s: &mut std::net::TcpStream) -> (String, bool) {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

fn request(port: u16, target: &str) -> (String, bool) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A client that would keep the connection for its next request.
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    response_then_close(&mut s)
}

/// A polling request is the only one of its connection: a client that
/// keeps connections alive across sessions cannot send a session's request
/// to a worker that does not own it.
#[test]
fn polling_requests_get_a_connection_each() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = conformance_with(&["--driver", "tokio", "--workers", "2"]);
    let mut sids = Vec::new();
    for _ in 0..2 {
        let (res, closed) = request(server.port, "/socket.io/?EIO=4&transport=polling");
        assert!(closed, "the handshake's connection stayed open:\n{res}");
        assert!(res.contains("Connection: close"), "{res}");
        let sid = res
            .split("\"sid\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a sid")
            .to_owned();
        sids.push(sid);
    }
    assert_ne!(sids[0].as_bytes()[0], sids[1].as_bytes()[0], "{sids:?}");
    for sid in &sids {
        let (res, closed) = request(
            server.port,
            &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        );
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert!(closed, "{res}");
    }
}
