//! Server drivers on smol: accept TCP connections, move their bytes to
//! and from the one loop that owns the protocol machine, and keep the time.
//! The machine never sees a socket; this file never sees a protocol.
//!
//! Two shapes:
//!
//! * [`Net`]: the machine's loop pulls [`Input`]s (`net.next(deadline)`);
//!   each connection has a reader and a writer task and a channel. Simple;
//!   a copy, a channel message and a cross-task wake-up per read.
//! * [`serve`]: the machine is a [`Handler`] called straight from each
//!   connection's task on one thread (a `LocalExecutor`), with one read
//!   buffer for all connections; answers are written at once, gathered per
//!   connection into one vectored write, and only a connection whose socket
//!   is full keeps bytes queued. One small task per connection and no
//!   buffer of its own.
//!
//! [`Conns`], [`Handler`] and [`Io`] are shared with `super::epoll::serve`,
//! the same loop on a raw level-triggered `epoll` instead of smol's reactor
//! and tasks: what the load benchmarks (`scripts/bench-e2e.sh`) run.
#![allow(dead_code)]

use std::{collections::HashMap, net::SocketAddr, time::Instant};

use bytes::Bytes;
use smol::{
    Timer,
    channel::{Receiver, Sender, unbounded},
    future::FutureExt as _,
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Something that happened on the network.
pub enum Input {
    /// A new connection, already registered under this key.
    Accepted(u64, Option<SocketAddr>),
    /// Bytes read from a connection.
    Data(u64, Vec<u8>),
    /// The peer closed a connection (or it failed).
    Eof(u64),
}

enum Output {
    Data(Bytes),
    Close,
}

/// The network side of a server: keys stand for TCP connections.
pub struct Net {
    tx: Sender<Input>,
    rx: Receiver<Input>,
    writers: HashMap<u64, Sender<Output>>,
    next: u64,
    streams: Receiver<(TcpStream, SocketAddr)>,
}

impl Net {
    /// Starts accepting on `listener`.
    pub fn listen(listener: TcpListener) -> Net {
        let (tx, rx) = unbounded();
        let (stx, srx) = unbounded();
        smol::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                if stx.send((stream, peer)).await.is_err() {
                    break;
                }
            }
        })
        .detach();
        Net {
            tx,
            rx,
            writers: HashMap::new(),
            next: 0,
            streams: srx,
        }
    }

    fn register(&mut self, stream: TcpStream) -> u64 {
        self.next += 1;
        let key = self.next;
        let (wtx, wrx) = unbounded::<Output>();
        self.writers.insert(key, wtx);
        let tx = self.tx.clone();
        let mut reader = stream.clone();
        smol::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Input::Eof(key)).await;
                        break;
                    }
                    Ok(n) => {
                        if tx.send(Input::Data(key, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        })
        .detach();
        let mut writer = stream;
        smol::spawn(async move {
            while let Ok(out) = wrx.recv().await {
                match out {
                    Output::Data(b) => {
                        if writer.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Output::Close => {
                        let _ = super::close(writer).await;
                        return;
                    }
                }
            }
        })
        .detach();
        key
    }

    /// Queues bytes for a connection.
    pub fn write(&mut self, key: u64, data: Bytes) {
        if let Some(w) = self.writers.get(&key) {
            let _ = w.try_send(Output::Data(data));
        }
    }

    /// Closes a connection once its queued bytes are written.
    pub fn close(&mut self, key: u64) {
        if let Some(w) = self.writers.remove(&key) {
            let _ = w.try_send(Output::Close);
        }
    }

    /// The next input, or `None` when `deadline` passes first.
    pub async fn next(&mut self, deadline: Option<Instant>) -> Option<Input> {
        enum Got {
            In(Input),
            Stream(TcpStream, SocketAddr),
            Timeout,
        }
        let timer = async {
            match deadline {
                Some(d) => Timer::at(d).await,
                None => Timer::never().await,
            };
            Got::Timeout
        };
        let inputs = async {
            match self.rx.recv().await {
                Ok(i) => Got::In(i),
                Err(_) => smol::future::pending().await,
            }
        };
        let streams = async {
            match self.streams.recv().await {
                Ok((s, p)) => Got::Stream(s, p),
                Err(_) => smol::future::pending().await,
            }
        };
        match inputs.or(streams).or(timer).await {
            Got::In(i) => Some(i),
            Got::Stream(s, peer) => Some(Input::Accepted(self.register(s), Some(peer))),
            Got::Timeout => None,
        }
    }
}

// ----- serve: the machine called from each connection's task ---------------

/// A hasher for keys the program hands out itself (connection keys,
/// `ConnId`s): one multiplication instead of SipHash, whose protection
/// against keys chosen by an attacker these maps do not need.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A map keyed by ids the program hands out itself (see [`IdHasher`]).
pub type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Something that happened on the network, for a [`Handler`].
pub enum Io<'a> {
    /// A new connection, registered under this key.
    Accepted(u64, Option<SocketAddr>),
    /// Bytes read from a connection (valid for this call only).
    Data(u64, &'a [u8]),
    /// The peer closed a connection (or it failed).
    Eof(u64),
    /// The deadline given by [`Handler::deadline`] may have passed.
    Timeout,
}

/// The protocol side of [`serve`]: told what happened, it writes and closes
/// through its [`Conns`].
pub trait Handler {
    /// Where the handler's writes go.
    fn conns(&mut self) -> &mut Conns;
    /// Something happened.
    fn handle(&mut self, io: Io<'_>);
    /// When [`Io::Timeout`] is next due.
    fn deadline(&self) -> Option<Instant>;
}

/// A waker slot with a flag: how the loop tells a connection's task that
/// its socket must be watched for writing, or closed.
#[derive(Default)]
pub(super) struct Signal {
    set: std::cell::Cell<bool>,
    waker: std::cell::Cell<Option<std::task::Waker>>,
}

impl Signal {
    fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// True if notified since the last call; otherwise remembers `cx`.
    fn poll(&self, cx: &std::task::Context<'_>) -> bool {
        if self.set.replace(false) {
            return true;
        }
        let keep = match self.waker.take() {
            Some(w) if w.will_wake(cx.waker()) => w,
            _ => cx.waker().clone(),
        };
        self.waker.set(Some(keep));
        false
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.poll(cx) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }
}

type Stream = std::rc::Rc<smol::Async<std::net::TcpStream>>;

/// A connection's socket, and how its driver learns that the socket must be
/// watched for writing, or closed.
pub(super) enum Sock {
    /// [`serve`]: the connection's task holds the stream too and waits on
    /// the signal.
    Task {
        stream: Stream,
        signal: std::rc::Rc<Signal>,
    },
    /// `epoll::serve`: the loop watches the socket; the key goes on
    /// [`Conns::woken`].
    Polled {
        stream: std::net::TcpStream,
        /// The events the socket is registered for (0: not registered).
        events: u32,
        /// Input is still wanted (no end of file or error yet).
        reading: bool,
    },
}

impl Sock {
    pub(super) fn stream(&self) -> &std::net::TcpStream {
        match self {
            Sock::Task { stream, .. } => stream.get_ref(),
            Sock::Polled { stream, .. } => stream,
        }
    }
}

pub(super) struct Conn {
    pub(super) sock: Sock,
    /// Bytes not yet written, oldest first.
    pub(super) pending: std::collections::VecDeque<Bytes>,
    /// In the dirty list.
    dirty: bool,
    /// The socket was full: the driver waits for it to take more.
    pub(super) blocked: bool,
    /// Close once `pending` is written.
    pub(super) closing: bool,
}

impl Conn {
    /// Tells the driver to look at this connection again.
    fn wake(&self, key: u64, woken: &mut Vec<u64>) {
        match &self.sock {
            Sock::Task { signal, .. } => signal.notify(),
            Sock::Polled { .. } => woken.push(key),
        }
    }
}

/// The connections of [`serve`], by key: the handler writes and closes
/// through this.
#[derive(Default)]
pub struct Conns {
    pub(super) map: IdMap<u64, Conn>,
    dirty: Vec<u64>,
    /// `Sock::Polled` connections that became blocked, or finished
    /// writing before a close, since the driver last looked.
    pub(super) woken: Vec<u64>,
    next: u64,
}

/// At most this many buffers go into one vectored write.
const MAX_IOV: usize = 64;

impl Conns {
    /// No connections yet.
    pub fn new() -> Conns {
        Conns::default()
    }

    /// Queues bytes for a connection; they are written when the current
    /// input has been handled.
    pub fn write(&mut self, key: u64, data: Bytes) {
        if let Some(c) = self.map.get_mut(&key) {
            if c.closing || data.is_empty() {
                return;
            }
            c.pending.push_back(data);
            if !c.dirty && !c.blocked {
                c.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Closes a connection once its queued bytes are written: shuts the
    /// write side, then drains input for up to a second, so that the last
    /// bytes are read by the peer instead of being lost to a reset.
    pub fn close(&mut self, key: u64) {
        if let Some(c) = self.map.get_mut(&key) {
            c.closing = true;
            if !c.dirty && !c.blocked {
                c.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn register(&mut self, stream: Stream) -> (u64, std::rc::Rc<Signal>) {
        let signal = std::rc::Rc::new(Signal::default());
        let key = self.insert(Sock::Task {
            stream,
            signal: signal.clone(),
        });
        (key, signal)
    }

    /// Adds a connection under a new key (never 0, never reused).
    pub(super) fn insert(&mut self, sock: Sock) -> u64 {
        self.next += 1;
        self.map.insert(
            self.next,
            Conn {
                sock,
                pending: std::collections::VecDeque::new(),
                dirty: false,
                blocked: false,
                closing: false,
            },
        );
        self.next
    }

    /// Writes what every dirty connection has queued.
    pub(super) fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            if let Some(c) = self.map.get_mut(&key) {
                c.dirty = false;
                Self::write_out(key, c, &mut self.woken);
            }
        }
        // Keep the allocation for next time.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Writes what `c` has queued without waiting; a full socket makes the
    /// driver wait for it, a finished close wakes the driver to close.
    pub(super) fn write_out(key: u64, c: &mut Conn, woken: &mut Vec<u64>) {
        use std::io::{IoSlice, Write as _};
        while !c.pending.is_empty() {
            let mut stream = c.sock.stream();
            let res = if c.pending.len() == 1 {
                stream.write(&c.pending[0])
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (slot, b) in iov.iter_mut().zip(c.pending.iter()) {
                    *slot = IoSlice::new(b);
                    n += 1;
                }
                stream.write_vectored(&iov[..n])
            };
            match res {
                Ok(mut n) if n > 0 => {
                    while n > 0 {
                        let Some(front) = c.pending.front_mut() else {
                            break;
                        };
                        if n >= front.len() {
                            n -= front.len();
                            c.pending.pop_front();
                        } else {
                            bytes::Buf::advance(front, n);
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !c.blocked {
                        c.blocked = true;
                        c.wake(key, woken);
                    }
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // The peer is gone: the read side will see it.
                _ => {
                    c.pending.clear();
                    break;
                }
            }
        }
        if c.blocked {
            c.blocked = false;
        }
        if c.closing {
            c.wake(key, woken);
        }
    }
}

struct Driver<H> {
    handler: std::cell::RefCell<H>,
    buf: std::cell::RefCell<Vec<u8>>,
    timer: Signal,
    armed: std::cell::Cell<Option<Instant>>,
}

impl<H: Handler> Driver<H> {
    /// Hands `io` to the handler, then writes what it queued and re-arms
    /// the timer if its deadline moved earlier.
    fn input(&self, io: Io<'_>) {
        let mut h = self.handler.borrow_mut();
        h.handle(io);
        h.conns().flush();
        let deadline = h.deadline();
        if let Some(d) = deadline {
            if self.armed.get().is_none_or(|a| d < a) {
                self.armed.set(Some(d));
                self.timer.notify();
            }
        }
    }
}

/// Binds a listener on `addr` with room for 1024 connections waiting to be
/// accepted (std's default of 128 drops SYNs when a few hundred clients
/// connect at once, which they then retry a second later).
pub fn bind(addr: impl std::net::ToSocketAddrs) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::AsRawFd as _;
    let listener = std::net::TcpListener::bind(addr)?;
    // SAFETY: `listen` on a socket we own; calling it again on a listening
    // socket only changes its backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), 1024) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(listener)
}

/// Runs `handler` on `listener` until the process ends, on this thread.
pub fn serve<H: Handler + 'static>(
    listener: std::net::TcpListener,
    handler: H,
) -> std::io::Result<()> {
    let listener = smol::Async::new(listener)?;
    let driver = std::rc::Rc::new(Driver {
        handler: std::cell::RefCell::new(handler),
        buf: std::cell::RefCell::new(vec![0; 64 * 1024]),
        timer: Signal::default(),
        armed: std::cell::Cell::new(None),
    });
    let ex = std::rc::Rc::new(smol::LocalExecutor::new());
    let timers = ex.spawn(timer_task(driver.clone()));
    let accept = {
        let ex = ex.clone();
        async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(s) => s,
                    // Out of descriptors, say: wait a little and go on.
                    Err(_) => {
                        Timer::after(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.get_ref().set_nodelay(true);
                let stream = std::rc::Rc::new(stream);
                let (key, signal) = driver.handler.borrow_mut().conns().register(stream.clone());
                ex.spawn(conn_task(driver.clone(), key, stream, signal))
                    .detach();
                driver.input(Io::Accepted(key, Some(peer)));
            }
        }
    };
    let result = smol::block_on(ex.run(accept));
    drop(timers);
    result
}

async fn timer_task<H: Handler>(driver: std::rc::Rc<Driver<H>>) {
    loop {
        let deadline = driver.handler.borrow().deadline();
        driver.armed.set(deadline);
        let fired = match deadline {
            Some(d) => {
                async {
                    Timer::at(d).await;
                    true
                }
                .or(async {
                    driver.timer.wait().await;
                    false
                })
                .await
            }
            None => {
                driver.timer.wait().await;
                false
            }
        };
        if fired {
            driver.armed.set(None);
            driver.input(Io::Timeout);
        }
    }
}

/// One connection: reads when its socket is readable, writes when it was
/// full and is writable again, closes when told.
async fn conn_task<H: Handler>(
    driver: std::rc::Rc<Driver<H>>,
    key: u64,
    stream: Stream,
    signal: std::rc::Rc<Signal>,
) {
    use std::{io::Read as _, task::Poll};
    enum Wake {
        Read,
        Write,
        Signal,
    }
    let mut reading = true;
    loop {
        let (blocked, closing) = {
            let mut h = driver.handler.borrow_mut();
            let conns = h.conns();
            match conns.map.get(&key) {
                Some(c) => (c.blocked, c.closing && c.pending.is_empty()),
                None => return,
            }
        };
        if closing {
            driver.handler.borrow_mut().conns().map.remove(&key);
            let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
            drain(&stream).await;
            return;
        }
        let wake = std::future::poll_fn(|cx| {
            if signal.poll(cx) {
                return Poll::Ready(Wake::Signal);
            }
            if blocked && stream.poll_writable(cx).is_ready() {
                return Poll::Ready(Wake::Write);
            }
            if reading && stream.poll_readable(cx).is_ready() {
                return Poll::Ready(Wake::Read);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Signal => {}
            Wake::Write => {
                let mut h = driver.handler.borrow_mut();
                let conns = h.conns();
                if let Some(c) = conns.map.get_mut(&key) {
                    Conns::write_out(key, c, &mut conns.woken);
                }
            }
            Wake::Read => loop {
                let mut buf = driver.buf.borrow_mut();
                match stream.get_ref().read(&mut buf) {
                    Ok(0) => {
                        drop(buf);
                        reading = false;
                        driver.input(Io::Eof(key));
                        break;
                    }
                    Ok(n) => {
                        let full = n == buf.len();
                        driver.input(Io::Data(key, &buf[..n]));
                        if !full {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        drop(buf);
                        reading = false;
                        driver.input(Io::Eof(key));
                        break;
                    }
                }
            },
        }
    }
}

/// Reads and discards until the peer closes, for at most a second.
async fn drain(stream: &smol::Async<std::net::TcpStream>) {
    use std::io::Read as _;
    let read_all = async {
        let mut sink = [0u8; 1024];
        while let Ok(n) = stream.read_with(|s| (&*s).read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    };
    read_all
        .or(async {
            Timer::after(std::time::Duration::from_secs(1)).await;
        })
        .await;
}
