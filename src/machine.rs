//! The one call contract every machine in wsio obeys.
//!
//! [`ws::Connection`](crate::ws::Connection), [`engineio::Server`](crate::engineio::Server),
//! [`engineio::Client`](crate::engineio::Client), [`socketio::Server`](crate::socketio::Server)
//! and [`socketio::Client`](crate::socketio::Client) are sans-IO state
//! machines: bytes and time go in, bytes and events come out. They offer four
//! kinds of methods, named the same way at every layer:
//!
//! | group | methods | takes `now` | returns |
//! |---|---|---|---|
//! | inputs | `handle_input`, `handle_eof`, `handle_error`, `handle_timeout`, `accept`, ... | always | nothing: a peer's bad bytes become a queued reply and an event |
//! | commands | `send`, `emit`, `join`, `close`, ... | when the command can start or fire a timer | `Result<_, UsageError>` (the caller's mistakes) |
//! | outputs | `poll_transmit`, `poll_event` | always | `Option`, drained until `None` |
//! | | `poll_timeout` | never (`&self`) | the next deadline |
//! | queries | `state`, `rooms`, ... | never (`&self`) | |
//!
//! [`Machine`] names the outputs and the timer input; [`StreamMachine`]
//! and [`ConnMachine`] (with [`ServerMachine`]) name the byte inputs of the
//! two shapes of machine, so that a driver is written once for all of them;
//! [`Shutdown`] is what a server driver needs for a graceful shutdown.
//!
//! # Time
//!
//! No machine reads a clock. `now` is given to every input, to both pollers
//! and to every command that can start or fire a timer (`close`,
//! `emit_with_ack`, `disconnect`, a client's `send` and `socket`...); no
//! method uses a time it was given earlier in place of the present. Time may
//! stand still or jump; if it goes backwards it is treated as standing
//! still. [`handle_timeout`](Machine::handle_timeout) is cheap and
//! idempotent: calling it early, late or twice is harmless.
//!
//! # Run loop
//!
//! After any input or command, and after waking for a deadline:
//!
//! 1. drain [`poll_transmit`](Machine::poll_transmit), carrying out each
//!    transmit (write the bytes, close the socket...);
//! 2. drain [`poll_event`](Machine::poll_event), handing each event to the
//!    application, which may issue commands as it goes;
//! 3. repeat 1 and 2 until `poll_transmit` returns `None` right after
//!    `poll_event` did (what handing out the last events queued has left
//!    then), then arm a timer for [`poll_timeout`](Machine::poll_timeout).
//!
//! That order is always enough: nothing else needs polling. [`drain`] is
//! that loop, and every driver in wsio (`blocking`, `sim`, the examples,
//! the tests) uses it.
//!
//! ```no_run
//! use std::{io::{Read, Write}, net::TcpListener, ops::ControlFlow, time::{Duration, Instant}};
//! use wsio::{
//!     machine::drain,
//!     ws::{Accept, Config, Connection, Event, Transmit},
//! };
//!
//! let listener = TcpListener::bind("127.0.0.1:9001")?;
//! let (mut tcp, _) = listener.accept()?;
//! let mut ws = Connection::server(Config::default());
//! let mut buf = [0u8; 4096];
//! loop {
//!     let now = Instant::now();
//!     let mut closed = false;
//!     drain(&mut ws, now, |_, t| {
//!         match t {
//!             Transmit::Data(b) => closed |= tcp.write_all(&b).is_err(),
//!             Transmit::Close => closed = true,
//!         }
//!         ControlFlow::Continue(())
//!     }, |ws, ev| match ev {
//!         Event::Upgrade(_) => ws.accept(now, Accept::new()).unwrap(),
//!         Event::Message(m) => ws.send(m).unwrap(), // echo
//!         _ => {}
//!     });
//!     if closed {
//!         break;
//!     }
//!     // Wake for the next deadline, at the latest.
//!     let wait = ws.poll_timeout().map(|t| {
//!         t.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
//!     });
//!     tcp.set_read_timeout(wait)?;
//!     match tcp.read(&mut buf) {
//!         Ok(0) => ws.handle_eof(Instant::now()),
//!         Ok(n) => ws.handle_input(Instant::now(), &buf[..n]),
//!         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ws.handle_timeout(Instant::now()),
//!         Err(e) => return Err(e),
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Backpressure
//!
//! A driver writes each transmit as it takes it and keeps no buffer of its
//! own: what it cannot write stays the machine's, where one bound counts
//! it. While a connection's socket is full, the driver reads nothing from
//! it and the machine decodes nothing more of it (its answers, pongs
//! included, could not be written); the other connections go on.
//!
//! * **One stream** (a [`ws::Connection`](crate::ws::Connection)): the
//!   sink keeps what is left of the transmit it could not write whole and
//!   returns [`ControlFlow::Break`]; [`drain`] stops
//!   ([`Drained::Blocked`]). The driver neither polls nor reads until the
//!   socket is writable, writes the rest, then drains again. Unpolled, the
//!   connection decodes nothing; sends past its `max_send_queue` fail and
//!   automatic pongs are skipped while it is full.
//! * **Many connections** ([`ConnMachine`]): the sink gives what it could
//!   not write back with
//!   [`handle_write_blocked`](ConnMachine::handle_write_blocked) (it is
//!   handed the machine for that) and returns [`ControlFlow::Continue`],
//!   so the drain goes on with the other connections. The machine then
//!   hands out nothing more for that connection but a close (which means:
//!   drop it, unwritten bytes and all) and decodes none of its input,
//!   until the driver says the socket is writable again
//!   ([`handle_writable`](ConnMachine::handle_writable)) and drains. All
//!   the peer has not read is then in the machine and counted against the
//!   connection's bound (`engineio::Config::max_send_queue`, 1 MiB by
//!   default): a send that would cross it ends the session and drops the
//!   connection, and the application hears why
//!   (`CloseReason::SendQueueFull`); a connection that stays blocked
//!   longer than `send_timeout` is dropped too (`CloseReason::SendTimeout`).
//!
//! ```
//! use std::{ops::ControlFlow, time::Instant};
//! use wsio::{
//!     engineio::{Config, Server, Transmit},
//!     entropy::SeededEntropy,
//!     machine::{ConnMachine, drain},
//! };
//!
//! let now = Instant::now();
//! let mut server = Server::new(Config::default(), Box::new(SeededEntropy::new(1)), now);
//! let conn = server.accept(now, None);
//! server.handle_input(now, conn, b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\n\r\n");
//! let mut rest = None;
//! drain(&mut server, now, |server, t| {
//!     if let Transmit::Data { conn, data } = t {
//!         // The socket took 10 bytes and is full: the rest goes back.
//!         rest = Some(data.slice(10..));
//!         server.handle_write_blocked(now, conn, data.slice(10..));
//!     }
//!     ControlFlow::Continue(())
//! }, |_, _| {});
//! assert_eq!(server.poll_transmit(now), None);
//! // The socket is writable again: the rest comes out first.
//! server.handle_writable(now, conn);
//! let Some(Transmit::Data { data, .. }) = server.poll_transmit(now) else { panic!() };
//! assert_eq!(Some(data), rest);
//! ```

mod backlog;

use std::{net::SocketAddr, ops::ControlFlow, time::Instant};

use bytes::Bytes;

pub(crate) use backlog::{Backlog, Holdable};

/// `now + d`, or a year from now if that overflows: a huge configured
/// duration must not panic.
pub(crate) fn later(now: Instant, d: std::time::Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Names one connection of a machine that has many: a server's accepted
/// connections, or the connections a client asked its driver to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The outputs and the timer of every machine (see the [module
/// docs](self) for the rules).
pub trait Machine {
    /// What the driver must carry out: bytes to write, a connection to
    /// open or close.
    type Transmit;
    /// What the application must hear.
    type Event;

    /// Runs every timer that is due at `now`. Cheap; early, late or
    /// repeated calls are harmless.
    fn handle_timeout(&mut self, now: Instant);

    /// The next transmit, or `None` when there is nothing to carry out.
    fn poll_transmit(&mut self, now: Instant) -> Option<Self::Transmit>;

    /// The next event, or `None` when there is nothing to hear.
    fn poll_event(&mut self, now: Instant) -> Option<Self::Event>;

    /// When [`handle_timeout`](Self::handle_timeout) should next be called;
    /// read it after draining.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// A machine over one byte stream (a [`ws::Connection`](crate::ws::Connection)).
pub trait StreamMachine: Machine {
    /// Bytes read from the stream.
    fn handle_input(&mut self, now: Instant, bytes: &[u8]);
    /// The peer closed its side of the stream (a read returned 0).
    fn handle_eof(&mut self, now: Instant);
}

/// A machine over many byte streams, each named by a [`ConnId`]: the
/// servers' connections, and the clients' (which they ask the driver to
/// open).
pub trait ConnMachine: Machine {
    /// Bytes read from connection `conn`. Unknown connections are ignored.
    fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]);
    /// The peer closed its side of connection `conn`.
    fn handle_eof(&mut self, now: Instant, conn: ConnId);
    /// Connection `conn` failed: it could not be opened, or a read or a
    /// write on it failed (`error` says how, for people). The connection is
    /// gone: the machine asks for nothing more on it. A server sees this as
    /// the end of the connection.
    fn handle_error(&mut self, now: Instant, conn: ConnId, error: &str) {
        let _ = error;
        self.handle_eof(now, conn);
    }
    /// The socket of connection `conn` is full: the driver could not write
    /// `unwritten`, the rest of a transmit it took for it, and gives it
    /// back. Until [`handle_writable`](Self::handle_writable) the machine
    /// keeps `conn`'s output (a close excepted), decodes none of its input
    /// and counts all of it against the connection's bound; the driver
    /// reads nothing from it. Pieces given back one after another stay in
    /// that order, ahead of what the machine still holds.
    fn handle_write_blocked(&mut self, now: Instant, conn: ConnId, unwritten: Bytes);
    /// The socket of connection `conn`, blocked since
    /// [`handle_write_blocked`](Self::handle_write_blocked), takes bytes
    /// again: drain, and the held output comes out first.
    fn handle_writable(&mut self, now: Instant, conn: ConnId);
}

/// A server: a [`ConnMachine`] whose connections the driver accepts.
pub trait ServerMachine: ConnMachine {
    /// A new connection from `peer`; its bytes go to
    /// [`handle_input`](ConnMachine::handle_input) with the returned id.
    fn accept(&mut self, now: Instant, peer: Option<SocketAddr>) -> ConnId;
}

/// Implements the contract's traits for a machine from its inherent
/// methods of the same names and signatures, which every machine here has
/// (callers who know the type need no trait import): one expansion per
/// trait, so the two cannot drift apart. `ConnMachine(handle_error)` also
/// forwards `handle_error`, for machines that tell a failed connection from
/// a closed one.
macro_rules! by_inherent_methods {
    ($t:ty: Machine<$transmit:ty, $event:ty>) => {
        impl $crate::machine::Machine for $t {
            type Transmit = $transmit;
            type Event = $event;
            fn handle_timeout(&mut self, now: std::time::Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self, now: std::time::Instant) -> Option<$transmit> {
                <$t>::poll_transmit(self, now)
            }
            fn poll_event(&mut self, now: std::time::Instant) -> Option<$event> {
                <$t>::poll_event(self, now)
            }
            fn poll_timeout(&self) -> Option<std::time::Instant> {
                <$t>::poll_timeout(self)
            }
        }
    };
    ($t:ty: StreamMachine) => {
        impl $crate::machine::StreamMachine for $t {
            fn handle_input(&mut self, now: std::time::Instant, bytes: &[u8]) {
                <$t>::handle_input(self, now, bytes)
            }
            fn handle_eof(&mut self, now: std::time::Instant) {
                <$t>::handle_eof(self, now)
            }
        }
    };
    ($t:ty: ConnMachine $(($error:ident))?) => {
        impl $crate::machine::ConnMachine for $t {
            fn handle_input(
                &mut self,
                now: std::time::Instant,
                conn: $crate::machine::ConnId,
                bytes: &[u8],
            ) {
                <$t>::handle_input(self, now, conn, bytes)
            }
            fn handle_eof(&mut self, now: std::time::Instant, conn: $crate::machine::ConnId) {
                <$t>::handle_eof(self, now, conn)
            }
            $(
                fn $error(
                    &mut self,
                    now: std::time::Instant,
                    conn: $crate::machine::ConnId,
                    error: &str,
                ) {
                    <$t>::$error(self, now, conn, error)
                }
            )?
            fn handle_write_blocked(
                &mut self,
                now: std::time::Instant,
                conn: $crate::machine::ConnId,
                unwritten: bytes::Bytes,
            ) {
                <$t>::handle_write_blocked(self, now, conn, unwritten)
            }
            fn handle_writable(&mut self, now: std::time::Instant, conn: $crate::machine::ConnId) {
                <$t>::handle_writable(self, now, conn)
            }
        }
    };
    ($t:ty: ServerMachine) => {
        impl $crate::machine::ServerMachine for $t {
            fn accept(
                &mut self,
                now: std::time::Instant,
                peer: Option<std::net::SocketAddr>,
            ) -> $crate::machine::ConnId {
                <$t>::accept(self, now, peer)
            }
        }
    };
}
pub(crate) use by_inherent_methods;

/// A server a driver can shut down gracefully: it stops accepting, calls
/// [`shutdown`](Self::shutdown), keeps moving bytes and time until
/// [`is_idle`](Self::is_idle) (or its grace period ends), then closes what
/// is left.
pub trait Shutdown: ServerMachine {
    /// Closes every session as the protocol wants it closed (Socket.IO:
    /// `server shutting down`, as the official `io.close()`; a WebSocket:
    /// a close frame). New connections are the driver's to refuse.
    fn shutdown(&mut self, now: Instant);
    /// Whether no session is left to close.
    fn is_idle(&self) -> bool;
}

impl Shutdown for crate::socketio::Server {
    fn shutdown(&mut self, now: Instant) {
        self.close_all(now);
    }
    fn is_idle(&self) -> bool {
        self.client_count() == 0
    }
}

impl Shutdown for crate::engineio::Server {
    /// Nothing to say: sessions end as their clients leave or time out.
    fn shutdown(&mut self, _now: Instant) {}
    fn is_idle(&self) -> bool {
        self.session_count() == 0
    }
}

/// How [`drain`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// `poll_transmit` returned `None` right after `poll_event` did: arm a
    /// timer for [`poll_timeout`](Machine::poll_timeout) and wait for
    /// input.
    Idle,
    /// The transmit sink returned [`ControlFlow::Break`] (a full socket):
    /// drain again once it can take more.
    Blocked,
}

/// The run loop's drain: transmits, then events, again until
/// `poll_transmit` returns `None` right after `poll_event` did.
///
/// `on_transmit` carries out each transmit; it returns
/// [`ControlFlow::Break`] when it cannot take another now (it keeps the one
/// it was given), and the drain stops with [`Drained::Blocked`].
/// `on_event` hands each event to the application, which may issue
/// commands on the machine.
pub fn drain<M: Machine + ?Sized>(
    machine: &mut M,
    now: Instant,
    mut on_transmit: impl FnMut(&mut M, M::Transmit) -> ControlFlow<()>,
    mut on_event: impl FnMut(&mut M, M::Event),
) -> Drained {
    // Whether the last round's events came out empty: then a round with
    // no transmit either ends the drain.
    let mut heard_nothing = false;
    loop {
        let mut sent = false;
        while let Some(t) = machine.poll_transmit(now) {
            sent = true;
            if on_transmit(machine, t).is_break() {
                return Drained::Blocked;
            }
        }
        if heard_nothing && !sent {
            return Drained::Idle;
        }
        heard_nothing = true;
        while let Some(ev) = machine.poll_event(now) {
            heard_nothing = false;
            on_event(machine, ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Each event queues a transmit, which queues the next event, three
    /// times: one round of each poller is not enough.
    #[derive(Default)]
    struct PingPong {
        transmits: VecDeque<u32>,
        events: VecDeque<u32>,
    }

    impl Machine for PingPong {
        type Transmit = u32;
        type Event = u32;
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_transmit(&mut self, _: Instant) -> Option<u32> {
            let t = self.transmits.pop_front()?;
            if t < 3 {
                self.events.push_back(t + 1);
            }
            Some(t)
        }
        fn poll_event(&mut self, _: Instant) -> Option<u32> {
            self.events.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    #[test]
    fn drains_until_both_pollers_are_quiet() {
        let mut m = PingPong::default();
        m.transmits.push_back(0);
        let (mut sent, mut heard) = (Vec::new(), Vec::new());
        let end = drain(
            &mut m,
            Instant::now(),
            |_, t| {
                sent.push(t);
                ControlFlow::Continue(())
            },
            |m, ev| {
                heard.push(ev);
                m.transmits.push_back(ev);
            },
        );
        assert_eq!(end, Drained::Idle);
        assert_eq!(sent, [0, 1, 2, 3]);
        assert_eq!(heard, [1, 2, 3]);
    }

    /// A machine whose last event, once handed out, leaves a transmit
    /// behind (as a deferred close does): the drain still takes it.
    #[derive(Default)]
    struct Deferred {
        pending: bool,
        transmits: VecDeque<u32>,
    }

    impl Machine for Deferred {
        type Transmit = u32;
        type Event = ();
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_transmit(&mut self, _: Instant) -> Option<u32> {
            self.transmits.pop_front()
        }
        fn poll_event(&mut self, _: Instant) -> Option<()> {
            if std::mem::take(&mut self.pending) {
                self.transmits.push_back(9);
            }
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    #[test]
    fn what_a_quiet_poll_event_queues_is_sent() {
        let mut m = Deferred {
            pending: true,
            ..Default::default()
        };
        let mut sent = Vec::new();
        let end = drain(
            &mut m,
            Instant::now(),
            |_, t| {
                sent.push(t);
                ControlFlow::Continue(())
            },
            |_, _| {},
        );
        assert_eq!((end, sent), (Drained::Idle, vec![9]));
    }

    #[test]
    fn a_full_sink_stops_the_drain() {
        let mut m = PingPong::default();
        m.transmits.extend([7, 8]);
        let mut sent = Vec::new();
        let end = drain(
            &mut m,
            Instant::now(),
            |_, t| {
                sent.push(t);
                ControlFlow::Break(())
            },
            |_, _| {},
        );
        assert_eq!(end, Drained::Blocked);
        assert_eq!(sent, [7]);
        assert_eq!(m.transmits, [8]);
    }
}
