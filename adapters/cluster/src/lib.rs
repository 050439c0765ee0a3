//! wsio on many cores and many machines, on tokio.
//!
//! * [`redis`]: [`RedisLink`], the Redis connections of
//!   [`wsio::cluster::RedisAdapter`]: a wsio node in a Redis cluster, with
//!   Node nodes of `@socket.io/redis-adapter` 8.3 or without.
//! * [`bus`]: [`LocalBus`], the cluster of the machines of one process:
//!   their cluster messages go straight from one to the others.
//! * [`workers`]: the multi-core server: N machines on N threads, each
//!   owning its connections, a connection handed to the machine its
//!   session id names.
//!
//! Both cluster links are [`Sidecar`]s of the `wsio-adapter` server loop,
//! moving the server's cluster messages
//! ([`poll_cluster`](wsio::socketio::Server::poll_cluster),
//! [`handle_cluster`](wsio::socketio::Server::handle_cluster)): an
//! application is written once and runs on one core, many cores or many
//! machines.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bus;
pub mod redis;
mod redis_tasks;
pub mod workers;

pub use bus::LocalBus;
pub use redis::RedisLink;
pub use wsio_adapter::Sidecar;

/// How a server machine `M` lends its Socket.IO server to a cluster link
/// (`SocketIo::server`, or a function of the application's machine).
pub type ServerOf<M> = fn(&mut M) -> &mut wsio::socketio::Server;
