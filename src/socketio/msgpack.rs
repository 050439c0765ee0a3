//! The msgpack parser: Socket.IO packets as `socket.io-msgpack-parser`
//! 3.0.2 writes and reads them (msgpack by notepack.io 2.2.0), and
//! [`Parser`], the choice between it and the default parser that a
//! server or client makes per instance.
//!
//! Each packet is one binary Engine.IO message holding one msgpack map:
//! `type` (0–4), `nsp`, `data` and, on events and acks that use one, `id`.
//! Binary values sit inline in `data`: no attachments, no placeholders.
//!
//! ```
//! use wsio::socketio::{Packet, Value, msgpack};
//! let p = Packet::Event { nsp: "/".into(), id: Some(1), name: "hi".into(), args: vec![Value::Binary(vec![7u8].into())] };
//! let bytes = msgpack::encode(&p);
//! // {"type":2,"data":["hi",<bin 07>],"id":1,"nsp":"/"}
//! assert_eq!(&bytes[..], b"\x84\xa4type\x02\xa4data\x92\xa2hi\xc4\x01\x07\xa2id\x01\xa3nsp\xa1/");
//! assert_eq!(msgpack::decode(&bytes), Ok(p));
//! ```
//!
//! Decoding takes what the official decoder takes, as JavaScript sees
//! it, and makes the same checks:
//!
//! - Every msgpack type notepack.io reads. Integers of any width stay
//!   integers (`uint 64` beyond 2^53 exact); float 32 widens to a double;
//!   malformed UTF-8 gets U+FFFD, as Node decodes it; bin and ext type 0
//!   are binary, kept as slices of the message; `undefined` (fixext 1 of
//!   type 0) is an absent `data` or `id`, a member JSON would leave out,
//!   an array element JSON would write as `null`; a notepack.io date
//!   (fixext 8 of type 0) is the ISO string JSON writes for it; any other
//!   extension is `[type, bytes]`. Map keys that are numbers, booleans or
//!   nil take the names JavaScript gives them; `__proto__` members vanish;
//!   a repeated key keeps its first place and its last value.
//! - The packet: `type` an integer 0–4, `nsp` a string, `data` absent or
//!   a map for CONNECT, absent for DISCONNECT, a string or map for
//!   CONNECT_ERROR, an array for EVENT and ACK, `id` absent or an integer;
//!   other members (the official client adds `options`) are ignored.
//! - Stricter, as the default parser: an event's first element is a name
//!   that is not reserved, an ack has an id, an event's or ack's id fits a
//!   `u64`. Also refused: map keys JavaScript would spell by converting an
//!   array, map or binary, packet members that only a `__proto__` member
//!   provides, and nesting deeper than 127 levels inside `data` (the JSON
//!   parser's limit). A declared length the rest of the message cannot
//!   hold is refused before anything is allocated (notepack.io allocates
//!   an ext 32's buffer first).
//!
//! Encoding gives the bytes the official server sends for the same packet
//! (member order in [`encode`]), binary as msgpack bin (a Node `Buffer`).
//! Two of its packets hold what [`Value`](super::Value) cannot: its
//! CONNECT answer without connection state recovery is
//! `{sid, pid: undefined}` (wsio sends the `data` it is given, `{sid}`),
//! and whole doubles from 2^64 up, which it wraps (wsio keeps them).

mod decode;
mod encode;
pub(super) mod error;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use super::packet::{self, Body, DecodeError, Decoder, Packet};
use crate::engineio::{self, Data, SharedPacket};
pub use error::MsgpackError;

/// Encodes a packet into its one binary message.
///
/// The map's members come in the order the official server (`socket.io`
/// 4.8) creates them, so the bytes are the ones it would send:
///
/// | packet | members |
/// |---|---|
/// | CONNECT | `type`, `data`, `nsp`; without data, `data` is `undefined` (`d4 00 00`), as the official client sends it |
/// | DISCONNECT | `type`, `nsp` |
/// | EVENT | `type`, `data`, `id` (when set), `nsp` |
/// | ACK | `id`, `type`, `data`, `nsp` |
/// | CONNECT_ERROR | `type`, `nsp`, `data`, as for a refused namespace |
///
/// Numbers take the smallest integer form when whole (`3.0` is `03`, as
/// JavaScript cannot tell them apart) and float 64 otherwise; whole
/// doubles beyond 64-bit integers stay float 64, where notepack.io would
/// write a wrapped integer. Object keys come as `Object.keys` lists them:
/// array indexes ascending first. The official client orders its packets
/// differently (ACK: `type`, `id`, `data`, `nsp`) and adds `options` to
/// events; the official's middleware refusals put `data` before `nsp`;
/// receivers read members by name.
pub fn encode(packet: &Packet) -> Bytes {
    let (kind, nsp, id, body) = packet.parts();
    encode_parts(kind, nsp, id, body)
}

/// [`encode`] from a packet's borrowed parts (see `Packet::parts`).
pub(crate) fn encode_parts(kind: u8, nsp: &str, id: Option<u64>, body: Body<'_>) -> Bytes {
    let mut out = Vec::new();
    encode::encode_into(kind, nsp, id, body, &mut out);
    Bytes::from(out)
}

/// Decodes one binary message into a packet (see the module docs for
/// what is accepted). Binary values are slices of `message`.
pub fn decode(message: &Bytes) -> Result<Packet, DecodeError> {
    decode::decode(message)
}

/// One msgpack value filling the whole message, as notepack.io 3 (the
/// Redis adapter's) reads it: as [`decode`] reads a packet's values, and a
/// msgpack timestamp is the ISO string JSON writes for the `Date` it
/// becomes. `None` is `undefined`.
pub(crate) fn decode_value(message: &Bytes) -> Result<Option<super::Value>, MsgpackError> {
    decode::value(message)
}

/// The writers of [`encode`], for other messages of notepack.io values
/// (the Redis adapter's): its integers, strings, binary, arrays and maps.
pub(crate) use encode::{put_array_len, put_map_len, put_number, put_str, put_value};

/// Which Socket.IO parser an instance speaks; both ends must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Parser {
    /// `socket.io-parser`: a text message of JSON, then one binary
    /// message per attachment.
    #[default]
    Default,
    /// `socket.io-msgpack-parser`: one binary message per packet.
    Msgpack,
}

/// A packet encoded by a [`Parser`]: the Engine.IO messages that carry
/// it, to be sent in order and all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// The default parser's text message and its attachments.
    Text {
        /// The packet's text.
        text: String,
        /// One binary message each, after the text.
        attachments: Vec<Bytes>,
    },
    /// The msgpack parser's one binary message.
    Binary(Bytes),
}

impl Encoded {
    /// The messages, in order.
    pub fn into_messages(self) -> Vec<Data> {
        match self {
            Encoded::Text { text, attachments } => std::iter::once(Data::from(text))
                .chain(attachments.into_iter().map(Data::Binary))
                .collect(),
            Encoded::Binary(b) => vec![Data::Binary(b)],
        }
    }
}

impl Parser {
    /// Encodes a packet.
    pub fn encode(self, packet: &Packet) -> Encoded {
        let (kind, nsp, id, body) = packet.parts();
        self.encode_parts(kind, nsp, id, body)
    }

    /// [`Parser::encode`] from a packet's borrowed parts.
    pub(crate) fn encode_parts(
        self,
        kind: u8,
        nsp: &str,
        id: Option<u64>,
        body: Body<'_>,
    ) -> Encoded {
        match self {
            Parser::Default => {
                let mut text = String::new();
                let mut attachments = Vec::new();
                packet::encode_into(kind, nsp, id, body, &mut text, &mut attachments);
                Encoded::Text { text, attachments }
            }
            Parser::Msgpack => Encoded::Binary(encode_parts(kind, nsp, id, body)),
        }
    }

    /// [`Parser::encode_parts`] once for any number of recipients: each
    /// message is framed once, and every recipient's transport shares it.
    pub(crate) fn encode_shared(
        self,
        kind: u8,
        nsp: &str,
        id: Option<u64>,
        body: Body<'_>,
    ) -> Vec<SharedPacket> {
        self.encode_parts(kind, nsp, id, body)
            .into_messages()
            .into_iter()
            .map(|m| SharedPacket::new(engineio::Packet::message(m)))
            .collect()
    }

    /// [`Parser::encode_parts`] for one recipient, into `scratch` where the
    /// parser allows: a default-parser packet without attachments comes
    /// back as text borrowed from it, so a caller that keeps `scratch`
    /// between packets encodes them without allocating.
    pub(crate) fn encode_reusing<'s>(
        self,
        kind: u8,
        nsp: &str,
        id: Option<u64>,
        body: Body<'_>,
        scratch: &'s mut String,
    ) -> Reused<'s> {
        match self {
            Parser::Default => {
                scratch.clear();
                let mut attachments = Vec::new();
                packet::encode_into(kind, nsp, id, body, scratch, &mut attachments);
                if attachments.is_empty() {
                    return Reused::Text(scratch.as_str());
                }
                let text = Data::from(scratch.as_str().to_owned());
                Reused::Messages(
                    std::iter::once(text)
                        .chain(attachments.into_iter().map(Data::Binary))
                        .map(engineio::Packet::message)
                        .collect(),
                )
            }
            Parser::Msgpack => Reused::Messages(vec![engineio::Packet::message(Data::Binary(
                encode_parts(kind, nsp, id, body),
            ))]),
        }
    }

    /// A decoder for one connection's messages; `max_attachments` bounds
    /// the default parser's binary packets.
    pub fn decoder(self, max_attachments: usize) -> MessageDecoder {
        MessageDecoder(match self {
            Parser::Default => Inner::Default(Decoder::new(max_attachments)),
            Parser::Msgpack => Inner::Msgpack,
        })
    }
}

/// A packet encoded by [`Parser::encode_reusing`].
#[derive(Debug)]
pub(crate) enum Reused<'s> {
    /// One text message, borrowed from the caller's buffer.
    Text(&'s str),
    /// The messages, in order, to be sent all or none.
    Messages(Vec<engineio::Packet>),
}

/// Turns one connection's Engine.IO messages into packets, with the
/// parser it was made for (see [`Parser::decoder`]).
///
/// ```
/// use wsio::{engineio::Data, socketio::{Packet, msgpack::Parser}};
/// let mut d = Parser::Default.decoder(10);
/// let p = d.decode(Data::from("2[\"hi\"]")).unwrap().unwrap();
/// let mut m = Parser::Msgpack.decoder(10);
/// for msg in Parser::Msgpack.encode(&p).into_messages() {
///     assert_eq!(m.decode(msg), Ok(Some(p.clone())));
/// }
/// ```
#[derive(Debug)]
pub struct MessageDecoder(Inner);

#[derive(Debug)]
enum Inner {
    Default(Decoder),
    Msgpack,
}

impl MessageDecoder {
    /// Decodes one message: `Ok(None)` while the default parser waits for
    /// attachments. After an error the connection must be closed.
    pub fn decode(&mut self, message: Data) -> Result<Option<Packet>, DecodeError> {
        match (&mut self.0, message) {
            (Inner::Default(d), m) => d.decode(m),
            (Inner::Msgpack, Data::Binary(b)) => decode(&b).map(Some),
            (Inner::Msgpack, Data::Text(_)) => Err(DecodeError::TextMessage),
        }
    }

    /// Whether a packet is waiting for attachments.
    pub fn is_waiting(&self) -> bool {
        match &self.0 {
            Inner::Default(d) => d.is_waiting(),
            Inner::Msgpack => false,
        }
    }

    /// The parser this decoder reads.
    pub fn parser(&self) -> Parser {
        match self.0 {
            Inner::Default(_) => Parser::Default,
            Inner::Msgpack => Parser::Msgpack,
        }
    }
}
