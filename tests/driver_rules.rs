//! The drivers' half of issue 19, on loopback, against every driver of the
//! `conformance` example (`--driver`): a peer that does not read is
//! dropped while others keep their answers and the server's memory stays
//! bounded; connections closed by their peers release their descriptors;
//! accept errors under a low descriptor limit do not end the listener.
//! Each test is bounded in count and time.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{raw::*, *};

#[cfg(not(target_os = "linux"))]
const DRIVERS: &[&str] = &["tokio", "axum", "smol", "blocking"];

/// A Socket.IO client on WebSocket, connected to `/`.
fn sio_socket(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    read_until(&mut s, b"\"pingInterval\"", Duration::from_secs(5));
    s.write_all(&text_frame("40")).unwrap();
    read_until(&mut s, b"40{\"sid\"", Duration::from_secs(5));
    s
}

/// Messages of the flood, and their size.
const FLOOD: usize = 20_000;
const MESSAGE: usize = 1000;
/// The most the server's memory may grow while one peer does not read
/// 20 MB of broadcasts (the bound is 1 MiB per connection, plus one
/// transmit, plus the allocator's slack).
const RSS_BOUND_KIB: u64 = 16 * 1024;

fn slow_reader(driver: &str) {
    let server = server(driver);
    let pid = server.child.id();
    let port = server.port;
    // The peer that never reads after connecting (a Socket.IO client, so the
    // flood's broadcasts are its too).
    let mut idle = sio_socket(port);
    // A healthy client of the same server, on the echo path: a message
    // every 100 ms, each answer timed.
    let mut healthy = eio_socket(port);
    let mut flooder = sio_socket(port);
    let baseline = rss_kib(pid);

    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(rss_kib(pid) as usize, Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // The flooder reads what comes back to it (its own broadcasts).
    let mut flood_reader = flooder.try_clone().unwrap();
    let drained = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        flood_reader
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut total = 0usize;
        while total < FLOOD * MESSAGE {
            match flood_reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    });
    let writer = std::thread::spawn(move || {
        let body = "x".repeat(MESSAGE - 20);
        let frame = text_frame(&format!("42[\"emit-all\",\"{body}\"]"));
        for _ in 0..FLOOD {
            if flooder.write_all(&frame).is_err() {
                break;
            }
        }
        flooder
    });
    // The healthy client's answers, during the flood.
    let mut worst = Duration::ZERO;
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let mut healthy_reader = healthy.try_clone().unwrap();
    let answers = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut window = Vec::new();
        let mut rtts = Vec::new();
        healthy_reader
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        while let Ok(sent) = rx.recv() {
            loop {
                if let Some(i) = window.windows(10).position(|w: &[u8]| w == b"4are-you-t") {
                    window.drain(..i + 10);
                    rtts.push(sent.elapsed());
                    break;
                }
                match healthy_reader.read(&mut buf) {
                    Ok(0) | Err(_) => return rtts,
                    Ok(n) => {
                        window.extend_from_slice(&buf[..n]);
                        // Keep only a tail that could hold a split needle.
                        if window.len() > 1 << 16 {
                            let keep = window.split_off(window.len() - 64);
                            window = keep;
                        }
                    }
                }
            }
        }
        rtts
    });
    let started = Instant::now();
    // Until the flood has come back to the flooder: the whole time the
    // server spends on it.
    while !drained.is_finished() && started.elapsed() < Duration::from_secs(60) {
        let _ = tx.send(Instant::now());
        healthy.write_all(&text_frame("4are-you-there")).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(tx);
    let _flooder = writer.join().unwrap();
    let rtts = answers.join().unwrap();
    for r in &rtts {
        worst = worst.max(*r);
    }
    let _ = drained.join().unwrap();
    done.store(true, Ordering::Release);
    sampler.join().unwrap();
    let grown = (peak.load(Ordering::Acquire) as u64).saturating_sub(baseline);
    eprintln!(
        "{driver}: server RSS {baseline} KiB, peak +{grown} KiB; healthy client: {} answers, worst {worst:?}",
        rtts.len()
    );
    assert!(
        !rtts.is_empty(),
        "{driver}: the healthy client got no answer"
    );
    assert!(
        worst < Duration::from_secs(1),
        "{driver}: the healthy client waited {worst:?} for an answer"
    );
    assert!(
        grown < RSS_BOUND_KIB,
        "{driver}: server memory grew by {grown} KiB while a peer did not read"
    );
    // The idle peer was dropped: reading it now ends (its socket's
    // backlog, then the end), short of the whole flood.
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut total = 0usize;
    let ended = loop {
        match idle.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    assert!(ended, "{driver}: the peer that did not read is still held");
    assert!(
        total < FLOOD * MESSAGE,
        "{driver}: the non-reader got everything ({total} bytes): it was never dropped"
    );
}

/// Connections the peers closed (keep-alive HTTP after an answer, and
/// WebSocket sessions) give their descriptors back at once.
fn peer_closed_connections_release_their_fds(driver: &str) {
    let server = server(driver);
    let (pid, port) = (server.child.id(), server.port);
    // Let the server settle (threads, runtime) before counting.
    drop(sio_socket(port));
    std::thread::sleep(Duration::from_millis(300));
    let before = fd_count(pid);
    for _ in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_until(&mut s, b"\"pingInterval\"", Duration::from_secs(5));
        // Keep-alive: the server keeps the connection until we close it.
    }
    for _ in 0..100 {
        drop(sio_socket(port));
    }
    let until = Instant::now() + Duration::from_secs(5);
    let mut now = fd_count(pid);
    while now > before + 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        now = fd_count(pid);
    }
    eprintln!("{driver}: {before} descriptors before 200 peer-closed connections, {now} after");
    assert!(
        now <= before + 2,
        "{driver}: {before} descriptors before, {now} after 200 connections closed by their peers"
    );
}

/// With a descriptor limit of 64 and 100 clients holding connections open,
/// accepting fails; the failure is logged once per burst, and once the
/// clients go the listener serves again.
fn accept_errors_do_not_end_the_listener(driver: &str) {
    let exe = example("conformance");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" --port 0 --driver \"$1\" --ping-interval 25000 --ping-timeout 20000")
        .arg(exe.get_program())
        .arg(driver);
    let (server, stderr) = spawn_ready_logged("conformance (ulimit -n 64)", c);
    let port = server.port;
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(s) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
        {
            held.push(s);
        }
    }
    // Give the server time to hit the limit and back off a few times.
    std::thread::sleep(Duration::from_millis(1500));
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    // Served again.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .is_ok()
                && {
                    let mut out = Vec::new();
                    let _ = s.read_to_end(&mut out);
                    out.starts_with(b"HTTP/1.1 200")
                }
        });
        if ok {
            break;
        }
        assert!(
            Instant::now() < until,
            "{driver}: the listener no longer serves after accept errors"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines: Vec<String> = stderr.try_iter().collect();
    let failures = lines.iter().filter(|l| l.contains("accept failed")).count();
    eprintln!("{driver}: {failures} accept-failure line(s) logged");
    assert!(
        failures <= 3,
        "{driver}: accept errors logged {failures} times, not once per burst:\n{}",
        lines.join("\n")
    );
}

macro_rules! per_driver {
    ($($name:ident: $driver:literal),* $(,)?) => {$(
        mod $name {
            #[test]
            fn slow_reader_is_dropped_others_keep_their_answers() {
                super::slow_reader($driver);
            }
            #[test]
            fn peer_closed_connections_release_their_fds() {
                super::peer_closed_connections_release_their_fds($driver);
            }
            #[test]
            fn accept_errors_do_not_end_the_listener() {
                super::accept_errors_do_not_end_the_listener($driver);
            }
        }
    )*};
}

#[cfg(target_os = "linux")]
per_driver!(epoll: "epoll");
per_driver!(tokio: "tokio", axum: "axum", smol: "smol", blocking: "blocking");

#[test]
fn every_driver_is_covered() {
    assert_eq!(DRIVERS.len(), if cfg!(target_os = "linux") { 5 } else { 4 });
}
