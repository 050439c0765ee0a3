//! The Socket.IO client on any runtime: [`Client`], a cloneable handle on
//! a `socketio::Client` machine that one driver future ([`ClientDriver`])
//! runs, and the [`Events`](crate::Events) it hears.
//!
//! # Theory of operation
//!
//! The driver is one future that owns the machine and its connections. The
//! machine asks for connections (`ClientTransmit::Connect`), bytes to write
//! (`Data`) and closes (`Close`); the driver opens them through the
//! runtime's [`Connector`] (TLS included), writes and reads them, and feeds
//! the machine what it reads, the end of a stream (`handle_eof`) and
//! failures (`handle_error`). HTTP, keep-alive, WebSockets, the heartbeat,
//! reconnection and the send buffer are the machine's; the driver runs
//! `machine::drain` after every input and command.
//!
//! * The driver keeps no output of its own (`wsio::machine`,
//!   "Backpressure"): a round's transmits are written without waiting, and
//!   what a full socket (or one still connecting) does not take goes back
//!   to the machine (`handle_write_blocked`), which holds it in its
//!   bounded write buffer; nothing is read from that connection until it
//!   is writable again (`handle_writable`).
//! * Commands from handles cross a bounded channel and run in the driver,
//!   in order. While a connection is blocked, no command is taken: emits
//!   wait for room.
//! * Events go to the [`Events`](crate::Events) stream; while `event_backlog` of them wait
//!   there, nothing more is read (a client that stops listening stops the
//!   connection, whose heartbeat then ends it). Once the stream is dropped,
//!   events are dropped too.
//! * Acks awaited as futures, and namespaces awaited by [`Client::socket`],
//!   are answered by the driver from the machine's events (the stream does
//!   not see those acks).
//! * [`Client::close`], or dropping every handle, leaves every namespace
//!   and closes the connection; the driver ends once the machine is closed
//!   and every connection gone, at most `close_grace` later.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::Future,
    io::{self, IoSlice},
    ops::ControlFlow,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Buf, Bytes};
use futures_channel::{mpsc, oneshot};
use futures_core::Stream as _;
use wsio::{
    engineio::{ClientTransmit, ConnId, TransportMode},
    machine::drain,
    socketio::{self, ClientConfig, ClientEvent, ClientState, ClientUsageError, NspId, Value},
};

use crate::{
    app::{Shared, lock},
    runtime::{Connecting, Connector, Sleep, Stream},
    wake::Ready,
};

/// What a client call can fail with.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not an `http`, `https`, `ws` or `wss` URL.
    Url(String),
    /// No secure randomness for session keys and masks.
    Entropy(String),
    /// The call was not valid now.
    Usage(ClientUsageError),
    /// The arguments do not serialise as Socket.IO arguments.
    Typed(socketio::TypedError),
    /// The server refused the namespace (its `connect_error` payload).
    Refused(Value),
    /// No connection could be made (and reconnection is off or gave up).
    ConnectFailed(String),
    /// The namespace did not connect in time.
    Timeout,
    /// The acknowledgement did not come in time.
    AckTimeout,
    /// The socket disconnected before the acknowledgement came.
    AckLost,
    /// The client is closed.
    Closed,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Url(u) => write!(f, "invalid Socket.IO URL: {u}"),
            ClientError::Entropy(e) => write!(f, "no secure randomness: {e}"),
            ClientError::Usage(e) => write!(f, "{e}"),
            ClientError::Typed(e) => write!(f, "{e}"),
            ClientError::Refused(v) => write!(f, "the server refused the namespace: {v:?}"),
            ClientError::ConnectFailed(why) => write!(f, "could not connect: {why}"),
            ClientError::Timeout => f.write_str("timed out"),
            ClientError::AckTimeout => f.write_str("no acknowledgement in time"),
            ClientError::AckLost => {
                f.write_str("the socket disconnected before the acknowledgement")
            }
            ClientError::Closed => f.write_str("the client is closed"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<ClientUsageError> for ClientError {
    fn from(e: ClientUsageError) -> Self {
        ClientError::Usage(e)
    }
}

/// Options of [`connect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The auth payload of the URL's namespace (an object).
    pub auth: Option<Value>,
    /// The machine's options (transports, reconnection, path, query...).
    /// Its `Host` header is taken from the URL, and the URL's query is
    /// added to its own.
    pub config: ClientConfig,
    /// How long [`connect`] and [`Client::socket`] wait for a namespace.
    /// Default 20 s.
    pub connect_timeout: Duration,
    /// Most events waiting in [`Events`](crate::Events) before nothing more is read.
    /// Default 1024.
    pub event_backlog: usize,
    /// The capacity of the handles' command channel. Default 256.
    pub commands: usize,
    /// How long [`Client::close`] lets the goodbyes leave. Default 2 s.
    pub close_grace: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            auth: None,
            config: ClientConfig::new(""),
            connect_timeout: Duration::from_secs(20),
            event_backlog: 1024,
            commands: 256,
            close_grace: Duration::from_secs(2),
        }
    }
}

impl ClientOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`auth`](Self::auth).
    pub fn auth(mut self, auth: Value) -> Self {
        self.auth = Some(auth);
        self
    }
    /// Sets [`config`](Self::config).
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }
    /// Changes [`config`](Self::config) in place.
    pub fn configure(mut self, f: impl FnOnce(ClientConfig) -> ClientConfig) -> Self {
        self.config = f(self.config);
        self
    }
    /// Sets the transports (polling, WebSocket, or polling then upgrade).
    pub fn transports(mut self, mode: TransportMode) -> Self {
        self.config.engine.mode = mode;
        self
    }
    /// Adds a query parameter to every request.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.config
            .engine
            .query
            .push((key.to_owned(), value.to_owned()));
        self
    }
    /// Turns reconnection on or off.
    pub fn reconnection(mut self, on: bool) -> Self {
        self.config.reconnection = on;
        self
    }
    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`event_backlog`](Self::event_backlog).
    pub fn event_backlog(mut self, n: usize) -> Self {
        self.event_backlog = n.max(2);
        self
    }
}

type AckReply = oneshot::Sender<Result<Vec<Value>, ClientError>>;
type JoinReply = oneshot::Sender<Result<NspId, ClientError>>;
type Cmd = Box<dyn FnOnce(&mut Core, Instant) + Send>;

/// What the driver's commands work on.
struct Core {
    io: socketio::Client,
    acks: HashMap<(NspId, u64), AckReply>,
    joins: Vec<(NspId, JoinReply)>,
    closers: Vec<oneshot::Sender<()>>,
    stopping: Option<Instant>,
    close_grace: Duration,
}

impl Core {
    fn begin_close(&mut self, now: Instant) {
        if self.stopping.is_none() {
            self.io.close(now);
            self.stopping = Some(now + self.close_grace);
        }
    }
}

/// Answers what waits on `ev`; gives it back when the application must
/// hear it.
fn route(
    acks: &mut HashMap<(NspId, u64), AckReply>,
    joins: &mut Vec<(NspId, JoinReply)>,
    reconnection: bool,
    ev: ClientEvent,
) -> Option<ClientEvent> {
    let answer = |joins: &mut Vec<(NspId, JoinReply)>,
                  which: &dyn Fn(NspId) -> bool,
                  r: Result<(), ClientError>| {
        let mut i = 0;
        while let Some((nsp, _)) = joins.get(i) {
            if which(*nsp) {
                let (nsp, tx) = joins.swap_remove(i);
                let _ = tx.send(r.clone().map(|()| nsp));
            } else {
                i += 1;
            }
        }
    };
    match ev {
        ClientEvent::Ack { nsp, id, args } => match acks.remove(&(nsp, id)) {
            Some(tx) => {
                let _ = tx.send(Ok(args));
                None
            }
            None => Some(ClientEvent::Ack { nsp, id, args }),
        },
        ClientEvent::AckTimeout { nsp, id } => match acks.remove(&(nsp, id)) {
            Some(tx) => {
                let _ = tx.send(Err(ClientError::AckTimeout));
                None
            }
            None => Some(ev),
        },
        ClientEvent::AckLost { nsp, id } => match acks.remove(&(nsp, id)) {
            Some(tx) => {
                let _ = tx.send(Err(ClientError::AckLost));
                None
            }
            None => Some(ev),
        },
        ClientEvent::Connect { nsp, .. } => {
            answer(joins, &|n| n == nsp, Ok(()));
            Some(ev)
        }
        ClientEvent::ConnectError { nsp, ref data } => {
            answer(
                joins,
                &|n| n == nsp,
                Err(ClientError::Refused(data.clone())),
            );
            Some(ev)
        }
        ClientEvent::OpenError {
            ref reason,
            ref error,
        } if !reconnection => {
            let why = match error {
                Some(e) => e.to_string(),
                None => format!("{reason:?}"),
            };
            answer(joins, &|_| true, Err(ClientError::ConnectFailed(why)));
            Some(ev)
        }
        ClientEvent::ReconnectFailed => {
            let failed = ClientError::ConnectFailed("reconnection failed".into());
            answer(joins, &|_| true, Err(failed));
            Some(ev)
        }
        ev => Some(ev),
    }
}

/// Reads from one connection before the others get a turn.
const MAX_READS: usize = 4;
/// Commands run per round.
const MAX_COMMANDS: usize = 64;
/// Rounds per poll before the driver yields to other tasks.
const ROUNDS: usize = 32;
/// Buffers per vectored write.
const MAX_IOV: usize = 64;

enum LinkIo {
    Connecting(Connecting),
    Open(Box<dyn Stream>),
}

/// One connection the machine asked for.
struct Link {
    io: LinkIo,
    /// This round's bytes, not yet offered to the socket (and, once
    /// closing, what is left of the last ones).
    queue: VecDeque<Bytes>,
    /// The machine holds this connection's output: its socket was full,
    /// or not open yet.
    blocked: bool,
    /// The machine closed it: write what is queued, shut it, drop it.
    closing: bool,
    /// The peer has not ended its side.
    reading: bool,
}

/// The driver of a [`Client`]: spawn it on the runtime (the runtime
/// crates' `connect` do). It ends once the client is closed.
pub struct ClientDriver {
    core: Core,
    connector: Arc<dyn Connector>,
    host: String,
    port: u16,
    secure: bool,
    links: BTreeMap<ConnId, Link>,
    commands: mpsc::Receiver<Cmd>,
    events: Shared<ClientEvent>,
    ready: Arc<Ready>,
    sleep: Box<dyn Sleep>,
    armed: Option<Instant>,
    buf: Vec<u8>,
    event_backlog: usize,
    paused: bool,
}

impl std::fmt::Debug for ClientDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientDriver")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl ClientDriver {
    /// Drains the machine: transmits to the connections, events to the
    /// waiting futures and the application.
    fn drain(&mut self, now: Instant) {
        let ClientDriver {
            core,
            connector,
            host,
            port,
            secure,
            links,
            events,
            event_backlog,
            paused,
            ..
        } = self;
        let Core {
            io, acks, joins, ..
        } = core;
        let reconnection = io.config().reconnection;
        drain(
            io,
            now,
            |io, t| {
                match t {
                    ClientTransmit::Connect { conn } => {
                        let io = LinkIo::Connecting(connector.connect(host, *port, *secure));
                        links.insert(
                            conn,
                            Link {
                                io,
                                queue: VecDeque::new(),
                                blocked: false,
                                closing: false,
                                reading: true,
                            },
                        );
                    }
                    ClientTransmit::Data { conn, data } => {
                        if let Some(l) = links.get_mut(&conn) {
                            if l.closing || data.is_empty() {
                            } else if l.blocked || matches!(l.io, LinkIo::Connecting(_)) {
                                // Nothing can be written now: the machine
                                // keeps it.
                                l.blocked = true;
                                io.handle_write_blocked(now, conn, data);
                            } else {
                                l.queue.push_back(data);
                            }
                        }
                    }
                    ClientTransmit::Close { conn } => {
                        if let Some(l) = links.get_mut(&conn) {
                            l.closing = true;
                        }
                    }
                }
                ControlFlow::Continue(())
            },
            |_, ev| {
                if let Some(ev) = route(acks, joins, reconnection, ev) {
                    deliver(events, paused, *event_backlog, ev);
                }
            },
        );
    }

    fn commands(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut busy = false;
        for _ in 0..MAX_COMMANDS {
            if self.backed_up() {
                break;
            }
            match Pin::new(&mut self.commands).poll_next(cx) {
                Poll::Ready(Some(cmd)) => cmd(&mut self.core, now),
                Poll::Ready(None) => {
                    // Every handle is gone: nobody can close it later.
                    if self.core.stopping.is_some() {
                        break;
                    }
                    self.core.begin_close(now);
                }
                Poll::Pending => break,
            }
            busy = true;
            self.drain(now);
        }
        busy
    }

    fn backed_up(&self) -> bool {
        self.links
            .values()
            .any(|l| l.blocked && matches!(l.io, LinkIo::Open(_)))
    }

    /// A connection is gone on its own: the machine hears why, unless it
    /// had closed it.
    fn failed(&mut self, now: Instant, conn: ConnId, why: &str) {
        if let Some(l) = self.links.remove(&conn) {
            if !l.closing {
                self.core.io.handle_error(now, conn, why);
                self.drain(now);
            }
        }
    }

    fn serve(&mut self, cx: &mut Context<'_>, now: Instant, conn: ConnId) -> bool {
        let Some(link) = self.links.get_mut(&conn) else {
            return false;
        };
        let mut busy = false;
        if let LinkIo::Connecting(f) = &mut link.io {
            if link.closing && link.queue.is_empty() {
                self.links.remove(&conn);
                return true;
            }
            match f.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(stream)) => {
                    link.io = LinkIo::Open(stream);
                    busy = true;
                    link.blocked = false;
                    self.core.io.handle_writable(now, conn);
                    self.drain(now);
                }
                Poll::Ready(Err(e)) => {
                    self.failed(now, conn, &e.to_string());
                    return true;
                }
            }
        }
        let Some(link) = self.links.get_mut(&conn) else {
            return busy;
        };
        if link.blocked && !link.closing {
            // Its socket may take bytes again: the held output comes out
            // first. A socket still full gives it straight back (the
            // runtime's waker wakes the driver when it drains).
            link.blocked = false;
            self.core.io.handle_writable(now, conn);
            self.drain(now);
        }
        let Some(link) = self.links.get_mut(&conn) else {
            return busy;
        };
        match write_out(cx, link) {
            Err(e) => {
                self.failed(now, conn, &e.to_string());
                return true;
            }
            Ok(wrote) => busy |= wrote,
        }
        if !link.queue.is_empty() && !link.closing {
            link.blocked = true;
            for rest in link.queue.drain(..) {
                self.core.io.handle_write_blocked(now, conn, rest);
            }
            self.drain(now);
            return busy;
        }
        let Some(link) = self.links.get_mut(&conn) else {
            return busy;
        };
        if link.closing {
            if link.queue.is_empty() {
                let LinkIo::Open(s) = &mut link.io else {
                    return busy;
                };
                if s.poll_shutdown(cx).is_ready() {
                    self.links.remove(&conn);
                    busy = true;
                }
            }
            return busy;
        }
        busy | self.read(cx, now, conn)
    }

    /// Reads what a connection has to say, unless the application is
    /// behind.
    fn read(&mut self, cx: &mut Context<'_>, now: Instant, conn: ConnId) -> bool {
        let mut buf = std::mem::take(&mut self.buf);
        let mut busy = false;
        for _ in 0..MAX_READS {
            if self.paused {
                break;
            }
            let Some(link) = self.links.get_mut(&conn) else {
                break;
            };
            let LinkIo::Open(s) = &mut link.io else {
                break;
            };
            if link.closing || !link.reading || link.blocked {
                break;
            }
            match s.poll_read(cx, &mut buf) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => {
                    link.reading = false;
                    self.core.io.handle_eof(now, conn);
                    self.drain(now);
                    busy = true;
                    break;
                }
                Poll::Ready(Ok(n)) => {
                    self.core
                        .io
                        .handle_input(now, conn, buf.get(..n).unwrap_or_default());
                    self.drain(now);
                    busy = true;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.failed(now, conn, &e.to_string());
                    busy = true;
                    break;
                }
            }
        }
        self.buf = buf;
        busy
    }

    fn finished(&self, now: Instant) -> bool {
        self.core.stopping.is_some_and(|deadline| {
            now >= deadline
                || (self.core.io.state() == ClientState::Closed && self.links.is_empty())
        })
    }

    fn finish(&mut self) {
        self.links.clear();
        self.core.acks.clear();
        self.core.joins.clear();
        for tx in self.core.closers.drain(..) {
            let _ = tx.send(());
        }
        let mut q = lock(&self.events);
        q.closed = true;
        if let Some(w) = q.consumer.take() {
            w.wake();
        }
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.ready.register(cx.waker());
        for _ in 0..ROUNDS {
            let now = Instant::now();
            let mut busy = self.commands(cx, now);
            let ids: Vec<ConnId> = self.links.keys().copied().collect();
            for conn in ids {
                busy |= self.serve(cx, now, conn);
            }
            if self.core.io.poll_timeout().is_some_and(|t| t <= now) {
                self.core.io.handle_timeout(now);
                self.drain(now);
                busy = true;
            }
            if self.paused && lock(&self.events).resume_below.is_none() {
                self.paused = false;
                busy = true;
            }
            if self.finished(now) {
                self.finish();
                return Poll::Ready(());
            }
            if busy {
                continue;
            }
            let deadline = [self.core.io.poll_timeout(), self.core.stopping]
                .into_iter()
                .flatten()
                .min();
            let Some(d) = deadline else {
                return Poll::Pending;
            };
            if self.armed != Some(d) {
                self.sleep.reset(d);
                self.armed = Some(d);
            }
            if self.sleep.poll_sleep(cx).is_pending() {
                return Poll::Pending;
            }
            self.armed = None;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Future for ClientDriver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_drive(cx)
    }
}

// The driver never pins its fields: moving it between polls is fine.
impl Unpin for ClientDriver {}

impl Drop for ClientDriver {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Hands an event to the application's stream, unless it was dropped.
fn deliver(events: &Shared<ClientEvent>, paused: &mut bool, backlog: usize, ev: ClientEvent) {
    if Arc::strong_count(events) < 2 {
        return;
    }
    let mut q = lock(events);
    q.items.push_back(ev);
    if let Some(w) = q.consumer.take() {
        w.wake();
    }
    if q.items.len() >= backlog && !*paused {
        *paused = true;
        q.resume_below = Some(backlog / 2);
    }
}

/// Writes what a connection has queued, without waiting; true if anything
/// was written.
fn write_out(cx: &mut Context<'_>, link: &mut Link) -> io::Result<bool> {
    let LinkIo::Open(s) = &mut link.io else {
        return Ok(false);
    };
    let mut wrote = false;
    while !link.queue.is_empty() {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        for (slot, b) in iov.iter_mut().zip(link.queue.iter()) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        match s.poll_write_vectored(cx, iov.get(..n).unwrap_or_default()) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(mut n)) => {
                wrote = true;
                while n > 0 {
                    let Some(front) = link.queue.front_mut() else {
                        break;
                    };
                    if n >= front.len() {
                        n -= front.len();
                        link.queue.pop_front();
                    } else {
                        front.advance(n);
                        n = 0;
                    }
                }
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    Ok(wrote)
}

mod api;

pub use api::{Client, connect};
