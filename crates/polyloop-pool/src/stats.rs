//! Counters the workers' drivers keep, and the snapshot `Pool::stats` returns.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Live counters of one worker seat, updated by its driver.
#[derive(Debug, Default)]
pub(crate) struct WorkerCounters {
    pub(crate) pid: AtomicU32,
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) recycles: AtomicU64,
    pub(crate) retried: AtomicU64,
}

impl WorkerCounters {
    pub(crate) fn snapshot(
        &self,
        worker_idx: usize,
        queue_idx: usize,
        restarting: bool,
    ) -> WorkerStats {
        WorkerStats {
            worker_idx,
            queue_idx,
            restarting,
            pid: self.pid.load(Ordering::Relaxed),
            tasks_done: self.done.load(Ordering::Relaxed),
            tasks_failed: self.failed.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            recycles: self.recycles.load(Ordering::Relaxed),
            tasks_retried: self.retried.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of one worker seat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The seat's index in the pool.
    pub worker_idx: usize,
    /// The queue the seat serves.
    pub queue_idx: usize,
    /// The pid of the seat's process; while it is `restarting`, of the last one (which may be
    /// gone) or of the replacement still in its handshake.
    pub pid: u32,
    /// Whether the seat is between processes: its worker died or was recycled, and no
    /// replacement has completed its handshake yet (one that fails to start is retried with a
    /// growing back-off, up to 5 s).
    pub restarting: bool,
    /// Tasks that produced a value, over the seat's lifetime.
    pub tasks_done: u64,
    /// Tasks that failed in any way, over the seat's lifetime.
    pub tasks_failed: u64,
    /// Tasks sent to the current process and not yet answered.
    pub in_flight: u64,
    /// Processes that died and were replaced.
    pub restarts: u64,
    /// Processes retired after `max_tasks_per_child` tasks and replaced.
    pub recycles: u64,
    /// Tasks this seat's dead processes held that were queued again (`retries`).
    pub tasks_retried: u64,
}

/// A snapshot of the whole pool, from [`Pool::stats`](crate::Pool::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// One entry per worker seat.
    pub workers: Vec<WorkerStats>,
    /// Tasks waiting in the queues.
    pub queued: usize,
}
