//! The built-in [`Fold`] task: many inputs of one task, run here, their outputs folded with a
//! reducer task in input order, so that one partial result goes back to the parent.

use std::collections::BTreeMap;

use polyloop_wire::{
    ChunkInputs, Fold, FoldInput, FoldOutput, Outcome, RemoteError, Task, TaskSpec,
};
use tokio::task::JoinSet;

use crate::panic::CatchUnwind;
use crate::registry::{Failure, TaskEntry, TaskFuture};

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
    let mut done: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut tree = Tree { stack: Vec::new(), last: 0, reducer, max_nesting };
    let mut next = 0;
    while next < inputs.len() {
        while started < inputs.len() && running.len() < concurrency {
            let index = started as u32;
            let lost = |outcome| Lost { index, by_reducer: false, outcome };
            let future = (task.run)(inputs[started], max_nesting)
                .map_err(|why| lost(Outcome::Serialization(why)))?;
            running.spawn(async move { (index, output_of(future).await) });
            started += 1;
        }
        let Some(joined) = running.join_next().await else { break };
        let (index, output) = joined.unwrap_or_else(|err| {
            // Only a panic outside the task's own polls gets here (the task's are caught).
            (next as u32, Err(Outcome::Panicked(format!("a fold task ended: {err}"))))
        });
        let output = output.map_err(|outcome| Lost { index, by_reducer: false, outcome })?;
        done.insert(index as usize, output);
        while let Some(output) = done.remove(&next) {
            tree.push(output, next as u32).await?;
            next += 1;
        }
    }
    tree.finish().await
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

/// Runs a started task to its encoded output, or the outcome that says why there is none.
async fn output_of(future: TaskFuture) -> Result<Vec<u8>, Outcome<'static>> {
    let mut future = CatchUnwind::new(future);
    match (&mut future).await {
        Err(panic) => Err(Outcome::Panicked(panic)),
        Ok(Err(Failure::Failed(err))) => Err(Outcome::Failed(err)),
        Ok(Err(Failure::Serialization(why))) => Err(Outcome::Serialization(why)),
        Ok(Ok(())) => {
            let running = future.get_ref();
            let mut out = Vec::new();
            running.encode_into(&mut out).map_err(Outcome::Serialization)?;
            Ok(out)
        }
    }
}
