//! Helpers the integration tests share: bounded waits, what `/proc` and signals say about the
//! processes a test starts, and a `tracing` subscriber that keeps what the pool reports.
//!
//! Tasks are not shared here: each test binary is its own worker program, and registers the
//! tasks it submits itself.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use polyloop::Pool;
use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber, span};

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

/// Every `tracing` event of the test process, each kept as one line: its level, then its fields
/// as `name=value` (the message as `message=...`).
///
/// A process has one global subscriber: [`EventLog::installed`] installs this one the first time
/// and returns it every time, so the tests of one binary share it and count from a mark.
#[derive(Debug, Default)]
pub struct EventLog {
    lines: Mutex<Vec<String>>,
}

impl EventLog {
    /// The process's log, installed as the global subscriber on the first call.
    pub fn installed() -> &'static EventLog {
        static LOG: OnceLock<&'static EventLog> = OnceLock::new();
        LOG.get_or_init(|| {
            let log: &'static EventLog = Box::leak(Box::default());
            tracing::subscriber::set_global_default(Handle(log))
                .expect("no other subscriber is installed in a test binary using EventLog");
            log
        })
    }

    /// The lines logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("not poisoned").clone()
    }

    /// How many events so far had `message` as their message.
    pub fn count(&self, message: &str) -> usize {
        let wanted = format!("message={message} ");
        self.lines.lock().expect("not poisoned").iter().filter(|l| l.contains(&wanted)).count()
    }
}

/// The subscriber installed for an [`EventLog`].
struct Handle(&'static EventLog);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Subscriber for Handle {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut fields);
        self.0.lines.lock().expect("not poisoned").push(fields.0);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}
