//! Acknowledgements as both machines keep them: the emits of one socket
//! that wait for an answer.
//!
//! # Theory of operation
//!
//! An emit that asks for an answer is *pending* from the moment it is
//! registered, with its deadline if it has one, until exactly one thing
//! ends it: its answer comes, its deadline passes, or the machine gives it
//! up (the socket went, or the emit never left). Each machine keeps the
//! deadlines in its timer heap ([`Deadlines`](super::timer::Deadlines)),
//! which is lazy: ending an ack leaves its entry there, and [`expire`]
//! turns down an entry whose ack is no longer pending with that deadline.
//!
//! [`expire`]: Pending::expire

use std::{collections::BTreeMap, time::Instant};

/// The emits of one socket that wait for an answer, by ack id, with their
/// deadlines.
#[derive(Debug, Default)]
pub(crate) struct Pending(BTreeMap<u64, Option<Instant>>);

impl Pending {
    /// Registers emit `id`, answered by `deadline` if there is one.
    pub(crate) fn insert(&mut self, id: u64, deadline: Option<Instant>) {
        self.0.insert(id, deadline);
    }

    /// Ends `id` (its answer came, or it is given up): whether it was
    /// pending.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        self.0.remove(&id).is_some()
    }

    /// The deadline `at` came up for `id`: whether that ended it (it was
    /// pending with that very deadline).
    pub(crate) fn expire(&mut self, id: u64, at: Instant) -> bool {
        let due = self.0.get(&id) == Some(&Some(at));
        if due {
            self.0.remove(&id);
        }
        due
    }

    /// The pending ids, in order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.keys().copied()
    }
}
