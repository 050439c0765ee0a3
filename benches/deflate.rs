//! permessage-deflate: wsio's `Deflater`/`Inflater` against the bare flate2
//! calls they are made of, per message.
//!
//! ```text
//! cargo bench --bench deflate -- --warm-up-time 1 --measurement-time 3
//! DEFLATE_BENCH_CLOCK=cpu cargo bench --bench deflate -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The second form measures this thread's CPU time (groups `deflate_cpu/...`),
//! so time spent descheduled on a busy machine is not charged.
//!
//! Inputs (the uncompressed message is the throughput unit): text-like JSON
//! messages of 64 B, 1 KiB and 16 KiB (a Socket.IO-style event array of chat
//! objects, each message different), and a 1 MiB binary (partly
//! compressible: repeats of earlier blocks and low-entropy bytes). Each
//! group cycles through a fixed set of messages, `takeover` on one stream
//! (context kept between messages), `no_takeover` each message alone.
//!
//! * `compress/*/wsio`: `Deflater::compress` into a reused `BytesMut`.
//! * `compress/*/flate2_bare`: `Compress::compress_vec` with a sync flush
//!   into a reused `Vec` reserved for the output, the trailer cut off, and
//!   `reset` per message without takeover: the least any implementation
//!   does.
//! * `decompress/*/wsio`: `Inflater::inflate` (payload, then the trailer,
//!   under a 64 MiB limit) into a reused `BytesMut`; `wsio_fresh_buffer`
//!   into a new one per message, as a connection handing messages out does.
//! * `decompress/*/flate2_bare`: `Decompress::decompress_vec` of the payload
//!   and the trailer into a reused `Vec` already big enough, `reset` per
//!   message without takeover.
//!
//! * `compress/*/wsio_connection`: a whole message sent compressed through a
//!   server `ws::Connection` (`send_slices` of a binary message, threshold
//!   0) and its frame
//!   taken with `poll_transmit`: the codec plus framing, queueing and the
//!   handover, against `flate2_bare` for the overhead of all of wsio.
//! * `decompress/*/wsio_connection`: the compressed frame fed to a client
//!   `ws::Connection` (`handle_input`) and the message taken with
//!   `poll_event`.
//!
//! * `uncompressed/*`: the same messages without compression, for scale:
//!   sent by a server and received by a client through wsio's
//!   `ws::Connection` (as the `wsio_connection` rows, without the
//!   extension), tungstenite and fastwebsockets (see `bench_uncompressed`).
//!
//! The clock the connections are given is read once per run, as a driver
//! reads it once per read, not once per message.
//!
//! Before timing, wsio's output is checked against the bare calls' (the
//! same compressed bytes, through the codec and the connection alike; the
//! same messages back), and the uncompressed senders' frames and
//! receivers' messages against each other's.

use std::{cell::RefCell, hint::black_box, rc::Rc, time::Instant};

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "common/mem_io.rs"]
mod mem_io;

use bytes::{Bytes, BytesMut};
use cpu_time::CpuTime;
use criterion::{BenchmarkId, Criterion, Throughput, measurement::Measurement};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use mem_io::block_on;
use wsio::{
    entropy::SeededEntropy,
    ws::{
        Config, Connection, DataKind, Event, Message, OpCode, Role, Transmit,
        deflate::{DeflateConfig, Deflater, Inflater, Params},
        frame::{FrameHeader, decode_header, encode_header},
    },
};

const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
const LIMIT: usize = 64 << 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: [&str; 20] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
];

/// A JSON event of exactly `len` bytes (cut at the end, as sizes must be exact).
fn json(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut s = String::from("[\"message\",[");
    while s.len() < len {
        let text: Vec<&str> = (0..2 + r.below(8))
            .map(|_| WORDS[r.below(20) as usize])
            .collect();
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"{}\",\"text\":\"{}\",\"ts\":{},\"read\":{}}},",
            r.below(1_000_000),
            WORDS[r.below(20) as usize],
            text.join(" "),
            1_700_000_000 + r.below(100_000),
            r.below(2) == 1
        ));
    }
    let mut v = s.into_bytes();
    v.truncate(len);
    v
}

/// Partly compressible binary: repeats of earlier 64-byte blocks and
/// low-entropy fresh ones.
fn binary(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        if v.len() > 4096 && r.below(2) == 0 {
            let start = v.len().saturating_sub(64 + r.below(16_000) as usize);
            for i in 0..64 {
                v.push(v[start + i]);
            }
        } else {
            v.extend((0..64).map(|_| (r.below(64) * r.below(4)) as u8));
        }
    }
    v.truncate(len);
    v
}

fn bare_compress(c: &mut Compress, msg: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(msg.len() / 2 + 64);
    let start = c.total_in();
    loop {
        let done = (c.total_in() - start) as usize;
        if out.capacity() == out.len() {
            out.reserve(out.capacity());
        }
        c.compress_vec(&msg[done..], out, FlushCompress::Sync)
            .unwrap();
        if (c.total_in() - start) as usize == msg.len() && out.capacity() > out.len() {
            break;
        }
    }
    out.truncate(out.len() - 4);
}

fn bare_decompress(d: &mut Decompress, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    for part in [payload, &TRAILER[..]] {
        let start = d.total_in();
        loop {
            let done = (d.total_in() - start) as usize;
            if out.capacity() == out.len() {
                out.reserve(out.capacity().max(4096));
            }
            d.decompress_vec(&part[done..], out, FlushDecompress::Sync)
                .unwrap();
            if (d.total_in() - start) as usize == part.len() && out.capacity() > out.len() {
                break;
            }
        }
    }
}

struct Input {
    name: &'static str,
    messages: Vec<Vec<u8>>,
}

fn inputs() -> Vec<Input> {
    vec![
        Input {
            name: "json_64B",
            messages: (0..64).map(|i| json(64, i)).collect(),
        },
        Input {
            name: "json_1KiB",
            messages: (0..64).map(|i| json(1024, i)).collect(),
        },
        Input {
            name: "json_16KiB",
            messages: (0..16).map(|i| json(16 << 10, i)).collect(),
        },
        Input {
            name: "binary_1MiB",
            messages: (0..2).map(|i| binary(1 << 20, i)).collect(),
        },
    ]
}

/// A server connection that compresses every message it sends.
fn server(params: Params) -> Connection {
    let config = Config::default().deflate(DeflateConfig::default().enabled(true).threshold(0));
    Connection::server_upgraded(config).with_deflate(params)
}

/// A client connection that inflates what a server compressed.
fn client(params: Params) -> Connection {
    let config = Config::default()
        .max_message_size(LIMIT)
        .max_frame_size(LIMIT);
    Connection::client_upgraded(config, Box::new(SeededEntropy::new(1))).with_deflate(params)
}

/// Sends `msg` (compressed if the connection compresses) and returns the
/// frame's bytes (one transmit for a message of these sizes).
fn connection_send(conn: &mut Connection, msg: &[u8], now: Instant) -> Bytes {
    conn.send_slices(DataKind::Binary, b"", msg).unwrap();
    let Some(Transmit::Data(frame)) = conn.poll_transmit(now) else {
        panic!("no frame")
    };
    frame
}

/// A server frame with RSV1 around a compressed payload.
fn server_frame(payload: &[u8]) -> Vec<u8> {
    frame_with_rsv(payload, 0b100)
}

/// A server frame (binary, final, unmasked) with these RSV bits.
fn frame_with_rsv(payload: &[u8], rsv: u8) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_header(
        &FrameHeader {
            fin: true,
            rsv,
            opcode: OpCode::Binary,
            mask: None,
            len: payload.len() as u64,
        },
        &mut out,
    );
    out.extend_from_slice(payload);
    out.to_vec()
}

/// Feeds a frame and takes the message it carries (the time a driver
/// reads once per read is read once per run, here and when sending).
fn connection_receive(conn: &mut Connection, frame: &[u8], now: Instant) -> Message {
    conn.handle_input(now, frame);
    match conn.poll_event(now) {
        Some(Event::Message(m)) => m,
        other => panic!("{other:?}"),
    }
}

fn params(takeover: bool) -> Params {
    Params {
        server_no_context_takeover: !takeover,
        client_no_context_takeover: !takeover,
        ..Params::default()
    }
}

fn bench_input<M: Measurement>(c: &mut Criterion<M>, prefix: &str, input: &Input) {
    let config = DeflateConfig::default();
    let msgs = &input.messages;
    for takeover in [true, false] {
        let mode = if takeover { "takeover" } else { "no_takeover" };
        let params = params(takeover);

        // The compressed stream both decoders read, checked against the bare calls.
        let mut deflater = Deflater::new(Role::Server, &params, &config);
        let mut bare = Compress::new(Compression::new(config.level), false);
        let chain: Vec<Vec<u8>> = (0..msgs.len() * 2)
            .map(|k| {
                let msg = &msgs[k % msgs.len()];
                let mut ours = BytesMut::new();
                deflater.compress(msg, &mut ours).unwrap();
                let mut theirs = Vec::new();
                bare_compress(&mut bare, msg, &mut theirs);
                if !takeover {
                    bare.reset();
                }
                assert_eq!(&ours[..], &theirs[..], "{} {mode} message {k}", input.name);
                theirs
            })
            .collect();
        let mut check = Inflater::new(Role::Client, &params);
        for (k, payload) in chain.iter().enumerate() {
            let mut out = BytesMut::new();
            check.inflate(payload, true, LIMIT, &mut out).unwrap();
            assert_eq!(&out[..], &msgs[k % msgs.len()][..]);
        }
        // The same through connections: the same compressed payloads, the
        // same messages back.
        let frames: Vec<Vec<u8>> = chain.iter().map(|p| server_frame(p)).collect();
        let (mut tx, mut rx) = (server(params), client(params));
        let now = Instant::now();
        for (k, frame) in frames.iter().enumerate() {
            let sent = connection_send(&mut tx, &msgs[k % msgs.len()], now);
            assert_eq!(&sent[..], &frame[..], "{} {mode} frame {k}", input.name);
            let (h, _) = decode_header(&sent).unwrap().unwrap();
            assert_eq!(h.rsv, 0b100);
            let got = connection_receive(&mut rx, frame, Instant::now());
            assert_eq!(got.as_bytes(), &msgs[k % msgs.len()][..]);
        }

        let mut g = c.benchmark_group(format!("{prefix}/compress/{}_{mode}", input.name));
        g.throughput(Throughput::Bytes(msgs[0].len() as u64));
        let mut deflater = Deflater::new(Role::Server, &params, &config);
        let mut out = BytesMut::new();
        let mut k = 0;
        g.bench_function(BenchmarkId::from_parameter("wsio"), |b| {
            b.iter(|| {
                out.clear();
                deflater.compress(&msgs[k % msgs.len()], &mut out).unwrap();
                black_box(&out);
                k += 1;
            })
        });
        let mut conn = server(params);
        g.bench_function(BenchmarkId::from_parameter("wsio_connection"), |b| {
            b.iter(|| {
                black_box(connection_send(&mut conn, &msgs[k % msgs.len()], now));
                k += 1;
            })
        });
        let mut bare = Compress::new(Compression::new(config.level), false);
        let mut out = Vec::new();
        g.bench_function(BenchmarkId::from_parameter("flate2_bare"), |b| {
            b.iter(|| {
                bare_compress(&mut bare, &msgs[k % msgs.len()], &mut out);
                if !takeover {
                    bare.reset();
                }
                black_box(&out);
                k += 1;
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("{prefix}/decompress/{}_{mode}", input.name));
        g.throughput(Throughput::Bytes(msgs[0].len() as u64));
        for fresh in [false, true] {
            let name = if fresh { "wsio_fresh_buffer" } else { "wsio" };
            let mut inflater = Inflater::new(Role::Client, &params);
            let mut out = BytesMut::new();
            let mut k = 0;
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    if k == chain.len() {
                        // Back to the stream's start: a new window.
                        inflater = Inflater::new(Role::Client, &params);
                        k = 0;
                    }
                    if fresh {
                        out = BytesMut::new();
                    } else {
                        out.clear();
                    }
                    inflater.inflate(&chain[k], true, LIMIT, &mut out).unwrap();
                    black_box(&out);
                    k += 1;
                })
            });
        }
        let mut conn = client(params);
        let mut k = 0;
        g.bench_function(BenchmarkId::from_parameter("wsio_connection"), |b| {
            b.iter(|| {
                if k == frames.len() {
                    conn = client(params);
                    k = 0;
                }
                black_box(connection_receive(&mut conn, &frames[k], now));
                k += 1;
            })
        });
        let mut bare = Decompress::new(false);
        let mut out = Vec::with_capacity(msgs[0].len() + 1);
        let mut k = 0;
        g.bench_function(BenchmarkId::from_parameter("flate2_bare"), |b| {
            b.iter(|| {
                if k == chain.len() || !takeover {
                    bare.reset(false);
                    k %= chain.len();
                }
                bare_decompress(&mut bare, &chain[k], &mut out);
                black_box(&out);
                k += 1;
            })
        });
        g.finish();
    }
}

fn benches<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    for input in &inputs() {
        bench_uncompressed(c, prefix, input);
        bench_input(c, prefix, input);
    }
}

// ----- the same messages uncompressed, for scale ----------------------------

/// Hands out the frames of `frames` in turn, each read at most up to the end
/// of the current frame (as a socket holding just that frame would), round
/// and round; or takes what is written, into `written` when checking.
struct FrameStream {
    frames: Rc<Vec<Vec<u8>>>,
    k: usize,
    pos: usize,
    written: Option<Rc<RefCell<Vec<u8>>>>,
}

impl FrameStream {
    fn reading(frames: Rc<Vec<Vec<u8>>>) -> Self {
        FrameStream {
            frames,
            k: 0,
            pos: 0,
            written: None,
        }
    }

    fn writing(written: Option<Rc<RefCell<Vec<u8>>>>) -> Self {
        FrameStream {
            frames: Rc::default(),
            k: 0,
            pos: 0,
            written,
        }
    }

    fn next_bytes(&mut self, max: usize) -> &[u8] {
        if self.frames.is_empty() {
            return &[];
        }
        if self.pos == self.frames[self.k].len() {
            self.k = (self.k + 1) % self.frames.len();
            self.pos = 0;
        }
        let frame = &self.frames[self.k];
        let n = (frame.len() - self.pos).min(max);
        self.pos += n;
        &frame[self.pos - n..self.pos]
    }

    fn sink(&mut self, b: &[u8]) {
        black_box(b);
        if let Some(w) = &self.written {
            w.borrow_mut().extend_from_slice(b);
        }
    }
}

mem_io::mem_io!(FrameStream);

fn tungstenite_ws(
    stream: FrameStream,
    role: tungstenite::protocol::Role,
) -> tungstenite::WebSocket<FrameStream> {
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(LIMIT))
        .max_frame_size(Some(LIMIT));
    tungstenite::WebSocket::from_raw_socket(stream, role, Some(config))
}

fn fws(stream: FrameStream, role: fastwebsockets::Role) -> fastwebsockets::WebSocket<FrameStream> {
    let mut ws = fastwebsockets::WebSocket::after_handshake(stream, role);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    ws.set_max_message_size(LIMIT);
    ws
}

fn fws_send(ws: &mut fastwebsockets::WebSocket<FrameStream>, msg: &[u8]) {
    let frame = fastwebsockets::Frame::binary(fastwebsockets::Payload::Borrowed(msg));
    block_on(ws.write_frame(frame)).unwrap();
}

fn tungstenite_receive(ws: &mut tungstenite::WebSocket<FrameStream>) -> Bytes {
    match ws.read().unwrap() {
        tungstenite::Message::Binary(b) => b,
        other => panic!("{other:?}"),
    }
}

/// The messages sent and received uncompressed, one at a time: a server
/// sends each (`send_*`: wsio `send_slices` then `poll_transmit`;
/// tungstenite `write` of a `Bytes` the application holds, then `flush`;
/// fastwebsockets `write_frame` of the borrowed message, into a null sink)
/// and a client receives each (`receive_*`: wsio `handle_input` of the frame
/// then `poll_event`, as `decompress/*/wsio_connection` does; tungstenite
/// `read` and fastwebsockets `read_frame` from a stream that hands out one
/// frame per message, the frame lent). Checked first: the same frame bytes
/// from every sender, the same messages out of every receiver.
fn bench_uncompressed<M: Measurement>(c: &mut Criterion<M>, prefix: &str, input: &Input) {
    use fastwebsockets::Role as FRole;
    use tungstenite::protocol::Role as TRole;

    let msgs = &input.messages;
    let owned: Vec<Bytes> = msgs.iter().map(|m| Bytes::copy_from_slice(m)).collect();
    let frames: Rc<Vec<Vec<u8>>> = Rc::new(msgs.iter().map(|m| frame_with_rsv(m, 0)).collect());
    let now = Instant::now();
    let plain_server = || Connection::server_upgraded(Config::default());
    let plain_client = || {
        let config = Config::default()
            .max_message_size(LIMIT)
            .max_frame_size(LIMIT);
        Connection::client_upgraded(config, Box::new(SeededEntropy::new(1)))
    };

    // Every sender writes the same frames; every receiver gets the messages.
    let mut conn = plain_server();
    let written = Rc::new(RefCell::new(Vec::new()));
    let mut tung = tungstenite_ws(FrameStream::writing(Some(written.clone())), TRole::Server);
    let mut fw = fws(FrameStream::writing(Some(written.clone())), FRole::Server);
    for (k, frame) in frames.iter().enumerate() {
        assert_eq!(&connection_send(&mut conn, &msgs[k], now)[..], &frame[..]);
        tung.send(tungstenite::Message::Binary(owned[k].clone()))
            .unwrap();
        assert_eq!(&written.borrow()[..], &frame[..], "tungstenite {k}");
        written.borrow_mut().clear();
        fws_send(&mut fw, &msgs[k]);
        assert_eq!(&written.borrow()[..], &frame[..], "fastwebsockets {k}");
        written.borrow_mut().clear();
    }
    let mut conn = plain_client();
    let mut tung = tungstenite_ws(FrameStream::reading(frames.clone()), TRole::Client);
    let mut fw = fws(FrameStream::reading(frames.clone()), FRole::Client);
    for _ in 0..2 {
        for (k, frame) in frames.iter().enumerate() {
            let got = connection_receive(&mut conn, frame, now);
            assert_eq!(got.as_bytes(), &msgs[k][..]);
            assert_eq!(&tungstenite_receive(&mut tung)[..], &msgs[k][..]);
            let f = block_on(fw.read_frame()).unwrap();
            assert!(f.fin && f.opcode == fastwebsockets::OpCode::Binary);
            assert_eq!(&f.payload[..], &msgs[k][..]);
        }
    }

    let mut g = c.benchmark_group(format!("{prefix}/uncompressed/{}", input.name));
    g.throughput(Throughput::Bytes(msgs[0].len() as u64));
    let mut k = 0;
    let mut conn = plain_server();
    g.bench_function(BenchmarkId::from_parameter("send_wsio_connection"), |b| {
        b.iter(|| {
            black_box(connection_send(&mut conn, &msgs[k % msgs.len()], now));
            k += 1;
        })
    });
    let mut tung = tungstenite_ws(FrameStream::writing(None), TRole::Server);
    g.bench_function(BenchmarkId::from_parameter("send_tungstenite"), |b| {
        b.iter(|| {
            let m = owned[k % msgs.len()].clone();
            tung.send(tungstenite::Message::Binary(m)).unwrap();
            k += 1;
        })
    });
    let mut fw = fws(FrameStream::writing(None), FRole::Server);
    g.bench_function(BenchmarkId::from_parameter("send_fastwebsockets"), |b| {
        b.iter(|| {
            fws_send(&mut fw, &msgs[k % msgs.len()]);
            k += 1;
        })
    });
    let mut conn = plain_client();
    let mut k = 0;
    g.bench_function(
        BenchmarkId::from_parameter("receive_wsio_connection"),
        |b| {
            b.iter(|| {
                black_box(connection_receive(&mut conn, &frames[k], now));
                k = (k + 1) % frames.len();
            })
        },
    );
    let mut tung = tungstenite_ws(FrameStream::reading(frames.clone()), TRole::Client);
    g.bench_function(BenchmarkId::from_parameter("receive_tungstenite"), |b| {
        b.iter(|| black_box(tungstenite_receive(&mut tung)))
    });
    let mut fw = fws(FrameStream::reading(frames.clone()), FRole::Client);
    g.bench_function(BenchmarkId::from_parameter("receive_fastwebsockets"), |b| {
        b.iter(|| {
            let f = block_on(fw.read_frame()).unwrap();
            black_box(&f.payload[..]);
        })
    });
    g.finish();
}

fn main() {
    if std::env::var("DEFLATE_BENCH_CLOCK").is_ok_and(|v| v == "cpu") {
        let mut c = Criterion::default()
            .with_measurement(CpuTime)
            .configure_from_args();
        benches(&mut c, "deflate_cpu");
        c.final_summary();
    } else {
        let mut c = Criterion::default().configure_from_args();
        benches(&mut c, "deflate");
        c.final_summary();
    }
}
