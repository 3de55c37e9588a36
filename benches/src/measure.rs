//! Measurement helpers: percentiles, rates, CPU-bound busy work, the shared values' dataset and
//! page sums, the word count's documents, process memory, reads and writes, progress lines.

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

/// The bytes a task of the shared-values workload reads: one page.
pub const PAGE: usize = 4096;

/// The shared-values dataset of `len` bytes: byte `i` is `i % 251`, so pages differ.
pub fn dataset(len: usize) -> Vec<u8> {
    let pattern: Vec<u8> = (0..251u8).collect();
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        let take = pattern.len().min(len - data.len());
        data.extend_from_slice(&pattern[..take]);
    }
    data
}

/// The page the `task`th of `tasks` tasks reads of a dataset of `pages` pages: the tasks spread
/// evenly over all of it, as `benches/python/mp_pool_suite.py` spreads them.
pub fn spread_page(task: u64, tasks: u64, pages: usize) -> usize {
    (u128::from(task) * pages as u128 / u128::from(tasks.max(1))) as usize
}

/// The wrapping sum of the little-endian `u64` words of page `page` of `data`, where a trailing
/// partial word counts for nothing; 0 for a page past the end.
pub fn page_sum(data: &[u8], page: usize) -> u64 {
    let start = page.saturating_mul(PAGE).min(data.len());
    let end = start.saturating_add(PAGE).min(data.len());
    data[start..end]
        .chunks_exact(8)
        .map(|word| u64::from_le_bytes(word.try_into().unwrap_or_default()))
        .fold(0, u64::wrapping_add)
}

/// The bytes this process has passed to `write` and `send` syscalls so far, on any descriptor
/// and from any thread (`wchar` of `/proc/self/io`); `None` where there is no such file (not
/// Linux, or a kernel without task IO accounting).
pub fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|line| line.strip_prefix("wchar:")?.trim().parse().ok())
}

/// The bytes this process has got from `read`-family syscalls so far, on any descriptor and
/// from any thread (`rchar` of `/proc/self/io`, which `recv(2)` does not add to); `None` where
/// there is no such file.
pub fn bytes_read() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|line| line.strip_prefix("rchar:")?.trim().parse().ok())
}

/// `n` documents of `words` words each, drawn from `vocabulary` distinct words (`w0`, `w1`, ...)
/// in a fixed pseudo-random order: the inputs of workload 11, as `examples/mapreduce.rs` of the
/// facade makes them.
pub fn documents(n: u64, words: u64, vocabulary: u64) -> Vec<String> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            (0..words)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    format!("w{}", state % vocabulary.max(1))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
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
    fn pages_are_summed_as_words_and_spread_over_the_dataset() {
        let data = dataset(3 * PAGE);
        assert_eq!(&data[249..253], [249, 250, 0, 1]);
        // Page 1's words, from the pattern rather than from the data.
        let words = (0..PAGE / 8).map(|w| {
            let at = PAGE + w * 8;
            u64::from_le_bytes(std::array::from_fn(|b| ((at + b) % 251) as u8))
        });
        let expected = words.fold(0, u64::wrapping_add);
        assert_eq!(page_sum(&data, 1), expected);
        assert_eq!(page_sum(&data, 3), 0);
        assert_eq!(page_sum(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9], 0), 3);
        assert_eq!((0..4).map(|t| spread_page(t, 4, 10)).collect::<Vec<_>>(), [0, 2, 5, 7]);
    }

    #[test]
    fn counts_its_own_writes() {
        if cfg!(target_os = "linux") {
            let path = std::env::temp_dir().join(format!("polyloop-wchar-{}", std::process::id()));
            let before = bytes_written().expect("own /proc io");
            std::fs::write(&path, [0; 1000]).unwrap();
            assert!(bytes_written().unwrap() >= before + 1000);
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn counts_its_own_reads() {
        if cfg!(target_os = "linux") {
            let before = bytes_read().expect("own /proc io");
            let _ = std::fs::read(std::env::current_exe().unwrap()).unwrap();
            assert!(bytes_read().unwrap() > before + 1000);
        }
    }

    #[test]
    fn documents_have_their_words_from_the_vocabulary() {
        let docs = documents(3, 200, 50);
        assert_eq!(docs.len(), 3);
        for doc in &docs {
            let words: Vec<&str> = doc.split_whitespace().collect();
            assert_eq!(words.len(), 200);
            assert!(words.iter().all(|w| w[1..].parse::<u64>().is_ok_and(|i| i < 50)));
        }
        assert_ne!(docs[0], docs[1]);
        assert_eq!(documents(3, 200, 50), docs);
    }

    #[test]
    fn reads_its_own_memory() {
        if cfg!(target_os = "linux") {
            let rss = rss_of(std::process::id()).expect("own /proc status");
            assert!(rss.peak_mib >= rss.current_mib && rss.current_mib > 0.0);
        }
    }
}
