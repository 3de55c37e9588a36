//! How a parent tells a re-executed program that it is a worker: two environment variables.
//!
//! The parent starts the worker program with [`ENV_WORKER_FD`] naming the inherited socket and
//! [`ENV_PARENT_PID`] naming itself; a program that finds them serves on that socket instead of
//! running its `main`. Both sides agree on the names here because both link this crate.

/// The file descriptor number of the worker's end of its socket to the parent.
pub const ENV_WORKER_FD: &str = "POLYLOOP_WORKER_FD";

/// The parent's process id, so a worker can notice that it was orphaned before it started.
pub const ENV_PARENT_PID: &str = "POLYLOOP_PARENT_PID";
