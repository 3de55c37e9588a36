//! A progress bar over a long map: `MapStream::progress` says how many results arrived, how
//! many failed and how many inputs there are, and indicatif draws it.
//!
//! ```sh
//! cargo run --release --example progress
//! ```

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use polyloop::Pool;

/// Waits a while, as a task doing I/O would; one input in fifty fails.
#[polyloop::task]
async fn fetch(i: u64) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(5 + i % 20)).await;
    if i % 50 == 49 { Err(format!("input {i} failed")) } else { Ok(i * i) }
}

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    let pool = Pool::builder().child_concurrency(256).build().await?;
    let mut results = pool.map_unordered(fetch, 0..20_000u64);
    let bar = ProgressBar::new(results.progress().total);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} in {elapsed}, {per_sec} ({msg})",
    )?);
    let mut sum = 0u64;
    while let Some(result) = results.next().await {
        sum = sum.wrapping_add(result.unwrap_or_default());
        let progress = results.progress();
        bar.set_length(progress.total);
        bar.set_position(progress.yielded);
        bar.set_message(format!("{} failed", progress.failed));
    }
    bar.finish();
    let progress = results.progress();
    println!("{} tasks, {} failed, sum of squares {sum}", progress.yielded, progress.failed);
    anyhow::ensure!(progress.yielded == 20_000 && progress.failed == 400, "lost results");
    pool.close().await?;
    Ok(())
}
