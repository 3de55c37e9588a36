//! The worker loop: handshake, then run tasks as they arrive and send results back in batches.

use std::collections::HashMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use polyloop_wire::{
    ChunkFrame, ChunkInputs, FrameBuffer, Hello, Limits, Outcome, PROTOCOL_VERSION, RemoteError,
    Retry, RuntimeFlavor, TaskFrame, ToChild, ToParent, Welcome, WireError, WorkerConfig,
    WorkerExit, decode_to_child, encode_frame,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::Registry;
use crate::attempt::with_attempt;
use crate::chunk::{Finished, Parts};
use crate::outbox::{Outbox, Taken};
use crate::panic::CatchUnwind;
use crate::registry::{Failure, InlineRun, RunningTask, Stopped, TaskEntry};

/// How long the reader may run tasks' first polls back to back before it lets the writer (and
/// the other tasks) run.
const YIELD_AFTER: Duration = Duration::from_micros(500);

/// A clock for [`YIELD_AFTER`], read once per task: on Linux the coarse monotonic clock (a few
/// nanoseconds to read, a few milliseconds of resolution, which is plenty to notice a task that
/// held the thread), elsewhere `Instant`.
fn coarse_now() -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid timespec to write to, and a clock id every Linux has.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) } == 0 {
            return Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Why a worker loop stopped other than by an orderly shutdown or the parent going away.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Reading from or writing to the parent failed.
    #[error("i/o with the parent failed")]
    Io(#[from] std::io::Error),
    /// The parent sent bytes that are not a valid message.
    #[error("the parent sent an invalid frame")]
    Wire(#[from] WireError),
    /// The initializer failed; the parent was told why.
    #[error("the initializer failed: {0}")]
    Initializer(RemoteError),
    /// A variable the parent sets for its workers is malformed.
    #[error("{0}")]
    Environment(String),
    /// A descriptor the parent named is not an open socket.
    #[error("{0}")]
    Socket(String),
    /// This process's parent is not the one that started it as a worker: that one has exited.
    #[error(
        "the pool's process {parent} exited before this worker started (its parent is now {actual})"
    )]
    Orphaned {
        /// The pid the parent announced.
        parent: i32,
        /// This process's parent now.
        actual: i32,
    },
    /// The parent sent no Welcome in time.
    #[error("the parent sent no Welcome within {0:?}")]
    NoWelcome(Duration),
}

impl WorkerError {
    /// The exit status a worker process ends with after this error.
    pub fn exit(&self) -> WorkerExit {
        match self {
            WorkerError::Io(_) | WorkerError::Wire(_) => WorkerExit::Failed,
            WorkerError::Initializer(_) => WorkerExit::InitializerFailed,
            WorkerError::Environment(_) => WorkerExit::BadEnvironment,
            WorkerError::Socket(_) => WorkerExit::BadSocket,
            WorkerError::Orphaned { .. } => WorkerExit::Orphaned,
            WorkerError::NoWelcome(_) => WorkerExit::NoWelcome,
        }
    }
}

/// Serves one parent over `io` until it sends `Shutdown` (after which the tasks in flight finish
/// and their results are sent) or goes away (after which the tasks in flight are dropped).
///
/// Tasks are spawned on the ambient tokio runtime, so they must be `Send`.
pub async fn serve<S>(io: S, registry: Registry) -> Result<(), WorkerError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let mut frames = FrameBuffer::new(Limits::HANDSHAKE);
    let welcome = match read_welcome(&mut reader, &mut frames).await? {
        Welcomed::Welcome(welcome) => welcome,
        Welcomed::ParentGone => return Ok(()),
        Welcomed::VersionMismatch(err) => {
            let mut writer = writer;
            refuse(&mut writer).await?;
            return Err(err.into());
        }
    };
    serve_welcomed(reader, writer, frames, registry, welcome).await
}

/// What the first frame from the parent said.
#[derive(Debug)]
pub(crate) enum Welcomed {
    Welcome(Welcome),
    ParentGone,
    VersionMismatch(WireError),
}

/// Reads the parent's first frame.
pub(crate) async fn read_welcome<R: AsyncRead + Unpin>(
    reader: &mut R,
    frames: &mut FrameBuffer,
) -> Result<Welcomed, WorkerError> {
    if !fill_frame(reader, frames).await? {
        return Ok(Welcomed::ParentGone);
    }
    let payload = frames.next_frame()?.ok_or(WireError::Unexpected("a truncated frame"))?;
    parse_welcome(payload)
}

pub(crate) fn parse_welcome(payload: &[u8]) -> Result<Welcomed, WorkerError> {
    match decode_to_child(payload, &Limits::default()) {
        Ok(ToChild::Welcome(welcome)) => Ok(Welcomed::Welcome(welcome)),
        Ok(_) => Err(WireError::Unexpected("a message before the handshake").into()),
        Err(err @ WireError::VersionMismatch { .. }) => Ok(Welcomed::VersionMismatch(err)),
        Err(err) => Err(err.into()),
    }
}

/// Answers a Welcome of another protocol version with our own version, so the parent can say
/// which two versions disagree.
pub(crate) async fn refuse<W: AsyncWrite + Unpin>(writer: &mut W) -> Result<(), WorkerError> {
    let mut out = Vec::new();
    encode_frame(&ToParent::Hello(hello(Vec::new(), None)), &mut out, &Limits::default())?;
    writer.write_all(&out).await?;
    writer.flush().await?;
    Ok(())
}

fn hello(tasks: Vec<polyloop_wire::TaskInfo>, init_error: Option<RemoteError>) -> Hello {
    Hello { protocol_version: PROTOCOL_VERSION, pid: std::process::id(), tasks, init_error }
}

/// The registry this process serves, for the built-in fold, which runs tasks by index.
static SERVING: Mutex<Option<Registry>> = Mutex::new(None);

/// The registry the worker in this process serves, once it has been welcomed.
pub(crate) fn serving_registry() -> Option<Registry> {
    *SERVING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The seat this process serves, `usize::MAX` before a Welcome.
static WORKER_INDEX: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Which of its pool's workers this process is: from 0 to the pool's process count less one.
/// A worker started in place of one that died or was recycled has the index of the one it
/// replaces, so the index can shard work (a file per worker, a connection per worker). `None`
/// outside a worker, e.g. when a task is run in the parent with `task::call`.
///
/// ```
/// // In a task's body (`polyloop::worker_index` through the facade):
/// let log = format!("part-{}.log", polyloop_child::worker_index().unwrap_or_default());
/// # assert_eq!(log, "part-0.log");
/// ```
pub fn worker_index() -> Option<usize> {
    let index = WORKER_INDEX.load(Ordering::Relaxed);
    (index != usize::MAX).then_some(index)
}

/// The rest of [`serve`], once the Welcome is known (the process bootstrap reads it before it
/// builds the runtime the Welcome asks for).
pub(crate) async fn serve_welcomed<R, W>(
    mut reader: R,
    mut writer: W,
    mut frames: FrameBuffer,
    registry: Registry,
    welcome: Welcome,
) -> Result<(), WorkerError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let config = &welcome.config;
    WORKER_INDEX.store(config.worker_idx as usize, Ordering::Relaxed);
    *SERVING.lock().unwrap_or_else(PoisonError::into_inner) = Some(registry);
    let limits =
        Limits { max_frame_len: config.max_frame_len, max_batch_len: config.max_batch_len };
    frames.set_limits(limits);
    answer_welcome(&mut writer, &registry, &welcome, &limits).await?;

    let mut worker = Worker::new(registry, config, limits);
    let writer_task = tokio::spawn(write_results(writer, Arc::clone(&worker.shared), limits));
    loop {
        if !fill_frame(&mut reader, &mut frames).await? {
            // The parent is gone: nobody wants the results, so drop the tasks now.
            worker.shared.abort_all();
            writer_task.abort();
            return Ok(());
        }
        while let Some(payload) = frames.next_frame()? {
            if worker.handle(decode_to_child(payload, &limits)?).await?.is_break() {
                // Shutdown: the writer ends once the tasks in flight have answered.
                return writer_task
                    .await
                    .unwrap_or_else(|err| Err(std::io::Error::other(err).into()));
            }
        }
    }
}

/// Runs the initializer the Welcome names, if any, and answers with a Hello that says how it
/// went; an initializer that failed stops the worker once the parent knows why.
async fn answer_welcome<W: AsyncWrite + Unpin>(
    writer: &mut W,
    registry: &Registry,
    welcome: &Welcome,
    limits: &Limits,
) -> Result<(), WorkerError> {
    let init_error = match &welcome.initializer {
        Some(init) => run_initializer(registry, init, welcome.config.max_nesting).await.err(),
        None => None,
    };
    let mut out = Vec::new();
    encode_frame(&ToParent::Hello(hello(registry.infos(), init_error.clone())), &mut out, limits)?;
    writer.write_all(&out).await?;
    writer.flush().await?;
    match init_error {
        Some(err) => Err(WorkerError::Initializer(err)),
        None => Ok(()),
    }
}

/// A task's future, wrapped to catch its panics.
type Caught = CatchUnwind<crate::TaskFuture>;

/// What the reader needs to answer the parent's messages after the handshake: one `handle_*`
/// method per [`ToChild`] message, called in the order the messages arrive.
struct Worker {
    registry: Registry,
    max_nesting: u32,
    timeout: Option<Duration>,
    /// On one thread a task's first poll costs the same wherever it runs, so run it on the
    /// reader; on a multi-threaded runtime that would serialize tasks other threads could run.
    inline_first_poll: bool,
    limits: Limits,
    shared: Arc<Shared>,
    /// One per task (or chunk) that may run at once.
    permits: Arc<Semaphore>,
    /// The parent gives every task an id above the one before, so a repeated id is a broken
    /// parent: running the task twice would answer it twice.
    last_id: Option<u64>,
    /// The attempts of the retried tasks in the next `Tasks` or `Chunk` message, by id (empty
    /// unless a worker was lost).
    attempts: HashMap<u64, u32>,
}

impl Worker {
    /// Answers one message; `Break` after `Shutdown`, when the reader stops.
    async fn handle(&mut self, msg: ToChild<'_>) -> Result<ControlFlow<()>, WorkerError> {
        match msg {
            ToChild::Tasks(tasks) => self.handle_tasks(tasks).await?,
            ToChild::Chunk(chunk) => self.handle_chunk(chunk).await?,
            ToChild::Cancel(ids) => self.handle_cancel(ids),
            ToChild::Retry(retry) => self.handle_retry(retry)?,
            ToChild::Shutdown => {
                self.handle_shutdown();
                return Ok(ControlFlow::Break(()));
            }
            ToChild::Welcome(_) => return Err(WireError::Unexpected("a second handshake").into()),
        }
        Ok(ControlFlow::Continue(()))
    }

    fn new(registry: Registry, config: &WorkerConfig, limits: Limits) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                outbox: Outbox::new(limits),
                running: HashMap::new(),
                shutting_down: false,
            }),
            wake_writer: Notify::new(),
        });
        Worker {
            registry,
            max_nesting: config.max_nesting,
            timeout: config.task_timeout_ms.map(Duration::from_millis),
            inline_first_poll: config.runtime == RuntimeFlavor::CurrentThread,
            limits,
            shared,
            permits: Arc::new(Semaphore::new(config.child_concurrency.max(1) as usize)),
            last_id: None,
            attempts: HashMap::new(),
        }
    }

    /// Starts a batch of tasks in order. On a current-thread runtime each gets its first poll
    /// here while a permit is free, and one that finishes there is answered without a task of
    /// its own; every other is spawned.
    async fn handle_tasks(&mut self, tasks: Vec<TaskFrame<'_>>) -> Result<(), WorkerError> {
        let waker = current_waker().await;
        let mut last_yield = coarse_now();
        for task in tasks {
            self.check_id(task.id)?;
            let Some(caught) = self.start_task(&task) else { continue };
            // A first poll that finishes needs no permit of its own: it ran while one was free
            // and holds none afterwards.
            let inline = self.inline_first_poll && self.permits.available_permits() > 0;
            let pending =
                if inline { self.poll_first(task.id, caught, &waker) } else { Some(caught) };
            match pending {
                Some(caught) => self.spawn_task(task.id, caught),
                // A long first poll (CPU-bound work) holds the thread: let the writer send what
                // is done before the next one starts.
                None if coarse_now().saturating_sub(last_yield) > YIELD_AFTER => {
                    tokio::task::yield_now().await;
                    last_yield = coarse_now();
                }
                None => {}
            }
        }
        self.attempts.clear();
        Ok(())
    }

    /// Starts a chunk's inputs in order (see [`start_chunk`]), once all of them read.
    async fn handle_chunk(&mut self, chunk: ChunkFrame<'_>) -> Result<(), WorkerError> {
        self.check_id(chunk.id)?;
        let attempt = self.attempt_of(chunk.id);
        self.attempts.clear();
        let Some(entry) = self.registry.entry(chunk.task) else {
            self.shared.push(chunk.id, &Outcome::UnknownTask(chunk.task));
            return Ok(());
        };
        // Checked whole before any of it runs: a malformed chunk is a broken parent.
        if let Some(Err(err)) = ChunkInputs::new(chunk.inputs, chunk.count).find(Result::is_err) {
            return Err(err.into());
        }
        let run = ChunkRun {
            entry,
            max_nesting: self.max_nesting,
            timeout: self.timeout,
            parts: Parts::new(self.limits.max_frame_len),
            attempt,
        };
        // The inline runner polls the inputs' futures unwrapped: a retry's must see its attempt.
        let inline = self.inline_first_poll && self.permits.available_permits() > 0 && attempt == 1;
        start_chunk(chunk, run, inline, &self.shared, &self.permits).await;
        Ok(())
    }

    /// Aborts the tasks (and chunks) named that still run and answers each `Cancelled`; ids
    /// that already answered are ignored.
    fn handle_cancel(&self, ids: Vec<u64>) {
        let mut state = self.shared.lock();
        for id in ids {
            if let Some(handle) = state.running.remove(&id) {
                handle.abort();
                self.shared.push_locked(&mut state, id, &Outcome::Cancelled);
            }
        }
    }

    /// Tells the writer to stop once the tasks in flight have answered and it wrote everything.
    fn handle_shutdown(&self) {
        self.shared.lock().shutting_down = true;
        self.shared.wake_writer.notify_one();
    }

    /// Notes that the task or chunk `retry.id`, in the next message, is a retry.
    fn handle_retry(&mut self, retry: Retry) -> Result<(), WorkerError> {
        if self.attempts.len() >= self.limits.max_batch_len as usize {
            return Err(WireError::Unexpected("more retries than a batch holds tasks").into());
        }
        self.attempts.insert(retry.id, retry.attempt);
        Ok(())
    }

    /// Which attempt task (or chunk) `id` is.
    fn attempt_of(&self, id: u64) -> u32 {
        if self.attempts.is_empty() {
            return 1;
        }
        self.attempts.get(&id).copied().unwrap_or(1)
    }

    /// Refuses an id not above the last one.
    fn check_id(&mut self, id: u64) -> Result<(), WorkerError> {
        if self.last_id.is_some_and(|last| id <= last) {
            return Err(WireError::Unexpected("a task id not above the last").into());
        }
        self.last_id = Some(id);
        Ok(())
    }

    /// Decodes and starts one task; `None` if it could not start (its outcome is queued).
    fn start_task(&self, task: &TaskFrame<'_>) -> Option<Caught> {
        let started = match self.registry.entry(task.task) {
            None => Err(Outcome::UnknownTask(task.task)),
            Some(entry) => (entry.run)(task.input, self.max_nesting)
                .map(|future| with_attempt(future, self.attempt_of(task.id)))
                .map_err(Outcome::Serialization),
        };
        match started {
            Ok(future) => Some(CatchUnwind::new(future)),
            Err(outcome) => {
                self.shared.push(task.id, &outcome);
                None
            }
        }
    }

    /// Polls task `id` once on the reader: most short tasks finish on their first poll, and then
    /// need no task of their own, so its result is queued here. One that does not is handed back
    /// to be spawned, and its first poll there registers its own waker.
    fn poll_first(&self, id: u64, mut caught: Caught, waker: &Waker) -> Option<Caught> {
        // The context lives in this function only: it must not live across the reader's yield.
        match Pin::new(&mut caught).poll(&mut Context::from_waker(waker)) {
            Poll::Ready(result) => {
                let task_ref = caught.get_ref().as_ref().get_ref();
                self.shared.push_result(&mut self.shared.lock(), id, task_ref, result);
                None
            }
            Poll::Pending => Some(caught),
        }
    }

    /// Runs task `id` in a tokio task of its own, under a permit, with the timeout.
    fn spawn_task(&self, id: u64, caught: Caught) {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok();
        let mut state = self.shared.lock();
        let handle = tokio::spawn(run_one(
            id,
            caught,
            permit,
            Arc::clone(&self.shared),
            Arc::clone(&self.permits),
            self.timeout,
        ));
        // Inserted under the lock the task needs to report, so its result always finds its
        // entry.
        state.running.insert(id, handle.abort_handle());
    }
}

/// The waker of the task that awaits this, to poll futures with on its behalf.
async fn current_waker() -> Waker {
    std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
}

async fn run_initializer(
    registry: &Registry,
    init: &polyloop_wire::InitTask,
    max_nesting: u32,
) -> Result<(), RemoteError> {
    let entry = registry.find(&init.name).ok_or_else(|| {
        RemoteError::from_display(&format_args!(
            "the initializer task `{}` is not registered in this worker",
            init.name
        ))
    })?;
    if (entry.fingerprint)() != init.fingerprint {
        return Err(RemoteError::from_display(&format_args!(
            "the initializer task `{}` has other input or output types in this worker",
            init.name
        )));
    }
    let future =
        (entry.run)(&init.input, max_nesting).map_err(|msg| RemoteError::from_display(&msg))?;
    match CatchUnwind::new(future).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(failure)) => Err(match failure {
            Failure::Failed(err) => err,
            Failure::Serialization(msg) => RemoteError::from_display(&msg),
        }),
        Err(panic) => {
            Err(RemoteError::from_display(&format_args!("the initializer panicked: {panic}")))
        }
    }
}

async fn run_one(
    id: u64,
    mut caught: CatchUnwind<crate::TaskFuture>,
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    timeout: Option<Duration>,
) {
    // The semaphore is never closed, so acquiring only waits.
    let _permit = match permit {
        Some(permit) => Some(permit),
        None => permits.acquire_owned().await.ok(),
    };
    let result = match timeout {
        Some(limit) => tokio::time::timeout(limit, &mut caught).await.ok(),
        None => Some((&mut caught).await),
    };
    let mut state = shared.lock();
    // Only if it was not cancelled meanwhile: the canceller reported it.
    if state.running.remove(&id).is_none() {
        return;
    }
    match result {
        None => shared.push_locked(&mut state, id, &Outcome::TimedOut),
        Some(result) => {
            shared.push_result(&mut state, id, caught.get_ref().as_ref().get_ref(), result)
        }
    }
}

/// What running a chunk needs besides its inputs.
struct ChunkRun {
    entry: &'static TaskEntry,
    max_nesting: u32,
    timeout: Option<Duration>,
    parts: Parts,
    /// Which attempt every input of the chunk is.
    attempt: u32,
}

impl ChunkRun {
    /// Decodes and starts one input's task; `None` if it could not start (its outcome says why).
    fn start(&mut self, input: &[u8]) -> Option<CatchUnwind<crate::TaskFuture>> {
        match (self.entry.run)(input, self.max_nesting) {
            Ok(future) => Some(CatchUnwind::new(with_attempt(future, self.attempt))),
            Err(msg) => {
                self.parts.push(&Outcome::Serialization(msg));
                None
            }
        }
    }

    /// Sends the parts made so far for chunk `id`, unless it was cancelled (then `false`).
    fn send_parts(&mut self, shared: &Shared, id: u64, registered: bool) -> bool {
        let mut state = shared.lock();
        if registered && !state.running.contains_key(&id) {
            return false;
        }
        for part in self.parts.take() {
            shared.push_locked(&mut state, id, &Outcome::Part(&part));
        }
        true
    }
}

/// Runs a chunk's inputs in order. On the reader (`inline`) for as long as each finishes on its
/// first poll, as single tasks do; the rest, from the first input that has to wait, in a task of
/// its own that holds one concurrency permit for the chunk.
async fn start_chunk(
    chunk: ChunkFrame<'_>,
    mut run: ChunkRun,
    inline: bool,
    shared: &Arc<Shared>,
    permits: &Arc<Semaphore>,
) {
    let mut inputs = ChunkInputs::new(chunk.inputs, chunk.count);
    let mut waiting = None;
    if inline {
        let waker = current_waker().await;
        loop {
            // In a block: nothing of it may live across the yield.
            let stopped = {
                let last_yield = coarse_now();
                let mut must_yield = || coarse_now().saturating_sub(last_yield) > YIELD_AFTER;
                (run.entry.run_inline)(&mut InlineRun {
                    inputs: &mut inputs,
                    parts: &mut run.parts,
                    max_nesting: run.max_nesting,
                    waker: &waker,
                    must_yield: &mut must_yield,
                })
            };
            match stopped {
                Stopped::Done => break,
                Stopped::Pending(caught) => {
                    waiting = Some(caught);
                    break;
                }
                Stopped::Yield => {
                    run.send_parts(shared, chunk.id, false);
                    tokio::task::yield_now().await;
                }
            }
        }
        run.send_parts(shared, chunk.id, false);
        if waiting.is_none() && inputs.left() == 0 {
            return;
        }
    }
    // What is left runs on its own; its inputs are copied out of the frame.
    let (rest, left) = (inputs.rest().to_vec(), inputs.left());
    let permit = Arc::clone(permits).try_acquire_owned().ok();
    let mut state = shared.lock();
    let handle = tokio::spawn(run_chunk(
        chunk.id,
        run,
        waiting,
        (rest, left),
        permit,
        Arc::clone(shared),
        Arc::clone(permits),
    ));
    // Inserted under the lock the chunk needs to report, so its parts always find its entry.
    state.running.insert(chunk.id, handle.abort_handle());
}

/// Runs the rest of a chunk: the input that was waiting (if any), then `rest`'s `left` inputs.
async fn run_chunk(
    id: u64,
    mut run: ChunkRun,
    waiting: Option<CatchUnwind<crate::TaskFuture>>,
    (rest, left): (Vec<u8>, u32),
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
) {
    // The semaphore is never closed, so acquiring only waits.
    let _permit = match permit {
        Some(permit) => Some(permit),
        None => permits.acquire_owned().await.ok(),
    };
    let timeout = run.timeout;
    let mut last_yield = coarse_now();
    let mut inputs = ChunkInputs::new(&rest, left);
    let mut next = waiting;
    loop {
        let mut caught = match next.take() {
            Some(caught) => caught,
            // Checked by the reader: every input reads.
            None => match inputs.next() {
                Some(Ok(input)) => match run.start(input) {
                    Some(caught) => caught,
                    None => continue,
                },
                _ => break,
            },
        };
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut caught).poll(cx))).await;
        let finished = match polled {
            Poll::Ready(finished) => Some(finished),
            Poll::Pending => {
                // Send what is done before waiting on this one.
                if !run.send_parts(&shared, id, true) {
                    return;
                }
                match timeout {
                    Some(limit) => tokio::time::timeout(limit, &mut caught).await.ok(),
                    None => Some((&mut caught).await),
                }
            }
        };
        match finished {
            Some(finished) => {
                run.parts.push_finished(caught.get_ref().as_ref().get_ref(), finished)
            }
            None => run.parts.push(&Outcome::TimedOut),
        }
        if coarse_now().saturating_sub(last_yield) > YIELD_AFTER {
            if !run.send_parts(&shared, id, true) {
                return;
            }
            tokio::task::yield_now().await;
            last_yield = coarse_now();
        }
    }
    let mut state = shared.lock();
    // Only if it was not cancelled meanwhile: the canceller reported it.
    if state.running.remove(&id).is_none() {
        return;
    }
    for part in run.parts.take() {
        shared.push_locked(&mut state, id, &Outcome::Part(&part));
    }
}

/// State shared by the reader, the tasks and the writer.
struct Shared {
    state: Mutex<State>,
    /// Woken by the first result after the writer took the outbox (see [`Outbox::push`]), and by
    /// `Shutdown`.
    wake_writer: Notify,
}

struct State {
    /// Results not yet written.
    outbox: Outbox,
    /// Tasks started and not yet reported.
    running: HashMap<u64, AbortHandle>,
    shutting_down: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held, but if one did the state is still valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a finished task's result (see [`Outbox::push_result`]), waking the writer if it
    /// sleeps.
    fn push_result(
        &self,
        state: &mut State,
        id: u64,
        output: &dyn RunningTask,
        finished: Finished,
    ) {
        if state.outbox.push_result(id, output, finished) {
            self.wake_writer.notify_one();
        }
    }

    /// Queues one result for the writer, waking it if it sleeps.
    fn push_locked(&self, state: &mut State, id: u64, outcome: &Outcome<'_>) {
        if state.outbox.push(id, outcome) {
            self.wake_writer.notify_one();
        }
    }

    /// [`Shared::push_locked`] under a lock of its own.
    fn push(&self, id: u64, outcome: &Outcome<'_>) {
        self.push_locked(&mut self.lock(), id, outcome);
    }

    fn abort_all(&self) {
        for (_, handle) in self.lock().running.drain() {
            handle.abort();
        }
    }
}

/// Writes results as they come: whatever accumulated while the last write ran goes in one frame.
async fn write_results<W: AsyncWrite + Unpin>(
    mut writer: W,
    shared: Arc<Shared>,
    limits: Limits,
) -> Result<(), WorkerError> {
    // Swapped with the outbox's under the lock, then written without it: the batch's frame is
    // written from where the results were encoded.
    let mut taken = Taken::default();
    loop {
        shared.wake_writer.notified().await;
        let done = {
            let mut state = shared.lock();
            state.outbox.take(&mut taken);
            state.shutting_down && state.running.is_empty()
        };
        if !taken.frames.is_empty() {
            writer.write_all(&taken.frames).await?;
            // It swaps with the outbox's frames: trimming one trims both, in turn.
            polyloop_wire::clear_and_trim(&mut taken.frames);
        }
        if !taken.batch.is_empty() {
            // Cannot fail: the outbox kept the batch under both limits.
            if let Ok(frame) = taken.batch.finish(&limits) {
                writer.write_all(frame).await?;
            }
            taken.batch.clear();
        }
        if done {
            writer.flush().await?;
            writer.shutdown().await?;
            return Ok(());
        }
    }
}

/// Reads until `frames` holds a whole frame; `false` on a clean end of stream.
pub(crate) async fn fill_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frames: &mut FrameBuffer,
) -> Result<bool, WorkerError> {
    while !frames.has_frame()? {
        let n = reader.read(frames.spare()).await?;
        if n == 0 {
            return if frames.buffered() == 0 {
                Ok(false)
            } else {
                Err(WireError::Unexpected("end of stream inside a frame").into())
            };
        }
        frames.filled(n);
    }
    Ok(true)
}
