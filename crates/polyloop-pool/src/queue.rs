//! A shard's queue: bundles of jobs on an async channel, with a count of the tasks inside.
//!
//! Jobs travel in bundles (a map submits everything its window allows as one), so the channel's
//! cost (a lock and a wake-up) is paid per bundle, not per task. A driver takes what it has credit
//! for and puts the rest back for the other workers.

use std::sync::atomic::{AtomicUsize, Ordering};

use std::collections::VecDeque;

use crate::job::Job;

/// Jobs that travel together; a deque, so a driver takes from the front and puts the rest back
/// without moving it.
pub(crate) type Bundle = VecDeque<Job>;

/// The tasks in a bundle: a job may be many.
pub(crate) fn tasks(bundle: &Bundle) -> usize {
    bundle.iter().map(Job::len).sum()
}

#[derive(Debug)]
pub(crate) struct Queue {
    tx: async_channel::Sender<Bundle>,
    rx: async_channel::Receiver<Bundle>,
    /// Tasks (not jobs or bundles) in the channel.
    queued: AtomicUsize,
}

impl Queue {
    pub(crate) fn new() -> Self {
        let (tx, rx) = async_channel::unbounded();
        Queue { tx, rx, queued: AtomicUsize::new(0) }
    }

    /// Queues a bundle; hands it back if the queue is closed.
    pub(crate) fn push(&self, bundle: Bundle) -> Result<(), Bundle> {
        let n = tasks(&bundle);
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.tx.try_send(bundle).map_err(|err| {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            err.into_inner()
        })
    }

    /// The next bundle; `None` once the queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<Bundle> {
        let bundle = self.rx.recv().await.ok()?;
        self.queued.fetch_sub(tasks(&bundle), Ordering::Relaxed);
        Some(bundle)
    }

    /// The next bundle if one is queued.
    pub(crate) fn try_pop(&self) -> Option<Bundle> {
        let bundle = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(tasks(&bundle), Ordering::Relaxed);
        Some(bundle)
    }

    /// Tasks waiting.
    pub(crate) fn len(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn close(&self) {
        self.tx.close();
    }

    pub(crate) fn is_closed_and_empty(&self) -> bool {
        self.rx.is_closed() && self.rx.is_empty()
    }
}
