//! A blocking Socket.IO client: the [`socketio::Client`] machine driven
//! over `std::net`.
//!
//! One driver thread owns the machine and every connection's write side
//! (and, with the `tls` feature, every TLS session): it performs the
//! machine's work, hands its events to the application, and waits for the
//! next input with the machine's `poll_timeout` as the time limit. The
//! standard library cannot wait on several sockets at once, so each
//! connection also has a small thread that only reads raw bytes and passes
//! them to the driver; no protocol runs there. Long-polling reuses
//! HTTP/1.1 keep-alive connections (a poll and a send in flight at once
//! use two); a WebSocket has a connection of its own.
//!
//! The application talks to the driver through [`Client`]: its calls run
//! on the driver thread, so the connection stays alive (pings answered,
//! reconnection) whether or not the application is reading events.

use std::{
    collections::{HashMap, VecDeque},
    io::{self, Write},
    net::{Shutdown, TcpStream, ToSocketAddrs},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

#[cfg(feature = "tls")]
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::{
    engineio::{ClientTransmit, RequestFailed, RequestId, TransportKind, TransportMode},
    entropy::{EntropyUnavailable, OsEntropy},
    http::{
        Limits, Query, ResponseHead, Url,
        client::{ResponseReader, keeps_alive},
    },
    socketio::{self, ClientConfig, ClientEvent, ClientState, ClientUsageError, NspId, Value},
};

/// A keep-alive connection idle for longer than this is not reused (the
/// server may be closing it: Node closes idle ones after 5 s).
const MAX_IDLE: Duration = Duration::from_secs(2);
/// How long [`Client::close`] lets the connection say goodbye.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Largest HTTP response body accepted (a polling payload).
const MAX_BODY: usize = 64 << 20;

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
    /// Waits this long before opening each WebSocket connection: a slow
    /// network, for tests of the upgrade. Default none.
    pub websocket_delay: Duration,
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
            websocket_delay: Duration::ZERO,
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
    /// Sets [`websocket_delay`](Self::websocket_delay).
    pub fn websocket_delay(mut self, d: Duration) -> Self {
        self.websocket_delay = d;
        self
    }
    /// Sets [`tls`](Self::tls).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }
}

type Call = Box<dyn FnOnce(&mut socketio::Client, Instant) + Send>;

enum Input {
    Call(Call),
    Stop,
    Connected(u64, TcpStream),
    Data(u64, Vec<u8>),
    Eof(u64),
    Failed(u64, String),
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
            tx: inputs.clone(),
            events: etx,
            host: u.host.clone(),
            port: u.port,
            wire,
            ws_delay: options.websocket_delay,
            conns: HashMap::new(),
            next_key: 0,
            requests: HashMap::new(),
            streams: HashMap::new(),
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

// ----- the wire: plain TCP, or TLS ------------------------------------------

/// How connections are made secure.
#[derive(Clone)]
enum WireConfig {
    Plain,
    #[cfg(feature = "tls")]
    Tls(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    ),
}

impl WireConfig {
    fn new(u: &Url, options: &ClientOptions) -> Result<WireConfig, ClientError> {
        if !u.secure {
            let _ = options;
            return Ok(WireConfig::Plain);
        }
        #[cfg(feature = "tls")]
        {
            let config = match &options.tls {
                Some(c) => c.clone(),
                None => default_tls_config()?,
            };
            let name = rustls::pki_types::ServerName::try_from(u.host.clone())
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            Ok(WireConfig::Tls(config, name))
        }
        #[cfg(not(feature = "tls"))]
        Err(ClientError::Url(format!(
            "{}:{} is secure: build wsio with the `tls` feature",
            u.host, u.port
        )))
    }
}

/// rustls with the ring provider and the webpki roots.
#[cfg(feature = "tls")]
pub fn default_tls_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

enum Wire {
    Plain,
    #[cfg(feature = "tls")]
    Tls(Box<rustls::ClientConnection>),
}

impl Wire {
    fn new(config: &WireConfig) -> io::Result<Wire> {
        match config {
            WireConfig::Plain => Ok(Wire::Plain),
            #[cfg(feature = "tls")]
            WireConfig::Tls(c, name) => {
                let mut conn = rustls::ClientConnection::new(c.clone(), name.clone())
                    .map_err(io::Error::other)?;
                // What the machine hands over is already bounded by its own
                // limits; a full rustls buffer would refuse writes made
                // before the handshake completes.
                conn.set_buffer_limit(None);
                Ok(Wire::Tls(Box::new(conn)))
            }
        }
    }

    /// Writes application bytes (encrypted if need be).
    fn write(&mut self, stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        match self {
            Wire::Plain => stream.write_all(data),
            #[cfg(feature = "tls")]
            Wire::Tls(c) => {
                c.writer().write_all(data)?;
                Self::flush_tls(c, stream)
            }
        }
    }

    #[cfg(feature = "tls")]
    fn flush_tls(c: &mut rustls::ClientConnection, stream: &mut TcpStream) -> io::Result<()> {
        while c.wants_write() {
            c.write_tls(stream)?;
        }
        Ok(())
    }

    /// Turns bytes read into application bytes (and answers the TLS
    /// handshake on `stream`).
    fn read(&mut self, stream: Option<&mut TcpStream>, data: Vec<u8>) -> io::Result<Vec<u8>> {
        match self {
            Wire::Plain => {
                let _ = stream;
                Ok(data)
            }
            #[cfg(feature = "tls")]
            Wire::Tls(c) => {
                use std::io::Read as _;
                let mut input = &data[..];
                let mut out = Vec::new();
                while !input.is_empty() {
                    c.read_tls(&mut input)?;
                    c.process_new_packets().map_err(io::Error::other)?;
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match c.reader().read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => out.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                if let Some(s) = stream {
                    Self::flush_tls(c, s)?;
                }
                Ok(out)
            }
        }
    }

    fn close(&mut self, stream: &mut TcpStream) {
        #[cfg(feature = "tls")]
        if let Wire::Tls(c) = self {
            c.send_close_notify();
            let _ = Self::flush_tls(c, stream);
        }
        let _ = stream.flush();
        let _ = stream.shutdown(Shutdown::Both);
    }
}

// ----- the driver ---------------------------------------------------------------

enum Role {
    Http {
        current: Option<RequestId>,
        reader: Box<ResponseReader>,
        buf: BytesMut,
        idle_since: Instant,
    },
    Stream(RequestId),
}

struct Conn {
    /// The write side, once connected.
    stream: Option<TcpStream>,
    wire: Wire,
    /// Bytes written before the connection was up.
    queued: Vec<u8>,
    /// Close as soon as it is up (after the queued bytes).
    close_when_up: bool,
    role: Role,
}

struct Driver {
    io: socketio::Client,
    inputs: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Input>,
    events: mpsc::Sender<ClientEvent>,
    host: String,
    port: u16,
    wire: WireConfig,
    ws_delay: Duration,
    conns: HashMap<u64, Conn>,
    next_key: u64,
    requests: HashMap<RequestId, u64>,
    streams: HashMap<RequestId, u64>,
    stopping: Option<Instant>,
}

impl Driver {
    fn run(mut self) {
        loop {
            self.flush();
            if let Some(deadline) = self.stopping {
                let quiet = self.io.state() == ClientState::Closed
                    && self.requests.is_empty()
                    && self.streams.is_empty();
                if quiet || Instant::now() >= deadline {
                    break;
                }
            }
            let deadline = [self.io.poll_timeout(), self.stopping]
                .into_iter()
                .flatten()
                .min();
            let input = match deadline {
                None => self.inputs.recv().ok(),
                Some(d) => {
                    let wait = d
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1));
                    match self.inputs.recv_timeout(wait) {
                        Ok(i) => Some(i),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            if let Some(i) = input {
                self.on_input(i);
            }
            let now = Instant::now();
            if self.io.poll_timeout().is_some_and(|t| t <= now) {
                self.io.handle_timeout(now);
            }
        }
        for (_, mut c) in self.conns.drain() {
            if let Some(s) = c.stream.as_mut() {
                c.wire.close(s);
            }
        }
    }

    /// Performs the machine's work and passes its events on.
    fn flush(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.io.poll_transmit() {
                moved = true;
                self.perform(t);
            }
            while let Some(ev) = self.io.poll_event() {
                moved = true;
                let _ = self.events.send(ev);
            }
            if !moved {
                return;
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Call(f) => f(&mut self.io, now),
            Input::Stop => {
                if self.stopping.is_none() {
                    self.io.close(now);
                    self.stopping = Some(now + CLOSE_GRACE);
                }
            }
            Input::Connected(key, stream) => self.on_connected(key, stream),
            Input::Data(key, data) => self.on_data(key, data),
            Input::Eof(key) => self.on_end(key, None),
            Input::Failed(key, why) => self.on_end(key, Some(why)),
        }
    }

    fn perform(&mut self, t: ClientTransmit) {
        let now = Instant::now();
        match t {
            ClientTransmit::Request { id, request } => {
                let mut bytes = BytesMut::new();
                request.encode(&mut bytes);
                let key = self.idle_http(now).unwrap_or_else(|| {
                    self.open(
                        Role::Http {
                            current: None,
                            reader: Box::new(ResponseReader::new(Limits::default(), MAX_BODY)),
                            buf: BytesMut::new(),
                            idle_since: now,
                        },
                        Duration::ZERO,
                    )
                });
                if let Some(Conn {
                    role: Role::Http { current, .. },
                    ..
                }) = self.conns.get_mut(&key)
                {
                    *current = Some(id);
                }
                self.requests.insert(id, key);
                if let Err(e) = self.write(key, &bytes) {
                    self.on_end(key, Some(e.to_string()));
                }
            }
            ClientTransmit::CancelRequest { id } => {
                if let Some(key) = self.requests.remove(&id) {
                    self.drop_conn(key);
                }
            }
            ClientTransmit::OpenStream { id } => {
                let key = self.open(Role::Stream(id), self.ws_delay);
                self.streams.insert(id, key);
            }
            ClientTransmit::StreamData { id, data } => {
                if let Some(&key) = self.streams.get(&id) {
                    if let Err(e) = self.write(key, &data) {
                        self.on_end(key, Some(e.to_string()));
                    }
                }
            }
            ClientTransmit::CloseStream { id } => {
                if let Some(key) = self.streams.remove(&id) {
                    match self.conns.get_mut(&key) {
                        Some(c) if c.stream.is_none() => c.close_when_up = true,
                        _ => self.drop_conn(key),
                    }
                }
            }
        }
    }

    /// A keep-alive connection free for a request.
    fn idle_http(&mut self, now: Instant) -> Option<u64> {
        let stale: Vec<u64> = self
            .conns
            .iter()
            .filter_map(|(k, c)| match &c.role {
                Role::Http {
                    current: None,
                    idle_since,
                    ..
                } if now.saturating_duration_since(*idle_since) > MAX_IDLE => Some(*k),
                _ => None,
            })
            .collect();
        for k in stale {
            self.drop_conn(k);
        }
        self.conns
            .iter()
            .filter(|(_, c)| !c.close_when_up && matches!(c.role, Role::Http { current: None, .. }))
            .map(|(k, _)| *k)
            .min()
    }

    /// Starts a connection: a thread connects, then reads.
    fn open(&mut self, role: Role, delay: Duration) -> u64 {
        self.next_key += 1;
        let key = self.next_key;
        let wire = Wire::new(&self.wire);
        let failed = wire.is_err();
        self.conns.insert(
            key,
            Conn {
                stream: None,
                wire: wire.unwrap_or(Wire::Plain),
                queued: Vec::new(),
                close_when_up: false,
                role,
            },
        );
        let (host, port, tx) = (self.host.clone(), self.port, self.tx.clone());
        let spawned = thread::Builder::new()
            .name("wsio-conn".into())
            .spawn(move || connect_and_read(key, &host, port, delay, failed, tx));
        if spawned.is_err() {
            let _ = self
                .tx
                .send(Input::Failed(key, "cannot spawn a thread".into()));
        }
        key
    }

    fn write(&mut self, key: u64, data: &[u8]) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(&key) else {
            return Ok(());
        };
        match c.stream.as_mut() {
            None => {
                c.queued.extend_from_slice(data);
                Ok(())
            }
            Some(s) => c.wire.write(s, data),
        }
    }

    fn drop_conn(&mut self, key: u64) {
        if let Some(mut c) = self.conns.remove(&key) {
            if let Some(s) = c.stream.as_mut() {
                c.wire.close(s);
            }
        }
    }

    fn on_connected(&mut self, key: u64, stream: TcpStream) {
        let Some(c) = self.conns.get_mut(&key) else {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        let _ = stream.set_nodelay(true);
        let queued = std::mem::take(&mut c.queued);
        let close = c.close_when_up;
        let s = c.stream.insert(stream);
        // A TLS client speaks first even with nothing queued.
        if let Err(e) = c.wire.write(s, &queued) {
            return self.on_end(key, Some(e.to_string()));
        }
        if close {
            self.drop_conn(key);
        }
    }

    fn on_data(&mut self, key: u64, data: Vec<u8>) {
        enum Outcome {
            Stream(RequestId),
            Nothing,
            Response(RequestId, (ResponseHead, Bytes), bool),
            Drop,
            Fail(String),
        }
        let now = Instant::now();
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let plain = match c.wire.read(c.stream.as_mut(), data) {
            Ok(p) => p,
            Err(e) => return self.on_end(key, Some(e.to_string())),
        };
        let outcome = match &mut c.role {
            Role::Stream(id) => Outcome::Stream(*id),
            Role::Http {
                current,
                reader,
                buf,
                idle_since,
            } => {
                buf.extend_from_slice(&plain);
                match reader.read(buf) {
                    Ok(None) => Outcome::Nothing,
                    // An answer to nothing: drop the connection.
                    Ok(Some(_)) if current.is_none() => Outcome::Drop,
                    Ok(Some((head, body))) => {
                        *idle_since = now;
                        let keep = keeps_alive(&head) && buf.is_empty();
                        match current.take() {
                            Some(id) => Outcome::Response(id, (head, body), keep),
                            None => Outcome::Drop,
                        }
                    }
                    Err(e) => Outcome::Fail(e.to_string()),
                }
            }
        };
        match outcome {
            Outcome::Stream(id) => self.io.handle_stream_input(now, id, &plain),
            Outcome::Nothing => {}
            Outcome::Response(id, response, keep) => {
                self.requests.remove(&id);
                if !keep {
                    self.drop_conn(key);
                }
                self.io.handle_response(now, id, Ok(response));
            }
            Outcome::Drop => self.drop_conn(key),
            Outcome::Fail(why) => self.on_end(key, Some(why)),
        }
    }

    /// The connection ended (`why` says how, if it failed).
    fn on_end(&mut self, key: u64, why: Option<String>) {
        let now = Instant::now();
        let Some(mut c) = self.conns.remove(&key) else {
            return;
        };
        if let Some(s) = c.stream.as_mut() {
            let _ = s.shutdown(Shutdown::Both);
        }
        match c.role {
            Role::Stream(id) => {
                self.streams.remove(&id);
                match why {
                    None => self.io.handle_stream_eof(now, id),
                    Some(_) => self.io.handle_stream_error(now, id),
                }
            }
            Role::Http {
                current: Some(id),
                mut reader,
                ..
            } => {
                self.requests.remove(&id);
                let result: Result<(ResponseHead, Bytes), RequestFailed> = match why {
                    None => reader
                        .finish()
                        .map_err(|e| RequestFailed::new(e.to_string())),
                    Some(w) => Err(RequestFailed::new(w)),
                };
                self.io.handle_response(now, id, result);
            }
            Role::Http { current: None, .. } => {}
        }
    }
}

/// The connection thread: connects (after `delay`), hands the write side to
/// the driver, then passes on what it reads until the end.
fn connect_and_read(
    key: u64,
    host: &str,
    port: u16,
    delay: Duration,
    failed: bool,
    tx: mpsc::Sender<Input>,
) {
    use std::io::Read as _;
    if failed {
        let _ = tx.send(Input::Failed(key, "TLS setup failed".into()));
        return;
    }
    if !delay.is_zero() {
        thread::sleep(delay);
    }
    let mut last = io::Error::other("no address");
    let mut stream = None;
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            for a in addrs {
                match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
        }
        Err(e) => last = e,
    }
    let Some(mut reader) = stream else {
        let _ = tx.send(Input::Failed(key, last.to_string()));
        return;
    };
    let writer = match reader.try_clone() {
        Ok(w) => w,
        Err(e) => {
            let _ = tx.send(Input::Failed(key, e.to_string()));
            return;
        }
    };
    if tx.send(Input::Connected(key, writer)).is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let input = match reader.read(&mut buf) {
            Ok(0) => Input::Eof(key),
            Ok(n) => Input::Data(key, buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Input::Failed(key, e.to_string()),
        };
        let last = !matches!(input, Input::Data(..));
        if tx.send(input).is_err() || last {
            return;
        }
    }
}
