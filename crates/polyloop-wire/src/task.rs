//! The schema of a task: its name, its serde types, and the fingerprint that pins them.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::RemoteError;

/// What a parent knows of a task: its name and its types. Enough to submit it and decode its
/// output; the code that runs it ([`Task`]) may live only in a worker program.
///
/// `#[polyloop::task]` implements this and [`Task`] for you on a unit struct named like the
/// function. A parent that names tasks implemented elsewhere (a separate worker binary)
/// implements this alone:
///
/// ```
/// use polyloop_wire::TaskSpec;
///
/// /// Implemented by the worker program.
/// #[derive(Clone, Copy)]
/// struct Double;
///
/// impl TaskSpec for Double {
///     type Input = u64;
///     type Output = u64;
///     const NAME: &'static str = "example::double";
/// }
/// assert_ne!(Double::fingerprint(), 0);
/// ```
pub trait TaskSpec: Copy + Send + Sync + 'static {
    /// What the task takes; several arguments travel as a tuple.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What the task returns on success.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The name the task is registered under; unique within a program.
    const NAME: &'static str;

    /// A fingerprint of the input and output types, compared in the handshake so that a worker
    /// built from different code is refused instead of misreading bytes.
    fn fingerprint() -> u64 {
        schema_fingerprint::<Self::Input, Self::Output>()
    }
}

/// A task a worker can run: its [`TaskSpec`] and the code.
///
/// ```
/// use polyloop_wire::{RemoteError, Task, TaskSpec};
///
/// #[derive(Clone, Copy)]
/// struct Double;
///
/// impl TaskSpec for Double {
///     type Input = u64;
///     type Output = u64;
///     const NAME: &'static str = "example::double";
/// }
///
/// impl Task for Double {
///     async fn run(x: u64) -> Result<u64, RemoteError> {
///         Ok(x * 2)
///     }
/// }
/// ```
pub trait Task: TaskSpec {
    /// Runs the task on its decoded input.
    fn run(input: Self::Input) -> impl Future<Output = Result<Self::Output, RemoteError>> + Send;
}

/// Declares a task by its [`TaskSpec`] alone: a unit struct with the task's registered name and
/// its input and output types, for a parent that runs the task in a separate worker program.
///
/// ```
/// polyloop_wire::task_spec! {
///     /// Implemented by the worker program.
///     pub Double: u64 => u64 = "worker::double"
/// }
/// use polyloop_wire::TaskSpec;
/// assert_eq!(Double::NAME, "worker::double");
/// ```
#[macro_export]
macro_rules! task_spec {
    ($(#[$meta:meta])* $vis:vis $name:ident: $input:ty => $output:ty = $task_name:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        $vis struct $name;

        impl $crate::TaskSpec for $name {
            type Input = $input;
            type Output = $output;
            const NAME: &'static str = $task_name;
        }
    };
}

/// The FNV-1a hash of the input and output type names.
///
/// Type names are what a build can see of a schema without a schema derive: a renamed or
/// retyped field in the same type is not caught, a changed argument or return type is.
pub fn schema_fingerprint<I, O>() -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let names = [std::any::type_name::<I>(), "->", std::any::type_name::<O>()];
    for byte in names.iter().flat_map(|name| name.bytes().chain([0xff])) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_tells_types_apart() {
        assert_eq!(schema_fingerprint::<u64, u64>(), schema_fingerprint::<u64, u64>());
        assert_ne!(schema_fingerprint::<u64, u64>(), schema_fingerprint::<u64, u32>());
        assert_ne!(
            schema_fingerprint::<(u64, u64), u64>(),
            schema_fingerprint::<u64, (u64, u64)>()
        );
    }
}

/// The schema of every task linked into this program; `#[polyloop::task]` adds to it.
///
/// The parent compares it with the registry a worker announces, so that a worker program built
/// from other code fails `build()` instead of misreading bytes later.
#[linkme::distributed_slice]
pub static SCHEMAS: [TaskSchema];

/// A task's name and the fingerprint of its types, as linked into this program.
#[derive(Debug, Clone, Copy)]
pub struct TaskSchema {
    /// [`TaskSpec::NAME`].
    pub name: &'static str,
    /// [`TaskSpec::fingerprint`].
    pub fingerprint: fn() -> u64,
}

impl TaskSchema {
    /// The schema of `T`.
    pub const fn of<T: TaskSpec>() -> Self {
        TaskSchema { name: T::NAME, fingerprint: T::fingerprint }
    }
}
