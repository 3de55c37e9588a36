//! The chaos run: a large map of mixed tasks while workers are SIGKILLed or SIGSTOPped at
//! random (no task timeout is set: a stopped worker is found by its missing heartbeat), some
//! tasks block their worker's thread, and, beside it, pools whose worker is a misbehaving peer
//! (the `fake_worker` binary). Every task must resolve, with its own value if it succeeds; no
//! process may be left behind. Run it with `cargo xtask chaos [--quick]`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use polyloop::{Pool, TaskError, TaskSpec};

/// One task of the mix, chosen by `i`: 1% panic, 10% burn ~200 us of CPU, 0.1% block their
/// thread for 20 ms (a worker busy so must still beat), the rest sleep a little (up to 3 ms), so
/// that faults catch tasks in every state. Returns `i` and which attempt it was.
#[polyloop::task]
async fn chaos_task(i: u64) -> (u64, u32) {
    match i % 100 {
        0 => panic!("chaos panic {i}"),
        50 if i % 1000 == 50 => std::thread::sleep(Duration::from_millis(20)),
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
    (i, polyloop::attempt())
}

/// The task the misbehaving peers say they run: they answer as if it doubled its input.
#[polyloop::task]
async fn peer_task(i: u64) -> u64 {
    2 * i
}

#[derive(Debug, Clone, Copy)]
struct Args {
    tasks: u64,
    kill_every: Duration,
    processes: usize,
    deadline: Duration,
    /// One fault in this many stops a worker instead of killing it.
    stop_one_in: u64,
    heartbeat: Duration,
}

/// The misbehaving-peer cases of `fake_worker` that pass the handshake.
const BAD_PEERS: [&str; 6] = ["garbage", "oversized", "bad-slot", "stale", "trailing", "mute"];

/// How many times the pool runs a task again after its worker was lost.
const RETRIES: u32 = 2;

/// The arguments `parse_args` takes.
const USAGE: &str = "[--quick] [--tasks N] [--processes N] [--kill-every-ms N] [--stop-one-in N]";

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        tasks: 200_000,
        kill_every: Duration::from_millis(50),
        processes: 4,
        deadline: Duration::from_secs(600),
        stop_one_in: 10,
        heartbeat: Duration::from_secs(1),
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
            "--stop-one-in" => args.stop_one_in = it.next().context("--stop-one-in N")?.parse()?,
            "-h" | "--help" => {
                println!("usage: cargo xtask chaos {USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}; usage: cargo xtask chaos {USAGE}"),
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

/// What the pools of misbehaving peers did.
#[derive(Debug, Default)]
struct BadPeerTally {
    tasks: u64,
    /// Tasks that got the right value (a peer may answer some correctly before it misbehaves).
    right: u64,
    /// Tasks that failed, as they should when their worker broke the protocol.
    failed: u64,
    wrong: u64,
    hung: u64,
    pids: Vec<u32>,
}

/// Runs a few tasks on a pool of one `fake_worker` for each misbehaving case, every case at
/// least once and then over and over until `done`. The fake worker answers as if its task doubled its input, so every input is 0:
/// the only right value is 0, and anything else that arrives as `Ok` is a wrong value.
async fn bad_peers(args: &Args, done: Arc<AtomicBool>) -> anyhow::Result<BadPeerTally> {
    let program = std::env::current_exe()?.with_file_name("fake_worker");
    anyhow::ensure!(program.exists(), "{} is missing: build it first", program.display());
    let mut tally = BadPeerTally::default();
    for (n, case) in BAD_PEERS.iter().cycle().enumerate() {
        if n >= BAD_PEERS.len() && done.load(Ordering::Relaxed) {
            break;
        }
        let pool = Pool::builder()
            .processes(1)
            .heartbeat_timeout(Some(args.heartbeat))
            .worker_program(&program)
            .worker_args([*case, peer_task::NAME, &peer_task::fingerprint().to_string()])
            .build()
            .await?;
        tally.pids.extend(pool.stats().workers.iter().map(|w| w.pid));
        let mut stream = pool.map_unordered(peer_task, [0u64; 4]);
        let run = async {
            let mut seen = 0;
            while let Some(result) = stream.next().await {
                seen += 1;
                match result {
                    Ok(0) => tally.right += 1,
                    Ok(_) => tally.wrong += 1,
                    Err(_) => tally.failed += 1,
                }
            }
            seen
        };
        let seen = tokio::time::timeout(Duration::from_secs(60), run).await.unwrap_or(0);
        drop(stream);
        tally.tasks += 4;
        tally.hung += 4 - seen;
        tally.pids.extend(pool.stats().workers.iter().map(|w| w.pid));
        tokio::time::timeout(Duration::from_secs(60), pool.close())
            .await
            .with_context(|| format!("close() of a `{case}` pool hung"))??;
    }
    Ok(tally)
}

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let fds_before = open_fds();
    let pool = Arc::new(
        Pool::builder()
            .processes(args.processes)
            .child_concurrency(64)
            .retries(RETRIES)
            .heartbeat_timeout(Some(args.heartbeat))
            .build()
            .await?,
    );
    eprintln!(
        "chaos: {} tasks on {} workers, a fault every {:?} (1 in {} a SIGSTOP, the rest SIGKILL), \
         heartbeat timeout {:?}, misbehaving peers beside",
        args.tasks, args.processes, args.kill_every, args.stop_one_in, args.heartbeat
    );

    let done = Arc::new(AtomicBool::new(false));
    let peers = {
        let done = Arc::clone(&done);
        tokio::spawn(async move { bad_peers(&args, done).await })
    };
    let kills = Arc::new(AtomicU64::new(0));
    let stops = Arc::new(AtomicU64::new(0));
    let seen_pids = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let killer = {
        let (pool, done, kills, stops, seen_pids) = (
            Arc::clone(&pool),
            Arc::clone(&done),
            Arc::clone(&kills),
            Arc::clone(&stops),
            Arc::clone(&seen_pids),
        );
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
                let (signal, count) = match (rng >> 32) % args.stop_one_in.max(1) {
                    0 => (Signal::SIGSTOP, &stops),
                    _ => (Signal::SIGKILL, &kills),
                };
                if kill(Pid::from_raw(victim as i32), signal).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let started = Instant::now();
    let mut stream = pool.map_unordered(chaos_task, 0..args.tasks);
    let mut succeeded = 0u64;
    // Succeeded on a later attempt than the first: each was retried, at most `RETRIES` times.
    let mut ran_again = 0u64;
    let mut wrong = 0u64;
    let mut failed: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Each task returns its input: a value out of range or seen twice is a wrong value.
    let mut seen = vec![false; args.tasks as usize];
    let run = async {
        while let Some(result) = stream.next().await {
            match result {
                Ok((i, attempt)) => match seen.get_mut(i as usize) {
                    Some(slot) if !*slot && (1..=RETRIES + 1).contains(&attempt) => {
                        *slot = true;
                        succeeded += 1;
                        ran_again += u64::from(attempt > 1);
                    }
                    _ => wrong += 1,
                },
                Err(err) => *failed.entry(kind(&err)).or_default() += 1,
            }
        }
    };
    let finished = tokio::time::timeout(args.deadline, run).await.is_ok();
    drop(stream);
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    killer.await?;
    let peers = peers.await??;
    seen_pids.lock().expect("not poisoned").extend(peers.pids.iter().copied());

    let stats = pool.stats();
    let restarts: u64 = stats.workers.iter().map(|w| w.restarts).sum();
    let retried: u64 = stats.workers.iter().map(|w| w.tasks_retried).sum();
    seen_pids
        .lock()
        .expect("not poisoned")
        .extend(stats.workers.iter().map(|w| w.pid).filter(|&p| p != 0));
    tokio::time::timeout(Duration::from_secs(60), pool.close()).await.context("close() hung")??;
    drop(pool);

    let resolved = succeeded + wrong + failed.values().sum::<u64>();
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
    println!("| succeeded on a later attempt (`polyloop::attempt() > 1`) | {ran_again} |");
    println!(
        "| workers killed / stopped / restarted | {} / {} / {restarts} |",
        kills.load(Ordering::Relaxed),
        stops.load(Ordering::Relaxed)
    );
    println!(
        "| misbehaving-peer tasks: right / failed / wrong / hung | {} / {} / {} / {} of {} |",
        peers.right, peers.failed, peers.wrong, peers.hung, peers.tasks
    );
    println!("| lost (never resolved) | {lost} |");
    println!("| hung (unresolved at the deadline) | {hung} |");
    println!("| wrong values | {} |", wrong + peers.wrong);
    println!("| orphan processes | {orphans} |");
    println!("| fds before / after | {fds_before} / {fds_after} |");
    println!("| elapsed | {:.2} s |", elapsed.as_secs_f64());

    let (wrong, hung) = (wrong + peers.wrong, hung + peers.hung);
    if lost > 0 || hung > 0 || wrong > 0 || orphans > 0 || fds_after > fds_before {
        bail!(
            "chaos run failed: lost {lost}, hung {hung}, wrong {wrong}, orphans {orphans}, fds \
             {fds_before} -> {fds_after}"
        );
    }
    // A task that ran again knows it; and retries of hundreds of tasks cannot all have been the
    // 1% that panic.
    if ran_again > retried || (retried > 100 && ran_again == 0) {
        bail!("chaos run failed: {ran_again} tasks say they ran again, {retried} were retried");
    }
    Ok(())
}
