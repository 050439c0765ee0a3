//! Connection state recovery, as the official `connectionStateRecovery`:
//! the packets kept for clients that come back, the sessions of sockets
//! whose connection dropped, and their restoration.
//!
//! # Theory of operation
//!
//! With recovery on, every socket has a private id, `pid`, sent next to its
//! `sid` in the CONNECT answer. Every event sent without an ack id (to one
//! socket or to many, but not `volatile`) gets one more, last, argument: an
//! *offset* naming that packet, and the encoded packet is *kept* with its
//! target (the socket's own room for a direct emit; the rooms and
//! exclusions of a broadcast). The official client remembers the last
//! offset it received.
//!
//! When a socket goes because its connection closed or failed, timed out,
//! was closed for a bad packet, or the server shut down, its *session*
//! (`sid`, `pid`, rooms, data) is kept for
//! [`max_disconnection_duration`](RecoveryConfig::max_disconnection_duration).
//! A client DISCONNECT or a disconnection by the server keeps nothing.
//!
//! A CONNECT whose auth payload holds a string `pid` and a string `offset`
//! *claims* the session if one with that pid is kept for that namespace,
//! it went at most `max_disconnection_duration` before the CONNECT came,
//! and the offset is a kept packet's. The socket then takes the old `sid`
//! and `pid`, and, when it connects, its old rooms and data; the kept
//! packets after the offset that were addressed to it (no rooms: every
//! socket; or one of its rooms, its own id included; none of its rooms
//! excluded) are written just before the CONNECT answer, oldest first, as
//! the official server does. Anything else is an ordinary CONNECT: new
//! ids, nothing replayed, no error.
//!
//! Memory is bounded by count and bytes, both for kept packets and for
//! sessions; past a bound the oldest go first. A recovery whose packets
//! fell out meanwhile is not one: the CONNECT answer then carries a new
//! `pid` (the client sees `recovered` false), and nothing is replayed. A
//! session also goes when its time is up (a timer of the server's heap).
//! Kept packets have no time limit of their own: they stay until the
//! bounds push them out.
//!
//! An offset is a few characters drawn at start-up followed by the packet's
//! sequence number in base64url, so that finding a kept packet is an index,
//! and a string the application sent as a last argument is not taken for
//! one.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use super::super::{DisconnectReason, SocketId, Value, timer::later};
use crate::{engineio::SharedPacket, entropy::Entropy};

/// Connection state recovery options (the official
/// `connectionStateRecovery`), with bounds on the memory it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryConfig {
    /// How long the session of a socket whose connection dropped is kept.
    /// Default 2 minutes, as the official server.
    pub max_disconnection_duration: Duration,
    /// Whether a recovered socket skips its namespace's admission
    /// ([`Admission::Decide`](super::super::Admission::Decide)). Default
    /// on, as the official server.
    pub skip_middlewares: bool,
    /// Most packets kept for recovery; past it the oldest go. Default
    /// 10,000.
    pub max_packets: usize,
    /// Most bytes of kept packets (encoded packets, attachments and
    /// targets); past it the oldest go. Default 16 MiB.
    pub max_packet_bytes: usize,
    /// Most sessions kept; past it the oldest go. Default 10,000.
    pub max_sessions: usize,
    /// Most bytes of kept sessions (ids, rooms and data); past it the
    /// oldest go. Default 16 MiB.
    pub max_session_bytes: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            max_packets: 10_000,
            max_packet_bytes: 16 << 20,
            max_sessions: 10_000,
            max_session_bytes: 16 << 20,
        }
    }
}

impl RecoveryConfig {
    /// Sets [`max_disconnection_duration`](Self::max_disconnection_duration).
    pub fn max_disconnection_duration(mut self, d: Duration) -> Self {
        self.max_disconnection_duration = d;
        self
    }
    /// Sets [`skip_middlewares`](Self::skip_middlewares).
    pub fn skip_middlewares(mut self, on: bool) -> Self {
        self.skip_middlewares = on;
        self
    }
    /// Sets [`max_packets`](Self::max_packets) and
    /// [`max_packet_bytes`](Self::max_packet_bytes).
    pub fn max_packets(mut self, count: usize, bytes: usize) -> Self {
        self.max_packets = count;
        self.max_packet_bytes = bytes;
        self
    }
    /// Sets [`max_sessions`](Self::max_sessions) and
    /// [`max_session_bytes`](Self::max_session_bytes).
    pub fn max_sessions(mut self, count: usize, bytes: usize) -> Self {
        self.max_sessions = count;
        self.max_session_bytes = bytes;
        self
    }
}

/// Whether a socket that went for this reason keeps its session (the
/// official server's list).
pub(super) fn recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportError
            | DisconnectReason::TransportClose
            | DisconnectReason::ForcedClose
            | DisconnectReason::PingTimeout
            | DisconnectReason::ServerShuttingDown
            | DisconnectReason::ForcedServerClose
    )
}

/// What every kept item costs beyond its bytes.
const OVERHEAD: usize = 64;

/// The characters of offsets (base64url).
const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// How many characters of an offset are the start-up prefix.
const EPOCH_LEN: usize = 4;

/// A packet kept for recovery, with its target.
#[derive(Debug)]
struct Kept {
    nsp: Arc<str>,
    rooms: Vec<String>,
    except: Vec<String>,
    packets: Vec<SharedPacket>,
    size: usize,
}

impl Kept {
    /// Whether a socket of `nsp` in `rooms` (its own id-named room
    /// included) was a recipient.
    fn reaches(&self, nsp: &str, rooms: &[String]) -> bool {
        *self.nsp == *nsp
            && (self.rooms.is_empty() || rooms.iter().any(|r| self.rooms.contains(r)))
            && !rooms.iter().any(|r| self.except.contains(r))
    }
}

/// The state of a socket whose connection dropped.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) pid: String,
    pub(super) sid: SocketId,
    pub(super) nsp: Arc<str>,
    pub(super) rooms: Vec<String>,
    pub(super) data: Value,
    at: Instant,
    size: usize,
}

impl Session {
    pub(super) fn new(
        pid: String,
        sid: SocketId,
        nsp: Arc<str>,
        rooms: Vec<String>,
        data: Value,
        at: Instant,
    ) -> Self {
        let size = OVERHEAD
            + pid.len()
            + nsp.len()
            + rooms.iter().map(|r| r.len() + 24).sum::<usize>()
            + data.size_hint();
        Session {
            pid,
            sid,
            nsp,
            rooms,
            data,
            at,
            size,
        }
    }
}

/// The packets and sessions kept for recovery.
#[derive(Debug)]
pub(super) struct Store {
    pub(super) config: RecoveryConfig,
    epoch: [u8; EPOCH_LEN],
    /// The sequence number of `packets[0]`.
    first: u64,
    packets: VecDeque<Kept>,
    packet_bytes: usize,
    sessions: BTreeMap<String, Session>,
    /// Pids in the order their sockets went, with that time: the front is
    /// the oldest (entries of sessions claimed since are skipped).
    order: VecDeque<(Instant, String)>,
    session_bytes: usize,
}

impl Store {
    pub(super) fn new(config: RecoveryConfig, entropy: &mut dyn Entropy) -> Self {
        let mut raw = [0u8; EPOCH_LEN];
        entropy.fill(&mut raw);
        Store {
            config,
            epoch: raw.map(|b| DIGITS[usize::from(b % 64)]),
            first: 0,
            packets: VecDeque::new(),
            packet_bytes: 0,
            sessions: BTreeMap::new(),
            order: VecDeque::new(),
            session_bytes: 0,
        }
    }

    /// The sequence number the next kept packet gets.
    fn next(&self) -> u64 {
        self.first.saturating_add(self.packets.len() as u64)
    }

    /// The offset of the next kept packet.
    pub(super) fn next_offset(&self) -> String {
        let mut out = String::with_capacity(EPOCH_LEN + 11);
        out.extend(self.epoch.iter().map(|b| char::from(*b)));
        let seq = self.next();
        let digits = (64 - seq.leading_zeros()).div_ceil(6).max(1);
        for i in (0..digits).rev() {
            out.push(char::from(DIGITS[((seq >> (6 * i)) & 63) as usize]));
        }
        out
    }

    /// The sequence number an offset of ours names.
    fn parse_offset(&self, offset: &str) -> Option<u64> {
        let rest = offset.as_bytes().strip_prefix(&self.epoch[..])?;
        if rest.is_empty() || rest.len() > 11 || (rest.len() > 1 && rest[0] == DIGITS[0]) {
            return None;
        }
        let mut seq: u64 = 0;
        for c in rest {
            let d = DIGITS.iter().position(|x| x == c)? as u64;
            seq = seq.checked_mul(64)?.checked_add(d)?;
        }
        Some(seq)
    }

    /// Keeps the packet that got [`next_offset`](Self::next_offset).
    pub(super) fn keep(
        &mut self,
        nsp: Arc<str>,
        rooms: Vec<String>,
        except: Vec<String>,
        packets: Vec<SharedPacket>,
    ) {
        let size = OVERHEAD
            + packets
                .iter()
                .map(|p| p.packet().data.len() + OVERHEAD)
                .sum::<usize>()
            + rooms
                .iter()
                .chain(&except)
                .map(|r| r.len() + 24)
                .sum::<usize>();
        self.packet_bytes = self.packet_bytes.saturating_add(size);
        self.packets.push_back(Kept {
            nsp,
            rooms,
            except,
            packets,
            size,
        });
        while self.packets.len() > self.config.max_packets
            || self.packet_bytes > self.config.max_packet_bytes
        {
            let Some(old) = self.packets.pop_front() else {
                break;
            };
            self.first = self.first.saturating_add(1);
            self.packet_bytes = self.packet_bytes.saturating_sub(old.size);
        }
    }

    /// Keeps a session; returns when its time is up.
    pub(super) fn persist(&mut self, session: Session) -> Instant {
        let at = session.at;
        self.session_bytes = self.session_bytes.saturating_add(session.size);
        self.order.push_back((at, session.pid.clone()));
        if let Some(old) = self.sessions.insert(session.pid.clone(), session) {
            self.session_bytes = self.session_bytes.saturating_sub(old.size);
        }
        while self.sessions.len() > self.config.max_sessions
            || self.session_bytes > self.config.max_session_bytes
        {
            let Some((at, pid)) = self.order.pop_front() else {
                break;
            };
            self.drop_session(at, &pid);
        }
        // Still in time at the very end of its duration: looked at just
        // after.
        let d = self.config.max_disconnection_duration;
        later(at, d.saturating_add(Duration::from_millis(1)))
    }

    /// Forgets the sessions whose time is up.
    pub(super) fn expire(&mut self, now: Instant) {
        let max = self.config.max_disconnection_duration;
        while let Some((at, _)) = self.order.front() {
            if at.checked_add(max).is_some_and(|end| end >= now) {
                break;
            }
            if let Some((at, pid)) = self.order.pop_front() {
                self.drop_session(at, &pid);
            }
        }
    }

    fn drop_session(&mut self, at: Instant, pid: &str) {
        if self.sessions.get(pid).is_some_and(|s| s.at == at) {
            if let Some(s) = self.sessions.remove(pid) {
                self.session_bytes = self.session_bytes.saturating_sub(s.size);
            }
        }
    }

    /// Takes the session a CONNECT to `nsp` at `now` asks for with `pid`
    /// and `offset`, if it is kept, in time, and the offset is a kept
    /// packet's; with the sequence number of that packet.
    pub(super) fn claim(
        &mut self,
        pid: &str,
        offset: &str,
        nsp: &str,
        now: Instant,
    ) -> Option<(Session, u64)> {
        let s = self.sessions.get(pid)?;
        let in_time =
            s.at.checked_add(self.config.max_disconnection_duration)
                .is_none_or(|end| end >= now);
        let after = self.parse_offset(offset)?;
        if *s.nsp != *nsp || !in_time || after < self.first || after >= self.next() {
            return None;
        }
        let s = self.sessions.remove(pid)?;
        self.session_bytes = self.session_bytes.saturating_sub(s.size);
        Some((s, after))
    }

    /// The kept packets after sequence number `after` that reached a socket
    /// of `nsp` in `rooms` (its own id-named room included), oldest first;
    /// `None` if some after it fell out.
    pub(super) fn missed(
        &self,
        nsp: &str,
        rooms: &[String],
        after: u64,
    ) -> Option<Vec<Vec<SharedPacket>>> {
        let start = after.checked_add(1)?.checked_sub(self.first)?;
        let start = usize::try_from(start).ok()?;
        Some(
            self.packets
                .iter()
                .skip(start)
                .filter(|k| k.reaches(nsp, rooms))
                .map(|k| k.packets.clone())
                .collect(),
        )
    }

    /// How many packets and sessions are kept (for tests).
    #[cfg(test)]
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.packets.len(), self.sessions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn offsets_name_sequence_numbers_and_nothing_else() {
        let mut s = Store::new(RecoveryConfig::default(), &mut SeededEntropy::new(1));
        let mut seen = std::collections::BTreeSet::new();
        for seq in [0u64, 1, 63, 64, 4095, 4096, u64::MAX - 1] {
            s.first = seq;
            let o = s.next_offset();
            assert_eq!(s.parse_offset(&o), Some(seq), "{o}");
            assert!(seen.insert(o));
        }
        let o = {
            s.first = 5;
            s.next_offset()
        };
        let epoch = &o[..EPOCH_LEN];
        for bad in [
            "".to_owned(),
            epoch.to_owned(),
            format!("{epoch}AF"),
            format!("{epoch}!"),
            format!("{epoch}{}", "_".repeat(12)),
            "hello".to_owned(),
        ] {
            assert_eq!(s.parse_offset(&bad), None, "{bad}");
        }
    }
}
