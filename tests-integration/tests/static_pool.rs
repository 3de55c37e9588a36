//! A pool outlives the runtime that built it: one pool in a `static`, shared by tests that each
//! run their own runtime (at once, and one after another), and pools used, closed and dropped
//! from a runtime other than the one that built them, after that one is gone. With its drivers
//! on the runtime that built it, a pool cannot outlive that runtime, but says so at once.
//!
//! Every wait is bounded, so a pool that hangs fails its test with a message instead of hanging
//! the run. The static pool is never closed or dropped: its workers go when this process exits
//! (they see end of stream, and their parent-watch thread sees the parent gone).

use std::future::Future;
use std::time::Duration;

use polyloop::{Pool, PoolError};
use tokio::sync::OnceCell;

/// A bound on every wait here: a working pool answers within milliseconds.
const PATIENCE: Duration = Duration::from_secs(20);

/// Built by whichever test gets to it first, inside that test's runtime.
static POOL: OnceCell<Pool> = OnceCell::const_new();

#[polyloop::task]
async fn double(x: u64) -> u64 {
    x * 2
}

/// Sleeps, then returns its pid.
#[polyloop::task]
async fn nap(millis: u64) -> u32 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    std::process::id()
}

async fn shared_pool() -> &'static Pool {
    POOL.get_or_init(|| async {
        within("building the shared pool", Pool::builder().processes(2).build())
            .await
            .expect("the shared pool builds")
    })
    .await
}

/// `future`'s output, or a panic naming `what` if it takes longer than [`PATIENCE`].
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} hung for {PATIENCE:?}: the pool stopped serving"),
    }
}

/// Maps, applies and submits on the shared pool, checking every value.
async fn use_shared_pool(round: u64) -> anyhow::Result<()> {
    let pool = shared_pool().await;
    let inputs = round * 1000..(round + 1) * 1000;
    let doubled = within("map", pool.map(double, inputs.clone())).await?;
    anyhow::ensure!(doubled == inputs.map(|x| x * 2).collect::<Vec<_>>(), "map's values");
    for x in 0..20 {
        anyhow::ensure!(within("apply", pool.apply(double, round + x)).await? == 2 * (round + x));
    }
    let handles: Vec<_> = (0..8u64).map(|x| pool.submit(double, x)).collect();
    for (x, handle) in (0u64..).zip(handles) {
        anyhow::ensure!(within("a submitted task", handle).await? == 2 * x);
    }
    Ok(())
}

/// A runtime of its own, as each `#[tokio::test]` has.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

/// Whether `pid` is gone and reaped (a zombie still has its `/proc` entry).
fn reaped(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn worker_pids(pool: &Pool) -> Vec<u32> {
    pool.stats().workers.iter().map(|worker| worker.pid).collect()
}

#[tokio::test]
async fn one_test_runtime_uses_the_shared_pool() -> anyhow::Result<()> {
    use_shared_pool(1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_test_runtime_uses_the_shared_pool() -> anyhow::Result<()> {
    use_shared_pool(2).await
}

/// Deterministic, whatever order the harness runs the tests in: each round's runtime is gone
/// before the next one starts.
#[test]
fn runtimes_in_sequence_use_the_shared_pool() -> anyhow::Result<()> {
    for round in 3..6 {
        runtime().block_on(use_shared_pool(round))?;
    }
    Ok(())
}

#[test]
fn a_pool_serves_and_closes_after_the_runtime_that_built_it_is_gone() -> anyhow::Result<()> {
    let first = runtime();
    let pool = first.block_on(async {
        let pool = within("build", Pool::builder().processes(2).build()).await?;
        anyhow::ensure!(within("apply", pool.apply(double, 1)).await? == 2);
        Ok(pool)
    })?;
    let pids = worker_pids(&pool);
    drop(first);

    runtime().block_on(async {
        anyhow::ensure!(within("apply", pool.apply(double, 21)).await? == 42);
        let doubled = within("map", pool.map(double, 0..500u64)).await?;
        anyhow::ensure!(doubled == (0..500u64).map(|x| x * 2).collect::<Vec<_>>(), "map's values");
        anyhow::ensure!(worker_pids(&pool) == pids, "the same workers serve: none was lost");
        within("close", pool.close()).await?;
        Ok(())
    })?;
    for pid in pids {
        anyhow::ensure!(reaped(pid), "worker {pid} was reaped by close");
    }
    Ok(())
}

#[test]
fn a_pool_dropped_after_the_runtime_that_built_it_is_gone_reaps_its_workers() -> anyhow::Result<()>
{
    let first = runtime();
    let pool = first.block_on(within("build", Pool::builder().processes(2).build()))?;
    let pids = worker_pids(&pool);
    drop(first);

    // Dropped inside another runtime, with tasks in flight that will never finish by themselves.
    runtime().block_on(async {
        let busy: Vec<_> = (0..4).map(|_| pool.submit(nap, 60_000)).collect();
        let served = within("a task", pool.submit(nap, 0)).await?;
        anyhow::ensure!(pids.contains(&served), "one of the pool's workers ran it");
        drop(pool);
        for handle in busy {
            let err = within("a task of a dropped pool", handle).await.expect_err("cancelled");
            anyhow::ensure!(err.is_cancelled(), "cancelled by the drop: {err}");
        }
        Ok(())
    })?;
    for pid in pids {
        anyhow::ensure!(reaped(pid), "worker {pid} was reaped by the drop");
    }
    Ok(())
}

#[test]
fn drivers_on_the_building_runtime_fail_at_once_when_it_is_gone() -> anyhow::Result<()> {
    let first = runtime();
    let (pool, in_flight) = first.block_on(async {
        let building = Pool::builder().processes(2).drivers_on_current_runtime().build();
        let pool = within("build", building).await?;
        anyhow::ensure!(within("apply", pool.apply(double, 1)).await? == 2);
        let mut in_flight = pool.submit(nap, 60_000);
        // Polled once, so that it is sent before the runtime goes.
        let pending = tokio::time::timeout(Duration::from_millis(50), &mut in_flight).await;
        anyhow::ensure!(pending.is_err(), "a minute-long nap is not done yet");
        anyhow::Ok((pool, in_flight))
    })?;
    let pids = worker_pids(&pool);
    drop(first);

    runtime().block_on(async {
        let err = within("a task in flight", in_flight).await.expect_err("no driver is left");
        anyhow::ensure!(err.is_cancelled(), "cancelled with its driver: {err}");
        let err = within("apply", pool.apply(double, 21)).await.expect_err("no driver is left");
        anyhow::ensure!(err.is_pool_closed(), "the pool is closed: {err}");
        anyhow::ensure!(err.to_string().contains("runtime"), "says why: {err}");
        let err = within("map", pool.map(double, 0..10u64)).await.expect_err("no driver is left");
        anyhow::ensure!(err.is_pool_closed(), "the pool is closed: {err}");
        let err = within("close", pool.close()).await.expect_err("the runtime is gone");
        anyhow::ensure!(matches!(err, PoolError::RuntimeGone), "close says why: {err}");
        Ok(())
    })?;
    for pid in pids {
        anyhow::ensure!(reaped(pid), "worker {pid} was reaped by close");
    }
    Ok(())
}
