//! Controlling a pool and following its tasks: clones of one pool, `terminate`,
//! `is_finished`, a map's progress, and settings `build` refuses.

use std::future::Future;
use std::time::Duration;

use polyloop::{Pool, PoolError};

/// Sleeps, then reports its pid.
#[polyloop::task]
async fn nap(millis: u64) -> u32 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    std::process::id()
}

/// Whether process `pid` is gone: reaped, not merely dead.
fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn pids(pool: &Pool) -> Vec<u32> {
    pool.stats().workers.iter().map(|worker| worker.pid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_are_one_pool_and_the_last_one_dropped_reaps_the_workers() {
    let pool = Pool::builder().processes(2).build().await.unwrap();
    let workers = pids(&pool);
    let spawned: Vec<_> = (0..4u64)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.map(nap, [i, i + 1]).await.unwrap() })
        })
        .collect();
    for handle in spawned {
        for pid in handle.await.unwrap() {
            assert!(workers.contains(&pid), "{pid} is not one of {workers:?}");
        }
    }
    let other = pool.clone();
    drop(pool);
    // The other clone still has the pool, and its workers.
    assert!(workers.contains(&other.apply(nap, 0).await.unwrap()));
    assert_eq!(pids(&other), workers);
    drop(other);
    if cfg!(target_os = "linux") {
        for pid in workers {
            assert!(gone(pid), "worker {pid} outlived the last clone");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_cancels_running_and_queued_tasks_and_reaps_the_workers() {
    let pool = Pool::builder().processes(2).child_concurrency(2).build().await.unwrap();
    let workers = pids(&pool);
    // Four run (two per worker) and the rest wait in the queue, for far longer than the test.
    let handles: Vec<_> = (0..20).map(|_| pool.submit(nap, 600_000)).collect();
    let mut stream = pool.map_stream(nap, vec![600_000; 10]);
    // A stream submits its inputs when first polled.
    let first = tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
    assert!(first.is_err(), "a ten-minute nap came back: {first:?}");
    pool.clone().terminate().await;
    if cfg!(target_os = "linux") {
        for &pid in &workers {
            assert!(gone(pid), "worker {pid} outlived terminate");
        }
    }
    for handle in handles {
        assert!(handle.is_finished());
        let err = handle.await.unwrap_err();
        assert!(err.is_cancelled(), "{err}");
        assert!(err.to_string().contains("terminated"), "{err}");
    }
    let mut results = Vec::new();
    while let Some(result) = stream.next().await {
        results.push(result);
    }
    assert_eq!(results.len(), 10);
    assert!(results.iter().all(|r| r.as_ref().is_err_and(|err| err.is_cancelled())), "{results:?}");
    let late = pool.apply(nap, 0).await.unwrap_err();
    assert!(late.is_pool_closed(), "{late}");
    // Closing or dropping a terminated pool is harmless.
    pool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_and_streams_made_before_the_pool_was_dropped_fail_alike() {
    let pool = Pool::builder().processes(1).build().await.unwrap();
    let handle = pool.submit(nap, 600_000);
    let mut started = pool.map_stream(nap, vec![600_000; 4]);
    let first = tokio::time::timeout(Duration::from_millis(100), started.next()).await;
    assert!(first.is_err(), "a ten-minute nap came back: {first:?}");
    let mut unpolled = pool.map_stream(nap, vec![1; 4]);
    drop(pool);
    let mut errors = vec![handle.await.unwrap_err()];
    for stream in [&mut started, &mut unpolled] {
        while let Some(result) = stream.next().await {
            errors.push(result.unwrap_err());
        }
    }
    assert_eq!(errors.len(), 9);
    for err in errors {
        assert!(err.is_cancelled() && err.message() == "the pool was dropped", "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_says_when_its_task_is_finished() {
    let pool = Pool::builder().processes(1).build().await.unwrap();
    let mut handle = pool.submit(nap, 200);
    assert!(!handle.is_finished());
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waited.await.expect("the task finished");
    // Finished means the result is there: taking it does not wait.
    let pid = std::future::poll_fn(|cx| std::pin::Pin::new(&mut handle).poll(cx)).await;
    assert_eq!(pid.unwrap(), pids(&pool)[0]);
    pool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_call_timeout_cancels_the_task_and_says_it_timed_out() {
    let pool = Pool::builder().processes(1).build().await.unwrap();
    let worker = pids(&pool)[0];
    let err = pool.submit(nap, 600_000).timeout(Duration::from_millis(100)).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // Cancelled in the worker: nothing is left in flight, and the worker serves on.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pool.stats().workers[0].in_flight > 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", pool.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let quick = pool.submit(nap, 1).timeout(Duration::from_secs(60)).await.unwrap();
    assert_eq!(quick, worker);
    assert_eq!(pool.stats().workers[0].restarts, 0);
    pool.close().await.unwrap();
}

/// Fails for every tenth input.
#[polyloop::task]
async fn tenth_fails(i: u64) -> Result<u64, String> {
    if i % 10 == 9 { Err(format!("{i} fails")) } else { Ok(i) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_stream_reports_its_progress() {
    let pool = Pool::builder().processes(2).build().await.unwrap();
    let mut stream = pool.map_stream(tenth_fails, 0..1000u64);
    let start = stream.progress();
    assert_eq!((start.done, start.yielded, start.failed), (0, 0, 0));
    assert_eq!((start.total, start.total_is_exact), (1000, false));
    let mut seen = (0, 0);
    while let Some(result) = stream.next().await {
        seen.0 += 1;
        seen.1 += u64::from(result.is_err());
        let now = stream.progress();
        assert_eq!((now.yielded, now.failed), seen);
        assert!(now.done >= now.yielded && now.done <= 1000, "{now:?}");
        assert_eq!(now.total, 1000);
    }
    let end = stream.progress();
    assert_eq!((end.done, end.yielded, end.failed, end.total), (1000, 1000, 100, 1000));
    assert!(end.total_is_exact);
    pool.close().await.unwrap();
}

/// A `Result` behind an alias, which the macro is told about.
type Fallible<T> = Result<T, std::io::Error>;

#[polyloop::task(result)]
async fn halve_even(n: u64) -> Fallible<u64> {
    if n.is_multiple_of(2) { Ok(n / 2) } else { Err(std::io::Error::other(format!("{n} is odd"))) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_behind_an_alias_is_a_fallible_task_when_marked() {
    let pool = Pool::builder().processes(1).build().await.unwrap();
    let half: u64 = pool.apply(halve_even, 42).await.unwrap();
    assert_eq!(half, 21);
    let err = pool.apply(halve_even, 7).await.unwrap_err();
    assert!(err.is_failed(), "{err}");
    assert!(err.to_string().contains("7 is odd"), "{err}");
    pool.close().await.unwrap();
}

/// Which worker ran it: its index and its pid.
#[polyloop::task]
async fn which_worker(_: u64) -> (Option<usize>, u32) {
    (polyloop::worker_index(), std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_knows_its_workers_index_and_a_replacement_keeps_it() {
    let pool = Pool::builder().processes(2).max_tasks_per_child(10).build().await.unwrap();
    assert_eq!(polyloop::worker_index(), None);
    let seen: std::collections::BTreeMap<u32, usize> = pool
        .map(which_worker, 0..200)
        .await
        .unwrap()
        .into_iter()
        .map(|(index, pid)| (pid, index.expect("run in a worker")))
        .collect();
    // Workers were recycled every ten tasks: more pids than seats, each index still 0 or 1.
    assert!(seen.len() > 2, "{seen:?}");
    assert!(seen.values().all(|&index| index < 2), "{seen:?}");
    assert!(seen.values().any(|&index| index == 0) && seen.values().any(|&index| index == 1));
    pool.close().await.unwrap();
}

/// Starts the first worker only: any later one finds the marker and fails its start.
#[polyloop::task]
async fn first_worker_only(marker: String) -> Result<(), String> {
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&marker) {
        Ok(_) => Ok(()),
        Err(err) => Err(format!("{marker}: {err}")),
    }
}

/// Polls `pool`'s one worker until `done` says yes; panics after 20 s.
async fn wait_for(pool: &Pool, mut done: impl FnMut(&polyloop::WorkerStats) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = pool.stats();
        if done(&stats.workers[0]) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_say_a_seat_is_restarting_and_keep_its_last_pid() {
    let marker = std::env::temp_dir().join(format!("polyloop-restarting-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let marker_text = marker.to_string_lossy().into_owned();
    let pool = Pool::builder()
        .processes(1)
        .initializer(first_worker_only, marker_text)
        .build()
        .await
        .unwrap();
    let first = pids(&pool)[0];
    assert!(!pool.stats().workers[0].restarting);
    // SAFETY: a signal to our own worker.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    // Every replacement fails its initializer while the marker exists.
    wait_for(&pool, |worker| worker.restarting && worker.restarts == 1).await;
    assert_ne!(pool.stats().workers[0].pid, 0);
    std::fs::remove_file(&marker).unwrap();
    wait_for(&pool, |worker| !worker.restarting).await;
    let replacement = pool.stats().workers[0].pid;
    assert_ne!(replacement, first);
    assert_eq!(pool.apply(nap, 0).await.unwrap(), replacement);
    pool.close().await.unwrap();
    assert!(!pool.stats().workers[0].restarting, "a closed pool restarts nothing");
    let _ = std::fs::remove_file(&marker);
}

#[tokio::test]
async fn build_refuses_settings_of_zero() {
    let builders = [
        ("processes(0)", Pool::builder().processes(0)),
        ("child_concurrency(0)", Pool::builder().child_concurrency(0)),
        ("queue_count(0)", Pool::builder().queue_count(0)),
        ("child_threads(0)", Pool::builder().child_threads(0)),
    ];
    for (setting, builder) in builders {
        match builder.build().await {
            Err(PoolError::InvalidConfig(why)) => assert!(why.starts_with(setting), "{why}"),
            other => panic!("{setting}: {other:?}"),
        }
    }
}

/// Kills its own worker on every attempt before `attempt`, then says which attempt it is.
#[polyloop::task]
async fn dies_before(attempt: u32) -> u32 {
    if polyloop::attempt() < attempt {
        // SAFETY: kill with our own pid and a valid signal.
        unsafe { libc::kill(std::process::id() as i32, libc::SIGKILL) };
    }
    polyloop::attempt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_knows_whether_it_is_a_retry() {
    let pool = Pool::builder().processes(2).retries(2).build().await.unwrap();
    assert_eq!(polyloop::attempt(), 1);
    assert_eq!(pool.apply(dies_before, 1).await.unwrap(), 1);
    assert_eq!(pool.apply(dies_before, 2).await.unwrap(), 2);
    assert_eq!(pool.apply(dies_before, 3).await.unwrap(), 3);
    // In a map, the input that kills its worker runs again, with the rest of what that worker
    // held; what ran on the other worker ran once.
    let mut inputs = vec![1; 2_000];
    inputs[700] = 2;
    let attempts = pool.map(dies_before, inputs).await.unwrap();
    assert_eq!(attempts[700], 2);
    assert!(attempts.iter().all(|&attempt| attempt == 1 || attempt == 2), "{attempts:?}");
    // The lost worker held about its share, half of the map (25 runs here: 1,472-1,952 ran once).
    assert!(attempts.iter().filter(|&&attempt| attempt == 1).count() >= 500, "{attempts:?}");
    let err = Pool::builder()
        .processes(1)
        .retries(1)
        .build()
        .await
        .unwrap()
        .apply(dies_before, 3)
        .await
        .unwrap_err();
    assert!(err.is_worker_lost(), "{err}");
    pool.close().await.unwrap();
}
