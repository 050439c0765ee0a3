//! Where the peer's bytes land: the input buffers of a [`Connection`] and the
//! buffers of large frames.
//!
//! # Theory of operation
//!
//! * `rbuf` holds the input not yet consumed; frames are decoded from its
//!   front and cut off without copying (see `reader`).
//! * Input comes four ways. `handle_input` copies the caller's bytes into
//!   `rbuf`. `handle_input_bytes` adopts the caller's buffer when `rbuf` is
//!   empty. `input_buffer` and `read_from` read straight into `ibuf`, the
//!   spare room just after `rbuf` in the same allocation, and
//!   `commit_input` joins what came to `rbuf` without a copy (`room` says
//!   how `read_from` gives a `std::io::Read` initialised memory without
//!   zero-filling before each read).
//! * A large frame (16 KiB or more) that straddles reads must not be copied
//!   again each time more of it arrives. With the copying inputs, its
//!   payload goes to its own buffer, `big`, unmasked on the way in
//!   (`bypass`, `feed_big`); with the reading inputs, reads stop at the end
//!   of the frame, so it grows in place in `rbuf` and is never moved.
//! * Room is made from what has arrived, never from the length a header
//!   declares: at most four times what came, the read size asked for, or
//!   the size of the last large frame the peer completed (`frame_room`).
//! * An idle connection holds no input memory, except the room for the
//!   next read when that is of a usual read size or the size of the large
//!   frames the peer is sending (`input_drained`).

use std::{
    io::{self, Read},
    time::Instant,
};

use bytes::{Buf, BufMut, BytesMut, buf::Limit};

use super::{Connection, Current, Phase};
use crate::ws::{
    ProtocolError,
    frame::{self, FrameHeader, MAX_HEADER_LEN},
    mask::extend_masked,
};

/// Frames at least this long that straddle reads are assembled in their
/// own buffer instead of the input buffer.
pub(super) const BIG_FRAME: usize = 16 * 1024;
/// An idle connection keeps the room for the driver's next read if it was
/// allocated at most this large (a usual read size, not a large frame).
const INPUT_KEEP: usize = 128 * 1024;
/// What [`Connection::read_from`] asks a reader for at most.
const READ_SIZE: usize = 64 * 1024;
/// The least room left in its allocation that [`Connection::read_from`]
/// reads into without making room for a full read.
const READ_LEFT: usize = 16 * 1024;

impl Connection {
    /// Feeds bytes read from the socket. Never fails: a peer's bad input
    /// queues the right reply and [`Event::Closed`](crate::ws::Event::Closed).
    ///
    /// `bytes` are copied: small frames into the input buffer, the payload
    /// of a large frame (16 KiB or more) that straddles reads straight into
    /// the buffer the message will own, unmasked on the way. With a socket
    /// API that reads into memory it is given,
    /// [`input_buffer`](Self::input_buffer) avoids even that copy. A whole
    /// permessage-deflate message in one frame that opens `bytes` (with no
    /// event waiting) is inflated from `bytes` without that copy.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.settle();
        if self.input_poisoned || matches!(self.phase, Phase::Closed) {
            return;
        }
        let mut bytes = bytes;
        if self.rbuf.is_empty() {
            bytes = &bytes[self.bypass(now, bytes, 0)..];
            if self.deflate.is_some() {
                bytes = bytes
                    .get(self.inflate_input(now, bytes)..)
                    .unwrap_or_default();
            }
            if bytes.is_empty() {
                return;
            }
            if bytes.len() >= BIG_FRAME {
                self.rbuf.reserve(self.input_room(bytes));
            }
        }
        self.rbuf.extend_from_slice(bytes);
        self.process(now);
    }

    /// How much of `bytes`, arriving at an empty input buffer, went
    /// straight into a large frame's own buffer (unmasked while copied:
    /// one pass instead of a copy into the input buffer and a pass over
    /// it). The frame was in progress, or starts at the front of `bytes`
    /// and does not end in them (see `start_big` for `held`).
    fn bypass(&mut self, now: Instant, bytes: &[u8], held: usize) -> usize {
        let mut n = 0;
        if self.big.is_some() {
            if !self.events.is_empty() {
                return 0;
            }
            n = self.feed_big(now, bytes);
            if self.big.is_some() {
                return n;
            }
        }
        match self.start_big(&bytes[n..], held.saturating_sub(n)) {
            0 => n,
            hlen => n + hlen + self.feed_big(now, &bytes[n + hlen..]),
        }
    }

    /// Takes the header of a large frame that opens `bytes` and does not
    /// end in them, as `read_frames` would once the bytes were in the input
    /// buffer, and makes the frame's buffer: returns the header's length,
    /// or 0 where the general path must decide. With events not yet polled
    /// only a binary frame is taken, whose payload cannot fail the
    /// connection (a close must not overtake the application's replies;
    /// see [`poll_event`](Self::poll_event)). Nor is a frame taken that
    /// fits in the `held` bytes of room of the buffer `bytes` came in (an
    /// owned read): that buffer becomes the payload's without a copy.
    fn start_big(&mut self, bytes: &[u8], held: usize) -> usize {
        if self.ingest
            || self.input_poisoned
            || self.current.is_some()
            || !matches!(self.phase, Phase::Open | Phase::Closing { .. })
        {
            return 0;
        }
        let Ok(Some((header, hlen))) = frame::decode_header(bytes) else {
            return 0;
        };
        let Ok(len) = usize::try_from(header.len) else {
            return 0;
        };
        let avail = bytes.len() - hlen;
        let room = self.frame_room(avail, BIG_FRAME, len);
        if len < BIG_FRAME
            || avail >= len
            || held.saturating_sub(hlen) >= room
            || (!self.events.is_empty() && self.is_text_frame(&header))
            // A header the connection refuses fails it on the general path.
            || self.check_header(&header).is_err()
        {
            return 0;
        }
        self.big = Some(Box::new(BytesMut::with_capacity(room)));
        self.current = Some(Current {
            header,
            header_len: 0,
            processed: 0,
            discard: false,
        });
        hlen
    }

    /// Room for a large read that arrives at an empty input buffer and
    /// that `bypass` left there (a large text frame behind events not yet
    /// polled, or a frame after a small one): it likely holds a large
    /// frame, whose payload will take the buffer over (see `read_frames`),
    /// so the frame is not copied again as it grows. Room for the whole
    /// frame, but never more than four times what came or the size of the
    /// last large frame the peer completed.
    fn input_room(&self, bytes: &[u8]) -> usize {
        let mut room = bytes.len().max(self.last_big);
        if matches!(self.phase, Phase::Open | Phase::Closing { .. }) && self.current.is_none() {
            if let Ok(Some((h, hlen))) = frame::decode_header(bytes) {
                let total = usize::try_from(h.len)
                    .unwrap_or(usize::MAX)
                    .saturating_add(hlen);
                room = room.max(total.min(bytes.len().saturating_mul(4)));
            }
        }
        room
    }

    /// Feeds bytes the caller already owns, without a copy when the input
    /// buffer is empty (the usual case at a message boundary).
    pub fn handle_input_bytes(&mut self, now: Instant, mut bytes: BytesMut) {
        self.settle();
        if self.input_poisoned || matches!(self.phase, Phase::Closed) {
            return;
        }
        if self.rbuf.is_empty() {
            // A large frame the caller's buffer cannot hold whole would be
            // copied out of it as it grows: it is copied now, unmasked on
            // the way, instead.
            let n = self.bypass(now, &bytes, bytes.capacity());
            if n == bytes.len() {
                return;
            }
            bytes.advance(n);
            self.rbuf = bytes;
        } else {
            self.rbuf.extend_from_slice(&bytes);
        }
        self.process(now);
    }

    /// Room to read the next input into, without a copy: append what the
    /// socket gives (at most the returned [`Limit`]'s
    /// [`remaining_mut`](BufMut::remaining_mut)), then call
    /// [`commit_input`](Self::commit_input). `want` is the read size the
    /// driver would like (16–64 KiB suits most).
    ///
    /// The room offered is `want`, except inside a frame of 16 KiB or
    /// more: then it is at most what the frame still lacks, so that reads
    /// end on frame boundaries and no frame is ever moved. Room is made
    /// with what has arrived, never with the length a header declares: at
    /// most `want`, four times what arrived of the frame, or the size of
    /// the last large frame the peer completed, whichever is largest.
    /// After a large frame, the next read starts in room for one as large
    /// (a small frame ends that), so a run of large frames is read without
    /// moving any of them.
    /// Bytes already buffered are not exposed; what is appended here and
    /// not yet committed is the next input.
    ///
    /// Between reads the connection keeps its read allocation if that was
    /// at most 128 KiB (a usual read size) or at most the size of the last
    /// large frame, since the next read makes room that large anyway: a run
    /// of large frames is read into one allocation, reclaimed each time once
    /// the application has dropped the message cut from it. A larger one,
    /// or a large one after a small frame, is given back once the input is
    /// drained. Messages cut from an allocation keep it alive for as long as
    /// the application holds them.
    ///
    /// ```
    /// use std::time::Instant;
    /// use bytes::BufMut;
    /// use wsio::ws::{Config, Connection, Event, Message};
    ///
    /// let mut ws = Connection::server_upgraded(Config::default());
    /// // A masked text frame "hi" arriving from a socket.
    /// let wire = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    /// let mut room = ws.input_buffer(16 * 1024);
    /// // With tokio: `socket.read_buf(&mut room).await?`.
    /// room.put_slice(&wire);
    /// let now = Instant::now();
    /// ws.commit_input(now);
    /// assert_eq!(ws.poll_event(now), Some(Event::Message(Message::text("hi"))));
    /// ```
    pub fn input_buffer(&mut self, want: usize) -> Limit<&mut BytesMut> {
        self.settle();
        let read = self.make_room(want, false);
        self.ibuf.lend().limit(read)
    }

    /// Processes what was read into the connection's buffer since the last
    /// commit (through [`input_buffer`](Self::input_buffer) or
    /// [`read_from`](Self::read_from)), as
    /// [`handle_input`](Self::handle_input) would process the same bytes.
    pub fn commit_input(&mut self, now: Instant) {
        self.settle();
        if self.ibuf.is_empty() {
            return;
        }
        if self.input_poisoned || matches!(self.phase, Phase::Closed) {
            self.ibuf.discard();
            return;
        }
        let data = self.ibuf.split();
        self.rbuf.unsplit(data);
        self.process(now);
    }

    /// Reads once from `reader` straight into the connection's buffer;
    /// then call [`commit_input`](Self::commit_input) with the time the
    /// read returned, or [`handle_eof`](Self::handle_eof) if it returned
    /// `Ok(0)`. Returns what `reader` returned; an error (a timeout,
    /// `WouldBlock`, `Interrupted`) leaves the connection as it was.
    ///
    /// This is [`input_buffer`](Self::input_buffer) for a
    /// [`std::io::Read`], whose `read` wants initialised memory: the only
    /// copy is the one `reader` makes, and a large frame is read into the
    /// allocation its message will own. A read asks for at most 64 KiB, into
    /// room made as `input_buffer` makes it; inside a large frame, for what
    /// the frame still lacks as far as that room goes (reads end on frame
    /// boundaries, and a frame the socket already holds comes in a few
    /// large reads rather than many of 64 KiB); while the peer sends only
    /// small frames, a read takes what is left of the current room if that
    /// is at least 16 KiB. The connection zero-fills
    /// each byte of its read allocations at most once rather than before
    /// every read, so reading into memory reclaimed from messages the
    /// application has dropped costs nothing more than the read.
    ///
    /// ```
    /// use std::time::Instant;
    /// use wsio::ws::{Config, Connection, Event, Message};
    ///
    /// let mut ws = Connection::server_upgraded(Config::default());
    /// // A masked text frame "hi", read from a socket (here a byte slice).
    /// let mut socket: &[u8] = &[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    /// let now = Instant::now();
    /// loop {
    ///     match ws.read_from(&mut socket)? {
    ///         0 => break ws.handle_eof(now),
    ///         _ => ws.commit_input(now),
    ///     }
    /// }
    /// assert_eq!(ws.poll_event(now), Some(Event::Message(Message::text("hi"))));
    /// assert!(matches!(ws.poll_event(now), Some(Event::Closed(_))));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_from(&mut self, reader: &mut impl Read) -> io::Result<usize> {
        self.settle();
        self.ingest = true;
        let read = match self.room_left() {
            Some(left) => left,
            None => self.make_room(READ_SIZE, true),
        };
        self.ibuf.read(reader, read)
    }

    /// With only small frames lately, `read_from` reads into what is left
    /// of the room, if that is at least [`READ_LEFT`], rather than making a
    /// full read's room: otherwise, while the application holds messages
    /// cut from the allocation (so it cannot be reclaimed), every small
    /// read would take a new allocation, and zero-fill it.
    fn room_left(&self) -> Option<usize> {
        let small = match self.current {
            None => self.last_big == 0,
            Some(cur) => {
                self.big.is_none()
                    && cur.header_len.saturating_add(cur.header.len as usize) < BIG_FRAME
            }
        };
        let left = self.ibuf.capacity() - self.ibuf.len();
        (small && self.ibuf.is_empty() && left >= READ_LEFT).then(|| left.min(READ_SIZE))
    }

    /// Room for the next read after the input (see `input_buffer`): returns
    /// how much the read should bring at most. `fill`: in or after a large
    /// frame, the read may fill all the room made for it rather than `want`.
    fn make_room(&mut self, want: usize, fill: bool) -> usize {
        self.ingest = true;
        let (read, grow) = self.read_target(want.max(1), fill);
        if let Some(size) = self.ibuf.make(&mut self.rbuf, read, grow) {
            self.ialloc = size;
        }
        read
    }

    /// How much the next read should bring, and how much room to make if
    /// there is less than that (see `input_buffer` and `make_room`).
    fn read_target(&self, want: usize, fill: bool) -> (usize, usize) {
        let Some(cur) = self.current else {
            // Between frames: a peer that just sent a large frame likely
            // sends another, so its first read lands where the whole frame
            // will fit instead of in a small buffer copied out a read later
            // (and, `fill`, may bring a frame as large in one read).
            let room = want.max(self.last_big);
            return (if fill { room } else { want }, room);
        };
        if cur.discard || self.big.is_some() {
            return (want, want);
        }
        // The length was checked against `max_frame_size` (a usize).
        let total = cur.header_len.saturating_add(cur.header.len as usize);
        let need = total.saturating_sub(self.rbuf.len());
        if total < BIG_FRAME || need == 0 {
            return (want, want);
        }
        // Reads stop at the end of the frame; room grows with what came.
        let room = self.frame_room(self.rbuf.len(), want, need);
        (if fill { room } else { need.min(want) }, room)
    }

    /// Room to make for a frame of which `arrived` bytes came and `rest`
    /// are still missing or wanted: `rest`, but at most `floor`, four times
    /// what arrived, or the size of the last large frame the peer
    /// completed, whichever is largest (always bytes that actually came).
    pub(super) fn frame_room(&self, arrived: usize, floor: usize, rest: usize) -> usize {
        rest.min(arrived.saturating_mul(4).max(floor).max(self.last_big))
    }

    /// All input is consumed. The room keeps the read allocation alive
    /// (beyond the messages cut from it) only if the next read would make
    /// room as large anyway: a usual read size, or the size of the large
    /// frame just completed. Then the next read reclaims it if the
    /// application has dropped those messages, instead of allocating (and,
    /// for `read_from`, zero-filling) anew.
    pub(super) fn input_drained(&mut self) {
        self.rbuf = BytesMut::new();
        // Bytes appended to the room but not yet committed stay.
        if self.ialloc > INPUT_KEEP.max(self.last_big) && self.ibuf.is_empty() {
            self.ibuf.release();
            self.ialloc = 0;
        }
    }

    /// Appends the next bytes of the large frame in progress (unmasked and
    /// checked on the way); returns how many it took. Completing the frame
    /// hands it on like any other.
    pub(super) fn feed_big(&mut self, now: Instant, data: &[u8]) -> usize {
        let Some(cur) = self.current else {
            return 0;
        };
        let text = self.is_text_frame(&cur.header);
        let Some(buf) = self.big.as_mut() else {
            return 0;
        };
        let len = cur.header.len as usize;
        let take = (len - cur.processed).min(data.len());
        if buf.len() + take > buf.capacity() {
            // Four times what has arrived, capped by the declared length:
            // about a third of an extra copy in all, and never room for
            // more than a few times what actually came.
            let target = (buf.len() + take).max(buf.capacity() * 4).min(len);
            **buf = with_room(buf, target);
        }
        let start = buf.len();
        match cur.header.mask {
            Some(key) => extend_masked(buf, &data[..take], key, cur.processed),
            None => buf.extend_from_slice(&data[..take]),
        }
        if text && !self.utf8.feed(&buf[start..]) {
            self.big = None;
            // What is left of the frame is skipped as it arrives, as on the
            // general path (`read_frames`): the stream stays framed, so the
            // peer's close frame can still end the closing handshake.
            let done = cur.processed + take;
            self.current = (done < len).then_some(Current {
                header: FrameHeader {
                    len: (len - done) as u64,
                    ..cur.header
                },
                header_len: 0,
                processed: 0,
                discard: true,
            });
            self.fail(now, ProtocolError::InvalidUtf8.into(), false);
            return take;
        }
        let processed = cur.processed + take;
        if processed < len {
            self.current = Some(Current { processed, ..cur });
            return take;
        }
        let payload = self.big.take().map(|b| *b).unwrap_or_default();
        self.current = None;
        // Room for one as large next time (bytes that really came).
        self.last_big = len.saturating_add(MAX_HEADER_LEN);
        self.on_frame(now, cur.header, payload);
        take
    }
}

/// A copy of `data` in a fresh allocation with room for `room` bytes.
pub(super) fn with_room(data: &[u8], room: usize) -> BytesMut {
    let mut fresh = BytesMut::with_capacity(room.max(data.len()));
    fresh.extend_from_slice(data);
    fresh
}
