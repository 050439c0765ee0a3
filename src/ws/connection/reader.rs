//! Frames to events: decoding, the checks that depend on the connection,
//! reassembly of fragments, and messages lent in place.
//!
//! # Theory of operation
//!
//! Frames are decoded one event at a time, when the application polls
//! (`poll_event`, `poll_event_ref`): it answers a message before the frames
//! after it are even looked at, so a reply is never overtaken by a close
//! that a later bad frame causes.
//!
//! * The common case, a whole final text or binary frame at the front of
//!   the input with no message in progress, takes one step: the payload is
//!   unmasked and checked in place, then cut off with one `split_to`
//!   (`take_whole_frame`) or lent where it lies (`whole_frame_at_front`).
//! * Otherwise a frame's header is decoded once into `current`, and its
//!   payload is unmasked (and, for text, UTF-8-checked) as it arrives, up to
//!   `processed`: no byte is processed twice however the input is split,
//!   and an invalid text prefix fails at once. A large binary frame read
//!   into the connection's own buffer is unmasked once it is whole. A
//!   complete frame is cut from the input without copying; a large one
//!   that straddles reads may instead be arriving in its own buffer (`big`,
//!   see `input`).
//! * `check_header` applies the rules that depend on this connection (role
//!   and masking, RSV bits, limits, the order of data frames, RFC 6455
//!   sections 5.1-5.4) before any payload is looked at.
//! * Fragments are appended to one buffer (`partial`) as they arrive: a
//!   message costs what its bytes cost, however many fragments carry it,
//!   and `max_message_size` bounds that. Control frames may come between
//!   fragments (section 5.4) and are handled at once.
//! * A peer's bad frame fails the connection (`fail`, in `mod.rs`); input
//!   that can no longer be framed is then discarded (`input_poisoned`).

use std::time::Instant;

use bytes::{Buf, BytesMut};

use super::{
    Connection, Current, Partial, Phase, Role,
    input::{BIG_FRAME, with_room},
};
use crate::ws::{
    DataKind, Error, Event, EventRef, LimitError, Message, MessageRef, OpCode, ProtocolError,
    Utf8Bytes,
    frame::{self, FrameHeader},
    mask::apply_mask,
    utf8::Validator,
};

/// What [`Connection::take_whole_frame`] did.
enum Whole {
    /// A whole message, cut from the input.
    Message(Message),
    /// A frame was consumed without a message (dropped, or it failed the
    /// connection).
    Consumed,
    /// Not the common case: take the general path.
    Other,
}

/// What [`Connection::whole_frame_at_front`] found.
enum AtFront {
    /// A whole message: payload `rbuf[hlen..end]`, unmasked and checked.
    Frame { hlen: usize, end: usize, text: bool },
    /// A whole compressed message, its header checked: payload
    /// `rbuf[hlen..end]`, still masked.
    Compressed {
        h: FrameHeader,
        hlen: usize,
        end: usize,
    },
    /// A frame was consumed without a message.
    Consumed,
    /// Not the common case: take the general path.
    Other,
}

impl Connection {
    /// The next event for the application.
    ///
    /// Frames are decoded one event at a time, here, at `now` (a close
    /// deadline a frame sets counts from it): the application answers a
    /// message before the frames after it are even looked at, so a reply
    /// is never overtaken by a close that a later bad frame causes.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        self.settle();
        if let Some(ev) = self.events.pop_front() {
            return Some(ev);
        }
        if self.rbuf.is_empty() {
            return None;
        }
        if let Some(boundary) = self.decodable() {
            // The common case straight to the caller, without the queue.
            if boundary {
                if let Whole::Message(m) = self.take_whole_frame(now) {
                    return Some(Event::Message(m));
                }
            }
            self.read_frames(now, false);
        }
        self.events.pop_front()
    }

    /// When frames may be decoded (open or closing): whether no message or
    /// frame is in progress, so that a whole frame at the front is a whole
    /// message.
    #[inline]
    pub(super) fn decodable(&self) -> Option<bool> {
        match &self.phase {
            Phase::Open | Phase::Closing { .. } => {
                Some(self.current.is_none() && self.partial.is_none() && self.big.is_none())
            }
            _ => None,
        }
    }

    /// Like [`poll_event`](Self::poll_event), the same events in the same
    /// order, with messages lent instead of handed over: a message that
    /// arrived in one frame is read in place in the input buffer, without
    /// an allocation or a reference count, and is valid until the next call
    /// on the connection. For an application that handles each message as
    /// it comes (parses it, copies what it keeps).
    ///
    /// ```
    /// use std::time::Instant;
    /// use wsio::ws::{Config, Connection, EventRef, MessageRef};
    ///
    /// let mut ws = Connection::server_upgraded(Config::default());
    /// // Two masked text frames, "hi" and "yo", in one read.
    /// let k = [1, 2, 3, 4];
    /// let mut wire = vec![0x81, 0x82, 1, 2, 3, 4, b'h' ^ k[0], b'i' ^ k[1]];
    /// wire.extend([0x81, 0x82, 1, 2, 3, 4, b'y' ^ k[0], b'o' ^ k[1]]);
    /// let now = Instant::now();
    /// ws.handle_input(now, &wire);
    /// let mut got = Vec::new();
    /// while let Some(ev) = ws.poll_event_ref(now) {
    ///     if let EventRef::Message(MessageRef::Text(t)) = ev {
    ///         got.push(t.to_uppercase());
    ///     }
    /// }
    /// assert_eq!(got, ["HI", "YO"]);
    /// ```
    pub fn poll_event_ref(&mut self, now: Instant) -> Option<EventRef<'_>> {
        self.settle();
        if self.events.is_empty() && !self.rbuf.is_empty() {
            if let Some(boundary) = self.decodable() {
                if boundary {
                    if let AtFront::Frame { hlen, end, text } = self.whole_frame_at_front(now) {
                        self.lent_input = end;
                        let payload = &self.rbuf[hlen..end];
                        return Some(EventRef::Message(if text {
                            MessageRef::Text(crate::ws::utf8::str_from_validated(payload))
                        } else {
                            MessageRef::Binary(payload)
                        }));
                    }
                }
                if self.events.is_empty() {
                    self.read_frames(now, false);
                }
            }
        }
        if matches!(self.events.front(), Some(Event::Message(_))) {
            self.lent_front = true;
            return match self.events.front() {
                Some(Event::Message(m)) => Some(EventRef::Message(m.into())),
                _ => None,
            };
        }
        self.events.pop_front().map(EventRef::Other)
    }

    /// Takes back what `poll_event_ref` lent: called first by every method
    /// that reads the input or the event queue.
    #[inline]
    pub(super) fn settle(&mut self) {
        if self.lent_input != 0 {
            self.rbuf.advance(self.lent_input.min(self.rbuf.len()));
            self.lent_input = 0;
            if self.rbuf.is_empty() {
                self.input_drained();
            }
        }
        if self.lent_front {
            self.lent_front = false;
            self.events.pop_front();
        }
    }

    /// Decodes frames until one produces an event (or, `eager`, until the
    /// input runs out).
    pub(super) fn read_frames(&mut self, now: Instant, eager: bool) {
        while !self.input_poisoned
            && !matches!(self.phase, Phase::Closed)
            && (eager || self.events.is_empty())
        {
            if self.big.is_some() {
                if self.rbuf.is_empty() {
                    break;
                }
                let data = std::mem::take(&mut self.rbuf);
                let n = self.feed_big(now, &data);
                self.rbuf = data;
                self.rbuf.advance(n);
                continue;
            }
            if self.current.is_none() && self.partial.is_none() {
                match self.take_whole_frame(now) {
                    Whole::Message(m) => {
                        self.events.push_back(Event::Message(m));
                        continue;
                    }
                    Whole::Consumed => continue,
                    Whole::Other => {}
                }
            }
            let cur = match self.current {
                Some(c) => c,
                None => match frame::decode_header(&self.rbuf) {
                    Ok(Some((header, header_len))) => {
                        if let Err(e) = self.check_header(&header) {
                            return self.fail(now, e, true);
                        }
                        Current {
                            header,
                            header_len,
                            processed: 0,
                            discard: false,
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return self.fail(now, ProtocolError::from(e).into(), true),
                },
            };
            // The length was checked against usize limits in check_header.
            let len = cur.header.len as usize;
            let avail = (self.rbuf.len() - cur.header_len).min(len);
            let mut discard = cur.discard;
            let is_text = self.is_text_frame(&cur.header);
            if avail < len && len >= BIG_FRAME && self.ingest && !is_text && !discard {
                // A large binary frame read into the memory its message will
                // own is unmasked in one pass once whole: nothing needs its
                // bytes before, and a pass after each 64 KiB read cost 7%
                // more in all (`binary_1MiB_x1/decode/wsio_read_from`, six
                // alternating runs on a 2-vCPU Xeon: 51.5 against 48.2 us).
                self.current = Some(cur);
                break;
            }
            if cur.processed < avail && !discard {
                let span = &mut self.rbuf[cur.header_len + cur.processed..cur.header_len + avail];
                if let Some(key) = cur.header.mask {
                    unmask_fresh(span, key, cur.processed);
                }
                if is_text && !self.utf8.feed(span) {
                    discard = true;
                    self.current = Some(Current {
                        processed: avail,
                        discard,
                        ..cur
                    });
                    self.fail(now, ProtocolError::InvalidUtf8.into(), false);
                    continue;
                }
            }
            if avail < len {
                if len >= BIG_FRAME && !discard && !self.ingest {
                    // From here the payload bypasses the input buffer. What
                    // has arrived is all of the input (the frame is not
                    // complete), so the buffer itself becomes the
                    // payload's, without a copy when it has room.
                    self.rbuf.advance(cur.header_len);
                    let mut payload = std::mem::take(&mut self.rbuf);
                    let room = self.frame_room(avail, BIG_FRAME, len);
                    if payload.capacity() < room {
                        payload = with_room(&payload, room);
                    }
                    self.big = Some(Box::new(payload));
                    self.current = Some(Current {
                        header_len: 0,
                        processed: avail,
                        discard,
                        ..cur
                    });
                    continue;
                }
                self.current = Some(Current {
                    processed: avail,
                    discard,
                    ..cur
                });
                break;
            }
            self.current = None;
            self.last_big = if cur.header_len + len >= BIG_FRAME {
                cur.header_len + len
            } else {
                0
            };
            let mut payload = self.rbuf.split_to(cur.header_len + len);
            payload.advance(cur.header_len);
            if !discard {
                self.on_frame(now, cur.header, payload);
            }
        }
        if self.rbuf.is_empty() {
            self.input_drained();
        }
    }

    /// The common case in one step: a whole final text or binary frame at
    /// the front of the input, no message in progress (the caller checks
    /// `current`, `partial` and `big`). The frame is unmasked, checked and
    /// cut from the input with one `split_to`.
    #[inline]
    fn take_whole_frame(&mut self, now: Instant) -> Whole {
        let (hlen, end, text) = match self.whole_frame_at_front(now) {
            AtFront::Frame { hlen, end, text } => (hlen, end, text),
            AtFront::Compressed { h, hlen, end } => {
                if let (Some(key), Some(payload)) = (h.mask, self.rbuf.get_mut(hlen..end)) {
                    unmask_fresh(payload, key, 0);
                }
                return match self.inflate_whole_frame(now, h, hlen, end) {
                    Some(m) => Whole::Message(m),
                    None => Whole::Consumed,
                };
            }
            AtFront::Consumed => return Whole::Consumed,
            AtFront::Other => return Whole::Other,
        };
        let mut data = self.rbuf.split_to(end).freeze();
        data.advance(hlen);
        if self.rbuf.is_empty() {
            self.input_drained();
        }
        Whole::Message(if text {
            Message::Text(Utf8Bytes::from_validated(data))
        } else {
            Message::Binary(data)
        })
    }

    /// A whole final text or binary frame opening `bytes` that
    /// `check_header` would pass with no message in progress: its header,
    /// the header's length and the frame's end. `None`: anything else,
    /// which the general path decides (and fails with the right error). A
    /// compressed message's size is checked while it is inflated. Always
    /// inlined: as a call it cost 3-6% of the 16 B decode.
    #[inline(always)]
    pub(super) fn whole_frame(&self, bytes: &[u8]) -> Option<(FrameHeader, usize, usize)> {
        let Ok(Some((h, hlen))) = frame::decode_header(bytes) else {
            return None;
        };
        if !h.fin || !matches!(h.opcode, OpCode::Text | OpCode::Binary) {
            return None;
        }
        let end = usize::try_from(h.len)
            .ok()
            .and_then(|len| len.checked_add(hlen))
            .filter(|&end| end <= bytes.len())?;
        let compressed = h.rsv != 0;
        let max = if compressed {
            self.config.max_frame_size
        } else {
            self.config.max_frame_size.min(self.config.max_message_size)
        };
        let refused = (compressed && !self.inflates_at_front(&h))
            || h.mask.is_some() != (self.role == Role::Server)
            || h.len > max as u64;
        (!refused).then_some((h, hlen, end))
    }

    /// A whole final text or binary frame at the front of the input,
    /// unmasked and checked in place, for the caller to cut or lend. A
    /// frame that fails the connection or is dropped is consumed here.
    #[inline]
    fn whole_frame_at_front(&mut self, now: Instant) -> AtFront {
        if self.input_poisoned {
            return AtFront::Other;
        }
        let Some((h, hlen, end)) = self.whole_frame(&self.rbuf) else {
            return AtFront::Other;
        };
        if h.rsv != 0 {
            return AtFront::Compressed { h, hlen, end };
        }
        let text = h.opcode == OpCode::Text;
        if end < BIG_FRAME {
            self.last_big = 0;
        }
        let payload = &mut self.rbuf[hlen..end];
        if let Some(key) = h.mask {
            unmask_fresh(payload, key, 0);
        }
        // As in `deliver`: data after our close frame is dropped, unread.
        let dropped = self.close_sent && self.closed_emitted;
        let valid = dropped || !text || crate::ws::utf8::validate(payload);
        if !valid || dropped {
            self.rbuf.advance(end);
            if self.rbuf.is_empty() {
                self.input_drained();
            }
            if !valid {
                self.fail(now, ProtocolError::InvalidUtf8.into(), false);
            }
            return AtFront::Consumed;
        }
        AtFront::Frame { hlen, end, text }
    }

    /// Whether a frame's payload, as it arrives, is text to check: a text
    /// message's frame, unless the message is compressed (its text is
    /// checked once inflated) or will be dropped unread (it comes after our
    /// close frame, once the application heard `Closed`; see `deliver`).
    pub(super) fn is_text_frame(&self, h: &FrameHeader) -> bool {
        if self.close_sent && self.closed_emitted {
            return false;
        }
        let text = match h.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self
                .partial
                .as_ref()
                .is_some_and(|p| p.kind == DataKind::Text),
            _ => false,
        };
        text && (self.deflate.is_none() || !self.frame_is_compressed(h))
    }

    /// Rules that depend on this connection: masking, RSV, limits, and the
    /// order of data frames. Also resets the UTF-8 state at a message start.
    pub(super) fn check_header(&mut self, h: &FrameHeader) -> Result<(), Error> {
        if h.rsv != 0 || self.deflate.is_some() {
            // RSV1 belongs to permessage-deflate, when negotiated.
            self.check_rsv(h)?;
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame.into()),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame.into()),
            _ => {}
        }
        if h.len > self.config.max_frame_size as u64 {
            return Err(LimitError::FrameTooLarge {
                len: h.len,
                max: self.config.max_frame_size,
            }
            .into());
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.data.len());
        match (h.opcode, &self.partial) {
            (OpCode::Continuation, None) => {
                return Err(ProtocolError::UnexpectedContinuation.into());
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation.into());
            }
            (OpCode::Continuation, Some(p)) if p.fragments >= self.config.max_fragments => {
                return Err(LimitError::TooManyFragments {
                    max: self.config.max_fragments,
                }
                .into());
            }
            (OpCode::Text, None) => self.utf8 = Validator::default(),
            _ => {}
        }
        // A compressed message's limit is on its inflated size, enforced
        // while inflating.
        if !h.opcode.is_control()
            && (so_far as u64).saturating_add(h.len) > self.config.max_message_size as u64
            && (self.deflate.is_none() || !self.frame_is_compressed(h))
        {
            return Err(LimitError::MessageTooLarge {
                max: self.config.max_message_size,
            }
            .into());
        }
        Ok(())
    }

    pub(super) fn on_frame(&mut self, now: Instant, h: FrameHeader, payload: BytesMut) {
        let peer_closed = matches!(
            self.phase,
            Phase::Closing {
                peer_closed: true,
                ..
            }
        );
        match h.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation
                if self.deflate.is_some() && self.frame_is_compressed(&h) =>
            {
                self.on_compressed_frame(now, h, &payload);
            }
            OpCode::Text | OpCode::Binary if h.fin => {
                let kind = if h.opcode == OpCode::Text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                self.deliver(now, kind, payload);
            }
            OpCode::Text | OpCode::Binary => {
                let kind = if h.opcode == OpCode::Text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                self.partial = Some(Partial {
                    kind,
                    data: payload,
                    fragments: 1,
                });
            }
            OpCode::Continuation => {
                let Some(p) = self.partial.as_mut() else {
                    return;
                };
                p.data.extend_from_slice(&payload);
                p.fragments = p.fragments.saturating_add(1);
                if h.fin {
                    if let Some(p) = self.partial.take() {
                        self.deliver(now, p.kind, p.data);
                    }
                }
            }
            OpCode::Ping => {
                let payload = payload.freeze();
                // Pongs are skipped once the send queue is full: a peer that
                // pings without reading must not grow our memory (section
                // 5.5.3 allows answering only the latest ping anyway).
                if self.config.auto_pong
                    && !self.close_sent
                    && self.buffered_amount() + payload.len() <= self.config.max_send_queue
                {
                    self.write_frame(true, OpCode::Pong, payload.clone());
                }
                if !peer_closed && !self.closed_emitted {
                    self.events.push_back(Event::Ping(payload));
                }
            }
            OpCode::Pong => {
                if !peer_closed && !self.closed_emitted {
                    self.events.push_back(Event::Pong(payload.freeze()));
                }
            }
            OpCode::Close => self.on_close_frame(now, &payload),
        }
    }

    pub(super) fn deliver(&mut self, now: Instant, kind: DataKind, data: BytesMut) {
        if self.close_sent {
            // Section 7.1.3 lets us drop data after our close frame; the
            // application already heard `Closed` if we failed the connection.
            if self.closed_emitted {
                return;
            }
        }
        let msg = match kind {
            DataKind::Binary => Message::Binary(data.freeze()),
            DataKind::Text => {
                if !self.utf8.is_complete() {
                    return self.fail(now, ProtocolError::InvalidUtf8.into(), false);
                }
                Message::Text(Utf8Bytes::from_validated(data.freeze()))
            }
        };
        self.events.push_back(Event::Message(msg));
    }
}

/// Unmasks bytes reads have just written (the payload from `offset` on),
/// the last piece first: the lines a copy wrote last are the ones still in
/// the L1 cache, and a pass from the front would evict them before getting
/// there. On a host with a 48 KiB L1, 64 KiB reads decode about 10% faster
/// this way; where the copy leaves its lines in L2 it changes nothing.
#[inline]
fn unmask_fresh(span: &mut [u8], key: [u8; 4], offset: usize) {
    const PIECE: usize = 16 * 1024;
    let mut end = span.len();
    while end > PIECE {
        let start = end - PIECE;
        if let Some(piece) = span.get_mut(start..end) {
            apply_mask(piece, key, offset + start);
        }
        end = start;
    }
    if let Some(first) = span.get_mut(..end) {
        apply_mask(first, key, offset);
    }
}
