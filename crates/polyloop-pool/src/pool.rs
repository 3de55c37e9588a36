//! The pool: its shared state, task submission, `close` and `Drop`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use polyloop_wire::TaskSpec;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::builder::{Config, Drivers, PoolBuilder};
use crate::connection::connect;
use crate::error::Kind;
use crate::job::{RawResult, Reply, take};
use crate::runtime::{DriverRuntime, wait_here};
use crate::scheduler::Scheduler;
use crate::shared::Shared;
use crate::stats::PoolStats;
use crate::stream::{Inputs, MapStream, Order};
use crate::{PoolError, TaskError};

/// A pool of worker processes, each running its own tokio event loop.
///
/// Build one with [`Pool::builder`]. Every method that submits work returns at once; the work is
/// queued and runs as workers have room. [`Pool::close`] drains the queues and stops the
/// workers, [`Pool::terminate`] cancels what is left and stops them at once, and dropping the
/// pool's last clone without either kills and reaps them.
///
/// The drivers that feed the workers run on a thread the pool owns, `polyloop-driver`, so a pool
/// serves callers on any tokio runtime, one after another, and outlives the runtime that built
/// it: one pool may live in a `static` shared by `#[tokio::test]`s, each with a runtime of its
/// own. [`PoolBuilder::drivers_on_current_runtime`] trades that for a shorter round trip.
///
/// ```no_run
/// use polyloop_pool::Pool;
/// use tokio::sync::OnceCell;
///
/// static POOL: OnceCell<Pool> = OnceCell::const_new();
///
/// async fn pool() -> &'static Pool {
///     POOL.get_or_init(|| async { Pool::builder().build().await.expect("workers start") }).await
/// }
/// ```
///
/// Cloning a pool is cheap (an `Arc` clone) and every clone is the same pool, as with
/// `reqwest::Client`: hand clones to spawned tasks instead of wrapping the pool in an `Arc`.
/// [`close`](Pool::close) and [`terminate`](Pool::terminate) on any clone stop it for all;
/// the workers are killed and reaped when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
    owner: Arc<Owner>,
}

/// What the clones of a pool share beyond its state: the drivers, and the duty to stop them.
#[derive(Debug)]
struct Owner {
    shared: Arc<Shared>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
    /// Runs the drivers (the supervisors above), whatever runtime the callers are on; `None`
    /// when they run on the runtime that built the pool.
    runtime: Option<DriverRuntime>,
}

impl Pool {
    /// Starts configuring a pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    pub(crate) async fn start(
        config: Config,
        scheduler: Box<dyn Scheduler>,
    ) -> Result<Pool, PoolError> {
        if std::env::var_os(polyloop_wire::ENV_WORKER_FD).is_some() {
            return Err(PoolError::InsideUnstartedWorker);
        }
        let n_queues = config.queue_count.min(config.processes).max(1);
        // The sockets are registered with the runtime that connects them: the drivers' one.
        let (runtime, handle) = match config.drivers {
            Drivers::OwnThread => {
                let (runtime, handle) = DriverRuntime::start()?;
                (Some(runtime), handle)
            }
            Drivers::BuildingRuntime => {
                (None, tokio::runtime::Handle::try_current().map_err(|_| PoolError::NoRuntime)?)
            }
        };
        let mut connecting = tokio::task::JoinSet::new();
        for worker_idx in 0..config.processes {
            let config = config.clone();
            connecting.spawn_on(
                async move { (worker_idx, connect(&config, worker_idx, |_| {}).await) },
                &handle,
            );
        }
        let mut connections: Vec<_> = (0..config.processes).map(|_| None).collect();
        let mut failure = None;
        while let Some(joined) = connecting.join_next().await {
            match joined {
                Ok((worker_idx, Ok(conn))) => connections[worker_idx] = Some(conn),
                Ok((_, Err(err))) => failure = failure.or(Some(err)),
                Err(err) => failure = failure.or(Some(PoolError::Io(std::io::Error::other(err)))),
            }
        }
        if let Some(err) = failure {
            for conn in connections.into_iter().flatten() {
                conn.proc.kill_and_reap();
            }
            return Err(err);
        }
        let connections: Vec<_> = connections.into_iter().flatten().collect();
        let registry = Arc::clone(&connections[0].registry);
        let shared = Arc::new(Shared::new(config, scheduler, registry, n_queues));
        let supervisors = connections
            .into_iter()
            .enumerate()
            .map(|(worker_idx, conn)| {
                let seat = &shared.seats[worker_idx];
                seat.install(&conn.proc);
                seat.set_live(&shared.shards[seat.queue_idx], true);
                let supervisor =
                    crate::supervisor::supervise(Arc::clone(&shared), worker_idx, conn);
                match runtime {
                    Some(_) => handle.spawn(supervisor),
                    None => handle.spawn(watch_runtime(Arc::clone(&shared), supervisor)),
                }
            })
            .collect();
        let owner =
            Owner { shared: Arc::clone(&shared), supervisors: Mutex::new(supervisors), runtime };
        Ok(Pool { shared, owner: Arc::new(owner) })
    }

    /// Runs `task` on `input` in a worker; the returned handle resolves to its result.
    ///
    /// Dropping the handle before it resolves cancels the task in its worker.
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn double(x: u64) -> u64 { x * 2 }
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn nap(millis: u64) -> u64 {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    /// #     millis
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = Pool::builder().processes(2).build().await?;
    /// let handle = pool.submit(double, 21);
    /// println!("task {} queued", handle.id());
    /// assert_eq!(handle.await?, 42);
    /// # pool.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn submit<T: TaskSpec>(&self, _task: T, input: T::Input) -> TaskHandle<T::Output> {
        let id = self.shared.next_task_id();
        let (tx, rx) = oneshot::channel();
        match self.shared.check_task::<T>() {
            Ok(()) => {
                if let Some(job) = self.shared.make_job::<T>(&input, Reply::One(tx)) {
                    self.shared.enqueue(vec![job]);
                }
            }
            Err(err) => {
                let _ = tx.send(Err(err));
            }
        }
        TaskHandle {
            id,
            task: T::NAME,
            rx,
            shared: Arc::clone(&self.shared),
            done: false,
            _out: std::marker::PhantomData,
        }
    }

    /// Runs `task` on `input` in a worker and waits for its result.
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn double(x: u64) -> u64 { x * 2 }
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn nap(millis: u64) -> u64 {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    /// #     millis
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = Pool::builder().processes(2).build().await?;
    /// assert_eq!(pool.apply(double, 21).await?, 42);
    /// # pool.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn apply<T: TaskSpec>(
        &self,
        task: T,
        input: T::Input,
    ) -> Result<T::Output, TaskError> {
        self.submit(task, input).await
    }

    /// Runs `task` on every input and returns the outputs in input order, or the first error to
    /// arrive, as soon as it arrives (the tasks still running are then cancelled).
    ///
    /// Inputs are pulled lazily: memory stays bounded however long the iterator is.
    ///
    /// ```
    /// # use polyloop_macros::task;
    /// # use polyloop_pool::{Pool, TaskError};
    /// #[task(crate = "polyloop_child")] // `#[polyloop::task]` through the facade
    /// async fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder().processes(2).build().await?;
    /// let squares = pool.map(square, 0..1000u64).await?;
    /// assert_eq!(squares[999], 998_001);
    /// pool.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn map<T, I>(&self, task: T, inputs: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: TaskSpec,
        I: IntoIterator<Item = T::Input>,
    {
        let mut stream = self.map_stream(task, inputs).fail_fast();
        // Sized by the input's hint, but never beyond what the window lets through at once.
        let mut outputs =
            Vec::with_capacity(stream.size_hint_lower().min(stream.window() as usize));
        while let Some(result) =
            std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next_item(cx)).await
        {
            outputs.push(result?);
            // The rest of the part it came from, if any, without a poll each.
            stream.drain_part_into(&mut outputs)?;
        }
        Ok(outputs)
    }

    /// Runs `task` on every input; the stream yields the results in input order.
    ///
    /// Inputs may be any `IntoIterator`, or a `Stream` wrapped in [`from_stream`](crate::from_stream).
    /// Inputs are pulled only a bounded distance ahead of what the stream has yielded. Dropping
    /// the stream cancels the tasks still running.
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn double(x: u64) -> u64 { x * 2 }
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn nap(millis: u64) -> u64 {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    /// #     millis
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = Pool::builder().processes(2).build().await?;
    /// let mut doubled = pool.map_stream(double, 0..100u64);
    /// let mut expected = 0;
    /// while let Some(result) = doubled.next().await {
    ///     assert_eq!(result?, expected);
    ///     expected += 2;
    /// }
    /// # pool.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn map_stream<T, I>(&self, task: T, inputs: I) -> MapStream<T, I::Source>
    where
        T: TaskSpec,
        I: Inputs<T::Input>,
    {
        MapStream::new(task, Arc::clone(&self.shared), inputs.into_source(), Order::Ordered)
    }

    /// Runs `task` on every input; the stream yields each result as soon as it is ready.
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn double(x: u64) -> u64 { x * 2 }
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn nap(millis: u64) -> u64 {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    /// #     millis
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = Pool::builder().processes(2).build().await?;
    /// // The short naps come back first.
    /// let mut naps = pool.map_unordered(nap, [300, 1, 2]);
    /// let first = naps.next().await.expect("three results")?;
    /// assert!(first < 300);
    /// # pool.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn map_unordered<T, I>(&self, task: T, inputs: I) -> MapStream<T, I::Source>
    where
        T: TaskSpec,
        I: Inputs<T::Input>,
    {
        MapStream::new(task, Arc::clone(&self.shared), inputs.into_source(), Order::Unordered)
    }

    /// A snapshot of every worker's counters.
    ///
    /// Drivers publish their counts once per wake-up, before they hand that wake-up's results
    /// over: a task whose result its caller has is counted here. Once [`close`](Pool::close) has
    /// returned, the counts are final.
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn double(x: u64) -> u64 { x * 2 }
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn nap(millis: u64) -> u64 {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    /// #     millis
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = Pool::builder().processes(2).build().await?;
    /// pool.map(double, 0..1000u64).await?;
    /// let stats = pool.stats();
    /// let done: u64 = stats.workers.iter().map(|worker| worker.tasks_done).sum();
    /// assert_eq!(done, 1000);
    /// for worker in &stats.workers {
    ///     println!("worker {} (pid {}): {} tasks", worker.worker_idx, worker.pid, worker.tasks_done);
    /// }
    /// # pool.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> PoolStats {
        let workers = self
            .shared
            .seats
            .iter()
            .enumerate()
            .map(|(worker_idx, seat)| {
                // Once closing, a seat without a worker is done, not restarting.
                let restarting = !seat.is_live() && !self.shared.is_closing();
                seat.counters.snapshot(worker_idx, seat.queue_idx, restarting)
            })
            .collect();
        let queued = self.shared.shards.iter().map(|shard| shard.queue.len()).sum();
        PoolStats { workers, queued }
    }

    /// Number of worker seats.
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn double(x: u64) -> u64 { x * 2 }
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn nap(millis: u64) -> u64 {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    /// #     millis
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = Pool::builder().processes(2).build().await?;
    /// assert_eq!(pool.processes(), 2);
    /// # pool.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn processes(&self) -> usize {
        self.shared.seats.len()
    }

    /// Stops accepting tasks, waits for every queued and running task to finish, then shuts the
    /// workers down and reaps them, and stops the pool's driver thread. Tasks submitted after
    /// `close` began fail with [`TaskError::is_pool_closed`].
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn double(x: u64) -> u64 { x * 2 }
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn nap(millis: u64) -> u64 {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    /// #     millis
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = Pool::builder().processes(2).build().await?;
    /// let doubled = pool.submit(double, 21);
    /// pool.close().await?; // waits for the task, then stops the workers
    /// assert_eq!(doubled.await?, 42);
    /// assert!(pool.apply(double, 1).await.unwrap_err().is_pool_closed());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(&self) -> Result<(), PoolError> {
        self.shared.close_and_drain().await;
        let supervisors = self.owner.take_supervisors();
        // Every supervisor is awaited (its workers reaped) before an error is reported.
        let mut failure = None;
        for supervisor in supervisors {
            if let Err(err) = supervisor.await {
                failure.get_or_insert(PoolError::Io(std::io::Error::other(err)));
            }
        }
        if self.shared.runtime_gone() {
            // The drivers went with their runtime and their workers saw the end of the stream.
            self.shared.kill_workers();
            return Err(PoolError::RuntimeGone);
        }
        if let Some(runtime) = &self.owner.runtime {
            runtime.shut_down().await;
        }
        failure.map_or(Ok(()), Err)
    }

    /// Stops the pool now, the explicit counterpart of [`close`](Pool::close): queued and
    /// running tasks are cancelled (each resolves with [`TaskError::is_cancelled`]), the
    /// workers are killed and reaped, and the pool's driver thread stops. Tasks submitted
    /// afterwards fail with [`TaskError::is_pool_closed`].
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn double(x: u64) -> u64 { x * 2 }
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn nap(millis: u64) -> u64 {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    /// #     millis
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = Pool::builder().processes(2).build().await?;
    /// let slow = pool.submit(nap, 600_000);
    /// // Enough: whatever still runs is cancelled and the workers are gone when this returns.
    /// pool.terminate().await;
    /// assert!(slow.await.unwrap_err().is_cancelled());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn terminate(&self) {
        const WHY: &str = "the pool was terminated";
        self.shared.begin_stop(WHY);
        let supervisors = self.owner.take_supervisors();
        for supervisor in &supervisors {
            supervisor.abort();
        }
        // An aborted driver resolves the tasks it held as cancelled before its handle resolves;
        // waiting for that keeps it from seeing its worker die and failing them as lost.
        for supervisor in supervisors {
            let _ = supervisor.await;
        }
        self.shared.kill_workers();
        self.shared.close_queues(Kind::Cancelled, WHY);
        if let Some(runtime) = &self.owner.runtime {
            runtime.shut_down().await;
        }
    }
}

impl Owner {
    fn take_supervisors(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.supervisors.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for Owner {
    /// Kills and reaps every worker before it returns, from any thread, inside a runtime or not.
    fn drop(&mut self) {
        self.shared.begin_stop(crate::shared::DROPPED);
        let supervisors =
            std::mem::take(self.supervisors.get_mut().unwrap_or_else(PoisonError::into_inner));
        for supervisor in &supervisors {
            supervisor.abort();
        }
        // An aborted task is dropped on the driver thread (a driver resolves the tasks it held
        // as cancelled) before its handle resolves. Waiting for that before killing any worker
        // keeps a driver from seeing its worker die and failing its tasks as lost instead. (On
        // the runtime that built the pool, this thread may be the one that would drop them.)
        if let Some(runtime) = &self.runtime
            && !runtime.on_driver_thread()
        {
            for supervisor in supervisors {
                let _ = wait_here(supervisor);
            }
        }
        self.shared.kill_workers();
        self.shared.close_queues(Kind::Cancelled, crate::shared::DROPPED);
        // No worker is left for its blocking threads to wait for, so this returns promptly.
        if let Some(runtime) = &self.runtime {
            runtime.stop();
        }
    }
}

/// Runs a supervisor on the runtime that built the pool. If that runtime shuts down under it,
/// the pool fails what waits, and whatever is submitted later, rather than let it hang.
async fn watch_runtime(shared: Arc<Shared>, supervisor: impl Future<Output = ()>) {
    let mut watch = RuntimeWatch { shared, running: true };
    supervisor.await;
    watch.running = false;
}

/// See [`watch_runtime`].
struct RuntimeWatch {
    shared: Arc<Shared>,
    running: bool,
}

impl Drop for RuntimeWatch {
    /// Dropped while its supervisor runs: the runtime shut down, or the pool was dropped (which
    /// fails what waits itself).
    fn drop(&mut self) {
        if self.running && !self.shared.is_dropped() {
            self.shared.handle_runtime_gone();
        }
    }
}

/// A task submitted with [`Pool::submit`]: a future of its result.
///
/// Dropping it before it resolves cancels the task in its worker.
pub struct TaskHandle<O> {
    id: u64,
    task: &'static str,
    rx: oneshot::Receiver<RawResult>,
    shared: Arc<Shared>,
    done: bool,
    _out: std::marker::PhantomData<fn() -> O>,
}

impl<O> std::fmt::Debug for TaskHandle<O> {
    /// The task and its id, not the pool it belongs to.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("task", &self.task)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<O> TaskHandle<O> {
    /// An id unique among the tasks of this pool.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the task has resolved: awaiting the handle would return at once.
    pub fn is_finished(&self) -> bool {
        self.done || !self.rx.is_empty()
    }

    /// Waits for the result at most `limit`, counted from this call (time in the queue
    /// included); past it, the task is cancelled in its worker and this returns an error with
    /// [`TaskError::is_timeout`]. A per-call limit beside the pool-wide
    /// [`task_timeout`](crate::PoolBuilder::task_timeout), which counts from when a worker starts
    /// the task and also reaches a task that blocks its thread. Await it on a tokio runtime with
    /// time enabled (as `#[tokio::main]` and `#[polyloop::main]` build).
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn double(x: u64) -> u64 { x * 2 }
    /// # #[polyloop_macros::task(crate = "polyloop_child")]
    /// # async fn nap(millis: u64) -> u64 {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    /// #     millis
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = Pool::builder().processes(2).build().await?;
    /// use std::time::Duration;
    ///
    /// match pool.submit(nap, 60_000).timeout(Duration::from_millis(100)).await {
    ///     Ok(output) => println!("{output}"),
    ///     Err(err) if err.is_timeout() => println!("too slow, and cancelled"),
    ///     Err(err) => return Err(err.into()),
    /// }
    /// # pool.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn timeout(mut self, limit: std::time::Duration) -> Result<O, TaskError>
    where
        O: serde::de::DeserializeOwned + 'static,
    {
        match tokio::time::timeout(limit, &mut self).await {
            Ok(result) => result,
            Err(_) => {
                let task = self.task;
                // Dropped unresolved: cancelled in its worker.
                drop(self);
                let why = format!("no result within {limit:?}, and cancelled");
                Err(TaskError::new(Kind::Timeout, task, why))
            }
        }
    }
}

impl<O: serde::de::DeserializeOwned + 'static> Future for TaskHandle<O> {
    type Output = Result<O, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let raw = match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(raw)) => raw,
            Poll::Ready(Err(_)) => {
                Err(TaskError::new(Kind::Cancelled, self.task, crate::shared::DROPPED))
            }
        };
        self.done = true;
        Poll::Ready(take(self.task, raw, self.shared.config.max_nesting))
    }
}

impl<O> Drop for TaskHandle<O> {
    fn drop(&mut self) {
        if !self.done {
            self.rx.close();
            self.shared.sweep();
        }
    }
}

/// Why [`spawn`] did not return a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The worker process could not be started.
    #[error(transparent)]
    Start(#[from] PoolError),
    /// The task failed.
    #[error(transparent)]
    Task(#[from] TaskError),
}

/// Runs one task in a fresh worker process, then stops and reaps the process.
///
/// Like aiomultiprocess's `Worker`: for a one-off job that should not share a process.
pub async fn spawn<T: TaskSpec>(task: T, input: T::Input) -> Result<T::Output, SpawnError> {
    let pool = Pool::builder().processes(1).child_concurrency(1).build().await?;
    let result = pool.apply(task, input).await;
    pool.close().await?;
    Ok(result?)
}
