//! The errors users see: `TaskError` for one task, `PoolError` for the pool itself.

use std::fmt;

use polyloop_wire::{RemoteError, WireError};

/// Why a task did not produce a value.
///
/// Opaque, with predicates for the kinds callers branch on, like tokio's `JoinError`. The
/// message names the task and the cause; for a task that returned an error, the remote error's
/// source chain is available through [`std::error::Error::source`].
///
/// ```
/// # async fn demo(pool: &polyloop_pool::Pool, err: polyloop_pool::TaskError) {
/// if err.is_worker_lost() {
///     eprintln!("the worker died: {err}");
/// }
/// # }
/// ```
pub struct TaskError {
    kind: Kind,
    task: &'static str,
    message: String,
    source: Option<Box<RemoteCause>>,
    /// The position of the task's input in its map's input sequence.
    input: Option<u64>,
    /// The error value a failed task returned, when its type is a serde type.
    value: Option<Box<polyloop_wire::TypedValue>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Failed,
    Panic,
    Timeout,
    WorkerLost,
    Cancelled,
    Serialization,
    UnknownTask,
    PoolClosed,
}

impl TaskError {
    pub(crate) fn new(kind: Kind, task: &'static str, message: impl Into<String>) -> Self {
        TaskError { kind, task, message: message.into(), source: None, input: None, value: None }
    }

    pub(crate) fn failed(task: &'static str, remote: RemoteError) -> Self {
        // Build the chain from the innermost cause outwards.
        let source = remote
            .chain
            .into_iter()
            .rev()
            .fold(None, |next, message| Some(Box::new(RemoteCause { message, next })));
        let value = remote.value.map(Box::new);
        TaskError { kind: Kind::Failed, task, message: remote.message, source, input: None, value }
    }

    /// The task returned an `Err`.
    pub fn is_failed(&self) -> bool {
        self.kind == Kind::Failed
    }

    /// The task panicked; the message is the panic's.
    pub fn is_panic(&self) -> bool {
        self.kind == Kind::Panic
    }

    /// The task ran longer than the pool's `task_timeout` and was cancelled.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// The worker process running the task died; the message names its pid and exit status.
    pub fn is_worker_lost(&self) -> bool {
        self.kind == Kind::WorkerLost
    }

    /// The task was cancelled: its handle or stream was dropped, or the pool was terminated or
    /// dropped (its last clone) before the task was done.
    pub fn is_cancelled(&self) -> bool {
        self.kind == Kind::Cancelled
    }

    /// The input or the output could not be serialized or deserialized.
    pub fn is_serialization(&self) -> bool {
        self.kind == Kind::Serialization
    }

    /// The worker program has no task of this name, or one with other types.
    pub fn is_unknown_task(&self) -> bool {
        self.kind == Kind::UnknownTask
    }

    /// The pool was closed before the task could be queued.
    pub fn is_pool_closed(&self) -> bool {
        self.kind == Kind::PoolClosed
    }

    /// The registered name of the task.
    pub fn task_name(&self) -> &'static str {
        self.task
    }

    /// For a task of a map (`map`, `map_stream`, `map_unordered`): the position of its input
    /// in the inputs, counting from 0, so that an error that arrives out of order can be told
    /// apart. `None` for a task of `submit` or `apply`, whose caller holds its handle.
    ///
    /// ```no_run
    /// # async fn demo(pool: &polyloop_pool::Pool, task: impl polyloop_wire::TaskSpec<Input = u64>) {
    /// let mut results = pool.map_unordered(task, 0..100u64);
    /// while let Some(result) = results.next().await {
    ///     if let Err(err) = result {
    ///         eprintln!("input {:?} failed: {err}", err.input_index());
    ///     }
    /// }
    /// # }
    /// ```
    pub fn input_index(&self) -> Option<u64> {
        self.input
    }

    /// The same error again, for each of several tasks that failed for one reason.
    pub(crate) fn duplicate(&self) -> Self {
        TaskError {
            kind: self.kind,
            task: self.task,
            message: self.message.clone(),
            source: self.source.clone(),
            input: self.input,
            value: self.value.clone(),
        }
    }

    /// The error a worker's outcome for a task means; `None` for the outcomes that are not
    /// errors (`Ok`, and a chunk's `Part`).
    pub(crate) fn from_outcome(
        task: &'static str,
        outcome: polyloop_wire::Outcome<'_>,
        task_timeout: Option<std::time::Duration>,
    ) -> Option<Self> {
        use polyloop_wire::Outcome;
        Some(match outcome {
            Outcome::Ok(_) | Outcome::Part(_) => return None,
            Outcome::Failed(remote) => TaskError::failed(task, remote),
            Outcome::Panicked(msg) => TaskError::new(Kind::Panic, task, msg),
            Outcome::TimedOut => {
                let timeout = task_timeout.unwrap_or_default();
                let msg = format!("ran longer than {timeout:?} and was cancelled");
                TaskError::new(Kind::Timeout, task, msg)
            }
            Outcome::Cancelled => TaskError::new(Kind::Cancelled, task, "cancelled in its worker"),
            Outcome::Serialization(msg) => TaskError::new(Kind::Serialization, task, msg),
            Outcome::UnknownTask(index) => {
                let msg = format!("the worker has no task {index}");
                TaskError::new(Kind::UnknownTask, task, msg)
            }
        })
    }

    pub(crate) fn with_input(mut self, index: u64) -> Self {
        self.input = Some(index);
        self
    }

    /// The cause as reported: the remote error's message, the panic message, or what the pool
    /// observed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error the task returned, as its own type: `Some` when the task failed with an
    /// `Err(E)` whose type is a serde type and `E` is that type, `None` otherwise (another type,
    /// a panic, a lost worker...).
    ///
    /// ```
    /// #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    /// enum FetchError {
    ///     NotFound(String),
    ///     Busy { retry_after_ms: u64 },
    /// }
    /// # impl std::fmt::Display for FetchError {
    /// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
    /// # }
    ///
    /// fn retry_after(err: &polyloop_pool::TaskError) -> Option<u64> {
    ///     match err.downcast::<FetchError>()? {
    ///         FetchError::Busy { retry_after_ms } => Some(retry_after_ms),
    ///         FetchError::NotFound(_) => None,
    ///     }
    /// }
    /// ```
    pub fn downcast<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        let value = self.value.as_ref()?;
        // The limit the pool applies to values by default; an error is no deeper.
        value.decode(polyloop_wire::DEFAULT_MAX_NESTING).ok().flatten()
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Failed => "failed",
            Kind::Panic => "panicked",
            Kind::Timeout => "timed out",
            Kind::WorkerLost => "lost its worker",
            Kind::Cancelled => "was cancelled",
            Kind::Serialization => "could not be (de)serialized",
            Kind::UnknownTask => "is unknown to the worker",
            Kind::PoolClosed => "was not run",
        };
        write!(f, "task `{}` {what}: {}", self.task, self.message)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("kind", &self.kind)
            .field("task", &self.task)
            .field("message", &self.message)
            .field("source", &self.source)
            .field("input", &self.input)
            .finish()
    }
}

impl std::error::Error for TaskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|cause| cause as _)
    }
}

/// One link of a remote error's source chain.
#[derive(Debug, Clone)]
struct RemoteCause {
    message: String,
    next: Option<Box<RemoteCause>>,
}

impl fmt::Display for RemoteCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|cause| cause as _)
    }
}

/// Why a pool could not be built or closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A builder setting cannot work, e.g. zero processes.
    #[error("invalid pool configuration: {0}")]
    InvalidConfig(String),
    /// A worker process could not be started.
    #[error("failed to start worker program {program}")]
    Spawn {
        /// The program that was executed.
        program: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A worker exited or closed its socket before completing the handshake.
    #[error("worker {pid} ended before its handshake ({status}): {hint}")]
    NotAWorker {
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        status: String,
        /// What the way it ended suggests.
        hint: String,
    },
    /// The worker speaks another protocol version, or sent garbage in the handshake.
    #[error("handshake with worker {pid} failed")]
    Handshake {
        /// The worker's pid.
        pid: u32,
        /// What was wrong.
        #[source]
        source: WireError,
    },
    /// The worker did not answer the handshake in time.
    #[error("worker {pid} did not complete its handshake within {seconds} s")]
    HandshakeTimeout {
        /// The worker's pid.
        pid: u32,
        /// The time allowed.
        seconds: u64,
    },
    /// The initializer failed in a worker.
    #[error("the initializer failed in worker {pid}: {error}")]
    Initializer {
        /// The worker's pid.
        pid: u32,
        /// What the initializer returned.
        error: RemoteError,
    },
    /// The worker program registers tasks of the same names as this program with other types:
    /// it was built from other code.
    #[error(
        "worker {pid} was built from other code: it registers {} with other input or output \
         types than this program",
        tasks.join(", ")
    )]
    RegistryMismatch {
        /// The worker's pid.
        pid: u32,
        /// The tasks whose fingerprints differ.
        tasks: Vec<String>,
    },
    /// The worker program does not hold tasks the pool was told to expect
    /// ([`PoolBuilder::expect_tasks`](crate::PoolBuilder::expect_tasks)).
    #[error("worker {pid} does not hold the expected tasks {}", tasks.join(", "))]
    MissingTasks {
        /// The worker's pid.
        pid: u32,
        /// The tasks it lacks.
        tasks: Vec<String>,
    },
    /// The initializer is not registered in the worker program, or has other types there.
    #[error("the initializer task `{0}` is unknown to the worker program")]
    UnknownInitializer(&'static str),
    /// This process was started as a polyloop worker but is starting a pool instead of serving.
    #[error(
        "this process was started as a polyloop worker but never became one: call \
         polyloop::init() first in main, or use #[polyloop::main]"
    )]
    InsideUnstartedWorker,
    /// The runtime that ran the pool's drivers shut down before the pool was closed (see
    /// [`PoolBuilder::drivers_on_current_runtime`](crate::PoolBuilder::drivers_on_current_runtime)).
    #[error("the runtime that ran the pool's drivers has shut down")]
    RuntimeGone,
    /// `build` with the drivers on the current runtime, called outside a tokio runtime.
    #[error("drivers_on_current_runtime needs build() to run inside a tokio runtime")]
    NoRuntime,
    /// Talking to a worker failed.
    #[error("i/o with a worker failed")]
    Io(#[from] std::io::Error),
}
