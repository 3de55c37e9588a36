//! polyloop's parent side: a pool of worker processes and the scheduler that feeds them.
//!
//! [`Pool`] starts its workers by re-executing the current program (or a named worker program)
//! with a socket to each; a driver task per worker, on a thread the pool owns, pulls tasks from
//! its queue under a credit limit (the worker's concurrency plus a small prefetch), encodes
//! whatever is ready into one frame, and routes results back to the [`TaskHandle`] or
//! [`MapStream`] that waits for them. A worker that dies is replaced, and exactly its tasks fail
//! (or are retried). Callers may be on any tokio runtime, one after another.
//!
//! This crate knows a task only by its [`TaskSpec`](polyloop_wire::TaskSpec) (name and serde
//! types), never by its code: it never links the child runtime, so a worker may be another
//! program entirely, and a parent need not compile the bodies of the tasks it submits.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! # #[derive(Clone, Copy)] struct Double;
//! # impl polyloop_wire::TaskSpec for Double {
//! #     type Input = u64; type Output = u64; const NAME: &'static str = "doc::double";
//! # }
//! let pool = polyloop_pool::Pool::builder().processes(2).build().await?;
//! let doubled = pool.map(Double, 0..1000u64).await?;
//! assert_eq!(doubled[21], 42);
//! pool.close().await?;
//! # Ok(()) }
//! ```

mod builder;
mod bytes;
mod connection;
mod driver;
mod error;
mod in_flight;
mod job;
mod liveness;
mod pool;
mod process;
mod queue;
mod reduce;
mod runtime;
mod scheduler;
mod shared;
mod stats;
mod stream;
mod supervisor;

pub use builder::{DEFAULT_HEARTBEAT_TIMEOUT, PoolBuilder};
pub use error::{PoolError, TaskError};
pub use pool::{Pool, SpawnError, TaskHandle, spawn};
pub use scheduler::{LeastLoaded, QueueLoads, RoundRobin, Scheduler};
pub use stats::{PoolStats, WorkerStats};
pub use stream::{FromStream, InputSource, Inputs, IterSource, MapStream, Progress, from_stream};
