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

use std::time::{Duration, Instant};

use super::{
    super::{Packet, Value, packet::check_event_name, timer::later},
    Client, ClientEvent, ClientUsageError, NspId, Ready,
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
        check_event_name(name, ClientUsageError::ReservedEvent)?;
        let deadline = timeout.map(|t| later(now, t));
        let n = self
            .nsps
            .get_mut(nsp.0 as usize)
            .ok_or(ClientUsageError::UnknownNsp(nsp))?;
        let id = n.next_ack;
        // Registered first: sending may end the connection at once, and
        // the ack must then be reported lost like the others.
        n.acks.insert(id, deadline);
        if let Err(e) = self.emit_packet(now, nsp, name, args, Some(id), true) {
            if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
                n.acks.remove(id);
            }
            return Err(e);
        }
        if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
            n.next_ack += 1;
        }
        if let Some(d) = deadline {
            self.ack_timers.push(d, (nsp, id));
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
        if !self.write_packet(now, &packet, true) {
            return Err(ClientUsageError::BufferFull);
        }
        self.pump(now);
        Ok(())
    }

    /// Ends the acks whose deadline has passed ([`ClientEvent::AckTimeout`]);
    /// one still in the send buffer leaves it, never sent.
    pub(super) fn expire_acks(&mut self, now: Instant) {
        while let Some((at, (nsp, id))) = self.ack_timers.pop_due(now) {
            let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
                continue;
            };
            if n.acks.expire(id, at) {
                n.send_buffer
                    .retain(|(p, _)| !matches!(p, Packet::Event { id: Some(i), .. } if *i == id));
                self.events.push_back(ClientEvent::AckTimeout { nsp, id });
            }
        }
    }

    /// A socket disconnected: its acks that were sent will get no answer
    /// ([`ClientEvent::AckLost`]); those still in its send buffer wait with
    /// it.
    pub(super) fn lose_sent_acks(&mut self, nsp: NspId) {
        let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
            return;
        };
        let buffered: Vec<u64> = n
            .send_buffer
            .iter()
            .filter_map(|(p, _)| match p {
                Packet::Event { id: Some(id), .. } => Some(*id),
                _ => None,
            })
            .collect();
        let lost: Vec<u64> = n.acks.ids().filter(|id| !buffered.contains(id)).collect();
        for id in lost {
            n.acks.remove(id);
            self.events.push_back(ClientEvent::AckLost { nsp, id });
        }
    }
}
