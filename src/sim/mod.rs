//! Deterministic simulation: wsio clients and a server wired through an
//! in-memory network on a virtual clock.
//!
//! Because every machine in wsio is pure, a whole system of clients and a
//! server runs in one thread, as fast as the CPU allows, and the same seed
//! gives the same run byte for byte. One `u64` decides everything random:
//! where the bytes of each write are split (down to single bytes), latency
//! and jitter, connection resets, partitions that heal, server restarts.
//!
//! * [`Network`] owns the server, the clients and the connections between
//!   them. Clients speak through the driver interface of
//!   [`engineio::Client`](crate::engineio::Client) (HTTP requests and byte
//!   streams); the network carries requests over simulated keep-alive TCP
//!   connections and streams over their own.
//! * Time jumps from one due thing to the next: a delivery, a machine's
//!   deadline, a scheduled fault. Nothing waits for real time.
//! * Your application runs in an [`App`]: it hears every server and client
//!   event and may issue commands on the machine that raised it.
//!
//! A failing property should print its seed; `Network::trace` (enabled with
//! [`Config::trace`]) replays what happened.
//!
//! ```
//! use std::time::Duration;
//! use wsio::{engineio, sim};
//!
//! struct Echo;
//! impl sim::App<engineio::Server, engineio::Client> for Echo {
//!     fn server_event(&mut self, _: std::time::Instant, server: &mut engineio::Server, ev: engineio::Event) {
//!         if let engineio::Event::Message { sid, data } = ev {
//!             let _ = server.send(sid, data);
//!         }
//!     }
//! }
//!
//! let mut net = sim::Network::new(sim::Config::new(42), |now, rng| {
//!     engineio::Server::new(engineio::Config::default(), Box::new(rng.fork()), now)
//! });
//! let c = net.add_client(|now, rng| {
//!     engineio::Client::new(engineio::ClientConfig::new("sim"), Box::new(rng.fork()), now)
//! });
//! net.run_for(Duration::from_secs(1), &mut Echo);
//! assert_eq!(net.client(c).state(), engineio::ClientState::Open);
//! ```

mod machines;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashMap, VecDeque},
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    ops::ControlFlow,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};

pub use machines::ClientMachine;

use crate::{
    engineio::{ClientTransmit, ConnId, RequestFailed, RequestId, Transmit},
    entropy::{Entropy, SeededEntropy},
    http::{Limits, client::ResponseReader},
    machine::{Drained, ServerMachine, drain},
};

/// A seeded generator with a few conveniences for simulations.
#[derive(Debug, Clone)]
pub struct Rng(SeededEntropy);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(SeededEntropy::new(seed))
    }

    /// A new independent generator, for a machine's own entropy.
    pub fn fork(&mut self) -> SeededEntropy {
        SeededEntropy::new(self.0.next_u64())
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.next_u64() % n }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration in `0..=max`.
    pub fn duration(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros() as u64 + 1))
    }
}

impl Entropy for Rng {
    fn fill(&mut self, dst: &mut [u8]) {
        self.0.fill(dst)
    }

    fn fork(&mut self) -> crate::entropy::BoxEntropy {
        self.0.fork()
    }
}

/// How the simulated network behaves.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The seed of everything random.
    pub seed: u64,
    /// One-way delay of every segment.
    pub latency: Duration,
    /// Extra random delay, up to this much (order within a connection is
    /// kept, as TCP keeps it).
    pub jitter: Duration,
    /// Writes are cut into pieces of 1 to this many bytes.
    pub max_chunk: usize,
    /// Probability that a delivered piece resets its connection instead.
    pub reset_rate: f64,
    /// Record a trace of the run.
    pub trace: bool,
}

impl Config {
    /// A network with 1 ms latency, no jitter, no faults and writes split
    /// into random pieces of up to 1500 bytes.
    pub fn new(seed: u64) -> Self {
        Config {
            seed,
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            max_chunk: 1500,
            reset_rate: 0.0,
            trace: false,
        }
    }
    /// Sets [`latency`](Self::latency).
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
    /// Sets [`jitter`](Self::jitter).
    pub fn jitter(mut self, d: Duration) -> Self {
        self.jitter = d;
        self
    }
    /// Sets [`max_chunk`](Self::max_chunk) (at least 1).
    pub fn max_chunk(mut self, n: usize) -> Self {
        self.max_chunk = n.max(1);
        self
    }
    /// Sets [`reset_rate`](Self::reset_rate).
    pub fn reset_rate(mut self, p: f64) -> Self {
        self.reset_rate = p;
        self
    }
    /// Sets [`trace`](Self::trace).
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }
}

/// The application under test: hears every event and may answer through
/// the machine that raised it. Both methods do nothing by default.
pub trait App<S: ServerMachine<Transmit = Transmit>, C: ClientMachine> {
    /// The server raised `event`.
    fn server_event(&mut self, now: Instant, server: &mut S, event: S::Event) {
        let _ = (now, server, event);
    }
    /// Client `client` raised `event`.
    fn client_event(&mut self, now: Instant, client: usize, machine: &mut C, event: C::Event) {
        let _ = (now, client, machine, event);
    }
}

/// An application that ignores everything.
impl<S: ServerMachine<Transmit = Transmit>, C: ClientMachine> App<S, C> for () {}

#[derive(Debug, Clone)]
enum Segment {
    Data(Bytes),
    Fin,
    Reset,
}

#[derive(Debug)]
enum Kind {
    /// HTTP/1.1 with keep-alive; one request at a time.
    Http {
        pending: Option<RequestId>,
        reader: Box<ResponseReader>,
        rbuf: BytesMut,
    },
    Stream(RequestId),
}

#[derive(Debug)]
struct Conn {
    client: usize,
    /// The server's handle, once the first segment arrived (`None`: not
    /// yet, or the server restarted and forgot it).
    server: Option<ConnId>,
    /// The server generation this connection belongs to.
    generation: u64,
    to_server: VecDeque<(Instant, Segment)>,
    to_client: VecDeque<(Instant, Segment)>,
    kind: Kind,
    /// No more segments are accepted from the client side.
    client_done: bool,
    /// No more segments are accepted from the server side.
    server_done: bool,
    /// The path died silently (half-open): whatever either side sends
    /// vanishes, and neither hears an end.
    black_hole: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    ToServer(u64),
    ToClient(u64),
    Client(usize),
    Server,
    Fault(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Restart,
    Partition { client: usize, heal: Instant },
    HalfOpen { client: usize },
}

type Factory<T> = Box<dyn FnMut(Instant, &mut Rng) -> T>;

/// A server, its clients, and the simulated network between them.
pub struct Network<S: ServerMachine<Transmit = Transmit>, C: ClientMachine> {
    config: Config,
    rng: Rng,
    start: Instant,
    now: Instant,
    server: S,
    make_server: Factory<S>,
    generation: u64,
    clients: Vec<C>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    by_server: HashMap<ConnId, u64>,
    by_stream: HashMap<(usize, RequestId), u64>,
    by_request: HashMap<(usize, RequestId), u64>,
    /// Idle keep-alive connections per client.
    idle: HashMap<usize, Vec<u64>>,
    partitions: HashMap<usize, Instant>,
    /// Clients that read slowly: bytes per second they take in.
    slow: HashMap<usize, u64>,
    /// Per client: when its last byte reached the server, and when the
    /// server's last byte reached it.
    last_delivery: HashMap<usize, (Option<Instant>, Option<Instant>)>,
    faults: Vec<(Instant, Fault)>,
    queue: BinaryHeap<Reverse<(Instant, u64, Due)>>,
    seq: u64,
    client_scheduled: Vec<Option<Instant>>,
    server_scheduled: Option<Instant>,
    dirty_clients: Vec<usize>,
    is_dirty: Vec<bool>,
    server_dirty: bool,
    /// The server's transmits of one drain.
    server_out: Vec<Transmit>,
    trace: String,
}

impl<S: ServerMachine<Transmit = Transmit>, C: ClientMachine> std::fmt::Debug for Network<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("seed", &self.config.seed)
            .field("elapsed", &self.elapsed())
            .field("clients", &self.clients.len())
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl<S: ServerMachine<Transmit = Transmit>, C: ClientMachine> Network<S, C> {
    /// A network whose server `make_server` builds (again after each
    /// restart, with its state lost).
    pub fn new(
        config: Config,
        mut make_server: impl FnMut(Instant, &mut Rng) -> S + 'static,
    ) -> Self {
        let mut rng = Rng::new(config.seed);
        // A fixed origin: virtual time never depends on when the run starts.
        let start = Instant::now();
        let server = make_server(start, &mut rng);
        Network {
            config,
            rng,
            start,
            now: start,
            server,
            make_server: Box::new(make_server),
            generation: 0,
            clients: Vec::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            by_server: HashMap::new(),
            by_stream: HashMap::new(),
            by_request: HashMap::new(),
            idle: HashMap::new(),
            partitions: HashMap::new(),
            slow: HashMap::new(),
            last_delivery: HashMap::new(),
            faults: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            client_scheduled: Vec::new(),
            server_scheduled: None,
            dirty_clients: Vec::new(),
            is_dirty: Vec::new(),
            server_dirty: true,
            server_out: Vec::new(),
            trace: String::new(),
        }
    }

    /// Adds a client built by `make` now; returns its index.
    pub fn add_client(&mut self, make: impl FnOnce(Instant, &mut Rng) -> C) -> usize {
        let c = make(self.now, &mut self.rng);
        self.clients.push(c);
        self.client_scheduled.push(None);
        self.is_dirty.push(false);
        let i = self.clients.len() - 1;
        self.mark_client(i);
        i
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The network's own generator (for a test's random choices).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// The server.
    pub fn server(&mut self) -> &mut S {
        self.server_dirty = true;
        &mut self.server
    }

    /// A client.
    pub fn client(&mut self, i: usize) -> &mut C {
        self.mark_client(i);
        &mut self.clients[i]
    }

    /// The number of clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// When the last byte from client `client` reached the server, and when
    /// the last byte from the server reached the client.
    pub fn last_delivery(&self, client: usize) -> (Option<Instant>, Option<Instant>) {
        self.last_delivery.get(&client).copied().unwrap_or_default()
    }

    /// The recorded trace (with [`Config::trace`]).
    pub fn trace(&self) -> &str {
        &self.trace
    }

    /// Changes the rate of random resets from now on (0 to stop them).
    pub fn set_reset_rate(&mut self, p: f64) {
        self.config.reset_rate = p;
    }

    /// Restarts the server after `delay`: every connection is reset and a
    /// new server, with no state, takes over.
    pub fn restart_server_in(&mut self, delay: Duration) {
        self.schedule_fault(self.now + delay, Fault::Restart);
    }

    /// Cuts client `client` off from `delay` from now, for `duration`:
    /// nothing it sends or is sent arrives until the partition heals.
    pub fn partition_in(&mut self, delay: Duration, client: usize, duration: Duration) {
        let at = self.now + delay;
        self.schedule_fault(
            at,
            Fault::Partition {
                client,
                heal: at + duration,
            },
        );
    }

    /// Makes every connection client `client` has open at `delay` from
    /// now go silently dead (a NAT forgetting it, a laptop lid closing):
    /// what the server sends on them vanishes and it hears nothing more;
    /// the client hears nothing either until it writes, which is answered
    /// with a reset. Connections it opens afterwards work.
    pub fn half_open_in(&mut self, delay: Duration, client: usize) {
        self.schedule_fault(self.now + delay, Fault::HalfOpen { client });
    }

    /// Makes client `client` read at most `bytes_per_sec` from each of its
    /// connections (0 removes the limit): what the server writes queues up
    /// in the network, as behind a slow link.
    pub fn slow_reader(&mut self, client: usize, bytes_per_sec: u64) {
        if bytes_per_sec == 0 {
            self.slow.remove(&client);
        } else {
            self.slow.insert(client, bytes_per_sec);
        }
    }

    fn schedule_fault(&mut self, at: Instant, fault: Fault) {
        self.faults.push((at, fault));
        let i = self.faults.len() - 1;
        self.push(at, Due::Fault(i));
    }

    fn push(&mut self, at: Instant, due: Due) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, due)));
    }

    fn mark_client(&mut self, i: usize) {
        if let Some(d) = self.is_dirty.get_mut(i) {
            if !*d {
                *d = true;
                self.dirty_clients.push(i);
            }
        }
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.config.trace {
            let t = self.elapsed();
            let _ = writeln!(
                self.trace,
                "{:>10.3} ms  {}",
                t.as_secs_f64() * 1000.0,
                line()
            );
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration, app: &mut impl App<S, C>) {
        let until = self.now + d;
        self.run_until(until, app);
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant, app: &mut impl App<S, C>) {
        loop {
            self.settle(app);
            let Some(&Reverse((at, _, _))) = self.queue.peek() else {
                self.now = self.now.max(until);
                return;
            };
            if at > until {
                self.now = self.now.max(until);
                return;
            }
            self.now = self.now.max(at);
            let Some(Reverse((_, _, due))) = self.queue.pop() else {
                return;
            };
            self.fire(due);
        }
    }

    /// Runs until `done` holds (checked after each step) or `limit` of
    /// virtual time passes; returns whether `done` held.
    pub fn run_until_cond(
        &mut self,
        limit: Duration,
        app: &mut impl App<S, C>,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        let until = self.now + limit;
        loop {
            self.settle(app);
            if done(self) {
                return true;
            }
            let Some(&Reverse((at, _, _))) = self.queue.peek() else {
                self.now = until;
                return done(self);
            };
            if at > until {
                self.now = until;
                return done(self);
            }
            self.now = self.now.max(at);
            let Some(Reverse((_, _, due))) = self.queue.pop() else {
                return done(self);
            };
            self.fire(due);
        }
    }

    fn fire(&mut self, due: Due) {
        let now = self.now;
        match due {
            Due::Server => {
                if self.server_scheduled.is_some_and(|t| t <= now) {
                    self.server_scheduled = None;
                    self.server.handle_timeout(now);
                    self.server_dirty = true;
                }
            }
            Due::Client(i) => {
                if self.client_scheduled[i].is_some_and(|t| t <= now) {
                    self.client_scheduled[i] = None;
                    self.clients[i].handle_timeout(now);
                    self.mark_client(i);
                }
            }
            Due::ToServer(id) => self.deliver_to_server(id),
            Due::ToClient(id) => self.deliver_to_client(id),
            Due::Fault(i) => match self.faults[i].1 {
                Fault::Restart => self.restart(),
                Fault::HalfOpen { client } => {
                    self.log(|| format!("half-open: c{client}'s connections go silent"));
                    for c in self.conns.values_mut().filter(|c| c.client == client) {
                        c.black_hole = true;
                        c.to_server.clear();
                        c.to_client.clear();
                    }
                }
                Fault::Partition { client, heal } => {
                    if now < heal {
                        self.log(|| format!("partition c{client} until +{:?}", heal - now));
                        self.partitions.insert(client, heal);
                        // Wake up when it heals to deliver what waited.
                        self.faults[i].1 = Fault::Partition { client, heal };
                        self.push(heal, Due::Fault(i));
                    } else {
                        self.log(|| format!("partition c{client} healed"));
                        self.partitions.remove(&client);
                        let ids: Vec<u64> = self
                            .conns
                            .iter()
                            .filter(|(_, c)| c.client == client)
                            .map(|(id, _)| *id)
                            .collect();
                        for id in ids {
                            self.push(now, Due::ToServer(id));
                            self.push(now, Due::ToClient(id));
                        }
                    }
                }
            },
        }
    }

    fn partitioned(&self, client: usize) -> bool {
        self.partitions
            .get(&client)
            .is_some_and(|&heal| self.now < heal)
    }

    /// When a segment sent now arrives.
    fn arrival(&mut self, last: Option<Instant>) -> Instant {
        let jitter = self.rng.duration(self.config.jitter);
        let t = self.now + self.config.latency + jitter;
        last.map_or(t, |l| t.max(l))
    }

    fn send_to_server(&mut self, id: u64, seg: Segment) {
        if self.conns.get(&id).is_some_and(|c| c.black_hole) {
            // The far end forgot this connection: what the client sends now
            // is answered with a reset (as a NAT that lost the mapping, or
            // a rebooted peer, would), so it learns soon.
            if let Some(c) = self.conns.get_mut(&id) {
                c.black_hole = false;
                c.server = None;
                c.server_done = true;
                c.to_server.clear();
            }
            self.send_to_client(id, Segment::Reset);
            return;
        }
        let Some(last) = self
            .conns
            .get(&id)
            .map(|c| c.to_server.back().map(|(t, _)| *t))
        else {
            return;
        };
        let pieces = self.split(seg);
        let mut last = last;
        for p in pieces {
            let at = self.arrival(last);
            last = Some(at);
            if let Some(c) = self.conns.get_mut(&id) {
                c.to_server.push_back((at, p));
            }
            self.push(at, Due::ToServer(id));
        }
    }

    fn send_to_client(&mut self, id: u64, seg: Segment) {
        let Some((last, client)) = self
            .conns
            .get(&id)
            .filter(|c| !c.black_hole)
            .map(|c| (c.to_client.back().map(|(t, _)| *t), c.client))
        else {
            return;
        };
        let rate = self.slow.get(&client).copied();
        let pieces = self.split(seg);
        let mut last = last;
        for p in pieces {
            let mut at = self.arrival(last);
            if let (Some(rate), Segment::Data(b)) = (rate, &p) {
                // A slow reader takes each piece only once the previous one
                // has drained at its rate.
                let drain =
                    Duration::from_nanos((b.len() as u64).saturating_mul(1_000_000_000) / rate);
                at = at.max(last.unwrap_or(at) + drain);
            }
            last = Some(at);
            if let Some(c) = self.conns.get_mut(&id) {
                c.to_client.push_back((at, p));
            }
            self.push(at, Due::ToClient(id));
        }
    }

    /// Cuts a write into the pieces the reader will see.
    fn split(&mut self, seg: Segment) -> Vec<Segment> {
        match seg {
            Segment::Data(mut b) => {
                let mut out = Vec::new();
                while !b.is_empty() {
                    let n =
                        (1 + self.rng.below(self.config.max_chunk as u64) as usize).min(b.len());
                    out.push(Segment::Data(b.split_to(n)));
                }
                out
            }
            other => vec![other],
        }
    }

    fn deliver_to_server(&mut self, id: u64) {
        let now = self.now;
        loop {
            let Some(conn) = self.conns.get(&id) else {
                return;
            };
            if self.partitioned(conn.client) {
                return;
            }
            let Some((at, _)) = conn.to_server.front() else {
                return;
            };
            if *at > now {
                return;
            }
            let reset = self.rng.chance(self.config.reset_rate);
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let Some((_, seg)) = conn.to_server.pop_front() else {
                return;
            };
            if conn.generation != self.generation {
                // The server this connection knew is gone: refuse.
                self.reset_conn(id, "server restarted");
                return;
            }
            let server_conn = match conn.server {
                Some(s) => s,
                None => {
                    let peer = SocketAddr::from((
                        Ipv4Addr::new(10, 0, (conn.client >> 8) as u8, conn.client as u8),
                        40000,
                    ));
                    let s = self.server.accept(now, Some(peer));
                    conn.server = Some(s);
                    self.by_server.insert(s, id);
                    s
                }
            };
            self.server_dirty = true;
            if reset {
                self.log(|| format!("reset conn {id} (random)"));
                self.server.handle_eof(now, server_conn);
                self.reset_conn(id, "random reset");
                return;
            }
            match seg {
                Segment::Data(b) => {
                    let client = self.conns.get(&id).map_or(0, |c| c.client);
                    self.last_delivery.entry(client).or_default().0 = Some(now);
                    self.log(|| format!("c{client}→s conn {id} {} B", b.len()));
                    self.server.handle_input(now, server_conn, &b);
                }
                Segment::Fin | Segment::Reset => {
                    self.server.handle_eof(now, server_conn);
                    self.by_server.remove(&server_conn);
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.server = None;
                        c.server_done = true;
                    }
                    self.maybe_forget(id);
                }
            }
        }
    }

    fn deliver_to_client(&mut self, id: u64) {
        let now = self.now;
        loop {
            let Some(conn) = self.conns.get(&id) else {
                return;
            };
            let client = conn.client;
            if self.partitioned(client) {
                return;
            }
            let Some((at, _)) = conn.to_client.front() else {
                return;
            };
            if *at > now {
                return;
            }
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let Some((_, seg)) = conn.to_client.pop_front() else {
                return;
            };
            self.mark_client(client);
            match seg {
                Segment::Data(b) => {
                    self.last_delivery.entry(client).or_default().1 = Some(now);
                    self.log(|| format!("s→c{client} conn {id} {} B", b.len()));
                    self.client_data(id, b);
                }
                Segment::Fin => self.client_end(id, false),
                Segment::Reset => self.client_end(id, true),
            }
        }
    }

    fn client_data(&mut self, id: u64, b: Bytes) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let client = conn.client;
        match &mut conn.kind {
            Kind::Stream(sid) => {
                let sid = *sid;
                self.clients[client].handle_stream_input(now, sid, &b);
            }
            Kind::Http {
                pending,
                reader,
                rbuf,
            } => {
                rbuf.extend_from_slice(&b);
                match reader.read(rbuf) {
                    Ok(None) => {}
                    Ok(Some((head, body))) => {
                        let keep = crate::http::client::keeps_alive(&head);
                        let req = pending.take();
                        if let Some(req) = req {
                            self.by_request.remove(&(client, req));
                            self.clients[client].handle_response(now, req, Ok((head, body)));
                        }
                        if keep {
                            self.idle.entry(client).or_default().push(id);
                        } else {
                            self.close_from_client(id);
                        }
                    }
                    Err(e) => {
                        let req = pending.take();
                        if let Some(req) = req {
                            self.by_request.remove(&(client, req));
                            self.clients[client].handle_response(
                                now,
                                req,
                                Err(RequestFailed::new(e.to_string())),
                            );
                        }
                        self.close_from_client(id);
                    }
                }
            }
        }
    }

    /// The server side ended (FIN) or the connection was reset.
    fn client_end(&mut self, id: u64, reset: bool) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let client = conn.client;
        conn.server_done = true;
        match &mut conn.kind {
            Kind::Stream(sid) => {
                let sid = *sid;
                self.by_stream.remove(&(client, sid));
                if reset {
                    self.clients[client].handle_stream_error(now, sid);
                } else {
                    self.clients[client].handle_stream_eof(now, sid);
                }
            }
            Kind::Http {
                pending, reader, ..
            } => {
                if let Some(req) = pending.take() {
                    self.by_request.remove(&(client, req));
                    let r = if reset {
                        Err(RequestFailed::new("connection reset"))
                    } else {
                        reader
                            .finish()
                            .map_err(|e| RequestFailed::new(e.to_string()))
                    };
                    self.clients[client].handle_response(now, req, r);
                }
                if let Some(v) = self.idle.get_mut(&client) {
                    v.retain(|c| *c != id);
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.client_done {
                c.client_done = true;
                if !reset {
                    // Answer the FIN with ours.
                    self.send_to_server(id, Segment::Fin);
                }
            }
        }
        self.maybe_forget(id);
    }

    fn reset_conn(&mut self, id: u64, why: &'static str) {
        self.log(|| format!("conn {id} reset: {why}"));
        if let Some(c) = self.conns.get_mut(&id) {
            c.to_server.clear();
            c.server_done = true;
            if let Some(s) = c.server.take() {
                self.by_server.remove(&s);
            }
        }
        self.send_to_client(id, Segment::Reset);
    }

    fn close_from_client(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.client_done {
                c.client_done = true;
                self.send_to_server(id, Segment::Fin);
            }
        }
        if let Some(c) = self.conns.get(&id) {
            let client = c.client;
            if let Some(v) = self.idle.get_mut(&client) {
                v.retain(|x| *x != id);
            }
        }
    }

    fn maybe_forget(&mut self, id: u64) {
        if let Some(c) = self.conns.get(&id) {
            if c.client_done && c.server_done && c.to_server.is_empty() && c.to_client.is_empty() {
                self.conns.remove(&id);
            }
        }
    }

    fn open_conn(&mut self, client: usize, kind: Kind) -> u64 {
        self.next_conn += 1;
        let id = self.next_conn;
        self.conns.insert(
            id,
            Conn {
                client,
                server: None,
                generation: self.generation,
                to_server: VecDeque::new(),
                to_client: VecDeque::new(),
                kind,
                client_done: false,
                server_done: false,
                black_hole: false,
            },
        );
        id
    }

    fn restart(&mut self) {
        self.log(|| "server restart".to_owned());
        self.generation += 1;
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.reset_conn(id, "server restart");
        }
        self.by_server.clear();
        self.server = (self.make_server)(self.now, &mut self.rng);
        self.server_scheduled = None;
        self.server_dirty = true;
    }

    /// Drains every machine that may have something to say, until quiet.
    fn settle(&mut self, app: &mut impl App<S, C>) {
        loop {
            let mut busy = false;
            if self.server_dirty {
                self.server_dirty = false;
                busy |= self.settle_server(app);
            }
            while let Some(i) = self.dirty_clients.pop() {
                self.is_dirty[i] = false;
                busy |= self.settle_client(i, app);
            }
            if !busy && !self.server_dirty && self.dirty_clients.is_empty() {
                break;
            }
        }
        if let Some(t) = self.server.poll_timeout() {
            if self.server_scheduled.is_none_or(|s| t < s) {
                self.server_scheduled = Some(t);
                self.push(t, Due::Server);
            }
        }
    }

    fn settle_server(&mut self, app: &mut impl App<S, C>) -> bool {
        let now = self.now;
        let mut busy = false;
        // Carried out once the server is quiet: only transmits draw from
        // the network's generator, so their order is all that matters.
        let mut out = std::mem::take(&mut self.server_out);
        let _: Drained = drain(
            &mut self.server,
            now,
            |_, t| {
                out.push(t);
                ControlFlow::Continue(())
            },
            |s, ev| {
                busy = true;
                app.server_event(now, s, ev)
            },
        );
        busy |= !out.is_empty();
        for t in out.drain(..) {
            self.server_transmit(t);
        }
        self.server_out = out;
        busy
    }

    fn server_transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Data { conn, data } => {
                if let Some(&id) = self.by_server.get(&conn) {
                    self.send_to_client(id, Segment::Data(data));
                }
            }
            Transmit::Close { conn } => {
                if let Some(id) = self.by_server.remove(&conn) {
                    self.send_to_client(id, Segment::Fin);
                }
            }
            // Only embedded requests get these; the network never makes
            // any.
            Transmit::Response { .. } => {}
        }
    }

    fn settle_client(&mut self, i: usize, app: &mut impl App<S, C>) -> bool {
        let mut busy = false;
        loop {
            let mut moved = false;
            while let Some(t) = self.clients[i].poll_transmit() {
                moved = true;
                self.client_transmit(i, t);
            }
            while let Some(ev) = self.clients[i].poll_event() {
                moved = true;
                app.client_event(self.now, i, &mut self.clients[i], ev);
                self.server_dirty = true;
            }
            if !moved {
                break;
            }
            busy = true;
        }
        if let Some(t) = self.clients[i].poll_timeout() {
            if self.client_scheduled[i].is_none_or(|s| t < s) {
                self.client_scheduled[i] = Some(t);
                self.push(t, Due::Client(i));
            }
        }
        busy
    }

    fn client_transmit(&mut self, i: usize, t: ClientTransmit) {
        match t {
            ClientTransmit::Request { id: req, request } => {
                let conn = match self.idle.get_mut(&i).and_then(Vec::pop) {
                    Some(c) => c,
                    None => self.open_conn(
                        i,
                        Kind::Http {
                            pending: None,
                            reader: Box::new(ResponseReader::new(Limits::default(), 64 << 20)),
                            rbuf: BytesMut::new(),
                        },
                    ),
                };
                if let Some(Conn {
                    kind: Kind::Http { pending, .. },
                    ..
                }) = self.conns.get_mut(&conn)
                {
                    *pending = Some(req);
                }
                self.by_request.insert((i, req), conn);
                let mut out = BytesMut::new();
                request.encode(&mut out);
                self.log(|| {
                    format!(
                        "c{i} {} {}",
                        request.head.method.as_str(),
                        request.head.target
                    )
                });
                self.send_to_server(conn, Segment::Data(out.freeze()));
            }
            ClientTransmit::CancelRequest { id: req } => {
                if let Some(conn) = self.by_request.remove(&(i, req)) {
                    if let Some(Conn {
                        kind: Kind::Http { pending, .. },
                        ..
                    }) = self.conns.get_mut(&conn)
                    {
                        *pending = None;
                    }
                    // A browser would abort the request: drop its connection.
                    self.close_from_client(conn);
                }
            }
            ClientTransmit::OpenStream { id: sid } => {
                let conn = self.open_conn(i, Kind::Stream(sid));
                self.by_stream.insert((i, sid), conn);
            }
            ClientTransmit::StreamData { id: sid, data } => {
                if let Some(&conn) = self.by_stream.get(&(i, sid)) {
                    self.send_to_server(conn, Segment::Data(data));
                }
            }
            ClientTransmit::CloseStream { id: sid } => {
                if let Some(conn) = self.by_stream.remove(&(i, sid)) {
                    self.close_from_client(conn);
                }
            }
        }
    }
}
