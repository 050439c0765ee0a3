//! The driver thread of the blocking client: it owns the machine and the
//! write side of every connection, carries out the machine's transmits
//! (open a connection, write on it, close it), hands its events to the
//! application's channel, and feeds it what the connection threads read.
//! It moves bytes, time and connection ends; the protocols are the
//! machine's.

use std::{
    collections::HashMap,
    io,
    net::{Shutdown, TcpStream, ToSocketAddrs},
    ops::ControlFlow,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use super::wire::{Wire, WireConfig};
use crate::{
    engineio::{ClientTransmit, ConnId},
    machine::drain,
    socketio::{self, ClientEvent, ClientState},
};

/// How long [`Client::close`](super::Client::close) lets the connection say
/// goodbye.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(super) type Call = Box<dyn FnOnce(&mut socketio::Client, Instant) + Send>;

/// What reaches the driver thread: the application's calls, and what the
/// connection threads read.
pub(super) enum Input {
    Call(Call),
    Stop,
    Connected(ConnId, TcpStream),
    Data(ConnId, Vec<u8>),
    Eof(ConnId),
    Failed(ConnId, String),
}

pub(super) struct Conn {
    /// The write side, once connected.
    stream: Option<TcpStream>,
    wire: Wire,
    /// Bytes written before the connection was up.
    queued: Vec<u8>,
    /// Close as soon as it is up (after the queued bytes).
    close_when_up: bool,
}

/// The connections: opened, written and closed as the machine asks.
pub(super) struct Net {
    pub(super) tx: mpsc::Sender<Input>,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) wire: WireConfig,
    pub(super) conns: HashMap<ConnId, Conn>,
}

pub(super) struct Driver {
    pub(super) io: socketio::Client,
    pub(super) inputs: mpsc::Receiver<Input>,
    pub(super) events: mpsc::Sender<ClientEvent>,
    pub(super) net: Net,
    pub(super) stopping: Option<Instant>,
}

impl Driver {
    pub(super) fn run(mut self) {
        loop {
            self.flush();
            if let Some(deadline) = self.stopping {
                let quiet = self.io.state() == ClientState::Closed && self.net.conns.is_empty();
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
        for (_, mut c) in self.net.conns.drain() {
            if let Some(s) = c.stream.as_mut() {
                c.wire.close(s);
            }
        }
    }

    /// Performs the machine's work and passes its events on.
    fn flush(&mut self) {
        let now = Instant::now();
        let (net, events) = (&mut self.net, &self.events);
        drain(
            &mut self.io,
            now,
            |io, t| {
                let conn = t.conn();
                if let Err(e) = net.perform(t) {
                    net.drop_conn(conn);
                    io.handle_error(now, conn, &e.to_string());
                }
                ControlFlow::Continue(())
            },
            |_, ev| {
                let _ = events.send(ev);
            },
        );
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
            Input::Connected(conn, stream) => {
                if let Err(e) = self.net.connected(conn, stream) {
                    self.net.drop_conn(conn);
                    self.io.handle_error(now, conn, &e.to_string());
                }
            }
            Input::Data(conn, data) => {
                let Some(c) = self.net.conns.get_mut(&conn) else {
                    return;
                };
                match c.wire.read(c.stream.as_mut(), data) {
                    Ok(plain) => self.io.handle_input(now, conn, &plain),
                    Err(e) => {
                        self.net.drop_conn(conn);
                        self.io.handle_error(now, conn, &e.to_string());
                    }
                }
            }
            // The machine closes its side when it is done with it.
            Input::Eof(conn) => {
                if self.net.conns.contains_key(&conn) {
                    self.io.handle_eof(now, conn);
                }
            }
            Input::Failed(conn, why) => {
                if self.net.conns.remove(&conn).is_some() {
                    self.io.handle_error(now, conn, &why);
                }
            }
        }
    }
}

impl Net {
    fn perform(&mut self, t: ClientTransmit) -> io::Result<()> {
        match t {
            ClientTransmit::Connect { conn } => {
                self.open(conn);
                Ok(())
            }
            ClientTransmit::Data { conn, data } => self.write(conn, &data),
            ClientTransmit::Close { conn } => {
                match self.conns.get_mut(&conn) {
                    Some(c) if c.stream.is_none() => c.close_when_up = true,
                    _ => self.drop_conn(conn),
                }
                Ok(())
            }
        }
    }

    /// Starts a connection: a thread connects, then reads.
    fn open(&mut self, conn: ConnId) {
        let wire = Wire::new(&self.wire);
        let failed = wire.is_err();
        self.conns.insert(
            conn,
            Conn {
                stream: None,
                wire: wire.unwrap_or(Wire::Plain),
                queued: Vec::new(),
                close_when_up: false,
            },
        );
        let (host, port, tx) = (self.host.clone(), self.port, self.tx.clone());
        let spawned = thread::Builder::new()
            .name("wsio-conn".into())
            .spawn(move || connect_and_read(conn, &host, port, failed, tx));
        if spawned.is_err() {
            let _ = self
                .tx
                .send(Input::Failed(conn, "cannot spawn a thread".into()));
        }
    }

    fn write(&mut self, conn: ConnId, data: &[u8]) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(&conn) else {
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

    fn drop_conn(&mut self, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&conn) {
            if let Some(s) = c.stream.as_mut() {
                c.wire.close(s);
            }
        }
    }

    /// The connection is up: what waited is written.
    fn connected(&mut self, conn: ConnId, stream: TcpStream) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(&conn) else {
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        };
        let _ = stream.set_nodelay(true);
        let queued = std::mem::take(&mut c.queued);
        let close = c.close_when_up;
        let s = c.stream.insert(stream);
        // A TLS client speaks first even with nothing queued.
        c.wire.write(s, &queued)?;
        if close {
            self.drop_conn(conn);
        }
        Ok(())
    }
}

/// The connection thread: connects, hands the write side to the driver,
/// then passes on what it reads until the end.
fn connect_and_read(key: ConnId, host: &str, port: u16, failed: bool, tx: mpsc::Sender<Input>) {
    use std::io::Read as _;
    if failed {
        let _ = tx.send(Input::Failed(key, "TLS setup failed".into()));
        return;
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
