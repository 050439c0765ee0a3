//! One Socket.IO client over a direct WebSocket, as the official client
//! speaks it with `transports: ["websocket"]`: the upgrade to
//! `/socket.io/?EIO=4&transport=websocket`, the Engine.IO open packet, `40`
//! to join `/`, and pongs (`3`) for the server's pings (`2`). Built on the
//! sans-IO `wsio::ws::Connection`; this file only moves its bytes.

use std::{
    cell::RefCell,
    io::{self, Read as _},
    net::{SocketAddr, TcpStream},
    time::Instant,
};

use bytes::Bytes;
use smol::{Async, io::AsyncWriteExt as _};
use wsio::{
    entropy::SeededEntropy,
    socketio::{Packet, Value},
    ws::{self, ClientRequest, DataKind, Event, Message, Transmit, Utf8Bytes},
};

thread_local! {
    /// One read buffer for every connection: the loop runs on one thread
    /// and a read's bytes are handed to the machine before the next await.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// Why a connection could not go on.
#[derive(Debug)]
pub enum Failure {
    /// A socket error.
    Io(io::Error),
    /// The WebSocket or Engine.IO session ended.
    Closed(String),
    /// The server said something the protocol does not allow here.
    Protocol(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "io: {e}"),
            Failure::Closed(why) => write!(f, "closed: {why}"),
            Failure::Protocol(why) => write!(f, "protocol: {why}"),
        }
    }
}

/// A Socket.IO client connected to namespace `/`.
pub struct SioClient {
    stream: Async<TcpStream>,
    ws: ws::Connection,
    /// Engine.IO pings answered.
    pub pongs: u64,
}

impl SioClient {
    /// Connects, upgrades, and joins `/`; returns once the server's
    /// `40{"sid":…}` has arrived.
    pub async fn connect(addr: SocketAddr, seed: u64) -> Result<SioClient, Failure> {
        let stream = Async::<TcpStream>::connect(addr).await?;
        stream.get_ref().set_nodelay(true)?;
        let request = ClientRequest::new(addr.to_string(), "/socket.io/?EIO=4&transport=websocket");
        let ws = ws::Connection::client(
            ws::Config::default(),
            request,
            Box::new(SeededEntropy::new(seed)),
        );
        let mut c = SioClient {
            stream,
            ws,
            pongs: 0,
        };
        // The Engine.IO open packet, then our CONNECT, then the server's.
        let open = c.next_text().await?;
        if !open.starts_with('0') {
            return Err(Failure::Protocol(format!(
                "expected the open packet, got {open:?}"
            )));
        }
        c.send_text("40")?;
        loop {
            let t = c.next_text().await?;
            if t.starts_with("40") {
                return Ok(c);
            }
            if t.starts_with("44") {
                return Err(Failure::Protocol(format!("connect refused: {t}")));
            }
        }
    }

    /// Queues an Engine.IO message of text `t` (written by the next read or
    /// [`flush`](Self::flush)).
    pub fn send_text(&mut self, t: &'static str) -> Result<(), Failure> {
        self.ws
            .send(Message::text(t))
            .map_err(|e| Failure::Closed(e.to_string()))
    }

    /// Queues the event `name` with one string argument, encoded by
    /// `socketio::Packet::encode` behind the Engine.IO message type `4`.
    pub fn emit(&mut self, name: &str, arg: String) -> Result<(), Failure> {
        let packet = Packet::Event {
            nsp: "/".into(),
            id: None,
            name: name.into(),
            args: vec![Value::String(arg)],
        };
        let (text, _) = packet.encode();
        self.ws
            .send_with_prefix(DataKind::Text, b"4", Bytes::from(text))
            .map_err(|e| Failure::Closed(e.to_string()))
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), Failure> {
        let now = Instant::now();
        while let Some(t) = self.ws.poll_transmit(now) {
            match t {
                Transmit::Data(b) => self.write(&b).await?,
                Transmit::Close => return Err(Failure::Closed("closed by the machine".into())),
            }
        }
        Ok(())
    }

    async fn write(&mut self, b: &[u8]) -> io::Result<()> {
        // Try the write at once; wait for the socket only when it is full.
        let mut done = 0;
        while done < b.len() {
            match std::io::Write::write(&mut self.stream.get_ref(), &b[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stream.write_all(&b[done..]).await?;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next Engine.IO text message other than a ping (pings are
    /// answered here). Queued sends are written before waiting to read, so
    /// that answers to one read leave in one write.
    pub async fn next_text(&mut self) -> Result<Utf8Bytes, Failure> {
        loop {
            // One event at a time (a pull API, not `machine::drain`): the
            // caller acts on each message before the next frame is decoded.
            let now = Instant::now();
            while let Some(ev) = self.ws.poll_event(now) {
                match ev {
                    Event::Message(Message::Text(t)) => {
                        if &*t == "2" {
                            self.send_text("3")?;
                            self.pongs += 1;
                            continue;
                        }
                        return Ok(t);
                    }
                    Event::Message(Message::Binary(_)) => {
                        return Err(Failure::Protocol("unexpected binary message".into()));
                    }
                    Event::Closed(c) => {
                        return Err(Failure::Closed(format!("{} {}", c.code.0, c.reason)));
                    }
                    _ => {}
                }
            }
            self.flush().await?;
            self.read().await?;
        }
    }

    /// Reads once and feeds the bytes to the machine.
    async fn read(&mut self) -> Result<(), Failure> {
        let n = self
            .stream
            .read_with(|s| READ_BUF.with_borrow_mut(|buf| (&*s).read(buf)))
            .await;
        let now = Instant::now();
        match n {
            Ok(0) | Err(_) => {
                self.ws.handle_eof(now);
                if let Err(e) = n {
                    return Err(Failure::Io(e));
                }
            }
            Ok(n) => READ_BUF.with_borrow(|buf| self.ws.handle_input(now, &buf[..n])),
        }
        Ok(())
    }
}
