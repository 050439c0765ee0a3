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
//! connection has a task that reads it and reports to the machine's task
//! through a channel. Long-polling requests each get a fresh connection
//! here (the blocking driver in `wsio::blocking` keeps them alive).

mod common;

use std::{collections::HashMap, time::Instant};

use bytes::{Bytes, BytesMut};
use smol::{
    Timer,
    channel::{Sender, unbounded},
    future::FutureExt as _,
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wsio::{
    engineio::{ClientTransmit, RequestFailed, RequestId, TransportMode},
    entropy::OsEntropy,
    http::{Limits, Url, client::ResponseReader},
    socketio::{Client, ClientConfig, ClientEvent, ClientState, Value},
};

enum Input {
    Line(Option<String>),
    Connected(u64, TcpStream),
    Data(u64, Vec<u8>),
    Eof(u64),
    Failed(u64, String),
    Timer,
}

enum Role {
    Http {
        id: RequestId,
        reader: Box<ResponseReader>,
        buf: BytesMut,
    },
    Stream(RequestId),
}

struct Conn {
    writer: Option<TcpStream>,
    queued: Vec<Bytes>,
    close_when_up: bool,
    role: Role,
}

struct Driver {
    io: Client,
    host: String,
    port: u16,
    tx: Sender<Input>,
    conns: HashMap<u64, Conn>,
    by_id: HashMap<RequestId, u64>,
    next: u64,
}

impl Driver {
    fn open(&mut self, role: Role) -> u64 {
        self.next += 1;
        let key = self.next;
        let id = match &role {
            Role::Http { id, .. } | Role::Stream(id) => *id,
        };
        self.by_id.insert(id, key);
        self.conns.insert(
            key,
            Conn {
                writer: None,
                queued: Vec::new(),
                close_when_up: false,
                role,
            },
        );
        let (host, port, tx) = (self.host.clone(), self.port, self.tx.clone());
        smol::spawn(async move {
            let mut stream = match TcpStream::connect((host.as_str(), port)).await {
                Ok(s) => s,
                Err(e) => return drop(tx.send(Input::Failed(key, e.to_string())).await),
            };
            let _ = stream.set_nodelay(true);
            if tx
                .send(Input::Connected(key, stream.clone()))
                .await
                .is_err()
            {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let input = match stream.read(&mut buf).await {
                    Ok(0) => Input::Eof(key),
                    Ok(n) => Input::Data(key, buf[..n].to_vec()),
                    Err(e) => Input::Failed(key, e.to_string()),
                };
                let last = !matches!(input, Input::Data(..));
                if tx.send(input).await.is_err() || last {
                    return;
                }
            }
        })
        .detach();
        key
    }

    async fn write(&mut self, key: u64, data: Bytes) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        match &mut c.writer {
            None => c.queued.push(data),
            Some(w) => {
                if let Err(e) = w.write_all(&data).await {
                    self.end(key, Some(e.to_string()));
                }
            }
        }
    }

    fn close(&mut self, key: u64) {
        if let Some(c) = self.conns.remove(&key) {
            if let Some(w) = c.writer {
                let _ = w.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    async fn perform(&mut self, t: ClientTransmit) {
        match t {
            ClientTransmit::Request { id, request } => {
                let mut out = BytesMut::new();
                request.encode(&mut out);
                let key = self.open(Role::Http {
                    id,
                    reader: Box::new(ResponseReader::new(Limits::default(), 64 << 20)),
                    buf: BytesMut::new(),
                });
                self.write(key, out.freeze()).await;
            }
            ClientTransmit::CancelRequest { id } => {
                if let Some(key) = self.by_id.remove(&id) {
                    self.close(key);
                }
            }
            ClientTransmit::OpenStream { id } => {
                self.open(Role::Stream(id));
            }
            ClientTransmit::StreamData { id, data } => {
                if let Some(&key) = self.by_id.get(&id) {
                    self.write(key, data).await;
                }
            }
            ClientTransmit::CloseStream { id } => {
                if let Some(key) = self.by_id.remove(&id) {
                    match self.conns.get_mut(&key) {
                        Some(c) if c.writer.is_none() => c.close_when_up = true,
                        _ => self.close(key),
                    }
                }
            }
        }
    }

    /// A connection ended; `why` if it failed.
    fn end(&mut self, key: u64, why: Option<String>) {
        let now = Instant::now();
        let Some(c) = self.conns.remove(&key) else {
            return;
        };
        match c.role {
            Role::Http { id, mut reader, .. } => {
                if self.by_id.remove(&id).is_some() {
                    let r = match why {
                        None => reader
                            .finish()
                            .map_err(|e| RequestFailed::new(e.to_string())),
                        Some(w) => Err(RequestFailed::new(w)),
                    };
                    self.io.handle_response(now, id, r);
                }
            }
            Role::Stream(id) => {
                self.by_id.remove(&id);
                match why {
                    None => self.io.handle_stream_eof(now, id),
                    Some(_) => self.io.handle_stream_error(now, id),
                }
            }
        }
    }

    async fn on_input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Line(_) | Input::Timer => {}
            Input::Connected(key, stream) => {
                let Some(c) = self.conns.get_mut(&key) else {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return;
                };
                c.writer = Some(stream);
                let queued = std::mem::take(&mut c.queued);
                let close = c.close_when_up;
                for data in queued {
                    self.write(key, data).await;
                }
                if close {
                    self.close(key);
                }
            }
            Input::Data(key, data) => {
                let Some(c) = self.conns.get_mut(&key) else {
                    return;
                };
                match &mut c.role {
                    Role::Stream(id) => {
                        let id = *id;
                        self.io.handle_stream_input(now, id, &data);
                    }
                    Role::Http { id, reader, buf } => {
                        buf.extend_from_slice(&data);
                        match reader.read(buf) {
                            Ok(None) => {}
                            Ok(Some(response)) => {
                                let id = *id;
                                self.by_id.remove(&id);
                                self.close(key);
                                self.io.handle_response(now, id, Ok(response));
                            }
                            Err(e) => self.end(key, Some(e.to_string())),
                        }
                    }
                }
            }
            Input::Eof(key) => self.end(key, None),
            Input::Failed(key, why) => self.end(key, Some(why)),
        }
    }
}

fn print_event(io: &Client, ev: &ClientEvent) {
    let name = |nsp| io.nsp_name(nsp).unwrap_or("?").to_owned();
    match ev {
        ClientEvent::Connect { nsp, sid } => println!("* connected to {} as {sid}", name(*nsp)),
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
        let mut d = Driver {
            io,
            host: u.host.clone(),
            port: u.port,
            tx,
            conns: HashMap::new(),
            by_id: HashMap::new(),
            next: 0,
        };
        let mut leaving: Option<Instant> = None;
        loop {
            loop {
                let mut moved = false;
                while let Some(t) = d.io.poll_transmit() {
                    moved = true;
                    d.perform(t).await;
                }
                while let Some(ev) = d.io.poll_event() {
                    moved = true;
                    print_event(&d.io, &ev);
                }
                if !moved {
                    break;
                }
            }
            if let Some(since) = leaving {
                let quiet = d.io.state() == ClientState::Closed && d.conns.is_empty();
                if quiet || since.elapsed().as_secs() >= 2 {
                    return Ok(());
                }
            }
            let timer = match d.io.poll_timeout() {
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
                    d.io.close(now);
                    leaving.get_or_insert(now);
                }
                Input::Line(Some(l)) => {
                    if let Err(e) = d.io.emit(now, nsp, &event, vec![Value::from(l)]) {
                        println!("* cannot send: {e}");
                    }
                }
                Input::Line(None) => {
                    d.io.close(now);
                    leaving.get_or_insert(now);
                }
                other => d.on_input(other).await,
            }
            d.io.handle_timeout(Instant::now());
        }
    })
}
