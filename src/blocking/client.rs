//! A blocking Socket.IO client: the [`socketio::Client`] machine driven
//! over `std::net`.
//!
//! One driver thread owns the machine and every connection's write side
//! (and, with the `tls` feature, every TLS session): it performs the
//! machine's work, hands its events to the application, and waits for the
//! next input with the machine's `poll_timeout` as the time limit. The
//! standard library cannot wait on several sockets at once, so each
//! connection also has a small thread that only reads raw bytes and passes
//! them to the driver; no protocol runs there. The driver only opens the
//! connections the machine asks for, moves their bytes (through TLS, with
//! the `tls` feature) and closes them: HTTP, keep-alive and WebSockets are
//! the machine's.
//!
//! The application talks to the driver through [`Client`]: its calls run
//! on the driver thread, so the connection stays alive (pings answered,
//! reconnection) whether or not the application is reading events.

use std::{
    collections::{HashMap, VecDeque},
    io,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
pub use super::wire::default_tls_config;
use super::{
    driver::{Call, Driver, Input, Net},
    wire::WireConfig,
};
use crate::{
    engineio::{TransportKind, TransportMode},
    entropy::{EntropyUnavailable, OsEntropy},
    http::{Query, Url},
    socketio::{self, ClientConfig, ClientEvent, ClientState, ClientUsageError, NspId, Value},
};

/// What a blocking client call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not an `http`, `https`, `ws` or `wss` URL this driver can
    /// reach.
    #[error("invalid Socket.IO URL: {0}")]
    Url(String),
    /// The TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// No secure randomness for the WebSocket masking keys.
    #[error(transparent)]
    Entropy(#[from] EntropyUnavailable),
    /// The call was not valid now.
    #[error(transparent)]
    Usage(#[from] ClientUsageError),
    /// The server refused the namespace (its `connect_error` payload).
    #[error("the server refused the namespace: {0}")]
    Refused(Value),
    /// No connection could be made (and reconnection is off or gave up).
    #[error("could not connect: {0}")]
    ConnectFailed(String),
    /// The namespace did not connect in time.
    #[error("timed out")]
    Timeout,
    /// The acknowledgement did not come in time.
    #[error("no acknowledgement in time")]
    AckTimeout,
    /// The socket disconnected before the acknowledgement came.
    #[error("the socket disconnected before the acknowledgement")]
    AckLost,
    /// The client is closed.
    #[error("the client is closed")]
    Closed,
    /// The driver thread could not be started.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Options of [`Client::connect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The auth payload of the URL's namespace (an object).
    pub auth: Option<Value>,
    /// The machine's options (transports, reconnection, path...). Its
    /// `Host` header is taken from the URL.
    pub config: ClientConfig,
    /// How long [`Client::connect`] waits for the namespace. Default 20 s.
    pub connect_timeout: Duration,
    /// The TLS configuration for `https` and `wss` URLs; default: the
    /// webpki roots.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            auth: None,
            config: ClientConfig::new(""),
            connect_timeout: Duration::from_secs(20),
            #[cfg(feature = "tls")]
            tls: None,
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
    /// Sets the transports.
    pub fn mode(mut self, mode: TransportMode) -> Self {
        self.config.engine.mode = mode;
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
    /// Sets [`tls`](Self::tls).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }
}

/// A Socket.IO client over blocking sockets.
///
/// ```no_run
/// use std::time::Duration;
/// use wsio::{blocking::{Client, ClientOptions}, socketio::{ClientEvent, Value}};
///
/// let mut io = Client::connect("http://127.0.0.1:3000", ClientOptions::new())?;
/// io.emit("chat", vec![Value::from("hello")])?;
/// let answer = io.emit_with_ack("ping", vec![], Duration::from_secs(5))?;
/// while let Some(event) = io.next_event(Some(Duration::from_secs(1)))? {
///     if let ClientEvent::Event { name, args, .. } = event {
///         println!("{name} {args:?}");
///     }
/// }
/// io.close();
/// # Ok::<(), wsio::blocking::ClientError>(())
/// ```
#[derive(Debug)]
pub struct Client {
    inputs: mpsc::Sender<Input>,
    events: mpsc::Receiver<ClientEvent>,
    pending: VecDeque<ClientEvent>,
    nsp: NspId,
    thread: Option<thread::JoinHandle<()>>,
}

impl Client {
    /// Connects to the namespace named by the URL's path (`/` when none;
    /// `http://host:3000/chat` is `/chat`), its query added to every
    /// request, and waits until that namespace is connected. With
    /// reconnection on (the default), failed attempts are retried until
    /// [`ClientOptions::connect_timeout`].
    pub fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
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
        let wire = WireConfig::new(&u, &options)?;
        let (inputs, rx) = mpsc::channel();
        let (etx, events) = mpsc::channel();
        let machine = socketio::Client::new(config, Box::new(OsEntropy::new()?), Instant::now());
        let driver = Driver {
            io: machine,
            inputs: rx,
            events: etx,
            net: Net {
                tx: inputs.clone(),
                host: u.host.clone(),
                port: u.port,
                wire,
                conns: HashMap::new(),
            },
            stopping: None,
        };
        let thread = thread::Builder::new()
            .name("wsio-client".into())
            .spawn(move || driver.run())?;
        let auth = options.auth.clone();
        let joined = call(&inputs, move |io, now| io.socket(now, &nsp_name, auth));
        let nsp = match joined {
            Ok(Ok(nsp)) => nsp,
            Ok(Err(e)) => {
                let _ = inputs.send(Input::Stop);
                return Err(e.into());
            }
            Err(e) => return Err(e),
        };
        let mut client = Client {
            inputs,
            events,
            pending: VecDeque::new(),
            nsp,
            thread: Some(thread),
        };
        let reconnection = options.config.reconnection;
        match client.wait_connect(client.nsp, options.connect_timeout, reconnection) {
            Ok(()) => Ok(client),
            Err(e) => {
                client.close();
                Err(e)
            }
        }
    }

    /// Waits until `nsp` connects; every event stays queued for
    /// [`next_event`](Self::next_event).
    fn wait_connect(
        &mut self,
        nsp: NspId,
        limit: Duration,
        reconnection: bool,
    ) -> Result<(), ClientError> {
        let start = Instant::now();
        let end = start
            .checked_add(limit)
            .unwrap_or(start + Duration::from_secs(86_400));
        let mut seen = 0;
        loop {
            while let Some(ev) = self.pending.get(seen) {
                seen += 1;
                match ev {
                    ClientEvent::Connect { nsp: n, .. } if *n == nsp => return Ok(()),
                    ClientEvent::ConnectError { nsp: n, data } if *n == nsp => {
                        return Err(ClientError::Refused(data.clone()));
                    }
                    ClientEvent::OpenError { reason, error } if !reconnection => {
                        return Err(ClientError::ConnectFailed(describe(*reason, error)));
                    }
                    ClientEvent::ReconnectFailed => {
                        return Err(ClientError::ConnectFailed("reconnection failed".into()));
                    }
                    _ => {}
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout);
            }
            match self.events.recv_timeout(left) {
                Ok(ev) => self.pending.push_back(ev),
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(ClientError::Timeout),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(ClientError::Closed),
            }
        }
    }

    /// The socket of the URL's namespace.
    pub fn nsp(&self) -> NspId {
        self.nsp
    }

    /// Runs `f` on the machine, on the driver thread, and gives its
    /// result: for every command and query this type does not wrap.
    pub fn with<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut socketio::Client, Instant) -> R + Send + 'static,
    ) -> Result<R, ClientError> {
        call(&self.inputs, f)
    }

    /// Joins another namespace (see [`socketio::Client::socket`]); its
    /// [`ClientEvent::Connect`] comes through [`next_event`](Self::next_event).
    pub fn socket(&mut self, nsp: &str, auth: Option<Value>) -> Result<NspId, ClientError> {
        let name = nsp.to_owned();
        Ok(self.with(move |io, now| io.socket(now, &name, auth))??)
    }

    /// Emits on the URL's namespace.
    pub fn emit(&mut self, event: &str, args: Vec<Value>) -> Result<(), ClientError> {
        let nsp = self.nsp;
        self.emit_to(nsp, event, args)
    }

    /// Emits on a namespace.
    pub fn emit_to(
        &mut self,
        nsp: NspId,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), ClientError> {
        let name = event.to_owned();
        Ok(self.with(move |io, now| io.emit(now, nsp, &name, args))??)
    }

    /// Emits only if it can leave at once (see
    /// [`socketio::Client::emit_volatile`]); false when dropped.
    pub fn emit_volatile(
        &mut self,
        nsp: NspId,
        event: &str,
        args: Vec<Value>,
    ) -> Result<bool, ClientError> {
        let name = event.to_owned();
        Ok(self.with(move |io, now| io.emit_volatile(now, nsp, &name, args))??)
    }

    /// Emits on the URL's namespace and waits for the answer.
    pub fn emit_with_ack(
        &mut self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, ClientError> {
        let nsp = self.nsp;
        self.emit_with_ack_to(nsp, event, args, timeout)
    }

    /// Emits on a namespace and waits for the answer; other events that
    /// come meanwhile stay queued for [`next_event`](Self::next_event).
    pub fn emit_with_ack_to(
        &mut self,
        nsp: NspId,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, ClientError> {
        let name = event.to_owned();
        let id =
            self.with(move |io, now| io.emit_with_ack(now, nsp, &name, args, Some(timeout)))??;
        let mut seen = 0;
        loop {
            while seen < self.pending.len() {
                let hit = match &self.pending[seen] {
                    ClientEvent::Ack { nsp: n, id: i, .. } if *n == nsp && *i == id => Some(Ok(())),
                    ClientEvent::AckTimeout { nsp: n, id: i } if *n == nsp && *i == id => {
                        Some(Err(ClientError::AckTimeout))
                    }
                    ClientEvent::AckLost { nsp: n, id: i } if *n == nsp && *i == id => {
                        Some(Err(ClientError::AckLost))
                    }
                    _ => None,
                };
                match hit {
                    None => seen += 1,
                    Some(r) => {
                        let ev = self.pending.remove(seen);
                        r?;
                        return match ev {
                            Some(ClientEvent::Ack { args, .. }) => Ok(args),
                            _ => Err(ClientError::Closed),
                        };
                    }
                }
            }
            match self.events.recv() {
                Ok(ev) => self.pending.push_back(ev),
                Err(_) => return Err(ClientError::Closed),
            }
        }
    }

    /// Answers an event that asked for it ([`ClientEvent::Event`]'s `ack`).
    pub fn ack(&mut self, nsp: NspId, id: u64, args: Vec<Value>) -> Result<(), ClientError> {
        Ok(self.with(move |io, now| io.ack(now, nsp, id, args))??)
    }

    /// Leaves a namespace (see [`socketio::Client::disconnect`]).
    pub fn disconnect(&mut self, nsp: NspId) -> Result<(), ClientError> {
        Ok(self.with(move |io, now| io.disconnect(now, nsp))??)
    }

    /// The transport in use, while connected.
    pub fn transport(&mut self) -> Option<TransportKind> {
        self.with(|io, _| io.transport()).ok().flatten()
    }

    /// The machine's state.
    pub fn state(&mut self) -> ClientState {
        self.with(|io, _| io.state()).unwrap_or(ClientState::Closed)
    }

    /// The next event: waits at most `timeout` (`None`: for ever) and gives
    /// `Ok(None)` if nothing came; [`ClientError::Closed`] once the client
    /// is closed and every event was taken.
    pub fn next_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<ClientEvent>, ClientError> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        match timeout {
            None => self
                .events
                .recv()
                .map(Some)
                .map_err(|_| ClientError::Closed),
            Some(d) => match self.events.recv_timeout(d) {
                Ok(ev) => Ok(Some(ev)),
                Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(ClientError::Closed),
            },
        }
    }

    /// Leaves every namespace, closes the connection (waiting a moment for
    /// the goodbyes to leave) and stops the driver. Events that came
    /// before stay readable with [`next_event`](Self::next_event).
    pub fn close(&mut self) {
        let _ = self.inputs.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        while let Ok(ev) = self.events.try_recv() {
            self.pending.push_back(ev);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The driver winds down on its own (within the close grace).
        let _ = self.inputs.send(Input::Stop);
    }
}

fn describe(
    reason: crate::engineio::CloseReason,
    error: &Option<crate::engineio::ClientError>,
) -> String {
    match error {
        Some(e) => format!("{reason}: {e}"),
        None => reason.to_string(),
    }
}

/// Runs `f` on the driver thread and waits for its result.
fn call<R: Send + 'static>(
    inputs: &mpsc::Sender<Input>,
    f: impl FnOnce(&mut socketio::Client, Instant) -> R + Send + 'static,
) -> Result<R, ClientError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let call: Call = Box::new(move |io, now| {
        let _ = tx.send(f(io, now));
    });
    inputs
        .send(Input::Call(call))
        .map_err(|_| ClientError::Closed)?;
    rx.recv().map_err(|_| ClientError::Closed)
}
