//! Scratch probe (not committed): no-op throughput and CPU spread.
use polyloop::Pool;
use std::time::{Duration, Instant};
#[polyloop::task]
async fn double(x: u64) -> u64 {
    x * 2
}
#[polyloop::task]
async fn spin(ms: u64) -> u32 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(ms) {
        std::hint::spin_loop();
    }
    std::process::id()
}
#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    let pool = Pool::builder().processes(2).build().await?;
    for _ in 0..3 {
        let t = Instant::now();
        let out = pool.map(double, 0..1_000_000u64).await?;
        println!("{} tasks: {:.2}M/s", out.len(), 1e6 / t.elapsed().as_secs_f64() / 1e6);
    }
    for n in [4usize, 16, 64] {
        let t = Instant::now();
        let pids = pool.map(spin, std::iter::repeat_n(20, n)).await?;
        let a = pids.iter().filter(|&&p| p == pids[0]).count();
        println!(
            "{n} x 20ms: {:.2}x [{a}, {}]",
            n as f64 * 0.02 / t.elapsed().as_secs_f64(),
            n - a
        );
    }
    pool.close().await?;
    Ok(())
}
