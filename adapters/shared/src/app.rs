//! The application's side of a running server: a cloneable [`Handle`] whose
//! commands cross to the machine's task over a bounded channel, and the
//! [`Events`] stream.

use std::{
    collections::VecDeque,
    future::poll_fn,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Instant,
};

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use wsio::{engineio::ConnId, http::ResponseHead};

use crate::{runtime::Stream, wake::Ready};

/// The answer to an embedded request: status and headers, and the body.
pub type Response = (ResponseHead, Bytes);

/// The machine's verdict on an embedded upgrade request: the 101 head and
/// the id of the stream, or a refusal.
pub type Upgrade = Result<(ConnId, ResponseHead), Response>;

/// Work for the machine's task, given the machine and the present time.
type Job<M, R = ()> = Box<dyn FnOnce(&mut M, Instant) -> R + Send>;

/// A command for the machine's task.
pub(crate) enum Cmd<M> {
    Run(Job<M>),
    Request(Job<M, ConnId>, oneshot::Sender<Response>),
    Upgrade(Job<M, Upgrade>, oneshot::Sender<Upgrade>),
    Attach(ConnId, Box<dyn Stream>),
    Gone(ConnId),
    Shutdown,
}

/// The server has ended: the command was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server has ended")
    }
}

impl std::error::Error for Closed {}

/// A cloneable handle on a running server, for any task or thread.
///
/// Commands queue on a bounded channel and run inside the machine's task,
/// in order; the `async` forms wait for room, the `try_` forms fail at
/// once when the channel is full.
pub struct Handle<M> {
    tx: mpsc::Sender<Cmd<M>>,
}

impl<M> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            tx: self.tx.clone(),
        }
    }
}

impl<M> std::fmt::Debug for Handle<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl<M: Send + 'static> Handle<M> {
    pub(crate) fn new(tx: mpsc::Sender<Cmd<M>>) -> Self {
        Handle { tx }
    }

    pub(crate) async fn send(&self, cmd: Cmd<M>) -> Result<(), Closed> {
        let mut tx = self.tx.clone();
        poll_fn(|cx| tx.poll_ready(cx)).await.map_err(|_| Closed)?;
        tx.start_send(cmd).map_err(|_| Closed)
    }

    /// Runs `f` on the machine, in its task, with the present time; waits
    /// for room in the channel.
    pub async fn run(
        &self,
        f: impl FnOnce(&mut M, Instant) + Send + 'static,
    ) -> Result<(), Closed> {
        self.send(Cmd::Run(Box::new(f))).await
    }

    /// Like [`run`](Self::run), failing at once if the channel is full.
    pub fn try_run(&self, f: impl FnOnce(&mut M, Instant) + Send + 'static) -> Result<(), Closed> {
        self.tx
            .clone()
            .try_send(Cmd::Run(Box::new(f)))
            .map_err(|_| Closed)
    }

    /// Runs `f` on the machine and returns what it returns.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M, Instant) -> R + Send + 'static,
    ) -> Result<R, Closed> {
        let (tx, rx) = oneshot::channel();
        self.run(move |m, now| {
            let _ = tx.send(f(m, now));
        })
        .await?;
        rx.await.map_err(|_| Closed)
    }

    /// Starts a graceful shutdown: the server stops accepting, closes every
    /// session, writes what is queued and then its future returns.
    pub async fn shutdown(&self) -> Result<(), Closed> {
        self.send(Cmd::Shutdown).await
    }

    /// An embedded request: `f` hands it to the machine; the answer comes
    /// when the machine gives it.
    pub async fn request(
        &self,
        f: impl FnOnce(&mut M, Instant) -> ConnId + Send + 'static,
    ) -> Result<Response, Closed> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Request(Box::new(f), tx)).await?;
        rx.await.map_err(|_| Closed)
    }

    /// An embedded upgrade request: `f` hands it to the machine. On
    /// success, give the upgraded stream to [`attach`](Self::attach) (or
    /// report [`gone`](Self::gone)).
    pub async fn upgrade(
        &self,
        f: impl FnOnce(&mut M, Instant) -> Upgrade + Send + 'static,
    ) -> Result<Upgrade, Closed> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Upgrade(Box::new(f), tx)).await?;
        rx.await.map_err(|_| Closed)
    }

    /// The upgraded stream of an accepted [`upgrade`](Self::upgrade).
    pub async fn attach(&self, conn: ConnId, stream: Box<dyn Stream>) -> Result<(), Closed> {
        self.send(Cmd::Attach(conn, stream)).await
    }

    /// An accepted upgrade whose stream never came (the client left).
    pub async fn gone(&self, conn: ConnId) -> Result<(), Closed> {
        self.send(Cmd::Gone(conn)).await
    }
}

/// Events waiting for the application, shared by the loop and [`Events`].
pub(crate) struct Queue<E> {
    pub(crate) items: VecDeque<E>,
    pub(crate) consumer: Option<Waker>,
    pub(crate) closed: bool,
    /// The loop stopped reading: wake it when the queue is this short.
    pub(crate) resume_below: Option<usize>,
}

pub(crate) type Shared<E> = Arc<Mutex<Queue<E>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server's events, in order. While the application lets too many wait
/// (`Options::event_backlog`), the server reads nothing more from any
/// connection: a slow consumer slows the peers, it never grows memory.
/// Ends when the server ends.
pub struct Events<E> {
    pub(crate) queue: Shared<E>,
    pub(crate) ready: Arc<Ready>,
}

impl<E> std::fmt::Debug for Events<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl<E> Events<E> {
    /// The next event, or `None` once the server has ended.
    pub async fn next(&mut self) -> Option<E> {
        poll_fn(|cx| self.poll_next_event(cx)).await
    }

    /// Polls for the next event.
    pub fn poll_next_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<E>> {
        let mut q = lock(&self.queue);
        match q.items.pop_front() {
            Some(e) => {
                if q.resume_below.is_some_and(|n| q.items.len() < n) {
                    q.resume_below = None;
                    drop(q);
                    self.ready.wake_task();
                }
                Poll::Ready(Some(e))
            }
            None if q.closed => Poll::Ready(None),
            None => {
                q.consumer = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<E> futures_core::Stream for Events<E> {
    type Item = E;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.get_mut().poll_next_event(cx)
    }
}
