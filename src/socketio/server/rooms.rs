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
//!
//! `Namespace::recipients` is the one walk over a broadcast's recipients:
//! delivery and [`Broadcast::sockets`](super::Broadcast::sockets) both go
//! through it, so a broadcast reaches exactly the sockets it names.

use std::collections::BTreeMap;

use super::{super::SocketId, Namespace, Server, UsageError};
use crate::engineio::Sid;

impl Server {
    /// Adds a socket to a room.
    pub fn join(&mut self, socket: SocketId, room: &str) -> Result<(), UsageError> {
        let (s, ns) = self.connected_mut(socket)?;
        if s.rooms.insert(room.to_owned()) {
            if let Some(ns) = ns {
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
        let (s, ns) = self.connected_mut(socket)?;
        if s.rooms.remove(room) {
            if let Some(ns) = ns {
                ns.remove_from_room(room, socket);
            }
        }
        Ok(())
    }

    /// Whether any connected socket of `nsp` is in `room` (a socket's id
    /// names its own room): a cluster adapter skips another node's
    /// broadcast to a room nobody here is in without decoding it.
    pub fn has_room(&self, nsp: &str, room: &str) -> bool {
        self.namespaces
            .get(nsp)
            .is_some_and(|ns| ns.members(room).next().is_some())
    }
}

impl Namespace {
    /// Removes a socket from a room; the room goes with its last member.
    pub(super) fn remove_from_room(&mut self, room: &str, id: SocketId) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// The members of `room`: a room's, or the one socket the name is the
    /// id of.
    fn members<'a>(&'a self, room: &str) -> impl Iterator<Item = (&'a SocketId, &'a Sid)> {
        let named = self.rooms.get(room);
        let own = match named {
            Some(_) => None,
            None => SocketId::parse(room).and_then(|id| self.sockets.get_key_value(&id)),
        };
        named.into_iter().flatten().chain(own)
    }

    /// Calls `f` for each socket a broadcast reaches, once each, in socket
    /// id order: the members of any of `rooms` (none: every socket of the
    /// namespace), less the members of any of `except`, less `exclude`.
    pub(super) fn recipients(
        &self,
        rooms: &[String],
        except: &[String],
        exclude: Option<SocketId>,
        mut f: impl FnMut(SocketId, Sid),
    ) {
        let excluded: Vec<&BTreeMap<SocketId, Sid>> =
            except.iter().filter_map(|r| self.rooms.get(r)).collect();
        let except_ids: Vec<SocketId> = except.iter().filter_map(|r| SocketId::parse(r)).collect();
        let add = |(id, sid): (&SocketId, &Sid)| {
            if Some(*id) != exclude
                && !excluded.iter().any(|r| r.contains_key(id))
                && !except_ids.contains(id)
            {
                f(*id, *sid);
            }
        };
        match rooms {
            [] => self.sockets.iter().for_each(add),
            [room] => self.members(room).for_each(add),
            many => {
                // Sockets in several of the rooms are reached once.
                let union: BTreeMap<&SocketId, &Sid> =
                    many.iter().flat_map(|r| self.members(r)).collect();
                union.into_iter().for_each(add);
            }
        }
    }
}
