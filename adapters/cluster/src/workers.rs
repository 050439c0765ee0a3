//! The multi-core server: N machines on N threads, one process, one port.
//!
//! # Theory of operation
//!
//! ```text
//!  listener ─► dispatcher: reads the first request head of a connection
//!                 ├─ ?sid=XXXX… : the worker the sid's first character names
//!                 └─ no sid     : the next worker in turn (a new session)
//!              ─► that worker's inbox (a channel) ─► its server loop, as an accepted connection
//!  worker k: a thread, a current-thread tokio runtime, a wsio-adapter Server
//!            over its own machine, whose session ids all begin with the
//!            k-th base64url character ([`ShardEntropy`]); a LocalBus to the others
//! ```
//!
//! A connection belongs to one worker for its whole life: the dispatcher
//! looks only at its first request, then hands the socket over with the
//! bytes it read, and is out of the way. So a polling request (which
//! carries `?sid=`) or the WebSocket upgrade of a session reaches the
//! worker that owns the session, and no lock is shared on the way: the
//! sid itself names the worker (the rule of `@socket.io/sticky`, the
//! official way to run socket.io on every core). A plain HTTP request is
//! made the only one of its connection (`Connection: close` is added to
//! its head), so a client's next request comes on a new connection that
//! is routed by its own sid: a client that keeps connections alive across
//! sessions (a browser's pool, several tabs on polling) never sends a
//! session's request to a worker that does not know it. Polling costs a
//! connection per request (as the official Node client makes anyway);
//! WebSocket sessions are not concerned.
//!
//! The workers form one cluster through [`LocalBus`] (rooms, broadcasts and
//! every cluster operation across the machines); a worker's machine must
//! be made with [`Config::cluster`](wsio::socketio::Config::cluster) on and
//! its ids drawn from a [`ShardEntropy`].

use std::{
    io::{self, IoSlice},
    net::{SocketAddr, TcpStream as StdTcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes};
use tokio::{io::AsyncReadExt, sync::mpsc};
use wsio::entropy::{BoxEntropy, Entropy};
use wsio_adapter::{
    Options, Serve, Server,
    runtime::{self, Accepted},
};
use wsio_tokio::{TokioSleep, TokioStream};

use wsio::cluster::RedisConfig;

use crate::{LocalBus, RedisLink, ServerOf};

/// The most workers: one base64url character names each.
pub const MAX_WORKERS: usize = 64;
/// The most bytes the dispatcher reads looking for a request head; a
/// connection whose head is longer goes to the next worker in turn.
const MAX_HEAD: usize = 8192;
/// How long the dispatcher waits for a connection's first request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections waiting for each worker to accept them.
const BACKLOG: usize = 1024;

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// An entropy source whose every draw begins with a mark of its shard: the
/// first byte's top six bits are the shard's number, so a session id (the
/// base64url of 15 drawn bytes) begins with the shard's base64url
/// character. The other bits stay random (a sid keeps 114 random bits).
pub struct ShardEntropy {
    inner: BoxEntropy,
    shard: u8,
}

impl ShardEntropy {
    /// Marks `inner`'s draws with `shard` (below [`MAX_WORKERS`]; taken
    /// modulo otherwise).
    pub fn new(inner: BoxEntropy, shard: usize) -> ShardEntropy {
        ShardEntropy {
            inner,
            shard: (shard % MAX_WORKERS) as u8,
        }
    }
}

impl std::fmt::Debug for ShardEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardEntropy")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl Entropy for ShardEntropy {
    fn fill(&mut self, dst: &mut [u8]) {
        self.inner.fill(dst);
        if let Some(b) = dst.first_mut() {
            *b = (self.shard << 2) | (*b & 0b11);
        }
    }

    fn fork(&mut self) -> BoxEntropy {
        Box::new(ShardEntropy {
            inner: self.inner.fork(),
            shard: self.shard,
        })
    }
}

/// The worker a request names: the first character of its `sid` query
/// parameter, when that is one of the `n` workers'.
pub fn shard_of(head: &[u8], n: usize) -> Option<usize> {
    let line = head.split(|b| *b == b'\r' || *b == b'\n').next()?;
    let target = line.split(|b| *b == b' ').nth(1)?;
    let query = target.splitn(2, |b| *b == b'?').nth(1)?;
    let sid = query
        .split(|b| *b == b'&')
        .find_map(|p| p.strip_prefix(b"sid="))?;
    let first = *sid.first()?;
    let shard = BASE64URL.iter().position(|c| *c == first)?;
    (shard < n).then_some(shard)
}

/// A connection handed to a worker, with what the dispatcher read of it.
type Handoff = (StdTcpStream, Bytes, Option<SocketAddr>);

/// A worker's listener: the connections the dispatcher hands it.
struct Inbox {
    rx: mpsc::Receiver<Handoff>,
    local_addr: SocketAddr,
}

impl runtime::Listener for Inbox {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((stream, read, peer))) => {
                let stream = tokio::net::TcpStream::from_std(stream)?;
                let stream = Prefixed {
                    read,
                    inner: TokioStream(stream),
                };
                Poll::Ready(Ok((Box::new(stream), peer)))
            }
            // The dispatcher is gone: nothing more comes.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// A stream whose first bytes were read already (by the dispatcher).
struct Prefixed {
    read: Bytes,
    inner: TokioStream<tokio::net::TcpStream>,
}

impl runtime::Stream for Prefixed {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), self.read.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.read.advance(n);
            if self.read.is_empty() {
                // An emptied `Bytes` still holds its buffer, for the
                // connection's whole life otherwise.
                self.read = Bytes::new();
            }
            return Poll::Ready(Ok(n));
        }
        self.inner.poll_read(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_write_vectored(cx, bufs)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_shutdown(cx)
    }
}

/// How the workers form a cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Cluster {
    /// Among themselves, in the process ([`LocalBus`]).
    Local,
    /// Each as a node of a Redis cluster ([`RedisLink`]), with the nodes
    /// of other processes (Node ones included), as each process of a Node
    /// cluster is: the workers reach each other through Redis too.
    Redis {
        /// The Redis URL.
        url: String,
        /// The adapter's options.
        config: RedisConfig,
        /// The namespaces to subscribe at once.
        namespaces: Vec<String>,
    },
}

/// How long a worker may take to connect to Redis and subscribe.
const REDIS_WAIT: Duration = Duration::from_secs(10);

/// Runs `n` workers (at most [`MAX_WORKERS`]) on `listener` and serves
/// until the listener fails for good. Worker `k` runs on its own thread
/// the machine `make(k)` (made there; draw its ids from a
/// [`ShardEntropy`] of shard `k`), in `cluster` through `server`. The
/// dispatcher runs on the calling task's runtime, once every worker is
/// ready (with Redis: connected and subscribed).
pub async fn serve<M, F>(
    listener: tokio::net::TcpListener,
    n: usize,
    make: F,
    server: ServerOf<M>,
    cluster: Cluster,
    options: Options,
) -> io::Result<()>
where
    M: Serve,
    F: Fn(usize) -> io::Result<M> + Send + Sync + 'static,
{
    if n == 0 || n > MAX_WORKERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("workers must be 1 to {MAX_WORKERS}, not {n}"),
        ));
    }
    let local_addr = listener.local_addr()?;
    let make = Arc::new(make);
    let mut inboxes = Vec::with_capacity(n);
    let mut started = Vec::with_capacity(n);
    let buses: Vec<Option<LocalBus<M>>> = match cluster {
        Cluster::Local => LocalBus::mesh(n, server).into_iter().map(Some).collect(),
        Cluster::Redis { .. } => (0..n).map(|_| None).collect(),
    };
    for (k, bus) in buses.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(BACKLOG);
        inboxes.push(tx);
        let make = make.clone();
        let cluster = cluster.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("wsio-worker-{k}"))
            .spawn(move || {
                let ready = ready_tx.clone();
                let run = move || -> io::Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let machine = make(k)?;
                        let inbox = Inbox { rx, local_addr };
                        let mut loop_ = Server::with_options(
                            machine,
                            Some(Box::new(inbox)),
                            Box::new(TokioSleep::new()),
                            options,
                        );
                        // Alone, the bus still takes the machine's cluster
                        // messages (and answers its requests at once).
                        if let Some(bus) = bus {
                            loop_ = loop_.with_sidecar(bus);
                        }
                        if let Cluster::Redis {
                            url,
                            config,
                            namespaces,
                        } = cluster
                        {
                            let ns: Vec<&str> = namespaces.iter().map(String::as_str).collect();
                            let mut link = RedisLink::start(&url, config, &ns, server)?;
                            link.connect(loop_.machine(), REDIS_WAIT).await?;
                            loop_ = loop_.with_sidecar(link);
                        }
                        let _ = ready.send(Ok(()));
                        let server = loop_;
                        server.await
                    })
                };
                if let Err(e) = run() {
                    log::error!("wsio-cluster: worker {k} ended: {e}");
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        started.push(ready_rx);
    }
    for ready in started {
        match tokio::task::spawn_blocking(move || ready.recv()).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            _ => return Err(io::Error::other("a worker did not start")),
        }
    }
    dispatch(listener, inboxes).await
}

/// Accepts connections and hands each to its worker.
async fn dispatch(
    listener: tokio::net::TcpListener,
    inboxes: Vec<mpsc::Sender<Handoff>>,
) -> io::Result<()> {
    let inboxes: Arc<[mpsc::Sender<Handoff>]> = inboxes.into();
    let n = inboxes.len();
    // Whose turn it is to take a new session: counted only for connections
    // without a sid, so sessions alternate whatever their later requests.
    let turn = Arc::new(AtomicUsize::new(0));
    let mut backoff = Duration::from_millis(10);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(e) => {
                log::warn!("wsio-cluster: accept failed ({e}); backing off and retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inboxes = inboxes.clone();
        let turn = turn.clone();
        tokio::spawn(async move {
            let Ok(Ok((stream, read))) =
                tokio::time::timeout(HEAD_TIMEOUT, first_head(stream)).await
            else {
                return;
            };
            let shard =
                shard_of(&read, n).unwrap_or_else(|| turn.fetch_add(1, Ordering::Relaxed) % n);
            let read = if n > 1 { one_request_only(read) } else { read };
            let Ok(stream) = stream.into_std() else {
                return;
            };
            if let Some(inbox) = inboxes.get(shard) {
                let _ = inbox.send((stream, read, Some(peer))).await;
            }
        });
    }
}

/// A plain HTTP request as the last of its connection: `Connection: close`
/// added after its request line (the server then closes once it has
/// answered). A WebSocket upgrade is left as it is.
pub fn one_request_only(read: Bytes) -> Bytes {
    let Some(line_end) = read.windows(2).position(|w| w == b"\r\n") else {
        return read;
    };
    let head_end = read
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(read.len());
    let upgrade = read
        .get(..head_end)
        .unwrap_or_default()
        .split(|b| *b == b'\n')
        .any(|line| {
            line.get(..8)
                .is_some_and(|name| name.eq_ignore_ascii_case(b"upgrade:"))
        });
    if upgrade {
        return read;
    }
    let (line, rest) = read.split_at(line_end + 2);
    let mut out = Vec::with_capacity(read.len() + 19);
    out.extend_from_slice(line);
    out.extend_from_slice(b"Connection: close\r\n");
    out.extend_from_slice(rest);
    Bytes::from(out)
}

/// Reads until the first request head is complete (or [`MAX_HEAD`] bytes).
async fn first_head(
    mut stream: tokio::net::TcpStream,
) -> io::Result<(tokio::net::TcpStream, Bytes)> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    while let Some(free) = buf.get_mut(len..) {
        if free.is_empty() {
            break;
        }
        let got = stream.read(free).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += got;
        let read = buf.get(..len).unwrap_or_default();
        if read.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    // Only what was read is handed on, not the room for a longest head.
    Ok((
        stream,
        Bytes::copy_from_slice(buf.get(..len).unwrap_or_default()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sid_names_the_worker() {
        let head = b"GET /socket.io/?EIO=4&transport=polling&sid=BxYz HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(shard_of(head, 2), Some(1));
        assert_eq!(shard_of(head, 1), None);
        assert_eq!(
            shard_of(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n", 2),
            None
        );
        assert_eq!(shard_of(b"GET / HTTP/1.1\r\n", 2), None);
    }

    #[test]
    fn plain_requests_are_the_last_of_their_connection() {
        let get = Bytes::from_static(b"GET /socket.io/?sid=A HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            &one_request_only(get)[..],
            b"GET /socket.io/?sid=A HTTP/1.1\r\nConnection: close\r\nHost: x\r\n\r\n"
        );
        let post = Bytes::from_static(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n40");
        assert!(
            one_request_only(post).ends_with(b"Connection: close\r\nContent-Length: 2\r\n\r\n40")
        );
        let ws = Bytes::from_static(
            b"GET /socket.io/?sid=A HTTP/1.1\r\nConnection: Upgrade\r\nupgrade: websocket\r\n\r\n",
        );
        assert_eq!(one_request_only(ws.clone()), ws);
        let partial = Bytes::from_static(b"GET /socket.io/?sid=A HT");
        assert_eq!(one_request_only(partial.clone()), partial);
    }

    #[test]
    fn shard_entropy_marks_every_sid() {
        for shard in [0, 1, 5, 63] {
            let mut e = ShardEntropy::new(Box::new(wsio::entropy::SeededEntropy::new(7)), shard);
            for _ in 0..50 {
                let sid = wsio::engineio::Sid::generate(&mut e);
                let head = format!("GET /?sid={sid} HTTP/1.1\r\n\r\n");
                assert_eq!(shard_of(head.as_bytes(), 64), Some(shard));
            }
        }
    }
}
