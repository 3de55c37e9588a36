//! A parent built on `polyloop-pool` alone: it names its tasks by their `TaskSpec` (name and
//! types, no code), so it neither links the worker runtime nor compiles the task bodies, and runs
//! them in a separate worker program.
//!
//! Usage: `pool_only_parent <worker program>`, e.g. the `custom_worker` example of
//! `polyloop-child`:
//!
//! ```sh
//! cargo build --example custom_worker -p polyloop-child
//! cargo run --example pool_only_parent -p polyloop-pool -- target/debug/examples/custom_worker
//! ```

use polyloop_pool::Pool;
use polyloop_wire::TaskSchema;

polyloop_wire::task_spec! {
    /// Implemented by the worker program: doubles its input.
    Double: u64 => u64 = "custom_worker::double"
}

polyloop_wire::task_spec! {
    /// Implemented by the worker program: the name of the thread the task runs on.
    ThreadName: () => String = "custom_worker::thread_name"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let program = std::env::args_os().nth(1).ok_or("usage: pool_only_parent <worker program>")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let pool = Pool::builder()
            .processes(2)
            .worker_program(program)
            // Refuse, at build time, a worker program that lacks them or has other types.
            .expect_tasks([TaskSchema::of::<Double>(), TaskSchema::of::<ThreadName>()])
            .build()
            .await?;
        let doubled = pool.map(Double, 0..1000u64).await?;
        let sum: u64 = doubled.iter().sum();
        let thread = pool.apply(ThreadName, ()).await?;
        println!("sum of doubles: {sum}");
        println!("served on thread: {thread}");
        pool.close().await?;
        Ok(())
    })
}
