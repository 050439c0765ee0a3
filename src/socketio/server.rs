//! The Socket.IO server machine.
//!
//! # Theory of operation
//!
//! Each Engine.IO session is a *client*; each namespace it joins is a
//! *socket*. A client that joins no namespace within `connect_timeout` is
//! closed. Packets are decoded per client (binary packets wait for their
//! attachments) and dispatched to the socket of their namespace; anything
//! malformed, or addressed to a namespace the client has not joined, closes
//! the whole client, as the official server does, and nobody else notices.
//!
//! Rooms live in their namespace as ordered maps from socket id to the
//! Engine.IO session, so a broadcast walks its recipients in a fixed order
//! (the same seed gives the same transcript) and reaches each session
//! without another lookup. A broadcast is encoded once; each recipient's
//! transport gets a reference to the same bytes.
//!
//! Timers (connect timeouts, ack timeouts) share one heap; stale entries
//! are skipped when they come up.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{
    Admission, Config, Decoder, DisconnectReason, Event, Packet, RESERVED_EVENTS, SocketId,
    UsageError, Value,
    packet::{self, Body},
};
use crate::{
    engineio::{self, ConnId, Data, Handshake, SharedPacket, Sid},
    entropy::BoxEntropy,
    http::{RequestHead, ResponseHead},
    idmap::IdMap,
};

#[derive(Debug, Default)]
struct Namespace {
    admission: Admission,
    sockets: BTreeMap<SocketId, Sid>,
    rooms: BTreeMap<String, BTreeMap<SocketId, Sid>>,
    /// Ack ids are counted per namespace, as the official server does.
    next_ack: u64,
}

#[derive(Debug)]
struct Client {
    decoder: Decoder,
    /// Sockets in join order: connected ones, and ones awaiting a decision.
    sockets: Vec<(Arc<str>, SocketId)>,
    connect_deadline: Option<Instant>,
    handshake: Arc<Handshake>,
}

#[derive(Debug)]
struct Socket {
    sid: Sid,
    nsp: Arc<str>,
    connected: bool,
    rooms: BTreeSet<String>,
    /// Emits waiting for an answer, with their deadlines.
    acks: BTreeMap<u64, Option<Instant>>,
    auth: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Connect(Sid),
    Ack(SocketId, u64),
}

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

/// The application's verdict on a connection to a namespace that is not
/// registered: `true` creates it.
pub type DynamicNamespaces = Box<dyn Fn(&str, &Value) -> bool + Send>;

/// The Socket.IO server: namespaces, sockets, rooms, over one Engine.IO
/// server.
///
/// Inputs and outputs are the Engine.IO server's (connections, bytes, time,
/// transmits), plus [`poll_event`](Self::poll_event) for Socket.IO events.
/// After any input or command, drain `poll_transmit`, then `poll_event`,
/// then read `poll_timeout`.
///
/// ```
/// use std::time::Instant;
/// use wsio::{entropy::SeededEntropy, socketio::{Config, Event, Server, Value}};
///
/// let mut io = Server::new(Config::default(), Box::new(SeededEntropy::new(1)), Instant::now());
/// io.add_namespace("/chat", Default::default());
/// # let now = Instant::now();
/// while let Some(ev) = io.poll_event() {
///     match ev {
///         Event::Connection { socket, .. } => io.join(socket, "lobby").unwrap(),
///         Event::Event { socket, name, args, ack } if name == "say" => {
///             io.of("/chat").to("lobby").emit("said", args.clone()).unwrap();
///             if let Some(id) = ack {
///                 io.ack(socket, id, vec![Value::from(true)]).unwrap();
///             }
///         }
///         _ => {}
///     }
/// }
/// ```
pub struct Server {
    engine: engineio::Server,
    config: Config,
    entropy: BoxEntropy,
    namespaces: BTreeMap<String, Namespace>,
    dynamic: Option<DynamicNamespaces>,
    clients: IdMap<Sid, Client>,
    sockets: IdMap<SocketId, Socket>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    events: VecDeque<Event>,
    /// Namespace connections accepted but not yet answered: they complete
    /// when the application has heard everything before them (see
    /// `poll_event`).
    deferred: VecDeque<SocketId>,
    publish: VecDeque<BroadcastMessage>,
    /// Broadcasts addressed but not yet handed to the engine: see
    /// [`Server::flush_broadcasts`].
    broadcasts: Vec<PendingBroadcast>,
    now: Instant,
    /// Where packets to one socket are encoded, reused between them.
    scratch: String,
}

/// The largest encoding buffer kept for the next packet.
const SCRATCH_KEPT: usize = 16 * 1024;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("clients", &self.clients.len())
            .field("sockets", &self.sockets.len())
            .field("namespaces", &self.namespaces.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with the main namespace `/`, drawing ids from `entropy`;
    /// `now` starts its clock (the machine never reads one itself).
    pub fn new(config: Config, mut entropy: BoxEntropy, now: Instant) -> Self {
        // The engine gets its own generator, seeded from ours, so that its
        // session ids and our socket ids do not depend on each other's use.
        let engine_entropy = crate::entropy::SeededEntropy::from_entropy(&mut *entropy);
        let mut namespaces = BTreeMap::new();
        namespaces.insert("/".to_owned(), Namespace::default());
        Server {
            engine: engineio::Server::new(engine_config(&config), Box::new(engine_entropy), now),
            config,
            entropy,
            namespaces,
            dynamic: None,
            clients: IdMap::default(),
            sockets: IdMap::default(),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            deferred: VecDeque::new(),
            publish: VecDeque::new(),
            broadcasts: Vec::new(),
            now,
            scratch: String::new(),
        }
    }

    /// Registers a namespace (`/` always exists).
    pub fn add_namespace(&mut self, name: &str, admission: Admission) {
        self.namespaces
            .entry(name.to_owned())
            .or_default()
            .admission = admission;
    }

    /// Decides, for a namespace that is not registered, whether a client's
    /// CONNECT creates it (given the name and the auth payload).
    pub fn set_dynamic_namespaces(&mut self, f: DynamicNamespaces) {
        self.dynamic = Some(f);
    }

    /// The underlying Engine.IO server (for queries and its own options,
    /// such as [`set_allow_request`](engineio::Server::set_allow_request)).
    pub fn engine(&mut self) -> &mut engineio::Server {
        // Every use of the engine, this crate's own included, goes through
        // here: whatever is done there comes after the broadcasts made
        // before.
        self.flush_broadcasts();
        &mut self.engine
    }

    // ----- queries ------------------------------------------------------

    /// The namespace of a socket.
    pub fn namespace_of(&self, socket: SocketId) -> Option<&str> {
        self.sockets.get(&socket).map(|s| &*s.nsp)
    }

    /// The request that opened a socket's connection.
    pub fn handshake(&self, socket: SocketId) -> Option<&Handshake> {
        let s = self.sockets.get(&socket)?;
        self.clients.get(&s.sid).map(|c| &*c.handshake)
    }

    /// The auth payload a socket connected with.
    pub fn auth(&self, socket: SocketId) -> Option<&Value> {
        self.sockets.get(&socket).map(|s| &s.auth)
    }

    /// The Engine.IO session of a socket.
    pub fn session_of(&self, socket: SocketId) -> Option<Sid> {
        self.sockets.get(&socket).map(|s| s.sid)
    }

    /// The rooms a socket is in (its own id-named room not included).
    pub fn rooms(&self, socket: SocketId) -> Vec<String> {
        self.sockets
            .get(&socket)
            .map_or_else(Vec::new, |s| s.rooms.iter().cloned().collect())
    }

    /// The connected sockets of a namespace.
    pub fn sockets(&self, nsp: &str) -> Vec<SocketId> {
        self.namespaces
            .get(nsp)
            .map_or_else(Vec::new, |n| n.sockets.keys().copied().collect())
    }

    /// The number of Engine.IO connections.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    // ----- inputs (those of the Engine.IO server) ------------------------

    /// Registers a new TCP connection.
    pub fn accept(&mut self, now: Instant, peer: Option<SocketAddr>) -> ConnId {
        self.now = self.now.max(now);
        self.engine().accept(now, peer)
    }

    /// Feeds bytes read from a connection.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.now = self.now.max(now);
        self.engine().handle_input(now, conn, bytes);
        self.pump(now);
    }

    /// The peer closed a connection.
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        self.now = self.now.max(now);
        self.engine().handle_eof(now, conn);
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
        self.now = self.now.max(now);
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
        self.now = self.now.max(now);
        let r = self.engine().handle_upgrade(now, head, peer);
        self.pump(now);
        r
    }

    /// A broadcast published by another process of the cluster: delivered
    /// here, never published again.
    pub fn handle_broadcast(&mut self, now: Instant, msg: BroadcastMessage) {
        self.now = self.now.max(now);
        let shared = encode_shared(&msg.packet);
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

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.engine().handle_timeout(now);
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, timer))) = self.timers.pop() else {
                break;
            };
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
                        .and_then(|s| s.acks.remove(&id).map(|d| (d, s)))
                        .filter(|(d, _)| *d == Some(at));
                    if due.is_some() {
                        self.events.push_back(Event::AckTimeout { socket, id });
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
        self.now = self.now.max(now);
        self.engine().respond(now, conn, head, body)?;
        self.pump(now);
        Ok(())
    }

    // ----- outputs ------------------------------------------------------

    /// The next bytes to write, response to give, or connection to close.
    pub fn poll_transmit(&mut self) -> Option<engineio::Transmit> {
        self.engine().poll_transmit()
    }

    /// The next event for the application.
    ///
    /// A namespace connection completes here, once the events before it
    /// have been handed out: as in the official server (where joining a
    /// namespace passes through asynchronous middleware), the answers to
    /// events read in the same batch leave before the CONNECT's answer.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            if let Some(id) = self.deferred.pop_front() {
                self.complete_connect(id);
            }
        }
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.peek().map(|Reverse((at, _))| *at);
        match (own, self.engine.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next broadcast to hand to the other processes of a cluster
    /// (only with [`Config::cluster`]).
    pub fn poll_publish(&mut self) -> Option<BroadcastMessage> {
        self.publish.pop_front()
    }

    // ----- commands -----------------------------------------------------

    /// Connects a socket that asked a [`Admission::Decide`] namespace.
    pub fn admit(&mut self, now: Instant, socket: SocketId) -> Result<(), UsageError> {
        self.now = self.now.max(now);
        if self.sockets.get(&socket).is_none_or(|s| s.connected) {
            return Err(UsageError::NotPending(socket));
        }
        self.finish_connect(socket);
        self.pump(now);
        Ok(())
    }

    /// Refuses a socket that asked a [`Admission::Decide`] namespace; the
    /// client gets `connect_error` with `message` and `data`.
    pub fn refuse(
        &mut self,
        now: Instant,
        socket: SocketId,
        message: &str,
        data: Option<Value>,
    ) -> Result<(), UsageError> {
        self.now = self.now.max(now);
        let Some(s) = self.sockets.get(&socket).filter(|s| !s.connected) else {
            return Err(UsageError::NotPending(socket));
        };
        let (sid, nsp) = (s.sid, s.nsp.clone());
        self.sockets.remove(&socket);
        if let Some(c) = self.clients.get_mut(&sid) {
            c.sockets.retain(|(_, id)| *id != socket);
        }
        let mut body = vec![("message".to_owned(), Value::from(message))];
        if let Some(d) = data {
            body.push(("data".to_owned(), d));
        }
        let _ = self.send_to(
            sid,
            &Packet::ConnectError {
                nsp: nsp.to_string().into(),
                data: Value::Object(body),
            },
        );
        self.pump(now);
        Ok(())
    }

    /// Emits an event to one socket.
    pub fn emit(
        &mut self,
        socket: SocketId,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), UsageError> {
        check_event_name(event)?;
        let s = self.connected(socket)?;
        let (sid, nsp) = (s.sid, s.nsp.clone());
        self.send_body(sid, 2, &nsp, None, Body::Event(event, &args))
    }

    /// Emits `message` (the official `send`).
    pub fn send(&mut self, socket: SocketId, args: Vec<Value>) -> Result<(), UsageError> {
        self.emit(socket, "message", args)
    }

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
        self.now = self.now.max(now);
        check_event_name(event)?;
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
        let deadline = timeout.map(|t| now + t);
        if let Some(s) = self.sockets.get_mut(&socket) {
            s.acks.insert(id, deadline);
        }
        if let Some(d) = deadline {
            self.timers.push(Reverse((d, Timer::Ack(socket, id))));
        }
        Ok(id)
    }

    /// Answers an event that asked for it ([`Event::Event`]'s `ack`).
    pub fn ack(&mut self, socket: SocketId, id: u64, args: Vec<Value>) -> Result<(), UsageError> {
        let s = self.connected(socket)?;
        let (sid, nsp) = (s.sid, s.nsp.clone());
        self.send_body(sid, 3, &nsp, Some(id), Body::Args(&args))
    }

    /// Adds a socket to a room.
    pub fn join(&mut self, socket: SocketId, room: &str) -> Result<(), UsageError> {
        let s = self
            .sockets
            .get_mut(&socket)
            .filter(|s| s.connected)
            .ok_or(UsageError::UnknownSocket(socket))?;
        if s.rooms.insert(room.to_owned()) {
            if let Some(ns) = self.namespaces.get_mut(&*s.nsp) {
                ns.rooms
                    .entry(room.to_owned())
                    .or_default()
                    .insert(socket, s.sid);
            }
        }
        Ok(())
    }

    /// Removes a socket from a room.
    pub fn leave(&mut self, socket: SocketId, room: &str) -> Result<(), UsageError> {
        let s = self
            .sockets
            .get_mut(&socket)
            .filter(|s| s.connected)
            .ok_or(UsageError::UnknownSocket(socket))?;
        if s.rooms.remove(room) {
            if let Some(ns) = self.namespaces.get_mut(&*s.nsp) {
                remove_from_room(ns, room, socket);
            }
        }
        Ok(())
    }

    /// Removes a socket from its namespace (the client gets a DISCONNECT).
    /// With `close`, the whole connection ends: every socket of the client
    /// is disconnected the same way first, in join order.
    pub fn disconnect(
        &mut self,
        now: Instant,
        socket: SocketId,
        close: bool,
    ) -> Result<(), UsageError> {
        self.now = self.now.max(now);
        let sid = self.connected(socket)?.sid;
        let targets: Vec<SocketId> = if close {
            self.clients
                .get(&sid)
                .map_or_else(Vec::new, |c| c.sockets.iter().map(|(_, id)| *id).collect())
        } else {
            vec![socket]
        };
        for id in targets {
            if let Some(s) = self.sockets.get(&id).filter(|s| s.connected) {
                let packet = Packet::Disconnect {
                    nsp: s.nsp.to_string().into(),
                };
                let _ = self.send_to(s.sid, &packet);
            }
            self.remove_socket(id, DisconnectReason::ServerNamespaceDisconnect);
        }
        if close {
            self.close_client(now, sid, DisconnectReason::ForcedServerClose);
        }
        self.pump(now);
        Ok(())
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

    // ----- internals ----------------------------------------------------

    fn connected(&self, socket: SocketId) -> Result<&Socket, UsageError> {
        self.sockets
            .get(&socket)
            .filter(|s| s.connected)
            .ok_or(UsageError::UnknownSocket(socket))
    }

    /// Encodes a packet from borrowed parts into the reused `scratch`
    /// buffer and sends it: an event without binary leaves is copied from
    /// there into its WebSocket frame, with no allocation of its own.
    fn send_body(
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
            let mut packets = Vec::with_capacity(1 + attachments.len());
            packets.push(engineio::Packet::message(text.as_str().to_owned()));
            packets.extend(attachments.into_iter().map(engineio::Packet::message));
            self.engine().send_all(sid, &packets)
        };
        // A one-off huge message does not pin its buffer.
        if text.capacity() <= SCRATCH_KEPT {
            self.scratch = text;
        }
        Ok(sent?)
    }

    fn send_to(&mut self, sid: Sid, packet: &Packet) -> Result<(), UsageError> {
        let (kind, nsp, id, body) = packet.parts();
        self.send_body(sid, kind, nsp, id, body)
    }

    /// Translates what the engine produced until it is quiet.
    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                engineio::Event::Open { sid, handshake } => {
                    let deadline = now + self.config.connect_timeout;
                    self.clients.insert(
                        sid,
                        Client {
                            decoder: Decoder::new(self.config.max_attachments),
                            sockets: Vec::new(),
                            connect_deadline: Some(deadline),
                            handshake: Arc::from(handshake),
                        },
                    );
                    self.timers.push(Reverse((deadline, Timer::Connect(sid))));
                }
                engineio::Event::Message { sid, data } => self.on_message(now, sid, data),
                engineio::Event::Close { sid, reason } => {
                    if let Some(c) = self.clients.remove(&sid) {
                        for (_, id) in c.sockets {
                            self.remove_socket(id, DisconnectReason::from_engine(reason));
                        }
                    }
                }
                engineio::Event::Upgrade { .. } => {}
                engineio::Event::Request { conn, head, body } => {
                    self.events.push_back(Event::Request { conn, head, body })
                }
            }
        }
    }

    fn on_message(&mut self, now: Instant, sid: Sid, data: Data) {
        let Some(c) = self.clients.get_mut(&sid) else {
            return;
        };
        let decoded = match data {
            Data::Text(t) => c.decoder.decode_text(t.as_str()),
            Data::Binary(b) => c.decoder.decode_binary(b),
        };
        match decoded {
            Ok(None) => {}
            Ok(Some(packet)) => self.on_packet(now, sid, packet),
            // The official server closes the connection for a packet it
            // cannot decode, and its sockets report "forced close".
            Err(_) => self.close_client(now, sid, DisconnectReason::ForcedClose),
        }
    }

    fn on_packet(&mut self, now: Instant, sid: Sid, packet: Packet) {
        let Some(c) = self.clients.get(&sid) else {
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
                    sid,
                    nsp.into_owned(),
                    data.unwrap_or_else(|| Value::Object(Vec::new())),
                );
            }
            Packet::Event { name, args, id, .. } if connected => {
                if let Some(socket) = socket {
                    self.events.push_back(Event::Event {
                        socket,
                        name,
                        args,
                        ack: id,
                    });
                }
            }
            Packet::Ack { id, args, .. } if connected => {
                let Some(socket) = socket else { return };
                if self
                    .sockets
                    .get_mut(&socket)
                    .and_then(|s| s.acks.remove(&id))
                    .is_some()
                {
                    self.events.push_back(Event::Ack { socket, id, args });
                }
            }
            Packet::Disconnect { .. } if connected => {
                if let Some(socket) = socket {
                    self.remove_socket(socket, DisconnectReason::ClientNamespaceDisconnect);
                }
            }
            // A second CONNECT, a client's CONNECT_ERROR, or a packet for a
            // namespace the client has not joined.
            _ => self.close_client(now, sid, DisconnectReason::ForcedClose),
        }
    }

    fn connect(&mut self, sid: Sid, nsp: String, auth: Value) {
        if !self.namespaces.contains_key(&nsp) {
            let create = self.dynamic.as_ref().is_some_and(|f| f(&nsp, &auth));
            if !create {
                let data = Value::object([("message", Value::from("Invalid namespace"))]);
                let _ = self.send_to(
                    sid,
                    &Packet::ConnectError {
                        nsp: nsp.into(),
                        data,
                    },
                );
                return;
            }
            self.namespaces.insert(nsp.clone(), Namespace::default());
        }
        let mut id = SocketId(Sid::generate(&mut *self.entropy));
        while self.sockets.contains_key(&id) {
            id = SocketId(Sid::generate(&mut *self.entropy));
        }
        let nsp: Arc<str> = Arc::from(nsp);
        self.sockets.insert(
            id,
            Socket {
                sid,
                nsp: nsp.clone(),
                connected: false,
                rooms: BTreeSet::new(),
                acks: BTreeMap::new(),
                auth,
            },
        );
        if let Some(c) = self.clients.get_mut(&sid) {
            c.sockets.push((nsp.clone(), id));
        }
        self.deferred.push_back(id);
    }

    /// A deferred connection's turn: connect it, or ask the application.
    fn complete_connect(&mut self, id: SocketId) {
        let Some(s) = self.sockets.get(&id).filter(|s| !s.connected) else {
            return;
        };
        let admission = self
            .namespaces
            .get(&*s.nsp)
            .map(|n| n.admission)
            .unwrap_or_default();
        match admission {
            Admission::AcceptAll => self.finish_connect(id),
            Admission::Decide => {
                let event = Event::ConnectRequest {
                    socket: id,
                    nsp: s.nsp.to_string(),
                    auth: s.auth.clone(),
                };
                self.events.push_back(event);
            }
        }
    }

    fn finish_connect(&mut self, id: SocketId) {
        let Some(s) = self.sockets.get_mut(&id) else {
            return;
        };
        s.connected = true;
        let (sid, nsp, auth) = (s.sid, s.nsp.clone(), s.auth.clone());
        if let Some(ns) = self.namespaces.get_mut(&*nsp) {
            ns.sockets.insert(id, sid);
        }
        if let Some(c) = self.clients.get_mut(&sid) {
            c.connect_deadline = None;
        }
        let data = Value::object([("sid", Value::from(id.as_str()))]);
        let _ = self.send_to(
            sid,
            &Packet::Connect {
                nsp: nsp.to_string().into(),
                data: Some(data),
            },
        );
        self.events.push_back(Event::Connection {
            socket: id,
            nsp: nsp.to_string(),
            auth,
        });
    }

    /// Forgets a socket; connected ones are reported as disconnected.
    fn remove_socket(&mut self, id: SocketId, reason: DisconnectReason) {
        let Some(s) = self.sockets.remove(&id) else {
            return;
        };
        if let Some(c) = self.clients.get_mut(&s.sid) {
            c.sockets.retain(|(_, sock)| *sock != id);
        }
        if let Some(ns) = self.namespaces.get_mut(&*s.nsp) {
            ns.sockets.remove(&id);
            for room in &s.rooms {
                remove_from_room(ns, room, id);
            }
        }
        if s.connected {
            self.events.push_back(Event::Disconnect {
                socket: id,
                nsp: s.nsp.to_string(),
                reason,
            });
        }
    }

    /// Ends a client: its sockets go first (with `reason`), then the
    /// Engine.IO session.
    fn close_client(&mut self, now: Instant, sid: Sid, reason: DisconnectReason) {
        let Some(c) = self.clients.remove(&sid) else {
            return;
        };
        for (_, id) in c.sockets {
            self.remove_socket(id, reason);
        }
        let _ = self.engine().close(now, sid);
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
        let excluded: Vec<&BTreeMap<SocketId, Sid>> =
            except.iter().filter_map(|r| ns.rooms.get(r)).collect();
        let except_ids: Vec<SocketId> = except.iter().filter_map(|r| SocketId::parse(r)).collect();
        let mut sids = Vec::new();
        let mut add = |id: &SocketId, sid: &Sid| {
            if Some(*id) == exclude
                || excluded.iter().any(|r| r.contains_key(id))
                || except_ids.contains(id)
            {
                return;
            }
            if volatile && !engine.is_writable(*sid) {
                return;
            }
            sids.push(*sid);
        };
        match rooms {
            [] => ns.sockets.iter().for_each(|(id, sid)| add(id, sid)),
            [room] => {
                if let Some(members) = ns.rooms.get(room) {
                    members.iter().for_each(|(id, sid)| add(id, sid));
                } else if let Some((id, sid)) =
                    SocketId::parse(room).and_then(|id| ns.sockets.get_key_value(&id))
                {
                    // Every socket is in the room named by its own id.
                    add(id, sid);
                }
            }
            many => {
                let mut union: BTreeMap<SocketId, Sid> = BTreeMap::new();
                for room in many {
                    if let Some(members) = ns.rooms.get(room) {
                        union.extend(members.iter().map(|(k, v)| (*k, *v)));
                    } else if let Some((id, sid)) =
                        SocketId::parse(room).and_then(|id| ns.sockets.get_key_value(&id))
                    {
                        union.insert(*id, *sid);
                    }
                }
                union.iter().for_each(|(id, sid)| add(id, sid));
            }
        }
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
    fn flush_broadcasts(&mut self) {
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

/// The engine's options, with the client's files left to the application.
fn engine_config(config: &Config) -> engineio::Config {
    let mut e = config.engine.clone();
    if config.client_files {
        let base = e.path.clone();
        e.bypass
            .extend(super::CLIENT_FILES.iter().map(|f| format!("{base}{f}")));
    }
    e
}

fn remove_from_room(ns: &mut Namespace, room: &str, id: SocketId) {
    if let Some(members) = ns.rooms.get_mut(room) {
        members.remove(&id);
        if members.is_empty() {
            ns.rooms.remove(room);
        }
    }
}

fn check_event_name(name: &str) -> Result<(), UsageError> {
    if RESERVED_EVENTS.contains(&name) {
        return Err(UsageError::ReservedEvent(name.to_owned()));
    }
    Ok(())
}

/// A broadcast addressed but not yet handed to the engine.
struct PendingBroadcast {
    sids: Vec<Sid>,
    shared: Vec<SharedPacket>,
}

fn encode_shared(packet: &Packet) -> Vec<SharedPacket> {
    let (text, attachments) = packet.encode();
    let mut shared = Vec::with_capacity(1 + attachments.len());
    shared.push(SharedPacket::new(engineio::Packet::message(text)));
    shared.extend(
        attachments
            .into_iter()
            .map(|a| SharedPacket::new(engineio::Packet::message(a))),
    );
    shared
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
        check_event_name(event)?;
        let packet = Packet::Event {
            nsp: self.nsp.clone().into(),
            id: None,
            name: event.to_owned(),
            args,
        };
        let shared = encode_shared(&packet);
        let count = self.server.deliver(
            &self.nsp,
            &self.rooms,
            &self.except,
            self.exclude,
            self.volatile,
            shared,
        );
        if self.server.config.cluster && !self.local {
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
        let Some(ns) = self.server.namespaces.get(&self.nsp) else {
            return Vec::new();
        };
        let mut all: BTreeSet<SocketId> = if self.rooms.is_empty() {
            ns.sockets.keys().copied().collect()
        } else {
            let mut set = BTreeSet::new();
            for r in &self.rooms {
                if let Some(m) = ns.rooms.get(r) {
                    set.extend(m.keys().copied());
                } else if let Some(id) = SocketId::parse(r).filter(|id| ns.sockets.contains_key(id))
                {
                    set.insert(id);
                }
            }
            set
        };
        for r in &self.except {
            if let Some(m) = ns.rooms.get(r) {
                all.retain(|id| !m.contains_key(id));
            }
            if let Some(id) = SocketId::parse(r) {
                all.remove(&id);
            }
        }
        if let Some(x) = self.exclude {
            all.remove(&x);
        }
        all.into_iter().collect()
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
