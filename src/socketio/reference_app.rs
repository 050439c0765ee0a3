//! The reference application of CONFORMANCE.md, which the server's and the
//! client's unit tests both run on the wsio server: `auth` emitted on
//! connection with the client's auth payload; `message` echoed as
//! `message-back` and `binary` as `binary-back`; `message-with-ack` acked
//! with its arguments; `join` joins the room it names and acks `true`;
//! `server-ack` asks the client (`ask`, with the same arguments) and acks
//! with the client's answer; `disconnect-me` ends the connection.

use std::{collections::HashMap, time::Instant};

use super::{Event, Server, SocketId, Value};

/// The application's state: the server's `ask` emits waiting for the
/// client's answer.
#[derive(Debug, Default)]
pub(crate) struct ReferenceApp {
    /// Which client ack each `ask` answers.
    asks: HashMap<(SocketId, u64), u64>,
}

impl ReferenceApp {
    /// Acts on one event of the server.
    pub(crate) fn handle(&mut self, io: &mut Server, now: Instant, e: &Event) {
        match e {
            Event::Connection { socket, auth, .. } => {
                io.emit(*socket, "auth", vec![auth.clone()]).unwrap()
            }
            Event::Event {
                socket,
                name,
                args,
                ack,
            } => match (name.as_str(), ack) {
                ("message", _) => io.emit(*socket, "message-back", args.clone()).unwrap(),
                ("binary", _) => io.emit(*socket, "binary-back", args.clone()).unwrap(),
                ("message-with-ack", Some(id)) => io.ack(*socket, *id, args.clone()).unwrap(),
                ("join", Some(id)) => {
                    let room = args.first().and_then(Value::as_str).unwrap_or("");
                    io.join(*socket, room).unwrap();
                    io.ack(*socket, *id, vec![Value::from(true)]).unwrap();
                }
                ("server-ack", Some(id)) => {
                    let ask = io
                        .emit_with_ack(now, *socket, "ask", args.clone(), None)
                        .unwrap();
                    self.asks.insert((*socket, ask), *id);
                }
                ("disconnect-me", _) => io.disconnect(now, *socket, true).unwrap(),
                _ => {}
            },
            Event::Ack { socket, id, args } => {
                if let Some(orig) = self.asks.remove(&(*socket, *id)) {
                    io.ack(*socket, orig, args.clone()).unwrap();
                }
            }
            _ => {}
        }
    }
}
