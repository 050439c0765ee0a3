//! One end of one WebSocket.
//!
//! # Theory of operation
//!
//! A connection moves through these states; nothing else is possible:
//!
//! ```text
//!  server:  AwaitRequest ──head──► AwaitDecision ──accept()──► Open
//!  client:  AwaitResponse ──101──► Open
//!  both:    Open ──close()/peer close/failure──► Closing ──► Closed
//! ```
//!
//! * `Closing` covers the closing handshake: we sent a close frame and wait
//!   for the peer's, or (client) both were exchanged and we wait for the
//!   server to close TCP (RFC 6455 section 7.1.1). A timer bounds the wait.
//! * A peer's bad bytes *fail* the connection (section 7.1.7): a close frame
//!   with the error's code is queued, [`Event::Closed`] carries the error, and
//!   input that can no longer be framed is discarded.
//! * [`Event::Closed`] is emitted exactly once; [`Transmit::Close`] comes
//!   last, after every byte that must still be written.
//!
//! Input is appended to one buffer. A frame's payload is unmasked (and, for
//! text, UTF-8-checked) as it arrives, so no byte is processed twice however
//! the input is split, and an invalid text prefix fails at once. A complete
//! frame is cut from the buffer without copying.

use std::{collections::VecDeque, time::Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut, buf::Limit};

use super::{
    Accept, ClientRequest, CloseCode, CloseFrame, Config, DataKind, EncodedFrame, Error,
    HandshakeError, LimitError, Message, MessageRef, OpCode, ProtocolError, UpgradeRequest,
    UsageError, Utf8Bytes,
    frame::{self, FrameHeader, MAX_HEADER_LEN},
    handshake,
    mask::{apply_mask, extend_masked},
    utf8::Validator,
};
use crate::{entropy::BoxEntropy, http::HeadParser};

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections; sends unmasked frames.
    Server,
    /// Opens connections; masks every frame.
    Client,
}

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
    fn new(header: &FrameHeader) -> Self {
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
struct Queued {
    head: FrameHead,
    body: Bytes,
}

/// The connection's state as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The opening handshake is under way.
    Connecting,
    /// Messages flow both ways.
    Open,
    /// The closing handshake is under way.
    Closing,
    /// Nothing more will happen but the final [`Transmit::Close`].
    Closed,
}

/// How the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The peer's close code; [`CloseCode::NO_STATUS`] if its close frame had
    /// none, [`CloseCode::ABNORMAL`] if no close frame came. When we failed
    /// the connection, the code we sent.
    pub code: CloseCode,
    /// The reason that came with the code.
    pub reason: String,
    /// Whether the peer started the closing handshake.
    pub by_peer: bool,
    /// What went wrong, if anything did.
    pub error: Option<Error>,
}

/// What the application must hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Server: a valid upgrade request; answer with
    /// [`Connection::accept`] or [`Connection::reject`].
    Upgrade(Box<UpgradeRequest>),
    /// The handshake completed; messages may be sent.
    Open {
        /// The subprotocol both ends agreed on.
        protocol: Option<String>,
    },
    /// A whole message arrived.
    Message(Message),
    /// A ping arrived (already answered if [`Config::auto_pong`]).
    Ping(Bytes),
    /// A pong arrived.
    Pong(Bytes),
    /// The WebSocket is closed; see [`Closed`].
    Closed(Closed),
}

/// What [`Connection::poll_event_ref`] yields: a message lent from the
/// connection's buffers, or any other event.
#[derive(Debug, PartialEq)]
pub enum EventRef<'a> {
    /// A whole message, valid until the next call on the connection.
    Message(MessageRef<'a>),
    /// Any event but [`Event::Message`].
    Other(Event),
}

#[derive(Debug)]
enum Phase {
    AwaitRequest(HeadParser),
    AwaitDecision(Box<UpgradeRequest>),
    AwaitResponse {
        parser: HeadParser,
        key: String,
        request: Box<ClientRequest>,
    },
    Open,
    /// `peer_closed`: the peer's close frame has arrived; we now only wait
    /// for the server to end TCP (client side).
    Closing {
        deadline: Instant,
        peer_closed: bool,
    },
    Closed,
}

/// A message being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    kind: DataKind,
    data: BytesMut,
    fragments: usize,
}

/// The frame whose payload is still arriving.
#[derive(Debug, Clone, Copy)]
struct Current {
    header: FrameHeader,
    header_len: usize,
    /// Payload bytes already unmasked and checked.
    processed: usize,
    /// The connection failed inside this frame: skip the rest of it.
    discard: bool,
}

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
    /// A frame was consumed without a message.
    Consumed,
    /// Not the common case: take the general path.
    Other,
}

/// Payloads at most this long are copied next to their header; longer ones
/// are queued as their own `Bytes`, without a copy.
const COPY_THRESHOLD: usize = 1024;
/// Frames at least this long that straddle reads are assembled in their
/// own buffer instead of the input buffer.
const BIG_FRAME: usize = 16 * 1024;
/// The least the output buffer grows by, so that a run of small writes
/// (headers, small frames) shares one allocation.
const OUT_MIN: usize = 512;
/// The largest output buffer a connection keeps for its next writes.
const OUT_KEEP: usize = 4 * 1024;
/// `poll_transmit` keeps its scratch buffer (masked payloads, headers) for
/// the next frame if the frame was at most this large; a larger one goes
/// with the transmit.
const WBUF_KEEP: usize = 128 * 1024;
/// An idle connection keeps the room for the driver's next read if it was
/// allocated at most this large (a usual read size, not a large frame).
const INPUT_KEEP: usize = 128 * 1024;

/// One end of one WebSocket connection, as a sans-IO state machine.
///
/// # Run loop
///
/// After any input (`handle_*`) or command (`send`, `close`...), drain
/// [`poll_transmit`](Self::poll_transmit) and write what it gives, then
/// drain [`poll_event`](Self::poll_event), then arm a timer for
/// [`poll_timeout`](Self::poll_timeout). Commands issued while handling
/// events are fine: keep draining until both pollers return `None`.
///
/// ```no_run
/// use std::{io::{Read, Write}, net::TcpListener, time::Instant};
/// use wsio::ws::{Accept, Config, Connection, Event, Transmit};
///
/// let listener = TcpListener::bind("127.0.0.1:9001")?;
/// let (mut tcp, _) = listener.accept()?;
/// let mut ws = Connection::server(Config::default());
/// let mut buf = [0u8; 4096];
/// 'run: loop {
///     while let Some(t) = ws.poll_transmit() {
///         match t {
///             Transmit::Data(b) => tcp.write_all(&b)?,
///             Transmit::Close => break 'run,
///         }
///     }
///     while let Some(ev) = ws.poll_event() {
///         match ev {
///             Event::Upgrade(_) => ws.accept(Instant::now(), Accept::new()).unwrap(),
///             Event::Message(m) => ws.send(m).unwrap(), // echo
///             _ => {}
///         }
///     }
///     if ws.poll_transmit_pending() { continue; }
///     match tcp.read(&mut buf)? {
///         0 => ws.handle_eof(Instant::now()),
///         n => ws.handle_input(Instant::now(), &buf[..n]),
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Connection {
    role: Role,
    config: Config,
    entropy: Option<BoxEntropy>,
    phase: Phase,
    /// Input not yet consumed.
    rbuf: BytesMut,
    /// Room for the driver's next read ([`Connection::input_buffer`]):
    /// empty, and usually the spare tail of `rbuf`'s allocation, so that
    /// committed bytes rejoin `rbuf` without a copy.
    ibuf: BytesMut,
    /// The driver reads into `ibuf`: frames that straddle reads stay in
    /// `rbuf` (which grows with what arrives) rather than going to `big`.
    ingest: bool,
    /// The size of the allocation `input_buffer` last made.
    ialloc: usize,
    /// The size of the last large frame (header included) that arrived
    /// whole through the general path: what `input_buffer` may reserve at
    /// once for the next one.
    last_big: usize,
    current: Option<Current>,
    partial: Option<Partial>,
    utf8: Validator,
    /// Input can no longer be framed: discard it.
    input_poisoned: bool,
    /// We sent a close frame: no more frames may follow it.
    close_sent: bool,
    closed_emitted: bool,
    /// Kind of the fragmented message we are sending, if any.
    sending: Option<DataKind>,
    /// Small writes accumulate here; flushed into `queue` before any large one.
    out: BytesMut,
    /// Scratch for the pollers: headers of queued frames and masked
    /// payloads, written as they are polled. Its allocation is reused once
    /// the driver has dropped what it was given.
    wbuf: BytesMut,
    queue: VecDeque<Queued>,
    queued: usize,
    close_transmit: bool,
    close_transmitted: bool,
    events: VecDeque<Event>,
    /// The latest time an input was given: frames are decoded lazily, as
    /// events are polled, and a close deadline set then counts from here.
    last_now: Option<Instant>,
    /// Bytes at the front of `rbuf` lent out by `poll_event_ref`: consumed
    /// at the next call.
    lent_input: usize,
    /// The front of `events` is a message lent out by `poll_event_ref`:
    /// popped at the next call.
    lent_front: bool,
    /// The payload of a large frame still arriving (in its own buffer, or in
    /// the input buffer it started in, taken over): input goes straight in,
    /// unmasked on the way.
    /// Its room grows with what arrives, never past four times that or the
    /// size of the last large frame, whatever the header declares.
    big: Option<BytesMut>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("phase", &self.phase)
            .field(
                "buffered_input",
                &(self.rbuf.len() + self.ibuf.len() + self.big.as_ref().map_or(0, BytesMut::len)),
            )
            .field(
                "reserved_input",
                &(self.rbuf.capacity()
                    + self.ibuf.capacity()
                    + self.big.as_ref().map_or(0, BytesMut::capacity)),
            )
            .field("buffered_output", &self.buffered_amount())
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(role: Role, config: Config, entropy: Option<BoxEntropy>, phase: Phase) -> Self {
        Connection {
            role,
            config,
            entropy,
            phase,
            rbuf: BytesMut::new(),
            ibuf: BytesMut::new(),
            ingest: false,
            ialloc: 0,
            last_big: 0,
            lent_input: 0,
            lent_front: false,
            current: None,
            partial: None,
            utf8: Validator::default(),
            input_poisoned: false,
            close_sent: false,
            closed_emitted: false,
            sending: None,
            out: BytesMut::new(),
            wbuf: BytesMut::new(),
            queue: VecDeque::new(),
            queued: 0,
            close_transmit: false,
            close_transmitted: false,
            events: VecDeque::new(),
            last_now: None,
            big: None,
        }
    }

    /// A server connection that reads the HTTP upgrade request itself.
    /// A valid request becomes [`Event::Upgrade`]; an invalid one is answered
    /// with its HTTP status and the connection ends.
    pub fn server(config: Config) -> Self {
        let parser = HeadParser::new(config.head_limits);
        Self::new(Role::Server, config, None, Phase::AwaitRequest(parser))
    }

    /// A server connection whose handshake another HTTP stack completed
    /// (see [`handshake::validate_request`] and
    /// [`UpgradeRequest::response`]). Feed it the upgraded stream's bytes.
    pub fn server_upgraded(config: Config) -> Self {
        Self::new(Role::Server, config, None, Phase::Open)
    }

    /// A client connection: queues the upgrade request at once, with a key
    /// drawn from `entropy` (which also supplies every masking key).
    pub fn client(config: Config, request: ClientRequest, mut entropy: BoxEntropy) -> Self {
        let key = handshake::generate_key(&mut *entropy);
        let parser = HeadParser::new(config.head_limits);
        let mut conn = Self::new(
            Role::Client,
            config,
            None,
            Phase::AwaitResponse {
                parser,
                key: String::new(),
                request: Box::new(request),
            },
        );
        if let Phase::AwaitResponse {
            key: k, request, ..
        } = &mut conn.phase
        {
            request.head(&key).encode(&mut conn.out);
            *k = key;
        }
        conn.entropy = Some(entropy);
        conn
    }

    /// A client connection whose handshake another HTTP stack completed.
    pub fn client_upgraded(config: Config, entropy: BoxEntropy) -> Self {
        Self::new(Role::Client, config, Some(entropy), Phase::Open)
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::AwaitRequest(_) | Phase::AwaitDecision(_) | Phase::AwaitResponse { .. } => {
                State::Connecting
            }
            Phase::Open => State::Open,
            Phase::Closing { .. } => State::Closing,
            Phase::Closed => State::Closed,
        }
    }

    /// Bytes queued for sending and not yet taken by
    /// [`poll_transmit`](Self::poll_transmit): the backpressure signal.
    pub fn buffered_amount(&self) -> usize {
        self.queued + self.out.len()
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has something to give.
    pub fn poll_transmit_pending(&self) -> bool {
        !self.queue.is_empty()
            || !self.out.is_empty()
            || (self.close_transmit && !self.close_transmitted)
    }

    // ----- inputs -------------------------------------------------------

    /// Feeds bytes read from the socket. Never fails: a peer's bad input
    /// queues the right reply and [`Event::Closed`].
    ///
    /// `bytes` are copied: small frames into the input buffer, the payload
    /// of a large frame (16 KiB or more) that straddles reads straight into
    /// the buffer the message will own, unmasked on the way. With a socket
    /// API that reads into memory it is given,
    /// [`input_buffer`](Self::input_buffer) avoids even that copy.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.settle();
        if self.input_poisoned || matches!(self.phase, Phase::Closed) {
            return;
        }
        self.last_now = Some(now);
        let mut bytes = bytes;
        if self.rbuf.is_empty() {
            bytes = &bytes[self.bypass(now, bytes, 0)..];
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
        self.big = Some(BytesMut::with_capacity(room));
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
        self.last_now = Some(now);
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
    /// Between reads the connection keeps the spare room of its read
    /// allocation if that was at most 128 KiB (a usual read size); a larger
    /// one is given back once the input is drained. Messages cut from an
    /// allocation keep it alive for as long as the application holds them.
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
    /// ws.commit_input(Instant::now());
    /// assert_eq!(ws.poll_event(), Some(Event::Message(Message::text("hi"))));
    /// ```
    pub fn input_buffer(&mut self, want: usize) -> Limit<&mut BytesMut> {
        self.settle();
        self.ingest = true;
        let (read, grow) = self.read_target(want.max(1));
        if self.ibuf.is_empty() {
            // Rejoin the spare room with the input (no copy when it is the
            // tail of the same allocation), make room, and split it off
            // again.
            self.rbuf.unsplit(std::mem::take(&mut self.ibuf));
            if self.rbuf.capacity() - self.rbuf.len() < read && !self.rbuf.try_reclaim(grow) {
                // A new allocation, for what is buffered and the reads to
                // come: no more is copied than the frame in progress.
                let mut fresh = BytesMut::with_capacity(self.rbuf.len() + grow);
                fresh.extend_from_slice(&self.rbuf);
                self.rbuf = fresh;
                self.ialloc = self.rbuf.capacity();
            }
            self.ibuf = self.rbuf.split_off(self.rbuf.len());
        } else {
            // Appended but not yet committed: keep appending after it.
            self.ibuf.reserve(read);
        }
        (&mut self.ibuf).limit(read)
    }

    /// Processes what was appended to [`input_buffer`](Self::input_buffer)
    /// since the last commit, as [`handle_input`](Self::handle_input) would
    /// process the same bytes.
    pub fn commit_input(&mut self, now: Instant) {
        self.settle();
        if self.ibuf.is_empty() {
            return;
        }
        if self.input_poisoned || matches!(self.phase, Phase::Closed) {
            self.ibuf.clear();
            return;
        }
        self.last_now = Some(now);
        let data = self.ibuf.split();
        self.rbuf.unsplit(data);
        self.process(now);
    }

    /// How much the next read should bring, and how much room to make if
    /// there is less than that (see `input_buffer`).
    fn read_target(&self, want: usize) -> (usize, usize) {
        let Some(cur) = self.current else {
            // Between frames: a peer that just sent a large frame likely
            // sends another, so its first read lands where the whole frame
            // will fit instead of in a small buffer copied out a read later.
            return (want, want.max(self.last_big));
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
        (need.min(want), self.frame_room(self.rbuf.len(), want, need))
    }

    /// Room to make for a frame of which `arrived` bytes came and `rest`
    /// are still missing or wanted: `rest`, but at most `floor`, four times
    /// what arrived, or the size of the last large frame the peer
    /// completed, whichever is largest (always bytes that actually came).
    fn frame_room(&self, arrived: usize, floor: usize, rest: usize) -> usize {
        rest.min(arrived.saturating_mul(4).max(floor).max(self.last_big))
    }

    /// The peer closed its side of TCP (a read returned 0).
    pub fn handle_eof(&mut self, now: Instant) {
        self.settle();
        // Whole frames that arrived before the end still count.
        if matches!(self.phase, Phase::Open | Phase::Closing { .. }) && !self.input_poisoned {
            self.read_frames(now, true);
        }
        match &self.phase {
            Phase::Closed => return,
            Phase::AwaitRequest(_) | Phase::AwaitDecision(_) | Phase::AwaitResponse { .. } => {
                self.emit_closed(
                    CloseCode::ABNORMAL,
                    String::new(),
                    true,
                    Some(HandshakeError::Eof.into()),
                );
            }
            _ => self.emit_closed(CloseCode::ABNORMAL, String::new(), true, None),
        }
        self.finish();
    }

    /// Fires the closing-handshake timer if it is due. Cheap; calling it
    /// early or twice does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle();
        if let Phase::Closing { deadline, .. } = self.phase {
            if now >= deadline {
                self.emit_closed(
                    CloseCode::ABNORMAL,
                    String::new(),
                    false,
                    Some(Error::CloseTimeout),
                );
                self.finish();
            }
        }
    }

    // ----- outputs ------------------------------------------------------

    /// The next bytes to write, or the instruction to close the socket.
    /// Poll after every input and command until `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
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
    /// use std::io::{IoSlice, Write};
    /// use bytes::Bytes;
    /// use wsio::ws::{Config, Connection, Message, VectoredTransmit};
    ///
    /// let mut ws = Connection::server_upgraded(Config::default());
    /// ws.send(Message::Binary(Bytes::from(vec![7u8; 4096]))).unwrap();
    /// let mut socket = Vec::new(); // a TcpStream in a real driver
    /// while let Some(t) = ws.poll_transmit_vectored() {
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
    pub fn poll_transmit_vectored(&mut self) -> Option<VectoredTransmit> {
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

    /// The next event for the application. Poll after every input and
    /// command until `None`.
    ///
    /// Frames are decoded one event at a time, here: the application answers
    /// a message before the frames after it are even looked at, so a reply
    /// is never overtaken by a close that a later bad frame causes.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.settle();
        if let Some(ev) = self.events.pop_front() {
            return Some(ev);
        }
        if self.rbuf.is_empty() {
            return None;
        }
        if let Some((now, boundary)) = self.decodable() {
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

    /// When frames may be decoded (open or closing, input given): the time
    /// of the last input, and whether no message or frame is in progress,
    /// so that a whole frame at the front is a whole message.
    #[inline]
    fn decodable(&self) -> Option<(Instant, bool)> {
        match (self.last_now, &self.phase) {
            (Some(now), Phase::Open | Phase::Closing { .. }) => Some((
                now,
                self.current.is_none() && self.partial.is_none() && self.big.is_none(),
            )),
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
    /// ws.handle_input(Instant::now(), &wire);
    /// let mut got = Vec::new();
    /// while let Some(ev) = ws.poll_event_ref() {
    ///     if let EventRef::Message(MessageRef::Text(t)) = ev {
    ///         got.push(t.to_uppercase());
    ///     }
    /// }
    /// assert_eq!(got, ["HI", "YO"]);
    /// ```
    pub fn poll_event_ref(&mut self) -> Option<EventRef<'_>> {
        self.settle();
        if self.events.is_empty() && !self.rbuf.is_empty() {
            if let Some((now, boundary)) = self.decodable() {
                if boundary {
                    if let AtFront::Frame { hlen, end, text } = self.whole_frame_at_front(now) {
                        self.lent_input = end;
                        let payload = &self.rbuf[hlen..end];
                        return Some(EventRef::Message(if text {
                            MessageRef::Text(super::utf8::str_from_validated(payload))
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
    fn settle(&mut self) {
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

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closing { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    // ----- commands -----------------------------------------------------

    /// Server: accepts the pending [`Event::Upgrade`]. The 101 reply is
    /// queued and any bytes that followed the request are processed.
    pub fn accept(&mut self, now: Instant, accept: Accept) -> Result<(), UsageError> {
        self.settle();
        let Phase::AwaitDecision(req) = &self.phase else {
            return Err(UsageError::NoPendingRequest);
        };
        if let Some(p) = &accept.protocol {
            if !req.protocols.contains(p) {
                return Err(UsageError::ProtocolNotOffered);
            }
        }
        req.response(&accept).encode(&mut self.out);
        self.phase = Phase::Open;
        self.events.push_back(Event::Open {
            protocol: accept.protocol,
        });
        self.process(now);
        Ok(())
    }

    /// Server: refuses the pending [`Event::Upgrade`] with an HTTP status
    /// (403 for a bad origin, say) and ends the connection.
    pub fn reject(&mut self, status: u16) -> Result<(), UsageError> {
        if !matches!(self.phase, Phase::AwaitDecision(_)) {
            return Err(UsageError::NoPendingRequest);
        }
        self.refuse(HandshakeError::Refused(status));
        Ok(())
    }

    /// Sends a whole message (split into frames of
    /// [`Config::send_fragment_size`] if set).
    ///
    /// A payload over 1 KiB is queued as it is, not copied. A client masks
    /// it when it is polled: in place when the message holds the only
    /// handle to its bytes (made from a `Vec` or `BytesMut` and not cloned
    /// or sliced), so the frame leaves without a copy; into a copy when
    /// the bytes are shared, which are then left as they were.
    ///
    /// ```
    /// use wsio::{entropy::SeededEntropy, ws::{Config, Connection, Message, Transmit}};
    ///
    /// let mut ws = Connection::client_upgraded(Config::default(), Box::new(SeededEntropy::new(1)));
    /// let payload = vec![7u8; 64 * 1024];
    /// let at = payload.as_ptr();
    /// ws.send(Message::binary(payload)).unwrap();
    /// let Some(Transmit::Data(head)) = ws.poll_transmit() else { panic!() };
    /// assert_eq!(head.len(), 14); // the header, with its masking key
    /// let Some(Transmit::Data(body)) = ws.poll_transmit() else { panic!() };
    /// assert_eq!(body.as_ptr(), at); // masked where the application left it
    /// ```
    pub fn send(&mut self, msg: Message) -> Result<(), UsageError> {
        self.check_can_send()?;
        if self.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        let (opcode, payload) = msg.into_parts();
        self.check_queue(payload.len())?;
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
        if self.role == Role::Client || payload.len() <= COPY_THRESHOLD {
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
    /// let Some(Transmit::Data(wire)) = ws.poll_transmit() else { panic!() };
    /// assert_eq!(&wire[..], b"\x81\x064hello");
    /// ```
    pub fn send_slices(
        &mut self,
        kind: DataKind,
        prefix: &[u8],
        payload: &[u8],
    ) -> Result<(), UsageError> {
        let len = prefix.len() + payload.len();
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
    /// frame, whatever [`Config::send_fragment_size`] says.
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
        if self.poll_transmit_pending() {
            return Err(UsageError::TransmitPending);
        }
        Ok(FrameHead::unmasked(true, kind.opcode(), len))
    }

    /// Checks that a whole message of `len` bytes may be sent now and
    /// writes its frame header; the payload follows, masked with the key
    /// returned (a client's).
    fn start_message(&mut self, kind: DataKind, len: usize) -> Result<Option<[u8; 4]>, UsageError> {
        self.check_can_send()?;
        if self.sending.is_some() {
            return Err(UsageError::FragmentInProgress);
        }
        self.check_queue(len)?;
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
            self.push_shared(f.as_bytes());
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
        self.write_frame(fin, opcode, data);
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
        self.push_shared(frame.as_bytes());
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

    /// Sends a pong (unsolicited, or when [`Config::auto_pong`] is off).
    pub fn pong(&mut self, payload: Bytes) -> Result<(), UsageError> {
        self.check_can_send()?;
        if payload.len() > 125 {
            return Err(UsageError::ControlTooLong);
        }
        self.write_frame(true, OpCode::Pong, payload);
        Ok(())
    }

    /// Starts the closing handshake. [`Event::Closed`] follows when the
    /// peer answers, or after [`Config::close_timeout`].
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), UsageError> {
        self.close_with(now, Some(CloseFrame::new(code, reason)))
    }

    /// Like [`close`](Self::close); `None` sends a close frame without a
    /// status code (the peer reports 1005).
    pub fn close_with(
        &mut self,
        now: Instant,
        frame: Option<CloseFrame>,
    ) -> Result<(), UsageError> {
        self.check_can_send()?;
        if let Some(f) = &frame {
            if !f.code.is_valid_on_wire() {
                return Err(UsageError::InvalidCloseCode(f.code.0));
            }
        }
        self.send_close(frame);
        self.phase = Phase::Closing {
            deadline: now + self.config.close_timeout,
            peer_closed: false,
        };
        Ok(())
    }

    // ----- internals: input -------------------------------------------

    fn process(&mut self, now: Instant) {
        loop {
            match &mut self.phase {
                Phase::AwaitRequest(parser) => match parser.parse_request(&self.rbuf) {
                    Ok(None) => return,
                    Ok(Some((head, used))) => {
                        self.rbuf.advance(used);
                        match handshake::validate_request(head) {
                            Ok(req) => {
                                self.phase = Phase::AwaitDecision(Box::new(req.clone()));
                                self.events.push_back(Event::Upgrade(Box::new(req)));
                            }
                            Err(e) => self.refuse(e),
                        }
                        return;
                    }
                    Err(e) => return self.refuse(e.into()),
                },
                Phase::AwaitDecision(_) | Phase::Closed => return,
                Phase::AwaitResponse {
                    parser,
                    key,
                    request,
                } => match parser.parse_response(&self.rbuf) {
                    Ok(None) => return,
                    Ok(Some((head, used))) => match request.verify(key, &head) {
                        Ok(protocol) => {
                            self.rbuf.advance(used);
                            self.phase = Phase::Open;
                            self.events.push_back(Event::Open { protocol });
                        }
                        Err(e) => return self.abort_handshake(e),
                    },
                    Err(e) => return self.abort_handshake(e.into()),
                },
                Phase::Open | Phase::Closing { .. } => return self.read_frames(now, false),
            }
        }
    }

    /// Decodes frames until one produces an event (or, `eager`, until the
    /// input runs out).
    fn read_frames(&mut self, now: Instant, eager: bool) {
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
            if cur.processed < avail && !discard {
                let is_text = self.is_text_frame(&cur.header);
                let span = &mut self.rbuf[cur.header_len + cur.processed..cur.header_len + avail];
                if let Some(key) = cur.header.mask {
                    apply_mask(span, key, cur.processed);
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
                    self.big = Some(payload);
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

    /// All input is consumed. Our handle would keep the whole read
    /// allocation alive for as long as the messages cut from it: an idle
    /// connection holds none, except the room for the driver's next read
    /// (`input_buffer`) when that allocation is of a usual read size.
    fn input_drained(&mut self) {
        self.rbuf = BytesMut::new();
        // Bytes appended to the room but not yet committed stay.
        if self.ialloc > INPUT_KEEP && self.ibuf.is_empty() {
            self.ibuf = BytesMut::new();
            self.ialloc = 0;
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

    /// A whole final text or binary frame at the front of the input,
    /// unmasked and checked in place, for the caller to cut or lend. A
    /// frame that fails the connection or is dropped is consumed here.
    #[inline]
    fn whole_frame_at_front(&mut self, now: Instant) -> AtFront {
        if self.input_poisoned {
            return AtFront::Other;
        }
        let Ok(Some((h, hlen))) = frame::decode_header(&self.rbuf) else {
            return AtFront::Other;
        };
        let text = match h.opcode {
            OpCode::Text if h.fin => true,
            OpCode::Binary if h.fin => false,
            _ => return AtFront::Other,
        };
        let Some(end) = usize::try_from(h.len)
            .ok()
            .and_then(|len| len.checked_add(hlen))
            .filter(|&end| end <= self.rbuf.len())
        else {
            return AtFront::Other;
        };
        // `check_header` for this case (no message in progress): anything
        // it would refuse takes the general path, which fails the
        // connection with the right error.
        if h.rsv != 0
            || h.mask.is_some() != (self.role == Role::Server)
            || h.len > self.config.max_frame_size.min(self.config.max_message_size) as u64
        {
            return AtFront::Other;
        }
        if end < BIG_FRAME {
            self.last_big = 0;
        }
        let payload = &mut self.rbuf[hlen..end];
        if let Some(key) = h.mask {
            apply_mask(payload, key, 0);
        }
        let valid = !text || super::utf8::validate(payload);
        // As in `deliver`: data after our close frame is dropped.
        if !valid || (self.close_sent && self.closed_emitted) {
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

    /// Appends the next bytes of the large frame in progress (unmasked and
    /// checked on the way); returns how many it took. Completing the frame
    /// hands it on like any other; a frame that failed is skipped to its end.
    fn feed_big(&mut self, now: Instant, data: &[u8]) -> usize {
        let (Some(cur), Some(buf)) = (self.current, self.big.as_mut()) else {
            return 0;
        };
        let len = cur.header.len as usize;
        let take = (len - cur.processed).min(data.len());
        let processed = cur.processed + take;
        if cur.discard {
            let done = processed == len;
            self.big = (!done).then(BytesMut::new);
            self.current = (!done).then_some(Current { processed, ..cur });
            return take;
        }
        if buf.len() + take > buf.capacity() {
            // Four times what has arrived, capped by the declared length:
            // about a third of an extra copy in all, and never room for
            // more than a few times what actually came.
            let target = (buf.len() + take).max(buf.capacity() * 4).min(len);
            *buf = with_room(buf, target);
        }
        let start = buf.len();
        match cur.header.mask {
            Some(key) => extend_masked(buf, &data[..take], key, cur.processed),
            None => buf.extend_from_slice(&data[..take]),
        }
        let text = match cur.header.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self
                .partial
                .as_ref()
                .is_some_and(|p| p.kind == DataKind::Text),
            _ => false,
        };
        if text && !self.utf8.feed(&buf[start..]) {
            // As on the general path, whatever the sizes of the reads: the
            // rest of the frame is skipped, so the stream stays framed and
            // the peer's close frame is still read.
            let done = processed == len;
            self.big = (!done).then(BytesMut::new);
            self.current = (!done).then_some(Current {
                processed,
                discard: true,
                ..cur
            });
            self.fail(now, ProtocolError::InvalidUtf8.into(), false);
            if matches!(self.phase, Phase::Closed) {
                self.big = None;
                return data.len();
            }
            return take;
        }
        if processed < len {
            self.current = Some(Current { processed, ..cur });
            return take;
        }
        let payload = self.big.take().unwrap_or_default();
        self.current = None;
        // Room for one as large next time (bytes that really came).
        self.last_big = len.saturating_add(MAX_HEADER_LEN);
        self.on_frame(now, cur.header, payload);
        take
    }

    fn is_text_frame(&self, h: &FrameHeader) -> bool {
        match h.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self
                .partial
                .as_ref()
                .is_some_and(|p| p.kind == DataKind::Text),
            _ => false,
        }
    }

    /// Rules that depend on this connection: masking, RSV, limits, and the
    /// order of data frames. Also resets the UTF-8 state at a message start.
    fn check_header(&mut self, h: &FrameHeader) -> Result<(), Error> {
        if h.rsv != 0 {
            return Err(ProtocolError::ReservedBits.into());
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
        if !h.opcode.is_control()
            && (so_far as u64).saturating_add(h.len) > self.config.max_message_size as u64
        {
            return Err(LimitError::MessageTooLarge {
                max: self.config.max_message_size,
            }
            .into());
        }
        Ok(())
    }

    fn on_frame(&mut self, now: Instant, h: FrameHeader, payload: BytesMut) {
        let peer_closed = matches!(
            self.phase,
            Phase::Closing {
                peer_closed: true,
                ..
            }
        );
        match h.opcode {
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
                p.fragments += 1;
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

    fn deliver(&mut self, now: Instant, kind: DataKind, data: BytesMut) {
        // Before anything is dropped: text that is not UTF-8 fails the
        // connection whether it ends cut short (known only here) or holds a
        // bad byte (caught as it arrived), even after our close frame.
        if kind == DataKind::Text && !self.utf8.is_complete() {
            return self.fail(now, ProtocolError::InvalidUtf8.into(), false);
        }
        if self.close_sent {
            // Section 7.1.3 lets us drop data after our close frame; the
            // application already heard `Closed` if we failed the connection.
            if self.closed_emitted {
                return;
            }
        }
        let msg = match kind {
            DataKind::Binary => Message::Binary(data.freeze()),
            DataKind::Text => Message::Text(Utf8Bytes::from_validated(data.freeze())),
        };
        self.events.push_back(Event::Message(msg));
    }

    fn on_close_frame(&mut self, now: Instant, payload: &[u8]) {
        let frame = match CloseFrame::decode(payload) {
            Ok(f) => f,
            // The peer's (bad) close frame was its last word: there is no
            // reply to wait for.
            Err(e) => return self.fail(now, e.into(), true),
        };
        let (code, reason) = frame
            .as_ref()
            .map_or((CloseCode::NO_STATUS, String::new()), |f| {
                (f.code, f.reason.clone())
            });
        if !self.close_sent {
            // Echo the close frame, as peers expect (section 5.5.1).
            self.send_close(frame);
            self.emit_closed(code, reason, true, None);
        } else {
            self.emit_closed(code, reason, false, None);
        }
        // The handshake is complete. The server ends TCP first (section
        // 7.1.1); a client waits for that, but not forever.
        match self.role {
            Role::Server => self.finish(),
            Role::Client => {
                self.phase = Phase::Closing {
                    deadline: now + self.config.close_timeout,
                    peer_closed: true,
                };
                self.rbuf.clear();
                self.input_poisoned = true;
            }
        }
    }

    /// Fails the connection (section 7.1.7): a close frame with the error's
    /// code, the event, then a bounded wait for the peer's close frame
    /// unless the input can no longer be framed.
    fn fail(&mut self, now: Instant, error: Error, poisoned: bool) {
        let code = match &error {
            Error::Protocol(p) => p.close_code(),
            Error::Limit(_) => CloseCode::TOO_BIG,
            _ => CloseCode::PROTOCOL,
        };
        let reason = error.to_string();
        if !self.close_sent {
            self.send_close(Some(CloseFrame::new(code, &reason)));
        }
        self.emit_closed(code, reason, false, Some(error));
        self.partial = None;
        if poisoned || matches!(self.phase, Phase::Closing { .. }) {
            self.finish();
        } else {
            self.phase = Phase::Closing {
                deadline: now + self.config.close_timeout,
                peer_closed: false,
            };
            // The stream is still framed: keep reading for the peer's close
            // frame, which ends the wait.
        }
    }

    fn refuse(&mut self, e: HandshakeError) {
        let (head, body) = e.response();
        handshake::encode_error_response(head, body, &mut self.out);
        self.emit_closed(CloseCode::ABNORMAL, String::new(), false, Some(e.into()));
        self.finish();
    }

    fn abort_handshake(&mut self, e: HandshakeError) {
        self.emit_closed(CloseCode::ABNORMAL, String::new(), false, Some(e.into()));
        self.finish();
    }

    fn emit_closed(
        &mut self,
        code: CloseCode,
        reason: String,
        by_peer: bool,
        error: Option<Error>,
    ) {
        if !self.closed_emitted {
            self.closed_emitted = true;
            self.events.push_back(Event::Closed(Closed {
                code,
                reason,
                by_peer,
                error,
            }));
        }
    }

    /// Ends the connection: nothing more is read; TCP closes after the
    /// queued bytes.
    fn finish(&mut self) {
        self.phase = Phase::Closed;
        self.input_poisoned = true;
        self.rbuf = BytesMut::new();
        self.ibuf = BytesMut::new();
        self.lent_input = 0;
        self.partial = None;
        self.current = None;
        self.close_transmit = true;
    }

    // ----- internals: output ------------------------------------------

    fn check_can_send(&self) -> Result<(), UsageError> {
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

    fn send_close(&mut self, frame: Option<CloseFrame>) {
        let payload = frame.map(|f| f.encode()).unwrap_or_default();
        self.write_frame(true, OpCode::Close, payload);
        self.close_sent = true;
    }

    fn push_bytes(&mut self, b: Bytes) {
        self.push_frame(FrameHead::default(), b);
    }

    /// Queues `body` after `head` (see [`Queued`]), behind the small
    /// writes gathered in `out`.
    #[inline]
    fn push_frame(&mut self, head: FrameHead, body: Bytes) {
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
    fn push_shared(&mut self, frame: &Bytes) {
        if frame.len() <= COPY_THRESHOLD {
            self.reserve_out(frame.len());
            self.out.extend_from_slice(frame);
        } else {
            self.push_bytes(frame.clone());
        }
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match (self.role, self.entropy.as_mut()) {
            (Role::Client, Some(e)) => Some(e.next_u32().to_le_bytes()),
            // A client always has entropy (every constructor sets it); an
            // all-zero key is still a masked frame.
            (Role::Client, None) => Some([0; 4]),
            (Role::Server, _) => None,
        }
    }

    fn write_frame(&mut self, fin: bool, opcode: OpCode, payload: Bytes) {
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

    fn reserve_out(&mut self, n: usize) {
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

/// A copy of `data` in a fresh allocation with room for `room` bytes.
fn with_room(data: &[u8], room: usize) -> BytesMut {
    let mut fresh = BytesMut::with_capacity(room.max(data.len()));
    fresh.extend_from_slice(data);
    fresh
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
