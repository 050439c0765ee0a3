//! permessage-deflate (RFC 7692): negotiation and the per-message codec, as
//! plain values and functions the handshake and the connection call.
//!
//! # Negotiation
//!
//! * Server: [`accept_offer`] reads the request's `Sec-WebSocket-Extensions`
//!   values and gives the [`Params`] and the reply's header value, or
//!   declines.
//! * Client: [`DeflateConfig::offer`] gives an [`Offer`] whose
//!   [`header_value`](Offer::header_value) goes in the request; its
//!   [`verify`](Offer::verify) checks the reply and gives the [`Params`].
//!
//! Both sides then build a [`Deflater`] for what they send and an
//! [`Inflater`] for what they receive from the same [`Params`].
//!
//! # Frames
//!
//! A compressed message has RSV1 on its first frame only; control frames
//! are never compressed ([`frame_compressed`] checks the bits). The sender
//! compresses the whole message (or each part of a fragmented one) and
//! frames the output; the receiver feeds each frame's payload to
//! [`Inflater::inflate`] with the message's size limit.
//!
//! # Memory
//!
//! Measured with flate2's zlib-rs backend (memLevel 8, which flate2 does
//! not let us change), per connection:
//!
//! | state | size | when |
//! |---|---|---|
//! | [`Deflater`] | 245 KiB (9-bit window), 259 KiB (12), 371 KiB (15) | from the first compressed message sent |
//! | [`Inflater`] | 46 KiB, whatever the window | from the first compressed message received |
//!
//! Both are made lazily and can be given back between messages:
//! [`Deflater::release`] always (with context takeover the next message
//! starts from an empty window: less compression, never an error), and
//! [`Inflater::release`] only when the peer does not use context takeover,
//! since the window then holds nothing the next message may refer to. With
//! the peer's context takeover the inflater's 46 KiB stay until the
//! connection ends; a server that wants to release it while idle sets
//! [`DeflateConfig::client_no_context_takeover`].
//!
//! # Window bits 8
//!
//! zlib (and zlib-rs, and flate2) cannot make a raw deflate stream with an
//! 8-bit window. A window agreed at 8 bits is compressed with 9, as zlib
//! itself, npm `ws` and Node do: the peer can still decode it with 256
//! bytes of window, because a zlib-style compressor never refers further
//! back than its window less 262 bytes (250 for 9 bits). Inflating always
//! uses a 15-bit window, which decodes any smaller one.
//!
//! # Unsafe code
//!
//! One `unsafe` call, in the inflater: it sets the length of the caller's
//! buffer over the bytes flate2 reports having written into its spare
//! capacity, so received messages are not zero-filled first (see the SAFETY
//! note in `codec.rs`).

mod codec;
mod header;
mod negotiate;

#[cfg(test)]
mod tests;

pub use codec::{Deflater, Inflater, frame_compressed};
pub use header::{Extension, Param, parse_extensions};
pub use negotiate::{Accepted, ClientWindow, EXTENSION_NAME, Offer, accept_offer};

use super::CloseCode;

/// The application's choices for permessage-deflate, for either role.
///
/// ```
/// use wsio::ws::deflate::DeflateConfig;
/// let config = DeflateConfig::default()
///     .enabled(true)
///     .server_no_context_takeover(true)
///     .client_max_window_bits(10)
///     .threshold(256);
/// assert_eq!(config.server_max_window_bits, 15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Offer (client) or accept (server) the extension. Default off, as in
    /// npm `ws`'s server and Engine.IO.
    pub enabled: bool,
    /// The server compresses each message on its own (RFC 7692 section
    /// 7.1.1.1). A client asks for it; a server imposes it. Default off.
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own (section 7.1.1.2). A
    /// client promises it; a server imposes it, so it can release its
    /// inflater between messages. Default off.
    pub client_no_context_takeover: bool,
    /// Largest window the server compresses with, in bits, 8 to 15 (section
    /// 7.1.2.1); a client asks for it, a server uses at most this. Default 15.
    pub server_max_window_bits: u8,
    /// Largest window the client compresses with, 8 to 15 (section
    /// 7.1.2.2). A server below 15 declines offers that do not let it set
    /// the client's window. Default 15.
    pub client_max_window_bits: u8,
    /// Messages shorter than this many bytes are sent uncompressed
    /// ([`Deflater::should_compress`]). Default 1024, as npm `ws` and
    /// Engine.IO's `perMessageDeflate`. npm `ws` applies it only when it
    /// compresses without context takeover and compresses every message
    /// otherwise; wsio applies it always (set 0 to compress everything).
    pub threshold: usize,
    /// Compression level, 0 (store) to 9 (smallest). Default 6, zlib's
    /// default and npm `ws`'s.
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            enabled: false,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            threshold: 1024,
            level: 6,
        }
    }
}

impl DeflateConfig {
    /// Sets [`enabled`](Self::enabled).
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }
    /// Sets [`server_no_context_takeover`](Self::server_no_context_takeover).
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }
    /// Sets [`client_no_context_takeover`](Self::client_no_context_takeover).
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }
    /// Sets [`server_max_window_bits`](Self::server_max_window_bits),
    /// clamped to 8..=15.
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(8, 15);
        self
    }
    /// Sets [`client_max_window_bits`](Self::client_max_window_bits),
    /// clamped to 8..=15.
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(8, 15);
        self
    }
    /// Sets [`threshold`](Self::threshold).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }
    /// Sets [`level`](Self::level), clamped to 0..=9.
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }
}

/// What both ends agreed to in the handshake (RFC 7692 section 7.1).
/// The default is the extension with no parameters: context takeover both
/// ways, 15-bit windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The server compresses each message with an empty window.
    pub server_no_context_takeover: bool,
    /// The client compresses each message with an empty window.
    pub client_no_context_takeover: bool,
    /// The server's window, in bits (8 to 15).
    pub server_max_window_bits: u8,
    /// The client's window, in bits (8 to 15).
    pub client_max_window_bits: u8,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// Why an extension header or a permessage-deflate answer is refused.
///
/// A server sees only [`Syntax`](Self::Syntax): it declines bad offers and
/// goes on. A client fails the handshake on any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// `Sec-WebSocket-Extensions` is not an extension list (RFC 6455
    /// section 9.1).
    #[error("malformed Sec-WebSocket-Extensions header")]
    Syntax,
    /// The server answered with an extension that was not offered, or with
    /// permessage-deflate more than once.
    #[error("the server answered with extension {0:?}, which was not offered")]
    UnexpectedExtension(String),
    /// A parameter permessage-deflate does not define.
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParameter(String),
    /// A parameter given twice.
    #[error("permessage-deflate parameter {0} given twice")]
    DuplicateParameter(&'static str),
    /// A parameter with a value it may not have, or without one it needs.
    #[error("invalid value for permessage-deflate parameter {0}")]
    InvalidValue(&'static str),
    /// `client_max_window_bits` in the answer to an offer without it.
    #[error("the server sent {0}, which was not offered")]
    NotOffered(&'static str),
    /// A window larger than the offer allowed.
    #[error("the server's {0} is larger than offered")]
    WindowTooLarge(&'static str),
    /// The answer leaves out a parameter the offer required it to repeat.
    #[error("the server did not accept the offered {0}")]
    MissingParameter(&'static str),
}

impl NegotiationError {
    /// The HTTP status a server answers a malformed header with.
    pub fn status(&self) -> u16 {
        400
    }
}

/// Why a compressed message could not be inflated; each fails the
/// connection with its close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The message would decompress to more than the limit (close 1009).
    #[error("decompressed message over the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The payload is not valid DEFLATE data (close 1007).
    #[error("invalid compressed data")]
    InvalidData,
}

impl InflateError {
    /// The close code that reports this error to the peer.
    pub fn close_code(&self) -> CloseCode {
        match self {
            InflateError::TooLarge { .. } => CloseCode::TOO_BIG,
            InflateError::InvalidData => CloseCode::INVALID_PAYLOAD,
        }
    }
}

/// The compressor failed, which valid use never causes; the connection
/// should close with 1011 (internal error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the compressor failed")]
pub struct CompressError;
