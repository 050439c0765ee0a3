//! The adapter's options, commands, events and counters.

use std::time::Duration;

use bytes::Bytes;

use crate::socketio::ClusterMessage;

/// Options of the Redis adapter; the defaults are the official's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The prefix of every channel. Default `socket.io`.
    pub key: String,
    /// How long a fetch or server-side emit of this node waits for other
    /// nodes' answers; use the same timeout for the server's operations.
    /// It is also the timeout of another node's broadcast with
    /// acknowledgements that names none. Default 5 s.
    pub requests_timeout: Duration,
    /// Most publishes kept while the publisher is not up. Default 1024.
    pub max_backlog: usize,
    /// Most bytes of payload kept while the publisher is not up. Default
    /// 4 MiB.
    pub max_backlog_bytes: usize,
    /// The delay before the first new attempt to connect, and the step by
    /// which each further one grows. Default 50 ms.
    pub reconnect_step: Duration,
    /// The longest delay between attempts. Default 500 ms.
    pub reconnect_max: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            key: "socket.io".to_owned(),
            requests_timeout: Duration::from_millis(5000),
            max_backlog: 1024,
            max_backlog_bytes: 4 << 20,
            reconnect_step: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(500),
        }
    }
}

impl RedisConfig {
    /// Sets [`key`](Self::key).
    pub fn key(mut self, key: &str) -> Self {
        key.clone_into(&mut self.key);
        self
    }

    /// Sets [`requests_timeout`](Self::requests_timeout).
    pub fn requests_timeout(mut self, d: Duration) -> Self {
        self.requests_timeout = d;
        self
    }

    /// Sets [`max_backlog`](Self::max_backlog) and
    /// [`max_backlog_bytes`](Self::max_backlog_bytes).
    pub fn max_backlog(mut self, count: usize, bytes: usize) -> Self {
        self.max_backlog = count;
        self.max_backlog_bytes = bytes;
        self
    }

    /// Sets [`reconnect_step`](Self::reconnect_step) and
    /// [`reconnect_max`](Self::reconnect_max).
    pub fn reconnect(mut self, step: Duration, max: Duration) -> Self {
        self.reconnect_step = step;
        self.reconnect_max = max;
        self
    }
}

/// One of the two connections to Redis the adapter needs (a connection
/// that subscribes can send nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// Publishes, and asks `PUBSUB NUMSUB`.
    Publisher,
    /// Subscribes, and delivers messages.
    Subscriber,
}

impl Link {
    pub(super) fn index(self) -> usize {
        match self {
            Link::Publisher => 0,
            Link::Subscriber => 1,
        }
    }
}

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// [`RedisCommand::Connect`] was handed out; its outcome is awaited.
    Connecting,
    /// Connected.
    Up,
    /// Lost or refused; another attempt comes at the deadline.
    Down,
}

/// What the driver does on Redis, in order, each on its link
/// ([`RedisCommand::link`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisCommand {
    /// Open the link's connection, then call
    /// [`handle_connected`](super::RedisAdapter::handle_connected) or
    /// [`handle_disconnected`](super::RedisAdapter::handle_disconnected).
    Connect(Link),
    /// `PUBLISH channel payload`.
    Publish {
        /// The channel.
        channel: String,
        /// The message.
        payload: Bytes,
    },
    /// `PUBSUB NUMSUB channel`: give the count to
    /// [`handle_numsub`](super::RedisAdapter::handle_numsub) with `token`.
    NumSub {
        /// Names this question.
        token: u64,
        /// The channel.
        channel: String,
    },
    /// `SUBSCRIBE channels...`; messages go to
    /// [`handle_message`](super::RedisAdapter::handle_message).
    Subscribe {
        /// The channels.
        channels: Vec<String>,
    },
    /// `PSUBSCRIBE pattern`; messages go to
    /// [`handle_message`](super::RedisAdapter::handle_message) with their channel.
    PSubscribe {
        /// The pattern.
        pattern: String,
    },
    /// `UNSUBSCRIBE channels...`.
    Unsubscribe {
        /// The channels.
        channels: Vec<String>,
    },
    /// `PUNSUBSCRIBE pattern`.
    PUnsubscribe {
        /// The pattern.
        pattern: String,
    },
}

impl RedisCommand {
    /// The link the command goes on.
    pub fn link(&self) -> Link {
        match self {
            RedisCommand::Connect(link) => *link,
            RedisCommand::Publish { .. } | RedisCommand::NumSub { .. } => Link::Publisher,
            _ => Link::Subscriber,
        }
    }
}

/// What the adapter has to say.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A message of another node for the server: pass it to
    /// [`Server::handle_cluster`](crate::socketio::Server::handle_cluster) (or let
    /// [`RedisAdapter::exchange`](super::RedisAdapter::exchange) do it).
    Cluster(ClusterMessage),
    /// The answer to [`server_count`](super::RedisAdapter::server_count).
    ServerCount {
        /// The namespace.
        nsp: String,
        /// The nodes that serve it, this one included.
        count: usize,
    },
    /// Publishes are being dropped: the publisher is not up and the backlog
    /// is full. Said once per outage; [`Stats::dropped`] counts them all.
    Dropped {
        /// Publishes dropped since the adapter started.
        total: u64,
    },
}

/// Counters, since the adapter started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Publishes handed to the driver.
    pub published: u64,
    /// Publishes waiting for the publisher.
    pub backlog: usize,
    /// Publishes dropped because the backlog was full.
    pub dropped: u64,
    /// Messages Redis delivered.
    pub received: u64,
    /// Of those, the ones passed to the server.
    pub delivered: u64,
    /// Of those, the ones not for this node (see the module docs).
    pub ignored: u64,
    /// Of those, the ones that did not decode or had the wrong shape.
    pub malformed: u64,
    /// Of those, requests of a kind this adapter does not serve.
    pub unsupported: u64,
}
