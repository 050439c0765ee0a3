//! Driving `ws::Connection` by hand, from a plain loop, with nothing but
//! `std`: the whole adapter a runtime needs, in one screen.
//!
//! `cargo run --example ws_manual` starts an echo server on a thread (the
//! blocking driver), then runs a client machine by hand against it: write
//! what `poll_transmit` gives, hand `poll_event` to the application, both
//! until quiet (`wsio::machine::drain`), and block on a read whose timeout
//! is `poll_timeout`.

use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    ops::ControlFlow,
    time::{Duration, Instant},
};

use wsio::{
    blocking::WebSocket,
    entropy::OsEntropy,
    machine::drain,
    ws::{ClientRequest, CloseCode, Config, Connection, Event, Message, Transmit},
};

fn main() -> std::io::Result<()> {
    // An echo server, so the example runs on its own.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut ws) = WebSocket::accept(stream) else {
                    return;
                };
                while let Ok(m) = ws.read() {
                    if ws.send(m).is_err() {
                        break;
                    }
                }
            });
        }
    });

    let mut tcp = TcpStream::connect(addr)?;
    let request = ClientRequest::new(addr.to_string(), "/");
    let mut ws = Connection::client(Config::default(), request, Box::new(OsEntropy::new()?));
    let mut buf = [0u8; 16 * 1024];
    let mut to_send = vec!["three", "two", "one"];
    let mut started = false;

    loop {
        let now = Instant::now();
        // 1. Write everything the machine wants written, and 2. hand every
        //    event to the application (which may issue commands), until
        //    both are quiet: `machine::drain` is that loop.
        let mut closed = false;
        let mut failed = None;
        drain(
            &mut ws,
            now,
            |_, t| {
                match t {
                    Transmit::Data(bytes) => failed = tcp.write_all(&bytes).err(),
                    Transmit::Close => closed = true,
                }
                ControlFlow::Continue(())
            },
            |ws, event| match event {
                Event::Open { .. } => println!("open"),
                Event::Message(Message::Text(t)) => {
                    println!("echo: {t}");
                    match to_send.pop() {
                        Some(next) => ws.send(Message::text(next)).expect("open"),
                        None => ws.close(now, CloseCode::NORMAL, "done").expect("open"),
                    }
                }
                Event::Closed(c) => println!("closed: {} {}", c.code, c.reason),
                _ => {}
            },
        );
        if let Some(e) = failed {
            return Err(e);
        }
        if closed {
            break;
        }
        if ws.state() == wsio::ws::State::Open && !started {
            started = true;
            ws.send(Message::text("go")).expect("open");
            continue;
        }
        // 3. Wait for bytes, or for the machine's next deadline.
        let timeout = ws.poll_timeout().map(|d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        tcp.set_read_timeout(timeout)?;
        match tcp.read(&mut buf) {
            Ok(0) => ws.handle_eof(Instant::now()),
            Ok(n) => ws.handle_input(Instant::now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                ws.handle_timeout(Instant::now())
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
