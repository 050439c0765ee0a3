//! An Engine.IO packet as one WebSocket message (engine.io-protocol,
//! "Transports", WebSocket): binary data travels as a binary message, as it
//! is; any other packet as a text message, its type digit first. Server and
//! client write and read their packets through these functions.

use super::{Data, DecodeError, Packet, PacketType};
use crate::ws::{self, DataKind, Message};

/// Sends `p` on `ws`. A binary payload is handed over as it is (a client
/// masks it in place when nothing else holds it); a server sends a large
/// text without copying it.
pub(super) fn send(ws: &mut ws::Connection, p: &Packet) -> Result<(), ws::UsageError> {
    match &p.data {
        Data::Binary(b) => ws.send(Message::Binary(b.clone())),
        Data::Text(t) => {
            ws.send_with_prefix(DataKind::Text, &[p.kind.as_char()], t.as_bytes().clone())
        }
    }
}

/// Sends a message packet whose text is borrowed: it is copied straight
/// into the frame.
pub(super) fn send_text(ws: &mut ws::Connection, text: &str) -> Result<(), ws::UsageError> {
    ws.send_slices(
        DataKind::Text,
        &[PacketType::Message.as_char()],
        text.as_bytes(),
    )
}

/// `p` as a server frame, encoded once for any number of connections.
pub(super) fn encode(p: &Packet) -> ws::EncodedFrame {
    match &p.data {
        Data::Binary(b) => ws::EncodedFrame::new(&Message::Binary(b.clone())),
        Data::Text(t) => {
            ws::EncodedFrame::with_prefix(DataKind::Text, &[p.kind.as_char()], t.as_bytes())
        }
    }
}

/// The packet a message carries.
pub(super) fn decode(m: Message) -> Result<Packet, DecodeError> {
    match m {
        Message::Binary(b) => Ok(Packet::decode_binary(b)),
        Message::Text(t) => Packet::decode_text(t),
    }
}
