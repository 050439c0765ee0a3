//! Namespaces and admission: a socket from its `CONNECT` to its removal.
//!
//! # Theory of operation
//!
//! A socket is one client's membership of one namespace:
//!
//! ```text
//!  CONNECT ──► deferred ──► AcceptAll ──────────────────────► connected ──► removed
//!                 │                                               ▲
//!                 └──► Decide: Event::ConnectRequest ──► admit ───┘
//!                                                   └──► refuse ──► removed (CONNECT_ERROR)
//! ```
//!
//! * A `CONNECT` for a namespace that is not registered creates it if the
//!   application's [`DynamicNamespaces`] says so; otherwise the client gets
//!   `CONNECT_ERROR` "Invalid namespace".
//! * A new socket is *deferred*: it completes in `poll_event` once the
//!   events read before it have been handed out, so that answers leave in
//!   the official server's order.
//! * A namespace that decides ([`Admission::Decide`]) hears
//!   [`Event::ConnectRequest`] and waits for `admit` or `refuse`; the
//!   client's connect timeout keeps running meanwhile.
//! * Only a connected socket is in its namespace's index, can emit and be
//!   emitted to, and is reported by [`Event::Disconnect`] when it goes: the
//!   client left, the server disconnected it, or the client was closed.
//!   Closing a client removes its sockets first (in join order), then ends
//!   its Engine.IO session.

use std::{collections::BTreeSet, sync::Arc, time::Instant};

use super::{
    super::{Admission, DisconnectReason, Event, Packet, SocketId, UsageError, Value},
    DynamicNamespaces, Namespace, Server, Socket,
};
use crate::engineio::Sid;

impl Server {
    /// Registers a namespace (`/` always exists).
    pub fn add_namespace(&mut self, name: &str, admission: Admission) {
        self.namespaces
            .entry(name.to_owned())
            .or_default()
            .admission = admission;
    }

    /// Decides, for a namespace that is not registered, whether a client's
    /// CONNECT creates it (given the name and the auth payload).
    pub fn set_dynamic_namespaces(&mut self, f: DynamicNamespaces) {
        self.dynamic = Some(f);
    }

    /// Connects a socket that asked a [`Admission::Decide`] namespace.
    pub fn admit(&mut self, now: Instant, socket: SocketId) -> Result<(), UsageError> {
        self.now = self.now.max(now);
        if self.sockets.get(&socket).is_none_or(|s| s.connected) {
            return Err(UsageError::NotPending(socket));
        }
        self.finish_connect(socket);
        self.pump(now);
        Ok(())
    }

    /// Refuses a socket that asked a [`Admission::Decide`] namespace; the
    /// client gets `connect_error` with `message` and `data`.
    pub fn refuse(
        &mut self,
        now: Instant,
        socket: SocketId,
        message: &str,
        data: Option<Value>,
    ) -> Result<(), UsageError> {
        self.now = self.now.max(now);
        let Some(s) = self.sockets.get(&socket).filter(|s| !s.connected) else {
            return Err(UsageError::NotPending(socket));
        };
        let (sid, nsp) = (s.sid, s.nsp.clone());
        // Never connected: it leaves without a word to the application.
        self.remove_socket(socket, DisconnectReason::ServerNamespaceDisconnect);
        let mut body = vec![("message".to_owned(), Value::from(message))];
        if let Some(d) = data {
            body.push(("data".to_owned(), d));
        }
        let _ = self.send_to(
            sid,
            &Packet::ConnectError {
                nsp: nsp.to_string().into(),
                data: Value::Object(body),
            },
        );
        self.pump(now);
        Ok(())
    }

    /// Removes a socket from its namespace (the client gets a DISCONNECT).
    /// With `close`, the whole connection ends: every socket of the client
    /// is disconnected the same way first, in join order.
    pub fn disconnect(
        &mut self,
        now: Instant,
        socket: SocketId,
        close: bool,
    ) -> Result<(), UsageError> {
        self.now = self.now.max(now);
        let sid = self.connected(socket)?.sid;
        let targets: Vec<SocketId> = if close {
            self.clients
                .get(&sid)
                .map_or_else(Vec::new, |c| c.sockets.iter().map(|(_, id)| *id).collect())
        } else {
            vec![socket]
        };
        for id in targets {
            if let Some(s) = self.sockets.get(&id).filter(|s| s.connected) {
                let packet = Packet::Disconnect {
                    nsp: s.nsp.to_string().into(),
                };
                let _ = self.send_to(s.sid, &packet);
            }
            self.remove_socket(id, DisconnectReason::ServerNamespaceDisconnect);
        }
        if close {
            self.close_client(now, sid, DisconnectReason::ForcedServerClose);
        }
        self.pump(now);
        Ok(())
    }

    /// Closes every connection, as the official `io.close()` does: each
    /// socket leaves with [`DisconnectReason::ServerShuttingDown`] (no
    /// packet: the connection itself closes), then each Engine.IO session
    /// closes after what is queued for it. New connections are the
    /// driver's to refuse.
    pub fn shutdown(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let mut sids: Vec<Sid> = self.clients.keys().copied().collect();
        sids.sort_unstable();
        for sid in sids {
            self.close_client(now, sid, DisconnectReason::ServerShuttingDown);
        }
        self.pump(now);
    }

    pub(super) fn connect(&mut self, sid: Sid, nsp: String, auth: Value) {
        if !self.namespaces.contains_key(&nsp) {
            let create = self.dynamic.as_ref().is_some_and(|f| f(&nsp, &auth));
            if !create {
                let data = Value::object([("message", Value::from("Invalid namespace"))]);
                let _ = self.send_to(
                    sid,
                    &Packet::ConnectError {
                        nsp: nsp.into(),
                        data,
                    },
                );
                return;
            }
            self.namespaces.insert(nsp.clone(), Namespace::default());
        }
        let mut id = SocketId(Sid::generate(&mut *self.entropy));
        while self.sockets.contains_key(&id) {
            id = SocketId(Sid::generate(&mut *self.entropy));
        }
        let nsp: Arc<str> = Arc::from(nsp);
        self.sockets.insert(
            id,
            Socket {
                sid,
                nsp: nsp.clone(),
                connected: false,
                rooms: BTreeSet::new(),
                acks: Default::default(),
                auth,
            },
        );
        if let Some(c) = self.clients.get_mut(&sid) {
            c.sockets.push((nsp.clone(), id));
        }
        self.deferred.push_back(id);
    }

    /// A deferred connection's turn: connect it, or ask the application.
    pub(super) fn complete_connect(&mut self, id: SocketId) {
        let Some(s) = self.sockets.get(&id).filter(|s| !s.connected) else {
            return;
        };
        let admission = self
            .namespaces
            .get(&*s.nsp)
            .map(|n| n.admission)
            .unwrap_or_default();
        match admission {
            Admission::AcceptAll => self.finish_connect(id),
            Admission::Decide => {
                let event = Event::ConnectRequest {
                    socket: id,
                    nsp: s.nsp.to_string(),
                    auth: s.auth.clone(),
                };
                self.events.push_back(event);
            }
        }
    }

    fn finish_connect(&mut self, id: SocketId) {
        let Some(s) = self.sockets.get_mut(&id) else {
            return;
        };
        s.connected = true;
        let (sid, nsp, auth) = (s.sid, s.nsp.clone(), s.auth.clone());
        if let Some(ns) = self.namespaces.get_mut(&*nsp) {
            ns.sockets.insert(id, sid);
        }
        if let Some(c) = self.clients.get_mut(&sid) {
            c.connect_deadline = None;
        }
        let data = Value::object([("sid", Value::from(id.as_str()))]);
        let _ = self.send_to(
            sid,
            &Packet::Connect {
                nsp: nsp.to_string().into(),
                data: Some(data),
            },
        );
        self.events.push_back(Event::Connection {
            socket: id,
            nsp: nsp.to_string(),
            auth,
        });
    }

    /// Forgets a socket; connected ones are reported as disconnected.
    pub(super) fn remove_socket(&mut self, id: SocketId, reason: DisconnectReason) {
        let Some(s) = self.sockets.remove(&id) else {
            return;
        };
        if let Some(c) = self.clients.get_mut(&s.sid) {
            c.sockets.retain(|(_, sock)| *sock != id);
        }
        if let Some(ns) = self.namespaces.get_mut(&*s.nsp) {
            ns.sockets.remove(&id);
            for room in &s.rooms {
                ns.remove_from_room(room, id);
            }
        }
        if s.connected {
            self.events.push_back(Event::Disconnect {
                socket: id,
                nsp: s.nsp.to_string(),
                reason,
            });
        }
    }

    /// Ends a client: its sockets go first (with `reason`), then the
    /// Engine.IO session.
    pub(super) fn close_client(&mut self, now: Instant, sid: Sid, reason: DisconnectReason) {
        if self.forget_client(sid, reason) {
            let _ = self.engine().close(now, sid);
        }
    }

    /// Forgets a client and its sockets (with `reason`): whether it was
    /// known.
    pub(super) fn forget_client(&mut self, sid: Sid, reason: DisconnectReason) -> bool {
        let Some(c) = self.clients.remove(&sid) else {
            return false;
        };
        for (_, id) in c.sockets {
            self.remove_socket(id, reason);
        }
        true
    }
}
