//! The room index: the sockets of each namespace, and the rooms each is in.
//!
//! # Theory of operation
//!
//! A namespace keeps its connected sockets and, per room, the room's
//! members, as ordered maps from socket id to Engine.IO session: a
//! broadcast walks them in a fixed order (the same seed gives the same
//! transcript) and reaches each session without another lookup. Each
//! socket also keeps the names of its rooms, so that leaving, one room or
//! all of them, costs no search. A room goes with its last member. Every
//! socket is also in the room named by its own id, which is never stored: a
//! room name that parses as the id of a socket of the namespace names that
//! socket.

use super::{super::SocketId, Namespace, Server, UsageError};

impl Server {
    /// Adds a socket to a room.
    pub fn join(&mut self, socket: SocketId, room: &str) -> Result<(), UsageError> {
        let s = self
            .sockets
            .get_mut(&socket)
            .filter(|s| s.connected)
            .ok_or(UsageError::UnknownSocket(socket))?;
        if s.rooms.insert(room.to_owned()) {
            if let Some(ns) = self.namespaces.get_mut(&*s.nsp) {
                ns.rooms
                    .entry(room.to_owned())
                    .or_default()
                    .insert(socket, s.sid);
            }
        }
        Ok(())
    }

    /// Removes a socket from a room.
    pub fn leave(&mut self, socket: SocketId, room: &str) -> Result<(), UsageError> {
        let s = self
            .sockets
            .get_mut(&socket)
            .filter(|s| s.connected)
            .ok_or(UsageError::UnknownSocket(socket))?;
        if s.rooms.remove(room) {
            if let Some(ns) = self.namespaces.get_mut(&*s.nsp) {
                remove_from_room(ns, room, socket);
            }
        }
        Ok(())
    }
}

pub(super) fn remove_from_room(ns: &mut Namespace, room: &str, id: SocketId) {
    if let Some(members) = ns.rooms.get_mut(room) {
        members.remove(&id);
        if members.is_empty() {
            ns.rooms.remove(room);
        }
    }
}
