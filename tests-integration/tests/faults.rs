//! Failure semantics end to end, with real worker processes: lost workers, panics, timeouts,
//! cancellation, serialization failures, leaks over many pools, and recycling under faults.
//!
//! Tasks that must be held mid-run report to a [`Probe`], a Unix socket the test listens on:
//! they say when they start (and in which process), wait for an order, and their drop guard says
//! so from the worker process when the task is dropped there. Tests wait on those events, not on
//! sleeps.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_core::Stream;
use nix::sys::signal::Signal;
use polyloop::{Pool, PoolBuilder, TaskError, TaskHandle};
use polyloop_tests_integration::{
    PATIENCE, PROMPTLY, close, reaped, restarts, send_signal, within,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

/// Every test here starts worker processes, and one counts them: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// Tasks: this test binary is the worker program.

/// Reports to the probe at `probe` that it started, then waits for an order: `go` (return the
/// pid), `exit N` (end the process with code N) or `panic` (panic). Dropped before it returns, its
/// guard tells the probe so, from the worker process.
#[polyloop::task]
async fn hold(probe: String, tag: u64) -> u32 {
    let pid = std::process::id();
    let mut stream = std::os::unix::net::UnixStream::connect(&probe).expect("connect to the probe");
    writeln!(stream, "started {pid} {tag}").expect("write to the probe");
    let mut guard = DropGuard(Some(stream.try_clone().expect("clone the probe socket")));
    stream.set_nonblocking(true).expect("make the probe socket nonblocking");
    let stream = UnixStream::from_std(stream).expect("register the probe socket");
    let order = BufReader::new(stream).lines().next_line().await.ok().flatten();
    match order.as_deref() {
        // The probe went away: the test is over, nothing to report.
        Some("go") | None => {
            guard.0 = None;
            pid
        }
        Some("panic") => panic!("told to panic in pid {pid}"),
        Some(order) => match order.strip_prefix("exit ").and_then(|code| code.parse().ok()) {
            Some(code) => std::process::exit(code),
            None => panic!("unknown order {order:?}"),
        },
    }
}

/// Says `dropped` on the probe unless disarmed: proof that a task was dropped in its worker.
struct DropGuard(Option<std::os::unix::net::UnixStream>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(stream) = &mut self.0 {
            let _ = writeln!(stream, "dropped {}", std::process::id());
        }
    }
}

/// Reports to the probe, then blocks its thread without ever yielding (bounded, so that a worker
/// the pool fails to kill still ends).
#[polyloop::task]
async fn spin(probe: String) -> u32 {
    let mut stream = std::os::unix::net::UnixStream::connect(&probe).expect("connect to the probe");
    writeln!(stream, "started {} 0", std::process::id()).expect("write to the probe");
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    std::process::id()
}

#[polyloop::task]
async fn whoami(_i: u64) -> u32 {
    std::process::id()
}

/// Blocks its thread for `millis` (no await), then returns its pid.
#[polyloop::task]
async fn block_for(millis: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(millis));
    std::process::id()
}

/// Sleeps, then returns its pid.
#[polyloop::task]
async fn nap(millis: u64) -> u32 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    std::process::id()
}

#[polyloop::task]
async fn double(x: u64) -> u64 {
    x * 2
}

#[polyloop::task]
async fn boom(message: String) -> u32 {
    panic!("{message} in pid {}", std::process::id())
}

/// A task whose outcome depends on `i % 10`: 6 panics, 7 fails, 8 ends its process with exit
/// code 9, the rest return the pid after a short sleep. Every outcome names the pid.
#[polyloop::task]
async fn mixed(i: u64) -> Result<u32, String> {
    let pid = std::process::id();
    tokio::time::sleep(Duration::from_millis(2)).await;
    match i % 10 {
        6 => panic!("mixed {i} panicked in pid {pid}"),
        7 => Err(format!("mixed {i} failed in pid {pid}")),
        8 => std::process::exit(9),
        _ => Ok(pid),
    }
}

/// A value that refuses to serialize when it is 13 and to deserialize when it is 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Picky(u64);

const UNSERIALIZABLE: u64 = 13;
const UNDESERIALIZABLE: u64 = 14;

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == UNSERIALIZABLE {
            return Err(serde::ser::Error::custom("picky refuses to serialize 13"));
        }
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u64::deserialize(deserializer)? {
            UNDESERIALIZABLE => Err(serde::de::Error::custom("picky refuses to deserialize 14")),
            value => Ok(Picky(value)),
        }
    }
}

/// Takes a picky input.
#[polyloop::task]
async fn picky_in(value: Picky) -> u64 {
    value.0
}

/// Returns a picky output.
#[polyloop::task]
async fn picky_out(value: u64) -> Picky {
    Picky(value)
}

/// A linked list: a node decodes as a struct (one level of nesting) holding an `Option` (one
/// more), so a list of `links` links nests `2 * links + 1` levels deep.
///
/// It is built, written and dropped without recursion, so that only decoding it recurses: postcard
/// writes `Some(x)` as `01` then `x`, `None` as `00`, and a struct as its fields, so the list is the
/// bytes `01` (once per link) then `00`, which it writes as a flat tuple of bytes.
#[derive(Debug, Deserialize)]
struct Node {
    next: Option<Box<Node>>,
}

impl Node {
    fn with_links(links: usize) -> Node {
        let mut head = Node { next: None };
        for _ in 0..links {
            head = Node { next: Some(Box::new(head)) };
        }
        head
    }

    fn links(&self) -> usize {
        std::iter::successors(self.next.as_deref(), |node| node.next.as_deref()).count()
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let links = self.links();
        let mut tuple = serializer.serialize_tuple(links + 1)?;
        for _ in 0..links {
            tuple.serialize_element(&1u8)?;
        }
        tuple.serialize_element(&0u8)?;
        tuple.end()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(mut node) = next {
            next = node.next.take();
        }
    }
}

/// Takes a list and says how long it was.
#[polyloop::task]
async fn deep_in(list: Node) -> u64 {
    list.links() as u64
}

/// Returns a list of `links` links.
#[polyloop::task]
async fn deep_out(links: u64) -> Node {
    Node::with_links(links as usize)
}

/// Returns a string of `len` bytes.
#[polyloop::task]
async fn big_out(len: u64) -> String {
    "x".repeat(len as usize)
}

/// Takes a string and returns its length.
#[polyloop::task]
async fn big_in(text: String) -> u64 {
    text.len() as u64
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A Unix socket the `hold` and `spin` tasks report to.
struct Probe {
    path: PathBuf,
    listener: UnixListener,
}

/// A task that reported to a probe: where it runs, and the line to talk to it.
struct Held {
    pid: u32,
    tag: u64,
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Probe {
    fn new() -> std::io::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("polyloop-faults-{}-{n}.sock", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(Probe { path, listener })
    }

    fn addr(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Submits a `hold` task reporting to this probe for each tag, and returns their handles by
    /// tag.
    fn hold_on(&self, pool: &Pool, tags: Range<u64>) -> HashMap<u64, TaskHandle<u32>> {
        tags.map(|tag| (tag, pool.submit(hold, (self.addr(), tag)))).collect()
    }

    /// Waits until `n` more tasks have started; returns them sorted by tag.
    async fn started(&self, n: usize) -> std::io::Result<Vec<Held>> {
        let accept_all = async {
            let mut held = Vec::with_capacity(n);
            while held.len() < n {
                let (stream, _) = self.listener.accept().await?;
                let (reader, writer) = stream.into_split();
                let mut lines = BufReader::new(reader).lines();
                let line = lines.next_line().await?.unwrap_or_default();
                let parsed = match line.split(' ').collect::<Vec<_>>().as_slice() {
                    ["started", pid, tag] => pid.parse().ok().zip(tag.parse().ok()),
                    _ => None,
                };
                let Some((pid, tag)) = parsed else {
                    return Err(std::io::Error::other(format!("unexpected report {line:?}")));
                };
                held.push(Held { pid, tag, lines, writer });
            }
            held.sort_by_key(|h| h.tag);
            Ok(held)
        };
        within(PATIENCE, &format!("{n} tasks starting"), accept_all).await
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Held {
    async fn order(&mut self, order: &str) -> std::io::Result<()> {
        self.writer.write_all(format!("{order}\n").as_bytes()).await
    }

    /// Reads the task's reports to their end: whether its drop guard ran in the worker (as
    /// opposed to the task returning, or its process dying).
    async fn guard_ran(&mut self) -> std::io::Result<bool> {
        while let Some(line) = self.lines.next_line().await? {
            if line.starts_with("dropped ") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Asserts that the task's drop guard reports within [`PROMPTLY`]: the task was cancelled in
    /// its worker, not left to run there.
    async fn assert_dropped(&mut self) -> std::io::Result<()> {
        let dropped = within(PROMPTLY, "the drop guard", self.guard_ran()).await?;
        assert!(dropped, "task {} was dropped in its worker", self.tag);
        Ok(())
    }
}

/// Awaits a handle that must fail by `deadline`.
async fn failure_by<O>(deadline: Instant, handle: TaskHandle<O>) -> TaskError
where
    O: serde::de::DeserializeOwned + std::fmt::Debug + 'static,
{
    match tokio::time::timeout_at(deadline, handle).await {
        Ok(Ok(output)) => panic!("the task should have failed, it returned {output:?}"),
        Ok(Err(err)) => err,
        Err(_) => panic!("the task did not fail in time"),
    }
}

/// Whether the handle has not resolved yet, without waiting.
fn still_pending<O: serde::de::DeserializeOwned + 'static>(handle: &mut TaskHandle<O>) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    Pin::new(handle).poll(&mut cx).is_pending()
}

/// The pid a task error names (`pid 123` or `(pid 123)`).
fn pid_named_in(err: &TaskError) -> Option<u32> {
    let message = err.message();
    let at = message.find("pid ")? + "pid ".len();
    let digits: String = message[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn stats_by_pid(pool: &Pool, pid: u32) -> polyloop::WorkerStats {
    pool.stats()
        .workers
        .into_iter()
        .find(|w| w.pid == pid)
        .unwrap_or_else(|| panic!("no worker slot holds pid {pid}"))
}

/// Runs `test` on a pool from `builder` with its workers on each runtime a worker can have, and
/// closes each pool after: on one thread the first poll runs in the worker's reader, on several
/// in a tokio task.
async fn on_each_child_runtime(
    builder: impl Fn() -> PoolBuilder,
    test: impl AsyncFn(&Pool) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for builder in [builder(), builder().child_threads(2)] {
        let pool = builder.build().await?;
        test(&pool).await?;
        close(&pool).await?;
    }
    Ok(())
}

/// Asserts that the pool's one worker, `pid`, serves the next task and was never restarted: what
/// failed before failed its own task alone.
async fn assert_serves_on(pool: &Pool, pid: u32) -> anyhow::Result<()> {
    let next = within(PATIENCE, "the next task", pool.apply(whoami, 0)).await?;
    assert_eq!(next, pid, "the same worker serves the next task");
    let stats = pool.stats();
    assert_eq!(stats.workers[0].restarts, 0, "{stats:?}");
    Ok(())
}

/// Lets every held task return, and checks each returns the pid it reported.
async fn release_all(
    held: &mut [Held],
    handles: &mut HashMap<u64, TaskHandle<u32>>,
) -> anyhow::Result<()> {
    for task in held.iter_mut() {
        task.order("go").await?;
    }
    for task in held.iter_mut() {
        let handle = handles.remove(&task.tag).expect("a handle per tag");
        let pid = within(PATIENCE, "a released task", handle).await?;
        assert_eq!(pid, task.pid, "task {} returned from where it started", task.tag);
    }
    Ok(())
}

/// How a test takes a worker down from under its tasks.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// SIGKILL from outside.
    Killed,
    /// One of its tasks calls `std::process::exit(7)`.
    Exited,
}

/// A worker dies while it holds four tasks, the other worker holds four more, and a
/// ninth waits in the parent's queue.
async fn lose_a_worker(death: Death) -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let probe = Probe::new()?;
    // No prefetch: each worker holds exactly its four running tasks.
    let pool = Pool::builder().processes(2).child_concurrency(4).prefetch(0).build().await?;
    let mut handles = probe.hold_on(&pool, 0..9);
    let held = probe.started(8).await?;
    assert!(held.iter().all(|task| task.tag < 8), "the ninth task waits in the queue");
    let victim = held[0].pid;
    let victim_idx = stats_by_pid(&pool, victim).worker_idx;
    let (mut lost, mut kept): (Vec<Held>, Vec<Held>) =
        held.into_iter().partition(|task| task.pid == victim);
    assert_eq!((lost.len(), kept.len()), (4, 4), "each worker holds four tasks");
    let survivor = kept[0].pid;

    match death {
        Death::Killed => send_signal(victim, Signal::SIGKILL)?,
        Death::Exited => lost[1].order("exit 7").await?,
    }
    let deadline = Instant::now() + PROMPTLY;
    let expected_cause = match death {
        Death::Killed => "SIGKILL",
        Death::Exited => "exit code 7",
    };
    for task in &mut lost {
        let err = failure_by(deadline, handles.remove(&task.tag).expect("handle")).await;
        assert!(err.is_worker_lost(), "{err}");
        assert!(err.message().contains(&format!("pid {victim}")), "names the pid: {err}");
        assert!(err.message().contains(expected_cause), "names the cause: {err}");
        assert!(!task.guard_ran().await?, "the task died with its process, not dropped");
    }
    for task in &kept {
        let handle = handles.get_mut(&task.tag).expect("handle");
        assert!(still_pending(handle), "task {} on the other worker is untouched", task.tag);
    }

    // The queued task was held by no worker: it is not lost, and runs on the replacement.
    let late = probe.started(1).await?;
    let replacement = late[0].pid;
    assert_eq!(late[0].tag, 8);
    assert!(replacement != victim && replacement != survivor, "on a new worker");
    kept.extend(late);
    release_all(&mut kept, &mut handles).await?;

    let stats = pool.stats();
    for worker in &stats.workers {
        let restarts = u64::from(worker.worker_idx == victim_idx);
        assert_eq!(worker.restarts, restarts, "one restart, in the victim's slot: {stats:?}");
    }
    assert_eq!(stats.workers[victim_idx].pid, replacement, "{stats:?}");
    assert_eq!(stats.workers[victim_idx].tasks_failed, 4, "{stats:?}");
    assert!(reaped(victim), "the dead worker was reaped");
    close(&pool).await
}

/// The processes whose parent is this one, and the zombies among them.
fn own_children() -> (HashSet<u32>, Vec<u32>) {
    let me = std::process::id();
    let mut children = HashSet::new();
    let mut zombies = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return (children, zombies) };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name may hold spaces and parentheses: the fields start after the last ')'.
        let Some(fields) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
        let fields: Vec<&str> = fields.split_whitespace().collect();
        if fields.get(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(me) {
            children.insert(pid);
            if fields.first() == Some(&"Z") {
                zombies.push(pid);
            }
        }
    }
    (children, zombies)
}

/// Children as the kernel lists them per thread of this process.
fn listed_children() -> HashSet<u32> {
    let mut children = HashSet::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                children.extend(list.split_whitespace().filter_map(|pid| pid.parse::<u32>().ok()));
            }
        }
    }
    children
}

/// The open file descriptors of this process, with what each refers to.
fn open_fds() -> HashMap<String, String> {
    let mut fds = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        for entry in entries.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            fds.insert(entry.file_name().to_string_lossy().into_owned(), target);
        }
    }
    fds
}

// ---------------------------------------------------------------------------------------------
// 1. A worker killed mid-task.

#[tokio::test]
async fn sigkill_fails_exactly_the_tasks_its_worker_held() -> anyhow::Result<()> {
    lose_a_worker(Death::Killed).await
}

#[tokio::test]
async fn exit_inside_a_task_fails_exactly_the_tasks_its_worker_held() -> anyhow::Result<()> {
    lose_a_worker(Death::Exited).await
}

#[tokio::test]
async fn retries_rerun_lost_tasks_on_another_worker_then_give_up() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let probe = Probe::new()?;
    let pool =
        Pool::builder().processes(2).child_concurrency(4).prefetch(0).retries(1).build().await?;
    let mut handles = probe.hold_on(&pool, 0..8);
    let held = probe.started(8).await?;
    let first_victim = held[0].pid;
    let (lost, mut kept): (Vec<Held>, Vec<Held>) =
        held.into_iter().partition(|task| task.pid == first_victim);
    let lost_tags: Vec<u64> = lost.iter().map(|task| task.tag).collect();
    let survivor = kept[0].pid;
    send_signal(first_victim, Signal::SIGKILL)?;

    // The survivor is full, so the four lost tasks run again on the replacement.
    let rerun = probe.started(4).await?;
    assert_eq!(rerun.iter().map(|task| task.tag).collect::<Vec<_>>(), lost_tags);
    let second_victim = rerun[0].pid;
    assert!(rerun.iter().all(|task| task.pid == second_victim), "all on one worker");
    assert!(second_victim != first_victim && second_victim != survivor, "on a new worker");
    for tag in &lost_tags {
        assert!(still_pending(handles.get_mut(tag).expect("handle")), "retried, not failed");
    }

    // The retry is spent: losing the replacement fails them.
    send_signal(second_victim, Signal::SIGKILL)?;
    let deadline = Instant::now() + PROMPTLY;
    for tag in &lost_tags {
        let err = failure_by(deadline, handles.remove(tag).expect("handle")).await;
        assert!(err.is_worker_lost(), "{err}");
        assert!(err.message().contains(&format!("pid {second_victim}")), "{err}");
    }
    release_all(&mut kept, &mut handles).await?;
    assert_eq!(restarts(&pool), 2);
    close(&pool).await
}

// ---------------------------------------------------------------------------------------------
// 2. A panic in a task.

#[tokio::test]
async fn panic_fails_only_its_task_and_the_worker_serves_on() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let probe = Probe::new()?;
    let builder = || Pool::builder().processes(1).child_concurrency(4);
    on_each_child_runtime(builder, async |pool: &Pool| {
        let mut handles = probe.hold_on(pool, 0..3);
        let mut held = probe.started(3).await?;
        let pid = held[0].pid;

        // A panic on the first poll.
        let err = within(PATIENCE, "a panicking task", pool.apply(boom, "kaboom".to_owned()))
            .await
            .expect_err("the task panicked");
        assert!(err.is_panic(), "{err}");
        assert!(err.message().contains("kaboom"), "carries the panic message: {err}");
        assert_eq!(pid_named_in(&err), Some(pid));

        // A panic after the task has waited.
        let mut panicking = held.pop().expect("three tasks");
        panicking.order("panic").await?;
        let handle = handles.remove(&panicking.tag).expect("handle");
        let err = within(PATIENCE, "a panicking task", handle).await.expect_err("it panicked");
        assert!(err.is_panic(), "{err}");
        assert!(err.message().contains(&format!("told to panic in pid {pid}")), "{err}");

        // Its neighbours run on, and the same process serves the next task.
        release_all(&mut held, &mut handles).await?;
        assert_serves_on(pool, pid).await?;
        assert_eq!(pool.stats().workers[0].tasks_failed, 2);
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 3. Timeouts.

#[tokio::test]
async fn overrunning_async_task_is_cancelled_in_its_worker() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let probe = Probe::new()?;
    let timeout = Duration::from_millis(300);
    let pool = Pool::builder().processes(1).task_timeout(timeout).build().await?;
    let handle = pool.submit(hold, (probe.addr(), 0));
    let mut held = probe.started(1).await?;
    let pid = held[0].pid;

    let err = within(PATIENCE, "the timeout", handle).await.expect_err("the task timed out");
    assert!(err.is_timeout(), "{err}");
    held[0].assert_dropped().await?;
    // Cancelled cooperatively: the same process serves on.
    assert_serves_on(&pool, pid).await?;
    close(&pool).await
}

#[tokio::test]
async fn worker_blocked_past_its_timeout_is_killed_and_replaced() -> anyhow::Result<()> {
    block_a_worker(0).await
}

#[tokio::test]
async fn task_lost_with_a_blocked_worker_is_retried() -> anyhow::Result<()> {
    block_a_worker(1).await
}

/// A task blocks its worker's thread past the timeout, while two others wait in the same
/// worker (one sent just after it, so it too is older than the timeout when the worker is killed,
/// and one sent shortly before the kill) and another in the parent's queue. Only the task that
/// blocked is a timeout: the others are innocent, lost with their worker or retried.
async fn block_a_worker(retries: u32) -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let probe = Probe::new()?;
    // The pool kills a worker when its oldest task is twice the timeout plus a grace period of
    // one second old: here 5 s after `spin` was sent.
    let timeout = Duration::from_secs(2);
    let kill_after = 2 * timeout + Duration::from_secs(1);
    let pool = Pool::builder()
        .processes(1)
        .child_concurrency(3)
        .prefetch(0)
        .task_timeout(timeout)
        .retries(retries)
        .build()
        .await?;
    let sent = Instant::now();
    let spinning = pool.submit(spin, probe.addr());
    let blocked = probe.started(1).await?[0].pid;
    // Sent while `spin` blocks the worker's thread: it waits there for longer than the timeout,
    // through no fault of its own.
    let elder = pool.submit(whoami, 0);

    // A task that reaches the blocked worker well within the timeout before the kill did not
    // overrun: it is lost with its worker (or retried). The sleep picks that moment; it waits
    // for no event.
    tokio::time::sleep_until(sent + kill_after - timeout / 2).await;
    let young = pool.submit(whoami, 1);
    // The worker's credit is used up: this one stays queued in the parent and is not lost.
    let queued = pool.submit(whoami, 2);

    let deadline = sent + kill_after + PROMPTLY;
    let err = failure_by(deadline, spinning).await;
    assert!(err.is_timeout(), "the overrunning task timed out, retries or not: {err}");
    assert_eq!(pid_named_in(&err), Some(blocked), "{err}");
    let replacement = within(PATIENCE, "the queued task", queued).await?;
    assert_ne!(replacement, blocked, "a replacement ran the queued task");
    for (which, innocent) in [("elder", elder), ("young", young)] {
        if retries == 0 {
            let err = failure_by(deadline, innocent).await;
            assert!(err.is_worker_lost(), "the {which} task was lost with its worker: {err}");
            assert!(err.message().contains(&format!("pid {blocked}")), "{err}");
            assert!(err.message().contains("SIGKILL"), "{err}");
            assert!(err.message().contains("another of its tasks ran longer"), "{err}");
        } else {
            let pid = within(PATIENCE, "the retried task", innocent).await?;
            assert_eq!(pid, replacement, "the {which} task ran again on the replacement");
        }
    }
    assert!(reaped(blocked), "the blocked worker was reaped");
    let stats = pool.stats();
    assert_eq!((stats.workers[0].restarts, stats.workers[0].pid), (1, replacement), "{stats:?}");
    close(&pool).await
}

/// A worker stopped with SIGSTOP while it holds a task, with no task timeout set: its heartbeat
/// stops, so it is declared dead within the heartbeat timeout and replaced; its task is lost (or
/// run again), and `close()` does not wait for it.
#[tokio::test]
async fn a_stopped_worker_is_declared_dead_by_its_silence() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let probe = Probe::new()?;
    let timeout = Duration::from_secs(1);
    for retries in [0, 1] {
        let pool = Pool::builder()
            .processes(1)
            .heartbeat_timeout(Some(timeout))
            .retries(retries)
            .build()
            .await?;
        let held = pool.submit(hold, (probe.addr(), 0));
        let stopped = probe.started(1).await?.remove(0);
        send_signal(stopped.pid, Signal::SIGSTOP)?;
        if retries == 0 {
            let err = failure_by(Instant::now() + timeout + PROMPTLY, held).await;
            assert!(err.is_worker_lost(), "the stopped worker's task was lost: {err}");
            assert_eq!(pid_named_in(&err), Some(stopped.pid), "{err}");
            assert!(err.message().contains("no heartbeat for 1s"), "{err}");
        } else {
            let mut again = probe.started(1).await?.remove(0);
            assert_ne!(again.pid, stopped.pid, "the task ran again on a replacement");
            again.order("go").await?;
            assert_eq!(within(PATIENCE, "the retried task", held).await?, again.pid);
        }
        assert!(reaped(stopped.pid), "the stopped worker was killed and reaped");
        assert_eq!(restarts(&pool), 1);
        close(&pool).await?;
    }
    Ok(())
}

/// A task that blocks its worker's thread far longer than the heartbeat timeout, with no task
/// timeout set: the worker's watch thread beats on, so the worker is not taken for dead.
#[tokio::test]
async fn a_worker_busy_in_a_blocking_task_still_beats() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pool = Pool::builder()
        .processes(1)
        .heartbeat_timeout(Some(Duration::from_millis(200)))
        .build()
        .await?;
    let pid = pool.stats().workers[0].pid;
    // 2 s of a blocked thread: ten heartbeat timeouts.
    assert_eq!(within(PATIENCE, "the blocking task", pool.apply(block_for, 2_000)).await?, pid);
    assert_serves_on(&pool, pid).await?;
    close(&pool).await
}

// ---------------------------------------------------------------------------------------------
// 4. Cancellation reaches the child.

#[tokio::test]
async fn dropping_a_handle_cancels_its_task_in_the_worker() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let probe = Probe::new()?;
    let builder = || Pool::builder().processes(1).child_concurrency(2).prefetch(0);
    on_each_child_runtime(builder, async |pool: &Pool| {
        let handles = probe.hold_on(pool, 0..2);
        let mut held = probe.started(2).await?;
        drop(handles);
        assert_cancelled_cleanly(pool, &probe, &mut held, 2).await
    })
    .await
}

#[tokio::test]
async fn dropping_a_map_stream_cancels_its_tasks_in_the_workers() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let probe = Probe::new()?;
    let pool = Pool::builder().processes(2).child_concurrency(4).prefetch(0).build().await?;
    for unordered in [false, true] {
        // More inputs than the workers hold: the rest wait in the parent's queue.
        let inputs = (0..100).map(|tag| (probe.addr(), tag));
        let mut stream = match unordered {
            false => pool.map_stream(hold, inputs),
            true => pool.map_unordered(hold, inputs),
        };
        // One poll submits the inputs; nothing is ready yet.
        std::future::poll_fn(|cx| {
            assert!(Pin::new(&mut stream).poll_next(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        let mut held = probe.started(8).await?;
        assert_eq!(held.iter().map(|task| task.pid).collect::<HashSet<_>>().len(), 2);
        drop(stream);
        assert_cancelled_cleanly(&pool, &probe, &mut held, 8).await?;
    }
    close(&pool).await
}

#[tokio::test]
async fn a_failing_map_cancels_its_other_tasks_in_the_workers() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let probe = Probe::new()?;
    let pool = Pool::builder().processes(2).child_concurrency(4).prefetch(0).build().await?;
    // The first input: an ordered map yields (and so fails on) results in input order only.
    let failing_tag = 0;
    let order_a_panic = async {
        let mut held = probe.started(8).await?;
        held[failing_tag].order("panic").await?;
        Ok::<_, std::io::Error>(held)
    };
    let inputs = (0..8).map(|tag| (probe.addr(), tag));
    let (result, held) =
        within(PATIENCE, "the map", async { tokio::join!(pool.map(hold, inputs), order_a_panic) })
            .await;
    let err = result.expect_err("one task panicked");
    assert!(err.is_panic(), "map fails fast with the panic: {err}");
    let mut others = held?;
    others.retain(|task| task.tag != failing_tag as u64);
    assert_cancelled_cleanly(&pool, &probe, &mut others, 8).await?;
    close(&pool).await
}

/// Checks that the `cancelled` tasks, which were running, are dropped in their workers, and that
/// they and any cancelled ones still queued left nothing behind: every worker takes its full
/// `credit` again (which it could not if the cancelled tasks still counted), no cancelled task
/// that was still queued starts, and once the new tasks are done nothing is in flight or queued.
async fn assert_cancelled_cleanly(
    pool: &Pool,
    probe: &Probe,
    cancelled: &mut [Held],
    credit: u64,
) -> anyhow::Result<()> {
    for task in cancelled {
        task.assert_dropped().await?;
    }
    // Tags apart from the cancelled tasks' ones, which were all below 1000.
    let tags = 1000..1000 + credit;
    let mut handles = probe.hold_on(pool, tags.clone());
    let mut held = probe.started(credit as usize).await?;
    let started: Vec<u64> = held.iter().map(|task| task.tag).collect();
    assert!(started.iter().all(|tag| tags.contains(tag)), "a cancelled task started: {started:?}");
    let in_flight: u64 = pool.stats().workers.iter().map(|w| w.in_flight).sum();
    assert_eq!(in_flight, credit, "only the new tasks are in flight");
    release_all(&mut held, &mut handles).await?;
    // A driver publishes its counts just after it hands the results over, on its own thread.
    let idle = |pool: &Pool| pool.stats().workers.iter().all(|w| w.in_flight == 0);
    let _ = tokio::time::timeout(PROMPTLY, async {
        while !idle(pool) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let stats = pool.stats();
    assert!(stats.workers.iter().all(|w| w.in_flight == 0), "{stats:?}");
    assert_eq!(stats.queued, 0, "{stats:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Serialization failures.

#[tokio::test]
async fn serialization_failures_fail_one_task_and_the_worker_lives_on() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pool = Pool::builder().processes(1).build().await?;
    let pid = within(PATIENCE, "whoami", pool.apply(whoami, 0)).await?;

    let cases = [
        (pool.apply(picky_in, Picky(UNSERIALIZABLE)).await.map(drop), "input", "serialize"),
        (pool.apply(picky_in, Picky(UNDESERIALIZABLE)).await.map(drop), "input", "deserialize"),
        (pool.apply(picky_out, UNSERIALIZABLE).await.map(drop), "output", "serialize"),
        (pool.apply(picky_out, UNDESERIALIZABLE).await.map(drop), "output", "deserialize"),
    ];
    for (result, side, what) in cases {
        let err = result.expect_err("a picky value fails its task");
        assert!(err.is_serialization(), "{err}");
        assert!(err.message().contains(side) && err.message().contains(what), "{side}: {err}");
    }

    // In a stream, exactly the picky values fail, in both directions, and the rest arrive.
    let mut ins = pool.map_stream(picky_in, (0..20).map(Picky));
    let mut outs = pool.map_stream(picky_out, 0..20u64);
    let picky = [UNSERIALIZABLE, UNDESERIALIZABLE];
    for i in 0..20 {
        let result_in = within(PATIENCE, "the stream", next(&mut ins)).await.expect("20 items");
        let result_out = within(PATIENCE, "the stream", next(&mut outs)).await.expect("20 items");
        if picky.contains(&i) {
            let err = result_in.expect_err("picky input");
            assert!(err.is_serialization(), "{err}");
            let err = result_out.expect_err("picky output");
            assert!(err.is_serialization(), "{err}");
        } else {
            assert_eq!(result_in?, i);
            assert_eq!(result_out?, Picky(i));
        }
    }
    assert!(next(&mut ins).await.is_none() && next(&mut outs).await.is_none());

    assert_serves_on(&pool, pid).await?;
    close(&pool).await
}

#[tokio::test]
async fn serialization_failures_carry_the_value_s_own_reason() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pool = Pool::builder().processes(1).build().await?;
    // Deserialization keeps postcard's generic message: its decoder drops the value's own text
    // and a wrapping deserializer is not worth it yet (noted in docs/ARCHITECTURE.md).
    let cases = [
        (pool.apply(picky_in, Picky(UNSERIALIZABLE)).await.map(drop), "refuses to serialize 13"),
        (pool.apply(picky_in, Picky(UNDESERIALIZABLE)).await.map(drop), "failed to deserialize"),
        (pool.apply(picky_out, UNSERIALIZABLE).await.map(drop), "refuses to serialize 13"),
        (pool.apply(picky_out, UNDESERIALIZABLE).await.map(drop), "failed to deserialize"),
    ];
    for (result, reason) in cases {
        let err = result.expect_err("a picky value fails its task");
        assert!(err.message().contains(reason), "{err}");
    }
    close(&pool).await
}

/// A value nested deeper than the limit fails its own task with an error naming the limit, in
/// either direction: decoding it must not overflow a stack, which would abort the parent (for an
/// output) or kill the worker, and every retry's worker after it (for an input).
#[tokio::test]
async fn values_nested_past_the_limit_fail_their_task_and_nothing_else() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let pool = Pool::builder().processes(1).retries(2).build().await?;
    let pid = within(PATIENCE, "whoami", pool.apply(whoami, 0)).await?;

    // The default limit, 128 levels, takes 63 links (127 levels) and refuses 64 (129).
    assert_eq!(
        within(PATIENCE, "63 links in", pool.apply(deep_in, Node::with_links(63))).await?,
        63
    );
    assert_eq!(within(PATIENCE, "63 links out", pool.apply(deep_out, 63)).await?.links(), 63);
    let cases = [
        (
            "input",
            within(PATIENCE, "64 in", pool.apply(deep_in, Node::with_links(64))).await.map(drop),
        ),
        ("output", within(PATIENCE, "64 out", pool.apply(deep_out, 64)).await.map(drop)),
        // Deep enough to overflow any thread's stack without the limit.
        ("input", {
            let list = Node::with_links(1_000_000);
            within(PATIENCE, "a million in", pool.apply(deep_in, list)).await.map(drop)
        }),
        ("output", within(PATIENCE, "50,000 out", pool.apply(deep_out, 50_000)).await.map(drop)),
    ];
    for (side, result) in cases {
        let err = result.expect_err("too deep a value fails its task");
        assert!(err.is_serialization(), "{side}: {err}");
        assert!(err.message().contains(side), "{side}: {err}");
        assert!(err.message().contains("limit of 128 levels"), "{side}: {err}");
    }
    // The worker decoded nothing past the limit, so it never died and no retry ran.
    assert_serves_on(&pool, pid).await?;
    close(&pool).await?;

    // The limit is the pool's, on both sides.
    let pool = Pool::builder().processes(1).max_nesting(1001).build().await?;
    assert_eq!(within(PATIENCE, "500 in", pool.apply(deep_in, Node::with_links(500))).await?, 500);
    assert_eq!(within(PATIENCE, "500 out", pool.apply(deep_out, 500)).await?.links(), 500);
    let err = within(PATIENCE, "501 in", pool.apply(deep_in, Node::with_links(501))).await;
    assert!(err.expect_err("past the limit").message().contains("limit of 1001 levels"));
    let err = within(PATIENCE, "501 out", pool.apply(deep_out, 501)).await;
    assert!(err.expect_err("past the limit").message().contains("limit of 1001 levels"));
    close(&pool).await
}

/// The resident set of process `pid` in KiB, from `/proc` (Linux only).
#[cfg(target_os = "linux")]
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read its status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number of KiB")
}

/// One large task, in either direction, must not keep its size allocated in the parent or the
/// worker for the life of the pool: every buffer it passed through shrinks back.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn memory_returns_after_one_large_task() -> anyhow::Result<()> {
    const LARGE: usize = 128 << 20;
    let _serial = SERIAL.lock().await;
    let pool = Pool::builder().processes(1).build().await?;
    // Warm up both directions with a mid-size task, so the idle figure includes what any
    // task leaves allocated.
    let pid = within(PATIENCE, "whoami", pool.apply(whoami, 0)).await?;
    assert_eq!(
        within(PATIENCE, "warm-up", pool.apply(big_in, "y".repeat(1 << 20))).await?,
        1 << 20
    );
    drop(within(PATIENCE, "warm-up", pool.apply(big_out, 1 << 20)).await?);
    let (parent_idle, worker_idle) = (rss_kib(std::process::id()), rss_kib(pid));

    let output = within(PATIENCE, "a large output", pool.apply(big_out, LARGE as u64)).await?;
    assert_eq!(output.len(), LARGE);
    drop(output);
    let input = "z".repeat(LARGE);
    assert_eq!(within(PATIENCE, "a large input", pool.apply(big_in, input)).await?, LARGE as u64);
    // One more small task in each direction: the buffers shrink when the next frame comes.
    assert_eq!(within(PATIENCE, "whoami", pool.apply(whoami, 0)).await?, pid, "same worker");

    let grown = |idle: u64, now: u64| now.saturating_sub(idle) / 1024;
    let (parent_mib, worker_mib) =
        (grown(parent_idle, rss_kib(std::process::id())), grown(worker_idle, rss_kib(pid)));
    eprintln!("after 128 MiB each way: parent +{parent_mib} MiB, worker +{worker_mib} MiB");
    assert!(parent_mib < 16, "the parent kept {parent_mib} MiB of a {LARGE}-byte task");
    assert!(worker_mib < 16, "the worker kept {worker_mib} MiB of a {LARGE}-byte task");
    close(&pool).await
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

// ---------------------------------------------------------------------------------------------
// 6. No leaks.

#[tokio::test]
async fn two_hundred_pools_leak_no_fd_process_or_zombie() -> anyhow::Result<()> {
    assert_cycles_leak_nothing(Cycle::MapClose, 200).await
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn three_hundred_pools_with_shared_values_leak_no_fd_mapping_or_process() -> anyhow::Result<()>
{
    assert_cycles_leak_nothing(Cycle::SharedMapClose, 300).await?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mapped = maps.lines().filter(|line| line.contains("memfd:polyloop-shared")).count();
    assert_eq!(mapped, 0, "shared memory still mapped in the parent");
    Ok(())
}

/// Sums a shared value's bytes and counts itself in `counter[0]`.
#[polyloop::task]
async fn sum_shared(data: polyloop::SharedBytes, counter: polyloop::SharedAtomics) -> u64 {
    counter[0].fetch_add(1, Ordering::Relaxed);
    data.iter().map(|&b| u64::from(b)).sum()
}

#[tokio::test]
async fn pools_dropped_busy_leak_no_fd_process_or_zombie() -> anyhow::Result<()> {
    assert_cycles_leak_nothing(Cycle::DropBusy, 50).await
}

#[tokio::test]
async fn pools_that_lost_workers_leak_no_fd_process_or_zombie() -> anyhow::Result<()> {
    assert_cycles_leak_nothing(Cycle::LoseWorkersClose, 50).await
}

/// What one pool's life looks like in a leak test.
#[derive(Debug, Clone, Copy)]
enum Cycle {
    /// Build, map, close.
    MapClose,
    /// Build, submit tasks that outlive the pool, drop it without closing.
    DropBusy,
    /// Build, run tasks some of which end their worker's process, close.
    LoseWorkersClose,
    /// Build, map tasks over a new shared value and counter, close, drop the values.
    SharedMapClose,
}

impl Cycle {
    async fn run(self) -> anyhow::Result<()> {
        let pool = Pool::builder().processes(2).build().await?;
        match self {
            Cycle::MapClose => {
                let doubled = pool.map(double, 0..64u64).await?;
                assert_eq!(doubled[21], 42);
                pool.close().await?;
            }
            Cycle::DropBusy => {
                let handles: Vec<_> = (0..8).map(|_| pool.submit(nap, 60_000)).collect();
                drop(pool);
                for handle in handles {
                    assert!(handle.await.is_err_and(|err| err.is_cancelled()));
                }
            }
            Cycle::LoseWorkersClose => {
                let handles: Vec<_> = (0..20u64).map(|i| pool.submit(mixed, i)).collect();
                pool.close().await?;
                for handle in handles {
                    let _ = handle.await;
                }
                assert!(restarts(&pool) >= 1, "tasks 8 and 18 ended their worker");
            }
            Cycle::SharedMapClose => {
                let data = polyloop::SharedBytes::copy_from_slice(&[3; 64 << 10])?;
                let counter = polyloop::SharedAtomics::new(1)?;
                let inputs = (0..32).map(|_| (data.clone(), counter.clone()));
                let sums = pool.map(sum_shared, inputs).await?;
                assert!(sums.iter().all(|&sum| sum == 3 * (64 << 10)));
                assert_eq!(counter[0].load(Ordering::Relaxed), 32);
                pool.close().await?;
            }
        }
        Ok(())
    }
}

/// After `cycles` pools, as many fds are open and the same children run as after the
/// first, and no child is a zombie.
async fn assert_cycles_leak_nothing(cycle: Cycle, cycles: usize) -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    // One cycle first, so whatever the runtime sets up once is not counted as a leak.
    within(PATIENCE, "a warm-up cycle", cycle.run()).await?;
    let fds = open_fds();
    let (children, zombies) = own_children();
    assert!(zombies.is_empty(), "zombies after one cycle: {zombies:?}");
    for _ in 0..cycles {
        within(PATIENCE, "a cycle", cycle.run()).await?;
    }
    let after = open_fds();
    let leaked: Vec<_> = after.iter().filter(|(fd, _)| !fds.contains_key(*fd)).collect();
    assert_eq!(after.len(), fds.len(), "fds opened and not closed: {leaked:?}");
    let (children_after, zombies) = own_children();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    assert_eq!(children_after, children, "child processes left behind");
    assert_eq!(listed_children(), children, "the kernel's list of children agrees");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 7. Recycling under faults, and close after faults.

#[tokio::test]
async fn max_tasks_per_child_stays_exact_under_faults_and_close_reaps() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let max = 5;
    let pool =
        Pool::builder().processes(2).child_concurrency(3).max_tasks_per_child(max).build().await?;
    let handles: Vec<_> = (0..80u64).map(|i| pool.submit(mixed, i)).collect();
    // Close while the faults happen: it must still drain every task and reap every worker.
    close(&pool).await?;

    let mut per_pid: HashMap<u32, u64> = HashMap::new();
    let mut exited = HashSet::new();
    for (i, handle) in (0u64..).zip(handles) {
        // Close drained everything: each handle has resolved already.
        let result = within(PROMPTLY, "a drained task", handle).await;
        let pid = match &result {
            Ok(pid) => *pid,
            Err(err) => pid_named_in(err).unwrap_or_else(|| panic!("no pid in {err}")),
        };
        *per_pid.entry(pid).or_default() += 1;
        if let Err(err) = &result
            && err.is_worker_lost()
        {
            assert!(err.message().contains("exit code 9"), "{i}: {err}");
            exited.insert(pid);
        }
        match (i % 10, result) {
            (6, Err(err)) => assert!(err.is_panic() || err.is_worker_lost(), "{i}: {err}"),
            (7, Err(err)) => assert!(err.is_failed() || err.is_worker_lost(), "{i}: {err}"),
            (8, Err(err)) => assert!(err.is_worker_lost(), "{i}: {err}"),
            (0..=5 | 9, Ok(_)) => {}
            (0..=5 | 9, Err(err)) => assert!(err.is_worker_lost(), "{i}: {err}"),
            (_, result) => panic!("task {i} ended as {result:?}"),
        }
    }
    let over: Vec<_> = per_pid.iter().filter(|&(_, &n)| n > max).collect();
    assert!(over.is_empty(), "workers sent more than {max} tasks: {over:?}");
    assert!(per_pid.len() >= 80 / max as usize, "{} workers for 80 tasks", per_pid.len());
    let stats = pool.stats();
    let restarts: u64 = stats.workers.iter().map(|w| w.restarts).sum();
    assert_eq!(restarts, exited.len() as u64, "each exit counted as one restart: {stats:?}");
    let (children, zombies) = own_children();
    for pid in per_pid.keys() {
        assert!(!children.contains(pid) && reaped(*pid), "worker {pid} was reaped");
    }
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    Ok(())
}
