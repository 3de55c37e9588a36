//! The quick start: a pool of worker processes doubling, adding and hashing numbers.

use std::time::Instant;

use polyloop::Pool;

/// Doubles a number; the no-op task of the throughput figures.
#[polyloop::task]
async fn double(x: u64) -> u64 {
    x * 2
}

/// Several arguments: the input is a tuple.
#[polyloop::task]
async fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Some CPU work: an FNV-1a hash, iterated.
#[polyloop::task]
async fn hash_rounds(seed: u64, rounds: u32) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for round in 0..rounds {
        hash ^= u64::from(round);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    let processes = std::thread::available_parallelism().map_or(2, usize::from);
    let started = Instant::now();
    let pool = Pool::builder().processes(processes).build().await?;
    println!("pool of {processes} workers ready in {:?}", started.elapsed());

    let n = 1_000_000u64;
    let started = Instant::now();
    let doubled = pool.map(double, 0..n).await?;
    let elapsed = started.elapsed();
    assert!(doubled.iter().enumerate().all(|(i, &v)| v == 2 * i as u64));
    println!(
        "map: {n} no-op tasks in {elapsed:?} ({:.0} tasks/s)",
        n as f64 / elapsed.as_secs_f64()
    );

    let sum = pool.apply(add, (40, 2)).await?;
    println!("apply: add(40, 2) = {sum}");
    // Called like its function, a task runs here, in this process (in a unit test, say).
    assert_eq!(add(40, 2).await, sum);

    let started = Instant::now();
    let hashes = pool.map(hash_rounds, (0..64u64).map(|seed| (seed, 2_000_000))).await?;
    println!("map: 64 CPU-bound hashes in {:?} (first {:016x})", started.elapsed(), hashes[0]);

    for worker in pool.stats().workers {
        println!(
            "worker {} (pid {}): {} tasks done",
            worker.worker_idx, worker.pid, worker.tasks_done
        );
    }
    pool.close().await?;
    Ok(())
}
