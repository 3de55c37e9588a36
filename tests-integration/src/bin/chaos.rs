//! The chaos run: a large map of mixed tasks while workers are SIGKILLed at random; every task
//! must resolve, no process may be left behind. Run it with `cargo xtask chaos [--quick]`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use polyloop::{Pool, TaskError};

/// One task of the mix, chosen by `i`: 1% panic, 10% burn ~200 us of CPU, the rest sleep a
/// little (up to 3 ms), so that kills catch tasks in every state.
#[polyloop::task]
async fn chaos_task(i: u64) -> u64 {
    match i % 100 {
        0 => panic!("chaos panic {i}"),
        1..=10 => {
            let until = Instant::now() + Duration::from_micros(200);
            let mut x = i;
            while Instant::now() < until {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            }
            std::hint::black_box(x);
        }
        _ => tokio::time::sleep(Duration::from_micros(i % 3_000)).await,
    }
    i
}

struct Args {
    tasks: u64,
    kill_every: Duration,
    processes: usize,
    deadline: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        tasks: 200_000,
        kill_every: Duration::from_millis(50),
        processes: 4,
        deadline: Duration::from_secs(600),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {
                args.tasks = 20_000;
                args.deadline = Duration::from_secs(120);
            }
            "--tasks" => args.tasks = it.next().context("--tasks N")?.parse()?,
            "--processes" => args.processes = it.next().context("--processes N")?.parse()?,
            "--kill-every-ms" => {
                args.kill_every =
                    Duration::from_millis(it.next().context("--kill-every-ms N")?.parse()?)
            }
            other => bail!(
                "unknown argument {other}; expected --quick, --tasks N, --processes N, --kill-every-ms N"
            ),
        }
    }
    Ok(args)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|dir| dir.count()).unwrap_or(0)
}

/// Processes whose parent is this one (zombies included).
fn children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let ppid = rest.split(' ').nth(1)?;
        (ppid == me).then_some(pid)
    })
    .collect()
}

fn kind(err: &TaskError) -> &'static str {
    if err.is_panic() {
        "panic"
    } else if err.is_worker_lost() {
        "worker lost"
    } else if err.is_timeout() {
        "timeout"
    } else if err.is_cancelled() {
        "cancelled"
    } else if err.is_serialization() {
        "serialization"
    } else if err.is_failed() {
        "failed"
    } else {
        "other"
    }
}

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let fds_before = open_fds();
    let pool = Arc::new(
        Pool::builder().processes(args.processes).child_concurrency(64).retries(2).build().await?,
    );
    eprintln!(
        "chaos: {} tasks on {} workers, a SIGKILL every {:?}",
        args.tasks, args.processes, args.kill_every
    );

    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let seen_pids = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let killer = {
        let (pool, done, kills, seen_pids) =
            (Arc::clone(&pool), Arc::clone(&done), Arc::clone(&kills), Arc::clone(&seen_pids));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(args.kill_every);
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            while !done.load(Ordering::Relaxed) {
                ticker.tick().await;
                let pids: Vec<u32> =
                    pool.stats().workers.iter().map(|w| w.pid).filter(|&p| p != 0).collect();
                seen_pids.lock().expect("not poisoned").extend(pids.iter().copied());
                if pids.is_empty() {
                    continue;
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let victim = pids[(rng % pids.len() as u64) as usize];
                if kill(Pid::from_raw(victim as i32), Signal::SIGKILL).is_ok() {
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let started = Instant::now();
    let mut stream = pool.map_unordered(chaos_task, 0..args.tasks);
    let mut succeeded = 0u64;
    let mut failed: BTreeMap<&'static str, u64> = BTreeMap::new();
    let run = async {
        while let Some(result) = stream.next().await {
            match result {
                Ok(_) => succeeded += 1,
                Err(err) => *failed.entry(kind(&err)).or_default() += 1,
            }
        }
    };
    let finished = tokio::time::timeout(args.deadline, run).await.is_ok();
    drop(stream);
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    killer.await?;

    let stats = pool.stats();
    let restarts: u64 = stats.workers.iter().map(|w| w.restarts).sum();
    let retried: u64 = stats.workers.iter().map(|w| w.tasks_retried).sum();
    seen_pids
        .lock()
        .expect("not poisoned")
        .extend(stats.workers.iter().map(|w| w.pid).filter(|&p| p != 0));
    tokio::time::timeout(Duration::from_secs(60), pool.close()).await.context("close() hung")??;
    drop(pool);

    let resolved = succeeded + failed.values().sum::<u64>();
    let hung = if finished { 0 } else { args.tasks - resolved };
    let lost = args.tasks - resolved - hung;
    let alive: Vec<u32> = seen_pids
        .lock()
        .expect("not poisoned")
        .iter()
        .copied()
        .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    let orphans = children().len().max(alive.len());
    let fds_after = open_fds();

    println!("| chaos run | |");
    println!("| --- | ---: |");
    println!("| submitted | {} |", args.tasks);
    println!("| succeeded | {succeeded} |");
    for (kind, n) in &failed {
        println!("| failed: {kind} | {n} |");
    }
    println!("| retried (re-run after a kill) | {retried} |");
    println!("| workers killed / restarted | {} / {restarts} |", kills.load(Ordering::Relaxed));
    println!("| lost (never resolved) | {lost} |");
    println!("| hung (unresolved at the deadline) | {hung} |");
    println!("| orphan processes | {orphans} |");
    println!("| fds before / after | {fds_before} / {fds_after} |");
    println!("| elapsed | {:.2} s |", elapsed.as_secs_f64());

    if lost > 0 || hung > 0 || orphans > 0 || fds_after > fds_before {
        bail!(
            "chaos run failed: lost {lost}, hung {hung}, orphans {orphans}, fds {fds_before} -> {fds_after}"
        );
    }
    Ok(())
}
