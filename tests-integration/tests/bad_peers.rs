//! The pool against workers that break the protocol: every case ends in a typed error within a
//! bounded time, never a panic or a hang, and the misbehaving process is reaped.
//!
//! The workers are `fake_worker` (see `src/bin/fake_worker.rs`), told which case to play and the
//! name and fingerprint of [`double`], the one task these tests submit.

use std::error::Error;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use polyloop::wire::{PROTOCOL_VERSION, WireError};
use polyloop::{Pool, PoolBuilder, PoolError, TaskError, TaskSpec};
use polyloop_tests_integration::{close, reaped, restarts, worker_pids};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::unix::pipe;

#[polyloop::task]
async fn double(x: u64) -> u64 {
    x * 2
}

/// Far longer than any case takes: reaching it means the pool hung.
const HANG: Duration = Duration::from_secs(20);

/// A pool of one `fake_worker` playing `case`.
fn fake_pool(case: &str) -> PoolBuilder {
    fake_pool_args(case, None)
}

fn fake_pool_args(case: &str, report_dir: Option<&Path>) -> PoolBuilder {
    let mut args = vec![case.into(), double::NAME.into(), double::fingerprint().to_string().into()];
    args.extend(report_dir.map(|dir| dir.as_os_str().to_owned()));
    Pool::builder()
        .processes(1)
        .worker_program(env!("CARGO_BIN_EXE_fake_worker"))
        .worker_args::<_, std::ffi::OsString>(args)
}

/// Awaits `fut`, failing the test if it takes longer than [`HANG`].
async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(HANG, fut).await {
        Ok(output) => output,
        Err(_) => panic!("{what} hung for {HANG:?}"),
    }
}

/// `build()` of a pool whose worker fails its handshake.
async fn build_error(builder: PoolBuilder) -> PoolError {
    bounded("build()", builder.build()).await.expect_err("build() accepted a broken worker")
}

/// A pool whose worker passes the handshake, then runs one task on it and drops the pool.
/// Returns the task's error and the pid of the worker that got the task.
async fn task_error(case: &str) -> (TaskError, u32) {
    let pool = bounded("build()", fake_pool(case).build()).await.expect("the handshake is valid");
    let pid = pool.stats().workers[0].pid;
    let err = bounded("the task", pool.apply(double, 21)).await.expect_err("the task succeeded");
    // The supervisor is restarting the worker by now: dropping the pool stops it, so the test
    // ends (drop_reaps_a_replacement_still_in_its_handshake checks what it leaves behind).
    drop(pool);
    (err, pid)
}

/// The error and its sources on one line, as `{:#}` prints them with anyhow.
fn chain(err: &(dyn Error + 'static)) -> String {
    polyloop::RemoteError::from_error(err).to_string()
}

/// Asserts that `pid` is neither running nor a zombie: the pool waited for it.
#[track_caller]
fn assert_reaped(pid: u32) {
    let pid = i32::try_from(pid).expect("a pid fits an i32");
    assert_eq!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH), "process {pid} was not reaped");
}

/// Asserts the error of a worker that was killed for what it sent.
#[track_caller]
fn assert_killed_for(err: &TaskError, pid: u32, problem: &str) {
    assert!(err.is_worker_lost(), "expected a lost worker, got {err:?}");
    assert_eq!(err.task_name(), double::NAME);
    let msg = err.message();
    assert!(msg.contains(&format!("pid {pid}")), "the message does not name pid {pid}: {msg}");
    assert!(msg.contains("invalid frame"), "the message does not say what was wrong: {msg}");
    assert!(msg.contains(problem), "the message does not mention {problem:?}: {msg}");
    assert_reaped(pid);
}

#[tokio::test]
async fn version_mismatch_fails_build() {
    let err = build_error(fake_pool("version")).await;
    let PoolError::Handshake { pid, source } = &err else {
        panic!("expected a handshake error, got {err:?}");
    };
    assert_eq!(
        *source,
        WireError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: PROTOCOL_VERSION + 1 }
    );
    let text = chain(&err);
    assert!(text.contains("version") && text.contains(&pid.to_string()), "{text}");
    assert_reaped(*pid);
}

#[tokio::test]
async fn exit_before_handshake_fails_build() {
    let err = build_error(fake_pool("exit")).await;
    let PoolError::NotAWorker { pid, status, .. } = &err else {
        panic!("expected NotAWorker, got {err:?}");
    };
    assert_eq!(status, "exit code 7");
    let text = err.to_string();
    assert!(text.contains("exit code 7") && text.contains(&pid.to_string()), "{text}");
    assert_reaped(*pid);
}

/// Like `exit`, but the worker never reads the Welcome: a program that is no polyloop worker at
/// all (say, the wrong path given to `worker_program`) behaves like this.
#[tokio::test]
async fn exit_with_welcome_unread_fails_build() {
    let err = build_error(fake_pool("exit-unread")).await;
    let PoolError::NotAWorker { pid, status, .. } = &err else {
        panic!("expected NotAWorker, got {err:?}");
    };
    assert_eq!(status, "exit code 7");
    assert!(err.to_string().contains(&pid.to_string()), "{err}");
    assert_reaped(*pid);
}

#[tokio::test]
async fn silent_worker_times_out_the_handshake() {
    let builder = fake_pool("hang").handshake_timeout(Duration::from_secs(2));
    let err = build_error(builder).await;
    let PoolError::HandshakeTimeout { pid, seconds } = &err else {
        panic!("expected a handshake timeout, got {err:?}");
    };
    assert_eq!(*seconds, 2);
    let text = err.to_string();
    assert!(text.contains("within 2 s") && text.contains(&pid.to_string()), "{text}");
    assert_reaped(*pid);
}

/// The worker registers the task under the same name as this program but with other types: a
/// worker built from other code, refused before it is given any work.
#[tokio::test]
async fn wrong_fingerprint_fails_build() {
    let err = build_error(fake_pool("fingerprint")).await;
    let PoolError::RegistryMismatch { pid, tasks } = &err else {
        panic!("expected a registry mismatch, got {err:?}");
    };
    assert!(matches!(tasks.as_slice(), [task] if task.contains(double::NAME)), "{tasks:?}");
    let text = err.to_string();
    assert!(
        text.contains("other input or output types") && text.contains(&pid.to_string()),
        "{text}"
    );
    assert_reaped(*pid);
}

#[tokio::test]
async fn garbage_frame_loses_the_worker() {
    let (err, pid) = task_error("garbage").await;
    assert_killed_for(&err, pid, "malformed message");
}

#[tokio::test]
async fn oversized_frame_loses_the_worker() {
    let (err, pid) = task_error("oversized").await;
    assert_killed_for(&err, pid, "exceeds the limit");
}

/// A header announcing more than the limit is refused before anything is allocated for it.
#[tokio::test]
async fn oversized_header_is_not_allocated() {
    let before = peak_rss_kib();
    let (err, pid) = task_error("oversized").await;
    assert_killed_for(&err, pid, "exceeds the limit");
    let grown_mib = (peak_rss_kib() - before) / 1024;
    assert!(grown_mib < 64, "the peak RSS of the parent grew by {grown_mib} MiB");
}

/// Before the handshake only a small frame is accepted: a Hello header announcing 200 MiB (under
/// the limit for later frames) fails the build at once, with nothing allocated for it.
#[tokio::test]
async fn a_huge_frame_before_the_handshake_is_refused() {
    let before = peak_rss_kib();
    let err = build_error(fake_pool("huge-hello")).await;
    let PoolError::Handshake { pid, .. } = &err else {
        panic!("expected a handshake error, got {err:?}");
    };
    let text = chain(&err);
    assert!(text.contains("exceeds the limit"), "{text}");
    assert_reaped(*pid);
    let grown_mib = (peak_rss_kib() - before) / 1024;
    assert!(grown_mib < 64, "the peak RSS of the parent grew by {grown_mib} MiB");
}

/// A worker that completed its handshake and then neither answers nor beats (stopped, wedged,
/// or a peer that ignores the heartbeat socket) is declared dead after the heartbeat timeout,
/// although no task timeout is set: its task is lost, not left waiting forever.
#[tokio::test]
async fn a_worker_that_stops_beating_is_killed() {
    let builder = fake_pool("mute").heartbeat_timeout(Some(Duration::from_secs(1)));
    let pool = bounded("build()", builder.build()).await.expect("the handshake is valid");
    let pid = pool.stats().workers[0].pid;
    let err = bounded("the task", pool.apply(double, 21)).await.expect_err("the task succeeded");
    assert!(err.is_worker_lost(), "expected a lost worker, got {err:?}");
    let msg = err.message();
    assert!(msg.contains(&format!("pid {pid}")), "{msg}");
    assert!(msg.contains("no heartbeat for 1s"), "{msg}");
    assert_reaped(pid);
    drop(pool);
}

#[tokio::test]
async fn result_for_an_unknown_id_loses_the_worker() {
    let (err, pid) = task_error("bad-slot").await;
    assert_killed_for(&err, pid, "a result for a task it does not hold");
}

/// A late or repeated result names a task that is no longer in flight, never another task: ids
/// are not reused, so the task sent after it cannot be resolved with its value.
#[tokio::test]
async fn a_stale_result_never_resolves_another_task() {
    let pool =
        bounded("build()", fake_pool("stale").build()).await.expect("the handshake is valid");
    let pid = pool.stats().workers[0].pid;
    assert_eq!(bounded("the first task", pool.apply(double, 21)).await.expect("answered"), 42);
    let err = bounded("the second task", pool.apply(double, 50)).await;
    let err = err.expect_err("the first task's answer resolved the second");
    assert_killed_for(&err, pid, "a result for a task it does not hold");
    drop(pool);

    // Retried, the task runs as the first task of a fresh worker, which answers it right.
    let pool = fake_pool("stale").retries(1).build();
    let pool = bounded("build()", pool).await.expect("the handshake is valid");
    assert_eq!(bounded("the first task", pool.apply(double, 21)).await.expect("answered"), 42);
    assert_eq!(bounded("the retried task", pool.apply(double, 50)).await.expect("retried"), 100);
    assert_eq!(pool.stats().workers[0].restarts, 1);
    drop(pool);
}

#[tokio::test]
async fn trailing_bytes_lose_the_worker() {
    let (err, pid) = task_error("trailing").await;
    assert_killed_for(&err, pid, "trailing bytes");
}

/// The worker that replaces a lost one is still in its handshake when the pool is dropped: Drop
/// must kill and reap it like any other ("no orphans, ever").
#[tokio::test]
async fn drop_reaps_a_replacement_still_in_its_handshake() {
    let report = ReportDir::new("drop-replacement");
    let mut pids = report.pids();
    let builder = fake_pool_args("bad-slot-then-hang", Some(&report.path));
    let pool = bounded("build()", builder.build()).await.expect("the handshake is valid");
    let first = next_pid(&mut pids).await;
    let err = bounded("the task", pool.apply(double, 21)).await.expect_err("the task succeeded");
    assert_killed_for(&err, first, "a result for a task it does not hold");
    // The replacement hangs in its handshake; once it has started, drop the pool under it.
    let replacement = next_pid(&mut pids).await;
    drop(pool);
    assert_reaped(replacement);
}

/// A pool of one `fake_worker` playing a chunk case, which sends a map's inputs in chunks of
/// four from the first: the prefetch is fixed, so the credit is 4 from the start. The fake worker
/// never beats, and a loaded machine must not make a heartbeat timeout the reason it is lost.
fn chunk_pool(case: &str) -> PoolBuilder {
    fake_pool(case).child_concurrency(1).prefetch(3).heartbeat_timeout(None)
}

/// Closes `pool` and asserts that it left no worker behind.
async fn close_and_reap(pool: Pool) {
    let pids = worker_pids(&pool);
    close(&pool).await.expect("close");
    for pid in pids {
        assert!(reaped(pid), "worker {pid} was left behind");
    }
}

/// A map whose chunk a worker answers wrongly fails as a lost worker, and the pool serves a
/// task on the replacement, which answers single tasks right.
async fn assert_chunk_loses_the_worker(case: &str, problem: &str) {
    let pool = bounded("build()", chunk_pool(case).build()).await.expect("the handshake is valid");
    let pid = worker_pids(&pool)[0];
    let err = bounded("the map", pool.map(double, 0..4)).await.expect_err("the map succeeded");
    assert_killed_for(&err, pid, problem);
    let answer = bounded("a task on the replacement", pool.apply(double, 21)).await;
    assert_eq!(answer.expect("the replacement answers"), 42);
    assert_eq!(restarts(&pool), 1);
    close_and_reap(pool).await;
}

#[tokio::test]
async fn a_part_beyond_its_chunk_loses_the_worker() {
    assert_chunk_loses_the_worker("chunk-excess", "a part beyond its chunk's inputs").await;
}

#[tokio::test]
async fn a_part_that_does_not_decode_loses_the_worker() {
    assert_chunk_loses_the_worker("chunk-garbage", "malformed message").await;
}

#[tokio::test]
async fn a_plain_ok_for_a_chunk_loses_the_worker() {
    assert_chunk_loses_the_worker("chunk-ok", "a single output for a chunk").await;
}

/// When a worker breaks mid-chunk, the inputs its parts answered keep their outputs: only the
/// others fail.
#[tokio::test]
async fn inputs_answered_before_a_bad_part_keep_their_outputs() {
    let pool = chunk_pool("chunk-garbage").build();
    let pool = bounded("build()", pool).await.expect("the handshake is valid");
    let mut stream = pool.map_stream(double, 0..4);
    let mut results = Vec::new();
    while let Some(result) = bounded("the stream", stream.next()).await {
        results.push(result);
    }
    let lost = |result: &Result<u64, TaskError>| matches!(result, Err(e) if e.is_worker_lost());
    assert!(
        matches!(results[..], [Ok(0), Ok(2), ref a, ref b] if lost(a) && lost(b)),
        "{results:?}"
    );
    drop(stream);
    close_and_reap(pool).await;
}

/// A part for a task sent alone fails it as a lost worker, though the part holds a right
/// outcome; the replacement answers a map's chunks right.
#[tokio::test]
async fn a_part_for_a_single_task_loses_the_worker() {
    let pool = chunk_pool("part-single").build();
    let pool = bounded("build()", pool).await.expect("the handshake is valid");
    let pid = worker_pids(&pool)[0];
    let err = bounded("the task", pool.apply(double, 21)).await.expect_err("the task succeeded");
    assert_killed_for(&err, pid, "a chunk's part for a single task");
    let outputs = bounded("a map on the replacement", pool.map(double, 0..4)).await;
    assert_eq!(outputs.expect("the replacement answers"), [0, 2, 4, 6]);
    assert_eq!(restarts(&pool), 1);
    close_and_reap(pool).await;
}

/// Chunks answered in two parts each, in frames of their own, give the map its outputs in input
/// order, and cost no worker.
#[tokio::test]
async fn chunks_answered_in_parts_give_the_outputs_in_order() {
    let pool = chunk_pool("chunk-halves").build();
    let pool = bounded("build()", pool).await.expect("the handshake is valid");
    let outputs = bounded("the map", pool.map(double, 0..10)).await.expect("the map succeeds");
    assert_eq!(outputs, (0..10).map(|x| x * 2).collect::<Vec<u64>>());
    assert_eq!(restarts(&pool), 0);
    close_and_reap(pool).await;
}

/// A temporary directory with the FIFO `pids` that fake workers report their pids to.
struct ReportDir {
    path: PathBuf,
}

impl ReportDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("polyloop-bad-peers-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the report dir");
        nix::unistd::mkfifo(&path.join("pids"), nix::sys::stat::Mode::S_IRWXU)
            .expect("create the pids FIFO");
        ReportDir { path }
    }

    /// The reported pids, line by line. Opened read-write, so it never sees the end of the
    /// stream when one worker closes it, and a worker opening it never blocks.
    fn pids(&self) -> Lines<BufReader<pipe::Receiver>> {
        let receiver = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(self.path.join("pids"))
            .expect("open the pids FIFO");
        BufReader::new(receiver).lines()
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

async fn next_pid(pids: &mut Lines<BufReader<pipe::Receiver>>) -> u32 {
    let line = bounded("a worker's pid report", pids.next_line()).await;
    let line = line.expect("read the pids FIFO").expect("the pids FIFO stays open");
    line.parse().expect("a pid")
}

/// The peak resident set size of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// A worker program that does not exist fails `build()` with the spawn error, naming the program
/// and what the OS said, whether given as a path or as a bare name looked up in PATH.
#[tokio::test]
async fn a_missing_worker_program_fails_build() {
    for program in ["/nonexistent/polyloop-worker", "polyloop-no-such-worker-program"] {
        let err = build_error(Pool::builder().processes(1).worker_program(program)).await;
        let PoolError::Spawn { program: named, source } = &err else {
            panic!("expected a spawn error, got {err:?}");
        };
        assert_eq!(named, program);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{}", chain(&err));
    }
}
