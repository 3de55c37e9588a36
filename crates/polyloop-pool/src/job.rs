//! A queued task: its encoded input and where its result goes.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use polyloop_shm::Pins;
use polyloop_wire::DecodeError;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::bytes::SmallBytes;
use crate::error::Kind;

use crate::TaskError;

/// A task's output as the driver hands it over: a short one still encoded (inline, no
/// allocation; the waiter decodes it), a long one decoded by the driver straight from the frame
/// it arrived in (so its bytes are copied once).
pub(crate) enum Output {
    Encoded(SmallBytes),
    Decoded(Box<dyn Any + Send>),
    /// The next outcomes of a chunk, for the stream to decode one by one.
    Part(Part),
}

/// Outcomes of consecutive inputs of a map, as a worker encoded them (checked by the driver):
/// the stream decodes each when it yields it.
#[derive(Debug)]
pub(crate) struct Part {
    /// `count` encoded outcomes, back to back.
    pub(crate) outcomes: Vec<u8>,
    pub(crate) count: u32,
    /// The position of the first outcome that is an error, for a fail-fast map.
    pub(crate) first_error: Option<u32>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Encoded(bytes) => write!(f, "Encoded({bytes:?})"),
            Output::Decoded(_) => f.write_str("Decoded(..)"),
            Output::Part(part) => write!(f, "Part({} outcomes)", part.count),
        }
    }
}

/// A task's raw result: its decoded output, or why there is none.
pub(crate) type RawResult = Result<Output, TaskError>;

/// Where a map stream's results go: every job of the stream holds one (cloned and dropped on
/// the stream's own thread, see [`StreamResult`]).
pub(crate) type StreamTx = Arc<StreamSink>;
/// The stream's end of its sink.
pub(crate) type StreamRx = mpsc::UnboundedReceiver<Vec<StreamResult>>;

/// A map stream's result channel, and whether the stream is gone.
#[derive(Debug)]
pub(crate) struct StreamSink {
    /// Read by drivers for every task they take: on a cache line of its own, away from the
    /// reference count the stream's thread changes for every job.
    closed: Padded<AtomicBool>,
    tx: mpsc::UnboundedSender<Vec<StreamResult>>,
}

impl StreamSink {
    pub(crate) fn new() -> (StreamTx, StreamRx) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(StreamSink { closed: Padded(AtomicBool::new(false)), tx }), rx)
    }

    /// Marks the stream gone: its jobs are cancelled.
    pub(crate) fn close(&self) {
        self.closed.0.store(true, Ordering::Release);
    }

    fn is_closed(&self) -> bool {
        self.closed.0.load(Ordering::Acquire)
    }

    fn send(&self, results: Vec<StreamResult>) {
        // A dropped stream no longer wants them.
        let _ = self.tx.send(results);
    }
}

/// A value alone on its cache line(s).
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

/// One result for a map stream: its input's sequence number, and the job's sender, handed back
/// so the stream drops it on its own thread. (The stream clones one sender per job; dropping
/// them on the driver's thread made every task bounce the sender count between two cores.)
#[derive(Debug)]
pub(crate) struct StreamResult {
    pub(crate) seq: u64,
    pub(crate) result: RawResult,
    pub(crate) _tx: StreamTx,
}

/// What the worker needs to know to run a task, and the pool to check it.
#[derive(Clone, Copy)]
pub(crate) struct TaskKey {
    pub(crate) name: &'static str,
    pub(crate) fingerprint: u64,
    /// Decodes the task's output from the frame it arrived in, with this nesting limit.
    pub(crate) decode: fn(&'static str, &[u8], u32) -> RawResult,
}

impl TaskKey {
    /// The key of task `T`.
    pub(crate) fn of<T: polyloop_wire::TaskSpec>() -> Self {
        TaskKey { name: T::NAME, fingerprint: T::fingerprint(), decode: decode::<T::Output> }
    }
}

/// Why `input` of task `T` could not be sent: it failed to serialize with `err`.
pub(crate) fn input_error<T: polyloop_wire::TaskSpec>(
    input: &T::Input,
    err: &postcard::Error,
) -> TaskError {
    let reason = polyloop_wire::serialize_failure(input).unwrap_or_else(|| err.to_string());
    TaskError::new(Kind::Serialization, T::NAME, format!("input failed to serialize: {reason}"))
}

impl std::fmt::Debug for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskKey").field("name", &self.name).finish_non_exhaustive()
    }
}

/// [`TaskKey::decode`] for output type `O`: the output must use every byte.
pub(crate) fn decode<O: DeserializeOwned + Send + 'static>(
    task: &'static str,
    bytes: &[u8],
    max_nesting: u32,
) -> RawResult {
    decode_as::<O>(task, bytes, max_nesting).map(|output| Output::Decoded(Box::new(output)))
}

/// The output of type `O` that `outcome` (one of a part's) carries, or its error.
pub(crate) fn take_outcome<O: DeserializeOwned>(
    task: &'static str,
    outcome: polyloop_wire::Outcome<'_>,
    max_nesting: u32,
    task_timeout: Option<std::time::Duration>,
) -> Result<O, TaskError> {
    match outcome {
        polyloop_wire::Outcome::Ok(bytes) => decode_as::<O>(task, bytes, max_nesting),
        outcome => Err(TaskError::from_outcome(task, outcome, task_timeout).unwrap_or_else(|| {
            TaskError::new(Kind::Serialization, task, "a part inside a part (a polyloop bug)")
        })),
    }
}

/// Decodes an output of type `O`, which must use every byte and nest at most `max_nesting`
/// levels (a deeper one would overflow the stack of the thread decoding it). A panic in the
/// type's own `Deserialize` fails the task (it may run on a driver, which must not die of it).
fn decode_as<O: DeserializeOwned>(
    task: &'static str,
    bytes: &[u8],
    max_nesting: u32,
) -> Result<O, TaskError> {
    let decoded = std::panic::catch_unwind(|| polyloop_wire::decode_value::<O>(bytes, max_nesting));
    let msg = match decoded {
        Ok(Ok(output)) => return Ok(output),
        Ok(Err(err @ DecodeError::TooDeep { .. })) => {
            format!("output failed to deserialize: {err} (raise it with PoolBuilder::max_nesting)")
        }
        Ok(Err(err @ DecodeError::Trailing { .. })) => {
            format!("output has {err}")
        }
        Ok(Err(err)) => format!("output failed to deserialize: {err}"),
        Err(_) => "output failed to deserialize: its Deserialize panicked".to_owned(),
    };
    Err(TaskError::new(Kind::Serialization, task, msg))
}

/// The output as the type its waiter expects.
pub(crate) fn take<O: DeserializeOwned + 'static>(
    task: &'static str,
    result: RawResult,
    max_nesting: u32,
) -> Result<O, TaskError> {
    match result? {
        Output::Encoded(bytes) => decode_as::<O>(task, &bytes, max_nesting),
        Output::Part(_) => Err(TaskError::new(
            Kind::Serialization,
            task,
            "a chunk's outcomes where one output was expected (a polyloop bug)",
        )),
        Output::Decoded(output) => output.downcast::<O>().map(|output| *output).map_err(|_| {
            TaskError::new(
                Kind::Serialization,
                task,
                "output decoded as another type (a polyloop bug)",
            )
        }),
    }
}

/// One task, or consecutive inputs of one map, on its way through the pool.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) key: TaskKey,
    pub(crate) input: Input,
    pub(crate) reply: Reply,
    /// Times the task was lost with its worker and queued again.
    pub(crate) retries: u32,
    /// The shared values a single input refers to, kept until the job is done (those of
    /// many inputs stay with their buffer).
    #[expect(dead_code, reason = "held for as long as the job lives, never read")]
    pub(crate) pins: Pins,
}

/// What a job runs on.
#[derive(Debug)]
pub(crate) enum Input {
    /// One task's encoded input.
    One(SmallBytes),
    /// Consecutive inputs of a map stream (its reply is a [`Reply::Stream`] with the first's
    /// sequence number): the driver sends them as chunks or one by one.
    Many(Inputs),
}

/// Consecutive inputs of one map, encoded once into a buffer that the parts a driver splits
/// them into share. Never empty.
#[derive(Debug)]
pub(crate) struct Inputs {
    buf: Arc<InputBuf>,
    start: usize,
    end: usize,
}

/// Inputs encoded back to back, each as [`polyloop_wire::push_input`] writes it.
#[derive(Debug, Default)]
pub(crate) struct InputBuf {
    bytes: Vec<u8>,
    /// Where each input ends in `bytes`.
    ends: Vec<usize>,
    /// The shared values the inputs refer to: every part of them keeps them.
    pins: Pins,
}

impl InputBuf {
    /// Encodes and appends one input; on an error nothing is appended.
    pub(crate) fn push_encoded<T: serde::Serialize>(&mut self, input: &T) -> postcard::Result<()> {
        polyloop_wire::push_encoded_input(&mut self.bytes, input)?;
        self.ends.push(self.bytes.len());
        Ok(())
    }

    /// Keeps `pins` while any of the inputs is on its way.
    pub(crate) fn pin(&mut self, pins: Pins) {
        self.pins.extend(pins);
    }

    /// The bytes the inputs pushed so far take.
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// All the inputs pushed, to be sent; `None` if there are none.
    pub(crate) fn finish(self) -> Option<Inputs> {
        let end = self.ends.len();
        (end > 0).then(|| Inputs { buf: Arc::new(self), start: 0, end })
    }
}

impl Inputs {
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    fn offset(&self, idx: usize) -> usize {
        idx.checked_sub(1).map_or(0, |before| self.buf.ends[before])
    }

    /// The inputs as a chunk carries them.
    pub(crate) fn wire_bytes(&self) -> &[u8] {
        &self.buf.bytes[self.offset(self.start)..self.offset(self.end)]
    }

    /// The first input's own encoding (without its length).
    pub(crate) fn first(&self) -> &[u8] {
        let entry = &self.buf.bytes[self.offset(self.start)..self.offset(self.start + 1)];
        // Cannot fail: the buffer holds what `push` wrote.
        polyloop_wire::ChunkInputs::new(entry, 1).next().and_then(Result::ok).unwrap_or_default()
    }

    /// Takes the first `n` inputs (at least one, at most all but one) off the front.
    fn split_front(&mut self, n: usize) -> Inputs {
        debug_assert!(n > 0 && n < self.len(), "split {n} of {}", self.len());
        let front = Inputs { buf: Arc::clone(&self.buf), start: self.start, end: self.start + n };
        self.start += n;
        front
    }

    /// How many inputs from the front, at most `max` and at least one, fit in `max_bytes` as a
    /// chunk carries them.
    pub(crate) fn fitting(&self, max: usize, max_bytes: usize) -> usize {
        let limit = self.offset(self.start) + max_bytes;
        let max_end = self.end.min(self.start + max.max(1));
        let fit = self.buf.ends[self.start..max_end].partition_point(|&end| end <= limit);
        fit.max(1)
    }
}

/// Where a result goes.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A [`TaskHandle`](crate::TaskHandle).
    One(oneshot::Sender<RawResult>),
    /// A map stream, which orders by `seq` if it needs to. Results travel in batches: a driver
    /// sends all the results of one frame for one stream at once.
    Stream { tx: StreamTx, seq: u64 },
}

impl Reply {
    /// Whether nobody waits for the result any more (the handle or stream was dropped).
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Reply::One(tx) => tx.is_closed(),
            Reply::Stream { tx, .. } => tx.is_closed(),
        }
    }

    pub(crate) fn send(self, result: RawResult) {
        // A dropped receiver no longer wants the result.
        match self {
            Reply::One(tx) => {
                let _ = tx.send(result);
            }
            Reply::Stream { tx, seq } => {
                let sink = Arc::clone(&tx);
                sink.send(vec![StreamResult { seq, result, _tx: tx }]);
            }
        }
    }
}

impl Job {
    /// How many tasks the job is.
    pub(crate) fn len(&self) -> usize {
        match &self.input {
            Input::One(_) => 1,
            Input::Many(inputs) => inputs.len(),
        }
    }

    /// Takes the first `n` tasks (at least one, fewer than all) off the front of a job of many.
    pub(crate) fn split_front(&mut self, n: usize) -> Job {
        let (Input::Many(inputs), Reply::Stream { tx, seq }) = (&mut self.input, &mut self.reply)
        else {
            unreachable!("only a job of many inputs splits, and it replies to a stream");
        };
        let front = Reply::Stream { tx: Arc::clone(tx), seq: *seq };
        *seq += n as u64;
        Job {
            key: self.key,
            input: Input::Many(inputs.split_front(n)),
            reply: front,
            retries: self.retries,
            pins: Pins::default(),
        }
    }

    /// A job of one input, as a single task: a job of many with one input left becomes one.
    pub(crate) fn into_one(self) -> Job {
        match self.input {
            Input::Many(inputs) => {
                debug_assert_eq!(inputs.len(), 1);
                let input = Input::One(SmallBytes::copy_from(inputs.first()));
                let pins = inputs.buf.pins.clone();
                Job { key: self.key, input, reply: self.reply, retries: self.retries, pins }
            }
            Input::One(_) => self,
        }
    }

    /// Drops the first `n` tasks of a job of many, whose results were delivered already.
    pub(crate) fn skip_front(&mut self, n: usize) {
        if n > 0 {
            drop(self.split_front(n));
        }
    }

    /// Hands over the job's result; an error of a job of many is each of its tasks' error.
    pub(crate) fn resolve(self, result: RawResult) {
        match (self.input, self.reply, result) {
            (Input::Many(inputs), Reply::Stream { tx, seq }, Err(err)) if inputs.len() > 1 => {
                let sink = Arc::clone(&tx);
                let n = inputs.len() as u64;
                let mut results: Vec<StreamResult> = (1..n)
                    .map(|i| StreamResult {
                        seq: seq + i,
                        result: Err(err.duplicate()),
                        _tx: Arc::clone(&tx),
                    })
                    .collect();
                results.push(StreamResult { seq, result: Err(err), _tx: tx });
                sink.send(results);
            }
            (_, reply, result) => reply.send(result),
        }
    }
}

/// Collects the results of one frame per stream, so a stream is sent (and woken) once per frame
/// instead of once per result.
#[derive(Debug, Default)]
pub(crate) struct StreamBatch {
    /// Results expected in this frame, to size the batch once.
    capacity: usize,
    current: Option<(StreamTx, Vec<StreamResult>)>,
}

impl StreamBatch {
    /// A batch for a frame of `capacity` results.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        StreamBatch { capacity, current: None }
    }

    /// Adds a result for `reply`; a reply that is not a stream is sent at once.
    pub(crate) fn add(&mut self, reply: Reply, result: RawResult) {
        let Reply::Stream { tx, seq } = reply else {
            return reply.send(result);
        };
        match &mut self.current {
            Some((current, results)) if Arc::ptr_eq(current, &tx) => {
                results.push(StreamResult { seq, result, _tx: tx });
            }
            _ => {
                self.flush();
                let mut results = Vec::with_capacity(self.capacity);
                let sender = Arc::clone(&tx);
                results.push(StreamResult { seq, result, _tx: tx });
                self.current = Some((sender, results));
            }
        }
    }

    /// Sends what was collected.
    pub(crate) fn flush(&mut self) {
        if let Some((tx, results)) = self.current.take() {
            tx.send(results);
        }
    }
}
