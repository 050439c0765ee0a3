//! The blocking Socket.IO client over TLS (feature `tls`): `https://` with
//! a certificate made here by rcgen, served by the official `socket.io` on
//! Node's `https` (tests/node/sio-restart-server.js `--key --cert`), in each
//! transport mode (so WSS too). A client that does not trust the
//! certificate must be refused.
//!
//! Run with `cargo test --features tls --test blocking_client_tls`.
#![cfg(feature = "tls")]

mod common;

use std::{process::Stdio, sync::Arc, time::Duration};

use common::*;
use wsio::{
    blocking::{Client, ClientError, ClientOptions},
    engineio::{TransportKind, TransportMode},
    socketio::Value,
};

struct Tls {
    dir: std::path::PathBuf,
    client: Arc<rustls::ClientConfig>,
}

/// A self-signed certificate for 127.0.0.1 and localhost, written to a
/// temporary folder, and a client config that trusts only it.
fn tls(name: &str) -> Tls {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate");
    let dir = std::env::temp_dir().join(format!("wsio-tls-{name}-{}", std::process::id()));
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

#[test]
fn socket_io_over_tls_in_every_mode() {
    let t = tls("modes");
    let server = https_server(&t);
    for (mode, want) in [
        (TransportMode::PollingOnly, TransportKind::Polling),
        (TransportMode::WebSocketOnly, TransportKind::WebSocket),
        (TransportMode::PollingThenUpgrade, TransportKind::WebSocket),
    ] {
        for host in ["127.0.0.1", "localhost"] {
            let options = ClientOptions::new()
                .mode(mode)
                .reconnection(false)
                .tls(t.client.clone())
                .connect_timeout(Duration::from_secs(10));
            let url = format!("https://{host}:{}", server.port);
            let mut io =
                Client::connect(&url, options).unwrap_or_else(|e| panic!("{mode:?} {url}: {e}"));
            let big = Value::Binary(vec![7u8; 200_000].into());
            let args = vec![Value::from("héllo"), Value::from(1), big];
            let answer = io
                .emit_with_ack("echo", args.clone(), Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            assert_eq!(answer, args, "{mode:?}");
            let end = std::time::Instant::now() + Duration::from_secs(5);
            while io.transport() != Some(want) && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(io.transport(), Some(want), "{mode:?}");
            let answer = io
                .emit_with_ack("echo", vec![Value::from(2)], Duration::from_secs(5))
                .unwrap();
            assert_eq!(answer, vec![Value::from(2)]);
            io.close();
        }
    }
    let _ = std::fs::remove_dir_all(&t.dir);
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let t = tls("untrusted");
    let server = https_server(&t);
    for mode in [TransportMode::PollingOnly, TransportMode::WebSocketOnly] {
        // The default configuration trusts the webpki roots only.
        let options = ClientOptions::new()
            .mode(mode)
            .reconnection(false)
            .connect_timeout(Duration::from_secs(10));
        let url = format!("https://127.0.0.1:{}", server.port);
        match Client::connect(&url, options) {
            Err(ClientError::ConnectFailed(why)) => eprintln!("{mode:?}: refused: {why}"),
            other => panic!("{mode:?}: expected a refusal, got {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&t.dir);
}

#[test]
fn plain_server_refuses_tls_and_tls_urls_are_parsed() {
    // An https URL to a plain HTTP server fails cleanly (no hang, no panic).
    let mut c = node();
    c.args(["sio-restart-server.js", "--port", "0"]);
    let server = spawn_ready("node sio-restart-server.js", c);
    let options = ClientOptions::new()
        .mode(TransportMode::WebSocketOnly)
        .reconnection(false)
        .connect_timeout(Duration::from_secs(10));
    let r = Client::connect(&format!("wss://127.0.0.1:{}", server.port), options);
    assert!(matches!(r, Err(ClientError::ConnectFailed(_))), "{r:?}");
}
