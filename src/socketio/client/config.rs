//! The client's options.

use std::time::Duration;

use super::super::Parser;
use crate::engineio;

#[cfg(doc)]
use super::ClientUsageError;

/// Client options; the defaults are the official client's.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The Engine.IO options; the path defaults to `/socket.io/`.
    pub engine: engineio::ClientConfig,
    /// Whether to reconnect after the connection is lost. Default on.
    pub reconnection: bool,
    /// How many reconnection attempts before giving up; `None` (the
    /// default) never gives up.
    pub reconnection_attempts: Option<u32>,
    /// The delay before the first attempt, doubled for each next one.
    /// Default 1000 ms.
    pub reconnection_delay: Duration,
    /// The longest delay. Default 5000 ms.
    pub reconnection_delay_max: Duration,
    /// How far (as a fraction, 0 to 1) each delay is moved at random up or
    /// down. Default 0.5; a value outside `(0, 1]` means none.
    pub randomization_factor: f64,
    /// How long the engine may take to open (the official `timeout`).
    /// Default 20 s.
    pub timeout: Duration,
    /// Whether emits made while a socket is not connected wait for its next
    /// connection (the official `sendBuffer`). Default on; off, they fail
    /// with [`ClientUsageError::NotConnected`].
    pub send_buffer: bool,
    /// Most emits waiting in one socket's send buffer; beyond, emits fail
    /// with [`ClientUsageError::BufferFull`]. Default 10,000.
    pub max_send_buffer: usize,
    /// Most events held for one socket while it waits for the server's
    /// `CONNECT` answer (a server with connection state recovery may send
    /// the events a socket missed before its answer); past it, events are
    /// dropped. Default 10,000, the wsio server's
    /// [`max_packets`](crate::socketio::RecoveryConfig::max_packets).
    pub max_receive_buffer: usize,
    /// Most attachments in one packet received (default parser). Default
    /// 10, as the official parser.
    pub max_attachments: usize,
    /// The Socket.IO parser, which the server must speak too (the
    /// official `parser` option). Default: the default parser.
    pub parser: Parser,
}

impl ClientConfig {
    /// The defaults, for a server reached with `host` as the `Host` header.
    pub fn new(host: impl Into<String>) -> Self {
        ClientConfig {
            engine: engineio::ClientConfig::new(host).path("/socket.io/"),
            reconnection: true,
            reconnection_attempts: None,
            reconnection_delay: Duration::from_millis(1000),
            reconnection_delay_max: Duration::from_millis(5000),
            randomization_factor: 0.5,
            timeout: Duration::from_secs(20),
            send_buffer: true,
            max_send_buffer: 10_000,
            max_receive_buffer: 10_000,
            max_attachments: 10,
            parser: Parser::Default,
        }
    }

    /// Sets [`engine`](Self::engine).
    pub fn engine(mut self, e: engineio::ClientConfig) -> Self {
        self.engine = e;
        self
    }
    /// Sets the engine's transport mode.
    pub fn mode(mut self, mode: engineio::TransportMode) -> Self {
        self.engine.mode = mode;
        self
    }
    /// Sets [`reconnection`](Self::reconnection).
    pub fn reconnection(mut self, on: bool) -> Self {
        self.reconnection = on;
        self
    }
    /// Sets [`reconnection_attempts`](Self::reconnection_attempts).
    pub fn reconnection_attempts(mut self, n: Option<u32>) -> Self {
        self.reconnection_attempts = n;
        self
    }
    /// Sets [`reconnection_delay`](Self::reconnection_delay).
    pub fn reconnection_delay(mut self, d: Duration) -> Self {
        self.reconnection_delay = d;
        self
    }
    /// Sets [`reconnection_delay_max`](Self::reconnection_delay_max).
    pub fn reconnection_delay_max(mut self, d: Duration) -> Self {
        self.reconnection_delay_max = d;
        self
    }
    /// Sets [`randomization_factor`](Self::randomization_factor).
    pub fn randomization_factor(mut self, f: f64) -> Self {
        self.randomization_factor = f;
        self
    }
    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Sets [`send_buffer`](Self::send_buffer).
    pub fn send_buffer(mut self, on: bool) -> Self {
        self.send_buffer = on;
        self
    }
    /// Sets [`max_send_buffer`](Self::max_send_buffer).
    pub fn max_send_buffer(mut self, n: usize) -> Self {
        self.max_send_buffer = n;
        self
    }
    /// Sets [`max_receive_buffer`](Self::max_receive_buffer).
    pub fn max_receive_buffer(mut self, n: usize) -> Self {
        self.max_receive_buffer = n;
        self
    }
    /// Sets [`parser`](Self::parser).
    pub fn parser(mut self, p: Parser) -> Self {
        self.parser = p;
        self
    }
    /// Sets [`max_attachments`](Self::max_attachments).
    pub fn max_attachments(mut self, n: usize) -> Self {
        self.max_attachments = n;
        self
    }
}
