//! Shared pieces of polyloop's benchmarks that do not need polyloop itself.
//!
//! The `suite` binary (run by `cargo xtask bench`) drives the end-to-end workloads through the
//! facade; everything it compares them with lives here: the raw limits of the machine measured
//! between two of the harness's own processes ([`raw`]), the same work done by tokio tasks in one
//! process ([`reference`](mod@reference)), and the bookkeeping ([`measure`], [`report`]).

pub mod measure;
pub mod raw;
pub mod reference;
pub mod report;

/// The sizes of one run of the suite. `--quick` shrinks them so a run takes seconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Params {
    pub quick: bool,
    /// Worker processes, unless a workload says otherwise.
    pub processes: usize,
    pub noop_small: u64,
    pub noop_large: u64,
    pub apply_warmup: usize,
    pub apply_samples: usize,
    pub sleep_tasks: u64,
    pub sleep_ms: u64,
    pub sleep_concurrency: u32,
    pub sleep_many: u64,
    pub sleep_many_concurrency: u32,
    pub cpu_small: u64,
    pub cpu_large: u64,
    pub cpu_task_ms: u64,
    pub result_tasks: u64,
    pub result_bytes: usize,
    pub startup_runs: usize,
    pub sweep_n: u64,
    pub sweep_series: Vec<SweepSeries>,
    pub sweep_concurrency: Vec<u32>,
    /// Upper bound on one workload, so a hang in the library fails the run instead of stalling it.
    pub workload_timeout_s: u64,
}

impl Params {
    pub fn new(quick: bool) -> Params {
        if quick {
            Params {
                quick,
                processes: 2,
                noop_small: 10_000,
                noop_large: 100_000,
                apply_warmup: 20,
                apply_samples: 200,
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
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepSeries {
    pub label: String,
    pub processes: usize,
    /// Prefetch as large as the concurrency, the largest batch a worker may be sent, instead of
    /// the default (a quarter of it).
    pub full_prefetch: bool,
}

impl SweepSeries {
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
