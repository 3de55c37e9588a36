//! `cargo xtask chaos [--quick] [...]`: runs the chaos binary of tests-integration in release mode.
//!
//! The binary maps a large mix of tasks while it SIGKILLs random workers, prints one table, and
//! exits non-zero if any task was lost or hung, or a process or fd was left behind.

use std::process::{Command, ExitCode};

pub(crate) fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "polyloop-tests-integration",
            "--bin",
            "chaos",
            "--",
        ])
        .args(args)
        .status()?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
