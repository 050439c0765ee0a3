//! What the machines of many connections hold for connections whose
//! sockets are full (see the module docs of [`machine`](super),
//! "Backpressure").
//!
//! # Theory of operation
//!
//! A machine's transmits wait in one queue, in the order they were made.
//! When the driver gives bytes back for a connection
//! ([`Backlog::block`]), that connection becomes *blocked*: the bytes go to
//! its own queue here, and each transmit for it that later comes to the
//! front of the machine's queue is moved here too ([`Backlog::hold`]) rather
//! than handed out, so its order is kept without searching the machine's
//! queue. When the socket is writable again ([`Backlog::release`]), the
//! machine puts what was held back at the front of its queue. Bytes held
//! here count against the connection's bound; a deadline per blocked
//! connection lets the machine drop one that never drains.

use std::{collections::VecDeque, time::Instant};

use bytes::Bytes;

use super::ConnId;
use crate::idmap::IdMap;

/// A transmit a [`Backlog`] can hold.
pub(crate) trait Holdable: Sized {
    /// The connection it is for, if the driver writes it on a socket.
    fn held_conn(&self) -> Option<ConnId>;
    /// The bytes it carries.
    fn held_len(&self) -> usize;
    /// Bytes for `conn` (what a driver gave back).
    fn data(conn: ConnId, data: Bytes) -> Self;
    /// The connection it abandons, if it tells the driver to close one:
    /// what that connection held goes nowhere.
    fn closes(&self) -> Option<ConnId> {
        None
    }
}

/// The output of one blocked connection.
#[derive(Debug)]
pub(crate) struct Held<T> {
    queue: VecDeque<T>,
    /// How many pieces at the front the driver gave back since the
    /// connection blocked: the next piece goes behind them.
    given: usize,
    /// Bytes in `queue`.
    bytes: usize,
    /// When the connection is dropped if it has not drained.
    pub(crate) deadline: Instant,
    /// Bytes of input fed to the connection while blocked (the driver
    /// should read nothing; this bounds one that does).
    pub(crate) input: usize,
}

/// The blocked connections of a machine and what they hold.
#[derive(Debug)]
pub(crate) struct Backlog<T> {
    conns: IdMap<ConnId, Held<T>>,
}

impl<T> Default for Backlog<T> {
    fn default() -> Self {
        Backlog {
            conns: IdMap::default(),
        }
    }
}

impl<T: Holdable> Backlog<T> {
    /// Whether `conn` is blocked.
    #[inline]
    pub(crate) fn is_blocked(&self, conn: ConnId) -> bool {
        !self.conns.is_empty() && self.conns.contains_key(&conn)
    }

    /// A blocked connection's entry.
    pub(crate) fn get_mut(&mut self, conn: ConnId) -> Option<&mut Held<T>> {
        self.conns.get_mut(&conn)
    }

    /// A blocked connection's entry.
    pub(crate) fn get(&self, conn: ConnId) -> Option<&Held<T>> {
        self.conns.get(&conn)
    }

    /// Bytes held for `conn`.
    pub(crate) fn bytes(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |h| h.bytes)
    }

    /// The driver gave back `unwritten` for `conn`: it goes behind the
    /// pieces given back before it, ahead of the rest. A connection not
    /// yet blocked becomes blocked, to be dropped at `deadline`; returns
    /// whether it was newly blocked.
    pub(crate) fn block(&mut self, conn: ConnId, unwritten: Bytes, deadline: Instant) -> bool {
        let mut new = false;
        let h = self.conns.entry(conn).or_insert_with(|| {
            new = true;
            Held {
                queue: VecDeque::new(),
                given: 0,
                bytes: 0,
                deadline,
                input: 0,
            }
        });
        if !unwritten.is_empty() {
            h.bytes = h.bytes.saturating_add(unwritten.len());
            let at = h.given.min(h.queue.len());
            h.queue.insert(at, T::data(conn, unwritten));
            h.given = at + 1;
        }
        new
    }

    /// Keeps `t` if its connection is blocked; else gives it back.
    #[inline]
    pub(crate) fn hold(&mut self, t: T) -> Option<T> {
        if self.conns.is_empty() {
            return Some(t);
        }
        let Some(h) = t.held_conn().and_then(|c| self.conns.get_mut(&c)) else {
            return Some(t);
        };
        h.bytes = h.bytes.saturating_add(t.held_len());
        h.queue.push_back(t);
        None
    }

    /// The next transmit of `queue` to hand out, holding those for blocked
    /// connections and forgetting what a closed connection held.
    pub(crate) fn next(&mut self, queue: &mut VecDeque<T>) -> Option<T> {
        loop {
            let t = queue.pop_front()?;
            if let Some(conn) = t.closes() {
                self.remove(conn);
                return Some(t);
            }
            if let Some(t) = self.hold(t) {
                return Some(t);
            }
        }
    }

    /// `conn` is writable again: what it held, in order, to go out first.
    pub(crate) fn release(&mut self, conn: ConnId) -> Option<VecDeque<T>> {
        self.conns.remove(&conn).map(|h| h.queue)
    }

    /// Forgets `conn` and what it held; whether it was blocked.
    pub(crate) fn remove(&mut self, conn: ConnId) -> bool {
        self.conns.remove(&conn).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct T(ConnId, Bytes);

    impl Holdable for T {
        fn held_conn(&self) -> Option<ConnId> {
            Some(self.0)
        }
        fn held_len(&self) -> usize {
            self.1.len()
        }
        fn data(conn: ConnId, data: Bytes) -> Self {
            T(conn, data)
        }
    }

    fn t(c: u64, s: &'static str) -> T {
        T(ConnId(c), Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn given_back_pieces_keep_their_order_ahead_of_held_transmits() {
        let now = Instant::now();
        let mut b = Backlog::<T>::default();
        assert!(b.hold(t(1, "a")).is_some());
        assert!(b.block(ConnId(1), Bytes::from_static(b"rest1"), now));
        assert!(b.hold(t(1, "later")).is_none());
        assert!(b.hold(t(2, "other")).is_some());
        assert!(!b.block(ConnId(1), Bytes::from_static(b"rest2"), now));
        assert_eq!(b.bytes(ConnId(1)), 15);
        let out: Vec<_> = b.release(ConnId(1)).unwrap().into_iter().collect();
        assert_eq!(out, [t(1, "rest1"), t(1, "rest2"), t(1, "later")]);
        assert!(b.hold(t(1, "x")).is_some());
    }
}
