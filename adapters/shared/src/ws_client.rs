//! The WebSocket client on any runtime: [`WebSocket`], a `ws::Connection`
//! over a stream from the runtime's [`Connector`] (`wss://` through its
//! TLS).
//!
//! It has no task of its own: each call moves the machine as far as it
//! needs (write what it queued, read, wake for its deadline), as the
//! blocking `wsio::blocking::WebSocket` does, so pings are answered while
//! the application reads. Every call is cancel-safe: bytes the machine
//! queued and a dropped call did not write stay queued for the next.
//!
//! It keeps no output of its own (`wsio::machine`, "Backpressure"): it
//! takes one transmit at a time and waits until the socket has taken it
//! before polling the next, so what the peer has not read waits in the
//! connection's send queue, against `ws::Config::max_send_queue`.

use std::{future::poll_fn, io, task::Poll, time::Instant};

use bytes::{Buf, Bytes};
use wsio::{
    entropy::OsEntropy,
    http::Url,
    ws::{
        self, ClientRequest, CloseCode, Config, Connection, Event, Message, Transmit, UsageError,
    },
};

use crate::runtime::{Connector, Sleep, Stream};

/// What a WebSocket call can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum WsError {
    /// The socket failed.
    Io(io::Error),
    /// The call was not valid now.
    Usage(UsageError),
    /// The URL is not a `ws://` or `wss://` URL.
    Url(String),
    /// No secure randomness for the masking keys.
    Entropy(String),
    /// The connection is closed (how is in the [`ws::Closed`]).
    Closed(ws::Closed),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Io(e) => write!(f, "{e}"),
            WsError::Usage(e) => write!(f, "{e}"),
            WsError::Url(u) => write!(f, "invalid WebSocket URL: {u}"),
            WsError::Entropy(e) => write!(f, "no secure randomness: {e}"),
            WsError::Closed(c) => write!(f, "the connection is closed: {} {}", c.code, c.reason),
        }
    }
}

impl std::error::Error for WsError {}

impl From<io::Error> for WsError {
    fn from(e: io::Error) -> Self {
        WsError::Io(e)
    }
}

impl From<UsageError> for WsError {
    fn from(e: UsageError) -> Self {
        WsError::Usage(e)
    }
}

/// A client WebSocket.
pub struct WebSocket {
    stream: Box<dyn Stream>,
    conn: Connection,
    sleep: Box<dyn Sleep>,
    armed: Option<Instant>,
    protocol: Option<String>,
    closed: Option<ws::Closed>,
    /// What is left of the transmit being written.
    out: Bytes,
    /// The machine said to close the socket once `out` is written.
    close_after: bool,
    socket_closed: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.conn)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl WebSocket {
    /// Opens a connection to a `ws://` or `wss://` URL through
    /// `connector`; `customize` may add subprotocols or headers to the
    /// request.
    pub async fn connect(
        connector: &dyn Connector,
        url: &str,
        config: Config,
        customize: impl FnOnce(ClientRequest) -> ClientRequest,
    ) -> Result<WebSocket, WsError> {
        let u = Url::parse(url).ok_or_else(|| WsError::Url(url.to_owned()))?;
        let entropy = OsEntropy::new().map_err(|e| WsError::Entropy(e.to_string()))?;
        let stream = connector.connect(&u.host, u.port, u.secure).await?;
        let request = customize(ClientRequest::new(u.host_header(), u.target));
        let mut ws = WebSocket {
            stream,
            conn: Connection::client(config, request, Box::new(entropy)),
            sleep: connector.sleep(),
            armed: None,
            protocol: None,
            closed: None,
            out: Bytes::new(),
            close_after: false,
            socket_closed: false,
            buf: vec![0; 16 * 1024],
        };
        loop {
            match ws.next_event().await? {
                Event::Open { protocol } => {
                    ws.protocol = protocol;
                    return Ok(ws);
                }
                Event::Closed(c) => return Err(WsError::Closed(c)),
                _ => {}
            }
        }
    }

    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The machine, for calls this driver does not wrap (then
    /// [`flush`](Self::flush)).
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The next message. Pings are answered, pongs skipped; once the
    /// connection ends, [`WsError::Closed`] says how.
    pub async fn read(&mut self) -> Result<Message, WsError> {
        loop {
            match self.next_event().await? {
                Event::Message(m) => return Ok(m),
                Event::Closed(c) => return Err(WsError::Closed(c)),
                _ => {}
            }
        }
    }

    /// The next event of any kind.
    pub async fn next_event(&mut self) -> Result<Event, WsError> {
        loop {
            self.flush().await?;
            // One event at a time: the caller answers each before the next
            // frame is decoded (see `ws::Connection`).
            if let Some(ev) = self.conn.poll_event(Instant::now()) {
                if let Event::Closed(c) = &ev {
                    self.closed = Some(c.clone());
                }
                self.flush().await?;
                return Ok(ev);
            }
            if self.socket_closed {
                return Err(match &self.closed {
                    Some(c) => WsError::Closed(c.clone()),
                    None => WsError::Io(io::ErrorKind::NotConnected.into()),
                });
            }
            match self.wait().await {
                Ok(Some(0)) => self.conn.handle_eof(Instant::now()),
                Ok(Some(n)) => {
                    let bytes = self.buf.get(..n).unwrap_or_default();
                    self.conn.handle_input(Instant::now(), bytes);
                }
                Ok(None) => self.conn.handle_timeout(Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conn.handle_eof(Instant::now());
                    if self.closed.is_some() {
                        return Err(e.into());
                    }
                }
            }
        }
    }

    /// A read, or `None` once the machine's deadline has passed.
    async fn wait(&mut self) -> io::Result<Option<usize>> {
        let deadline = self.conn.poll_timeout();
        if let Some(d) = deadline {
            if self.armed != Some(d) {
                self.sleep.reset(d);
                self.armed = Some(d);
            }
        }
        let WebSocket {
            stream, sleep, buf, ..
        } = self;
        let r = poll_fn(|cx| {
            if let Poll::Ready(r) = stream.poll_read(cx, buf) {
                return Poll::Ready(r.map(Some));
            }
            if deadline.is_some() && sleep.poll_sleep(cx).is_ready() {
                return Poll::Ready(Ok(None));
            }
            Poll::Pending
        })
        .await;
        if matches!(r, Ok(None)) {
            self.armed = None;
        }
        r
    }

    /// Sends a message and writes it out.
    pub async fn send(&mut self, msg: Message) -> Result<(), WsError> {
        self.conn.send(msg)?;
        self.flush().await
    }

    /// Sends a ping.
    pub async fn ping(&mut self, payload: Bytes) -> Result<(), WsError> {
        self.conn.ping(payload)?;
        self.flush().await
    }

    /// Starts the closing handshake; keep calling [`read`](Self::read)
    /// until it returns [`WsError::Closed`] to finish it.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), WsError> {
        self.conn.close(Instant::now(), code, reason)?;
        self.flush().await
    }

    /// Writes everything the machine queued, one transmit at a time.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        loop {
            if self.out.is_empty() {
                match self.conn.poll_transmit(Instant::now()) {
                    Some(Transmit::Data(b)) => self.out = b,
                    Some(Transmit::Close) => self.close_after = true,
                    None => break,
                }
                continue;
            }
            let WebSocket { stream, out, .. } = self;
            let n = poll_fn(|cx| stream.poll_write_vectored(cx, &[io::IoSlice::new(out)])).await;
            match n {
                Ok(0) => return Err(WsError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => out.advance(n.min(out.len())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.close_after && !self.socket_closed {
            // A failed shutdown means the peer is gone already.
            let _ = poll_fn(|cx| self.stream.poll_shutdown(cx)).await;
            self.socket_closed = true;
        }
        Ok(())
    }
}
