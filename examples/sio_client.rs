//! A small Socket.IO chat client on smol, over the sans-IO
//! `wsio::socketio::Client`.
//!
//! `cargo run --example sio_client -- http://127.0.0.1:3000[/namespace] [--name NAME] [--event EVENT] [--transports polling|websocket|both]`
//!
//! Every line typed is emitted as `EVENT` (default `message`) with the line
//! as its argument; every event from the server is printed with its
//! arguments as JSON, and so are connections, disconnections and
//! reconnection attempts. `/quit` or the end of input leaves. The auth
//! payload is `{"name": NAME}`.
//!
//! The driver is the whole adapter: one task owns the machine; each TCP
//! connection it asks for has a task that reads it and reports to the
//! machine's task through a channel. The driver moves bytes, time and
//! connection ends; HTTP, keep-alive and WebSockets are the machine's.

mod common;

use std::{collections::HashMap, ops::ControlFlow, time::Instant};

use bytes::Bytes;
use smol::{
    Timer,
    channel::{Sender, unbounded},
    future::FutureExt as _,
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wsio::{
    engineio::{ClientTransmit, ConnId, TransportMode},
    entropy::OsEntropy,
    http::Url,
    machine::drain,
    socketio::{Client, ClientConfig, ClientEvent, ClientState, Value},
};

enum Input {
    Line(Option<String>),
    Connected(ConnId, TcpStream),
    Data(ConnId, Vec<u8>),
    Eof(ConnId),
    Failed(ConnId, String),
    Timer,
}

struct Conn {
    writer: Option<TcpStream>,
    /// Bytes to write once connected.
    queued: Vec<Bytes>,
    /// Close once the queued bytes are written.
    closing: bool,
}

/// The connections the machine asked for.
struct Net {
    host: String,
    port: u16,
    tx: Sender<Input>,
    conns: HashMap<ConnId, Conn>,
}

impl Net {
    fn open(&mut self, conn: ConnId) {
        self.conns.insert(
            conn,
            Conn {
                writer: None,
                queued: Vec::new(),
                closing: false,
            },
        );
        let (host, port, tx) = (self.host.clone(), self.port, self.tx.clone());
        smol::spawn(async move {
            let mut stream = match TcpStream::connect((host.as_str(), port)).await {
                Ok(s) => s,
                Err(e) => return drop(tx.send(Input::Failed(conn, e.to_string())).await),
            };
            let _ = stream.set_nodelay(true);
            if tx
                .send(Input::Connected(conn, stream.clone()))
                .await
                .is_err()
            {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let input = match stream.read(&mut buf).await {
                    Ok(0) => Input::Eof(conn),
                    Ok(n) => Input::Data(conn, buf[..n].to_vec()),
                    Err(e) => Input::Failed(conn, e.to_string()),
                };
                let last = !matches!(input, Input::Data(..));
                if tx.send(input).await.is_err() || last {
                    return;
                }
            }
        })
        .detach();
    }

    /// Takes one transmit: bytes and closes wait for [`Net::write_out`].
    fn perform(&mut self, t: ClientTransmit) {
        match t {
            ClientTransmit::Connect { conn } => self.open(conn),
            ClientTransmit::Data { conn, data } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.queued.push(data);
                }
            }
            ClientTransmit::Close { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.closing = true;
                }
            }
        }
    }

    /// Writes what waits on every connection that is up; the connections
    /// whose writes failed, and why.
    async fn write_out(&mut self) -> Vec<(ConnId, String)> {
        let mut failed = Vec::new();
        let mut done = Vec::new();
        for (conn, c) in &mut self.conns {
            let Some(w) = &mut c.writer else { continue };
            for data in c.queued.drain(..) {
                if let Err(e) = w.write_all(&data).await {
                    failed.push((*conn, e.to_string()));
                    break;
                }
            }
            if c.closing {
                done.push(*conn);
            }
        }
        for conn in done.into_iter().chain(failed.iter().map(|(c, _)| *c)) {
            if let Some(Conn {
                writer: Some(w), ..
            }) = self.conns.remove(&conn)
            {
                let _ = w.shutdown(std::net::Shutdown::Both);
            }
        }
        failed
    }
}

fn print_event(io: &Client, ev: &ClientEvent) {
    let name = |nsp| io.nsp_name(nsp).unwrap_or("?").to_owned();
    match ev {
        ClientEvent::Connect { nsp, sid, .. } => println!("* connected to {} as {sid}", name(*nsp)),
        ClientEvent::ConnectError { nsp, data } => {
            println!("* {} refused: {}", name(*nsp), data.to_json())
        }
        ClientEvent::Event { name: ev, args, .. } => {
            println!("< {ev} {}", Value::Array(args.clone()).to_json())
        }
        ClientEvent::Disconnect { nsp, reason } => {
            println!("* disconnected from {}: {reason}", name(*nsp))
        }
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
        } => {
            println!("* attempt {attempt} failed: {reason}")
        }
        ClientEvent::ReconnectFailed => println!("* giving up"),
        ClientEvent::Ack { .. } | ClientEvent::AckTimeout { .. } | ClientEvent::AckLost { .. } => {}
    }
}

fn main() -> std::io::Result<()> {
    let url = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let name: String = common::arg("--name").unwrap_or_else(|| "rustacean".into());
    let event: String = common::arg("--event").unwrap_or_else(|| "message".into());
    let mode = match common::arg::<String>("--transports").as_deref() {
        Some("polling") => TransportMode::PollingOnly,
        Some("websocket") => TransportMode::WebSocketOnly,
        _ => TransportMode::PollingThenUpgrade,
    };
    let u = Url::parse(&url).ok_or_else(|| std::io::Error::other(format!("bad URL {url}")))?;
    if u.secure {
        return Err(std::io::Error::other(
            "this example speaks plain TCP; see wsio::blocking::Client for TLS",
        ));
    }
    let nsp_name = match u
        .target
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_end_matches('/')
    {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    let config = ClientConfig::new(u.host_header()).mode(mode);
    let now = Instant::now();
    let mut io = Client::new(config, Box::new(OsEntropy::new()?), now);
    let auth = Value::object([("name", Value::from(name.as_str()))]);
    let nsp = io
        .socket(now, &nsp_name, Some(auth))
        .map_err(std::io::Error::other)?;

    let (tx, rx) = unbounded();
    let lines = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line {
                Ok(l) => {
                    if lines.send_blocking(Input::Line(Some(l))).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = lines.send_blocking(Input::Line(None));
    });

    smol::block_on(async move {
        let mut net = Net {
            host: u.host.clone(),
            port: u.port,
            tx,
            conns: HashMap::new(),
        };
        let mut leaving: Option<Instant> = None;
        loop {
            let now = Instant::now();
            drain(
                &mut io,
                now,
                |_, t| {
                    net.perform(t);
                    ControlFlow::Continue(())
                },
                |io, ev| print_event(io, &ev),
            );
            let failed = net.write_out().await;
            if !failed.is_empty() {
                for (conn, why) in failed {
                    io.handle_error(now, conn, &why);
                }
                continue;
            }
            if let Some(since) = leaving {
                let quiet = io.state() == ClientState::Closed && net.conns.is_empty();
                if quiet || since.elapsed().as_secs() >= 2 {
                    return Ok(());
                }
            }
            let timer = match io.poll_timeout() {
                Some(t) => Timer::at(t),
                None => Timer::after(std::time::Duration::from_millis(500)),
            };
            let input = async { rx.recv().await.unwrap_or(Input::Line(None)) }
                .or(async {
                    timer.await;
                    Input::Timer
                })
                .await;
            let now = Instant::now();
            match input {
                Input::Line(Some(l)) if l.trim() == "/quit" => {
                    io.close(now);
                    leaving.get_or_insert(now);
                }
                Input::Line(Some(l)) => {
                    if let Err(e) = io.emit(now, nsp, &event, vec![Value::from(l)]) {
                        println!("* cannot send: {e}");
                    }
                }
                Input::Line(None) => {
                    io.close(now);
                    leaving.get_or_insert(now);
                }
                Input::Timer => {}
                Input::Connected(conn, stream) => match net.conns.get_mut(&conn) {
                    Some(c) => c.writer = Some(stream),
                    None => {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                    }
                },
                Input::Data(conn, data) => io.handle_input(now, conn, &data),
                // The machine closes its side when it is done with it.
                Input::Eof(conn) => io.handle_eof(now, conn),
                Input::Failed(conn, why) => {
                    if net.conns.remove(&conn).is_some() {
                        io.handle_error(now, conn, &why);
                    }
                }
            }
            io.handle_timeout(Instant::now());
        }
    })
}
