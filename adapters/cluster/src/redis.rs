//! The Redis link: the two Redis connections of
//! [`wsio::cluster::RedisAdapter`], on tokio.
//!
//! A [`RedisLink`] is the adapter machine plus two tokio tasks, one per
//! connection as the official `@socket.io/redis-adapter` has them: the
//! publisher (`PUBLISH`, `PUBSUB NUMSUB`, pipelined) and the subscriber
//! (`SUBSCRIBE`, `PSUBSCRIBE`, and the messages). It runs as a
//! [`Sidecar`] of the server loop of `wsio-adapter`:
//!
//! ```no_run
//! use std::time::Duration;
//! use wsio::{cluster::RedisConfig, socketio::Config};
//! use wsio_cluster::RedisLink;
//! use wsio_tokio::SocketIo;
//!
//! # async fn run() -> std::io::Result<()> {
//! let mut machine = SocketIo::new(Config::default().cluster(true))?;
//! let mut link = RedisLink::start("redis://127.0.0.1:6379", RedisConfig::default(), &["/"], SocketIo::server)?;
//! link.connect(&mut machine, Duration::from_secs(5)).await?; // connected and subscribed
//! let listener = wsio_tokio::listen("127.0.0.1:3000").await?;
//! wsio_tokio::serve(listener, machine, Default::default())?
//!     .with_sidecar(link)
//!     .await
//! # }
//! ```
//!
//! # Theory of operation
//!
//! ```text
//!  server loop task                                   tokio tasks
//!  Server ⇄ exchange ⇄ RedisAdapter ─commands──► publisher  ──► PUBLISH, PUBSUB NUMSUB
//!                          ▲          ─commands──► subscriber ──► (P)SUBSCRIBE
//!                          └──────────── inputs ◄── both: connected/lost, NUMSUB counts, messages
//! ```
//!
//! Every protocol decision is the adapter's (channels, encodings,
//! filters, request ids and timeouts, the backlog while Redis is away, the
//! reconnection delays); this crate only carries its
//! [`RedisCommand`]s out and reports what Redis said. The loop never
//! waits on Redis: commands leave by `try_send`, inputs are polled.
//!
//! **Bounds.** Commands for the publisher go through a channel of
//! [`PUBLISH_QUEUE`] commands: a publish that finds it full (Redis slower
//! than the server) is dropped, counted ([`RedisLink::overflows`]) and
//! logged. While the publisher is down the adapter keeps its own bounded
//! backlog. Inputs come through a channel of [`INPUT_QUEUE`]. The
//! subscriber task always reads on (so nothing piles up in the Redis
//! client's own unbounded buffer): a message from Redis that finds the
//! channel full (the loop slower than the cluster's traffic) is dropped,
//! counted ([`RedisLink::dropped_messages`]) and logged, as a full inbox
//! of [`LocalBus`](crate::LocalBus) drops; only the rare connection news
//! wait for room.
//!
//! **Faults.** A connection that fails to open, or breaks (the
//! subscriber's stream ends, a pipeline fails or exceeds
//! [`RESPONSE_TIMEOUT`]), is reported lost; the adapter asks for a new
//! one after its backoff (50 ms, 100 ms, ... at most 500 ms) and, once the
//! subscriber is back, subscribes again. What the lost publisher had in
//! flight is lost, as what a Node node publishes while Redis is down.
//! Each loss and recovery is logged once.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::mpsc;
use wsio::{
    cluster::{Event, Link, RedisAdapter, RedisCommand, RedisConfig},
    entropy::OsEntropy,
};
use wsio_adapter::Sidecar;

use crate::{ServerOf, redis_tasks as tasks};

/// Commands the publisher's channel holds.
pub const PUBLISH_QUEUE: usize = 4096;
/// Inputs (messages, answers, connection news) the loop's channel holds:
/// as many as a [`LocalBus`](crate::LocalBus) inbox. The channel grows as
/// it fills, so an idle link costs nothing for it.
pub const INPUT_QUEUE: usize = 65_536;
/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Redis may take to answer a pipeline or a subscription.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Inputs taken per poll before the loop serves its connections again.
const MAX_INPUTS: usize = 256;

/// What the tasks report to the loop.
#[derive(Debug)]
pub(crate) enum Input {
    Connected(Link),
    Lost(Link, String),
    /// A `SUBSCRIBE` or `PSUBSCRIBE` was confirmed (or dropped with its
    /// connection).
    Subscribed,
    Message {
        channel: String,
        payload: Bytes,
    },
    NumSub {
        token: u64,
        count: usize,
    },
}

/// The Redis adapter of one server machine `M`, with its connections (see
/// the crate docs).
pub struct RedisLink<M> {
    adapter: RedisAdapter,
    server: ServerOf<M>,
    url: String,
    publisher: mpsc::Sender<RedisCommand>,
    subscriber: mpsc::UnboundedSender<RedisCommand>,
    inputs: mpsc::Receiver<Input>,
    /// A `Connect` that found the publisher's channel full.
    held_connect: Option<RedisCommand>,
    /// Subscriptions handed to the subscriber and not confirmed yet.
    pending_subs: usize,
    overflows: u64,
    /// Messages from Redis the subscriber task dropped (the inputs full).
    dropped: Arc<AtomicU64>,
    /// Whether each link was up at the last report (for the log).
    was_up: [bool; 2],
    last_error: Option<String>,
    on_event: Option<OnEvent<M>>,
}

/// The application's callback for the adapter's own events.
type OnEvent<M> = Box<dyn FnMut(&mut M, Event) + Send>;

impl<M> std::fmt::Debug for RedisLink<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("url", &self.url)
            .field("adapter", &self.adapter)
            .field("overflows", &self.overflows)
            .finish_non_exhaustive()
    }
}

fn index(link: Link) -> usize {
    match link {
        Link::Publisher => 0,
        Link::Subscriber => 1,
    }
}

impl<M: Send + 'static> RedisLink<M> {
    /// An adapter for the namespaces `namespaces` of the server that
    /// `server` finds in the machine, with its two connection tasks
    /// spawned on the current tokio runtime (an error outside one, or for
    /// a URL the Redis client does not take). Nothing is connected yet:
    /// [`connect`](Self::connect) waits for it, or the server loop gets
    /// there by itself.
    pub fn start(
        url: &str,
        config: RedisConfig,
        namespaces: &[&str],
        server: ServerOf<M>,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let client = redis::Client::open(url)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let entropy = OsEntropy::new().map_err(io::Error::other)?;
        let mut adapter = RedisAdapter::new(config, Box::new(entropy));
        for nsp in namespaces {
            adapter.add_namespace(nsp);
        }
        let (publisher, publisher_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (subscriber, subscriber_rx) = mpsc::unbounded_channel();
        let (input_tx, inputs) = mpsc::channel(INPUT_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        runtime.spawn(tasks::publisher(
            client.clone(),
            publisher_rx,
            input_tx.clone(),
        ));
        runtime.spawn(tasks::subscriber(
            client,
            subscriber_rx,
            input_tx,
            dropped.clone(),
        ));
        Ok(RedisLink {
            adapter,
            server,
            url: url.to_owned(),
            publisher,
            subscriber,
            inputs,
            held_connect: None,
            pending_subs: 0,
            overflows: 0,
            dropped,
            was_up: [false; 2],
            last_error: None,
            on_event: None,
        })
    }

    /// Runs `f`, in the loop's task with the machine, on the adapter's
    /// events other than cluster messages ([`Event::ServerCount`],
    /// [`Event::Dropped`], which is logged anyway).
    pub fn on_event(mut self, f: impl FnMut(&mut M, Event) + Send + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// Waits until both connections are up and every subscription is
    /// confirmed: a node that serves after this hears the cluster at once.
    /// An error after `timeout`, naming the last failure.
    pub async fn connect(&mut self, machine: &mut M, timeout: Duration) -> io::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = Instant::now();
            self.adapter.handle_timeout(now);
            self.exchange(machine, now);
            if self.adapter.is_up() && self.pending_subs == 0 {
                return Ok(());
            }
            let wake = self
                .adapter
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.input(Instant::now(), machine, input),
                    None => return Err(io::Error::other("the Redis tasks have ended")),
                },
                () = tokio::time::sleep_until(wake) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                let why = self.last_error.as_deref().unwrap_or("no answer");
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("Redis at {} not ready within {timeout:?}: {why}", self.url),
                ));
            }
        }
    }

    /// The adapter machine (its [`stats`](RedisAdapter::stats), link states...).
    pub fn adapter(&self) -> &RedisAdapter {
        &self.adapter
    }

    /// The adapter machine, for commands such as
    /// [`server_count`](RedisAdapter::server_count) (its answer comes to
    /// [`on_event`](Self::on_event)).
    pub fn adapter_mut(&mut self) -> &mut RedisAdapter {
        &mut self.adapter
    }

    /// Publishes dropped because the publisher's channel was full.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Messages from Redis dropped because [`INPUT_QUEUE`] of them were
    /// already waiting for the loop.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// One report of a task.
    fn input(&mut self, now: Instant, machine: &mut M, input: Input) {
        match input {
            Input::Connected(link) => {
                if link == Link::Subscriber {
                    self.pending_subs = 0;
                }
                if std::mem::replace(&mut self.was_up[index(link)], true) {
                    // Up already: a stale report.
                } else if self.last_error.is_some() {
                    log::info!("wsio-cluster: {link:?} connected again to {}", self.url);
                }
                self.adapter.handle_connected(now, link);
            }
            Input::Lost(link, why) => {
                if link == Link::Subscriber {
                    self.pending_subs = 0;
                }
                let was_up = std::mem::replace(&mut self.was_up[index(link)], false);
                if was_up || self.last_error.is_none() {
                    log::warn!(
                        "wsio-cluster: {link:?} connection to {} lost or refused ({why}); \
                         serving local clients and retrying",
                        self.url
                    );
                }
                self.last_error = Some(why);
                self.adapter.handle_disconnected(now, link);
            }
            Input::Subscribed => self.pending_subs = self.pending_subs.saturating_sub(1),
            Input::Message { channel, payload } => {
                let server = (self.server)(machine);
                self.adapter
                    .handle_message(now, channel.as_bytes(), payload, &*server);
            }
            Input::NumSub { token, count } => self.adapter.handle_numsub(now, token, count),
        }
    }

    /// Hands the adapter's commands to the tasks, never waiting.
    fn flush(&mut self, now: Instant) {
        if let Some(cmd) = self.held_connect.take() {
            match self.publisher.try_send(cmd) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(cmd)) => {
                    self.held_connect = Some(cmd);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        while let Some(cmd) = self.adapter.poll_transmit(now) {
            if cmd.link() == Link::Subscriber {
                if matches!(
                    cmd,
                    RedisCommand::Subscribe { .. } | RedisCommand::PSubscribe { .. }
                ) {
                    self.pending_subs = self.pending_subs.saturating_add(1);
                }
                let _ = self.subscriber.send(cmd);
                continue;
            }
            match self.publisher.try_send(cmd) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(cmd @ RedisCommand::Connect(_))) => {
                    self.held_connect = Some(cmd);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.overflows = self.overflows.saturating_add(1);
                    if self.overflows.is_power_of_two() {
                        log::warn!(
                            "wsio-cluster: Redis is slower than the server: {} publishes dropped so far",
                            self.overflows
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

impl<M: Send + 'static> Sidecar<M> for RedisLink<M> {
    fn exchange(&mut self, machine: &mut M, now: Instant) -> bool {
        let mut fed = false;
        loop {
            let mut moved = false;
            let server = (self.server)(machine);
            while let Some(m) = server.poll_cluster() {
                self.adapter.send(now, m);
                moved = true;
            }
            while let Some(ev) = self.adapter.poll_event(now) {
                match ev {
                    Event::Cluster(m) => {
                        (self.server)(machine).handle_cluster(now, m);
                        fed = true;
                        moved = true;
                    }
                    ev => {
                        if let Event::Dropped { total } = &ev {
                            log::warn!(
                                "wsio-cluster: Redis is away and the backlog is full: {total} publishes dropped so far"
                            );
                        }
                        if let Some(f) = &mut self.on_event {
                            f(machine, ev);
                            fed = true;
                            moved = true;
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
        self.flush(now);
        fed
    }

    fn poll(&mut self, cx: &mut Context<'_>, machine: &mut M, now: Instant) -> bool {
        let mut busy = false;
        if self.adapter.poll_timeout().is_some_and(|t| t <= now) {
            self.adapter.handle_timeout(now);
            busy = true;
        }
        for _ in 0..MAX_INPUTS {
            match self.inputs.poll_recv(cx) {
                Poll::Ready(Some(input)) => {
                    self.input(now, machine, input);
                    busy = true;
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        // Also what the application asked of the adapter directly
        // (`adapter_mut`).
        self.flush(now);
        busy
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.adapter.poll_timeout()
    }
}
