//! The async clients of `wsio-tokio` and `wsio-smol` against real peers.
//!
//! * Socket.IO: the `conformance_client` example runs every client scenario
//!   of CONFORMANCE.md with `--client tokio` and `--client smol` against the
//!   official Node server (tests/node/sio-server.js), in each transport
//!   mode, as tests/socketio_client_interop.rs does for the blocking client;
//!   `reconnection-after-restart` runs too, against a server that a shell
//!   loop starts again on the same port when the scenario kills it.
//! * Socket.IO over TLS: `https://` (and WSS) against the official server
//!   on Node's `https` with a certificate made here by rcgen; a client that
//!   does not trust it is refused.
//! * WebSocket: `connect_websocket` against npm `ws`, plain and over TLS.
//!
//! Node and tests/node/node_modules are required (`npm ci --prefix
//! tests/node`).

mod common;

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use wsio::{
    engineio::{TransportKind, TransportMode},
    socketio::Value,
    ws::{Config, Message},
};
use wsio_tokio::{ClientError, ClientOptions, WsError, rustls};

/// One run of `conformance_client`; `restart` is the shell command of the
/// restart scenario (then only that scenario runs).
fn scenarios(client: &str, mode: &str, url: &str, restart: Option<&str>) {
    let mut c = example("conformance_client");
    c.arg(url).args(["--transports", mode, "--client", client]);
    if let Some(cmd) = restart {
        c.args(["--only", "reconnection-after-restart", "--restart-cmd", cmd]);
    }
    let (ok, out) = run("conformance_client", c, Duration::from_secs(400));
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or_default()
        .to_owned();
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("fail")).collect();
    assert!(
        ok && summary.ends_with(" 0 failed"),
        "{client} {mode}: {summary}\n{}",
        failures.join("\n")
    );
    let passed: usize = summary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let want = if restart.is_some() { 1 } else { 24 };
    assert!(
        passed >= want,
        "{client} {mode}: only {passed} scenarios ran:\n{out}"
    );
    eprintln!("conformance_client --client {client} --transports {mode}: {summary}");
}

fn official(client: &str, mode: &str) {
    let server = node_reference();
    scenarios(
        client,
        mode,
        &format!("http://127.0.0.1:{}", server.port),
        None,
    );
}

#[test]
fn tokio_client_websocket_only() {
    official("tokio", "websocket");
}

#[test]
fn tokio_client_polling_only() {
    official("tokio", "polling");
}

#[test]
fn tokio_client_polling_then_upgrade() {
    official("tokio", "both");
}

#[test]
fn smol_client_websocket_only() {
    official("smol", "websocket");
}

#[test]
fn smol_client_polling_only() {
    official("smol", "polling");
}

#[test]
fn smol_client_polling_then_upgrade() {
    official("smol", "both");
}

// ----- reconnection after a real restart -----------------------------------------

/// The official server under a shell loop that starts it again on the
/// same port whenever it ends; `restart_cmd` kills the running one.
struct Restartable {
    sh: Child,
    dir: PathBuf,
    port: u16,
}

impl Restartable {
    fn start() -> Restartable {
        node(); // says how to install the peers if they are missing
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!("wsio-restart-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pid, stop) = (dir.join("pid"), dir.join("stop"));
        let script = format!(
            "while [ ! -e '{stop}' ]; do node sio-server.js --port {port} >/dev/null & echo $! > '{pid}'; wait $!; done",
            stop = stop.display(),
            pid = pid.display(),
        );
        let sh = Command::new("sh")
            .args(["-c", &script])
            .current_dir(repo().join("tests/node"))
            .stdin(Stdio::null())
            .spawn()
            .expect("sh");
        let end = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "sio-server.js did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Restartable { sh, dir, port }
    }

    fn restart_cmd(&self) -> String {
        format!("kill $(cat '{}')", self.dir.join("pid").display())
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("stop"), "");
        let _ = Command::new("sh")
            .args(["-c", &self.restart_cmd()])
            .status();
        let _ = self.sh.kill();
        let _ = self.sh.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn restart(client: &str, mode: &str) {
    let server = Restartable::start();
    let url = format!("http://127.0.0.1:{}", server.port);
    scenarios(client, mode, &url, Some(&server.restart_cmd()));
}

#[test]
fn tokio_client_reconnects_after_a_restart_websocket() {
    restart("tokio", "websocket");
}

#[test]
fn tokio_client_reconnects_after_a_restart_polling() {
    restart("tokio", "polling");
}

#[test]
fn smol_client_reconnects_after_a_restart_both() {
    restart("smol", "both");
}

// ----- TLS -------------------------------------------------------------------------

struct Tls {
    dir: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

/// A self-signed certificate for 127.0.0.1 and localhost, written to a
/// temporary folder, and a client config that trusts only it.
fn tls(name: &str) -> Tls {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate");
    let dir = std::env::temp_dir().join(format!("wsio-atls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Tls {
        dir,
        client: Arc::new(client),
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn https_server(t: &Tls) -> Proc {
    let mut c = node();
    c.arg("sio-restart-server.js")
        .args(["--port", "0", "--key"])
        .arg(t.dir.join("key.pem"))
        .arg("--cert")
        .arg(t.dir.join("cert.pem"))
        .stdin(Stdio::null());
    spawn_ready("node sio-restart-server.js (https)", c)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// An echo with acks over `https://`, then the transport the mode ends on.
async fn tls_echo(
    connect: impl AsyncFnOnce(ClientOptions) -> Result<wsio_tokio::Client, ClientError>,
    mode: TransportMode,
    want: TransportKind,
) {
    let options = ClientOptions::new()
        .transports(mode)
        .reconnection(false)
        .connect_timeout(Duration::from_secs(10));
    let io = connect(options)
        .await
        .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
    let big = Value::Binary(vec![7u8; 200_000].into());
    let args = vec![Value::from("héllo"), Value::from(1), big];
    let answer = io
        .emit_with_ack("echo", args.clone(), Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
    assert_eq!(answer, args, "{mode:?}");
    let end = Instant::now() + Duration::from_secs(5);
    while io.transport().await != Some(want) && Instant::now() < end {
        futures_lite_sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(io.transport().await, Some(want), "{mode:?}");
    io.close().await.unwrap();
}

/// A runtime-neutral sleep: the tests run the same code on both runtimes.
async fn futures_lite_sleep(d: Duration) {
    smol::Timer::after(d).await;
}

const MODES: [(TransportMode, TransportKind); 3] = [
    (TransportMode::PollingOnly, TransportKind::Polling),
    (TransportMode::WebSocketOnly, TransportKind::WebSocket),
    (TransportMode::PollingThenUpgrade, TransportKind::WebSocket),
];

#[test]
fn tokio_client_over_tls_in_every_mode() {
    let t = tls("tokio");
    let server = https_server(&t);
    let url = format!("https://localhost:{}", server.port);
    rt().block_on(async {
        for (mode, want) in MODES {
            let connector = wsio_tokio::TokioConnector::with_tls(t.client.clone());
            let connect = async |o| Ok(wsio_tokio::connect_with(connector, &url, o).await?.0);
            tls_echo(connect, mode, want).await;
        }
    });
}

#[test]
fn smol_client_over_tls_in_every_mode() {
    let t = tls("smol");
    let server = https_server(&t);
    let url = format!("https://127.0.0.1:{}", server.port);
    smol::block_on(async {
        for (mode, want) in MODES {
            let connector = wsio_smol::SmolConnector::with_tls(t.client.clone());
            let connect = async |o| Ok(wsio_smol::connect_with(connector, &url, o).await?.0);
            tls_echo(connect, mode, want).await;
        }
    });
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let t = tls("untrusted");
    let server = https_server(&t);
    let url = format!("https://127.0.0.1:{}", server.port);
    rt().block_on(async {
        for mode in [TransportMode::PollingOnly, TransportMode::WebSocketOnly] {
            // The default configuration trusts the webpki roots only.
            let options = ClientOptions::new()
                .transports(mode)
                .reconnection(false)
                .connect_timeout(Duration::from_secs(10));
            match wsio_tokio::connect(&url, options).await {
                Err(ClientError::ConnectFailed(why)) => eprintln!("{mode:?}: refused: {why}"),
                other => panic!("{mode:?}: expected a refusal, got {:?}", other.map(|_| ())),
            }
        }
    });
}

// ----- WebSocket -----------------------------------------------------------------------

/// npm `ws` as an echo server over TLS.
const WSS_ECHO: &str = r#"
const fs = require("fs"), https = require("https"), { WebSocketServer } = require("ws");
const [key, cert] = process.argv.slice(-2);
const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) });
new WebSocketServer({ server }).on("connection", (ws) =>
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })));
server.listen(0, "127.0.0.1", () => console.log("READY " + server.address().port));
"#;

/// Text, a 1 MiB binary message and a close handshake through an echo.
async fn ws_echo(mut ws: wsio_tokio::WebSocket) {
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(ws.read().await.unwrap(), Message::text("héllo"));
    let big = Message::Binary(vec![0xa5; 1 << 20].into());
    ws.send(big.clone()).await.unwrap();
    assert_eq!(ws.read().await.unwrap(), big);
    ws.close(wsio::ws::CloseCode::NORMAL, "bye").await.unwrap();
    match ws.read().await {
        Err(WsError::Closed(c)) => assert_eq!(c.code, wsio::ws::CloseCode::NORMAL),
        other => panic!("expected the close, got {other:?}"),
    }
}

#[test]
fn websocket_clients_against_npm_ws() {
    let mut c = node();
    c.args(["ws-peer.js", "server"]);
    let server = spawn_ready("node ws-peer.js server", c);
    let url = format!("ws://127.0.0.1:{}/", server.port);
    rt().block_on(async { ws_echo(wsio_tokio::connect_websocket(&url).await.unwrap()).await });
    smol::block_on(async { ws_echo(wsio_smol::connect_websocket(&url).await.unwrap()).await });
}

#[test]
fn websocket_clients_over_tls_against_npm_ws() {
    let t = tls("wss");
    let mut c = node();
    c.args(["-e", WSS_ECHO])
        .arg(t.dir.join("key.pem"))
        .arg(t.dir.join("cert.pem"));
    let server = spawn_ready("node (wss echo)", c);
    let url = format!("wss://localhost:{}/", server.port);
    rt().block_on(async {
        let connector = wsio_tokio::TokioConnector::with_tls(t.client.clone());
        let ws = wsio_tokio::connect_websocket_with(&connector, &url, Config::default(), |r| r)
            .await
            .unwrap();
        ws_echo(ws).await;
        // Without the certificate among its roots, the handshake fails.
        match wsio_tokio::connect_websocket(&url).await {
            Err(WsError::Io(e)) => eprintln!("refused: {e}"),
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    });
    smol::block_on(async {
        let connector = wsio_smol::SmolConnector::with_tls(t.client.clone());
        let ws = wsio_smol::connect_websocket_with(&connector, &url, Config::default(), |r| r)
            .await
            .unwrap();
        ws_echo(ws).await;
    });
}
