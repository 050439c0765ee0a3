//! WebSocket codec throughput: wsio against tungstenite, fastwebsockets and a
//! plain memcpy(+XOR) baseline, side by side in one criterion group per input.
//!
//! ```text
//! cargo bench --bench ws -- --warm-up-time 1 --measurement-time 3
//! WS_BENCH_CLOCK=cpu cargo bench --bench ws -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The second form measures this thread's CPU time instead of wall time
//! (groups `ws_cpu/...`): on a shared, busy machine, time spent descheduled
//! is then not charged to the benchmark.
//!
//! Inputs (payload bytes are the throughput unit everywhere):
//! * `text_16B_x1000`: 1,000 masked 16-byte text frames (valid, non-ASCII UTF-8);
//! * `binary_64KiB_x16`: 16 masked 64 KiB binary frames;
//! * `binary_1MiB_x1`: one masked 1 MiB binary frame.
//!
//! Every implementation does the same work:
//! * `decode/*`: a server reads the client's masked wire bytes from an
//!   in-memory socket that hands out at most 64 KiB per read (the copy out of
//!   this "socket" is the kernel's copy on a real one), unmasks, validates text
//!   as UTF-8, and yields every message, which is passed to `black_box`.
//!   Connections are reused across iterations (steady state); each iteration
//!   rewinds the socket.
//! * `encode_server/*`: unmasked frames for the same payloads, handed to a
//!   null sink (every byte is passed to `black_box`, nothing is copied by the
//!   sink, so zero-copy designs are not charged for a copy they do not make).
//! * `encode_client/*`: the same, masked (copy + XOR for every implementation).
//! * `baseline_*`: what any implementation must at least do: memcpy the input
//!   (and XOR it with the key when masking is involved), as two passes;
//!   `decode/baseline_fused_copy_xor` does both in one pass (a lower bound a
//!   decoder that unmasks while copying could approach);
//!   `decode/baseline_reads_unmask` is the floor of a decoder whose socket
//!   reads land where its messages will live: the 64 KiB reads into a fresh
//!   buffer, each unmasked in place as it arrives, and nothing else (a
//!   floor for the single 1 MiB frame; smaller frames can beat it by
//!   reusing dropped messages' memory).
//!
//! Decoders: `wsio_handle_input` is a driver reading into a stack buffer and
//! calling `Connection::handle_input`; `wsio_handle_input_bytes` reads into
//! its own `BytesMut` and hands each read over with `handle_input_bytes`;
//! `wsio_input_buffer` reads straight into the connection's buffer
//! (`input_buffer`, at most the room it offers, then `commit_input`); all
//! drain `poll_event` after every read. `wsio_input_buffer_ref` is the last
//! with `poll_event_ref`, whose messages are lent (read in place, valid
//! until the next call) rather than handed over, as fastwebsockets lends
//! its frames. `wsio_read_from` reads from the socket as a `std::io::Read`
//! (as tungstenite does) with `read_from`, straight into the connection's
//! buffer, then `commit_input`; `wsio_input_buffer_zeroed` is what such a
//! driver had to do before `read_from`: zero-fill the room `input_buffer`
//! offers, then read into it. tungstenite uses
//! `WebSocket::from_raw_socket` (role server) and `read`; fastwebsockets
//! uses `WebSocket::after_handshake` (role server, default features, so
//! simdutf8) and `read_frame`, its futures polled with a no-op waker (the
//! in-memory stream never blocks; no runtime). Encoders: wsio `send` then
//! `poll_transmit`; tungstenite `write` then one `flush`; fastwebsockets
//! `write_frame` with borrowed payloads. `wsio_vectored` drains with
//! `poll_transmit_vectored` instead, writing each frame's header and
//! payload with one `write_vectored` (as fastwebsockets does for large
//! payloads). `wsio_slices` sends borrowed payloads with `send_slices`
//! (copied into the connection's output buffer), as fastwebsockets borrows
//! them, instead of cloning an owned `Message` per send.
//! `encode_server/wsio_direct` takes each frame's header from `send_direct`
//! and writes it with the borrowed payload in one `write_vectored`, as
//! fastwebsockets does. `encode_client/*_owned` give each implementation
//! fresh payloads that only it holds (made outside the timing, one set per
//! iteration): wsio (`send`, `poll_transmit_vectored`) and fastwebsockets
//! (`Payload::Owned`) mask them in place, tungstenite copies them.
//!
//! `{prefix}_socket/*` decodes the two large inputs from a real socket
//! instead: a Unix socket pair whose writer thread sends the wire over and
//! over, read by wsio (`read_from`, blocking), tungstenite (blocking) and
//! fastwebsockets (tokio's `UnixStream`, current-thread runtime). With
//! `WS_BENCH_CLOCK=cpu` each is charged its reading thread's CPU time only:
//! system calls and the kernel's copy, not the writer or time spent waiting.
//!
//! Before timing, every implementation is run once (wsio's encoders twice
//! on one connection, so reused buffers are checked too) and checked: message
//! count, kinds and bytes for decoders; for encoders the wire bytes are
//! re-parsed by an independent decoder in this file and compared.

use std::{
    cell::{Cell, RefCell},
    hint::black_box,
    io,
    os::unix::net::UnixStream,
    rc::Rc,
    time::Instant,
};

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "common/mem_io.rs"]
mod mem_io;

use bytes::{BufMut, Bytes, BytesMut};
use cpu_time::CpuTime;
use criterion::{BatchSize, Criterion, Throughput, measurement::Measurement};
use mem_io::block_on;
use wsio::{
    entropy::SeededEntropy,
    machine,
    ws::{self, Config, Connection, Event, Transmit, VectoredTransmit},
};

/// What one socket read hands out at most.
const READ_CHUNK: usize = 64 * 1024;

// ----- inputs ---------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Text,
    Binary,
}

impl Kind {
    fn data_kind(self) -> ws::DataKind {
        match self {
            Kind::Text => ws::DataKind::Text,
            Kind::Binary => ws::DataKind::Binary,
        }
    }
}

struct Input {
    name: &'static str,
    kind: Kind,
    payloads: Vec<Bytes>,
    /// The client's masked frames, as the server reads them.
    wire: &'static [u8],
    /// Per frame: payload offset in `wire`, payload length, masking key.
    frames: Vec<(usize, usize, [u8; 4])>,
    payload_bytes: usize,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Appends one final frame (masked when `key` is some). Independent of every
/// implementation under test.
fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> usize {
    out.push(0x80 | opcode);
    let m = if key.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xFFFF {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(k) = key {
        out.extend_from_slice(&k);
    }
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = key {
        xor_mask(&mut out[start..], k);
    }
    start
}

/// Parses a stream of final text/binary frames (masked or not) and unmasks:
/// the independent checker for every encoder's output.
fn parse_frames(mut buf: &[u8], masked: bool) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        assert!(buf.len() >= 2, "truncated header");
        assert_eq!(buf[0] & 0xF0, 0x80, "FIN set, RSV clear");
        let opcode = buf[0] & 0x0F;
        assert_eq!(buf[1] & 0x80 != 0, masked, "mask bit");
        let (len, mut pos) = match buf[1] & 0x7F {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let key = masked.then(|| {
            let k: [u8; 4] = buf[pos..pos + 4].try_into().unwrap();
            pos += 4;
            k
        });
        let mut payload = buf[pos..pos + len].to_vec();
        if let Some(k) = key {
            xor_mask(&mut payload, k);
        }
        out.push((opcode, payload));
        buf = &buf[pos + len..];
    }
    out
}

/// The baseline's XOR: eight bytes at a time, which LLVM vectorizes.
#[inline]
fn xor_mask(buf: &mut [u8], key: [u8; 4]) {
    let k = u64::from(u32::from_ne_bytes(key)) * 0x1_0000_0001;
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ k;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

fn make_input(name: &'static str, kind: Kind, count: usize, size: usize, seed: u64) -> Input {
    let mut rng = Rng(seed);
    let payloads: Vec<Bytes> = (0..count)
        .map(|i| match kind {
            Kind::Text => {
                assert_eq!(size, 16);
                let s = format!("héllo wörld {:02}", i % 100);
                assert_eq!(s.len(), 16);
                Bytes::from(s)
            }
            Kind::Binary => {
                let mut v = Vec::with_capacity(size + 8);
                while v.len() < size {
                    v.extend_from_slice(&rng.next().to_le_bytes());
                }
                v.truncate(size);
                Bytes::from(v)
            }
        })
        .collect();
    let opcode = if kind == Kind::Text { 1 } else { 2 };
    let mut wire = Vec::new();
    let mut frames = Vec::new();
    for p in &payloads {
        let key = (rng.next() as u32).to_le_bytes();
        let off = encode_frame(&mut wire, opcode, p, Some(key));
        frames.push((off, p.len(), key));
    }
    Input {
        name,
        kind,
        payload_bytes: payloads.iter().map(|p| p.len()).sum(),
        payloads,
        wire: Vec::leak(wire),
        frames,
    }
}

// ----- an in-memory socket --------------------------------------------------

/// Reads replay `data` in reads of at most [`READ_CHUNK`] bytes (rewind with
/// the shared `pos`); writes go to a null sink, or are captured for checking.
struct MemStream {
    data: &'static [u8],
    pos: Rc<Cell<usize>>,
    written: Rc<Cell<usize>>,
    capture: Option<Rc<RefCell<Vec<u8>>>>,
}

impl MemStream {
    fn new(data: &'static [u8]) -> Self {
        MemStream {
            data,
            pos: Rc::default(),
            written: Rc::default(),
            capture: None,
        }
    }

    fn capturing(mut self) -> (Self, Rc<RefCell<Vec<u8>>>) {
        let c = Rc::<RefCell<Vec<u8>>>::default();
        self.capture = Some(c.clone());
        (self, c)
    }

    fn next_bytes(&mut self, max: usize) -> &'static [u8] {
        let pos = self.pos.get();
        let n = (self.data.len() - pos).min(max).min(READ_CHUNK);
        self.pos.set(pos + n);
        &self.data[pos..pos + n]
    }

    fn sink(&mut self, b: &[u8]) {
        black_box(b);
        self.written.set(self.written.get() + b.len());
        if let Some(c) = &self.capture {
            c.borrow_mut().extend_from_slice(b);
        }
    }
}

mem_io::mem_io!(MemStream);

// ----- decoders -------------------------------------------------------------

/// What a decoder yields, normalised for checking.
type Got = (Kind, Bytes);

fn wsio_msg(m: ws::Message) -> Got {
    match m {
        ws::Message::Text(t) => (Kind::Text, t.into_bytes()),
        ws::Message::Binary(b) => (Kind::Binary, b),
    }
}

#[inline]
fn wsio_drain(conn: &mut Connection, now: Instant, f: &mut impl FnMut(ws::Message)) {
    machine::drain(
        conn,
        now,
        |_, t| panic!("unexpected transmit {t:?}"),
        |_, ev| match ev {
            Event::Message(m) => f(m),
            other => panic!("unexpected event {other:?}"),
        },
    );
}

/// A driver reading into a stack buffer and feeding `handle_input` (copies
/// into the connection's buffer).
fn wsio_decode(
    conn: &mut Connection,
    sock: &mut MemStream,
    buf: &mut [u8],
    now: Instant,
    mut f: impl FnMut(ws::Message),
) {
    sock.pos.set(0);
    // The in-memory socket reports WouldBlock once it is drained.
    while let Ok(n) = io::Read::read(sock, buf) {
        conn.handle_input(now, &buf[..n]);
        wsio_drain(conn, now, &mut f);
    }
}

/// A driver reading into its own `BytesMut` and handing each read over with
/// `handle_input_bytes` (no copy when the connection's buffer is empty).
fn wsio_decode_bytes(
    conn: &mut Connection,
    sock: &mut MemStream,
    rd: &mut BytesMut,
    now: Instant,
    mut f: impl FnMut(ws::Message),
) {
    sock.pos.set(0);
    loop {
        let c = sock.next_bytes(READ_CHUNK);
        if c.is_empty() {
            break;
        }
        rd.reserve(READ_CHUNK);
        rd.put_slice(c); // the socket read
        conn.handle_input_bytes(now, rd.split());
        wsio_drain(conn, now, &mut f);
    }
}

/// A driver reading straight into the connection's buffer
/// (`input_buffer`, then `commit_input`): the one copy is the socket's.
/// `drain` takes the events after each read.
fn wsio_ingest(
    conn: &mut Connection,
    sock: &mut MemStream,
    now: Instant,
    mut drain: impl FnMut(&mut Connection),
) {
    sock.pos.set(0);
    loop {
        let mut room = conn.input_buffer(READ_CHUNK);
        let c = sock.next_bytes(room.remaining_mut());
        if c.is_empty() {
            break;
        }
        room.put_slice(c); // the socket read
        conn.commit_input(now);
        drain(conn);
    }
}

/// A driver reading from a `std::io::Read` straight into the connection's
/// buffer with `read_from`, then `commit_input`.
fn wsio_decode_read_from(
    conn: &mut Connection,
    sock: &mut MemStream,
    now: Instant,
    mut f: impl FnMut(ws::Message),
) {
    sock.pos.set(0);
    // The in-memory socket reports WouldBlock once it is drained.
    while let Ok(n) = conn.read_from(sock) {
        assert!(n > 0);
        conn.commit_input(now);
        wsio_drain(conn, now, &mut f);
    }
}

/// What a driver reading from a `std::io::Read` had to do before
/// `read_from`: zero-fill the room `input_buffer` offers (through
/// `get_mut`), read into it, and cut it back to what was read.
fn wsio_decode_input_buffer_zeroed(
    conn: &mut Connection,
    sock: &mut MemStream,
    now: Instant,
    mut f: impl FnMut(ws::Message),
) {
    sock.pos.set(0);
    loop {
        let mut room = conn.input_buffer(READ_CHUNK);
        let n = room.remaining_mut();
        let b = room.get_mut();
        let start = b.len();
        b.resize(start + n, 0);
        let got = io::Read::read(sock, &mut b[start..]).unwrap_or(0);
        b.truncate(start + got);
        if got == 0 {
            break;
        }
        conn.commit_input(now);
        wsio_drain(conn, now, &mut f);
    }
}

/// `wsio_ingest`, messages handed over by `poll_event`.
fn wsio_decode_ingest(
    conn: &mut Connection,
    sock: &mut MemStream,
    now: Instant,
    mut f: impl FnMut(ws::Message),
) {
    wsio_ingest(conn, sock, now, |conn| wsio_drain(conn, now, &mut f));
}

/// `wsio_ingest`, messages lent by `poll_event_ref` (read in place in the
/// input buffer) instead of handed over.
fn wsio_decode_ingest_ref(
    conn: &mut Connection,
    sock: &mut MemStream,
    now: Instant,
    mut f: impl FnMut(ws::MessageRef<'_>),
) {
    wsio_ingest(conn, sock, now, |conn| {
        while let Some(ev) = conn.poll_event_ref(now) {
            match ev {
                ws::EventRef::Message(m) => f(m),
                other => panic!("unexpected event {other:?}"),
            }
        }
    });
}

fn wsio_msg_ref(m: ws::MessageRef<'_>) -> Got {
    match m {
        ws::MessageRef::Text(t) => (Kind::Text, Bytes::copy_from_slice(t.as_bytes())),
        ws::MessageRef::Binary(b) => (Kind::Binary, Bytes::copy_from_slice(b)),
    }
}

fn tungstenite_msg(m: tungstenite::Message) -> Got {
    match m {
        tungstenite::Message::Text(t) => (Kind::Text, t.into()),
        tungstenite::Message::Binary(b) => (Kind::Binary, b),
        other => panic!("unexpected message {other:?}"),
    }
}

fn tungstenite_decode(
    ws: &mut tungstenite::WebSocket<MemStream>,
    count: usize,
    mut f: impl FnMut(tungstenite::Message),
) {
    ws.get_mut().pos.set(0);
    for _ in 0..count {
        f(ws.read().unwrap());
    }
}

fn fws_msg(fr: fastwebsockets::Frame<'_>) -> Got {
    assert!(fr.fin);
    let kind = match fr.opcode {
        fastwebsockets::OpCode::Text => Kind::Text,
        fastwebsockets::OpCode::Binary => Kind::Binary,
        other => panic!("unexpected opcode {other:?}"),
    };
    (kind, Bytes::copy_from_slice(&fr.payload))
}

fn fws_decode<'f>(
    ws: &mut fastwebsockets::WebSocket<MemStream>,
    pos: &Cell<usize>,
    count: usize,
    mut f: impl FnMut(fastwebsockets::Frame<'f>),
) {
    pos.set(0);
    for _ in 0..count {
        f(block_on(ws.read_frame()).unwrap());
    }
}

fn baseline_decode(input: &Input, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(input.wire);
    for &(off, len, key) in &input.frames {
        xor_mask(&mut buf[off..off + len], key);
    }
    black_box(&buf[..]);
}

/// The floor of a decoder whose socket reads land in the buffer its
/// messages will own (wsio's `input_buffer`): the same 64 KiB reads into a
/// fresh buffer, each unmasked where it landed right after it arrived, with
/// wsio's `apply_mask`, and nothing else (no headers parsed, no events).
/// For the 1 MiB frame that is what its message needs; smaller frames can
/// do better by reusing the memory of a message already dropped (as wsio
/// does), which keeps their working set in cache.
fn baseline_decode_reads(input: &Input) -> BytesMut {
    let mut buf = BytesMut::with_capacity(input.wire.len());
    let mut next = 0; // the first frame not yet wholly unmasked
    for read in input.wire.chunks(READ_CHUNK) {
        let start = buf.len();
        buf.put_slice(read); // the socket read
        let end = buf.len();
        for &(off, len, key) in &input.frames[next..] {
            if off >= end {
                break;
            }
            let (a, b) = (off.max(start), (off + len).min(end));
            if a < b {
                ws::mask::apply_mask(&mut buf[a..b], key, a - off);
            }
            if off + len > end {
                break;
            }
            next += 1;
        }
    }
    buf
}

/// The lower bound: unmask while copying, one pass instead of two. `buf`
/// keeps the input's length across iterations (a warm, reused read buffer).
fn baseline_decode_fused(input: &Input, buf: &mut [u8]) {
    let mut at = 0;
    for &(off, len, key) in &input.frames {
        buf[at..off].copy_from_slice(&input.wire[at..off]); // header
        copy_xor(&input.wire[off..off + len], key, &mut buf[off..off + len]);
        at = off + len;
    }
    black_box(&buf[..]);
}

/// `dst = src ^ key`, eight bytes at a time (phase 0 at `src[0]`).
#[inline]
fn copy_xor(src: &[u8], key: [u8; 4], dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len());
    let k = u64::from(u32::from_ne_bytes(key)) * 0x1_0000_0001;
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let v = u64::from_ne_bytes(s.try_into().unwrap()) ^ k;
        d.copy_from_slice(&v.to_ne_bytes());
    }
    let (d, s) = (d.into_remainder(), s.remainder());
    for (i, (d, s)) in d.iter_mut().zip(s).enumerate() {
        *d = s ^ key[i & 3];
    }
}

fn new_fws(sock: MemStream, role: fastwebsockets::Role) -> fastwebsockets::WebSocket<MemStream> {
    let mut ws = fastwebsockets::WebSocket::after_handshake(sock, role);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    ws.set_max_message_size(64 << 20);
    ws
}

fn check_decoded(input: &Input, who: &str, got: &[Got]) {
    assert_eq!(got.len(), input.payloads.len(), "{who}: message count");
    for (i, ((kind, bytes), want)) in got.iter().zip(&input.payloads).enumerate() {
        assert_eq!(*kind, input.kind, "{who}: kind of message {i}");
        assert!(bytes == want, "{who}: bytes of message {i}");
        if input.kind == Kind::Text {
            assert!(std::str::from_utf8(bytes).is_ok());
        }
    }
}

// ----- encoders -------------------------------------------------------------

/// Writes everything `poll_transmit` gives to the sink: the encoder
/// alone, as the other libraries' are measured (a driver would run
/// `machine::drain`, which also polls the events).
fn drain_transmits(conn: &mut Connection, now: Instant, sock: &mut MemStream) {
    while let Some(t) = conn.poll_transmit(now) {
        match t {
            Transmit::Data(b) => sock.sink(&b),
            Transmit::Close => panic!("closed"),
        }
    }
}

fn wsio_encode(conn: &mut Connection, now: Instant, msgs: &[ws::Message], sock: &mut MemStream) {
    for m in msgs {
        conn.send(m.clone()).unwrap();
    }
    drain_transmits(conn, now, sock);
}

/// The same, draining with `poll_transmit_vectored`: each frame's inline
/// header and its payload go out in one vectored write.
fn wsio_encode_vectored(
    conn: &mut Connection,
    now: Instant,
    msgs: &[ws::Message],
    sock: &mut MemStream,
) {
    for m in msgs {
        conn.send(m.clone()).unwrap();
    }
    drain_vectored(conn, now, sock);
}

/// `wsio_encode_vectored` with messages the connection may consume (each
/// holds the only handle to its bytes): a client masks them in place.
fn wsio_encode_owned(
    conn: &mut Connection,
    now: Instant,
    msgs: Vec<ws::Message>,
    sock: &mut MemStream,
) {
    for m in msgs {
        conn.send(m).unwrap();
    }
    drain_vectored(conn, now, sock);
}

fn drain_vectored(conn: &mut Connection, now: Instant, sock: &mut MemStream) {
    while let Some(t) = conn.poll_transmit_vectored(now) {
        match t {
            VectoredTransmit::Data { head, body } => {
                let n = io::Write::write_vectored(
                    sock,
                    &[io::IoSlice::new(&head), io::IoSlice::new(&body)],
                )
                .unwrap();
                assert_eq!(n, head.len() + body.len());
            }
            VectoredTransmit::Close => panic!("closed"),
        }
    }
}

/// The same from borrowed payloads (`send_slices`), as fastwebsockets
/// sends them: the bytes are copied into the connection's output buffer,
/// so no reference count is taken or released per message.
fn wsio_encode_slices(conn: &mut Connection, now: Instant, input: &Input, sock: &mut MemStream) {
    let kind = input.kind.data_kind();
    for p in &input.payloads {
        conn.send_slices(kind, b"", p).unwrap();
    }
    drain_transmits(conn, now, sock);
}

/// Server only: `send_direct` gives each frame's header and the payload,
/// borrowed, goes out with it in one `write_vectored`, as fastwebsockets
/// writes a borrowed payload.
fn wsio_encode_direct(conn: &mut Connection, input: &Input, sock: &mut MemStream) {
    let kind = input.kind.data_kind();
    for p in &input.payloads {
        let head = conn.send_direct(kind, p.len()).unwrap();
        let n = io::Write::write_vectored(sock, &[io::IoSlice::new(&head), io::IoSlice::new(p)])
            .unwrap();
        assert_eq!(n, head.len() + p.len());
    }
}

fn tungstenite_encode(ws: &mut tungstenite::WebSocket<MemStream>, msgs: &[tungstenite::Message]) {
    for m in msgs {
        ws.write(m.clone()).unwrap();
    }
    ws.flush().unwrap();
}

fn tungstenite_encode_owned(
    ws: &mut tungstenite::WebSocket<MemStream>,
    msgs: Vec<tungstenite::Message>,
) {
    for m in msgs {
        ws.write(m).unwrap();
    }
    ws.flush().unwrap();
}

fn fws_encode(ws: &mut fastwebsockets::WebSocket<MemStream>, input: &Input) {
    for p in &input.payloads {
        fws_write(ws, input.kind, fastwebsockets::Payload::Borrowed(p));
    }
}

/// Owned payloads, which fastwebsockets masks in place.
fn fws_encode_owned(
    ws: &mut fastwebsockets::WebSocket<MemStream>,
    kind: Kind,
    payloads: Vec<Vec<u8>>,
) {
    for p in payloads {
        fws_write(ws, kind, fastwebsockets::Payload::Owned(p));
    }
}

fn fws_write(
    ws: &mut fastwebsockets::WebSocket<MemStream>,
    kind: Kind,
    payload: fastwebsockets::Payload<'_>,
) {
    let frame = match kind {
        Kind::Text => fastwebsockets::Frame::text(payload),
        Kind::Binary => fastwebsockets::Frame::binary(payload),
    };
    block_on(ws.write_frame(frame)).unwrap();
}

fn baseline_encode(input: &Input, out: &mut Vec<u8>, keys: Option<&[[u8; 4]]>) {
    out.clear();
    for (i, p) in input.payloads.iter().enumerate() {
        let start = out.len();
        out.extend_from_slice(p);
        if let Some(keys) = keys {
            xor_mask(&mut out[start..], keys[i]);
        }
    }
    black_box(&out[..]);
}

fn check_encoded(input: &Input, who: &str, wire: &[u8], masked: bool) {
    let frames = parse_frames(wire, masked);
    assert_eq!(frames.len(), input.payloads.len(), "{who}: frame count");
    let opcode = if input.kind == Kind::Text { 1 } else { 2 };
    for (i, ((op, payload), want)) in frames.iter().zip(&input.payloads).enumerate() {
        assert_eq!(*op, opcode, "{who}: opcode of frame {i}");
        assert!(payload[..] == want[..], "{who}: payload of frame {i}");
    }
}

// ----- the benchmark --------------------------------------------------------

/// The input's payloads as messages sharing its bytes (each send clones one).
fn wsio_messages(input: &Input) -> Vec<ws::Message> {
    wsio_messages_of(input.kind, input.payloads.iter().cloned())
}

fn tungstenite_messages(input: &Input) -> Vec<tungstenite::Message> {
    tungstenite_messages_of(input.kind, input.payloads.iter().cloned())
}

/// Fresh copies of the payloads, each the only handle to its bytes: what
/// an application that builds every message in its own buffer hands over.
/// Made outside the timed part.
fn owned_payloads(input: &Input) -> impl Iterator<Item = Bytes> + '_ {
    input.payloads.iter().map(|p| Bytes::from(p.to_vec()))
}

fn wsio_owned_messages(input: &Input) -> Vec<ws::Message> {
    wsio_messages_of(input.kind, owned_payloads(input))
}

fn tungstenite_owned_messages(input: &Input) -> Vec<tungstenite::Message> {
    tungstenite_messages_of(input.kind, owned_payloads(input))
}

fn fws_owned_payloads(input: &Input) -> Vec<Vec<u8>> {
    // A unique `Bytes` from a `Vec` gives its `Vec` back without a copy.
    owned_payloads(input).map(Vec::from).collect()
}

fn wsio_messages_of(kind: Kind, payloads: impl Iterator<Item = Bytes>) -> Vec<ws::Message> {
    payloads
        .map(|p| match kind {
            Kind::Text => ws::Message::Text(ws::Utf8Bytes::try_from(p).unwrap()),
            Kind::Binary => ws::Message::Binary(p),
        })
        .collect()
}

fn tungstenite_messages_of(
    kind: Kind,
    payloads: impl Iterator<Item = Bytes>,
) -> Vec<tungstenite::Message> {
    payloads
        .map(|p| match kind {
            Kind::Text => tungstenite::Message::Text(p.try_into().unwrap()),
            Kind::Binary => tungstenite::Message::Binary(p),
        })
        .collect()
}

/// Batches for the owned rows: their inputs are consumed, one set made per
/// iteration outside the timing; a megabyte each, so not many at once.
fn owned_batch(input: &Input) -> BatchSize {
    if input.payload_bytes > 64 * 1024 {
        BatchSize::PerIteration
    } else {
        BatchSize::SmallInput
    }
}

fn wsio_server() -> Connection {
    Connection::server_upgraded(Config::default())
}

fn wsio_client() -> Connection {
    Connection::client_upgraded(Config::default(), Box::new(SeededEntropy::new(7)))
}

fn tungstenite_ws(
    sock: MemStream,
    role: tungstenite::protocol::Role,
) -> tungstenite::WebSocket<MemStream> {
    tungstenite::WebSocket::from_raw_socket(sock, role, None)
}

fn bench_input<M: Measurement>(c: &mut Criterion<M>, prefix: &str, input: &Input) {
    use fastwebsockets::Role as FRole;
    use tungstenite::protocol::Role as TRole;

    let now = Instant::now();
    let count = input.payloads.len();
    let mut readbuf = vec![0u8; READ_CHUNK];

    // ---- check every implementation once before timing ----
    {
        let mut got = Vec::new();
        wsio_decode(
            &mut wsio_server(),
            &mut MemStream::new(input.wire),
            &mut readbuf,
            now,
            |m| got.push(wsio_msg(m)),
        );
        check_decoded(input, "wsio handle_input", &got);

        let mut got = Vec::new();
        let mut rd = BytesMut::new();
        wsio_decode_bytes(
            &mut wsio_server(),
            &mut MemStream::new(input.wire),
            &mut rd,
            now,
            |m| got.push(wsio_msg(m)),
        );
        check_decoded(input, "wsio handle_input_bytes", &got);

        let mut got = Vec::new();
        wsio_decode_ingest(
            &mut wsio_server(),
            &mut MemStream::new(input.wire),
            now,
            |m| got.push(wsio_msg(m)),
        );
        check_decoded(input, "wsio input_buffer", &got);

        let mut got = Vec::new();
        wsio_decode_read_from(
            &mut wsio_server(),
            &mut MemStream::new(input.wire),
            now,
            |m| got.push(wsio_msg(m)),
        );
        check_decoded(input, "wsio read_from", &got);

        let mut got = Vec::new();
        wsio_decode_input_buffer_zeroed(
            &mut wsio_server(),
            &mut MemStream::new(input.wire),
            now,
            |m| got.push(wsio_msg(m)),
        );
        check_decoded(input, "wsio input_buffer zero-filled", &got);

        let mut got = Vec::new();
        wsio_decode_ingest_ref(
            &mut wsio_server(),
            &mut MemStream::new(input.wire),
            now,
            |m| got.push(wsio_msg_ref(m)),
        );
        check_decoded(input, "wsio input_buffer + poll_event_ref", &got);

        let mut got = Vec::new();
        let mut ws = tungstenite_ws(MemStream::new(input.wire), TRole::Server);
        tungstenite_decode(&mut ws, count, |m| got.push(tungstenite_msg(m)));
        check_decoded(input, "tungstenite", &got);

        let mut got = Vec::new();
        let sock = MemStream::new(input.wire);
        let pos = sock.pos.clone();
        let mut ws = new_fws(sock, FRole::Server);
        fws_decode(&mut ws, &pos, count, |f| got.push(fws_msg(f)));
        check_decoded(input, "fastwebsockets", &got);

        let mut buf = Vec::new();
        baseline_decode(input, &mut buf);
        let got: Vec<Got> = input
            .frames
            .iter()
            .map(|&(off, len, _)| (input.kind, Bytes::copy_from_slice(&buf[off..off + len])))
            .collect();
        check_decoded(input, "baseline", &got);

        let mut fused = vec![0u8; input.wire.len()];
        baseline_decode_fused(input, &mut fused);
        assert!(fused == buf, "fused baseline");
        assert!(baseline_decode_reads(input) == buf, "reads baseline");

        let wmsgs = wsio_messages(input);
        let tmsgs = tungstenite_messages(input);
        let now = Instant::now();
        for masked in [false, true] {
            // Twice on one connection: the second round reuses buffers.
            let mut conn = if masked { wsio_client() } else { wsio_server() };
            for _ in 0..2 {
                let (mut sock, cap) = MemStream::new(b"").capturing();
                wsio_encode(&mut conn, now, &wmsgs, &mut sock);
                check_encoded(input, "wsio encode", &cap.borrow(), masked);
            }
            let mut conn = if masked { wsio_client() } else { wsio_server() };
            for _ in 0..2 {
                let (mut sock, cap) = MemStream::new(b"").capturing();
                wsio_encode_vectored(&mut conn, now, &wmsgs, &mut sock);
                check_encoded(input, "wsio encode vectored", &cap.borrow(), masked);
            }

            let mut conn = if masked { wsio_client() } else { wsio_server() };
            for _ in 0..2 {
                let (mut sock, cap) = MemStream::new(b"").capturing();
                wsio_encode_slices(&mut conn, now, input, &mut sock);
                check_encoded(input, "wsio encode slices", &cap.borrow(), masked);
            }

            if !masked {
                let mut conn = wsio_server();
                for _ in 0..2 {
                    let (mut sock, cap) = MemStream::new(b"").capturing();
                    wsio_encode_direct(&mut conn, input, &mut sock);
                    check_encoded(input, "wsio encode direct", &cap.borrow(), masked);
                }
            }

            let (sock, cap) = MemStream::new(b"").capturing();
            let mut ws = tungstenite_ws(sock, if masked { TRole::Client } else { TRole::Server });
            tungstenite_encode(&mut ws, &tmsgs);
            check_encoded(input, "tungstenite encode", &cap.borrow(), masked);

            let (sock, cap) = MemStream::new(b"").capturing();
            let mut ws = new_fws(sock, if masked { FRole::Client } else { FRole::Server });
            fws_encode(&mut ws, input);
            check_encoded(input, "fastwebsockets encode", &cap.borrow(), masked);
        }

        // Owned payloads, masked in place (clients).
        let mut conn = wsio_client();
        for _ in 0..2 {
            let (mut sock, cap) = MemStream::new(b"").capturing();
            wsio_encode_owned(&mut conn, now, wsio_owned_messages(input), &mut sock);
            check_encoded(input, "wsio encode owned", &cap.borrow(), true);
        }
        let (sock, cap) = MemStream::new(b"").capturing();
        let mut ws = tungstenite_ws(sock, TRole::Client);
        tungstenite_encode_owned(&mut ws, tungstenite_owned_messages(input));
        check_encoded(input, "tungstenite encode owned", &cap.borrow(), true);
        let (sock, cap) = MemStream::new(b"").capturing();
        let mut ws = new_fws(sock, FRole::Client);
        fws_encode_owned(&mut ws, input.kind, fws_owned_payloads(input));
        check_encoded(input, "fastwebsockets encode owned", &cap.borrow(), true);
    }

    // ---- timing ----
    let mut g = c.benchmark_group(format!("{prefix}/{}", input.name));
    g.throughput(Throughput::Bytes(input.payload_bytes as u64));

    {
        let mut conn = wsio_server();
        let mut sock = MemStream::new(input.wire);
        g.bench_function("decode/wsio_handle_input", |b| {
            b.iter(|| {
                let mut n = 0;
                wsio_decode(&mut conn, &mut sock, &mut readbuf, now, |m| {
                    black_box(m);
                    n += 1;
                });
                assert_eq!(n, count);
            })
        });
    }
    {
        let mut conn = wsio_server();
        let mut sock = MemStream::new(input.wire);
        let mut rd = BytesMut::new();
        g.bench_function("decode/wsio_handle_input_bytes", |b| {
            b.iter(|| {
                let mut n = 0;
                wsio_decode_bytes(&mut conn, &mut sock, &mut rd, now, |m| {
                    black_box(m);
                    n += 1;
                });
                assert_eq!(n, count);
            })
        });
    }
    {
        let mut conn = wsio_server();
        let mut sock = MemStream::new(input.wire);
        g.bench_function("decode/wsio_input_buffer", |b| {
            b.iter(|| {
                let mut n = 0;
                wsio_decode_ingest(&mut conn, &mut sock, now, |m| {
                    black_box(m);
                    n += 1;
                });
                assert_eq!(n, count);
            })
        });
    }
    {
        let mut conn = wsio_server();
        let mut sock = MemStream::new(input.wire);
        g.bench_function("decode/wsio_read_from", |b| {
            b.iter(|| {
                let mut n = 0;
                wsio_decode_read_from(&mut conn, &mut sock, now, |m| {
                    black_box(m);
                    n += 1;
                });
                assert_eq!(n, count);
            })
        });
    }
    {
        let mut conn = wsio_server();
        let mut sock = MemStream::new(input.wire);
        g.bench_function("decode/wsio_input_buffer_zeroed", |b| {
            b.iter(|| {
                let mut n = 0;
                wsio_decode_input_buffer_zeroed(&mut conn, &mut sock, now, |m| {
                    black_box(m);
                    n += 1;
                });
                assert_eq!(n, count);
            })
        });
    }
    {
        let mut conn = wsio_server();
        let mut sock = MemStream::new(input.wire);
        g.bench_function("decode/wsio_input_buffer_ref", |b| {
            b.iter(|| {
                let mut n = 0;
                wsio_decode_ingest_ref(&mut conn, &mut sock, now, |m| {
                    black_box(m);
                    n += 1;
                });
                assert_eq!(n, count);
            })
        });
    }
    {
        let mut ws = tungstenite_ws(MemStream::new(input.wire), TRole::Server);
        g.bench_function("decode/tungstenite", |b| {
            b.iter(|| {
                tungstenite_decode(&mut ws, count, |m| {
                    black_box(m);
                })
            })
        });
    }
    {
        let sock = MemStream::new(input.wire);
        let pos = sock.pos.clone();
        let mut ws = new_fws(sock, FRole::Server);
        g.bench_function("decode/fastwebsockets", |b| {
            b.iter(|| {
                fws_decode(&mut ws, &pos, count, |f| {
                    black_box(f);
                })
            })
        });
    }
    {
        let mut buf = Vec::with_capacity(input.wire.len());
        g.bench_function("decode/baseline_memcpy_xor", |b| {
            b.iter(|| baseline_decode(input, &mut buf))
        });
        let mut fused = vec![0u8; input.wire.len()];
        g.bench_function("decode/baseline_fused_copy_xor", |b| {
            b.iter(|| baseline_decode_fused(input, &mut fused))
        });
        g.bench_function("decode/baseline_reads_unmask", |b| {
            b.iter(|| black_box(baseline_decode_reads(input).freeze()))
        });
    }

    let wmsgs = wsio_messages(input);
    let tmsgs = tungstenite_messages(input);
    let keys: Vec<[u8; 4]> = input.frames.iter().map(|f| f.2).collect();
    let now = Instant::now();
    for (dir, masked) in [("encode_server", false), ("encode_client", true)] {
        {
            let mut conn = if masked { wsio_client() } else { wsio_server() };
            let mut sock = MemStream::new(b"");
            g.bench_function(format!("{dir}/wsio"), |b| {
                b.iter(|| wsio_encode(&mut conn, now, &wmsgs, &mut sock))
            });
        }
        {
            let mut conn = if masked { wsio_client() } else { wsio_server() };
            let mut sock = MemStream::new(b"");
            g.bench_function(format!("{dir}/wsio_vectored"), |b| {
                b.iter(|| wsio_encode_vectored(&mut conn, now, &wmsgs, &mut sock))
            });
        }
        {
            let mut conn = if masked { wsio_client() } else { wsio_server() };
            let mut sock = MemStream::new(b"");
            g.bench_function(format!("{dir}/wsio_slices"), |b| {
                b.iter(|| wsio_encode_slices(&mut conn, now, input, &mut sock))
            });
        }
        if !masked {
            let mut conn = wsio_server();
            let mut sock = MemStream::new(b"");
            g.bench_function(format!("{dir}/wsio_direct"), |b| {
                b.iter(|| wsio_encode_direct(&mut conn, input, &mut sock))
            });
        }
        {
            let role = if masked { TRole::Client } else { TRole::Server };
            let mut ws = tungstenite_ws(MemStream::new(b""), role);
            g.bench_function(format!("{dir}/tungstenite"), |b| {
                b.iter(|| tungstenite_encode(&mut ws, &tmsgs))
            });
        }
        {
            let role = if masked { FRole::Client } else { FRole::Server };
            let mut ws = new_fws(MemStream::new(b""), role);
            g.bench_function(format!("{dir}/fastwebsockets"), |b| {
                b.iter(|| fws_encode(&mut ws, input))
            });
        }
        if masked {
            let mut conn = wsio_client();
            let mut sock = MemStream::new(b"");
            g.bench_function(format!("{dir}/wsio_owned"), |b| {
                b.iter_batched(
                    || wsio_owned_messages(input),
                    |msgs| wsio_encode_owned(&mut conn, now, msgs, &mut sock),
                    owned_batch(input),
                )
            });
            let mut ws = tungstenite_ws(MemStream::new(b""), TRole::Client);
            g.bench_function(format!("{dir}/tungstenite_owned"), |b| {
                b.iter_batched(
                    || tungstenite_owned_messages(input),
                    |msgs| tungstenite_encode_owned(&mut ws, msgs),
                    owned_batch(input),
                )
            });
            let mut ws = new_fws(MemStream::new(b""), FRole::Client);
            g.bench_function(format!("{dir}/fastwebsockets_owned"), |b| {
                b.iter_batched(
                    || fws_owned_payloads(input),
                    |payloads| fws_encode_owned(&mut ws, input.kind, payloads),
                    owned_batch(input),
                )
            });
        }
        {
            let mut out = Vec::with_capacity(input.payload_bytes);
            let name = if masked {
                "baseline_memcpy_xor"
            } else {
                "baseline_memcpy"
            };
            g.bench_function(format!("{dir}/{name}"), |b| {
                b.iter(|| baseline_encode(input, &mut out, masked.then_some(&keys[..])))
            });
        }
    }
    g.finish();
}

// ----- a real socket ---------------------------------------------------------

/// A Unix socket whose peer, a thread, writes `wire` over and over (blocking
/// while the socket is full) until this end is dropped.
fn feeder(wire: &'static [u8]) -> UnixStream {
    let (reader, mut writer) = UnixStream::pair().expect("socketpair");
    std::thread::spawn(move || while io::Write::write_all(&mut writer, wire).is_ok() {});
    reader
}

/// Decoding from a real socket (`{prefix}_socket/*`): the kernel's buffer
/// holds what the writer thread has written, and a read takes what the
/// reader asks for, up to what is there. Each iteration decodes one wire's
/// messages; with `WS_BENCH_CLOCK=cpu` the reader is charged its own work
/// only: its reads (system calls, the kernel's copy), unmasking and events,
/// not the writer's or time spent waiting for it.
fn bench_socket<M: Measurement>(c: &mut Criterion<M>, prefix: &str, input: &Input) {
    use fastwebsockets::Role as FRole;
    use tungstenite::protocol::Role as TRole;

    let now = Instant::now();
    let count = input.payloads.len();
    let mut g = c.benchmark_group(format!("{prefix}_socket/{}", input.name));
    g.throughput(Throughput::Bytes(input.payload_bytes as u64));
    {
        let mut sock = feeder(input.wire);
        let mut conn = wsio_server();
        // Messages decoded beyond the iterations' share (a read may bring
        // the next wire's first frames), credited to the next iteration.
        let mut ahead = 0usize;
        let mut read = |conn: &mut Connection, f: &mut dyn FnMut(ws::Message)| {
            let mut n = ahead;
            while n < count {
                assert!(conn.read_from(&mut sock).expect("read") > 0);
                conn.commit_input(now);
                wsio_drain(conn, now, &mut |m| {
                    f(m);
                    n += 1;
                });
            }
            ahead = n - count;
        };
        let mut got = Vec::new();
        read(&mut conn, &mut |m| got.push(wsio_msg(m)));
        got.truncate(count);
        check_decoded(input, "wsio read_from (socket)", &got);
        g.bench_function("decode/wsio_read_from", |b| {
            b.iter(|| {
                read(&mut conn, &mut |m| {
                    black_box(m);
                })
            })
        });
    }
    {
        let mut ws =
            tungstenite::WebSocket::from_raw_socket(feeder(input.wire), TRole::Server, None);
        let got: Vec<Got> = (0..count)
            .map(|_| tungstenite_msg(ws.read().unwrap()))
            .collect();
        check_decoded(input, "tungstenite (socket)", &got);
        g.bench_function("decode/tungstenite", |b| {
            b.iter(|| {
                for _ in 0..count {
                    black_box(ws.read().unwrap());
                }
            })
        });
    }
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let sock = feeder(input.wire);
        sock.set_nonblocking(true).expect("nonblocking");
        let mut ws = rt.block_on(async {
            let sock = tokio::net::UnixStream::from_std(sock).expect("tokio socket");
            let mut ws = fastwebsockets::WebSocket::after_handshake(sock, FRole::Server);
            ws.set_auto_close(false);
            ws.set_auto_pong(false);
            ws.set_max_message_size(64 << 20);
            ws
        });
        let got = rt.block_on(async {
            let mut got = Vec::new();
            for _ in 0..count {
                got.push(fws_msg(ws.read_frame().await.unwrap()));
            }
            got
        });
        check_decoded(input, "fastwebsockets (socket)", &got);
        g.bench_function("decode/fastwebsockets", |b| {
            b.iter(|| {
                rt.block_on(async {
                    for _ in 0..count {
                        black_box(ws.read_frame().await.unwrap());
                    }
                })
            })
        });
    }
    g.finish();
}

fn benches<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let inputs = [
        make_input("text_16B_x1000", Kind::Text, 1000, 16, 1),
        make_input("binary_64KiB_x16", Kind::Binary, 16, 64 << 10, 2),
        make_input("binary_1MiB_x1", Kind::Binary, 1, 1 << 20, 3),
    ];
    for input in &inputs {
        bench_input(c, prefix, input);
    }
    for input in &inputs[1..] {
        bench_socket(c, prefix, input);
    }
}

fn main() {
    if std::env::var("WS_BENCH_CLOCK").is_ok_and(|v| v == "cpu") {
        let mut c = Criterion::default()
            .with_measurement(CpuTime)
            .configure_from_args();
        benches(&mut c, "ws_cpu");
        c.final_summary();
    } else {
        let mut c = Criterion::default().configure_from_args();
        benches(&mut c, "ws");
        c.final_summary();
    }
}
