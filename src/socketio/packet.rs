//! Socket.IO v5 packets (socket.io-protocol, "Packet format"):
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`, followed, for
//! binary packets, by one Engine.IO binary message per attachment.

use std::{borrow::Cow, fmt::Write as _};

use bytes::Bytes;

use super::value::{Value, write_json};
use crate::engineio::Data;

/// Event names the protocol reserves; a client may not emit them
/// (CVE-2024-38355 crashed servers through `42["error"]`-style packets
/// reaching reserved listeners).
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Refuses a reserved event name with the caller's error.
pub(crate) fn check_event_name<E>(name: &str, reserved: impl FnOnce(String) -> E) -> Result<(), E> {
    if RESERVED_EVENTS.contains(&name) {
        Err(reserved(name.to_owned()))
    } else {
        Ok(())
    }
}

/// One Socket.IO packet, with binary data resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// `0`: join a namespace, with the client's auth payload (client to
    /// server), or the answer with the socket id (server to client).
    Connect {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// The payload: an object, or none.
        data: Option<Value>,
    },
    /// `1`: leave a namespace.
    Disconnect {
        /// The namespace.
        nsp: Cow<'static, str>,
    },
    /// `2` or `5`: an event.
    Event {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// The ack id, if the sender wants an answer.
        id: Option<u64>,
        /// The event name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
    },
    /// `3` or `6`: the answer to an event.
    Ack {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// The id of the event answered.
        id: u64,
        /// The answer's arguments.
        args: Vec<Value>,
    },
    /// `4`: a namespace connection was refused.
    ConnectError {
        /// The namespace.
        nsp: Cow<'static, str>,
        /// Usually `{"message": ..., "data": ...}`.
        data: Value,
    },
}

impl Packet {
    /// The namespace.
    pub fn nsp(&self) -> &str {
        match self {
            Packet::Connect { nsp, .. }
            | Packet::Disconnect { nsp }
            | Packet::Event { nsp, .. }
            | Packet::Ack { nsp, .. }
            | Packet::ConnectError { nsp, .. } => nsp,
        }
    }

    /// Encodes the packet: the text message, then the attachments.
    ///
    /// ```
    /// use wsio::socketio::{Packet, Value};
    /// let p = Packet::Event { nsp: "/chat".into(), id: Some(12), name: "hi".into(), args: vec![Value::Binary(vec![1u8].into())] };
    /// let (text, att) = p.encode();
    /// assert_eq!(text, r#"51-/chat,12["hi",{"_placeholder":true,"num":0}]"#);
    /// assert_eq!(att.len(), 1);
    /// ```
    pub fn encode(&self) -> (String, Vec<Bytes>) {
        let mut text = String::new();
        let mut attachments = Vec::new();
        let (kind, nsp, id, body) = self.parts();
        encode_into(kind, nsp, id, body, &mut text, &mut attachments);
        (text, attachments)
    }

    /// The pieces [`encode_into`] takes: plain type, namespace, ack id and
    /// what follows the header.
    pub(crate) fn parts(&self) -> (u8, &str, Option<u64>, Body<'_>) {
        match self {
            Packet::Connect { nsp, data } => {
                (0, nsp, None, data.as_ref().map_or(Body::Empty, Body::Json))
            }
            Packet::Disconnect { nsp } => (1, nsp, None, Body::Empty),
            Packet::Event {
                nsp,
                id,
                name,
                args,
            } => (2, nsp, *id, Body::Event(name, args)),
            Packet::Ack { nsp, id, args } => (3, nsp, Some(*id), Body::Args(args)),
            Packet::ConnectError { nsp, data } => (4, nsp, None, Body::Json(data)),
        }
    }
}

/// What follows a packet's header, borrowed, so that a packet can be
/// encoded straight from the caller's arguments without building a
/// [`Packet`] (and copying its namespace and event name) first.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// Nothing (connect without auth, disconnect).
    Empty,
    /// One JSON value; binary leaves become `null`.
    Json(&'a Value),
    /// An event: the name, then the arguments.
    Event(&'a str, &'a [Value]),
    /// An ack's arguments.
    Args(&'a [Value]),
}

/// Appends a packet's text to `text` and its binary leaves to
/// `attachments`. `kind` is the plain type (0-4): an event or ack with
/// binary leaves becomes 5 or 6.
pub(crate) fn encode_into(
    kind: u8,
    nsp: &str,
    id: Option<u64>,
    body: Body<'_>,
    text: &mut String,
    attachments: &mut Vec<Bytes>,
) {
    // The header (type, attachment count, namespace, id) comes before the
    // JSON, and the count is known only once the JSON is written: count
    // the binary leaves first, so everything goes into one string sized
    // once.
    let (binaries, hint) = match body {
        Body::Empty => (0, 0),
        Body::Json(v) => (0, v.size_hint()),
        Body::Event(name, args) => (
            args.iter().map(Value::binary_count).sum(),
            name.len() + 8 + args.iter().map(Value::size_hint).sum::<usize>(),
        ),
        Body::Args(args) => (
            args.iter().map(Value::binary_count).sum(),
            4 + args.iter().map(Value::size_hint).sum::<usize>(),
        ),
    };
    text.reserve(32 + nsp.len() + hint);
    text.push(char::from(
        b'0' + if binaries > 0 { kind + 3 } else { kind },
    ));
    if binaries > 0 {
        let _ = write!(text, "{binaries}-");
    }
    if nsp != "/" {
        text.push_str(nsp);
        text.push(',');
    }
    if let Some(id) = id {
        let _ = write!(text, "{id}");
    }
    attachments.reserve(binaries);
    match body {
        Body::Empty => {}
        Body::Json(v) => write_json(v, text, &mut None),
        Body::Event(name, args) => {
            text.push('[');
            super::value::write_string(name, text);
            for a in args {
                text.push(',');
                write_json(a, text, &mut Some(&mut *attachments));
            }
            text.push(']');
        }
        Body::Args(args) => {
            text.push('[');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                write_json(a, text, &mut Some(&mut *attachments));
            }
            text.push(']');
        }
    }
}

/// Why a packet cannot be decoded; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The first character (msgpack: the `type` member) is not a packet
    /// type.
    #[error("unknown packet type")]
    UnknownType,
    /// The attachment count is missing, not a number, zero, or not
    /// followed by `-` (socketioxide #357).
    #[error("illegal attachment count")]
    BadAttachments,
    /// More attachments than the configured limit.
    #[error("too many attachments")]
    TooManyAttachments,
    /// The ack id does not fit in 64 bits (msgpack: is not a whole
    /// number, or an event's or ack's is not a `u64`).
    #[error("invalid ack id")]
    BadAckId,
    /// The JSON does not parse.
    #[error("invalid JSON")]
    BadJson,
    /// Valid JSON of the wrong shape for the packet type (an event that is
    /// not a non-empty array starting with a string, a reserved event
    /// name, a payload on a disconnect...).
    #[error("invalid payload")]
    BadPayload,
    /// A placeholder refers to a missing attachment.
    #[error("illegal attachments")]
    BadPlaceholder,
    /// A binary message arrived with no attachments expected.
    #[error("unexpected binary message")]
    UnexpectedBinary,
    /// A text message arrived while attachments were expected.
    #[error("text message while attachments were expected")]
    UnexpectedText,
    /// A text message reached the msgpack parser, which reads binary
    /// messages only.
    #[error("text message to the msgpack parser")]
    TextMessage,
    /// A binary message that is not one msgpack map.
    #[error("invalid msgpack: {0}")]
    Msgpack(#[from] super::msgpack::error::MsgpackError),
    /// A msgpack packet whose `nsp` is missing or not a string.
    #[error("invalid namespace")]
    BadNamespace,
}

#[derive(Debug)]
struct PendingBinary {
    kind: u8,
    nsp: Cow<'static, str>,
    id: Option<u64>,
    json: String,
    expected: usize,
    attachments: Vec<Bytes>,
}

/// Decodes the packets of one connection, reassembling binary packets from
/// their attachments.
///
/// ```
/// use wsio::socketio::{Decoder, Packet, Value};
/// let mut d = Decoder::new(10);
/// assert_eq!(d.decode_text(r#"51-["up",{"_placeholder":true,"num":0}]"#), Ok(None));
/// let p = d.decode_binary(bytes::Bytes::from_static(b"\x01")).unwrap().unwrap();
/// assert!(matches!(p, Packet::Event { ref args, .. } if args[0] == Value::Binary(bytes::Bytes::from_static(b"\x01"))));
/// ```
#[derive(Debug)]
pub struct Decoder {
    max_attachments: usize,
    pending: Option<PendingBinary>,
}

impl Decoder {
    /// A decoder accepting at most `max_attachments` per packet.
    pub fn new(max_attachments: usize) -> Self {
        Decoder {
            max_attachments,
            pending: None,
        }
    }

    /// Whether a binary packet is waiting for attachments.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Decodes a text message: `Ok(None)` if it starts a binary packet
    /// whose attachments follow.
    pub fn decode_text(&mut self, s: &str) -> Result<Option<Packet>, DecodeError> {
        if self.pending.is_some() {
            return Err(DecodeError::UnexpectedText);
        }
        let b = s.as_bytes();
        let kind = match b.first() {
            Some(c @ b'0'..=b'6') => c - b'0',
            _ => return Err(DecodeError::UnknownType),
        };
        let mut i = 1;
        let mut attachments = 0usize;
        if kind == 5 || kind == 6 {
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start || i - start > 6 || b.get(i) != Some(&b'-') {
                return Err(DecodeError::BadAttachments);
            }
            attachments = s[start..i]
                .parse()
                .map_err(|_| DecodeError::BadAttachments)?;
            if attachments == 0 {
                return Err(DecodeError::BadAttachments);
            }
            if attachments > self.max_attachments {
                return Err(DecodeError::TooManyAttachments);
            }
            i += 1;
        }
        let nsp = if b.get(i) == Some(&b'/') {
            let end = b[i..]
                .iter()
                .position(|&c| c == b',')
                .map_or(b.len(), |p| i + p);
            let nsp = Cow::Owned(s[i..end].to_owned());
            i = (end + 1).min(b.len());
            nsp
        } else {
            Cow::Borrowed("/")
        };
        let mut id = None;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i > start {
            id = Some(
                s[start..i]
                    .parse::<u64>()
                    .map_err(|_| DecodeError::BadAckId)?,
            );
        }
        let json = &s[i..];
        if attachments > 0 {
            self.pending = Some(PendingBinary {
                kind,
                nsp,
                id,
                json: json.to_owned(),
                expected: attachments,
                attachments: Vec::with_capacity(attachments),
            });
            return Ok(None);
        }
        build(kind, nsp, id, json, &[]).map(Some)
    }

    /// Decodes an Engine.IO message, text or binary.
    pub(crate) fn decode(&mut self, data: Data) -> Result<Option<Packet>, DecodeError> {
        match data {
            Data::Text(t) => self.decode_text(t.as_str()),
            Data::Binary(b) => self.decode_binary(b),
        }
    }

    /// Decodes a binary message: an attachment of the pending packet;
    /// the packet once all have arrived.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, DecodeError> {
        let Some(p) = self.pending.as_mut() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        p.attachments.push(data);
        if p.attachments.len() < p.expected {
            return Ok(None);
        }
        let Some(p) = self.pending.take() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        build(p.kind, p.nsp, p.id, &p.json, &p.attachments).map(Some)
    }
}

fn parse(json: &str) -> Result<Option<Value>, DecodeError> {
    if json.is_empty() {
        return Ok(None);
    }
    Value::from_json(json)
        .map(Some)
        .map_err(|_| DecodeError::BadJson)
}

fn build(
    kind: u8,
    nsp: Cow<'static, str>,
    id: Option<u64>,
    json: &str,
    attachments: &[Bytes],
) -> Result<Packet, DecodeError> {
    let mut data = parse(json)?;
    if !attachments.is_empty() {
        if let Some(d) = data.as_mut() {
            d.resolve_placeholders(attachments)
                .map_err(|_| DecodeError::BadPlaceholder)?;
        }
    }
    match kind {
        0 => match data {
            None | Some(Value::Object(_)) => Ok(Packet::Connect { nsp, data }),
            _ => Err(DecodeError::BadPayload),
        },
        1 => match data {
            None => Ok(Packet::Disconnect { nsp }),
            _ => Err(DecodeError::BadPayload),
        },
        2 | 5 => match data {
            Some(Value::Array(mut a)) => match a.first() {
                Some(Value::String(name)) if !RESERVED_EVENTS.contains(&name.as_str()) => {
                    let Value::String(name) = a.remove(0) else {
                        return Err(DecodeError::BadPayload);
                    };
                    Ok(Packet::Event {
                        nsp,
                        id,
                        name,
                        args: a,
                    })
                }
                _ => Err(DecodeError::BadPayload),
            },
            _ => Err(DecodeError::BadPayload),
        },
        3 | 6 => match (data, id) {
            (Some(Value::Array(args)), Some(id)) => Ok(Packet::Ack { nsp, id, args }),
            _ => Err(DecodeError::BadPayload),
        },
        4 => match data {
            Some(d @ (Value::Object(_) | Value::String(_))) => {
                Ok(Packet::ConnectError { nsp, data: d })
            }
            _ => Err(DecodeError::BadPayload),
        },
        _ => Err(DecodeError::UnknownType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Result<Option<Packet>, DecodeError> {
        Decoder::new(10).decode_text(s)
    }

    #[test]
    fn round_trips_the_protocol_examples() {
        let cases = [
            "0",
            r#"0{"token":"123"}"#,
            "0/admin,",
            r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            "1/admin,",
            r#"2["hello",1]"#,
            r#"2/admin,456["project:delete",123]"#,
            "3/admin,456[]",
            r#"4{"message":"Not authorized"}"#,
        ];
        for c in cases {
            let p = dec(c).unwrap().unwrap();
            assert_eq!(p.encode().0, c, "{c}");
        }
    }

    #[test]
    fn binary_round_trip() {
        let text = r#"52-/admin,456["evt",{"_placeholder":true,"num":0},{"a":{"_placeholder":true,"num":1}}]"#;
        let mut d = Decoder::new(10);
        assert_eq!(d.decode_text(text), Ok(None));
        assert_eq!(d.decode_binary(Bytes::from_static(b"x")), Ok(None));
        let p = d.decode_binary(Bytes::from_static(b"")).unwrap().unwrap();
        let (t, att) = p.encode();
        assert_eq!(t, text);
        assert_eq!(att, [Bytes::from_static(b"x"), Bytes::new()]);
        assert!(!d.is_waiting());
    }

    #[test]
    fn invalid_packets() {
        use DecodeError::*;
        let cases: &[(&str, DecodeError)] = &[
            ("", UnknownType),
            ("7", UnknownType),
            ("abc", UnknownType),
            ("2{}", BadPayload),
            ("2[]", BadPayload),
            (r#"2[1,"x"]"#, BadPayload),
            (r#"2["connect"]"#, BadPayload),
            (r#"2["disconnecting"]"#, BadPayload),
            ("2abc[\"x\"]", BadJson),
            ("2[\"x\"", BadJson),
            ("1{}", BadPayload),
            ("0[]", BadPayload),
            ("3[1]", BadPayload),
            ("399999999999999999999[1]", BadAckId),
            ("5[\"x\"]", BadAttachments),
            ("51[\"x\"]", BadAttachments),
            ("50-[\"x\"]", BadAttachments),
            ("511-[\"x\"]", TooManyAttachments),
            ("4[1]", BadPayload),
        ];
        for (input, want) in cases {
            assert_eq!(dec(input), Err(want.clone()), "{input}");
        }
        let mut d = Decoder::new(10);
        assert_eq!(d.decode_binary(Bytes::new()), Err(UnexpectedBinary));
        d.decode_text(r#"51-["x",{"_placeholder":true,"num":1}]"#)
            .unwrap();
        assert_eq!(d.decode_text("2[\"y\"]"), Err(UnexpectedText));
        let mut d = Decoder::new(10);
        d.decode_text(r#"51-["x",{"_placeholder":true,"num":1}]"#)
            .unwrap();
        assert_eq!(d.decode_binary(Bytes::new()), Err(BadPlaceholder));
    }

    #[test]
    fn nesting_is_limited() {
        // serde_json's recursion limit (128) bounds the depth, so deeply
        // nested input cannot exhaust the stack.
        let deep = |n: usize| format!("2[\"x\",{}{}]", "[".repeat(n), "]".repeat(n));
        assert!(matches!(dec(&deep(100)), Ok(Some(Packet::Event { .. }))));
        assert_eq!(dec(&deep(10_000)), Err(DecodeError::BadJson));
    }

    #[test]
    fn namespace_without_comma_and_ids() {
        assert_eq!(
            dec("0/random").unwrap(),
            Some(Packet::Connect {
                nsp: "/random".into(),
                data: None
            })
        );
        let p = dec(r#"2/x,0["a"]"#).unwrap().unwrap();
        assert!(matches!(p, Packet::Event { id: Some(0), .. }));
    }
}
