//! One Engine.IO session's state, as the server keeps it.
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

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{Packets, Server, Target, polling::polling_head};
use crate::{
    engineio::{
        CloseReason, ConnId, Data, Event, Packet, PacketType, SEPARATOR, Sid, TransportKind,
        UsageError, encode_payload, open::OpenPacket,
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
    pub(super) ping_at: Option<Instant>,
    pub(super) pong_deadline: Option<Instant>,
    /// Closing by the server; the session ends at this deadline at the
    /// latest.
    pub(super) closing: Option<Closing>,
    /// Whether a packet other than a pong already extended the current
    /// pong deadline (the official server allows it once per ping).
    pub(super) pong_extended: bool,
    /// The earliest deadline entered in the server's timer index.
    pub(super) scheduled: Option<Instant>,
    /// Queued for a flush at the next `poll_transmit`.
    pub(super) dirty: bool,
}

impl Session {
    pub(super) fn new(transport: Transport, ping_at: Instant) -> Self {
        Session {
            transport,
            upgrade: None,
            buffer: Vec::new(),
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
        if p.kind != PacketType::Pong && s.pong_deadline.is_some() && !s.pong_extended {
            // A busy client's pong may queue behind its data: the official
            // server extends the wait once per ping.
            s.pong_extended = true;
            s.pong_deadline = Some(now + self.config.ping_timeout);
            self.schedule(Target::Session(sid));
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        match p.kind {
            PacketType::Pong => {
                s.pong_deadline = None;
                s.ping_at = Some(now + self.config.ping_interval);
                self.schedule(Target::Session(sid));
            }
            // Clients never ping in v4 ("invalid heartbeat direction").
            PacketType::Ping => self.end_session(now, sid, CloseReason::TransportError),
            PacketType::Message => self.events.push_back(Event::Message { sid, data: p.data }),
            // Only the polling transport acts on a close packet; over
            // WebSocket the official server ignores it and waits for the
            // socket itself to close.
            PacketType::Close if s.transport.kind() == TransportKind::Polling => {
                self.end_session(now, sid, CloseReason::TransportClose)
            }
            PacketType::Close | PacketType::Open | PacketType::Upgrade | PacketType::Noop => {}
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
                if let Some(u) = s.upgrade.as_mut() {
                    u.noop_at = Some(now + NOOP_INTERVAL);
                }
                let release = s.pending_get().is_some();
                if release && s.buffer.is_empty() {
                    s.buffer.push(Packet::new(PacketType::Noop));
                }
                self.ws_send(conn, &Packet::with_text(PacketType::Pong, "probe"));
                if release {
                    self.flush_polling(now, sid);
                }
                self.schedule(Target::Session(sid));
            }
            PacketType::Upgrade => {
                s.upgrade = None;
                let old = std::mem::replace(&mut s.transport, Transport::WebSocket(conn));
                let buffered = std::mem::take(&mut s.buffer);
                let closing = s.closing.take();
                if let Transport::Polling { get: Some(get) } = old {
                    // The discarded transport closes its pending poll.
                    let body = encode_payload(&[Packet::new(PacketType::Close)]);
                    self.reply(now, get, polling_head(), body);
                }
                for p in &buffered {
                    self.ws_send(conn, p);
                }
                self.events.push_back(Event::Upgrade { sid });
                if closing.is_some() {
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
        if s.pong_deadline.is_some_and(|d| d <= now) {
            return self.end_session(now, sid, CloseReason::PingTimeout);
        }
        if s.closing.is_some_and(|c| c.deadline <= now) {
            return self.end_session(now, sid, CloseReason::ForcedClose);
        }
        if s.upgrade.as_ref().is_some_and(|u| u.deadline <= now) {
            self.cancel_upgrade(now, sid);
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if let Some(u) = s.upgrade.as_mut() {
            if u.noop_at.is_some_and(|d| d <= now) {
                u.noop_at = Some(now + NOOP_INTERVAL);
                if s.pending_get().is_some() {
                    if s.buffer.is_empty() {
                        s.buffer.push(Packet::new(PacketType::Noop));
                    }
                    self.mark_dirty(Target::Session(sid));
                }
            }
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.ping_at.is_some_and(|d| d <= now) {
            s.ping_at = None;
            s.pong_deadline = Some(now + self.config.ping_timeout);
            s.pong_extended = false;
            let _ = self.queue_all(sid, Packets::Plain(&[Packet::new(PacketType::Ping)]));
        }
    }

    /// Queues packets on the session's transport, all or none.
    pub(super) fn queue_all(&mut self, sid: Sid, packets: Packets<'_>) -> Result<(), UsageError> {
        let s = self
            .sessions
            .get_mut(&sid)
            .filter(|s| s.closing.is_none())
            .ok_or(UsageError::UnknownSession(sid))?;
        match s.transport {
            Transport::Polling { get } => {
                if s.buffer.len() + packets.len() > self.config.max_buffered_packets {
                    return Err(UsageError::BufferFull);
                }
                let separator = |p: &Packet| matches!(&p.data, Data::Text(t) if t.as_bytes().contains(&SEPARATOR));
                let has_separator = match packets {
                    Packets::Plain(p) => p.iter().any(separator),
                    Packets::Shared(p) => p.iter().any(|p| separator(&p.packet)),
                    Packets::Text(t) => t.as_bytes().contains(&SEPARATOR),
                };
                if has_separator {
                    return Err(UsageError::SeparatorInText);
                }
                match packets {
                    Packets::Plain(p) => s.buffer.extend_from_slice(p),
                    Packets::Shared(p) => s.buffer.extend(p.iter().map(|p| p.packet.clone())),
                    Packets::Text(t) => s.buffer.push(Packet::message(t.to_owned())),
                }
                if get.is_some() {
                    self.mark_dirty(Target::Session(sid));
                }
                Ok(())
            }
            Transport::WebSocket(conn) => self.ws_send_all(conn, packets),
        }
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
                let body = encode_payload(&[Packet::new(last)]);
                self.reply(now, get, polling_head(), body);
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
