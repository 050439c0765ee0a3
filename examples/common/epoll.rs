//! A server driver on a raw, level-triggered Linux `epoll`: one thread, one
//! `epoll` instance, no executor, no timer descriptor, no other thread.
//! What the load benchmarks (`scripts/bench-e2e.sh`) run; the adapters
//! (`wsio-tokio`, `wsio-smol`) are what applications use.
//!
//! Each socket is registered once and its interest changed only when it
//! changes: reading until the peer's end of file, writing while a socket
//! is full. Level-triggered, so a short read goes straight back to
//! `epoll_wait` (the socket is reported again if more arrives) and nothing
//! needs re-arming. Time is `epoll_wait`'s timeout, from
//! [`Handler::deadline`]. What gets written, when, and how connections
//! close are [`Conns`]'.
//!
//! The loop keeps no output of its own (`wsio::machine`, "Backpressure"):
//! what one input's transmits leave unwritten on a full socket goes back to
//! the handler ([`Handler::write_blocked`], then `handle_write_blocked` on
//! the machine, which holds and bounds it), the socket is watched for
//! `EPOLLOUT` only, and [`Handler::writable`] says when it drains.

use bytes::Bytes;
use std::{
    collections::{HashMap, VecDeque},
    io::{self, Read as _},
    net::{SocketAddr, TcpListener, TcpStream},
    ops::ControlFlow,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    time::{Duration, Instant},
};
use wsio::{
    engineio::Transmit,
    machine::{ServerMachine, drain},
};

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
    /// The sockets of these connections are full: each piece is what one
    /// did not take, in order. Nothing is read from them until
    /// [`writable`](Self::writable).
    fn write_blocked(&mut self, rest: Vec<(u64, Bytes)>);
    /// A connection given to [`write_blocked`](Self::write_blocked) takes
    /// bytes again.
    fn writable(&mut self, key: u64);
}

/// A connection's socket as the loop watches it.
struct Sock {
    stream: std::net::TcpStream,
    /// The events the socket is registered for (0: not registered).
    events: u32,
    /// Input is still wanted (no end of file or error yet).
    reading: bool,
}

impl Sock {
    fn stream(&self) -> &std::net::TcpStream {
        &self.stream
    }
}

struct Conn {
    sock: Sock,
    /// This input's bytes not yet written, oldest first (and, once
    /// closing, what is left of the last ones).
    pending: std::collections::VecDeque<Bytes>,
    /// In the dirty list.
    dirty: bool,
    /// The socket was full: the driver waits for it to take more.
    blocked: bool,
    /// Close once `pending` is written.
    closing: bool,
}

impl Conn {
    /// Tells the driver to look at this connection again.
    fn wake(&self, key: u64, woken: &mut Vec<u64>) {
        woken.push(key);
    }
}

/// The connections of [`serve`], by key: the handler writes and closes
/// through this.
#[derive(Default)]
pub struct Conns {
    map: IdMap<u64, Conn>,
    dirty: Vec<u64>,
    /// Connections that became blocked, or finished writing before a
    /// close, since the driver last looked.
    woken: Vec<u64>,
    /// What full sockets did not take, for the handler.
    handed: Vec<(u64, Bytes)>,
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
            if c.blocked {
                self.handed.push((key, data));
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
    /// bytes are read by the peer instead of being lost to a reset. A
    /// blocked connection is dropped at once: its peer is not reading.
    pub fn close(&mut self, key: u64) {
        if let Some(c) = self.map.get_mut(&key) {
            if c.blocked && !c.closing {
                self.map.remove(&key);
                return;
            }
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

    /// Adds a connection under a new key (never 0, never reused).
    fn insert(&mut self, sock: Sock) -> u64 {
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
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            if let Some(c) = self.map.get_mut(&key) {
                c.dirty = false;
                Self::write_out(key, c, &mut self.woken, &mut self.handed);
            }
        }
        // Keep the allocation for next time.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Writes what `c` has queued without waiting; a full socket makes the
    /// driver wait for it (what it did not take goes to `handed`, unless
    /// the connection is closing), a finished close wakes the driver to
    /// close.
    fn write_out(key: u64, c: &mut Conn, woken: &mut Vec<u64>, handed: &mut Vec<(u64, Bytes)>) {
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
                    if !c.closing {
                        handed.extend(c.pending.drain(..).map(|b| (key, b)));
                    }
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

/// The listener's key in `epoll` (connection keys start at 1).
const LISTENER: u64 = 0;
/// Connections accepted per readiness of the listener, so that a flood of
/// them does not starve the connections already open.
const MAX_ACCEPTS: usize = 64;
/// Full buffers read from one connection per readiness.
const MAX_READS: usize = 16;
/// Events taken per `epoll_wait`.
const MAX_EVENTS: usize = 256;
/// How long a closed connection's input is read and discarded.
const DRAIN: Duration = Duration::from_secs(1);
/// How long accepting pauses after an error such as running out of
/// descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

const READ: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
const WRITE: u32 = libc::EPOLLOUT as u32;

/// Runs `handler` on `listener` until the process ends, on this thread.
pub fn serve<H: Handler>(listener: TcpListener, handler: H) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    // SAFETY: `epoll_create1` takes no pointers; a non-negative result is a
    // new descriptor that nothing else owns.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ep` is a fresh descriptor, owned from here on.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    ctl(
        ep.as_raw_fd(),
        libc::EPOLL_CTL_ADD,
        listener.as_raw_fd(),
        libc::EPOLLIN as u32,
        LISTENER,
    )?;
    Loop {
        ep,
        listener,
        handler,
        buf: vec![0; 64 * 1024],
        draining: IdMap::default(),
        drain_due: VecDeque::new(),
        accept_paused: None,
        accept_failing: false,
    }
    .run()
}

struct Loop<H> {
    ep: OwnedFd,
    listener: TcpListener,
    handler: H,
    /// One read buffer for all connections.
    buf: Vec<u8>,
    /// Closed connections whose input is read until the peer closes too.
    draining: IdMap<u64, TcpStream>,
    /// When each of `draining` gives up, in order (stale entries skipped).
    drain_due: VecDeque<(Instant, u64)>,
    /// Accepting failed: the listener is out of `epoll` until then.
    accept_paused: Option<Instant>,
    /// Accepting has failed since the last success (logged once).
    accept_failing: bool,
}

impl<H: Handler> Loop<H> {
    fn run(mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        loop {
            let timeout = self.timeout(Instant::now());
            // SAFETY: `events` is valid for `MAX_EVENTS` entries, which the
            // kernel fills at most.
            let n = unsafe {
                libc::epoll_wait(
                    self.ep.as_raw_fd(),
                    events.as_mut_ptr(),
                    MAX_EVENTS as libc::c_int,
                    timeout,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in &events[..n as usize] {
                // Copies: `epoll_event` is packed on x86_64.
                let (key, flags) = (ev.u64, ev.events);
                if key == LISTENER {
                    self.accept();
                } else if self.draining.contains_key(&key) {
                    self.drain(key);
                } else {
                    if flags & (WRITE | (libc::EPOLLERR | libc::EPOLLHUP) as u32) != 0 {
                        self.writable(key);
                    }
                    if flags & !WRITE != 0 {
                        self.readable(key);
                    }
                }
            }
            self.timers(Instant::now());
        }
    }

    /// Milliseconds until the next thing due, rounded up; -1 for none.
    fn timeout(&mut self, now: Instant) -> libc::c_int {
        while let Some(&(_, key)) = self.drain_due.front() {
            if self.draining.contains_key(&key) {
                break;
            }
            self.drain_due.pop_front();
        }
        let next = [
            self.handler.deadline(),
            self.drain_due.front().map(|&(t, _)| t),
            self.accept_paused,
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            None => -1,
            Some(t) => {
                let wait = t.saturating_duration_since(now);
                let ms = wait.as_millis() + u128::from(wait.subsec_nanos() % 1_000_000 != 0);
                ms.min(libc::c_int::MAX as u128) as libc::c_int
            }
        }
    }

    /// Whatever is due at `now`: the handler's timeout, drains given up,
    /// accepting again.
    fn timers(&mut self, now: Instant) {
        if self.handler.deadline().is_some_and(|d| d <= now) {
            self.input(Io::Timeout);
        }
        while let Some(&(t, key)) = self.drain_due.front() {
            if t > now {
                break;
            }
            self.drain_due.pop_front();
            // Closing the socket takes it out of `epoll`.
            self.draining.remove(&key);
        }
        if self.accept_paused.is_some_and(|t| t <= now) {
            let (ep, fd) = (self.ep.as_raw_fd(), self.listener.as_raw_fd());
            if ctl(ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, LISTENER).is_ok() {
                self.accept_paused = None;
            } else {
                self.accept_paused = Some(now + ACCEPT_PAUSE);
            }
        }
    }

    /// Hands `io` to the handler, writes what it queued, then acts on the
    /// connections that became blocked or finished closing.
    fn input(&mut self, io: Io<'_>) {
        self.handler.handle(io);
        self.flush();
    }

    /// Writes what the handler queued; what full sockets leave goes back to
    /// it (which may queue more), then registrations follow.
    fn flush(&mut self) {
        loop {
            let conns = self.handler.conns();
            conns.flush();
            let handed = std::mem::take(&mut conns.handed);
            if handed.is_empty() {
                break;
            }
            self.handler.write_blocked(handed);
        }
        self.settle();
    }

    fn settle(&mut self) {
        while let Some(key) = self.handler.conns().woken.pop() {
            self.update(key);
        }
    }

    /// Accepts what is waiting, up to `MAX_ACCEPTS`.
    fn accept(&mut self) {
        for _ in 0..MAX_ACCEPTS {
            let (stream, peer) = match accept(self.listener.as_raw_fd()) {
                Ok(s) => s,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                    // Out of descriptors, say: stop watching the listener
                    // for a little while instead of being told at once again.
                    _ => {
                        if !self.accept_failing {
                            eprintln!("accept failed ({e}); backing off and retrying");
                            self.accept_failing = true;
                        }
                        let fd = self.listener.as_raw_fd();
                        if ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, 0, LISTENER).is_ok() {
                            self.accept_paused = Some(Instant::now() + ACCEPT_PAUSE);
                        }
                        return;
                    }
                },
            };
            if self.accept_failing {
                eprintln!("accepting again");
                self.accept_failing = false;
            }
            let _ = stream.set_nodelay(true);
            let conns = self.handler.conns();
            let key = conns.insert(Sock {
                stream,
                events: 0,
                reading: true,
            });
            // Registers the socket; if `epoll` has no room for it, it is
            // dropped (closed) before the handler hears of it.
            self.update(key);
            let conns = self.handler.conns();
            match conns.map.get(&key) {
                Some(c) if c.sock.events == READ => {
                    self.input(Io::Accepted(key, peer));
                }
                _ => {
                    conns.map.remove(&key);
                }
            }
        }
    }

    /// Reads what a connection has to say and hands it to the handler.
    fn readable(&mut self, key: u64) {
        for _ in 0..MAX_READS {
            let Some(c) = self.handler.conns().map.get(&key) else {
                return;
            };
            // Nothing is read while the socket is full.
            if c.blocked {
                return;
            }
            let Sock {
                stream,
                reading: true,
                ..
            } = &c.sock
            else {
                return;
            };
            match (&*stream).read(&mut self.buf) {
                Ok(n) if n > 0 => {
                    let full = n == self.buf.len();
                    self.handler.handle(Io::Data(key, &self.buf[..n]));
                    self.flush();
                    if !full {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // End of file, or the connection failed.
                _ => {
                    let conns = self.handler.conns();
                    if let Some(c) = conns.map.get_mut(&key) {
                        c.sock.reading = false;
                        conns.woken.push(key);
                    }
                    self.input(Io::Eof(key));
                    return;
                }
            }
        }
    }

    /// A full socket takes more: a closing connection writes what is left
    /// of it, any other hears it (and the handler's held bytes come out).
    fn writable(&mut self, key: u64) {
        let conns = self.handler.conns();
        let Some(c) = conns.map.get_mut(&key) else {
            return;
        };
        if !c.blocked {
            return;
        }
        if c.closing {
            Conns::write_out(key, c, &mut conns.woken, &mut conns.handed);
            conns.woken.push(key);
            self.settle();
            return;
        }
        c.blocked = false;
        conns.woken.push(key);
        self.handler.writable(key);
        self.flush();
    }

    /// Brings a connection's registration in line with what it waits for;
    /// once it is closing and has nothing left to write, shuts it down.
    fn update(&mut self, key: u64) {
        let ep = self.ep.as_raw_fd();
        let conns = self.handler.conns();
        let Some(c) = conns.map.get_mut(&key) else {
            return;
        };
        let done = c.closing && c.pending.is_empty();
        let blocked = c.blocked;
        let Sock {
            stream,
            events,
            reading,
        } = &mut c.sock;
        if done {
            let reading = *reading;
            let registered = *events;
            let Some(c) = conns.map.remove(&key) else {
                return;
            };
            let Sock { stream, .. } = c.sock;
            // After the peer's end of file there is nothing to drain and
            // closing sends our FIN: the socket is simply dropped (which
            // also takes it out of `epoll`). Otherwise our FIN now, then
            // input is read and discarded until the peer closes, so that
            // our last bytes are not lost to a reset.
            if reading {
                let _ = stream.shutdown(std::net::Shutdown::Write);
                if registered == READ
                    || ctl(ep, op(registered, READ), stream.as_raw_fd(), READ, key).is_ok()
                {
                    self.draining.insert(key, stream);
                    self.drain_due.push_back((Instant::now() + DRAIN, key));
                }
            }
            return;
        }
        // While the socket is full, nothing more is read from it.
        let want = if blocked {
            WRITE
        } else if *reading {
            READ
        } else {
            0
        };
        if want != *events {
            match ctl(ep, op(*events, want), stream.as_raw_fd(), want, key) {
                Ok(()) => *events = want,
                // Only when the kernel is out of memory; the handler's
                // heartbeat ends such a connection.
                Err(e) => eprintln!("epoll_ctl on connection {key}: {e}"),
            }
        }
    }

    /// Reads and discards a closed connection's input; drops it at the
    /// peer's end of file.
    fn drain(&mut self, key: u64) {
        let Some(stream) = self.draining.get(&key) else {
            return;
        };
        let done = match (&*stream).read(&mut self.buf) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        };
        if done {
            self.draining.remove(&key);
        }
    }
}

/// The `epoll_ctl` operation that changes a registration from `from` to
/// `to` events (0: not registered).
fn op(from: u32, to: u32) -> libc::c_int {
    match (from, to) {
        (0, _) => libc::EPOLL_CTL_ADD,
        (_, 0) => libc::EPOLL_CTL_DEL,
        _ => libc::EPOLL_CTL_MOD,
    }
}

fn ctl(ep: RawFd, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: key };
    // SAFETY: `ev` is a valid event for the duration of the call (the
    // kernel copies it; `EPOLL_CTL_DEL` ignores it); bad descriptors are
    // reported as errors.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Accepts one connection, already non-blocking and close-on-exec (one
/// `accept4` instead of `accept` plus an `ioctl`).
fn accept(listener: RawFd) -> io::Result<(TcpStream, Option<SocketAddr>)> {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage`.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` and `len` are valid for writing and `len` holds the
    // size of `addr`, which the kernel does not exceed.
    let fd = unsafe {
        libc::accept4(
            listener,
            (&raw mut addr).cast::<libc::sockaddr>(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new connected socket that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    Ok((stream, socket_addr(&addr, len)))
}

/// The peer's address as `accept4` wrote it.
fn socket_addr(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let (len, family) = (len as usize, i32::from(addr.ss_family));
    let addr: *const libc::sockaddr_storage = addr;
    match family {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, of
            // which `len` bytes were written; storage is aligned for it.
            let a = unsafe { &*addr.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let a = unsafe { &*addr.cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Runs a server machine on the loop, until the process ends. What a full
/// socket does not take goes back to the machine, which bounds it.
pub fn serve_machine<M: ServerMachine<Transmit = Transmit>>(
    listener: TcpListener,
    machine: M,
) -> io::Result<()> {
    serve(
        listener,
        Drive {
            machine,
            conns: Conns::new(),
            ids: IdMap::default(),
            keys: IdMap::default(),
        },
    )
}

/// A machine as a [`Handler`]: driver keys to the machine's connections
/// and back, and the machine drained after each input.
struct Drive<M> {
    machine: M,
    conns: Conns,
    ids: IdMap<u64, wsio::engineio::ConnId>,
    keys: IdMap<wsio::engineio::ConnId, u64>,
}

impl<M: ServerMachine<Transmit = Transmit>> Drive<M> {
    fn drain(&mut self, now: Instant) {
        let Drive {
            machine,
            conns,
            ids,
            keys,
        } = self;
        drain(
            machine,
            now,
            |_, t| {
                match t {
                    Transmit::Data { conn, data } => {
                        let Some(&key) = keys.get(&conn) else {
                            return ControlFlow::Continue(());
                        };
                        conns.write(key, data);
                    }
                    Transmit::Close { conn } => {
                        if let Some(key) = keys.remove(&conn) {
                            ids.remove(&key);
                            conns.close(key);
                        }
                    }
                    Transmit::Response { .. } => {}
                }
                ControlFlow::Continue(())
            },
            |_, _| {},
        );
    }

    fn forget(&mut self, key: u64) -> Option<wsio::engineio::ConnId> {
        let conn = self.ids.remove(&key)?;
        self.keys.remove(&conn);
        Some(conn)
    }
}

impl<M: ServerMachine<Transmit = Transmit>> Handler for Drive<M> {
    fn conns(&mut self) -> &mut Conns {
        &mut self.conns
    }

    fn handle(&mut self, io: Io<'_>) {
        let now = Instant::now();
        match io {
            Io::Accepted(key, peer) => {
                let conn = self.machine.accept(now, peer);
                self.ids.insert(key, conn);
                self.keys.insert(conn, key);
            }
            Io::Data(key, bytes) => {
                if let Some(&conn) = self.ids.get(&key) {
                    self.machine.handle_input(now, conn, bytes);
                }
            }
            Io::Eof(key) => {
                if let Some(&conn) = self.ids.get(&key) {
                    self.machine.handle_eof(now, conn);
                    // Whatever the machine still writes goes out, then the
                    // descriptor is released.
                    self.drain(now);
                }
                self.forget(key);
                self.conns.close(key);
                return;
            }
            Io::Timeout => self.machine.handle_timeout(now),
        }
        self.drain(now);
    }

    fn deadline(&self) -> Option<Instant> {
        self.machine.poll_timeout()
    }

    fn write_blocked(&mut self, rest: Vec<(u64, Bytes)>) {
        let now = Instant::now();
        for (key, data) in rest {
            if let Some(&conn) = self.ids.get(&key) {
                self.machine.handle_write_blocked(now, conn, data);
            }
        }
        self.drain(now);
    }

    fn writable(&mut self, key: u64) {
        let now = Instant::now();
        if let Some(&conn) = self.ids.get(&key) {
            self.machine.handle_writable(now, conn);
        }
        self.drain(now);
    }
}
