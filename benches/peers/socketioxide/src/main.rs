//! socketioxide with the behaviour of wsio's `conformance` example that the
//! load generator uses: on connection, `auth` with the client's auth (`{}`
//! when none); `message` -> `message-back` to the sender; `emit-all` -> `all`
//! to every socket of `/`. Heartbeat 25 s / 20 s; one-argument events (what
//! `examples/loadgen.rs` sends).
//!
//! `socketioxide-peer --port PORT [--threads N]` prints `READY <port>` once
//! listening on 127.0.0.1. It runs tokio's current-thread runtime by
//! default (the benchmark pins every server to one core); `--threads N`
//! runs tokio's multi-thread runtime with N worker threads instead (the
//! scale-out comparison with `conformance --workers N`).

use std::time::Duration;

use axum::serve::ListenerExt as _;
use serde_json::Value;
use socketioxide::{
    SocketIo,
    extract::{Data, SocketRef},
};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> std::io::Result<()> {
    let threads: usize = arg("--threads").and_then(|t| t.parse().ok()).unwrap_or(0);
    let runtime = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(3000);
    let (layer, io) = SocketIo::builder()
        .ping_interval(Duration::from_millis(25_000))
        .ping_timeout(Duration::from_millis(20_000))
        .max_payload(1_000_000)
        .build_layer();

    io.ns("/", async |s: SocketRef, Data(auth): Data<Value>| {
        let auth = if auth.is_null() {
            Value::Object(Default::default())
        } else {
            auth
        };
        s.emit("auth", &auth).ok();
        s.on("message", async |s: SocketRef, Data(arg): Data<Value>| {
            s.emit("message-back", &arg).ok();
        });
        s.on("emit-all", async |io: SocketIo, Data(arg): Data<Value>| {
            io.emit("all", &arg).await.ok();
        });
    });

    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("READY {}", listener.local_addr()?.port());
    // Like the other two servers: no Nagle delay on small writes.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
