//! polyloop's child-process runtime: the task registry and the worker loop.
//!
//! A worker is a program started by a polyloop pool. It finds its socket to the parent in the
//! environment ([`worker_hook`]), builds a tokio runtime, and [`serve`]s: it answers the
//! handshake, runs up to `child_concurrency` tasks at once, catches each task's panics, and sends
//! results back in batches, flushing as soon as nothing more is ready.
//!
//! A worker binary of one's own (its own runtime, thread names, subscriber) takes the
//! bootstrap's steps one by one: [`Inherited::from_env`], [`Inherited::prepare`], then [`serve`]
//! on its runtime; `examples/custom_worker.rs` is one.
//!
//! Tasks are found in a [`Registry`]; `#[polyloop::task]` adds each task to [`TASKS`] at link
//! time, so nobody lists them by hand. The worker loop takes any `AsyncRead + AsyncWrite`, so a
//! custom worker binary (or a test) can drive it over whatever transport it likes.
//!
//! # Example: a worker loop over an in-memory pipe
//! ```
//! use polyloop_child::{Registry, TaskEntry, serve};
//! use polyloop_wire::{RemoteError, Task, TaskSpec};
//!
//! #[derive(Clone, Copy)]
//! struct Double;
//! impl TaskSpec for Double {
//!     type Input = u64;
//!     type Output = u64;
//!     const NAME: &'static str = "doc::double";
//! }
//! impl Task for Double {
//!     async fn run(x: u64) -> Result<u64, RemoteError> {
//!         Ok(x * 2)
//!     }
//! }
//!
//! static ENTRIES: [TaskEntry; 1] = [TaskEntry::of::<Double>()];
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let (parent_end, child_end) = tokio::io::duplex(1 << 16);
//! let worker = tokio::spawn(serve(child_end, Registry::new(&ENTRIES)));
//! drop(parent_end); // the parent went away before the handshake: the worker just ends
//! assert!(worker.await.unwrap().is_ok());
//! # });
//! ```

mod attempt;
mod chunk;
mod fold;
mod outbox;
mod panic;
mod process;
mod registry;
mod worker;

pub use attempt::attempt;
pub use fold::FOLD;
pub use process::{
    Inherited, ignore_group_signals, install_panic_hook, run_worker_process, watch_parent,
    worker_hook,
};
pub use registry::{Failure, Registry, RunFn, RunningTask, TASKS, TaskEntry, TaskFuture};
pub use worker::{WorkerError, serve, worker_index};

/// What the expansions of `#[polyloop::task]` and `#[polyloop::main]` refer to, as
/// `<crate>::__private::…` (`::polyloop` by default, `crate = "polyloop_child"` without the
/// facade). Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use linkme;
    pub use polyloop_wire::{RemoteError, SCHEMAS, Task, TaskSchema, TaskSpec};
    pub use tokio;

    pub use crate::registry::TypedFold;
    pub use crate::{TASKS, TaskEntry, worker_hook};

    /// What `#[polyloop::task(result)]` needs of a return type the macro cannot see is a
    /// `Result` (an alias): that it is one.
    pub trait TaskResult {
        type Ok;
        type Err;
        fn into_result(self) -> Result<Self::Ok, Self::Err>;
    }
    impl<T, E> TaskResult for Result<T, E> {
        type Ok = T;
        type Err = E;
        fn into_result(self) -> Result<T, E> {
            self
        }
    }

    /// Autoref specialization: a task whose input is two of its outputs can reduce, and gets
    /// a fold that keeps the value unencoded (`Pool::map_reduce`).
    #[derive(Debug)]
    pub struct ReducerProbe<T>(pub std::marker::PhantomData<T>);

    pub trait ViaReducer {
        fn typed_fold(&self) -> Option<Box<dyn crate::registry::TypedFold>>;
    }
    impl<T> ViaReducer for &ReducerProbe<T>
    where
        T: Task<Input = (<T as TaskSpec>::Output, <T as TaskSpec>::Output)>,
    {
        fn typed_fold(&self) -> Option<Box<dyn crate::registry::TypedFold>> {
            crate::registry::TypedFoldOf::<T>::start()
        }
    }

    pub trait NotAReducer {
        fn typed_fold(&self) -> Option<Box<dyn crate::registry::TypedFold>>;
    }
    impl<T> NotAReducer for ReducerProbe<T> {
        fn typed_fold(&self) -> Option<Box<dyn crate::registry::TypedFold>> {
            None
        }
    }

    /// Autoref specialization: a task's error travels as a value too (for
    /// `TaskError::downcast`) when its type is a serde type.
    #[derive(Debug)]
    pub struct Typed<'a, E>(pub &'a E);

    pub trait ViaSerialize {
        fn typed_value(&self) -> Option<polyloop_wire::TypedValue>;
    }
    impl<E: serde::Serialize> ViaSerialize for &Typed<'_, E> {
        fn typed_value(&self) -> Option<polyloop_wire::TypedValue> {
            polyloop_wire::TypedValue::encode(self.0)
        }
    }

    pub trait ViaOpaque {
        fn typed_value(&self) -> Option<polyloop_wire::TypedValue>;
    }
    impl<E> ViaOpaque for Typed<'_, E> {
        fn typed_value(&self) -> Option<polyloop_wire::TypedValue> {
            None
        }
    }

    /// Autoref specialization: a task's error becomes a [`RemoteError`] with its source chain
    /// when it is a `std::error::Error` (or holds one, like `anyhow::Error`), with its message
    /// when it only implements `Display`.
    #[derive(Debug)]
    pub struct Wrap<'a, E>(pub &'a E);

    pub trait ViaError {
        fn to_remote(&self) -> RemoteError;
    }
    impl<E: std::error::Error + 'static> ViaError for &&Wrap<'_, E> {
        fn to_remote(&self) -> RemoteError {
            RemoteError::from_error(self.0)
        }
    }

    pub trait ViaAsRef {
        fn to_remote(&self) -> RemoteError;
    }
    impl<E: AsRef<dyn std::error::Error + Send + Sync>> ViaAsRef for &Wrap<'_, E> {
        fn to_remote(&self) -> RemoteError {
            RemoteError::from_error(self.0.as_ref())
        }
    }

    pub trait ViaDisplay {
        fn to_remote(&self) -> RemoteError;
    }
    impl<E: std::fmt::Display> ViaDisplay for Wrap<'_, E> {
        fn to_remote(&self) -> RemoteError {
            RemoteError::from_display(self.0)
        }
    }
}

#[cfg(test)]
mod tests;
