//! The watchdog's clock: when the oldest unanswered task will have overrun its timeout by so
//! much that its worker must be stuck in it. Sans-IO: the driver tells it what it sent and asks
//! for the deadline; it never sleeps or kills.
//!
//! A worker cancels a task that passes its timeout at the task's next await. One that never
//! awaits holds the worker's thread, and only killing the process ends it: that is the deadline
//! this keeps, twice the timeout (the task may have waited up to one timeout for a free place
//! in the worker) plus the grace period.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The send times of one connection's tasks, oldest first.
#[derive(Debug)]
pub(super) struct Watchdog {
    /// How long past its send a task makes its worker overdue; `None` without a task timeout.
    limit: Option<Duration>,
    /// (id, sent at) in send order. Entries of answered tasks are dropped lazily.
    sends: VecDeque<(u64, Instant)>,
}

impl Watchdog {
    /// A watchdog for tasks with this timeout (none: it never fires) and kill grace.
    pub(super) fn new(task_timeout: Option<Duration>, grace: Duration) -> Self {
        Watchdog { limit: task_timeout.map(|timeout| 2 * timeout + grace), sends: VecDeque::new() }
    }

    /// Task `id` was sent at `now`. Ids must come in increasing order of `now`.
    pub(super) fn handle_sent(&mut self, id: u64, now: Instant) {
        if self.limit.is_some() {
            self.sends.push_back((id, now));
        }
    }

    /// The oldest task still in flight (`holds` says which are) and the moment its worker is
    /// overdue; forgets the answered tasks sent before it.
    pub(super) fn poll_oldest(&mut self, holds: impl Fn(u64) -> bool) -> Option<(u64, Instant)> {
        let limit = self.limit?;
        while let Some(&(id, sent_at)) = self.sends.front() {
            if holds(id) {
                return Some((id, sent_at + limit));
            }
            self.sends.pop_front();
        }
        None
    }

    /// Forgets every task: the connection is gone.
    pub(super) fn clear(&mut self) {
        self.sends.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(100);
    const GRACE: Duration = Duration::from_millis(10);

    #[test]
    fn without_a_timeout_there_is_no_deadline() {
        let mut dog = Watchdog::new(None, GRACE);
        dog.handle_sent(0, Instant::now());
        assert_eq!(dog.poll_oldest(|_| true), None);
    }

    #[test]
    fn the_deadline_is_the_oldest_live_tasks_send_plus_twice_the_timeout_and_grace() {
        let mut dog = Watchdog::new(Some(TIMEOUT), GRACE);
        let start = Instant::now();
        for id in 0..5 {
            dog.handle_sent(id, start + Duration::from_millis(id));
        }
        let mut live: HashSet<u64> = (0..5).collect();
        let limit = 2 * TIMEOUT + GRACE;
        assert_eq!(dog.poll_oldest(|id| live.contains(&id)), Some((0, start + limit)));
        // Answered out of order: the oldest one still held decides.
        live.remove(&0);
        live.remove(&2);
        let at = |id| start + Duration::from_millis(id) + limit;
        assert_eq!(dog.poll_oldest(|id| live.contains(&id)), Some((1, at(1))));
        live.remove(&1);
        assert_eq!(dog.poll_oldest(|id| live.contains(&id)), Some((3, at(3))));
        live.clear();
        assert_eq!(dog.poll_oldest(|id| live.contains(&id)), None);
        assert!(dog.sends.is_empty(), "answered tasks are forgotten");
    }

    #[test]
    fn clear_forgets_everything() {
        let mut dog = Watchdog::new(Some(TIMEOUT), GRACE);
        dog.handle_sent(7, Instant::now());
        dog.clear();
        assert_eq!(dog.poll_oldest(|_| true), None);
    }
}
