//! The built-in [`Fold`] task: many inputs of one task, run here, their outputs folded with a
//! reducer task in input order, so that one partial result goes back to the parent.

use std::collections::BTreeMap;

use polyloop_wire::{
    ChunkInputs, Fold, FoldInput, FoldOutput, Outcome, RemoteError, Task, TaskSpec,
};
use tokio::task::JoinSet;

use crate::panic::CatchUnwind;
use crate::registry::{Failure, TaskEntry, TaskFuture, TypedFold};

/// The registry entry of the built-in fold: [`Registry::linked`](crate::Registry::linked) has
/// it; a worker with a registry of its own adds it to serve `Pool::map_reduce`.
pub const FOLD: TaskEntry = TaskEntry::of::<FoldRunner>();

#[linkme::distributed_slice(crate::TASKS)]
static FOLD_LINKED: TaskEntry = FOLD;

/// [`Fold`]'s code, on this side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FoldRunner;

impl TaskSpec for FoldRunner {
    type Input = FoldInput;
    type Output = FoldOutput;
    const NAME: &'static str = Fold::NAME;
}

impl Task for FoldRunner {
    async fn run(input: FoldInput) -> Result<FoldOutput, RemoteError> {
        let serving = crate::worker::serving_registry()
            .ok_or_else(|| RemoteError::from_display(&"the fold ran outside a worker"))?;
        let entry = |index: u32| {
            serving.entry(index).ok_or_else(|| {
                RemoteError::from_display(&format_args!("the worker has no task {index}"))
            })
        };
        let (task, reducer) = (entry(input.task)?, entry(input.reducer)?);
        let inputs = ChunkInputs::new(&input.inputs, input.count)
            .collect::<Result<Vec<&[u8]>, _>>()
            .map_err(|err| RemoteError::from_display(&format_args!("fold inputs: {err}")))?;
        Ok(fold(task, reducer, &inputs, input.concurrency.max(1) as usize, input.max_nesting).await)
    }
}

/// Why one input gave no output: the outcome the parent reports for it.
struct Lost {
    index: u32,
    by_reducer: bool,
    outcome: Outcome<'static>,
}

async fn fold(
    task: &'static TaskEntry,
    reducer: &'static TaskEntry,
    inputs: &[&[u8]],
    concurrency: usize,
    max_nesting: u32,
) -> FoldOutput {
    match try_fold(task, reducer, inputs, concurrency, max_nesting).await {
        Ok(None) => FoldOutput::Empty,
        Ok(Some(folded)) => FoldOutput::Folded(folded),
        Err(Lost { index, by_reducer, outcome }) => {
            let mut encoded = Vec::new();
            polyloop_wire::push_outcome(&mut encoded, &outcome);
            FoldOutput::Failed { index, by_reducer, outcome: encoded }
        }
    }
}

/// Runs the inputs, at most `concurrency` at once, and folds the outputs in input order as they
/// come in; the first input to fail (in input order) ends the fold, and dropping the set
/// cancels what still runs.
///
/// The fold is a balanced tree over the outputs in order, built as they come in: combining
/// two outputs costs decoding and encoding both, so folding each output into one growing
/// value would cost that value's size once per input, and a tree costs it once per level.
async fn try_fold(
    task: &'static TaskEntry,
    reducer: &'static TaskEntry,
    inputs: &[&[u8]],
    concurrency: usize,
    max_nesting: u32,
) -> Result<Option<Vec<u8>>, Lost> {
    let mut running = JoinSet::new();
    let mut started = 0;
    let mut done: BTreeMap<usize, TaskFuture> = BTreeMap::new();
    // A reducer defined with `#[polyloop::task]` folds its values unencoded; any other, through
    // their encodings.
    let mut folding = match (reducer.typed_fold)() {
        Some(typed) => Folding::Typed { fold: typed, last: 0 },
        None => Folding::Encoded(Tree { stack: Vec::new(), last: 0, reducer, max_nesting }),
    };
    let mut next = 0;
    while next < inputs.len() {
        while started < inputs.len() && running.len() < concurrency {
            let index = started as u32;
            let lost = |outcome| Lost { index, by_reducer: false, outcome };
            let future = (task.run)(inputs[started], max_nesting)
                .map_err(|why| lost(Outcome::Serialization(why)))?;
            running.spawn(async move { (index, finished(future).await) });
            started += 1;
        }
        let Some(joined) = running.join_next().await else { break };
        let (index, output) = joined.unwrap_or_else(|err| {
            // Only a panic outside the task's own polls gets here (the task's are caught).
            (next as u32, Err(Outcome::Panicked(format!("a fold task ended: {err}"))))
        });
        let output = output.map_err(|outcome| Lost { index, by_reducer: false, outcome })?;
        done.insert(index as usize, output);
        while let Some(finished) = done.remove(&next) {
            folding.push(finished, next as u32).await?;
            next += 1;
        }
    }
    folding.finish().await
}

enum Folding {
    /// With the index of the last input pushed, which a failure to encode the value names.
    Typed {
        fold: Box<dyn TypedFold>,
        last: u32,
    },
    Encoded(Tree),
}

impl Folding {
    /// Folds in the output of input `index`, the next in order.
    async fn push(&mut self, mut finished: TaskFuture, index: u32) -> Result<(), Lost> {
        let lost = |by_reducer, outcome| Lost { index, by_reducer, outcome };
        match self {
            Folding::Typed { fold, last } => {
                *last = index;
                let Some(output) = finished.as_mut().take_output() else {
                    let why = "the task gave no output to fold".to_owned();
                    return Err(lost(false, Outcome::Serialization(why)));
                };
                fold.push(output).await.map_err(|outcome| lost(true, outcome))
            }
            Folding::Encoded(tree) => {
                let mut output = Vec::new();
                finished
                    .encode_into(&mut output)
                    .map_err(|why| lost(false, Outcome::Serialization(why)))?;
                tree.push(output, index).await
            }
        }
    }

    async fn finish(self) -> Result<Option<Vec<u8>>, Lost> {
        match self {
            Folding::Typed { fold, last } => fold.finish().map_err(|why| Lost {
                index: last,
                by_reducer: true,
                outcome: Outcome::Serialization(why),
            }),
            Folding::Encoded(tree) => tree.finish().await,
        }
    }
}

/// A fold in progress: the roots of complete subtrees over consecutive outputs, left to
/// right, each with its height (a binary counter: two of one height make one of the next).
struct Tree {
    stack: Vec<(u32, Vec<u8>)>,
    /// The index of the last output pushed, which a failure in the final combinations names.
    last: u32,
    reducer: &'static TaskEntry,
    max_nesting: u32,
}

impl Tree {
    /// Adds the output of input `index`, the next in order.
    async fn push(&mut self, output: Vec<u8>, index: u32) -> Result<(), Lost> {
        self.last = index;
        let mut node = (0, output);
        while let Some(&(height, _)) = self.stack.last()
            && height == node.0
        {
            let (_, left) = self.stack.pop().unwrap_or_default();
            node = (height + 1, self.combine(left, node.1, index).await?);
        }
        self.stack.push(node);
        Ok(())
    }

    /// The fold of everything pushed: the roots combined right to left.
    async fn finish(mut self) -> Result<Option<Vec<u8>>, Lost> {
        let Some((_, mut folded)) = self.stack.pop() else { return Ok(None) };
        while let Some((_, left)) = self.stack.pop() {
            folded = self.combine(left, folded, self.last).await?;
        }
        Ok(Some(folded))
    }

    /// `reducer(left, right)`; a failure is reported against input `index`.
    async fn combine(&self, left: Vec<u8>, right: Vec<u8>, index: u32) -> Result<Vec<u8>, Lost> {
        // The reducer's input, the pair (left, right), is the two encodings back to back.
        let mut pair = left;
        pair.extend_from_slice(&right);
        let lost = |outcome| Lost { index, by_reducer: true, outcome };
        let future = (self.reducer.run)(&pair, self.max_nesting)
            .map_err(|why| lost(Outcome::Serialization(why)))?;
        output_of(future).await.map_err(lost)
    }
}

/// Runs a started task until it holds its output, or to the outcome that says why it has none.
async fn finished(future: TaskFuture) -> Result<TaskFuture, Outcome<'static>> {
    let mut future = CatchUnwind::new(future);
    match (&mut future).await {
        Err(panic) => Err(Outcome::Panicked(panic)),
        Ok(Err(Failure::Failed(err))) => Err(Outcome::Failed(err)),
        Ok(Err(Failure::Serialization(why))) => Err(Outcome::Serialization(why)),
        Ok(Ok(())) => Ok(future.into_inner()),
    }
}

/// Runs a started task to its encoded output, or the outcome that says why there is none.
async fn output_of(future: TaskFuture) -> Result<Vec<u8>, Outcome<'static>> {
    let finished = finished(future).await?;
    let mut out = Vec::new();
    finished.encode_into(&mut out).map_err(Outcome::Serialization)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use polyloop_wire::{RemoteError, Task};

    use super::*;
    use crate::registry::TypedFoldOf;

    polyloop_wire::task_spec! {
        Text: u64 => String = "t::text"
    }
    impl Task for Text {
        async fn run(x: u64) -> Result<String, RemoteError> {
            // Later inputs finish first: the fold must put them back in order.
            tokio::time::sleep(std::time::Duration::from_millis(20 - x % 20)).await;
            Ok(x.to_string())
        }
    }

    polyloop_wire::task_spec! {
        Join: (String, String) => String = "t::join"
    }
    impl Task for Join {
        async fn run((a, b): (String, String)) -> Result<String, RemoteError> {
            if b.starts_with("666") {
                return Err(RemoteError::from_display(&"not that one"));
            }
            Ok(format!("{a},{b}"))
        }
    }

    static TEXT: TaskEntry = TaskEntry::of::<Text>();
    /// Folded through encodings, as a reducer without a typed fold is.
    static JOIN_ENCODED: TaskEntry = TaskEntry::of::<Join>();
    /// Folded unencoded, as a `#[polyloop::task]` reducer is.
    static JOIN_TYPED: TaskEntry =
        TaskEntry::of::<Join>().with_typed_fold(TypedFoldOf::<Join>::start);

    fn inputs(values: impl Iterator<Item = u64>) -> Vec<Vec<u8>> {
        values.map(|x| postcard::to_allocvec(&x).unwrap()).collect()
    }

    async fn run(reducer: &'static TaskEntry, values: &[Vec<u8>]) -> Result<Option<String>, Lost> {
        let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let folded = try_fold(&TEXT, reducer, &slices, 16, 128).await?;
        Ok(folded.map(|bytes| postcard::from_bytes(&bytes).unwrap()))
    }

    #[tokio::test]
    async fn both_folds_keep_input_order_and_agree() {
        let values = inputs(0..100);
        let expected = (0..100).map(|x: u64| x.to_string()).collect::<Vec<_>>().join(",");
        for reducer in [&JOIN_ENCODED, &JOIN_TYPED] {
            let folded =
                run(reducer, &values).await.unwrap_or_else(|lost| panic!("{}", lost.index));
            assert_eq!(folded.as_deref(), Some(expected.as_str()));
            assert_eq!(run(reducer, &[]).await.ok(), Some(None));
            let one = run(reducer, &inputs(7..8)).await.ok().flatten();
            assert_eq!(one.as_deref(), Some("7"));
        }
    }

    #[tokio::test]
    async fn a_failing_reducer_or_input_names_its_input() {
        // The typed fold combines 666 as it comes; the tree combines "666,667" once 667 is in.
        for (reducer, failing) in [(&JOIN_ENCODED, 7), (&JOIN_TYPED, 6)] {
            let Err(lost) = run(reducer, &inputs(660..670)).await else { panic!("folded") };
            assert!(lost.by_reducer && matches!(lost.outcome, Outcome::Failed(_)));
            assert_eq!(lost.index, failing);
            let mut values = inputs(0..10);
            values[4] = b"garbage that is no u64".to_vec();
            let Err(lost) = run(reducer, &values).await else { panic!("folded") };
            assert!(!lost.by_reducer && matches!(lost.outcome, Outcome::Serialization(_)));
            assert_eq!(lost.index, 4);
        }
    }
}
