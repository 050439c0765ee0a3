//! The send side of a [`Connection`]: frames encoded and queued by the
//! commands, handed to the driver by the transmit pollers.
//!
//! # Theory of operation
//!
//! * Small writes (headers, control frames, payloads of at most 1 KiB, the
//!   handshake's head) are encoded into one buffer, `out`, so that
//!   everything sent between two writes leaves as one piece; the buffer is
//!   split off, not taken, and reused once the driver drops what it wrote.
//! * A larger payload is queued as the application gave it (`Queued`: its
//!   header inline, its payload as a `Bytes`), behind what `out` holds, so
//!   bytes leave in the order they were sent and a server's payload is never
//!   copied. A client masks it when it is polled: in place when nothing
//!   else holds the payload, else into a scratch buffer (`wbuf`) reused
//!   from one frame to the next.
//! * `buffered_amount` counts what is queued and not yet polled; sends that
//!   would take it past `max_send_queue` fail, all or nothing, so the
//!   application sees backpressure instead of the connection growing
//!   without bound. Automatic pongs are skipped instead when it is full.
//! * After the close frame nothing more is sent; [`Transmit::Close`] comes
//!   after every byte queued before it.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{Connection, Phase, Role};
use crate::ws::{
    CloseFrame, DataKind, EncodedFrame, Message, OpCode, UsageError,
    frame::{self, FrameHeader, MAX_HEADER_LEN},
    mask::{apply_mask, extend_masked},
};

/// What the driver must do with the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Write these bytes.
    Data(Bytes),
    /// Close the TCP connection (after writing everything before this).
    Close,
}

/// A frame header of at most 14 bytes, held inline: the `head` of
/// [`VectoredTransmit::Data`], or what [`Connection::send_direct`] gives.
/// Dereferences to its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameHead {
    buf: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl FrameHead {
    #[inline]
    pub(super) fn new(header: &FrameHeader) -> Self {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let len = frame::write_header(header, &mut buf) as u8;
        FrameHead { buf, len }
    }

    /// An unmasked header (a server's).
    #[inline]
    fn unmasked(fin: bool, opcode: OpCode, len: usize) -> Self {
        FrameHead::new(&FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            len: len as u64,
        })
    }

    /// Its length on the wire.
    #[inline]
    fn wire_len(&self) -> usize {
        self.len as usize
    }

    /// The header's bytes (none for a [`VectoredTransmit::Data`] that is
    /// all `body`).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        // `len` is at most MAX_HEADER_LEN by construction.
        self.buf.get(..self.len as usize).unwrap_or_default()
    }
}

impl std::ops::Deref for FrameHead {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for FrameHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrameHead({:02x?})", self.as_bytes())
    }
}

/// What the driver must do with the socket, a frame header apart from its
/// payload: see [`Connection::poll_transmit_vectored`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectoredTransmit {
    /// Write `head`, then `body` (ideally with one vectored write, such as
    /// `std::io::Write::write_vectored`). Either may be empty.
    Data {
        /// A frame header, or nothing.
        head: FrameHead,
        /// Bytes that follow `head` on the wire.
        body: Bytes,
    },
    /// Close the TCP connection (after writing everything before this).
    Close,
}

impl FrameHead {
    /// The masking key, if this is the header of a masked frame (a
    /// client's): its last four bytes.
    #[inline]
    fn mask(&self) -> Option<[u8; 4]> {
        let len = self.len as usize;
        if len >= 6 && self.buf[1] & 0x80 != 0 {
            let k = self.buf.get(len - 4..len)?;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        }
    }
}

/// An entry of the send queue: `body` follows `head` on the wire. A large
/// frame keeps its header inline (`head`) and its payload as the
/// application gave it; a client's payload is masked (with the key at the
/// end of `head`) only when it is polled: in place if the application
/// kept no other handle to it, else into a buffer the connection reuses.
/// Other entries have an empty `head`.
#[derive(Debug)]
pub(super) struct Queued {
    head: FrameHead,
    body: Bytes,
}

/// Payloads at most this long are copied next to their header; longer ones
/// are queued as their own `Bytes`, without a copy.
const COPY_THRESHOLD: usize = 1024;
/// The least the output buffer grows by, so that a run of small writes
/// (headers, small frames) shares one allocation.
const OUT_MIN: usize = 512;
/// The largest output buffer a connection keeps for its next writes.
const OUT_KEEP: usize = 4 * 1024;
/// `poll_transmit` keeps its scratch buffer (masked payloads, headers) for
/// the next frame if the frame was at most this large; a larger one goes
/// with the transmit.
const WBUF_KEEP: usize = 128 * 1024;

impl Connection {
    /// Bytes queued for sending and not yet taken by
    /// [`poll_transmit`](Self::poll_transmit): the backpressure signal.
    pub fn buffered_amount(&self) -> usize {
        self.queued + self.out.len()
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has something to give.
    fn transmit_pending(&self) -> bool {
        !self.queue.is_empty()
            || !self.out.is_empty()
            || (self.close_transmit && !self.close_transmitted)
    }

    // ----- outputs ------------------------------------------------------

    /// The next bytes to write, or the instruction to close the socket.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.start_clock(now);
        if let Some(Queued { head, body }) = self.queue.pop_front() {
            let b = if head.is_empty() {
                body
            } else {
                let body = match head.mask() {
                    None => body,
                    Some(key) => match mask_in_place(body, key) {
                        Ok(masked) => masked,
                        Err(shared) => {
                            let b = self.scratch(&head, &shared, Some(key));
                            self.queued -= b.len();
                            return Some(Transmit::Data(b));
                        }
                    },
                };
                // The header now, the payload at the next call.
                self.queue.push_front(Queued {
                    head: FrameHead::default(),
                    body,
                });
                if self.wbuf.capacity() < MAX_HEADER_LEN {
                    self.wbuf.reserve(OUT_MIN);
                }
                // All 14 bytes (a copy of fixed size, no call), then only
                // the header's own are cut off; the rest is room again.
                self.wbuf.extend_from_slice(&head.buf);
                let b = self.wbuf.split_to(head.wire_len()).freeze();
                self.wbuf.clear();
                b
            };
            self.queued -= b.len();
            return Some(Transmit::Data(b));
        }
        if !self.out.is_empty() {
            return Some(Transmit::Data(self.take_out()));
        }
        if self.close_transmit && !self.close_transmitted {
            self.close_transmitted = true;
            return Some(Transmit::Close);
        }
        None
    }

    /// Like [`poll_transmit`](Self::poll_transmit), with a frame's header
    /// kept apart from its payload, for a vectored write: a server's large
    /// payload is handed out as the caller gave it, and no buffer is cut
    /// for its header. The same bytes come out in the same order; the two
    /// pollers may be mixed.
    ///
    /// ```
    /// use std::{io::{IoSlice, Write}, time::Instant};
    /// use bytes::Bytes;
    /// use wsio::ws::{Config, Connection, Message, VectoredTransmit};
    ///
    /// let mut ws = Connection::server_upgraded(Config::default());
    /// ws.send(Message::Binary(Bytes::from(vec![7u8; 4096]))).unwrap();
    /// let mut socket = Vec::new(); // a TcpStream in a real driver
    /// while let Some(t) = ws.poll_transmit_vectored(Instant::now()) {
    ///     match t {
    ///         VectoredTransmit::Data { head, body } => {
    ///             let n = socket.write_vectored(&[IoSlice::new(&head), IoSlice::new(&body)])?;
    ///             // A socket may take less: write the rest before polling again.
    ///             assert_eq!(n, head.len() + body.len());
    ///         }
    ///         VectoredTransmit::Close => break,
    ///     }
    /// }
    /// assert_eq!(&socket[..4], [0x82, 126, 0x10, 0x00]);
    /// assert_eq!(socket.len(), 4 + 4096);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_transmit_vectored(&mut self, now: Instant) -> Option<VectoredTransmit> {
        self.start_clock(now);
        if let Some(Queued { head, mut body }) = self.queue.pop_front() {
            self.queued -= head.wire_len() + body.len();
            if let Some(key) = head.mask() {
                body = match mask_in_place(body, key) {
                    Ok(masked) => masked,
                    Err(shared) => self.scratch(&[], &shared, Some(key)),
                };
            }
            return Some(VectoredTransmit::Data { head, body });
        }
        if !self.out.is_empty() {
            let body = self.take_out();
            return Some(VectoredTransmit::Data {
                head: FrameHead::default(),
                body,
            });
        }
        if self.close_transmit && !self.close_transmitted {
            self.close_transmitted = true;
            return Some(VectoredTransmit::Close);
        }
        None
    }

    /// The small writes gathered in `out`, for the driver. Split off
    /// rather than taken: the buffer stays this connection's, and once the
    /// driver has written and dropped these bytes the next frames reuse it
    /// (a reference count each way instead of an allocation and a free per
    /// write). A buffer that grew large is let go with its last bytes.
    fn take_out(&mut self) -> Bytes {
        let large = self.out.capacity() > OUT_KEEP;
        let data = self.out.split().freeze();
        if large {
            self.out = BytesMut::new();
        }
        data
    }

    /// Sends a whole message (split into frames of
    /// [`Config::send_fragment_size`](crate::ws::Config::send_fragment_size) if set).
    ///
    /// A payload over 1 KiB is queued as it is, not copied. A client masks
    /// it when it is polled: in place when the message holds the only
    /// handle to its bytes (made from a `Vec` or `BytesMut` and not cloned
    /// or sliced), so the frame leaves without a copy; into a copy when
    /// the bytes are shared, which are then left as they were.
    ///
    /// ```
    /// use std::time::Instant;
    /// use wsio::{entropy::SeededEntropy, ws::{Config, Connection, Message, Transmit}};
    ///
    /// let mut ws = Connection::client_upgraded(Config::default(), Box::new(SeededEntropy::new(1)));
    /// let payload = vec![7u8; 64 * 1024];
    /// let at = payload.as_ptr();
    /// ws.send(Message::binary(payload)).unwrap();
    /// let now = Instant::now();
    /// let Some(Transmit::Data(head)) = ws.poll_transmit(now) else { panic!() };
    /// assert_eq!(head.len(), 14); // the header, with its masking key
    /// let Some(Transmit::Data(body)) = ws.poll_transmit(now) else { panic!() };
    /// assert_eq!(body.as_ptr(), at); // masked where the application left it
    /// ```
    ///
    /// With permessage-deflate negotiated, a message of at least
    /// [`DeflateConfig::threshold`](crate::ws::deflate::DeflateConfig::threshold)
    /// bytes is compressed (see [`send_compressed`](Self::send_compressed)).
    pub fn send(&mut self, msg: Message) -> Result<(), UsageError> {
        self.send_message(msg, None)
    }

    /// [`send`](Self::send), compressed by size (`None`) or as told.
    #[inline]
    pub(super) fn send_message(
        &mut self,
        msg: Message,
        compress: Option<bool>,
    ) -> Result<(), UsageError> {
        self.check_can_send()?;
        if self.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        let (opcode, payload) = msg.into_parts();
        self.check_queue(payload.len())?;
        if self.deflate.is_some() && self.send_message_deflated(opcode, &payload, compress) {
            return Ok(());
        }
        match self.config.send_fragment_size {
            Some(size) if payload.len() > size => {
                let mut rest = payload;
                let mut op = opcode;
                while rest.len() > size {
                    let head = rest.split_to(size);
                    self.write_frame(false, op, head);
                    op = OpCode::Continuation;
                }
                self.write_frame(true, op, rest);
            }
            _ => self.write_frame(true, opcode, payload),
        }
        Ok(())
    }

    /// Sends one message whose payload is `prefix` followed by `payload`,
    /// without joining them first: a server sends a large `payload` without
    /// copying it. For text, the two together must be UTF-8.
    pub fn send_with_prefix(
        &mut self,
        kind: DataKind,
        prefix: &[u8],
        payload: Bytes,
    ) -> Result<(), UsageError> {
        if self.role == Role::Client
            || payload.len() <= COPY_THRESHOLD
            || self.wants_compress(prefix.len() + payload.len())
        {
            return self.send_slices(kind, prefix, &payload);
        }
        self.start_message(kind, prefix.len() + payload.len())?;
        self.out.extend_from_slice(prefix);
        self.push_bytes(payload);
        Ok(())
    }

    /// Sends one message whose payload is `prefix` followed by `payload`,
    /// both borrowed. The bytes are copied into the send buffer, so once
    /// that buffer has grown a message costs no allocation: the way to send
    /// text an upper layer has just encoded into a reusable buffer. For
    /// text, the two together must be UTF-8.
    ///
    /// ```
    /// use std::time::Instant;
    /// use wsio::ws::{Config, Connection, DataKind, Transmit};
    /// let mut ws = Connection::server_upgraded(Config::default());
    /// ws.send_slices(DataKind::Text, b"4", b"hello").unwrap();
    /// let Some(Transmit::Data(wire)) = ws.poll_transmit(Instant::now()) else { panic!() };
    /// assert_eq!(&wire[..], b"\x81\x064hello");
    /// ```
    pub fn send_slices(
        &mut self,
        kind: DataKind,
        prefix: &[u8],
        payload: &[u8],
    ) -> Result<(), UsageError> {
        let len = prefix.len() + payload.len();
        if self.wants_compress(len) {
            self.check_message(len)?;
            if self.send_deflated(kind.opcode(), &[prefix, payload]) {
                return Ok(());
            }
        }
        // Header and payload in one allocation when the buffer is empty.
        self.reserve_out(MAX_HEADER_LEN + len);
        let mask = self.start_message(kind, len)?;
        match mask {
            // Masked while copied.
            Some(key) => {
                if !prefix.is_empty() {
                    extend_masked(&mut self.out, prefix, key, 0);
                }
                extend_masked(&mut self.out, payload, key, prefix.len());
            }
            None => {
                if !prefix.is_empty() {
                    self.out.extend_from_slice(prefix);
                }
                self.out.extend_from_slice(payload);
            }
        }
        Ok(())
    }

    /// Server: the header of a whole message whose payload the caller
    /// writes itself, straight after it: for a payload that is not in a
    /// `Bytes` (a memory map, a buffer the application reuses), sent with
    /// no copy, no reference count and no queue. Allowed only when nothing
    /// is waiting to be transmitted ([`poll_transmit`](Self::poll_transmit)
    /// has returned `None`), so the frame cannot overtake queued bytes; the
    /// caller then writes the header and exactly `len` payload bytes (text
    /// must be UTF-8) before anything else is polled or written. Always one
    /// frame, whatever [`Config::send_fragment_size`](crate::ws::Config::send_fragment_size) says.
    ///
    /// ```
    /// use std::io::{IoSlice, Write};
    /// use wsio::ws::{Config, Connection, DataKind, UsageError};
    ///
    /// let mut ws = Connection::server_upgraded(Config::default());
    /// let payload = vec![7u8; 4096]; // stays the caller's
    /// let head = ws.send_direct(DataKind::Binary, payload.len()).unwrap();
    /// let mut socket = Vec::new(); // a TcpStream in a real driver
    /// socket.write_vectored(&[IoSlice::new(&head), IoSlice::new(&payload)])?;
    /// assert_eq!(&socket[..4], [0x82, 126, 0x10, 0x00]);
    /// assert_eq!(socket.len(), 4 + 4096);
    /// // Behind queued bytes it is refused.
    /// ws.send_slices(DataKind::Text, b"", b"queued").unwrap();
    /// assert_eq!(ws.send_direct(DataKind::Text, 2), Err(UsageError::TransmitPending));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_direct(&mut self, kind: DataKind, len: usize) -> Result<FrameHead, UsageError> {
        if self.role != Role::Server {
            return Err(UsageError::NotServer);
        }
        self.check_can_send()?;
        if self.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        if self.transmit_pending() {
            return Err(UsageError::TransmitPending);
        }
        Ok(FrameHead::unmasked(true, kind.opcode(), len))
    }

    /// Checks that a whole message of `len` bytes may be sent now and
    /// writes its frame header; the payload follows, masked with the key
    /// returned (a client's).
    fn start_message(&mut self, kind: DataKind, len: usize) -> Result<Option<[u8; 4]>, UsageError> {
        self.check_message(len)?;
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: kind.opcode(),
            mask: self.next_mask(),
            len: len as u64,
        };
        frame::encode_header(&header, &mut self.out);
        Ok(header.mask)
    }

    /// Checks that a whole message of `len` bytes may be sent now.
    #[inline]
    fn check_message(&self, len: usize) -> Result<(), UsageError> {
        self.check_can_send()?;
        if self.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        self.check_queue(len)
    }

    /// Sends several messages, all or none: the send-queue limit is checked
    /// once for their total, so a packet split over several messages (a
    /// Socket.IO event and its attachments) is never cut short.
    pub fn send_batch(&mut self, messages: &[Message]) -> Result<(), UsageError> {
        self.check_can_send()?;
        if self.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        self.check_queue(messages.iter().map(|m| m.len() + MAX_HEADER_LEN).sum())?;
        for m in messages {
            let (opcode, payload) = m.clone().into_parts();
            if self.wants_compress(payload.len()) && self.send_deflated(opcode, &[&payload]) {
                continue;
            }
            self.write_frame(true, opcode, payload);
        }
        Ok(())
    }

    /// Server: sends frames encoded once for many connections, all or none.
    pub fn send_encoded_batch<'a>(
        &mut self,
        frames: impl Iterator<Item = &'a EncodedFrame> + Clone,
    ) -> Result<(), UsageError> {
        if self.role != Role::Server {
            return Err(UsageError::NotServer);
        }
        self.check_can_send()?;
        if self.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        self.check_queue(frames.clone().map(|f| f.as_bytes().len()).sum())?;
        for f in frames {
            if !self.send_encoded_deflated(f.as_bytes()) {
                self.push_shared(f.as_bytes());
            }
        }
        Ok(())
    }

    /// Sends one fragment of a message streamed in pieces: the first call
    /// starts a message of `kind`, the call with `fin` ends it. Text
    /// fragments may split a character; the whole message must be UTF-8.
    pub fn send_fragment(
        &mut self,
        kind: DataKind,
        data: Bytes,
        fin: bool,
    ) -> Result<(), UsageError> {
        self.check_can_send()?;
        let opcode = match self.sending {
            None => kind.opcode(),
            Some(k) if k == kind => OpCode::Continuation,
            Some(_) => return Err(UsageError::FragmentInProgress),
        };
        self.check_queue(data.len())?;
        match self.send_fragment_deflated(opcode, &data, fin) {
            Some(Err(e)) => return Err(e),
            Some(Ok(())) => {}
            None => self.write_frame(fin, opcode, data),
        }
        self.sending = if fin { None } else { Some(kind) };
        Ok(())
    }

    /// Server: sends a frame encoded once for many connections.
    pub fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), UsageError> {
        if self.role != Role::Server {
            return Err(UsageError::NotServer);
        }
        self.check_can_send()?;
        if self.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        self.check_queue(frame.as_bytes().len())?;
        if !self.send_encoded_deflated(frame.as_bytes()) {
            self.push_shared(frame.as_bytes());
        }
        Ok(())
    }

    /// Sends a ping with up to 125 bytes of payload.
    pub fn ping(&mut self, payload: Bytes) -> Result<(), UsageError> {
        self.check_can_send()?;
        if payload.len() > 125 {
            return Err(UsageError::ControlTooLong);
        }
        self.write_frame(true, OpCode::Ping, payload);
        Ok(())
    }

    /// Sends a pong (unsolicited, or when [`Config::auto_pong`](crate::ws::Config::auto_pong) is off).
    pub fn pong(&mut self, payload: Bytes) -> Result<(), UsageError> {
        self.check_can_send()?;
        if payload.len() > 125 {
            return Err(UsageError::ControlTooLong);
        }
        self.write_frame(true, OpCode::Pong, payload);
        Ok(())
    }

    // ----- internals: output ------------------------------------------

    pub(super) fn check_can_send(&self) -> Result<(), UsageError> {
        match self.phase {
            Phase::Open if !self.close_sent => Ok(()),
            Phase::Open | Phase::Closing { .. } | Phase::Closed => Err(UsageError::Closing),
            _ => Err(UsageError::NotOpen),
        }
    }

    fn check_queue(&self, len: usize) -> Result<(), UsageError> {
        let queued = self.buffered_amount();
        if queued > 0 && queued + len > self.config.max_send_queue {
            return Err(UsageError::SendQueueFull);
        }
        Ok(())
    }

    pub(super) fn send_close(&mut self, frame: Option<CloseFrame>) {
        let payload = frame.map(|f| f.encode()).unwrap_or_default();
        self.write_frame(true, OpCode::Close, payload);
        self.close_sent = true;
    }

    pub(super) fn push_bytes(&mut self, b: Bytes) {
        self.push_frame(FrameHead::default(), b);
    }

    /// Queues `body` after `head` (see [`Queued`]), behind the small
    /// writes gathered in `out`.
    #[inline]
    pub(super) fn push_frame(&mut self, head: FrameHead, body: Bytes) {
        if !self.out.is_empty() {
            let small = self.out.split().freeze();
            self.queued += small.len();
            self.queue.push_back(Queued {
                head: FrameHead::default(),
                body: small,
            });
        }
        self.queued += head.wire_len() + body.len();
        self.queue.push_back(Queued { head, body });
    }

    /// `head` then `payload` (masked with `mask`, if any) in the scratch
    /// buffer, cut off as one `Bytes`. The scratch allocation is reused
    /// when the driver has dropped everything cut from it before (as a
    /// driver that writes each transmit before polling the next does), so
    /// large client frames are masked into memory that is still in cache.
    fn scratch(&mut self, head: &[u8], payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
        let n = head.len() + payload.len();
        if self.wbuf.capacity() < n {
            self.wbuf.reserve(n.max(OUT_MIN));
        }
        self.wbuf.extend_from_slice(head);
        match mask {
            Some(key) => extend_masked(&mut self.wbuf, payload, key, 0),
            None => self.wbuf.extend_from_slice(payload),
        }
        let b = self.wbuf.split().freeze();
        if n > WBUF_KEEP {
            // Too large to keep for an idle connection: it goes with `b`.
            self.wbuf = BytesMut::new();
        }
        b
    }

    /// Queues a frame shared with other connections. A small one is copied
    /// next to this connection's other output, so that everything sent to
    /// it between two writes leaves as one piece: copying a few hundred
    /// bytes costs less than a reference count taken and released (two
    /// atomic operations) and a queue entry per frame, and a broadcast
    /// then reaches each receiver in one write of one buffer.
    pub(super) fn push_shared(&mut self, frame: &Bytes) {
        if frame.len() <= COPY_THRESHOLD {
            self.reserve_out(frame.len());
            self.out.extend_from_slice(frame);
        } else {
            self.push_bytes(frame.clone());
        }
    }

    pub(super) fn next_mask(&mut self) -> Option<[u8; 4]> {
        match (self.role, self.entropy.as_mut()) {
            (Role::Client, Some(e)) => Some(e.next_u32().to_le_bytes()),
            // A client always has entropy (every constructor sets it); an
            // all-zero key is still a masked frame.
            (Role::Client, None) => Some([0; 4]),
            (Role::Server, _) => None,
        }
    }

    pub(super) fn write_frame(&mut self, fin: bool, opcode: OpCode, payload: Bytes) {
        if payload.len() > COPY_THRESHOLD {
            return self.queue_frame(fin, opcode, payload);
        }
        let mask = self.next_mask();
        let header = FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            len: payload.len() as u64,
        };
        self.reserve_out(MAX_HEADER_LEN + payload.len());
        frame::encode_header(&header, &mut self.out);
        match mask {
            Some(key) => extend_masked(&mut self.out, &payload, key, 0),
            None => self.out.extend_from_slice(&payload),
        }
    }

    /// A large frame: its header inline, its payload as it is; a client's
    /// is masked when polled (see [`Queued`]).
    #[inline]
    fn queue_frame(&mut self, fin: bool, opcode: OpCode, payload: Bytes) {
        let head = if self.role == Role::Server {
            FrameHead::unmasked(fin, opcode, payload.len())
        } else {
            FrameHead::new(&FrameHeader {
                fin,
                rsv: 0,
                opcode,
                mask: self.next_mask(),
                len: payload.len() as u64,
            })
        };
        self.push_frame(head, payload);
    }

    pub(super) fn reserve_out(&mut self, n: usize) {
        if self.out.capacity() - self.out.len() < n {
            // Small to start with (most connections get a frame or two
            // between writes, and a small allocation is far cheaper than a
            // large one when thousands of connections are written at
            // once); growing doubles it.
            self.out.reserve(n.max(OUT_MIN));
        }
    }
}

/// A large client payload masked where it lies, when nobody else holds it
/// (a `Bytes` made from the application's `Vec` and not cloned): one pass
/// over memory instead of a copy and a pass, and no buffer to hold. A
/// payload that is shared (cloned, sliced, static) is given back untouched,
/// for the caller to mask into a copy: the other holders must not see
/// their bytes change.
#[inline]
fn mask_in_place(payload: Bytes, key: [u8; 4]) -> Result<Bytes, Bytes> {
    let mut owned = payload.try_into_mut()?;
    apply_mask(&mut owned, key, 0);
    Ok(owned.freeze())
}
