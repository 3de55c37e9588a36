//! The in-process reference: each workload done by tokio tasks in one process.
//!
//! It runs on its own multi-threaded runtime with one worker thread per pool process, in its own
//! thread, so it neither shares nor disturbs the runtime that drives the pool. It has no IPC, no
//! serialization and no second address space: the ceiling a process pool approaches.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::measure::{self, Samples};

/// How many tasks the ordered map keeps in flight, as a pool's queues would.
const MAP_WINDOW: usize = 4096;

/// Runs `make()` on a fresh runtime of `workers` threads in a thread of its own and returns what
/// it produced, without blocking the caller's runtime.
pub async fn isolated<F, Fut, T>(workers: usize, make: F) -> std::io::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name("reference".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build();
        // Driven from a task on a worker thread, as a pool's own tasks are, so that spawns go to
        // the local run queue rather than the runtime's injection queue.
        let _ = tx.send(runtime.map(|rt| rt.block_on(async { join(tokio::spawn(make())).await })));
    })?;
    let result = rx.await.map_err(|_| std::io::Error::other("the reference thread panicked"));
    let _ = thread.join();
    result?
}

async fn noop(x: u64) -> u64 {
    x
}

/// An ordered map of `n` no-op tasks; tasks per second.
pub async fn noop_map(n: u64) -> f64 {
    let started = Instant::now();
    let mut window = VecDeque::with_capacity(MAP_WINDOW);
    let mut out = Vec::with_capacity(n as usize);
    for x in 0..n {
        if window.len() == MAP_WINDOW
            && let Some(handle) = window.pop_front()
        {
            out.push(join(handle).await);
        }
        window.push_back(tokio::spawn(noop(x)));
    }
    for handle in window {
        out.push(join(handle).await);
    }
    assert_eq!(out.len() as u64, n);
    measure::per_second(n, started.elapsed())
}

async fn join<T>(handle: tokio::task::JoinHandle<T>) -> T {
    match handle.await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// One spawned no-op task awaited at a time: the latency of handing work to another task.
pub async fn apply_round_trips(warmup: usize, samples: usize) -> Samples {
    let mut out = Samples::with_capacity(samples);
    for i in 0..warmup + samples {
        let started = Instant::now();
        std::hint::black_box(join(tokio::spawn(noop(i as u64))).await);
        if i >= warmup {
            out.push(started.elapsed());
        }
    }
    out
}

/// `n` tasks that each sleep `sleep`, at most `slots` at once; seconds.
pub async fn sleeps(n: u64, slots: usize, sleep: Duration) -> f64 {
    let permits = Arc::new(tokio::sync::Semaphore::new(slots));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        tasks.spawn(async move {
            tokio::time::sleep(sleep).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed().as_secs_f64()
}

/// `n` CPU-bound tasks of `iters` spin iterations, spread over the runtime; seconds.
pub async fn cpu(n: u64, iters: u64) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> =
        (0..n).map(|_| tokio::spawn(async move { measure::spin(iters) })).collect();
    for handle in handles {
        std::hint::black_box(join(handle).await);
    }
    started.elapsed().as_secs_f64()
}

/// `n` tasks each producing `bytes` bytes, collected in order; MiB per second.
pub async fn results(n: u64, bytes: usize) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> =
        (0..n).map(|x| tokio::spawn(async move { vec![x as u8; bytes] })).collect();
    let mut total = 0u64;
    for handle in handles {
        total += join(handle).await.len() as u64;
    }
    measure::mib_per_second(total, started.elapsed())
}

/// `pages.len()` tasks that each sum one page of `data`, collected in order; milliseconds, and
/// the sums.
pub async fn page_sums(data: Arc<[u8]>, pages: Vec<usize>) -> (f64, Vec<u64>) {
    let started = Instant::now();
    let handles: Vec<_> = pages
        .into_iter()
        .map(|page| {
            let data = Arc::clone(&data);
            tokio::spawn(async move { measure::page_sum(&data, page) })
        })
        .collect();
    let mut sums = Vec::with_capacity(handles.len());
    for handle in handles {
        sums.push(join(handle).await);
    }
    (started.elapsed().as_secs_f64() * 1e3, sums)
}

/// `tasks` tasks that each add one to a counter `adds` times; milliseconds, and where the
/// counter ended.
pub async fn count_up(tasks: u64, adds: u64) -> (f64, u64) {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                for _ in 0..adds {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for handle in handles {
        join(handle).await;
    }
    (started.elapsed().as_secs_f64() * 1e3, counter.load(Ordering::Relaxed))
}

/// Milliseconds to build a runtime of `workers` threads and to shut it down: what "starting a
/// pool" costs without processes. Call it outside any runtime.
pub fn runtime_start_stop(workers: usize) -> std::io::Result<(f64, f64)> {
    let started = Instant::now();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?;
    runtime.block_on(async {
        let handles: Vec<_> = (0..workers as u64).map(|x| tokio::spawn(noop(x))).collect();
        for handle in handles {
            join(handle).await;
        }
    });
    let ready = started.elapsed();
    let stopping = Instant::now();
    drop(runtime);
    Ok((ready.as_secs_f64() * 1e3, stopping.elapsed().as_secs_f64() * 1e3))
}
