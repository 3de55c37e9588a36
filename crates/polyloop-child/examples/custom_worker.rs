//! A worker program of its own, on a runtime it builds itself: what to write when the default
//! bootstrap (`polyloop::init()`, `#[polyloop::main]`) does not fit, say for a worker that needs
//! its own thread names, a `tracing` subscriber or a runtime tuned otherwise.
//!
//! It serves two tasks, `custom_worker::double` and `custom_worker::thread_name` (the name of the
//! thread a task runs on: one of this program's own runtime threads). A parent names them with
//! their `TaskSpec` alone and starts this program with `PoolBuilder::worker_program`; see
//! `crates/polyloop-pool/examples/pool_only_parent.rs`.
//!
//! Its tasks implement `Task` by hand and are listed in a `Registry`: a program that holds a
//! `#[polyloop::task]` becomes a worker before `main` with the default bootstrap, and this one's
//! runtime would never run.
//!
//! Run it from a pool; started by hand it says so and exits with code 2.

use polyloop_child::{Inherited, Registry, TaskEntry, serve};
use polyloop_wire::{RemoteError, Task};

polyloop_wire::task_spec! {
    /// Doubles its input.
    Double: u64 => u64 = "custom_worker::double"
}

impl Task for Double {
    async fn run(x: u64) -> Result<u64, RemoteError> {
        Ok(x * 2)
    }
}

polyloop_wire::task_spec! {
    /// The name of the thread the task runs on.
    ThreadName: () => String = "custom_worker::thread_name"
}

impl Task for ThreadName {
    async fn run((): ()) -> Result<String, RemoteError> {
        Ok(std::thread::current().name().unwrap_or("unnamed").to_owned())
    }
}

/// The tasks this worker serves, in the order that gives them their indexes on the wire.
static TASKS: [TaskEntry; 2] = [TaskEntry::of::<Double>(), TaskEntry::of::<ThreadName>()];

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("custom_worker: {err}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // First, before any thread of our own: the pool's variables, checked and removed.
    let Some(inherited) = Inherited::from_env()? else {
        return Err("not started by a polyloop pool (see PoolBuilder::worker_program)".into());
    };
    // Signals, the panic hook and the parent watch (with its heartbeat), as the default
    // bootstrap sets them up; the runtime is ours.
    let socket = inherited.prepare()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("custom-worker")
        .enable_all()
        .build()?;
    socket.set_nonblocking(true)?;
    // Spawned, so that the worker loop (which runs a task that finishes at once in place) runs on
    // the runtime's own threads, not on the one that blocks on it.
    runtime.block_on(async {
        let stream = tokio::net::UnixStream::from_std(socket)?;
        tokio::spawn(serve(stream, Registry::new(&TASKS))).await??;
        Ok(())
    })
}
