//! Controlling a pool and its tasks: clones of one pool in spawned tasks, which worker runs a
//! task, a per-call timeout, a task's own error type back, a retry after a lost worker, and
//! `terminate`.
//!
//! ```sh
//! cargo run --release --example control
//! ```

use std::time::Duration;

use polyloop::Pool;
use serde::{Deserialize, Serialize};

/// A task's own error: a serde type, so the caller gets it back as itself.
#[derive(Debug, Serialize, Deserialize)]
enum LookupError {
    NotFound(u64),
    Busy { retry_after_ms: u64 },
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NotFound(key) => write!(f, "no entry {key}"),
            LookupError::Busy { retry_after_ms } => write!(f, "busy; retry in {retry_after_ms} ms"),
        }
    }
}

/// Looks a key up: which worker answered, or why not.
#[polyloop::task]
async fn lookup(key: u64) -> Result<(u64, usize), LookupError> {
    match key % 10 {
        7 => Err(LookupError::NotFound(key)),
        9 => Err(LookupError::Busy { retry_after_ms: 50 }),
        _ => Ok((key * key, polyloop::worker_index().unwrap_or_default())),
    }
}

/// Takes as long as it is told to.
#[polyloop::task]
async fn slow(millis: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    millis
}

/// Takes its worker down the first time it runs, as a crash would; says which attempt it is.
#[polyloop::task]
async fn flaky(key: u64) -> (u64, u32) {
    if polyloop::attempt() == 1 {
        std::process::exit(3);
    }
    (key, polyloop::attempt())
}

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).retries(1).build().await?;

    // Clones are the same pool: hand one to each spawned task.
    let lookups: Vec<_> = (0..4u64)
        .map(|part| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut answered = [0; 2];
                for key in part * 10..part * 10 + 10 {
                    match pool.apply(lookup, key).await {
                        Ok((_, worker)) => answered[worker] += 1,
                        Err(err) => match err.downcast::<LookupError>() {
                            Some(LookupError::Busy { retry_after_ms }) => {
                                println!("key {key}: busy, would retry in {retry_after_ms} ms")
                            }
                            Some(LookupError::NotFound(key)) => println!("key {key}: not found"),
                            None => return Err(anyhow::Error::new(err)),
                        },
                    }
                }
                anyhow::Ok(answered)
            })
        })
        .collect();
    for (part, spawned) in lookups.into_iter().enumerate() {
        let answered = spawned.await??;
        println!("part {part}: workers 0 and 1 answered {} and {}", answered[0], answered[1]);
    }

    // A per-call limit: past it the task is cancelled in its worker.
    match pool.submit(slow, 60_000).timeout(Duration::from_millis(200)).await {
        Err(err) if err.is_timeout() => println!("slow(60 s): {err}"),
        other => anyhow::bail!("expected a timeout, got {other:?}"),
    }

    // A task whose worker is lost runs again in another (under `retries`), and knows it.
    let (key, attempt) = pool.apply(flaky, 5).await?;
    println!("flaky({key}) came back on attempt {attempt}, its first worker lost");

    // Enough: cancel what still runs, kill and reap the workers.
    let left_running: Vec<_> = (0..4).map(|_| pool.submit(slow, 60_000)).collect();
    pool.terminate().await;
    for handle in left_running {
        anyhow::ensure!(handle.await.is_err_and(|err| err.is_cancelled()), "not cancelled");
    }
    println!("terminated: 4 running tasks cancelled, workers reaped");
    Ok(())
}
