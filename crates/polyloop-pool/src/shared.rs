//! The state a pool, its drivers, handles and streams share: the queues (`Shard`), the worker
//! seats (`Seat`) and the count of outstanding tasks, with the rules that keep them consistent
//! (every task is resolved exactly once, through `Shared::resolve`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use polyloop_wire::TaskSpec;
use tokio::sync::Notify;

use crate::TaskError;
use crate::builder::Config;
use crate::bytes::SmallBytes;
use crate::connection::RemoteRegistry;
use crate::error::Kind;
use crate::job::{Input, Inputs, Job, RawResult, Reply, StreamTx, TaskKey, input_error};
use crate::process::WorkerProc;
use crate::queue::{self, Bundle, Queue};
use crate::scheduler::{QueueLoads, Scheduler};
use crate::stats::WorkerCounters;

/// The fewest of a map's inputs that a pool of several queues sends to one queue together.
const MIN_PIECE: usize = 16;

/// Why tasks fail once the runtime that ran the drivers has shut down.
const RUNTIME_GONE: &str = "the runtime that ran the pool's drivers has shut down";
/// Why tasks are cancelled when the last clone of the pool is dropped.
pub(crate) const DROPPED: &str = "the pool was dropped";

/// What the pool, its drivers, handles and streams share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) shards: Vec<Shard>,
    pub(crate) seats: Vec<Seat>,
    scheduler: Box<dyn Scheduler>,
    registry: Arc<RemoteRegistry>,
    next_id: AtomicU64,
    closing: AtomicBool,
    /// Set when `Pool::terminate` begins, or the drop of the pool's last clone.
    dropped: AtomicBool,
    /// Set by the first of `terminate` and `Drop`.
    stop_reason: OnceLock<&'static str>,
    /// Set when the runtime that ran the drivers shut down under them.
    runtime_gone: AtomicBool,
    /// Tasks queued or in flight; `close` waits for zero.
    outstanding: AtomicUsize,
    drained: Notify,
    /// Fired when `close` has closed the queues, for supervisors backing off a failed start.
    pub(crate) closed: Notify,
}

/// One queue and the workers bound to it.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) queue: Queue,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) n_workers: usize,
    /// Workers of this queue with a live process.
    live: AtomicUsize,
}

/// One worker position: it outlives the processes that fill it.
#[derive(Debug)]
pub(crate) struct Seat {
    pub(crate) queue_idx: usize,
    pub(crate) counters: WorkerCounters,
    proc: Mutex<Option<Arc<WorkerProc>>>,
    /// Asks the driver to cancel in-flight tasks nobody waits for any more.
    pub(crate) sweep: Notify,
    /// Whether a driver serves this seat now (its worker completed the handshake).
    live: AtomicBool,
    /// Whether this seat's driver listens to its queue now (see [`Shared::set_listening`]).
    listening: AtomicBool,
    /// Asks a driver that deferred to others to look at its queue again.
    pub(crate) reconsider: Notify,
}

impl Shared {
    /// The state of a pool of `config.processes` workers over `n_queues` queues, worker `i`
    /// bound to queue `i % n_queues`.
    pub(crate) fn new(
        config: Config,
        scheduler: Box<dyn Scheduler>,
        registry: Arc<RemoteRegistry>,
        n_queues: usize,
    ) -> Self {
        let shards = (0..n_queues)
            .map(|queue_idx| {
                let n_workers = (0..config.processes).filter(|w| w % n_queues == queue_idx).count();
                Shard {
                    queue: Queue::new(),
                    in_flight: AtomicUsize::new(0),
                    n_workers,
                    live: AtomicUsize::new(0),
                }
            })
            .collect();
        let seats = (0..config.processes)
            .map(|worker_idx| Seat {
                queue_idx: worker_idx % n_queues,
                counters: WorkerCounters::default(),
                proc: Mutex::new(None),
                sweep: Notify::new(),
                live: AtomicBool::new(false),
                listening: AtomicBool::new(false),
                reconsider: Notify::new(),
            })
            .collect();
        Shared {
            config,
            shards,
            seats,
            scheduler,
            registry,
            next_id: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            stop_reason: OnceLock::new(),
            runtime_gone: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            drained: Notify::new(),
            closed: Notify::new(),
        }
    }

    /// Counts a task as resolved and hands it its result.
    pub(crate) fn resolve(&self, job: Job, result: RawResult) {
        let n = job.len();
        job.resolve(result);
        self.resolved(n);
    }

    /// Counts `n` tasks as resolved (their results were handed over in a batch).
    pub(crate) fn resolved(&self, n: usize) {
        // Notified at every zero, closing or not: checking `closing` here as well would leave
        // a window in which `close` and the last resolution each miss the other's write.
        if self.outstanding.fetch_sub(n, Ordering::AcqRel) == n {
            self.drained.notify_waiters();
        }
    }

    /// Whether the pool takes no more tasks: `close`, `terminate` or `Drop` began.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// How a task submitted once the pool is closing fails. Once the pool is gone (its last
    /// clone dropped), a stream made before keeps submitting: its tasks fail as the ones the
    /// drop cancelled did, not as if they had been refused by a live pool.
    fn refusal(&self) -> (Kind, &'static str) {
        if self.runtime_gone.load(Ordering::Acquire) {
            (Kind::PoolClosed, RUNTIME_GONE)
        } else if self.stop_reason.get() == Some(&DROPPED) {
            (Kind::Cancelled, DROPPED)
        } else {
            (Kind::PoolClosed, "the pool is closed")
        }
    }

    /// Queues a bundle of jobs, or resolves them at once if the pool is closed.
    pub(crate) fn enqueue(&self, bundle: impl Into<Bundle>) {
        let bundle: Bundle = bundle.into();
        if bundle.is_empty() {
            return;
        }
        if self.closing.load(Ordering::Acquire) {
            let (kind, why) = self.refusal();
            for job in bundle {
                let name = job.key.name;
                job.resolve(Err(TaskError::new(kind, name, why)));
            }
            return;
        }
        self.outstanding.fetch_add(queue::tasks(&bundle), Ordering::AcqRel);
        let n_queues = self.shards.len();
        if n_queues == 1 {
            let (kind, why) = self.refusal();
            return self.requeue(0, bundle, kind, why);
        }
        // The scheduler chooses per task; each queue then gets one bundle of its tasks.
        let mut per_queue: Vec<Bundle> = (0..n_queues).map(|_| Bundle::new()).collect();
        let mut pending = vec![0; n_queues];
        for job in bundle {
            // A map's inputs are spread in pieces, one pick per piece.
            let piece = job.len().div_ceil(n_queues).max(MIN_PIECE);
            let mut rest = Some(job);
            while let Some(mut job) = rest.take() {
                let next = match job.len() > piece {
                    true => {
                        let front = job.split_front(piece);
                        rest = Some(job);
                        front
                    }
                    false => job,
                };
                let queue_idx =
                    self.scheduler.pick(&QueueLoads { shards: &self.shards, pending: &pending });
                let queue_idx = queue_idx % n_queues;
                pending[queue_idx] += next.len();
                per_queue[queue_idx].push_back(next);
            }
        }
        for (queue_idx, jobs) in per_queue.into_iter().enumerate() {
            if !jobs.is_empty() {
                let (kind, why) = self.refusal();
                self.requeue(queue_idx, jobs, kind, why);
            }
        }
    }

    /// Puts jobs (back) in queue `queue_idx`; if it is closed, they fail with `kind`.
    pub(crate) fn requeue(
        &self,
        queue_idx: usize,
        bundle: impl Into<Bundle>,
        kind: Kind,
        why: &str,
    ) {
        let bundle: Bundle = bundle.into();
        if bundle.is_empty() {
            return;
        }
        if let Err(bundle) = self.shards[queue_idx].queue.push(bundle) {
            for job in bundle {
                let name = job.key.name;
                self.resolve(job, Err(TaskError::new(kind, name, why)));
            }
        }
    }

    /// Encodes an input into a job; an input that does not serialize fails on its own.
    pub(crate) fn make_job<T: TaskSpec>(&self, input: &T::Input, reply: Reply) -> Option<Job> {
        let (encoded, pins) = polyloop_shm::collect_pins(|| SmallBytes::encode(input));
        match encoded {
            Ok(bytes) => {
                let key = TaskKey::of::<T>();
                Some(Job { key, input: Input::One(bytes), reply, retries: 0, pins })
            }
            Err(err) => {
                reply.send(Err(input_error::<T>(input, &err)));
                None
            }
        }
    }

    /// A job of a map stream's consecutive inputs, the first with sequence number `seq`.
    pub(crate) fn make_many<T: TaskSpec>(&self, inputs: Inputs, seq: u64, tx: StreamTx) -> Job {
        let reply = Reply::Stream { tx, seq };
        let pins = polyloop_shm::Pins::default();
        Job { key: TaskKey::of::<T>(), input: Input::Many(inputs), reply, retries: 0, pins }
    }

    /// Checks that the workers know `T`, before queueing anything.
    pub(crate) fn check_task<T: TaskSpec>(&self) -> Result<(), TaskError> {
        self.task_index::<T>().map(drop)
    }

    /// The workers' index for `T`.
    pub(crate) fn task_index<T: TaskSpec>(&self) -> Result<u32, TaskError> {
        self.registry
            .index(T::NAME, T::fingerprint())
            .map_err(|msg| TaskError::new(Kind::UnknownTask, T::NAME, msg))
    }

    /// A new id for a task of this pool.
    pub(crate) fn next_task_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Stops accepting tasks, waits until every queued and running one has resolved, then closes
    /// the queues (so drivers shut their workers down) and wakes supervisors that back off.
    pub(crate) async fn close_and_drain(&self) {
        self.closing.store(true, Ordering::Release);
        loop {
            let drained = self.drained.notified();
            if self.outstanding.load(Ordering::Acquire) == 0 {
                break;
            }
            drained.await;
        }
        for shard in &self.shards {
            shard.queue.close();
        }
        self.closed.notify_waiters();
    }

    /// The pool stops now (its last clone dropped, or `terminate`), for `why`: nothing more is
    /// accepted, drivers that go now went with it, and what is cancelled says why.
    pub(crate) fn begin_stop(&self, why: &'static str) {
        let _ = self.stop_reason.set(why);
        self.dropped.store(true, Ordering::Release);
        self.closing.store(true, Ordering::Release);
    }

    /// Why the pool stopped, for the tasks it cancels.
    pub(crate) fn stop_reason(&self) -> &'static str {
        self.stop_reason.get().copied().unwrap_or(DROPPED)
    }

    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Whether the runtime that ran the drivers shut down under them.
    pub(crate) fn runtime_gone(&self) -> bool {
        self.runtime_gone.load(Ordering::Acquire)
    }

    /// The runtime that ran the drivers shut down: nothing will serve the queues again, so what
    /// waits there fails now, and so does anything submitted later.
    pub(crate) fn handle_runtime_gone(&self) {
        self.runtime_gone.store(true, Ordering::Release);
        self.closing.store(true, Ordering::Release);
        self.close_queues(Kind::PoolClosed, RUNTIME_GONE);
        self.closed.notify_waiters();
    }

    /// Closes every queue and fails what waits in them: a bundle pushed before a queue closed
    /// is drained here, one pushed after fails at its push.
    pub(crate) fn close_queues(&self, kind: Kind, why: &str) {
        for shard in &self.shards {
            shard.queue.close();
            self.fail_queued(shard, kind, why);
        }
    }

    /// Fails every job waiting in `shard`'s queue.
    pub(crate) fn fail_queued(&self, shard: &Shard, kind: Kind, why: &str) {
        while let Some(bundle) = shard.queue.try_pop() {
            for job in bundle {
                let name = job.key.name;
                self.resolve(job, Err(TaskError::new(kind, name, why)));
            }
        }
    }

    /// Kills and reaps every worker process the seats hold, blocking: for `Drop`, and for a
    /// pool whose drivers are gone.
    pub(crate) fn kill_workers(&self) {
        for seat in &self.seats {
            if let Some(proc) = seat.proc.lock().unwrap_or_else(PoisonError::into_inner).take() {
                proc.kill_and_reap();
            }
        }
    }

    /// Publishes whether the driver of seat `worker_idx` listens to its queue. One that stops
    /// listening (it holds its share, or its worker is gone) asks the other seats of the queue
    /// to look again: one of them may have deferred to it, and somebody must listen while work
    /// is queued.
    pub(crate) fn set_listening(&self, worker_idx: usize, listening: bool) {
        let seat = &self.seats[worker_idx];
        if seat.listening.swap(listening, Ordering::SeqCst) && !listening {
            for peer in self.queue_peers(worker_idx) {
                peer.reconsider.notify_one();
            }
        }
    }

    /// The other seats serving the queue of seat `worker_idx`.
    pub(crate) fn queue_peers(&self, worker_idx: usize) -> impl Iterator<Item = &Seat> {
        let queue_idx = self.seats[worker_idx].queue_idx;
        self.seats
            .iter()
            .enumerate()
            .filter(move |&(i, seat)| i != worker_idx && seat.queue_idx == queue_idx)
            .map(|(_, seat)| seat)
    }

    /// Asks every driver to cancel in-flight tasks whose result nobody waits for.
    pub(crate) fn sweep(&self) {
        for seat in &self.seats {
            seat.sweep.notify_one();
        }
    }
}

impl Shard {
    /// How many workers of this queue have a live process.
    pub(crate) fn live_workers(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

impl Seat {
    /// Whether this seat's driver listens to its queue now.
    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    pub(crate) fn install(&self, proc: &Arc<WorkerProc>) {
        self.counters.pid.store(proc.pid(), Ordering::Relaxed);
        *self.proc.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(proc));
    }

    /// Marks the seat as served (or not) by a worker that completed its handshake.
    pub(crate) fn set_live(&self, shard: &Shard, live: bool) {
        if live {
            // A new driver listens from its first turn; say so now, before it first runs.
            self.listening.store(true, Ordering::SeqCst);
        }
        if self.live.swap(live, Ordering::AcqRel) != live {
            match live {
                true => shard.live.fetch_add(1, Ordering::AcqRel),
                false => shard.live.fetch_sub(1, Ordering::AcqRel),
            };
        }
    }

    /// The seat's process is gone (its pid stays, for the stats, until the next one's).
    pub(crate) fn uninstall(&self) {
        self.proc.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// Whether a worker that completed its handshake serves the seat.
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}
