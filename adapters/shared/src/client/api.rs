//! The application's side of the client: [`connect`], which starts the
//! driver and waits for the first namespace, and [`Client`], the handle
//! whose calls cross to the driver.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::{Future, poll_fn},
    pin::Pin,
    sync::{Arc, Mutex},
    task::Poll,
    time::{Duration, Instant},
};

use futures_channel::{mpsc, oneshot};
use serde::Serialize;
use wsio::{
    engineio::TransportKind,
    entropy::OsEntropy,
    http::{Query, Url},
    socketio::{self, ClientEvent, ClientState, NspId, Value},
};

use super::{ClientDriver, ClientError, ClientOptions, Cmd, Core};
use crate::{
    app::{Events, Queue, Shared},
    runtime::Connector,
    sio::args,
    wake::Ready,
};

/// The connection-wide half of a [`Client`].
#[derive(Clone)]
struct Handle {
    tx: mpsc::Sender<Cmd>,
    connector: Arc<dyn Connector>,
    connect_timeout: Duration,
}

impl Handle {
    async fn send(&self, cmd: Cmd) -> Result<(), ClientError> {
        let mut tx = self.tx.clone();
        poll_fn(|cx| tx.poll_ready(cx))
            .await
            .map_err(|_| ClientError::Closed)?;
        tx.start_send(cmd).map_err(|_| ClientError::Closed)
    }

    async fn ask<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core, Instant) -> R + Send + 'static,
    ) -> Result<R, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |core, now| {
            let _ = tx.send(f(core, now));
        }))
        .await?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Joins a namespace (or finds it joined) and waits until it is
    /// connected.
    async fn join(&self, nsp: &str, auth: Option<Value>) -> Result<NspId, ClientError> {
        let (tx, rx) = oneshot::channel();
        let name = nsp.to_owned();
        self.ask(move |core, now| match core.io.socket(now, &name, auth) {
            Ok(nsp) if core.io.is_connected(nsp) => {
                let _ = tx.send(Ok(nsp));
            }
            Ok(nsp) => core.joins.push((nsp, tx)),
            Err(e) => {
                let _ = tx.send(Err(e.into()));
            }
        })
        .await?;
        match self.within(self.connect_timeout, rx).await {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ClientError::Closed),
            None => Err(ClientError::Timeout),
        }
    }

    /// `rx`'s answer, or `None` after `limit`.
    async fn within<T>(
        &self,
        limit: Duration,
        mut rx: oneshot::Receiver<T>,
    ) -> Option<Result<T, oneshot::Canceled>> {
        let mut sleep = self.connector.sleep();
        let now = Instant::now();
        sleep.reset(
            now.checked_add(limit)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        );
        poll_fn(|cx| {
            if let Poll::Ready(r) = Pin::new(&mut rx).poll(cx) {
                return Poll::Ready(Some(r));
            }
            if sleep.poll_sleep(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    async fn close(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |core, now| {
            core.closers.push(tx);
            core.begin_close(now);
        }))
        .await?;
        let _ = rx.await;
        Ok(())
    }
}

/// A handle on a running client, bound to one namespace ([`nsp`](Self::nsp));
/// clone it freely, [`socket`](Self::socket) gives one for another
/// namespace. Every call crosses to the driver over a bounded channel and
/// runs there, in order.
#[derive(Clone)]
pub struct Client {
    handle: Handle,
    nsp: NspId,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("nsp", &self.nsp)
            .finish_non_exhaustive()
    }
}

/// Connects to the namespace named by the URL's path (`/` when none;
/// `http://host:3000/chat` is `/chat`), its query added to every request,
/// and waits until that namespace is connected: the handle, and the
/// client's events (every namespace's). `spawn` runs the driver on the
/// runtime. With reconnection on (the default), failed attempts are
/// retried until [`ClientOptions::connect_timeout`].
pub async fn connect(
    connector: Arc<dyn Connector>,
    spawn: impl FnOnce(ClientDriver),
    url: &str,
    options: ClientOptions,
) -> Result<(Client, Events<ClientEvent>), ClientError> {
    let u = Url::parse(url).ok_or_else(|| ClientError::Url(url.to_owned()))?;
    let (path, query) = u.target.split_once('?').unwrap_or((&u.target, ""));
    let nsp_name = match path.trim_end_matches('/') {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    let mut config = options.config.clone();
    config.engine.host = u.host_header();
    for (k, v) in Query::parse(query).pairs() {
        config.engine.query.push((k.clone(), v.clone()));
    }
    let entropy = OsEntropy::new().map_err(|e| ClientError::Entropy(e.to_string()))?;
    let io = socketio::Client::new(config, Box::new(entropy), Instant::now());
    let (tx, commands) = mpsc::channel(options.commands);
    let events: Shared<ClientEvent> = Arc::new(Mutex::new(Queue {
        items: VecDeque::new(),
        consumer: None,
        closed: false,
        resume_below: None,
    }));
    let ready = Arc::new(Ready::default());
    let driver = ClientDriver {
        core: Core {
            io,
            acks: HashMap::new(),
            joins: Vec::new(),
            closers: Vec::new(),
            stopping: None,
            close_grace: options.close_grace,
        },
        sleep: connector.sleep(),
        connector: connector.clone(),
        host: u.host.clone(),
        port: u.port,
        secure: u.secure,
        links: BTreeMap::new(),
        commands,
        events: events.clone(),
        ready: ready.clone(),
        armed: None,
        buf: vec![0; 64 * 1024],
        event_backlog: options.event_backlog.max(2),
        paused: false,
    };
    spawn(driver);
    let events = Events {
        queue: events,
        ready,
    };
    let handle = Handle {
        tx,
        connector,
        connect_timeout: options.connect_timeout,
    };
    match handle.join(&nsp_name, options.auth).await {
        Ok(nsp) => Ok((Client { handle, nsp }, events)),
        Err(e) => {
            let _ = handle.close().await;
            Err(e)
        }
    }
}

impl Client {
    /// The namespace this handle emits on.
    pub fn nsp(&self) -> NspId {
        self.nsp
    }

    /// Runs `f` on the machine, in the driver, and gives its result: for
    /// every command and query this type does not wrap.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut socketio::Client, Instant) -> R + Send + 'static,
    ) -> Result<R, ClientError> {
        self.handle.ask(move |core, now| f(&mut core.io, now)).await
    }

    /// Joins a namespace (or finds it joined) and waits until it is
    /// connected, at most [`ClientOptions::connect_timeout`]: a handle
    /// bound to it.
    pub async fn socket(&self, nsp: &str, auth: Option<Value>) -> Result<Client, ClientError> {
        let nsp = self.handle.join(nsp, auth).await?;
        Ok(Client {
            handle: self.handle.clone(),
            nsp,
        })
    }

    /// Emits an event on this namespace (buffered while disconnected, if
    /// the send buffer is on).
    pub async fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), ClientError> {
        let (nsp, name) = (self.nsp, event.to_owned());
        Ok(self
            .call(move |io, now| io.emit(now, nsp, &name, args))
            .await??)
    }

    /// [`emit`](Self::emit), saying whether the packet may be compressed
    /// (the official `socket.compress(false).emit(..)`; see
    /// [`socketio::Client::emit_compressed`]).
    pub async fn emit_compressed(
        &self,
        event: &str,
        args: Vec<Value>,
        compress: bool,
    ) -> Result<(), ClientError> {
        let (nsp, name) = (self.nsp, event.to_owned());
        Ok(self
            .call(move |io, now| io.emit_compressed(now, nsp, &name, args, compress))
            .await??)
    }

    /// Emits an event with typed arguments (see [`args`]).
    pub async fn emit_typed<T: Serialize + ?Sized>(
        &self,
        event: &str,
        value: &T,
    ) -> Result<(), ClientError> {
        let args = args(value).map_err(ClientError::Typed)?;
        self.emit(event, args).await
    }

    /// Emits only if it can leave at once (see
    /// [`socketio::Client::emit_volatile`]); false when dropped.
    pub async fn emit_volatile(&self, event: &str, args: Vec<Value>) -> Result<bool, ClientError> {
        let (nsp, name) = (self.nsp, event.to_owned());
        Ok(self
            .call(move |io, now| io.emit_volatile(now, nsp, &name, args))
            .await??)
    }

    /// Emits an event and waits for the server's answer, at most
    /// `timeout`.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, ClientError> {
        let (tx, rx) = oneshot::channel();
        let (nsp, name) = (self.nsp, event.to_owned());
        self.handle
            .ask(move |core, now| {
                match core.io.emit_with_ack(now, nsp, &name, args, Some(timeout)) {
                    Ok(id) => {
                        core.acks.insert((nsp, id), tx);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                    }
                }
            })
            .await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Answers an event that asked for it ([`ClientEvent::Event`]'s `nsp`
    /// and `ack`).
    pub async fn ack(&self, nsp: NspId, id: u64, args: Vec<Value>) -> Result<(), ClientError> {
        Ok(self
            .call(move |io, now| io.ack(now, nsp, id, args))
            .await??)
    }

    /// Leaves this namespace (see [`socketio::Client::disconnect`]).
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        let nsp = self.nsp;
        Ok(self.call(move |io, now| io.disconnect(now, nsp)).await??)
    }

    /// The transport in use, while connected.
    pub async fn transport(&self) -> Option<TransportKind> {
        self.call(|io, _| io.transport()).await.ok().flatten()
    }

    /// The machine's state.
    pub async fn state(&self) -> ClientState {
        self.call(|io, _| io.state())
            .await
            .unwrap_or(ClientState::Closed)
    }

    /// Leaves every namespace, closes the connection and waits until the
    /// driver is done (at most [`ClientOptions::close_grace`]). Events
    /// that came before stay readable.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.handle.close().await
    }
}
