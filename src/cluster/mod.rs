//! Clusters: the adapters that carry a [`socketio::Server`]'s cluster
//! messages to the other nodes.
//!
//! A server in a cluster ([`socketio::Config::cluster`]) hands out what the
//! other nodes must do through
//! [`poll_cluster`](socketio::Server::poll_cluster) and takes theirs through
//! [`handle_cluster`](socketio::Server::handle_cluster). An adapter is a
//! machine between those two calls and a transport:
//!
//! * [`RedisAdapter`]: Redis pub/sub, speaking the protocol of
//!   `@socket.io/redis-adapter` 8.3 byte for byte, so that wsio and Node
//!   servers form one cluster (and `@socket.io/redis-emitter` reaches wsio
//!   sockets). It is sans-IO like every machine here: the driver owns two
//!   Redis connections and carries out its [`RedisCommand`]s.
//!
//! # Driving the Redis adapter
//!
//! One adapter per server. The driver:
//!
//! 1. makes it with [`RedisAdapter::new`], calls
//!    [`add_namespace`](RedisAdapter::add_namespace) for each namespace of
//!    the server (and for each dynamic one when it appears);
//! 2. after any input or command of the server, calls
//!    [`exchange`](RedisAdapter::exchange) (or moves the messages itself:
//!    `poll_cluster` into [`send`](RedisAdapter::send), [`Event::Cluster`]
//!    into `handle_cluster`), then drains both machines;
//! 3. carries out each [`RedisCommand`] on its [`Link`]: `Connect` opens
//!    that connection and reports [`handle_connected`](RedisAdapter::handle_connected)
//!    or [`handle_disconnected`](RedisAdapter::handle_disconnected) (also when
//!    an open one breaks); `Publish`, `NumSub` go on the publisher
//!    (`NumSub`'s count back through
//!    [`handle_numsub`](RedisAdapter::handle_numsub)); the subscriptions on
//!    the subscriber, whose messages (`message` and `pmessage`, with the
//!    message's channel) go to
//!    [`handle_message`](RedisAdapter::handle_message) with the server as
//!    [`Rooms`];
//! 4. calls [`handle_timeout`](RedisAdapter::handle_timeout) at
//!    [`poll_timeout`](RedisAdapter::poll_timeout), and logs
//!    [`Event::Dropped`] and [`stats`](RedisAdapter::stats) as it likes.
//!
//! The adapter is a [`Machine`](crate::machine::Machine) (its transmits
//! are [`RedisCommand`]s), so [`drain`](crate::machine::drain) serves it as
//! it serves the server.
//!
//! A Redis client that reconnects by itself may ignore `Connect` and just
//! report each loss and recovery.
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use wsio::{cluster::{RedisAdapter, RedisCommand, RedisConfig, Link}, entropy::SeededEntropy};
//! use wsio::socketio::{ClusterMessage, Selection};
//!
//! let now = Instant::now();
//! let mut redis = RedisAdapter::new(RedisConfig::default(), Box::new(SeededEntropy::new(1)));
//! redis.add_namespace("/");
//! redis.handle_connected(now, Link::Publisher);
//! redis.handle_connected(now, Link::Subscriber);
//! redis.send(now, ClusterMessage::SocketsJoin {
//!     nsp: "/".into(),
//!     to: Selection::default(),
//!     rooms: vec!["lobby".into()],
//! });
//! let mut published = Vec::new();
//! while let Some(c) = redis.poll_transmit(now) {
//!     if let RedisCommand::Publish { channel, payload } = c {
//!         published.push((channel, payload));
//!     }
//! }
//! let uid = redis.uid("/").unwrap();
//! assert_eq!(published, [(
//!     "socket.io-request#/#".to_owned(),
//!     Bytes::from(format!(r#"{{"uid":"{uid}","type":2,"opts":{{"rooms":[],"except":[]}},"rooms":["lobby"]}}"#)),
//! )]);
//! ```

mod redis;

pub use redis::{Event, Link, LinkState, RedisAdapter, RedisCommand, RedisConfig, Stats};

use crate::socketio;

/// Whether a namespace's room has members on this node: the Redis adapter
/// asks before decoding another node's broadcast to one room.
pub trait Rooms {
    /// Whether any local socket of `nsp` is in `room`.
    fn has_room(&self, nsp: &str, room: &str) -> bool;
}

impl Rooms for socketio::Server {
    fn has_room(&self, nsp: &str, room: &str) -> bool {
        socketio::Server::has_room(self, nsp, room)
    }
}

/// Every room may have members: nothing is skipped before decoding.
impl Rooms for () {
    fn has_room(&self, _: &str, _: &str) -> bool {
        true
    }
}
