//! The task registry: every `#[polyloop::task]` in the program, collected at link time.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use polyloop_wire::{ChunkInputs, DecodeError, Outcome, RemoteError, Task, TaskInfo};

use crate::chunk::Parts;
use crate::panic::{CatchUnwind, catch_poll};

/// Every task linked into this program; `#[polyloop::task]` adds to it.
#[linkme::distributed_slice]
pub static TASKS: [TaskEntry];

/// A running task, in one allocation: a future that resolves to `Ok(())` once it holds its
/// output, or to the reason it failed; the worker then encodes the output from it straight into
/// the frame that carries it to the parent.
pub type TaskFuture = Pin<Box<dyn RunningTask>>;

/// What the worker needs of a running task.
pub trait RunningTask: Send {
    /// Drives the task; `Ok(())` once its output is ready to encode.
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Failure>>;
    /// The length of the encoded output; an error names why it cannot be encoded.
    fn encoded_len(&self) -> Result<usize, String>;
    /// Appends exactly [`RunningTask::encoded_len`] bytes to `out`.
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), String>;
    /// Takes the output out, as its own type, for a fold that combines outputs unencoded;
    /// `None` if there is none (or the task keeps it only encoded).
    fn take_output(self: Pin<&mut Self>) -> Option<Box<dyn Any + Send>> {
        None
    }
}

impl Future for dyn RunningTask {
    type Output = Result<(), Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_run(cx)
    }
}

pin_project_lite::pin_project! {
    /// The future of task `T` and, once it finished, its output.
    struct Running<T: Task, F> {
        // Pinned structurally; `output` is not (it is only written once the future is done, and
        // read through `&self`).
        #[pin]
        future: F,
        output: Option<T::Output>,
    }
}

impl<T: Task, F: Future<Output = Result<T::Output, RemoteError>> + Send> RunningTask
    for Running<T, F>
{
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        let this = self.project();
        match this.future.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => Poll::Ready(Err(Failure::Failed(err))),
            Poll::Ready(Ok(output)) => {
                *this.output = Some(output);
                Poll::Ready(Ok(()))
            }
        }
    }

    fn encoded_len(&self) -> Result<usize, String> {
        let output = self.output.as_ref().ok_or("the task has no output yet")?;
        unwind_to_err(|| {
            postcard::experimental::serialized_size(output).map_err(|err| {
                polyloop_wire::serialize_failure(output).unwrap_or_else(|| err.to_string())
            })
        })
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let output = self.output.as_ref().ok_or("the task has no output yet")?;
        unwind_to_err(|| polyloop_wire::encode_value(output, out).map_err(|err| err.to_string()))
    }

    fn take_output(self: Pin<&mut Self>) -> Option<Box<dyn Any + Send>> {
        let output = self.project().output.take()?;
        Some(Box::new(output))
    }
}

impl<T: Task, F: Future<Output = Result<T::Output, RemoteError>> + Send> Future for Running<T, F> {
    type Output = Result<(), Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_run(cx)
    }
}

/// Decodes a task's input, refusing one that nests deeper than the limit given (the parent's
/// [`WorkerConfig::max_nesting`](polyloop_wire::WorkerConfig::max_nesting)), and starts it;
/// an `Err` names why the input could not be decoded.
pub type RunFn = fn(&[u8], u32) -> Result<TaskFuture, String>;

/// Why a task failed in a way the worker can report, other than a panic or a timeout.
#[derive(Debug)]
pub enum Failure {
    /// The task returned an error.
    Failed(RemoteError),
    /// The output could not be serialized.
    Serialization(String),
}

impl Failure {
    pub(crate) fn as_outcome(&self) -> Outcome<'_> {
        match self {
            Failure::Failed(err) => Outcome::Failed(err.clone()),
            Failure::Serialization(msg) => Outcome::Serialization(msg.clone()),
        }
    }
}

/// One registered task: its name, the fingerprint of its types, and how to start it. Made by
/// [`TaskEntry::of`].
#[derive(Clone, Copy)]
pub struct TaskEntry {
    /// The name the parent asks for it by.
    pub name: &'static str,
    /// The fingerprint of its input and output types.
    pub fingerprint: fn() -> u64,
    /// Decodes an input and starts the task.
    pub run: RunFn,
    /// Runs a chunk's inputs in place; see [`InlineRun`].
    pub(crate) run_inline: InlineFn,
    /// For a task that can reduce (its input is two of its outputs): a fold of its outputs
    /// that keeps them unencoded between steps.
    pub(crate) typed_fold: fn() -> Option<Box<dyn TypedFold>>,
}

impl TaskEntry {
    /// The registry entry for `T`.
    pub const fn of<T: Task>() -> Self {
        TaskEntry {
            name: T::NAME,
            fingerprint: T::fingerprint,
            run: run_task::<T>,
            run_inline: run_inline::<T>,
            typed_fold: || None,
        }
    }

    /// The entry, with the fold `start` makes for a task whose input is two of its outputs
    /// (what `#[polyloop::task]` passes for every task; `None` for the others).
    #[doc(hidden)]
    pub const fn with_typed_fold(mut self, start: fn() -> Option<Box<dyn TypedFold>>) -> Self {
        self.typed_fold = start;
        self
    }
}

/// A fold in progress that keeps its value unencoded: each output is combined with the value
/// so far by the reducer's own code, and the result encoded once, at the end.
#[doc(hidden)]
pub trait TypedFold: Send {
    /// Combines the next output (in input order) into the value so far.
    fn push(
        &mut self,
        output: Box<dyn Any + Send>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Outcome<'static>>> + Send + '_>>;
    /// The value, encoded; `None` if nothing was pushed.
    fn finish(self: Box<Self>) -> Result<Option<Vec<u8>>, String>;
}

/// The [`TypedFold`] of reducer `T`.
pub(crate) struct TypedFoldOf<T: Task> {
    value: Option<T::Output>,
}

impl<T: Task> TypedFoldOf<T> {
    pub(crate) fn start() -> Option<Box<dyn TypedFold>>
    where
        T: Task<
            Input = (
                <T as polyloop_wire::TaskSpec>::Output,
                <T as polyloop_wire::TaskSpec>::Output,
            ),
        >,
    {
        Some(Box::new(TypedFoldOf::<T> { value: None }))
    }
}

impl<T> TypedFold for TypedFoldOf<T>
where
    T: Task<
        Input = (<T as polyloop_wire::TaskSpec>::Output, <T as polyloop_wire::TaskSpec>::Output),
    >,
{
    fn push(
        &mut self,
        output: Box<dyn Any + Send>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Outcome<'static>>> + Send + '_>> {
        Box::pin(async move {
            let output = *output.downcast::<T::Output>().map_err(|_| {
                Outcome::Serialization(format!(
                    "the reducer `{}` takes another type than the task's output",
                    T::NAME
                ))
            })?;
            self.value = Some(match self.value.take() {
                None => output,
                Some(value) => match CatchUnwind::new(T::run((value, output))).await {
                    Err(panic) => return Err(Outcome::Panicked(panic)),
                    Ok(Err(err)) => return Err(Outcome::Failed(err)),
                    Ok(Ok(folded)) => folded,
                },
            });
            Ok(())
        })
    }

    fn finish(self: Box<Self>) -> Result<Option<Vec<u8>>, String> {
        let Some(value) = self.value else { return Ok(None) };
        unwind_to_err(|| postcard::to_allocvec(&value).map(Some).map_err(|err| err.to_string()))
    }
}

/// Runs a chunk's next inputs in order on the calling thread, each polled once, for as long as
/// each finishes on that poll and the run may hold the thread.
pub(crate) type InlineFn = fn(&mut InlineRun<'_, '_>) -> Stopped;

/// What a chunk's inline run works on.
pub(crate) struct InlineRun<'a, 'b> {
    /// The inputs not yet started; checked already, so each reads.
    pub(crate) inputs: &'a mut ChunkInputs<'b>,
    /// Where each finished input's outcome goes.
    pub(crate) parts: &'a mut Parts,
    pub(crate) max_nesting: u32,
    /// The waker of the task that runs the chunk, for the first polls.
    pub(crate) waker: &'a std::task::Waker,
    /// Whether the run has held the thread long enough: asked after each input.
    pub(crate) must_yield: &'a mut dyn FnMut() -> bool,
}

/// Where a chunk's inline run stopped.
pub(crate) enum Stopped {
    /// No input is left.
    Done,
    /// The last input started did not finish on its first poll: it goes on as a future of its own.
    Pending(CatchUnwind<TaskFuture>),
    /// The run held the thread long enough: let the other tasks run, then go on.
    Yield,
}

/// [`InlineFn`] for task `T`. The same as starting each input with [`TaskEntry::run`] and
/// polling it, but typed: the inputs share one allocation (each finished task's place is taken
/// by the next), and its output is encoded without a virtual call. Only a task that does not
/// finish on its first poll leaves as a [`TaskFuture`].
fn run_inline<T: Task>(run: &mut InlineRun<'_, '_>) -> Stopped {
    let mut slot = None;
    while let Some(Ok(input)) = run.inputs.next() {
        let input = match unwind_to_err(|| decode_input::<T>(input, run.max_nesting)) {
            Ok(input) => input,
            Err(msg) => {
                run.parts.push(&Outcome::Serialization(msg));
                if (run.must_yield)() {
                    return Stopped::Yield;
                }
                continue;
            }
        };
        let running = Running::<T, _> { future: T::run(input), output: None };
        let mut task = match slot.take() {
            // The task before finished: its place is free.
            Some(mut task) => {
                Pin::set(&mut task, running);
                task
            }
            None => Box::pin(running),
        };
        let mut cx = Context::from_waker(run.waker);
        match catch_poll(task.as_mut(), &mut cx) {
            Poll::Ready(finished) => run.parts.push_finished(&*task, finished),
            Poll::Pending => return Stopped::Pending(CatchUnwind::new(task)),
        }
        slot = Some(task);
        if (run.must_yield)() {
            return Stopped::Yield;
        }
    }
    Stopped::Done
}

impl fmt::Debug for TaskEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskEntry").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Runs user serde code, turning a panic in it into an error: a task's `Serialize` or
/// `Deserialize` panicking must fail that task, not the worker (or the reader's lock).
fn unwind_to_err<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(format!("it panicked: {}", crate::panic::panic_message(&*payload, None)))
    })
}

fn run_task<T: Task>(input: &[u8], max_nesting: u32) -> Result<TaskFuture, String> {
    unwind_to_err(|| start_task::<T>(input, max_nesting))
}

fn start_task<T: Task>(input: &[u8], max_nesting: u32) -> Result<TaskFuture, String> {
    let input = decode_input::<T>(input, max_nesting)?;
    Ok(Box::pin(Running::<T, _> { future: T::run(input), output: None }))
}

/// Decodes an input of task `T`; an `Err` names why it could not be.
fn decode_input<T: Task>(input: &[u8], max_nesting: u32) -> Result<T::Input, String> {
    polyloop_wire::decode_value::<T::Input>(input, max_nesting).map_err(|err| match err {
        DecodeError::Trailing { .. } => format!("input of task `{}` has {err}", T::NAME),
        DecodeError::TooDeep { .. } => format!(
            "input of task `{}` failed to deserialize: {err} (the pool's max_nesting)",
            T::NAME
        ),
        _ => format!("input of task `{}` failed to deserialize: {err}", T::NAME),
    })
}

/// The tasks a worker can run, indexed in the order it announces them in its handshake.
#[derive(Debug, Clone, Copy)]
pub struct Registry {
    entries: &'static [TaskEntry],
}

impl Registry {
    /// A registry of exactly these entries (for custom worker binaries and tests).
    pub const fn new(entries: &'static [TaskEntry]) -> Self {
        Registry { entries }
    }

    /// Every task linked into this program with `#[polyloop::task]`.
    pub fn linked() -> Self {
        Registry { entries: &TASKS }
    }

    /// The entry at `index`, as announced in the handshake.
    pub fn entry(&self, index: u32) -> Option<&'static TaskEntry> {
        self.entries.get(index as usize)
    }

    /// The entry named `name`.
    pub fn find(&self, name: &str) -> Option<&'static TaskEntry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// The registry as announced in the handshake.
    pub fn infos(&self) -> Vec<TaskInfo> {
        self.entries
            .iter()
            .map(|entry| TaskInfo {
                name: entry.name.to_owned(),
                fingerprint: (entry.fingerprint)(),
            })
            .collect()
    }
}

/// A finished task whose output is `bytes`, already encoded: for the tests of what encodes
/// outcomes.
#[cfg(test)]
pub(crate) struct Done(pub(crate) Vec<u8>);

#[cfg(test)]
impl RunningTask for Done {
    fn poll_run(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        Poll::Ready(Ok(()))
    }
    fn encoded_len(&self) -> Result<usize, String> {
        Ok(self.0.len())
    }
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&self.0);
        Ok(())
    }
}
