//! A WebSocket echo server: every message comes back as it came.
//!
//! `cargo run --example ws_echo -- --port 9001` and point any WebSocket
//! client at ws://127.0.0.1:9001/. With `--autobahn` the message limits are
//! raised to what the Autobahn testsuite sends (16 MiB messages in up to
//! 65,536 fragments); the library's own defaults stay small and safe.
//! With `--close-command`, the text message `close:CODE:REASON` makes the
//! server close with that code and reason (for interop tests).
//!
//! The connections are `wsio_tokio::WsServer`'s (one `ws::Connection` each)
//! on `wsio-tokio`; the driver is the three lines at the end.

mod common;

use wsio::ws::{Accept, CloseCode, Config, Event, Message};
use wsio_tokio::{Options, WsServer};

const USAGE: &str = "usage: ws_echo [--port PORT] [--autobahn] [--close-command]";

fn main() -> std::io::Result<()> {
    let args = common::args::Args::parse(
        USAGE,
        &[
            ("--port", true),
            ("--autobahn", false),
            ("--close-command", false),
        ],
    );
    let port: u16 = args.value("--port").unwrap_or(9001);
    let close_command = args.flag("--close-command");
    let mut config = Config::default();
    let mut options = Options::default();
    if args.flag("--autobahn") {
        config = config
            .max_message_size(64 << 20)
            .max_frame_size(64 << 20)
            .max_fragments(1 << 20)
            .max_send_queue(128 << 20);
        options = options.max_queued(128 << 20);
    }
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
        wsio_tokio::serve(listener, WsServer::new(config), options)?
            .on_event(echo)
            .await
    })
}
