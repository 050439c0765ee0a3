//! The work the client asks of its driver (open a connection, write on it,
//! close it), and the HTTP requests of the polling transport: their target
//! (path, the application's query, `EIO`, `transport`, the cache buster,
//! the sid), headers and bytes.

use bytes::{Bytes, BytesMut};

use super::Client;
use crate::{
    engineio::{ConnId, TransportKind},
    entropy::Entropy,
    http::{self, Method, RequestHead},
};

/// Work for the driver: the client speaks bytes on connections it asks the
/// driver to open (TCP, or TLS around it), and hears back through
/// [`Client::handle_input`], [`Client::handle_eof`] and
/// [`Client::handle_error`] with the same [`ConnId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTransmit {
    /// Open a connection to the server. Writes for it may follow at once:
    /// keep them until it is up. If it cannot be opened, say so with
    /// [`Client::handle_error`].
    Connect {
        /// The connection's name.
        conn: ConnId,
    },
    /// Write these bytes on the connection.
    Data {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// Close the connection, after writing everything before this.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

impl ClientTransmit {
    /// The connection concerned.
    pub fn conn(&self) -> ConnId {
        match self {
            ClientTransmit::Connect { conn }
            | ClientTransmit::Data { conn, .. }
            | ClientTransmit::Close { conn } => *conn,
        }
    }
}

impl crate::machine::Holdable for ClientTransmit {
    fn held_conn(&self) -> Option<ConnId> {
        match self {
            // A connection being opened cannot be full.
            ClientTransmit::Connect { .. } => None,
            ClientTransmit::Data { conn, .. } | ClientTransmit::Close { conn } => Some(*conn),
        }
    }
    fn held_len(&self) -> usize {
        match self {
            ClientTransmit::Data { data, .. } => data.len(),
            ClientTransmit::Connect { .. } | ClientTransmit::Close { .. } => 0,
        }
    }
    fn data(conn: ConnId, data: Bytes) -> Self {
        ClientTransmit::Data { conn, data }
    }
    fn closes(&self) -> Option<ConnId> {
        match self {
            ClientTransmit::Close { conn } => Some(*conn),
            _ => None,
        }
    }
}

impl Client {
    pub(super) fn new_conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// `{path}?{app query}&EIO=4&transport=..[&t=..][&sid=..]`.
    pub(super) fn target(&mut self, kind: TransportKind) -> String {
        let mut t = String::with_capacity(self.config.path.len() + 64);
        t.push_str(&self.config.path);
        t.push('?');
        for (k, v) in &self.config.query {
            t.push_str(&http::percent_encode(k));
            t.push('=');
            t.push_str(&http::percent_encode(v));
            t.push('&');
        }
        t.push_str("EIO=4&transport=");
        t.push_str(kind.as_str());
        if kind == TransportKind::Polling && self.config.timestamp_requests {
            t.push_str("&t=");
            t.push_str(&self.random_string());
        }
        if let Some(sid) = &self.sid {
            t.push_str("&sid=");
            t.push_str(&http::percent_encode(sid));
        }
        t
    }

    /// Eight characters of `[0-9a-z]`, like the official cache buster.
    fn random_string(&mut self) -> String {
        let mut raw = [0u8; 8];
        self.entropy.fill(&mut raw);
        raw.iter()
            .map(|b| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(*b % 36) as usize]))
            .collect()
    }

    /// A polling request as HTTP/1.1 bytes: head and body.
    pub(super) fn request(&mut self, method: Method, body: &[u8]) -> Bytes {
        let target = self.target(TransportKind::Polling);
        let mut head = RequestHead::new(method.clone(), target)
            .with_header("Host", &self.config.host)
            .with_header("Accept", "*/*");
        if method == Method::Post {
            head.headers
                .push("Content-Type", "text/plain;charset=UTF-8");
            head.headers.push("Content-Length", body.len().to_string());
        }
        if self.config.http_compression && self.config.headers.get("accept-encoding").is_none() {
            head.headers.push("Accept-Encoding", "gzip, deflate");
        }
        for (n, v) in self.config.headers.iter() {
            head.headers.push(n, v);
        }
        let mut out = BytesMut::with_capacity(head.target.len() + 128 + body.len());
        head.encode(&mut out);
        out.extend_from_slice(body);
        out.freeze()
    }
}
