//! The per-message codec (RFC 7692 section 7.2): one [`Deflater`] for the
//! messages a connection sends, one [`Inflater`] for those it receives.

use std::mem::MaybeUninit;

use bytes::{BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{CompressError, DeflateConfig, InflateError, Params};
use crate::ws::frame::OpCode;
use crate::ws::{ProtocolError, Role};

/// The empty stored block a sync flush ends with; removed from every
/// compressed message and put back before inflating (section 7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Bytes of output made room for at a time, at least and at most: enough
/// that a message takes few calls, little enough that a small message does
/// not keep a large buffer (or, when compressing, zero one: the compressor
/// writes into zero-filled room, its cost being small beside compression's;
/// the inflater writes into uninitialised room, see `Inflater::feed`).
const MIN_CHUNK: usize = 256;
const MAX_CHUNK: usize = 1 << 20;
/// The longest last frame that is copied next to the trailer, so that both
/// are inflated in one call.
const JOIN_MAX: usize = 256;

/// Whether a frame starts a compressed message, from its opcode and RSV
/// bits (RFC 7692 section 6): RSV1 on the first frame of a data message
/// marks it compressed. RSV1 anywhere else (a continuation frame, a control
/// frame, or any frame when the extension was not negotiated), RSV2 and
/// RSV3 are protocol errors (close 1002). A continuation frame belongs to
/// the message it continues: the caller remembers whether that one was
/// compressed.
///
/// ```
/// use wsio::ws::deflate::frame_compressed;
/// use wsio::ws::OpCode;
/// assert_eq!(frame_compressed(true, OpCode::Text, 0b100), Ok(true));
/// assert_eq!(frame_compressed(true, OpCode::Binary, 0), Ok(false));
/// assert!(frame_compressed(true, OpCode::Continuation, 0b100).is_err());
/// assert!(frame_compressed(true, OpCode::Ping, 0b100).is_err());
/// assert!(frame_compressed(false, OpCode::Text, 0b100).is_err());
/// ```
pub fn frame_compressed(negotiated: bool, opcode: OpCode, rsv: u8) -> Result<bool, ProtocolError> {
    match rsv {
        0 => Ok(false),
        0b100 if negotiated && matches!(opcode, OpCode::Text | OpCode::Binary) => Ok(true),
        _ => Err(ProtocolError::ReservedBits),
    }
}

/// The window size and context rule of one direction.
fn direction(params: &Params, sender: Role) -> (u8, bool) {
    match sender {
        Role::Server => (
            params.server_max_window_bits,
            params.server_no_context_takeover,
        ),
        Role::Client => (
            params.client_max_window_bits,
            params.client_no_context_takeover,
        ),
    }
}

/// Compresses the messages one endpoint sends (RFC 7692 section 7.2.1).
///
/// The compressor state is created on the first compressed message, and
/// can be given back between messages with [`release`](Self::release).
/// Messages under the threshold are better sent as they are: ask
/// [`should_compress`](Self::should_compress) and set RSV1 on the first
/// frame of each message that was compressed.
///
/// ```
/// use bytes::BytesMut;
/// use wsio::ws::deflate::{DeflateConfig, Deflater, Params};
/// use wsio::ws::Role;
/// let mut d = Deflater::new(Role::Server, &Params::default(), &DeflateConfig::default());
/// let mut out = BytesMut::new();
/// d.compress(b"Hello", &mut out).unwrap();
/// assert_eq!(&out[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]); // RFC 7692 section 7.2.3.1
/// ```
#[derive(Debug)]
pub struct Deflater {
    level: u32,
    window_bits: u8,
    no_context_takeover: bool,
    threshold: usize,
    state: Option<Compress>,
    in_message: bool,
}

impl Deflater {
    /// The compressor of the endpoint playing `role`, under the agreed
    /// `params`, with the level and threshold of `config`. Allocates
    /// nothing yet.
    ///
    /// A window of 8 bits is compressed with 9 (zlib cannot make a raw
    /// deflate stream with a 256-byte window): as zlib, npm `ws` and Node
    /// do, and still within what the peer agreed to, since zlib-style
    /// compressors never reach back more than the window less 262 bytes
    /// (250 bytes for 9 bits).
    pub fn new(role: Role, params: &Params, config: &DeflateConfig) -> Self {
        let (bits, no_context_takeover) = direction(params, role);
        Deflater {
            level: config.level.min(9),
            window_bits: bits.clamp(9, 15),
            no_context_takeover,
            threshold: config.threshold,
            state: None,
            in_message: false,
        }
    }

    /// Whether a message of `len` bytes is worth compressing: at least the
    /// configured threshold. Sending a message uncompressed is always
    /// allowed; callers may decide otherwise per message.
    pub fn should_compress(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// The window this compressor uses, in bits (9 to 15).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Appends the compressed form of a whole message to `out`: the payload
    /// of its frames, the first of which has RSV1 set.
    pub fn compress(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), CompressError> {
        self.compress_parts(&[payload], true, out)
    }

    /// Appends the compressed form of one part of a message to `out`, for
    /// messages sent in several parts; `fin` on the last. Each part is
    /// flushed, so its output can be sent at once as one frame (or several).
    /// On error nothing is appended, and the next message starts a new
    /// stream.
    pub fn compress_fragment(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<(), CompressError> {
        self.compress_parts(&[payload], fin, out)
    }

    /// Like [`compress_fragment`](Self::compress_fragment) for a part given
    /// in pieces (a type prefix and a payload, say): compressed as if they
    /// were joined, without joining them, and flushed once, after the last.
    pub fn compress_parts(
        &mut self,
        parts: &[&[u8]],
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<(), CompressError> {
        let (level, bits) = (self.level, self.window_bits);
        let c = self.state.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(level), false, bits)
        });
        self.in_message = true;
        let start = out.len();
        let result = compress_into(c, parts, out);
        if result.is_err() {
            // The stream is in an unknown state: the next message starts a
            // new one, which a peer accepts whatever the context rules.
            out.truncate(start);
            self.state = None;
            self.in_message = false;
            return result;
        }
        if fin {
            // Section 7.2.1: the message must end with an empty stored
            // block, whose last 4 bytes are not sent. A sync flush ends
            // with one, except when it had nothing to flush: then the
            // block's first byte is all that is sent of it.
            if out.get(start..).is_some_and(|o| o.ends_with(&TRAILER)) {
                out.truncate(out.len() - TRAILER.len());
            } else {
                out.put_u8(0);
            }
            self.in_message = false;
            if self.no_context_takeover {
                if let Some(c) = self.state.as_mut() {
                    c.reset();
                }
            }
        }
        Ok(())
    }

    /// Gives back the compressor's memory between messages; the next
    /// compressed message allocates it again. Without context takeover
    /// nothing is lost. With it, the next message starts from an empty
    /// window, which only costs ratio: a sender may always stop referring
    /// to earlier messages (RFC 7692 section 7.2.1). Returns `false`, and
    /// keeps the state, in the middle of a fragmented message.
    pub fn release(&mut self) -> bool {
        if self.in_message {
            return false;
        }
        self.state = None;
        true
    }

    /// Whether the compressor state is allocated.
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }
}

/// Runs `parts`, in order, through `c`, with a sync flush after the last,
/// appending the output.
fn compress_into(
    c: &mut Compress,
    parts: &[&[u8]],
    out: &mut BytesMut,
) -> Result<(), CompressError> {
    let mut left: usize = parts.iter().map(|p| p.len()).sum();
    let mut pos = out.len();
    let last = parts.len().saturating_sub(1);
    let result = 'parts: {
        for (i, part) in parts.iter().enumerate() {
            let sync = i == last;
            let mut input = *part;
            // An empty piece before the last has nothing to give.
            while sync || !input.is_empty() {
                if pos == out.len() {
                    let chunk = (left / 2).clamp(MIN_CHUNK, MAX_CHUNK);
                    out.resize(pos + chunk, 0);
                }
                let Some(space) = out.get_mut(pos..) else {
                    break 'parts Err(CompressError);
                };
                let flush = if sync {
                    FlushCompress::Sync
                } else {
                    FlushCompress::None
                };
                let (in0, out0) = (c.total_in(), c.total_out());
                let status = c.compress(input, space, flush);
                let consumed =
                    usize::try_from(c.total_in().saturating_sub(in0)).unwrap_or(usize::MAX);
                let produced =
                    usize::try_from(c.total_out().saturating_sub(out0)).unwrap_or(usize::MAX);
                let room = space.len();
                let (Some(rest), true) = (input.get(consumed..), produced <= room) else {
                    break 'parts Err(CompressError);
                };
                input = rest;
                left = left.saturating_sub(consumed);
                pos += produced;
                match status {
                    // zlib's rule: the flush is complete once a call returns
                    // with room to spare; BufError means there was nothing
                    // to flush.
                    Ok(_) if sync && input.is_empty() && produced < room => break 'parts Ok(()),
                    Ok(_) if consumed == 0 && produced == 0 => break 'parts Err(CompressError),
                    Ok(_) => {}
                    Err(_) => break 'parts Err(CompressError),
                }
            }
        }
        // No parts at all: nothing was flushed.
        Err(CompressError)
    };
    out.truncate(pos);
    result
}

/// Decompresses the messages one endpoint receives (RFC 7692 section
/// 7.2.2), frame by frame, into the caller's buffer, under a hard limit.
///
/// The state is always made with a 15-bit window: it accepts whatever
/// window the peer uses, and costs the same memory as a smaller one with
/// this backend. It is created on the first compressed message, and can be
/// given back between messages when there is no context to keep
/// ([`release`](Self::release)).
///
/// ```
/// use bytes::BytesMut;
/// use wsio::ws::deflate::{Inflater, Params};
/// use wsio::ws::Role;
/// let mut i = Inflater::new(Role::Client, &Params::default());
/// let mut msg = BytesMut::new();
/// // RFC 7692 section 7.2.3.1: "Hello" in two frames.
/// i.inflate(&[0xf2, 0x48, 0xcd], false, 1 << 20, &mut msg).unwrap();
/// i.inflate(&[0xc9, 0xc9, 0x07, 0x00], true, 1 << 20, &mut msg).unwrap();
/// assert_eq!(&msg[..], b"Hello");
/// ```
#[derive(Debug)]
pub struct Inflater {
    no_context_takeover: bool,
    state: Option<Decompress>,
    in_message: bool,
    /// Nothing was inflated since the state was made or reset.
    fresh: bool,
    /// The peer ended its deflate stream (a block with BFINAL set) in this
    /// message: the rest of the message is ignored.
    ended: bool,
    /// Bytes of the current message written so far.
    produced: usize,
}

impl Inflater {
    /// The decompressor of the endpoint playing `role` (which decompresses
    /// what the other role sends), under the agreed `params`. Allocates
    /// nothing yet.
    pub fn new(role: Role, params: &Params) -> Self {
        let peer = match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        let (_, no_context_takeover) = direction(params, peer);
        Inflater {
            no_context_takeover,
            state: None,
            in_message: false,
            fresh: true,
            ended: false,
            produced: 0,
        }
    }

    /// Inflates one frame's payload of a compressed message, appending the
    /// output to `out`; `fin` on the message's last frame, whose data is
    /// then followed by the stripped `00 00 ff ff`. The output is written
    /// straight into `out`'s spare capacity (grown as needed), so a buffer
    /// sized for the message is filled without another copy.
    ///
    /// `limit` caps the whole message's decompressed size (the sum over its
    /// frames): the error comes as soon as the output would pass it, before
    /// `out` holds more than `limit` bytes of the message, so a small frame
    /// can never make a large buffer, and the work done stays proportional
    /// to the input read plus `limit`. Data after a final DEFLATE block
    /// (BFINAL, section 7.2.3.4) is ignored up to the message's end, when
    /// the stream starts again with an empty window, as in npm `ws`.
    ///
    /// After an error the connection must fail ([`InflateError::close_code`]);
    /// the state is dropped.
    pub fn inflate(
        &mut self,
        frame_payload: &[u8],
        fin: bool,
        limit: usize,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        if !self.in_message {
            self.in_message = true;
            self.produced = 0;
            self.ended = false;
        }
        let mut joined = [0u8; JOIN_MAX + TRAILER.len()];
        let mut result = match joined.get_mut(..frame_payload.len() + TRAILER.len()) {
            // A short last frame and the trailer in one call: each call to
            // the inflater costs about as much as inflating a short message.
            Some(both) if fin && frame_payload.len() <= JOIN_MAX => {
                let (head, tail) = both.split_at_mut(frame_payload.len());
                head.copy_from_slice(frame_payload);
                tail.copy_from_slice(&TRAILER);
                self.feed(both, limit, out)
            }
            _ => self.feed(frame_payload, limit, out),
        };
        if fin && frame_payload.len() > JOIN_MAX && result.is_ok() {
            result = self.feed(&TRAILER, limit, out);
        }
        if result.is_err() {
            self.state = None;
            self.fresh = true;
            self.in_message = false;
        } else if fin {
            self.in_message = false;
            if self.no_context_takeover || self.ended {
                if let Some(d) = self.state.as_mut() {
                    d.reset(false);
                }
                self.fresh = true;
            }
        }
        result
    }

    /// Inflates `input`, appending the output to `out`.
    fn feed(
        &mut self,
        mut input: &[u8],
        limit: usize,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        if self.ended || input.is_empty() {
            return Ok(());
        }
        let d = self.state.get_or_insert_with(|| Decompress::new(false));
        self.fresh = false;
        loop {
            let room = limit.saturating_sub(self.produced);
            if room > 0 && out.len() == out.capacity() {
                let chunk = input.len().saturating_mul(8).clamp(MIN_CHUNK, MAX_CHUNK);
                out.reserve(chunk.min(room));
            }
            let mut probe = [MaybeUninit::<u8>::uninit(); 1];
            let space = if room == 0 {
                // At the limit: one more byte of output, and it is crossed.
                &mut probe[..]
            } else {
                let spare = out.spare_capacity_mut();
                let n = spare.len().min(room);
                spare.get_mut(..n).unwrap_or_default()
            };
            let room_now = space.len();
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = d.decompress_uninit(input, space, FlushDecompress::Sync);
            let consumed = usize::try_from(d.total_in().saturating_sub(in0)).unwrap_or(usize::MAX);
            let produced =
                usize::try_from(d.total_out().saturating_sub(out0)).unwrap_or(usize::MAX);
            let (Some(rest), true) = (input.get(consumed..), produced <= room_now) else {
                return Err(InflateError::InvalidData);
            };
            if room == 0 {
                if produced > 0 {
                    return Err(InflateError::TooLarge { limit });
                }
            } else {
                // SAFETY: `decompress_uninit` wrote `produced` bytes (the
                // growth of its `total_out`) at the front of `space`, which
                // is the start of `out`'s spare capacity, and `produced` is
                // at most `space.len()` (checked above): the bytes up to the
                // new length are initialised and within the capacity.
                // flate2's own `decompress_vec` relies on the same contract.
                #[allow(unsafe_code)]
                unsafe {
                    out.set_len(out.len() + produced);
                }
            }
            input = rest;
            self.produced += produced;
            match status {
                Ok(Status::StreamEnd) => {
                    self.ended = true;
                    return Ok(());
                }
                Ok(_) if input.is_empty() && produced < room_now => return Ok(()),
                Ok(_) if consumed == 0 && produced == 0 => return Err(InflateError::InvalidData),
                Ok(_) => {}
                Err(_) => return Err(InflateError::InvalidData),
            }
        }
    }

    /// Gives back the decompressor's memory between messages, when there
    /// is no context to lose: the peer does not use context takeover, or
    /// nothing was inflated since the window was last emptied. Returns
    /// whether it was released; the next compressed message allocates it
    /// again.
    pub fn release(&mut self) -> bool {
        if self.in_message || !(self.fresh || self.no_context_takeover) {
            return false;
        }
        self.state = None;
        self.fresh = true;
        true
    }

    /// Whether the decompressor state is allocated.
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }

    /// Whether a compressed message is partly inflated.
    pub fn in_message(&self) -> bool {
        self.in_message
    }
}
