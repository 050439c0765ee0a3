//! Emits and broadcasts.
//!
//! # Theory of operation
//!
//! Every packet is encoded from borrowed parts (namespace, ack id, the
//! caller's name and arguments) by the server's [`Parser`]. An emit to one
//! socket with the default parser is encoded into one reused buffer, and
//! the engine copies it into the WebSocket frame: nothing is allocated per
//! emit.
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
//! [`Server::poll_cluster`]; one from another node comes in through
//! [`Server::handle_cluster`], and is delivered here and never handed on
//! again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    super::{
        Packet, SocketId, UsageError, Value,
        msgpack::Reused,
        packet::{Body, check_event_name},
    },
    PendingBroadcast, Server,
    cluster::{ClusterAnswer, ClusterMessage, RequestId, RequestKind, Selection},
};
use crate::engineio::{SharedPacket, Sid};

#[cfg(doc)]
use super::super::Parser;

/// The largest encoding buffer kept for the next packet.
const SCRATCH_KEPT: usize = 16 * 1024;

impl Server {
    /// Emits an event to one socket.
    pub fn emit(
        &mut self,
        socket: SocketId,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), UsageError> {
        self.emit_compressed(socket, event, args, true)
    }

    /// [`emit`](Self::emit), saying whether the packet may be compressed
    /// (the official `socket.compress(false).emit(..)`): with `false` it
    /// goes uncompressed on a WebSocket with permessage-deflate, and does
    /// not by itself make a long-polling response compressed (see
    /// [`engineio::Server::send_text_compressed`](crate::engineio::Server::send_text_compressed)).
    pub fn emit_compressed(
        &mut self,
        socket: SocketId,
        event: &str,
        args: Vec<Value>,
        compress: bool,
    ) -> Result<(), UsageError> {
        check_event_name(event, UsageError::ReservedEvent)?;
        let s = self.connected(socket)?;
        let (sid, nsp) = (s.sid, s.nsp.clone());
        let mut args = args;
        let kept = match self.recovery.is_some() {
            true => {
                let target = vec![socket.as_str().to_owned()];
                Some(self.encode_kept(&nsp, event, &mut args, target, Vec::new()))
            }
            false => None,
        };
        self.notify_outgoing(&[socket], event, &args);
        match kept {
            Some(shared) => Ok(self
                .engine()
                .send_shared_all(sid, &compress_all(shared, compress))?),
            None => {
                self.send_body_compressed(sid, 2, &nsp, None, Body::Event(event, &args), compress)
            }
        }
    }

    /// Encodes an event, and, with recovery on, gives it its offset as the
    /// last argument (left in `args`) and keeps it with its target (see
    /// `recovery.rs`).
    pub(super) fn encode_kept(
        &mut self,
        nsp: &str,
        name: &str,
        args: &mut Vec<Value>,
        rooms: Vec<String>,
        except: Vec<String>,
    ) -> Vec<SharedPacket> {
        let parser = self.config.parser;
        let Some(store) = self.recovery.as_mut() else {
            return parser.encode_shared(2, nsp, None, Body::Event(name, args));
        };
        args.push(Value::String(store.next_offset()));
        let shared = parser.encode_shared(2, nsp, None, Body::Event(name, args));
        store.keep(Arc::from(nsp), rooms, except, shared.clone());
        shared
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
            compress: true,
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

    /// Another node's broadcast, delivered here; with an acknowledgement
    /// request, the client count goes back at once and each client's
    /// answer as it comes (until the sender's timeout). Returns how many
    /// sockets it is addressed to.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn remote_broadcast(
        &mut self,
        now: Instant,
        nsp: &str,
        to: &Selection,
        volatile: bool,
        compress: bool,
        name: &str,
        args: Vec<Value>,
        ack: Option<(RequestId, Duration)>,
    ) -> usize {
        if check_event_name(name, |_| ()).is_err() {
            return 0;
        }
        let Some((request, timeout)) = ack else {
            let mut args = args;
            let shared = if volatile || self.recovery.is_none() {
                self.config
                    .parser
                    .encode_shared(2, nsp, None, Body::Event(name, &args))
            } else {
                self.encode_kept(nsp, name, &mut args, to.rooms.clone(), to.except.clone())
            };
            let shared = compress_all(shared, compress);
            let mut ids = Vec::new();
            let watch = (!self.outgoing.is_empty()).then_some(&mut ids);
            let n = self.deliver(nsp, &to.rooms, &to.except, None, volatile, shared, watch);
            self.notify_outgoing(&ids, name, &args);
            return n;
        };
        // A request of our own coming back, or an id already in use.
        if self.requests.contains_key(&request) {
            return 0;
        }
        let Some(ack_id) = self.next_ack_id(nsp) else {
            return 0;
        };
        let shared = compress_all(
            self.config
                .parser
                .encode_shared(2, nsp, Some(ack_id), Body::Event(name, &args)),
            compress,
        );
        let mut recipients = Vec::new();
        let n = self.deliver(
            nsp,
            &to.rooms,
            &to.except,
            None,
            volatile,
            shared,
            Some(&mut recipients),
        );
        self.register_group_acks(&recipients, ack_id, &request);
        self.notify_outgoing(&recipients, name, &args);
        self.cluster_out.push_back(ClusterMessage::Response {
            nsp: nsp.to_owned(),
            request: request.clone(),
            answer: ClusterAnswer::ClientCount(n),
        });
        self.open_request(
            now,
            request,
            nsp,
            timeout,
            false,
            RequestKind::Remote { ack_id, recipients },
        );
        n
    }

    /// Encodes a packet from borrowed parts with the server's parser and
    /// sends it; the default parser's text goes through the reused
    /// `scratch` buffer, and an event without binary leaves is copied from
    /// there into its WebSocket frame, with no allocation of its own.
    pub(super) fn send_body(
        &mut self,
        sid: Sid,
        kind: u8,
        nsp: &str,
        id: Option<u64>,
        body: Body<'_>,
    ) -> Result<(), UsageError> {
        self.send_body_compressed(sid, kind, nsp, id, body, true)
    }

    /// [`send_body`](Self::send_body), compressed or not as the sender
    /// allows.
    fn send_body_compressed(
        &mut self,
        sid: Sid,
        kind: u8,
        nsp: &str,
        id: Option<u64>,
        body: Body<'_>,
        compress: bool,
    ) -> Result<(), UsageError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let sent = match self
            .config
            .parser
            .encode_reusing(kind, nsp, id, body, &mut scratch)
        {
            Reused::Text(text) => self.engine().send_text_compressed(sid, text, compress),
            Reused::Messages(packets) => self.engine().send_all_compressed(sid, &packets, compress),
        };
        // A one-off huge message does not pin its buffer.
        if scratch.capacity() <= SCRATCH_KEPT {
            self.scratch = scratch;
        }
        Ok(sent?)
    }

    pub(super) fn send_to(&mut self, sid: Sid, packet: &Packet) -> Result<(), UsageError> {
        let (kind, nsp, id, body) = packet.parts();
        self.send_body(sid, kind, nsp, id, body)
    }

    /// Addresses an encoded packet to the recipients of a broadcast
    /// (their socket ids go to `ids` when asked for); returns how many
    /// there are. The packet reaches the engine at the next
    /// [`flush_broadcasts`](Self::flush_broadcasts).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver(
        &mut self,
        nsp: &str,
        rooms: &[String],
        except: &[String],
        exclude: Option<SocketId>,
        volatile: bool,
        shared: Vec<SharedPacket>,
        mut ids: Option<&mut Vec<SocketId>>,
    ) -> usize {
        let Some(ns) = self.namespaces.get(nsp) else {
            return 0;
        };
        let engine = &self.engine;
        let mut sids = Vec::new();
        ns.recipients(rooms, except, exclude, |id, sid| {
            if !volatile || engine.is_writable(sid) {
                sids.push(sid);
                if let Some(ids) = ids.as_mut() {
                    ids.push(id);
                }
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

/// Packets marked as the sender allows compression.
pub(super) fn compress_all(shared: Vec<SharedPacket>, compress: bool) -> Vec<SharedPacket> {
    if compress {
        return shared;
    }
    shared.into_iter().map(|p| p.compress(false)).collect()
}

/// A broadcast being built: `server.of("/").to("room").except("x").emit(..)`.
#[derive(Debug)]
pub struct Broadcast<'a> {
    pub(super) server: &'a mut Server,
    pub(super) nsp: String,
    pub(super) rooms: Vec<String>,
    pub(super) except: Vec<String>,
    pub(super) exclude: Option<SocketId>,
    pub(super) volatile: bool,
    pub(super) local: bool,
    pub(super) compress: bool,
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

    /// Only to this node's clients, even in a cluster.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Whether the packets may be compressed (default yes, as the
    /// official `compress(true)`): with `false` they go uncompressed on a
    /// WebSocket with permessage-deflate and do not by themselves make a
    /// long-polling response compressed. Carried to other nodes.
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Emits the event, encoded once; returns how many sockets of this
    /// node it is addressed to (a recipient whose send queue is full
    /// misses it).
    pub fn emit(self, event: &str, args: Vec<Value>) -> Result<usize, UsageError> {
        check_event_name(event, UsageError::ReservedEvent)?;
        let mut args = args;
        let kept = !self.volatile && self.server.recovery.is_some();
        let shared = if kept {
            let except = self.selection().except;
            self.server
                .encode_kept(&self.nsp, event, &mut args, self.rooms.clone(), except)
        } else {
            self.server
                .config
                .parser
                .encode_shared(2, &self.nsp, None, Body::Event(event, &args))
        };
        let shared = compress_all(shared, self.compress);
        let mut ids = Vec::new();
        let watch = (!self.server.outgoing.is_empty()).then_some(&mut ids);
        let count = self.server.deliver(
            &self.nsp,
            &self.rooms,
            &self.except,
            self.exclude,
            self.volatile,
            shared,
            watch,
        );
        self.server.notify_outgoing(&ids, event, &args);
        if kept {
            // Other nodes give it offsets of their own.
            args.pop();
        }
        if self.clustered() {
            let to = self.selection();
            self.server
                .cluster_out
                .push_back(ClusterMessage::Broadcast {
                    nsp: self.nsp,
                    to,
                    volatile: self.volatile,
                    compress: self.compress,
                    name: event.to_owned(),
                    args,
                    ack: None,
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
}
