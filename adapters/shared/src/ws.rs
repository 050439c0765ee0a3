//! Plain WebSockets on the loop: [`WsServer`], one `ws::Connection` per
//! TCP connection, keyed by [`ConnId`]. It only routes: every protocol
//! decision is the connection's.
//!
//! Backpressure: what a full socket gives back is held ahead of the
//! connection's own output, and the connection is neither polled nor
//! drained until the socket is writable, so new output waits in its send
//! queue, counted against `ws::Config::max_send_queue` (sends past it
//! fail), and its input stays undecoded. A socket that stays full for
//! [`WsServer::SEND_TIMEOUT`] drops the connection (its application hears a close
//! 1006, as for a lost peer).

use std::{
    collections::{BTreeSet, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use wsio::{
    engineio::{ConnId, Transmit},
    ws::{self, CloseCode, Connection},
};

use crate::{
    machine::{ConnMachine, Machine, ServerMachine, Shutdown},
    wake::IdMap,
};

/// An event of one WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsEvent {
    /// The connection (use [`WsServer::conn`] to answer).
    pub conn: ConnId,
    /// What happened.
    pub event: ws::Event,
}

struct Entry {
    ws: Connection,
    /// What the driver gave back: written first once the socket drains.
    held: VecDeque<Bytes>,
    /// The socket is full until then; `None`: not blocked.
    blocked_until: Option<Instant>,
    /// On the active list.
    active: bool,
    /// Its `poll_event` said `None`, and nothing has happened to it since:
    /// a `poll_transmit` that says `None` too means it is drained.
    quiet: bool,
    deadline: Option<Instant>,
}

/// Many server-side WebSockets.
pub struct WsServer {
    config: ws::Config,
    conns: IdMap<Entry>,
    next: u64,
    /// Connections touched since they were last drained, in order.
    active: VecDeque<ConnId>,
    timers: BTreeSet<(Instant, ConnId)>,
}

impl std::fmt::Debug for WsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsServer")
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl WsServer {
    /// How long a connection's socket may stay full before it is dropped
    /// (as `engineio::Config::send_timeout` by default).
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

    /// A server whose connections use `config`.
    pub fn new(config: ws::Config) -> WsServer {
        WsServer {
            config,
            conns: IdMap::default(),
            next: 0,
            active: VecDeque::new(),
            timers: BTreeSet::new(),
        }
    }

    /// A connection, to answer it (accept its upgrade, send, close).
    pub fn conn(&mut self, conn: ConnId) -> Option<&mut Connection> {
        self.touch(conn);
        self.conns.get_mut(&conn).map(|e| &mut e.ws)
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn touch(&mut self, conn: ConnId) {
        if let Some(e) = self.conns.get_mut(&conn) {
            e.quiet = false;
            if !e.active {
                e.active = true;
                self.active.push_back(conn);
            }
        }
    }

    /// A drained connection leaves the active list, its timer brought up
    /// to date.
    fn settle(&mut self, conn: ConnId) {
        let Some(e) = self.conns.get_mut(&conn) else {
            return;
        };
        e.active = false;
        let deadline = match (e.ws.poll_timeout(), e.blocked_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if deadline != e.deadline {
            if let Some(old) = e.deadline {
                self.timers.remove(&(old, conn));
            }
            if let Some(new) = deadline {
                self.timers.insert((new, conn));
            }
            e.deadline = deadline;
        }
    }
}

impl Machine for WsServer {
    type Transmit = Transmit;
    type Event = WsEvent;

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, conn)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, conn));
            if let Some(e) = self.conns.get_mut(&conn) {
                e.deadline = None;
                if e.blocked_until.is_some_and(|t| t <= now) {
                    // Its peer has not read for too long: dropped as a
                    // lost peer (its output goes, the application hears
                    // the end).
                    e.blocked_until = None;
                    e.held.clear();
                    e.ws.handle_eof(now);
                } else {
                    e.ws.handle_timeout(now);
                }
                self.touch(conn);
            }
        }
    }

    /// The active connections' transmits; a connection whose events and
    /// transmits have both run dry (the drain rule of [`wsio::machine`])
    /// leaves the active list.
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let mut i = 0;
        while let Some(&conn) = self.active.get(i) {
            let Some(e) = self.conns.get_mut(&conn) else {
                self.active.swap_remove_back(i);
                continue;
            };
            if e.blocked_until.is_some() {
                // Nothing is drained while its socket is full.
                self.settle(conn);
                self.active.swap_remove_back(i);
                continue;
            }
            if let Some(data) = e.held.pop_front() {
                return Some(Transmit::Data { conn, data });
            }
            match e.ws.poll_transmit(now) {
                Some(ws::Transmit::Data(data)) => {
                    e.quiet = false;
                    return Some(Transmit::Data { conn, data });
                }
                Some(ws::Transmit::Close) => {
                    if let Some(old) = e.deadline {
                        self.timers.remove(&(old, conn));
                    }
                    self.conns.remove(&conn);
                    self.active.swap_remove_back(i);
                    return Some(Transmit::Close { conn });
                }
                None if e.quiet => {
                    self.settle(conn);
                    self.active.swap_remove_back(i);
                }
                None => i += 1,
            }
        }
        None
    }

    fn poll_event(&mut self, now: Instant) -> Option<WsEvent> {
        for &conn in &self.active {
            if let Some(e) = self.conns.get_mut(&conn) {
                if e.blocked_until.is_some() {
                    continue;
                }
                match e.ws.poll_event(now) {
                    Some(event) => {
                        e.quiet = false;
                        return Some(WsEvent { conn, event });
                    }
                    None => e.quiet = true,
                }
            }
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }
}

impl ConnMachine for WsServer {
    fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        if let Some(e) = self.conns.get_mut(&conn) {
            e.ws.handle_input(now, bytes);
            self.touch(conn);
        }
    }

    fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        if let Some(e) = self.conns.get_mut(&conn) {
            // The socket is gone: nothing more will be written to it.
            e.blocked_until = None;
            e.held.clear();
            e.ws.handle_eof(now);
            self.touch(conn);
        }
    }

    fn handle_write_blocked(&mut self, now: Instant, conn: ConnId, unwritten: Bytes) {
        if let Some(e) = self.conns.get_mut(&conn) {
            e.held.push_back(unwritten);
            if e.blocked_until.is_none() {
                e.blocked_until = Some(later(now, Self::SEND_TIMEOUT));
                e.quiet = false;
                if !e.active {
                    // `poll_transmit` settles it, arming the timeout.
                    e.active = true;
                    self.active.push_back(conn);
                }
            }
        }
    }

    fn handle_writable(&mut self, _now: Instant, conn: ConnId) {
        if let Some(e) = self.conns.get_mut(&conn) {
            if e.blocked_until.take().is_some() {
                self.touch(conn);
            }
        }
    }
}

/// `now + d`, or `now` if that overflows.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

impl ServerMachine for WsServer {
    fn accept(&mut self, _now: Instant, _peer: Option<SocketAddr>) -> ConnId {
        self.next += 1;
        let conn = ConnId(self.next);
        self.conns.insert(
            conn,
            Entry {
                ws: Connection::server(self.config),
                held: VecDeque::new(),
                blocked_until: None,
                active: false,
                quiet: false,
                deadline: None,
            },
        );
        conn
    }
}

impl Shutdown for WsServer {
    fn shutdown(&mut self, now: Instant) {
        let all: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in all {
            if let Some(e) = self.conns.get_mut(&conn) {
                let _ =
                    e.ws.close(now, CloseCode::GOING_AWAY, "server shutting down");
            }
            self.touch(conn);
        }
    }

    fn is_idle(&self) -> bool {
        self.conns.is_empty()
    }
}
