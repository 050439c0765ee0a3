//! [`Server`]: the blocking driver of a server machine.

use std::{
    collections::{HashMap, VecDeque},
    io::{self, Read, Write},
    net::{Shutdown as Half, SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    ops::ControlFlow,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{
    engineio::{ConnId, Transmit},
    machine::{Machine, Shutdown, drain},
};

/// Limits and timings of the blocking [`Server`]. What may wait for a
/// slow peer is the machine's to bound
/// ([`engineio::Config::max_send_queue`](crate::engineio::Config::max_send_queue)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerOptions {
    /// How long a graceful shutdown may take. Default 5 s.
    pub shutdown_grace: Duration,
    /// How long a connection the machine closed is read (and discarded)
    /// while waiting for the peer to close too. Default 1 s.
    pub linger: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            shutdown_grace: Duration::from_secs(5),
            linger: Duration::from_secs(1),
        }
    }
}

impl ServerOptions {
    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }
}

type Command<M> = Box<dyn FnOnce(&mut M, Instant) + Send>;
type Callback<M> = Box<dyn FnMut(&mut M, <M as Machine>::Event, Instant) + Send>;

enum Input<M> {
    Accepted(TcpStream, Option<SocketAddr>),
    Data(ConnId, Vec<u8>),
    Eof(ConnId),
    /// A connection's writer has written all it was given after the
    /// machine took output back.
    Writable(ConnId),
    Run(Command<M>),
    Shutdown,
}

/// What a connection's writer thread shares with the machine's thread.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<Bytes>,
    /// Bytes queued and not yet written (including those being written).
    queued: usize,
    /// Write what is queued, then shut the write side.
    closing: bool,
    /// Drop everything: the connection is over.
    dead: bool,
    /// The machine holds output the writer could not take: the reader
    /// waits, and the writer says when it has caught up.
    blocked: bool,
}

struct Shared {
    outbox: Mutex<Outbox>,
    /// Signals the writer (work to do) and the reader (the socket took
    /// what was queued).
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Conn {
    shared: Arc<Shared>,
    stream: Arc<TcpStream>,
    /// The machine holds this connection's output (since
    /// `handle_write_blocked`, until `handle_writable`).
    held: bool,
    /// Reads that were on their way while it was held: the machine gets
    /// them once it is writable again (the reader stopped after them).
    deferred: Vec<Vec<u8>>,
}

/// A server machine (any [`ServerMachine`](crate::machine::ServerMachine)
/// that can [`Shutdown`]: a `socketio::Server`, an `engineio::Server`) on
/// blocking sockets and std threads: the machine on the thread that calls [`run`](Self::run), an
/// accepting thread, and a reader and a writer thread per connection (small
/// stacks). No async runtime.
///
/// It obeys the rules of the async adapters. It keeps no output of its own
/// ([`machine`](crate::machine), "Backpressure"): a connection's writer is
/// given at most 64 KiB ahead of what the socket took;
/// past that, output goes back to the machine
/// ([`handle_write_blocked`](crate::machine::ConnMachine::handle_write_blocked)),
/// which holds and bounds it, the connection's reader reads nothing more,
/// and once its writer has caught up the machine hears
/// [`handle_writable`](crate::machine::ConnMachine::handle_writable). A
/// close of a blocked connection drops it at once. A connection the peer
/// closed releases its descriptor as soon as its last bytes are written;
/// an accept error is reported once per burst and waited out (10 ms,
/// doubling to 1 s); [`ServerHandle::shutdown`] stops accepting, closes
/// every session, writes what is queued and makes `run` return.
///
/// ```no_run
/// use std::time::Instant;
/// use wsio::{blocking::Server, entropy::OsEntropy, socketio::{self, Event}};
///
/// let io = socketio::Server::new(socketio::Config::default(), Box::new(OsEntropy::new()?), Instant::now());
/// Server::bind("127.0.0.1:3000", io)?
///     .on_event(|io, ev, _now| {
///         if let Event::Event { socket, name, args, .. } = ev {
///             let _ = io.emit(socket, &name, args); // echo
///         }
///     })
///     .run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server<M: Shutdown<Transmit = Transmit> + 'static> {
    machine: M,
    listener: TcpListener,
    opts: ServerOptions,
    on_event: Option<Callback<M>>,
    tx: SyncSender<Input<M>>,
    rx: Receiver<Input<M>>,
    stop: Arc<AtomicBool>,
}

impl<M: Shutdown<Transmit = Transmit> + 'static> std::fmt::Debug for Server<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// A cloneable handle on a running blocking [`Server`], for any thread.
pub struct ServerHandle<M> {
    tx: SyncSender<Input<M>>,
}

impl<M> Clone for ServerHandle<M> {
    fn clone(&self) -> Self {
        ServerHandle {
            tx: self.tx.clone(),
        }
    }
}

impl<M> std::fmt::Debug for ServerHandle<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").finish_non_exhaustive()
    }
}

impl<M> ServerHandle<M> {
    /// Runs `f` on the machine, in its thread, with the present time.
    /// Fails when the server has ended.
    pub fn run(&self, f: impl FnOnce(&mut M, Instant) + Send + 'static) -> Result<(), Ended> {
        self.tx.send(Input::Run(Box::new(f))).map_err(|_| Ended)
    }

    /// Starts a graceful shutdown; [`Server::run`] returns when it is done.
    pub fn shutdown(&self) -> Result<(), Ended> {
        self.tx.send(Input::Shutdown).map_err(|_| Ended)
    }
}

/// The server has ended: the command was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server has ended")]
pub struct Ended;

/// Inputs waiting for the machine's thread: readers wait when it is full
/// (so a flooding peer puts at most this many reads ahead of the others).
const INPUTS: usize = 64;
/// What one read takes.
const READ_CHUNK: usize = 16 * 1024;
/// Stack of the reader and writer threads.
const STACK: usize = 64 * 1024;
/// Most bytes given to a connection's writer and not yet written: past
/// this, output stays with the machine.
const WRITE_WINDOW: usize = 64 * 1024;

impl<M: Shutdown<Transmit = Transmit> + 'static> Server<M> {
    /// A server for `machine` listening on `addr`.
    pub fn bind(addr: impl ToSocketAddrs, machine: M) -> io::Result<Server<M>> {
        Ok(Self::with_listener(
            TcpListener::bind(addr)?,
            machine,
            ServerOptions::default(),
        ))
    }

    /// A server for `machine` on an existing listener, with options.
    pub fn with_listener(listener: TcpListener, machine: M, opts: ServerOptions) -> Server<M> {
        let (tx, rx) = sync_channel(INPUTS);
        Server {
            machine,
            listener,
            opts,
            on_event: None,
            tx,
            rx,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle for commands from other threads.
    pub fn handle(&self) -> ServerHandle<M> {
        ServerHandle {
            tx: self.tx.clone(),
        }
    }

    /// Runs `f` on every event, in the machine's thread, with the machine.
    pub fn on_event(mut self, f: impl FnMut(&mut M, M::Event, Instant) + Send + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// Serves until a graceful shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        let addr = self.listener.local_addr()?;
        let acceptor = {
            let listener = self.listener.try_clone()?;
            let (tx, stop) = (self.tx.clone(), self.stop.clone());
            std::thread::Builder::new()
                .name("wsio-accept".into())
                .spawn(move || accept_loop(&listener, &tx, &stop))?
        };
        let mut conns: HashMap<ConnId, Conn> = HashMap::new();
        let mut shutdown: Option<Instant> = None;
        let writers = Arc::new(AtomicUsize::new(0));
        loop {
            let deadline = [self.machine.poll_timeout(), shutdown]
                .into_iter()
                .flatten()
                .min();
            let input = match super::timeout_until(deadline) {
                Some(wait) => match self.rx.recv_timeout(wait) {
                    Ok(i) => Some(i),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(i) => Some(i),
                    Err(_) => break,
                },
            };
            let now = Instant::now();
            match input {
                None => self.machine.handle_timeout(now),
                Some(Input::Accepted(stream, peer)) => {
                    if shutdown.is_some() {
                        continue;
                    }
                    let conn = self.machine.accept(now, peer);
                    match self.spawn_conn(conn, stream, &writers) {
                        Ok(c) => {
                            conns.insert(conn, c);
                        }
                        Err(_) => self.machine.handle_eof(now, conn),
                    }
                }
                Some(Input::Data(conn, bytes)) => match conns.get_mut(&conn) {
                    Some(c) if c.held => c.deferred.push(bytes),
                    Some(_) => self.machine.handle_input(now, conn, &bytes),
                    None => {}
                },
                Some(Input::Writable(conn)) => {
                    if let Some(c) = conns.get_mut(&conn) {
                        c.held = false;
                        let deferred = std::mem::take(&mut c.deferred);
                        self.machine.handle_writable(now, conn);
                        for bytes in deferred {
                            self.machine.handle_input(now, conn, &bytes);
                        }
                    }
                }
                Some(Input::Eof(conn)) => {
                    if let Some(c) = conns.remove(&conn) {
                        self.machine.handle_eof(now, conn);
                        // What the machine still writes goes out first.
                        self.drain(now, &mut conns, Some((conn, &c)));
                        close(&c.shared);
                        continue;
                    }
                }
                Some(Input::Run(f)) => f(&mut self.machine, now),
                Some(Input::Shutdown) => {
                    if shutdown.is_none() {
                        shutdown = Some(now + self.opts.shutdown_grace);
                        self.stop.store(true, Ordering::Release);
                        // Wakes the accepting thread out of `accept`.
                        let _ = TcpStream::connect(addr);
                        self.machine.shutdown(now);
                    }
                }
            }
            if self.machine.poll_timeout().is_some_and(|d| d <= now) {
                self.machine.handle_timeout(now);
            }
            self.drain(now, &mut conns, None);
            if let Some(deadline) = shutdown {
                if self.machine.is_idle() || now >= deadline {
                    for (_, c) in conns.drain() {
                        close(&c.shared);
                    }
                    break;
                }
            }
        }
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(addr);
        let _ = acceptor.join();
        // The last bytes go out (each writer gives up at the grace period).
        let until = Instant::now() + self.opts.shutdown_grace;
        while writers.load(Ordering::Acquire) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn spawn_conn(
        &self,
        conn: ConnId,
        stream: TcpStream,
        writers: &Arc<AtomicUsize>,
    ) -> io::Result<Conn> {
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::default()),
            cond: Condvar::new(),
        });
        // One descriptor, shared: `&TcpStream` reads and writes.
        let stream = Arc::new(stream);
        let (reader, writer) = (stream.clone(), stream.clone());
        {
            let (shared, tx) = (shared.clone(), self.tx.clone());
            std::thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || read_loop(conn, reader, &shared, &tx))?;
        }
        {
            let (w_shared, w_writers, linger) = (shared.clone(), writers.clone(), self.opts.linger);
            let tx = self.tx.clone();
            writers.fetch_add(1, Ordering::AcqRel);
            let spawned = std::thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || {
                    write_loop(conn, writer, &w_shared, &tx, linger);
                    w_writers.fetch_sub(1, Ordering::AcqRel);
                });
            if let Err(e) = spawned {
                writers.fetch_sub(1, Ordering::AcqRel);
                kill(&shared, &stream);
                return Err(e);
            }
        }
        Ok(Conn {
            shared,
            stream,
            held: false,
            deferred: Vec::new(),
        })
    }

    /// Drains the machine ([`drain`]): transmits to the writers, events to
    /// the application. `closing` is a connection already taken out of
    /// `conns` whose last bytes may still come.
    fn drain(
        &mut self,
        now: Instant,
        conns: &mut HashMap<ConnId, Conn>,
        closing: Option<(ConnId, &Conn)>,
    ) {
        let on_event = &mut self.on_event;
        drain(
            &mut self.machine,
            now,
            |machine, t| {
                match t {
                    Transmit::Data { conn, data } => match conns.get_mut(&conn) {
                        Some(c) => {
                            if let Some(rest) = queue(&c.shared, data) {
                                c.held = true;
                                machine.handle_write_blocked(now, conn, rest);
                            }
                        }
                        // The machine has let it go: its last bytes go if
                        // the writer has room.
                        None => match closing {
                            Some((id, c)) if id == conn => {
                                let _ = queue(&c.shared, data);
                            }
                            _ => {}
                        },
                    },
                    Transmit::Close { conn } => {
                        if let Some(c) = conns.remove(&conn) {
                            if c.shared.lock().blocked {
                                // Its peer is not reading: dropped,
                                // unwritten bytes and all.
                                kill(&c.shared, &c.stream);
                            } else {
                                close(&c.shared);
                            }
                        }
                    }
                    Transmit::Response { .. } => {}
                }
                ControlFlow::Continue(())
            },
            |machine, ev| {
                if let Some(f) = on_event {
                    f(machine, ev, now);
                }
            },
        );
    }
}

/// Gives bytes to a writer; gives them back (and marks the connection
/// blocked) when [`WRITE_WINDOW`] bytes are already on their way.
fn queue(shared: &Shared, data: Bytes) -> Option<Bytes> {
    let mut o = shared.lock();
    if o.dead || o.closing {
        return None;
    }
    if o.blocked || o.queued >= WRITE_WINDOW {
        o.blocked = true;
        return Some(data);
    }
    o.queued += data.len();
    o.queue.push_back(data);
    shared.cond.notify_all();
    None
}

/// The writer writes what is queued, then shuts the write side.
fn close(shared: &Shared) {
    shared.lock().closing = true;
    shared.cond.notify_all();
}

/// Drops the connection now: both threads stop, the descriptor goes.
fn kill(shared: &Shared, stream: &TcpStream) {
    {
        let mut o = shared.lock();
        o.dead = true;
        o.queue.clear();
        o.queued = 0;
    }
    shared.cond.notify_all();
    let _ = stream.shutdown(Half::Both);
}

fn accept_loop<M>(listener: &TcpListener, tx: &SyncSender<Input<M>>, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(10);
    // A burst of failures is reported once: when the first comes, and again
    // only if failures go on a second later.
    let mut reported: Option<Instant> = None;
    let mut failed = 0u64;
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let _ = stream.set_nodelay(true);
                if tx.send(Input::Accepted(stream, Some(peer))).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                failed += 1;
                if reported.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    eprintln!(
                        "wsio: accept failed ({e}); backing off and retrying ({failed} so far)"
                    );
                    reported = Some(Instant::now());
                }
                if e.kind() != io::ErrorKind::ConnectionAborted {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

fn read_loop<M>(conn: ConnId, stream: Arc<TcpStream>, shared: &Shared, tx: &SyncSender<Input<M>>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        {
            // Nothing more is read while the socket will not take what is
            // given to it.
            let mut o = shared.lock();
            while o.blocked && !o.dead && !o.closing {
                o = shared.cond.wait(o).unwrap_or_else(|e| e.into_inner());
            }
            if o.dead {
                return;
            }
        }
        match (&*stream).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if shared.lock().closing {
                    // Lingering: input is read and discarded.
                    continue;
                }
                if tx
                    .send(Input::Data(conn, buf.get(..n).unwrap_or_default().to_vec()))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = tx.send(Input::Eof(conn));
}

fn write_loop<M>(
    conn: ConnId,
    stream: Arc<TcpStream>,
    shared: &Shared,
    tx: &SyncSender<Input<M>>,
    linger: Duration,
) {
    loop {
        let batch: Vec<Bytes> = {
            let mut o = shared.lock();
            while o.queue.is_empty() && !o.closing && !o.dead {
                o = shared.cond.wait(o).unwrap_or_else(|e| e.into_inner());
            }
            if o.dead {
                return;
            }
            if o.queue.is_empty() {
                // Closing, and everything is written.
                break;
            }
            o.queue.drain(..).collect()
        };
        let mut written = 0;
        let mut failed = false;
        for b in &batch {
            if (&*stream).write_all(b).is_err() {
                failed = true;
                break;
            }
            written += b.len();
        }
        let mut o = shared.lock();
        o.queued = o.queued.saturating_sub(written);
        if failed {
            o.dead = true;
            o.queue.clear();
            o.queued = 0;
            drop(o);
            shared.cond.notify_all();
            let _ = stream.shutdown(Half::Both);
            return;
        }
        // Caught up with what was given: the machine's held output may come.
        // It hears so before the reader reads again, so what the reader
        // reads next comes after.
        let caught_up = o.blocked && o.queue.is_empty() && !o.closing;
        if caught_up {
            o.blocked = false;
        }
        drop(o);
        let gone = caught_up && tx.send(Input::Writable(conn)).is_err();
        shared.cond.notify_all();
        if gone {
            return;
        }
    }
    // Our FIN; the reader reads until the peer's, for at most `linger`.
    let _ = stream.shutdown(Half::Write);
    let _ = stream.set_read_timeout(Some(linger.max(Duration::from_millis(1))));
}
