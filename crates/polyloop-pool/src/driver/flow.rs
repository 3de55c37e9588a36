//! How much work one worker takes: its credit (concurrency plus an adaptive prefetch), its task
//! budget, and its fair share of a queue it serves with others. Sans-IO: the driver tells it what
//! was sent and answered and what the queue looks like; it answers how many tasks to take.

use std::time::Duration;

/// Under this mean time in flight, tasks are short and bigger batches pay.
const SHORT_TASK: Duration = Duration::from_millis(2);
/// Over this, tasks are heavy, and holding many would starve the other workers.
const LONG_TASK: Duration = Duration::from_millis(20);

/// What a driver can read of its queue and of the other workers that serve it. A trait so that
/// the reads stay lazy (most decisions need none of them) and the rules can be tested alone.
pub(super) trait QueueState {
    /// Tasks waiting in the queue.
    fn queued(&self) -> usize;
    /// Tasks in flight on every worker of the queue, as last published.
    fn in_flight(&self) -> usize;
    /// Workers of the queue with a live process.
    fn live(&self) -> usize;
    /// Whether another worker of the queue listens to it and holds fewer than `min_credit`
    /// tasks: it could start work now.
    fn others_listening(&self, min_credit: usize) -> bool;
}

/// One worker's flow control.
#[derive(Debug)]
pub(super) struct Flow {
    concurrency: usize,
    /// Tasks the worker may hold beyond its concurrency; adapts within `prefetch_range`.
    prefetch: usize,
    prefetch_range: (usize, usize),
    /// Tasks a process may be sent before it is recycled; 0 for no limit.
    max_tasks: u64,
    in_flight: usize,
    /// Tasks sent to this process.
    sent: u64,
}

impl Flow {
    /// Flow control for a fresh process.
    pub(super) fn new(concurrency: usize, prefetch_range: (usize, usize), max_tasks: u64) -> Self {
        let (min, max) = prefetch_range;
        debug_assert!(min <= max, "prefetch range {prefetch_range:?}");
        Flow {
            concurrency: concurrency.max(1),
            prefetch: min,
            prefetch_range,
            max_tasks,
            in_flight: 0,
            sent: 0,
        }
    }

    /// Tasks sent and not yet answered.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The most tasks the worker may hold now.
    pub(super) fn credit(&self) -> usize {
        self.concurrency + self.prefetch
    }

    /// Whether the worker may be sent another task now (credit permitting; not its share).
    pub(super) fn has_credit(&self) -> bool {
        self.in_flight < self.credit()
    }

    /// Tasks this process may still be sent before it is recycled.
    pub(super) fn budget_left(&self) -> u64 {
        match self.max_tasks {
            0 => u64::MAX,
            max => max.saturating_sub(self.sent),
        }
    }

    /// `n` tasks were sent.
    pub(super) fn handle_sent(&mut self, n: usize) {
        self.in_flight += n;
        self.sent += n as u64;
    }

    /// `n` tasks were answered, or failed with their worker.
    pub(super) fn handle_answered(&mut self, n: usize) {
        debug_assert!(self.in_flight >= n, "{n} answers for {} in flight", self.in_flight);
        self.in_flight -= n;
    }

    /// The most inputs of a map to send as one chunk: a worker that holds its whole credit in
    /// chunks of this size still has one for each place it can run a task in. Long tasks keep
    /// the prefetch low, and with it the chunks at one input.
    pub(super) fn chunk_len(&self) -> usize {
        (self.credit() / self.concurrency).max(1)
    }

    /// A batch of results came back, after `mean` in flight on average: grows the prefetch while
    /// tasks are short, shrinks it when they are long.
    pub(super) fn handle_latency(&mut self, mean: Duration) {
        let (min, max) = self.prefetch_range;
        if mean < SHORT_TASK {
            self.prefetch = (self.prefetch * 2).clamp(min, max);
        } else if mean > LONG_TASK {
            self.prefetch = (self.prefetch / 2).clamp(min, max);
        }
    }

    /// The smallest credit any worker of the pool has: one that holds less could start work.
    fn min_credit(&self) -> usize {
        self.concurrency + self.prefetch_range.0
    }

    /// This worker's even share of the work of its queue: queued, `in_hand` (popped but not yet
    /// taken) and in flight on every worker.
    fn share(&self, queue: &impl QueueState, in_hand: usize) -> usize {
        let total = queue.queued() + in_hand + queue.in_flight();
        total.div_ceil(queue.live().max(1))
    }

    /// Whether this worker holds its share already while another that listens could start work:
    /// then it leaves the queue to that one, so CPU-bound work spreads. A worker with nothing in
    /// flight always takes work.
    pub(super) fn over_share(&self, queue: &impl QueueState) -> bool {
        self.in_flight > 0
            && self.in_flight >= self.share(queue, 0)
            && queue.others_listening(self.min_credit())
    }

    /// How many tasks to take now, with `in_hand` popped from the queue: the free credit and
    /// remaining budget, and, while another worker could start work, no more than this worker's
    /// share. Always at least one, so that a popped task is never left with nobody.
    pub(super) fn room(&self, queue: &impl QueueState, in_hand: usize) -> usize {
        let credit = self.credit().saturating_sub(self.in_flight);
        let budget = usize::try_from(self.budget_left()).unwrap_or(usize::MAX);
        let share = match queue.others_listening(self.min_credit()) {
            true => self.share(queue, in_hand).saturating_sub(self.in_flight),
            false => usize::MAX,
        };
        credit.min(budget).min(share).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue as a test sets it up.
    #[derive(Debug, Default)]
    struct View {
        queued: usize,
        in_flight: usize,
        live: usize,
        /// The tasks held by the one other worker that listens, if any.
        listener_holds: Option<usize>,
    }

    impl QueueState for View {
        fn queued(&self) -> usize {
            self.queued
        }
        fn in_flight(&self) -> usize {
            self.in_flight
        }
        fn live(&self) -> usize {
            self.live
        }
        fn others_listening(&self, min_credit: usize) -> bool {
            self.listener_holds.is_some_and(|holds| holds < min_credit)
        }
    }

    fn sent(flow: &mut Flow, n: usize) {
        flow.handle_sent(n);
    }

    #[test]
    fn credit_is_concurrency_plus_prefetch_and_adapts_within_its_range() {
        let mut flow = Flow::new(16, (4, 64), 0);
        assert_eq!(flow.credit(), 20);
        flow.handle_latency(Duration::from_micros(100));
        assert_eq!(flow.credit(), 24);
        for _ in 0..10 {
            flow.handle_latency(Duration::from_micros(100));
        }
        assert_eq!(flow.credit(), 16 + 64, "capped at the top of the range");
        flow.handle_latency(Duration::from_millis(10));
        assert_eq!(flow.credit(), 16 + 64, "middling latency leaves it");
        for _ in 0..10 {
            flow.handle_latency(Duration::from_millis(50));
        }
        assert_eq!(flow.credit(), 20, "floored at the bottom of the range");
    }

    #[test]
    fn chunks_grow_with_the_prefetch_and_fill_the_credit_in_one_per_place() {
        let mut flow = Flow::new(16, (4, 2048), 0);
        assert_eq!(flow.chunk_len(), 1, "a fresh worker gets its tasks one by one");
        for _ in 0..20 {
            flow.handle_latency(Duration::ZERO);
        }
        assert_eq!(flow.chunk_len(), (16 + 2048) / 16);
        for _ in 0..20 {
            flow.handle_latency(Duration::from_secs(1));
        }
        assert_eq!(flow.chunk_len(), 1, "long tasks travel alone");
        assert_eq!(Flow::new(1, (1, 1), 0).chunk_len(), 2);
    }

    #[test]
    fn a_fixed_prefetch_never_moves() {
        let mut flow = Flow::new(2, (3, 3), 0);
        flow.handle_latency(Duration::ZERO);
        flow.handle_latency(Duration::from_secs(1));
        assert_eq!(flow.credit(), 5);
    }

    #[test]
    fn credit_counts_what_is_in_flight() {
        let mut flow = Flow::new(1, (1, 1), 0);
        assert!(flow.has_credit());
        sent(&mut flow, 2);
        assert!(!flow.has_credit());
        flow.handle_answered(1);
        assert!(flow.has_credit());
        assert_eq!(flow.in_flight(), 1);
    }

    #[test]
    fn the_budget_counts_sends_not_answers() {
        let mut flow = Flow::new(4, (1, 1), 3);
        assert_eq!(flow.budget_left(), 3);
        sent(&mut flow, 2);
        flow.handle_answered(1);
        assert_eq!(flow.budget_left(), 1);
        sent(&mut flow, 1);
        assert_eq!(flow.budget_left(), 0);
        let alone = View { queued: 100, live: 1, ..View::default() };
        assert_eq!(flow.room(&alone, 100), 1, "room is never zero: a popped task is taken");
        assert_eq!(Flow::new(1, (1, 1), 0).budget_left(), u64::MAX, "0 means no limit");
    }

    #[test]
    fn alone_a_worker_fills_its_credit() {
        let mut flow = Flow::new(4, (2, 2), 0);
        let alone = View { queued: 1000, live: 2, listener_holds: None, ..View::default() };
        assert_eq!(flow.room(&alone, 10), 6);
        sent(&mut flow, 6);
        assert!(!flow.over_share(&alone), "nobody else could take the work");
    }

    #[test]
    fn beside_an_idle_listener_a_worker_takes_only_its_share() {
        let mut flow = Flow::new(8, (2, 2), 0);
        // Eight tasks popped, nothing else queued or in flight, two live workers, the other idle.
        let idle_peer = View { queued: 0, in_flight: 0, live: 2, listener_holds: Some(0) };
        assert_eq!(flow.room(&idle_peer, 8), 4);
        sent(&mut flow, 4);
        let after = View { in_flight: 4, ..idle_peer };
        assert!(flow.over_share(&after), "it holds its half: leave the rest to the idle one");
        // A listener already at its minimum credit could not start work: no reason to defer.
        let busy_peer = View { listener_holds: Some(10), ..after };
        assert!(!flow.over_share(&busy_peer));
    }

    #[test]
    fn a_worker_with_nothing_in_flight_is_never_over_its_share() {
        let flow = Flow::new(1, (1, 1), 0);
        let crowded = View { queued: 0, in_flight: 0, live: 8, listener_holds: Some(0) };
        assert!(!flow.over_share(&crowded));
        assert_eq!(flow.room(&crowded, 1), 1);
    }
}
