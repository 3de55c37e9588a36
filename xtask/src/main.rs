//! polyloop's project automation, run as `cargo xtask <command>` (see `.cargo/config.toml`).
//!
//! Avoid adding dependencies to this crate: beyond std it has anyhow, serde_json and the types of
//! the benchmark report (`polyloop-bench-report`, serde alone), and it never depends on a product
//! crate, so it builds in seconds and keeps working while the library does not compile. Work that
//! needs the library (the benchmark suite) runs as a separate `cargo run`.

mod bench;
mod chaos;

use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  bench [--quick] [--compare-python]
      run the end-to-end benchmark suite in release mode and print one table; writes
      target/bench/results.json, target/bench/results.md and target/bench/sweep.svg
      --quick           short run that proves the harness works (CI); not for judging speed
      --compare-python  also run the no-op maps and the shared-memory reads on Python's
                        multiprocessing.Pool and the same workloads 1-7 on aiomultiprocess, if
                        installed
  it [ARGS...]
      the integration runs: the tests that start real worker processes (the facade's, the
      misbehaving-peer, fault and parent-death tests, and the crawler's), ARGS passed to cargo test
  ci
      the local CI gate, .ci/run: fmt, clippy, doc, the README's test command, chaos and bench
      in their quick modes
  chaos [--quick] [--tasks N] [--processes N] [--kill-every-ms N] [--stop-one-in N]
      map a large mix of tasks (sleeps, CPU, thread-blocking, 1% panics) while SIGKILLing (or, one
      time in N, SIGSTOPping) a random worker every 50 ms, beside pools of misbehaving peers;
      prints one table and fails if a task was lost, hung or wrong or a process was left behind";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The cargo that runs xtask, so the same toolchain builds everything.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The workspace root: xtask's manifest directory's parent.
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Into::into).unwrap_or_default()
}

/// Runs a command to completion; its exit status becomes ours.
fn run_status(command: &mut Command) -> anyhow::Result<ExitCode> {
    let status = command.status()?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn run() -> anyhow::Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    match command.as_deref() {
        Some("bench") => bench::run(bench::Config::from_args(&rest)?),
        Some("chaos") => chaos::run(&rest),
        Some("it") => run_status(
            Command::new(cargo())
                .args(["test", "-p", "polyloop", "-p", "polyloop-tests-integration", "-p", "crawl"])
                .args(&rest),
        ),
        Some("ci") => run_status(Command::new("bash").arg(".ci/run").current_dir(workspace_root())),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => anyhow::bail!("unknown command `{other}`\n\n{USAGE}"),
        None => anyhow::bail!("no command given\n\n{USAGE}"),
    }
}
