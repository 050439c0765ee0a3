//! A client and a server `ws::Connection` wired back to back through two
//! in-memory pipes, driven by an arbitrary list of actions: sends of every
//! kind (direct sends too), fragments, pings, closes, partial deliveries in
//! arbitrary chunks, injected garbage, EOF, and time; events are polled
//! owned or lent (`poll_event_ref`), switched at any point. Either side
//! may have permessage-deflate on, with arbitrary parameters, threshold and
//! level; messages are then sent compressed by size or by choice
//! (`send_compressed`), and compressed frames of any content (a fresh
//! DEFLATE stream of arbitrary bytes, possibly corrupted, or arbitrary
//! bytes) may be injected, so the inflate path sees what a peer can send.
//!
//! Besides the per-connection invariants of `common`, checked after every
//! action:
//!
//! * a command on an `Open` connection with nothing queued succeeds, and a
//!   control payload over 125 bytes or a close code not valid on the wire is
//!   refused;
//! * `poll_timeout()` is never before `now`, and strictly after it right
//!   after `handle_timeout(now)`;
//! * once both sides are open they agree on the permessage-deflate
//!   parameters, and when both want compression they have it;
//! * while no garbage was injected: the messages each side received are a
//!   prefix of what the other side sent, in order and intact; no side fails
//!   with a protocol error (nor a limit error unless its limits are tight,
//!   nor a handshake error unless the server refused or an EOF was forced);
//! * at the end, after delivering everything: without garbage, every sent
//!   message arrived unless the connection was disrupted (EOF, timeout,
//!   refusal, limit), and once either side reported `Closed` both sides
//!   reached `State::Closed`.

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{BufMut, Bytes, BytesMut};
use wsio::{
    entropy::SeededEntropy,
    ws::{
        ClientRequest, CloseCode, Config, Connection, DataKind, EncodedFrame, Error,
        HandshakeError, Message, OpCode, Role, State, UsageError,
        deflate::{DeflateConfig, Deflater, Params},
        frame::{FrameHeader, encode_header},
        mask::apply_mask,
    },
};

use crate::common::{Checked, Decision};

const PROTOCOLS: [&str; 3] = ["chat", "superchat", "v2"];
const VALID_CODES: [u16; 16] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
];

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Tight {
    frame: u16,
    message: u16,
    fragments: u8,
}

/// permessage-deflate settings of one side.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct DeflateIn {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
    /// Up to 4 KiB: small thresholds compress small messages too.
    threshold: u16,
    level: u8,
}

impl DeflateIn {
    pub fn build(self) -> DeflateConfig {
        DeflateConfig::default()
            .enabled(true)
            .server_no_context_takeover(self.server_no_context_takeover)
            .client_no_context_takeover(self.client_no_context_takeover)
            .server_max_window_bits(self.server_max_window_bits)
            .client_max_window_bits(self.client_max_window_bits)
            .threshold(usize::from(self.threshold % 4096))
            .level(u32::from(self.level))
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct ConfigIn {
    send_fragment_size: Option<u8>,
    max_send_queue: Option<u16>,
    auto_pong: bool,
    close_timeout_ms: u16,
    tight: Option<Tight>,
    deflate: Option<DeflateIn>,
}

impl ConfigIn {
    fn build(self) -> Config {
        let mut c = Config::default()
            .auto_pong(self.auto_pong)
            .send_fragment_size(self.send_fragment_size.map(usize::from))
            .close_timeout(Duration::from_millis(u64::from(self.close_timeout_ms)))
            .deflate(
                self.deflate
                    .map_or_else(DeflateConfig::default, DeflateIn::build),
            );
        if let Some(q) = self.max_send_queue {
            c = c.max_send_queue(usize::from(q));
        }
        if let Some(t) = self.tight {
            c = c
                .max_frame_size(usize::from(t.frame))
                .max_message_size(usize::from(t.message))
                .max_fragments(usize::from(t.fragments));
        }
        c
    }
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Client,
    Server,
}

/// Which input method a delivery uses.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// `handle_input(&[u8])`.
    Slice,
    /// `handle_input_bytes(BytesMut)`.
    Owned,
    /// `input_buffer(want)` and `commit_input`, reading at most the room
    /// offered each time.
    Ingest { want: u16 },
}

#[derive(Arbitrary, Debug)]
pub enum Action {
    /// `send`; `owned`: the connection gets the only handle to the bytes
    /// (a client masks them in place), else a clone of what the harness
    /// keeps.
    Send {
        who: Who,
        text: bool,
        data: Vec<u8>,
        owned: bool,
    },
    /// `send` of a generated payload of `kib` KiB (up to 127) plus `tail`
    /// bytes: frames large enough for the large-frame paths, which inputs
    /// of a few KiB never reach.
    SendLarge {
        who: Who,
        text: bool,
        kib: u8,
        tail: u16,
        owned: bool,
    },
    SendEncoded {
        who: Who,
        text: bool,
        data: Vec<u8>,
    },
    /// `send_compressed`: compressed (if negotiated) whatever its size, or
    /// not at all.
    SendCompressed {
        who: Who,
        text: bool,
        data: Vec<u8>,
        compress: bool,
    },
    /// `send_direct`: the header from the machine, the payload written
    /// by the harness straight after it.
    SendDirect {
        who: Who,
        text: bool,
        data: Vec<u8>,
    },
    /// Starts a fragmented message; `FragNext` sends its pieces.
    FragStart {
        who: Who,
        text: bool,
        data: Vec<u8>,
    },
    FragNext {
        who: Who,
        n: u8,
        fin: bool,
    },
    Ping {
        who: Who,
        data: Vec<u8>,
    },
    Pong {
        who: Who,
        data: Vec<u8>,
    },
    Close {
        who: Who,
        code: u16,
        reason: String,
    },
    CloseValid {
        who: Who,
        code: u8,
        reason: String,
    },
    /// Delivers up to `n` bytes (0: all) to `to`, in chunks of `chunk`
    /// (0: one piece), through the input method `how`.
    Deliver {
        to: Who,
        n: u16,
        chunk: u8,
        how: Feed,
    },
    DeliverAll,
    /// Appends bytes to the stream `to` reads.
    Inject {
        to: Who,
        data: Vec<u8>,
    },
    /// Appends a frame with RSV1 as a peer that compresses would send it
    /// (masked towards the server): `opcode` 0 continuation, 1 text, 2
    /// binary, else ping; its payload a fresh DEFLATE stream of `data` at
    /// `level`, the byte at `flip.0` xored with `flip.1`, or (`raw`) `data`
    /// itself.
    InjectDeflated {
        to: Who,
        opcode: u8,
        fin: bool,
        rsv: u8,
        data: Vec<u8>,
        level: u8,
        flip: Option<(u16, u8)>,
        raw: bool,
    },
    /// `to`'s peer vanished: EOF now, and nothing more reaches `to`.
    Eof {
        to: Who,
    },
    Advance {
        ms: u16,
    },
    /// Jumps to the earliest deadline either side asked for.
    AdvanceToDeadline,
    /// From now on `who` polls events with `poll_event_ref` (`on`) or
    /// `poll_event`.
    ByRef {
        who: Who,
        on: bool,
    },
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    client_config: ConfigIn,
    server_config: ConfigIn,
    offered: Vec<u8>,
    decision: Decision,
    seed: u64,
    actions: Vec<Action>,
}

#[derive(Default)]
struct Pipe {
    buf: Vec<u8>,
    /// The writer gave `Transmit::Close`.
    writer_closed: bool,
    eof_delivered: bool,
    /// An `Eof` action cut it: nothing more is delivered.
    cut: bool,
}

struct Frag {
    kind: DataKind,
    rest: Vec<u8>,
    sent: Vec<u8>,
    /// Fragments sent so far.
    count: usize,
}

struct Sim {
    client: Checked,
    server: Checked,
    /// Bytes the server reads, and those the client reads.
    to_server: Pipe,
    to_client: Pipe,
    base: Instant,
    ms: u64,
    sent: [Vec<Message>; 2],
    frag: [Option<Frag>; 2],
    tight: [bool; 2],
    /// A side sent a message in enough fragments to cross the peer's
    /// default `max_fragments`.
    many_fragments: [bool; 2],
    garbage: bool,
    eof_forced: bool,
    /// Each side's config enables permessage-deflate.
    wants_deflate: [bool; 2],
}

/// A frame `to`'s peer could send on a compressed connection (see
/// [`Action::InjectDeflated`]).
#[allow(clippy::too_many_arguments)]
fn deflated_frame(
    to: Who,
    opcode: u8,
    fin: bool,
    rsv: u8,
    data: &[u8],
    level: u8,
    flip: Option<(u16, u8)>,
    raw: bool,
) -> Vec<u8> {
    let (sender, mask) = match to {
        Who::Server => (Role::Client, Some([0x5a, 0x01, 0xc3, 0x77])),
        Who::Client => (Role::Server, None),
    };
    let mut payload = if raw {
        data.to_vec()
    } else {
        let config = DeflateConfig::default().level(u32::from(level));
        let mut d = Deflater::new(sender, &Params::default(), &config);
        let mut out = BytesMut::new();
        match d.compress_fragment(data, fin, &mut out) {
            Ok(()) => out.to_vec(),
            Err(_) => data.to_vec(),
        }
    };
    if let Some((at, x)) = flip {
        let len = payload.len();
        if let Some(b) = payload.get_mut(usize::from(at) % len.max(1)) {
            *b ^= x;
        }
    }
    let opcode = match opcode % 4 {
        0 => OpCode::Continuation,
        1 => OpCode::Text,
        2 => OpCode::Binary,
        _ => OpCode::Ping,
    };
    payload.truncate(if opcode == OpCode::Ping { 125 } else { 1 << 16 });
    let header = FrameHeader {
        fin: fin || opcode == OpCode::Ping,
        // RSV1, and now and then the reserved others.
        rsv: if rsv < 200 { 0b100 } else { rsv & 0b111 },
        opcode,
        mask,
        len: payload.len() as u64,
    };
    let mut out = BytesMut::new();
    encode_header(&header, &mut out);
    if let Some(key) = mask {
        apply_mask(&mut payload, key, 0);
    }
    out.extend_from_slice(&payload);
    out.to_vec()
}

fn idx(w: Who) -> usize {
    match w {
        Who::Client => 0,
        Who::Server => 1,
    }
}

impl Sim {
    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.ms)
    }

    fn side(&mut self, w: Who) -> &mut Checked {
        match w {
            Who::Client => &mut self.client,
            Who::Server => &mut self.server,
        }
    }

    /// Drains both machines into the pipes until neither has anything left.
    fn pump(&mut self) {
        let now = self.now();
        for _ in 0..1000 {
            let to_server = &mut self.to_server;
            let a = self
                .client
                .pump(now, |b| to_server.buf.extend_from_slice(&b));
            let to_client = &mut self.to_client;
            let b = self
                .server
                .pump(now, |b| to_client.buf.extend_from_slice(&b));
            self.to_server.writer_closed |= self.client.tcp_closed;
            self.to_client.writer_closed |= self.server.tcp_closed;
            if !a && !b {
                self.check();
                return;
            }
        }
        panic!("machines never went quiet");
    }

    fn check(&self) {
        let now = self.now();
        for c in [&self.client, &self.server] {
            if let Some(t) = c.conn.poll_timeout() {
                assert!(t >= now, "{}: timeout in the past", c.name);
            }
        }
        if self.client.opened && self.server.opened {
            let (a, b) = (
                self.client.conn.deflate_params(),
                self.server.conn.deflate_params(),
            );
            assert_eq!(a, b, "the two sides disagree on permessage-deflate");
            if self.wants_deflate[0] && self.wants_deflate[1] {
                assert!(a.is_some(), "both wanted permessage-deflate");
            }
        }
        // An opening handshake that took longer than `head_timeout` (time
        // jumps to deadlines) fails both ends: one times out, the other
        // sees the connection end.
        let timed_out = [&self.client, &self.server].iter().any(|s| {
            matches!(
                s.closed.as_ref().and_then(|c| c.error.as_ref()),
                Some(Error::Handshake(HandshakeError::Timeout))
            )
        });
        if !self.garbage {
            for (who, rx, tx) in [
                (Who::Client, &self.client, &self.sent[1]),
                (Who::Server, &self.server, &self.sent[0]),
            ] {
                assert!(
                    rx.received.len() <= tx.len() && rx.received[..] == tx[..rx.received.len()],
                    "{}: received {:?}, peer sent {:?}",
                    rx.name,
                    rx.received,
                    tx
                );
                if let Some(Some(e)) = rx.closed.as_ref().map(|c| c.error.as_ref()) {
                    match e {
                        Error::CloseTimeout => {}
                        Error::Limit(_) => assert!(
                            self.tight[idx(who)] || self.many_fragments[1 - idx(who)],
                            "{}: {e:?}",
                            rx.name
                        ),
                        Error::Handshake(_) => assert!(
                            self.server.rejected || self.eof_forced || timed_out,
                            "{}: {e:?}",
                            rx.name
                        ),
                        _ => panic!("{}: failed on clean input: {e:?}", rx.name),
                    }
                }
            }
        }
    }

    fn deliver(&mut self, to: Who, n: usize, chunk: usize, how: Feed) -> bool {
        let now = self.now();
        let pipe = match to {
            Who::Client => &mut self.to_client,
            Who::Server => &mut self.to_server,
        };
        if pipe.cut {
            return false;
        }
        let take = if n == 0 {
            pipe.buf.len()
        } else {
            n.min(pipe.buf.len())
        };
        let data: Vec<u8> = pipe.buf.drain(..take).collect();
        let eof = pipe.buf.is_empty() && pipe.writer_closed && !pipe.eof_delivered;
        if eof {
            pipe.eof_delivered = true;
        }
        let step = if chunk == 0 { data.len().max(1) } else { chunk };
        for piece in data.chunks(step) {
            let side = self.side(to);
            match how {
                Feed::Slice => side.conn.handle_input(now, piece),
                Feed::Owned => side.conn.handle_input_bytes(now, BytesMut::from(piece)),
                Feed::Ingest { want } => {
                    let mut rest = piece;
                    while !rest.is_empty() {
                        let mut room = side.conn.input_buffer(usize::from(want));
                        let n = room.remaining_mut().min(rest.len());
                        assert!(n > 0, "input_buffer offered no room");
                        room.put_slice(&rest[..n]);
                        side.conn.commit_input(now);
                        rest = &rest[n..];
                    }
                }
            }
            self.pump();
        }
        if eof {
            self.side(to).conn.handle_eof(now);
            self.pump();
        }
        take > 0 || eof
    }

    fn act(&mut self, action: Action) {
        let now = self.now();
        match action {
            Action::Send {
                who,
                text,
                data,
                owned,
            } => self.send(who, message(text, data), owned),
            Action::SendLarge {
                who,
                text,
                kib,
                tail,
                owned,
            } => {
                let len = usize::from(kib % 128) * 1024 + usize::from(tail % 1024);
                // ASCII, so valid text too; varied, so unmasking errors show.
                let data = (0..len).map(|i| b'a' + (i % 23) as u8).collect();
                self.send(who, message(text, data), owned);
            }
            Action::SendEncoded { who, text, data } => {
                let msg = message(text, data);
                let can = self.can_send(who);
                let r = self.side(who).conn.send_encoded(&EncodedFrame::new(&msg));
                if who == Who::Client {
                    assert_eq!(r, Err(UsageError::NotServer));
                } else {
                    self.expect_ok(who, can, &r);
                }
                if r.is_ok() {
                    self.sent[idx(who)].push(msg);
                }
            }
            Action::SendCompressed {
                who,
                text,
                data,
                compress,
            } => {
                let msg = message(text, data);
                let can = self.can_send(who);
                let r = self.side(who).conn.send_compressed(msg.clone(), compress);
                self.expect_ok(who, can, &r);
                if r.is_ok() {
                    self.sent[idx(who)].push(msg);
                }
            }
            Action::SendDirect { who, text, data } => {
                let msg = message(text, data);
                let kind = if text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                let can = self.can_send(who) && self.side(who).conn.buffered_amount() == 0;
                let r = self.side(who).conn.send_direct(kind, msg.len());
                match (who, r) {
                    (Who::Client, r) => assert_eq!(r, Err(UsageError::NotServer)),
                    (Who::Server, Ok(head)) => {
                        for piece in [&head[..], msg.as_bytes()] {
                            self.server.wire.extend_from_slice(piece);
                            self.to_client.buf.extend_from_slice(piece);
                        }
                        self.sent[1].push(msg);
                    }
                    (Who::Server, Err(e)) => {
                        assert!(!can, "send_direct on an open, drained connection: {e:?}")
                    }
                }
            }
            Action::FragStart { who, text, data } => {
                let f = &mut self.frag[idx(who)];
                if f.is_none() {
                    let (kind, rest) = if text {
                        (
                            DataKind::Text,
                            String::from_utf8_lossy(&data).into_owned().into_bytes(),
                        )
                    } else {
                        (DataKind::Binary, data)
                    };
                    *f = Some(Frag {
                        kind,
                        rest,
                        sent: Vec::new(),
                        count: 0,
                    });
                }
            }
            Action::FragNext { who, n, fin } => {
                let Some(mut f) = self.frag[idx(who)].take() else {
                    return;
                };
                let take = if fin {
                    f.rest.len()
                } else {
                    f.rest.len().min(usize::from(n))
                };
                let piece: Vec<u8> = f.rest.drain(..take).collect();
                let open = self.side(who).conn.state() == State::Open;
                let r = self
                    .side(who)
                    .conn
                    .send_fragment(f.kind, Bytes::from(piece.clone()), fin);
                if open {
                    assert_eq!(r, Ok(()), "fragment on an open connection");
                }
                if r.is_ok() {
                    f.count += 1;
                    self.many_fragments[idx(who)] |= f.count > 4000;
                    f.sent.extend_from_slice(&piece);
                    if fin {
                        let msg = match f.kind {
                            DataKind::Text => {
                                Message::text(String::from_utf8(f.sent).expect("sent UTF-8"))
                            }
                            DataKind::Binary => Message::binary(f.sent),
                        };
                        self.sent[idx(who)].push(msg);
                    } else {
                        self.frag[idx(who)] = Some(f);
                    }
                }
                // On an error the message can never be finished: forget it.
            }
            Action::Ping { who, data } => self.control(who, data, true),
            Action::Pong { who, data } => self.control(who, data, false),
            Action::Close { who, code, reason } => self.close(who, code, &reason),
            Action::CloseValid { who, code, reason } => self.close(
                who,
                VALID_CODES[usize::from(code) % VALID_CODES.len()],
                &reason,
            ),
            Action::Deliver { to, n, chunk, how } => {
                self.deliver(to, usize::from(n), usize::from(chunk), how);
            }
            Action::DeliverAll => {
                self.deliver(Who::Server, 0, 0, Feed::Slice);
                self.deliver(Who::Client, 0, 0, Feed::Slice);
            }
            Action::Inject { to, data } => {
                let pipe = match to {
                    Who::Client => &mut self.to_client,
                    Who::Server => &mut self.to_server,
                };
                if !data.is_empty() && !pipe.cut && !pipe.eof_delivered {
                    pipe.buf.extend_from_slice(&data);
                    self.garbage = true;
                }
            }
            Action::InjectDeflated {
                to,
                opcode,
                fin,
                rsv,
                data,
                level,
                flip,
                raw,
            } => {
                let frame = deflated_frame(to, opcode, fin, rsv, &data, level, flip, raw);
                let pipe = match to {
                    Who::Client => &mut self.to_client,
                    Who::Server => &mut self.to_server,
                };
                if !pipe.cut && !pipe.eof_delivered {
                    pipe.buf.extend_from_slice(&frame);
                    self.garbage = true;
                }
            }
            Action::Eof { to } => {
                let pipe = match to {
                    Who::Client => &mut self.to_client,
                    Who::Server => &mut self.to_server,
                };
                pipe.cut = true;
                pipe.buf.clear();
                self.eof_forced = true;
                let side = self.side(to);
                side.conn.handle_eof(now);
                self.pump();
                let side = self.side(to);
                assert!(
                    side.closed.is_some() && side.tcp_closed,
                    "{}: EOF did not end it",
                    side.name
                );
            }
            Action::ByRef { who, on } => self.side(who).by_ref = on,
            Action::Advance { ms } => self.advance_to(self.ms + u64::from(ms)),
            Action::AdvanceToDeadline => {
                let deadline = [&self.client, &self.server]
                    .iter()
                    .filter_map(|c| c.conn.poll_timeout())
                    .min();
                if let Some(d) = deadline {
                    let ms = d.duration_since(self.base).as_millis() as u64;
                    // Round up: the deadline itself must fire.
                    let ms = if self.base + Duration::from_millis(ms) < d {
                        ms + 1
                    } else {
                        ms
                    };
                    self.advance_to(ms.max(self.ms));
                }
            }
        }
        self.pump();
    }

    fn advance_to(&mut self, ms: u64) {
        self.ms = ms;
        let now = self.now();
        for w in [Who::Client, Who::Server] {
            let side = self.side(w);
            side.conn.handle_timeout(now);
            if let Some(t) = side.conn.poll_timeout() {
                assert!(
                    t > now,
                    "{}: due timeout survived handle_timeout",
                    side.name
                );
            }
        }
        self.pump();
    }

    fn control(&mut self, who: Who, data: Vec<u8>, ping: bool) {
        let open = self.side(who).conn.state() == State::Open;
        let len = data.len();
        let conn = &mut self.side(who).conn;
        let r = if ping {
            conn.ping(Bytes::from(data))
        } else {
            conn.pong(Bytes::from(data))
        };
        if open {
            let want = if len > 125 {
                Err(UsageError::ControlTooLong)
            } else {
                Ok(())
            };
            assert_eq!(r, want, "ping/pong of {len} bytes on an open connection");
        }
    }

    fn close(&mut self, who: Who, code: u16, reason: &str) {
        let now = self.now();
        let open = self.side(who).conn.state() == State::Open;
        let r = self.side(who).conn.close(now, CloseCode(code), reason);
        if open {
            let want = if CloseCode(code).is_valid_on_wire() {
                Ok(())
            } else {
                Err(UsageError::InvalidCloseCode(code))
            };
            assert_eq!(r, want, "close({code}) on an open connection");
        }
        if r.is_ok() {
            assert_eq!(self.side(who).conn.state(), State::Closing);
        }
    }

    /// `send`s `msg` (a copy that only the connection holds when `owned`,
    /// else a clone of what the harness keeps).
    fn send(&mut self, who: Who, msg: Message, owned: bool) {
        let can = self.can_send(who);
        let copy = if owned { deep_copy(&msg) } else { msg.clone() };
        let r = self.side(who).conn.send(copy);
        self.expect_ok(who, can, &r);
        if r.is_ok() {
            self.sent[idx(who)].push(msg);
        }
    }

    /// Whether a whole-message send must succeed now.
    fn can_send(&mut self, who: Who) -> bool {
        self.frag[idx(who)].as_ref().is_none_or(|f| f.count == 0)
            && self.side(who).conn.state() == State::Open
    }

    fn expect_ok(&self, who: Who, can: bool, r: &Result<(), UsageError>) {
        if can {
            assert_eq!(*r, Ok(()), "{who:?}: send on an open connection");
        }
    }

    /// Delivers everything both ways until nothing moves.
    fn settle(&mut self) {
        for _ in 0..256 {
            let a = self.deliver(Who::Server, 0, 0, Feed::Slice);
            let b = self.deliver(Who::Client, 0, 0, Feed::Slice);
            if !a && !b {
                return;
            }
        }
        panic!("the pair never settled");
    }

    fn finish(&mut self) {
        self.settle();
        if self.garbage {
            return;
        }
        let disrupted = self.eof_forced
            || self.server.rejected
            || [&self.client, &self.server]
                .iter()
                .any(|c| c.closed.as_ref().is_some_and(|c| c.error.is_some()));
        if !disrupted {
            assert_eq!(
                self.server.received, self.sent[0],
                "client -> server lost messages"
            );
            assert_eq!(
                self.client.received, self.sent[1],
                "server -> client lost messages"
            );
        }
        if self.client.closed.is_some() || self.server.closed.is_some() {
            for c in [&self.client, &self.server] {
                assert_eq!(
                    c.conn.state(),
                    State::Closed,
                    "{}: stuck after the close",
                    c.name
                );
                assert!(c.closed.is_some(), "{}: never heard Closed", c.name);
            }
        }
    }
}

/// The same message in bytes of its own.
fn deep_copy(msg: &Message) -> Message {
    match msg {
        Message::Text(t) => Message::text(t.as_str().to_owned()),
        Message::Binary(b) => Message::binary(b.to_vec()),
    }
}

fn message(text: bool, data: Vec<u8>) -> Message {
    if text {
        Message::text(String::from_utf8_lossy(&data).into_owned())
    } else {
        Message::binary(data)
    }
}

/// Runs the actions and the checks.
pub fn run(input: Input) {
    simulate(input);
}

fn simulate(input: Input) -> Sim {
    let mut request = ClientRequest::new("localhost", "/");
    let mut offered: Vec<&str> = Vec::new();
    for &i in &input.offered {
        let p = PROTOCOLS[usize::from(i) % PROTOCOLS.len()];
        if !offered.contains(&p) {
            offered.push(p);
            request = request.protocol(p);
        }
    }
    let client = Connection::client(
        input.client_config.build(),
        request,
        Box::new(SeededEntropy::new(input.seed)),
    );
    let server = Connection::server(input.server_config.build());
    assert_eq!((client.role(), server.role()), (Role::Client, Role::Server));
    let mut sim = Sim {
        client: Checked::new(client, "client", Decision::AcceptNone),
        server: Checked::new(server, "server", input.decision),
        to_server: Pipe::default(),
        to_client: Pipe::default(),
        base: crate::base_instant(),
        ms: 0,
        sent: [Vec::new(), Vec::new()],
        frag: [None, None],
        tight: [
            input.client_config.tight.is_some(),
            input.server_config.tight.is_some(),
        ],
        many_fragments: [
            input.client_config.send_fragment_size.is_some(),
            input.server_config.send_fragment_size.is_some(),
        ],
        garbage: false,
        eof_forced: false,
        wants_deflate: [
            input.client_config.deflate.is_some(),
            input.server_config.deflate.is_some(),
        ],
    };
    sim.pump();
    for a in input.actions {
        sim.act(a);
    }
    sim.finish();
    sim
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ConfigIn {
        ConfigIn {
            send_fragment_size: None,
            max_send_queue: None,
            auto_pong: true,
            close_timeout_ms: 100,
            tight: None,
            deflate: None,
        }
    }

    fn input(actions: Vec<Action>) -> Input {
        Input {
            client_config: config(),
            server_config: config(),
            offered: vec![1],
            decision: Decision::AcceptFirst,
            seed: 7,
            actions,
        }
    }

    #[test]
    fn large_frames_arrive_whole_through_every_input_method() {
        use Action::*;
        let mut actions = vec![DeliverAll, DeliverAll];
        for (kib, how) in [
            (100, Feed::Slice),
            (40, Feed::Owned),
            (127, Feed::Ingest { want: 5000 }),
        ] {
            actions.push(SendLarge {
                who: Who::Client,
                text: kib == 40,
                kib,
                tail: 7,
                owned: kib != 127,
            });
            actions.push(SendLarge {
                who: Who::Server,
                text: false,
                kib,
                tail: 0,
                owned: true,
            });
            for to in [Who::Server, Who::Client] {
                actions.push(Deliver {
                    to,
                    n: 30_000,
                    chunk: 0,
                    how,
                });
                actions.push(Deliver {
                    to,
                    n: 0,
                    chunk: 0,
                    how,
                });
            }
        }
        let sim = simulate(input(actions));
        let lens = |r: &[Message]| r.iter().map(Message::len).collect::<Vec<_>>();
        assert_eq!(lens(&sim.server.received), [102_407, 40_967, 130_055]);
        assert_eq!(lens(&sim.client.received), [102_400, 40_960, 130_048]);
        assert!(!sim.garbage && !sim.eof_forced);
    }

    #[test]
    fn a_clean_session_delivers_everything_and_closes() {
        use Action::*;
        let sim = simulate(input(vec![
            DeliverAll,
            DeliverAll,
            Send {
                who: Who::Client,
                text: true,
                data: b"hello".to_vec(),
                owned: false,
            },
            Send {
                who: Who::Client,
                text: false,
                data: vec![9; 3000],
                owned: true,
            },
            FragStart {
                who: Who::Server,
                text: true,
                data: "h\u{e9}llo".as_bytes().to_vec(),
            },
            FragNext {
                who: Who::Server,
                n: 2,
                fin: false,
            },
            Ping {
                who: Who::Client,
                data: b"p".to_vec(),
            },
            Deliver {
                to: Who::Server,
                n: 3,
                chunk: 1,
                how: Feed::Owned,
            },
            FragNext {
                who: Who::Server,
                n: 0,
                fin: true,
            },
            SendEncoded {
                who: Who::Server,
                text: false,
                data: vec![1, 2, 3],
            },
            Deliver {
                to: Who::Client,
                n: 0,
                chunk: 2,
                how: Feed::Ingest { want: 3 },
            },
            DeliverAll,
            CloseValid {
                who: Who::Client,
                code: 0,
                reason: "bye".into(),
            },
        ]));
        assert_eq!(
            sim.server.received,
            vec![Message::text("hello"), Message::binary(vec![9u8; 3000])]
        );
        assert_eq!(
            sim.client.received,
            vec![
                Message::text("h\u{e9}llo"),
                Message::binary(vec![1u8, 2, 3])
            ]
        );
        assert_eq!(sim.client.conn.state(), State::Closed);
        assert_eq!(sim.server.conn.state(), State::Closed);
        assert!(!sim.garbage && !sim.eof_forced);
    }

    #[test]
    fn a_silent_peer_times_out() {
        use Action::*;
        let sim = simulate(input(vec![
            DeliverAll,
            DeliverAll,
            CloseValid {
                who: Who::Server,
                code: 0,
                reason: String::new(),
            },
            AdvanceToDeadline,
        ]));
        let closed = sim.server.closed.clone().unwrap();
        assert_eq!(closed.error, Some(Error::CloseTimeout));
        assert_eq!(sim.client.conn.state(), State::Closed);
    }

    #[test]
    fn garbage_fails_the_reader() {
        use Action::*;
        let sim = simulate(input(vec![
            DeliverAll,
            DeliverAll,
            Inject {
                to: Who::Server,
                data: vec![0x81, 0x01, b'x'],
            },
            DeliverAll,
        ]));
        let closed = sim.server.closed.clone().unwrap();
        assert!(
            matches!(closed.error, Some(Error::Protocol(_))),
            "{closed:?}"
        );
    }

    fn deflate(threshold: u16, bits: u8) -> DeflateIn {
        DeflateIn {
            server_no_context_takeover: bits.is_multiple_of(2),
            client_no_context_takeover: false,
            server_max_window_bits: bits,
            client_max_window_bits: bits.max(9),
            threshold,
            level: 6,
        }
    }

    #[test]
    fn a_compressed_session_delivers_everything() {
        use Action::*;
        for bits in [8, 9, 12, 15] {
            let mut i = input(vec![
                DeliverAll,
                DeliverAll,
                SendLarge {
                    who: Who::Client,
                    text: true,
                    kib: 40,
                    tail: 3,
                    owned: true,
                },
                SendCompressed {
                    who: Who::Server,
                    text: true,
                    data: b"tiny".to_vec(),
                    compress: true,
                },
                SendCompressed {
                    who: Who::Server,
                    text: false,
                    data: vec![],
                    compress: true,
                },
                FragStart {
                    who: Who::Server,
                    text: false,
                    data: vec![3; 3000],
                },
                FragNext {
                    who: Who::Server,
                    n: 200,
                    fin: false,
                },
                FragNext {
                    who: Who::Server,
                    n: 0,
                    fin: true,
                },
                SendEncoded {
                    who: Who::Server,
                    text: true,
                    data: vec![b'z'; 2000],
                },
                Deliver {
                    to: Who::Server,
                    n: 0,
                    chunk: 7,
                    how: Feed::Ingest { want: 1000 },
                },
                DeliverAll,
            ]);
            i.client_config.deflate = Some(deflate(0, bits));
            i.server_config.deflate = Some(deflate(100, bits));
            let sim = simulate(i);
            let params = sim.client.conn.deflate_params().expect("negotiated");
            assert_eq!(params.server_max_window_bits, bits);
            assert_eq!(sim.server.received.len(), 1);
            assert_eq!(sim.client.received.len(), 4);
            assert!(!sim.garbage && !sim.eof_forced);
        }
    }

    #[test]
    fn injected_compressed_frames_reach_the_inflater() {
        use Action::*;
        let inject = |flip, raw, opcode| InjectDeflated {
            to: Who::Server,
            opcode,
            fin: true,
            rsv: 0,
            data: b"hello hello hello".to_vec(),
            level: 6,
            flip,
            raw,
        };
        // A valid one is a message; a corrupted one or one on a control
        // frame fails the connection.
        for (frame, fails) in [
            (inject(None, false, 1), false),
            (inject(Some((0, 0xff)), false, 2), true),
            (inject(None, true, 1), true),
            (inject(None, false, 3), true),
        ] {
            let mut i = input(vec![DeliverAll, DeliverAll, frame, DeliverAll]);
            i.client_config.deflate = Some(deflate(0, 15));
            i.server_config.deflate = Some(deflate(0, 15));
            let sim = simulate(i);
            match fails {
                false => assert_eq!(sim.server.received, [Message::text("hello hello hello")]),
                true => assert!(
                    sim.server
                        .closed
                        .as_ref()
                        .is_some_and(|c| c.error.is_some())
                ),
            }
        }
    }
}
