//! A WebSocket client on smol.
//!
//! * `cargo run --example ws_client -- ws://127.0.0.1:9001/`: sends each line
//!   typed on stdin as a text message and prints what comes back.
//! * `cargo run --example ws_client -- --autobahn ws://127.0.0.1:9002`: runs
//!   every case of an Autobahn `fuzzingserver`, echoing what it sends, then
//!   asks it to write its report. `Config::default()` takes every case the
//!   suite sends (up to 16 MiB messages, any number of fragments).
//!
//! Both offer permessage-deflate (as npm `ws` and browsers do), unless
//! `--no-deflate` comes first.

mod common;

use std::{cell::RefCell, rc::Rc};

use smol::{io::AsyncBufReadExt, net::TcpStream};
use wsio::{
    entropy::OsEntropy,
    http::Url,
    ws::{ClientRequest, Config, Connection, Event, Message, deflate::DeflateConfig},
};

fn config(deflate: bool) -> Config {
    Config::default().deflate(DeflateConfig::default().enabled(deflate))
}

async fn open(url: &str, config: Config) -> std::io::Result<(TcpStream, Connection)> {
    let u = Url::parse(url).ok_or_else(|| std::io::Error::other(format!("bad URL {url}")))?;
    let stream = TcpStream::connect((u.host.as_str(), u.port)).await?;
    stream.set_nodelay(true)?;
    let request = ClientRequest::new(u.host_header(), u.target);
    Ok((
        stream,
        Connection::client(config, request, Box::new(OsEntropy::new()?)),
    ))
}

async fn autobahn(base: &str, config: Config) -> std::io::Result<()> {
    let count = Rc::new(RefCell::new(0u32));
    let (s, c) = open(&format!("{base}/getCaseCount"), config).await?;
    let n = count.clone();
    common::drive(s, c, move |_, ev| {
        if let Event::Message(Message::Text(t)) = ev {
            *n.borrow_mut() = t.trim().parse().unwrap_or(0);
        }
    })
    .await?;
    let count = *count.borrow();
    println!("running {count} Autobahn cases");
    for case in 1..=count {
        let (s, c) = open(&format!("{base}/runCase?case={case}&agent=wsio"), config).await?;
        common::drive(s, c, |conn, ev| {
            if let Event::Message(m) = ev {
                let _ = conn.send(m);
            }
        })
        .await?;
    }
    let (s, c) = open(&format!("{base}/updateReports?agent=wsio"), config).await?;
    common::drive(s, c, |_, _| {}).await?;
    println!("report updated");
    Ok(())
}

async fn interactive(url: &str, config: Config) -> std::io::Result<()> {
    let (stream, conn) = open(url, config).await?;
    // Lines from stdin are read on a helper thread and sent through the
    // machine; the socket side runs in this task.
    let (tx, rx) = smol::channel::unbounded::<String>();
    std::thread::spawn(move || {
        let mut lines = smol::io::BufReader::new(smol::Unblock::new(std::io::stdin())).lines();
        smol::block_on(async {
            use smol::stream::StreamExt;
            while let Some(Ok(line)) = lines.next().await {
                if tx.send(line).await.is_err() {
                    break;
                }
            }
        });
    });
    common::drive_with(
        stream,
        conn,
        rx,
        |conn, line| {
            if let Err(e) = conn.send(Message::text(line)) {
                eprintln!("not sent: {e}");
            }
        },
        |_, ev| match ev {
            Event::Open { .. } => println!("connected; type lines to send"),
            Event::Message(Message::Text(t)) => println!("< {t}"),
            Event::Message(Message::Binary(b)) => println!("< {} binary bytes", b.len()),
            Event::Closed(c) => println!("closed: {} {}", c.code, c.reason),
            _ => {}
        },
    )
    .await
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let deflate = args.first().is_none_or(|a| a != "--no-deflate");
    if !deflate {
        args.remove(0);
    }
    let config = config(deflate);
    smol::block_on(async {
        match args.as_slice() {
            [flag, url] if flag == "--autobahn" => {
                autobahn(url.trim_end_matches('/'), config).await
            }
            [url] => interactive(url, config).await,
            _ => {
                eprintln!("usage: ws_client [--no-deflate] [--autobahn] URL");
                std::process::exit(2);
            }
        }
    })
}
