//! The messages the nodes of a cluster exchange, and the requests this
//! node waits on.
//!
//! # Theory of operation
//!
//! The machine never talks to another node itself. What the other nodes
//! must do comes out of [`Server::poll_cluster`] as [`ClusterMessage`]s, and
//! what they send comes in through [`Server::handle_cluster`]: an adapter
//! (Redis, or another machine of the same process) carries them. The
//! messages are those of `@socket.io/redis-adapter`: a broadcast (with or
//! without acknowledgements), `REMOTE_JOIN`, `REMOTE_LEAVE`,
//! `REMOTE_DISCONNECT`, `REMOTE_FETCH`, `SERVER_SIDE_EMIT`, and the
//! answers, each tied to its request by a [`RequestId`].
//!
//! A request that wants answers (fetching sockets, a server-side emit with
//! an acknowledgement, a broadcast with acknowledgements) is *open* from
//! the command until it is complete or its deadline passes, whichever is
//! first; either way the application hears one event with what came. How
//! many nodes will answer is the adapter's knowledge: it says so with
//! [`ClusterAnswer::Nodes`] (the Redis adapter asks `PUBSUB NUMSUB`). Until
//! it has, a request cannot complete. Without [`Config::cluster`], or with
//! the `local` flag, nothing is sent and no node is waited for: the event
//! comes at once (or when the local clients have answered).
//!
//! Requests that come in are answered here when the answer is local
//! (sockets, client counts, client acknowledgements), or by the
//! application ([`Server::server_side_reply`]) for a server-side emit.
//! Answers to requests this node does not know (finished, timed out, or
//! someone else's) are ignored.
//!
//! [`Config::cluster`]: super::super::Config::cluster

use std::{
    collections::BTreeMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    super::{Event, SocketId, Value, timer::later},
    Server, Timer,
};

/// The id of a request between nodes: this node's are drawn from its
/// entropy; another node's are echoed as they came.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// An id as another node sent it.
    pub fn new(id: &str) -> Self {
        RequestId(Arc::from(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", &*self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which sockets of a namespace an operation is for: the members of any of
/// `rooms` (none: every socket), less the members of any of `except`. A
/// socket id names the room of that one socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Target rooms; none means the whole namespace.
    pub rooms: Vec<String>,
    /// Rooms excluded.
    pub except: Vec<String>,
}

/// What one node asks the others, or answers them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusterMessage {
    /// Deliver an event to the matching sockets.
    Broadcast {
        /// The namespace.
        nsp: String,
        /// The sockets.
        to: Selection,
        /// Dropped for clients that cannot take it at once.
        volatile: bool,
        /// Whether the sender allowed compression.
        compress: bool,
        /// The event name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
        /// With acknowledgements: the request their answers go to, and how
        /// long the sender waits for them. The receiving node answers
        /// [`ClusterAnswer::ClientCount`] at once, then
        /// [`ClusterAnswer::BroadcastAck`] for each client's answer.
        ack: Option<(RequestId, Duration)>,
    },
    /// The matching sockets join `rooms` (`REMOTE_JOIN`); no answer.
    SocketsJoin {
        /// The namespace.
        nsp: String,
        /// The sockets.
        to: Selection,
        /// The rooms to join.
        rooms: Vec<String>,
    },
    /// The matching sockets leave `rooms` (`REMOTE_LEAVE`); no answer.
    SocketsLeave {
        /// The namespace.
        nsp: String,
        /// The sockets.
        to: Selection,
        /// The rooms to leave.
        rooms: Vec<String>,
    },
    /// The matching sockets are disconnected (`REMOTE_DISCONNECT`); no
    /// answer.
    DisconnectSockets {
        /// The namespace.
        nsp: String,
        /// The sockets.
        to: Selection,
        /// Whether their connections are closed too.
        close: bool,
    },
    /// Describe the matching sockets (`REMOTE_FETCH`): answered with
    /// [`ClusterAnswer::Sockets`].
    FetchSockets {
        /// The namespace.
        nsp: String,
        /// The sockets.
        to: Selection,
        /// Where the answer goes.
        request: RequestId,
    },
    /// An event for the other nodes' applications (`SERVER_SIDE_EMIT`);
    /// with a request, each answers once with
    /// [`ClusterAnswer::ServerSideAck`].
    ServerSideEmit {
        /// The namespace.
        nsp: String,
        /// The event name.
        name: String,
        /// The arguments.
        args: Vec<Value>,
        /// Set when the sender waits for answers.
        request: Option<RequestId>,
    },
    /// An answer to a request.
    Response {
        /// The namespace.
        nsp: String,
        /// The request answered.
        request: RequestId,
        /// The answer.
        answer: ClusterAnswer,
    },
}

/// An answer to a request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusterAnswer {
    /// From the adapter, never from a node: how many other nodes will
    /// answer the request (the Redis adapter: `PUBSUB NUMSUB` less one).
    Nodes(usize),
    /// One node's matching sockets.
    Sockets(Vec<SocketInfo>),
    /// One node's answer to a server-side emit.
    ServerSideAck(Value),
    /// How many of its clients one node sent a broadcast to.
    ClientCount(usize),
    /// One client's answer to a broadcast.
    BroadcastAck(Vec<Value>),
}

/// A socket as [`Event::Fetched`] and [`ClusterAnswer::Sockets`] describe
/// it (the official `RemoteSocket`).
#[derive(Debug, Clone, PartialEq)]
pub struct SocketInfo {
    /// The socket id.
    pub id: String,
    /// The handshake: `headers`, `address`, `xdomain`, `secure`, `url`,
    /// `query` and `auth`, as the official server has them (without the
    /// wall-clock `time` and `issued`, which a machine does not read).
    pub handshake: Value,
    /// Its rooms, its own id-named room first.
    pub rooms: Vec<String>,
    /// The application's data for it ([`Server::set_data`]).
    pub data: Value,
}

/// A server-side event from another node that waits for this node's answer:
/// pass it to [`Server::server_side_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSideReply {
    pub(super) nsp: String,
    pub(super) request: RequestId,
}

/// A request this node waits on, or another node's broadcast whose client
/// answers go back.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) nsp: Arc<str>,
    pub(super) deadline: Instant,
    /// How many other nodes answer; `None` until the adapter says.
    pub(super) nodes: Option<usize>,
    /// How many have.
    pub(super) replied: usize,
    pub(super) kind: RequestKind,
}

#[derive(Debug)]
pub(super) enum RequestKind {
    Fetch(Vec<SocketInfo>),
    ServerSide(Vec<Value>),
    /// A broadcast with acknowledgements made here.
    Broadcast(BroadcastAcks),
    /// Another node's broadcast with acknowledgements, delivered here: the
    /// answers of its recipients go back to it until the deadline.
    Remote {
        ack_id: u64,
        recipients: Vec<SocketId>,
    },
}

#[derive(Debug)]
pub(super) struct BroadcastAcks {
    pub(super) ack_id: u64,
    pub(super) recipients: Vec<SocketId>,
    /// The clients of this node and of every node that reported a count.
    pub(super) expected: usize,
    pub(super) answers: Vec<Vec<Value>>,
}

/// The requests, by id.
pub(super) type Requests = BTreeMap<RequestId, Request>;

/// The characters of a request id (as the Redis adapter's `uid2`).
const ID_CHARS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Server {
    /// The next message for the other nodes of the cluster (only with
    /// [`Config::cluster`](super::super::Config::cluster)); poll it after
    /// every input and command, with `poll_transmit`.
    pub fn poll_cluster(&mut self) -> Option<ClusterMessage> {
        self.cluster_out.pop_front()
    }

    /// A message from another node of the cluster: what it asks is done
    /// here (and answered through [`poll_cluster`](Self::poll_cluster)); an
    /// answer goes to the request it names.
    pub fn handle_cluster(&mut self, now: Instant, msg: ClusterMessage) {
        match msg {
            ClusterMessage::Broadcast {
                nsp,
                to,
                volatile,
                compress,
                name,
                args,
                ack,
            } => {
                let _ = self.remote_broadcast(now, &nsp, &to, volatile, compress, &name, args, ack);
            }
            ClusterMessage::SocketsJoin { nsp, to, rooms } => {
                self.local_sockets_join(&nsp, &to, None, &rooms)
            }
            ClusterMessage::SocketsLeave { nsp, to, rooms } => {
                self.local_sockets_leave(&nsp, &to, None, &rooms)
            }
            ClusterMessage::DisconnectSockets { nsp, to, close } => {
                self.local_disconnect_sockets(now, &nsp, &to, None, close);
            }
            ClusterMessage::FetchSockets { nsp, to, request } => {
                let sockets = self.local_fetch(&nsp, &to, None);
                self.cluster_out.push_back(ClusterMessage::Response {
                    nsp,
                    request,
                    answer: ClusterAnswer::Sockets(sockets),
                });
            }
            ClusterMessage::ServerSideEmit {
                nsp,
                name,
                args,
                request,
            } => {
                let reply = request.map(|request| ServerSideReply {
                    nsp: nsp.clone(),
                    request,
                });
                self.events.push_back(Event::ServerSideEmit {
                    nsp,
                    name,
                    args,
                    reply,
                });
            }
            ClusterMessage::Response {
                request, answer, ..
            } => self.on_answer(&request, answer),
        }
        self.pump(now);
    }

    /// A fresh id for a request of ours.
    pub(super) fn new_request_id(&mut self) -> RequestId {
        loop {
            let mut raw = [0u8; 12];
            self.entropy.fill(&mut raw);
            let id: String = raw
                .iter()
                .map(|b| char::from(ID_CHARS[usize::from(*b) % ID_CHARS.len()]))
                .collect();
            let id = RequestId(Arc::from(id));
            if !self.requests.contains_key(&id) {
                return id;
            }
        }
    }

    /// Opens a request; `cluster` says whether other nodes are asked (the
    /// caller queues the message), otherwise none is waited for.
    pub(super) fn open_request(
        &mut self,
        now: Instant,
        id: RequestId,
        nsp: &str,
        timeout: Duration,
        cluster: bool,
        kind: RequestKind,
    ) {
        let deadline = later(now, timeout);
        self.requests.insert(
            id.clone(),
            Request {
                nsp: Arc::from(nsp),
                deadline,
                nodes: if cluster { None } else { Some(0) },
                replied: 0,
                kind,
            },
        );
        self.timers.push(deadline, Timer::Request(id.clone()));
        self.check_request(&id);
    }

    fn on_answer(&mut self, id: &RequestId, answer: ClusterAnswer) {
        let Some(r) = self.requests.get_mut(id) else {
            return;
        };
        match (&mut r.kind, answer) {
            (RequestKind::Remote { .. }, _) => return,
            (_, ClusterAnswer::Nodes(n)) => r.nodes = Some(n),
            (RequestKind::Fetch(all), ClusterAnswer::Sockets(sockets)) => {
                all.extend(sockets);
                r.replied += 1;
            }
            (RequestKind::ServerSide(all), ClusterAnswer::ServerSideAck(v)) => {
                all.push(v);
                r.replied += 1;
            }
            (RequestKind::Broadcast(b), ClusterAnswer::ClientCount(n)) => {
                b.expected = b.expected.saturating_add(n);
                r.replied += 1;
            }
            (RequestKind::Broadcast(b), ClusterAnswer::BroadcastAck(args)) => b.answers.push(args),
            // An answer of the wrong kind for the request.
            _ => return,
        }
        self.check_request(id);
    }

    /// Ends a request that has everything it waits for.
    pub(super) fn check_request(&mut self, id: &RequestId) {
        let done = self.requests.get(id).is_some_and(|r| {
            let nodes = r.nodes.is_some_and(|n| r.replied >= n);
            match &r.kind {
                RequestKind::Fetch(_) | RequestKind::ServerSide(_) => nodes,
                RequestKind::Broadcast(b) => nodes && b.answers.len() >= b.expected,
                RequestKind::Remote { .. } => false,
            }
        });
        if done {
            self.end_request(id, false);
        }
    }

    /// A request's deadline came up.
    pub(super) fn expire_request(&mut self, id: &RequestId, at: Instant) {
        if self.requests.get(id).is_some_and(|r| r.deadline == at) {
            self.end_request(id, true);
        }
    }

    /// Ends a request with what it has, and forgets the acknowledgements
    /// its recipients still owe.
    fn end_request(&mut self, id: &RequestId, timed_out: bool) {
        let Some(r) = self.requests.remove(id) else {
            return;
        };
        let request = id.clone();
        let event = match r.kind {
            RequestKind::Fetch(sockets) => Event::Fetched {
                request,
                sockets,
                timed_out,
            },
            RequestKind::ServerSide(answers) => Event::ServerSideAcks {
                request,
                answers,
                timed_out,
            },
            RequestKind::Broadcast(b) => {
                self.forget_group_acks(&b.recipients, b.ack_id);
                Event::BroadcastAck {
                    request,
                    answers: b.answers,
                    timed_out,
                }
            }
            RequestKind::Remote { ack_id, recipients } => {
                self.forget_group_acks(&recipients, ack_id);
                return;
            }
        };
        self.events.push_back(event);
    }
}
