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
//!
//! The connections are `wsio_tokio::WsServer`'s (one `ws::Connection` each)
//! on `wsio-tokio`; the driver is the three lines at the end.

mod common;

use wsio::ws::{Accept, CloseCode, Config, Event, Message, deflate::DeflateConfig};
use wsio_tokio::{Options, WsServer};

const USAGE: &str = "usage: ws_echo [--port PORT] [--close-command] [--no-deflate]";

fn main() -> std::io::Result<()> {
    let args = common::args::Args::parse(
        USAGE,
        &[
            ("--port", true),
            ("--autobahn", false),
            ("--close-command", false),
            ("--no-deflate", false),
        ],
    );
    let port: u16 = args.value("--port").unwrap_or(9001);
    let close_command = args.flag("--close-command");
    let deflate = DeflateConfig::default().enabled(!args.flag("--no-deflate"));
    let config = Config::default().deflate(deflate);
    common::log_to_stderr();
    let echo = move |ws: &mut WsServer, ev: wsio_tokio::WsEvent, now| {
        let Some(conn) = ws.conn(ev.conn) else {
            return;
        };
        match ev.event {
            Event::Upgrade(_) => {
                let _ = conn.accept(now, Accept::new());
            }
            Event::Message(Message::Text(t)) if close_command && t.starts_with("close:") => {
                let mut parts = t.splitn(3, ':').skip(1);
                let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1000);
                let reason = parts.next().unwrap_or("");
                let _ = conn.close(now, CloseCode(code), reason);
            }
            // A full queue means the peer is not reading: the echo is
            // dropped rather than grow without bound.
            Event::Message(m) => {
                let _ = conn.send(m);
            }
            _ => {}
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = wsio_tokio::listen(("127.0.0.1", port)).await?;
        println!("READY {}", listener.local_addr()?.port());
        wsio_tokio::serve(listener, WsServer::new(config), Options::default())?
            .on_event(echo)
            .await
    })
}
