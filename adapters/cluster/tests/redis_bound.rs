//! The bound on messages from Redis waiting for a slow server loop: past
//! `INPUT_QUEUE` of them, the subscriber task drops and counts the rest
//! instead of letting them pile up in the Redis client. Needs Debian's
//! `redis-server` (as `tests/cluster_redis.rs` of the main crate).

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use wsio::{
    cluster::RedisConfig,
    entropy::OsEntropy,
    socketio::{Config, Server},
};
use wsio_cluster::{RedisLink, redis::INPUT_QUEUE};

/// A `redis-server` of this test, stopped (by its PID) when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install -y redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_of(s: &mut Server) -> &mut Server {
    s
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_that_does_not_read_drops_what_passes_the_bound() {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let mut server = Server::new(
        Config::default().cluster(true),
        Box::new(OsEntropy::new().unwrap()),
        Instant::now(),
    );
    let mut link = RedisLink::start(&url, RedisConfig::default(), &["/"], server_of).unwrap();
    link.connect(&mut server, Duration::from_secs(5))
        .await
        .unwrap();

    // Another node's broadcasts, while this node's loop never polls.
    let extra = 1000;
    let total = INPUT_QUEUE + extra;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
    let mut sent = 0;
    while sent < total {
        let mut pipe = redis::pipe();
        for _ in 0..1000.min(total - sent) {
            pipe.cmd("PUBLISH")
                .arg("socket.io#/#")
                .arg(&b"not read"[..])
                .ignore();
            sent += 1;
        }
        let () = pipe.query_async(&mut publisher).await.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    while link.dropped_messages() < extra as u64 {
        assert!(
            Instant::now() < deadline,
            "{} of {extra} messages dropped",
            link.dropped_messages()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Exactly the bound is kept for the loop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(link.dropped_messages(), extra as u64);
}
