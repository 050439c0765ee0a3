//! The floor of `scripts/bench-e2e.sh`: the least a server can do to pass
//! the load generator's checks, on the same epoll loop as the
//! `conformance` example's `epoll` driver (`examples/common/epoll.rs`,
//! compiled in unchanged: same syscalls, same write batching, same
//! backpressure). What separates wsio from this row is its HTTP parser and
//! its Engine.IO/Socket.IO machine.
//!
//! What it does, and no more: the WebSocket upgrade (the request's
//! `Sec-WebSocket-Key` found by a byte search, the rest of the head
//! ignored), then precomputed Engine.IO/Socket.IO frames: the open packet
//! (one sid for everyone), `40{"sid"}` and `auth` for the client's `40`,
//! `message-back` around each `message`'s argument (unmasked straight into
//! the answer), `all` around each `emit-all`'s argument written to every
//! socket that joined, a ping to every connection each 25 s, close and
//! pong frames. No JSON is parsed, nothing is validated beyond the frame
//! headers, pongs are not timed.
//!
//! `floor-peer --port PORT` prints `READY <port>` once listening on
//! 127.0.0.1.

#[allow(dead_code)]
#[path = "../../../../examples/common/epoll.rs"]
mod epoll;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::{BufMut as _, Bytes, BytesMut};
use epoll::{Conns, Handler, IdMap, Io};
use wsio::ws::{
    handshake::accept_key,
    mask::{apply_mask, extend_masked},
};

const PING_INTERVAL: Duration = Duration::from_millis(25_000);
/// What a full socket may leave held before its connection is dropped (the
/// machine's `max_send_queue`).
const MAX_HELD: usize = 1 << 20;
/// The largest frame accepted (the conformance server's `maxPayload`).
const MAX_FRAME: usize = 1_000_000;
/// The largest request head accepted.
const MAX_HEAD: usize = 8192;

const OPEN: &[u8] = br#"0{"sid":"floorfloorfloorfloor","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
const CONNECTED: &[u8] = br#"40{"sid":"floorfloorfloorfloor"}"#;
const AUTH: &[u8] = br#"42["auth",{}]"#;
const MESSAGE: &[u8] = br#"42["message","#;
const MESSAGE_BACK: &[u8] = br#"42["message-back","#;
const EMIT_ALL: &[u8] = br#"42["emit-all","#;
const ALL: &[u8] = br#"42["all","#;
const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: ";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the upgrade request.
    Http,
    /// Upgraded; the open packet sent.
    Open,
    /// Joined `/`: broadcasts reach it.
    Joined,
}

struct Conn {
    phase: Phase,
    /// An incomplete request head or frame, until the rest arrives.
    partial: Vec<u8>,
    /// What a full socket did not take, oldest first.
    held: VecDeque<Bytes>,
    held_len: usize,
}

/// The frames every connection gets the same bytes of.
struct Frames {
    open: Bytes,
    connected: Bytes,
    auth: Bytes,
    ping: Bytes,
    pong: Bytes,
    close: Bytes,
}

struct Floor {
    conns: Conns,
    state: IdMap<u64, Conn>,
    frames: Frames,
    next_ping: Instant,
}

/// A server frame's header: final, unmasked, `len` bytes of payload.
fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(n) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(n);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

fn text_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    put_header(&mut out, 1, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// A text frame of `prefix` then the masked `rest`, unmasked on the way
/// (`offset`: where `rest` starts in the masked payload).
fn reframe(prefix: &[u8], rest: &[u8], mask: [u8; 4], offset: usize) -> Bytes {
    let len = prefix.len() + rest.len();
    let mut out = BytesMut::with_capacity(len + 10);
    put_header(&mut out, 1, len);
    out.put_slice(prefix);
    extend_masked(&mut out, rest, mask, offset);
    out.freeze()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of the `Sec-WebSocket-Key` header, by a byte search.
fn websocket_key(head: &[u8]) -> Option<&str> {
    const NAME: &[u8] = b"\r\nsec-websocket-key:";
    let at = head
        .windows(NAME.len())
        .position(|w| w.eq_ignore_ascii_case(NAME))?;
    let rest = head.get(at + NAME.len()..)?;
    let end = find(rest, b"\r\n").unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok().map(str::trim)
}

impl Floor {
    fn close(&mut self, key: u64) {
        self.state.remove(&key);
        self.conns.close(key);
    }

    fn data(&mut self, key: u64, bytes: &[u8]) {
        let Some(c) = self.state.get_mut(&key) else {
            return;
        };
        let mut input = std::mem::take(&mut c.partial);
        let used = if input.is_empty() {
            self.consume(key, bytes).map(|n| (n, bytes))
        } else {
            input.extend_from_slice(bytes);
            let n = self.consume(key, &input);
            n.map(|n| (n, &input[..]))
        };
        if let (Some((n, all)), Some(c)) = (used, self.state.get_mut(&key)) {
            c.partial = all[n..].to_vec();
        }
    }

    /// Handles what `input` holds; returns how much of it was used (the
    /// rest is incomplete), or `None` if the connection was closed.
    fn consume(&mut self, key: u64, input: &[u8]) -> Option<usize> {
        let mut pos = 0;
        let phase = self.state.get(&key)?.phase;
        if phase == Phase::Http {
            let Some(end) = find(input, b"\r\n\r\n") else {
                if input.len() > MAX_HEAD {
                    self.close(key);
                    return None;
                }
                return Some(0);
            };
            let Some(k) = websocket_key(&input[..end + 2]) else {
                self.close(key);
                return None;
            };
            let accept = accept_key(k);
            let mut out = BytesMut::with_capacity(SWITCHING.len() + accept.len() + 4);
            out.put_slice(SWITCHING);
            out.put_slice(accept.as_bytes());
            out.put_slice(b"\r\n\r\n");
            self.conns.write(key, out.freeze());
            self.conns.write(key, self.frames.open.clone());
            self.state.get_mut(&key)?.phase = Phase::Open;
            pos = end + 4;
        }
        loop {
            let rest = &input[pos..];
            let [b0, b1, ..] = *rest else { break };
            if b1 & 0x80 == 0 {
                // A client's frames are masked.
                self.close(key);
                return None;
            }
            let (len, header) = match b1 & 0x7f {
                126 => match rest.get(2..4) {
                    Some(b) => (usize::from(u16::from_be_bytes([b[0], b[1]])), 4),
                    None => break,
                },
                127 => match rest.get(2..10).and_then(|b| b.try_into().ok()) {
                    Some(b) => (
                        usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX),
                        10,
                    ),
                    None => break,
                },
                n => (usize::from(n), 2),
            };
            if len > MAX_FRAME {
                self.close(key);
                return None;
            }
            let Some(frame) = rest.get(..header + 4 + len) else {
                break;
            };
            let mask = [
                frame[header],
                frame[header + 1],
                frame[header + 2],
                frame[header + 3],
            ];
            let payload = &frame[header + 4..];
            pos += frame.len();
            match (b0 & 0x80 != 0, b0 & 0x0f) {
                (true, 1) => self.text(key, payload, mask)?,
                (_, 8) => {
                    self.conns.write(key, self.frames.close.clone());
                    self.close(key);
                    return None;
                }
                (true, 9) => {
                    let mut out = BytesMut::with_capacity(payload.len() + 2);
                    put_header(&mut out, 10, payload.len());
                    extend_masked(&mut out, payload, mask, 0);
                    self.conns.write(key, out.freeze());
                }
                (true, 10) => {}
                // Fragments and binary frames: not what the load generator
                // sends.
                _ => {
                    self.close(key);
                    return None;
                }
            }
        }
        Some(pos)
    }

    /// One Engine.IO packet (still masked).
    fn text(&mut self, key: u64, payload: &[u8], mask: [u8; 4]) -> Option<()> {
        let mut head = [0u8; 16];
        let n = payload.len().min(head.len());
        head[..n].copy_from_slice(&payload[..n]);
        apply_mask(&mut head[..n], mask, 0);
        let head = &head[..n];
        if head.starts_with(MESSAGE) {
            let out = reframe(MESSAGE_BACK, &payload[MESSAGE.len()..], mask, MESSAGE.len());
            self.conns.write(key, out);
        } else if head.starts_with(EMIT_ALL) {
            let out = reframe(ALL, &payload[EMIT_ALL.len()..], mask, EMIT_ALL.len());
            let Floor { conns, state, .. } = self;
            for (&k, c) in state.iter() {
                if c.phase == Phase::Joined {
                    conns.write(k, out.clone());
                }
            }
        } else if head == b"2" {
            self.conns.write(key, self.frames.pong.clone());
        } else if head.starts_with(b"40") {
            let c = self.state.get_mut(&key)?;
            if c.phase == Phase::Open {
                c.phase = Phase::Joined;
                self.conns.write(key, self.frames.connected.clone());
                self.conns.write(key, self.frames.auth.clone());
            }
        } else if head.starts_with(b"41") || head.starts_with(b"1") {
            self.close(key);
            return None;
        }
        Some(())
    }

    fn heartbeat(&mut self, now: Instant) {
        if now < self.next_ping {
            return;
        }
        self.next_ping = now + PING_INTERVAL;
        let Floor {
            conns,
            state,
            frames,
            ..
        } = self;
        for (&k, c) in state.iter() {
            if c.phase != Phase::Http {
                conns.write(k, frames.ping.clone());
            }
        }
    }
}

impl Handler for Floor {
    fn conns(&mut self) -> &mut Conns {
        &mut self.conns
    }

    fn handle(&mut self, io: Io<'_>) {
        match io {
            Io::Accepted(key, _) => {
                self.state.insert(
                    key,
                    Conn {
                        phase: Phase::Http,
                        partial: Vec::new(),
                        held: VecDeque::new(),
                        held_len: 0,
                    },
                );
            }
            Io::Data(key, bytes) => self.data(key, bytes),
            Io::Eof(key) => self.close(key),
            Io::Timeout => self.heartbeat(Instant::now()),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        Some(self.next_ping)
    }

    fn write_blocked(&mut self, rest: Vec<(u64, Bytes)>) {
        for (key, data) in rest {
            let Some(c) = self.state.get_mut(&key) else {
                continue;
            };
            c.held_len += data.len();
            c.held.push_back(data);
            if c.held_len > MAX_HELD {
                self.close(key);
            }
        }
    }

    fn writable(&mut self, key: u64) {
        let Some(c) = self.state.get_mut(&key) else {
            return;
        };
        c.held_len = 0;
        for b in std::mem::take(&mut c.held) {
            self.conns.write(key, b);
        }
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = epoll::bind(("127.0.0.1", port))?;
    println!("READY {}", listener.local_addr()?.port());
    let frames = Frames {
        open: text_frame(OPEN),
        connected: text_frame(CONNECTED),
        auth: text_frame(AUTH),
        ping: text_frame(b"2"),
        pong: text_frame(b"3"),
        close: Bytes::from_static(&[0x88, 0x02, 0x03, 0xe8]),
    };
    epoll::serve(
        listener,
        Floor {
            conns: Conns::new(),
            state: IdMap::default(),
            frames,
            next_ping: Instant::now() + PING_INTERVAL,
        },
    )
}
