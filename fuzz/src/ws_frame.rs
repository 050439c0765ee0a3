//! The WebSocket frame codec, masking and close payloads.
//!
//! * `decode_header` on arbitrary bytes: a decoded header's length is within
//!   the input, every shorter prefix asks for more bytes, and re-encoding it
//!   decodes to the same header.
//! * An arbitrary `FrameHeader`, encoded then decoded, comes back unchanged
//!   (for a valid one) or is refused (control frames that are fragmented or
//!   over 125 bytes, lengths of 2^63 and more).
//! * `apply_mask` twice is the identity, matches the bytewise definition, and
//!   masking in two pieces at an arbitrary offset equals masking in one go.
//! * `CloseFrame::decode` / `encode` and `EncodedFrame` agree with the codec.

use arbitrary::Arbitrary;
use bytes::BytesMut;
use wsio::ws::{
    CloseCode, CloseFrame, EncodedFrame, FrameError, Message, OpCode,
    frame::{FrameHeader, MAX_HEADER_LEN, decode_header, encode_header, write_header},
    mask::apply_mask,
};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl From<Op> for OpCode {
    fn from(op: Op) -> OpCode {
        match op {
            Op::Continuation => OpCode::Continuation,
            Op::Text => OpCode::Text,
            Op::Binary => OpCode::Binary,
            Op::Close => OpCode::Close,
            Op::Ping => OpCode::Ping,
            Op::Pong => OpCode::Pong,
        }
    }
}

/// A local mirror of `FrameHeader` to derive `Arbitrary` on.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Header {
    fin: bool,
    rsv: u8,
    opcode: Op,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Picks a length near a boundary of the length forms instead of `len`.
    len_class: u8,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    header: Header,
    key: [u8; 4],
    offset: u16,
    split: u16,
    close_code: u16,
    close_reason: String,
    data: Vec<u8>,
}

/// Runs the checks on one input.
pub fn run(input: Input) {
    decode_arbitrary(&input.data);
    round_trip(input.header);
    masking(
        &input.data,
        input.key,
        usize::from(input.offset),
        usize::from(input.split),
    );
    close_payloads(&input.data, input.close_code, &input.close_reason);
    encoded_frame(&input.data);
}

fn decode_arbitrary(data: &[u8]) {
    match decode_header(data) {
        Ok(Some((h, n))) => {
            assert!(
                (2..=MAX_HEADER_LEN).contains(&n) && n <= data.len(),
                "length {n}"
            );
            let expect =
                2 + match data[1] & 0x7F {
                    127 => 8,
                    126 => 2,
                    _ => 0,
                } + if h.mask.is_some() { 4 } else { 0 };
            assert_eq!(n, expect, "header length for {h:?}");
            assert!(h.rsv < 8 && h.len < 1 << 63, "{h:?}");
            if h.opcode.is_control() {
                assert!(
                    h.fin && h.len <= 125,
                    "invalid control header accepted: {h:?}"
                );
            }
            // Every strict prefix asks for more bytes.
            for cut in 0..n {
                assert_eq!(decode_header(&data[..cut]), Ok(None), "prefix {cut} of {n}");
            }
            // Bytes after the header do not matter.
            assert_eq!(decode_header(&data[..n]), Ok(Some((h, n))));
            // Re-encoding (shortest form) decodes to the same header.
            let mut out = BytesMut::new();
            encode_header(&h, &mut out);
            assert!(out.len() <= n);
            assert_eq!(decode_header(&out), Ok(Some((h, out.len()))));
        }
        Ok(None) => assert!(
            data.len() < MAX_HEADER_LEN,
            "{} bytes not enough",
            data.len()
        ),
        Err(e) => {
            // An error is final: more bytes never change it.
            let mut more = data.to_vec();
            more.extend_from_slice(&[0xAA; MAX_HEADER_LEN]);
            assert_eq!(decode_header(&more), Err(e));
        }
    }
}

fn round_trip(a: Header) {
    let len = match a.len_class % 8 {
        0 => a.len,
        1 => a.len % 126,
        2 => 125 + a.len % 3,
        3 => 65535 + a.len % 3,
        4 => a.len % 65536,
        5 => (1 << 63) - 1 - a.len % 2,
        6 => (1 << 63) + a.len % 2,
        _ => a.len >> (a.len % 64),
    };
    let h = FrameHeader {
        fin: a.fin,
        rsv: a.rsv & 7,
        opcode: a.opcode.into(),
        mask: a.mask,
        len,
    };
    let mut out = BytesMut::new();
    encode_header(&h, &mut out);
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = write_header(&h, &mut buf);
    assert_eq!(&buf[..n], &out[..], "write_header and encode_header differ");

    let decoded = decode_header(&out);
    let control = h.opcode.is_control();
    if control && !h.fin {
        assert_eq!(decoded, Err(FrameError::FragmentedControl));
    } else if control && h.len > 125 {
        assert_eq!(decoded, Err(FrameError::ControlTooLong));
    } else if h.len >> 63 != 0 {
        assert_eq!(decoded, Err(FrameError::LengthOverflow));
    } else {
        assert_eq!(decoded, Ok(Some((h, out.len()))), "round trip");
        let shortest =
            2 + match h.len {
                0..=125 => 0,
                126..=65535 => 2,
                _ => 8,
            } + if h.mask.is_some() { 4 } else { 0 };
        assert_eq!(out.len(), shortest, "not the shortest length form");
        for cut in 0..out.len() {
            assert_eq!(decode_header(&out[..cut]), Ok(None));
        }
    }
}

fn masking(data: &[u8], key: [u8; 4], offset: usize, split: usize) {
    let mut once = data.to_vec();
    apply_mask(&mut once, key, offset);
    for (i, (m, d)) in once.iter().zip(data).enumerate() {
        assert_eq!(*m, d ^ key[(i + offset) % 4], "byte {i}");
    }
    // Twice is the identity.
    let mut twice = once.clone();
    apply_mask(&mut twice, key, offset);
    assert_eq!(twice, data, "mask twice");
    // In two pieces, the second resuming at its offset.
    let mut parts = data.to_vec();
    let (a, b) = parts.split_at_mut(split % (data.len() + 1));
    let alen = a.len();
    apply_mask(a, key, offset);
    apply_mask(b, key, offset + alen);
    assert_eq!(parts, once, "split at {alen}");
}

fn close_payloads(data: &[u8], code: u16, reason: &str) {
    // Decoding arbitrary payloads.
    let payload = &data[..data.len().min(125)];
    if let Ok(Some(f)) = CloseFrame::decode(payload) {
        assert!(f.code.is_valid_on_wire());
        assert_eq!(f.reason.as_bytes(), &payload[2..]);
        assert_eq!(&f.encode()[..], payload, "close payload round trip");
    }
    // Encoding arbitrary frames: at most 125 bytes, the reason cut at a
    // character boundary.
    let f = CloseFrame::new(CloseCode(code), reason);
    let enc = f.encode();
    assert!(enc.len() <= 125 && enc.len() >= 2);
    assert_eq!(u16::from_be_bytes([enc[0], enc[1]]), code);
    let cut = std::str::from_utf8(&enc[2..]).expect("reason cut inside a character");
    assert!(reason.starts_with(cut));
    if reason.len() <= 123 {
        assert_eq!(cut, reason);
    }
    if CloseCode(code).is_valid_on_wire() {
        assert_eq!(
            CloseFrame::decode(&enc),
            Ok(Some(CloseFrame::new(CloseCode(code), cut)))
        );
    } else {
        assert!(CloseFrame::decode(&enc).is_err());
    }
}

fn encoded_frame(data: &[u8]) {
    let msg = match std::str::from_utf8(data) {
        Ok(s) if data.first().is_some_and(|b| b & 1 == 0) => Message::text(s.to_owned()),
        _ => Message::binary(data.to_vec()),
    };
    let frame = EncodedFrame::new(&msg);
    let bytes = frame.as_bytes();
    let (h, n) = decode_header(bytes).expect("valid").expect("complete");
    let op = if matches!(msg, Message::Text(_)) {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    assert_eq!(
        (h.fin, h.rsv, h.opcode, h.mask, h.len),
        (true, 0, op, None, data.len() as u64)
    );
    assert_eq!(&bytes[n..], data);
}
