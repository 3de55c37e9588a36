//! `cargo xtask chaos [--quick] [...]`: runs the chaos binary of tests-integration in release mode.
//!
//! The binary maps a large mix of tasks while it SIGKILLs and SIGSTOPs random workers, beside
//! pools of misbehaving peers, prints one table, and exits non-zero if any task was lost, hung or
//! got a wrong value, or a process or fd was left behind.

use std::process::{Command, ExitCode};

pub(crate) fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    // The run starts pools whose worker is the misbehaving `fake_worker`, found beside it.
    let mut build = Command::new(crate::cargo());
    build
        .args(["build", "--quiet", "--release", "--package", "polyloop-tests-integration"])
        .args(["--bin", "chaos", "--bin", "fake_worker"]);
    if crate::run_status(&mut build)? != ExitCode::SUCCESS {
        return Ok(ExitCode::FAILURE);
    }
    let mut command = Command::new(crate::cargo());
    command
        .args(["run", "--quiet", "--release", "--package", "polyloop-tests-integration"])
        .args(["--bin", "chaos", "--"])
        .args(args);
    crate::run_status(&mut command)
}
