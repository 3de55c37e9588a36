//! The messages that cross the process boundary, in both directions.
//!
//! postcard is not self-describing: a variant's position is its tag. The handshake variants
//! ([`ToChild::Welcome`], [`ToParent::Hello`]) stay first and open with the protocol version, so
//! that any two builds can at least tell each other that they disagree. Append new variants at the
//! end and bump [`PROTOCOL_VERSION`] whenever a layout changes.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. Bumped on every change of a message layout.
pub const PROTOCOL_VERSION: u32 = 7;

/// A message from the parent (the pool) to a child (a worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToChild<'a> {
    /// The first message on every connection: version, configuration, optional initializer.
    Welcome(Welcome),
    /// Tasks to start, in the order they should start.
    #[serde(borrow)]
    Tasks(Vec<TaskFrame<'a>>),
    /// Cancel the tasks with these ids; each still gets a result ([`Outcome::Cancelled`] if it
    /// had not finished).
    Cancel(Vec<u64>),
    /// Finish the tasks in flight, send their results, then exit.
    Shutdown,
    /// Consecutive inputs of one task, to run in order and answer together (see
    /// [`chunk`](crate::ChunkInputs) for the layout).
    #[serde(borrow)]
    Chunk(ChunkFrame<'a>),
    /// The task or chunk with this id, in the next `Tasks` or `Chunk` message, ran before in a
    /// worker that was lost: a task can read which attempt it is.
    Retry(Retry),
}

/// Which attempt a task (or every input of a chunk) is, sent before the task only when it is a
/// retry: a first attempt costs no bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// The id of the task or chunk in the message that follows.
    pub id: u64,
    /// 2 for the first retry, 3 for the second, and so on.
    pub attempt: u32,
}

/// The parent's half of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Must stay the first field: see [`peek_protocol_version`](crate::peek_protocol_version).
    pub protocol_version: u32,
    /// How the child should run.
    pub config: WorkerConfig,
    /// A task to run once, before any other, e.g. to open a connection the worker keeps.
    pub initializer: Option<InitTask>,
}

/// How a worker runs, chosen by the parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The worker's index in its pool, for logs and error messages.
    pub worker_idx: u32,
    /// How many tasks may run at once in this child.
    pub child_concurrency: u32,
    /// Which tokio runtime the child builds.
    pub runtime: RuntimeFlavor,
    /// Cancel a task in the child after this many milliseconds.
    pub task_timeout_ms: Option<u64>,
    /// The largest frame either side may send.
    pub max_frame_len: u32,
    /// The most items in one batch.
    pub max_batch_len: u32,
    /// How deeply a task's input may nest (see [`decode_value`](crate::decode_value)).
    pub max_nesting: u32,
}

/// The tokio runtime a worker runs its tasks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuntimeFlavor {
    /// One thread: the fastest choice when there is one worker per core.
    CurrentThread,
    /// A work-stealing runtime with this many threads.
    MultiThread {
        /// Worker threads of the child's runtime.
        threads: u32,
    },
}

/// A task named by its registry name, used where the child's registry index is not known yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitTask {
    /// The task's registered name ([`TaskSpec::NAME`](crate::TaskSpec::NAME)).
    pub name: String,
    /// The parent's [`TaskSpec::fingerprint`](crate::TaskSpec::fingerprint) for it.
    pub fingerprint: u64,
    /// The postcard-encoded input.
    #[serde(with = "serde_bytes")]
    pub input: Vec<u8>,
}

/// One task to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFrame<'a> {
    /// The parent's id for this task, echoed in its [`ResultFrame`]: on one connection every
    /// task gets an id greater than the one before, so an id is never reused.
    pub id: u64,
    /// The task's index in the registry the child sent in its [`Hello`].
    pub task: u32,
    /// The postcard-encoded input.
    #[serde(borrow, with = "serde_bytes")]
    pub input: &'a [u8],
}

/// Consecutive inputs of one task that travel, run and are answered together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkFrame<'a> {
    /// The parent's id for the chunk, from the same sequence as [`TaskFrame::id`].
    pub id: u64,
    /// The task's index in the registry the child sent in its [`Hello`].
    pub task: u32,
    /// How many inputs `inputs` holds.
    pub count: u32,
    /// The inputs, each as [`push_input`](crate::push_input) wrote it: read them with
    /// [`ChunkInputs`](crate::ChunkInputs).
    #[serde(borrow, with = "serde_bytes")]
    pub inputs: &'a [u8],
}

/// A message from a child to the parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToParent<'a> {
    /// The answer to [`ToChild::Welcome`], sent after the initializer ran.
    Hello(Hello),
    /// Results of finished tasks, in the order they finished.
    #[serde(borrow)]
    Results(Vec<ResultFrame<'a>>),
}

/// The child's half of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must stay the first field: see [`peek_protocol_version`](crate::peek_protocol_version).
    pub protocol_version: u32,
    /// The child's process id.
    pub pid: u32,
    /// Every task the child can run; a [`TaskFrame::task`] indexes this list.
    pub tasks: Vec<TaskInfo>,
    /// Set when the initializer failed; the child exits after sending this.
    pub init_error: Option<RemoteError>,
}

/// One entry of a child's task registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The task's registered name.
    pub name: String,
    /// The fingerprint of its input and output types.
    pub fingerprint: u64,
}

/// The result of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultFrame<'a> {
    /// The id of the [`TaskFrame`] this answers.
    pub id: u64,
    /// What happened.
    #[serde(borrow)]
    pub outcome: Outcome<'a>,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome<'a> {
    /// It returned this postcard-encoded output.
    Ok(#[serde(borrow, with = "serde_bytes")] &'a [u8]),
    /// It returned an error.
    Failed(RemoteError),
    /// It panicked with this message.
    Panicked(String),
    /// It ran past the task timeout and was cancelled in the child.
    TimedOut,
    /// It was cancelled at the parent's request.
    Cancelled,
    /// Its input could not be deserialized, or its output could not be serialized.
    Serialization(String),
    /// The task index is not in the child's registry.
    UnknownTask(u32),
    /// The next outcomes of a chunk, in input order, each an encoded `Outcome` (never a part):
    /// read them with [`PartOutcomes`](crate::PartOutcomes).
    Part(#[serde(borrow, with = "serde_bytes")] &'a [u8]),
}

/// An error that happened in a child: its text, and the value itself when its type is a serde
/// type.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RemoteError {
    /// The error's `Display` text.
    pub message: String,
    /// The `Display` texts of its `source()` chain, outermost first.
    pub chain: Vec<String>,
    /// The error value, encoded, for the parent to decode back into its type.
    pub value: Option<TypedValue>,
}

/// A value encoded with the name of its type, so that the side decoding it can tell whether it
/// asks for the same type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedValue {
    /// [`std::any::type_name`] of the value's type, in the process that encoded it (a worker
    /// built from the same code as the parent: the handshake checks that).
    pub type_name: String,
    /// The value, postcard-encoded.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl TypedValue {
    /// Encodes `value`; `None` if its `Serialize` refuses.
    ///
    /// ```
    /// let typed = polyloop_wire::TypedValue::encode(&7u32).unwrap();
    /// assert_eq!(typed.decode::<u32>(128).unwrap(), Some(7));
    /// assert_eq!(typed.decode::<u64>(128).unwrap(), None);
    /// ```
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Option<TypedValue> {
        let bytes = postcard::to_allocvec(value).ok()?;
        Some(TypedValue { type_name: std::any::type_name::<T>().to_owned(), bytes })
    }

    /// The value as a `T`: `Ok(None)` if it is of another type, an error if it is of this type
    /// but does not decode (nested deeper than `max_nesting`, say).
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        max_nesting: u32,
    ) -> Result<Option<T>, crate::DecodeError> {
        if self.type_name != std::any::type_name::<T>() {
            return Ok(None);
        }
        crate::decode_value(&self.bytes, max_nesting).map(Some)
    }
}

impl RemoteError {
    /// Captures an error and its source chain.
    ///
    /// ```
    /// let err = std::io::Error::other("disk on fire");
    /// let remote = polyloop_wire::RemoteError::from_error(&err);
    /// assert_eq!(remote.message, "disk on fire");
    /// ```
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = Vec::new();
        let mut source = err.source();
        while let Some(inner) = source {
            chain.push(inner.to_string());
            source = inner.source();
        }
        RemoteError { message: err.to_string(), chain, value: None }
    }

    /// Captures something that only implements `Display`.
    pub fn from_display(err: &dyn std::fmt::Display) -> Self {
        RemoteError { message: err.to_string(), chain: Vec::new(), value: None }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for inner in &self.chain {
            write!(f, ": {inner}")?;
        }
        Ok(())
    }
}
