use std::{
    io::{self, Read, Write},
    net::TcpStream,
    time::Instant,
};

use bytes::Bytes;

use super::{Socket, is_timeout, timeout_until};
use crate::{
    entropy::{EntropyUnavailable, OsEntropy},
    http::Url,
    ws::{
        self, Accept, ClientRequest, CloseCode, Config, Connection, Event, Message, Transmit,
        UpgradeRequest, UsageError,
    },
};

/// What a blocking WebSocket call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The call was not valid now.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The URL is not a `ws://` (or, with the `tls` feature, `wss://`)
    /// URL.
    #[error("invalid WebSocket URL: {0}")]
    Url(String),
    /// No secure randomness for the masking keys.
    #[error(transparent)]
    Entropy(#[from] EntropyUnavailable),
    /// The connection is closed (how is in the [`ws::Closed`]).
    #[error("the connection is closed: {} {}", .0.code, .0.reason)]
    Closed(ws::Closed),
}

/// The stream of a client [`WebSocket`]: TCP, with rustls around it for
/// `wss://` (feature `tls`).
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientStream {
    /// A `ws://` connection.
    Plain(TcpStream),
    /// A `wss://` connection.
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl ClientStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            ClientStream::Tls(s) => &s.sock,
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            ClientStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            ClientStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            ClientStream::Tls(s) => s.flush(),
        }
    }
}

impl Socket for ClientStream {
    fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    fn close(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => Socket::close(s),
            #[cfg(feature = "tls")]
            ClientStream::Tls(s) => {
                s.conn.send_close_notify();
                // The peer may be gone already: the TCP close still runs.
                let _ = s.flush();
                Socket::close(&mut s.sock)
            }
        }
    }
}

/// A WebSocket over a blocking socket.
///
/// ```no_run
/// use wsio::{blocking::WebSocket, ws::Message};
/// let mut ws = WebSocket::connect("ws://127.0.0.1:9001/")?;
/// ws.send(Message::text("hello"))?;
/// let reply = ws.read()?;
/// # Ok::<(), wsio::blocking::Error>(())
/// ```
#[derive(Debug)]
pub struct WebSocket<S: Socket = TcpStream> {
    stream: S,
    conn: Connection,
    protocol: Option<String>,
    closed: Option<ws::Closed>,
    socket_closed: bool,
}

impl WebSocket<ClientStream> {
    /// Opens a client connection to a `ws://` URL (or, with the `tls`
    /// feature, a `wss://` one, trusting Mozilla's roots) with the default
    /// config.
    pub fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, Config::default(), |r| r)
    }

    /// Opens a client connection; `customize` may add subprotocols or
    /// headers to the request.
    pub fn connect_with(
        url: &str,
        config: Config,
        customize: impl FnOnce(ClientRequest) -> ClientRequest,
    ) -> Result<Self, Error> {
        #[cfg(feature = "tls")]
        {
            let tls = super::default_tls_config().map_err(|e| Error::Io(io::Error::other(e)))?;
            Self::connect_tls(url, config, tls, customize)
        }
        #[cfg(not(feature = "tls"))]
        {
            let u = Url::parse(url).ok_or_else(|| Error::Url(url.to_owned()))?;
            if u.secure {
                return Err(Error::Url(format!(
                    "{url} (wss:// needs wsio's `tls` feature)"
                )));
            }
            let stream = TcpStream::connect((u.host.as_str(), u.port))?;
            stream.set_nodelay(true)?;
            let request = customize(ClientRequest::new(u.host_header(), u.target));
            Self::client_on(ClientStream::Plain(stream), config, request)
        }
    }

    /// Like [`connect_with`](Self::connect_with), a `wss://` URL's server
    /// checked against `tls` (its roots, a client certificate...).
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        url: &str,
        config: Config,
        tls: std::sync::Arc<rustls::ClientConfig>,
        customize: impl FnOnce(ClientRequest) -> ClientRequest,
    ) -> Result<Self, Error> {
        let u = Url::parse(url).ok_or_else(|| Error::Url(url.to_owned()))?;
        let stream = TcpStream::connect((u.host.as_str(), u.port))?;
        stream.set_nodelay(true)?;
        let request = customize(ClientRequest::new(u.host_header(), u.target));
        let stream = if u.secure {
            let name = rustls::pki_types::ServerName::try_from(u.host.clone())
                .map_err(|e| Error::Url(format!("{url} ({e})")))?;
            let conn = rustls::ClientConnection::new(tls, name).map_err(io::Error::other)?;
            ClientStream::Tls(Box::new(rustls::StreamOwned::new(conn, stream)))
        } else {
            ClientStream::Plain(stream)
        };
        Self::client_on(stream, config, request)
    }
}

impl WebSocket<TcpStream> {
    /// Accepts a server connection on an accepted TCP stream, taking any
    /// valid request with no subprotocol.
    pub fn accept(stream: TcpStream) -> Result<Self, Error> {
        Self::accept_with(stream, Config::default(), |_| Ok(Accept::new()))
    }

    /// Accepts a server connection; `decide` sees the request (path, origin,
    /// subprotocols) and accepts it or answers an HTTP status.
    pub fn accept_with(
        stream: TcpStream,
        config: Config,
        decide: impl FnOnce(&UpgradeRequest) -> Result<Accept, u16>,
    ) -> Result<Self, Error> {
        stream.set_nodelay(true)?;
        Self::server_on(stream, config, decide)
    }
}

impl<S: Socket> WebSocket<S> {
    /// Runs the client handshake on any stream.
    pub fn client_on(stream: S, config: Config, request: ClientRequest) -> Result<Self, Error> {
        let conn = Connection::client(config, request, Box::new(OsEntropy::new()?));
        let mut ws = Self::wrap(stream, conn);
        loop {
            match ws.next_event()? {
                Event::Open { protocol } => {
                    ws.protocol = protocol;
                    return Ok(ws);
                }
                Event::Closed(c) => return Err(Error::Closed(c)),
                _ => {}
            }
        }
    }

    /// Runs the server handshake on any stream.
    pub fn server_on(
        stream: S,
        config: Config,
        decide: impl FnOnce(&UpgradeRequest) -> Result<Accept, u16>,
    ) -> Result<Self, Error> {
        let mut ws = Self::wrap(stream, Connection::server(config));
        let mut decide = Some(decide);
        loop {
            match ws.next_event()? {
                Event::Upgrade(req) => match decide.take().map(|d| d(&req)) {
                    Some(Ok(accept)) => ws.conn.accept(Instant::now(), accept)?,
                    Some(Err(status)) => ws.conn.reject(status)?,
                    None => ws.conn.reject(500)?,
                },
                Event::Open { protocol } => {
                    ws.protocol = protocol;
                    ws.flush()?;
                    return Ok(ws);
                }
                Event::Closed(c) => {
                    ws.flush()?;
                    return Err(Error::Closed(c));
                }
                _ => {}
            }
        }
    }

    fn wrap(stream: S, conn: Connection) -> Self {
        WebSocket {
            stream,
            conn,
            protocol: None,
            closed: None,
            socket_closed: false,
        }
    }

    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The machine, for calls this driver does not wrap.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The next message. Pings are answered, pongs skipped; once the
    /// connection ends, [`Error::Closed`] says how.
    pub fn read(&mut self) -> Result<Message, Error> {
        loop {
            match self.next_event()? {
                Event::Message(m) => return Ok(m),
                Event::Closed(c) => return Err(Error::Closed(c)),
                _ => {}
            }
        }
    }

    /// The next event of any kind.
    pub fn next_event(&mut self) -> Result<Event, Error> {
        loop {
            self.flush()?;
            // One event at a time, not `machine::drain`: the caller answers
            // each before the next frame is decoded (see `ws::Connection`),
            // and `flush` writes the answers before the next poll.
            if let Some(ev) = self.conn.poll_event(Instant::now()) {
                if let Event::Closed(c) = &ev {
                    self.closed = Some(c.clone());
                }
                self.flush()?;
                return Ok(ev);
            }
            if let Some(c) = &self.closed {
                if self.socket_closed {
                    return Err(Error::Closed(c.clone()));
                }
            }
            if self.socket_closed {
                return Err(Error::Io(io::ErrorKind::NotConnected.into()));
            }
            self.stream
                .set_read_timeout(timeout_until(self.conn.poll_timeout()))?;
            // Straight into the machine's buffer; the time is read once the
            // read has returned.
            match self.conn.read_from(&mut self.stream) {
                Ok(0) => self.conn.handle_eof(Instant::now()),
                Ok(_) => self.conn.commit_input(Instant::now()),
                Err(e) if is_timeout(&e) => self.conn.handle_timeout(Instant::now()),
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

    /// Sends a message and writes it out.
    pub fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.conn.send(msg)?;
        self.flush()
    }

    /// Sends a ping.
    pub fn ping(&mut self, payload: Bytes) -> Result<(), Error> {
        self.conn.ping(payload)?;
        self.flush()
    }

    /// Starts the closing handshake; keep calling [`read`](Self::read) until
    /// it returns [`Error::Closed`] to finish it.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.conn.close(Instant::now(), code, reason)?;
        self.flush()
    }

    /// Writes everything the machine queued.
    pub fn flush(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        while let Some(t) = self.conn.poll_transmit(now) {
            match t {
                Transmit::Data(b) => self.stream.write_all(&b)?,
                Transmit::Close => {
                    self.socket_closed = true;
                    // A failed shutdown means the peer is gone already.
                    let _ = self.stream.close();
                }
            }
        }
        Ok(())
    }
}
