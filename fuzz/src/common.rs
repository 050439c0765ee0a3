//! A checked wrapper around one `ws::Connection`: it drains the machine as a
//! driver would and asserts, on every drain, what the connection documents.
//!
//! * no `Transmit` after `Transmit::Close`, and nothing left queued
//!   (`buffered_amount() == 0`) once drained;
//! * `Event::Closed` at most once, and already emitted when `Transmit::Close`
//!   is; `state()` is `Closed` exactly when `Transmit::Close` has been given;
//! * `Event::Open` at most once, never after `Closed`; `Event::Upgrade` only
//!   on a server, before `Open`; messages only after `Open`, never after
//!   `Closed`; text messages are UTF-8; ping and pong payloads at most 125
//!   bytes.

use std::time::Instant;

use bytes::Bytes;
use wsio::ws::{Accept, Closed, Connection, Event, Message, Role, State};

/// What the server answers an `Event::Upgrade` with.
#[derive(arbitrary::Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Accept with the first offered subprotocol.
    AcceptFirst,
    /// Accept with no subprotocol.
    AcceptNone,
    /// Accept with a protocol that was not offered: must fail with
    /// `ProtocolNotOffered` (then accepted with none).
    AcceptUnoffered,
    /// Refuse with this status.
    Reject(u16),
    /// Leave the request pending.
    Ignore,
}

/// One connection and everything it has said so far.
pub struct Checked {
    pub conn: Connection,
    pub name: &'static str,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Every transmitted byte, in order.
    pub wire: Vec<u8>,
    /// `Transmit::Close` was given.
    pub tcp_closed: bool,
    pub opened: bool,
    pub upgrade_seen: bool,
    pub closed: Option<Closed>,
    pub received: Vec<Message>,
    pub decision: Decision,
    pub rejected: bool,
    /// Poll with `poll_event_ref` (copying lent messages), not `poll_event`.
    pub by_ref: bool,
}

impl Checked {
    pub fn new(conn: Connection, name: &'static str, decision: Decision) -> Self {
        Checked {
            conn,
            name,
            events: Vec::new(),
            wire: Vec::new(),
            tcp_closed: false,
            opened: false,
            upgrade_seen: false,
            closed: None,
            received: Vec::new(),
            decision,
            rejected: false,
            by_ref: false,
        }
    }

    /// Drains transmits (handing each data chunk to `sink`) and events until
    /// both are empty, answering upgrades. Returns whether anything came out.
    pub fn pump(&mut self, now: Instant, mut sink: impl FnMut(Bytes)) -> bool {
        let mut any = false;
        loop {
            let mut moved = false;
            while let Some(t) = self.conn.poll_transmit(now) {
                moved = true;
                assert!(
                    !self.tcp_closed,
                    "{}: transmit after Transmit::Close: {t:?}",
                    self.name
                );
                match t {
                    wsio::ws::Transmit::Data(b) => {
                        self.wire.extend_from_slice(&b);
                        sink(b);
                    }
                    wsio::ws::Transmit::Close => self.tcp_closed = true,
                }
            }
            assert_eq!(
                self.conn.buffered_amount(),
                0,
                "{}: buffered after drain",
                self.name
            );
            while let Some(ev) = self.next_event(now) {
                moved = true;
                self.check_event(now, &ev);
                self.events.push(ev);
            }
            if !moved {
                break;
            }
            any = true;
        }
        self.check_state();
        any
    }

    /// The next event from whichever poller `by_ref` picks: both must give
    /// the same events.
    fn next_event(&mut self, now: Instant) -> Option<Event> {
        if !self.by_ref {
            return self.conn.poll_event(now);
        }
        match self.conn.poll_event_ref(now)? {
            wsio::ws::EventRef::Message(m) => Some(Event::Message(m.into())),
            wsio::ws::EventRef::Other(ev) => {
                assert!(
                    !matches!(ev, Event::Message(_)),
                    "{}: a message not lent",
                    self.name
                );
                Some(ev)
            }
        }
    }

    fn check_event(&mut self, now: Instant, ev: &Event) {
        let name = self.name;
        match ev {
            Event::Upgrade(req) => {
                assert_eq!(
                    self.conn.role(),
                    Role::Server,
                    "{name}: upgrade on a client"
                );
                assert!(!self.upgrade_seen && !self.opened, "{name}: second upgrade");
                assert!(self.closed.is_none(), "{name}: upgrade after Closed");
                self.upgrade_seen = true;
                self.decide(now, req.protocols.first().cloned());
            }
            Event::Open { .. } => {
                assert!(!self.opened, "{name}: Open twice");
                assert!(self.closed.is_none(), "{name}: Open after Closed");
                assert!(
                    self.conn.role() == Role::Client || self.upgrade_seen,
                    "{name}: Open without Upgrade"
                );
                self.opened = true;
            }
            Event::Message(m) => {
                assert!(self.opened, "{name}: message before Open");
                assert!(self.closed.is_none(), "{name}: message after Closed");
                if let Message::Text(t) = m {
                    assert!(
                        std::str::from_utf8(t.as_bytes()).is_ok(),
                        "{name}: bad UTF-8 text"
                    );
                }
                self.received.push(m.clone());
            }
            Event::Ping(p) | Event::Pong(p) => {
                assert!(self.opened, "{name}: ping/pong before Open");
                assert!(p.len() <= 125, "{name}: control payload of {}", p.len());
            }
            Event::Closed(c) => {
                assert!(self.closed.is_none(), "{name}: Closed twice: {c:?}");
                self.closed = Some(c.clone());
            }
        }
    }

    fn decide(&mut self, now: Instant, first: Option<String>) {
        let name = self.name;
        match self.decision {
            Decision::AcceptFirst => {
                let accept = first.map_or_else(Accept::new, |p| Accept::new().protocol(p));
                self.conn.accept(now, accept).expect("accept");
            }
            Decision::AcceptNone => self.conn.accept(now, Accept::new()).expect("accept"),
            Decision::AcceptUnoffered => {
                let r = self
                    .conn
                    .accept(now, Accept::new().protocol("\u{1}not offered"));
                assert_eq!(r, Err(wsio::ws::UsageError::ProtocolNotOffered), "{name}");
                self.conn.accept(now, Accept::new()).expect("accept");
            }
            Decision::Reject(status) => {
                self.conn.reject(status).expect("reject");
                self.rejected = true;
                // Once decided, there is nothing left to decide.
                assert!(self.conn.reject(status).is_err(), "{name}: rejected twice");
            }
            Decision::Ignore => {}
        }
    }

    fn check_state(&self) {
        let name = self.name;
        let state = self.conn.state();
        if self.tcp_closed {
            assert!(
                self.closed.is_some(),
                "{name}: Transmit::Close before Event::Closed"
            );
        }
        assert_eq!(
            state == State::Closed,
            self.tcp_closed,
            "{name}: state {state:?}, Transmit::Close given: {}",
            self.tcp_closed
        );
        if self.closed.is_some() {
            assert!(
                matches!(state, State::Closing | State::Closed),
                "{name}: Closed emitted but state {state:?}"
            );
        }
        if state == State::Open {
            assert!(self.opened, "{name}: Open state without Event::Open");
        }
    }
}
