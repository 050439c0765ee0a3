//! permessage-deflate on a connection (RFC 7692): the parameters both ends
//! agreed, compressed messages out and in.
//!
//! # Theory of operation
//!
//! * Negotiation happens in the opening handshake (`mod.rs`: `accept` for a
//!   server, the 101 check for a client) or, for a connection whose
//!   handshake another HTTP stack completed, through
//!   [`Connection::with_deflate`]. Until then `deflate` is `None` and
//!   nothing here runs: the uncompressed paths pay one test of that field.
//! * Sending: a whole message at least [`DeflateConfig::threshold`] long
//!   (or any, with [`Connection::send_compressed`]; none while
//!   [`Connection::set_compress`] has it off) is compressed into a
//!   buffer that starts with 14 bytes of room; its header is written at
//!   the end of that room, so header and payload leave as one piece without
//!   a copy (a client masks the payload in place). RSV1 marks the first
//!   frame of a compressed message only. Control frames and
//!   [`Connection::send_direct`] are never compressed. A frame encoded for
//!   many connections is compressed for each that negotiated compression,
//!   whose context it then shares.
//! * Receiving: `check_header` (in `reader`) accepts RSV1 on the first frame
//!   of a data message and remembers that the message is compressed
//!   (`rx`); the raw-payload UTF-8 check is skipped for its frames. Each
//!   complete frame is inflated into the message's buffer, under
//!   [`Config::max_message_size`](crate::ws::Config::max_message_size) as a
//!   bound on the inflated size, enforced while inflating (1009 before the
//!   buffer passes it); text is checked on the inflated bytes as they come.
//!   A whole message in one frame is inflated where it lies, in the input
//!   buffer (`inflate_whole_frame`) or, arriving at an empty one through
//!   `handle_input`, in the caller's bytes (`inflate_input`), straight into
//!   the message's own buffer.
//! * Memory: the compressor and decompressor states are made on first use
//!   and given back by [`Connection::release_compression`] (between
//!   messages, as far as the agreed context rules allow) and when the
//!   connection ends.

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use super::{Connection, Partial, Role, input::BIG_FRAME, sender::FrameHead};
use crate::ws::{
    DataKind, Error, Event, LimitError, Message, OpCode, ProtocolError, UsageError, Utf8Bytes,
    deflate::{DeflateConfig, Deflater, InflateError, Inflater, Params},
    frame::{self, FrameHeader, MAX_HEADER_LEN},
    mask::apply_mask,
};

/// RSV1, as the frame header's `rsv` field holds it.
const RSV1: u8 = 0b100;
/// The least room the compression buffer is given at once.
const BUF_MIN: usize = 512;
/// The largest compression buffer kept between messages.
const BUF_KEEP: usize = 64 * 1024;

/// permessage-deflate state of one connection.
#[derive(Debug)]
pub(super) struct Compression {
    params: Params,
    pub(super) deflater: Deflater,
    pub(super) inflater: Inflater,
    /// The message being received is compressed.
    rx: bool,
    /// The fragmented message being sent is compressed.
    tx: bool,
    /// A message was compressed, and one inflated, since the last
    /// [`Connection::release_idle_compression`].
    sent: bool,
    received: bool,
    /// Messages go uncompressed whatever their size
    /// ([`Connection::set_compress`]).
    off: bool,
    /// Where messages are compressed, after room for their header.
    buf: BytesMut,
}

impl Compression {
    pub(super) fn new(role: Role, params: Params, config: &DeflateConfig) -> Box<Self> {
        Box::new(Compression {
            params,
            deflater: Deflater::new(role, &params, config),
            inflater: Inflater::new(role, &params),
            rx: false,
            tx: false,
            sent: false,
            received: false,
            off: false,
            buf: BytesMut::new(),
        })
    }
}

/// The error an inflate failure fails the connection with.
fn inflate_error(e: InflateError) -> Error {
    match e {
        InflateError::TooLarge { limit } => LimitError::MessageTooLarge { max: limit }.into(),
        _ => ProtocolError::BadCompressedData.into(),
    }
}

impl Connection {
    /// Uses permessage-deflate with `params` on a connection whose handshake
    /// another HTTP stack completed ([`server_upgraded`](Self::server_upgraded),
    /// [`client_upgraded`](Self::client_upgraded)): what
    /// [`UpgradeRequest::negotiate_deflate`](crate::ws::UpgradeRequest::negotiate_deflate)
    /// or [`Offer::verify`](crate::ws::deflate::Offer::verify) gave. The level
    /// and threshold come from [`Config::deflate`](crate::ws::Config::deflate).
    /// Call before any input.
    ///
    /// ```
    /// use std::time::Instant;
    /// use wsio::ws::{deflate::Params, Config, Connection, Event, Message};
    ///
    /// let mut ws = Connection::server_upgraded(Config::default()).with_deflate(Params::default());
    /// // "Hello", compressed (RFC 7692 section 7.2.3.1), from a client (masked, key 0).
    /// let now = Instant::now();
    /// ws.handle_input(now, &[0xc1, 0x87, 0, 0, 0, 0, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    /// assert_eq!(ws.poll_event(now), Some(Event::Message(Message::text("Hello"))));
    /// ```
    pub fn with_deflate(mut self, params: Params) -> Self {
        self.deflate = Some(Compression::new(self.role, params, &self.config.deflate));
        self
    }

    /// The permessage-deflate parameters in use, if the extension was
    /// negotiated.
    pub fn deflate_params(&self) -> Option<Params> {
        self.deflate.as_ref().map(|d| d.params)
    }

    /// Gives back what compression holds while a connection is idle: the
    /// compressor's state (245-371 KiB; with context takeover the next
    /// message then starts from an empty window, which costs only ratio),
    /// and the decompressor's (46 KiB) when the peer compresses each
    /// message on its own (RFC 7692 section 7.1.1). Whatever is inside a
    /// fragmented message is kept. The next compressed message makes them
    /// again. Call it when a connection has been quiet for a while (the
    /// Engine.IO server does, after a heartbeat with no message).
    pub fn release_compression(&mut self) {
        let Some(d) = self.deflate.as_mut() else {
            return;
        };
        d.deflater.release();
        d.inflater.release();
        if !d.buf.is_empty() || d.buf.capacity() > 0 {
            d.buf = BytesMut::new();
        }
    }

    /// [`release_compression`](Self::release_compression), each way on its
    /// own: the compressor if no message was compressed since the last
    /// call, the decompressor if none was inflated. Called on a timer (the
    /// Engine.IO server calls it at each heartbeat), it frees what quiet
    /// connections hold and leaves busy ones alone; a peer that compresses
    /// its heartbeat answers (browsers compress every message) keeps only
    /// the decompressor busy.
    pub fn release_idle_compression(&mut self) {
        let Some(d) = self.deflate.as_mut() else {
            return;
        };
        if std::mem::take(&mut d.sent) {
            // Busy sending.
        } else if d.deflater.release() && d.buf.capacity() > 0 {
            d.buf = BytesMut::new();
        }
        if !std::mem::take(&mut d.received) {
            d.inflater.release();
        }
    }

    /// Whether the compressor or decompressor state is allocated, as
    /// [`release_compression`](Self::release_compression) would free it.
    pub fn holds_compression_state(&self) -> bool {
        self.deflate
            .as_ref()
            .is_some_and(|d| d.deflater.holds_state() || d.inflater.holds_state())
    }

    /// Like [`send`](Self::send), choosing for this message whether it is
    /// compressed rather than by its size: `true` compresses it whatever
    /// [`DeflateConfig::threshold`] says (when the extension was
    /// negotiated; otherwise it goes as it is), `false` sends it as it is.
    /// A message already compressed (an image, say) gains nothing from
    /// compression and costs its CPU.
    pub fn send_compressed(&mut self, msg: Message, compress: bool) -> Result<(), UsageError> {
        self.send_message(msg, Some(compress))
    }

    /// Whether the messages sent from now on may be compressed (by their
    /// size, as [`send`](Self::send) does; the default) or go as they are
    /// (`false`), whatever path sends them: [`send_slices`](Self::send_slices),
    /// [`send_batch`](Self::send_batch), [`send_encoded`](Self::send_encoded),
    /// the first fragment of a streamed message... Received messages are
    /// inflated either way, and [`send_compressed`](Self::send_compressed)
    /// still decides for its message. The Engine.IO server turns it off
    /// around a packet sent with `compress` false (the official
    /// `socket.compress(false)`). Without the extension it changes nothing.
    pub fn set_compress(&mut self, on: bool) {
        if let Some(d) = self.deflate.as_mut() {
            d.off = !on;
        }
    }

    /// A whole message sent compressed, if it is to be (by its size, or as
    /// `compress` says): whether it was. Out of line, so the plain send
    /// path stays small.
    #[inline(never)]
    pub(super) fn send_message_deflated(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        compress: Option<bool>,
    ) -> bool {
        let wanted = match compress {
            None => self.wants_compress(payload.len()),
            Some(c) => c,
        };
        wanted && self.send_deflated(opcode, &[payload])
    }

    /// Whether a message of `len` bytes is sent compressed.
    #[inline]
    pub(super) fn wants_compress(&self, len: usize) -> bool {
        match &self.deflate {
            None => false,
            Some(d) => !d.off && d.deflater.should_compress(len),
        }
    }

    /// Compresses a whole message given in parts and queues its frames,
    /// after the caller has checked that it may be sent. Returns `false`,
    /// with nothing queued, if the compressor failed: the caller sends the
    /// message uncompressed, which is always allowed.
    pub(super) fn send_deflated(&mut self, opcode: OpCode, parts: &[&[u8]]) -> bool {
        let Some(mut buf) = self.deflate_buf() else {
            return false;
        };
        let ok = match self.deflate.as_mut() {
            Some(d) => d.deflater.compress_parts(parts, true, &mut buf).is_ok(),
            None => false,
        };
        if !ok {
            self.give_back(buf);
            return false;
        }
        if let Some(d) = self.deflate.as_mut() {
            d.sent = true;
        }
        let len = buf.len() - MAX_HEADER_LEN;
        match self.config.send_fragment_size {
            Some(size) if len > size => {
                buf.advance(MAX_HEADER_LEN);
                let mut rest = buf.split().freeze();
                self.give_back(buf);
                let (mut op, mut rsv) = (opcode, RSV1);
                while rest.len() > size {
                    let part = rest.split_to(size);
                    self.push_frame_rsv(false, rsv, op, part);
                    (op, rsv) = (OpCode::Continuation, 0);
                }
                self.push_frame_rsv(true, rsv, op, rest);
            }
            _ => self.push_deflated(buf, true, RSV1, opcode),
        }
        true
    }

    /// One fragment of a message streamed in pieces
    /// ([`send_fragment`](Self::send_fragment)): the first fragment decides,
    /// by its size, whether the message is compressed. The caller has
    /// checked that it may be sent; `first` says whether it starts the
    /// message. Returns whether it was sent compressed (`None`: the caller
    /// sends it as it is).
    pub(super) fn send_fragment_deflated(
        &mut self,
        opcode: OpCode,
        data: &[u8],
        fin: bool,
    ) -> Option<Result<(), UsageError>> {
        let first = opcode != OpCode::Continuation;
        let compress = match &self.deflate {
            None => return None,
            Some(d) if first => !d.off && d.deflater.should_compress(data.len()),
            Some(d) => d.tx,
        };
        if let Some(d) = self.deflate.as_mut() {
            d.tx = compress && !fin;
            d.sent |= compress;
        }
        if !compress {
            return None;
        }
        let mut buf = self.deflate_buf()?;
        let result = match self.deflate.as_mut() {
            Some(d) => d.deflater.compress_parts(&[data], fin, &mut buf),
            None => return None,
        };
        if let Err(e) = result {
            self.give_back(buf);
            if first {
                // Nothing of this message has left: it goes uncompressed.
                if let Some(d) = self.deflate.as_mut() {
                    d.tx = false;
                }
                return None;
            }
            // The earlier fragments' stream cannot be continued.
            self.abort(e.into());
            return Some(Err(UsageError::Closing));
        }
        let rsv = if first { RSV1 } else { 0 };
        self.push_deflated(buf, fin, rsv, opcode);
        Some(Ok(()))
    }

    /// A frame encoded once for many connections, on a connection that
    /// compresses: its payload is compressed here, with this connection's
    /// context, if it is a whole data message worth compressing. Returns
    /// `false` if the frame is to be sent as it is.
    pub(super) fn send_encoded_deflated(&mut self, wire: &[u8]) -> bool {
        let Some(d) = self.deflate.as_ref().filter(|d| !d.off) else {
            return false;
        };
        // Shorter than the threshold with its header: not worth a look.
        if !d.deflater.should_compress(wire.len().saturating_sub(2)) {
            return false;
        }
        let Ok(Some((h, hlen))) = frame::decode_header(wire) else {
            return false;
        };
        let payload = wire.get(hlen..).unwrap_or_default();
        if !h.fin
            || h.rsv != 0
            || h.mask.is_some()
            || !matches!(h.opcode, OpCode::Text | OpCode::Binary)
            || u64::try_from(payload.len()) != Ok(h.len)
            || !d.deflater.should_compress(payload.len())
        {
            return false;
        }
        self.send_deflated(h.opcode, &[payload])
    }

    /// The compression buffer, emptied, with room for a header in front.
    fn deflate_buf(&mut self) -> Option<BytesMut> {
        let d = self.deflate.as_mut()?;
        let mut buf = std::mem::take(&mut d.buf);
        buf.clear();
        if buf.capacity() < MAX_HEADER_LEN + BUF_MIN {
            buf.reserve(MAX_HEADER_LEN + BUF_MIN);
        }
        buf.extend_from_slice(&[0; MAX_HEADER_LEN]);
        Some(buf)
    }

    /// Keeps the compression buffer's allocation for the next message,
    /// unless it grew large.
    fn give_back(&mut self, mut buf: BytesMut) {
        if let Some(d) = self.deflate.as_mut() {
            buf.clear();
            if buf.capacity() <= BUF_KEEP {
                d.buf = buf;
            }
        }
    }

    /// Frames the compressed payload in `buf` (after its header room):
    /// the header is written at the end of the room, a client's payload is
    /// masked in place, and the frame is queued as one piece.
    fn push_deflated(&mut self, mut buf: BytesMut, fin: bool, rsv: u8, opcode: OpCode) {
        let len = buf.len() - MAX_HEADER_LEN;
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask: self.next_mask(),
            len: len as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let hlen = frame::write_header(&header, &mut head);
        let at = MAX_HEADER_LEN - hlen;
        if let (Some(dst), Some(src)) = (buf.get_mut(at..MAX_HEADER_LEN), head.get(..hlen)) {
            dst.copy_from_slice(src);
        }
        if let (Some(key), Some(payload)) = (header.mask, buf.get_mut(MAX_HEADER_LEN..)) {
            apply_mask(payload, key, 0);
        }
        buf.advance(at);
        let wire = buf.split().freeze();
        self.give_back(buf);
        self.push_shared(&wire);
    }

    /// A frame with RSV bits, its payload as it is (masked when polled).
    fn push_frame_rsv(&mut self, fin: bool, rsv: u8, opcode: OpCode, payload: Bytes) {
        let head = FrameHead::new(&FrameHeader {
            fin,
            rsv,
            opcode,
            mask: self.next_mask(),
            len: payload.len() as u64,
        });
        self.push_frame(head, payload);
    }

    // ----- receiving ----------------------------------------------------

    /// Whether a data frame belongs to a compressed message: RSV1 on a
    /// message's first frame, or a continuation of such a message. Valid
    /// after `check_header` accepted the frame.
    #[inline]
    pub(super) fn frame_is_compressed(&self, h: &FrameHeader) -> bool {
        match h.opcode {
            OpCode::Text | OpCode::Binary => h.rsv & RSV1 != 0,
            OpCode::Continuation => self.deflate.as_ref().is_some_and(|d| d.rx),
            _ => false,
        }
    }

    /// Checks a frame's RSV bits (RFC 7692 section 6): RSV1 only on the
    /// first frame of a data message, and only with the extension. At the
    /// start of a data message, notes whether it is compressed.
    pub(super) fn check_rsv(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        let compressed =
            crate::ws::deflate::frame_compressed(self.deflate.is_some(), h.opcode, h.rsv)?;
        if matches!(h.opcode, OpCode::Text | OpCode::Binary) {
            if let Some(d) = self.deflate.as_mut() {
                d.rx = compressed;
            }
        }
        Ok(())
    }

    /// Whether a whole compressed message at the front of the input may be
    /// inflated at once ([`inflate_whole_frame`](Self::inflate_whole_frame)):
    /// its RSV bits are RSV1 alone and the extension was negotiated, and it
    /// would not be dropped unread (after our close frame, once the
    /// application heard `Closed`; see `deliver`).
    #[inline]
    pub(super) fn inflates_at_front(&self, h: &FrameHeader) -> bool {
        h.rsv == RSV1 && self.deflate.is_some() && !(self.close_sent && self.closed_emitted)
    }

    /// A whole final compressed frame at the front of the input, no
    /// message in progress, its header checked and its payload
    /// (`rbuf[hlen..end]`) unmasked: inflated straight from the input into
    /// the message's own buffer and cut from the input, without a frame
    /// buffer, a partial message or a queued event. `None` if it failed
    /// the connection.
    pub(super) fn inflate_whole_frame(
        &mut self,
        now: Instant,
        h: FrameHeader,
        hlen: usize,
        end: usize,
    ) -> Option<Message> {
        self.last_big = if end >= BIG_FRAME { end } else { 0 };
        let mut rbuf = std::mem::take(&mut self.rbuf);
        let result = self.inflate_message(rbuf.get(hlen..end).unwrap_or_default());
        rbuf.advance(end.min(rbuf.len()));
        self.rbuf = rbuf;
        if self.rbuf.is_empty() {
            self.input_drained();
        }
        self.inflated(now, h.opcode, result)
    }

    /// Input that arrives at an empty input buffer with no event waiting
    /// and no message in progress, and opens with a whole compressed
    /// message in one frame: inflated from the caller's bytes, which are
    /// not copied into the input buffer first (a masked payload is
    /// unmasked into a small copy; a longer one takes the usual path). The
    /// message is queued; returns the bytes used (0 when not that case).
    pub(super) fn inflate_input(&mut self, now: Instant, bytes: &[u8]) -> usize {
        const MASKED_MAX: usize = 512;
        if self.deflate.is_none() || !self.events.is_empty() || self.decodable() != Some(true) {
            return 0;
        }
        let Some((h, hlen, end)) = self.whole_frame(bytes).filter(|(h, ..)| h.rsv != 0) else {
            return 0;
        };
        let payload = bytes.get(hlen..end).unwrap_or_default();
        let mut unmasked = [0u8; MASKED_MAX];
        let payload = match h.mask {
            None => payload,
            Some(key) => match unmasked.get_mut(..payload.len()) {
                Some(copy) => {
                    copy.copy_from_slice(payload);
                    apply_mask(copy, key, 0);
                    copy
                }
                None => return 0,
            },
        };
        if end >= BIG_FRAME {
            self.last_big = end;
        }
        let result = self.inflate_message(payload);
        if let Some(m) = self.inflated(now, h.opcode, result) {
            self.events.push_back(Event::Message(m));
        }
        end
    }

    /// The payload of a whole compressed message, inflated into a buffer of
    /// its own.
    fn inflate_message(&mut self, payload: &[u8]) -> Result<BytesMut, InflateError> {
        let limit = self.config.max_message_size;
        let mut data = BytesMut::new();
        match self.deflate.as_mut() {
            Some(d) => {
                d.received = true;
                d.inflater.inflate(payload, true, limit, &mut data)?;
            }
            None => return Err(InflateError::InvalidData),
        }
        Ok(data)
    }

    /// The message a whole compressed frame inflated to, checked; `None`
    /// if it failed the connection.
    fn inflated(
        &mut self,
        now: Instant,
        opcode: OpCode,
        result: Result<BytesMut, InflateError>,
    ) -> Option<Message> {
        let data = match result {
            Ok(data) => data,
            Err(e) => {
                self.fail(now, inflate_error(e), false);
                return None;
            }
        };
        if opcode == OpCode::Binary {
            return Some(Message::Binary(data.freeze()));
        }
        if !crate::ws::utf8::validate(&data) {
            self.fail(now, ProtocolError::InvalidUtf8.into(), false);
            return None;
        }
        Some(Message::Text(Utf8Bytes::from_validated(data.freeze())))
    }

    /// A complete frame of a compressed message: inflated into the
    /// message's buffer, text checked as it grows, the message delivered
    /// after its last frame.
    pub(super) fn on_compressed_frame(&mut self, now: Instant, h: FrameHeader, payload: &[u8]) {
        let kind = match h.opcode {
            OpCode::Text => Some(DataKind::Text),
            OpCode::Binary => Some(DataKind::Binary),
            _ => None,
        };
        if let Some(kind) = kind {
            self.partial = Some(Partial {
                kind,
                data: BytesMut::new(),
                fragments: 1,
            });
        }
        let limit = self.config.max_message_size;
        let (Some(d), Some(p)) = (self.deflate.as_mut(), self.partial.as_mut()) else {
            return;
        };
        if kind.is_none() {
            p.fragments = p.fragments.saturating_add(1);
        }
        d.received = true;
        let before = p.data.len();
        if let Err(e) = d.inflater.inflate(payload, h.fin, limit, &mut p.data) {
            d.rx = false;
            return self.fail(now, inflate_error(e), false);
        }
        if h.fin {
            d.rx = false;
        }
        let text = p.kind == DataKind::Text;
        if text && !self.utf8.feed(p.data.get(before..).unwrap_or_default()) {
            return self.fail(now, ProtocolError::InvalidUtf8.into(), false);
        }
        if h.fin {
            if let Some(p) = self.partial.take() {
                self.deliver(now, p.kind, p.data);
            }
        }
    }

    /// Fails the connection at once, from a command (no input to wait
    /// for): the close frame, the event, the end.
    fn abort(&mut self, error: Error) {
        if !self.close_sent {
            let frame = crate::ws::CloseFrame::new(error.close_code(), error.to_string());
            self.send_close(Some(frame));
        }
        let (code, reason) = (error.close_code(), error.to_string());
        self.emit_closed(code, reason, false, Some(error));
        self.finish();
    }

    /// Drops the codec states (the connection ended); the parameters stay
    /// for [`deflate_params`](Self::deflate_params).
    pub(super) fn end_compression(&mut self) {
        if let Some(d) = self.deflate.as_mut() {
            let config = self.config.deflate;
            d.deflater = Deflater::new(self.role, &d.params, &config);
            d.inflater = Inflater::new(self.role, &d.params);
            d.buf = BytesMut::new();
            d.rx = false;
            d.tx = false;
        }
    }
}
