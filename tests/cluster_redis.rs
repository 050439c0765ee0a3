//! A Redis cluster of one wsio node (the `conformance` example with
//! `--redis`, through `wsio-cluster`) and one Node node (the official
//! `socket.io` 4.8.4 with `@socket.io/redis-adapter` 8.3.0,
//! `tests/node/cluster-node.js`), on a real `redis-server` started here on
//! a free loopback port without persistence. The official client on each
//! node checks every cluster operation in both directions
//! (`tests/node/cluster-check.js`), `@socket.io/redis-emitter` included;
//! then Redis is stopped and restarted empty on the same port while the
//! nodes run.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Proc, conformance_with, example, node, run, spawn_ready};
use wsio::{
    cluster::{Event, RedisConfig},
    socketio,
};
use wsio_cluster::RedisLink;
use wsio_tokio::SocketIo;

/// One cluster at a time: each runs Redis, two servers and a Node
/// process of clients whose timings (ping every 300 ms) a loaded machine
/// must not stretch.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A `redis-server` of this test, stopped (by its PID) when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Redis::on(port)
    }

    /// A new, empty server on `port`.
    fn on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it with \
                     `apt-get install -y redis-server` (Debian's package)"
                )
            });
        let redis = Redis { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The wsio node and the Node node of a cluster on `redis`; `extra` goes
/// to the wsio node.
fn nodes_with(redis: &Redis, driver: &str, extra: &[&str]) -> (Proc, Proc) {
    let url = redis.url();
    let mut args = vec!["--driver", driver, "--redis", &url, "--node-name", "rust"];
    args.extend_from_slice(extra);
    let rust = conformance_with(&args);
    let mut n = node();
    n.args([
        "cluster-node.js",
        "--port",
        "0",
        "--redis",
        &url,
        "--node-name",
        "node",
    ]);
    let node = spawn_ready("node cluster-node.js", n);
    (rust, node)
}

fn nodes(redis: &Redis, driver: &str) -> (Proc, Proc) {
    nodes_with(redis, driver, &[])
}

fn check_args(rust: &Proc, node: &Proc, redis: &Redis, mode: &str) -> Command {
    let mut c = common::node();
    c.args(["cluster-check.js", "--rust", &rust.port.to_string()])
        .args(["--node", &node.port.to_string(), "--redis", &redis.url()])
        .args(["--mode", mode]);
    c
}

fn every_operation(driver: &str) {
    every_operation_with(driver, 1);
}

/// The checks, the wsio side being `workers` nodes (`--workers`).
fn every_operation_with(driver: &str, workers: usize) {
    let _serial = one_at_a_time();
    let redis = Redis::start();
    let w = workers.to_string();
    let extra: &[&str] = if workers > 1 { &["--workers", &w] } else { &[] };
    let (rust, node) = nodes_with(&redis, driver, extra);
    let mut check = check_args(&rust, &node, &redis, "full");
    check.args(["--rust-nodes", &w]);
    let (ok, out) = run("cluster-check.js", check, Duration::from_secs(120));
    println!("{out}");
    assert!(ok, "cluster checks failed ({driver} driver):\n{out}");
}

#[test]
fn every_operation_both_ways_tokio() {
    every_operation("tokio");
}

#[test]
fn every_operation_both_ways_axum() {
    every_operation("axum");
}

/// Each worker of `--workers 2` is a node of the Redis cluster.
#[test]
fn every_operation_both_ways_two_workers() {
    every_operation_with("tokio", 2);
}

#[test]
fn redis_restarted_empty() {
    let _serial = one_at_a_time();
    let mut redis = Redis::start();
    let port = redis.port;
    let (rust, node) = nodes(&redis, "tokio");
    let mut check = check_args(&rust, &node, &redis, "restart")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node cluster-check.js");
    let mut stdin = check.stdin.take().expect("stdin");
    let stdout = check.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        out.push_str(&line);
        out.push('\n');
        match line.as_str() {
            "RESTART-ME" => {
                redis.stop();
                writeln!(stdin, "down").expect("write to the check");
            }
            "DOWN-CHECKED" => {
                // Down for a while: both nodes see the loss and retry.
                std::thread::sleep(Duration::from_millis(1000));
                redis = Redis::on(port);
                writeln!(stdin, "up").expect("write to the check");
            }
            _ => {}
        }
    }
    let status = check.wait().expect("wait for the check");
    println!("{out}");
    assert!(
        status.success() && out.contains(" passed, 0 failed"),
        "the cluster did not survive a Redis restart:\n{out}"
    );
    drop(redis);
}

#[test]
fn drivers_without_the_redis_link_refuse_the_flag() {
    for driver in ["smol", "blocking"] {
        let out = example("conformance")
            .args(["--port", "0", "--driver", driver])
            .args(["--redis", "redis://127.0.0.1:1", "--node-name", "x"])
            .output()
            .expect("run conformance");
        assert_eq!(out.status.code(), Some(2), "--driver {driver}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--redis needs --driver tokio or axum"),
            "{err}"
        );
    }
}

/// The node count from a wsio node (the official `serverCount()`): this
/// node, the conformance node and the Node node.
#[test]
fn server_count_from_wsio() {
    let _serial = one_at_a_time();
    let redis = Redis::start();
    let (_rust, _node) = nodes(&redis, "tokio");
    let url = redis.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let count = rt.block_on(async move {
        let config = socketio::Config::default().cluster(true);
        let mut machine = SocketIo::new(config).expect("server");
        let (tx, rx) = std::sync::mpsc::channel();
        let mut link = RedisLink::start(&url, RedisConfig::default(), &["/"], SocketIo::server)
            .expect("link")
            .on_event(move |_, ev| {
                if let Event::ServerCount { count, .. } = ev {
                    let _ = tx.send(count);
                }
            });
        link.connect(&mut machine, Duration::from_secs(10))
            .await
            .expect("connected to Redis");
        link.adapter_mut().server_count(Instant::now(), "/");
        let listener = wsio_tokio::listen("127.0.0.1:0").await.expect("listen");
        let server = wsio_tokio::serve(listener, machine, Default::default())
            .expect("server")
            .with_sidecar(link);
        tokio::spawn(server);
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
            .await
            .expect("join")
    });
    assert_eq!(count, Ok(3));
}
