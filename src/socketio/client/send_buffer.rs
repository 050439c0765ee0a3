//! Emits, and the send buffer of emits that cannot leave yet.
//!
//! # Theory of operation
//!
//! An emit on a connected socket goes straight to the engine when nothing
//! waits before it and the engine takes the packet and its attachments (all
//! or nothing). Otherwise it waits in the socket's send buffer (at most
//! `max_send_buffer`; refused instead when `send_buffer` is off and the
//! socket is not connected), which `pump` sends in order whenever the
//! socket is connected and the engine has room. Volatile emits never wait.

use std::time::Instant;

#[cfg(doc)]
use super::ClientConfig;
use super::{
    super::{Packet, Value, packet::check_event_name},
    Client, ClientEvent, ClientUsageError, NspId, Ready,
};

impl Client {
    /// Emits an event. On a socket that is not connected it waits in the
    /// send buffer (see [`ClientConfig::send_buffer`]).
    pub fn emit(
        &mut self,
        now: Instant,
        nsp: NspId,
        name: &str,
        args: Vec<Value>,
    ) -> Result<(), ClientUsageError> {
        self.emit_packet(now, nsp, name, args, None, true)
    }

    /// [`emit`](Self::emit), saying whether the packet may be compressed
    /// (the official `socket.compress(false).emit(..)`): with `false` it
    /// goes uncompressed on a WebSocket with permessage-deflate whatever
    /// its size (attachments too), waiting in the send buffer with that
    /// choice if it must; on polling it changes nothing, as in the
    /// official client.
    pub fn emit_compressed(
        &mut self,
        now: Instant,
        nsp: NspId,
        name: &str,
        args: Vec<Value>,
        compress: bool,
    ) -> Result<(), ClientUsageError> {
        self.emit_packet(now, nsp, name, args, None, compress)
    }

    /// Emits an event only if it can leave at once: the socket is
    /// connected and the transport is not busy (the official `volatile`
    /// flag). `Ok(false)` when it was dropped.
    pub fn emit_volatile(
        &mut self,
        now: Instant,
        nsp: NspId,
        name: &str,
        args: Vec<Value>,
    ) -> Result<bool, ClientUsageError> {
        check_event_name(name, ClientUsageError::ReservedEvent)?;
        let n = self.get(nsp).ok_or(ClientUsageError::UnknownNsp(nsp))?;
        let writable = self.ready == Ready::Open
            && n.connected()
            && n.send_buffer.is_empty()
            && self
                .engine()
                .is_some_and(|e| e.buffered_packets() == 0 && e.transport().is_some());
        if !writable {
            return Ok(false);
        }
        let packet = Packet::Event {
            nsp: n.name.clone().into(),
            id: None,
            name: name.to_owned(),
            args,
        };
        let sent = self.write_packet(now, &packet, true);
        self.pump(now);
        Ok(sent)
    }

    /// Drops what waits in a socket's send buffer (the official
    /// `socket.sendBuffer = []`); acks among them end with
    /// [`ClientEvent::AckLost`]. Returns how many were dropped.
    pub fn clear_send_buffer(&mut self, nsp: NspId) -> usize {
        let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
            return 0;
        };
        let dropped: Vec<(Packet, bool)> = n.send_buffer.drain(..).collect();
        for (p, _) in &dropped {
            if let Packet::Event { id: Some(id), .. } = p {
                if n.acks.remove(*id) {
                    self.events.push_back(ClientEvent::AckLost { nsp, id: *id });
                }
            }
        }
        dropped.len()
    }

    pub(super) fn emit_packet(
        &mut self,
        now: Instant,
        nsp: NspId,
        name: &str,
        args: Vec<Value>,
        id: Option<u64>,
        compress: bool,
    ) -> Result<(), ClientUsageError> {
        check_event_name(name, ClientUsageError::ReservedEvent)?;
        let n = self.get(nsp).ok_or(ClientUsageError::UnknownNsp(nsp))?;
        let packet = Packet::Event {
            nsp: n.name.clone().into(),
            id,
            name: name.to_owned(),
            args,
        };
        let connected = n.connected() && self.ready == Ready::Open;
        if connected && n.send_buffer.is_empty() && self.write_packet(now, &packet, compress) {
            self.pump(now);
            return Ok(());
        }
        // On a connected socket the buffer only holds what the engine could
        // not take yet; it leaves as soon as it can.
        if !connected && !self.config.send_buffer {
            return Err(ClientUsageError::NotConnected);
        }
        let max = self.config.max_send_buffer;
        let n = self
            .nsps
            .get_mut(nsp.0 as usize)
            .ok_or(ClientUsageError::UnknownNsp(nsp))?;
        if n.send_buffer.len() >= max {
            return Err(ClientUsageError::BufferFull);
        }
        n.send_buffer.push_back((packet, compress));
        Ok(())
    }

    /// Writes a packet (its messages, as the parser encodes it) to the
    /// open engine, all or nothing, compressed if they may be: false if the
    /// engine cannot take them now.
    pub(super) fn write_packet(&mut self, now: Instant, packet: &Packet, compress: bool) -> bool {
        let Some(e) = self.engine.as_mut().filter(|_| self.ready == Ready::Open) else {
            return false;
        };
        let messages = self.config.parser.encode(packet).into_messages();
        let room = e
            .client
            .config()
            .max_buffered_packets
            .saturating_sub(e.client.buffered_packets());
        if room < messages.len() {
            return false;
        }
        let mut messages = messages.into_iter();
        // The first is refused (a text holding the polling separator, a
        // closing engine) or none is.
        if let Some(first) = messages.next() {
            if e.client.send_compressed(now, first, compress).is_err() {
                return false;
            }
        }
        for m in messages {
            let _ = e.client.send_compressed(now, m, compress);
        }
        true
    }

    /// Sends what waits in the send buffers of connected sockets, as far as
    /// the engine takes it.
    pub(super) fn flush_send_buffers(&mut self, now: Instant) -> bool {
        if self.ready != Ready::Open {
            return false;
        }
        let mut moved = false;
        for i in 0..self.nsps.len() {
            moved |= self.flush_send_buffer(now, NspId(i as u32));
        }
        moved
    }

    pub(super) fn flush_send_buffer(&mut self, now: Instant, nsp: NspId) -> bool {
        let mut moved = false;
        loop {
            let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
                return moved;
            };
            if !n.connected() {
                return moved;
            }
            let Some((p, compress)) = n.send_buffer.pop_front() else {
                return moved;
            };
            if !self.write_packet(now, &p, compress) {
                if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
                    n.send_buffer.push_front((p, compress));
                }
                return moved;
            }
            moved = true;
        }
    }
}
