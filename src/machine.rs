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
//! A transmit the driver cannot write at once stays the driver's until it is
//! written; meanwhile the driver takes nothing more for that connection and
//! reads nothing from it. A single-stream machine (a `ws::Connection`) simply
//! is not polled until the socket is writable again ([`drain`] stops when the
//! sink returns [`ControlFlow::Break`]). A machine of many connections keeps
//! each connection's output queued until the driver takes it; the queue
//! lives in the machine, where its limit (`max_send_queue`, `max_buffer`) is
//! enforced: past it the connection is closed, and the application hears
//! why.

use std::{net::SocketAddr, ops::ControlFlow, time::Instant};

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
}

/// A server: a [`ConnMachine`] whose connections the driver accepts.
pub trait ServerMachine: ConnMachine {
    /// A new connection from `peer`; its bytes go to
    /// [`handle_input`](ConnMachine::handle_input) with the returned id.
    fn accept(&mut self, now: Instant, peer: Option<SocketAddr>) -> ConnId;
}

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
