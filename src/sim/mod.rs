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
//!   them: simulated TCP connections, opened when a client asks (see
//!   [`ClientTransmit`]), carrying bytes both ways. The network only moves
//!   bytes, time and connection ends; HTTP, keep-alive and WebSockets are
//!   the machines' own.
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

mod config;
mod link;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashMap},
    fmt::Write as _,
    ops::ControlFlow,
    time::{Duration, Instant},
};

pub use self::config::{Config, Rng};
use self::link::{Conn, Segment};
use crate::{
    engineio::{ClientTransmit, ConnId, Transmit},
    machine::{ConnMachine, Drained, ServerMachine, drain},
};

/// The application under test: hears every event and may answer through
/// the machine that raised it. Both methods do nothing by default.
pub trait App<S: ServerMachine<Transmit = Transmit>, C: ConnMachine<Transmit = ClientTransmit>> {
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
impl<S: ServerMachine<Transmit = Transmit>, C: ConnMachine<Transmit = ClientTransmit>> App<S, C>
    for ()
{
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
pub struct Network<S: ServerMachine<Transmit = Transmit>, C: ConnMachine<Transmit = ClientTransmit>>
{
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
    by_client: HashMap<(usize, ConnId), u64>,
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
    /// A client's transmits of one drain.
    client_out: Vec<ClientTransmit>,
    trace: String,
}

impl<S: ServerMachine<Transmit = Transmit>, C: ConnMachine<Transmit = ClientTransmit>>
    std::fmt::Debug for Network<S, C>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("seed", &self.config.seed)
            .field("elapsed", &self.elapsed())
            .field("clients", &self.clients.len())
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl<S: ServerMachine<Transmit = Transmit>, C: ConnMachine<Transmit = ClientTransmit>>
    Network<S, C>
{
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
            by_client: HashMap::new(),
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
            client_out: Vec::new(),
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

    /// The connections not yet closed by both sides (or reset): what a
    /// check for leaked connections counts.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
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
        let now = self.now;
        let mut busy = false;
        let mut out = std::mem::take(&mut self.client_out);
        let Some(machine) = self.clients.get_mut(i) else {
            return false;
        };
        let _: Drained = drain(
            machine,
            now,
            |_, t| {
                out.push(t);
                ControlFlow::Continue(())
            },
            |c, ev| {
                busy = true;
                app.client_event(now, i, c, ev)
            },
        );
        // Whatever the application did may concern the server.
        self.server_dirty |= busy;
        busy |= !out.is_empty();
        for t in out.drain(..) {
            self.client_transmit(i, t);
        }
        self.client_out = out;
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
            ClientTransmit::Connect { conn } => {
                let id = self.open_conn(i, conn);
                self.log(|| format!("c{i} opens conn {id}"));
            }
            ClientTransmit::Data { conn, data } => {
                if let Some(&id) = self.by_client.get(&(i, conn)) {
                    self.log(|| match request_line(&data) {
                        Some(line) => format!("c{i} conn {id}: {line}"),
                        None => format!("c{i} conn {id}: {} B", data.len()),
                    });
                    self.send_to_server(id, Segment::Data(data));
                }
            }
            ClientTransmit::Close { conn } => {
                if let Some(&id) = self.by_client.get(&(i, conn)) {
                    self.close_from_client(id);
                }
            }
        }
    }
}

/// The request line, if `data` starts with an HTTP request (for traces).
fn request_line(data: &[u8]) -> Option<&str> {
    let end = data.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(data.get(..end)?).ok()?;
    ["GET ", "POST "]
        .iter()
        .any(|m| line.starts_with(m))
        .then_some(line)
}
