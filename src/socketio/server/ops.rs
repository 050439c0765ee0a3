//! Operations on a selection of sockets, here and on the other nodes of a
//! cluster: joining and leaving rooms, disconnecting, describing them
//! (`fetchSockets`), and server-side events between nodes.
//!
//! # Theory of operation
//!
//! Each operation is a method of the [`Broadcast`] view that names the
//! sockets (`server.of(nsp).to(room).except(other)`), as in the official
//! server. It is done at once on this node's sockets, and, in a cluster
//! and without the `local` flag, handed to the other nodes as a
//! [`ClusterMessage`]; another node's message comes back in through
//! [`Server::handle_cluster`] and is done here by the same local code. An
//! operation with answers (fetching sockets, a server-side emit with an
//! acknowledgement) opens a request (see `cluster.rs`) and ends in one
//! event.

use std::time::{Duration, Instant};

#[cfg(doc)]
use super::super::Event;
use super::{
    super::{SocketId, UsageError, Value},
    Broadcast, Server,
    cluster::{ClusterMessage, RequestId, RequestKind, Selection, ServerSideReply, SocketInfo},
};

/// Event names a server-side emit may not use (the official namespace's
/// reserved events).
const SERVER_SIDE_RESERVED: &[&str] = &["connect", "connection", "new_namespace"];

impl Broadcast<'_> {
    /// The selection as other nodes receive it: the sending socket, if
    /// any, becomes an excluded room.
    pub(super) fn selection(&self) -> Selection {
        let mut except = self.except.clone();
        if let Some(id) = self.exclude {
            except.push(id.as_str().to_owned());
        }
        Selection {
            rooms: self.rooms.clone(),
            except,
        }
    }

    /// Whether other nodes hear of this operation.
    pub(super) fn clustered(&self) -> bool {
        self.server.config.cluster && !self.local
    }

    /// The selected sockets join `rooms` (the official `socketsJoin`).
    pub fn sockets_join(self, rooms: &[&str]) {
        let rooms: Vec<String> = rooms.iter().map(|r| (*r).to_owned()).collect();
        let to = self.selection();
        self.server
            .local_sockets_join(&self.nsp, &to, self.exclude, &rooms);
        if self.clustered() {
            self.server
                .cluster_out
                .push_back(ClusterMessage::SocketsJoin {
                    nsp: self.nsp,
                    to,
                    rooms,
                });
        }
    }

    /// The selected sockets leave `rooms` (the official `socketsLeave`).
    pub fn sockets_leave(self, rooms: &[&str]) {
        let rooms: Vec<String> = rooms.iter().map(|r| (*r).to_owned()).collect();
        let to = self.selection();
        self.server
            .local_sockets_leave(&self.nsp, &to, self.exclude, &rooms);
        if self.clustered() {
            self.server
                .cluster_out
                .push_back(ClusterMessage::SocketsLeave {
                    nsp: self.nsp,
                    to,
                    rooms,
                });
        }
    }

    /// Disconnects the selected sockets (the official
    /// `disconnectSockets`); with `close`, their whole connections end.
    /// Returns how many of this node's sockets were disconnected.
    pub fn disconnect_sockets(self, now: Instant, close: bool) -> usize {
        let to = self.selection();
        let n = self
            .server
            .local_disconnect_sockets(now, &self.nsp, &to, self.exclude, close);
        if self.clustered() {
            self.server
                .cluster_out
                .push_back(ClusterMessage::DisconnectSockets {
                    nsp: self.nsp,
                    to,
                    close,
                });
        }
        n
    }

    /// Describes the selected sockets (the official `fetchSockets`): the
    /// answer comes as [`Event::Fetched`] with the returned id, at once
    /// outside a cluster, otherwise when every other node has answered or
    /// after `timeout` with the answers so far.
    pub fn fetch_sockets(self, now: Instant, timeout: Duration) -> RequestId {
        let to = self.selection();
        let sockets = self.server.local_fetch(&self.nsp, &to, self.exclude);
        let id = self.server.new_request_id();
        let cluster = self.clustered();
        if cluster {
            self.server
                .cluster_out
                .push_back(ClusterMessage::FetchSockets {
                    nsp: self.nsp.clone(),
                    to,
                    request: id.clone(),
                });
        }
        self.server.open_request(
            now,
            id.clone(),
            &self.nsp,
            timeout,
            cluster,
            RequestKind::Fetch(sockets),
        );
        id
    }
}

impl Server {
    /// Sends an event to the applications of the other nodes of the
    /// cluster (the official `serverSideEmit`); this node's does not hear
    /// it. Outside a cluster it goes nowhere.
    pub fn server_side_emit(
        &mut self,
        nsp: &str,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), UsageError> {
        check_server_side(event)?;
        if self.config.cluster {
            self.cluster_out.push_back(ClusterMessage::ServerSideEmit {
                nsp: nsp.to_owned(),
                name: event.to_owned(),
                args,
                request: None,
            });
        }
        Ok(())
    }

    /// Like [`server_side_emit`](Self::server_side_emit), waiting for one
    /// answer per other node: they come as [`Event::ServerSideAcks`] with
    /// the returned id, when every node has answered or after `timeout`
    /// with the answers so far (at once, and none, outside a cluster).
    pub fn server_side_emit_with_ack(
        &mut self,
        now: Instant,
        nsp: &str,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<RequestId, UsageError> {
        check_server_side(event)?;
        let id = self.new_request_id();
        let cluster = self.config.cluster;
        if cluster {
            self.cluster_out.push_back(ClusterMessage::ServerSideEmit {
                nsp: nsp.to_owned(),
                name: event.to_owned(),
                args,
                request: Some(id.clone()),
            });
        }
        self.open_request(
            now,
            id.clone(),
            nsp,
            timeout,
            cluster,
            RequestKind::ServerSide(Vec::new()),
        );
        Ok(id)
    }

    /// Answers another node's server-side event ([`Event::ServerSideEmit`]
    /// with a `reply`); call it once per event.
    pub fn server_side_reply(&mut self, reply: ServerSideReply, answer: Value) {
        self.cluster_out.push_back(ClusterMessage::Response {
            nsp: reply.nsp,
            request: reply.request,
            answer: super::cluster::ClusterAnswer::ServerSideAck(answer),
        });
    }

    /// The connected sockets of `nsp` in `to`, less `exclude`.
    pub(super) fn select(
        &self,
        nsp: &str,
        to: &Selection,
        exclude: Option<SocketId>,
    ) -> Vec<SocketId> {
        let mut ids = Vec::new();
        if let Some(ns) = self.namespaces.get(nsp) {
            ns.recipients(&to.rooms, &to.except, exclude, |id, _| ids.push(id));
        }
        ids
    }

    pub(super) fn local_sockets_join(
        &mut self,
        nsp: &str,
        to: &Selection,
        exclude: Option<SocketId>,
        rooms: &[String],
    ) {
        for id in self.select(nsp, to, exclude) {
            for room in rooms {
                let _ = self.join(id, room);
            }
        }
    }

    pub(super) fn local_sockets_leave(
        &mut self,
        nsp: &str,
        to: &Selection,
        exclude: Option<SocketId>,
        rooms: &[String],
    ) {
        for id in self.select(nsp, to, exclude) {
            for room in rooms {
                let _ = self.leave(id, room);
            }
        }
    }

    pub(super) fn local_disconnect_sockets(
        &mut self,
        now: Instant,
        nsp: &str,
        to: &Selection,
        exclude: Option<SocketId>,
        close: bool,
    ) -> usize {
        let ids = self.select(nsp, to, exclude);
        let n = ids.len();
        for id in ids {
            // With `close`, an earlier one may have taken this one along.
            let _ = self.disconnect(now, id, close);
        }
        n
    }

    pub(super) fn local_fetch(
        &self,
        nsp: &str,
        to: &Selection,
        exclude: Option<SocketId>,
    ) -> Vec<SocketInfo> {
        self.select(nsp, to, exclude)
            .into_iter()
            .filter_map(|id| self.socket_info(id))
            .collect()
    }

    /// A connected socket as `fetchSockets` describes it.
    pub fn socket_info(&self, socket: SocketId) -> Option<SocketInfo> {
        let s = self.sockets.get(&socket).filter(|s| s.connected)?;
        let handshake = self
            .clients
            .get(&s.sid)
            .map(|c| handshake_value(&c.handshake, &s.auth))
            .unwrap_or_default();
        let rooms = std::iter::once(socket.as_str().to_owned())
            .chain(s.rooms.iter().cloned())
            .collect();
        Some(SocketInfo {
            id: socket.as_str().to_owned(),
            handshake,
            rooms,
            data: s.data.clone(),
        })
    }
}

fn check_server_side(event: &str) -> Result<(), UsageError> {
    if SERVER_SIDE_RESERVED.contains(&event) {
        Err(UsageError::ReservedEvent(event.to_owned()))
    } else {
        Ok(())
    }
}

/// The official handshake object, from what the machine knows of the
/// request.
fn handshake_value(h: &crate::engineio::Handshake, auth: &Value) -> Value {
    let mut headers: Vec<(String, Value)> = Vec::new();
    for (name, value) in h.head.headers.iter() {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let value = String::from_utf8_lossy(value).into_owned();
        // Node joins repeated fields with ", ".
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, Value::String(v))) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            _ => headers.push((name, Value::String(value))),
        }
    }
    let query = h
        .head
        .query()
        .pairs()
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let mut fields = vec![("headers", Value::Object(headers))];
    if let Some(peer) = h.peer {
        fields.push(("address", Value::from(peer.ip().to_string())));
    }
    fields.extend([
        (
            "xdomain",
            Value::from(h.head.headers.get("origin").is_some()),
        ),
        ("secure", Value::from(false)),
        ("url", Value::from(h.head.target.as_str())),
        ("query", Value::Object(query)),
        ("auth", auth.clone()),
    ]);
    Value::object(fields)
}
