//! Socket.IO on the loop: [`SocketIo`], a `socketio::Server` that also
//! keeps the acks awaited as futures, and the commands of a
//! [`Handle<SocketIo>`].

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    ops::{Deref, DerefMut},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_channel::oneshot;
use serde::Serialize;
use wsio::{
    engineio::{ConnId, Transmit},
    entropy::OsEntropy,
    http::{RequestHead, ResponseHead},
    socketio::{self, Event, SocketId, TypedError, Value},
};

use crate::{
    app::{Closed, Handle},
    machine::{ConnMachine, Embed, Machine, ServerMachine, Shutdown},
};

/// Why an ack awaited as a future did not come.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckError {
    /// No answer within the timeout.
    Timeout,
    /// The socket left before answering.
    Disconnected,
    /// The emit itself was refused (unknown socket, reserved name, full
    /// buffer).
    Usage(socketio::UsageError),
    /// The server has ended.
    Closed,
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::Timeout => f.write_str("no answer in time"),
            AckError::Disconnected => f.write_str("the socket left before answering"),
            AckError::Usage(e) => write!(f, "{e}"),
            AckError::Closed => f.write_str("the server has ended"),
        }
    }
}

impl std::error::Error for AckError {}

type AckReply = oneshot::Sender<Result<Vec<Value>, AckError>>;

/// A `socketio::Server` for the loop. It dereferences to the server, so an
/// event callback calls `io.emit(..)`, `io.join(..)`, `io.of("/").to(..)`
/// directly; it also answers the acks awaited through
/// [`Handle::emit_with_ack`].
pub struct SocketIo {
    server: socketio::Server,
    path: String,
    acks: HashMap<(SocketId, u64), AckReply>,
}

impl std::fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIo")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl SocketIo {
    /// A server with `config`, its ids drawn from the OS's entropy.
    pub fn new(config: socketio::Config) -> io::Result<SocketIo> {
        let entropy = OsEntropy::new().map_err(io::Error::other)?;
        Ok(SocketIo::from(socketio::Server::new(
            config,
            Box::new(entropy),
            Instant::now(),
        )))
    }

    /// The server.
    pub fn server(&mut self) -> &mut socketio::Server {
        &mut self.server
    }

    /// Emits with an ack whose answer (or timeout, or the socket's leaving)
    /// goes to `reply` instead of coming out as an event.
    pub fn emit_with_ack_to(
        &mut self,
        now: Instant,
        socket: SocketId,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
        reply: oneshot::Sender<Result<Vec<Value>, AckError>>,
    ) {
        match self
            .server
            .emit_with_ack(now, socket, event, args, Some(timeout))
        {
            Ok(id) => {
                self.acks.insert((socket, id), reply);
            }
            Err(e) => {
                let _ = reply.send(Err(AckError::Usage(e)));
            }
        }
    }
}

impl From<socketio::Server> for SocketIo {
    fn from(mut server: socketio::Server) -> Self {
        let path = server.engine().config().path.clone();
        SocketIo {
            server,
            path,
            acks: HashMap::new(),
        }
    }
}

impl Deref for SocketIo {
    type Target = socketio::Server;
    fn deref(&self) -> &socketio::Server {
        &self.server
    }
}

impl DerefMut for SocketIo {
    fn deref_mut(&mut self) -> &mut socketio::Server {
        &mut self.server
    }
}

impl Machine for SocketIo {
    type Transmit = Transmit;
    type Event = Event;

    fn handle_timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now)
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.server.poll_transmit(now)
    }
    /// The server's events, but for the answers (or timeouts) of acks
    /// awaited as futures, which go to their futures.
    fn poll_event(&mut self, now: Instant) -> Option<Event> {
        loop {
            let ev = self.server.poll_event(now)?;
            match ev {
                Event::Ack { socket, id, args } => match self.acks.remove(&(socket, id)) {
                    Some(reply) => {
                        let _ = reply.send(Ok(args));
                    }
                    None => return Some(Event::Ack { socket, id, args }),
                },
                Event::AckTimeout { socket, id } => match self.acks.remove(&(socket, id)) {
                    Some(reply) => {
                        let _ = reply.send(Err(AckError::Timeout));
                    }
                    None => return Some(Event::AckTimeout { socket, id }),
                },
                Event::Disconnect { socket, .. } => {
                    if !self.acks.is_empty() {
                        let gone: Vec<(SocketId, u64)> = self
                            .acks
                            .keys()
                            .filter(|(s, _)| *s == socket)
                            .copied()
                            .collect();
                        for key in gone {
                            if let Some(reply) = self.acks.remove(&key) {
                                let _ = reply.send(Err(AckError::Disconnected));
                            }
                        }
                    }
                    return Some(ev);
                }
                ev => return Some(ev),
            }
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.server.poll_timeout()
    }
}

impl ConnMachine for SocketIo {
    fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.server.handle_input(now, conn, bytes)
    }
    fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        self.server.handle_eof(now, conn)
    }
    fn handle_write_blocked(&mut self, now: Instant, conn: ConnId, unwritten: Bytes) {
        self.server.handle_write_blocked(now, conn, unwritten)
    }
    fn handle_writable(&mut self, now: Instant, conn: ConnId) {
        self.server.handle_writable(now, conn)
    }
}

impl ServerMachine for SocketIo {
    fn accept(&mut self, now: Instant, peer: Option<SocketAddr>) -> ConnId {
        self.server.accept(now, peer)
    }
}

impl Shutdown for SocketIo {
    fn shutdown(&mut self, now: Instant) {
        self.server.close_all(now);
    }
    fn is_idle(&self) -> bool {
        self.server.client_count() == 0
    }
}

impl Embed for SocketIo {
    fn paths(&self) -> Vec<String> {
        vec![self.path.clone()]
    }
    fn handle_request(
        &mut self,
        now: Instant,
        head: RequestHead,
        body: Bytes,
        peer: Option<SocketAddr>,
    ) -> ConnId {
        self.server.handle_request(now, head, body, peer)
    }
    fn handle_upgrade(
        &mut self,
        now: Instant,
        head: RequestHead,
        peer: Option<SocketAddr>,
    ) -> Result<(ConnId, ResponseHead), (ResponseHead, Bytes)> {
        self.server.handle_upgrade(now, head, peer)
    }
}

/// Serialises `value` as an argument list: a tuple or an array gives one
/// argument per element, anything else one argument.
pub fn args<T: Serialize + ?Sized>(value: &T) -> Result<Vec<Value>, TypedError> {
    match socketio::to_value(value)? {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        v => Ok(vec![v]),
    }
}

/// The commands of a Socket.IO server, from any task. Each runs inside the
/// machine's task; errors of the command itself (an unknown socket...) are
/// the machine's to report and are dropped here, as an emit to a socket that
/// has just left is in the official server.
impl Handle<SocketIo> {
    /// Emits an event to one socket.
    pub async fn emit(
        &self,
        socket: SocketId,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), Closed> {
        let event = event.to_owned();
        self.run(move |io, _| {
            let _ = io.emit(socket, &event, args);
        })
        .await
    }

    /// Emits an event with typed arguments (see [`args`]).
    pub async fn emit_typed<T: Serialize + ?Sized>(
        &self,
        socket: SocketId,
        event: &str,
        value: &T,
    ) -> Result<(), TypedOrClosed> {
        let args = args(value).map_err(TypedOrClosed::Typed)?;
        self.emit(socket, event, args)
            .await
            .map_err(|_| TypedOrClosed::Closed)
    }

    /// Emits to a room of a namespace (`room` `None`: the whole namespace).
    pub async fn broadcast(
        &self,
        nsp: &str,
        room: Option<&str>,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), Closed> {
        let (nsp, room, event) = (nsp.to_owned(), room.map(str::to_owned), event.to_owned());
        self.run(move |io, _| {
            let mut b = io.of(&nsp);
            if let Some(room) = &room {
                b = b.to(room);
            }
            let _ = b.emit(&event, args);
        })
        .await
    }

    /// Answers an event that asked for it.
    pub async fn ack(&self, socket: SocketId, id: u64, args: Vec<Value>) -> Result<(), Closed> {
        self.run(move |io, _| {
            let _ = io.ack(socket, id, args);
        })
        .await
    }

    /// Emits an event and waits for the client's answer, at most `timeout`.
    pub async fn emit_with_ack(
        &self,
        socket: SocketId,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, AckError> {
        let (tx, rx) = oneshot::channel();
        let event = event.to_owned();
        self.run(move |io, now| io.emit_with_ack_to(now, socket, &event, args, timeout, tx))
            .await
            .map_err(|_| AckError::Closed)?;
        rx.await.unwrap_or(Err(AckError::Closed))
    }

    /// Puts a socket in a room.
    pub async fn join(&self, socket: SocketId, room: &str) -> Result<(), Closed> {
        let room = room.to_owned();
        self.run(move |io, _| {
            let _ = io.join(socket, &room);
        })
        .await
    }

    /// Takes a socket out of a room.
    pub async fn leave(&self, socket: SocketId, room: &str) -> Result<(), Closed> {
        let room = room.to_owned();
        self.run(move |io, _| {
            let _ = io.leave(socket, &room);
        })
        .await
    }

    /// Disconnects a socket (`close`: its whole connection).
    pub async fn disconnect(&self, socket: SocketId, close: bool) -> Result<(), Closed> {
        self.run(move |io, now| {
            let _ = io.disconnect(now, socket, close);
        })
        .await
    }

    /// Answers a request for another path ([`Event::Request`]).
    pub async fn respond(
        &self,
        conn: ConnId,
        head: ResponseHead,
        body: Bytes,
    ) -> Result<(), Closed> {
        self.run(move |io, now| {
            let _ = io.respond(now, conn, head, body);
        })
        .await
    }
}

/// A typed emit that failed: the value does not serialise, or the server
/// has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedOrClosed {
    /// The value cannot be expressed as Socket.IO arguments.
    Typed(TypedError),
    /// The server has ended.
    Closed,
}

impl std::fmt::Display for TypedOrClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypedOrClosed::Typed(e) => write!(f, "{e}"),
            TypedOrClosed::Closed => f.write_str("the server has ended"),
        }
    }
}

impl std::error::Error for TypedOrClosed {}
