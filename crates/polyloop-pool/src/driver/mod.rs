//! One worker process's driver: feeds it from its seat's queue, routes its results back, and
//! when it dies, fails or retries exactly the tasks it held.
//!
//! The IO loop lives here; the rules it follows are plain types beside it, each with its tests:
//! [`flow`] (credit, prefetch, budget and fair share), [`watchdog`] (when a stuck worker is
//! killed), [`outcome`] (what each caller is told), and the in-flight table ([`InFlight`]).

mod flow;
mod outcome;
mod watchdog;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use polyloop_wire::{
    ChunkFrame, Outcome, PartOutcomes, ResultFrame, Retry, TaskBatch, ToChild, ToParent, WireError,
    decode_to_parent, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use self::flow::{Flow, QueueState};
use self::outcome::Lost;
use self::watchdog::Watchdog;
use crate::TaskError;
use crate::connection::Connection;
use crate::error::Kind;
use crate::in_flight::InFlight;
use crate::job::{Input, Job, Output, Part, Reply, StreamBatch, TaskKey};
use crate::queue::{self, Bundle};
use crate::shared::{Seat, Shard, Shared};

/// With `busy_poll`, the tries to read a result between two yields to the runtime.
const TRIES_PER_YIELD: u32 = 4;

/// Serves seat `worker_idx` with the worker on `conn` until it retires or dies.
pub(crate) async fn serve(shared: &Shared, worker_idx: usize, conn: Connection) -> End {
    Driver::new(shared, worker_idx, &conn).run(conn).await
}

/// Why a driver stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The queue closed and the worker shut down in order.
    Closed,
    /// The worker ran its `max_tasks_per_child` and shut down in order.
    Recycled,
    /// The worker died or misbehaved; its tasks were failed or queued again.
    Died,
}

/// Where a driver is in its worker's life: always exactly one of these.
#[derive(Debug)]
enum Phase {
    /// Taking work from the queue.
    Serving,
    /// No more work for this worker (`closed`: its queue closed; else it used up its task
    /// budget): waiting for the tasks it holds, then shutting it down.
    Retiring { closed: bool },
    /// `Shutdown` sent: waiting for the worker to exit in order.
    ShuttingDown { closed: bool },
    /// This driver killed the worker, for this reason: waiting for the end of its stream.
    Killed(Kill),
}

/// Why a driver killed its worker.
#[derive(Debug)]
pub(super) enum Kill {
    /// A task ran past its timeout without yielding: that one (if it could be told) is a
    /// timeout; the others the worker held were innocent.
    Overran(Option<u64>),
    /// The worker broke the protocol, or stopped beating.
    Broken(String),
}

/// A task, or a chunk of a map's inputs, sent to the worker and not yet answered.
#[derive(Debug)]
struct Sent {
    job: Job,
    sent_at: Instant,
    cancel_sent: bool,
    /// Of a chunk: how many of its inputs the parts so far answered.
    answered: usize,
}

impl Sent {
    fn new(job: Job, sent_at: Instant) -> Self {
        Sent { job, sent_at, cancel_sent: false, answered: 0 }
    }

    /// The job of the tasks not yet answered.
    fn into_unanswered(mut self) -> Job {
        self.job.skip_front(self.answered);
        self.job
    }
}

struct Driver<'a> {
    shared: &'a Shared,
    seat: &'a Seat,
    shard: &'a Shard,
    worker_idx: usize,
    pid: u32,
    /// The tasks the worker holds, by wire id.
    in_flight: InFlight<Sent>,
    flow: Flow,
    watchdog: Watchdog,
    batch: TaskBatch,
    out: Vec<u8>,
    phase: Phase,
    /// The last task looked up in the worker's registry: consecutive tasks are usually alike.
    last_task: Option<(&'static str, u64, u32)>,
    /// Counts not yet added to the shared atomics; see [`Driver::publish`].
    unpublished: Unpublished,
}

/// A driver's counts since it last published them (`in_flight`: the value last published).
#[derive(Debug, Default)]
struct Unpublished {
    in_flight: usize,
    done: u64,
    failed: u64,
    resolved: usize,
}

impl<'a> Driver<'a> {
    fn new(shared: &'a Shared, worker_idx: usize, conn: &Connection) -> Self {
        let seat = &shared.seats[worker_idx];
        Driver {
            shared,
            seat,
            shard: &shared.shards[seat.queue_idx],
            worker_idx,
            pid: conn.proc.pid(),
            in_flight: InFlight::default(),
            flow: Flow::new(
                shared.config.child_concurrency as usize,
                shared.config.prefetch_range(),
                shared.config.max_tasks_per_child,
            ),
            watchdog: Watchdog::new(shared.config.task_timeout, shared.config.kill_grace),
            batch: TaskBatch::default(),
            out: Vec::new(),
            phase: Phase::Serving,
            last_task: None,
            unpublished: Unpublished::default(),
        }
    }

    async fn run(mut self, mut conn: Connection) -> End {
        // One timer for the life of the driver, reset once per beat: not one per wake-up.
        let beat_period = conn.heartbeat.as_ref().map_or(Duration::MAX, |beat| beat.period());
        let mut next_check = std::pin::pin!(tokio::time::sleep(beat_period));
        loop {
            self.publish();
            if matches!(self.phase, Phase::Serving) && self.flow.budget_left() == 0 {
                self.phase = Phase::Retiring { closed: false };
            }
            if let Phase::Retiring { closed } = self.phase
                && self.flow.in_flight() == 0
            {
                // Out of budget, or the pool is closing and our queue is empty: stop in order.
                self.phase = Phase::ShuttingDown { closed };
                self.out.clear();
                let _ = encode_frame(&ToChild::Shutdown, &mut self.out, &conn.limits);
                let _ = conn.writer.write_all(&self.out).await;
                self.out.clear();
            }
            let able = matches!(self.phase, Phase::Serving) && self.flow.has_credit();
            let can_take = able && !self.over_share();
            self.shared.set_listening(self.worker_idx, can_take);
            if self.flow.in_flight() > 0 && self.busy_poll(&mut conn).await {
                continue;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                read = conn.reader.read(conn.frames.spare()) => match read {
                    Ok(n) if n > 0 => self.received(&mut conn, n),
                    // End of stream: the worker exited, was killed, or closed the socket.
                    _ => {
                        let status = conn.proc.reap(self.shared.config.kill_grace).await;
                        if let Phase::ShuttingDown { closed } = self.phase
                            && self.flow.in_flight() == 0
                        {
                            self.publish();
                            return if closed { End::Closed } else { End::Recycled };
                        }
                        // Counted before its tasks fail, so a caller who has the error sees the
                        // restart in `stats()`.
                        self.seat.counters.restarts.fetch_add(1, Ordering::Relaxed);
                        self.fail_all(&status);
                        self.publish();
                        return End::Died;
                    }
                },
                () = self.seat.sweep.notified() => self.sweep(&mut conn).await,
                // Another worker of the queue stopped listening: look at the queue again.
                () = self.seat.reconsider.notified(), if able && !can_take => {}
                bundle = self.shard.queue.pop(), if can_take => match bundle {
                    Some(bundle) => {
                        let now = Instant::now();
                        self.take_bundle(bundle, &conn, now);
                        // More bundles, while there is room for them (e.g. several small submits).
                        while self.flow.has_credit() && self.flow.budget_left() > 0 && !self.over_share() {
                            let Some(bundle) = self.shard.queue.try_pop() else { break };
                            self.take_bundle(bundle, &conn, now);
                        }
                        // Counted before they are sent, so that a task that has started in its
                        // worker shows in `stats()` as in flight.
                        self.publish();
                        self.flush(&mut conn).await;
                    }
                    None => self.phase = Phase::Retiring { closed: true },
                },
                () = sleep_until_opt(deadline) => self.kill_for_timeout(&conn),
                () = &mut next_check, if conn.heartbeat.is_some() && !self.killed() => {
                    self.check_heartbeat(&mut conn);
                    next_check.as_mut().reset(Instant::now() + beat_period);
                }
            }
        }
    }

    /// Kills the worker if it stopped beating: the process is stopped or wedged, whatever its
    /// tasks are doing.
    fn check_heartbeat(&mut self, conn: &mut Connection) {
        let Some(heartbeat) = conn.heartbeat.as_mut() else { return };
        if !heartbeat.alive(std::time::Instant::now()) {
            tracing::warn!(timeout = ?heartbeat.timeout(), "worker sent no heartbeat; killing it");
            let why = format!(
                "it sent no heartbeat for {:?}: the process was stopped or is wedged",
                heartbeat.timeout()
            );
            self.kill(conn, Kill::Broken(why));
        }
    }

    /// Handles `n` bytes just read into the frame buffer.
    fn received(&mut self, conn: &mut Connection, n: usize) {
        conn.frames.filled(n);
        if let Err(err) = self.handle_frames(conn) {
            tracing::warn!(error = %err, "worker sent an invalid frame; killing it");
            self.kill(conn, Kill::Broken(format!("it sent an invalid frame: {err}")));
        }
    }

    /// With `busy_poll` set: polls the socket for results for up to that long, yielding to
    /// the other tasks of this thread between tries, before the driver goes to sleep on it.
    /// Returns whether something was read.
    async fn busy_poll(&mut self, conn: &mut Connection) -> bool {
        let window = self.shared.config.busy_poll;
        if window.is_zero() {
            return false;
        }
        let fd = conn.reader.as_raw_fd();
        let started = std::time::Instant::now();
        let mut tries = 0u32;
        loop {
            let spare = conn.frames.spare();
            // SAFETY: `spare` is writable for its length; MSG_DONTWAIT never blocks. Reading
            // behind tokio's back is fine: only this task reads this socket.
            let n = unsafe {
                libc::recv(fd, spare.as_mut_ptr().cast(), spare.len(), libc::MSG_DONTWAIT)
            };
            if n > 0 {
                self.received(conn, n as usize);
                return true;
            }
            // End of stream or an error: the read in the select sees it too.
            let idle =
                n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock;
            // Stop polling as soon as there is more work to send.
            let more_work = self.shard.queue.len() > 0 && self.flow.has_credit();
            if !idle || more_work || started.elapsed() >= window {
                return false;
            }
            // A yield makes the runtime poll its own I/O and timers, which takes longer than a
            // try: a few tries between yields notice the result sooner.
            tries += 1;
            if tries.is_multiple_of(TRIES_PER_YIELD) {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Adds one job to what is sent next, or resolves it at once if it cannot run.
    fn take(&mut self, job: Job, conn: &Connection, now: Instant) {
        if job.reply.is_closed() {
            let name = job.key.name;
            return self
                .shared
                .resolve(job, Err(TaskError::new(Kind::Cancelled, name, "nobody waits for it")));
        }
        let index = match self.task_index(&job.key, conn) {
            Ok(index) => index,
            Err(msg) => {
                let name = job.key.name;
                return self.shared.resolve(job, Err(TaskError::new(Kind::UnknownTask, name, msg)));
            }
        };
        match &job.input {
            Input::One(_) => self.take_one(job, index, conn, now),
            Input::Many(_) => self.take_many(job, index, conn, now),
        }
    }

    /// The worker's registry index of task `key`.
    fn task_index(&mut self, key: &TaskKey, conn: &Connection) -> Result<u32, String> {
        let cached = self.last_task.filter(|&(name, fingerprint, _)| {
            std::ptr::eq(name, key.name) && fingerprint == key.fingerprint
        });
        if let Some((_, _, index)) = cached {
            return Ok(index);
        }
        let index = conn.registry.index(key.name, key.fingerprint)?;
        self.last_task = Some((key.name, key.fingerprint, index));
        Ok(index)
    }

    /// Adds one task to the batch being built.
    fn take_one(&mut self, job: Job, index: u32, conn: &Connection, now: Instant) {
        let Input::One(input) = &job.input else { unreachable!("a job of one input") };
        let max_frame = conn.limits.max_frame_len as usize;
        if input.len() + 32 > max_frame {
            let msg = format!(
                "input of {} bytes exceeds the frame limit of {max_frame} bytes",
                input.len()
            );
            let name = job.key.name;
            return self.shared.resolve(job, Err(TaskError::new(Kind::Serialization, name, msg)));
        }
        if self.batch.byte_len() + input.len() + 32 > max_frame
            || self.batch.len() >= conn.limits.max_batch_len as usize
        {
            // Cannot fail: the batch was kept under both limits.
            let _ = self.batch.finish_into(&mut self.out, &conn.limits);
        }
        self.note_retry(&job, conn);
        self.batch.push(self.in_flight.next_id(), index, input);
        let id = self.in_flight.insert(Sent::new(job, now));
        self.watchdog.handle_sent(id, now);
        self.flow.handle_sent(1);
    }

    /// Sends a map's consecutive inputs in chunks as long as the flow allows, each input alone
    /// while chunks are one long.
    fn take_many(&mut self, mut job: Job, index: u32, conn: &Connection, now: Instant) {
        // A timeout is per task, and the watchdog judges a worker by its oldest task: a chunk
        // would make its inputs wait for each other.
        let chunk_len = match self.shared.config.task_timeout {
            Some(_) => 1,
            None => self.flow.chunk_len(),
        };
        // Room for the chunk's own fields in the frame.
        let max_bytes = (conn.limits.max_frame_len as usize).saturating_sub(64);
        loop {
            let Input::Many(inputs) = &job.input else { unreachable!("a job of many inputs") };
            let n = inputs.fitting(chunk_len, max_bytes);
            let (part, rest) = match n < inputs.len() {
                true => (job.split_front(n), Some(job)),
                false => (job, None),
            };
            match n {
                1 => self.take_one(part.into_one(), index, conn, now),
                _ => self.send_chunk(part, index, conn, now),
            }
            match rest {
                Some(rest) => job = rest,
                None => return,
            }
        }
    }

    /// Encodes a chunk of inputs behind what is already waiting to be sent.
    fn send_chunk(&mut self, job: Job, index: u32, conn: &Connection, now: Instant) {
        let Input::Many(inputs) = &job.input else { unreachable!("a job of many inputs") };
        if !self.batch.is_empty() {
            // In the order they were taken. Cannot fail: the batch was kept under both limits.
            let _ = self.batch.finish_into(&mut self.out, &conn.limits);
        }
        self.note_retry(&job, conn);
        let count = inputs.len();
        let frame = ChunkFrame {
            id: self.in_flight.next_id(),
            task: index,
            count: count as u32,
            inputs: inputs.wire_bytes(),
        };
        // Cannot fail: the inputs were kept under the frame limit.
        let _ = encode_frame(&ToChild::Chunk(frame), &mut self.out, &conn.limits);
        let id = self.in_flight.insert(Sent::new(job, now));
        tracing::trace!(id, inputs = count, "chunk sent");
        self.watchdog.handle_sent(id, now);
        self.flow.handle_sent(count);
    }

    /// Tells the worker that the job sent next, a retry, is not its first attempt: in front of
    /// the frame that will carry it, which is not written yet.
    fn note_retry(&mut self, job: &Job, conn: &Connection) {
        if job.retries > 0 {
            let retry = Retry { id: self.in_flight.next_id(), attempt: job.retries + 1 };
            // Cannot fail: a few bytes.
            let _ = encode_frame(&ToChild::Retry(retry), &mut self.out, &conn.limits);
        }
    }

    /// Whether this worker holds its share already while another could start work.
    fn over_share(&self) -> bool {
        self.flow.over_share(&self.queue_state())
    }

    /// What this worker can see of its queue and the other workers that serve it.
    fn queue_state(&self) -> SeatView<'a> {
        SeatView { shared: self.shared, shard: self.shard, worker_idx: self.worker_idx }
    }

    /// Takes what `room` allows from the front of `jobs` and puts the rest back.
    fn take_bundle(&mut self, mut jobs: Bundle, conn: &Connection, now: Instant) {
        let mut room = self.flow.room(&self.queue_state(), queue::tasks(&jobs));
        while room > 0 {
            let Some(mut job) = jobs.pop_front() else { break };
            if job.len() > room {
                let front = job.split_front(room);
                jobs.push_front(job);
                job = front;
            }
            room -= job.len();
            self.take(job, conn, now);
        }
        let why = self.shared.stop_reason();
        self.shared.requeue(self.seat.queue_idx, jobs, Kind::Cancelled, why);
    }

    /// Writes the batch and anything else waiting, in one write.
    async fn flush(&mut self, conn: &mut Connection) {
        if !self.batch.is_empty() {
            // Cannot fail: the batch was kept under both limits.
            let _ = self.batch.finish_into(&mut self.out, &conn.limits);
        }
        if !self.out.is_empty() {
            // A worker whose thread a task blocks stops reading, and a full socket would block
            // this write past the watchdog's deadline: the write is bounded by it too.
            let deadline = self.next_deadline();
            let write = conn.writer.write_all(&self.out);
            let stuck = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, write).await.is_err(),
                None => {
                    // A failed write means the worker is gone; the read side sees it.
                    let _ = write.await;
                    false
                }
            };
            if stuck {
                self.kill_for_timeout(conn);
            }
            // One large input must not keep its size allocated for the life of the worker.
            polyloop_wire::clear_and_trim(&mut self.out);
        }
    }

    fn handle_frames(&mut self, conn: &mut Connection) -> Result<(), WireError> {
        while let Some(payload) = conn.frames.next_frame()? {
            match decode_to_parent(payload, &conn.limits)? {
                ToParent::Results(results) => {
                    let now = Instant::now();
                    let (mut latency, mut answered) = (Duration::ZERO, 0u32);
                    let mut batch = StreamBatch::with_capacity(results.len());
                    let completed = results.into_iter().try_for_each(|result| {
                        if let Some(in_flight) = self.complete(result, now, &mut batch)? {
                            latency += in_flight;
                            answered += 1;
                        }
                        Ok::<_, WireError>(())
                    });
                    // Counted before they are handed over, so that a caller who has its results
                    // sees them in `stats()`.
                    self.publish();
                    batch.flush();
                    completed?;
                    if answered > 0 {
                        self.flow.handle_latency(latency / answered);
                    }
                }
                ToParent::Hello(_) => return Err(WireError::Unexpected("a second handshake")),
            }
        }
        Ok(())
    }

    /// Routes one result to its waiter; returns how long the task (or chunk) was in flight, if
    /// this answered it completely.
    fn complete(
        &mut self,
        result: ResultFrame<'_>,
        now: Instant,
        batch: &mut StreamBatch,
    ) -> Result<Option<Duration>, WireError> {
        // Ids are never reused, so a late or repeated result finds nothing here rather than
        // another task: the caller treats that as a broken worker.
        let unknown = WireError::Unexpected("a result for a task it does not hold");
        let Some(sent) = self.in_flight.get_mut(result.id) else { return Err(unknown) };
        let outcome = match (&sent.job.input, result.outcome) {
            (Input::Many(_), Outcome::Part(outcomes)) => {
                return self.complete_part(result.id, outcomes, now, batch);
            }
            (Input::One(_), Outcome::Part(_)) => {
                return Err(WireError::Unexpected("a chunk's part for a single task"));
            }
            (Input::Many(_), Outcome::Ok(_)) => {
                return Err(WireError::Unexpected("a single output for a chunk"));
            }
            (_, outcome) => outcome,
        };
        let sent = self.in_flight.remove(result.id).expect("looked up above");
        let sent_at = sent.sent_at;
        let job = sent.into_unanswered();
        let n = job.len();
        self.flow.handle_answered(n);
        let config = &self.shared.config;
        let raw = match &job.input {
            Input::One(_) => {
                outcome::task_result(&job.key, outcome, config.max_nesting, config.task_timeout)
            }
            // Any other outcome for a chunk answers all its inputs not yet answered.
            Input::Many(_) => {
                TaskError::from_outcome(job.key.name, outcome, config.task_timeout).map(Err)
            }
        }
        .expect("parts and a chunk's Ok were handled above");
        match raw.is_ok() {
            true => self.unpublished.done += 1,
            false => self.unpublished.failed += n as u64,
        }
        match n {
            1 => batch.add(job.reply, raw),
            _ => job.resolve(raw),
        }
        self.unpublished.resolved += n;
        Ok(Some(now.saturating_duration_since(sent_at)))
    }

    /// Routes the next outcomes of chunk `id` to its stream, checked first: a part that does
    /// not read, or holds more outcomes than the chunk has inputs left, breaks the protocol.
    fn complete_part(
        &mut self,
        id: u64,
        outcomes: &[u8],
        now: Instant,
        batch: &mut StreamBatch,
    ) -> Result<Option<Duration>, WireError> {
        let part = PartOutcomes::scan(outcomes)?;
        let sent = self.in_flight.get_mut(id).expect("looked up by the caller");
        let count = part.count as usize;
        let left = sent.job.len() - sent.answered;
        if count == 0 || count > left {
            return Err(WireError::Unexpected("a part beyond its chunk's inputs"));
        }
        let Reply::Stream { tx, seq } = &sent.job.reply else {
            unreachable!("a job of many inputs replies to a stream");
        };
        let reply = Reply::Stream { tx: Arc::clone(tx), seq: seq + sent.answered as u64 };
        sent.answered += count;
        let outcomes = outcomes.to_vec();
        let first_error = part.first_error;
        batch.add(reply, Ok(Output::Part(Part { outcomes, count: part.count, first_error })));
        self.flow.handle_answered(count);
        self.unpublished.done += u64::from(part.count - part.errors);
        self.unpublished.failed += u64::from(part.errors);
        self.unpublished.resolved += count;
        if count < left {
            return Ok(None);
        }
        let sent = self.in_flight.remove(id).expect("looked up above");
        Ok(Some(now.saturating_duration_since(sent.sent_at)))
    }

    /// Makes this driver's counts visible to the pool (stats, schedulers, other drivers, close):
    /// once per wake-up, not once per task, since the atomics are shared between threads.
    fn publish(&mut self) {
        let in_flight = self.flow.in_flight();
        if in_flight != self.unpublished.in_flight {
            let (was, now) = (self.unpublished.in_flight, in_flight);
            match now > was {
                true => self.shard.in_flight.fetch_add(now - was, Ordering::Relaxed),
                false => self.shard.in_flight.fetch_sub(was - now, Ordering::Relaxed),
            };
            self.seat.counters.in_flight.store(now as u64, Ordering::Relaxed);
            self.unpublished.in_flight = now;
        }
        let counters = &self.seat.counters;
        let Unpublished { done, failed, resolved, .. } = std::mem::take(&mut self.unpublished);
        self.unpublished.in_flight = in_flight;
        if done > 0 {
            counters.done.fetch_add(done, Ordering::Relaxed);
        }
        if failed > 0 {
            counters.failed.fetch_add(failed, Ordering::Relaxed);
        }
        if resolved > 0 {
            self.shared.resolved(resolved);
        }
    }

    /// Cancels in the worker every task whose handle or stream was dropped.
    async fn sweep(&mut self, conn: &mut Connection) {
        let ids: Vec<u64> = self
            .in_flight
            .iter_mut()
            .filter_map(|(id, entry)| {
                (!entry.cancel_sent && entry.job.reply.is_closed()).then(|| {
                    entry.cancel_sent = true;
                    id
                })
            })
            .collect();
        if !ids.is_empty() {
            let _ = encode_frame(&ToChild::Cancel(ids), &mut self.out, &conn.limits);
            self.flush(conn).await;
        }
    }

    /// When the worker is overdue in its oldest unanswered task (see [`Watchdog`]); `None`
    /// once this driver killed it.
    fn next_deadline(&mut self) -> Option<Instant> {
        self.overdue().map(|(_, deadline)| deadline)
    }

    /// The oldest unanswered task and when the worker is overdue in it.
    fn overdue(&mut self) -> Option<(u64, Instant)> {
        if self.killed() {
            return None;
        }
        let in_flight = &self.in_flight;
        self.watchdog.poll_oldest(|id| in_flight.get(id).is_some())
    }

    /// The oldest unanswered task passed its deadline: the worker is stuck in it. Kills the
    /// worker and remembers that task as the one to blame.
    fn kill_for_timeout(&mut self, conn: &Connection) {
        let overran = self.overdue().map(|(id, _)| id);
        let task = overran.and_then(|id| self.in_flight.get(id)).map(|sent| sent.job.key.name);
        tracing::warn!(
            task,
            timeout = ?self.shared.config.task_timeout,
            "a task ran past its timeout without yielding; killing its worker"
        );
        self.kill(conn, Kill::Overran(overran));
    }

    /// Kills the worker for `why`, unless this driver killed it already (the first reason is
    /// the one its tasks are told).
    fn kill(&mut self, conn: &Connection, why: Kill) {
        if !self.killed() {
            self.phase = Phase::Killed(why);
        }
        conn.proc.kill();
    }

    fn killed(&self) -> bool {
        matches!(self.phase, Phase::Killed(_))
    }

    /// The worker is gone: its tasks are queued again if they have retries left, else failed.
    fn fail_all(&mut self, status: &str) {
        let lost = Lost {
            worker: self.worker_idx,
            pid: self.pid,
            status,
            task_timeout: self.shared.config.task_timeout,
        };
        let (kill, overran) = match &self.phase {
            Phase::Killed(kill @ Kill::Overran(overran)) => (Some(kill), *overran),
            Phase::Killed(kill) => (Some(kill), None),
            _ => (None, None),
        };
        let reason = lost.reason(kill);
        tracing::warn!(status, tasks = self.flow.in_flight(), why = %reason, "worker lost");
        let mut retry = Vec::new();
        // In the order they were sent, so retried tasks queue again in their order.
        for (id, sent) in self.in_flight.drain() {
            let mut job = sent.into_unanswered();
            let n = job.len();
            self.flow.handle_answered(n);
            let name = job.key.name;
            if overran == Some(id) {
                self.seat.counters.failed.fetch_add(n as u64, Ordering::Relaxed);
                self.shared.resolve(job, Err(lost.overran(name)));
            } else if job.retries < self.shared.config.retries && !job.reply.is_closed() {
                job.retries += 1;
                tracing::debug!(task = name, attempt = job.retries, "task retried");
                retry.push(job);
                self.seat.counters.retried.fetch_add(n as u64, Ordering::Relaxed);
            } else {
                self.seat.counters.failed.fetch_add(n as u64, Ordering::Relaxed);
                self.shared
                    .resolve(job, Err(TaskError::new(Kind::WorkerLost, name, reason.clone())));
            }
        }
        self.watchdog.clear();
        let why = self.shared.stop_reason();
        self.shared.requeue(self.seat.queue_idx, retry, Kind::Cancelled, why);
    }
}

impl Drop for Driver<'_> {
    /// A driver dropped with tasks in flight was aborted (the pool was dropped or terminated): its tasks are
    /// resolved here, so that no waiter (a stream keeps its channel open) waits forever.
    fn drop(&mut self) {
        for (_, sent) in self.in_flight.drain() {
            let job = sent.into_unanswered();
            let name = job.key.name;
            let err = TaskError::new(Kind::Cancelled, name, self.shared.stop_reason());
            self.shared.resolve(job, Err(err));
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A driver's view of its queue, read from the shared state when a rule asks.
struct SeatView<'a> {
    shared: &'a Shared,
    shard: &'a Shard,
    worker_idx: usize,
}

impl QueueState for SeatView<'_> {
    fn queued(&self) -> usize {
        self.shard.queue.len()
    }

    fn in_flight(&self) -> usize {
        self.shard.in_flight.load(Ordering::Relaxed)
    }

    fn live(&self) -> usize {
        self.shard.live_workers()
    }

    fn others_listening(&self, min_credit: usize) -> bool {
        self.shared.queue_peers(self.worker_idx).any(|seat| {
            seat.is_listening()
                && (seat.counters.in_flight.load(Ordering::Relaxed) as usize) < min_credit
        })
    }
}
