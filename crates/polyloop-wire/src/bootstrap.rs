//! How a parent tells a re-executed program that it is a worker: environment variables, and the
//! exit statuses by which a worker that could not start says why.
//!
//! The parent starts the worker program with [`ENV_WORKER_FD`] naming the inherited socket,
//! [`ENV_PARENT_PID`] naming itself and, when it watches the worker's liveness,
//! [`ENV_HEARTBEAT_FD`] and [`ENV_HEARTBEAT_MS`]; a program that finds them serves on that
//! socket instead of running its `main`. Both sides agree on the names here because both link
//! this crate.

use std::time::Duration;

/// The file descriptor number of the worker's end of its socket to the parent.
pub const ENV_WORKER_FD: &str = "POLYLOOP_WORKER_FD";

/// The parent's process id, so a worker can notice that it was orphaned before it started.
pub const ENV_PARENT_PID: &str = "POLYLOOP_PARENT_PID";

/// The file descriptor number of a second socket on which the worker proves it is alive: a
/// thread of its own writes one byte to it every [`ENV_HEARTBEAT_MS`] milliseconds, whatever its
/// tasks do. A parent that hears nothing for its heartbeat timeout kills the worker. Absent when
/// the parent does not watch.
pub const ENV_HEARTBEAT_FD: &str = "POLYLOOP_HEARTBEAT_FD";

/// How often, in milliseconds, the worker writes to [`ENV_HEARTBEAT_FD`].
pub const ENV_HEARTBEAT_MS: &str = "POLYLOOP_HEARTBEAT_MS";

/// The longest a worker waits for the parent's Welcome before it gives up
/// ([`WorkerExit::NoWelcome`]). A parent writes the Welcome right after the spawn.
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a worker beats, given the parent's heartbeat timeout: a few beats fit in the
/// timeout, so one late beat is not a death; at least every 10 ms, at most every second.
pub fn heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// The exit status of a worker process that did not serve to the end, and what each means.
///
/// A worker prints one line to stderr before it exits with one of these, so the user sees the
/// cause; the parent names it in its own error from the status alone.
///
/// ```
/// use polyloop_wire::WorkerExit;
///
/// assert_eq!(WorkerExit::from_code(71), Some(WorkerExit::BadSocket));
/// assert_eq!(WorkerExit::BadSocket.code(), 71);
/// assert!(WorkerExit::BadSocket.meaning().contains("socket"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerExit {
    /// The worker failed while serving (an i/o or protocol error); it printed the error.
    Failed,
    /// The pool's initializer returned an error; the parent has it from the handshake.
    InitializerFailed,
    /// A worker variable is set but malformed (not a number, or negative).
    BadEnvironment,
    /// The worker variable names no open socket: the program was not started by a pool with it.
    BadSocket,
    /// The process's parent is not the one named: the pool's process ended before the worker
    /// started.
    Orphaned,
    /// The parent sent no Welcome within [`WELCOME_TIMEOUT`].
    NoWelcome,
}

impl WorkerExit {
    const ALL: [WorkerExit; 6] = [
        WorkerExit::Failed,
        WorkerExit::InitializerFailed,
        WorkerExit::BadEnvironment,
        WorkerExit::BadSocket,
        WorkerExit::Orphaned,
        WorkerExit::NoWelcome,
    ];

    /// The process exit code. 70 and up follow the BSD `sysexits` habit of high codes for
    /// failures of the environment rather than of the work.
    pub const fn code(self) -> i32 {
        match self {
            WorkerExit::Failed => 2,
            WorkerExit::InitializerFailed => 3,
            WorkerExit::BadEnvironment => 70,
            WorkerExit::BadSocket => 71,
            WorkerExit::Orphaned => 72,
            WorkerExit::NoWelcome => 73,
        }
    }

    /// The variant with exit code `code`, if any.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|exit| exit.code() == code)
    }

    /// What the status means, for the parent's error messages.
    pub const fn meaning(self) -> &'static str {
        match self {
            WorkerExit::Failed => "the worker failed while serving (its error is on stderr)",
            WorkerExit::InitializerFailed => "the pool's initializer failed in the worker",
            WorkerExit::BadEnvironment => "the worker found malformed POLYLOOP_* variables",
            WorkerExit::BadSocket => "the worker found no socket at POLYLOOP_WORKER_FD",
            WorkerExit::Orphaned => "the worker's parent was not the pool's process",
            WorkerExit::NoWelcome => "the worker received no Welcome from its parent in time",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_round_trip() {
        for exit in WorkerExit::ALL {
            assert_eq!(WorkerExit::from_code(exit.code()), Some(exit));
        }
        let mut codes: Vec<i32> = WorkerExit::ALL.iter().map(|exit| exit.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), WorkerExit::ALL.len());
        for code in [0, 1, 101, 134] {
            assert_eq!(WorkerExit::from_code(code), None, "{code} is not ours");
        }
    }

    #[test]
    fn a_few_beats_fit_in_the_timeout() {
        assert_eq!(heartbeat_interval(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(heartbeat_interval(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(heartbeat_interval(Duration::from_millis(1)), Duration::from_millis(10));
    }
}
