//! The frame codec (RFC 6455 section 5.2): plain functions over bytes.
//!
//! [`decode_header`] reads a header from the front of a buffer without
//! copying; [`encode_header`] writes one. Rules that depend on the connection
//! (who must mask, which RSV bits an extension owns, size limits) are checked
//! by [`Connection`](super::Connection), so this codec stays usable on its own.

use bytes::BytesMut;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation,
    /// Starts a text message.
    Text,
    /// Starts a binary message.
    Binary,
    /// Closes the connection.
    Close,
    /// Asks for a pong.
    Ping,
    /// Answers a ping.
    Pong,
}

impl OpCode {
    /// The opcode for the low four bits of the first header byte.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the final fragment of a message.
    pub fin: bool,
    /// The three RSV bits, in the low bits (RSV1 = 4).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key: present exactly when the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub len: u64,
}

/// Why a header is invalid whatever the connection; all are close code 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Opcodes 3–7 and 0xB–0xF are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// Control frames may not be fragmented (section 5.5).
    #[error("fragmented control frame")]
    FragmentedControl,
    /// Control frame payloads are at most 125 bytes (section 5.5).
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// The most significant bit of a 64-bit length must be 0 (section 5.2).
    #[error("64-bit payload length with the most significant bit set")]
    LengthOverflow,
}

/// The largest header: 2 bytes, an 8-byte length and a 4-byte key.
pub const MAX_HEADER_LEN: usize = 14;

/// Decodes the header at the front of `buf`: `Ok(None)` if more bytes are
/// needed, else the header and its length in bytes.
///
/// ```
/// use wsio::ws::frame::{decode_header, OpCode};
/// let (h, n) = decode_header(&[0x81, 0x05, b'H']).unwrap().unwrap();
/// assert_eq!((h.opcode, h.fin, h.len, h.mask, n), (OpCode::Text, true, 5, None, 2));
/// assert_eq!(decode_header(&[0x81]).unwrap(), None);
/// ```
#[inline]
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x7;
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(FrameError::ReservedOpcode(b0 & 0x0F))?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(FrameError::FragmentedControl);
        }
        if len7 > 125 {
            return Err(FrameError::ControlTooLong);
        }
    }
    let (len, mut pos) = match len7 {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let len = u64::from_be_bytes(a);
                if len >> 63 != 0 {
                    return Err(FrameError::LengthOverflow);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        match buf.get(pos..pos + 4) {
            Some(k) => {
                pos += 4;
                Some([k[0], k[1], k[2], k[3]])
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some((
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            len,
        },
        pos,
    )))
}

/// Appends the header for a frame to `out`, using the shortest length form.
///
/// ```
/// use bytes::BytesMut;
/// use wsio::ws::frame::{encode_header, FrameHeader, OpCode};
/// let mut out = BytesMut::new();
/// let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, len: 300 };
/// encode_header(&h, &mut out);
/// assert_eq!(&out[..], &[0x82, 126, 0x01, 0x2c]);
/// ```
#[inline]
pub fn encode_header(h: &FrameHeader, out: &mut BytesMut) {
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = write_header(h, &mut buf);
    // All of `buf`, then the excess cut off: a copy of fixed size compiles
    // to two moves, one of the header's own length to a call to `memcpy`,
    // which cost more than the rest of a small frame's header.
    let end = out.len() + n;
    out.extend_from_slice(&buf);
    out.truncate(end);
}

/// Writes the header into `buf`, returning its length.
#[inline]
pub fn write_header(h: &FrameHeader, buf: &mut [u8; MAX_HEADER_LEN]) -> usize {
    let (word, len) = header_word(h);
    buf.copy_from_slice(&word.to_le_bytes()[..MAX_HEADER_LEN]);
    len
}

/// The header as the low bytes of a little-endian word, and its length.
/// Built in a register and stored whole: a header stored a byte at a time
/// and then copied out is read back a word at a time, and the wider loads
/// wait for the narrow stores to retire (a store-forwarding stall that
/// cost a small frame's encoding a third of its time on AMD Zen 3).
#[inline(always)]
fn header_word(h: &FrameHeader) -> (u128, usize) {
    let b0 = u128::from((u8::from(h.fin) << 7) | ((h.rsv & 7) << 4) | h.opcode.as_u8());
    let mask_bit = if h.mask.is_some() { 0x80 } else { 0 };
    let (word, pos) = if h.len < 126 {
        (b0 | u128::from(mask_bit | h.len as u8) << 8, 2)
    } else if let Ok(l) = u16::try_from(h.len) {
        // Network byte order: the swapped value's low byte goes first.
        let len = u128::from(l.swap_bytes()) << 16;
        (b0 | u128::from(mask_bit | 126) << 8 | len, 4)
    } else {
        let len = u128::from(h.len.swap_bytes()) << 16;
        (b0 | u128::from(mask_bit | 127) << 8 | len, 10)
    };
    match h.mask {
        Some(k) => (
            word | u128::from(u32::from_le_bytes(k)) << (8 * pos),
            pos + 4,
        ),
        None => (word, pos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            len,
        }
    }

    /// The header as RFC 6455 section 5.2 draws it, a field at a time.
    fn reference_header(h: &FrameHeader) -> Vec<u8> {
        let mut out = vec![(u8::from(h.fin) << 7) | (h.rsv << 4) | h.opcode.as_u8()];
        let m = if h.mask.is_some() { 0x80 } else { 0 };
        match h.len {
            0..=125 => out.push(m | h.len as u8),
            126..=0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(h.len as u16).to_be_bytes());
            }
            _ => {
                out.push(m | 127);
                out.extend_from_slice(&h.len.to_be_bytes());
            }
        }
        out.extend_from_slice(&h.mask.unwrap_or_default()[..if h.mask.is_some() { 4 } else { 0 }]);
        out
    }

    #[test]
    fn headers_are_written_as_the_rfc_draws_them() {
        let lens = [
            0,
            1,
            125,
            126,
            127,
            300,
            0xffff,
            0x1_0000,
            0x0123_4567_89ab_cdef,
        ];
        let opcodes = [
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ];
        for len in lens {
            for opcode in opcodes {
                for (fin, rsv) in [(true, 0), (false, 0), (true, 5), (false, 7)] {
                    for mask in [None, Some([0xde, 0xad, 0xbe, 0xef])] {
                        let h = FrameHeader {
                            fin,
                            rsv,
                            opcode,
                            mask,
                            len,
                        };
                        let mut buf = [0u8; MAX_HEADER_LEN];
                        let n = write_header(&h, &mut buf);
                        assert_eq!(&buf[..n], &reference_header(&h)[..], "{h:?}");
                        assert!(
                            buf[n..].iter().all(|&b| b == 0),
                            "{h:?}: bytes past the header"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn round_trips_every_length_form() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = header(OpCode::Binary, len, mask);
                let mut out = BytesMut::new();
                encode_header(&h, &mut out);
                let (d, n) = decode_header(&out).unwrap().unwrap();
                assert_eq!((d, n), (h, out.len()));
                for cut in 0..out.len() {
                    assert_eq!(decode_header(&out[..cut]), Ok(None));
                }
            }
        }
    }

    #[test]
    fn invalid_headers() {
        assert_eq!(
            decode_header(&[0x83, 0]),
            Err(FrameError::ReservedOpcode(3))
        );
        assert_eq!(
            decode_header(&[0x09, 0]),
            Err(FrameError::FragmentedControl)
        );
        assert_eq!(decode_header(&[0x89, 126]), Err(FrameError::ControlTooLong));
        let mut big = vec![0x82, 127, 0x80];
        big.extend_from_slice(&[0; 7]);
        assert_eq!(decode_header(&big), Err(FrameError::LengthOverflow));
    }
}
