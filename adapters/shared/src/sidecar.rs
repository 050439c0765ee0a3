//! A sidecar: a second machine the loop keeps beside the server machine,
//! with I/O of its own (a cluster adapter and its Redis connections).
//!
//! The loop knows nothing of what a sidecar does. It calls
//! [`exchange`](Sidecar::exchange) after every drain of the machine (so
//! what the machine said for the sidecar leaves at once, and what the
//! sidecar has for the machine goes in, then is drained in turn), and
//! [`poll`](Sidecar::poll) once per round with the loop's context (the
//! sidecar registers its waker on its own inputs, and runs its timers).
//! Neither may block: the sidecar hands its I/O to its own tasks.

use std::{task::Context, time::Instant};

/// A machine beside the server machine `M`, moved by the loop.
pub trait Sidecar<M>: Send + 'static {
    /// Moves messages between the machine and the sidecar. Returns whether
    /// the machine was given input (the loop drains it and calls this
    /// again).
    fn exchange(&mut self, machine: &mut M, now: Instant) -> bool;
    /// Takes what the sidecar's own I/O brought (registering `cx`'s waker
    /// when there is nothing) and runs its due timers. Returns whether it
    /// did anything; the loop then drains the machine, which calls
    /// [`exchange`](Self::exchange).
    fn poll(&mut self, cx: &mut Context<'_>, machine: &mut M, now: Instant) -> bool;
    /// When [`poll`](Self::poll) must run again even without a wake-up.
    fn poll_timeout(&self) -> Option<Instant>;
}
