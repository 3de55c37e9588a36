//! `map_stream` and `map_unordered`: lazily submitted inputs, results as a `Stream`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use polyloop_wire::{PartOutcomes, TaskSpec};

use crate::TaskError;
use crate::job::{
    InputBuf, Output, Part, RawResult, Reply, StreamResult, StreamRx, StreamSink, StreamTx,
    input_error, take, take_outcome,
};
use crate::queue::Bundle;
use crate::shared::Shared;

/// Where a map's inputs come from: an iterator, or a stream wrapped in [`from_stream`].
pub trait Inputs<T> {
    /// The source the map pulls inputs from.
    type Source: InputSource<T>;
    /// Converts into the source.
    fn into_source(self) -> Self::Source;
}

/// A source of inputs that a map polls as it has room for more work.
pub trait InputSource<T>: Unpin {
    /// The next input, `None` at the end.
    fn poll_next_input(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>>;
    /// A lower bound of the inputs left.
    fn size_hint(&self) -> usize;
}

impl<T, I: IntoIterator<Item = T>> Inputs<T> for I {
    type Source = IterSource<I::IntoIter>;
    fn into_source(self) -> Self::Source {
        IterSource(self.into_iter())
    }
}

/// The [`InputSource`] of an iterator.
#[derive(Debug)]
pub struct IterSource<I>(I);

// The iterator is only ever used through `&mut`, never pinned, so moving it is always fine.
impl<I> Unpin for IterSource<I> {}

impl<T, I: Iterator<Item = T>> InputSource<T> for IterSource<I> {
    fn poll_next_input(&mut self, _cx: &mut Context<'_>) -> Poll<Option<T>> {
        Poll::Ready(self.0.next())
    }
    fn size_hint(&self) -> usize {
        self.0.size_hint().0
    }
}

/// Wraps a `Stream` of inputs for [`Pool::map_stream`](crate::Pool::map_stream).
///
/// ```no_run
/// # async fn demo(pool: &polyloop_pool::Pool, inputs: impl futures_core::Stream<Item = u64> + Send + 'static) {}
/// ```
pub fn from_stream<S: Stream>(stream: S) -> FromStream<S> {
    FromStream(Box::pin(stream))
}

/// A `Stream` of inputs; see [`from_stream`].
pub struct FromStream<S>(Pin<Box<S>>);

impl<S> fmt::Debug for FromStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromStream(..)")
    }
}

impl<T, S: Stream<Item = T>> Inputs<T> for FromStream<S> {
    type Source = Self;
    fn into_source(self) -> Self {
        self
    }
}

impl<T, S: Stream<Item = T>> InputSource<T> for FromStream<S> {
    fn poll_next_input(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.as_mut().poll_next(cx)
    }
    fn size_hint(&self) -> usize {
        self.0.size_hint().0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Ordered,
    Unordered,
}

/// The results of [`Pool::map_stream`](crate::Pool::map_stream) (in input order) or
/// [`Pool::map_unordered`](crate::Pool::map_unordered) (as completed).
///
/// It submits inputs as it is polled, never more than a bounded window ahead of the results it
/// has yielded, so an endless input uses constant memory. Dropping it cancels what still runs.
pub struct MapStream<T: TaskSpec, S> {
    shared: Arc<Shared>,
    source: S,
    order: Order,
    window: u64,
    /// Inputs submitted so far; the next input gets this sequence number.
    submitted: u64,
    /// The refills not yet yielded in full, oldest first: the sequence number after each, and
    /// the bytes its inputs take.
    refills: VecDeque<(u64, usize)>,
    /// The bytes of `refills`, held against [`WINDOW_BYTES`].
    window_bytes: usize,
    /// Results yielded so far.
    yielded: u64,
    /// Results arrived so far, yielded or not.
    arrived: u64,
    /// Errors yielded so far.
    failed: u64,
    exhausted: bool,
    checked: bool,
    tx: StreamTx,
    rx: StreamRx,
    /// Results not yet yielded, each with its (first) sequence number.
    ready: Ready,
    /// The part whose outcomes are being yielded, one by one.
    current: Option<Cursor>,
    /// For `map`: the first error to arrive is returned at once, ahead of earlier inputs.
    fail_fast: bool,
    failure: Option<TaskError>,
    /// Set once the stream has ended early (unknown task, or fail-fast).
    finished: bool,
    _task: std::marker::PhantomData<fn() -> T>,
}

impl<T: TaskSpec, S> fmt::Debug for MapStream<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapStream")
            .field("task", &T::NAME)
            .field("order", &self.order)
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

/// How far a map stream has come: see [`MapStream::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Inputs whose results have arrived, yielded or still waiting for their turn.
    pub done: u64,
    /// Results the stream has yielded.
    pub yielded: u64,
    /// Of those, the errors.
    pub failed: u64,
    /// The inputs in all: those taken from the source so far plus the source's lower size
    /// bound, which is exact for ranges, slices and `Vec`s.
    pub total: u64,
    /// Whether the source has run out, so that `total` is exact whatever it is.
    pub total_is_exact: bool,
}

/// The most bytes of encoded inputs a map stream holds ahead of what it has yielded, whatever
/// its window in inputs: large inputs are pulled only as fast as they are used.
const WINDOW_BYTES: usize = 64 << 20;

impl<T: TaskSpec, S: InputSource<T::Input>> MapStream<T, S> {
    pub(crate) fn new(_task: T, shared: Arc<Shared>, source: S, order: Order) -> Self {
        let credit = shared.config.max_credit() as u64;
        let window = (2 * shared.seats.len() as u64 * credit).max(64);
        let (tx, rx) = StreamSink::new();
        MapStream {
            shared,
            source,
            order,
            window,
            submitted: 0,
            refills: VecDeque::new(),
            window_bytes: 0,
            yielded: 0,
            arrived: 0,
            failed: 0,
            exhausted: false,
            checked: false,
            tx,
            rx,
            ready: match order {
                Order::Ordered => Ready::Ordered(BTreeMap::new()),
                Order::Unordered => Ready::Unordered(VecDeque::new()),
            },
            current: None,
            fail_fast: false,
            failure: None,
            finished: false,
            _task: std::marker::PhantomData,
        }
    }

    pub(crate) fn size_hint_lower(&self) -> usize {
        self.source.size_hint()
    }

    /// The next result, `None` after the last: the stream without a `StreamExt` import.
    ///
    /// ```no_run
    /// # async fn demo<T: polyloop_wire::Task<Input = u64>>(pool: &polyloop_pool::Pool, task: T)
    /// # -> Result<(), polyloop_pool::TaskError> {
    /// let mut results = pool.map_unordered(task, 0..100u64);
    /// while let Some(output) = results.next().await {
    ///     let _output = output?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<Result<T::Output, TaskError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next_item(cx)).await
    }

    /// The most inputs this stream pulls ahead of the results it has yielded. Large inputs are
    /// held to fewer: at most 64 MiB of them, encoded, or one if a single input is larger.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Makes the stream yield the first error to arrive at once (what `map` wants).
    pub(crate) fn fail_fast(mut self) -> Self {
        self.fail_fast = true;
        self
    }

    fn place(&mut self, seq: u64, result: RawResult) {
        self.arrived += match &result {
            Ok(Output::Part(part)) => u64::from(part.count),
            _ => 1,
        };
        if self.fail_fast {
            match &result {
                Err(_) => {
                    let Err(err) = result else { unreachable!() };
                    self.failure.get_or_insert(err.with_input(seq));
                    return;
                }
                Ok(Output::Part(part)) if part.first_error.is_some() => {
                    let (idx, err) = self.part_error(part);
                    self.failure.get_or_insert(err.with_input(seq + u64::from(idx)));
                    return;
                }
                Ok(_) => {}
            }
        }
        self.ready.insert(seq, result);
    }

    /// The first error in `part`, and its position there.
    fn part_error(&self, part: &Part) -> (u32, TaskError) {
        let idx = part.first_error.unwrap_or_default();
        let outcome = polyloop_wire::PartOutcomes::new(&part.outcomes).nth(idx as usize);
        let err = match outcome {
            Some(Ok(outcome)) => take_outcome::<T::Output>(
                T::NAME,
                outcome,
                self.shared.config.max_nesting,
                self.shared.config.task_timeout,
            )
            .err(),
            _ => None,
        };
        let err = err.unwrap_or_else(|| bad_part(T::NAME));
        (idx, err)
    }

    /// Submits the inputs collected in `buf`, the first with sequence number `first`.
    fn submit(&mut self, buf: InputBuf, first: u64) {
        if buf.byte_len() > 0 {
            self.refills.push_back((self.submitted, buf.byte_len()));
            self.window_bytes += buf.byte_len();
        }
        if let Some(inputs) = buf.finish() {
            let job = self.shared.make_many::<T>(inputs, first, Arc::clone(&self.tx));
            self.shared.enqueue(Bundle::from([job]));
        }
    }

    /// The next output of the part being yielded, if there is one.
    fn next_from_part(&mut self) -> Option<Result<T::Output, TaskError>> {
        let cursor = self.current.as_mut()?;
        let (max_nesting, task_timeout) =
            (self.shared.config.max_nesting, self.shared.config.task_timeout);
        let seq = cursor.seq;
        let mut outcomes = PartOutcomes::new(&cursor.part.outcomes[cursor.pos..]);
        let output = match outcomes.next() {
            Some(Ok(outcome)) => {
                let used = cursor.part.outcomes.len() - cursor.pos - outcomes.rest().len();
                let output = take_outcome::<T::Output>(T::NAME, outcome, max_nesting, task_timeout);
                cursor.pos += used;
                output
            }
            // The driver checked the part; this is not reached.
            Some(Err(_)) | None => Err(bad_part(T::NAME)),
        };
        cursor.seq += 1;
        cursor.left -= 1;
        if cursor.left == 0 {
            self.current = None;
        }
        self.yielded += 1;
        Some(output.map_err(|err| err.with_input(seq)))
    }

    /// For `map`: moves the outputs of the part being yielded into `outputs`, as many as can
    /// be taken before the window wants a refill, without a poll per output. An error ends the
    /// move and is returned, as [`poll_next_item`](Self::poll_next_item) would have yielded it.
    pub(crate) fn drain_part_into(
        &mut self,
        outputs: &mut Vec<T::Output>,
    ) -> Result<(), TaskError> {
        let Some(cursor) = self.current.as_mut() else { return Ok(()) };
        // What `poll_next_item` would take from the part before it refills.
        let room = (self.submitted - self.yielded).saturating_sub(self.window / 2);
        let take = u64::from(cursor.left).min(room) as u32;
        let (max_nesting, task_timeout) =
            (self.shared.config.max_nesting, self.shared.config.task_timeout);
        let mut outcomes = PartOutcomes::new(&cursor.part.outcomes[cursor.pos..]);
        outputs.reserve(take as usize);
        let mut result = Ok(());
        let mut taken = 0;
        while taken < take {
            let output = match outcomes.next() {
                Some(Ok(outcome)) => {
                    take_outcome::<T::Output>(T::NAME, outcome, max_nesting, task_timeout)
                }
                // The driver checked the part; this is not reached.
                Some(Err(_)) | None => Err(bad_part(T::NAME)),
            };
            taken += 1;
            match output {
                Ok(output) => outputs.push(output),
                Err(err) => {
                    self.failed += 1;
                    result = Err(err.with_input(cursor.seq + u64::from(taken - 1)));
                    break;
                }
            }
        }
        cursor.pos = cursor.part.outcomes.len() - outcomes.rest().len();
        cursor.seq += u64::from(taken);
        cursor.left -= taken;
        if cursor.left == 0 {
            self.current = None;
        }
        self.yielded += u64::from(taken);
        result
    }

    /// How far the map has come, e.g. for a progress bar.
    ///
    /// ```no_run
    /// # async fn demo<T: polyloop_wire::Task<Input = u64>>(pool: &polyloop_pool::Pool, task: T) {
    /// let mut results = pool.map_stream(task, 0..10_000u64);
    /// while let Some(_result) = results.next().await {
    ///     let progress = results.progress();
    ///     eprint!("\r{}/{} done, {} failed", progress.done, progress.total, progress.failed);
    /// }
    /// # }
    /// ```
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.arrived,
            yielded: self.yielded,
            failed: self.failed,
            total: self.submitted + self.source.size_hint() as u64,
            total_is_exact: self.exhausted,
        }
    }

    pub(crate) fn poll_next_item(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<T::Output, TaskError>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut *this).poll_next_uncounted(cx);
        if let Poll::Ready(Some(Err(_))) = &next {
            this.failed += 1;
        }
        next
    }

    fn poll_next_uncounted(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<T::Output, TaskError>>> {
        let this = &mut *self;
        if !this.checked {
            this.checked = true;
            if let Err(err) = this.shared.check_task::<T>() {
                this.exhausted = true;
                this.finished = true;
                return Poll::Ready(Some(Err(err)));
            }
        }
        if this.finished {
            return Poll::Ready(None);
        }
        // Within a part, while the window needs no refill, the next output is all there is to
        // do: results that arrived meanwhile (a failure among them) are looked at between parts.
        if this.current.is_some() && this.submitted - this.yielded > this.window / 2 {
            return Poll::Ready(this.next_from_part());
        }
        loop {
            // Refill only once half the window is free, then up to the full window, as one bundle:
            // topping up one input per result taken would send every task through the queue on
            // its own.
            let low_water = this.window / 2;
            let refill = this.submitted - this.yielded <= low_water;
            while let Some(&(end, bytes)) = this.refills.front()
                && end <= this.yielded
            {
                this.refills.pop_front();
                this.window_bytes -= bytes;
            }
            let mut buf = InputBuf::default();
            let mut first = this.submitted;
            // The shared values the inputs serialize stay with the inputs.
            let mut pins = polyloop_shm::Collector::start();
            // Bounded in bytes too: at least one input is always let through.
            while refill
                && !this.exhausted
                && this.submitted - this.yielded < this.window
                && this.window_bytes + buf.byte_len() < WINDOW_BYTES
            {
                match this.source.poll_next_input(cx) {
                    Poll::Ready(Some(input)) => {
                        match buf.push_encoded(&input) {
                            Ok(()) => {}
                            Err(err) => {
                                // Sent in order: the inputs before it, then its own error.
                                buf.pin(pins.take());
                                this.submit(std::mem::take(&mut buf), first);
                                let reply =
                                    Reply::Stream { tx: Arc::clone(&this.tx), seq: this.submitted };
                                reply.send(Err(input_error::<T>(&input, &err)));
                                first = this.submitted + 1;
                            }
                        }
                        this.submitted += 1;
                    }
                    Poll::Ready(None) => this.exhausted = true,
                    Poll::Pending => break,
                }
            }
            buf.pin(pins.take());
            drop(pins);
            this.submit(buf, first);
            while let Ok(results) = this.rx.try_recv() {
                for StreamResult { seq, result, .. } in results {
                    this.place(seq, result);
                }
            }
            if let Some(err) = this.failure.take() {
                // Fail fast: nothing after the first error is wanted; Drop cancels the rest.
                this.exhausted = true;
                this.finished = true;
                return Poll::Ready(Some(Err(err)));
            }
            if let Some(output) = this.next_from_part() {
                return Poll::Ready(Some(output));
            }
            match this.ready.pop(this.yielded) {
                Some((seq, Ok(Output::Part(part)))) => {
                    this.current = Some(Cursor { seq, left: part.count, pos: 0, part });
                    continue;
                }
                Some((seq, result)) => {
                    this.yielded += 1;
                    let output = take(T::NAME, result, this.shared.config.max_nesting);
                    return Poll::Ready(Some(output.map_err(|err| err.with_input(seq))));
                }
                None => {}
            }
            if this.exhausted && this.submitted == this.yielded {
                return Poll::Ready(None);
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(results)) => {
                    for StreamResult { seq, result, .. } in results {
                        this.place(seq, result);
                    }
                }
                // We hold a sender, so the channel never closes.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: TaskSpec, S: InputSource<T::Input>> Stream for MapStream<T, S> {
    type Item = Result<T::Output, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_next_item(cx)
    }
}

impl<T: TaskSpec, S> Drop for MapStream<T, S> {
    fn drop(&mut self) {
        if self.submitted != self.yielded {
            self.tx.close();
            self.rx.close();
            self.shared.sweep();
        }
    }
}

/// Results waiting to be yielded, each under its (first) sequence number.
#[derive(Debug)]
enum Ready {
    /// By sequence number: the next to yield is the one numbered like the results yielded.
    Ordered(BTreeMap<u64, RawResult>),
    /// As they came.
    Unordered(VecDeque<(u64, RawResult)>),
}

impl Ready {
    fn insert(&mut self, seq: u64, result: RawResult) {
        match self {
            Ready::Ordered(ready) => drop(ready.insert(seq, result)),
            Ready::Unordered(ready) => ready.push_back((seq, result)),
        }
    }

    /// The next result to yield, after `yielded` results.
    fn pop(&mut self, yielded: u64) -> Option<(u64, RawResult)> {
        match self {
            Ready::Ordered(ready) => match ready.first_key_value() {
                Some((&seq, _)) if seq == yielded => ready.pop_first(),
                _ => None,
            },
            Ready::Unordered(ready) => ready.pop_front(),
        }
    }
}

/// A part being yielded: `left` outcomes from `pos`, the next for input `seq`.
#[derive(Debug)]
struct Cursor {
    seq: u64,
    left: u32,
    pos: usize,
    part: Part,
}

/// The error of an outcome the stream could not read (a part the driver checked cannot be).
fn bad_part(task: &'static str) -> TaskError {
    TaskError::new(crate::error::Kind::Serialization, task, "a chunk's outcome could not be read")
}
