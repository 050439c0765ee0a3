//! Namespaces and admission: a socket from its `CONNECT` to its removal.
//!
//! # Theory of operation
//!
//! A socket is one client's membership of one namespace:
//!
//! ```text
//!  CONNECT ──► deferred ──► (recovery claim) ──► AcceptAll ─────────────────► connected ──► removed
//!                                │                                                ▲
//!                                ├──► Decide: Event::ConnectRequest ──► admit ────┤
//!                                │                                └──► refuse ──► removed (CONNECT_ERROR)
//!                                └──► recovered, skip_middlewares ────────────────┘
//! ```
//!
//! * A `CONNECT` for a namespace that is not registered creates it if the
//!   application's [`DynamicNamespaces`] says so; otherwise the client gets
//!   `CONNECT_ERROR` "Invalid namespace". With
//!   [`Config::cleanup_empty_child_namespaces`](super::super::Config::cleanup_empty_child_namespaces),
//!   such a namespace goes with its last socket.
//! * A new socket is *deferred*: it completes in `poll_event` once the
//!   events read before it have been handed out, so that answers leave in
//!   the official server's order. With recovery on, that is when it claims
//!   the session its CONNECT asked for (see `recovery.rs`), and takes that
//!   session's socket id.
//! * A namespace that decides ([`Admission::Decide`], the official
//!   `namespace.use`) hears [`Event::ConnectRequest`] and waits for `admit`
//!   or `refuse`; the client's connect timeout keeps running meanwhile. A
//!   recovered socket skips it unless
//!   [`skip_middlewares`](super::RecoveryConfig::skip_middlewares) is off.
//! * Only a connected socket is in its namespace's index, can emit and be
//!   emitted to, and is reported by [`Event::Disconnect`] when it goes: the
//!   client left, the server disconnected it, or the client was closed.
//!   Closing a client removes its sockets first (in join order), then ends
//!   its Engine.IO session. A socket that goes for a recoverable reason
//!   leaves its session behind, with recovery on.
//! * A second `CONNECT` to a namespace the client is in (or is joining)
//!   closes the client (`forced server close`), as the official server's
//!   "invalid state" does; a connection still deferred completes first, so
//!   its answer reaches the client before the close, as it does there.

use std::{collections::BTreeSet, sync::Arc, time::Instant};

use super::{
    super::{Admission, DisconnectReason, Event, Packet, SocketId, UsageError, Value},
    Deferred, DynamicNamespaces, Namespace, Restore, Server, Socket, Timer,
    recovery::{Session, recoverable},
};
use crate::engineio::Sid;

impl Server {
    /// Registers a namespace (`/` always exists).
    pub fn add_namespace(&mut self, name: &str, admission: Admission) {
        let ns = self.namespaces.entry(name.to_owned()).or_default();
        ns.admission = admission;
        ns.dynamic = false;
    }

    /// Decides, for a namespace that is not registered, whether a client's
    /// CONNECT creates it (given the name and the auth payload).
    pub fn set_dynamic_namespaces(&mut self, f: DynamicNamespaces) {
        self.dynamic = Some(f);
    }

    /// Whether a namespace exists (registered, or created dynamically and
    /// not yet cleaned up).
    pub fn has_namespace(&self, name: &str) -> bool {
        self.namespaces.contains_key(name)
    }

    /// Connects a socket that asked a [`Admission::Decide`] namespace.
    pub fn admit(&mut self, now: Instant, socket: SocketId) -> Result<(), UsageError> {
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
        let Some(s) = self.sockets.get(&socket).filter(|s| !s.connected) else {
            return Err(UsageError::NotPending(socket));
        };
        let (sid, nsp) = (s.sid, s.nsp.clone());
        // Never connected: it leaves without a word to the application.
        self.remove_socket(now, socket, DisconnectReason::ServerNamespaceDisconnect);
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
            self.remove_socket(now, id, DisconnectReason::ServerNamespaceDisconnect);
        }
        if close {
            self.close_client(now, sid, DisconnectReason::ForcedServerClose);
        }
        self.pump(now);
        Ok(())
    }

    /// Shuts the server down (the official `io.close()`): every socket
    /// goes with `server shutting down` (its session kept, with recovery
    /// on), and every connection is closed. Clients see the transport
    /// close, and the official client reconnects.
    pub fn close_all(&mut self, now: Instant) {
        let sids: Vec<Sid> = self.clients.keys().copied().collect();
        for sid in sids {
            self.close_client(now, sid, DisconnectReason::ServerShuttingDown);
        }
        self.pump(now);
    }

    pub(super) fn connect(&mut self, now: Instant, sid: Sid, nsp: String, auth: Value) {
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
            let ns = Namespace {
                dynamic: true,
                ..Namespace::default()
            };
            self.namespaces.insert(nsp.clone(), ns);
        }
        let id = self.fresh_socket_id();
        let restore = match (
            &self.recovery,
            auth.get("pid").and_then(Value::as_str),
            auth.get("offset").and_then(Value::as_str),
        ) {
            (Some(_), Some(pid), Some(offset)) => Restore::Asked {
                pid: pid.to_owned(),
                offset: offset.to_owned(),
                at: now,
            },
            _ => Restore::None,
        };
        let nsp: Arc<str> = Arc::from(nsp);
        self.sockets.insert(
            id,
            Socket {
                sid,
                nsp: nsp.clone(),
                connected: false,
                rooms: BTreeSet::new(),
                acks: Default::default(),
                group_acks: Vec::new(),
                auth,
                data: Value::Object(Vec::new()),
                pid: None,
                restore,
                recovered: false,
                held: Default::default(),
            },
        );
        if let Some(c) = self.clients.get_mut(&sid) {
            c.sockets.push((nsp.clone(), id));
        }
        self.deferred.push_back(Deferred::Connect(id));
    }

    fn fresh_socket_id(&mut self) -> SocketId {
        let mut id = SocketId(Sid::generate(&mut *self.entropy));
        while self.sockets.contains_key(&id) {
            id = SocketId(Sid::generate(&mut *self.entropy));
        }
        id
    }

    /// A CONNECT to a namespace the client is in, or is joining: the
    /// official server's "invalid state". Any connection of the client
    /// still deferred completes first.
    pub(super) fn invalid_state(&mut self, now: Instant, sid: Sid) {
        let waiting = self.deferred.iter().any(|d| match d {
            Deferred::Connect(id) => self.sockets.get(id).is_some_and(|s| s.sid == sid),
            Deferred::Close(_) => false,
        });
        match self.clients.get_mut(&sid) {
            Some(c) if waiting => {
                c.closing = true;
                self.deferred.push_back(Deferred::Close(sid));
            }
            _ => self.close_client(now, sid, DisconnectReason::ForcedServerClose),
        }
    }

    /// A deferred connection's turn: claim its session, then connect it
    /// or ask the application.
    pub(super) fn complete_connect(&mut self, id: SocketId) {
        let id = self.claim_session(id);
        let Some(s) = self.sockets.get(&id).filter(|s| !s.connected) else {
            return;
        };
        let skip = matches!(s.restore, Restore::Claimed { .. })
            && self
                .recovery
                .as_ref()
                .is_some_and(|r| r.config.skip_middlewares);
        let admission = self
            .namespaces
            .get(&*s.nsp)
            .map(|n| n.admission)
            .unwrap_or_default();
        match admission {
            _ if skip => self.finish_connect(id),
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

    /// With recovery on, gives the socket its private id, and the session
    /// its CONNECT asked for if it can be had (the socket then takes the
    /// session's id, returned).
    fn claim_session(&mut self, id: SocketId) -> SocketId {
        let Some(store) = self.recovery.as_mut() else {
            return id;
        };
        let Some(s) = self.sockets.get_mut(&id) else {
            return id;
        };
        let claimed = match std::mem::take(&mut s.restore) {
            Restore::Asked { pid, offset, at } => store.claim(&pid, &offset, &s.nsp, at),
            other => {
                s.restore = other;
                None
            }
        };
        let Some((session, after)) = claimed else {
            if s.pid.is_none() {
                s.pid = Some(Sid::generate(&mut *self.entropy).as_str().to_owned());
            }
            return id;
        };
        // The old id must be free: it is, unless a socket took it since.
        if self.sockets.contains_key(&session.sid) {
            if let Some(s) = self.sockets.get_mut(&id) {
                s.pid = Some(Sid::generate(&mut *self.entropy).as_str().to_owned());
            }
            return id;
        }
        let Some(mut s) = self.sockets.remove(&id) else {
            return id;
        };
        let new = session.sid;
        s.pid = Some(session.pid);
        s.data = session.data;
        s.restore = Restore::Claimed {
            after,
            rooms: session.rooms,
        };
        if let Some(c) = self.clients.get_mut(&s.sid) {
            for (_, sock) in c.sockets.iter_mut() {
                if *sock == id {
                    *sock = new;
                }
            }
        }
        self.sockets.insert(new, s);
        new
    }

    fn finish_connect(&mut self, id: SocketId) {
        let Some(s) = self.sockets.get_mut(&id) else {
            return;
        };
        s.connected = true;
        let (sid, nsp, auth) = (s.sid, s.nsp.clone(), s.auth.clone());
        let restore = std::mem::take(&mut s.restore);
        if let Some(ns) = self.namespaces.get_mut(&*nsp) {
            ns.sockets.insert(id, sid);
        }
        if let Some(c) = self.clients.get_mut(&sid) {
            c.connect_deadline = None;
        }
        let mut recovered = false;
        if let Restore::Claimed { after, rooms } = restore {
            let mut all = rooms.clone();
            all.push(id.as_str().to_owned());
            let missed = self
                .recovery
                .as_ref()
                .and_then(|r| r.missed(&nsp, &all, after));
            match missed {
                Some(missed) => {
                    recovered = true;
                    for room in &rooms {
                        let _ = self.join(id, room);
                    }
                    // The official server writes them before the answer;
                    // its client holds them until `connect`.
                    for packets in missed {
                        let _ = self.engine().send_shared_all(sid, &packets);
                    }
                }
                // Something it missed fell out: not a recovery, and a new
                // private id says so to the client.
                None => {
                    let pid = Sid::generate(&mut *self.entropy).as_str().to_owned();
                    if let Some(s) = self.sockets.get_mut(&id) {
                        s.pid = Some(pid);
                        s.data = Value::Object(Vec::new());
                    }
                }
            }
        }
        let pid = self.sockets.get_mut(&id).and_then(|s| {
            s.recovered = recovered;
            s.pid.clone()
        });
        let mut data = vec![("sid", Value::from(id.as_str()))];
        if let Some(pid) = pid {
            data.push(("pid", Value::from(pid)));
        }
        let _ = self.send_to(
            sid,
            &Packet::Connect {
                nsp: nsp.to_string().into(),
                data: Some(Value::object(data)),
            },
        );
        self.events.push_back(Event::Connection {
            socket: id,
            nsp: nsp.to_string(),
            auth,
            recovered,
        });
    }

    /// Forgets a socket; connected ones are reported as disconnected, and,
    /// with recovery on and a recoverable reason, leave their session.
    pub(super) fn remove_socket(&mut self, now: Instant, id: SocketId, reason: DisconnectReason) {
        let Some(s) = self.sockets.remove(&id) else {
            return;
        };
        self.outgoing.remove(&id);
        if let Some(c) = self.clients.get_mut(&s.sid) {
            c.sockets.retain(|(_, sock)| *sock != id);
        }
        let mut empty = false;
        if let Some(ns) = self.namespaces.get_mut(&*s.nsp) {
            ns.sockets.remove(&id);
            for room in &s.rooms {
                ns.remove_from_room(room, id);
            }
            empty = ns.dynamic && ns.sockets.is_empty();
        }
        if empty && self.config.cleanup_empty_child_namespaces {
            self.remove_empty_namespace(&s.nsp);
        }
        if !s.connected {
            return;
        }
        if let (Some(store), Some(pid), true) = (&mut self.recovery, s.pid, recoverable(reason)) {
            let session = Session::new(
                pid,
                id,
                s.nsp.clone(),
                s.rooms.into_iter().collect(),
                s.data,
                now,
            );
            let end = store.persist(session);
            self.timers.push(end, Timer::Sessions);
        }
        self.events.push_back(Event::Disconnect {
            socket: id,
            nsp: s.nsp.to_string(),
            reason,
        });
    }

    /// Removes a dynamic namespace that no socket is in or joining.
    fn remove_empty_namespace(&mut self, nsp: &str) {
        let joining = self.sockets.values().any(|s| *s.nsp == *nsp);
        let empty = self
            .namespaces
            .get(nsp)
            .is_some_and(|n| n.dynamic && n.sockets.is_empty());
        if empty && !joining {
            self.namespaces.remove(nsp);
        }
    }

    /// Ends a client: its sockets go first (with `reason`), then the
    /// Engine.IO session.
    pub(super) fn close_client(&mut self, now: Instant, sid: Sid, reason: DisconnectReason) {
        if self.forget_client(now, sid, reason) {
            let _ = self.engine().close(now, sid);
        }
    }

    /// Forgets a client and its sockets (with `reason`): whether it was
    /// known.
    pub(super) fn forget_client(
        &mut self,
        now: Instant,
        sid: Sid,
        reason: DisconnectReason,
    ) -> bool {
        let Some(c) = self.clients.remove(&sid) else {
            return false;
        };
        for (_, id) in c.sockets {
            self.remove_socket(now, id, reason);
        }
        true
    }
}
