//! Driving the sans-IO Socket.IO client by hand, from a plain loop over one
//! blocking `TcpStream` (WebSocket transport only, so there is one stream
//! at a time and no HTTP requests).
//!
//! `cargo run --example sio_manual -- http://127.0.0.1:3000`
//!
//! Against a server with the reference behaviour (the `conformance`
//! example, or tests/node/sio-server.js) it connects to `/` with an auth
//! payload, emits `message` and waits for `message-back`, asks for an ack
//! with `message-with-ack`, then leaves. Every line of the loop is the
//! machine's run-loop contract: perform what `poll_transmit` says, react
//! to what `poll_event` says, and wait for input no longer than
//! `poll_timeout`.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    time::{Duration, Instant},
};

use wsio::{
    engineio::{ClientTransmit, RequestId, TransportMode},
    entropy::OsEntropy,
    http::Url,
    socketio::{Client, ClientConfig, ClientEvent, Value},
};

fn main() -> io::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let u = Url::parse(&url).ok_or_else(|| io::Error::other(format!("bad URL {url}")))?;
    let config = ClientConfig::new(u.host_header()).mode(TransportMode::WebSocketOnly);
    let mut io = Client::new(config, Box::new(OsEntropy::new()?), Instant::now());
    let auth = Value::object([("token", Value::from("manual"))]);
    let root = io
        .socket(Instant::now(), "/", Some(auth))
        .map_err(io::Error::other)?;

    // The one stream the machine asked for, and its name.
    let mut stream: Option<(RequestId, TcpStream)> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut asked = None;
    let mut done = false;
    let started = Instant::now();
    loop {
        // 1. Perform the work the machine asks for.
        while let Some(t) = io.poll_transmit() {
            let now = Instant::now();
            match t {
                ClientTransmit::OpenStream { id } => {
                    match TcpStream::connect((u.host.as_str(), u.port)) {
                        Ok(s) => {
                            s.set_nodelay(true)?;
                            stream = Some((id, s));
                        }
                        Err(_) => io.handle_stream_error(now, id),
                    }
                }
                ClientTransmit::StreamData { id, data } => {
                    let failed = match &mut stream {
                        Some((sid, s)) if *sid == id => s.write_all(&data).is_err(),
                        _ => false,
                    };
                    if failed {
                        stream = None;
                        io.handle_stream_error(now, id);
                    }
                }
                ClientTransmit::CloseStream { id } => {
                    if let Some((sid, s)) = &stream {
                        if *sid == id {
                            let _ = s.shutdown(Shutdown::Both);
                            stream = None;
                        }
                    }
                }
                // Long-polling only; this loop runs WebSocket only.
                ClientTransmit::Request { .. } | ClientTransmit::CancelRequest { .. } => {}
            }
        }
        // 2. React to events; commands issued here queue more work, which
        //    the next turn performs.
        while let Some(ev) = io.poll_event() {
            let now = Instant::now();
            println!("event: {ev:?}");
            match ev {
                ClientEvent::Connect { nsp, .. } if nsp == root => {
                    let args = vec![Value::from("hello"), Value::from(1)];
                    io.emit(now, root, "message", args)
                        .map_err(io::Error::other)?;
                }
                ClientEvent::Event { name, .. } if name == "message-back" => {
                    let args = vec![Value::from("ack me")];
                    let id = io
                        .emit_with_ack(
                            now,
                            root,
                            "message-with-ack",
                            args,
                            Some(Duration::from_secs(5)),
                        )
                        .map_err(io::Error::other)?;
                    asked = Some(id);
                }
                ClientEvent::Ack { id, args, .. } if Some(id) == asked => {
                    println!("acked with {args:?}; leaving");
                    io.close(now);
                }
                ClientEvent::Disconnect { .. } if asked.is_some() => done = true,
                ClientEvent::ConnectError { .. } | ClientEvent::ReconnectFailed => done = true,
                _ => {}
            }
        }
        if done && io.poll_timeout().is_none() && stream.is_none() {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(io::Error::other("gave up after 30 s"));
        }
        // 3. Wait for input, at most until the machine's next deadline.
        let now = Instant::now();
        let wait = io
            .poll_timeout()
            .map_or(Duration::from_millis(500), |t| {
                t.saturating_duration_since(now)
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(500));
        match &mut stream {
            Some((id, s)) => {
                s.set_read_timeout(Some(wait))?;
                let id = *id;
                match s.read(&mut buf) {
                    Ok(0) => {
                        stream = None;
                        io.handle_stream_eof(Instant::now(), id);
                    }
                    Ok(n) => io.handle_stream_input(Instant::now(), id, &buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => {
                        stream = None;
                        io.handle_stream_error(Instant::now(), id);
                    }
                }
            }
            None => std::thread::sleep(wait),
        }
        // 4. Run the timers that are due (cheap when none is).
        io.handle_timeout(Instant::now());
    }
}
