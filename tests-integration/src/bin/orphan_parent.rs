//! A pool's parent for the parent-death tests: prints its workers' pids on one line, then holds
//! work until it is killed, or shuts its pool down in order when SIGINT or SIGTERM arrives.
//!
//! Usage: `orphan_parent hold | spin | close | drop`.
//! - `hold`: submits long tasks and waits forever; signals keep their default action.
//! - `spin`: the same, but each worker's task blocks its thread (so the worker cannot read its
//!   socket), and says `spinning <pid>` on stdout when it starts.
//! - `close`, `drop`: waits for SIGINT or SIGTERM, then checks that the workers still serve,
//!   closes (or drops) the pool, checks that every worker was reaped, and exits 0. It reports
//!   on stdout, one line per step.

use std::time::Duration;

use anyhow::Context as _;
use polyloop::Pool;
use tokio::signal::unix::{SignalKind, signal};

/// Blocks its thread without yielding, for up to a minute, after saying so on stdout.
#[polyloop::task]
async fn spin(_i: u64) -> u32 {
    println!("spinning {}", std::process::id());
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    std::process::id()
}

/// Sleeps, then returns the pid of the worker it ran in.
#[polyloop::task]
async fn nap(millis: u64) -> u32 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    std::process::id()
}

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    anyhow::ensure!(
        matches!(mode.as_str(), "hold" | "spin" | "close" | "drop"),
        "usage: orphan_parent hold | spin | close | drop"
    );
    if mode == "hold" || mode == "spin" {
        // No signal handlers: SIGINT and SIGTERM keep their default action, which kills us.
        // Without prefetch, each worker takes one task of the two.
        let pool = Pool::builder().processes(2).child_concurrency(1).prefetch(0).build().await?;
        println!("{}", worker_pids(&pool).join(" "));
        if mode == "hold" {
            let handles: Vec<_> = (0..2).map(|_| pool.submit(nap, 3_600_000)).collect();
            for handle in handles {
                handle.await?;
            }
        } else {
            let handles: Vec<_> = (0..2).map(|i| pool.submit(spin, i)).collect();
            for handle in handles {
                handle.await?;
            }
        }
        std::future::pending::<()>().await;
        return Ok(());
    }

    // Installed before the pids are printed, so a signal sent after reading them is caught.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let pool = Pool::builder().processes(2).build().await?;
    let pids = worker_pids(&pool);
    println!("{}", pids.join(" "));
    let name = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    println!("received {name}");
    // The workers are left alone by the signal: the same ones still serve.
    let served = pool.map(nap, [50u64; 8]).await.context("the workers no longer serve")?;
    let restarts: u64 = pool.stats().workers.iter().map(|w| w.restarts).sum();
    let strangers = served.iter().filter(|pid| !pids.contains(&pid.to_string())).count();
    println!("served {} tasks, {strangers} by other workers, {restarts} restarts", served.len());
    let handles: Vec<_> = (0..4).map(|_| pool.submit(nap, 200)).collect();
    if mode == "close" {
        pool.close().await?;
        let mut done = 0;
        for handle in handles {
            handle.await?;
            done += 1;
        }
        println!("closed after {done} tasks");
    } else {
        drop(pool);
        let mut cancelled = 0;
        for handle in handles {
            if handle.await.is_err_and(|err| err.is_cancelled()) {
                cancelled += 1;
            }
        }
        println!("dropped with {cancelled} tasks cancelled");
    }
    // This process is their parent: a worker not reaped would still show, as a zombie.
    let unreaped: Vec<_> =
        pids.iter().filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()).collect();
    println!("unreaped: {unreaped:?}");
    Ok(())
}

fn worker_pids(pool: &Pool) -> Vec<String> {
    pool.stats().workers.iter().map(|w| w.pid.to_string()).collect()
}
