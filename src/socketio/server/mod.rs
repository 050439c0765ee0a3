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
//! Timers (connect timeouts, ack timeouts, requests) share one heap; stale
//! entries are skipped when they come up.
//!
//! # Where things are
//!
//! * this file: the data model (namespaces, clients, sockets, timers), the
//!   constructor, the queries and the pollers;
//! * `engine.rs`: the inputs, which are the Engine.IO server's, and what
//!   the engine's events become;
//! * `namespace.rs`: namespaces and admission, a socket from its `CONNECT`
//!   to its removal;
//! * `rooms.rs`: the room index;
//! * `emit.rs`: emits to one socket, and broadcasts (encoded once), also
//!   another node's;
//! * `ack.rs`: emits that wait for an answer, one socket's or a whole
//!   broadcast's, and answers (the table itself is `../ack.rs`, shared with
//!   the client, as is the deadline heap in `../timer.rs`);
//! * `middleware.rs`: the application's verdict on each incoming event, and
//!   its look at each outgoing one;
//! * `recovery.rs`: connection state recovery, the packets and sessions it
//!   keeps;
//! * `ops.rs`: operations on a selection of sockets (`sockets_join`,
//!   `fetch_sockets`...) and server-side emits;
//! * `cluster.rs`: the messages of a cluster, and the requests that wait
//!   for other nodes' answers.

mod ack;
mod cluster;
mod emit;
mod engine;
mod middleware;
mod namespace;
mod ops;
mod recovery;
mod rooms;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
    time::Instant,
};

pub use cluster::{
    ClusterAnswer, ClusterMessage, RequestId, Selection, ServerSideReply, SocketInfo,
};
pub use emit::Broadcast;
pub use recovery::RecoveryConfig;

use super::{
    Admission, Config, DisconnectReason, Event, SocketId, UsageError, Value, ack::Pending,
    msgpack::MessageDecoder, timer::Deadlines,
};
use crate::{
    engineio::{self, Handshake, SharedPacket, Sid},
    entropy::BoxEntropy,
    idmap::IdMap,
};

#[derive(Debug, Default)]
struct Namespace {
    admission: Admission,
    sockets: BTreeMap<SocketId, Sid>,
    rooms: BTreeMap<String, BTreeMap<SocketId, Sid>>,
    /// Ack ids are counted per namespace, as the official server does.
    next_ack: u64,
    /// Whether its sockets' events wait for the application's verdict
    /// (see `middleware.rs`).
    event_admission: Admission,
    /// Made by [`DynamicNamespaces`]: removed when empty with
    /// [`Config::cleanup_empty_child_namespaces`](super::Config::cleanup_empty_child_namespaces).
    dynamic: bool,
}

#[derive(Debug)]
struct Client {
    decoder: MessageDecoder,
    /// Sockets in join order: connected ones, and ones awaiting a decision.
    sockets: Vec<(Arc<str>, SocketId)>,
    connect_deadline: Option<Instant>,
    handshake: Arc<Handshake>,
    /// Broke the protocol's order: its packets are ignored until its
    /// deferred connections complete and it is closed.
    closing: bool,
}

/// Work that waits until the events before it have been handed out (see
/// [`Server::poll_event`]).
#[derive(Debug)]
enum Deferred {
    /// A namespace connection.
    Connect(SocketId),
    /// A client that broke the protocol's order, closed once its deferred
    /// connections have completed.
    Close(Sid),
}

#[derive(Debug)]
struct Socket {
    sid: Sid,
    nsp: Arc<str>,
    connected: bool,
    rooms: BTreeSet<String>,
    /// Emits waiting for an answer, with their deadlines.
    acks: Pending,
    /// Broadcasts waiting for this socket's answer: ack id and request.
    group_acks: Vec<(u64, RequestId)>,
    auth: Value,
    /// The application's data ([`Server::set_data`]).
    data: Value,
    /// The private id, with recovery on.
    pid: Option<String>,
    /// A recovery the CONNECT asked for, then the session it claimed.
    restore: Restore,
    /// Whether the socket connected with its earlier state restored.
    recovered: bool,
    /// Events waiting for the application's verdict.
    held: middleware::HeldEvents,
}

/// Where a socket stands on recovery (see `recovery.rs`).
#[derive(Debug, Default)]
enum Restore {
    #[default]
    None,
    /// The CONNECT came at `at` with a `pid` and an `offset`.
    Asked {
        pid: String,
        offset: String,
        at: Instant,
    },
    /// The session is claimed: the socket rejoins `rooms`, and gets the
    /// kept packets after sequence number `after`.
    Claimed { after: u64, rooms: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Connect(Sid),
    Ack(SocketId, u64),
    Request(RequestId),
    /// Kept sessions may be out of time.
    Sessions,
}

/// A broadcast addressed but not yet handed to the engine.
struct PendingBroadcast {
    sids: Vec<Sid>,
    shared: Vec<SharedPacket>,
}

/// The application's verdict on a connection to a namespace that is not
/// registered: `true` creates it.
pub type DynamicNamespaces = Box<dyn Fn(&str, &Value) -> bool + Send>;

/// The Socket.IO server: namespaces, sockets, rooms, over one Engine.IO
/// server.
///
/// Inputs and outputs are the Engine.IO server's (connections, bytes, time,
/// transmits), plus [`poll_event`](Self::poll_event) for Socket.IO events.
/// It is a [`ServerMachine`](crate::machine::ServerMachine): drive it as
/// [`machine`](crate::machine) says.
///
/// ```
/// use std::time::Instant;
/// use wsio::{entropy::SeededEntropy, socketio::{Config, Event, Server, Value}};
///
/// let mut io = Server::new(Config::default(), Box::new(SeededEntropy::new(1)), Instant::now());
/// io.add_namespace("/chat", Default::default());
/// # let now = Instant::now();
/// while let Some(ev) = io.poll_event(now) {
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
    timers: Deadlines<Timer>,
    events: VecDeque<Event>,
    /// Namespace connections accepted but not yet answered: they complete
    /// when the application has heard everything before them (see
    /// `poll_event`).
    deferred: VecDeque<Deferred>,
    /// Messages for the other nodes of a cluster.
    cluster_out: VecDeque<ClusterMessage>,
    /// Requests waiting for answers (see `cluster.rs`).
    requests: cluster::Requests,
    /// Packets and sessions kept for recovery, when it is on.
    recovery: Option<recovery::Store>,
    /// Sockets whose outgoing events the application watches.
    outgoing: BTreeSet<SocketId>,
    /// The next check id of an [`Event::EventRequest`].
    next_check: u64,
    /// Broadcasts addressed but not yet handed to the engine: see
    /// [`Server::flush_broadcasts`].
    broadcasts: Vec<PendingBroadcast>,
    /// Where packets to one socket are encoded, reused between them.
    scratch: String,
}

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
        // The engine gets its own source, forked from ours, so that its
        // session ids and our socket ids do not depend on each other's use;
        // a secure source forks a secure one (session ids must not be
        // predictable), a seeded one a seeded one.
        let engine_entropy = entropy.fork();
        let mut namespaces = BTreeMap::new();
        namespaces.insert("/".to_owned(), Namespace::default());
        let recovery = config
            .recovery
            .clone()
            .map(|r| recovery::Store::new(r, &mut *entropy));
        Server {
            engine: engineio::Server::new(engine_config(&config), engine_entropy, now),
            config,
            entropy,
            namespaces,
            dynamic: None,
            clients: IdMap::default(),
            sockets: IdMap::default(),
            timers: Deadlines::default(),
            events: VecDeque::new(),
            deferred: VecDeque::new(),
            cluster_out: VecDeque::new(),
            requests: cluster::Requests::new(),
            recovery,
            outgoing: BTreeSet::new(),
            next_check: 0,
            broadcasts: Vec::new(),
            scratch: String::new(),
        }
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

    /// The application's data for a socket (the official `socket.data`):
    /// `{}` until [`set_data`](Self::set_data). It goes with the socket's
    /// session when the connection state is kept for recovery, and
    /// [`Broadcast::fetch_sockets`] reports it.
    pub fn data(&self, socket: SocketId) -> Option<&Value> {
        self.sockets.get(&socket).map(|s| &s.data)
    }

    /// Sets the application's data for a connected socket.
    pub fn set_data(&mut self, socket: SocketId, data: Value) -> Result<(), UsageError> {
        let (s, _) = self.connected_mut(socket)?;
        s.data = data;
        Ok(())
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

    /// The next bytes to write, response to give, or connection to close.
    /// What the engine reports while it flushes (a pipelined request read
    /// once the one before it is answered) is taken in before this says
    /// `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<engineio::Transmit> {
        loop {
            if let Some(t) = self.engine().poll_transmit(now) {
                return Some(t);
            }
            if !self.pump(now) {
                return None;
            }
        }
    }

    /// The next event for the application.
    ///
    /// A namespace connection completes here, once the events before it
    /// have been handed out: as in the official server (where joining a
    /// namespace passes through asynchronous middleware), the answers to
    /// events read in the same batch leave before the CONNECT's answer.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        while self.events.is_empty() {
            match self.deferred.pop_front()? {
                Deferred::Connect(id) => self.complete_connect(id),
                Deferred::Close(sid) => {
                    self.close_client(now, sid, DisconnectReason::ForcedServerClose)
                }
            }
        }
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.engine.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A connected socket.
    fn connected(&self, socket: SocketId) -> Result<&Socket, UsageError> {
        self.sockets
            .get(&socket)
            .filter(|s| s.connected)
            .ok_or(UsageError::UnknownSocket(socket))
    }

    /// A connected socket and its namespace, both to change.
    fn connected_mut(
        &mut self,
        socket: SocketId,
    ) -> Result<(&mut Socket, Option<&mut Namespace>), UsageError> {
        let s = self
            .sockets
            .get_mut(&socket)
            .filter(|s| s.connected)
            .ok_or(UsageError::UnknownSocket(socket))?;
        let ns = self.namespaces.get_mut(&*s.nsp);
        Ok((s, ns))
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

crate::machine::by_inherent_methods!(Server: Machine<engineio::Transmit, Event>);
crate::machine::by_inherent_methods!(Server: ConnMachine);
crate::machine::by_inherent_methods!(Server: ServerMachine);

#[cfg(test)]
#[path = "../server_tests.rs"]
mod tests;
