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
//! machine's run-loop contract (`wsio::machine`): carry out what
//! `poll_transmit` asks (open a connection, write on it, close it), react
//! to what `poll_event` says, both until quiet (`machine::drain` is that
//! loop), and wait for input no longer than `poll_timeout`.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    ops::ControlFlow,
    time::{Duration, Instant},
};

use wsio::{
    engineio::{ClientTransmit, ConnId, TransportMode},
    entropy::OsEntropy,
    http::Url,
    machine::drain,
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

    // The one connection the machine asked for, and its name.
    let mut stream: Option<(ConnId, TcpStream)> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut asked = None;
    let mut done = false;
    let started = Instant::now();
    loop {
        let now = Instant::now();
        // 1. Carry out the work the machine asks for, and 2. react to its
        //    events (commands issued there queue more work), until quiet.
        drain(
            &mut io,
            now,
            |io, t| {
                match t {
                    ClientTransmit::Connect { conn } => {
                        match TcpStream::connect((u.host.as_str(), u.port)) {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                stream = Some((conn, s));
                            }
                            Err(e) => io.handle_error(now, conn, &e.to_string()),
                        }
                    }
                    ClientTransmit::Data { conn, data } => {
                        let failed = match &mut stream {
                            Some((c, s)) if *c == conn => s.write_all(&data).err(),
                            _ => None,
                        };
                        if let Some(e) = failed {
                            stream = None;
                            io.handle_error(now, conn, &e.to_string());
                        }
                    }
                    ClientTransmit::Close { conn } => {
                        if let Some((c, s)) = &stream {
                            if *c == conn {
                                let _ = s.shutdown(Shutdown::Both);
                                stream = None;
                            }
                        }
                    }
                }
                ControlFlow::Continue(())
            },
            |io, ev| {
                println!("event: {ev:?}");
                match ev {
                    ClientEvent::Connect { nsp, .. } if nsp == root => {
                        let args = vec![Value::from("hello"), Value::from(1)];
                        if let Err(e) = io.emit(now, root, "message", args) {
                            println!("cannot emit: {e}");
                        }
                    }
                    ClientEvent::Event { name, .. } if name == "message-back" => {
                        let args = vec![Value::from("ack me")];
                        let timeout = Some(Duration::from_secs(5));
                        match io.emit_with_ack(now, root, "message-with-ack", args, timeout) {
                            Ok(id) => asked = Some(id),
                            Err(e) => println!("cannot emit: {e}"),
                        }
                    }
                    ClientEvent::Ack { id, args, .. } if Some(id) == asked => {
                        println!("acked with {args:?}; leaving");
                        io.close(now);
                    }
                    ClientEvent::Disconnect { .. } if asked.is_some() => done = true,
                    ClientEvent::ConnectError { .. } | ClientEvent::ReconnectFailed => done = true,
                    _ => {}
                }
            },
        );
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
            Some((conn, s)) => {
                s.set_read_timeout(Some(wait))?;
                let conn = *conn;
                match s.read(&mut buf) {
                    // The machine closes its side when it is done with it.
                    Ok(0) => io.handle_eof(Instant::now(), conn),
                    Ok(n) => io.handle_input(Instant::now(), conn, &buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        stream = None;
                        io.handle_error(Instant::now(), conn, &e.to_string());
                    }
                }
            }
            None => std::thread::sleep(wait),
        }
        // 4. Run the timers that are due (cheap when none is).
        io.handle_timeout(Instant::now());
    }
}
