//! The built-in task behind `Pool::map_reduce`: many inputs of one task, run in one worker,
//! their outputs folded there with a reducer task, so that one partial result travels back.

use serde::{Deserialize, Serialize};

crate::task_spec! {
    /// The worker's built-in fold: runs [`FoldInput::inputs`] with task [`FoldInput::task`] and
    /// folds their outputs, in input order, with task [`FoldInput::reducer`]. Every worker that
    /// serves `polyloop_child::Registry::linked()` has it.
    pub Fold: FoldInput => FoldOutput = "polyloop::fold"
}

/// What a [`Fold`] runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoldInput {
    /// The mapped task's index in the worker's registry.
    pub task: u32,
    /// The reducer's index: a task whose input is two outputs of `task` and whose output is one.
    pub reducer: u32,
    /// How many of the inputs run at once.
    pub concurrency: u32,
    /// The limit values are decoded with, as the pool's `max_nesting`.
    pub max_nesting: u32,
    /// How many inputs `inputs` holds.
    pub count: u32,
    /// The encoded inputs, each as [`push_input`](crate::push_input) writes it.
    #[serde(with = "serde_bytes")]
    pub inputs: Vec<u8>,
}

/// What a [`Fold`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FoldOutput {
    /// There were no inputs.
    Empty,
    /// The fold of every output: an encoded output of the mapped task.
    Folded(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The first input (in input order) whose task, or whose fold into what came before, did
    /// not produce a value.
    Failed {
        /// The input's position among the fold's inputs.
        index: u32,
        /// Whether the reducer failed, rather than the mapped task.
        by_reducer: bool,
        /// Why, as one outcome that [`push_outcome`](crate::push_outcome) wrote (never `Ok`).
        #[serde(with = "serde_bytes")]
        outcome: Vec<u8>,
    },
}
