//! The engine glue: the inputs, which are the Engine.IO server's, and what
//! the engine's events become.
//!
//! # Theory of operation
//!
//! Every input goes to the engine first; `pump` then turns what the engine
//! reports into Socket.IO. An opened session becomes a client with a
//! connect deadline; a message is decoded (a binary packet waits for its
//! attachments) and dispatched to the socket of its namespace; a closed
//! session removes its sockets with the engine's reason. Anything
//! malformed, or addressed to a namespace the client has not joined,
//! closes the whole client (`forced close`), as the official server does.
//! Requests for other paths come out as [`Event::Request`].

use std::{net::SocketAddr, sync::Arc, time::Instant};

use bytes::Bytes;

use super::{
    super::{DisconnectReason, Event, Packet, UsageError, Value, timer::later},
    Client, Server, Timer,
};
use crate::{
    engineio::{self, ConnId, Data, Sid},
    http::{RequestHead, ResponseHead},
};

impl Server {
    /// Registers a new TCP connection.
    pub fn accept(&mut self, now: Instant, peer: Option<SocketAddr>) -> ConnId {
        self.engine().accept(now, peer)
    }

    /// Feeds bytes read from a connection.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.engine().handle_input(now, conn, bytes);
        self.pump(now);
    }

    /// The peer closed a connection.
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        self.engine().handle_eof(now, conn);
        self.pump(now);
    }

    /// The socket of `conn` is full: see
    /// [`engineio::Server::handle_write_blocked`].
    pub fn handle_write_blocked(&mut self, now: Instant, conn: ConnId, unwritten: Bytes) {
        self.engine().handle_write_blocked(now, conn, unwritten);
        self.pump(now);
    }

    /// The socket of `conn` takes bytes again: see
    /// [`engineio::Server::handle_writable`].
    pub fn handle_writable(&mut self, now: Instant, conn: ConnId) {
        self.engine().handle_writable(now, conn);
        self.pump(now);
    }

    /// A request parsed by an embedding HTTP server (see
    /// [`engineio::Server::handle_request`]).
    pub fn handle_request(
        &mut self,
        now: Instant,
        head: RequestHead,
        body: Bytes,
        peer: Option<SocketAddr>,
    ) -> ConnId {
        let id = self.engine().handle_request(now, head, body, peer);
        self.pump(now);
        id
    }

    /// An upgrade request parsed by an embedding HTTP server (see
    /// [`engineio::Server::handle_upgrade`]).
    pub fn handle_upgrade(
        &mut self,
        now: Instant,
        head: RequestHead,
        peer: Option<SocketAddr>,
    ) -> Result<(ConnId, ResponseHead), (ResponseHead, Bytes)> {
        let r = self.engine().handle_upgrade(now, head, peer);
        self.pump(now);
        r
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.engine().handle_timeout(now);
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Connect(sid) => {
                    let due = self
                        .clients
                        .get(&sid)
                        .is_some_and(|c| c.connect_deadline == Some(at));
                    if due {
                        self.close_client(now, sid, DisconnectReason::ForcedServerClose);
                    }
                }
                Timer::Ack(socket, id) => {
                    let due = self
                        .sockets
                        .get_mut(&socket)
                        .is_some_and(|s| s.acks.expire(id, at));
                    if due {
                        self.events.push_back(Event::AckTimeout { socket, id });
                    }
                }
                Timer::Request(id) => self.expire_request(&id, at),
                Timer::Sessions => {
                    if let Some(r) = self.recovery.as_mut() {
                        r.expire(now);
                    }
                }
            }
        }
        self.pump(now);
    }

    /// Detaches a raw connection whose request was handed out as
    /// [`Event::Request`] (see [`engineio::Server::release`]).
    pub fn release(&mut self, conn: ConnId) -> Option<Bytes> {
        self.engine().release(conn)
    }

    /// Answers an [`Event::Request`].
    pub fn respond(
        &mut self,
        now: Instant,
        conn: ConnId,
        head: ResponseHead,
        body: Bytes,
    ) -> Result<(), UsageError> {
        self.engine().respond(now, conn, head, body)?;
        self.pump(now);
        Ok(())
    }

    /// Translates what the engine produced until it is quiet; whether it
    /// produced anything.
    pub(super) fn pump(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(ev) = self.engine.poll_event(now) {
            any = true;
            match ev {
                engineio::Event::Open { sid, handshake } => {
                    let deadline = later(now, self.config.connect_timeout);
                    self.clients.insert(
                        sid,
                        Client {
                            decoder: self.config.parser.decoder(self.config.max_attachments),
                            sockets: Vec::new(),
                            connect_deadline: Some(deadline),
                            handshake: Arc::from(handshake),
                            closing: false,
                        },
                    );
                    self.timers.push(deadline, Timer::Connect(sid));
                }
                engineio::Event::Message { sid, data } => self.on_message(now, sid, data),
                engineio::Event::Close { sid, reason } => {
                    self.forget_client(now, sid, DisconnectReason::from_engine(reason));
                }
                engineio::Event::Upgrade { .. } => {}
                engineio::Event::Request { conn, head, body } => {
                    self.events.push_back(Event::Request { conn, head, body })
                }
            }
        }
        any
    }

    fn on_message(&mut self, now: Instant, sid: Sid, data: Data) {
        let Some(c) = self.clients.get_mut(&sid) else {
            return;
        };
        match c.decoder.decode(data) {
            Ok(None) => {}
            Ok(Some(packet)) => self.on_packet(now, sid, packet),
            // The official server closes the connection for a packet it
            // cannot decode, and its sockets report "forced close".
            Err(_) => self.close_client(now, sid, DisconnectReason::ForcedClose),
        }
    }

    fn on_packet(&mut self, now: Instant, sid: Sid, packet: Packet) {
        let Some(c) = self.clients.get(&sid).filter(|c| !c.closing) else {
            return;
        };
        let socket = c
            .sockets
            .iter()
            .find(|(n, _)| **n == *packet.nsp())
            .map(|(_, id)| *id);
        let connected = socket.is_some_and(|id| self.sockets.get(&id).is_some_and(|s| s.connected));
        match packet {
            Packet::Connect { nsp, data } if socket.is_none() => {
                self.connect(
                    now,
                    sid,
                    nsp.into_owned(),
                    data.unwrap_or_else(|| Value::Object(Vec::new())),
                );
            }
            Packet::Connect { .. } => self.invalid_state(now, sid),
            Packet::Event { name, args, id, .. } if connected => {
                if let Some(socket) = socket {
                    self.incoming_event(now, socket, name, args, id);
                }
            }
            Packet::Ack { id, args, .. } if connected => {
                if let Some(socket) = socket {
                    self.on_ack(socket, id, args);
                }
            }
            Packet::Disconnect { .. } if connected => {
                if let Some(socket) = socket {
                    self.remove_socket(now, socket, DisconnectReason::ClientNamespaceDisconnect);
                }
            }
            // A client's CONNECT_ERROR, or a packet for a namespace the
            // client has not joined: the official "invalid state".
            _ => self.close_client(now, sid, DisconnectReason::ForcedServerClose),
        }
    }
}
