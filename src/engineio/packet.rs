//! Engine.IO v4 packets (engine.io-protocol, "Packet encoding") and the
//! long-polling payload that joins them with `\x1e`.

use std::borrow::Borrow;

use base64::{
    Engine as _, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use bytes::{BufMut, Bytes, BytesMut};

use crate::ws::Utf8Bytes;

/// The record separator between packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// Standard base64 as engine.io-parser writes it; padding optional on input.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A packet's type, with its wire digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: the handshake, server to client.
    Open,
    /// `1`: the transport should close.
    Close,
    /// `2`: heartbeat request (server to client in v4), or `2probe`.
    Ping,
    /// `3`: heartbeat answer, or `3probe`.
    Pong,
    /// `4`: application data.
    Message,
    /// `5`: the client switches to the probed transport.
    Upgrade,
    /// `6`: nothing; releases a pending poll during an upgrade.
    Noop,
}

impl PacketType {
    /// The wire digit.
    pub fn as_char(self) -> u8 {
        b'0' + self as u8
    }

    /// The type for a wire digit.
    pub fn from_char(c: u8) -> Option<PacketType> {
        Some(match c {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }
}

/// A packet's data: text, or binary (message packets only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Text (possibly empty).
    Text(Utf8Bytes),
    /// Bytes.
    Binary(Bytes),
}

impl Data {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Text(t) => t.as_bytes(),
            Data::Binary(b) => b,
        }
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&'static str> for Data {
    fn from(s: &'static str) -> Self {
        Data::Text(s.into())
    }
}

impl From<String> for Data {
    fn from(s: String) -> Self {
        Data::Text(s.into())
    }
}

impl From<Bytes> for Data {
    fn from(b: Bytes) -> Self {
        Data::Binary(b)
    }
}

impl From<Vec<u8>> for Data {
    fn from(b: Vec<u8>) -> Self {
        Data::Binary(b.into())
    }
}

/// One Engine.IO packet.
///
/// ```
/// use wsio::engineio::{Packet, PacketType};
/// let p = Packet::decode_text("4hello".into()).unwrap();
/// assert_eq!(p, Packet::message("hello"));
/// assert_eq!(Packet::decode_text("2probe".into()).unwrap().kind, PacketType::Ping);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The type.
    pub kind: PacketType,
    /// The data; binary only for [`PacketType::Message`].
    pub data: Data,
}

/// A packet or payload that cannot be decoded: the session ends with
/// `parse error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An empty packet.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type.
    #[error("unknown packet type {0:#x}")]
    UnknownType(u8),
    /// A `b` packet whose body is not base64.
    #[error("invalid base64 in a binary packet")]
    Base64,
    /// A payload that is not UTF-8.
    #[error("payload is not UTF-8")]
    Utf8,
}

impl Packet {
    /// A packet with no data.
    pub fn new(kind: PacketType) -> Self {
        Packet {
            kind,
            data: Data::Text(Utf8Bytes::default()),
        }
    }

    /// A message packet.
    pub fn message(data: impl Into<Data>) -> Self {
        Packet {
            kind: PacketType::Message,
            data: data.into(),
        }
    }

    /// A packet of `kind` with text data (`2probe`...).
    pub fn with_text(kind: PacketType, text: impl Into<Utf8Bytes>) -> Self {
        Packet {
            kind,
            data: Data::Text(text.into()),
        }
    }

    /// Decodes a text packet (a WebSocket text frame or one item of a
    /// polling payload): a type digit then text, or `b` then base64.
    pub fn decode_text(s: Utf8Bytes) -> Result<Packet, DecodeError> {
        let raw = s.as_bytes();
        let Some(&first) = raw.first() else {
            return Err(DecodeError::Empty);
        };
        if first == b'b' {
            let bin = B64.decode(&raw[1..]).map_err(|_| DecodeError::Base64)?;
            return Ok(Packet::message(Bytes::from(bin)));
        }
        let kind = PacketType::from_char(first).ok_or(DecodeError::UnknownType(first))?;
        // The first byte is ASCII, so the rest starts on a character.
        let data = s.slice(1..).ok_or(DecodeError::Utf8)?;
        Ok(Packet {
            kind,
            data: Data::Text(data),
        })
    }

    /// Decodes a binary WebSocket frame: always a message.
    pub fn decode_binary(b: Bytes) -> Packet {
        Packet::message(b)
    }

    /// Appends the packet as one item of a polling payload (binary as `b` +
    /// base64).
    pub fn encode_text(&self, out: &mut BytesMut) {
        match &self.data {
            Data::Binary(b) => {
                let start = out.len();
                out.put_u8(b'b');
                out.resize(
                    start + 1 + base64::encoded_len(b.len(), true).unwrap_or(0),
                    0,
                );
                let n = B64.encode_slice(b, &mut out[start + 1..]).unwrap_or(0);
                out.truncate(start + 1 + n);
            }
            Data::Text(t) => {
                out.reserve(1 + t.len());
                out.put_u8(self.kind.as_char());
                out.put_slice(t.as_bytes());
            }
        }
    }

    /// The length of the packet as one item of a polling payload (what
    /// [`encode_text`](Self::encode_text) appends).
    pub(crate) fn encoded_len(&self) -> usize {
        match &self.data {
            Data::Text(t) => 1 + t.len(),
            Data::Binary(b) => 1 + base64::encoded_len(b.len(), true).unwrap_or(usize::MAX / 2),
        }
    }
}

/// Encodes packets as a polling payload.
///
/// ```
/// use wsio::engineio::{Packet, encode_payload};
/// let p = encode_payload(&[Packet::message("a"), Packet::message(vec![1u8, 2, 3])]);
/// assert_eq!(&p[..], b"4a\x1ebAQID");
/// ```
pub fn encode_payload<P: Borrow<Packet>>(packets: &[P]) -> Bytes {
    let len = packets
        .iter()
        .fold(packets.len().saturating_sub(1), |n, p| {
            n.saturating_add(p.borrow().encoded_len())
        });
    let mut out = BytesMut::with_capacity(len);
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        p.borrow().encode_text(&mut out);
    }
    out.freeze()
}

/// Decodes a polling payload. As engine.io-parser does, decoding stops at
/// the first bad packet, which is returned as the error after the good ones.
///
/// ```
/// use wsio::engineio::{Packet, decode_payload};
/// let (ok, err) = decode_payload(bytes::Bytes::from_static(b"4a\x1ebAQID\x1e4b"));
/// assert_eq!(ok, [Packet::message("a"), Packet::message(vec![1u8, 2, 3]), Packet::message("b")]);
/// assert_eq!(err, None);
/// ```
pub fn decode_payload(payload: Bytes) -> (Vec<Packet>, Option<DecodeError>) {
    let Ok(text) = Utf8Bytes::try_from(payload) else {
        return (Vec::new(), Some(DecodeError::Utf8));
    };
    let raw = text.as_bytes();
    let mut packets = Vec::new();
    let mut start = 0;
    loop {
        let end = raw[start..]
            .iter()
            .position(|&b| b == SEPARATOR)
            .map_or(raw.len(), |i| start + i);
        // Separators are ASCII, so every piece starts and ends on a
        // character.
        let Some(piece) = text.slice(start..end) else {
            return (packets, Some(DecodeError::Utf8));
        };
        match Packet::decode_text(piece) {
            Ok(p) => packets.push(p),
            Err(e) => return (packets, Some(e)),
        }
        if end == raw.len() {
            return (packets, None);
        }
        start = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let packets = vec![
            Packet::new(PacketType::Ping),
            Packet::with_text(PacketType::Pong, "probe"),
            Packet::message("héllo \u{1e} world"),
            Packet::message(Bytes::new()),
            Packet::message(vec![0u8, 255, 7]),
            Packet::new(PacketType::Noop),
        ];
        for p in &packets {
            let mut out = BytesMut::new();
            p.encode_text(&mut out);
            let t = Utf8Bytes::try_from(out.freeze()).unwrap();
            assert_eq!(&Packet::decode_text(t).unwrap(), p);
        }
    }

    #[test]
    fn bad_packets() {
        assert_eq!(Packet::decode_text("".into()), Err(DecodeError::Empty));
        assert_eq!(
            Packet::decode_text("9".into()),
            Err(DecodeError::UnknownType(b'9'))
        );
        assert_eq!(Packet::decode_text("b!!".into()), Err(DecodeError::Base64));
        // Padding is optional, as Node's Buffer.from(.., "base64") allows.
        assert_eq!(
            Packet::decode_text("bAQ".into()).unwrap(),
            Packet::message(vec![1u8])
        );
        let (ok, err) = decode_payload(Bytes::from_static(b"4a\x1e\x1e4b"));
        assert_eq!((ok.len(), err), (1, Some(DecodeError::Empty)));
        assert_eq!(
            decode_payload(Bytes::from_static(b"4\xff")).1,
            Some(DecodeError::Utf8)
        );
    }
}
