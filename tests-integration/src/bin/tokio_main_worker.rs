//! A program that becomes a worker the way many `#[tokio::main]` programs would: with
//! `polyloop::init()` at the top of `main`'s body, already inside the runtime. It defines no task,
//! so no hook makes it a worker before `main`. It builds a pool of two workers (itself,
//! re-executed), prints how many answered, and closes the pool.
//!
//! The start-up tests also run it with a hand-made environment, to see how a worker that cannot
//! start says so.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    polyloop::init();
    let pool = polyloop::Pool::builder().processes(2).build().await?;
    println!("{} workers", pool.stats().workers.len());
    pool.close().await?;
    Ok(())
}
