//! Namespace sockets: joining and leaving, and the packets the server
//! sends them.
//!
//! # Theory of operation
//!
//! ```text
//!  Idle ──(an engine opens)──► Connecting ──(CONNECT with a sid)──► Connected(sid)
//!   ▲                              │                                    │
//!   └──── CONNECT_ERROR, DISCONNECT, the engine closes, disconnect() ◄──┘
//! ```
//!
//! A socket is *active* from [`Client::socket`] until it leaves, and every
//! active socket sends its `CONNECT` whenever an engine opens (with its
//! `pid` and last offset once a server with connection state recovery has
//! given it a pid). Events that arrive while it waits for the answer (the
//! official server sends the events a recovered socket missed before its
//! answer) are held, up to [`ClientConfig::max_receive_buffer`], and handed out right after
//! its [`ClientEvent::Connect`], which thus tells the application first
//! whether the socket was recovered; the official client hands them out
//! right before its `connect`. A socket that leaves no longer reconnects;
//! when no socket is active, the client closes.

use std::{collections::VecDeque, time::Instant};

#[cfg(doc)]
use super::ClientConfig;
use super::{
    super::{Packet, Value},
    Client, ClientDisconnectReason, ClientEvent, ClientUsageError, Nsp, NspId, NspState, Ready,
};
use crate::engineio::Data;

impl Client {
    /// The socket of namespace `name` (`/`, `/admin`...), connecting with
    /// `auth` (an object, or none). Asking again for a namespace gives the
    /// same socket; if it had left, it becomes active again with the new
    /// auth. If the client is closed (and not about to reconnect), a new
    /// connection opens.
    pub fn socket(
        &mut self,
        now: Instant,
        name: &str,
        auth: Option<Value>,
    ) -> Result<NspId, ClientUsageError> {
        if !name.starts_with('/') || name.contains(',') || name.chars().any(char::is_control) {
            return Err(ClientUsageError::InvalidNamespace(name.to_owned()));
        }
        if auth
            .as_ref()
            .is_some_and(|a| !matches!(a, Value::Object(_)))
        {
            return Err(ClientUsageError::InvalidAuth);
        }
        let id = match self.nsp(name) {
            Some(id) => id,
            None => {
                let id = NspId(u32::try_from(self.nsps.len()).unwrap_or(u32::MAX));
                self.nsps.push(Nsp {
                    name: name.to_owned(),
                    auth: None,
                    active: false,
                    state: NspState::Idle,
                    send_buffer: VecDeque::new(),
                    receive_buffer: VecDeque::new(),
                    pid: None,
                    offset: None,
                    recovered: false,
                    next_ack: 0,
                    acks: Default::default(),
                });
                id
            }
        };
        let Some(n) = self.nsps.get_mut(id.0 as usize) else {
            return Err(ClientUsageError::UnknownNsp(id));
        };
        let was_active = std::mem::replace(&mut n.active, true);
        if !was_active {
            n.auth = auth;
        }
        match self.ready {
            Ready::Open if !was_active => self.send_connect(now, id),
            Ready::Open | Ready::Opening => {}
            Ready::Closed if self.reconnecting => {}
            Ready::Closed => self.open_engine(now, false),
        }
        self.pump(now);
        Ok(id)
    }

    /// Leaves a namespace: a `DISCONNECT` if connected, then
    /// [`ClientEvent::Disconnect`] with `io client disconnect`. The socket
    /// no longer reconnects (until [`socket`](Self::socket) is called
    /// again). When no socket is left active, the connection closes.
    pub fn disconnect(&mut self, now: Instant, nsp: NspId) -> Result<(), ClientUsageError> {
        self.get(nsp).ok_or(ClientUsageError::UnknownNsp(nsp))?;
        self.send_disconnect(now, nsp);
        self.leave(now, nsp, ClientDisconnectReason::IoClientDisconnect);
        self.pump(now);
        Ok(())
    }

    /// Leaves every namespace (as [`disconnect`](Self::disconnect) does)
    /// and closes the connection once what was sent has left; no
    /// reconnection. [`socket`](Self::socket) opens a new one.
    pub fn close(&mut self, now: Instant) {
        for nsp in self.active_nsps() {
            self.send_disconnect(now, nsp);
            // The last one to leave closes the connection.
            self.leave(now, nsp, ClientDisconnectReason::IoClientDisconnect);
        }
        // Closed already, unless no socket was active.
        self.shutdown(now);
        self.pump(now);
    }

    pub(super) fn on_data(&mut self, now: Instant, data: Data) {
        match self.decoder.decode(data) {
            Ok(Some(p)) => self.on_packet(now, p),
            Ok(None) => {}
            Err(_) => {
                self.retire_engine(now, true);
                self.on_close(now, ClientDisconnectReason::ParseError);
            }
        }
    }

    fn on_packet(&mut self, now: Instant, p: Packet) {
        let Some(nsp) = self
            .nsps
            .iter()
            .position(|n| n.active && n.name == p.nsp())
            .map(|i| NspId(i as u32))
        else {
            return;
        };
        let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
            return;
        };
        match p {
            Packet::Connect { data, .. } => {
                if n.state != NspState::Connecting {
                    return;
                }
                let field = |k| data.as_ref().and_then(|d| d.get(k)).and_then(Value::as_str);
                match field("sid") {
                    Some(sid) => {
                        let pid = field("pid").map(str::to_owned);
                        n.recovered = pid.is_some() && pid == n.pid;
                        n.pid = pid;
                        n.state = NspState::Connected(sid.to_owned());
                        self.events.push_back(ClientEvent::Connect {
                            nsp,
                            sid: sid.to_owned(),
                            recovered: n.recovered,
                        });
                        for ev in std::mem::take(&mut n.receive_buffer) {
                            self.hand_out(nsp, ev);
                        }
                        self.flush_send_buffer(now, nsp);
                    }
                    None => {
                        // A v2 server answers CONNECT without a sid.
                        let message = "It seems you are trying to reach a Socket.IO server in v2.x with a v3.x client, but they are not compatible";
                        self.refused(now, nsp, Value::object([("message", Value::from(message))]));
                    }
                }
            }
            Packet::ConnectError { data, .. } => self.refused(now, nsp, data),
            Packet::Disconnect { .. } => {
                self.leave(now, nsp, ClientDisconnectReason::IoServerDisconnect);
            }
            Packet::Event { id, name, args, .. } => {
                let ev = ClientEvent::Event {
                    nsp,
                    name,
                    args,
                    ack: id,
                };
                if n.connected() {
                    self.hand_out(nsp, ev);
                } else if n.receive_buffer.len() < self.config.max_receive_buffer {
                    n.receive_buffer.push_back(ev);
                }
            }
            Packet::Ack { id, args, .. } => {
                if n.acks.remove(id) {
                    self.events.push_back(ClientEvent::Ack { nsp, id, args });
                }
            }
        }
    }

    /// Hands an event of a connected socket to the application, noting
    /// its offset: with a pid, the last argument of an event without ack
    /// id, when it is a string (the official client's `_lastOffset`).
    fn hand_out(&mut self, nsp: NspId, ev: ClientEvent) {
        if let (
            Some(n),
            ClientEvent::Event {
                args, ack: None, ..
            },
        ) = (self.nsps.get_mut(nsp.0 as usize), &ev)
        {
            if let (Some(_), Some(Value::String(offset))) = (&n.pid, args.last()) {
                n.offset = Some(offset.clone());
            }
        }
        self.events.push_back(ev);
    }

    /// The server refused a namespace: the socket leaves for good.
    fn refused(&mut self, now: Instant, nsp: NspId, data: Value) {
        if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
            n.active = false;
            n.state = NspState::Idle;
            n.receive_buffer.clear();
        }
        self.events
            .push_back(ClientEvent::ConnectError { nsp, data });
        self.maybe_close_all(now);
    }

    /// A socket leaves (the official `destroy` then `onclose`).
    fn leave(&mut self, now: Instant, nsp: NspId, reason: ClientDisconnectReason) {
        if let Some(n) = self.nsps.get_mut(nsp.0 as usize) {
            n.active = false;
        }
        self.socket_closed(nsp, reason);
        self.maybe_close_all(now);
    }

    /// When no socket is active any more, the connection closes.
    fn maybe_close_all(&mut self, now: Instant) {
        if self.nsps.iter().all(|n| !n.active) {
            self.shutdown(now);
        }
    }

    /// A socket is no longer connected: [`ClientEvent::Disconnect`] if it
    /// was, and its acks that were sent are lost.
    pub(super) fn socket_closed(&mut self, nsp: NspId, reason: ClientDisconnectReason) {
        let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
            return;
        };
        let was_connected = n.connected();
        n.state = NspState::Idle;
        n.receive_buffer.clear();
        if !was_connected {
            return;
        }
        self.events
            .push_back(ClientEvent::Disconnect { nsp, reason });
        self.lose_sent_acks(nsp);
    }

    /// Tells the server that a connected socket leaves.
    fn send_disconnect(&mut self, now: Instant, nsp: NspId) {
        let Some(n) = self.get(nsp) else { return };
        if n.connected() && self.ready == Ready::Open {
            let packet = Packet::Disconnect {
                nsp: n.name.clone().into(),
            };
            self.write_packet(now, &packet, true);
        }
    }

    pub(super) fn send_connect(&mut self, now: Instant, nsp: NspId) {
        let Some(n) = self.nsps.get_mut(nsp.0 as usize) else {
            return;
        };
        n.state = NspState::Connecting;
        let data = match &n.pid {
            Some(pid) => Some(recovery_auth(pid, n.offset.as_deref(), n.auth.as_ref())),
            None => n.auth.clone(),
        };
        let packet = Packet::Connect {
            nsp: n.name.clone().into(),
            data,
        };
        self.write_packet(now, &packet, true);
    }
}

/// The payload of a `CONNECT` that asks for recovery: `{pid, offset}`
/// overlaid with the auth payload's members, as the official client's
/// `Object.assign({pid, offset}, auth)` builds it (`offset` is left out
/// while there is none, as `JSON.stringify` drops `undefined`).
pub(super) fn recovery_auth(pid: &str, offset: Option<&str>, auth: Option<&Value>) -> Value {
    let mut members = vec![("pid".to_owned(), Value::from(pid))];
    if let Some(o) = offset {
        members.push(("offset".to_owned(), Value::from(o)));
    }
    if let Some(Value::Object(auth)) = auth {
        for (k, v) in auth {
            match members.iter_mut().find(|(m, _)| m == k) {
                Some(m) => m.1 = v.clone(),
                None => members.push((k.clone(), v.clone())),
            }
        }
    }
    Value::Object(members)
}
