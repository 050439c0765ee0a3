//! What the examples share: strict flags ([`args`]), a stderr logger for
//! the adapters' warnings, the raw `epoll` server loop of the load
//! benchmarks, and a small smol driver for one `wsio::ws::Connection` (the
//! WebSocket client example's).
#![allow(dead_code)]

pub mod args;
#[cfg(target_os = "linux")]
pub mod epoll;

/// Prints the adapters' warnings (a peer dropped for not reading, accept
/// errors) on stderr.
pub fn log_to_stderr() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Info
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                eprintln!("{}: {}", r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

use std::{ops::ControlFlow, time::Instant};

use bytes::BufMut as _;
use smol::{
    Timer,
    future::{self, FutureExt as _},
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wsio::{
    machine::drain,
    ws::{Connection, Event, Transmit},
};

enum Wake<T> {
    Read(std::io::Result<usize>),
    Timer,
    Command(T),
}

/// Runs `conn` on `stream` until the machine says to close the socket.
/// `on_event` may issue commands on the connection.
pub async fn drive(
    stream: TcpStream,
    conn: Connection,
    on_event: impl FnMut(&mut Connection, Event),
) -> std::io::Result<()> {
    let (_keep, never) = smol::channel::bounded::<()>(1);
    drive_with(stream, conn, never, |_, ()| {}, on_event).await
}

/// Like [`drive`], also waking for commands from another task or thread.
pub async fn drive_with<T>(
    mut stream: TcpStream,
    mut conn: Connection,
    commands: smol::channel::Receiver<T>,
    mut on_command: impl FnMut(&mut Connection, T),
    mut on_event: impl FnMut(&mut Connection, Event),
) -> std::io::Result<()> {
    // WSIO_INGEST=1 reads straight into the connection's buffer
    // (`input_buffer`/`commit_input`) instead of a buffer of our own; the
    // room is zero-filled first, since `AsyncRead` wants initialised bytes.
    let ingest = std::env::var_os("WSIO_INGEST").is_some_and(|v| v == "1");
    let mut buf = vec![0u8; if ingest { 0 } else { 64 * 1024 }];
    // The transmits of one drain, written once the machine is quiet.
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        drain(
            &mut conn,
            now,
            |_, t| {
                out.push(t);
                ControlFlow::Continue(())
            },
            &mut on_event,
        );
        for t in out.drain(..) {
            match t {
                Transmit::Data(b) => stream.write_all(&b).await?,
                Transmit::Close => return close(stream).await,
            }
        }
        let timer = match conn.poll_timeout() {
            Some(t) => Timer::at(t),
            None => Timer::never(),
        };
        let mut room = if ingest {
            Some(conn.input_buffer(64 * 1024))
        } else {
            None
        };
        let (read_into, start) = match &mut room {
            Some(room) => {
                let n = room.remaining_mut();
                let b = room.get_mut();
                let start = b.len();
                b.resize(start + n, 0);
                (&mut b[start..], start)
            }
            None => (&mut buf[..], 0),
        };
        let wake = async { Wake::Read(stream.read(read_into).await) }
            .or(async {
                timer.await;
                Wake::Timer
            })
            .or(async {
                match commands.recv().await {
                    Ok(c) => Wake::Command(c),
                    Err(_) => future::pending().await,
                }
            })
            .await;
        if let Some(room) = &mut room {
            let got = match wake {
                Wake::Read(Ok(n)) => n,
                _ => 0,
            };
            room.get_mut().truncate(start + got);
        }
        let now = Instant::now();
        match wake {
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => conn.handle_eof(now),
            Wake::Read(Ok(_)) if ingest => conn.commit_input(now),
            Wake::Read(Ok(n)) => conn.handle_input(now, &buf[..n]),
            Wake::Timer => conn.handle_timeout(now),
            Wake::Command(c) => on_command(&mut conn, c),
        }
    }
}

/// Shuts the write side, then drains input briefly, so that our last bytes
/// are read by the peer instead of being lost to a reset.
pub async fn close(mut stream: TcpStream) -> std::io::Result<()> {
    stream.flush().await?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    future::or(drain, async {
        Timer::after(std::time::Duration::from_secs(1)).await;
    })
    .await;
    Ok(())
}

/// The value following `name` in the command line, parsed.
pub fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// Whether the flag `name` is present.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}
