//! Middleware points: the application's verdict on each incoming event (the
//! official `socket.use`), and a look at each outgoing one (the official
//! `socket.onAnyOutgoing`). The verdict on connections (the official
//! `namespace.use` / `io.use`) is [`Admission::Decide`].
//!
//! # Theory of operation
//!
//! In a namespace whose events are decided
//! ([`Server::set_event_admission`] with [`Admission::Decide`]), an event a
//! socket sends is *held*: the application hears [`Event::EventRequest`]
//! with a check id, and answers [`Server::pass_event`] (the event then
//! comes as [`Event::Event`]) or [`Server::refuse_event`] (it is dropped;
//! an ack it asked for is never sent, as in the official server). One
//! event per socket is asked about at a time, so that the events of a
//! socket reach the application in the order they were sent. A socket may
//! have at most [`Config::max_held_events`] held; past that its connection
//! is closed (`forced server close`): a client must not make the server
//! keep what it sends faster than the application decides.
//!
//! A socket that is *watched* ([`Server::watch_outgoing`]) is reported by
//! [`Event::Outgoing`] for every event sent to it, alone or in a broadcast,
//! with the arguments as sent (its recovery offset included), but not for
//! acknowledgements.
//!
//! [`Config::max_held_events`]: super::super::Config::max_held_events

use std::{collections::VecDeque, time::Instant};

use super::{
    super::{Admission, DisconnectReason, Event, SocketId, UsageError, Value},
    Server,
};

/// An event held for the application's verdict.
#[derive(Debug)]
pub(super) struct Held {
    name: String,
    args: Vec<Value>,
    ack: Option<u64>,
}

/// The events of one socket waiting for verdicts; the front one is asked
/// about with `asked` as its check id.
#[derive(Debug, Default)]
pub(super) struct HeldEvents {
    queue: VecDeque<Held>,
    asked: Option<u64>,
}

impl Server {
    /// Whether the events of a namespace's sockets come straight to the
    /// application ([`Admission::AcceptAll`], the default) or are held for
    /// its verdict first ([`Admission::Decide`]: see
    /// [`Event::EventRequest`]). Creates the namespace if needed.
    pub fn set_event_admission(&mut self, nsp: &str, admission: Admission) {
        self.namespaces
            .entry(nsp.to_owned())
            .or_default()
            .event_admission = admission;
    }

    /// Lets an event held by [`Event::EventRequest`] through: it comes as
    /// [`Event::Event`].
    pub fn pass_event(&mut self, socket: SocketId, check: u64) -> Result<(), UsageError> {
        let held = self.take_held(socket, check)?;
        self.events.push_back(Event::Event {
            socket,
            name: held.name,
            args: held.args,
            ack: held.ack,
        });
        self.ask_next(socket);
        Ok(())
    }

    /// Drops an event held by [`Event::EventRequest`].
    pub fn refuse_event(&mut self, socket: SocketId, check: u64) -> Result<(), UsageError> {
        self.take_held(socket, check)?;
        self.ask_next(socket);
        Ok(())
    }

    /// Reports every event sent to `socket` as [`Event::Outgoing`] (`on`),
    /// or no longer (the official `onAnyOutgoing` / `offAnyOutgoing`).
    pub fn watch_outgoing(&mut self, socket: SocketId, on: bool) -> Result<(), UsageError> {
        self.connected(socket)?;
        if on {
            self.outgoing.insert(socket);
        } else {
            self.outgoing.remove(&socket);
        }
        Ok(())
    }

    /// An event from a connected socket: to the application, or held.
    pub(super) fn incoming_event(
        &mut self,
        now: Instant,
        socket: SocketId,
        name: String,
        args: Vec<Value>,
        ack: Option<u64>,
    ) {
        let Some(s) = self.sockets.get_mut(&socket) else {
            return;
        };
        let decide = self
            .namespaces
            .get(&*s.nsp)
            .is_some_and(|n| n.event_admission == Admission::Decide);
        if !decide {
            self.events.push_back(Event::Event {
                socket,
                name,
                args,
                ack,
            });
            return;
        }
        if s.held.queue.len() >= self.config.max_held_events {
            let sid = s.sid;
            self.close_client(now, sid, DisconnectReason::ForcedServerClose);
            return;
        }
        s.held.queue.push_back(Held { name, args, ack });
        if s.held.asked.is_none() {
            self.ask_next(socket);
        }
    }

    fn take_held(&mut self, socket: SocketId, check: u64) -> Result<Held, UsageError> {
        let s = self
            .sockets
            .get_mut(&socket)
            .filter(|s| s.connected)
            .ok_or(UsageError::UnknownSocket(socket))?;
        if s.held.asked != Some(check) {
            return Err(UsageError::UnknownCheck(check));
        }
        s.held.asked = None;
        s.held
            .queue
            .pop_front()
            .ok_or(UsageError::UnknownCheck(check))
    }

    /// Asks about the next held event of a socket, if any.
    fn ask_next(&mut self, socket: SocketId) {
        let check = self.next_check;
        let Some(s) = self.sockets.get_mut(&socket) else {
            return;
        };
        let Some(next) = s.held.queue.front() else {
            return;
        };
        self.next_check = self.next_check.wrapping_add(1);
        s.held.asked = Some(check);
        self.events.push_back(Event::EventRequest {
            socket,
            check,
            name: next.name.clone(),
            args: next.args.clone(),
            ack: next.ack,
        });
    }

    /// Reports an event sent to the watched ones among `sockets`.
    pub(super) fn notify_outgoing(&mut self, sockets: &[SocketId], name: &str, args: &[Value]) {
        if self.outgoing.is_empty() {
            return;
        }
        for id in sockets {
            if self.outgoing.contains(id) {
                self.events.push_back(Event::Outgoing {
                    socket: *id,
                    name: name.to_owned(),
                    args: args.to_vec(),
                });
            }
        }
    }
}
