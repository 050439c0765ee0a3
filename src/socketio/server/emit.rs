//! Emits and broadcasts.
//!
//! # Theory of operation
//!
//! Every packet is encoded from borrowed parts (namespace, ack id, the
//! caller's name and arguments) by `packet::encode_into`. An emit to one
//! socket is encoded into one reused buffer, and the engine copies it into
//! the WebSocket frame: nothing is allocated per emit.
//!
//! A broadcast (a [`Broadcast`] view: `server.of(nsp).to(room).emit(..)`)
//! is encoded once into [`SharedPacket`]s, and each recipient's transport
//! gets a reference to the same bytes. Its recipients are found at once,
//! but the packets reach the engine only when something next uses it
//! ([`Server::engine`]): a burst of broadcasts to the same sockets is then
//! handed over recipient by recipient, and every socket still gets its
//! packets in the order they were made.
//!
//! In a cluster ([`Config::cluster`](super::super::Config::cluster)), a
//! broadcast not marked `local` is also handed out by
//! [`Server::poll_publish`]; one from another process comes in through
//! [`Server::handle_broadcast`], and is delivered here and never published
//! again.

use std::time::Instant;

use bytes::Bytes;

use super::{
    super::{
        Packet, SocketId, UsageError, Value,
        packet::{self, Body, check_event_name},
    },
    PendingBroadcast, Server,
};
use crate::engineio::{self, SharedPacket, Sid};

/// The largest encoding buffer kept for the next packet.
const SCRATCH_KEPT: usize = 16 * 1024;

/// A broadcast as other processes of a cluster receive it (see
/// [`Server::poll_publish`] and [`Server::handle_broadcast`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastMessage {
    /// The namespace.
    pub nsp: String,
    /// Target rooms; none means the whole namespace.
    pub rooms: Vec<String>,
    /// Rooms excluded.
    pub except: Vec<String>,
    /// Dropped for clients that cannot take it at once.
    pub volatile: bool,
    /// The packet.
    pub packet: Packet,
}

impl Server {
    /// Emits an event to one socket.
    pub fn emit(
        &mut self,
        socket: SocketId,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), UsageError> {
        check_event_name(event, UsageError::ReservedEvent)?;
        let s = self.connected(socket)?;
        let (sid, nsp) = (s.sid, s.nsp.clone());
        self.send_body(sid, 2, &nsp, None, Body::Event(event, &args))
    }

    /// Emits `message` (the official `send`).
    pub fn send(&mut self, socket: SocketId, args: Vec<Value>) -> Result<(), UsageError> {
        self.emit(socket, "message", args)
    }

    /// A broadcast to a namespace: narrow it with `to`, `except`...,
    /// then `emit`.
    pub fn of(&mut self, nsp: &str) -> Broadcast<'_> {
        Broadcast {
            server: self,
            nsp: nsp.to_owned(),
            rooms: Vec::new(),
            except: Vec::new(),
            exclude: None,
            volatile: false,
            local: false,
        }
    }

    /// A broadcast from a socket: its namespace, the socket itself
    /// excluded (the official `socket.broadcast`).
    pub fn broadcast_from(&mut self, socket: SocketId) -> Broadcast<'_> {
        let nsp = self
            .sockets
            .get(&socket)
            .map_or_else(String::new, |s| s.nsp.to_string());
        let mut b = self.of(&nsp);
        b.exclude = Some(socket);
        b
    }

    /// A broadcast published by another process of the cluster: delivered
    /// here, never published again.
    pub fn handle_broadcast(&mut self, now: Instant, msg: BroadcastMessage) {
        let (kind, nsp, id, body) = msg.packet.parts();
        let shared = encode_shared(kind, nsp, id, body);
        let _ = self.deliver(
            &msg.nsp,
            &msg.rooms,
            &msg.except,
            None,
            msg.volatile,
            shared,
        );
        self.pump(now);
    }

    /// Encodes a packet from borrowed parts into the reused `scratch`
    /// buffer and sends it: an event without binary leaves is copied from
    /// there into its WebSocket frame, with no allocation of its own.
    pub(super) fn send_body(
        &mut self,
        sid: Sid,
        kind: u8,
        nsp: &str,
        id: Option<u64>,
        body: Body<'_>,
    ) -> Result<(), UsageError> {
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let mut attachments = Vec::new();
        packet::encode_into(kind, nsp, id, body, &mut text, &mut attachments);
        let sent = if attachments.is_empty() {
            self.engine().send_text(sid, &text)
        } else {
            let packets: Vec<_> = engine_packets(text.as_str().to_owned(), attachments).collect();
            self.engine().send_all(sid, &packets)
        };
        // A one-off huge message does not pin its buffer.
        if text.capacity() <= SCRATCH_KEPT {
            self.scratch = text;
        }
        Ok(sent?)
    }

    pub(super) fn send_to(&mut self, sid: Sid, packet: &Packet) -> Result<(), UsageError> {
        let (kind, nsp, id, body) = packet.parts();
        self.send_body(sid, kind, nsp, id, body)
    }

    /// Addresses an encoded packet to the recipients of a broadcast;
    /// returns how many there are. The packet reaches the engine at the
    /// next [`flush_broadcasts`](Self::flush_broadcasts).
    fn deliver(
        &mut self,
        nsp: &str,
        rooms: &[String],
        except: &[String],
        exclude: Option<SocketId>,
        volatile: bool,
        shared: Vec<SharedPacket>,
    ) -> usize {
        let Some(ns) = self.namespaces.get(nsp) else {
            return 0;
        };
        let engine = &self.engine;
        let mut sids = Vec::new();
        ns.recipients(rooms, except, exclude, |_, sid| {
            if !volatile || engine.is_writable(sid) {
                sids.push(sid);
            }
        });
        let count = sids.len();
        match self.broadcasts.last_mut() {
            // The same recipients as the broadcast before (the common case:
            // a burst of broadcasts to everyone): one batch.
            Some(last) if last.sids == sids => last.shared.extend(shared),
            _ if count > 0 => self.broadcasts.push(PendingBroadcast { sids, shared }),
            _ => {}
        }
        count
    }

    /// Hands the pending broadcasts to the engine, recipient by recipient:
    /// a burst of broadcasts to the same sockets visits each recipient's
    /// session and connection once, not once per broadcast, and leaves in
    /// one write. Called by [`engine`](Self::engine), the way everything
    /// else reaches the engine, so every recipient still gets its packets
    /// in the order they were sent.
    pub(super) fn flush_broadcasts(&mut self) {
        if self.broadcasts.is_empty() {
            return;
        }
        for b in std::mem::take(&mut self.broadcasts) {
            for sid in &b.sids {
                // A recipient whose queue is full misses these packets,
                // as it would one at a time.
                let _ = self.engine.send_shared_all(*sid, &b.shared);
            }
        }
    }
}

/// The Engine.IO messages that carry an encoded packet: its text, then
/// one binary message per attachment.
fn engine_packets(text: String, attachments: Vec<Bytes>) -> impl Iterator<Item = engineio::Packet> {
    std::iter::once(engineio::Packet::message(text))
        .chain(attachments.into_iter().map(engineio::Packet::message))
}

/// Encodes a packet from borrowed parts once, for any number of
/// recipients.
fn encode_shared(kind: u8, nsp: &str, id: Option<u64>, body: Body<'_>) -> Vec<SharedPacket> {
    let mut text = String::new();
    let mut attachments = Vec::new();
    packet::encode_into(kind, nsp, id, body, &mut text, &mut attachments);
    engine_packets(text, attachments)
        .map(SharedPacket::new)
        .collect()
}

/// A broadcast being built: `server.of("/").to("room").except("x").emit(..)`.
#[derive(Debug)]
pub struct Broadcast<'a> {
    server: &'a mut Server,
    nsp: String,
    rooms: Vec<String>,
    except: Vec<String>,
    exclude: Option<SocketId>,
    volatile: bool,
    local: bool,
}

impl Broadcast<'_> {
    /// Only to members of `room` (several calls: any of the rooms). A
    /// socket id names the room of that one socket.
    pub fn to(mut self, room: &str) -> Self {
        self.rooms.push(room.to_owned());
        self
    }

    /// Not to members of `room`.
    pub fn except(mut self, room: &str) -> Self {
        self.except.push(room.to_owned());
        self
    }

    /// Dropped for clients whose transport cannot take it at once.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Only to this process's clients, even in a cluster.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Emits the event, encoded once; returns how many sockets it is
    /// addressed to (a recipient whose send queue is full misses it).
    pub fn emit(self, event: &str, args: Vec<Value>) -> Result<usize, UsageError> {
        check_event_name(event, UsageError::ReservedEvent)?;
        let shared = encode_shared(2, &self.nsp, None, Body::Event(event, &args));
        let count = self.server.deliver(
            &self.nsp,
            &self.rooms,
            &self.except,
            self.exclude,
            self.volatile,
            shared,
        );
        if self.server.config.cluster && !self.local {
            let packet = Packet::Event {
                nsp: self.nsp.clone().into(),
                id: None,
                name: event.to_owned(),
                args,
            };
            self.server.publish.push_back(BroadcastMessage {
                nsp: self.nsp,
                rooms: self.rooms,
                except: self.except,
                volatile: self.volatile,
                packet,
            });
        }
        Ok(count)
    }

    /// The sockets the broadcast would reach (in this process).
    pub fn sockets(self) -> Vec<SocketId> {
        self.targets()
    }

    fn targets(&self) -> Vec<SocketId> {
        let mut targets = Vec::new();
        if let Some(ns) = self.server.namespaces.get(&self.nsp) {
            ns.recipients(&self.rooms, &self.except, self.exclude, |id, _| {
                targets.push(id)
            });
        }
        targets
    }

    /// Disconnects the sockets the broadcast would reach.
    pub fn disconnect(self, now: Instant, close: bool) -> usize {
        let targets = self.targets();
        let n = targets.len();
        for id in targets {
            let _ = self.server.disconnect(now, id, close);
        }
        n
    }
}
