//! A WebSocket echo server: every message comes back as it came.
//!
//! `cargo run --example ws_echo -- --port 9001` and point any WebSocket
//! client at ws://127.0.0.1:9001/. It runs with `Config::default()`, whose
//! limits (16 MiB messages, any number of fragments) are what the Autobahn
//! testsuite sends, so `scripts/autobahn.sh server` needs no other setting,
//! plus permessage-deflate: it accepts any offer a client makes (browsers
//! always make one), unless started with `--no-deflate`.
//! With `--close-command`, the text message `close:CODE:REASON` makes the
//! server close with that code and reason (for interop tests).

mod common;

use std::time::Instant;

use smol::net::TcpListener;
use wsio::ws::{Accept, CloseCode, Config, Connection, Event, Message, deflate::DeflateConfig};

fn main() -> std::io::Result<()> {
    let port: u16 = common::arg("--port").unwrap_or(9001);
    let close_command = common::flag("--close-command");
    let deflate = DeflateConfig::default().enabled(!common::flag("--no-deflate"));
    let config = Config::default().deflate(deflate);
    smol::block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("READY {}", listener.local_addr()?.port());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            smol::spawn(async move {
                let conn = Connection::server(config);
                let _ = common::drive(stream, conn, |conn, ev| match ev {
                    Event::Upgrade(_) => {
                        let _ = conn.accept(Instant::now(), Accept::new());
                    }
                    Event::Message(Message::Text(t))
                        if close_command && t.starts_with("close:") =>
                    {
                        let mut parts = t.splitn(3, ':').skip(1);
                        let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1000);
                        let reason = parts.next().unwrap_or("");
                        let _ = conn.close(Instant::now(), CloseCode(code), reason);
                    }
                    Event::Message(m) => {
                        // Full queue: the peer is not reading; drop the echo
                        // rather than grow without bound.
                        let _ = conn.send(m);
                    }
                    _ => {}
                })
                .await;
            })
            .detach();
        }
    })
}
