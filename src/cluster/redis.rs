//! The Redis adapter: one [`socketio::Server`]'s cluster messages as the
//! Redis commands of `@socket.io/redis-adapter` 8.3, and back.
//!
//! # Theory of operation
//!
//! ```text
//!  Server ──poll_cluster──► send ──────────► poll_transmit: Publish, NumSub ──► publishing connection
//!  Server ◄─handle_cluster── poll_event ◄──── handle_message, handle_numsub ◄── subscribing connection
//!                                     ▲ handle_connected / handle_disconnected / handle_timeout
//! ```
//!
//! **Namespaces.** Each namespace the adapter knows ([`add_namespace`], or
//! the first message the server sends for it) gets a uid of six characters
//! drawn from the adapter's entropy, and three subscriptions, as the
//! official: `PSUBSCRIBE socket.io#NSP#*` (broadcasts, to the namespace or
//! to one room) and `SUBSCRIBE socket.io-request#NSP#
//! socket.io-response#NSP# socket.io-response#NSP#UID#`. The request
//! channel is subscribed exactly once per node, so `PUBSUB NUMSUB` on it
//! counts the nodes.
//!
//! **Out.** A broadcast is published at once on its channel; with
//! acknowledgements it is a request, published at once too, and the
//! adapter asks `PUBSUB NUMSUB`. A fetch or a server-side emit with an
//! acknowledgement asks `PUBSUB NUMSUB` first and publishes only when
//! another node will hear it (the official's order). The answer becomes
//! [`ClusterAnswer::Nodes`] (the count less this node) for the server,
//! which cannot end such a request before it knows. Joins, leaves,
//! disconnections and plain server-side emits are published at once;
//! answers go to the namespace's common response channel (the official's
//! default; its `publishOnSpecificResponseChannel` option is not offered,
//! but answers on the specific channel are read). `server_count` asks
//! `PUBSUB NUMSUB` for the application.
//!
//! **In.** A message is dropped, and counted in [`Stats`], when: it comes
//! on a channel of a namespace the adapter does not know; it is a
//! broadcast on a room channel and no local socket is in that room (asked
//! of [`Rooms`] before it is decoded); its uid is this node's (its own
//! messages come back from Redis); its packet names another namespace; it
//! answers a request this node does not have open (another node's, or one
//! that timed out); it does not decode or has the wrong shape (malformed);
//! or it is a request this adapter does not serve (`allRooms`, the old
//! forms that name one socket: unsupported). Everything else becomes a
//! [`ClusterMessage`] for [`Server::handle_cluster`](socketio::Server::handle_cluster).
//! A request of this node is open for the adapter's `requests_timeout` (a
//! broadcast's for its own timeout), then forgotten.
//!
//! **Redis going away.** The adapter knows two links, [`Link::Publisher`]
//! and [`Link::Subscriber`], each connecting, up or down. It asks for
//! each connection with [`RedisCommand::Connect`] (at first, then after a
//! failure or a loss: 50 ms later, then 100 ms, ... at most 500 ms apart,
//! as node-redis retries), and is told the outcome. While the publisher
//! is not up, publishes wait in a backlog bounded by count and bytes;
//! past the bound they are dropped, counted, and [`Event::Dropped`] says
//! so once per outage. `PUBSUB NUMSUB` waits for the publisher too, and
//! is asked again when it comes back (a request that times out first is
//! forgotten). When the subscriber comes back, every subscription is made
//! again. A node that dies just stops answering: the server's requests
//! time out on its own timers.
//!
//! [`add_namespace`]: RedisAdapter::add_namespace

mod config;
mod inbound;
#[cfg(test)]
mod tests;
mod wire;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, VecDeque},
    time::{Duration, Instant},
};

use bytes::Bytes;

pub use self::config::{Event, Link, LinkState, RedisCommand, RedisConfig, Stats};
use self::wire::{Awaits, Flags};
use crate::{
    entropy::BoxEntropy,
    socketio::{self, ClusterAnswer, ClusterMessage, RequestId},
};

/// The characters of a node uid (as the official's `uid2`).
const UID_CHARS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UID_LEN: usize = 6;

#[derive(Debug)]
struct Namespace {
    uid: String,
    /// `socket.io#NSP#`.
    broadcast: String,
    /// `socket.io-request#NSP#`.
    request: String,
    /// `socket.io-response#NSP#`.
    response: String,
}

#[derive(Debug)]
struct LinkSlot {
    state: LinkState,
    /// Attempts that failed since the link was last up.
    failures: u32,
    retry_at: Option<Instant>,
}

/// A request of this node that answers may come for.
#[derive(Debug)]
struct Open {
    nsp: String,
    awaits: Awaits,
    deadline: Instant,
}

/// A `PUBSUB NUMSUB` asked or to ask, for a request.
#[derive(Debug)]
struct Count {
    nsp: String,
    /// The request it is for; `None` for the application's question
    /// ([`RedisAdapter::server_count`]).
    request: Option<RequestId>,
    /// The request, published once another node is known to hear it.
    held: Option<Bytes>,
    deadline: Instant,
    /// Handed to the driver on the current publisher connection.
    asked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Request(RequestId),
    Count(u64),
    Retry(Link),
}

/// The Redis adapter machine (see the module docs). It follows the
/// [machine contract](crate::machine): after any input or command, drain
/// [`poll_transmit`](Self::poll_transmit) (carry out each command), then
/// [`poll_event`](Self::poll_event), then arm a timer for
/// [`poll_timeout`](Self::poll_timeout); [`drain`](crate::machine::drain)
/// does it.
pub struct RedisAdapter {
    config: RedisConfig,
    entropy: BoxEntropy,
    now: Option<Instant>,
    namespaces: BTreeMap<String, Namespace>,
    links: [LinkSlot; 2],
    commands: VecDeque<RedisCommand>,
    backlog: VecDeque<(String, Bytes)>,
    backlog_bytes: usize,
    /// Whether [`Event::Dropped`] was said in this outage.
    dropping: bool,
    to_server: VecDeque<ClusterMessage>,
    events: VecDeque<Event>,
    open: BTreeMap<RequestId, Open>,
    counts: BTreeMap<u64, Count>,
    next_token: u64,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    stats: Stats,
}

impl std::fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("namespaces", &self.namespaces.keys().collect::<Vec<_>>())
            .field("publisher", &self.links[0].state)
            .field("subscriber", &self.links[1].state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// `now + d`, or a year from now if that overflows.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

impl RedisAdapter {
    /// A new adapter, with no namespace yet; it asks at once for both
    /// connections ([`RedisCommand::Connect`]).
    pub fn new(config: RedisConfig, entropy: BoxEntropy) -> Self {
        let slot = || LinkSlot {
            state: LinkState::Connecting,
            failures: 0,
            retry_at: None,
        };
        RedisAdapter {
            config,
            entropy,
            now: None,
            namespaces: BTreeMap::new(),
            links: [slot(), slot()],
            commands: VecDeque::from([
                RedisCommand::Connect(Link::Publisher),
                RedisCommand::Connect(Link::Subscriber),
            ]),
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            dropping: false,
            to_server: VecDeque::new(),
            events: VecDeque::new(),
            open: BTreeMap::new(),
            counts: BTreeMap::new(),
            next_token: 0,
            timers: BinaryHeap::new(),
            stats: Stats::default(),
        }
    }

    /// Clamps a `now` that went backwards to the latest one seen.
    fn clock(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |t| t.max(now));
        self.now = Some(now);
        now
    }

    // ----- namespaces ---------------------------------------------------

    /// Joins a namespace's part of the cluster: gives it a uid and
    /// subscribes its channels. Call it for every namespace of the server,
    /// and for each dynamic one as it appears (again is harmless).
    pub fn add_namespace(&mut self, nsp: &str) {
        if self.namespaces.contains_key(nsp) {
            return;
        }
        let mut raw = [0u8; UID_LEN];
        self.entropy.fill(&mut raw);
        let uid: String = raw
            .iter()
            .map(|b| char::from(UID_CHARS[usize::from(*b) % UID_CHARS.len()]))
            .collect();
        let key = &self.config.key;
        let ns = Namespace {
            uid,
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            response: format!("{key}-response#{nsp}#"),
        };
        if self.link_state(Link::Subscriber) == LinkState::Up {
            subscribe(&ns, &mut self.commands);
        }
        self.namespaces.insert(nsp.to_owned(), ns);
    }

    /// Leaves a namespace's part of the cluster (unsubscribes).
    pub fn remove_namespace(&mut self, nsp: &str) {
        let Some(ns) = self.namespaces.remove(nsp) else {
            return;
        };
        if self.link_state(Link::Subscriber) == LinkState::Up {
            self.commands.push_back(RedisCommand::PUnsubscribe {
                pattern: format!("{}*", ns.broadcast),
            });
            let specific = format!("{}{}#", ns.response, ns.uid);
            self.commands.push_back(RedisCommand::Unsubscribe {
                channels: vec![ns.request, ns.response, specific],
            });
        }
    }

    /// This node's uid in a namespace.
    pub fn uid(&self, nsp: &str) -> Option<&str> {
        self.namespaces.get(nsp).map(|n| n.uid.as_str())
    }

    // ----- the links ------------------------------------------------------

    /// A link's connection is up (after [`RedisCommand::Connect`], or on
    /// its own): the subscriber subscribes everything again; the publisher
    /// sends the backlog and asks the node counts still wanted.
    pub fn handle_connected(&mut self, now: Instant, link: Link) {
        self.clock(now);
        let slot = &mut self.links[link.index()];
        if slot.state == LinkState::Up {
            return;
        }
        *slot = LinkSlot {
            state: LinkState::Up,
            failures: 0,
            retry_at: None,
        };
        match link {
            Link::Subscriber => {
                for ns in self.namespaces.values() {
                    subscribe(ns, &mut self.commands);
                }
            }
            Link::Publisher => {
                self.dropping = false;
                for (token, c) in self.counts.iter_mut() {
                    if let Some(ns) = self.namespaces.get(&c.nsp) {
                        c.asked = true;
                        self.commands.push_back(RedisCommand::NumSub {
                            token: *token,
                            channel: ns.request.clone(),
                        });
                    }
                }
                self.backlog_bytes = 0;
                for (channel, payload) in std::mem::take(&mut self.backlog) {
                    self.stats.published = self.stats.published.saturating_add(1);
                    self.commands
                        .push_back(RedisCommand::Publish { channel, payload });
                }
                self.stats.backlog = 0;
            }
        }
    }

    /// A link's connection failed to open, or was lost: another attempt
    /// is asked for after a delay. Publishes not yet handed out go to the
    /// backlog; what the driver was given and had not carried out may be
    /// lost; node counts are asked again, subscriptions made again, when
    /// the link is back.
    pub fn handle_disconnected(&mut self, now: Instant, link: Link) {
        let now = self.clock(now);
        let (step, max) = (self.config.reconnect_step, self.config.reconnect_max);
        let slot = &mut self.links[link.index()];
        if slot.state == LinkState::Down {
            return;
        }
        if slot.state == LinkState::Up {
            slot.failures = 0;
        }
        let n = slot.failures.saturating_add(1);
        slot.failures = n;
        let delay = step.saturating_mul(n).min(max);
        let at = later(now, delay);
        slot.state = LinkState::Down;
        slot.retry_at = Some(at);
        self.timers.push(Reverse((at, Timer::Retry(link))));
        // What was queued for the link and not handed out yet: publishes
        // wait in the backlog, the rest is made again when it is back.
        let queued = std::mem::take(&mut self.commands);
        let mut publishes = Vec::new();
        for c in queued {
            match c {
                RedisCommand::Publish { channel, payload } if link == Link::Publisher => {
                    self.stats.published = self.stats.published.saturating_sub(1);
                    publishes.push((channel, payload));
                }
                c if c.link() == link && !matches!(c, RedisCommand::Connect(_)) => {}
                c => self.commands.push_back(c),
            }
        }
        for (channel, payload) in publishes {
            self.publish(channel, payload);
        }
        if link == Link::Publisher {
            for c in self.counts.values_mut() {
                c.asked = false;
            }
        }
    }

    /// Where a link stands.
    pub fn link_state(&self, link: Link) -> LinkState {
        self.links[link.index()].state
    }

    /// Whether both links are up.
    pub fn is_up(&self) -> bool {
        self.links.iter().all(|l| l.state == LinkState::Up)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ----- from the server ----------------------------------------------

    /// A message of the server for the other nodes
    /// ([`Server::poll_cluster`](socketio::Server::poll_cluster)): queues
    /// its publish (and node count).
    pub fn send(&mut self, now: Instant, msg: ClusterMessage) {
        let now = self.clock(now);
        let nsp = match &msg {
            ClusterMessage::Broadcast { nsp, .. }
            | ClusterMessage::SocketsJoin { nsp, .. }
            | ClusterMessage::SocketsLeave { nsp, .. }
            | ClusterMessage::DisconnectSockets { nsp, .. }
            | ClusterMessage::FetchSockets { nsp, .. }
            | ClusterMessage::ServerSideEmit { nsp, .. }
            | ClusterMessage::Response { nsp, .. } => nsp.clone(),
        };
        self.add_namespace(&nsp);
        let Some(ns) = self.namespaces.get(&nsp) else {
            return;
        };
        let uid = ns.uid.as_str();
        match msg {
            ClusterMessage::Broadcast {
                to,
                volatile,
                compress,
                name,
                args,
                ack,
                ..
            } => {
                let mut flags = Flags {
                    volatile,
                    compress,
                    timeout: None,
                };
                match ack {
                    None => {
                        let channel = wire::broadcast_channel(&ns.broadcast, &to);
                        let payload = wire::broadcast(uid, &nsp, &to, &flags, &name, &args);
                        self.publish(channel, payload);
                    }
                    Some((request, timeout)) => {
                        flags.timeout = Some(timeout);
                        let payload =
                            wire::broadcast_request(uid, &request, &nsp, &to, &flags, &name, &args);
                        let channel = ns.request.clone();
                        self.publish(channel, payload);
                        let deadline = later(now, timeout);
                        self.open_request(&nsp, &request, Awaits::BroadcastAcks, deadline);
                        self.count(&nsp, Some(request), None, deadline);
                    }
                }
            }
            ClusterMessage::SocketsJoin { to, rooms, .. } => {
                let payload = wire::sockets_rooms(uid, true, &to, &rooms);
                self.publish(ns.request.clone(), payload);
            }
            ClusterMessage::SocketsLeave { to, rooms, .. } => {
                let payload = wire::sockets_rooms(uid, false, &to, &rooms);
                self.publish(ns.request.clone(), payload);
            }
            ClusterMessage::DisconnectSockets { to, close, .. } => {
                let payload = wire::disconnect(uid, &to, close);
                self.publish(ns.request.clone(), payload);
            }
            ClusterMessage::FetchSockets { to, request, .. } => {
                let payload = wire::fetch(uid, &request, &to);
                let deadline = later(now, self.config.requests_timeout);
                self.open_request(&nsp, &request, Awaits::Sockets, deadline);
                self.count(&nsp, Some(request), Some(payload), deadline);
            }
            ClusterMessage::ServerSideEmit {
                name,
                args,
                request,
                ..
            } => {
                let payload = wire::server_side(uid, request.as_ref(), &name, &args);
                match request {
                    None => self.publish(ns.request.clone(), payload),
                    Some(request) => {
                        let deadline = later(now, self.config.requests_timeout);
                        self.open_request(&nsp, &request, Awaits::ServerSide, deadline);
                        self.count(&nsp, Some(request), Some(payload), deadline);
                    }
                }
            }
            ClusterMessage::Response {
                request, answer, ..
            } => {
                let payload = match &answer {
                    ClusterAnswer::Sockets(sockets) => wire::sockets_answer(&request, sockets),
                    ClusterAnswer::ServerSideAck(v) => wire::server_side_answer(&request, v),
                    ClusterAnswer::ClientCount(n) => wire::client_count(&request, *n),
                    ClusterAnswer::BroadcastAck(args) => wire::broadcast_ack(&request, args),
                    // The adapter's own answer, never the server's.
                    ClusterAnswer::Nodes(_) => return,
                };
                self.publish(ns.response.clone(), payload);
            }
        }
    }

    /// Asks how many nodes serve `nsp`, this one included (the official
    /// `serverCount()`): the answer comes as [`Event::ServerCount`], unless
    /// Redis does not give it within the requests timeout.
    pub fn server_count(&mut self, now: Instant, nsp: &str) {
        let now = self.clock(now);
        self.add_namespace(nsp);
        let deadline = later(now, self.config.requests_timeout);
        self.count(nsp, None, None, deadline);
    }

    /// Moves messages between the server and the adapter until neither
    /// has one for the other: the server's
    /// [`poll_cluster`](socketio::Server::poll_cluster) to
    /// [`send`](Self::send), and the adapter's messages for the server to
    /// its [`handle_cluster`](socketio::Server::handle_cluster). Drain
    /// both machines afterwards. [`poll_event`](Self::poll_event) then has
    /// no [`Event::Cluster`] left.
    pub fn exchange(&mut self, now: Instant, server: &mut socketio::Server) {
        loop {
            let mut moved = false;
            while let Some(m) = server.poll_cluster() {
                self.send(now, m);
                moved = true;
            }
            while let Some(m) = self.to_server.pop_front() {
                server.handle_cluster(now, m);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn publish(&mut self, channel: String, payload: Bytes) {
        if self.link_state(Link::Publisher) == LinkState::Up {
            self.stats.published = self.stats.published.saturating_add(1);
            self.commands
                .push_back(RedisCommand::Publish { channel, payload });
            return;
        }
        let bytes = self.backlog_bytes.saturating_add(payload.len());
        if self.backlog.len() < self.config.max_backlog && bytes <= self.config.max_backlog_bytes {
            self.backlog_bytes = bytes;
            self.backlog.push_back((channel, payload));
            self.stats.backlog = self.backlog.len();
            return;
        }
        self.stats.dropped = self.stats.dropped.saturating_add(1);
        if !std::mem::replace(&mut self.dropping, true) {
            self.events.push_back(Event::Dropped {
                total: self.stats.dropped,
            });
        }
    }

    fn open_request(&mut self, nsp: &str, request: &RequestId, awaits: Awaits, deadline: Instant) {
        self.open.insert(
            request.clone(),
            Open {
                nsp: nsp.to_owned(),
                awaits,
                deadline,
            },
        );
        self.timers
            .push(Reverse((deadline, Timer::Request(request.clone()))));
    }

    /// Asks how many nodes will answer `request`; `held` is published
    /// once that is known, if any other will.
    fn count(
        &mut self,
        nsp: &str,
        request: Option<RequestId>,
        held: Option<Bytes>,
        deadline: Instant,
    ) {
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        let asked = self.link_state(Link::Publisher) == LinkState::Up;
        if asked {
            if let Some(ns) = self.namespaces.get(nsp) {
                self.commands.push_back(RedisCommand::NumSub {
                    token,
                    channel: ns.request.clone(),
                });
            }
        }
        self.counts.insert(
            token,
            Count {
                nsp: nsp.to_owned(),
                request,
                held,
                deadline,
                asked,
            },
        );
        self.timers.push(Reverse((deadline, Timer::Count(token))));
    }

    // ----- time and outputs -----------------------------------------------

    /// Forgets requests whose time is up, and asks again for connections
    /// whose delay has passed. Cheap, and harmless early or twice.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Request(id) => {
                    if self.open.get(&id).is_some_and(|o| o.deadline == at) {
                        self.open.remove(&id);
                    }
                }
                Timer::Count(token) => {
                    if self.counts.get(&token).is_some_and(|c| c.deadline == at) {
                        self.counts.remove(&token);
                    }
                }
                Timer::Retry(link) => {
                    let slot = &mut self.links[link.index()];
                    if slot.state == LinkState::Down && slot.retry_at == Some(at) {
                        slot.state = LinkState::Connecting;
                        slot.retry_at = None;
                        self.commands.push_back(RedisCommand::Connect(link));
                    }
                }
            }
        }
    }

    /// The next command for the driver to carry out on Redis.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<RedisCommand> {
        self.clock(now);
        self.commands.pop_front()
    }

    /// The next event: messages for the server first.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        self.clock(now);
        if let Some(m) = self.to_server.pop_front() {
            return Some(Event::Cluster(m));
        }
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }
}

/// A namespace's subscriptions, as the official makes them.
fn subscribe(ns: &Namespace, commands: &mut VecDeque<RedisCommand>) {
    commands.push_back(RedisCommand::PSubscribe {
        pattern: format!("{}*", ns.broadcast),
    });
    commands.push_back(RedisCommand::Subscribe {
        channels: vec![
            ns.request.clone(),
            ns.response.clone(),
            format!("{}{}#", ns.response, ns.uid),
        ],
    });
}

crate::machine::by_inherent_methods!(RedisAdapter: Machine<RedisCommand, Event>);
