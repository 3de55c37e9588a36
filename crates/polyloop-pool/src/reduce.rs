//! `Pool::map_reduce`: the outputs of a map folded where they are made.
//!
//! The inputs go out in batches, each one [`Fold`] task: its worker runs the batch's inputs and
//! folds their outputs with the reducer, so one partial result per batch comes back. The
//! parent folds the partials, in input order, with the same reducer.

use std::sync::{Arc, Mutex, PoisonError};

use polyloop_wire::{Fold, FoldInput, FoldOutput, PartOutcomes, Task, TaskSpec};

use crate::error::Kind;
use crate::job::input_error;
use crate::{Pool, TaskError};

/// The most inputs one fold runs: enough that a batch's partial result is worth its trip,
/// few enough that a map still spreads over the workers and a failure stops it early.
const MAX_BATCH: usize = 4096;
/// The first batch of inputs whose number is unknown (no size hint): each next one is twice
/// as large, up to [`MAX_BATCH`], so that few inputs still spread over the workers and many
/// are still folded in large batches.
const FIRST_UNSIZED_BATCH: usize = 16;

impl Pool {
    /// Runs `task` on every input and folds the outputs with `reducer`, an associative task
    /// that combines two outputs into one, in input order: `reducer(reducer(o0, o1), o2)...`.
    /// Each worker folds the outputs of the inputs it ran, and only those partial results
    /// travel back, so a word count over many documents sends back one table per batch, not
    /// one per document. `None` if there are no inputs; the first error (a task's or the
    /// reducer's, with [`TaskError::input_index`]) stops the map, as [`map`](Pool::map) does.
    ///
    /// The reducer must be associative, not commutative: outputs are folded in input order
    /// within a batch and across batches. Inputs are pulled lazily, in batches of up to 4096
    /// (a quarter of each worker's share of the input's size hint; without a hint, 16 inputs
    /// first, each next batch twice as many), and a batch runs as one
    /// task: a pool-wide [`task_timeout`](crate::PoolBuilder::task_timeout) and
    /// [`retries`](crate::PoolBuilder::retries) apply to each batch as a whole, and
    /// `child_concurrency` of its inputs run at once.
    ///
    /// ```
    /// # use polyloop_pool::Pool;
    /// #[polyloop_macros::task(crate = "polyloop_child")] // `#[polyloop::task]` with the facade
    /// async fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// #[polyloop_macros::task(crate = "polyloop_child")]
    /// async fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder().processes(2).build().await?;
    /// let sum = pool.map_reduce(square, 0..1000u64, add).await?;
    /// assert_eq!(sum, Some(332_833_500));
    /// pool.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn map_reduce<T, R, I>(
        &self,
        _task: T,
        inputs: I,
        _reducer: R,
    ) -> Result<Option<T::Output>, TaskError>
    where
        T: TaskSpec,
        R: Task<Input = (T::Output, T::Output), Output = T::Output>,
        I: IntoIterator<Item = T::Input>,
    {
        let shared = &self.shared;
        let (task, reducer) = (shared.task_index::<T>()?, shared.task_index::<R>()?);
        shared.task_index::<Fold>().map_err(|err| {
            let why = "the workers have no built-in fold: a worker with a registry of its own \
                       adds polyloop_child::FOLD to it";
            TaskError::new(Kind::UnknownTask, T::NAME, format!("{why} ({})", err.message()))
        })?;
        let config = &shared.config;
        let inputs = inputs.into_iter();
        let batch = match inputs.size_hint().0 / (4 * shared.seats.len()) {
            0 if inputs.size_hint().0 == 0 => Batch::Growing(FIRST_UNSIZED_BATCH),
            share => Batch::Fixed(share.clamp(1, MAX_BATCH)),
        };
        let batches = Batches::<T, _> {
            inputs,
            batch,
            starts: Arc::default(),
            taken: 0,
            done: false,
            template: FoldInput {
                task,
                reducer,
                concurrency: config.child_concurrency,
                max_nesting: config.max_nesting,
                count: 0,
                inputs: Vec::new(),
            },
            failed: Arc::default(),
            pins: Arc::default(),
            _task: std::marker::PhantomData,
        };
        let (failed, _pins) = (Arc::clone(&batches.failed), Arc::clone(&batches.pins));
        let starts = Arc::clone(&batches.starts);
        let mut partials = self.map_stream(Fold, batches).fail_fast();
        let mut folded: Option<T::Output> = None;
        // The position of batch `n`'s first input.
        let start_of = |n: u64| {
            let starts = starts.lock().unwrap_or_else(PoisonError::into_inner);
            usize::try_from(n).ok().and_then(|n| starts.get(n).copied()).unwrap_or(0)
        };
        let mut next_batch = 0;
        while let Some(result) = partials.next().await {
            // Partials come in batch order; a fold that failed as a whole may come first (the
            // stream fails fast), and says which batch it was.
            let batch = match &result {
                Err(err) => err.input_index().unwrap_or(next_batch),
                Ok(_) => next_batch,
            };
            next_batch += 1;
            let start = start_of(batch);
            let partial = match result {
                Ok(FoldOutput::Empty) => continue,
                Ok(FoldOutput::Folded(bytes)) => {
                    polyloop_wire::decode_value::<T::Output>(&bytes, config.max_nesting).map_err(
                        |err| {
                            let why = format!("output failed to deserialize: {err}");
                            TaskError::new(Kind::Serialization, T::NAME, why)
                        },
                    )?
                }
                Ok(FoldOutput::Failed { index, by_reducer, outcome }) => {
                    let name = if by_reducer { R::NAME } else { T::NAME };
                    let err = PartOutcomes::new(&outcome)
                        .next()
                        .and_then(Result::ok)
                        .and_then(|outcome| {
                            TaskError::from_outcome(name, outcome, config.task_timeout)
                        })
                        .unwrap_or_else(|| {
                            TaskError::new(Kind::Serialization, name, "a fold's failure is garbled")
                        });
                    return Err(err.with_input(start + u64::from(index)));
                }
                // A fold that failed as a whole (its worker was lost, say): its first input.
                Err(err) => return Err(err.with_input(start)),
            };
            folded = Some(match folded {
                None => partial,
                Some(before) => R::run((before, partial))
                    .await
                    .map_err(|remote| TaskError::failed(R::NAME, remote).with_input(start))?,
            });
        }
        if let Some(err) = failed.lock().unwrap_or_else(PoisonError::into_inner).take() {
            return Err(err);
        }
        Ok(folded)
    }
}

/// The inputs of a map-reduce, encoded into one [`FoldInput`] per batch. An input
/// that does not serialize ends them, its error kept in `failed`; the shared values the inputs
/// refer to are kept in `pins` until the map-reduce is done.
struct Batches<T, I> {
    inputs: I,
    batch: Batch,
    /// The position of each batch's first input.
    starts: Arc<Mutex<Vec<u64>>>,
    /// Inputs taken from `inputs` so far.
    taken: u64,
    /// Set once an input failed to serialize: nothing after it is taken.
    done: bool,
    template: FoldInput,
    failed: Arc<Mutex<Option<TaskError>>>,
    pins: Arc<Mutex<polyloop_shm::Pins>>,
    _task: std::marker::PhantomData<fn() -> T>,
}

/// How many inputs a batch takes.
#[derive(Debug, Clone, Copy)]
enum Batch {
    Fixed(usize),
    /// The next batch's size, which doubles.
    Growing(usize),
}

impl Batch {
    fn len(self) -> usize {
        match self {
            Batch::Fixed(len) | Batch::Growing(len) => len,
        }
    }

    fn next(self) -> Batch {
        match self {
            Batch::Fixed(_) => self,
            Batch::Growing(len) => Batch::Growing((2 * len).min(MAX_BATCH)),
        }
    }
}

impl<T: TaskSpec, I: Iterator<Item = T::Input>> Iterator for Batches<T, I> {
    type Item = FoldInput;

    fn next(&mut self) -> Option<FoldInput> {
        if self.done {
            return None;
        }
        let mut fold = FoldInput { inputs: Vec::new(), ..self.template.clone() };
        let start = self.taken;
        let len = self.batch.len();
        let mut pins = polyloop_shm::Pins::default();
        for input in self.inputs.by_ref() {
            self.taken += 1;
            let (encoded, pinned) = polyloop_shm::collect_pins(|| {
                polyloop_wire::push_encoded_input(&mut fold.inputs, &input)
            });
            pins.extend(pinned);
            match encoded {
                Ok(()) => {
                    fold.count += 1;
                }
                Err(err) => {
                    let failure = input_error::<T>(&input, &err).with_input(self.taken - 1);
                    *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(failure);
                    self.done = true;
                    break;
                }
            }
            if fold.count as usize == len {
                break;
            }
        }
        self.pins.lock().unwrap_or_else(PoisonError::into_inner).extend(pins);
        if fold.count == 0 {
            return None;
        }
        self.batch = self.batch.next();
        self.starts.lock().unwrap_or_else(PoisonError::into_inner).push(start);
        Some(fold)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        // At most as many batches as inputs; at least one per largest batch.
        let (low, high) = self.inputs.size_hint();
        (low.div_ceil(MAX_BATCH), high)
    }
}
