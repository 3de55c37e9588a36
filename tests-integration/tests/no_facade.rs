//! Tasks without the facade: `#[polyloop_macros::task(crate = "polyloop_child")]` registers a
//! task with `polyloop-child` alone, and a pool of `polyloop-pool` runs it in this program,
//! re-executed as a worker.

use polyloop_child::Registry;
use polyloop_wire::{Task, TaskSpec};

#[polyloop_macros::task(crate = "polyloop_child")]
async fn triple(x: u64) -> Result<u64, std::io::Error> {
    match x {
        0 => Err(std::io::Error::other("zero has no triple worth computing")),
        x => Ok(x * 3),
    }
}

#[tokio::test]
async fn a_task_registers_and_runs_through_the_lower_crates() -> anyhow::Result<()> {
    let entry = Registry::linked().find(triple::NAME).expect("registered in polyloop_child::TASKS");
    assert_eq!((entry.fingerprint)(), triple::fingerprint());
    assert_eq!(<triple as Task>::run(2).await.map_err(|err| anyhow::anyhow!("{err}"))?, 6);

    let pool = polyloop_pool::Pool::builder().processes(1).build().await?;
    assert_eq!(pool.map(triple, 1..4u64).await?, [3, 6, 9]);
    let err = pool.apply(triple, 0).await.expect_err("zero fails");
    assert!(err.is_failed(), "{err}");
    assert!(err.to_string().contains("zero has no triple"), "{err}");
    pool.close().await?;
    Ok(())
}
