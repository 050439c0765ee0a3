//! Drivers over `std::net`: the only code in the crate that touches a socket
//! or reads the clock. [`Client`] and [`WebSocket`] are clients; [`Server`]
//! runs any [`ServerMachine`](crate::machine::ServerMachine) (a Socket.IO or
//! Engine.IO server) on std threads.
//!
//! Each driver owns a machine and a socket and runs the loop of the
//! machine's docs: flush transmits, hand out events, block on a read whose
//! timeout is the machine's next deadline.

mod client;
mod driver;
mod server;
mod wire;
mod ws;

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    time::{Duration, Instant},
};

#[cfg(feature = "tls")]
pub use client::default_tls_config;
pub use client::{Client, ClientError, ClientOptions};
pub use server::{Ended, Server, ServerHandle, ServerOptions};
pub use ws::{ClientStream, Error, WebSocket};

/// A byte stream the blocking drivers can run on.
pub trait Socket: Read + Write {
    /// Sets the timeout of the next reads (`None`: block).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Closes the stream after the peer has had a chance to read what was
    /// written: shut the write side, then drain the read side briefly so
    /// unread input does not turn the close into a reset.
    fn close(&mut self) -> io::Result<()>;
}

impl Socket for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        self.shutdown(Shutdown::Write)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut sink = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            TcpStream::set_read_timeout(self, Some(left))?;
            match self.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.shutdown(Shutdown::Both).or(Ok(()))
    }
}

/// The read timeout that wakes us for `deadline`, at least 1 ms.
pub(crate) fn timeout_until(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    })
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
