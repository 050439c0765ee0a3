//! Attacks of issue 19 that `driver_rules.rs` does not make, on loopback,
//! against every driver of the `conformance` example and against the chat
//! example: a WebSocket peer that sends pings and never reads its pongs;
//! heads sent a byte a second (slowloris); a request with both
//! `Content-Length` and `Transfer-Encoding`; keep-alive and Socket.IO
//! connections closed by their peers (the chat once kept every one of
//! their descriptors). Under each, a healthy client keeps getting answers
//! within a second and the server's memory stays under a stated bound.
//! Each test is bounded in count and time.

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{raw::*, *};

#[cfg(not(target_os = "linux"))]
const DRIVERS: &[&str] = &["tokio", "axum", "smol", "blocking"];

/// Reads until the peer ends the connection, at most `limit`; what was
/// read, or `None` if it was still open at the limit.
fn read_to_end(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let until = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(got),
        }
    }
}

/// A healthy Engine.IO client echoing once every 100 ms on its own thread
/// until `stop`; its slowest answer.
fn healthy(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    let mut s = eio_socket(port);
    std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let text = format!("4healthy-{i}");
            let started = Instant::now();
            s.write_all(&frame(1, text.as_bytes())).unwrap();
            let got = read_until(&mut s, text.as_bytes(), Duration::from_secs(5));
            // The server's heartbeat ("2") is answered, as a client would.
            if got.windows(3).any(|w| w == [0x81, 0x01, b'2']) {
                s.write_all(&frame(1, b"3")).unwrap();
            }
            worst = worst.max(started.elapsed());
            i += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        worst
    })
}

/// The most the server's memory may grow under one attack: the bound on
/// what waits for one peer is 1 MiB, plus the allocator's slack.
const RSS_BOUND_KIB: u64 = 16 * 1024;

/// A peer sends 64 MB of WebSocket pings and never reads: its pongs can
/// pile up only to the connection's bound, after which it is no longer
/// read from or is dropped; the server's memory stays bounded and a
/// healthy client's echoes keep coming within a second.
fn ping_flood(driver: &str) {
    let server = server(driver);
    let (pid, port) = (server.child.id(), server.port);
    let mut flood = eio_socket(port);
    let stop = Arc::new(AtomicBool::new(false));
    let good = healthy(port, stop.clone());
    let base = rss_kib(pid);
    let ping = frame(9, &[b'p'; 120]).repeat(512);
    flood
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (mut sent, mut peak) = (0usize, base);
    let started = Instant::now();
    while sent < 64 << 20 && started.elapsed() < Duration::from_secs(20) {
        match flood.write(&ping) {
            Ok(n) => sent += n,
            // The server stopped reading (its pongs have nowhere to go) or
            // dropped us: either way the attack is over.
            Err(_) => break,
        }
        peak = peak.max(rss_kib(pid));
    }
    std::thread::sleep(Duration::from_millis(500));
    peak = peak.max(rss_kib(pid));
    stop.store(true, Ordering::Relaxed);
    let worst = good.join().expect("the healthy client failed");
    eprintln!(
        "{driver}: {} MB of pings written, RSS {base} -> peak {peak} KiB, healthy worst {worst:?}",
        sent >> 20
    );
    assert!(
        peak.saturating_sub(base) < RSS_BOUND_KIB,
        "{driver}: RSS grew {} KiB under a ping flood",
        peak - base
    );
    assert!(
        worst < Duration::from_secs(1),
        "{driver}: a healthy echo took {worst:?}"
    );
}

/// Heads sent a byte a second are answered 408 and closed at the head
/// timeout (30 s by default), and hold nothing more meanwhile.
fn slowloris(driver: &str) {
    const CONNS: usize = 50;
    let server = server(driver);
    let (pid, port) = (server.child.id(), server.port);
    let stop = Arc::new(AtomicBool::new(false));
    let good = healthy(port, stop.clone());
    let head = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut slow: Vec<TcpStream> = (0..CONNS)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let base = rss_kib(pid);
    let started = Instant::now();
    let mut ended = vec![None; CONNS];
    let mut i = 0;
    while ended.iter().any(Option::is_none) && started.elapsed() < Duration::from_secs(50) {
        for (s, end) in slow.iter_mut().zip(ended.iter_mut()) {
            if end.is_some() {
                continue;
            }
            let byte = [head.get(i).copied().unwrap_or(b'a')];
            if s.write_all(&byte).is_err() {
                *end = Some(started.elapsed());
                continue;
            }
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(_) => *end = Some(started.elapsed()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *end = Some(started.elapsed()),
            }
            s.set_nonblocking(false).unwrap();
        }
        i += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let grew = rss_kib(pid).saturating_sub(base);
    stop.store(true, Ordering::Relaxed);
    let worst = good.join().expect("the healthy client failed");
    let held = ended.iter().flatten().max().copied();
    eprintln!("{driver}: slowloris ended by {held:?}, RSS +{grew} KiB, healthy worst {worst:?}");
    assert!(
        ended.iter().all(Option::is_some),
        "{driver}: {} of {CONNS} slow heads still held after 50 s",
        ended.iter().filter(|e| e.is_none()).count()
    );
    assert!(
        ended
            .iter()
            .flatten()
            .all(|t| *t >= Duration::from_secs(25)),
        "{driver}: a slow head was cut before the head timeout: {ended:?}"
    );
    assert!(grew < RSS_BOUND_KIB, "{driver}: RSS grew {grew} KiB");
    assert!(
        worst < Duration::from_secs(1),
        "{driver}: a healthy echo took {worst:?}"
    );
}

/// RFC 9112 section 6.1: a request with both `Content-Length` and
/// `Transfer-Encoding` is answered (or refused), then its connection is
/// closed, whatever follows it on the connection.
fn content_length_and_chunked(driver: &str) {
    let server = server(driver);
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let req = "POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\
        Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
        GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let got = read_to_end(&mut s, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{driver}: the connection stayed open"));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 4"), "{driver}: {text:?}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "{driver}: the request after it was served: {text:?}"
    );
}

macro_rules! per_driver {
    ($($name:ident),+) => {
        mod each_driver {
            $(
                #[test]
                fn $name() {
                    for d in super::DRIVERS {
                        super::$name(d);
                    }
                }
            )+
        }
    };
}

per_driver!(ping_flood, content_length_and_chunked);

/// The slow heads take the head timeout; the drivers are attacked at once.
#[test]
fn slowloris_on_every_driver() {
    let threads: Vec<_> = DRIVERS
        .iter()
        .map(|d| std::thread::spawn(move || slowloris(d)))
        .collect();
    for t in threads {
        t.join().expect("slowloris");
    }
}

/// The chat example gives back the descriptor of every connection its
/// peer closes: keep-alive page requests and Socket.IO sessions.
#[test]
fn chat_releases_the_descriptors_of_closed_connections() {
    let mut c = example("chat");
    c.args(["--port", "0"]);
    let chat = spawn_ready("chat", c);
    let (pid, port) = (chat.child.id(), chat.port);
    let base = fd_count(pid);
    for _ in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_until(&mut s, b"</html>", Duration::from_secs(5));
    }
    for _ in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head =
            format!("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n{UPGRADE}");
        s.write_all(head.as_bytes()).unwrap();
        read_until(&mut s, b"\"pingInterval\"", Duration::from_secs(5));
        s.write_all(&frame(1, b"40{\"name\":\"x\"}")).unwrap();
        read_until(&mut s, b"40{", Duration::from_secs(5));
    }
    let until = Instant::now() + Duration::from_secs(10);
    let mut now = fd_count(pid);
    while now > base + 5 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        now = fd_count(pid);
    }
    assert!(
        now <= base + 5,
        "chat: {now} descriptors open after 300 closed connections (was {base})"
    );
}

/// The other side of a bound: a peer that reads, however much it is sent,
/// gets all of it. A 16 MiB echo fills the socket many times over; each
/// time the socket drains the held output must come out (once, a blocked
/// connection lost its wake-up and was dropped at its send timeout).
#[test]
fn a_reader_gets_a_16_mib_echo_through_a_full_socket() {
    let mut c = example("ws_echo");
    c.args(["--port", "0", "--no-deflate"]);
    let echo = spawn_ready("ws_echo", c);
    let mut s = TcpStream::connect(("127.0.0.1", echo.port)).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\n{UPGRADE}").as_bytes())
        .unwrap();
    let head = read_until(&mut s, b"\r\n\r\n", Duration::from_secs(5));
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    const LEN: usize = 16 << 20;
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&(LEN as u64).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.resize(f.len() + LEN, b'x');
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || s.write_all(&f).unwrap())
    };
    let started = Instant::now();
    let (mut got, mut buf) = (0usize, vec![0u8; 1 << 16]);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while got < LEN + 10 {
        match s.read(&mut buf) {
            Ok(0) => panic!("closed after {got} bytes of the echo"),
            // A reader a little slower than the writer: the socket fills
            // and drains again and again.
            Ok(n) => {
                got += n;
                std::thread::sleep(Duration::from_micros(500));
            }
            Err(e) => panic!(
                "after {got} bytes of the echo, {:?}: {e}",
                started.elapsed()
            ),
        }
    }
    writer.join().unwrap();
    assert_eq!(got, LEN + 10);
}
