//! Maps whose inputs travel in chunks. With a fixed prefetch a worker's credit is fixed, and so
//! is the chunk size (credit / concurrency): these pools send their map inputs 16 at a time.
//! Every rule a map keeps per input must hold inside a chunk too: order, per-input errors,
//! fail-fast, retries of exactly what was lost, cancellation.

use std::path::PathBuf;
use std::time::Duration;

use polyloop::Pool;
use polyloop_tests_integration::{EventLog, close};

#[polyloop::task]
async fn double(x: u64) -> u64 {
    x * 2
}

/// Fails for `x % 7 == 3`, panics for `x % 11 == 5`, else doubles.
#[polyloop::task]
async fn fussy(x: u64) -> Result<u64, String> {
    assert!(x % 11 != 5, "fussy refuses {x}");
    if x % 7 == 3 {
        return Err(format!("no {x}"));
    }
    Ok(x * 2)
}

/// Sleeps `millis`, then returns `x`: a chunk of these waits in its own task.
#[polyloop::task]
async fn nap(x: u64, millis: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    x
}

/// Returns `x`, except that input `wait_at` sleeps a while (so the part before it is sent) and
/// input `wait_at + 1` kills its worker the first time (when `marker` does not exist yet).
#[polyloop::task]
async fn die_once(x: u64, wait_at: u64, marker: String) -> u64 {
    if x == wait_at {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if x == wait_at + 1
        && std::fs::OpenOptions::new().write(true).create_new(true).open(&marker).is_ok()
    {
        std::process::abort();
    }
    x
}

/// A pool whose workers get chunks of 16 inputs.
async fn chunked(retries: u32) -> anyhow::Result<Pool> {
    EventLog::installed();
    Ok(Pool::builder()
        .processes(2)
        .child_concurrency(4)
        .prefetch(60)
        .retries(retries)
        .build()
        .await?)
}

/// A path in the temp dir for `die_once`'s marker, unique to this process and `name`, and
/// removed when dropped.
struct Marker(PathBuf);

impl Marker {
    fn new(name: &str) -> Marker {
        let file = format!("polyloop-chunks-{}-{name}", std::process::id());
        let path = std::env::temp_dir().join(file);
        let _ = std::fs::remove_file(&path);
        Marker(path)
    }

    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_chunked_map_returns_every_output_in_order() -> anyhow::Result<()> {
    let pool = chunked(0).await?;
    let before = EventLog::installed().count("chunk sent");
    let n = 100_000u64;
    let out = pool.map(double, 0..n).await?;
    assert_eq!(out, (0..n).map(|x| x * 2).collect::<Vec<_>>());
    let sent = EventLog::installed().count("chunk sent") - before;
    assert!(sent > 0, "the inputs travelled in chunks");
    let mut unordered: Vec<u64> = Vec::new();
    let mut stream = pool.map_unordered(double, 0..10_000u64);
    while let Some(output) = stream.next().await {
        unordered.push(output?);
    }
    unordered.sort_unstable();
    assert_eq!(unordered, (0..10_000).map(|x| x * 2).collect::<Vec<_>>());
    let done: u64 = pool.stats().workers.iter().map(|w| w.tasks_done).sum();
    assert_eq!(done, n + 10_000, "stats count every input of a chunk");
    close(&pool).await?;
    Ok(())
}

#[tokio::test]
async fn errors_and_panics_inside_a_chunk_stay_with_their_inputs() -> anyhow::Result<()> {
    let pool = chunked(0).await?;
    let n = 5_000u64;
    let mut stream = pool.map_stream(fussy, 0..n);
    let mut seen = 0;
    while let Some(result) = stream.next().await {
        let x = seen;
        seen += 1;
        match result {
            Ok(out) => {
                assert!(x % 11 != 5 && x % 7 != 3, "input {x} should have failed");
                assert_eq!(out, x * 2);
            }
            Err(err) => {
                assert_eq!(err.input_index(), Some(x), "{err}");
                match x % 11 == 5 {
                    true => assert!(
                        err.is_panic() && err.to_string().contains(&format!("fussy refuses {x}")),
                        "{err}"
                    ),
                    false => assert!(
                        err.is_failed() && err.to_string().contains(&format!("no {x}")),
                        "{err}"
                    ),
                }
            }
        }
    }
    assert_eq!(seen, n);
    let stats = pool.stats();
    let failed: u64 = stats.workers.iter().map(|w| w.tasks_failed).sum();
    assert_eq!(failed, (0..n).filter(|x| x % 11 == 5 || x % 7 == 3).count() as u64);
    close(&pool).await?;
    Ok(())
}

#[tokio::test]
async fn a_fail_fast_map_names_a_failing_input_of_a_chunk() -> anyhow::Result<()> {
    let pool = chunked(0).await?;
    // Warm the prefetch's chunks up with inputs that do not fail.
    let err =
        pool.map(fussy, (0..3_000u64).map(|x| if x == 2_500 { 3 } else { 0 })).await.unwrap_err();
    assert_eq!(err.input_index(), Some(2_500), "{err}");
    assert!(err.is_failed(), "{err}");
    close(&pool).await?;
    Ok(())
}

#[tokio::test]
async fn a_worker_lost_mid_chunk_retries_exactly_what_was_not_answered() -> anyhow::Result<()> {
    let pool = chunked(1).await?;
    let marker = Marker::new("retry");
    let n = 20_000u64;
    let inputs = (0..n).map(|x| (x, 5_000u64, marker.path()));
    let out = pool.map(die_once, inputs).await?;
    assert_eq!(out, (0..n).collect::<Vec<_>>(), "every input once, in order");
    let stats = pool.stats();
    let restarts: u64 = stats.workers.iter().map(|w| w.restarts).sum();
    let retried: u64 = stats.workers.iter().map(|w| w.tasks_retried).sum();
    assert_eq!(restarts, 1, "{stats:?}");
    assert!(retried >= 1, "{stats:?}");
    close(&pool).await?;
    Ok(())
}

#[tokio::test]
async fn without_retries_a_lost_chunk_fails_only_its_unanswered_inputs() -> anyhow::Result<()> {
    let pool = chunked(0).await?;
    let marker = Marker::new("no-retry");
    let n = 20_000u64;
    let mut stream = pool.map_stream(die_once, (0..n).map(|x| (x, 5_000u64, marker.path())));
    let (mut seen, mut lost) = (0u64, Vec::new());
    while let Some(result) = stream.next().await {
        match result {
            Ok(x) => assert_eq!(x, seen),
            Err(err) => {
                assert!(err.is_worker_lost(), "{err}");
                assert_eq!(err.input_index(), Some(seen));
                lost.push(seen);
            }
        }
        seen += 1;
    }
    assert_eq!(seen, n, "every input has exactly one result");
    assert!(lost.contains(&5_001), "the input that killed its worker is lost: {lost:?}");
    assert!(!lost.contains(&5_000), "the one answered before the kill is not: {lost:?}");
    let failed: u64 = pool.stats().workers.iter().map(|w| w.tasks_failed).sum();
    assert_eq!(failed, lost.len() as u64);
    close(&pool).await?;
    Ok(())
}

#[tokio::test]
async fn dropping_a_chunked_stream_cancels_it_and_the_pool_serves_on() -> anyhow::Result<()> {
    let pool = chunked(0).await?;
    let mut stream = pool.map_stream(nap, (0..400u64).map(|x| (x, 20)));
    for x in 0..5 {
        assert_eq!(stream.next().await.transpose()?, Some(x));
    }
    drop(stream);
    assert_eq!(pool.map(double, 0..1_000u64).await?.len(), 1_000);
    // Every cancelled input resolved: close does not wait for them.
    close(&pool).await?;
    Ok(())
}
