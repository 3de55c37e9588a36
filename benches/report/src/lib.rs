//! The JSON report of polyloop's benchmark suite: what the `suite` binary of `polyloop-benches`
//! writes and `cargo xtask bench` reads.
//!
//! Both sides use these types, so the writer and the reader cannot disagree on a field. The crate
//! needs serde alone: xtask links it, and xtask must never link the library it measures.
//!
//! A [`SuiteReport`] holds the sizes of its run ([`Params`]), one figure per workload key for
//! polyloop and for the same work done in one process, the raw limits of the machine, the
//! concurrency sweep, and why a workload failed. The workload keys are the ones
//! `benches/python/aiomp_suite.py` writes under `aiomultiprocess`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything one run of the suite measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    /// Always `polyloop-benches`: tells this report from aiomultiprocess's.
    pub suite: String,
    /// Reduced sizes: the figures prove the harness works, not how fast polyloop is.
    pub quick: bool,
    /// The sizes of the run.
    pub params: RunParams,
    /// polyloop's figure for each workload key.
    pub polyloop: Figures,
    /// The same workloads done by tokio tasks in one process, by workload key.
    pub reference: Figures,
    /// Limits of the machine measured between two processes of the harness, and ideal times.
    pub raw: Figures,
    /// No-op map throughput across child concurrencies.
    pub sweep: Sweep,
    /// Why a figure is missing, by the key of the workload that failed.
    pub errors: BTreeMap<String, String>,
}

impl SuiteReport {
    /// The report of a run of these sizes, before anything is measured.
    pub fn new(params: Params) -> SuiteReport {
        SuiteReport {
            suite: "polyloop-benches".to_owned(),
            quick: params.quick,
            sweep: Sweep { n: params.sweep_n, points: Vec::new(), reference_tasks_per_s: None },
            params: RunParams::new(params),
            polyloop: Figures::default(),
            reference: Figures::default(),
            raw: Figures::default(),
            errors: BTreeMap::new(),
        }
    }
}

/// The sizes of a run, beside the ideal time of workload 3 that they imply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunParams {
    /// The sizes themselves.
    #[serde(flatten)]
    pub sizes: Params,
    /// [`Params::sleep_ideal_s`] of the run's sleeping tasks at their concurrency.
    pub sleep_ideal_s: f64,
}

impl RunParams {
    /// The sizes, with the ideal time they imply.
    pub fn new(sizes: Params) -> RunParams {
        let sleep_ideal_s = sizes.sleep_ideal_s(sizes.sleep_tasks, sizes.sleep_concurrency);
        RunParams { sizes, sleep_ideal_s }
    }
}

/// Figures by key, in key order.
///
/// JSON has no NaN or infinity, so only finite figures are kept: a measurement that is not a
/// finite number is left out, and reads back as not measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Figures(BTreeMap<String, f64>);

impl Figures {
    /// Records `value` under `key`, replacing an earlier figure. A value that is not finite
    /// leaves `key` not measured.
    pub fn insert(&mut self, key: &str, value: f64) {
        if value.is_finite() {
            self.0.insert(key.to_owned(), value);
        } else {
            self.0.remove(key);
        }
    }

    /// The figure under `key`, if it was measured.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.get(key).copied()
    }
}

/// No-op map throughput by child concurrency, for each pool shape of [`Params::sweep_series`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Inputs mapped at each point.
    pub n: u64,
    /// One figure per pool shape and child concurrency, in the order measured.
    pub points: Vec<SweepPoint>,
    /// The same map done by tokio tasks in one process, when it was measured.
    pub reference_tasks_per_s: Option<f64>,
}

/// One pool shape at one child concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The [`SweepSeries::label`] of the pool shape.
    pub series: String,
    /// Worker processes of the pool.
    pub processes: usize,
    /// Whether the prefetch was as large as the concurrency.
    pub full_prefetch: bool,
    /// Tasks each worker ran at once.
    pub child_concurrency: u32,
    /// No-op tasks mapped per second.
    pub tasks_per_s: f64,
}

/// The sizes of one run of the suite. `--quick` shrinks them so a run takes seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Whether these are the `--quick` sizes.
    pub quick: bool,
    /// Worker processes, unless a workload says otherwise.
    pub processes: usize,
    /// Inputs of the smaller no-op map (workload 1).
    pub noop_small: u64,
    /// Inputs of the larger no-op map (workload 1).
    pub noop_large: u64,
    /// Round trips run before the measured ones (workload 2).
    pub apply_warmup: usize,
    /// Round trips measured (workload 2).
    pub apply_samples: usize,
    /// The `busy_poll` window of workload 2's low-latency pool, in microseconds.
    pub apply_busy_poll_us: u64,
    /// Sleeping tasks at the default concurrency (workload 3).
    pub sleep_tasks: u64,
    /// How long each sleeping task sleeps, in milliseconds (workload 3).
    pub sleep_ms: u64,
    /// Child concurrency of the sleeping tasks (workload 3).
    pub sleep_concurrency: u32,
    /// Sleeping tasks at high concurrency (workload 3).
    pub sleep_many: u64,
    /// The high child concurrency (workload 3).
    pub sleep_many_concurrency: u32,
    /// CPU-bound tasks of the smaller run (workload 4).
    pub cpu_small: u64,
    /// CPU-bound tasks of the larger run (workload 4).
    pub cpu_large: u64,
    /// How long each CPU-bound task burns, in milliseconds (workload 4).
    pub cpu_task_ms: u64,
    /// Tasks returning a large result (workload 5).
    pub result_tasks: u64,
    /// Bytes of each large result (workload 5).
    pub result_bytes: usize,
    /// Pools built and closed to time start-up (workload 6).
    pub startup_runs: usize,
    /// Bytes of the read-only `SharedBytes` dataset, a whole number of 4 KiB pages (workload 9).
    pub shared_bytes: usize,
    /// Tasks that each read one page of it, spread evenly over the dataset (workload 9).
    pub shared_tasks: u64,
    /// Tasks that add to the `SharedAtomics` counter (workload 10).
    pub atomics_tasks: u64,
    /// `fetch_add`s of one each of them does (workload 10).
    pub atomics_adds: u64,
    /// Documents counted by the word count of `map_reduce` (workload 11).
    pub reduce_docs: u64,
    /// Words in each of them (workload 11).
    pub reduce_words: u64,
    /// Distinct words they are drawn from (workload 11).
    pub reduce_vocabulary: u64,
    /// Inputs mapped at each point of the sweep.
    pub sweep_n: u64,
    /// The pool shapes of the sweep.
    pub sweep_series: Vec<SweepSeries>,
    /// The child concurrencies of the sweep.
    pub sweep_concurrency: Vec<u32>,
    /// Upper bound on one workload, so a hang in the library fails the run instead of stalling it.
    pub workload_timeout_s: u64,
}

impl Params {
    /// The full sizes, or the `--quick` ones.
    pub fn new(quick: bool) -> Params {
        if quick {
            Params {
                quick,
                processes: 2,
                noop_small: 10_000,
                noop_large: 100_000,
                apply_warmup: 20,
                apply_samples: 200,
                apply_busy_poll_us: 50,
                sleep_tasks: 320,
                sleep_ms: 20,
                sleep_concurrency: 16,
                sleep_many: 10_000,
                sleep_many_concurrency: 5_000,
                cpu_small: 4,
                cpu_large: 8,
                cpu_task_ms: 5,
                result_tasks: 20,
                result_bytes: 1 << 20,
                startup_runs: 3,
                shared_bytes: 16 << 20,
                shared_tasks: 1_000,
                atomics_tasks: 1_000,
                atomics_adds: 100,
                reduce_docs: 2_000,
                reduce_words: 200,
                reduce_vocabulary: 5_000,
                sweep_n: 5_000,
                sweep_series: vec![SweepSeries::new(2, false)],
                sweep_concurrency: vec![1, 16, 256],
                workload_timeout_s: 60,
            }
        } else {
            Params {
                quick,
                processes: 2,
                noop_small: 100_000,
                noop_large: 1_000_000,
                apply_warmup: 200,
                apply_samples: 2_000,
                apply_busy_poll_us: 50,
                sleep_tasks: 2_000,
                sleep_ms: 100,
                sleep_concurrency: 16,
                sleep_many: 100_000,
                sleep_many_concurrency: 50_000,
                cpu_small: 16,
                cpu_large: 64,
                cpu_task_ms: 20,
                result_tasks: 200,
                result_bytes: 1 << 20,
                startup_runs: 10,
                shared_bytes: 256 << 20,
                shared_tasks: 10_000,
                atomics_tasks: 10_000,
                atomics_adds: 100,
                reduce_docs: 20_000,
                reduce_words: 200,
                reduce_vocabulary: 5_000,
                sweep_n: 100_000,
                sweep_series: vec![
                    SweepSeries::new(1, false),
                    SweepSeries::new(2, false),
                    SweepSeries::new(2, true),
                ],
                sweep_concurrency: vec![1, 4, 16, 64, 256, 1024, 4096],
                workload_timeout_s: 300,
            }
        }
    }

    /// The ideal time of `tasks` sleeps when `processes * concurrency` run at once.
    pub fn sleep_ideal_s(&self, tasks: u64, concurrency: u32) -> f64 {
        let slots = self.processes as u64 * u64::from(concurrency);
        tasks.div_ceil(slots) as f64 * self.sleep_ms as f64 / 1e3
    }
}

/// One line of the sweep: pools of `processes` workers at each child concurrency of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSeries {
    /// How the table and the plot name it.
    pub label: String,
    /// Worker processes of the pool.
    pub processes: usize,
    /// Prefetch as large as the concurrency, the largest batch a worker may be sent, instead of
    /// the default (a quarter of it).
    pub full_prefetch: bool,
}

impl SweepSeries {
    /// The series of pools of `processes` workers, with or without a full prefetch.
    pub fn new(processes: usize, full_prefetch: bool) -> SweepSeries {
        let plural = if processes == 1 { "" } else { "es" };
        let label = if full_prefetch {
            format!("{processes} process{plural}, prefetch = concurrency")
        } else {
            format!("{processes} process{plural}")
        };
        SweepSeries { label, processes, full_prefetch }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_as_written() {
        let params = Params::new(true);
        let mut report = SuiteReport::new(params.clone());
        report.polyloop.insert("noop_map_small", 2.5e6);
        report.raw.insert("cpu_ideal_speedup", 2.0);
        report.errors.insert("sweep".to_owned(), "timed out after 60 s".to_owned());
        report.sweep.points.push(SweepPoint {
            series: params.sweep_series[0].label.clone(),
            processes: 2,
            full_prefetch: false,
            child_concurrency: 16,
            tasks_per_s: 3.5e6,
        });
        let text = serde_json::to_string_pretty(&report).unwrap();
        let back: SuiteReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        // The sizes sit beside the derived figure, not under a key of their own.
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["params"]["noop_small"], 10_000);
        assert_eq!(doc["params"]["sleep_ideal_s"], 0.2);
    }

    #[test]
    fn figures_that_are_not_finite_are_not_recorded() {
        let mut figures = Figures::default();
        figures.insert("a", 1.0);
        figures.insert("b", 2.0);
        figures.insert("b", f64::NAN);
        figures.insert("c", f64::INFINITY);
        assert_eq!(figures.get("a"), Some(1.0));
        assert_eq!(figures.get("b"), None);
        assert_eq!(figures.get("c"), None);
        assert_eq!(serde_json::to_string(&figures).unwrap(), r#"{"a":1.0}"#);
    }
}
