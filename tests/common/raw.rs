//! Raw loopback clients for the driver tests (`driver_rules.rs`,
//! `hostile.rs`): hand-made requests and frames, and what the server
//! process holds (`/proc`).

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use super::{Proc, conformance_with};

/// Every driver of the `conformance` example.
#[cfg(target_os = "linux")]
pub const DRIVERS: &[&str] = &["epoll", "tokio", "axum", "smol", "blocking"];

pub const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked client frame (mask key 0: the payload goes as is).
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![0x80 | opcode];
    if len < 126 {
        f.push(0x80 | len as u8);
    } else {
        assert!(len <= usize::from(u16::MAX));
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A masked client text frame.
pub fn text_frame(text: &str) -> Vec<u8> {
    frame(1, text.as_bytes())
}

/// Reads until `needle` has come, at most `limit`; what was read.
pub fn read_until(s: &mut TcpStream, needle: &[u8], limit: Duration) -> Vec<u8> {
    let until = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let left = until.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {:?} within {limit:?} (got {:?})",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&got)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "closed before {:?} (got {:?})",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

/// An Engine.IO client of the echo path on WebSocket.
pub fn eio_socket(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head =
        format!("GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n{UPGRADE}");
    s.write_all(head.as_bytes()).unwrap();
    read_until(&mut s, b"\"pingInterval\"", Duration::from_secs(5));
    s
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The `conformance` example on `driver`, with a 25 s / 20 s heartbeat.
pub fn server(driver: &str) -> Proc {
    conformance_with(&[
        "--driver",
        driver,
        "--ping-interval",
        "25000",
        "--ping-timeout",
        "20000",
    ])
}
