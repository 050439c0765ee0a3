//! Deadlines, for the machines' own timers (connect and ack timeouts,
//! reconnection), beside those of the engine they own.

use std::{cmp::Reverse, collections::BinaryHeap, time::Duration, time::Instant};

/// Deadlines in one heap, earliest first. Entries are never removed early:
/// whoever pops one checks that what it names is still due at that time
/// (so rescheduling or cancelling costs nothing, and a stale entry is
/// skipped when it comes up).
#[derive(Debug)]
pub(crate) struct Deadlines<T>(BinaryHeap<Reverse<(Instant, T)>>);

impl<T: Ord> Default for Deadlines<T> {
    fn default() -> Self {
        Deadlines(BinaryHeap::new())
    }
}

impl<T: Ord> Deadlines<T> {
    /// Adds `what`, due at `at`.
    pub(crate) fn push(&mut self, at: Instant, what: T) {
        self.0.push(Reverse((at, what)));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest entry, if it is due by `now`, with its deadline.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        if self.next()? > now {
            return None;
        }
        self.0.pop().map(|Reverse(entry)| entry)
    }
}

/// `now + d`, or a year from now if that overflows (a huge configured
/// duration must not panic).
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}
