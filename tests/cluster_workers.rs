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
