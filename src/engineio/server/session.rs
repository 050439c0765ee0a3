//! One Engine.IO session, as the server keeps it.
//!
//! # Theory of operation
//!
//! ```text
//!   polling ──2probe on a second (WebSocket) transport──► upgrading
//!   upgrading ──5──► websocket            upgrading ──anything else / timeout──► polling
//!   any ──close packet, ping timeout, parse or transport error, close()──► (removed)
//! ```
//!
//! A polling session holds at most one pending GET, which answers as soon
//! as packets are queued; a WebSocket session writes each packet as a frame.
//! Heartbeat: `ping_at` is when the next ping goes out; once it has,
//! `pong_deadline` is when the session dies without a pong. Every deadline
//! lives here; the server keeps one index of the earliest per session.
//!
//! [`Session`] decides what is its own to decide (the heartbeat, the steps
//! of an upgrade, its send queue and what a poll carries, a server-side
//! close) and says what follows; the server's methods at the end of this
//! file carry that out on connections (answering a poll, writing a frame,
//! closing a WebSocket) and tell the application.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{Packets, Server, Target};
use crate::{
    engineio::{
        CloseReason, Config, ConnId, Data, Event, Packet, PacketType, SEPARATOR, Sid,
        TransportKind, UsageError, open::OpenPacket,
    },
    http::RequestHead,
};

#[derive(Debug)]
pub(super) enum Transport {
    Polling {
        /// The GET waiting for packets.
        get: Option<ConnId>,
    },
    WebSocket(ConnId),
}

impl Transport {
    pub(super) fn kind(&self) -> TransportKind {
        match self {
            Transport::Polling { .. } => TransportKind::Polling,
            Transport::WebSocket(_) => TransportKind::WebSocket,
        }
    }
}

/// A WebSocket opened with the session's sid, not yet switched to.
#[derive(Debug)]
pub(super) struct Upgrade {
    pub(super) conn: ConnId,
    pub(super) deadline: Instant,
    /// After `2probe`: when to release a pending GET with a noop next.
    pub(super) noop_at: Option<Instant>,
}

/// A server-side close of a polling session, as the official server does
/// it: queued packets leave on one poll, and the next poll gets a noop and
/// the close packet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Closing {
    pub(super) deadline: Instant,
    /// The buffer has been delivered; the next poll carries the close.
    pub(super) drained: bool,
}

#[derive(Debug)]
pub(super) struct Session {
    pub(super) transport: Transport,
    pub(super) upgrade: Option<Upgrade>,
    /// Packets waiting for a GET (polling only).
    pub(super) buffer: Vec<Packet>,
    /// What the packets `queue` put in `buffer` take on the wire.
    buffered_bytes: usize,
    /// Some packet in `buffer` may be compressed: the response that carries
    /// them may be (`httpCompression`, as the official server decides).
    /// Packets that wait there and leave on the WebSocket after an upgrade
    /// go by size.
    buffer_compress: bool,
    ping_at: Option<Instant>,
    pong_deadline: Option<Instant>,
    /// Closing by the server; the session ends at this deadline at the
    /// latest.
    pub(super) closing: Option<Closing>,
    /// Whether a packet other than a pong already extended the current
    /// pong deadline (the official server allows it once per ping).
    pong_extended: bool,
    /// The earliest deadline entered in the server's timer index.
    pub(super) scheduled: Option<Instant>,
    /// Queued for a flush at the next `poll_transmit`.
    pub(super) dirty: bool,
}

/// What the switch to the probed WebSocket leaves behind.
pub(super) struct Switched {
    /// The GET the polling transport held, to be closed.
    pub(super) get: Option<ConnId>,
    /// Packets that waited for a poll; they go on the WebSocket now.
    pub(super) buffered: Vec<Packet>,
    /// The server had started closing the session: it ends now.
    pub(super) closing: bool,
}

impl Session {
    pub(super) fn new(transport: Transport, ping_at: Instant) -> Self {
        Session {
            transport,
            upgrade: None,
            buffer: Vec::new(),
            buffered_bytes: 0,
            buffer_compress: false,
            ping_at: Some(ping_at),
            pong_deadline: None,
            closing: None,
            pong_extended: false,
            scheduled: None,
            dirty: false,
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        [
            self.ping_at,
            self.pong_deadline,
            self.upgrade.as_ref().map(|u| u.deadline),
            self.upgrade.as_ref().and_then(|u| u.noop_at),
            self.closing.map(|c| c.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn pending_get(&self) -> Option<ConnId> {
        match self.transport {
            Transport::Polling { get } => get,
            Transport::WebSocket(_) => None,
        }
    }

    // ----- heartbeat ----------------------------------------------------

    /// A packet of `kind` arrived on the session's transport. A pong ends
    /// the wait and sets the next ping; any other packet extends the wait
    /// once per ping, as the official server does (a busy client's pong may
    /// queue behind its data). True if a deadline moved.
    pub(super) fn heard(&mut self, now: Instant, kind: PacketType, config: &Config) -> bool {
        if kind == PacketType::Pong {
            self.pong_deadline = None;
            self.ping_at = Some(now + config.ping_interval);
            true
        } else if self.pong_deadline.is_some() && !self.pong_extended {
            self.pong_extended = true;
            self.pong_deadline = Some(now + config.ping_timeout);
            true
        } else {
            false
        }
    }

    /// True if the ping is due: the wait for its pong starts now, and the
    /// caller sends it.
    pub(super) fn ping_due(&mut self, now: Instant, config: &Config) -> bool {
        if self.ping_at.is_none_or(|d| d > now) {
            return false;
        }
        self.ping_at = None;
        self.pong_deadline = Some(now + config.ping_timeout);
        self.pong_extended = false;
        true
    }

    /// Why the session must end now, if it must: no pong in time, or a
    /// server-side close that no poll came to carry.
    pub(super) fn expired(&self, now: Instant) -> Option<CloseReason> {
        if self.pong_deadline.is_some_and(|d| d <= now) {
            Some(CloseReason::PingTimeout)
        } else if self.closing.is_some_and(|c| c.deadline <= now) {
            Some(CloseReason::ForcedClose)
        } else {
            None
        }
    }

    // ----- upgrade ------------------------------------------------------

    /// A WebSocket `conn` opened with this session's sid: probe it, unless
    /// the session is on WebSocket already, upgrading or closing (then the
    /// official server closes the new WebSocket at once: false).
    pub(super) fn start_upgrade(&mut self, conn: ConnId, deadline: Instant) -> bool {
        if self.upgrade.is_some()
            || self.closing.is_some()
            || self.transport.kind() == TransportKind::WebSocket
        {
            return false;
        }
        self.upgrade = Some(Upgrade {
            conn,
            deadline,
            noop_at: None,
        });
        true
    }

    /// Whether `2probe` has been answered: the client is pausing polling
    /// before it sends `5`, and a poll must not be held meanwhile.
    pub(super) fn probe_answered(&self) -> bool {
        self.upgrade.as_ref().is_some_and(|u| u.noop_at.is_some())
    }

    /// The client sent `2probe`: from now on a held GET is released with a
    /// noop (now, and every [`NOOP_INTERVAL`] while the probe waits). True
    /// if a GET is held, to be answered now.
    pub(super) fn probed(&mut self, now: Instant) -> bool {
        if let Some(u) = self.upgrade.as_mut() {
            u.noop_at = Some(now + NOOP_INTERVAL);
        }
        let release = self.pending_get().is_some();
        if release {
            self.queue_noop();
        }
        release
    }

    /// True if it is time to release a held GET with a noop again.
    pub(super) fn noop_due(&mut self, now: Instant) -> bool {
        let Some(u) = self.upgrade.as_mut() else {
            return false;
        };
        if u.noop_at.is_none_or(|d| d > now) {
            return false;
        }
        u.noop_at = Some(now + NOOP_INTERVAL);
        if self.pending_get().is_none() {
            return false;
        }
        self.queue_noop();
        true
    }

    /// Gives a poll something to carry while an upgrade waits.
    pub(super) fn queue_noop(&mut self) {
        if self.buffer.is_empty() {
            self.buffer.push(Packet::new(PacketType::Noop));
        }
    }

    pub(super) fn upgrade_expired(&self, now: Instant) -> bool {
        self.upgrade.as_ref().is_some_and(|u| u.deadline <= now)
    }

    /// The client sent `5` on WebSocket `conn`: it becomes the transport.
    pub(super) fn switch_to(&mut self, conn: ConnId) -> Switched {
        self.upgrade = None;
        let old = std::mem::replace(&mut self.transport, Transport::WebSocket(conn));
        Switched {
            get: match old {
                Transport::Polling { get } => get,
                Transport::WebSocket(_) => None,
            },
            buffered: self.take_buffer(),
            closing: self.closing.take().is_some(),
        }
    }

    // ----- send queue (polling) -----------------------------------------

    /// Everything buffered, taken.
    pub(super) fn take_buffer(&mut self) -> Vec<Packet> {
        self.buffered_bytes = 0;
        self.buffer_compress = false;
        std::mem::take(&mut self.buffer)
    }

    /// Queues packets for the next poll, all or none. True if a GET is
    /// waiting for them. [`UsageError::BufferFull`]: with no GET waiting,
    /// they would take the buffer past `config`'s bounds (a lone packet
    /// goes whatever its size).
    pub(super) fn queue(
        &mut self,
        packets: Packets<'_>,
        config: &Config,
    ) -> Result<bool, UsageError> {
        let bytes = packets.polling_len();
        // A poll waiting takes all of it at the end of the turn.
        let waiting = self.pending_get().is_none() && !self.buffer.is_empty();
        if waiting
            && (self.buffer.len() + packets.len() > config.max_buffered_packets
                || self.buffered_bytes.saturating_add(bytes) > config.max_send_queue)
        {
            return Err(UsageError::BufferFull);
        }
        let separator =
            |p: &Packet| matches!(&p.data, Data::Text(t) if t.as_bytes().contains(&SEPARATOR));
        let has_separator = match packets {
            Packets::Plain(p, _) => p.iter().any(separator),
            Packets::Shared(p) => p.iter().any(|p| separator(&p.packet)),
            Packets::Text(t, _) => t.as_bytes().contains(&SEPARATOR),
        };
        if has_separator {
            return Err(UsageError::SeparatorInText);
        }
        match packets {
            Packets::Plain(p, _) => self.buffer.extend_from_slice(p),
            Packets::Shared(p) => self.buffer.extend(p.iter().map(|p| p.packet.clone())),
            Packets::Text(t, _) => self.buffer.push(Packet::message(t.to_owned())),
        }
        self.buffer_compress |= packets.compress();
        self.buffered_bytes = self.buffered_bytes.saturating_add(bytes);
        Ok(self.pending_get().is_some())
    }

    /// What the held GET carries now, if anything: the GET, everything
    /// queued, whether it may be compressed, and whether the session ends
    /// with it (once a closing session's queue has left, a noop and the
    /// close packet).
    pub(super) fn take_poll(&mut self) -> Option<(ConnId, Vec<Packet>, bool, bool)> {
        let Transport::Polling { get } = &mut self.transport else {
            return None;
        };
        let conn = (*get)?;
        let (packets, compress, end) = match &mut self.closing {
            Some(c) if c.drained => (
                vec![
                    Packet::new(PacketType::Noop),
                    Packet::new(PacketType::Close),
                ],
                true,
                true,
            ),
            closing => {
                if self.buffer.is_empty() {
                    return None;
                }
                if let Some(c) = closing {
                    c.drained = true;
                }
                self.buffered_bytes = 0;
                let compress = std::mem::take(&mut self.buffer_compress);
                (std::mem::take(&mut self.buffer), compress, false)
            }
        };
        *get = None;
        Some((conn, packets, compress, end))
    }

    /// A server-side close of a polling session. With nothing queued, a
    /// held GET carries the close packet at once (returned: the session
    /// then ends); otherwise the queue leaves first (see [`Closing`]).
    pub(super) fn start_close(&mut self, deadline: Instant) -> Option<ConnId> {
        if let Transport::Polling { get } = &mut self.transport {
            if self.buffer.is_empty() {
                if let Some(conn) = get.take() {
                    return Some(conn);
                }
            }
        }
        self.closing = Some(Closing {
            deadline,
            drained: self.buffer.is_empty(),
        });
        None
    }
}

/// How often a pending GET is released with a noop while an upgrade waits
/// for the client's `5` (the official server's interval).
const NOOP_INTERVAL: Duration = Duration::from_millis(100);

impl Server {
    pub(super) fn open_session(
        &mut self,
        now: Instant,
        transport: Transport,
        head: RequestHead,
        peer: Option<SocketAddr>,
    ) -> Sid {
        let mut sid = Sid::generate(&mut *self.entropy);
        while self.sessions.contains_key(&sid) {
            sid = Sid::generate(&mut *self.entropy);
        }
        let kind = transport.kind();
        let upgrades = if kind == TransportKind::Polling
            && self.config.allow_upgrades
            && self.config.websocket
        {
            vec![TransportKind::WebSocket.as_str().to_owned()]
        } else {
            Vec::new()
        };
        let open = OpenPacket {
            sid: sid.as_str().to_owned(),
            upgrades,
            ping_interval: self.config.ping_interval,
            ping_timeout: self.config.ping_timeout,
            max_payload: Some(self.config.max_payload),
        }
        .to_json();
        let mut session = Session::new(transport, now + self.config.ping_interval);
        session
            .buffer
            .push(Packet::with_text(PacketType::Open, open));
        session.buffer_compress = true;
        self.sessions.insert(sid, session);
        self.schedule(Target::Session(sid));
        self.events.push_back(Event::Open {
            sid,
            handshake: Box::new(super::Handshake {
                head,
                peer,
                transport: kind,
            }),
        });
        sid
    }

    /// A packet on the session's current transport.
    pub(super) fn on_packet(&mut self, now: Instant, sid: Sid, p: Packet) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let polling = s.transport.kind() == TransportKind::Polling;
        if s.heard(now, p.kind, &self.config) {
            self.schedule(Target::Session(sid));
        }
        match p.kind {
            // Clients never ping in v4 ("invalid heartbeat direction").
            PacketType::Ping => self.end_session(now, sid, CloseReason::TransportError),
            PacketType::Message => self.events.push_back(Event::Message { sid, data: p.data }),
            // Only the polling transport acts on a close packet; over
            // WebSocket the official server ignores it and waits for the
            // socket itself to close.
            PacketType::Close if polling => self.end_session(now, sid, CloseReason::TransportClose),
            PacketType::Close
            | PacketType::Pong
            | PacketType::Open
            | PacketType::Upgrade
            | PacketType::Noop => {}
        }
    }

    /// A packet on the WebSocket being probed for an upgrade.
    pub(super) fn on_probe_packet(&mut self, now: Instant, sid: Sid, conn: ConnId, p: Packet) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let is_probe = matches!(&p.data, Data::Text(t) if t.as_str() == "probe");
        match p.kind {
            PacketType::Ping if is_probe => {
                let release = s.probed(now);
                self.ws_send(conn, &Packet::with_text(PacketType::Pong, "probe"));
                if release {
                    self.flush_polling(now, sid);
                }
                self.schedule(Target::Session(sid));
            }
            PacketType::Upgrade => {
                let switched = s.switch_to(conn);
                if let Some(get) = switched.get {
                    // The discarded transport closes its pending poll.
                    self.answer_poll(now, get, &[Packet::new(PacketType::Close)], true);
                }
                for p in &switched.buffered {
                    self.ws_send(conn, p);
                }
                self.events.push_back(Event::Upgrade { sid });
                if switched.closing {
                    self.end_session(now, sid, CloseReason::ForcedClose);
                } else {
                    self.schedule(Target::Session(sid));
                }
            }
            _ => self.cancel_upgrade(now, sid),
        }
    }

    pub(super) fn cancel_upgrade(&mut self, now: Instant, sid: Sid) {
        let Some(u) = self.sessions.get_mut(&sid).and_then(|s| s.upgrade.take()) else {
            return;
        };
        self.close_ws(now, u.conn);
        self.schedule(Target::Session(sid));
    }

    pub(super) fn session_timeout(&mut self, now: Instant, sid: Sid) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if let Some(reason) = s.expired(now) {
            return self.end_session(now, sid, reason);
        }
        if s.upgrade_expired(now) {
            self.cancel_upgrade(now, sid);
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let release = s.noop_due(now);
        let ping = s.ping_due(now, &self.config);
        if release {
            self.mark_dirty(Target::Session(sid));
        }
        if ping {
            if let Some(Transport::WebSocket(conn)) = self.sessions.get(&sid).map(|s| &s.transport)
            {
                let conn = *conn;
                self.ws_heartbeat(conn);
            }
            let _ = self.queue_all(sid, Packets::Plain(&[Packet::new(PacketType::Ping)], true));
        }
    }

    /// Queues packets on the session's transport, all or none. Past the
    /// session's bound it ends (`send queue full`).
    pub(super) fn queue_all(&mut self, sid: Sid, packets: Packets<'_>) -> Result<(), UsageError> {
        let s = self
            .sessions
            .get_mut(&sid)
            .filter(|s| s.closing.is_none())
            .ok_or(UsageError::UnknownSession(sid))?;
        match s.transport {
            Transport::Polling { .. } => match s.queue(packets, &self.config) {
                Ok(true) => {
                    self.mark_dirty(Target::Session(sid));
                    Ok(())
                }
                Ok(false) => Ok(()),
                Err(UsageError::BufferFull) => {
                    self.overflow(sid);
                    Err(UsageError::BufferFull)
                }
                Err(e) => Err(e),
            },
            Transport::WebSocket(conn) => self.ws_send_all(conn, packets),
        }
    }

    /// A session the application may still send to or close: open, and
    /// not closing.
    pub(super) fn live_session(&mut self, sid: Sid) -> Result<&mut Session, UsageError> {
        self.sessions
            .get_mut(&sid)
            .filter(|s| s.closing.is_none())
            .ok_or(UsageError::UnknownSession(sid))
    }

    /// Ends a session: its transports close, the application hears why.
    pub(super) fn end_session(&mut self, now: Instant, sid: Sid, reason: CloseReason) {
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        match s.transport {
            Transport::Polling { get: Some(get) } => {
                // A client's own close releases its poll with a noop; any
                // other end closes it with the close packet.
                let last = if reason == CloseReason::TransportClose {
                    PacketType::Noop
                } else {
                    PacketType::Close
                };
                self.answer_poll(now, get, &[Packet::new(last)], true);
            }
            Transport::Polling { get: None } => {}
            Transport::WebSocket(conn) => self.close_ws(now, conn),
        }
        if let Some(u) = s.upgrade {
            self.close_ws(now, u.conn);
        }
        self.events.push_back(Event::Close { sid, reason });
    }
}
