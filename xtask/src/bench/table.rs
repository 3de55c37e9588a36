//! The benchmark report: which figures make the table, their targets, and how they are written.
//!
//! The targets are the ones of the design brief (section 6). They are judged here, in one place,
//! and only here: `cargo test` never asserts on timing.

use std::fmt::Write as _;

use super::Config;
use crate::json::Json;

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

/// A target of the brief.
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
    /// `{name}` is replaced by the suite's parameter `name`, so quick runs label their sizes.
    label: &'static str,
    unit: Unit,
    target: Target,
    /// Raw limits of the machine measured in the same run, in the row's unit.
    raw_keys: &'static [&'static str],
}

const ROWS: &[RowSpec] = &[
    RowSpec {
        key: "noop_map_small",
        label: "1. no-op map, {noop_small} u64 inputs, default settings",
        unit: Unit::PerSec,
        target: Target::AtLeast(5e6),
        raw_keys: &[],
    },
    RowSpec {
        key: "noop_map_large",
        label: "1. no-op map, {noop_large} u64 inputs, default settings",
        unit: Unit::PerSec,
        target: Target::AtLeast(5e6),
        raw_keys: &[],
    },
    RowSpec {
        key: "apply_p50_us",
        label: "2. apply round trip, p50 (raw: 32 B socketpair echo, receiver asleep)",
        unit: Unit::Micros,
        target: Target::AtMostTimesRaw { factor: 1.2, raw_key: "socketpair_rtt_p50_us" },
        raw_keys: &["socketpair_rtt_p50_us"],
    },
    RowSpec {
        key: "apply_p99_us",
        label: "2. apply round trip, p99",
        unit: Unit::Micros,
        target: Target::AtMostTimesRaw { factor: 1.2, raw_key: "socketpair_rtt_p99_us" },
        raw_keys: &["socketpair_rtt_p99_us"],
    },
    RowSpec {
        key: "sleep_s",
        label: "3. {sleep_tasks} x sleep({sleep_ms} ms), concurrency {sleep_concurrency}/child \
                (raw: ideal)",
        unit: Unit::Seconds,
        target: Target::None,
        raw_keys: &["sleep_ideal_s"],
    },
    RowSpec {
        key: "sleep_vs_ideal",
        label: "3. the same, time / ideal",
        unit: Unit::RatioToIdeal,
        target: Target::AtMost(1.02),
        raw_keys: &[],
    },
    RowSpec {
        key: "sleep_many_s",
        label: "3. {sleep_many} x sleep({sleep_ms} ms), concurrency {sleep_many_concurrency}/child",
        unit: Unit::Seconds,
        target: Target::Below(1.0),
        raw_keys: &["sleep_many_ideal_s"],
    },
    RowSpec {
        key: "cpu_small_speedup",
        label: "4. {cpu_small} CPU tasks of {cpu_task_ms} ms, speedup over serial",
        unit: Unit::Speedup,
        target: Target::AtLeast(1.9),
        raw_keys: &["cpu_ideal_speedup"],
    },
    RowSpec {
        key: "cpu_large_speedup",
        label: "4. {cpu_large} CPU tasks of {cpu_task_ms} ms, speedup over serial",
        unit: Unit::Speedup,
        target: Target::None,
        raw_keys: &["cpu_ideal_speedup"],
    },
    RowSpec {
        key: "result_1mib_mib_s",
        label: "5. {result_tasks} tasks returning 1 MiB (raw: socketpair, default / 4 MiB buffers)",
        unit: Unit::MibPerSec,
        target: Target::AtLeast(5.0 * 1024.0),
        raw_keys: &["socketpair_bw_default_mib_s", "socketpair_bw_4mib_mib_s"],
    },
    RowSpec {
        key: "ready_ms",
        label: "6. build() to {processes} workers ready (raw: re-exec to first byte)",
        unit: Unit::Millis,
        target: Target::AtMost(5.0),
        raw_keys: &["reexec_first_byte_ms"],
    },
    RowSpec {
        key: "close_ms",
        label: "6. close() of that pool",
        unit: Unit::Millis,
        target: Target::None,
        raw_keys: &[],
    },
    RowSpec {
        key: "worker_rss_mib",
        label: "7. peak RSS of a worker, VmHWM (raw: the harness's echo peer)",
        unit: Unit::Mib,
        target: Target::AtMost(4.0),
        raw_keys: &["peer_rss_mib"],
    },
];

/// The merged figures of one run.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    quick: bool,
    suite: &'a Json,
    python: Option<&'a Json>,
    machine: Json,
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

fn metric(doc: &Json, section: &str, key: &str) -> Option<f64> {
    doc.get(section)?.get(key)?.as_f64()
}

fn error_of(doc: &Json, key: &str) -> Option<String> {
    doc.get("errors")?.get(key)?.as_str().map(str::to_owned)
}

impl<'a> Report<'a> {
    pub(crate) fn new(
        config: &Config,
        suite: &'a Json,
        python: Option<&'a Json>,
        machine: Json,
    ) -> Report<'a> {
        let params = suite.get("params").cloned().unwrap_or(Json::Null);
        let rows = ROWS
            .iter()
            .map(|spec| {
                let polyloop = metric(suite, "polyloop", spec.key);
                let raw: Vec<Option<f64>> =
                    spec.raw_keys.iter().map(|k| metric(suite, "raw", k)).collect();
                let (target_text, met) = judge(spec, polyloop, suite);
                let aiomp = python.and_then(|doc| metric(doc, "aiomultiprocess", spec.key));
                let vs_aiomp = match (polyloop, aiomp) {
                    (Some(p), Some(a)) if p > 0.0 && a > 0.0 => {
                        Some(if spec.unit.higher_is_better() { p / a } else { a / p })
                    }
                    _ => None,
                };
                Row {
                    spec,
                    label: fill_template(spec.label, &params),
                    polyloop,
                    error: error_of(suite, spec.key),
                    target_text,
                    met,
                    reference: metric(suite, "reference", spec.key),
                    raw,
                    aiomp,
                    aiomp_error: python.and_then(|doc| error_of(doc, spec.key)),
                    vs_aiomp,
                }
            })
            .collect();
        Report {
            quick: config.quick || suite.get("quick") == Some(&Json::Bool(true)),
            suite,
            python,
            machine,
            rows,
        }
    }

    /// Keys of the figures the suite failed to measure.
    pub(crate) fn failed_workloads(&self) -> Vec<String> {
        let mut failed: Vec<String> = self
            .suite
            .get("errors")
            .map_or(&[][..], Json::as_object)
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
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
        let text = |key: &str| self.machine.get(key).and_then(Json::as_str).unwrap_or("?");
        let cpus = self.machine.get("cpus").and_then(Json::as_f64).unwrap_or(0.0);
        let processes =
            self.suite.get("params").and_then(|p| p.get("processes")).and_then(Json::as_f64);
        let _ = writeln!(
            md,
            "Measured by `cargo xtask bench{}{}` on {cpus:.0} CPUs ({}), Linux {}, commit `{}`; \
             processes = {} unless stated.\n",
            if self.quick { " --quick" } else { "" },
            if self.python.is_some() { " --compare-python" } else { "" },
            text("cpu_model"),
            text("kernel"),
            text("commit"),
            processes.map_or_else(|| "?".to_owned(), |p| format!("{p:.0}")),
        );
        let load = |key: &str| self.machine.get(key).and_then(Json::as_f64);
        if let (Some(before), Some(after)) = (load("load_before"), load("load_after")) {
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
             - **met**: the target of the design brief, section 6. Ratios are taken within this \
             one run.\n",
        );
        if let Some(python) = self.python {
            let _ = writeln!(
                md,
                "- **aiomultiprocess** {} on Python {}, same workloads \
                 (`benches/python/aiomp_suite.py`); *polyloop vs aiomp* is how many times better \
                 polyloop is.",
                python.get("version").and_then(Json::as_str).unwrap_or("?"),
                python.get("python").and_then(Json::as_str).unwrap_or("?"),
            );
        }
        md.push_str("\n## Sweep: throughput against child concurrency\n\n![sweep](sweep.svg)\n\n");
        let sweep = self.suite.get("sweep");
        let n = sweep.and_then(|s| s.get("n")).and_then(Json::as_f64).unwrap_or(0.0);
        let _ = writeln!(md, "No-op map of {n:.0} u64 inputs.\n");
        md.push_str("| series | child concurrency | tasks/s |\n| --- | ---: | ---: |\n");
        for point in sweep.and_then(|s| s.get("points")).map_or(&[][..], Json::as_array) {
            let num = |k: &str| point.get(k).and_then(Json::as_f64).unwrap_or(f64::NAN);
            let _ = writeln!(
                md,
                "| {} | {:.0} | {} |",
                point.get("series").and_then(Json::as_str).unwrap_or("?"),
                num("child_concurrency"),
                Unit::PerSec.format(num("tasks_per_s"))
            );
        }
        let errors: Vec<(String, String)> =
            [Some(("polyloop", self.suite)), self.python.map(|p| ("aiomultiprocess", p))]
                .into_iter()
                .flatten()
                .flat_map(|(who, doc)| {
                    doc.get("errors").map_or(&[][..], Json::as_object).iter().map(move |(k, v)| {
                        (format!("{who}: {k}"), v.as_str().unwrap_or("?").to_owned())
                    })
                })
                .collect();
        if !errors.is_empty() {
            md.push_str("\n## Failures\n\n");
            for (what, message) in errors {
                let _ = writeln!(md, "- `{what}`: {message}");
            }
        }
        md
    }

    pub(crate) fn json(&self) -> Json {
        let rows = self.rows.iter().map(|row| {
            Json::obj([
                ("key", Json::str(row.spec.key)),
                ("workload", Json::str(row.label.clone())),
                ("unit", Json::str(row.spec.unit.name())),
                ("polyloop", Json::opt_num(row.polyloop)),
                ("target", Json::str(row.target_text.clone())),
                ("target_met", row.met.map_or(Json::Null, Json::Bool)),
                ("reference", Json::opt_num(row.reference)),
                (
                    "raw",
                    Json::obj(
                        row.spec
                            .raw_keys
                            .iter()
                            .zip(&row.raw)
                            .map(|(k, v)| (*k, Json::opt_num(*v))),
                    ),
                ),
                ("aiomultiprocess", Json::opt_num(row.aiomp)),
                ("polyloop_vs_aiomultiprocess", Json::opt_num(row.vs_aiomp)),
            ])
        });
        let section = |doc: &Json, key: &str| doc.get(key).cloned().unwrap_or(Json::Null);
        Json::obj([
            ("quick", Json::Bool(self.quick)),
            ("machine", self.machine.clone()),
            ("params", section(self.suite, "params")),
            ("rows", Json::Arr(rows.collect())),
            ("raw", section(self.suite, "raw")),
            ("sweep", section(self.suite, "sweep")),
            ("errors", section(self.suite, "errors")),
            ("suite", self.suite.clone()),
            ("aiomultiprocess", self.python.cloned().unwrap_or(Json::Null)),
        ])
    }
}

/// The target's text and whether the figure meets it.
fn judge(spec: &RowSpec, value: Option<f64>, suite: &Json) -> (String, Option<bool>) {
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
        Target::AtMostTimesRaw { factor, raw_key } => match metric(suite, "raw", raw_key) {
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

/// `{name}` replaced by the parameter `name`, numbers with thousands separators.
fn fill_template(template: &str, params: &Json) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else { break };
        let name = &rest[start + 1..start + len];
        match params.get(name) {
            Some(Json::Num(n)) => out.push_str(&group_thousands(*n)),
            Some(Json::Str(s)) => out.push_str(s),
            _ => out.push('?'),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

fn group_thousands(n: f64) -> String {
    if n.fract() != 0.0 {
        return format!("{n}");
    }
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 { format!("-{out}") } else { out }
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
            let mut rest = row.label;
            while let Some(start) = rest.find('{') {
                let end = rest[start..].find('}').unwrap() + start;
                let param = &rest[start + 1..end];
                let lib = read("benches/report/src/lib.rs");
                assert!(lib.contains(&format!("pub {param}:")), "no parameter {param}");
                rest = &rest[end + 1..];
            }
        }
    }

    #[test]
    fn fills_templates_with_grouped_numbers() {
        let params = Json::obj([("n", Json::num(1_000_000.0)), ("ms", Json::num(100.0))]);
        assert_eq!(
            fill_template("{n} x sleep({ms} ms) {x}", &params),
            "1,000,000 x sleep(100 ms) ?"
        );
        assert_eq!(group_thousands(2000.0), "2,000");
        assert_eq!(group_thousands(1.5), "1.5");
    }

    #[test]
    fn judges_targets_against_raw_figures() {
        let suite = Json::parse(r#"{"raw": {"socketpair_rtt_p50_us": 50}}"#).unwrap();
        let spec = ROWS.iter().find(|r| r.key == "apply_p50_us").unwrap();
        assert_eq!(judge(spec, Some(59.0), &suite).1, Some(true));
        assert_eq!(judge(spec, Some(61.0), &suite).1, Some(false));
        assert_eq!(judge(spec, Some(61.0), &Json::Null).1, None);
        let rss = ROWS.iter().find(|r| r.key == "worker_rss_mib").unwrap();
        assert_eq!(judge(rss, Some(3.5), &suite), ("<= 4.00 MiB".to_owned(), Some(true)));
    }

    #[test]
    fn renders_a_report_with_missing_and_failed_figures() {
        let suite = Json::parse(
            r#"{"quick": true, "params": {"processes": 2, "noop_small": 1000},
                "polyloop": {"noop_map_small": 6e6, "apply_p50_us": 70},
                "reference": {"noop_map_small": 2e7},
                "raw": {"socketpair_rtt_p50_us": 60},
                "errors": {"noop_map_large": "worker lost"},
                "sweep": {"n": 1000, "points": [{"processes": 2, "child_concurrency": 1, "tasks_per_s": 5}]}}"#,
        )
        .unwrap();
        let python =
            Json::parse(r#"{"version": "0.9.1", "aiomultiprocess": {"noop_map_small": 4e4}}"#)
                .unwrap();
        let report = Report::new(&Config::default(), &suite, Some(&python), Json::Null);
        let table = report.terminal_table();
        assert!(table.contains("| 1. no-op map, 1,000 u64 inputs, default settings "), "{table}");
        assert!(table.contains("6.00 M/s"), "{table}");
        assert!(table.contains("FAILED"), "{table}");
        assert!(table.contains("150x"), "{table}");
        assert!(report.failed_workloads().contains(&"noop_map_large".to_owned()));
        let md = report.markdown();
        assert!(md.contains("## Failures"), "{md}");
        assert!(md.contains("Quick run"), "{md}");
        let json = Json::parse(&report.json().pretty()).unwrap();
        assert_eq!(json.get("rows").unwrap().as_array().len(), ROWS.len());
    }
}
