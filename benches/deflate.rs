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
//! Before timing, wsio's output is checked against the bare calls' (the
//! same compressed bytes, through the codec and the connection alike; the
//! same messages back).

use std::{hint::black_box, time::Instant};

use bytes::{Bytes, BytesMut};
use criterion::{
    BenchmarkId, Criterion, Throughput,
    measurement::{Measurement, ValueFormatter},
};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
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

/// Sends `msg` compressed and returns the frame's bytes (one transmit for
/// a message of these sizes).
fn connection_send(conn: &mut Connection, msg: &[u8]) -> Bytes {
    conn.send_slices(DataKind::Binary, b"", msg).unwrap();
    let Some(Transmit::Data(frame)) = conn.poll_transmit(Instant::now()) else {
        panic!("no frame")
    };
    frame
}

/// A server frame with RSV1 around a compressed payload.
fn server_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_header(
        &FrameHeader {
            fin: true,
            rsv: 0b100,
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
/// would read once per read is read once per run).
fn connection_receive(conn: &mut Connection, frame: &[u8], now: Instant) -> Message {
    conn.handle_input(now, frame);
    match conn.poll_event(Instant::now()) {
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
        for (k, frame) in frames.iter().enumerate() {
            let sent = connection_send(&mut tx, &msgs[k % msgs.len()]);
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
                black_box(connection_send(&mut conn, &msgs[k % msgs.len()]));
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
        let now = Instant::now();
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
        bench_input(c, prefix, input);
    }
}

// ----- thread CPU time as a criterion measurement ---------------------------

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
struct CpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds like criterion's wall-time formatter.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match ns {
            n if n < 1e3 => (1.0, "ns"),
            n if n < 1e6 => (1e-3, "µs"),
            n if n < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(&self, typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let per_iter = match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => b as f64,
            Throughput::Elements(e) => e as f64,
        };
        let units = ["  B/s", "KiB/s", "MiB/s", "GiB/s"];
        let typical_rate = per_iter * 1e9 / typical;
        let mut k = 0;
        while k < 3 && typical_rate >= 1024f64.powi(k as i32 + 1) {
            k += 1;
        }
        let denom = 1024f64.powi(k as i32);
        values
            .iter_mut()
            .for_each(|v| *v = per_iter * 1e9 / *v / denom);
        units[k]
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
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
