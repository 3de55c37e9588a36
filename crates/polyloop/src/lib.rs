//! polyloop runs async tasks across a pool of worker processes, each running its own tokio event
//! loop: the I/O concurrency of async, the parallelism and isolation of processes.
//!
//! # Brief overview
//! Mark an `async fn` with [`#[polyloop::task]`](task), build a [`Pool`], and hand it work:
//! [`Pool::map`] (ordered, fail-fast), [`Pool::map_stream`] (ordered stream),
//! [`Pool::map_unordered`] (as completed), [`Pool::apply`] and [`Pool::submit`]. Inputs and outputs
//! are serde types; they travel in batches over a Unix socket per worker.
//!
//! Workers are this same program, re-executed: a program that holds a `#[polyloop::task]`
//! becomes a worker before `main` runs when a pool starts it as one, so binaries, examples,
//! `cargo test` integration tests and criterion benches need no setup. In a program without
//! tasks of its own, call [`init`] first in `main` or use [`#[polyloop::main]`](main).
//!
//! **Bytes: take and return [`ByteBuf`], not `Vec<u8>`.** serde encodes a `Vec<u8>` as a
//! sequence, one element at a time, several times slower; [`ByteBuf`] (or a field
//! marked `#[serde(with = "serde_bytes")]`) travels as one block. For large read-only data
//! that many tasks read, pass a [`SharedBytes`]: it is not copied at all.
//!
//! Every submitted task resolves exactly once: to its output, or to a [`TaskError`] that says
//! whether it failed, panicked, timed out, lost its worker or was cancelled.
//!
//! # Example
//! ```no_run
//! use polyloop::{Pool, TaskError};
//!
//! #[polyloop::task]
//! async fn double(x: u64) -> u64 {
//!     x * 2
//! }
//!
//! #[polyloop::task]
//! async fn add(a: u64, b: u64) -> u64 {
//!     a + b
//! }
//!
//! #[polyloop::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let pool = Pool::builder().processes(2).build().await?;
//!     let doubled: Vec<u64> = pool.map(double, 0..100_000u64).await?;
//!     assert_eq!(doubled[21], 42);
//!     assert_eq!(pool.apply(add, (1, 2)).await?, 3);
//!     pool.close().await?;
//!     Ok(())
//! }
//! ```
//!
//! # Crates
//! This facade re-exports `polyloop-pool` (the parent), `polyloop-child` (the worker runtime,
//! under [`child`]), `polyloop-wire` (the protocol, under [`wire`]) and `polyloop-shm` (the
//! shared values [`SharedBytes`] and [`SharedAtomics`]) and holds no logic. Use the
//! lower crates directly to write a worker binary of your own.

#![warn(missing_docs)]

pub use polyloop_child::{attempt, worker_index};
#[doc(inline)]
pub use polyloop_macros::{main, task};
pub use polyloop_pool::{
    FromStream, InputSource, Inputs, IterSource, LeastLoaded, MapStream, Pool, PoolBuilder,
    PoolError, PoolStats, Progress, QueueLoads, RoundRobin, Scheduler, SpawnError, TaskError,
    TaskHandle, WorkerStats, from_stream, spawn,
};
pub use polyloop_shm::{SharedAtomics, SharedBytes};
pub use polyloop_wire::{RemoteError, Task, TaskSpec};
/// Bytes that serialize as one block: the type to take and return instead of `Vec<u8>`.
pub use serde_bytes::ByteBuf;

/// The worker runtime, for custom worker binaries.
pub use polyloop_child as child;
/// The wire protocol.
pub use polyloop_wire as wire;

/// Serves as a worker if a polyloop pool started this process as one, and never returns then;
/// otherwise returns at once.
///
/// Call it first thing in a `main` that is not `#[polyloop::main]`, before the program starts
/// threads of its own or reads its arguments; at the top of a `#[tokio::main]` body is fine too
/// (the worker then serves from a thread of its own). Programs that define a
/// `#[polyloop::task]` run this before `main` on Linux and macOS anyway; calling it again is
/// harmless. A worker that cannot start prints why on stderr and exits with a
/// [`WorkerExit`](polyloop_wire::WorkerExit) status.
///
/// ```no_run
/// polyloop::init(); // first thing in main
/// let runtime = tokio::runtime::Runtime::new().unwrap();
/// runtime.block_on(async {
///     let pool = polyloop::Pool::builder().build().await.unwrap();
///     pool.close().await.unwrap();
/// });
/// ```
pub fn init() {
    polyloop_child::worker_hook();
}

/// What the expansions of `#[polyloop::task]` and `#[polyloop::main]` refer to.
#[doc(hidden)]
pub mod __private {
    pub use polyloop_child::__private::*;
}

/// The README's Rust examples, compiled and run as doctests so that they cannot drift from the
/// API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
