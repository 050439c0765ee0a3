//! What Redis delivers: node counts, and other nodes' messages through
//! the filters of the module docs.

use std::time::Instant;

use bytes::Bytes;

use super::{
    Event, RedisAdapter,
    wire::{self, Reject},
};
use crate::{
    cluster::Rooms,
    socketio::{ClusterAnswer, ClusterMessage, Value},
};

impl RedisAdapter {
    /// The answer to [`RedisCommand::NumSub`](super::RedisCommand::NumSub): how many connections
    /// subscribe the request channel, this node's included. An answer to a
    /// question no longer asked is ignored; a failed one needs no call
    /// (the request times out).
    pub fn handle_numsub(&mut self, now: Instant, token: u64, count: usize) {
        self.clock(now);
        let Some(c) = self.counts.remove(&token) else {
            return;
        };
        let Some(request) = c.request else {
            self.events
                .push_back(Event::ServerCount { nsp: c.nsp, count });
            return;
        };
        let others = count.saturating_sub(1);
        if others > 0 {
            if let (Some(payload), Some(ns)) = (c.held, self.namespaces.get(&c.nsp)) {
                let channel = ns.request.clone();
                self.publish(channel, payload);
            }
        }
        self.to_server.push_back(ClusterMessage::Response {
            nsp: c.nsp,
            request,
            answer: ClusterAnswer::Nodes(others),
        });
    }

    /// A message Redis delivered on a subscription (`channel` is the
    /// message's own channel, not the pattern). `rooms` tells whether a
    /// room has local members (the server itself, usually).
    pub fn handle_message<R: Rooms + ?Sized>(
        &mut self,
        now: Instant,
        channel: &[u8],
        payload: Bytes,
        rooms: &R,
    ) {
        self.clock(now);
        self.stats.received = self.stats.received.saturating_add(1);
        let verdict = match std::str::from_utf8(channel) {
            Ok(channel) => self.on_message(channel, &payload, rooms),
            Err(_) => Verdict::Ignored,
        };
        let counter = match verdict {
            Verdict::Delivered => &mut self.stats.delivered,
            Verdict::Ignored => &mut self.stats.ignored,
            Verdict::Rejected(Reject::Malformed) => &mut self.stats.malformed,
            Verdict::Rejected(Reject::Unsupported) => &mut self.stats.unsupported,
        };
        *counter = counter.saturating_add(1);
    }

    fn on_message<R: Rooms + ?Sized>(
        &mut self,
        channel: &str,
        payload: &Bytes,
        rooms: &R,
    ) -> Verdict {
        let key = self.config.key.as_str();
        let rest = |kind: &str| channel.strip_prefix(key).and_then(|c| c.strip_prefix(kind));
        if let Some(rest) = rest("-request#") {
            match rest.strip_suffix('#') {
                Some(nsp) if self.namespaces.contains_key(nsp) => {
                    let nsp = nsp.to_owned();
                    self.on_request(&nsp, payload)
                }
                _ => Verdict::Ignored,
            }
        } else if let Some(rest) = rest("-response#") {
            let rest = rest.to_owned();
            self.on_response(&rest, payload)
        } else if let Some(rest) = rest("#") {
            let rest = rest.to_owned();
            self.on_broadcast(&rest, payload, rooms)
        } else {
            Verdict::Ignored
        }
    }

    /// The namespaces a channel's rest (after `socket.io#` or
    /// `socket.io-response#`) may be for, with what follows each: a
    /// namespace may hold `#` itself.
    fn splits<'a>(&self, rest: &'a str) -> Vec<(&'a str, &'a str)> {
        rest.match_indices('#')
            .filter_map(|(i, _)| {
                let nsp = rest.get(..i)?;
                let tail = rest.get(i.saturating_add(1)..)?;
                self.namespaces.contains_key(nsp).then_some((nsp, tail))
            })
            .collect()
    }

    fn on_broadcast<R: Rooms + ?Sized>(
        &mut self,
        rest: &str,
        payload: &Bytes,
        rooms: &R,
    ) -> Verdict {
        // `channel.slice(prefix.length, -1)`: the room, less the closing `#`.
        let candidates: Vec<&str> = self
            .splits(rest)
            .into_iter()
            .filter(|(nsp, tail)| {
                let room = tail
                    .char_indices()
                    .last()
                    .and_then(|(i, _)| tail.get(..i))
                    .unwrap_or("");
                room.is_empty() || rooms.has_room(nsp, room)
            })
            .map(|(nsp, _)| nsp)
            .collect();
        if candidates.is_empty() {
            return Verdict::Ignored;
        }
        let (uid, msg) = match wire::decode_broadcast(payload) {
            Ok(d) => d,
            Err(e) => return Verdict::Rejected(e),
        };
        let ClusterMessage::Broadcast { nsp, .. } = &msg else {
            return Verdict::Ignored;
        };
        match self.namespaces.get(nsp.as_str()) {
            Some(ns) if candidates.contains(&nsp.as_str()) && !is_uid(&uid, &ns.uid) => {
                self.to_server.push_back(msg);
                Verdict::Delivered
            }
            _ => Verdict::Ignored,
        }
    }

    fn on_request(&mut self, nsp: &str, payload: &Bytes) -> Verdict {
        let (uid, msg) = match wire::decode_request(nsp, payload, self.config.requests_timeout) {
            Ok(d) => d,
            Err(e) => return Verdict::Rejected(e),
        };
        let own_uid = self
            .namespaces
            .get(nsp)
            .is_some_and(|ns| is_uid(&uid, &ns.uid));
        // A request of this node's, under any uid.
        let own_request = match &msg {
            ClusterMessage::FetchSockets { request, .. }
            | ClusterMessage::Broadcast {
                ack: Some((request, _)),
                ..
            } => self.open.contains_key(request),
            _ => false,
        };
        if own_uid || own_request {
            return Verdict::Ignored;
        }
        self.to_server.push_back(msg);
        Verdict::Delivered
    }

    fn on_response(&mut self, rest: &str, payload: &Bytes) -> Verdict {
        let nsps: Vec<String> = self
            .splits(rest)
            .into_iter()
            .map(|(nsp, _)| nsp.to_owned())
            .collect();
        if nsps.is_empty() {
            return Verdict::Ignored;
        }
        let (request, answer) = match wire::Answer::decode(payload) {
            Ok(d) => d,
            Err(e) => return Verdict::Rejected(e),
        };
        let Some((request, open)) = request
            .as_ref()
            .and_then(|r| self.open.get(r).map(|o| (r, o)))
            .filter(|(_, o)| nsps.contains(&o.nsp))
        else {
            return Verdict::Ignored;
        };
        let nsp = open.nsp.clone();
        match answer.read(open.awaits) {
            Ok(Some(answer)) => {
                self.to_server.push_back(ClusterMessage::Response {
                    nsp,
                    request: request.clone(),
                    answer,
                });
                Verdict::Delivered
            }
            Ok(None) => Verdict::Ignored,
            Err(e) => Verdict::Rejected(e),
        }
    }
}

/// What became of a delivered message.
enum Verdict {
    Delivered,
    Ignored,
    Rejected(Reject),
}

/// Whether a message's uid is this node's (`===` on strings).
fn is_uid(uid: &Value, ours: &str) -> bool {
    uid.as_str() == Some(ours)
}
