//! WebSocket (RFC 6455): handshake, frames, and the per-connection machine.
//!
//! [`Connection`] is one end of one WebSocket, client or server. It consumes
//! bytes and time and produces bytes and [`Event`]s; see its docs for the run
//! loop. The codec pieces ([`frame`], [`mask`], [`handshake`]) are plain
//! functions usable on their own.

mod close;
mod connection;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
mod utf8;

use std::time::Duration;

use bytes::Bytes;

pub use close::{CloseCode, CloseFrame};
pub use connection::{
    Closed, Connection, Event, EventRef, FrameHead, Role, State, Transmit, VectoredTransmit,
};
pub use frame::{FrameError, OpCode};
pub use handshake::{Accept, ClientRequest, HandshakeError, UpgradeRequest};
pub use utf8::Utf8Bytes;

use deflate::DeflateConfig;

use crate::http;

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message: valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Message::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Message::Binary(b.into())
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload length.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn into_parts(self) -> (OpCode, Bytes) {
        match self {
            Message::Text(t) => (OpCode::Text, t.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        }
    }
}

/// A whole message lent by [`Connection::poll_event_ref`]: its payload
/// stays in the connection's buffer until the next call on the connection.
///
/// ```
/// use wsio::ws::{Message, MessageRef};
/// let m = Message::text("hi");
/// assert_eq!(MessageRef::from(&m), MessageRef::Text("hi"));
/// assert_eq!(Message::from(MessageRef::Binary(b"\x01")), Message::binary(vec![1u8]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// A text message: valid UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl MessageRef<'_> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            MessageRef::Text(t) => t.as_bytes(),
            MessageRef::Binary(b) => b,
        }
    }
}

impl<'a> From<&'a Message> for MessageRef<'a> {
    fn from(m: &'a Message) -> Self {
        match m {
            Message::Text(t) => MessageRef::Text(t.as_str()),
            Message::Binary(b) => MessageRef::Binary(b),
        }
    }
}

/// A copy of the payload, for keeping a lent message.
impl From<MessageRef<'_>> for Message {
    fn from(m: MessageRef<'_>) -> Self {
        match m {
            MessageRef::Text(t) => Message::Text(Utf8Bytes::from(t.to_owned())),
            MessageRef::Binary(b) => Message::Binary(Bytes::copy_from_slice(b)),
        }
    }
}

/// The kind of a data message, for fragmented sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Text.
    Text,
    /// Binary.
    Binary,
}

impl DataKind {
    fn opcode(self) -> OpCode {
        match self {
            DataKind::Text => OpCode::Text,
            DataKind::Binary => OpCode::Binary,
        }
    }
}

/// Limits and behaviour of a [`Connection`]. Every limit has a safe default.
///
/// ```
/// let config = wsio::ws::Config::default()
///     .max_message_size(1 << 20)
///     .auto_pong(false);
/// assert_eq!(config.max_message_size, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame payload accepted (close 1009 beyond). Default 16 MiB.
    pub max_frame_size: usize,
    /// Largest message accepted, all fragments together (close 1009 beyond).
    /// Default 16 MiB.
    pub max_message_size: usize,
    /// Most frames in one fragmented message (close 1009 beyond). Default:
    /// no limit (`usize::MAX`). None is needed for memory: fragments are
    /// reassembled into one buffer as they arrive, with no event or record
    /// per fragment, so a message held in any number of fragments costs what
    /// its bytes cost, and [`max_message_size`](Self::max_message_size)
    /// bounds that; the work per fragment is bounded by the bytes its header
    /// takes on the wire. Set it to refuse peers that fragment more than
    /// the application expects.
    pub max_fragments: usize,
    /// Most bytes queued for sending but not yet taken by
    /// [`Connection::poll_transmit`]; sends beyond fail with
    /// [`UsageError::SendQueueFull`]. Default 16 MiB.
    pub max_send_queue: usize,
    /// Answer pings with pongs automatically. Default on.
    pub auto_pong: bool,
    /// Split outgoing messages into frames of at most this many payload
    /// bytes. Default: never split.
    pub send_fragment_size: Option<usize>,
    /// How long to wait for the peer's part of the closing handshake before
    /// dropping the connection. Default 5 s.
    pub close_timeout: Duration,
    /// How long the opening handshake's head may take to arrive: a
    /// server's wait for the upgrade request (then it answers 408), a
    /// client's for the answer; counted from the first call that gives the
    /// connection the time (a driver drains it as soon as it is made).
    /// Default 30 s (hyper's `header_read_timeout`).
    pub head_timeout: Duration,
    /// Limits on the HTTP head of the opening handshake.
    pub head_limits: http::Limits,
    /// permessage-deflate (RFC 7692): whether a server accepts it and a
    /// client offers it, and with what parameters. Default off, in both
    /// roles: compression costs a connection 290-420 KiB while it is used
    /// (see [`deflate`]) and CPU per message, so it is the application's
    /// choice, as it is for the Engine.IO option `perMessageDeflate`. npm
    /// `ws` has it off on its server and on in its client; browsers always
    /// offer it.
    pub deflate: DeflateConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: usize::MAX,
            max_send_queue: 16 << 20,
            auto_pong: true,
            send_fragment_size: None,
            close_timeout: Duration::from_secs(5),
            head_timeout: Duration::from_secs(30),
            head_limits: http::Limits::default(),
            deflate: DeflateConfig::default(),
        }
    }
}

impl Config {
    /// Sets [`max_frame_size`](Self::max_frame_size).
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n;
        self
    }
    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }
    /// Sets [`max_fragments`](Self::max_fragments).
    pub fn max_fragments(mut self, n: usize) -> Self {
        self.max_fragments = n;
        self
    }
    /// Sets [`max_send_queue`](Self::max_send_queue).
    pub fn max_send_queue(mut self, n: usize) -> Self {
        self.max_send_queue = n;
        self
    }
    /// Sets [`auto_pong`](Self::auto_pong).
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }
    /// Sets [`send_fragment_size`](Self::send_fragment_size).
    pub fn send_fragment_size(mut self, n: Option<usize>) -> Self {
        self.send_fragment_size = n.filter(|&n| n > 0);
        self
    }
    /// Sets [`close_timeout`](Self::close_timeout).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }
    /// Sets [`head_timeout`](Self::head_timeout).
    pub fn head_timeout(mut self, d: Duration) -> Self {
        self.head_timeout = d;
        self
    }
    /// Sets [`head_limits`](Self::head_limits).
    pub fn head_limits(mut self, l: http::Limits) -> Self {
        self.head_limits = l;
        self
    }
    /// Sets [`deflate`](Self::deflate).
    pub fn deflate(mut self, d: DeflateConfig) -> Self {
        self.deflate = d;
        self
    }
}

/// The peer broke the protocol; each variant knows its close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A header that is invalid on any connection.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// RSV bits set with no extension negotiated that defines them.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// A client sent an unmasked frame (section 5.1).
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A server sent a masked frame (section 5.1).
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new data message started before the previous one ended.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A text message or close reason that is not UTF-8 (close 1007).
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// A close payload of one byte.
    #[error("close frame payload of one byte")]
    BadClosePayload,
    /// A close code that may not be sent (section 7.4).
    #[error("invalid close code {0}")]
    BadCloseCode(u16),
    /// A compressed message that does not inflate (RFC 7692 section 7.2.2;
    /// close 1007).
    #[error("invalid compressed data")]
    BadCompressedData,
}

impl ProtocolError {
    /// The close code that reports this error to the peer.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::BadCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            _ => CloseCode::PROTOCOL,
        }
    }
}

/// The peer crossed a configured limit; close code 1009.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A frame longer than [`Config::max_frame_size`].
    #[error("frame of {len} bytes over the limit of {max}")]
    FrameTooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A message longer than [`Config::max_message_size`].
    #[error("message over the limit of {max} bytes")]
    MessageTooLarge {
        /// The limit.
        max: usize,
    },
    /// A message in more frames than [`Config::max_fragments`].
    #[error("message in more than {max} fragments")]
    TooManyFragments {
        /// The limit.
        max: usize,
    },
}

/// The application called a method at the wrong time or with bad arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The handshake has not completed.
    #[error("the connection is not open yet")]
    NotOpen,
    /// A close frame was already sent or received.
    #[error("the connection is closing or closed")]
    Closing,
    /// A control payload over 125 bytes.
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A close code that may not be sent.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// [`Config::max_send_queue`] would be exceeded: drain
    /// [`Connection::poll_transmit`] first.
    #[error("the send queue is full")]
    SendQueueFull,
    /// A message was sent while a fragmented one is unfinished, or a
    /// fragment changed kind.
    #[error("a fragmented message is in progress")]
    FragmentInProgress,
    /// No handshake request is waiting for a decision.
    #[error("no handshake request is waiting for a decision")]
    NoPendingRequest,
    /// Pre-encoded and direct frames are server frames; a client must mask.
    #[error("only a server may send pre-encoded or direct frames")]
    NotServer,
    /// [`Connection::send_direct`] while bytes are waiting to be
    /// transmitted: drain [`Connection::poll_transmit`] first.
    #[error("bytes are waiting to be transmitted")]
    TransmitPending,
    /// The chosen subprotocol was not offered.
    #[error("the chosen subprotocol was not offered by the client")]
    ProtocolNotOffered,
}

/// Anything that ended a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The opening handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The peer broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The peer crossed a limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The peer did not finish the closing handshake in time.
    #[error("the peer did not finish the closing handshake in time")]
    CloseTimeout,
    /// Our compressor failed in the middle of a fragmented message (close
    /// 1011); valid use never causes it.
    #[error(transparent)]
    Compress(#[from] deflate::CompressError),
}

impl Error {
    /// The close code that reports this error to the peer.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(p) => p.close_code(),
            Error::Limit(_) => CloseCode::TOO_BIG,
            Error::Compress(_) => CloseCode::INTERNAL,
            _ => CloseCode::PROTOCOL,
        }
    }
}

/// A complete server frame, encoded once and sent on any number of
/// connections: server frames are unmasked, so every recipient shares the
/// same bytes.
///
/// ```
/// use wsio::ws::{EncodedFrame, Message};
/// let frame = EncodedFrame::new(&Message::text("hi"));
/// assert_eq!(&frame.as_bytes()[..], b"\x81\x02hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame(Bytes);

impl EncodedFrame {
    /// Encodes `msg` as one unmasked final frame.
    pub fn new(msg: &Message) -> Self {
        let (opcode, payload) = msg.clone().into_parts();
        let mut out = bytes::BytesMut::with_capacity(frame::MAX_HEADER_LEN + payload.len());
        frame::encode_header(
            &frame::FrameHeader {
                fin: true,
                rsv: 0,
                opcode,
                mask: None,
                len: payload.len() as u64,
            },
            &mut out,
        );
        out.extend_from_slice(&payload);
        EncodedFrame(out.freeze())
    }

    /// Encodes one unmasked final frame whose payload is `prefix` then
    /// `payload` (an Engine.IO type digit before a message, say).
    pub fn with_prefix(kind: DataKind, prefix: &[u8], payload: &[u8]) -> Self {
        let len = prefix.len() + payload.len();
        let mut out = bytes::BytesMut::with_capacity(frame::MAX_HEADER_LEN + len);
        frame::encode_header(
            &frame::FrameHeader {
                fin: true,
                rsv: 0,
                opcode: kind.opcode(),
                mask: None,
                len: len as u64,
            },
            &mut out,
        );
        out.extend_from_slice(prefix);
        out.extend_from_slice(payload);
        EncodedFrame(out.freeze())
    }

    /// The frame's bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}
