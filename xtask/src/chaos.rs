//! `cargo xtask chaos [--quick] [...]`: runs the chaos binary of tests-integration in release mode.
//!
//! The binary maps a large mix of tasks while it SIGKILLs random workers, prints one table, and
//! exits non-zero if any task was lost or hung, or a process or fd was left behind.

use std::process::{Command, ExitCode};

pub(crate) fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let mut command = Command::new(crate::cargo());
    command
        .args(["run", "--quiet", "--release", "--package", "polyloop-tests-integration"])
        .args(["--bin", "chaos", "--"])
        .args(args);
    crate::run_status(&mut command)
}
