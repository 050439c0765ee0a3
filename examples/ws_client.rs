//! A WebSocket client on `wsio-smol`'s async client.
//!
//! ```text
//! cargo run --example ws_client -- [--no-deflate] [--autobahn] URL
//! ```
//!
//! * `ws_client ws://127.0.0.1:9001/` (or `wss://`): sends each line typed
//!   on stdin as a text message and prints what comes back.
//! * `ws_client --autobahn ws://127.0.0.1:9002`: runs every case of an
//!   Autobahn `fuzzingserver`, echoing what it sends, then asks it to write
//!   its report. `Config::default()` takes every case the suite sends (up
//!   to 16 MiB messages, any number of fragments).
//!
//! Both offer permessage-deflate (as npm `ws` and browsers do), unless
//! `--no-deflate` is given. An unknown flag or a missing URL prints this
//! usage and exits with 2.

mod common;

use smol::io::AsyncBufReadExt;
use wsio::ws::{CloseCode, Config, Message, deflate::DeflateConfig};
use wsio_smol::{WebSocket, WsError};

const USAGE: &str = "usage: ws_client [--no-deflate] [--autobahn] URL";

async fn open(url: &str, config: Config) -> std::io::Result<WebSocket> {
    wsio_smol::connect_websocket_with(&wsio_smol::SmolConnector::new(), url, config, |r| r)
        .await
        .map_err(std::io::Error::other)
}

/// Echoes every message until the connection ends (as a case does).
async fn echo(mut ws: WebSocket) {
    while let Ok(m) = ws.read().await {
        if ws.send(m).await.is_err() {
            break;
        }
    }
}

async fn autobahn(base: &str, config: Config) -> std::io::Result<()> {
    let mut ws = open(&format!("{base}/getCaseCount"), config).await?;
    let count: u32 = match ws.read().await {
        Ok(Message::Text(t)) => t.trim().parse().unwrap_or(0),
        _ => 0,
    };
    println!("running {count} Autobahn cases");
    for case in 1..=count {
        match open(&format!("{base}/runCase?case={case}&agent=wsio"), config).await {
            Ok(ws) => echo(ws).await,
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }
    let mut ws = open(&format!("{base}/updateReports?agent=wsio"), config).await?;
    while ws.read().await.is_ok() {}
    println!("report updated");
    Ok(())
}

enum Wake {
    Line(Option<String>),
    Ws(Result<Message, WsError>),
}

async fn interactive(url: &str, config: Config) -> std::io::Result<()> {
    let mut ws = open(url, config).await?;
    println!("connected; type lines to send");
    let mut lines = smol::io::BufReader::new(smol::Unblock::new(std::io::stdin())).lines();
    loop {
        // `read` is cancel-safe: a line that comes first loses nothing.
        let wake = smol::future::or(
            async {
                use smol::stream::StreamExt;
                Wake::Line(lines.next().await.and_then(Result::ok))
            },
            async { Wake::Ws(ws.read().await) },
        )
        .await;
        match wake {
            Wake::Line(Some(line)) => {
                if let Err(e) = ws.send(Message::text(line)).await {
                    eprintln!("not sent: {e}");
                }
            }
            Wake::Line(None) => {
                let _ = ws.close(CloseCode::NORMAL, "").await;
                while ws.read().await.is_ok() {}
                return Ok(());
            }
            Wake::Ws(Ok(Message::Text(t))) => println!("< {t}"),
            Wake::Ws(Ok(Message::Binary(b))) => println!("< {} binary bytes", b.len()),
            Wake::Ws(Err(WsError::Closed(c))) => {
                println!("closed: {} {}", c.code, c.reason);
                return Ok(());
            }
            Wake::Ws(Err(e)) => return Err(std::io::Error::other(e)),
        }
    }
}

fn main() -> std::io::Result<()> {
    let args =
        common::args::Args::parse_with(USAGE, &[("--no-deflate", false), ("--autobahn", false)], 1);
    let Some(url) = args.positional().first() else {
        args.fail("a URL is needed");
    };
    let deflate = DeflateConfig::default().enabled(!args.flag("--no-deflate"));
    let config = Config::default().deflate(deflate);
    smol::block_on(async {
        if args.flag("--autobahn") {
            autobahn(url.trim_end_matches('/'), config).await
        } else {
            interactive(url, config).await
        }
    })
}
