//! A queued task: its encoded input and where its result goes.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Encoded(bytes) => write!(f, "Encoded({bytes:?})"),
            Output::Decoded(_) => f.write_str("Decoded(..)"),
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
        Output::Decoded(output) => output.downcast::<O>().map(|output| *output).map_err(|_| {
            TaskError::new(
                Kind::Serialization,
                task,
                "output decoded as another type (a polyloop bug)",
            )
        }),
    }
}

/// One task on its way through the pool.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) key: TaskKey,
    pub(crate) input: SmallBytes,
    pub(crate) reply: Reply,
    /// Times the task was lost with its worker and queued again.
    pub(crate) retries: u32,
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
    pub(crate) fn resolve(self, result: RawResult) {
        self.reply.send(result);
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
