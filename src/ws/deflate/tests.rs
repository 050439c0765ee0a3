//! The codec: the RFC 7692 examples, round trips, limits, release.

use bytes::BytesMut;

use super::*;
use crate::ws::frame::OpCode;
use crate::ws::{ProtocolError, Role};

fn p(snct: bool, cnct: bool, server_bits: u8, client_bits: u8) -> Params {
    Params {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

fn pair(params: &Params, config: &DeflateConfig, sender: Role) -> (Deflater, Inflater) {
    let receiver = match sender {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    (
        Deflater::new(sender, params, config),
        Inflater::new(receiver, params),
    )
}

fn compress(d: &mut Deflater, msg: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    d.compress(msg, &mut out).unwrap();
    out.to_vec()
}

fn inflate(i: &mut Inflater, payload: &[u8]) -> Result<Vec<u8>, InflateError> {
    let mut out = BytesMut::new();
    i.inflate(payload, true, 1 << 24, &mut out)?;
    Ok(out.to_vec())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

#[test]
fn rfc7692_examples() {
    let (mut d, mut i) = pair(&Params::default(), &DeflateConfig::default(), Role::Server);
    // 7.2.3.1: one compressed block, in one frame and in two.
    assert_eq!(compress(&mut d, b"Hello"), HELLO);
    assert_eq!(inflate(&mut i, &HELLO).unwrap(), b"Hello");
    // 7.2.3.2: the same message again, sharing the window.
    assert_eq!(compress(&mut d, b"Hello"), [0xf2, 0x00, 0x11, 0x00, 0x00]);
    assert_eq!(
        inflate(&mut i, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
        b"Hello"
    );
    let mut msg = BytesMut::new();
    i.inflate(&HELLO[..3], false, 100, &mut msg).unwrap();
    i.inflate(&HELLO[3..], true, 100, &mut msg).unwrap();
    assert_eq!(&msg[..], b"Hello");
    // 7.2.3.3: a stored block.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(inflate(&mut i, &stored).unwrap(), b"Hello");
    // 7.2.3.5: two blocks in one message.
    let two = hex("f248050000 00ffff cac9c90700".replace(' ', "").as_str());
    assert_eq!(inflate(&mut i, &two).unwrap(), b"Hello");
    // 7.2.3.4: a final block; what follows it in the message is ignored and
    // the next message starts a new stream.
    let fin = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(inflate(&mut i, &fin).unwrap(), b"Hello");
    let mut extra = fin.to_vec();
    extra.extend_from_slice(&[0xff, 0xff, 0xff]);
    assert_eq!(inflate(&mut i, &extra).unwrap(), b"Hello");
    assert_eq!(inflate(&mut i, &HELLO).unwrap(), b"Hello");
    // 7.2.3.6: an empty message is one byte, fresh or after other messages.
    assert_eq!(compress(&mut d, b""), [0x00]);
    assert_eq!(inflate(&mut i, &[0x00]).unwrap(), b"");
    let (mut fresh, _) = pair(&Params::default(), &DeflateConfig::default(), Role::Client);
    assert_eq!(compress(&mut fresh, b""), [0x00]);
}

#[test]
fn no_context_takeover_compresses_each_message_alone() {
    let params = p(true, true, 15, 15);
    for role in [Role::Server, Role::Client] {
        let (mut d, mut i) = pair(&params, &DeflateConfig::default(), role);
        for _ in 0..3 {
            assert_eq!(compress(&mut d, b"Hello"), HELLO);
            assert_eq!(inflate(&mut i, &HELLO).unwrap(), b"Hello");
        }
    }
    // Only the agreed direction drops its context.
    let (mut d, _) = pair(
        &p(true, false, 15, 15),
        &DeflateConfig::default(),
        Role::Client,
    );
    compress(&mut d, b"Hello");
    assert_ne!(compress(&mut d, b"Hello"), HELLO);
}

#[test]
fn node_zlib_interop() {
    // Node 20's zlib.createDeflateRaw({ windowBits }) with Z_SYNC_FLUSH, the
    // same for 8, 9 and 15 bits, then the same text again on one stream.
    let text = br#"{"type":"message","text":"Hello, Hello, Hello permessage-deflate","n":[1,2,3,1,2,3,1,2,3]}"#;
    let m1 = hex(concat!(
        "aa562aa92c4855b252ca4d2d2e4e4c4f55d2512a49ad2851b252f248cdc9c9d75140a6140a528b",
        "a0ea745352d372124b40eaf394aca20d758c748c7590c8d85a00000000ffff"
    ));
    let m2 = hex("aaa699c900000000ffff");
    let strip = |m: &[u8]| m[..m.len() - 4].to_vec();
    let (mut d, mut i) = pair(&Params::default(), &DeflateConfig::default(), Role::Client);
    assert_eq!(inflate(&mut i, &strip(&m1)).unwrap(), text);
    assert_eq!(inflate(&mut i, &strip(&m2)).unwrap(), text);
    // zlib-rs makes the same bytes as zlib here.
    assert_eq!(compress(&mut d, text), strip(&m1));
    assert_eq!(compress(&mut d, text), strip(&m2));
    for bits in [8, 9] {
        let (mut d, _) = pair(
            &p(false, false, bits, 15),
            &DeflateConfig::default(),
            Role::Server,
        );
        assert_eq!(compress(&mut d, text), strip(&m1), "{bits} bits");
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
    /// A message: text-like, repetitive or random bytes.
    fn message(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max as u64 + 1);
        let kind = self.below(3);
        let mut m = Vec::with_capacity(len);
        while m.len() < len {
            match kind {
                0 => {
                    let words: [&[u8]; 6] = [
                        b"{\"id\":",
                        b"\"text\":\"",
                        b"hello ",
                        b"world",
                        b"\"},",
                        b"42",
                    ];
                    m.extend_from_slice(words[self.below(6)]);
                }
                1 if m.len() > 8 && self.below(2) == 0 => {
                    let back = 1 + self.below(m.len().min(40_000) as u64);
                    let start = m.len() - back;
                    for k in 0..self.below(300) {
                        m.push(m[start + k % back]);
                    }
                }
                _ => m.push(self.next() as u8),
            }
        }
        m.truncate(len);
        m
    }
}

/// Inflates `data` one byte of output per call, so that every reference
/// back is read from the decoder's window, whose size is what it was made
/// with: zlib inflates references into the output of the same call without
/// checking them against the window.
fn decode_within(
    reference: &mut zlib_rs::Inflate,
    data: &[u8],
    max: usize,
) -> Result<Vec<u8>, zlib_rs::InflateError> {
    let mut out = Vec::new();
    let start = reference.total_in();
    loop {
        let consumed = (reference.total_in() - start) as usize;
        let mut byte = [0u8; 1];
        let before = reference.total_out();
        reference.decompress(
            &data[consumed..],
            &mut byte,
            zlib_rs::InflateFlush::SyncFlush,
        )?;
        if reference.total_out() == before {
            return Ok(out);
        }
        out.push(byte[0]);
        assert!(out.len() <= max, "more output than the message");
    }
}

#[test]
fn random_round_trips_every_window_both_roles() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for bits in 8..=15u8 {
        for no_ctx in [false, true] {
            for role in [Role::Server, Role::Client] {
                let params = p(no_ctx, no_ctx, bits, bits);
                let config = DeflateConfig::default().level(rng.below(10) as u32);
                let (mut d, mut i) = pair(&params, &config, role);
                // A reference decoder held to the agreed window: any
                // reference further back than 2^bits fails it.
                let mut reference = zlib_rs::Inflate::new(false, bits);
                for _ in 0..12 {
                    let max = if rng.below(4) == 0 { 70_000 } else { 3000 };
                    let msg = rng.message(max);
                    let c = compress(&mut d, &msg);
                    assert_eq!(
                        inflate(&mut i, &c).unwrap(),
                        msg,
                        "{bits} bits, no_ctx {no_ctx}"
                    );
                    let mut whole = c.clone();
                    whole.extend_from_slice(&[0, 0, 0xff, 0xff]);
                    let back = decode_within(&mut reference, &whole, msg.len() + 1)
                        .unwrap_or_else(|e| panic!("{bits} bits: {e:?}"));
                    assert_eq!(back, msg);
                    if no_ctx {
                        reference = zlib_rs::Inflate::new(false, bits);
                    }
                }
            }
        }
    }
}

#[test]
fn the_reference_decoder_catches_a_too_large_window() {
    // The check above can fail: 15-bit output refers too far back for 9.
    let mut rng = Rng(7);
    let block: Vec<u8> = (0..2000).map(|_| rng.next() as u8).collect();
    let mut msg = block.clone();
    msg.extend_from_slice(&block);
    let (mut d, _) = pair(&Params::default(), &DeflateConfig::default(), Role::Server);
    let mut c = compress(&mut d, &msg);
    c.extend_from_slice(&[0, 0, 0xff, 0xff]);
    assert!(decode_within(&mut zlib_rs::Inflate::new(false, 9), &c, msg.len()).is_err());
    assert!(decode_within(&mut zlib_rs::Inflate::new(false, 15), &c, msg.len()).is_ok());
}

#[test]
fn a_message_split_at_every_byte() {
    let mut rng = Rng(42);
    let mut msg: Vec<u8> = (0..300).map(|_| rng.next() as u8).collect();
    msg.extend_from_slice(&b"{\"event\":\"chat\",\"text\":\"hello hello hello\"}".repeat(40));
    let (mut d, _) = pair(&Params::default(), &DeflateConfig::default(), Role::Client);
    let c = compress(&mut d, &msg);
    for k in 0..=c.len() {
        let mut i = Inflater::new(Role::Server, &Params::default());
        let mut out = BytesMut::new();
        i.inflate(&c[..k], false, msg.len(), &mut out).unwrap();
        assert!(i.in_message());
        i.inflate(&c[k..], true, msg.len(), &mut out).unwrap();
        assert_eq!(&out[..], &msg[..], "split at {k}");
        assert!(!i.in_message());
    }
    // One byte per frame, then empty frames.
    let mut i = Inflater::new(Role::Server, &Params::default());
    let mut out = BytesMut::new();
    for b in &c {
        i.inflate(std::slice::from_ref(b), false, msg.len(), &mut out)
            .unwrap();
        i.inflate(&[], false, msg.len(), &mut out).unwrap();
    }
    i.inflate(&[], true, msg.len(), &mut out).unwrap();
    assert_eq!(&out[..], &msg[..]);
}

#[test]
fn fragments_compressed_in_parts() {
    let params = Params::default();
    let (mut d, mut i) = pair(&params, &DeflateConfig::default(), Role::Server);
    for parts in [
        &[&b"Hel"[..], b"lo"][..],
        &[b"Hello", b""],
        &[b"", b"", b"Hello"],
    ] {
        let mut msg = BytesMut::new();
        for (n, part) in parts.iter().enumerate() {
            let mut frame = BytesMut::new();
            d.compress_fragment(part, n + 1 == parts.len(), &mut frame)
                .unwrap();
            assert!(!d.release() || n + 1 == parts.len());
            i.inflate(&frame, n + 1 == parts.len(), 100, &mut msg)
                .unwrap();
        }
        assert_eq!(&msg[..], b"Hello");
    }
}

#[test]
fn a_zip_bomb_stops_at_the_limit() {
    let zeros = vec![0u8; 10 << 20];
    let (mut d, _) = pair(
        &Params::default(),
        &DeflateConfig::default().level(9),
        Role::Client,
    );
    let bomb = compress(&mut d, &zeros);
    assert!(bomb.len() < 12 << 10, "{} bytes", bomb.len());
    let limit = 1 << 20;
    for frame in [bomb.len(), 100, 1] {
        let mut i = Inflater::new(Role::Server, &Params::default());
        let mut out = BytesMut::new();
        let mut result = Ok(());
        let mut peak = 0;
        for (n, chunk) in bomb.chunks(frame).enumerate() {
            let fin = (n + 1) * frame >= bomb.len();
            result = i.inflate(chunk, fin, limit, &mut out);
            peak = peak.max(out.capacity());
            assert!(out.len() <= limit);
            if result.is_err() {
                break;
            }
        }
        let e = result.unwrap_err();
        assert_eq!(e, InflateError::TooLarge { limit });
        assert_eq!(e.close_code(), CloseCode::TOO_BIG);
        assert_eq!(out.len(), limit, "frames of {frame}");
        // BytesMut grows by doubling; never past twice the limit.
        assert!(peak <= 2 * limit, "capacity {peak}");
        // The inflater starts afresh for the next message.
        assert!(!i.in_message());
        assert_eq!(inflate(&mut i, &HELLO).unwrap(), b"Hello");
    }
}

#[test]
fn the_limit_is_exact_and_counts_the_whole_message() {
    let msg = b"0123456789".repeat(100);
    let (mut d, _) = pair(&Params::default(), &DeflateConfig::default(), Role::Server);
    let c = compress(&mut d, &msg);
    let run = |limit: usize| {
        let mut i = Inflater::new(Role::Client, &Params::default());
        let mut out = BytesMut::new();
        let (a, b) = c.split_at(c.len() / 2);
        i.inflate(a, false, limit, &mut out)
            .and_then(|()| i.inflate(b, true, limit, &mut out))
            .map(|()| out.len())
    };
    assert_eq!(run(1000), Ok(1000));
    assert_eq!(run(999), Err(InflateError::TooLarge { limit: 999 }));
    assert_eq!(run(0), Err(InflateError::TooLarge { limit: 0 }));
    // An empty message fits a zero limit.
    let mut i = Inflater::new(Role::Client, &Params::default());
    let mut out = BytesMut::new();
    assert_eq!(i.inflate(&[0x00], true, 0, &mut out), Ok(()));
    // The caller's earlier bytes in `out` do not count.
    let mut out = BytesMut::from(&b"prefix"[..]);
    i.inflate(&c, true, 1000, &mut out).unwrap();
    assert_eq!(out.len(), 1006);
}

#[test]
fn invalid_data_is_1007_and_the_next_message_decodes() {
    // The last refers back to a "Hello" this inflater never saw.
    for bad in [
        &[0xff, 0xff, 0xff][..],
        &[0x06],
        &[0xf2, 0x00, 0x11, 0x00, 0x00],
    ] {
        let mut i = Inflater::new(Role::Server, &Params::default());
        let mut out = BytesMut::new();
        let r = i.inflate(bad, true, 100, &mut out);
        let Err(e) = r else {
            panic!("{bad:?} gave {out:?}");
        };
        assert_eq!(
            (e, e.close_code()),
            (InflateError::InvalidData, CloseCode::INVALID_PAYLOAD),
            "{bad:?}"
        );
        assert!(!i.holds_state());
        assert_eq!(inflate(&mut i, &HELLO).unwrap(), b"Hello");
    }
}

#[test]
fn release_keeps_what_must_be_kept() {
    let config = DeflateConfig::default();
    // Context takeover: the deflater may let go, the inflater may not.
    let (mut d, mut i) = pair(&Params::default(), &config, Role::Server);
    assert!(!d.holds_state() && !i.holds_state());
    assert!(i.release(), "nothing inflated yet");
    let a = compress(&mut d, b"Hello");
    assert_eq!(inflate(&mut i, &a).unwrap(), b"Hello");
    assert!(d.holds_state() && i.holds_state());
    assert!(!i.release());
    assert!(i.holds_state());
    assert!(d.release());
    assert!(!d.holds_state());
    // The next message starts a new window; the peer decodes it all the same.
    let b = compress(&mut d, b"Hello");
    assert_eq!(b, HELLO);
    assert_eq!(inflate(&mut i, &b).unwrap(), b"Hello");
    // Mid-message neither lets go.
    let mut part = BytesMut::new();
    d.compress_fragment(b"Hel", false, &mut part).unwrap();
    assert!(!d.release());
    let mut msg = BytesMut::new();
    i.inflate(&part, false, 100, &mut msg).unwrap();
    assert!(!i.release());
    // Without the peer's context takeover the inflater lets go between messages.
    let nct = p(true, true, 15, 15);
    let (mut d, mut i) = pair(&nct, &config, Role::Client);
    for _ in 0..2 {
        let c = compress(&mut d, b"Hello");
        assert_eq!(inflate(&mut i, &c).unwrap(), b"Hello");
        assert!(i.release() && !i.holds_state());
        assert!(d.release());
    }
}

#[test]
fn threshold_and_rsv_bits() {
    let d = Deflater::new(Role::Server, &Params::default(), &DeflateConfig::default());
    assert!(!d.should_compress(1023));
    assert!(d.should_compress(1024));
    let d = Deflater::new(
        Role::Server,
        &Params::default(),
        &DeflateConfig::default().threshold(0),
    );
    assert!(d.should_compress(0));
    let d = Deflater::new(
        Role::Client,
        &p(false, false, 15, 8),
        &DeflateConfig::default(),
    );
    assert_eq!(d.window_bits(), 9);

    use OpCode::*;
    let cases = [
        (true, Text, 0b100, Ok(true)),
        (true, Binary, 0b100, Ok(true)),
        (true, Text, 0, Ok(false)),
        (true, Continuation, 0, Ok(false)),
        (true, Continuation, 0b100, Err(ProtocolError::ReservedBits)),
        (true, Close, 0b100, Err(ProtocolError::ReservedBits)),
        (true, Ping, 0b100, Err(ProtocolError::ReservedBits)),
        (true, Pong, 0b100, Err(ProtocolError::ReservedBits)),
        (true, Text, 0b010, Err(ProtocolError::ReservedBits)),
        (true, Text, 0b101, Err(ProtocolError::ReservedBits)),
        (false, Text, 0b100, Err(ProtocolError::ReservedBits)),
        (false, Text, 0, Ok(false)),
    ];
    for (negotiated, opcode, rsv, want) in cases {
        assert_eq!(
            frame_compressed(negotiated, opcode, rsv),
            want,
            "{negotiated} {opcode:?} {rsv:#b}"
        );
    }
}
