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

use std::time::Instant;

use super::{ConnId, Packet, TransportKind};

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
