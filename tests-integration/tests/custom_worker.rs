//! Writing your own worker, end to end: the `pool_only_parent` example (a parent on
//! `polyloop-pool` alone, naming tasks by their `TaskSpec`) runs its tasks in the
//! `custom_worker` example (a worker on a runtime it builds itself), and a parent that expects a
//! task the worker lacks is refused at build time.

use std::process::Stdio;
use std::time::Duration;

use polyloop::wire::TaskSchema;
use polyloop::{Pool, PoolError};

const CUSTOM_WORKER: &str = env!("CARGO_BIN_EXE_custom_worker");
const POOL_ONLY_PARENT: &str = env!("CARGO_BIN_EXE_pool_only_parent");

/// A bound on every wait, so a hang fails the test.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_pool_only_parent_runs_its_tasks_in_a_custom_worker() {
    let run = tokio::process::Command::new(POOL_ONLY_PARENT)
        .arg(CUSTOM_WORKER)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, run).await.expect("the parent hung").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stdout}{stderr}", output.status);
    let expected: u64 = (0..1000u64).map(|x| x * 2).sum();
    assert!(stdout.contains(&format!("sum of doubles: {expected}\n")), "{stdout}");
    // The task ran on the worker's own runtime, whose threads it named itself.
    assert!(stdout.contains("served on thread: custom-worker\n"), "{stdout}{stderr}");
}

polyloop::wire::task_spec! {
    /// A task the custom worker does not hold.
    Missing: u64 => u64 = "custom_worker::missing"
}

polyloop::wire::task_spec! {
    /// The worker's `double`, named with other types.
    DoubleAsText: String => String = "custom_worker::double"
}

#[tokio::test]
async fn expected_tasks_are_checked_at_build_time() {
    let build = |expected: TaskSchema| {
        Pool::builder().processes(1).worker_program(CUSTOM_WORKER).expect_tasks([expected]).build()
    };
    let err = tokio::time::timeout(PATIENCE, build(TaskSchema::of::<Missing>()))
        .await
        .expect("build() hung")
        .expect_err("a worker without the task was accepted");
    assert!(
        matches!(&err, PoolError::MissingTasks { tasks, .. } if tasks == &["`custom_worker::missing`"]),
        "{err:?}"
    );
    let err = tokio::time::timeout(PATIENCE, build(TaskSchema::of::<DoubleAsText>()))
        .await
        .expect("build() hung")
        .expect_err("a worker with other types was accepted");
    assert!(matches!(&err, PoolError::RegistryMismatch { .. }), "{err:?}");
}
