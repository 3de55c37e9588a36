//! Which queue a task goes to: round-robin, least-loaded, or a user's own policy.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A read-only view of the pool's queues, for a [`Scheduler`] to choose from.
pub struct QueueLoads<'a> {
    pub(crate) shards: &'a [crate::shared::Shard],
    /// Tasks of the bundle being scheduled that were already assigned to each queue.
    pub(crate) pending: &'a [usize],
}

impl QueueLoads<'_> {
    /// Number of queues; a scheduler returns an index below this.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there are no queues (never true in a built pool).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Tasks waiting in queue `queue_idx`.
    pub fn queued(&self, queue_idx: usize) -> usize {
        self.shards[queue_idx].queue.len() + self.pending.get(queue_idx).copied().unwrap_or(0)
    }

    /// Tasks sent to the workers of queue `queue_idx` and not yet finished.
    pub fn in_flight(&self, queue_idx: usize) -> usize {
        self.shards[queue_idx].in_flight.load(Ordering::Relaxed)
    }

    /// Workers bound to queue `queue_idx`.
    pub fn workers(&self, queue_idx: usize) -> usize {
        self.shards[queue_idx].n_workers
    }
}

impl fmt::Debug for QueueLoads<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries((0..self.len()).map(|i| (self.queued(i), self.in_flight(i), self.workers(i))))
            .finish()
    }
}

/// Chooses the queue for each submitted task. Each worker serves exactly one queue, so with
/// `queue_count(1)` (the default) the scheduler is never asked.
///
/// ```
/// use polyloop_pool::{QueueLoads, Scheduler};
///
/// /// Everything to the first queue, e.g. to keep a warm cache there.
/// #[derive(Debug)]
/// struct First;
/// impl Scheduler for First {
///     fn pick(&self, _loads: &QueueLoads<'_>) -> usize {
///         0
///     }
/// }
/// ```
pub trait Scheduler: Send + Sync + fmt::Debug + 'static {
    /// The index of the queue for the next task; out-of-range values wrap around.
    fn pick(&self, loads: &QueueLoads<'_>) -> usize;
}

/// Each queue in turn (the default).
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Scheduler for RoundRobin {
    fn pick(&self, loads: &QueueLoads<'_>) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % loads.len().max(1)
    }
}

/// The queue with the least work (queued plus in flight) per worker.
#[derive(Debug, Default)]
pub struct LeastLoaded;

impl Scheduler for LeastLoaded {
    fn pick(&self, loads: &QueueLoads<'_>) -> usize {
        (0..loads.len())
            .min_by_key(|&i| {
                (loads.queued(i) + loads.in_flight(i)) * 1024 / loads.workers(i).max(1)
            })
            .unwrap_or(0)
    }
}
