//! Acknowledgements: emits that wait for the client's answer, and the
//! server's answers to the client's.
//!
//! # Theory of operation
//!
//! An emit with an ack takes the next id of its namespace (ids count per
//! namespace, as in the official server) and is remembered by its socket
//! with its deadline. It ends in exactly one of: the client's `ACK`
//! ([`Event::Ack`]), its deadline passing ([`Event::AckTimeout`]), or the
//! socket going (nothing more is reported). The deadlines share the
//! server's timer heap with the connect timeouts; an entry whose ack has
//! ended is skipped when it comes up.

use std::time::{Duration, Instant};

use super::{
    super::{
        Event, SocketId, UsageError, Value,
        packet::{Body, check_event_name},
        timer::later,
    },
    Broadcast, Server, Timer,
    cluster::{BroadcastAcks, ClusterAnswer, ClusterMessage, RequestId, RequestKind},
    emit::compress_all,
};

impl Server {
    /// Emits an event whose answer comes back as [`Event::Ack`] with the
    /// returned id, or [`Event::AckTimeout`] after `timeout`.
    pub fn emit_with_ack(
        &mut self,
        now: Instant,
        socket: SocketId,
        event: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<u64, UsageError> {
        check_event_name(event, UsageError::ReservedEvent)?;
        let s = self.connected(socket)?;
        let (sid, nsp) = (s.sid, s.nsp.clone());
        let ns = self
            .namespaces
            .get_mut(&*nsp)
            .ok_or(UsageError::UnknownSocket(socket))?;
        let id = ns.next_ack;
        self.send_body(sid, 2, &nsp, Some(id), Body::Event(event, &args))?;
        self.notify_outgoing(&[socket], event, &args);
        if let Some(ns) = self.namespaces.get_mut(&*nsp) {
            ns.next_ack = ns.next_ack.wrapping_add(1);
        }
        let deadline = timeout.map(|t| later(now, t));
        if let Some(s) = self.sockets.get_mut(&socket) {
            s.acks.insert(id, deadline);
        }
        if let Some(d) = deadline {
            self.timers.push(d, Timer::Ack(socket, id));
        }
        Ok(id)
    }

    /// Answers an event that asked for it ([`Event::Event`]'s `ack`).
    pub fn ack(&mut self, socket: SocketId, id: u64, args: Vec<Value>) -> Result<(), UsageError> {
        let s = self.connected(socket)?;
        let (sid, nsp) = (s.sid, s.nsp.clone());
        self.send_body(sid, 3, &nsp, Some(id), Body::Args(&args))
    }
}

impl Server {
    /// Takes the next ack id of a namespace.
    pub(super) fn next_ack_id(&mut self, nsp: &str) -> Option<u64> {
        let ns = self.namespaces.get_mut(nsp)?;
        let id = ns.next_ack;
        ns.next_ack = ns.next_ack.wrapping_add(1);
        Some(id)
    }

    /// The recipients of a broadcast with acknowledgements owe `request`
    /// their answer to `ack_id`.
    pub(super) fn register_group_acks(
        &mut self,
        recipients: &[SocketId],
        ack_id: u64,
        request: &RequestId,
    ) {
        for id in recipients {
            if let Some(s) = self.sockets.get_mut(id) {
                s.group_acks.push((ack_id, request.clone()));
            }
        }
    }

    /// The recipients of a broadcast that ended owe it nothing more.
    pub(super) fn forget_group_acks(&mut self, recipients: &[SocketId], ack_id: u64) {
        for id in recipients {
            if let Some(s) = self.sockets.get_mut(id) {
                s.group_acks.retain(|(a, _)| *a != ack_id);
            }
        }
    }

    /// A client's `ACK`: for an emit to it alone, or for a broadcast.
    pub(super) fn on_ack(&mut self, socket: SocketId, id: u64, args: Vec<Value>) {
        let Some(s) = self.sockets.get_mut(&socket) else {
            return;
        };
        if s.acks.remove(id) {
            self.events.push_back(Event::Ack { socket, id, args });
            return;
        }
        let Some(i) = s.group_acks.iter().position(|(a, _)| *a == id) else {
            return;
        };
        let (_, request) = s.group_acks.swap_remove(i);
        let Some(r) = self.requests.get_mut(&request) else {
            return;
        };
        match &mut r.kind {
            RequestKind::Broadcast(b) => {
                b.answers.push(args);
                self.check_request(&request);
            }
            RequestKind::Remote { .. } => {
                let nsp = r.nsp.to_string();
                self.cluster_out.push_back(ClusterMessage::Response {
                    nsp,
                    request,
                    answer: ClusterAnswer::BroadcastAck(args),
                });
            }
            _ => {}
        }
    }
}

impl Broadcast<'_> {
    /// Emits the event, encoded once, asking every recipient for an
    /// answer (the official `io.timeout(ms).emit(.., callback)`): they
    /// come together as [`Event::BroadcastAck`] with the returned id, when
    /// every recipient (on every node) has answered, or after `timeout`
    /// with the answers so far.
    pub fn emit_with_ack(
        self,
        now: Instant,
        timeout: Duration,
        event: &str,
        args: Vec<Value>,
    ) -> Result<RequestId, UsageError> {
        check_event_name(event, UsageError::ReservedEvent)?;
        let cluster = self.clustered();
        let to = self.selection();
        let server = self.server;
        let request = server.new_request_id();
        let mut recipients = Vec::new();
        let mut ack_id = 0;
        if let Some(id) = server.next_ack_id(&self.nsp) {
            ack_id = id;
            let shared = compress_all(
                server.config.parser.encode_shared(
                    2,
                    &self.nsp,
                    Some(id),
                    Body::Event(event, &args),
                ),
                self.compress,
            );
            server.deliver(
                &self.nsp,
                &self.rooms,
                &self.except,
                self.exclude,
                self.volatile,
                shared,
                Some(&mut recipients),
            );
            server.register_group_acks(&recipients, id, &request);
            server.notify_outgoing(&recipients, event, &args);
        }
        if cluster {
            server.cluster_out.push_back(ClusterMessage::Broadcast {
                nsp: self.nsp.clone(),
                to,
                volatile: self.volatile,
                compress: self.compress,
                name: event.to_owned(),
                args,
                ack: Some((request.clone(), timeout)),
            });
        }
        let expected = recipients.len();
        server.open_request(
            now,
            request.clone(),
            &self.nsp,
            timeout,
            cluster,
            RequestKind::Broadcast(BroadcastAcks {
                ack_id,
                recipients,
                expected,
                answers: Vec::new(),
            }),
        );
        Ok(request)
    }
}
