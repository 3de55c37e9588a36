//! The benchmark report: which figures make the table, their targets, and how they are written.
//!
//! The targets are the project's performance goals, each a ratio or bound within one run. They
//! are judged here, in one place, and only here: `cargo test` never asserts on timing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use polyloop_bench_report::{Figures, Params, RunParams, SuiteReport, Sweep};
use serde::{Serialize, Serializer};

use super::{Config, Machine, PythonReport};

/// How a figure is printed, and which direction is better.
#[derive(Debug, Clone, Copy)]
enum Unit {
    PerSec,
    Micros,
    Millis,
    Seconds,
    /// A ratio to an ideal, where 1.0 is perfect and lower is better.
    RatioToIdeal,
    /// A speedup factor, higher is better.
    Speedup,
    MibPerSec,
    Mib,
}

impl Unit {
    fn higher_is_better(self) -> bool {
        matches!(self, Unit::PerSec | Unit::Speedup | Unit::MibPerSec)
    }

    fn name(self) -> &'static str {
        match self {
            Unit::PerSec => "tasks/s",
            Unit::Micros => "us",
            Unit::Millis => "ms",
            Unit::Seconds => "s",
            Unit::RatioToIdeal => "ratio",
            Unit::Speedup => "x",
            Unit::MibPerSec => "MiB/s",
            Unit::Mib => "MiB",
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Unit::PerSec if value >= 1e6 => format!("{:.2} M/s", value / 1e6),
            Unit::PerSec if value >= 1e3 => format!("{:.1} k/s", value / 1e3),
            Unit::PerSec => format!("{value:.0} /s"),
            Unit::Micros if value >= 1e3 => format!("{:.2} ms", value / 1e3),
            Unit::Micros if value >= 10.0 => format!("{value:.1} µs"),
            Unit::Micros => format!("{value:.2} µs"),
            Unit::Millis if value >= 1e3 => format!("{:.2} s", value / 1e3),
            Unit::Millis if value >= 10.0 => format!("{value:.1} ms"),
            Unit::Millis => format!("{value:.2} ms"),
            Unit::Seconds => format!("{value:.3} s"),
            Unit::RatioToIdeal => format!("{value:.3}"),
            Unit::Speedup => format!("{value:.2}x"),
            Unit::MibPerSec if value >= 1024.0 => format!("{:.2} GiB/s", value / 1024.0),
            Unit::MibPerSec => format!("{value:.0} MiB/s"),
            Unit::Mib => format!("{value:.2} MiB"),
        }
    }
}

/// A performance target.
#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
    /// At most `factor` times a raw limit measured in the same run.
    AtMostTimesRaw {
        factor: f64,
        raw_key: &'static str,
    },
}

/// One row of the table.
#[derive(Debug)]
struct RowSpec {
    key: &'static str,
    /// The workload's name, quoting the sizes of the run so quick runs label their sizes.
    label: fn(&Params) -> String,
    unit: Unit,
    target: Target,
    /// Raw limits of the machine measured in the same run, in the row's unit.
    raw_keys: &'static [&'static str],
}

const ROWS: &[RowSpec] = &[
    RowSpec {
        key: "noop_map_small",
        label: |p| format!("1. no-op map, {} u64 inputs, default settings", grouped(p.noop_small)),
        unit: Unit::PerSec,
        target: Target::AtLeast(5e6),
        raw_keys: &[],
    },
    RowSpec {
        key: "noop_map_large",
        label: |p| format!("1. no-op map, {} u64 inputs, default settings", grouped(p.noop_large)),
        unit: Unit::PerSec,
        target: Target::AtLeast(5e6),
        raw_keys: &[],
    },
    RowSpec {
        key: "apply_p50_us",
        label: |_| {
            "2. apply round trip, p50 (raw: 32 B socketpair echo, receiver asleep)".to_owned()
        },
        unit: Unit::Micros,
        target: Target::AtMostTimesRaw { factor: 1.2, raw_key: "socketpair_rtt_p50_us" },
        raw_keys: &["socketpair_rtt_p50_us"],
    },
    RowSpec {
        key: "apply_p99_us",
        label: |_| "2. apply round trip, p99".to_owned(),
        unit: Unit::Micros,
        target: Target::AtMostTimesRaw { factor: 1.2, raw_key: "socketpair_rtt_p99_us" },
        raw_keys: &["socketpair_rtt_p99_us"],
    },
    RowSpec {
        key: "sleep_s",
        label: |p| {
            format!(
                "3. {} x sleep({} ms), concurrency {}/child (raw: ideal)",
                grouped(p.sleep_tasks),
                grouped(p.sleep_ms),
                grouped(p.sleep_concurrency)
            )
        },
        unit: Unit::Seconds,
        target: Target::None,
        raw_keys: &["sleep_ideal_s"],
    },
    RowSpec {
        key: "sleep_vs_ideal",
        label: |_| "3. the same, time / ideal".to_owned(),
        unit: Unit::RatioToIdeal,
        target: Target::AtMost(1.02),
        raw_keys: &[],
    },
    RowSpec {
        key: "sleep_many_s",
        label: |p| {
            format!(
                "3. {} x sleep({} ms), concurrency {}/child",
                grouped(p.sleep_many),
                grouped(p.sleep_ms),
                grouped(p.sleep_many_concurrency)
            )
        },
        unit: Unit::Seconds,
        target: Target::Below(1.0),
        raw_keys: &["sleep_many_ideal_s"],
    },
    RowSpec {
        key: "cpu_small_speedup",
        label: |p| {
            format!(
                "4. {} CPU tasks of {} ms, speedup over serial",
                grouped(p.cpu_small),
                grouped(p.cpu_task_ms)
            )
        },
        unit: Unit::Speedup,
        target: Target::AtLeast(1.9),
        raw_keys: &["cpu_ideal_speedup"],
    },
    RowSpec {
        key: "cpu_large_speedup",
        label: |p| {
            format!(
                "4. {} CPU tasks of {} ms, speedup over serial",
                grouped(p.cpu_large),
                grouped(p.cpu_task_ms)
            )
        },
        unit: Unit::Speedup,
        target: Target::None,
        raw_keys: &["cpu_ideal_speedup"],
    },
    RowSpec {
        key: "result_1mib_mib_s",
        label: |p| {
            format!(
                "5. {} tasks returning 1 MiB (raw: socketpair, default / 4 MiB buffers)",
                grouped(p.result_tasks)
            )
        },
        unit: Unit::MibPerSec,
        target: Target::AtLeast(5.0 * 1024.0),
        raw_keys: &["socketpair_bw_default_mib_s", "socketpair_bw_4mib_mib_s"],
    },
    RowSpec {
        key: "ready_ms",
        label: |p| {
            format!(
                "6. build() to {} workers ready (raw: re-exec to first byte)",
                grouped(p.processes as u64)
            )
        },
        unit: Unit::Millis,
        target: Target::AtMost(5.0),
        raw_keys: &["reexec_first_byte_ms"],
    },
    RowSpec {
        key: "close_ms",
        label: |_| "6. close() of that pool".to_owned(),
        unit: Unit::Millis,
        target: Target::None,
        raw_keys: &[],
    },
    RowSpec {
        key: "worker_rss_mib",
        label: |_| "7. peak RSS of a worker, VmHWM (raw: the harness's echo peer)".to_owned(),
        unit: Unit::Mib,
        target: Target::AtMost(4.0),
        raw_keys: &["peer_rss_mib"],
    },
];

/// The merged figures of one run.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    quick: bool,
    suite: &'a SuiteReport,
    python: Option<&'a PythonReport>,
    machine: Machine,
    rows: Vec<Row>,
}

/// One row, evaluated.
#[derive(Debug)]
struct Row {
    spec: &'static RowSpec,
    label: String,
    polyloop: Option<f64>,
    error: Option<String>,
    target_text: String,
    met: Option<bool>,
    reference: Option<f64>,
    raw: Vec<Option<f64>>,
    aiomp: Option<f64>,
    aiomp_error: Option<String>,
    /// How many times better polyloop is than aiomultiprocess.
    vs_aiomp: Option<f64>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(
        config: &Config,
        suite: &'a SuiteReport,
        python: Option<&'a PythonReport>,
        machine: Machine,
    ) -> Report<'a> {
        let rows = ROWS
            .iter()
            .map(|spec| {
                let polyloop = suite.polyloop.get(spec.key);
                let raw: Vec<Option<f64>> =
                    spec.raw_keys.iter().map(|k| suite.raw.get(k)).collect();
                let (target_text, met) = judge(spec, polyloop, &suite.raw);
                let aiomp = python.and_then(|doc| doc.aiomultiprocess.get(spec.key));
                let vs_aiomp = match (polyloop, aiomp) {
                    (Some(p), Some(a)) if p > 0.0 && a > 0.0 => {
                        Some(if spec.unit.higher_is_better() { p / a } else { a / p })
                    }
                    _ => None,
                };
                Row {
                    spec,
                    label: (spec.label)(&suite.params.sizes),
                    polyloop,
                    error: suite.errors.get(spec.key).cloned(),
                    target_text,
                    met,
                    reference: suite.reference.get(spec.key),
                    raw,
                    aiomp,
                    aiomp_error: python.and_then(|doc| doc.errors.get(spec.key).cloned()),
                    vs_aiomp,
                }
            })
            .collect();
        Report { quick: config.quick || suite.quick, suite, python, machine, rows }
    }

    /// Keys of the figures the suite failed to measure.
    pub(crate) fn failed_workloads(&self) -> Vec<String> {
        let mut failed: Vec<String> = self.suite.errors.keys().cloned().collect();
        for row in &self.rows {
            if row.polyloop.is_none() && !failed.iter().any(|k| k == row.spec.key) {
                failed.push(row.spec.key.to_owned());
            }
        }
        failed
    }

    fn header(&self) -> Vec<&'static str> {
        let mut header =
            vec!["workload", "polyloop", "target", "met", "in-process tokio", "raw limit"];
        if self.python.is_some() {
            header.extend(["aiomultiprocess", "polyloop vs aiomp"]);
        }
        header
    }

    fn cells(&self) -> Vec<Vec<String>> {
        let dash = || "-".to_owned();
        self.rows
            .iter()
            .map(|row| {
                let unit = row.spec.unit;
                let polyloop = match (row.polyloop, &row.error) {
                    (Some(v), _) => unit.format(v),
                    (None, Some(_)) => "FAILED".to_owned(),
                    (None, None) => "n/a".to_owned(),
                };
                let met = match row.met {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "",
                };
                let raw = if row.raw.iter().all(Option::is_none) {
                    dash()
                } else {
                    row.raw
                        .iter()
                        .map(|v| v.map_or_else(|| "n/a".to_owned(), |v| unit.format(v)))
                        .collect::<Vec<_>>()
                        .join(" / ")
                };
                let mut cells = vec![
                    row.label.clone(),
                    polyloop,
                    row.target_text.clone(),
                    met.to_owned(),
                    row.reference.map_or_else(dash, |v| unit.format(v)),
                    raw,
                ];
                if self.python.is_some() {
                    cells.push(match (row.aiomp, &row.aiomp_error) {
                        (Some(v), _) => unit.format(v),
                        (None, Some(_)) => "FAILED".to_owned(),
                        (None, None) => dash(),
                    });
                    cells.push(row.vs_aiomp.map_or_else(dash, |r| format!("{}x", sig3(r))));
                }
                cells
            })
            .collect()
    }

    /// The table as padded Markdown, which reads well in a terminal too.
    pub(crate) fn terminal_table(&self) -> String {
        let header = self.header();
        let cells = self.cells();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, row: &[String]| {
            out.push('|');
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                // Figures align right, the workload name left.
                let pad = width - cell.chars().count();
                if i == 0 {
                    let _ = write!(out, " {cell}{} |", " ".repeat(pad));
                } else {
                    let _ = write!(out, " {}{cell} |", " ".repeat(pad));
                }
            }
            out.push('\n');
        };
        line(&mut out, &header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>());
        out.push('|');
        for (i, width) in widths.iter().enumerate() {
            let dashes = "-".repeat(*width);
            let _ = write!(
                out,
                "{}|",
                if i == 0 { format!(" {dashes} ") } else { format!(" {dashes}:") }
            );
        }
        out.push('\n');
        for row in &cells {
            line(&mut out, row);
        }
        let judged = self.rows.iter().filter(|r| r.met.is_some()).count();
        let met = self.rows.iter().filter(|r| r.met == Some(true)).count();
        let _ = writeln!(out, "\ntargets met: {met} of {judged}");
        if self.quick {
            out.push_str("--quick: sizes reduced; these figures prove the harness works, they do not judge speed\n");
        }
        out
    }

    pub(crate) fn markdown(&self) -> String {
        let mut md = String::from("# polyloop benchmark results\n\n");
        let machine = &self.machine;
        let _ = writeln!(
            md,
            "Measured by `cargo xtask bench{}{}` on {} CPUs ({}), Linux {}, commit `{}`; \
             processes = {} unless stated.\n",
            if self.quick { " --quick" } else { "" },
            if self.python.is_some() { " --compare-python" } else { "" },
            machine.cpus,
            machine.cpu_model,
            machine.kernel,
            machine.commit,
            self.suite.params.sizes.processes,
        );
        let cpus = machine.cpus as f64;
        if let (Some(before), Some(after)) = (machine.load_before, machine.load_after) {
            let _ = write!(
                md,
                "One-minute load average {before:.2} before the run, {after:.2} after it (the run's own \
                 load included)."
            );
            if before > 0.25 * cpus.max(1.0) {
                md.push_str(
                    " Other work was running when it started: absolute figures are noisy, ratios \
                     taken within the run less so.",
                );
            }
            md.push_str("\n\n");
        }
        if self.quick {
            md.push_str(
                "**Quick run**: sizes are reduced; these figures prove the harness works and do \
                 not judge speed.\n\n",
            );
        }
        md.push_str(
            &self.terminal_table().lines().take(self.rows.len() + 4).collect::<Vec<_>>().join("\n"),
        );
        md.push_str("\n\n");
        md.push_str(
            "- **in-process tokio**: the same work done by tokio tasks in one process (a \
             multi-threaded runtime with one worker thread per pool process), the ceiling a \
             process pool approaches.\n\
             - **raw limit**: measured in the same run between two of the harness's own \
             processes over a Unix socketpair (std and libc only), or the ideal time of the \
             workload.\n\
             - **met**: the project's target for the figure. Ratios are taken within this \
             one run.\n",
        );
        if let Some(python) = self.python {
            let _ = writeln!(
                md,
                "- **aiomultiprocess** {} on Python {}, same workloads \
                 (`benches/python/aiomp_suite.py`); *polyloop vs aiomp* is how many times better \
                 polyloop is.",
                python.version, python.python,
            );
        }
        md.push_str("\n## Sweep: throughput against child concurrency\n\n![sweep](sweep.svg)\n\n");
        let sweep = &self.suite.sweep;
        let _ = writeln!(md, "No-op map of {} u64 inputs.\n", sweep.n);
        md.push_str("| series | child concurrency | tasks/s |\n| --- | ---: | ---: |\n");
        for point in &sweep.points {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                point.series,
                point.child_concurrency,
                Unit::PerSec.format(point.tasks_per_s)
            );
        }
        let sides = [
            Some(("polyloop", &self.suite.errors)),
            self.python.map(|p| ("aiomultiprocess", &p.errors)),
        ];
        let failures: Vec<_> = sides
            .into_iter()
            .flatten()
            .flat_map(|(who, errors)| errors.iter().map(move |(key, message)| (who, key, message)))
            .collect();
        if !failures.is_empty() {
            md.push_str("\n## Failures\n\n");
            for (who, key, message) in failures {
                let _ = writeln!(md, "- `{who}: {key}`: {message}");
            }
        }
        md
    }

    /// What `results.json` holds: the rows as judged, beside everything both sides reported.
    pub(crate) fn json(&self) -> Results<'_> {
        let rows = self
            .rows
            .iter()
            .map(|row| ResultsRow {
                key: row.spec.key,
                workload: &row.label,
                unit: row.spec.unit.name(),
                polyloop: row.polyloop,
                target: &row.target_text,
                target_met: row.met,
                reference: row.reference,
                raw: RawFigures(row),
                aiomultiprocess: row.aiomp,
                polyloop_vs_aiomultiprocess: row.vs_aiomp,
            })
            .collect();
        Results {
            quick: self.quick,
            machine: &self.machine,
            params: &self.suite.params,
            rows,
            raw: &self.suite.raw,
            sweep: &self.suite.sweep,
            errors: &self.suite.errors,
            suite: self.suite,
            aiomultiprocess: self.python,
        }
    }
}

/// The document written to `results.json`.
#[derive(Debug, Serialize)]
pub(crate) struct Results<'a> {
    quick: bool,
    machine: &'a Machine,
    params: &'a RunParams,
    rows: Vec<ResultsRow<'a>>,
    raw: &'a Figures,
    sweep: &'a Sweep,
    errors: &'a BTreeMap<String, String>,
    suite: &'a SuiteReport,
    aiomultiprocess: Option<&'a PythonReport>,
}

/// One row of the table in `results.json`, its figures unformatted.
#[derive(Debug, Serialize)]
struct ResultsRow<'a> {
    key: &'static str,
    workload: &'a str,
    unit: &'static str,
    polyloop: Option<f64>,
    target: &'a str,
    target_met: Option<bool>,
    reference: Option<f64>,
    raw: RawFigures<'a>,
    aiomultiprocess: Option<f64>,
    polyloop_vs_aiomultiprocess: Option<f64>,
}

/// A row's raw figures as an object from key to figure, in the order the row lists them.
#[derive(Debug)]
struct RawFigures<'a>(&'a Row);

impl Serialize for RawFigures<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.spec.raw_keys.iter().zip(&self.0.raw))
    }
}

/// The target's text and whether the figure meets it.
fn judge(spec: &RowSpec, value: Option<f64>, raw: &Figures) -> (String, Option<bool>) {
    let unit = spec.unit;
    let (text, limit) = match spec.target {
        Target::None => return ("-".to_owned(), None),
        Target::AtLeast(v) => {
            (format!(">= {}", unit.format(v)), Some((v, f64::ge as fn(&f64, &f64) -> bool)))
        }
        Target::AtMost(v) => {
            (format!("<= {}", unit.format(v)), Some((v, f64::le as fn(&f64, &f64) -> bool)))
        }
        Target::Below(v) => {
            (format!("< {}", unit.format(v)), Some((v, f64::lt as fn(&f64, &f64) -> bool)))
        }
        Target::AtMostTimesRaw { factor, raw_key } => match raw.get(raw_key) {
            Some(raw) => {
                let limit = factor * raw;
                (
                    format!("<= {factor}x raw = {}", unit.format(limit)),
                    Some((limit, f64::le as fn(&f64, &f64) -> bool)),
                )
            }
            None => (format!("<= {factor}x raw"), None),
        },
    };
    let met = match (value, limit) {
        (Some(v), Some((limit, cmp))) => Some(cmp(&v, &limit)),
        _ => None,
    };
    (text, met)
}

/// `n` with thousands separators.
fn grouped(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits, for ratios that span from 0.5 to 1000.
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_measured_by_the_suite_and_the_python_script() {
        // The suite and the script are other programs; their sources must at least name each
        // key this table reads, or a renamed key would silently show as n/a.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
        let suite = read("benches/src/bin/suite.rs");
        let python = read("benches/python/aiomp_suite.py");
        for row in ROWS {
            let quoted = format!("\"{}\"", row.key);
            assert!(suite.contains(&quoted), "suite.rs never reports {quoted}");
            assert!(python.contains(&quoted), "aiomp_suite.py never reports {quoted}");
            for raw in row.raw_keys {
                assert!(suite.contains(&format!("\"{raw}\"")), "suite.rs never reports {raw}");
            }
        }
    }

    #[test]
    fn labels_quote_the_sizes_with_grouped_numbers() {
        assert_eq!(
            (ROWS[0].label)(&Params::new(false)),
            "1. no-op map, 100,000 u64 inputs, default settings"
        );
        assert_eq!(grouped(1_000_000u64), "1,000,000");
        assert_eq!(grouped(100u32), "100");
        assert_eq!(grouped(0u32), "0");
    }

    #[test]
    fn judges_targets_against_raw_figures() {
        let mut raw = Figures::default();
        raw.insert("socketpair_rtt_p50_us", 50.0);
        let spec = ROWS.iter().find(|r| r.key == "apply_p50_us").unwrap();
        assert_eq!(judge(spec, Some(59.0), &raw).1, Some(true));
        assert_eq!(judge(spec, Some(61.0), &raw).1, Some(false));
        assert_eq!(judge(spec, Some(61.0), &Figures::default()).1, None);
        let rss = ROWS.iter().find(|r| r.key == "worker_rss_mib").unwrap();
        assert_eq!(judge(rss, Some(3.5), &raw), ("<= 4.00 MiB".to_owned(), Some(true)));
    }

    #[test]
    fn renders_a_report_with_missing_and_failed_figures() {
        let mut params = Params::new(true);
        params.noop_small = 1000;
        let mut suite = SuiteReport::new(params);
        suite.polyloop.insert("noop_map_small", 6e6);
        suite.polyloop.insert("apply_p50_us", 70.0);
        suite.reference.insert("noop_map_small", 2e7);
        suite.raw.insert("socketpair_rtt_p50_us", 60.0);
        suite.errors.insert("noop_map_large".to_owned(), "worker lost".to_owned());
        // As `aiomp_suite.py` writes it.
        let python: PythonReport = serde_json::from_str(
            r#"{"suite": "aiomultiprocess", "version": "0.9.1", "python": "3.12.3",
                "quick": true, "params": {"processes": 2, "noop_small": 1000},
                "aiomultiprocess": {"noop_map_small": 40000.0, "ready_ms": 310},
                "errors": {"sleep_s": "timed out after 60 s"}}"#,
        )
        .unwrap();
        let report = Report::new(&Config::default(), &suite, Some(&python), Machine::default());
        let table = report.terminal_table();
        assert!(table.contains("| 1. no-op map, 1,000 u64 inputs, default settings "), "{table}");
        assert!(table.contains("6.00 M/s"), "{table}");
        assert!(table.contains("FAILED"), "{table}");
        assert!(table.contains("150x"), "{table}");
        assert!(report.failed_workloads().contains(&"noop_map_large".to_owned()));
        let md = report.markdown();
        assert!(md.contains("## Failures"), "{md}");
        assert!(md.contains("- `aiomultiprocess: sleep_s`: timed out after 60 s"), "{md}");
        assert!(md.contains("Quick run"), "{md}");
        let json = serde_json::to_value(report.json()).unwrap();
        assert_eq!(json["rows"].as_array().unwrap().len(), ROWS.len());
        assert_eq!(json["rows"][2]["raw"]["socketpair_rtt_p50_us"], 60.0);
        assert_eq!(json["suite"], serde_json::to_value(&suite).unwrap());
        assert_eq!(json["aiomultiprocess"]["params"]["noop_small"], 1000);
    }
}
