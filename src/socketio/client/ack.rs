//! Acknowledgements: emits that wait for the server's answer, and the
//! client's answers to the server's.
//!
//! # Theory of operation
//!
//! Ack ids count per socket. An emit with an ack is registered before it
//! is sent (sending may end the connection at once, and the ack must then
//! be reported lost like the others) and ends in exactly one of
//! [`ClientEvent::Ack`], [`ClientEvent::AckTimeout`] (its deadline passed;
//! if it was still buffered, it is never sent) or [`ClientEvent::AckLost`]
//! (the socket disconnected after it was sent, or the send buffer holding
//! it was cleared).

use std::{
    cmp::Reverse,
    time::{Duration, Instant},
};

#[cfg(doc)]
use super::ClientEvent;
use super::{
    super::{Packet, Value},
    Client, ClientUsageError, NspId, Ready, later,
    send_buffer::check_event_name,
};

impl Client {
    /// Emits an event whose answer comes as [`ClientEvent::Ack`] with the
    /// returned id; or [`ClientEvent::AckTimeout`] once `timeout` passes
    /// (none: wait for ever), or [`ClientEvent::AckLost`] if the socket
    /// disconnects after sending it.
    pub fn emit_with_ack(
        &mut self,
        now: Instant,
        nsp: NspId,
        name: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<u64, ClientUsageError> {
        check_event_name(name)?;
        let deadline = timeout.map(|t| later(now, t));
        let n = self
            .nsps
            .get_mut(nsp.0 as usize)
            .ok_or(ClientUsageError::UnknownNsp(nsp))?;
        let id = n.next_ack;
        // Registered first: sending may end the connection at once, and
        // the ack must then be reported lost like the others.
        n.acks.insert(id, deadline);
        if let Err(e) = self.emit_packet(now, nsp, name, args, Some(id)) {
            if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
                n.acks.remove(&id);
            }
            return Err(e);
        }
        if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
            n.next_ack += 1;
        }
        if let Some(d) = deadline {
            self.ack_timers.push(Reverse((d, nsp, id)));
        }
        Ok(id)
    }

    /// Answers an event that asked for it ([`ClientEvent::Event`]'s `ack`).
    pub fn ack(
        &mut self,
        now: Instant,
        nsp: NspId,
        id: u64,
        args: Vec<Value>,
    ) -> Result<(), ClientUsageError> {
        let n = self.get(nsp).ok_or(ClientUsageError::UnknownNsp(nsp))?;
        if !n.connected() || self.ready != Ready::Open {
            return Err(ClientUsageError::NotConnected);
        }
        let packet = Packet::Ack {
            nsp: n.name.clone().into(),
            id,
            args,
        };
        if !self.write_packet(now, &packet) {
            return Err(ClientUsageError::BufferFull);
        }
        self.pump(now);
        Ok(())
    }
}
