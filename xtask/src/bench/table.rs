//! The benchmark report: which figures make the table, their targets, and how they are written.
//!
//! The targets are the project's performance goals, each a ratio or bound within one run. They
//! are judged here, in one place, and only here: `cargo test` never asserts on timing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use polyloop_bench_report::{Figures, Params, RunParams, SuiteReport, Sweep};
use serde::{Serialize, Serializer};

use super::{Config, Machine, Python, PythonSide};

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
    /// A count of bytes, printed in B, KiB or MiB.
    Bytes,
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
            Unit::Bytes => "bytes",
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
            Unit::Bytes if value >= MIB => format!("{:.2} MiB", value / MIB),
            Unit::Bytes if value >= 1024.0 => format!("{:.1} KiB", value / 1024.0),
            Unit::Bytes => format!("{value:.0} B"),
        }
    }
}

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// A performance target.
#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
    /// At most `factor` times the smallest of the row's raw figures, measured in the same run;
    /// `names` says what each of them is, in the order of the row's `raw_keys`.
    AtMostTimesFastestRaw {
        factor: f64,
        names: &'static [&'static str],
    },
    /// At least `factor` times multiprocessing.Pool's figure for the same workload, measured in
    /// the same run (`--compare-python`).
    AtLeastTimesMpPool(f64),
    /// At most `factor` times polyloop's figure `key` (what `name` says it is) of the same run.
    AtMostTimesPolyloop {
        factor: f64,
        key: &'static str,
        name: &'static str,
    },
    /// The count polyloop reported under `key` is exactly `expected` of the run's sizes: a
    /// correctness target, judged whatever the row's own figure.
    EndsAtExactly {
        key: &'static str,
        expected: fn(&Params) -> u64,
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
    /// Whether `benches/python/mp_pool_suite.py` runs the workload on multiprocessing.Pool too.
    mp_pool: bool,
    /// Whether `benches/python/aiomp_suite.py` runs the workload on aiomultiprocess too.
    aiomp: bool,
}

/// A row of workload 1, judged against multiprocessing.Pool's map of the same inputs.
const fn noop_map_row(key: &'static str, label: fn(&Params) -> String) -> RowSpec {
    RowSpec {
        key,
        label,
        unit: Unit::PerSec,
        target: Target::AtLeastTimesMpPool(2.0),
        raw_keys: &[],
        mp_pool: true,
        aiomp: true,
    }
}

/// A row of workload 2, judged against `factor` times the faster of the raw echoes, pinned and
/// unpinned.
const fn apply_row(
    key: &'static str,
    label: fn(&Params) -> String,
    raw_keys: &'static [&'static str; 2],
    factor: f64,
) -> RowSpec {
    RowSpec {
        key,
        label,
        unit: Unit::Micros,
        target: Target::AtMostTimesFastestRaw { factor, names: &["pinned", "unpinned"] },
        raw_keys,
        mp_pool: false,
        aiomp: true,
    }
}

/// A row of workload 2 in the opt-in low-latency setup (`busy_poll` drivers on a current-thread
/// runtime), judged against `factor` times the faster of the raw echoes whose measuring side
/// polls. Only polyloop runs it.
const fn busy_poll_row(
    key: &'static str,
    label: fn(&Params) -> String,
    raw_keys: &'static [&'static str; 2],
    factor: f64,
) -> RowSpec {
    RowSpec {
        target: Target::AtMostTimesFastestRaw {
            factor,
            names: &["polling pinned", "polling unpinned"],
        },
        aiomp: false,
        ..apply_row(key, label, raw_keys, factor)
    }
}

const ROWS: &[RowSpec] = &[
    noop_map_row("noop_map_small_fresh", |p| {
        format!("1. no-op map, {} u64 inputs, fresh pool", grouped(p.noop_small))
    }),
    noop_map_row("noop_map_small", |p| {
        format!("1. no-op map, {} u64 inputs, warm pool", grouped(p.noop_small))
    }),
    noop_map_row("noop_map_large_fresh", |p| {
        format!("1. no-op map, {} u64 inputs, fresh pool", grouped(p.noop_large))
    }),
    noop_map_row("noop_map_large", |p| {
        format!("1. no-op map, {} u64 inputs, warm pool", grouped(p.noop_large))
    }),
    apply_row(
        "apply_p50_us",
        |_| "2. apply round trip, p50 (raw: 32 B echo, asleep, pinned / unpinned)".to_owned(),
        &["socketpair_rtt_pinned_p50_us", "socketpair_rtt_unpinned_p50_us"],
        1.5,
    ),
    apply_row(
        "apply_p99_us",
        |_| "2. apply round trip, p99".to_owned(),
        &["socketpair_rtt_pinned_p99_us", "socketpair_rtt_unpinned_p99_us"],
        2.0,
    ),
    busy_poll_row(
        "apply_busy_poll_p50_us",
        |p| {
            format!(
                "2. apply, busy_poll({} µs), current-thread runtime, p50 (raw: echo, caller \
                 polling)",
                grouped(p.apply_busy_poll_us)
            )
        },
        &["socketpair_rtt_polling_pinned_p50_us", "socketpair_rtt_polling_unpinned_p50_us"],
        1.2,
    ),
    busy_poll_row(
        "apply_busy_poll_p99_us",
        |_| "2. apply, busy_poll, current-thread runtime, p99".to_owned(),
        &["socketpair_rtt_polling_pinned_p99_us", "socketpair_rtt_polling_unpinned_p99_us"],
        2.0,
    ),
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
        mp_pool: false,
        aiomp: true,
    },
    RowSpec {
        key: "sleep_vs_ideal",
        label: |_| "3. the same, time / ideal".to_owned(),
        unit: Unit::RatioToIdeal,
        target: Target::AtMost(1.02),
        raw_keys: &[],
        mp_pool: false,
        aiomp: true,
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
        mp_pool: false,
        aiomp: true,
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
        mp_pool: false,
        aiomp: true,
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
        mp_pool: false,
        aiomp: true,
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
        mp_pool: false,
        aiomp: true,
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
        mp_pool: false,
        aiomp: true,
    },
    RowSpec {
        key: "close_ms",
        label: |_| "6. close() of that pool".to_owned(),
        unit: Unit::Millis,
        target: Target::None,
        raw_keys: &[],
        mp_pool: false,
        aiomp: true,
    },
    RowSpec {
        key: "worker_rss_mib",
        label: |_| "7. peak RSS of a worker, VmHWM (raw: the harness's echo peer)".to_owned(),
        unit: Unit::Mib,
        target: Target::AtMost(4.0),
        raw_keys: &["peer_rss_mib"],
        mp_pool: false,
        aiomp: true,
    },
    RowSpec {
        key: "shared_bytes_ms",
        label: |p| {
            format!(
                "9. {} SharedBytes to {} tasks, each sums a 4 KiB page",
                mib(p.shared_bytes),
                grouped(p.shared_tasks)
            )
        },
        unit: Unit::Millis,
        target: Target::AtMostTimesPolyloop {
            factor: 1.2,
            key: "shared_kept_ms",
            name: "16 B inputs",
        },
        raw_keys: &[],
        mp_pool: true,
        aiomp: false,
    },
    polyloop_row("shared_kept_ms", Unit::Millis, Target::None, |p| {
        format!(
            "9. the same {} tasks, a 16-byte input, the dataset from the initializer",
            grouped(p.shared_tasks)
        )
    }),
    polyloop_row("shared_bytes_written", Unit::Bytes, Target::Below(2.0 * MIB), |_| {
        "9. bytes the parent wrote (write + send) during that map".to_owned()
    }),
    polyloop_row("shared_bytes_create_ms", Unit::Millis, Target::None, |p| {
        format!("9. creating the {} SharedBytes (not in its map's time)", mib(p.shared_bytes))
    }),
    polyloop_row(
        "shared_atomics_ms",
        Unit::Millis,
        Target::EndsAtExactly {
            key: "shared_atomics_count",
            expected: |p| p.atomics_tasks * p.atomics_adds,
        },
        |p| {
            format!(
                "10. SharedAtomics counter: {} tasks x {} fetch_add",
                grouped(p.atomics_tasks),
                grouped(p.atomics_adds)
            )
        },
    ),
    polyloop_row(
        "reduce_ms",
        Unit::Millis,
        Target::AtMostTimesPolyloop {
            factor: 1.0,
            key: "reduce_map_merge_ms",
            name: "map + merge",
        },
        |p| {
            format!(
                "11. word count, map_reduce(count_words, {} docs of {} words, merge)",
                grouped(p.reduce_docs),
                grouped(p.reduce_words)
            )
        },
    ),
    polyloop_row("reduce_map_merge_ms", Unit::Millis, Target::None, |_| {
        "11. the same count, map(count_words, docs) and a merge here".to_owned()
    }),
    polyloop_row(
        "reduce_bytes_read",
        Unit::Bytes,
        Target::AtMostTimesPolyloop {
            factor: 0.01,
            key: "reduce_map_merge_bytes_read",
            name: "map + merge",
        },
        |_| "11. bytes the parent read (read + recv), map_reduce: a table a batch".to_owned(),
    ),
    polyloop_row("reduce_map_merge_bytes_read", Unit::Bytes, Target::None, |_| {
        "11. bytes the parent read, map + merge: a table a document".to_owned()
    }),
];

/// A row that only polyloop runs: workloads 9 and 10 (the shared values, Linux only) and 11.
const fn polyloop_row(
    key: &'static str,
    unit: Unit,
    target: Target,
    label: fn(&Params) -> String,
) -> RowSpec {
    RowSpec { key, label, unit, target, raw_keys: &[], mp_pool: false, aiomp: false }
}

/// The merged figures of one run.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    quick: bool,
    suite: &'a SuiteReport,
    python: Option<&'a Python>,
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
    /// aiomultiprocess's cell, then multiprocessing.Pool's, under `--compare-python`.
    python: Vec<PythonCell>,
}

/// A Python side's figure in one row.
#[derive(Debug)]
struct PythonCell {
    figure: Option<f64>,
    /// The chunksize that gave the figure, where it is the best of several.
    chunksize: Option<u64>,
    /// What the cell says without a figure: `FAILED`, `no python3`, `not installed` or `-`.
    instead: String,
    /// How many times better polyloop is.
    vs_polyloop: Option<f64>,
}

impl PythonCell {
    fn new(spec: &RowSpec, side: &PythonSide, measures_row: bool, polyloop: Option<f64>) -> Self {
        let (figure, chunksize, instead) = match side {
            _ if !measures_row => (None, None, "-".to_owned()),
            PythonSide::Missing(why) => (None, None, why.clone()),
            PythonSide::Ran(doc) => {
                let failed = doc.errors.contains_key(spec.key);
                let instead = if failed { "FAILED" } else { "-" };
                (
                    doc.figures.get(spec.key),
                    doc.chunksize.get(spec.key).copied(),
                    instead.to_owned(),
                )
            }
        };
        let vs_polyloop = match (polyloop, figure) {
            (Some(p), Some(f)) if p > 0.0 && f > 0.0 => {
                Some(if spec.unit.higher_is_better() { p / f } else { f / p })
            }
            _ => None,
        };
        PythonCell { figure, chunksize, instead, vs_polyloop }
    }
}

impl<'a> Report<'a> {
    pub(crate) fn new(
        config: &Config,
        suite: &'a SuiteReport,
        python: Option<&'a Python>,
        machine: Machine,
    ) -> Report<'a> {
        let rows = ROWS
            .iter()
            .map(|spec| {
                let polyloop = suite.polyloop.get(spec.key);
                let raw: Vec<Option<f64>> =
                    spec.raw_keys.iter().map(|k| suite.raw.get(k)).collect();
                let mp_pool = python
                    .and_then(|p| p.mp_pool.report())
                    .and_then(|doc| doc.figures.get(spec.key));
                let (target_text, met) = judge(spec, polyloop, suite, mp_pool);
                let python = python.map_or_else(Vec::new, |p| {
                    vec![
                        PythonCell::new(spec, &p.aiomultiprocess, spec.aiomp, polyloop),
                        PythonCell::new(spec, &p.mp_pool, spec.mp_pool, polyloop),
                    ]
                });
                Row {
                    spec,
                    label: (spec.label)(&suite.params.sizes),
                    polyloop,
                    error: suite.errors.get(spec.key).cloned(),
                    target_text,
                    met,
                    reference: suite.reference.get(spec.key),
                    raw,
                    python,
                }
            })
            .collect();
        Report { quick: config.quick || suite.quick, suite, python, machine, rows }
    }

    /// Why the suite failed to measure what it did not, a reason for each figure.
    pub(crate) fn errors(&self) -> impl Iterator<Item = &String> {
        self.suite.errors.values()
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
            header.extend([
                "aiomultiprocess",
                "polyloop vs aiomp",
                "mp.Pool(2), best chunksize",
                "polyloop vs mp.Pool",
            ]);
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
                for cell in &row.python {
                    cells.push(match (cell.figure, cell.chunksize) {
                        (Some(v), Some(chunksize)) => {
                            format!("{} ({})", unit.format(v), grouped(chunksize))
                        }
                        (Some(v), None) => unit.format(v),
                        (None, _) => cell.instead.clone(),
                    });
                    cells.push(cell.vs_polyloop.map_or_else(dash, |r| format!("{}x", sig3(r))));
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
             workload. The round trip is taken pinned across two cores and unpinned, in blocks \
             interleaved with `apply`'s; the target compares with the smaller.\n\
             - **2, busy_poll**: `apply` on a pool built inside a current-thread runtime with \
             `drivers_on_current_runtime()` and `busy_poll`, so caller and drivers share a thread \
             and the drivers poll for results before they sleep. Its raw echo polls too, with \
             non-blocking `recv`s on the measuring side; the peer sleeps in `read`, as the \
             workers do.\n\
             - **met**: the project's target for the figure. Ratios are taken within this \
             one run.\n\
             - **9 and 10, shared values** (Linux only): row 9's time is the median of 3 \
             rounds, each on a new pool with new values, so every worker maps the value and \
             faults in the pages it reads. Its reference, on the same pool, is the same tasks \
             with a 16-byte input, reading a second copy of the dataset that each worker got \
             once from the pool's initializer. *Bytes written* is the most any of the 3 maps \
             made the parent pass to `write` and `send` syscalls, on any descriptor (its \
             sockets, tokio's wake-ups): `wchar` of `/proc/self/io`, which counts the `write` \
             family only, plus the suite's own count of `send(2)`, which polyloop's sockets \
             use. Row 10's counter must end at exactly tasks x adds in each of its 3 maps.\n\
             - **11, map_reduce**: a word count over the documents, \
             `map_reduce(count_words, docs, merge)` against `map(count_words, docs)` and a merge \
             of every table in the parent, on one pool, 3 rounds of each interleaved (medians); \
             the row fails unless both counts agree with the parent's own. *Bytes read* is the \
             most any round made the parent get from `read` and `recv` syscalls: `rchar` of \
             `/proc/self/io`, which counts the `read` family only, plus the suite's own count \
             of `recv(2)`, which polyloop's sockets use (Linux only).\n",
        );
        if let Some(python) = self.python {
            if let Some(doc) = python.aiomultiprocess.report() {
                let _ = writeln!(
                    md,
                    "- **aiomultiprocess** {} on Python {}, same workloads \
                     (`benches/python/aiomp_suite.py`); *polyloop vs aiomp* is how many times \
                     better polyloop is.",
                    doc.version, doc.python,
                );
            }
            if let Some(doc) = python.mp_pool.report() {
                let start = doc.params["start_method"].as_str().unwrap_or("?");
                let _ = writeln!(
                    md,
                    "- **mp.Pool(2)**: Python {}'s `multiprocessing.Pool(2)` ({start} start), \
                     `pool.map(f, range(n), chunksize=c)` for the no-op map, the better of \
                     chunksize 1,000 and 10,000 (the winner in brackets; \
                     `benches/python/mp_pool_suite.py`); *polyloop vs mp.Pool* is how many times \
                     faster polyloop is, and its target is 2x. Row 9 on Python is a \
                     `multiprocessing.shared_memory.SharedMemory` of the same size, attached once \
                     per worker by the pool's initializer, each task summing the same page, the \
                     better of chunksize 100 and 1,000.",
                    doc.python,
                );
            }
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
        let python = self.python.into_iter().flat_map(|p| {
            [("aiomultiprocess", &p.aiomultiprocess), ("mp.Pool", &p.mp_pool)]
                .into_iter()
                .filter_map(|(who, side)| Some((who, &side.report()?.errors)))
        });
        let sides = std::iter::once(("polyloop", &self.suite.errors)).chain(python);
        let failures: Vec<_> = sides
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

    /// What `results.json` holds: the rows as judged, beside everything each side reported.
    pub(crate) fn json(&self) -> Results<'_> {
        let rows = self
            .rows
            .iter()
            .map(|row| {
                let cell = |i: usize| row.python.get(i);
                ResultsRow {
                    key: row.spec.key,
                    workload: &row.label,
                    unit: row.spec.unit.name(),
                    polyloop: row.polyloop,
                    target: &row.target_text,
                    target_met: row.met,
                    reference: row.reference,
                    raw: RawFigures(row),
                    aiomultiprocess: cell(0).and_then(|c| c.figure),
                    polyloop_vs_aiomultiprocess: cell(0).and_then(|c| c.vs_polyloop),
                    mp_pool: cell(1).and_then(|c| c.figure),
                    mp_pool_chunksize: cell(1).and_then(|c| c.chunksize),
                    polyloop_vs_mp_pool: cell(1).and_then(|c| c.vs_polyloop),
                }
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
            python: self.python,
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
    /// Each Python side's report, or why it has none; absent without `--compare-python`.
    #[serde(flatten)]
    python: Option<&'a Python>,
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
    mp_pool: Option<f64>,
    mp_pool_chunksize: Option<u64>,
    polyloop_vs_mp_pool: Option<f64>,
}

/// A row's raw figures as an object from key to figure, in the order the row lists them.
#[derive(Debug)]
struct RawFigures<'a>(&'a Row);

impl Serialize for RawFigures<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.spec.raw_keys.iter().zip(&self.0.raw))
    }
}

/// The target's text and whether the figure meets it, against the other figures of the run and
/// multiprocessing.Pool's figure for the row, where it was measured.
fn judge(
    spec: &RowSpec,
    value: Option<f64>,
    suite: &SuiteReport,
    mp_pool: Option<f64>,
) -> (String, Option<bool>) {
    let unit = spec.unit;
    let raw = &suite.raw;
    let at_least = f64::ge as fn(&f64, &f64) -> bool;
    let at_most = f64::le as fn(&f64, &f64) -> bool;
    let (text, limit) = match spec.target {
        Target::None => return ("-".to_owned(), None),
        Target::AtLeast(v) => (format!(">= {}", unit.format(v)), Some((v, at_least))),
        Target::AtMost(v) => (format!("<= {}", unit.format(v)), Some((v, at_most))),
        Target::Below(v) => {
            (format!("< {}", unit.format(v)), Some((v, f64::lt as fn(&f64, &f64) -> bool)))
        }
        Target::AtMostTimesFastestRaw { factor, names } => {
            let fastest = spec
                .raw_keys
                .iter()
                .zip(names)
                .filter_map(|(key, name)| Some((raw.get(key)?, name)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            match fastest {
                Some((raw, name)) => {
                    let limit = factor * raw;
                    (
                        format!("<= {factor}x {name} = {}", unit.format(limit)),
                        Some((limit, at_most)),
                    )
                }
                None => (format!("<= {factor}x raw"), None),
            }
        }
        Target::AtLeastTimesMpPool(factor) => match mp_pool {
            Some(mp_pool) => {
                let limit = factor * mp_pool;
                (format!(">= {factor}x mp.Pool = {}", unit.format(limit)), Some((limit, at_least)))
            }
            None => (format!(">= {factor}x mp.Pool"), None),
        },
        Target::AtMostTimesPolyloop { factor, key, name } => match suite.polyloop.get(key) {
            Some(reference) => {
                let limit = factor * reference;
                (format!("<= {factor}x {name} = {}", unit.format(limit)), Some((limit, at_most)))
            }
            None => (format!("<= {factor}x {name}"), None),
        },
        Target::EndsAtExactly { key, expected } => {
            let expected = expected(&suite.params.sizes);
            let text = format!("ends at exactly {}", grouped(expected));
            // Exact: a count below 2^53 is an integer in an f64.
            let ended = suite.polyloop.get(key);
            return (text, ended.map(|ended| ended == expected as f64));
        }
    };
    let met = match (value, limit) {
        (Some(v), Some((limit, cmp))) => Some(cmp(&v, &limit)),
        _ => None,
    };
    (text, met)
}

/// `bytes` as whole MiB, or KiB below one.
fn mib(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", grouped(bytes as u64 >> 20))
    } else {
        format!("{} KiB", grouped(bytes as u64 >> 10))
    }
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
    use super::super::PythonReport;
    use super::*;

    #[test]
    fn every_row_is_measured_by_the_suite_and_the_python_scripts() {
        // The suite and the scripts are other programs; their sources must at least name each
        // key this table reads, or a renamed key would silently show as n/a.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
        let suite = read("benches/src/bin/suite.rs");
        let aiomp = read("benches/python/aiomp_suite.py");
        let mp_pool = read("benches/python/mp_pool_suite.py");
        let reports = |text: &str, key: &str| text.contains(&format!("\"{key}\""));
        for row in ROWS {
            let quoted = format!("\"{}\"", row.key);
            assert!(suite.contains(&quoted), "suite.rs never reports {quoted}");
            assert_eq!(aiomp.contains(&quoted), row.aiomp, "aiomp_suite.py and {quoted}");
            assert_eq!(mp_pool.contains(&quoted), row.mp_pool, "mp_pool_suite.py and {quoted}");
            match row.target {
                Target::AtMostTimesPolyloop { key, .. } | Target::EndsAtExactly { key, .. } => {
                    assert!(reports(&suite, key), "{}: suite.rs never reports {key}", row.key);
                }
                _ => {}
            }
            for raw in row.raw_keys {
                assert!(reports(&suite, raw), "suite.rs never reports {raw}");
            }
            if let Target::AtMostTimesFastestRaw { names, .. } = row.target {
                assert_eq!(names.len(), row.raw_keys.len(), "{}: a name per raw key", row.key);
            }
            if let Target::AtLeastTimesMpPool(_) = row.target {
                assert!(row.mp_pool, "{} is judged against mp.Pool, which never runs it", row.key);
            }
        }
    }

    #[test]
    fn labels_quote_the_sizes_with_grouped_numbers() {
        assert_eq!(
            (ROWS[0].label)(&Params::new(false)),
            "1. no-op map, 100,000 u64 inputs, fresh pool"
        );
        assert_eq!(grouped(1_000_000u64), "1,000,000");
        assert_eq!(grouped(100u32), "100");
        assert_eq!(grouped(0u32), "0");
    }

    fn row(key: &str) -> &'static RowSpec {
        ROWS.iter().find(|r| r.key == key).unwrap()
    }

    #[test]
    fn judges_targets_against_the_fastest_raw_figure_and_mp_pool() {
        let mut suite = SuiteReport::new(Params::new(false));
        suite.raw.insert("socketpair_rtt_pinned_p50_us", 50.0);
        let spec = row("apply_p50_us");
        assert_eq!(judge(spec, Some(74.0), &suite, None).1, Some(true));
        assert_eq!(judge(spec, Some(76.0), &suite, None).1, Some(false));
        let unmeasured = SuiteReport::new(Params::new(false));
        assert_eq!(judge(spec, Some(76.0), &unmeasured, None).1, None);
        // The unpinned echo is faster here, so it sets the limit.
        suite.raw.insert("socketpair_rtt_unpinned_p50_us", 40.0);
        assert_eq!(
            judge(spec, Some(61.0), &suite, None),
            ("<= 1.5x unpinned = 60.0 µs".to_owned(), Some(false))
        );
        // The tail may be twice the raw tail.
        suite.raw.insert("socketpair_rtt_unpinned_p99_us", 100.0);
        assert_eq!(judge(row("apply_p99_us"), Some(199.0), &suite, None).1, Some(true));
        let rss = row("worker_rss_mib");
        assert_eq!(judge(rss, Some(3.5), &suite, None), ("<= 4.00 MiB".to_owned(), Some(true)));
        let map = row("noop_map_large_fresh");
        assert_eq!(judge(map, Some(9e6), &suite, None), (">= 2x mp.Pool".to_owned(), None));
        assert_eq!(
            judge(map, Some(9e6), &suite, Some(5e6)),
            (">= 2x mp.Pool = 10.00 M/s".to_owned(), Some(false))
        );
        assert_eq!(judge(map, Some(1.1e7), &suite, Some(5e6)).1, Some(true));
    }

    #[test]
    fn judges_busy_poll_against_the_fastest_polling_raw_figure() {
        let mut suite = SuiteReport::new(Params::new(false));
        let spec = row("apply_busy_poll_p50_us");
        assert_eq!(judge(spec, Some(9.0), &suite, None), ("<= 1.2x raw".to_owned(), None));
        // The raw echoes that sleep are not this row's reference, however fast they were.
        suite.raw.insert("socketpair_rtt_unpinned_p50_us", 1.0);
        suite.raw.insert("socketpair_rtt_polling_pinned_p50_us", 10.0);
        assert_eq!(
            judge(spec, Some(11.9), &suite, None),
            ("<= 1.2x polling pinned = 12.0 µs".to_owned(), Some(true))
        );
        suite.raw.insert("socketpair_rtt_polling_unpinned_p50_us", 8.0);
        assert_eq!(
            judge(spec, Some(9.7), &suite, None),
            ("<= 1.2x polling unpinned = 9.60 µs".to_owned(), Some(false))
        );
        assert_eq!(judge(spec, Some(9.5), &suite, None).1, Some(true));
        // The tail may be twice the polling raw tail.
        let tail = row("apply_busy_poll_p99_us");
        suite.raw.insert("socketpair_rtt_polling_pinned_p99_us", 30.0);
        suite.raw.insert("socketpair_rtt_polling_unpinned_p99_us", 40.0);
        assert_eq!(judge(tail, Some(59.0), &suite, None).1, Some(true));
        assert_eq!(judge(tail, Some(61.0), &suite, None).1, Some(false));
        assert_eq!(
            (spec.label)(&Params::new(true)),
            "2. apply, busy_poll(50 µs), current-thread runtime, p50 (raw: echo, caller polling)"
        );
    }

    #[test]
    fn judges_the_shared_values_against_their_own_run() {
        let mut suite = SuiteReport::new(Params::new(false));
        let bytes = row("shared_bytes_ms");
        assert_eq!(
            judge(bytes, Some(10.0), &suite, None),
            ("<= 1.2x 16 B inputs".to_owned(), None)
        );
        suite.polyloop.insert("shared_kept_ms", 10.0);
        assert_eq!(
            judge(bytes, Some(12.5), &suite, None),
            ("<= 1.2x 16 B inputs = 12.0 ms".to_owned(), Some(false))
        );
        assert_eq!(judge(bytes, Some(11.5), &suite, None).1, Some(true));
        let written = row("shared_bytes_written");
        assert_eq!(
            judge(written, Some(150e3), &suite, None),
            ("< 2.00 MiB".to_owned(), Some(true))
        );
        assert_eq!(judge(written, Some(2.0 * MIB), &suite, None).1, Some(false));
        assert_eq!(Unit::Bytes.format(150e3), "146.5 KiB");
        assert_eq!(Unit::Bytes.format(100.0), "100 B");
        // The count decides, whether or not the time was recorded.
        let atomics = row("shared_atomics_ms");
        let target = "ends at exactly 1,000,000".to_owned();
        assert_eq!(judge(atomics, Some(30.0), &suite, None), (target.clone(), None));
        suite.polyloop.insert("shared_atomics_count", 999_999.0);
        assert_eq!(judge(atomics, None, &suite, None), (target.clone(), Some(false)));
        suite.polyloop.insert("shared_atomics_count", 1e6);
        assert_eq!(judge(atomics, Some(30.0), &suite, None), (target, Some(true)));
        let quick = Params::new(true);
        assert_eq!(
            (bytes.label)(&quick),
            "9. 16 MiB SharedBytes to 1,000 tasks, each sums a 4 KiB page"
        );
        assert_eq!(
            (atomics.label)(&quick),
            "10. SharedAtomics counter: 1,000 tasks x 100 fetch_add"
        );
    }

    #[test]
    fn judges_map_reduce_against_map_and_merge_of_the_same_run() {
        let mut suite = SuiteReport::new(Params::new(false));
        let time = row("reduce_ms");
        assert_eq!(judge(time, Some(400.0), &suite, None), ("<= 1x map + merge".to_owned(), None));
        suite.polyloop.insert("reduce_map_merge_ms", 800.0);
        assert_eq!(
            judge(time, Some(400.0), &suite, None),
            ("<= 1x map + merge = 800.0 ms".to_owned(), Some(true))
        );
        assert_eq!(judge(time, Some(801.0), &suite, None).1, Some(false));
        let bytes = row("reduce_bytes_read");
        suite.polyloop.insert("reduce_map_merge_bytes_read", 100.0 * MIB);
        assert_eq!(
            judge(bytes, Some(0.5 * MIB), &suite, None),
            ("<= 0.01x map + merge = 1.00 MiB".to_owned(), Some(true))
        );
        assert_eq!(judge(bytes, Some(1.5 * MIB), &suite, None).1, Some(false));
        assert_eq!(
            (time.label)(&Params::new(true)),
            "11. word count, map_reduce(count_words, 2,000 docs of 200 words, merge)"
        );
        assert_eq!(
            (time.label)(&Params::new(false)),
            "11. word count, map_reduce(count_words, 20,000 docs of 200 words, merge)"
        );
    }

    fn assert_contains(text: &str, parts: &[&str]) {
        for part in parts {
            assert!(text.contains(part), "no {part:?} in\n{text}");
        }
    }

    fn python_report(json: &str) -> PythonSide {
        PythonSide::Ran(serde_json::from_str::<PythonReport>(json).unwrap())
    }

    #[test]
    fn renders_a_report_with_missing_and_failed_figures() {
        let mut params = Params::new(true);
        params.noop_small = 1000;
        let mut suite = SuiteReport::new(params);
        suite.polyloop.insert("noop_map_small", 6e6);
        suite.polyloop.insert("apply_p50_us", 70.0);
        suite.reference.insert("noop_map_small", 2e7);
        suite.raw.insert("socketpair_rtt_pinned_p50_us", 60.0);
        suite.errors.insert("noop_map_large".to_owned(), "worker lost".to_owned());
        // As `aiomp_suite.py` and `mp_pool_suite.py` write them.
        let python = Python {
            aiomultiprocess: python_report(
                r#"{"suite": "aiomultiprocess", "version": "0.9.1", "python": "3.12.3",
                    "quick": true, "params": {"processes": 2, "noop_small": 1000},
                    "figures": {"noop_map_small": 40000.0, "ready_ms": 310},
                    "errors": {"sleep_s": "timed out after 60 s"}}"#,
            ),
            mp_pool: python_report(
                r#"{"suite": "multiprocessing.Pool", "version": "3.12.3", "python": "3.12.3",
                    "quick": true, "params": {"processes": 2, "start_method": "fork"},
                    "figures": {"noop_map_small": 2.5e6},
                    "chunksize": {"noop_map_small": 10000},
                    "by_chunksize": {"noop_map_small": {"1000": 2e6, "10000": 2.5e6}},
                    "errors": {"noop_map_large": "timed out after 60 s"}}"#,
            ),
        };
        let report = Report::new(&Config::default(), &suite, Some(&python), Machine::default());
        let table = report.terminal_table();
        let cells = [
            "| 1. no-op map, 1,000 u64 inputs, warm pool ",
            "6.00 M/s",
            "FAILED",
            "150x",
            "2.50 M/s (10,000)",
            ">= 2x mp.Pool = 5.00 M/s",
            "2.40x",
        ];
        assert_contains(&table, &cells);
        assert!(report.failed_workloads().contains(&"noop_map_large".to_owned()));
        let md = report.markdown();
        let lines = [
            "## Failures",
            "- `aiomultiprocess: sleep_s`: timed out after 60 s",
            "- `mp.Pool: noop_map_large`: timed out after 60 s",
            "(fork start)",
            "Quick run",
        ];
        assert_contains(&md, &lines);
        let json = serde_json::to_value(report.json()).unwrap();
        assert_eq!(json["rows"].as_array().unwrap().len(), ROWS.len());
        let row = |key: &str| json["rows"].as_array().unwrap().iter().find(|r| r["key"] == key);
        let apply = row("apply_p50_us").unwrap();
        assert_eq!(apply["raw"]["socketpair_rtt_pinned_p50_us"], 60.0);
        assert_eq!(row("noop_map_small").unwrap()["mp_pool_chunksize"], 10000);
        assert_eq!(json["suite"], serde_json::to_value(&suite).unwrap());
        assert_eq!(json["aiomultiprocess"]["params"]["noop_small"], 1000);
        assert_eq!(json["mp_pool"]["by_chunksize"]["noop_map_small"]["1000"], 2e6);
    }

    #[test]
    fn a_python_side_that_could_not_run_says_so_in_its_column() {
        let mut suite = SuiteReport::new(Params::new(true));
        suite.polyloop.insert("noop_map_small", 6e6);
        let missing = || PythonSide::Missing("no python3".to_owned());
        let python = Python { aiomultiprocess: missing(), mp_pool: missing() };
        let report = Report::new(&Config::default(), &suite, Some(&python), Machine::default());
        let table = report.terminal_table();
        let map_row = table.lines().find(|l| l.contains("10,000 u64 inputs, warm pool")).unwrap();
        assert_eq!(map_row.matches("no python3").count(), 2, "{map_row}");
        // multiprocessing.Pool runs only the maps: elsewhere its column is empty, not missing.
        let rss_row = table.lines().find(|l| l.contains("peak RSS")).unwrap();
        assert_eq!(rss_row.matches("no python3").count(), 1, "{rss_row}");
        assert_eq!(serde_json::to_value(report.json()).unwrap()["mp_pool"], "no python3");
    }
}
