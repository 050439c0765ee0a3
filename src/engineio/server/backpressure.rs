//! Backpressure: connections whose sockets are full, the bound on what
//! waits for a session's peer, and connections dropped at once.
//!
//! # Theory of operation
//!
//! A driver gives back what it could not write (`handle_write_blocked`);
//! from then on the connection is *blocked*, and `held` (a
//! [`Backlog`](crate::machine::Backlog)) keeps each of its transmits as it
//! comes to the front of the queue. A blocked WebSocket keeps its new
//! output in its own send queue (it is not drained) and nothing more of its
//! input is decoded; a blocked HTTP connection reads no pipelined request.
//! On `handle_writable` the held transmits go back to the front of the
//! queue and decoding resumes.
//!
//! A session's bound ([`Config::max_send_queue`](crate::engineio::Config::max_send_queue))
//! counts its polling buffer, or its WebSocket's send queue with what is
//! held for that connection. A send that would cross it drops the session
//! at once (`drop_session`): no close handshake, nothing more written, the
//! connection closed (`abort_conn`), and the application hears `send queue
//! full`. A connection still blocked at its deadline (`send_timeout`) is
//! dropped the same way (`send timeout`), and so is one fed more input
//! while blocked than its bound (the driver should have stopped reading).

use std::time::Instant;

use bytes::Bytes;

use super::{ConnKind, Server, Target, session::Transport};
use crate::{
    engineio::{CloseReason, ConnId, Event, Sid, Transmit},
    machine::later,
};

impl Server {
    /// The socket of `conn` is full: the driver could not write
    /// `unwritten`, the rest of a transmit it took, and gives it back (see
    /// [`machine`](crate::machine), "Backpressure"). Until
    /// [`handle_writable`](Self::handle_writable), nothing more comes out
    /// for `conn` but a [`Transmit::Close`] (drop it, unwritten bytes and
    /// all), and none of its input is decoded; the driver reads nothing
    /// from it. What waits counts against the session's
    /// [`max_send_queue`](crate::engineio::Config::max_send_queue); a
    /// connection still blocked after
    /// [`send_timeout`](crate::engineio::Config::send_timeout) is dropped.
    pub fn handle_write_blocked(&mut self, now: Instant, conn: ConnId, unwritten: Bytes) {
        let deadline = later(now, self.config.send_timeout);
        if self.held.block(conn, unwritten, deadline) {
            self.schedule(Target::Blocked(conn));
        }
    }

    /// The socket of `conn` takes bytes again: what was held for it comes
    /// out first at the next [`poll_transmit`](Self::poll_transmit), and
    /// its input is decoded again.
    pub fn handle_writable(&mut self, now: Instant, conn: ConnId) {
        let Some(queue) = self.held.release(conn) else {
            return;
        };
        for t in queue.into_iter().rev() {
            self.transmits.push_front(t);
        }
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(ConnKind::Ws(_)) => self.after_ws(now, conn),
            Some(ConnKind::Http(_)) => self.resume.push(conn),
            _ => {}
        }
        self.resume_http(now);
    }

    /// Counts `n` bytes of input for a blocked `conn`; false if that is
    /// more than it may keep undecoded (it has been dropped).
    pub(super) fn keep_blocked_input(&mut self, conn: ConnId, n: usize) -> bool {
        let max = self.config.max_send_queue.max(self.config.max_payload);
        let Some(h) = self.held.get_mut(conn) else {
            return true;
        };
        h.input = h.input.saturating_add(n);
        if h.input > max {
            self.abort_conn(conn, CloseReason::TransportError);
            return false;
        }
        true
    }

    /// A blocked connection's timer fired: dropped if it has been blocked
    /// since its deadline, else the timer waits for the present deadline.
    pub(super) fn blocked_timeout(&mut self, now: Instant, conn: ConnId) {
        match self.held.get(conn) {
            Some(h) if h.deadline <= now => self.abort_conn(conn, CloseReason::SendTimeout),
            Some(_) => self.schedule(Target::Blocked(conn)),
            None => {}
        }
    }

    /// Drops `conn` at once: what waits for it is discarded and the driver
    /// closes it. A session it carried ends with `reason`; a probe it was
    /// is abandoned.
    pub(super) fn abort_conn(&mut self, conn: ConnId, reason: CloseReason) {
        let was_held = self.held.remove(conn);
        let queued = self.transmits.len();
        self.transmits.retain(|t| t.conn() != conn);
        let had_queued = self.transmits.len() != queued;
        let removed = self.conns.remove(&conn);
        let polled = self.polls.remove(&conn);
        let sid = match removed.as_ref().map(|c| &c.kind) {
            Some(ConnKind::Ws(w)) => w.sid,
            _ => polled,
        };
        if let Some(sid) = sid {
            self.lose_transport(sid, conn, reason);
        }
        if removed.is_some() || was_held || had_queued {
            self.transmits.push_back(Transmit::Close { conn });
        }
    }

    /// Connection `conn` of session `sid` is gone: the session ends if it
    /// was its transport (or its held poll); an upgrade it was probing is
    /// abandoned.
    fn lose_transport(&mut self, sid: Sid, conn: ConnId, reason: CloseReason) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let carried = match s.transport {
            Transport::WebSocket(c) => c == conn,
            Transport::Polling { get } => get == Some(conn),
        };
        if carried {
            if let Transport::Polling { get } = &mut s.transport {
                *get = None;
            }
            self.drop_session(sid, reason);
        } else if s.upgrade.as_ref().is_some_and(|u| u.conn == conn) {
            s.upgrade = None;
            self.schedule(Target::Session(sid));
        }
    }

    /// The session crossed its bound: it ends now.
    pub(super) fn overflow(&mut self, sid: Sid) {
        self.drop_session(sid, CloseReason::SendQueueFull);
    }

    /// Ends a session at once, without a close handshake or a last
    /// packet: its connections are dropped (a peer that cannot read would
    /// not get them), and the application hears `reason`.
    pub(super) fn drop_session(&mut self, sid: Sid, reason: CloseReason) {
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        match s.transport {
            Transport::WebSocket(c) | Transport::Polling { get: Some(c) } => {
                self.abort_conn(c, reason)
            }
            Transport::Polling { get: None } => {}
        }
        if let Some(u) = s.upgrade {
            self.abort_conn(u.conn, reason);
        }
        self.events.push_back(Event::Close { sid, reason });
    }
}
