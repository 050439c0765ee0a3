//! Acknowledgements: emits that wait for the client's answer, and the
//! server's answers to the client's.
//!
//! # Theory of operation
//!
//! An emit with an ack takes the next id of its namespace (ids count per
//! namespace, as in the official server) and is remembered by its socket
//! with its deadline. It ends in exactly one of: the client's `ACK`
//! ([`Event::Ack`]), its deadline passing ([`Event::AckTimeout`]), or the
//! socket going (nothing more is reported). The deadlines share the
//! server's timer heap with the connect timeouts; an entry whose ack has
//! ended is skipped when it comes up.

use std::time::{Duration, Instant};

#[cfg(doc)]
use super::super::Event;
use super::{
    super::{
        SocketId, UsageError, Value,
        packet::{Body, check_event_name},
        timer::later,
    },
    Server, Timer,
};

impl Server {
    /// Emits an event whose answer comes back as [`Event::Ack`] with the
    /// returned id, or [`Event::AckTimeout`] after `timeout`.
    pub fn emit_with_ack(
        &mut self,
        now: Instant,
        socket: SocketId,
        event: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<u64, UsageError> {
        check_event_name(event, UsageError::ReservedEvent)?;
        let s = self.connected(socket)?;
        let (sid, nsp) = (s.sid, s.nsp.clone());
        let ns = self
            .namespaces
            .get_mut(&*nsp)
            .ok_or(UsageError::UnknownSocket(socket))?;
        let id = ns.next_ack;
        self.send_body(sid, 2, &nsp, Some(id), Body::Event(event, &args))?;
        if let Some(ns) = self.namespaces.get_mut(&*nsp) {
            ns.next_ack += 1;
        }
        let deadline = timeout.map(|t| later(now, t));
        if let Some(s) = self.sockets.get_mut(&socket) {
            s.acks.insert(id, deadline);
        }
        if let Some(d) = deadline {
            self.timers.push(d, Timer::Ack(socket, id));
        }
        Ok(id)
    }

    /// Answers an event that asked for it ([`Event::Event`]'s `ack`).
    pub fn ack(&mut self, socket: SocketId, id: u64, args: Vec<Value>) -> Result<(), UsageError> {
        let s = self.connected(socket)?;
        let (sid, nsp) = (s.sid, s.nsp.clone());
        self.send_body(sid, 3, &nsp, Some(id), Body::Args(&args))
    }
}
