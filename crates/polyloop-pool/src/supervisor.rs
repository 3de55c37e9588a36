//! Keeps each worker seat filled: starts a process, hands it to a driver, and starts another
//! when it dies or retires, backing off while starts fail.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::Instrument;

use crate::connection::{Connection, connect};
use crate::driver::{self, End};
use crate::error::Kind;
use crate::shared::Shared;

/// How long to wait before starting a worker again after a failed start, doubling up to a cap.
const RESTART_BACKOFF: Duration = Duration::from_millis(50);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keeps seat `worker_idx` filled with a live worker until the pool closes.
pub(crate) async fn supervise(shared: Arc<Shared>, worker_idx: usize, first: Connection) {
    let seat = &shared.seats[worker_idx];
    let shard = &shared.shards[seat.queue_idx];
    // The pool marked the first worker live when it built the seats.
    let mut next = Some(first);
    let mut backoff = RESTART_BACKOFF;
    loop {
        if next.is_none() && shard.queue.is_closed_and_empty() {
            return; // The pool closed while this seat had no worker.
        }
        let conn = match next.take() {
            Some(conn) => conn,
            None => match connect(&shared.config, worker_idx, |proc| seat.install(proc)).await {
                Ok(conn) => {
                    backoff = RESTART_BACKOFF;
                    seat.set_live(shard, true);
                    conn
                }
                Err(err) => {
                    seat.uninstall();
                    tracing::error!(worker = worker_idx, error = %err, "could not start worker");
                    if shard.live_workers() == 0 {
                        // Nobody serves this queue now: fail what waits rather than let it hang.
                        let why = format!("no worker could be started for its queue: {err}");
                        shared.fail_queued(shard, Kind::WorkerLost, &why);
                    }
                    // Back off, but not past the pool's closing.
                    let closed = shared.closed.notified();
                    if !shard.queue.is_closed_and_empty() {
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = closed => {}
                        }
                    }
                    backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
                    continue;
                }
            },
        };
        seat.install(&conn.proc);
        let pid = conn.proc.pid();
        tracing::debug!(worker = worker_idx, pid, "worker serving");
        let span = tracing::debug_span!("polyloop_worker", worker = worker_idx, pid);
        let end = driver::serve(&shared, worker_idx, conn).instrument(span).await;
        seat.set_live(shard, false);
        shared.set_listening(worker_idx, false);
        seat.uninstall();
        match end {
            End::Closed => return,
            End::Recycled => {
                tracing::debug!(worker = worker_idx, pid, "worker recycled after its task budget");
                seat.counters.recycles.fetch_add(1, Ordering::Relaxed);
            }
            End::Died => {} // Counted by the driver.
        }
        if shard.queue.is_closed_and_empty() {
            return;
        }
    }
}
