//! The in-process cluster: the machines of one process (the workers of
//! [`crate::workers`]) as the nodes of one cluster.
//!
//! Each machine's [`LocalBus`] is a [`Sidecar`] like the Redis link, with
//! the same accessor ([`ServerOf`]); it moves the same
//! [`ClusterMessage`]s, without encoding them: what a server hands out
//! goes, cloned, to every other machine's inbox (a bounded channel that
//! wakes that machine's loop), and answers go to every other machine too
//! (only the asker has the request open; the others ignore them, as a
//! node ignores answers on the common Redis response channel). The node
//! count is known: a request that waits for answers is told at once that
//! `N - 1` other nodes will answer ([`ClusterAnswer::Nodes`]), as the
//! Redis adapter learns it from `PUBSUB NUMSUB`.
//!
//! **Bounds.** An inbox holds [`INBOX`] messages; a message for a machine
//! whose inbox is full is dropped, counted ([`LocalBus::dropped`]) and
//! logged, never waited for: one slow machine does not stall the others.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use tokio::sync::mpsc;
use wsio::socketio::{ClusterAnswer, ClusterMessage};
use wsio_adapter::Sidecar;

use crate::ServerOf;

/// Messages one machine's inbox holds.
pub const INBOX: usize = 65_536;
/// Messages taken from the inbox per poll.
const MAX_INPUTS: usize = 256;

/// One machine's end of the in-process cluster (see the module docs).
pub struct LocalBus<M> {
    index: usize,
    peers: Vec<mpsc::Sender<ClusterMessage>>,
    inbox: mpsc::Receiver<ClusterMessage>,
    server: ServerOf<M>,
    dropped: u64,
}

impl<M> std::fmt::Debug for LocalBus<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBus")
            .field("index", &self.index)
            .field("peers", &self.peers.len())
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl<M: Send + 'static> LocalBus<M> {
    /// The ends of a cluster of `n` machines, one per machine, in order.
    pub fn mesh(n: usize, server: ServerOf<M>) -> Vec<LocalBus<M>> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(INBOX)).unzip();
        rxs.into_iter()
            .enumerate()
            .map(|(index, inbox)| LocalBus {
                index,
                peers: txs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != index)
                    .map(|(_, tx)| tx.clone())
                    .collect(),
                inbox,
                server,
                dropped: 0,
            })
            .collect()
    }

    /// This machine's place in the mesh.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Messages for other machines dropped because their inbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn send(&mut self, msg: ClusterMessage) {
        let Some((last, rest)) = self.peers.split_last() else {
            return;
        };
        let mut full = 0u64;
        for peer in rest {
            if let Err(mpsc::error::TrySendError::Full(_)) = peer.try_send(msg.clone()) {
                full += 1;
            }
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = last.try_send(msg) {
            full += 1;
        }
        if full > 0 {
            let before = self.dropped;
            self.dropped = self.dropped.saturating_add(full);
            if before == 0 || self.dropped.ilog2() > before.ilog2() {
                log::warn!(
                    "wsio-cluster: machine {} could not reach a busy machine: {} cluster messages dropped so far",
                    self.index,
                    self.dropped
                );
            }
        }
    }
}

/// The request a message opens on its sender, if it waits for answers.
fn awaited(msg: &ClusterMessage) -> Option<(String, wsio::socketio::RequestId)> {
    match msg {
        ClusterMessage::FetchSockets { nsp, request, .. }
        | ClusterMessage::ServerSideEmit {
            nsp,
            request: Some(request),
            ..
        }
        | ClusterMessage::Broadcast {
            nsp,
            ack: Some((request, _)),
            ..
        } => Some((nsp.clone(), request.clone())),
        _ => None,
    }
}

impl<M: Send + 'static> Sidecar<M> for LocalBus<M> {
    fn exchange(&mut self, machine: &mut M, now: Instant) -> bool {
        let mut fed = false;
        while let Some(msg) = (self.server)(machine).poll_cluster() {
            let request = awaited(&msg);
            self.send(msg);
            if let Some((nsp, request)) = request {
                let nodes = self.peers.len();
                (self.server)(machine).handle_cluster(
                    now,
                    ClusterMessage::Response {
                        nsp,
                        request,
                        answer: ClusterAnswer::Nodes(nodes),
                    },
                );
                fed = true;
            }
        }
        fed
    }

    fn poll(&mut self, cx: &mut Context<'_>, machine: &mut M, now: Instant) -> bool {
        let mut busy = false;
        for _ in 0..MAX_INPUTS {
            match self.inbox.poll_recv(cx) {
                Poll::Ready(Some(msg)) => {
                    (self.server)(machine).handle_cluster(now, msg);
                    busy = true;
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        busy
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
