//! Wake-ups that name their connection.
//!
//! Every stream is polled with its own [`ConnWaker`]: when the stream
//! becomes ready, the connection's id joins the loop's ready list and the
//! loop's task is woken, so the loop looks at that one connection instead
//! of polling them all.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Wake, Waker},
};

use wsio::engineio::ConnId;

/// The ready list, and the waker of the loop's task.
#[derive(Default)]
pub(crate) struct Ready {
    list: Mutex<Vec<ConnId>>,
    task: Mutex<Option<Waker>>,
}

impl Ready {
    /// Remembers the waker of the task that runs the loop.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        match &*task {
            Some(w) if w.will_wake(waker) => {}
            _ => *task = Some(waker.clone()),
        }
    }

    /// Wakes the loop's task.
    pub(crate) fn wake_task(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = &*task {
            w.wake_by_ref();
        }
    }

    /// The connections woken since the last call, oldest first.
    pub(crate) fn take(&self, into: &mut Vec<ConnId>) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *list, into);
    }

    fn push(&self, id: ConnId) {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        self.wake_task();
    }
}

/// The waker of one connection.
pub(crate) struct ConnWaker {
    id: ConnId,
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl ConnWaker {
    pub(crate) fn new(id: ConnId, ready: Arc<Ready>) -> Arc<ConnWaker> {
        Arc::new(ConnWaker {
            id,
            queued: AtomicBool::new(false),
            ready,
        })
    }

    /// Puts the connection on the ready list (the loop's own way of saying
    /// "look again").
    pub(crate) fn queue(self: &Arc<Self>) {
        self.wake_by_ref();
    }

    /// The connection is being looked at: a later wake-up queues it again.
    pub(crate) fn clear(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push(self.id);
        }
    }
}

/// A hasher for ids the machines hand out themselves (never chosen by a
/// peer): one multiplication instead of SipHash.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A map keyed by [`ConnId`].
pub(crate) type IdMap<V> = HashMap<ConnId, V, BuildHasherDefault<IdHasher>>;
