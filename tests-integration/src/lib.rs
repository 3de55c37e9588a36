//! Helpers the integration tests share: bounded waits, and what `/proc` and signals say about the
//! processes a test starts.
//!
//! Tasks are not shared here: each test binary is its own worker program, and registers the
//! tasks it submits itself.

use std::future::Future;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use polyloop::Pool;

/// How long a lost worker, a cancellation, a kill or a parent's death may take to be noticed:
/// the contract says one second, and the machine running the tests is loaded.
pub const PROMPTLY: Duration = Duration::from_secs(3);

/// A bound on waits that have no deadline in the contract, so a bug fails the test, not hang it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// `future`'s output, or a panic naming `what` if it is still pending after `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: still waiting after {limit:?}"),
    }
}

/// Closes `pool` within [`PATIENCE`]: every test ends its pools this way, so that a close that
/// hangs fails the test instead of stalling the run.
pub async fn close(pool: &Pool) -> anyhow::Result<()> {
    Ok(within(PATIENCE, "close", pool.close()).await?)
}

/// The pids of the pool's workers, in seat order.
pub fn worker_pids(pool: &Pool) -> Vec<u32> {
    pool.stats().workers.iter().map(|worker| worker.pid).collect()
}

/// How many times the pool has replaced a worker, over all its seats.
pub fn restarts(pool: &Pool) -> u64 {
    pool.stats().workers.iter().map(|worker| worker.restarts).sum()
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: Signal) -> nix::Result<()> {
    kill(Pid::from_raw(pid as i32), signal)
}

/// Whether `pid` is gone and reaped: a zombie still has its `/proc` entry, so a child of this
/// process that is not reaped does not count.
pub fn reaped(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}
