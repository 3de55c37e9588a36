//! Measurement helpers: percentiles, rates, CPU-bound busy work, process memory, progress lines.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Latency samples in microseconds, summarized by percentile.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    micros: Vec<f64>,
}

impl Samples {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Samples {
        Samples { micros: Vec::with_capacity(n) }
    }

    /// Adds one measured duration.
    pub fn push(&mut self, elapsed: Duration) {
        self.micros.push(elapsed.as_secs_f64() * 1e6);
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The `q`-quantile (0.0 to 1.0) by nearest rank; NaN when there are no samples.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.micros.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// The median of a few timings, which shrugs off one run disturbed by a neighbour.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

/// `count` things in `elapsed`, as a rate per second.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// `bytes` in `elapsed`, as MiB per second.
pub fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

/// CPU-bound work: `iters` rounds of xorshift, which no compiler can skip or vectorize away.
pub fn spin(iters: u64) -> u64 {
    let mut x = black_box(0x9E37_79B9_7F4A_7C15_u64);
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// How many [`spin`] iterations take `target` on this machine, in this process.
///
/// Takes the fastest of a few trials, as the others were likely preempted.
pub fn calibrate_spin(target: Duration) -> u64 {
    let probe = 2_000_000;
    let best = (0..5)
        .map(|_| {
            let started = Instant::now();
            spin(probe);
            started.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_millis(1));
    ((probe as f64) * target.as_secs_f64() / best.as_secs_f64().max(1e-9)) as u64
}

/// Peak and current resident set size of a process, in MiB, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    /// The peak, `VmHWM`.
    pub peak_mib: f64,
    /// The current size, `VmRSS`.
    pub current_mib: f64,
}

/// The memory of process `pid`; `None` where `/proc` does not exist (not Linux) or it is gone.
pub fn rss_of(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1024.0)
    };
    Some(Rss { peak_mib: field("VmHWM:")?, current_mib: field("VmRSS:")? })
}

/// Progress on stderr: the suite's stdout stays free for whoever runs it.
#[derive(Debug)]
pub struct Progress {
    step: usize,
    total: usize,
    started: Instant,
}

impl Progress {
    /// Progress through `total` steps, starting now.
    pub fn new(total: usize) -> Progress {
        Progress { step: 0, total, started: Instant::now() }
    }

    /// Announces the next workload.
    pub fn step(&mut self, what: &str) {
        self.step += 1;
        eprintln!(
            "[{:>2}/{}] {:>6.1}s  {what}",
            self.step,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A finished measurement under the current workload.
    pub fn note(&self, what: &str) {
        eprintln!("                 {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut samples = Samples::with_capacity(100);
        for us in 1..=100 {
            samples.push(Duration::from_micros(us));
        }
        assert!((samples.quantile_us(0.5) - 50.0).abs() < 1e-6);
        assert!((samples.quantile_us(0.99) - 99.0).abs() < 1e-6);
        assert!((samples.quantile_us(1.0) - 100.0).abs() < 1e-6);
        assert!(Samples::default().quantile_us(0.5).is_nan());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn reads_its_own_memory() {
        if cfg!(target_os = "linux") {
            let rss = rss_of(std::process::id()).expect("own /proc status");
            assert!(rss.peak_mib >= rss.current_mib && rss.current_mib > 0.0);
        }
    }
}
