//! A small Socket.IO chat client on `wsio-tokio`'s async client.
//!
//! ```text
//! cargo run --example sio_client -- [URL] [--name NAME] [--event EVENT]
//!     [--transports polling|websocket|both]
//! ```
//!
//! URL defaults to `http://127.0.0.1:3000`; its path names the namespace
//! (`http://127.0.0.1:3000/chat`), and `https://` works too. Every line
//! typed is emitted as `EVENT` (default `message`) with the line as its
//! argument; every event from the server is printed with its arguments as
//! JSON, and so are connections, disconnections and reconnection attempts.
//! `/quit` or the end of input leaves. The auth payload is
//! `{"name": NAME}`. An unknown flag or a bad value prints this usage and
//! exits with 2.

mod common;

use tokio::io::{AsyncBufReadExt, BufReader};
use wsio::{
    engineio::TransportMode,
    socketio::{ClientEvent, Value},
};
use wsio_tokio::ClientOptions;

const USAGE: &str = "usage: sio_client [URL] [--name NAME] [--event EVENT] \
    [--transports polling|websocket|both]";

fn print_event(ev: &ClientEvent) {
    match ev {
        ClientEvent::Connect { nsp, sid, .. } => println!("* connected ({nsp:?}) as {sid}"),
        ClientEvent::ConnectError { data, .. } => println!("* refused: {}", data.to_json()),
        ClientEvent::Event { name, args, .. } => {
            println!("< {name} {}", Value::Array(args.clone()).to_json())
        }
        ClientEvent::Disconnect { reason, .. } => println!("* disconnected: {reason}"),
        ClientEvent::Reconnecting { attempt, delay } => {
            println!("* reconnecting (attempt {attempt}) in {delay:?}")
        }
        ClientEvent::Reconnected { attempt } => {
            println!("* reconnected after {attempt} attempt(s)")
        }
        ClientEvent::OpenError { reason, error } => {
            println!("* cannot connect: {reason} {error:?}")
        }
        ClientEvent::ReconnectError {
            attempt, reason, ..
        } => println!("* attempt {attempt} failed: {reason}"),
        ClientEvent::ReconnectFailed => println!("* giving up"),
        _ => {}
    }
}

fn main() -> std::io::Result<()> {
    let args = common::args::Args::parse_with(
        USAGE,
        &[("--name", true), ("--event", true), ("--transports", true)],
        1,
    );
    let url = args
        .positional()
        .first()
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let name: String = args.value("--name").unwrap_or_else(|| "rustacean".into());
    let event: String = args.value("--event").unwrap_or_else(|| "message".into());
    let mode = match args.choice("--transports", &["polling", "websocket", "both"]) {
        Some("polling") => TransportMode::PollingOnly,
        Some("websocket") => TransportMode::WebSocketOnly,
        _ => TransportMode::PollingThenUpgrade,
    };
    let options = ClientOptions::new()
        .transports(mode)
        .auth(Value::object([("name", Value::from(name.as_str()))]));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (io, mut events) = wsio_tokio::connect(&url, options)
            .await
            .map_err(std::io::Error::other)?;
        println!("* connected; type lines to send, /quit to leave");
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        loop {
            tokio::select! {
                line = lines.next_line() => match line? {
                    Some(l) if l.trim() != "/quit" => {
                        if let Err(e) = io.emit(&event, vec![Value::from(l)]).await {
                            println!("* cannot send: {e}");
                        }
                    }
                    _ => break,
                },
                ev = events.next() => match ev {
                    Some(ev) => print_event(&ev),
                    None => break,
                },
            }
        }
        io.close().await.map_err(std::io::Error::other)
    })
}
