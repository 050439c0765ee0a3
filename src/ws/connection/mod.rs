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
//! The machine is one struct, [`Connection`], whose methods live beside the
//! state they work on:
//!
//! * this file: the type, its phases and events, the opening handshake, the
//!   closing handshake and failing the connection, the timer;
//! * `input`: where the peer's bytes land (`handle_input*`, `input_buffer`,
//!   `read_from`, `commit_input`) and the buffers of large frames;
//! * `room`: the room for the next read and what is known of its memory;
//! * `reader`: frames to events: decoding, the checks that depend on the
//!   connection, reassembly, the event pollers;
//! * `sender`: the commands that send, the send queue, the transmit pollers;
//! * `compress`: permessage-deflate, once negotiated: compressed messages
//!   out and in.
//!
//! Every method that reads the input or the event queue first takes back
//! what `poll_event_ref` lent (`settle`). Frames are decoded lazily, as
//! events are polled, at the time the poller is given.

mod compress;
mod input;
mod reader;
mod room;
mod sender;

use std::{collections::VecDeque, time::Instant};

use bytes::{Buf, Bytes, BytesMut};

use sender::Queued;
pub use sender::{FrameHead, Transmit, VectoredTransmit};

use super::{
    Accept, ClientRequest, CloseCode, CloseFrame, Config, DataKind, Error, HandshakeError, Message,
    MessageRef, UpgradeRequest, UsageError, deflate::Offer, frame::FrameHeader, handshake,
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
    /// Boxed: an open connection should not carry a client handshake's
    /// room.
    AwaitResponse(Box<AwaitingResponse>),
    Open,
    /// `peer_closed`: the peer's close frame has arrived; we now only wait
    /// for the server to end TCP (client side).
    Closing {
        deadline: Instant,
        peer_closed: bool,
    },
    Closed,
}

/// A client's opening handshake, waiting for the server's answer.
#[derive(Debug)]
struct AwaitingResponse {
    parser: HeadParser,
    key: String,
    request: ClientRequest,
    /// The permessage-deflate offer the request carried.
    offer: Option<Offer>,
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

/// One end of one WebSocket connection, as a sans-IO state machine.
///
/// Inputs: [`handle_input`](Self::handle_input) (or
/// [`handle_input_bytes`](Self::handle_input_bytes), or the driver reads
/// into the connection's own buffer with [`input_buffer`](Self::input_buffer)
/// or [`read_from`](Self::read_from), then [`commit_input`](Self::commit_input)),
/// [`handle_eof`](Self::handle_eof), [`handle_timeout`](Self::handle_timeout).
/// It is a [`StreamMachine`](crate::machine::StreamMachine): drive it as
/// [`machine`](crate::machine) says.
///
/// ```no_run
/// use std::{io::Write, net::TcpListener, ops::ControlFlow, time::Instant};
/// use wsio::{machine::drain, ws::{Accept, Config, Connection, Event, Transmit}};
///
/// let listener = TcpListener::bind("127.0.0.1:9001")?;
/// let (mut tcp, _) = listener.accept()?;
/// let mut ws = Connection::server(Config::default());
/// loop {
///     let now = Instant::now();
///     let mut closed = false;
///     drain(&mut ws, now, |_, t| {
///         match t {
///             Transmit::Data(b) => closed |= tcp.write_all(&b).is_err(),
///             Transmit::Close => closed = true,
///         }
///         ControlFlow::Continue(())
///     }, |ws, ev| match ev {
///         Event::Upgrade(_) => ws.accept(now, Accept::new()).unwrap(),
///         Event::Message(m) => ws.send(m).unwrap(), // echo
///         _ => {}
///     });
///     if closed {
///         break;
///     }
///     // A real driver also wakes at `ws.poll_timeout()` (a read timeout).
///     match ws.read_from(&mut tcp)? {
///         0 => ws.handle_eof(Instant::now()),
///         _ => ws.commit_input(Instant::now()),
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
    ibuf: room::Room,
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
    /// When the opening handshake's head must have arrived by (set at the
    /// first call that gives the time).
    head_deadline: Option<Instant>,
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
    big: Option<Box<BytesMut>>,
    /// permessage-deflate, once negotiated.
    deflate: Option<Box<compress::Compression>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("phase", &self.phase)
            .field(
                "buffered_input",
                &(self.rbuf.len() + self.ibuf.len() + self.big.as_ref().map_or(0, |b| b.len())),
            )
            .field(
                "reserved_input",
                &(self.rbuf.capacity()
                    + self.ibuf.capacity()
                    + self.big.as_ref().map_or(0, |b| b.capacity())),
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
            ibuf: room::Room::default(),
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
            head_deadline: None,
            sending: None,
            out: BytesMut::new(),
            wbuf: BytesMut::new(),
            queue: VecDeque::new(),
            queued: 0,
            close_transmit: false,
            close_transmitted: false,
            events: VecDeque::new(),
            big: None,
            deflate: None,
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
    /// drawn from `entropy` (which also supplies every masking key). With
    /// [`Config::deflate`] enabled the request offers permessage-deflate.
    pub fn client(config: Config, request: ClientRequest, mut entropy: BoxEntropy) -> Self {
        let key = handshake::generate_key(&mut *entropy);
        let parser = HeadParser::new(config.head_limits);
        let offer = config.deflate.offer();
        let mut conn = Self::new(
            Role::Client,
            config,
            None,
            Phase::AwaitResponse(Box::new(AwaitingResponse {
                parser,
                key: String::new(),
                request,
                offer,
            })),
        );
        if let Phase::AwaitResponse(a) = &mut conn.phase {
            let AwaitingResponse {
                key: k,
                request,
                offer,
                ..
            } = &mut **a;
            let mut head = request.head(&key);
            if let Some(offer) = offer {
                head.headers
                    .push("Sec-WebSocket-Extensions", offer.header_value());
            }
            head.encode(&mut conn.out);
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
            Phase::AwaitRequest(_) | Phase::AwaitDecision(_) | Phase::AwaitResponse(_) => {
                State::Connecting
            }
            Phase::Open => State::Open,
            Phase::Closing { .. } => State::Closing,
            Phase::Closed => State::Closed,
        }
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
            Phase::AwaitRequest(_) | Phase::AwaitDecision(_) | Phase::AwaitResponse(_) => {
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

    /// Fires the opening or closing handshake's timer if it is due. Cheap;
    /// calling it early or twice does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle();
        self.start_clock(now);
        if self.head_deadline.is_some_and(|d| d <= now) {
            match self.phase {
                Phase::AwaitRequest(_) => self.refuse(HandshakeError::Timeout),
                Phase::AwaitResponse(_) => self.abort_handshake(HandshakeError::Timeout),
                _ => {}
            }
        }
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

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitRequest(_) | Phase::AwaitResponse(_) => self.head_deadline,
            Phase::Closing { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// Starts the opening handshake's timer the first time the connection
    /// is given the time.
    #[inline]
    pub(super) fn start_clock(&mut self, now: Instant) {
        if self.head_deadline.is_none()
            && matches!(self.phase, Phase::AwaitRequest(_) | Phase::AwaitResponse(_))
        {
            self.head_deadline = Some(crate::machine::later(now, self.config.head_timeout));
        }
    }

    // ----- commands -----------------------------------------------------

    /// Server: accepts the pending [`Event::Upgrade`]. The 101 reply is
    /// queued and any bytes that followed the request are processed.
    /// permessage-deflate is negotiated under [`Accept::deflate`], or else
    /// [`Config::deflate`]; see [`deflate_params`](Self::deflate_params).
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
        let deflate = accept.deflate.unwrap_or(self.config.deflate);
        // A malformed header was refused on arrival when the connection's
        // own config enables compression; under another config it only
        // means no compression.
        let agreed = req.negotiate_deflate(&deflate).ok().flatten();
        let mut head = req.response(&accept);
        if let Some(a) = &agreed {
            head.headers.push("Sec-WebSocket-Extensions", &a.response);
            self.deflate = Some(compress::Compression::new(self.role, a.params, &deflate));
        }
        head.encode(&mut self.out);
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

    // ----- internals: the handshake and the end -------------------------

    /// Moves the input through the phases: the opening handshake's head,
    /// then frames.
    fn process(&mut self, now: Instant) {
        self.start_clock(now);
        loop {
            match &mut self.phase {
                Phase::AwaitRequest(parser) => match parser.parse_request(&self.rbuf) {
                    Ok(None) => return,
                    Ok(Some((head, used))) => {
                        self.rbuf.advance(used);
                        let checked = handshake::validate_request(head).and_then(|req| {
                            if self.config.deflate.enabled {
                                req.negotiate_deflate(&self.config.deflate)?;
                            }
                            Ok(req)
                        });
                        match checked {
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
                Phase::AwaitResponse(a) => match a.parser.parse_response(&self.rbuf) {
                    Ok(None) => return,
                    Ok(Some((head, used))) => {
                        match a.request.verify_with_offer(&a.key, &head, a.offer.as_ref()) {
                            Ok((protocol, params)) => {
                                if let Some(params) = params {
                                    self.deflate = Some(compress::Compression::new(
                                        self.role,
                                        params,
                                        &self.config.deflate,
                                    ));
                                }
                                self.rbuf.advance(used);
                                self.phase = Phase::Open;
                                self.events.push_back(Event::Open { protocol });
                            }
                            Err(e) => return self.abort_handshake(e),
                        }
                    }
                    Err(e) => return self.abort_handshake(e.into()),
                },
                Phase::Open | Phase::Closing { .. } => return self.read_frames(now, false),
            }
        }
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
        let code = error.close_code();
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
        self.ibuf.release();
        self.lent_input = 0;
        self.partial = None;
        self.current = None;
        self.close_transmit = true;
        self.end_compression();
    }
}

crate::machine::by_inherent_methods!(Connection: Machine<Transmit, Event>);
crate::machine::by_inherent_methods!(Connection: StreamMachine);

#[cfg(test)]
mod tests;
