//! The simulated TCP connections: what each side writes is cut into
//! pieces, delayed (latency, jitter, a slow reader), lost to partitions and
//! half-open paths, or reset, and delivered in order.

use std::{
    collections::VecDeque,
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{Due, Network};
use crate::{
    engineio::{ClientTransmit, ConnId, Transmit},
    machine::{ConnMachine, ServerMachine},
};

#[derive(Debug, Clone)]
pub(super) enum Segment {
    Data(Bytes),
    Fin,
    Reset,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) client: usize,
    /// The client's name for it.
    pub(super) client_conn: ConnId,
    /// The server's handle, once the first segment arrived (`None`: not
    /// yet, or the server restarted and forgot it).
    pub(super) server: Option<ConnId>,
    /// The server generation this connection belongs to.
    pub(super) generation: u64,
    pub(super) to_server: VecDeque<(Instant, Segment)>,
    pub(super) to_client: VecDeque<(Instant, Segment)>,
    /// No more segments are accepted from the client side.
    pub(super) client_done: bool,
    /// No more segments are accepted from the server side.
    pub(super) server_done: bool,
    /// The path died silently (half-open): whatever either side sends
    /// vanishes, and neither hears an end.
    pub(super) black_hole: bool,
}

impl<S: ServerMachine<Transmit = Transmit>, C: ConnMachine<Transmit = ClientTransmit>>
    Network<S, C>
{
    pub(super) fn partitioned(&self, client: usize) -> bool {
        self.partitions
            .get(&client)
            .is_some_and(|&heal| self.now < heal)
    }

    /// When a segment sent now arrives.
    pub(super) fn arrival(&mut self, last: Option<Instant>) -> Instant {
        let jitter = self.rng.duration(self.config.jitter);
        let t = self.now + self.config.latency + jitter;
        last.map_or(t, |l| t.max(l))
    }

    pub(super) fn send_to_server(&mut self, id: u64, seg: Segment) {
        if self.conns.get(&id).is_some_and(|c| c.black_hole) {
            // The far end forgot this connection: what the client sends now
            // is answered with a reset (as a NAT that lost the mapping, or
            // a rebooted peer, would), so it learns soon.
            if let Some(c) = self.conns.get_mut(&id) {
                c.black_hole = false;
                c.server = None;
                c.server_done = true;
                c.to_server.clear();
            }
            self.send_to_client(id, Segment::Reset);
            return;
        }
        let Some(last) = self
            .conns
            .get(&id)
            .map(|c| c.to_server.back().map(|(t, _)| *t))
        else {
            return;
        };
        let pieces = self.split(seg);
        let mut last = last;
        for p in pieces {
            let at = self.arrival(last);
            last = Some(at);
            if let Some(c) = self.conns.get_mut(&id) {
                c.to_server.push_back((at, p));
            }
            self.push(at, Due::ToServer(id));
        }
    }

    pub(super) fn send_to_client(&mut self, id: u64, seg: Segment) {
        let Some((last, client)) = self
            .conns
            .get(&id)
            .filter(|c| !c.black_hole)
            .map(|c| (c.to_client.back().map(|(t, _)| *t), c.client))
        else {
            return;
        };
        let rate = self.slow.get(&client).copied();
        let pieces = self.split(seg);
        let mut last = last;
        for p in pieces {
            let mut at = self.arrival(last);
            if let (Some(rate), Segment::Data(b)) = (rate, &p) {
                // A slow reader takes each piece only once the previous one
                // has drained at its rate.
                let drain =
                    Duration::from_nanos((b.len() as u64).saturating_mul(1_000_000_000) / rate);
                at = at.max(last.unwrap_or(at) + drain);
            }
            last = Some(at);
            if let Some(c) = self.conns.get_mut(&id) {
                c.to_client.push_back((at, p));
            }
            self.push(at, Due::ToClient(id));
        }
    }

    /// Cuts a write into the pieces the reader will see.
    pub(super) fn split(&mut self, seg: Segment) -> Vec<Segment> {
        match seg {
            Segment::Data(mut b) => {
                let mut out = Vec::new();
                while !b.is_empty() {
                    let n =
                        (1 + self.rng.below(self.config.max_chunk as u64) as usize).min(b.len());
                    out.push(Segment::Data(b.split_to(n)));
                }
                out
            }
            other => vec![other],
        }
    }

    pub(super) fn deliver_to_server(&mut self, id: u64) {
        let now = self.now;
        loop {
            let Some(conn) = self.conns.get(&id) else {
                return;
            };
            if self.partitioned(conn.client) {
                return;
            }
            let Some((at, _)) = conn.to_server.front() else {
                return;
            };
            if *at > now {
                return;
            }
            let reset = self.rng.chance(self.config.reset_rate);
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let Some((_, seg)) = conn.to_server.pop_front() else {
                return;
            };
            if conn.generation != self.generation {
                // The server this connection knew is gone: refuse.
                self.reset_conn(id, "server restarted");
                return;
            }
            let server_conn = match conn.server {
                Some(s) => s,
                None => {
                    let peer = SocketAddr::from((
                        Ipv4Addr::new(10, 0, (conn.client >> 8) as u8, conn.client as u8),
                        40000,
                    ));
                    let s = self.server.accept(now, Some(peer));
                    conn.server = Some(s);
                    self.by_server.insert(s, id);
                    s
                }
            };
            self.server_dirty = true;
            if reset {
                self.log(|| format!("reset conn {id} (random)"));
                self.server.handle_eof(now, server_conn);
                self.reset_conn(id, "random reset");
                return;
            }
            match seg {
                Segment::Data(b) => {
                    let client = self.conns.get(&id).map_or(0, |c| c.client);
                    self.last_delivery.entry(client).or_default().0 = Some(now);
                    self.log(|| format!("c{client}→s conn {id} {} B", b.len()));
                    self.server.handle_input(now, server_conn, &b);
                }
                Segment::Fin | Segment::Reset => {
                    self.server.handle_eof(now, server_conn);
                    self.by_server.remove(&server_conn);
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.server = None;
                        c.server_done = true;
                    }
                }
            }
            // The last segment in flight may have been the connection's.
            self.maybe_forget(id);
        }
    }

    pub(super) fn deliver_to_client(&mut self, id: u64) {
        let now = self.now;
        loop {
            let Some(conn) = self.conns.get(&id) else {
                return;
            };
            let client = conn.client;
            if self.partitioned(client) {
                return;
            }
            let Some((at, _)) = conn.to_client.front() else {
                return;
            };
            if *at > now {
                return;
            }
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let Some((_, seg)) = conn.to_client.pop_front() else {
                return;
            };
            self.mark_client(client);
            match seg {
                Segment::Data(b) => {
                    self.last_delivery.entry(client).or_default().1 = Some(now);
                    self.log(|| format!("s→c{client} conn {id} {} B", b.len()));
                    self.client_data(id, b);
                }
                Segment::Fin => self.client_end(id, false),
                Segment::Reset => self.client_end(id, true),
            }
            // The last segment in flight may have been the connection's.
            self.maybe_forget(id);
        }
    }

    pub(super) fn client_data(&mut self, id: u64, b: Bytes) {
        let now = self.now;
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let (client, cc) = (conn.client, conn.client_conn);
        self.clients[client].handle_input(now, cc, &b);
    }

    /// The server side ended (FIN) or the connection was reset.
    pub(super) fn client_end(&mut self, id: u64, reset: bool) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let (client, cc) = (conn.client, conn.client_conn);
        conn.server_done = true;
        if reset {
            // Nothing more goes either way.
            conn.client_done = true;
            conn.to_server.clear();
            self.by_client.remove(&(client, cc));
            self.clients[client].handle_error(now, cc, "connection reset");
        } else {
            self.clients[client].handle_eof(now, cc);
        }
        self.maybe_forget(id);
    }

    pub(super) fn reset_conn(&mut self, id: u64, why: &'static str) {
        self.log(|| format!("conn {id} reset: {why}"));
        if let Some(c) = self.conns.get_mut(&id) {
            c.to_server.clear();
            c.server_done = true;
            if let Some(s) = c.server.take() {
                self.by_server.remove(&s);
            }
        }
        self.send_to_client(id, Segment::Reset);
    }

    pub(super) fn close_from_client(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            let key = (c.client, c.client_conn);
            if !c.client_done {
                c.client_done = true;
                self.by_client.remove(&key);
                self.send_to_server(id, Segment::Fin);
            }
        }
        self.maybe_forget(id);
    }

    pub(super) fn maybe_forget(&mut self, id: u64) {
        if let Some(c) = self.conns.get(&id) {
            if c.client_done && c.server_done && c.to_server.is_empty() && c.to_client.is_empty() {
                self.conns.remove(&id);
            }
        }
    }

    pub(super) fn open_conn(&mut self, client: usize, client_conn: ConnId) -> u64 {
        self.next_conn += 1;
        let id = self.next_conn;
        self.by_client.insert((client, client_conn), id);
        self.conns.insert(
            id,
            Conn {
                client,
                client_conn,
                server: None,
                generation: self.generation,
                to_server: VecDeque::new(),
                to_client: VecDeque::new(),
                client_done: false,
                server_done: false,
                black_hole: false,
            },
        );
        id
    }
}
