//! End-to-end tests of the pool through the facade, with real worker processes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_core::Stream;
use polyloop::Pool;

#[polyloop::task]
async fn double(x: u64) -> u64 {
    x * 2
}

#[polyloop::task]
async fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[polyloop::task]
async fn whoami(_i: u64) -> u32 {
    std::process::id()
}

/// Sleeps, then reports its pid; for tests that need tasks to overlap.
#[polyloop::task]
async fn nap(millis: u64) -> u32 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    std::process::id()
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Reports how many tasks ran in this process at once while it ran, itself included.
#[polyloop::task]
async fn count_neighbours(millis: u64) -> (u32, usize) {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    let later = RUNNING.load(Ordering::SeqCst);
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    (std::process::id(), now.max(later))
}

/// Blocks its thread (no await), like CPU-bound work.
#[polyloop::task]
async fn burn(millis: u64) -> u32 {
    let until = std::time::Instant::now() + Duration::from_millis(millis);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    std::process::id()
}

static INIT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[polyloop::task]
async fn init_worker(tag: String) {
    assert_eq!(tag, "ready");
    INIT_RUNS.fetch_add(1, Ordering::SeqCst);
}

/// How many times the initializer ran in this process before this task.
#[polyloop::task]
async fn init_runs(_i: u64) -> (u32, usize) {
    (std::process::id(), INIT_RUNS.load(Ordering::SeqCst))
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn map_returns_every_output_in_order() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).build().await?;
    let outputs = pool.map(double, 0..100_000u64).await?;
    assert_eq!(outputs.len(), 100_000);
    assert!(outputs.iter().enumerate().all(|(i, &v)| v == 2 * i as u64));
    pool.close().await?;
    Ok(())
}

/// Ten inputs behind a size hint that claims (wrongly, which iterators may) to be huge.
struct Boastful(u64);

impl Iterator for Boastful {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        (self.0 < 10).then(|| {
            self.0 += 1;
            self.0
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX / 2, None)
    }
}

#[tokio::test]
async fn map_does_not_trust_a_size_hint() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(1).build().await?;
    assert_eq!(pool.map(double, Boastful(0)).await?, (1..=10).map(|i| 2 * i).collect::<Vec<_>>());
    pool.close().await?;
    Ok(())
}

#[tokio::test]
async fn apply_with_several_arguments_and_unique_submit_ids() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).build().await?;
    assert_eq!(pool.apply(add, (40, 2)).await?, 42);
    assert_eq!(pool.apply(double, 21).await?, 42);
    let handles: Vec<_> = (0..1000u64).map(|i| pool.submit(double, i)).collect();
    let ids: HashSet<u64> = handles.iter().map(|h| h.id()).collect();
    assert_eq!(ids.len(), 1000, "submit ids are unique");
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.await?, 2 * i as u64);
    }
    pool.close().await?;
    Ok(())
}

#[tokio::test]
async fn map_stream_is_ordered_and_map_unordered_yields_each_once() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).child_concurrency(8).build().await?;
    // Later inputs sleep less, so they finish first: order must come from the stream.
    let inputs = (0..40u64).map(|i| 40 - i);
    let mut ordered = pool.map_stream(nap, inputs.clone());
    let mut n = 0;
    while let Some(result) = next(&mut ordered).await {
        result?;
        n += 1;
    }
    assert_eq!(n, 40);

    let mut stream = pool.map_stream(double, 0..5_000u64);
    let mut expected = 0;
    while let Some(v) = next(&mut stream).await {
        assert_eq!(v?, 2 * expected);
        expected += 1;
    }
    assert_eq!(expected, 5_000);

    let mut unordered = pool.map_unordered(double, 0..5_000u64);
    let mut seen = HashSet::new();
    while let Some(v) = next(&mut unordered).await {
        assert!(seen.insert(v?), "each result once");
    }
    assert_eq!(seen, (0..5_000u64).map(|i| 2 * i).collect());
    pool.close().await?;
    Ok(())
}

#[tokio::test]
async fn streams_pull_inputs_a_bounded_distance_ahead() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).build().await?;
    for unordered in [false, true] {
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&pulled);
        // An endless input: only laziness makes this finish.
        let inputs = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let mut taken = 0u64;
        if unordered {
            let mut stream = pool.map_unordered(double, inputs);
            let window = stream.window();
            while taken < 3 * window {
                next(&mut stream).await.expect("endless")?;
                taken += 1;
                assert!(pulled.load(Ordering::SeqCst) <= taken + window, "unordered ran ahead");
            }
        } else {
            let mut stream = pool.map_stream(double, inputs);
            let window = stream.window();
            while taken < 3 * window {
                assert_eq!(next(&mut stream).await.expect("endless")?, 2 * taken);
                taken += 1;
                assert!(pulled.load(Ordering::SeqCst) <= taken + window, "ordered ran ahead");
            }
        }
    }
    pool.close().await?;
    Ok(())
}

#[polyloop::task]
async fn text_len(text: String) -> u64 {
    text.len() as u64
}

#[tokio::test]
async fn streams_of_large_inputs_pull_at_most_64_mib_ahead() -> anyhow::Result<()> {
    const MIB: usize = 1 << 20;
    let pool = Pool::builder().processes(2).build().await?;
    let taken = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&taken);
    // An endless input of 1 MiB strings, which refuses to run further ahead than 64 of them
    // (and one more) of what was taken: a window counted in inputs alone would pull thousands.
    let inputs = (0u64..).map(move |pulled| {
        let ahead = pulled.saturating_sub(seen.load(Ordering::SeqCst));
        assert!(ahead <= 65, "{ahead} inputs of 1 MiB pulled ahead of the outputs taken");
        "x".repeat(MIB)
    });
    let mut stream = pool.map_stream(text_len, inputs);
    assert!(stream.window() > 1000, "the window in inputs alone is large");
    for _ in 0..200 {
        assert_eq!(next(&mut stream).await.expect("endless")?, MIB as u64);
        taken.fetch_add(1, Ordering::SeqCst);
    }
    drop(stream);
    pool.close().await?;
    Ok(())
}

#[tokio::test]
async fn child_concurrency_is_honoured() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).child_concurrency(4).build().await?;
    let seen = pool.map(count_neighbours, std::iter::repeat_n(100, 32)).await?;
    let max = seen.iter().map(|&(_, n)| n).max().unwrap_or(0);
    assert_eq!(max, 4, "at most child_concurrency tasks run at once, and that many do");
    pool.close().await?;
    Ok(())
}

#[tokio::test]
async fn cpu_bound_work_reaches_every_child() -> anyhow::Result<()> {
    let (processes, concurrency) = (2, 4);
    let pool = Pool::builder().processes(processes).child_concurrency(concurrency).build().await?;
    let pids = pool.map(burn, std::iter::repeat_n(30, processes * concurrency as usize)).await?;
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    for pid in pids {
        *per_pid.entry(pid).or_default() += 1;
    }
    assert_eq!(per_pid.len(), processes, "every child got work: {per_pid:?}");
    pool.close().await?;

    // With the default concurrency (16), 16 CPU-bound tasks on 2 workers: an even split, not
    // one worker hoarding everything its credit allows (aiomultiprocess ran them 16 + 0).
    let pool = Pool::builder().processes(2).build().await?;
    let pids = pool.map(burn, std::iter::repeat_n(20, 16)).await?;
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    for pid in pids {
        *per_pid.entry(pid).or_default() += 1;
    }
    assert_eq!(per_pid.len(), 2, "{per_pid:?}");
    assert!(per_pid.values().all(|&n| n >= 6), "work spread evenly: {per_pid:?}");
    pool.close().await?;
    Ok(())
}

#[tokio::test]
async fn queue_count_binds_workers_to_shards() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(4).queue_count(2).child_concurrency(2).build().await?;
    let stats = pool.stats();
    let queues: Vec<usize> = stats.workers.iter().map(|w| w.queue_idx).collect();
    assert_eq!(queues, [0, 1, 0, 1]);
    let pids: HashSet<u32> =
        pool.map(nap, std::iter::repeat_n(20, 64)).await?.into_iter().collect();
    assert_eq!(pids.len(), 4, "both queues and all their workers served");
    // Drivers publish their counts just after they hand results over; after close, all are in.
    pool.close().await?;
    let done: Vec<u64> = pool.stats().workers.iter().map(|w| w.tasks_done).collect();
    assert_eq!(done.iter().sum::<u64>(), 64);
    Ok(())
}

/// A user's own scheduler: everything to the last queue.
#[derive(Debug)]
struct LastQueue;

impl polyloop::Scheduler for LastQueue {
    fn pick(&self, loads: &polyloop::QueueLoads<'_>) -> usize {
        loads.len() - 1
    }
}

#[tokio::test]
async fn schedulers_choose_the_queue() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).queue_count(2).scheduler(LastQueue).build().await?;
    let pids: HashSet<u32> = pool.map(nap, std::iter::repeat_n(5, 40)).await?.into_iter().collect();
    let last = pool.stats().workers[1].pid;
    assert_eq!(pids, HashSet::from([last]), "only the worker of the last queue ran tasks");
    pool.close().await?;

    let pool = Pool::builder()
        .processes(2)
        .queue_count(2)
        .scheduler(polyloop::LeastLoaded)
        .build()
        .await?;
    pool.map(nap, std::iter::repeat_n(5, 40)).await?;
    pool.close().await?;
    let done: Vec<u64> = pool.stats().workers.iter().map(|w| w.tasks_done).collect();
    assert_eq!(done, [20, 20], "least-loaded splits a burst evenly");
    Ok(())
}

#[tokio::test]
async fn max_tasks_per_child_recycles_exactly() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).max_tasks_per_child(10).build().await?;
    let pids = pool.map(whoami, 0..200u64).await?;
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    for pid in pids {
        *per_pid.entry(pid).or_default() += 1;
    }
    assert!(per_pid.values().all(|&n| n <= 10), "no worker ran more than 10: {per_pid:?}");
    assert!(per_pid.len() >= 20, "200 tasks at 10 per worker need 20 workers: {}", per_pid.len());
    let recycles: u64 = pool.stats().workers.iter().map(|w| w.recycles).sum();
    assert!(recycles >= 18, "recycles counted: {recycles}");
    pool.close().await?;
    for pid in per_pid.keys() {
        assert!(!alive(*pid), "recycled worker {pid} was reaped");
    }
    Ok(())
}

#[tokio::test]
async fn initializer_runs_once_per_child_before_any_task() -> anyhow::Result<()> {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(50)
        .initializer(init_worker, "ready".to_owned())
        .build()
        .await?;
    let seen = pool.map(init_runs, 0..300u64).await?;
    assert!(seen.iter().all(|&(_, runs)| runs == 1), "initializer ran exactly once before tasks");
    assert!(seen.iter().map(|&(pid, _)| pid).collect::<HashSet<_>>().len() >= 6);
    pool.close().await?;

    let failing =
        Pool::builder().processes(1).initializer(init_worker, "wrong".to_owned()).build().await;
    let err = failing.expect_err("a failing initializer fails build");
    assert!(err.to_string().contains("initializer"), "{err}");
    Ok(())
}

#[tokio::test]
async fn close_completes_queued_work() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).child_concurrency(2).build().await?;
    let handles: Vec<_> = (0..40).map(|_| pool.submit(nap, 10)).collect();
    pool.close().await?;
    for handle in handles {
        handle.await?;
    }
    let err = pool.apply(double, 1).await.expect_err("closed pool refuses work");
    assert!(err.is_pool_closed(), "{err}");
    Ok(())
}

#[tokio::test]
async fn dropping_the_pool_leaves_no_child() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(3).build().await?;
    let handles: Vec<_> = (0..6).map(|_| pool.submit(nap, 60_000)).collect();
    let pids: Vec<u32> = pool.stats().workers.iter().map(|w| w.pid).collect();
    assert!(pids.iter().all(|&pid| pid != 0 && alive(pid)));
    drop(pool);
    for pid in &pids {
        assert!(!alive(*pid), "worker {pid} is gone, not even a zombie");
    }
    for handle in handles {
        let err = handle.await.expect_err("the pool was dropped");
        assert!(err.is_cancelled(), "{err}");
    }
    Ok(())
}

#[tokio::test]
async fn a_stream_outliving_its_pool_ends_instead_of_hanging() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).build().await?;
    let mut stream = pool.map_unordered(nap, std::iter::repeat_n(60_000, 8));
    // Submit, and wait until the workers hold the tasks.
    let first = tokio::time::timeout(Duration::from_millis(1), stream.next()).await;
    assert!(first.is_err(), "a minute-long nap cannot be done yet");
    tokio::time::timeout(Duration::from_secs(20), async {
        while pool.stats().workers.iter().map(|w| w.in_flight).sum::<u64>() < 8 {
            tokio::task::yield_now().await;
        }
    })
    .await?;
    drop(pool);
    let mut cancelled = 0;
    while let Some(result) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await? {
        assert!(result.expect_err("the pool was dropped").is_cancelled());
        cancelled += 1;
    }
    assert_eq!(cancelled, 8);
    Ok(())
}

/// Input 0 naps for a minute; every other input fails at once.
#[polyloop::task]
async fn nap_or_fail(i: u64) -> Result<u64, String> {
    if i == 0 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return Ok(0);
    }
    Err(format!("input {i} refused"))
}

#[tokio::test]
async fn map_fails_fast_on_the_first_error_to_arrive() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(1).build().await?;
    // The error of input 1 must not wait for input 0 (a minute): a hang here fails the test.
    let result =
        tokio::time::timeout(Duration::from_secs(30), pool.map(nap_or_fail, 0..2u64)).await?;
    let err = result.expect_err("input 1 fails");
    assert!(err.is_failed() && err.message().contains("input 1 refused"), "{err}");
    // The napping task was cancelled in its worker: the pool closes without waiting a minute.
    tokio::time::timeout(Duration::from_secs(30), pool.close()).await??;
    Ok(())
}

/// Succeeds while the file `path` exists: lets a test make later worker starts fail.
#[polyloop::task]
async fn init_if_allowed(path: String) -> Result<(), String> {
    match std::path::Path::new(&path).exists() {
        true => Ok(()),
        false => Err(format!("{path} is gone")),
    }
}

#[tokio::test]
async fn queued_tasks_fail_when_no_worker_can_be_started() -> anyhow::Result<()> {
    let flag = std::env::temp_dir().join(format!("polyloop-allow-{}", std::process::id()));
    std::fs::write(&flag, b"")?;
    let pool = Pool::builder()
        .processes(1)
        .initializer(init_if_allowed, flag.display().to_string())
        .build()
        .await?;
    assert_eq!(pool.apply(double, 1).await?, 2);
    std::fs::remove_file(&flag)?;
    let pid = pool.stats().workers[0].pid;
    // SAFETY: kill with a pid of our own child and a valid signal.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    // Every replacement fails its initializer: tasks must fail, not wait forever. The first may
    // still reach the killed worker before its death is seen; then it names the kill.
    for attempt in 0.. {
        let apply = pool.apply(double, 2);
        let err =
            tokio::time::timeout(Duration::from_secs(60), apply).await?.expect_err("no worker");
        assert!(err.is_worker_lost(), "{err}");
        if err.message().contains("no worker could be started") {
            break;
        }
        assert!(attempt == 0 && err.message().contains("SIGKILL"), "{err}");
    }
    // close() must not wait for a worker that can never start.
    tokio::time::timeout(Duration::from_secs(30), pool.close()).await??;
    assert!(!alive(pid));
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn busy_polling_drivers_return_the_same_results() -> anyhow::Result<()> {
    let pool = Pool::builder()
        .processes(2)
        .retries(1)
        .busy_poll(Duration::from_micros(200))
        .build()
        .await?;
    for i in 0..200u64 {
        assert_eq!(pool.apply(add, (i, 1)).await?, i + 1);
    }
    let outputs = pool.map(double, 0..10_000u64).await?;
    assert!(outputs.iter().enumerate().all(|(i, &v)| v == 2 * i as u64));
    // A worker that dies while its driver polls is still noticed (and a task sent to it in the
    // meantime is retried).
    let pid = pool.stats().workers[0].pid;
    let handles: Vec<_> = (0..4).map(|_| pool.submit(nap, 60_000)).collect();
    // SAFETY: kill with a pid of our own child and a valid signal.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    drop(handles);
    assert_eq!(pool.apply(double, 21).await?, 42);
    pool.close().await?;
    Ok(())
}

#[tokio::test]
async fn spawn_runs_one_task_in_a_fresh_process() -> anyhow::Result<()> {
    let first = polyloop::spawn(whoami, 0).await?;
    let second = polyloop::spawn(whoami, 1).await?;
    assert_ne!(first, std::process::id());
    assert_ne!(first, second, "each spawn gets a process of its own");
    assert!(!alive(first) && !alive(second), "and reaps it");
    let err = polyloop::spawn(nap_or_fail, 3).await.expect_err("the task fails");
    assert!(matches!(err, polyloop::SpawnError::Task(ref e) if e.is_failed()), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_short_task_never_waits_behind_long_ones_while_a_worker_has_room() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).build().await?;
    // One long task per worker: each worker then holds its even share of the queue's work.
    let long: Vec<_> = (0..2).map(|_| pool.submit(nap, 60_000)).collect();
    let running = |pool: &Pool| pool.stats().workers.iter().filter(|w| w.in_flight == 1).count();
    tokio::time::timeout(Duration::from_secs(20), async {
        while running(&pool) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await?;
    for i in 0..20u64 {
        // Both workers have room; somebody must take this now, not when a long task ends.
        let short = tokio::time::timeout(Duration::from_secs(20), pool.apply(double, i)).await;
        assert_eq!(short.expect("the short task waited behind the long ones")?, 2 * i);
    }
    drop(long);
    pool.close().await?;
    Ok(())
}

/// Creates the file `path`, then holds its thread for a minute.
#[polyloop::task]
async fn signal_then_block(path: String) {
    std::fs::write(&path, b"").expect("the test's temp dir is writable");
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Takes a large input and does nothing with it.
#[polyloop::task]
async fn swallow(bytes: Vec<u8>) -> usize {
    bytes.len()
}

#[tokio::test]
async fn a_blocked_worker_times_out_even_when_its_socket_is_full() -> anyhow::Result<()> {
    let pool =
        Pool::builder().processes(1).task_timeout(Duration::from_millis(300)).build().await?;
    // The worker's only thread spins for a minute: it stops reading its socket...
    let flag = std::env::temp_dir().join(format!("polyloop-blocked-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let stuck = pool.submit(signal_then_block, flag.display().to_string());
    tokio::time::timeout(Duration::from_secs(20), async {
        while !flag.exists() {
            tokio::task::yield_now().await;
        }
    })
    .await?;
    std::fs::remove_file(&flag)?;
    // ...which these large inputs then fill, so the driver's write cannot complete.
    let big: Vec<_> = (0..24).map(|_| pool.submit(swallow, vec![7u8; 2 << 20])).collect();
    let err = tokio::time::timeout(Duration::from_secs(30), stuck).await?.expect_err("timeout");
    assert!(err.is_timeout(), "{err}");
    for handle in big {
        // Lost with the killed worker, or run by its replacement.
        if let Err(err) = tokio::time::timeout(Duration::from_secs(30), handle).await? {
            assert!(err.is_worker_lost() || err.is_timeout(), "{err}");
        }
    }
    pool.close().await?;
    Ok(())
}

/// A value whose own serde code panics: on serialize for 13, on deserialize for 14 (with
/// padding, so it is decoded by the driver rather than inline).
#[derive(Debug)]
struct Touchy(u64);

impl serde::Serialize for Touchy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert_ne!(self.0, 13, "touchy refuses to serialize 13");
        serde::Serialize::serialize(&(self.0, [u64::MAX; 4]), serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (value, _pad): (u64, [u64; 4]) = serde::Deserialize::deserialize(deserializer)?;
        assert_ne!(value, 14, "touchy refuses to deserialize 14");
        Ok(Touchy(value))
    }
}

#[polyloop::task]
async fn touchy(value: u64, wait: bool) -> Touchy {
    if wait {
        tokio::task::yield_now().await; // finish on a later poll: the spawned path
    }
    Touchy(value)
}

#[tokio::test]
async fn panicking_serde_code_fails_its_task_only() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(1).build().await?;
    let pid = pool.stats().workers[0].pid;
    for wait in [false, true] {
        let call = pool.apply(touchy, (13, wait));
        let err = tokio::time::timeout(Duration::from_secs(20), call).await?.expect_err("13");
        assert!(err.is_serialization() && err.message().contains("panicked"), "{err}");
        let call = pool.apply(touchy, (14, wait));
        let err = tokio::time::timeout(Duration::from_secs(20), call).await?.expect_err("14");
        assert!(err.is_serialization() && err.message().contains("panicked"), "{err}");
        assert_eq!(pool.apply(touchy, (15, wait)).await?.0, 15);
    }
    assert_eq!(pool.stats().workers[0].pid, pid, "the worker lived through it");
    // Inside a map's chunks (large once the pool is warm), the output that does not decode is
    // named by its position.
    let inputs = |bad: u64| (0..20_000).map(move |i| (if i == bad { 14 } else { 15 }, false));
    let outputs = pool.map(touchy, inputs(u64::MAX)).await?;
    assert!(outputs.len() == 20_000 && outputs.iter().all(|t| t.0 == 15));
    for bad in [0, 1, 3_001, 19_999] {
        let err = pool.map(touchy, inputs(bad)).await.expect_err("14 fails");
        assert!(err.is_serialization() && err.message().contains("panicked"), "{err}");
        assert_eq!(err.input_index(), Some(bad), "{err}");
    }
    pool.close().await?;
    Ok(())
}

polyloop::wire::task_spec! {
    /// A task the worker program does not register: named by hand, implemented nowhere.
    Unregistered: u64 => u64 = "tests::unregistered"
}

#[tokio::test]
async fn unknown_task_is_a_clear_error() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(1).build().await?;
    let err = pool.apply(Unregistered, 1).await.expect_err("unknown task");
    assert!(err.is_unknown_task(), "{err}");
    assert!(err.to_string().contains("tests::unregistered"), "{err}");
    let err = pool.map(Unregistered, 0..10u64).await.expect_err("unknown task");
    assert!(err.is_unknown_task(), "{err}");
    // The pool still serves known tasks.
    assert_eq!(pool.apply(double, 2).await?, 4);
    pool.close().await?;
    Ok(())
}

/// Fails for multiples of 7 (0 included), after a delay that shuffles the completion order.
#[polyloop::task]
async fn fail_sevens(i: u64) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis((i * 37) % 11)).await;
    match i % 7 {
        0 => Err(format!("{i} is a multiple of 7")),
        _ => Ok(i),
    }
}

#[tokio::test]
async fn errors_of_a_map_name_their_input() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).build().await?;
    let mut results = pool.map_unordered(fail_sevens, 0..50u64);
    let mut failed = Vec::new();
    while let Some(result) = results.next().await {
        if let Err(err) = result {
            assert!(err.is_failed(), "{err}");
            let index = err.input_index().expect("a map's error names its input");
            // Inputs are 0..50, so an input's position is its value.
            assert_eq!(err.message(), format!("{index} is a multiple of 7"));
            failed.push(index);
        }
    }
    failed.sort_unstable();
    assert_eq!(failed, [0, 7, 14, 21, 28, 35, 42, 49]);

    // Fail-fast `map`: the first error to arrive, with its input's position.
    let err = pool.map(fail_sevens, 1..20u64).await.expect_err("7 and 14 fail");
    let index = err.input_index().expect("a map's error names its input");
    assert!([6, 13].contains(&index), "inputs 7 and 14 sit at 6 and 13, got {index}: {err}");

    let err = pool.apply(fail_sevens, 7).await.expect_err("7 fails");
    assert_eq!(err.input_index(), None, "apply's caller holds its handle");
    let handle = pool.submit(double, 1);
    let debug = format!("{handle:?}");
    assert!(debug.contains(&format!("id: {}", handle.id())) && debug.len() < 200, "{debug}");
    handle.await?;
    pool.close().await?;
    Ok(())
}

/// With the liveness watch off, the pool makes no heartbeat socket and its workers do not beat;
/// everything else works as usual.
#[tokio::test]
async fn a_pool_without_heartbeats_serves() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(1).heartbeat_timeout(None).build().await?;
    assert_eq!(pool.map(double, 0..100u64).await?, (0..100).map(|x| x * 2).collect::<Vec<_>>());
    pool.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_task_called_like_its_function_runs_in_this_process() {
    assert_eq!(double(21).await, 42);
    assert_eq!(add(40, 2).await, 42);
    assert_eq!(whoami(0).await, std::process::id());
    init_worker("ready".to_string()).await;
    assert_eq!(nap_or_fail(1).await, Err("input 1 refused".to_string()));
    // The same as `call`, which is not boxed.
    assert_eq!(double::call(21).await, double(21).await);
    // Still a task: a value to hand to a pool.
    let spawned = polyloop::spawn(whoami, 0).await.unwrap();
    assert_ne!(spawned, std::process::id());
}
