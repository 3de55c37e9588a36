//! `cargo xtask bench`: runs the end-to-end suite, optionally the Python baselines, and reports.
//!
//! The suite itself is the `suite` binary of `polyloop-benches` (it needs the library, which xtask
//! must not link). It prints progress to stderr and writes its figures as JSON, a `SuiteReport` of
//! `polyloop-bench-report`; with `--compare-python`, `benches/python/mp_pool_suite.py`
//! (multiprocessing.Pool) and `benches/python/aiomp_suite.py` (aiomultiprocess) each write a
//! [`PythonReport`]. This module merges them into one table against the project's targets,
//! printed to stdout and written to `target/bench/results.{json,md}`, and draws the concurrency
//! sweep as `target/bench/sweep.svg`.

mod plot;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context as _;
use polyloop_bench_report::{Figures, SuiteReport};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What `cargo xtask bench` was asked to do.
#[derive(Debug, Default)]
pub(crate) struct Config {
    /// Reduced sizes: proves the harness works, not how fast polyloop is.
    pub(crate) quick: bool,
    /// Also run the workloads on multiprocessing.Pool and, when `python3` can import it,
    /// aiomultiprocess.
    pub(crate) compare_python: bool,
}

impl Config {
    pub(crate) fn from_args(args: &[String]) -> anyhow::Result<Config> {
        let mut config = Config::default();
        for arg in args {
            match arg.as_str() {
                "--quick" => config.quick = true,
                "--compare-python" => config.compare_python = true,
                other => anyhow::bail!(
                    "unknown argument `{other}` to `bench` (expected --quick, --compare-python)"
                ),
            }
        }
        Ok(config)
    }
}

/// The harness's inputs and outputs on disk.
#[derive(Debug)]
struct Paths {
    workspace: PathBuf,
    /// `<target>/bench`, created on start.
    out_dir: PathBuf,
}

impl Paths {
    fn discover(cargo: &str) -> anyhow::Result<Paths> {
        // xtask lives one level below the workspace root.
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent directory")?
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => workspace.join(dir),
            None => target_dir_from_metadata(cargo, &workspace)
                .unwrap_or_else(|_| workspace.join("target")),
        };
        let out_dir = target.join("bench");
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        Ok(Paths { workspace, out_dir })
    }
}

fn target_dir_from_metadata(cargo: &str, workspace: &Path) -> anyhow::Result<PathBuf> {
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace)
        .stderr(Stdio::null())
        .output()?;
    anyhow::ensure!(output.status.success(), "cargo metadata failed");
    /// The one field of `cargo metadata`'s output needed here.
    #[derive(Debug, Deserialize)]
    struct Metadata {
        target_directory: PathBuf,
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)?;
    Ok(metadata.target_directory)
}

pub(crate) fn run(config: Config) -> anyhow::Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let paths = Paths::discover(&cargo)?;
    let started = Instant::now();
    let load_before = load_average();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    if let Some(load) = load_before.filter(|load| *load > 0.25 * cpus) {
        eprintln!(
            "xtask: the load average is {load:.2} on {cpus} CPUs: other work shares this machine, \
             so absolute figures will be noisy"
        );
    }

    let suite_json = paths.out_dir.join("suite.json");
    // A stale file must never pass for this run's figures.
    let _ = std::fs::remove_file(&suite_json);
    eprintln!("xtask: building and running the polyloop suite (release){}", quick_note(&config));
    let mut suite = Command::new(&cargo);
    suite.args(["run", "--release", "--quiet", "-p", "polyloop-benches", "--bin", "suite", "--"]);
    if config.quick {
        suite.arg("--quick");
    }
    suite.arg("--json").arg(&suite_json).current_dir(&paths.workspace);
    let status = suite.status().context("cannot run cargo")?;
    let suite_doc: SuiteReport = read_report(&suite_json).with_context(|| {
        format!("the suite ({status}) wrote no usable report to {}", suite_json.display())
    })?;
    if !status.success() {
        eprintln!("xtask: the suite exited with {status}; reporting what it measured");
    }

    let python = config.compare_python.then(|| run_python(&config, &paths));

    let machine = machine_info(load_before, load_average());
    let report = table::Report::new(&config, &suite_doc, python.as_ref(), machine);
    let markdown = report.markdown();
    println!("{}", report.terminal_table());

    let svg = plot::sweep_svg(&suite_doc.sweep);
    let results = serde_json::to_string_pretty(&report.json())? + "\n";
    let outputs = [("results.json", results), ("results.md", markdown), ("sweep.svg", svg)];
    for (name, contents) in &outputs {
        let path = paths.out_dir.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "xtask: wrote {} (results.json, results.md, sweep.svg) in {:.0} s",
        paths.out_dir.display(),
        started.elapsed().as_secs_f64()
    );

    let failures = report.failed_workloads();
    if failures.is_empty() && status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask: {} workload(s) failed: {}", failures.len(), failures.join(", "));
        // Again at the end, where a log cut to its last lines still shows why.
        let reasons: std::collections::BTreeSet<&String> = report.errors().collect();
        for reason in reasons {
            eprintln!("xtask: failed: {reason}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn quick_note(config: &Config) -> &'static str {
    if config.quick { ", quick mode: sizes reduced, figures not for judging speed" } else { "" }
}

/// Reads a report, which must have the shape of `T`.
fn read_report<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid report", path.display()))
}

/// What a script under `benches/python/` writes: its figures, under the suite's workload keys.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PythonReport {
    /// `multiprocessing.Pool` or `aiomultiprocess`.
    suite: String,
    /// The version of what was measured (Python's for multiprocessing), `?` when it does not say.
    version: String,
    /// The version of the Python that ran it.
    python: String,
    quick: bool,
    /// The script's sizes, which follow the suite's where the package allows; only passed on.
    params: serde_json::Value,
    figures: Figures,
    /// The chunksize that gave a figure, for a figure that is the best of several.
    #[serde(default)]
    chunksize: BTreeMap<String, u64>,
    /// Every chunksize's figure, by chunksize, where the figure is the best of them.
    #[serde(default)]
    by_chunksize: BTreeMap<String, Figures>,
    /// Why a figure is missing, by the key of the workload that failed.
    errors: BTreeMap<String, String>,
}

/// One Python column of `--compare-python`: what its script reported, or why there is none.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum PythonSide {
    Ran(PythonReport),
    /// A few words for the column instead of figures: `no python3`, `not installed`, ...
    Missing(String),
}

impl PythonSide {
    fn report(&self) -> Option<&PythonReport> {
        match self {
            PythonSide::Ran(report) => Some(report),
            PythonSide::Missing(_) => None,
        }
    }
}

/// Both Python baselines of one run.
#[derive(Debug, Serialize)]
pub(crate) struct Python {
    mp_pool: PythonSide,
    aiomultiprocess: PythonSide,
}

/// Runs the Python scripts that can run here; a side that cannot says why, in its column.
fn run_python(config: &Config, paths: &Paths) -> Python {
    if !python_imports("multiprocessing") {
        eprintln!(
            "xtask: --compare-python: `python3` does not run here; install Python 3 to add the \
             multiprocessing.Pool and aiomultiprocess columns"
        );
        let missing = || PythonSide::Missing("no python3".to_owned());
        return Python { mp_pool: missing(), aiomultiprocess: missing() };
    }
    let mp_pool = run_script(config, paths, "multiprocessing.Pool", "mp_pool_suite.py", "mp_pool");
    let aiomultiprocess = if python_imports("aiomultiprocess") {
        run_script(config, paths, "aiomultiprocess", "aiomp_suite.py", "aiomultiprocess")
    } else {
        eprintln!(
            "xtask: --compare-python: `python3 -c \"import aiomultiprocess\"` failed; \
             install it with `pip install aiomultiprocess` to add its column"
        );
        PythonSide::Missing("not installed".to_owned())
    };
    Python { mp_pool, aiomultiprocess }
}

/// Whether `python3 -c "import <module>"` succeeds.
fn python_imports(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `benches/python/<script>`, which writes `<target>/bench/<name>.json`.
fn run_script(config: &Config, paths: &Paths, what: &str, script: &str, name: &str) -> PythonSide {
    let out = paths.out_dir.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&out);
    eprintln!("xtask: running the same workloads on {what}");
    let mut command = Command::new("python3");
    command.arg(paths.workspace.join("benches/python").join(script));
    if config.quick {
        command.arg("--quick");
    }
    let status = command.arg("--json").arg(&out).status();
    match read_report(&out) {
        Ok(doc) => PythonSide::Ran(doc),
        Err(err) => {
            let ran = status.map_or_else(|err| err.to_string(), |s| s.to_string());
            eprintln!("xtask: {what} run ({ran}) produced no report: {err:#}");
            PythonSide::Missing("FAILED".to_owned())
        }
    }
}

/// The one-minute load average, which tells whether other work shared the machine.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A few facts about the machine, for the report's header.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Machine {
    /// 0 when the OS does not tell.
    cpus: usize,
    cpu_model: String,
    kernel: String,
    /// The short hash of the checked-out commit, empty outside a git checkout.
    commit: String,
    /// Seconds since the Unix epoch when the run ended.
    unix_time: u64,
    /// The one-minute load average before and after the run, where the OS tells it.
    load_before: Option<f64>,
    load_after: Option<f64>,
}

/// The facts of this machine, with the load averages taken around the run.
fn machine_info(load_before: Option<f64>, load_after: Option<f64>) -> Machine {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| std::env::consts::OS.to_owned(), |s| s.trim().to_owned());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Machine { cpus, cpu_model, kernel, commit, unix_time, load_before, load_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_figures_to_the_last_digit() {
        // A figure as the suite wrote it: serde_json's default, faster float parsing reads it one
        // unit in the last place off, as 1.8053834247457063.
        let text = r#"{"cpu_large_speedup": 1.8053834247457066}"#;
        let figures: Figures = serde_json::from_str(text).unwrap();
        assert_eq!(figures.get("cpu_large_speedup"), Some(1.8053834247457066));
    }
}
