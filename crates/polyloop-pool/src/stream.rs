//! `map_stream` and `map_unordered`: lazily submitted inputs, results as a `Stream`.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use polyloop_wire::TaskSpec;

use crate::TaskError;
use crate::job::{RawResult, Reply, StreamResult, StreamRx, StreamSink, StreamTx, take};
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
    /// Results yielded so far.
    yielded: u64,
    exhausted: bool,
    checked: bool,
    tx: StreamTx,
    rx: StreamRx,
    /// Ordered: results by sequence number, starting at `yielded`. Unordered: results as they
    /// came. Each with its sequence number.
    ready: VecDeque<Option<(u64, RawResult)>>,
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
            yielded: 0,
            exhausted: false,
            checked: false,
            tx,
            rx,
            ready: VecDeque::new(),
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

    /// The most inputs this stream pulls ahead of the results it has yielded.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Makes the stream yield the first error to arrive at once (what `map` wants).
    pub(crate) fn fail_fast(mut self) -> Self {
        self.fail_fast = true;
        self
    }

    fn place(&mut self, seq: u64, result: RawResult) {
        let result = match result {
            Err(err) if self.fail_fast => {
                self.failure.get_or_insert(err.with_input(seq));
                return;
            }
            result => result,
        };
        let result = (seq, result);
        match self.order {
            Order::Unordered => self.ready.push_back(Some(result)),
            Order::Ordered => {
                let idx = (seq - self.yielded) as usize;
                if self.ready.len() <= idx {
                    self.ready.resize_with(idx + 1, || None);
                }
                self.ready[idx] = Some(result);
            }
        }
    }

    pub(crate) fn poll_next_item(
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
        loop {
            // Refill only once half the window is free, then up to the full window, as one chunk:
            // topping up one input per result taken would send every task through the queue on
            // its own.
            let mut chunk = Vec::new();
            let low_water = this.window / 2;
            let refill = this.submitted - this.yielded <= low_water;
            while refill && !this.exhausted && this.submitted - this.yielded < this.window {
                match this.source.poll_next_input(cx) {
                    Poll::Ready(Some(input)) => {
                        let reply = Reply::Stream { tx: Arc::clone(&this.tx), seq: this.submitted };
                        chunk.extend(this.shared.make_job::<T>(&input, reply));
                        this.submitted += 1;
                    }
                    Poll::Ready(None) => this.exhausted = true,
                    Poll::Pending => break,
                }
            }
            this.shared.enqueue(chunk);
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
            if let Some(Some(_)) = this.ready.front()
                && let Some(Some((seq, result))) = this.ready.pop_front()
            {
                this.yielded += 1;
                let output = take(T::NAME, result, this.shared.config.max_nesting);
                return Poll::Ready(Some(output.map_err(|err| err.with_input(seq))));
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
