//! The server loop: one future that owns the machine and every connection.
//!
//! # Theory of operation
//!
//! The loop is one task. Each connection's stream is polled with a waker
//! that names the connection (`wake.rs`), so a wake-up puts that one
//! connection on the ready list. A round of the loop runs the commands
//! from handles, serves the ready connections (write what waits, then
//! read), accepts, runs the machine's timer, and writes what the round
//! batched; after each input it drains the machine (transmits, then events,
//! until both are empty).
//!
//! The driver rules (issue 19):
//!
//! * The loop keeps no output of its own (`wsio::machine`,
//!   "Backpressure"). A drain's transmits for a connection are batched for
//!   one vectored write at the end of the round, or at once past
//!   `WRITE_BATCH` bytes; what a full socket does not take goes back to the
//!   machine (`handle_write_blocked`), which holds that connection's output
//!   against its one bound (`engineio::Config::max_send_queue`, 1 MiB),
//!   decodes none of its input, and drops it past the bound or its
//!   `send_timeout`. When the socket's waker fires the machine hears
//!   `handle_writable` and its held output comes out first.
//! * A full socket is waited on (its waker), never spun on; while a
//!   connection's socket is full, nothing more is read from it.
//! * While the application lets too many events wait, nothing is read or
//!   accepted at all.
//! * A connection the peer closed is dropped as soon as what is queued
//!   for it is written (its descriptor is released at once); one the
//!   machine closed is shut (FIN) and read until the peer closes too, at
//!   most `Options::linger`, so our last bytes are not lost to a reset.
//! * An accept error is logged once per burst and waited out with a
//!   back-off (10 ms, doubling to 1 s); the listener never ends.
//! * Shutdown: stop accepting, let the machine close every session, write
//!   what is queued, close what is left, return.

use std::{
    collections::VecDeque,
    future::Future,
    io::{self, IoSlice},
    net::SocketAddr,
    ops::ControlFlow,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::{Buf, Bytes};
use futures_channel::{mpsc, oneshot};
use futures_core::Stream as _;
use wsio::{
    engineio::{ConnId, Transmit},
    machine::drain,
};

use crate::{
    app::{Cmd, Events, Handle, Queue, Response, Shared, lock},
    machine::{Machine, Serve},
    runtime::{Listener, Sleep, Stream},
    sidecar::Sidecar,
    wake::{ConnWaker, IdMap, Ready},
};

/// Limits and timings of the loop. What may wait for a slow peer is the
/// machine's to bound (`engineio::Config::max_send_queue`,
/// `ws::Config::max_send_queue`), not the loop's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Most events waiting for the application's [`Events`] before the
    /// server stops reading. Default 1024.
    pub event_backlog: usize,
    /// How long a graceful shutdown may take before what is left is
    /// dropped. Default 5 s.
    pub shutdown_grace: Duration,
    /// How long a connection the machine closed is read (and discarded)
    /// while waiting for the peer to close too. Default 1 s.
    pub linger: Duration,
    /// The size of the one read buffer shared by all connections.
    /// Default 64 KiB.
    pub read_buffer: usize,
    /// The capacity of the handles' command channel. Default 1024.
    pub commands: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            event_backlog: 1024,
            shutdown_grace: Duration::from_secs(5),
            linger: Duration::from_secs(1),
            read_buffer: 64 * 1024,
            commands: 1024,
        }
    }
}

impl Options {
    /// Sets [`event_backlog`](Self::event_backlog).
    pub fn event_backlog(mut self, n: usize) -> Self {
        self.event_backlog = n.max(2);
        self
    }
    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }
    /// Sets [`linger`](Self::linger).
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }
}

/// Reads from one connection before the others get a turn.
const MAX_READS: usize = 4;
/// Connections accepted per round.
const MAX_ACCEPTS: usize = 64;
/// Commands run per round.
const MAX_COMMANDS: usize = 256;
/// Rounds per poll before the loop yields to other tasks.
const ROUNDS: usize = 32;
/// Buffers per vectored write.
const MAX_IOV: usize = 64;
/// Bytes batched for one connection before they are written without
/// waiting for the end of the round: what the loop holds of a connection's
/// output is at most this plus one transmit.
const WRITE_BATCH: usize = 64 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

enum Io {
    Stream(Box<dyn Stream>),
    /// An embedded upgrade whose stream has not come yet.
    Attaching,
    /// An embedded request waiting for its answer.
    Embedded(oneshot::Sender<Response>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Open,
    /// Write what is queued, then shut the write side.
    Closing,
    /// Shut; input is read and discarded until the peer closes.
    Lingering,
}

struct Conn {
    io: Io,
    wake: Arc<ConnWaker>,
    waker: Waker,
    /// This round's transmits, not yet offered to the socket (and, once
    /// the machine has let the connection go, what is left of its last
    /// bytes).
    batch: VecDeque<Bytes>,
    batched: usize,
    /// The peer has not closed its side.
    reading: bool,
    /// The socket is full (or an upgraded stream has not come yet): the
    /// machine holds the output, the waker is armed.
    blocked: bool,
    dirty: bool,
    phase: Phase,
    /// The machine still knows this connection.
    known: bool,
}

type Callback<M> = Box<dyn FnMut(&mut M, <M as Machine>::Event, Instant) + Send>;

/// A server: the machine, its connections and its listener, as one
/// future. Await it (or spawn it) to serve; it returns after a graceful
/// shutdown ([`Handle::shutdown`]).
pub struct Server<M: Serve> {
    machine: M,
    opts: Options,
    listener: Option<Box<dyn Listener>>,
    local_addr: Option<SocketAddr>,
    sleep: Box<dyn Sleep>,
    armed: Option<Instant>,
    commands: mpsc::Receiver<Cmd<M>>,
    tx: mpsc::Sender<Cmd<M>>,
    on_event: Option<Callback<M>>,
    events: Option<Shared<M::Event>>,
    sidecar: Option<Box<dyn Sidecar<M>>>,
    conns: IdMap<Conn>,
    ready: Arc<Ready>,
    woken: Vec<ConnId>,
    dirty: Vec<ConnId>,
    lingering: VecDeque<(Instant, ConnId)>,
    buf: Vec<u8>,
    backoff: Duration,
    accept_paused: Option<Instant>,
    accept_errors: u64,
    paused: bool,
    shutdown: Option<Instant>,
}

impl<M: Serve> std::fmt::Debug for Server<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("conns", &self.conns.len())
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl<M: Serve> Server<M> {
    /// A server for `machine` on `listener` (`None`: connections come only
    /// from an embedding HTTP server, through a [`Handle`]), timed by
    /// `sleep`.
    pub fn new(machine: M, listener: Option<Box<dyn Listener>>, sleep: Box<dyn Sleep>) -> Self {
        Self::with_options(machine, listener, sleep, Options::default())
    }

    /// Like [`new`](Self::new), with options.
    pub fn with_options(
        machine: M,
        listener: Option<Box<dyn Listener>>,
        sleep: Box<dyn Sleep>,
        opts: Options,
    ) -> Self {
        let (tx, commands) = mpsc::channel(opts.commands);
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        Server {
            machine,
            listener,
            local_addr,
            sleep,
            armed: None,
            commands,
            tx,
            on_event: None,
            events: None,
            sidecar: None,
            conns: IdMap::default(),
            ready: Arc::default(),
            woken: Vec::new(),
            dirty: Vec::new(),
            lingering: VecDeque::new(),
            buf: vec![0; opts.read_buffer.max(1024)],
            backoff: BACKOFF_MIN,
            accept_paused: None,
            accept_errors: 0,
            paused: false,
            shutdown: None,
            opts,
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The options.
    pub fn options(&self) -> Options {
        self.opts
    }

    /// A handle for commands from other tasks.
    pub fn handle(&self) -> Handle<M> {
        Handle::new(self.tx.clone())
    }

    /// The machine, to set it up before serving.
    pub fn machine(&mut self) -> &mut M {
        &mut self.machine
    }

    /// Runs `f` on every event, inside the machine's task, with the machine
    /// itself: commands issued there cost nothing more than the machine's
    /// own call. Takes precedence over [`events`](Self::events).
    pub fn on_event(mut self, f: impl FnMut(&mut M, M::Event, Instant) + Send + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// Runs `sidecar` beside the machine (a cluster adapter): see
    /// [`Sidecar`].
    pub fn with_sidecar(mut self, sidecar: impl Sidecar<M>) -> Self {
        self.sidecar = Some(Box::new(sidecar));
        self
    }

    /// The stream of events, for an application that reacts from its own
    /// task (answering through a [`Handle`]). Events are dropped while
    /// neither this nor [`on_event`](Self::on_event) is used.
    pub fn events(&mut self) -> Events<M::Event> {
        let queue = self.events.get_or_insert_with(|| {
            Arc::new(Mutex::new(Queue {
                items: VecDeque::new(),
                consumer: None,
                closed: false,
                resume_below: None,
            }))
        });
        Events {
            queue: queue.clone(),
            ready: self.ready.clone(),
        }
    }

    /// How many connections the loop holds (open, closing or lingering).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    // ----- the machine ----------------------------------------------------

    /// Drains the machine ([`drain`]): transmits to the connections,
    /// events to the application; then the sidecar's exchange, and again
    /// while that gave the machine input.
    fn drain(&mut self, now: Instant) {
        let Server {
            machine,
            conns,
            dirty,
            lingering,
            on_event,
            events,
            paused,
            opts,
            sidecar,
            ..
        } = self;
        let mut out = Out {
            conns,
            dirty,
            lingering,
            linger: opts.linger,
        };
        let backlog = opts.event_backlog;
        loop {
            drain(
                machine,
                now,
                |m, t| {
                    out.transmit(m, now, t);
                    ControlFlow::Continue(())
                },
                |m, ev| dispatch(on_event, events, paused, backlog, m, now, ev),
            );
            let fed = sidecar.as_mut().is_some_and(|s| s.exchange(machine, now));
            if !fed {
                break;
            }
        }
    }

    /// Polls the sidecar; drains the machine when it did anything.
    fn poll_sidecar(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(s) = &mut self.sidecar else {
            return false;
        };
        let busy = s.poll(cx, &mut self.machine, now);
        if busy {
            self.drain(now);
        }
        busy
    }

    /// The peer closed (or the connection failed): the machine hears it,
    /// then the connection goes once what is queued is written.
    fn eof(&mut self, now: Instant, conn: ConnId, failed: bool) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.reading = false;
        if failed || c.phase == Phase::Lingering {
            let known = c.known;
            self.conns.remove(&conn);
            if known {
                self.machine.handle_eof(now, conn);
                self.drain(now);
            }
            return;
        }
        let known = std::mem::replace(&mut c.known, false);
        if c.phase == Phase::Open {
            c.phase = Phase::Closing;
            self.lingering.push_back((now + self.opts.linger, conn));
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(conn);
        }
        if known {
            self.machine.handle_eof(now, conn);
            self.drain(now);
        }
    }

    fn register(&mut self, conn: ConnId, io: Io) {
        let wake = ConnWaker::new(conn, self.ready.clone());
        let waker = Waker::from(wake.clone());
        let reading = matches!(io, Io::Stream(_));
        self.conns.insert(
            conn,
            Conn {
                io,
                wake,
                waker,
                batch: VecDeque::new(),
                batched: 0,
                reading,
                blocked: false,
                dirty: false,
                phase: Phase::Open,
                known: true,
            },
        );
    }

    // ----- a round ------------------------------------------------------

    fn commands(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut busy = false;
        for _ in 0..MAX_COMMANDS {
            let cmd = match Pin::new(&mut self.commands).poll_next(cx) {
                Poll::Ready(Some(cmd)) => cmd,
                _ => break,
            };
            busy = true;
            match cmd {
                Cmd::Run(f) => f(&mut self.machine, now),
                Cmd::Request(f, reply) => {
                    let conn = f(&mut self.machine, now);
                    self.register(conn, Io::Embedded(reply));
                    // Polled once so that a client that leaves is noticed.
                    if let Some(c) = self.conns.get(&conn) {
                        c.wake.queue();
                    }
                }
                Cmd::Upgrade(f, reply) => {
                    let verdict = f(&mut self.machine, now);
                    if let Ok((conn, _)) = &verdict {
                        self.register(*conn, Io::Attaching);
                    }
                    if let Err(Ok((conn, _))) = reply.send(verdict) {
                        self.conns.remove(&conn);
                        self.machine.handle_eof(now, conn);
                    }
                }
                Cmd::Attach(conn, stream) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        if matches!(c.io, Io::Attaching) {
                            c.io = Io::Stream(stream);
                            c.reading = true;
                            c.wake.queue();
                            // What came before the stream was given back.
                            if std::mem::replace(&mut c.blocked, false) && c.known {
                                self.machine.handle_writable(now, conn);
                            }
                        }
                    }
                }
                Cmd::Gone(conn) => {
                    if let Some(c) = self.conns.remove(&conn) {
                        if c.known {
                            self.machine.handle_eof(now, conn);
                        }
                    }
                }
                Cmd::Shutdown => self.begin_shutdown(now),
            }
            self.drain(now);
        }
        busy
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(now + self.opts.shutdown_grace);
        // Closing the listening socket refuses new connections at once.
        self.listener = None;
        self.machine.shutdown(now);
    }

    /// Serves the connections whose streams woke up.
    fn serve_ready(&mut self, now: Instant) -> bool {
        let mut woken = std::mem::take(&mut self.woken);
        self.ready.take(&mut woken);
        let busy = !woken.is_empty();
        for conn in woken.drain(..) {
            self.serve(now, conn);
        }
        self.woken = woken;
        busy
    }

    fn serve(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.wake.clear();
        match &mut c.io {
            Io::Stream(_) => {}
            Io::Attaching => return,
            Io::Embedded(tx) => {
                let mut cx = Context::from_waker(&c.waker);
                if tx.poll_canceled(&mut cx).is_ready() {
                    let known = c.known;
                    self.conns.remove(&conn);
                    if known {
                        self.machine.handle_eof(now, conn);
                        self.drain(now);
                    }
                }
                return;
            }
        }
        if c.blocked && c.known && c.phase == Phase::Open {
            // The socket may take bytes again: the machine's held output
            // comes out first, and is written before anything is read.
            c.blocked = false;
            self.machine.handle_writable(now, conn);
            self.drain(now);
            self.write_out(now, conn);
        } else if c.blocked || c.phase == Phase::Closing {
            self.write_out(now, conn);
        }
        self.read(now, conn);
    }

    /// Reads what a connection has to say, unless its socket is full or
    /// the application is behind; stops at `Pending` (which arms the
    /// waker) or after `MAX_READS` reads (then it is queued again).
    fn read(&mut self, now: Instant, conn: ConnId) {
        let mut buf = std::mem::take(&mut self.buf);
        for _ in 0..MAX_READS {
            let Some(c) = self.conns.get_mut(&conn) else {
                break;
            };
            let lingering = c.phase == Phase::Lingering;
            if !c.reading || c.blocked || (self.paused && !lingering) {
                break;
            }
            let Io::Stream(s) = &mut c.io else {
                break;
            };
            let mut cx = Context::from_waker(&c.waker);
            match s.poll_read(&mut cx, &mut buf) {
                Poll::Pending => {
                    self.buf = buf;
                    return;
                }
                Poll::Ready(Ok(0)) => {
                    self.eof(now, conn, false);
                    break;
                }
                Poll::Ready(Ok(n)) => {
                    if lingering || !c.known {
                        continue;
                    }
                    self.machine.handle_input(now, conn, &buf[..n]);
                    self.drain(now);
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(_)) => {
                    self.eof(now, conn, true);
                    break;
                }
            }
        }
        self.buf = buf;
        // Out of turns (or paused, or blocked: then a wake-up or resume
        // brings it back): look again next round if still readable.
        if let Some(c) = self.conns.get(&conn) {
            let lingering = c.phase == Phase::Lingering;
            if c.reading && !c.blocked && (!self.paused || lingering) {
                c.wake.queue();
            }
        }
    }

    /// Writes a connection's batch without waiting: what a full socket
    /// leaves goes back to the machine (or, once the machine has let the
    /// connection go, stays for the waker), an error drops the connection,
    /// and a finished close shuts the write side.
    fn write_out(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let was_blocked = c.blocked;
        match offer(&mut self.machine, now, conn, c) {
            Offered::Failed => {
                self.eof(now, conn, true);
                self.conns.remove(&conn);
                return;
            }
            Offered::HandedBack => {
                // The machine may have dropped the connection over it.
                self.drain(now);
                return;
            }
            Offered::Kept => return,
            Offered::All => {}
        }
        if was_blocked && c.reading {
            // Reading stopped while the socket was full.
            c.wake.queue();
        }
        if c.phase == Phase::Closing {
            let Io::Stream(s) = &mut c.io else {
                return;
            };
            let mut cx = Context::from_waker(&c.waker);
            match s.poll_shutdown(&mut cx) {
                Poll::Pending => c.blocked = true,
                Poll::Ready(_) if c.reading => {
                    c.phase = Phase::Lingering;
                    c.wake.queue();
                }
                Poll::Ready(_) => {
                    self.conns.remove(&conn);
                }
            }
        }
    }

    /// Writes the round's batches; true if writing them made the machine
    /// queue more (a round more is needed).
    fn flush(&mut self, now: Instant) -> bool {
        let mut dirty = std::mem::take(&mut self.dirty);
        for conn in dirty.drain(..) {
            if self.conns.get(&conn).is_some_and(|c| c.dirty && !c.blocked) {
                self.write_out(now, conn);
            } else if let Some(c) = self.conns.get_mut(&conn) {
                c.dirty = false;
            }
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
            false
        } else {
            true
        }
    }

    fn accept(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if self.paused || self.accept_paused.is_some_and(|t| t > now) {
            return false;
        }
        self.accept_paused = None;
        let mut busy = false;
        for _ in 0..MAX_ACCEPTS {
            let Some(listener) = &mut self.listener else {
                return busy;
            };
            match listener.poll_accept(cx) {
                Poll::Pending => break,
                Poll::Ready(Ok((stream, peer))) => {
                    busy = true;
                    if self.accept_errors > 0 {
                        log::warn!(
                            "wsio: accepting again after {} failed accepts",
                            self.accept_errors
                        );
                        self.accept_errors = 0;
                    }
                    self.backoff = BACKOFF_MIN;
                    let conn = self.machine.accept(now, peer);
                    self.register(conn, Io::Stream(stream));
                    if let Some(c) = self.conns.get(&conn) {
                        c.wake.queue();
                    }
                    self.drain(now);
                }
                Poll::Ready(Err(e)) => {
                    busy = true;
                    if self.accept_errors == 0 {
                        log::warn!("wsio: accept failed ({e}); backing off and retrying");
                    }
                    self.accept_errors += 1;
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) {
                        continue;
                    }
                    // Out of descriptors or memory: the pending connection
                    // stays in the backlog, so retrying at once would spin.
                    self.accept_paused = Some(now + self.backoff);
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    break;
                }
            }
        }
        busy
    }

    fn timers(&mut self, now: Instant) -> bool {
        let mut busy = false;
        if self.machine.poll_timeout().is_some_and(|d| d <= now) {
            busy = true;
            self.machine.handle_timeout(now);
            self.drain(now);
        }
        // A closed connection gets `linger` for its last bytes and the
        // peer's FIN together.
        while let Some(&(at, conn)) = self.lingering.front() {
            if at > now {
                break;
            }
            self.lingering.pop_front();
            if self
                .conns
                .get(&conn)
                .is_some_and(|c| c.phase != Phase::Open)
            {
                self.conns.remove(&conn);
            }
        }
        if self.paused {
            let resumed = self
                .events
                .as_ref()
                .is_none_or(|q| lock(q).resume_below.is_none());
            if resumed {
                self.paused = false;
                busy = true;
                for c in self.conns.values() {
                    if c.reading {
                        c.wake.queue();
                    }
                }
            }
        }
        busy
    }

    /// During a shutdown: whether the loop is done (everything closed, or
    /// the grace period over).
    fn shutdown_done(&mut self, now: Instant) -> bool {
        let Some(deadline) = self.shutdown else {
            return false;
        };
        if now >= deadline {
            return true;
        }
        if !self.machine.is_idle() {
            return false;
        }
        // Sessions are gone: close the connections left (idle keep-alive
        // ones) once their bytes are out.
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Open)
            .map(|(id, _)| *id)
            .collect();
        for conn in open {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.phase = Phase::Closing;
                c.reading = false;
                if !c.blocked {
                    self.write_out(now, conn);
                }
            }
        }
        self.conns.values().all(|c| c.phase == Phase::Lingering)
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.machine.poll_timeout(),
            self.sidecar.as_ref().and_then(|s| s.poll_timeout()),
            self.lingering.front().map(|(t, _)| *t),
            self.accept_paused,
            self.shutdown,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn finish(&mut self) {
        self.conns.clear();
        self.listener = None;
        if let Some(q) = &self.events {
            let mut q = lock(q);
            q.closed = true;
            if let Some(w) = q.consumer.take() {
                w.wake();
            }
        }
    }

    /// One poll of the loop.
    fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ready.register(cx.waker());
        for _ in 0..ROUNDS {
            let now = Instant::now();
            let mut busy = self.commands(cx, now);
            busy |= self.serve_ready(now);
            busy |= self.accept(cx, now);
            busy |= self.timers(now);
            busy |= self.poll_sidecar(cx, now);
            busy |= self.flush(now);
            if self.shutdown_done(now) {
                self.finish();
                return Poll::Ready(Ok(()));
            }
            if busy {
                continue;
            }
            match self.next_deadline() {
                Some(d) => {
                    if self.armed != Some(d) {
                        self.sleep.reset(d);
                        self.armed = Some(d);
                    }
                    if self.sleep.poll_sleep(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.armed = None;
                    // The deadline passed: the next round runs what is due.
                    if d > Instant::now() {
                        return Poll::Pending;
                    }
                }
                None => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Hands an event to the application: its callback, or the [`Events`]
/// queue (which pauses reading once `backlog` events wait).
fn dispatch<M: Serve>(
    on_event: &mut Option<Callback<M>>,
    events: &Option<Shared<<M as Machine>::Event>>,
    paused: &mut bool,
    backlog: usize,
    machine: &mut M,
    now: Instant,
    ev: <M as Machine>::Event,
) {
    if let Some(f) = on_event {
        f(machine, ev, now);
        return;
    }
    let Some(q) = events else {
        return;
    };
    let mut q = lock(q);
    q.items.push_back(ev);
    if let Some(w) = q.consumer.take() {
        w.wake();
    }
    if q.items.len() >= backlog && !*paused {
        *paused = true;
        q.resume_below = Some(backlog / 2);
    }
}

/// The connections, as a drain's transmits see them.
struct Out<'a> {
    conns: &'a mut IdMap<Conn>,
    dirty: &'a mut Vec<ConnId>,
    lingering: &'a mut VecDeque<(Instant, ConnId)>,
    linger: Duration,
}

impl Out<'_> {
    fn transmit<M: Serve>(&mut self, machine: &mut M, now: Instant, t: Transmit) {
        match t {
            Transmit::Data { conn, data } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if c.phase != Phase::Open || data.is_empty() {
                    return;
                }
                if c.blocked || matches!(c.io, Io::Attaching) {
                    // Nothing can be written now: the machine keeps it.
                    c.blocked = true;
                    machine.handle_write_blocked(now, conn, data);
                    return;
                }
                c.batched += data.len();
                c.batch.push_back(data);
                if c.batched >= WRITE_BATCH {
                    c.dirty = false;
                    if matches!(offer(machine, now, conn, c), Offered::Failed) {
                        // The drain goes on; the machine hears the end now.
                        self.conns.remove(&conn);
                        machine.handle_error(now, conn, "write failed");
                    }
                } else if !c.dirty {
                    c.dirty = true;
                    self.dirty.push(conn);
                }
            }
            Transmit::Response { conn, head, body } => {
                if let Some(Conn {
                    io: Io::Embedded(tx),
                    ..
                }) = self.conns.remove(&conn)
                {
                    let _ = tx.send((head, body));
                }
            }
            Transmit::Close { conn } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.known = false;
                match c.io {
                    // A full socket's close drops it, unwritten bytes and
                    // all: its peer is not reading them.
                    Io::Stream(_) if c.blocked && c.phase == Phase::Open => {
                        self.conns.remove(&conn);
                    }
                    Io::Stream(_) => {
                        if c.phase == Phase::Open {
                            c.phase = Phase::Closing;
                            self.lingering.push_back((now + self.linger, conn));
                        }
                        if !c.dirty && !c.blocked {
                            c.dirty = true;
                            self.dirty.push(conn);
                        }
                    }
                    Io::Attaching | Io::Embedded(_) => {
                        self.conns.remove(&conn);
                    }
                }
            }
        }
    }
}

/// How [`offer`] left a connection.
enum Offered {
    /// The socket took the whole batch.
    All,
    /// The socket is full; the rest went back to the machine.
    HandedBack,
    /// The socket is full; the rest stays in the batch (the machine has
    /// let the connection go).
    Kept,
    /// The write failed: the connection is over.
    Failed,
}

/// Offers `c`'s batch to its socket without waiting. What a full socket
/// does not take goes back to the machine, piece by piece in order, and the
/// connection is blocked until its waker fires.
fn offer<M: Serve>(machine: &mut M, now: Instant, conn: ConnId, c: &mut Conn) -> Offered {
    c.dirty = false;
    let s = match &mut c.io {
        Io::Stream(s) => s,
        Io::Attaching => return Offered::Kept,
        Io::Embedded(_) => {
            c.batch.clear();
            c.batched = 0;
            return Offered::All;
        }
    };
    let mut cx = Context::from_waker(&c.waker);
    c.blocked = false;
    while !c.batch.is_empty() {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        for (slot, b) in iov.iter_mut().zip(c.batch.iter()) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        match s.poll_write_vectored(&mut cx, &iov[..n]) {
            Poll::Ready(Ok(0)) => return Offered::Failed,
            Poll::Ready(Ok(mut n)) => {
                c.batched = c.batched.saturating_sub(n);
                while n > 0 {
                    let Some(front) = c.batch.front_mut() else {
                        break;
                    };
                    if n >= front.len() {
                        n -= front.len();
                        c.batch.pop_front();
                    } else {
                        front.advance(n);
                        n = 0;
                    }
                }
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(_)) => return Offered::Failed,
            Poll::Pending => {
                c.blocked = true;
                if !c.known || c.phase != Phase::Open {
                    return Offered::Kept;
                }
                c.batched = 0;
                for rest in c.batch.drain(..) {
                    machine.handle_write_blocked(now, conn, rest);
                }
                return Offered::HandedBack;
            }
        }
    }
    Offered::All
}

impl<M: Serve> Future for Server<M> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_serve(cx)
    }
}

// The loop never pins its fields: moving it between polls is fine.
impl<M: Serve> Unpin for Server<M> {}

impl<M: Serve> Drop for Server<M> {
    fn drop(&mut self) {
        self.finish();
    }
}
