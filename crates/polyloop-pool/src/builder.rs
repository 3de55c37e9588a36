//! `Pool::builder()`: every setting of a pool, with its default.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use polyloop_wire::{InitTask, RuntimeFlavor, TaskSchema, TaskSpec};

use crate::process::WorkerProgram;
use crate::scheduler::{RoundRobin, Scheduler};
use crate::{Pool, PoolError};

/// Configures and builds a [`Pool`]. Start with [`Pool::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), polyloop_pool::PoolError> {
/// use std::time::Duration;
///
/// let pool = polyloop_pool::Pool::builder()
///     .processes(4)
///     .child_concurrency(64)
///     .task_timeout(Duration::from_secs(30))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PoolBuilder {
    pub(crate) config: Config,
    pub(crate) scheduler: Box<dyn Scheduler>,
    init_error: Option<String>,
    /// A setting `build` refuses.
    invalid: Option<String>,
}

/// The settings a built pool runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) child_concurrency: u32,
    pub(crate) prefetch: Option<u32>,
    pub(crate) queue_count: usize,
    pub(crate) max_tasks_per_child: u64,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) kill_grace: Duration,
    pub(crate) retries: u32,
    pub(crate) runtime: RuntimeFlavor,
    pub(crate) initializer: Option<InitTask>,
    /// The shared values the initializer's input refers to: every new worker runs it.
    pub(crate) initializer_pins: polyloop_shm::Pins,
    pub(crate) program: Option<WorkerProgram>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) busy_poll: Duration,
    pub(crate) max_nesting: u32,
    /// `None`: the pool does not watch its workers' liveness.
    pub(crate) heartbeat_timeout: Option<Duration>,
    pub(crate) drivers: Drivers,
    /// Tasks the worker program must hold, beyond those linked into this program.
    pub(crate) expected: Vec<TaskSchema>,
}

/// Where a pool's drivers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drivers {
    /// On a thread the pool owns: the pool serves callers on any runtime.
    OwnThread,
    /// As tasks of the runtime that built the pool, while it runs.
    BuildingRuntime,
}

/// How long a worker may go without a heartbeat before it is declared dead, by default.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most tasks the adaptive prefetch lets a worker hold beyond its concurrency.
pub(crate) const MAX_ADAPTIVE_PREFETCH: usize = 8192;

impl Config {
    /// The range the prefetch (tasks a worker holds beyond its concurrency) moves in.
    ///
    /// It starts small, so a worker never hoards work another could start, and grows while
    /// tasks come back quickly, so that tiny tasks travel in large batches. With a task timeout
    /// it stays at most the concurrency, which bounds how long a healthy worker can hold a task
    /// (the watchdog relies on that). An explicit `prefetch` fixes it.
    pub(crate) fn prefetch_range(&self) -> (usize, usize) {
        let concurrency = self.child_concurrency.max(1) as usize;
        match self.prefetch {
            Some(fixed) => (fixed as usize, fixed as usize),
            None if self.task_timeout.is_some() => (concurrency.div_ceil(4), concurrency),
            None => (concurrency.div_ceil(4), MAX_ADAPTIVE_PREFETCH.max(concurrency)),
        }
    }

    /// The most tasks a worker can ever hold: for sizing stream windows.
    pub(crate) fn max_credit(&self) -> usize {
        self.child_concurrency.max(1) as usize + self.prefetch_range().1
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            config: Config {
                processes: std::thread::available_parallelism().map_or(1, usize::from),
                child_concurrency: 16,
                prefetch: None,
                queue_count: 1,
                max_tasks_per_child: 0,
                task_timeout: None,
                kill_grace: Duration::from_secs(1),
                retries: 0,
                runtime: RuntimeFlavor::CurrentThread,
                initializer: None,
                initializer_pins: polyloop_shm::Pins::default(),
                program: None,
                handshake_timeout: Duration::from_secs(30),
                busy_poll: Duration::ZERO,
                max_nesting: polyloop_wire::DEFAULT_MAX_NESTING,
                heartbeat_timeout: Some(DEFAULT_HEARTBEAT_TIMEOUT),
                drivers: Drivers::OwnThread,
                expected: Vec::new(),
            },
            scheduler: Box::new(RoundRobin::default()),
            init_error: None,
            invalid: None,
        }
    }
}

impl PoolBuilder {
    /// Worker processes (default: the available parallelism).
    pub fn processes(mut self, n: usize) -> Self {
        self.config.processes = n;
        if n == 0 {
            self.invalid("processes(0): a pool needs at least one worker process");
        }
        self
    }

    /// Tasks running at once in each worker (default 16).
    pub fn child_concurrency(mut self, n: u32) -> Self {
        self.config.child_concurrency = n;
        if n == 0 {
            self.invalid("child_concurrency(0): a worker must run at least one task at a time");
        }
        self
    }

    /// Fixes how many tasks a worker may hold beyond its concurrency, ready to start the moment a
    /// running task ends. By default this adapts: a quarter of the concurrency while tasks are
    /// long, growing to thousands while they are short.
    pub fn prefetch(mut self, n: u32) -> Self {
        self.config.prefetch = Some(n);
        self
    }

    /// Shared queues (default 1); worker `i` serves queue `i % queue_count`.
    pub fn queue_count(mut self, n: usize) -> Self {
        self.config.queue_count = n;
        if n == 0 {
            self.invalid("queue_count(0): a pool needs at least one queue");
        }
        self
    }

    /// Replace a worker after it ran this many tasks (default 0: never). Exact: no worker is
    /// ever sent more.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.config.max_tasks_per_child = n;
        self
    }

    /// Cancel a task in its worker when it runs longer than this. A task that blocks its thread
    /// cannot be cancelled: its worker is killed and replaced after a grace period. That task
    /// fails with [`TaskError::is_timeout`](crate::TaskError::is_timeout); the other tasks the
    /// worker held fail with `is_worker_lost()` or, under [`retries`](Self::retries), run again.
    pub fn task_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.config.task_timeout = Some(timeout);
        self
    }

    /// Re-run a task whose worker died up to `n` times, on a replacement worker (default 0).
    /// For idempotent tasks only: the lost run may have had effects.
    pub fn retries(mut self, n: u32) -> Self {
        self.config.retries = n;
        self
    }

    /// Runs `task` with `input` once in every worker before it takes any other task, e.g. to
    /// open a client the worker keeps in a static. If it fails, `build` fails.
    pub fn initializer<T: TaskSpec>(mut self, _task: T, input: T::Input) -> Self {
        let (encoded, pins) = polyloop_shm::collect_pins(|| postcard::to_allocvec(&input));
        match encoded {
            Ok(input) => {
                self.config.initializer_pins = pins;
                self.config.initializer = Some(InitTask {
                    name: T::NAME.to_owned(),
                    fingerprint: T::fingerprint(),
                    input,
                });
            }
            Err(err) => {
                self.init_error = Some(format!("initializer input failed to serialize: {err}"))
            }
        }
        self
    }

    /// How tasks are spread over the queues (default: [`RoundRobin`]).
    pub fn scheduler(mut self, scheduler: impl Scheduler) -> Self {
        self.scheduler = Box::new(scheduler);
        self
    }

    /// Each worker runs a multi-threaded tokio runtime with this many threads instead of the
    /// default single-threaded one; for tasks that block or burn CPU in bursts.
    pub fn child_threads(mut self, threads: u32) -> Self {
        self.config.runtime = RuntimeFlavor::MultiThread { threads };
        if threads == 0 {
            self.invalid("child_threads(0): a runtime needs at least one thread");
        }
        self
    }

    /// Run workers from this program instead of re-executing the current one, e.g. a dedicated
    /// worker binary built on `polyloop-child`.
    pub fn worker_program(mut self, path: impl Into<PathBuf>) -> Self {
        let args = self.config.program.take().map(|p| p.args).unwrap_or_default();
        self.config.program = Some(WorkerProgram { path: path.into(), args });
        self
    }

    /// Arguments for the worker program.
    pub fn worker_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args = args.into_iter().map(Into::into).collect();
        match &mut self.config.program {
            Some(program) => program.args = args,
            None => {
                let mut program = WorkerProgram::current().unwrap_or(WorkerProgram {
                    path: PathBuf::from(std::env::args_os().next().unwrap_or_default()),
                    args: Vec::new(),
                });
                program.args = args;
                self.config.program = Some(program);
            }
        }
        self
    }

    /// Opt-in low latency: a worker's driver in this process polls the worker's socket for up
    /// to `window` while it waits for results, before it goes to sleep, so that a result is
    /// picked up without waking a sleeping core. It burns a core while it polls. It pays off
    /// most with [`drivers_on_current_runtime`](Self::drivers_on_current_runtime) from a
    /// current-thread runtime (`#[polyloop::main(flavor = "current_thread")]`), where the caller
    /// and the drivers share a thread. The workers do not poll: with several of them, an idle
    /// one polling takes the core the busy one needs.
    pub fn busy_poll(mut self, window: std::time::Duration) -> Self {
        self.config.busy_poll = window;
        self
    }

    /// Opt-in low latency, for a pool that lives and dies with one runtime: run the drivers
    /// (the tasks in this process that feed the workers and route their results) on the tokio
    /// runtime that calls [`build`](Self::build), instead of on the pool's own thread.
    ///
    /// By default a pool runs its drivers on a thread of its own, `polyloop-driver`, so that it
    /// serves callers on any runtime, one after another, and outlives the runtime that built
    /// it (a pool in a `static` shared by `#[tokio::test]`s, each with its own runtime). That
    /// costs a caller on a current-thread runtime two thread wake-ups per round trip: on a
    /// 2-core machine the median `apply` went from 20-40 us to about 70 us. A caller on a
    /// multi-threaded runtime's `block_on` (`#[tokio::main]`) crosses threads either way.
    ///
    /// With this option the pool serves only while that runtime runs. Once it shuts down,
    /// queued tasks and tasks submitted later fail at once with
    /// [`is_pool_closed()`](crate::TaskError::is_pool_closed), tasks in flight with
    /// [`is_cancelled()`](crate::TaskError::is_cancelled), and [`Pool::close`] reaps the
    /// workers and returns [`PoolError::RuntimeGone`]. `build` then needs a tokio runtime.
    pub fn drivers_on_current_runtime(mut self) -> Self {
        self.config.drivers = Drivers::BuildingRuntime;
        self
    }

    /// How long a new worker may take to start and answer the handshake, initializer included
    /// (default 30 s).
    pub fn handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How deeply a task's input or output may nest, in levels of sequences, structs, enums and
    /// the like (default [`DEFAULT_MAX_NESTING`](polyloop_wire::DEFAULT_MAX_NESTING), 128).
    ///
    /// serde decodes by recursion, so a value nested thousands of levels deep (a linked list
    /// of `Box`ed enum values, say) would overflow the stack of the thread decoding it, which
    /// aborts the process. Both sides refuse such a value instead: the task fails with an
    /// [`is_serialization()`](crate::TaskError::is_serialization) error that names the limit,
    /// and the pool and its workers carry on. The worker enforces the same limit on inputs.
    /// Raise it for data that really nests deeper, minding the stack (about 1.5 KiB per level
    /// in a debug build) of the threads that decode: tokio's are 2 MiB by default.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), polyloop_pool::PoolError> {
    /// let pool = polyloop_pool::Pool::builder().max_nesting(512).build().await?;
    /// # drop(pool); Ok(()) }
    /// ```
    pub fn max_nesting(mut self, levels: u32) -> Self {
        self.config.max_nesting = levels;
        self
    }

    /// How long a worker may go without proving that it is alive before it is declared dead
    /// (default [`DEFAULT_HEARTBEAT_TIMEOUT`], 5 s); `None` turns the watch off.
    ///
    /// A thread of each worker, apart from its tasks, writes one byte to a socket of its own a
    /// few times per timeout (every second by default; at most every 10 ms). So a worker busy
    /// with a long CPU-bound task, or whose thread a task blocks, still proves it is alive, while
    /// a process that is stopped (SIGSTOP, a debugger), swapped out for that long or otherwise
    /// wedged is found within the timeout plus a second, even when no
    /// [`task_timeout`](Self::task_timeout) is set. The pool kills such a worker and starts
    /// another; its tasks fail with [`is_worker_lost()`](crate::TaskError::is_worker_lost), or
    /// run again under [`retries`](Self::retries). The cost: one wake-up per beat in each
    /// worker's watch thread and in the pool's thread that checks it, and one more socket per
    /// worker.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), polyloop_pool::PoolError> {
    /// use std::time::Duration;
    /// let pool = polyloop_pool::Pool::builder()
    ///     .heartbeat_timeout(Some(Duration::from_secs(30))) // e.g. while a debugger may stop workers
    ///     .build()
    ///     .await?;
    /// # drop(pool); Ok(()) }
    /// ```
    pub fn heartbeat_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.heartbeat_timeout = timeout;
        self
    }

    /// Tasks the worker program must hold, with these types: a worker that lacks one, or holds
    /// it with other input or output types, fails the handshake ([`PoolError::MissingTasks`],
    /// [`PoolError::RegistryMismatch`]) instead of failing each task later.
    ///
    /// Tasks linked into this program with `#[polyloop::task]` are compared by type anyway; this
    /// is for a parent that names tasks by their [`TaskSpec`] alone and runs them in a separate
    /// [`worker_program`](Self::worker_program).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), polyloop_pool::PoolError> {
    /// use polyloop_wire::{TaskSchema, TaskSpec};
    ///
    /// #[derive(Clone, Copy)]
    /// struct Double; // implemented by the worker program
    /// impl TaskSpec for Double {
    ///     type Input = u64;
    ///     type Output = u64;
    ///     const NAME: &'static str = "worker::double";
    /// }
    ///
    /// let pool = polyloop_pool::Pool::builder()
    ///     .worker_program("target/release/my_worker")
    ///     .expect_tasks([TaskSchema::of::<Double>()])
    ///     .build()
    ///     .await?;
    /// # drop(pool); Ok(()) }
    /// ```
    pub fn expect_tasks(mut self, tasks: impl IntoIterator<Item = TaskSchema>) -> Self {
        self.config.expected.extend(tasks);
        self
    }

    /// Remembers a setting that cannot work, for `build` to refuse (the first one named).
    fn invalid(&mut self, why: &str) {
        self.invalid.get_or_insert_with(|| why.to_owned());
    }

    /// Starts the workers and waits until every one has answered the handshake.
    ///
    /// # Errors
    /// [`PoolError::InvalidConfig`] for a setting of zero processes, queues, threads or
    /// concurrency; otherwise whatever kept a worker from starting and answering.
    pub async fn build(self) -> Result<Pool, PoolError> {
        if let Some(why) = self.invalid {
            return Err(PoolError::InvalidConfig(why));
        }
        if let Some(msg) = self.init_error {
            return Err(PoolError::Io(std::io::Error::other(msg)));
        }
        Pool::start(self.config, self.scheduler).await
    }
}
