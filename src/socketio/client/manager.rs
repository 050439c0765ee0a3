//! The manager: one engine at a time, its inputs and events, and
//! reconnection.
//!
//! # Theory of operation
//!
//! The client owns at most one current engine, opening or open (`Ready`),
//! and the engines it has let go of while they finish their close
//! handshakes: their transmits still leave, their events are dropped, and
//! they are forgotten once they have closed every connection they opened.
//! Each engine has a generation, which connection ids carry above bit
//! `GEN_SHIFT`, so what the driver reports reaches the engine that asked
//! for the connection, or none.
//!
//! `pump` runs after every input and command: it moves the engines'
//! transmits out, acts on the current engine's events one at a time (each
//! may change which engine is current), and flushes the send buffers, until
//! nothing moves.
//!
//! Reconnection follows socket.io-client's `Manager`: a lost connection
//! (not closed by us, nor by the server's `DISCONNECT`) schedules an
//! attempt after `backoff`; a failed attempt schedules the next, until
//! `reconnection_attempts`; an attempt that opens resets the count.

use std::time::{Duration, Instant};

use super::{super::timer::later, Client, ClientDisconnectReason, ClientEvent, Engine, Ready};
use crate::{
    engineio::{
        self, ClientError, ClientEvent as EngineEvent, ClientTransmit, CloseReason, ConnId,
    },
    entropy::Entropy,
};

/// Bits of a connection id that belong to the engine; the bits above count
/// engines. 2^40 connections per engine is decades of polling.
pub(super) const GEN_SHIFT: u32 = 40;
const INNER_MASK: u64 = (1 << GEN_SHIFT) - 1;

impl Client {
    /// Bytes the server sent on connection `conn` (see
    /// [`engineio::Client::handle_input`]). Unknown connections are
    /// ignored.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        if let Some((e, inner)) = self.route(conn) {
            e.handle_input(now, inner, bytes);
        }
        self.pump(now);
    }

    /// The server closed connection `conn` (see
    /// [`engineio::Client::handle_eof`]).
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        if let Some((e, inner)) = self.route(conn) {
            e.handle_eof(now, inner);
        }
        self.pump(now);
    }

    /// Connection `conn` could not be opened, or broke (see
    /// [`engineio::Client::handle_error`]).
    pub fn handle_error(&mut self, now: Instant, conn: ConnId, error: &str) {
        if let Some((e, inner)) = self.route(conn) {
            e.handle_error(now, inner, error);
        }
        self.pump(now);
    }

    /// The socket of `conn` is full (see
    /// [`engineio::Client::handle_write_blocked`]).
    pub fn handle_write_blocked(&mut self, now: Instant, conn: ConnId, unwritten: bytes::Bytes) {
        // Transmits already moved up from the engine are held here, the
        // engine holds what it has not handed up yet.
        self.held.block(conn, unwritten, now);
        if let Some((e, inner)) = self.route(conn) {
            e.handle_write_blocked(now, inner, bytes::Bytes::new());
        }
        self.pump(now);
    }

    /// The socket of `conn` takes bytes again (see
    /// [`engineio::Client::handle_writable`]).
    pub fn handle_writable(&mut self, now: Instant, conn: ConnId) {
        if let Some(queue) = self.held.release(conn) {
            for t in queue.into_iter().rev() {
                self.transmits.push_front(t);
            }
        }
        if let Some((e, inner)) = self.route(conn) {
            e.handle_writable(now, inner);
        }
        self.pump(now);
    }

    /// Runs every timer that is due. Cheap; early or repeated calls do
    /// nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(e) = &mut self.engine {
            e.client.handle_timeout(now);
        }
        for e in &mut self.closing {
            e.client.handle_timeout(now);
        }
        // Let the engine report what its timers did before ours act.
        self.pump(now);
        if self.open_deadline.is_some_and(|d| d <= now) && self.ready == Ready::Opening {
            self.open_deadline = None;
            self.retire_engine(now, true);
            self.on_open_error(now, CloseReason::TransportError, Some(ClientError::Timeout));
        }
        if self.reconnect_at.is_some_and(|d| d <= now) {
            self.reconnect_at = None;
            if !self.skip_reconnect && self.ready == Ready::Closed {
                self.open_engine(now, true);
            }
        }
        self.expire_acks(now);
        self.pump(now);
    }

    pub(super) fn open_engine(&mut self, now: Instant, is_reconnect: bool) {
        if self.engine.is_some() {
            self.retire_engine(now, true);
        }
        let generation = self.next_gen;
        self.next_gen += 1;
        let client = engineio::Client::new(self.config.engine.clone(), self.entropy.fork(), now);
        self.engine = Some(Engine { generation, client });
        self.ready = Ready::Opening;
        self.skip_reconnect = false;
        self.open_is_reconnect = is_reconnect;
        self.open_deadline = Some(later(now, self.config.timeout));
    }

    /// Lets go of the engine: its later events are not heard, its transmits
    /// still leave. With `close`, it is asked to close first.
    pub(super) fn retire_engine(&mut self, now: Instant, close: bool) {
        let Some(mut e) = self.engine.take() else {
            return;
        };
        if close {
            e.client.close(now);
        }
        self.drain_transmits_of(now, &mut e);
        while e.client.poll_event(now).is_some() {}
        self.closing.push(e);
        self.decoder = self.config.parser.decoder(self.config.max_attachments);
    }

    /// The engine (current or closing) a connection belongs to, and the id
    /// it knows it by.
    fn route(&mut self, conn: ConnId) -> Option<(&mut engineio::Client, ConnId)> {
        let generation = conn.0 >> GEN_SHIFT;
        let inner = ConnId(conn.0 & INNER_MASK);
        if let Some(e) = self.engine.as_mut().filter(|e| e.generation == generation) {
            return Some((&mut e.client, inner));
        }
        self.closing
            .iter_mut()
            .find(|e| e.generation == generation)
            .map(|e| (&mut e.client, inner))
    }

    fn drain_transmits_of(&mut self, now: Instant, e: &mut Engine) -> bool {
        let mut moved = false;
        while let Some(t) = e.client.poll_transmit(now) {
            moved = true;
            self.transmits.push_back(outer_transmit(e.generation, t));
        }
        moved
    }

    /// Moves the engines' output along and acts on the current engine's
    /// events, until nothing moves.
    pub(super) fn pump(&mut self, now: Instant) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            if let Some(mut e) = self.engine.take() {
                moved |= self.drain_transmits_of(now, &mut e);
                let ev = e.client.poll_event(now);
                self.engine = Some(e);
                if let Some(ev) = ev {
                    self.on_engine_event(now, ev);
                    continue;
                }
            }
            let mut closing = std::mem::take(&mut self.closing);
            for e in &mut closing {
                moved |= self.drain_transmits_of(now, e);
                while e.client.poll_event(now).is_some() {}
            }
            closing.retain(|e| !e.client.is_finished());
            closing.append(&mut self.closing);
            self.closing = closing;
            moved |= self.flush_send_buffers(now);
            if !moved {
                return;
            }
        }
    }

    fn on_engine_event(&mut self, now: Instant, ev: EngineEvent) {
        match ev {
            EngineEvent::Open { .. } => self.on_open(now),
            EngineEvent::Message(data) => self.on_data(now, data),
            EngineEvent::Upgrade | EngineEvent::UpgradeFailed(_) => {}
            EngineEvent::Close { reason, error } => {
                self.retire_engine(now, false);
                match self.ready {
                    Ready::Opening => self.on_open_error(now, reason, error),
                    Ready::Open => self.on_close(now, ClientDisconnectReason::from_engine(reason)),
                    Ready::Closed => {}
                }
            }
        }
    }

    fn on_open(&mut self, now: Instant) {
        self.ready = Ready::Open;
        self.open_deadline = None;
        self.decoder = self.config.parser.decoder(self.config.max_attachments);
        for nsp in self.active_nsps() {
            self.send_connect(now, nsp);
        }
        if std::mem::take(&mut self.open_is_reconnect) {
            let attempt = self.attempts;
            self.reconnecting = false;
            self.attempts = 0;
            self.events.push_back(ClientEvent::Reconnected { attempt });
        }
    }

    /// The engine failed before opening (the engine is already retired).
    fn on_open_error(&mut self, now: Instant, reason: CloseReason, error: Option<ClientError>) {
        self.ready = Ready::Closed;
        self.open_deadline = None;
        if std::mem::take(&mut self.open_is_reconnect) {
            self.reconnecting = false;
            self.events.push_back(ClientEvent::ReconnectError {
                attempt: self.attempts,
                reason,
                error,
            });
            self.reconnect(now);
        } else {
            self.events
                .push_back(ClientEvent::OpenError { reason, error });
            if !self.reconnecting && self.config.reconnection && self.attempts == 0 {
                self.reconnect(now);
            }
        }
    }

    /// The open connection ended (the engine is already retired).
    pub(super) fn on_close(&mut self, now: Instant, reason: ClientDisconnectReason) {
        self.ready = Ready::Closed;
        self.attempts = 0;
        for nsp in self.active_nsps() {
            self.socket_closed(nsp, reason);
        }
        if self.config.reconnection && !self.skip_reconnect {
            self.reconnect(now);
        }
    }

    fn reconnect(&mut self, now: Instant) {
        if self.reconnecting || self.skip_reconnect {
            return;
        }
        if self
            .config
            .reconnection_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            self.attempts = 0;
            self.reconnecting = false;
            self.events.push_back(ClientEvent::ReconnectFailed);
            return;
        }
        let delay = self.backoff();
        self.reconnecting = true;
        self.reconnect_at = Some(later(now, delay));
        self.events.push_back(ClientEvent::Reconnecting {
            attempt: self.attempts,
            delay,
        });
    }

    /// The delay of the next attempt (socket.io-client's `Backoff`): the
    /// base doubled per attempt, moved by up to `randomization_factor` of
    /// itself, then capped.
    fn backoff(&mut self) -> Duration {
        let min = self.config.reconnection_delay.as_secs_f64() * 1000.0;
        let max = self.config.reconnection_delay_max.as_secs_f64() * 1000.0;
        // Past 2^62 the cap has long been reached; stay finite.
        let exp = i32::try_from(self.attempts.min(62)).unwrap_or(62);
        self.attempts = self.attempts.saturating_add(1);
        let mut ms = min * 2f64.powi(exp);
        let factor = self.config.randomization_factor;
        if factor > 0.0 && factor <= 1.0 {
            let r = self.jitter.next_u64();
            // 53 random bits as a fraction in [0, 1); one more bit for the
            // direction.
            let rand = (r >> 11) as f64 / (1u64 << 53) as f64;
            let deviation = (rand * factor * ms).floor();
            ms = if r & 1 == 0 {
                ms - deviation
            } else {
                ms + deviation
            };
        }
        let ms = ms.min(max).max(0.0);
        if ms.is_finite() {
            Duration::from_millis(ms as u64)
        } else {
            self.config.reconnection_delay_max
        }
    }

    /// Closes for good: no reconnection, the engine closes.
    pub(super) fn shutdown(&mut self, now: Instant) {
        self.skip_reconnect = true;
        self.reconnecting = false;
        self.reconnect_at = None;
        self.open_is_reconnect = false;
        self.open_deadline = None;
        self.attempts = 0;
        if self.engine.is_some() {
            self.retire_engine(now, true);
        }
        if self.ready == Ready::Open {
            // Sockets still active (none when called from `leave`) hear it.
            for nsp in self.active_nsps() {
                self.socket_closed(nsp, ClientDisconnectReason::IoClientDisconnect);
            }
        }
        self.ready = Ready::Closed;
    }
}

fn outer_id(generation: u64, conn: ConnId) -> ConnId {
    ConnId((generation << GEN_SHIFT) | (conn.0 & INNER_MASK))
}

fn outer_transmit(generation: u64, t: ClientTransmit) -> ClientTransmit {
    match t {
        ClientTransmit::Connect { conn } => ClientTransmit::Connect {
            conn: outer_id(generation, conn),
        },
        ClientTransmit::Data { conn, data } => ClientTransmit::Data {
            conn: outer_id(generation, conn),
            data,
        },
        ClientTransmit::Close { conn } => ClientTransmit::Close {
            conn: outer_id(generation, conn),
        },
    }
}
