//! The end-to-end benchmark suite that `cargo xtask bench` runs: its eleven workloads through
//! polyloop's facade, beside the same work done by tokio tasks in one process and the raw limits of
//! the machine, written as one JSON document.
//!
//! Usage: `suite [--quick] [--json <path>]` (without `--json` the document goes to stdout).
//! Progress goes to stderr. Every figure is measured in this one run, so ratios are fair.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use polyloop::Pool;
use polyloop_benches::Params;
use polyloop_benches::measure::{self, Progress, Samples};
use polyloop_benches::raw::{self, EchoSeries, Peer, PeerMode, Placement, Wait};
use polyloop_benches::reference;
use polyloop_benches::report::Report;
use serde_bytes::ByteBuf;

/// Returns its input: the cost of a task is then all overhead.
#[polyloop::task]
async fn noop(x: u64) -> u64 {
    x
}

/// Sleeps `ms` milliseconds on the worker's event loop.
#[polyloop::task]
async fn nap(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// Burns the CPU for `iters` spin iterations, blocking the worker's event loop as such work does.
#[polyloop::task]
async fn burn(iters: u64) -> u64 {
    measure::spin(iters)
}

/// Returns `bytes` bytes, as a task producing a large result would.
#[polyloop::task]
async fn blob(seed: u64, bytes: u64) -> ByteBuf {
    ByteBuf::from(vec![seed as u8; bytes as usize])
}

/// Sums page `page` of `data` (workload 9): one page of memory every worker maps.
#[cfg(target_os = "linux")]
#[polyloop::task]
async fn read_page(data: polyloop::SharedBytes, page: u64) -> u64 {
    measure::page_sum(&data, page as usize)
}

/// The dataset a worker of workload 9's reference got once, from the pool's initializer.
#[cfg(target_os = "linux")]
static KEPT: std::sync::OnceLock<polyloop::SharedBytes> = std::sync::OnceLock::new();

/// Workload 9's initializer: keeps the dataset for [`read_kept`].
#[cfg(target_os = "linux")]
#[polyloop::task]
async fn keep(data: polyloop::SharedBytes) {
    let _ = KEPT.set(data);
}

/// Workload 9's reference: [`read_page`]'s sum, of the dataset the worker kept, for a 16-byte
/// input (the page, then a salt added to the sum so that all 16 bytes matter).
#[cfg(target_os = "linux")]
#[polyloop::task]
async fn read_kept(input: [u8; 16]) -> u64 {
    let [page, salt] = page_and_salt(input);
    let sum = KEPT.get().map_or(0, |data| measure::page_sum(data, page as usize));
    sum.wrapping_add(salt)
}

/// The two little-endian `u64`s of a 16-byte input.
#[cfg(target_os = "linux")]
fn page_and_salt(input: [u8; 16]) -> [u64; 2] {
    let (page, salt) = input.split_at(8);
    [page, salt].map(|half| u64::from_le_bytes(half.try_into().unwrap_or_default()))
}

/// Adds one to `counter[0]` `adds` times, one atomic add each (workload 10).
#[cfg(target_os = "linux")]
#[polyloop::task]
async fn count_up(counter: polyloop::SharedAtomics, adds: u64) {
    for _ in 0..adds {
        counter[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The words of one document and how often each occurs (workload 11).
#[polyloop::task]
async fn count_words(document: String) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for word in document.split_whitespace() {
        *counts.entry(word.to_owned()).or_default() += 1;
    }
    counts
}

/// Two word counts merged into one: associative, as `map_reduce` needs (workload 11).
#[polyloop::task]
async fn merge(mut a: HashMap<String, u64>, b: HashMap<String, u64>) -> HashMap<String, u64> {
    merge_into(&mut a, b);
    a
}

/// Adds the counts of `b` to `a`.
fn merge_into(a: &mut HashMap<String, u64>, b: HashMap<String, u64>) {
    for (word, count) in b {
        *a.entry(word).or_default() += count;
    }
}

/// Counting what the process hands to `send(2)`, which `/proc/self/io` does not: its `wchar`
/// counts the `write` family only, and polyloop's sockets (`polyloop-socket`) write with `send`.
///
/// The suite defines the C symbol `send` itself, so every call to libc's `send` in this binary
/// (polyloop's and std's alike) comes here, counts its bytes and makes the same syscall. Only this
/// binary does so: the library and the other benches call libc's own.
#[cfg(target_os = "linux")]
mod sent {
    use std::sync::atomic::{AtomicU64, Ordering};

    static SENT: AtomicU64 = AtomicU64::new(0);

    /// Bytes handed to `send(2)` by this process so far, from any thread.
    pub(crate) fn bytes() -> u64 {
        SENT.load(Ordering::Relaxed)
    }

    /// `send(2)`, as libc defines it: `sendto` without an address.
    ///
    /// # Safety
    /// As for libc's `send`: `buf` is readable for `len` bytes.
    #[unsafe(no_mangle)]
    pub(crate) unsafe extern "C" fn send(
        fd: libc::c_int,
        buf: *const libc::c_void,
        len: libc::size_t,
        flags: libc::c_int,
    ) -> libc::ssize_t {
        let none = std::ptr::null::<libc::sockaddr>();
        // SAFETY: the caller's promise about `buf`; sendto with no address is send.
        let n = unsafe { libc::syscall(libc::SYS_sendto, fd, buf, len, flags, none, 0) };
        if n > 0 {
            SENT.fetch_add(n as u64, Ordering::Relaxed);
        }
        n as libc::ssize_t
    }
}

/// Counting what the process gets from `recv(2)` and `recvfrom(2)`, which `/proc/self/io` does
/// not: its `rchar` counts the `read` family only, and polyloop's sockets read through std's
/// `UnixStream::read`, which calls libc's `recv`.
///
/// As with [`sent`], the suite defines the C symbols itself, so every call to them in this
/// binary comes here, counts the bytes and makes the same syscall.
#[cfg(target_os = "linux")]
mod received {
    use std::sync::atomic::{AtomicU64, Ordering};

    static RECEIVED: AtomicU64 = AtomicU64::new(0);

    /// Bytes returned by `recv(2)` and `recvfrom(2)` in this process so far, from any thread.
    pub(crate) fn bytes() -> u64 {
        RECEIVED.load(Ordering::Relaxed)
    }

    fn counted(n: libc::c_long) -> libc::ssize_t {
        if n > 0 {
            RECEIVED.fetch_add(n as u64, Ordering::Relaxed);
        }
        n as libc::ssize_t
    }

    /// `recv(2)`, as libc defines it: `recvfrom` without an address.
    ///
    /// # Safety
    /// As for libc's `recv`: `buf` is writable for `len` bytes.
    #[unsafe(no_mangle)]
    pub(crate) unsafe extern "C" fn recv(
        fd: libc::c_int,
        buf: *mut libc::c_void,
        len: libc::size_t,
        flags: libc::c_int,
    ) -> libc::ssize_t {
        let (none, no_len) = (std::ptr::null_mut::<libc::sockaddr>(), std::ptr::null_mut::<u32>());
        // SAFETY: the caller's promise about `buf`; recvfrom with no address is recv.
        counted(unsafe { libc::syscall(libc::SYS_recvfrom, fd, buf, len, flags, none, no_len) })
    }

    /// `recvfrom(2)`, as libc defines it.
    ///
    /// # Safety
    /// As for libc's `recvfrom`: `buf` is writable for `len` bytes, and `addr`, if not null,
    /// for `*addr_len`.
    #[unsafe(no_mangle)]
    pub(crate) unsafe extern "C" fn recvfrom(
        fd: libc::c_int,
        buf: *mut libc::c_void,
        len: libc::size_t,
        flags: libc::c_int,
        addr: *mut libc::sockaddr,
        addr_len: *mut libc::socklen_t,
    ) -> libc::ssize_t {
        // SAFETY: the caller's promises about `buf`, `addr` and `addr_len`.
        counted(unsafe { libc::syscall(libc::SYS_recvfrom, fd, buf, len, flags, addr, addr_len) })
    }
}

/// The command line.
#[derive(Debug)]
struct Args {
    quick: bool,
    json: Option<PathBuf>,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut args = Args { quick: false, json: None };
        let mut it = std::env::args_os().skip(1);
        while let Some(arg) = it.next() {
            match arg.to_str() {
                Some("--quick") => args.quick = true,
                Some("--json") => {
                    args.json = Some(it.next().context("--json needs a path")?.into())
                }
                _ => anyhow::bail!(
                    "unknown argument {arg:?} (usage: suite [--quick] [--json <path>])"
                ),
            }
        }
        Ok(args)
    }
}

const STEPS: usize = 13;

/// One run of the suite: its sizes, the report it fills in, and its progress lines.
#[derive(Debug)]
struct Run {
    params: Params,
    report: Report,
    progress: Progress,
}

impl Run {
    /// Records polyloop's figure for `key` and prints `note` under the current step.
    fn polyloop(&mut self, key: &str, value: f64, note: &str) {
        self.report.polyloop(key, value);
        self.progress.note(note);
    }

    /// Marks the figures `keys` failed when their workload did; figures it measured before stay.
    fn check(&mut self, keys: &[&str], outcome: anyhow::Result<()>) {
        if let Err(err) = outcome {
            self.progress.note(&format!("FAILED: {err:#}"));
            self.report.error(keys, &err);
        }
    }

    /// The run's time limit on one workload.
    fn limit(&self) -> Duration {
        Duration::from_secs(self.params.workload_timeout_s)
    }
}

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    // A re-executed copy of this binary serving as the raw socketpair peer never returns here.
    raw::run_peer_if_requested();
    let args = Args::parse()?;
    let params = Params::new(args.quick);
    let report = Report::new(params.clone());
    let mut run = Run { params, report, progress: Progress::new(STEPS) };
    let started = Instant::now();

    raw_limits(&mut run).await;
    pool::run_all(&mut run).await;

    let report = &run.report;
    match &args.json {
        Some(path) => {
            report.write(path).with_context(|| format!("cannot write {}", path.display()))?
        }
        None => print!("{}", report.to_json()?),
    }
    eprintln!(
        "suite: done in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if report.has_errors() { ", with failures (see the report)" } else { "" }
    );
    Ok(())
}

/// Runs blocking work on a plain thread of its own and awaits it.
async fn on_thread<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    let result = rx.await.map_err(|_| anyhow::anyhow!("a measurement thread panicked"));
    let _ = thread.join();
    result?
}

/// The report's keys for the raw round trip's p50 and p99 with `placement`, where the measuring
/// side waits for the echo as `wait` says.
fn rtt_keys(wait: Wait, placement: Placement) -> [&'static str; 2] {
    match (wait, placement) {
        (Wait::Asleep, Placement::Pinned) => {
            ["socketpair_rtt_pinned_p50_us", "socketpair_rtt_pinned_p99_us"]
        }
        (Wait::Asleep, Placement::Unpinned) => {
            ["socketpair_rtt_unpinned_p50_us", "socketpair_rtt_unpinned_p99_us"]
        }
        (Wait::Polling, Placement::Pinned) => {
            ["socketpair_rtt_polling_pinned_p50_us", "socketpair_rtt_polling_pinned_p99_us"]
        }
        (Wait::Polling, Placement::Unpinned) => {
            ["socketpair_rtt_polling_unpinned_p50_us", "socketpair_rtt_polling_unpinned_p99_us"]
        }
    }
}

/// Records the raw round trip `rtt` taken with `wait` and `placement` and notes it.
fn report_rtt(run: &mut Run, wait: Wait, placement: Placement, rtt: &Samples) {
    let [p50, p99] = rtt_keys(wait, placement);
    run.report.raw(p50, rtt.quantile_us(0.5));
    run.report.raw(p99, rtt.quantile_us(0.99));
    run.progress.note(&format!(
        "raw round trip, {}, {}: p50 {:.1} us, p99 {:.1} us",
        wait.name(),
        placement.name(),
        rtt.quantile_us(0.5),
        rtt.quantile_us(0.99)
    ));
}

/// The raw figures: socketpair round trip and bandwidth, re-exec time and memory of a peer.
async fn raw_limits(run: &mut Run) {
    run.progress.step(
        "raw: 32-byte socketpair round trip between two processes, receiver asleep, pinned and \
         unpinned",
    );
    let (warmup, samples) = (run.params.apply_warmup, run.params.apply_samples);
    for placement in Placement::ALL {
        let echo = on_thread(move || {
            placement.place_measuring_thread()?;
            let mut peer = Peer::spawn(PeerMode::Echo, None, placement)?;
            let rtt = peer.round_trips(warmup, samples)?;
            Ok((rtt, peer))
        })
        .await;
        match echo {
            // Replaced by the figures interleaved with polyloop's apply when that workload runs.
            Ok((rtt, peer)) => {
                report_rtt(run, Wait::Asleep, placement, &rtt);
                if placement == Placement::Pinned
                    && let Some(rss) = measure::rss_of(peer.pid())
                {
                    run.report.raw("peer_rss_mib", rss.peak_mib);
                }
                if let Err(err) = on_thread(move || Ok(peer.finish()?)).await {
                    run.report.error(&rtt_keys(Wait::Asleep, placement), &err);
                }
            }
            Err(err) => run.report.error(&rtt_keys(Wait::Asleep, placement), &err),
        }
    }
    let first_byte = on_thread(|| {
        Placement::Pinned.place_measuring_thread()?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let peer = Peer::spawn(PeerMode::Echo, None, Placement::Pinned)?;
            times.push(peer.spawn_to_first_byte.as_secs_f64() * 1e3);
            peer.finish()?;
        }
        Ok(measure::median(times))
    })
    .await;
    match first_byte {
        Ok(ms) => {
            run.report.raw("reexec_first_byte_ms", ms);
            run.progress.note(&format!("re-exec to first byte {ms:.2} ms (median of 5)"));
        }
        Err(err) => run.report.error(&["reexec_first_byte_ms"], &err),
    }

    run.progress.step("raw: socketpair bandwidth, 1 MiB messages, default and 4 MiB buffers");
    let (count, size) = (run.params.result_tasks as u32, run.params.result_bytes as u32);
    for (key, buffer) in
        [("socketpair_bw_default_mib_s", None), ("socketpair_bw_4mib_mib_s", Some(4 << 20))]
    {
        let measured = on_thread(move || {
            Placement::Pinned.place_measuring_thread()?;
            let mut peer = Peer::spawn(PeerMode::Source, buffer, Placement::Pinned)?;
            let granted = raw::send_buffer(peer.stream())?;
            peer.receive(count.min(16), size)?;
            let mut rates = Vec::new();
            for _ in 0..3 {
                let elapsed = peer.receive(count, size)?;
                rates.push(measure::mib_per_second(u64::from(count) * u64::from(size), elapsed));
            }
            peer.finish()?;
            Ok((measure::median(rates), granted))
        })
        .await;
        match measured {
            Ok((rate, granted)) => {
                run.report.raw(key, rate);
                run.progress
                    .note(&format!("{key}: {rate:.0} MiB/s (SO_SNDBUF granted {granted} B)"));
            }
            Err(err) => run.report.error(&[key], &err),
        }
    }
}

/// Awaits one workload within `limit`, so a hang fails the run instead of stalling it.
async fn limited<T>(
    limit: Duration,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("timed out after {} s", limit.as_secs())),
    }
}

/// The workloads that go through polyloop, each beside its in-process reference.
mod pool {
    use super::*;

    /// Pools built for each fresh-pool figure, whose median is reported.
    const FRESH_POOLS: usize = 3;

    /// Round trips in one block of the interleaved apply and raw echo measurements.
    const BLOCK: usize = 50;

    fn builder(params: &Params) -> polyloop::PoolBuilder {
        Pool::builder().processes(params.processes)
    }

    pub(super) async fn run_all(run: &mut Run) {
        let workers = run.params.processes;
        let limit = run.limit();

        run.progress.step("1. no-op map throughput, fresh and warm pools (and 7. worker RSS)");
        let outcome = limited(limit, noop_map_fresh(run)).await;
        run.check(&["noop_map_small_fresh", "noop_map_large_fresh"], outcome);
        let outcome = limited(limit, noop_apply_rss(run)).await;
        run.check(
            &["noop_map_small", "noop_map_large", "worker_rss_mib", "apply_p50_us", "apply_p99_us"],
            outcome,
        );
        let (small, large) = (run.params.noop_small, run.params.noop_large);
        // Fresh: each map on a runtime of its own; warm: the larger map after the smaller.
        for (key, n) in [("noop_map_small_fresh", small), ("noop_map_large_fresh", large)] {
            if let Ok(rate) = reference::isolated(workers, move || reference::noop_map(n)).await {
                run.report.reference(key, rate);
            }
        }
        if let Ok((s, l)) = reference::isolated(workers, move || async move {
            (reference::noop_map(small).await, reference::noop_map(large).await)
        })
        .await
        {
            run.report.reference("noop_map_small", s);
            run.report.reference("noop_map_large", l);
            run.progress.note(&format!("in-process tokio: {s:.0} and {l:.0} tasks/s"));
        }

        run.progress.step("2. apply round trip, in-process reference");
        let (warmup, samples) = (run.params.apply_warmup, run.params.apply_samples);
        if let Ok(rtt) =
            reference::isolated(workers, move || reference::apply_round_trips(warmup, samples))
                .await
        {
            run.report.reference("apply_p50_us", rtt.quantile_us(0.5));
            run.report.reference("apply_p99_us", rtt.quantile_us(0.99));
        }

        run.progress.step(
            "2. apply round trip, busy_poll on a current-thread runtime, beside the raw echo with \
             the caller polling",
        );
        let outcome = apply_busy_poll_beside_raw(run).await;
        run.check(&["apply_busy_poll_p50_us", "apply_busy_poll_p99_us"], outcome);

        run.progress
            .step("3. sleeping tasks at child concurrency 16, and many at high concurrency");
        let outcome = limited(limit, sleeps(run, false)).await;
        run.check(&["sleep_s", "sleep_vs_ideal"], outcome);
        let outcome = limited(limit, sleeps(run, true)).await;
        run.check(&["sleep_many_s"], outcome);
        let params = &run.params;
        let pause = Duration::from_millis(params.sleep_ms);
        let (n, slots) = (params.sleep_tasks, workers * params.sleep_concurrency as usize);
        let (many, many_slots) =
            (params.sleep_many, workers * params.sleep_many_concurrency as usize);
        let ideal = params.sleep_ideal_s(n, params.sleep_concurrency);
        let many_ideal = params.sleep_ideal_s(many, params.sleep_many_concurrency);
        if let Ok((s, m)) = reference::isolated(workers, move || async move {
            let few = reference::sleeps(n, slots, pause).await;
            (few, reference::sleeps(many, many_slots, pause).await)
        })
        .await
        {
            run.report.reference("sleep_s", s);
            run.report.reference("sleep_vs_ideal", s / ideal);
            run.report.reference("sleep_many_s", m);
        }
        run.report.raw("sleep_ideal_s", ideal);
        run.report.raw("sleep_many_ideal_s", many_ideal);

        run.progress.step("4. CPU-bound tasks: speedup over one process running them in turn");
        let outcome = limited(limit, cpu(run)).await;
        run.check(&["cpu_small_speedup", "cpu_large_speedup"], outcome);

        run.progress.step("5. tasks returning 1 MiB each");
        let outcome = limited(limit, results(run)).await;
        run.check(&["result_1mib_mib_s"], outcome);
        let (n, bytes) = (run.params.result_tasks, run.params.result_bytes);
        if let Ok(rate) = reference::isolated(workers, move || reference::results(n, bytes)).await {
            run.report.reference("result_1mib_mib_s", rate);
        }

        run.progress.step("6. build() to workers ready, and close()");
        let outcome = limited(limit, startup(run)).await;
        run.check(&["ready_ms", "close_ms"], outcome);
        let runs = run.params.startup_runs;
        if let Ok((ready, close)) = on_thread(move || {
            let mut times = Vec::new();
            for _ in 0..runs {
                times.push(reference::runtime_start_stop(workers)?);
            }
            Ok((
                measure::median(times.iter().map(|t| t.0).collect()),
                measure::median(times.iter().map(|t| t.1).collect()),
            ))
        })
        .await
        {
            run.report.reference("ready_ms", ready);
            run.report.reference("close_ms", close);
        }

        run.progress.step("8. sweep: throughput by child concurrency and process count");
        let outcome = limited(limit, sweep(run)).await;
        run.check(&["sweep"], outcome);
        let n = run.params.sweep_n;
        if let Ok(rate) = reference::isolated(workers, move || reference::noop_map(n)).await {
            run.report.sweep_reference(rate);
        }

        run.progress
            .step("9. a read-only SharedBytes dataset read by many tasks, and 16-byte inputs");
        #[cfg(target_os = "linux")]
        {
            let outcome = limited(limit, shared::bytes(run)).await;
            run.check(&shared::BYTES_KEYS, outcome);
        }
        #[cfg(not(target_os = "linux"))]
        run.progress.note("n/a on this OS: shared values need Linux");

        run.progress.step("10. a SharedAtomics counter incremented by tasks in every worker");
        #[cfg(target_os = "linux")]
        {
            let outcome = limited(limit, shared::atomics(run)).await;
            run.check(&["shared_atomics_ms"], outcome);
        }
        #[cfg(not(target_os = "linux"))]
        run.progress.note("n/a on this OS: shared values need Linux");

        run.progress.step("11. a word count with map_reduce, and with map and a merge here");
        let outcome = limited(limit, reduce::word_count(run)).await;
        run.check(&reduce::KEYS, outcome);
    }

    async fn noop_map(pool: &Pool, n: u64) -> anyhow::Result<f64> {
        let started = Instant::now();
        let out: Vec<u64> = pool.map(noop, 0..n).await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            out.len() as u64 == n && out.iter().enumerate().all(|(i, x)| *x == i as u64),
            "map returned wrong results"
        );
        Ok(measure::per_second(n, elapsed))
    }

    /// Workload 1 as a program that maps once sees it: each map is the first work of a pool just
    /// built with default settings, which is closed after it. Only the map is timed (workload 6
    /// times build and close); the median of [`FRESH_POOLS`] pools.
    async fn noop_map_fresh(run: &mut Run) -> anyhow::Result<()> {
        for (key, n) in [
            ("noop_map_small_fresh", run.params.noop_small),
            ("noop_map_large_fresh", run.params.noop_large),
        ] {
            let mut rates = Vec::with_capacity(FRESH_POOLS);
            for _ in 0..FRESH_POOLS {
                let pool = builder(&run.params).build().await?;
                rates.push(noop_map(&pool, n).await?);
                pool.close().await?;
            }
            let rate = measure::median(rates);
            run.polyloop(
                key,
                rate,
                &format!("polyloop, fresh pools: {n} inputs at {rate:.0} tasks/s"),
            );
        }
        Ok(())
    }

    /// Workloads 1 (on a warm pool), 2 and 7 on one pool with default settings.
    async fn noop_apply_rss(run: &mut Run) -> anyhow::Result<()> {
        let pool = builder(&run.params).build().await?;
        noop_map(&pool, run.params.noop_small.min(10_000)).await?;
        for (key, n) in
            [("noop_map_small", run.params.noop_small), ("noop_map_large", run.params.noop_large)]
        {
            let mut rates = Vec::with_capacity(3);
            for _ in 0..3 {
                rates.push(noop_map(&pool, n).await?);
            }
            let rate = measure::median(rates);
            run.polyloop(
                key,
                rate,
                &format!("polyloop, warm pool: {n} inputs at {rate:.0} tasks/s"),
            );
        }

        apply_beside_raw(run, &pool).await?;

        let pids: Vec<u32> = pool.stats().workers.iter().map(|w| w.pid).collect();
        anyhow::ensure!(!pids.is_empty(), "pool.stats() lists no workers");
        if cfg!(target_os = "linux") {
            let mut peak = 0.0f64;
            for pid in &pids {
                let rss =
                    measure::rss_of(*pid).with_context(|| format!("no /proc/{pid}/status"))?;
                peak = peak.max(rss.peak_mib);
            }
            run.polyloop(
                "worker_rss_mib",
                peak,
                &format!("worker peak RSS (VmHWM) of pids {pids:?}: {peak:.2} MiB"),
            );
        } else {
            run.progress.note("worker RSS: n/a on this OS");
        }
        pool.close().await?;
        Ok(())
    }

    /// Workload 2 on `pool`, in blocks interleaved with blocks of the raw echo, pinned and
    /// unpinned, so that all three see the same machine: on a VM a wake-up costs ~60 us while the
    /// other CPU idles (the hypervisor halts it) and a few microseconds while a neighbour keeps it
    /// busy. The raw figures replace the ones taken alone at the start.
    async fn apply_beside_raw(run: &mut Run, pool: &Pool) -> anyhow::Result<()> {
        let (warmup, samples) = (run.params.apply_warmup, run.params.apply_samples);
        let echoes = echo_series(Wait::Asleep).await?;
        let (rtt, echoes) = apply_interleaved(pool, echoes, warmup, samples).await?;
        let (p50, p99) = (rtt.quantile_us(0.5), rtt.quantile_us(0.99));
        run.report.polyloop("apply_p50_us", p50);
        run.polyloop(
            "apply_p99_us",
            p99,
            &format!("polyloop apply: p50 {p50:.1} us, p99 {p99:.1} us"),
        );
        for (placement, raw) in finish_echoes(echoes).await? {
            report_rtt(run, Wait::Asleep, placement, &raw);
        }
        Ok(())
    }

    /// Workload 2 in the opt-in low-latency setup that the README documents: a pool built inside
    /// a current-thread runtime with `drivers_on_current_runtime()` and `busy_poll`, so that the
    /// caller and the drivers share one thread and the drivers poll for results before they
    /// sleep. Its raw reference polls too, on the measuring side only: the workers do not poll,
    /// so the peer sleeps in `read` as they do. The runtime runs on a thread of its own, which
    /// is never pinned, and the blocks interleave as in [`apply_beside_raw`].
    async fn apply_busy_poll_beside_raw(run: &mut Run) -> anyhow::Result<()> {
        let (params, limit) = (run.params.clone(), run.limit());
        let (rtt, raws) = on_thread(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            // Within the runtime, so that a hang drops (kills and reaps) the pool and the peers.
            runtime.block_on(limited(limit, busy_poll_round_trips(params)))
        })
        .await?;
        let (p50, p99) = (rtt.quantile_us(0.5), rtt.quantile_us(0.99));
        run.report.polyloop("apply_busy_poll_p50_us", p50);
        run.polyloop(
            "apply_busy_poll_p99_us",
            p99,
            &format!("polyloop apply, busy_poll, current-thread: p50 {p50:.1} us, p99 {p99:.1} us"),
        );
        for (placement, raw) in raws {
            report_rtt(run, Wait::Polling, placement, &raw);
        }
        Ok(())
    }

    /// [`apply_busy_poll_beside_raw`]'s measurement, on the current-thread runtime that builds
    /// the pool: the apply round trips, then the polling echo's of each placement. The pool is
    /// closed at the end, which reaps its workers.
    async fn busy_poll_round_trips(
        params: Params,
    ) -> anyhow::Result<(Samples, Vec<(Placement, Samples)>)> {
        let pool = builder(&params)
            .drivers_on_current_runtime()
            .busy_poll(Duration::from_micros(params.apply_busy_poll_us))
            .build()
            .await?;
        let echoes = echo_series(Wait::Polling).await?;
        let (warmup, samples) = (params.apply_warmup, params.apply_samples);
        let (rtt, echoes) = apply_interleaved(&pool, echoes, warmup, samples).await?;
        pool.close().await?;
        Ok((rtt, finish_echoes(echoes).await?))
    }

    /// An echo series of each placement whose measuring side waits as `wait` says, each started
    /// from a fresh thread: a peer inherits the CPUs of the thread that spawns it.
    async fn echo_series(wait: Wait) -> anyhow::Result<Vec<EchoSeries>> {
        let mut echoes = Vec::with_capacity(Placement::ALL.len());
        for placement in Placement::ALL {
            echoes.push(on_thread(move || Ok(EchoSeries::spawn(placement, wait)?)).await?);
        }
        Ok(echoes)
    }

    /// `samples` round trips of `pool.apply(noop, i)` after `warmup` unrecorded ones, in blocks
    /// of [`BLOCK`], each after a block of every series of `echoes` on a thread of its own (a
    /// series places the thread it measures on). The series come back with their samples.
    async fn apply_interleaved(
        pool: &Pool,
        mut echoes: Vec<EchoSeries>,
        warmup: usize,
        samples: usize,
    ) -> anyhow::Result<(Samples, Vec<EchoSeries>)> {
        for i in 0..warmup {
            pool.apply(noop, i as u64).await?;
        }
        let mut rtt = Samples::with_capacity(samples);
        let mut done = 0;
        while done < samples {
            let k = BLOCK.min(samples - done);
            let mut measured = Vec::with_capacity(echoes.len());
            for mut echo in echoes {
                measured.push(
                    on_thread(move || {
                        echo.block(k)?;
                        Ok(echo)
                    })
                    .await?,
                );
            }
            echoes = measured;
            for i in done..done + k {
                let started = Instant::now();
                let out = pool.apply(noop, i as u64).await?;
                let elapsed = started.elapsed();
                anyhow::ensure!(out == i as u64, "apply returned a wrong result");
                rtt.push(elapsed);
            }
            done += k;
        }
        Ok((rtt, echoes))
    }

    /// Ends each series' peer, and reaps it; each placement's samples.
    async fn finish_echoes(echoes: Vec<EchoSeries>) -> anyhow::Result<Vec<(Placement, Samples)>> {
        let mut raws = Vec::with_capacity(echoes.len());
        for echo in echoes {
            let placement = echo.placement();
            raws.push((placement, on_thread(move || Ok(echo.finish()?)).await?));
        }
        Ok(raws)
    }

    async fn sleeps(run: &mut Run, many: bool) -> anyhow::Result<()> {
        let params = &run.params;
        let (n, concurrency) = if many {
            (params.sleep_many, params.sleep_many_concurrency)
        } else {
            (params.sleep_tasks, params.sleep_concurrency)
        };
        let pool = builder(params).child_concurrency(concurrency).build().await?;
        let started = Instant::now();
        let out: Vec<u64> = pool.map(nap, std::iter::repeat_n(params.sleep_ms, n as usize)).await?;
        let secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(out.len() as u64 == n, "map returned {} results for {n} inputs", out.len());
        pool.close().await?;
        let ideal = params.sleep_ideal_s(n, concurrency);
        let note = format!(
            "polyloop: {n} sleeps at concurrency {concurrency}: {secs:.3} s (ideal {ideal:.3} s, \
             ratio {:.4})",
            secs / ideal
        );
        if many {
            run.polyloop("sleep_many_s", secs, &note);
        } else {
            run.polyloop("sleep_s", secs, &note);
            run.report.polyloop("sleep_vs_ideal", secs / ideal);
        }
        Ok(())
    }

    async fn cpu(run: &mut Run) -> anyhow::Result<()> {
        let target = Duration::from_millis(run.params.cpu_task_ms);
        let iters = on_thread(move || Ok(measure::calibrate_spin(target))).await?;
        let pool = builder(&run.params).build().await?;
        let workers = run.params.processes;
        // One warm-up task per worker, so page faults of a fresh worker are not timed.
        let _: Vec<u64> = pool.map(burn, std::iter::repeat_n(iters / 20, workers)).await?;
        for (key, n) in [
            ("cpu_small_speedup", run.params.cpu_small),
            ("cpu_large_speedup", run.params.cpu_large),
        ] {
            let serial = on_thread(move || {
                let started = Instant::now();
                for _ in 0..n {
                    measure::spin(iters);
                }
                Ok(started.elapsed().as_secs_f64())
            })
            .await?;
            let done_before = tasks_done(&pool);
            let started = Instant::now();
            let out: Vec<u64> = pool.map(burn, std::iter::repeat_n(iters, n as usize)).await?;
            let parallel = started.elapsed().as_secs_f64();
            // How the tasks were spread tells a scheduling problem from a slow machine.
            let spread: Vec<u64> = tasks_done(&pool)
                .iter()
                .zip(&done_before)
                .map(|(after, before)| after - before)
                .collect();
            anyhow::ensure!(out.len() as u64 == n, "map returned {} results", out.len());
            if let Ok(in_process) =
                reference::isolated(workers, move || reference::cpu(n, iters)).await
            {
                run.report.reference(key, serial / in_process);
            }
            let note = format!(
                "{n} tasks of {} ms: serial {serial:.3} s, polyloop {parallel:.3} s, speedup {:.2}x, \
                 tasks per worker {spread:?}",
                run.params.cpu_task_ms,
                serial / parallel
            );
            run.polyloop(key, serial / parallel, &note);
        }
        run.report.raw("cpu_ideal_speedup", workers as f64);
        pool.close().await?;
        Ok(())
    }

    fn tasks_done(pool: &Pool) -> Vec<u64> {
        pool.stats().workers.iter().map(|w| w.tasks_done).collect()
    }

    async fn results(run: &mut Run) -> anyhow::Result<()> {
        let params = &run.params;
        let pool = builder(params).build().await?;
        let bytes = params.result_bytes as u64;
        let inputs = |n: u64| (0..n).map(move |seed| (seed, bytes));
        let _: Vec<ByteBuf> = pool.map(blob, inputs(params.processes as u64 * 2)).await?;
        let mut rates = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let out: Vec<ByteBuf> = pool.map(blob, inputs(params.result_tasks)).await?;
            let elapsed = started.elapsed();
            let total: u64 = out.iter().map(|b| b.len() as u64).sum();
            anyhow::ensure!(total == params.result_tasks * bytes, "results are {total} bytes");
            rates.push(measure::mib_per_second(total, elapsed));
        }
        pool.close().await?;
        let rate = measure::median(rates);
        run.polyloop("result_1mib_mib_s", rate, &format!("polyloop: {rate:.0} MiB/s"));
        Ok(())
    }

    async fn startup(run: &mut Run) -> anyhow::Result<()> {
        let mut ready = Vec::new();
        let mut close = Vec::new();
        for _ in 0..run.params.startup_runs {
            let started = Instant::now();
            let pool = builder(&run.params).build().await?;
            ready.push(started.elapsed().as_secs_f64() * 1e3);
            let closing = Instant::now();
            pool.close().await?;
            close.push(closing.elapsed().as_secs_f64() * 1e3);
        }
        let (ready, close) = (measure::median(ready), measure::median(close));
        run.report.polyloop("ready_ms", ready);
        run.polyloop(
            "close_ms",
            close,
            &format!("polyloop: ready {ready:.2} ms, close {close:.2} ms (medians)"),
        );
        Ok(())
    }

    async fn sweep(run: &mut Run) -> anyhow::Result<()> {
        let Run { params, report, progress } = run;
        for series in &params.sweep_series {
            for &concurrency in &params.sweep_concurrency {
                let mut builder =
                    Pool::builder().processes(series.processes).child_concurrency(concurrency);
                if series.full_prefetch {
                    builder = builder.prefetch(concurrency);
                }
                let pool = builder.build().await?;
                noop_map(&pool, params.sweep_n / 10).await?;
                let rate = noop_map(&pool, params.sweep_n).await?;
                pool.close().await?;
                report.sweep_point(series, concurrency, rate);
                progress.note(&format!(
                    "{}, child concurrency {concurrency}: {rate:.0} tasks/s",
                    series.label
                ));
            }
        }
        Ok(())
    }

    /// Workloads 9 and 10: the shared values, which need Linux (`memfd_create` and `/proc`).
    #[cfg(target_os = "linux")]
    mod shared {
        use std::sync::Arc;
        use std::sync::atomic::Ordering;

        use polyloop::{SharedAtomics, SharedBytes};

        use super::*;

        /// Maps of each kind, whose median is reported; each SharedBytes map gets a new value,
        /// so every one of them maps it and faults its pages in, as a first use does. Even, so
        /// that each kind goes first in as many rounds as the other (the first map of a round
        /// measured 2-6 ms slower, whichever it was).
        const ROUNDS: usize = 4;

        /// The figures workload 9 reports.
        pub(super) const BYTES_KEYS: [&str; 4] =
            ["shared_bytes_ms", "shared_kept_ms", "shared_bytes_written", "shared_bytes_create_ms"];

        fn millis(elapsed: Duration) -> f64 {
            elapsed.as_secs_f64() * 1e3
        }

        /// The reference's input for a task reading `page`: 16 bytes, the page and a salt.
        fn kept_input(page: usize) -> [u8; 16] {
            let page = page as u64;
            let mut input = [0; 16];
            input[..8].copy_from_slice(&page.to_le_bytes());
            input[8..].copy_from_slice(&page.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            input
        }

        /// The bytes the parent passed to `write` and `send` syscalls while `work` ran,
        /// beside its output.
        async fn counting_writes<T>(
            work: impl Future<Output = anyhow::Result<T>>,
        ) -> anyhow::Result<(T, u64)> {
            let written = || {
                let wchar = measure::bytes_written().context("/proc/self/io has no wchar")?;
                anyhow::Ok(wchar + crate::sent::bytes())
            };
            let before = written()?;
            let out = work.await?;
            Ok((out, written()?.saturating_sub(before)))
        }

        /// Runs `map`: its output, its time in milliseconds and the bytes the parent wrote
        /// meanwhile ([`counting_writes`]).
        async fn timed<T>(
            map: impl Future<Output = Result<T, polyloop::TaskError>>,
        ) -> anyhow::Result<(T, f64, u64)> {
            let started = Instant::now();
            let (out, written) = counting_writes(async { Ok(map.await?) }).await?;
            Ok((out, millis(started.elapsed()), written))
        }

        /// Workload 9: one read-only dataset passed to every task of a map, each task summing
        /// one page of it, beside the reference: the same tasks on the same pool with a 16-byte
        /// input, reading a second copy of the dataset that each worker got once, from the
        /// pool's initializer (as Python's `shared_memory` is best used). Both are new values
        /// no worker has read, so both maps fault in the pages they read; the difference is
        /// what passing the value in every task's input costs. Each round has a new pool and
        /// values; creating a value is timed on its own. The bytes written are the most of any
        /// round, counted by [`counting_writes`].
        pub(super) async fn bytes(run: &mut Run) -> anyhow::Result<()> {
            let params = &run.params;
            let (len, n) = (params.shared_bytes, params.shared_tasks);
            let dataset: Arc<[u8]> = measure::dataset(len).into();
            let pages: Vec<usize> =
                (0..n).map(|i| measure::spread_page(i, n, len / measure::PAGE)).collect();
            let expected: Vec<u64> =
                pages.iter().map(|&p| measure::page_sum(&dataset, p)).collect();
            let kept: Vec<[u8; 16]> = pages.iter().map(|&p| kept_input(p)).collect();
            let kept_expected: Vec<u64> = expected
                .iter()
                .zip(&kept)
                .map(|(sum, input)| sum.wrapping_add(page_and_salt(*input)[1]))
                .collect();

            let (mut shared_ms, mut kept_ms, mut create_ms) = (Vec::new(), Vec::new(), Vec::new());
            let (mut shared_written, mut kept_written) = (0, 0);
            for round in 0..ROUNDS {
                let started = Instant::now();
                let data = SharedBytes::copy_from_slice(&dataset)?;
                create_ms.push(millis(started.elapsed()));
                anyhow::ensure!(data.is_shared(), "the SharedBytes lives on the heap, not shared");
                let once = SharedBytes::copy_from_slice(&dataset)?;
                let pool = builder(params).initializer(keep, once.clone()).build().await?;
                // Neither timed map is the pool's first work.
                let _: Vec<u64> = pool.map(noop, 0..1000).await?;

                // Which map goes first alternates, so that neither always meets a pool (and
                // a page cache) the other has warmed.
                for shared_now in [round % 2 == 0, round % 2 != 0] {
                    if shared_now {
                        let inputs = pages.iter().map(|&page| (data.clone(), page as u64));
                        let (out, ms, written) = timed(pool.map(read_page, inputs)).await?;
                        anyhow::ensure!(
                            out == expected,
                            "the SharedBytes tasks returned wrong sums"
                        );
                        shared_ms.push(ms);
                        shared_written = shared_written.max(written);
                    } else {
                        let (out, ms, written) =
                            timed(pool.map(read_kept, kept.iter().copied())).await?;
                        anyhow::ensure!(
                            out == kept_expected,
                            "the 16-byte tasks returned wrong sums"
                        );
                        kept_ms.push(ms);
                        kept_written = kept_written.max(written);
                    }
                }
                pool.close().await?;
            }

            let (shared, kept) = (measure::median(shared_ms), measure::median(kept_ms));
            let create = measure::median(create_ms);
            run.report.polyloop("shared_kept_ms", kept);
            run.report.polyloop("shared_bytes_written", shared_written as f64);
            run.report.polyloop("shared_kept_written", kept_written as f64);
            run.report.polyloop("shared_bytes_create_ms", create);
            run.polyloop(
                "shared_bytes_ms",
                shared,
                &format!(
                    "polyloop: {} MiB SharedBytes to {n} tasks {shared:.2} ms, 16-byte inputs \
                     {kept:.2} ms ({:.2}x); parent wrote {shared_written} and {kept_written} \
                     bytes; creating the value {create:.1} ms",
                    len >> 20,
                    shared / kept
                ),
            );

            let workers = run.params.processes;
            if let Ok((ms, sums)) =
                reference::isolated(workers, move || reference::page_sums(dataset, pages)).await
                && sums == expected
            {
                run.report.reference("shared_bytes_ms", ms);
            }
            Ok(())
        }

        /// Workload 10: tasks in every worker add to one counter in place. The counter must end
        /// at exactly the number of adds; if it does not, the workload fails.
        pub(super) async fn atomics(run: &mut Run) -> anyhow::Result<()> {
            let (tasks, adds) = (run.params.atomics_tasks, run.params.atomics_adds);
            let expected = tasks * adds;
            let pool = builder(&run.params).build().await?;
            let warm = SharedAtomics::new(1)?;
            let _: Vec<()> = pool.map(count_up, (0..1000).map(|_| (warm.clone(), 1))).await?;
            let mut times = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                let counter = SharedAtomics::new(1)?;
                let inputs = (0..tasks).map(|_| (counter.clone(), adds));
                let started = Instant::now();
                let _: Vec<()> = pool.map(count_up, inputs).await?;
                times.push(millis(started.elapsed()));
                let ended = counter[0].load(Ordering::SeqCst);
                run.report.polyloop("shared_atomics_count", ended as f64);
                anyhow::ensure!(ended == expected, "the counter ended at {ended}, not {expected}");
            }
            pool.close().await?;
            let time = measure::median(times);
            run.polyloop(
                "shared_atomics_ms",
                time,
                &format!(
                    "polyloop: {tasks} tasks x {adds} fetch_add: {time:.2} ms, ended at {expected}"
                ),
            );
            let workers = run.params.processes;
            if let Ok((ms, ended)) =
                reference::isolated(workers, move || reference::count_up(tasks, adds)).await
                && ended == expected
            {
                run.report.reference("shared_atomics_ms", ms);
            }
            Ok(())
        }
    }

    /// Workload 11: a word count over many documents, folded in the workers by `map_reduce`,
    /// beside `map` and a merge of every document's table in the parent.
    mod reduce {
        use super::*;

        /// Rounds of each, interleaved and in alternating order (even, so each goes first as
        /// often); the medians are reported.
        const ROUNDS: usize = 4;

        /// The figures workload 11 reports.
        pub(in crate::pool) const KEYS: [&str; 4] = [
            "reduce_ms",
            "reduce_map_merge_ms",
            "reduce_bytes_read",
            "reduce_map_merge_bytes_read",
        ];

        /// A word count's table.
        type Counts = HashMap<String, u64>;

        /// The bytes the parent got from `read` and `recv` syscalls while `work` ran (`rchar` of
        /// `/proc/self/io` and the suite's own count of `recv`), beside its output; `None`
        /// where that cannot be counted (not Linux).
        async fn counting_reads<T>(
            work: impl Future<Output = anyhow::Result<T>>,
        ) -> anyhow::Result<(T, Option<u64>)> {
            #[cfg(target_os = "linux")]
            let read = || {
                let rchar = measure::bytes_read().context("/proc/self/io has no rchar")?;
                anyhow::Ok(Some(rchar + crate::received::bytes()))
            };
            #[cfg(not(target_os = "linux"))]
            let read = || anyhow::Ok(None::<u64>);
            let before = read()?;
            let out = work.await?;
            let after = read()?;
            Ok((out, before.zip(after).map(|(before, after)| after.saturating_sub(before))))
        }

        /// Tasks the workers have finished so far: folds for `map_reduce`, documents for `map`.
        fn tables_back(pool: &Pool) -> u64 {
            tasks_done(pool).iter().sum()
        }

        /// `map_reduce(count_words, docs, merge)`: its count, time and bytes read, and how many
        /// tables came back.
        async fn reduced(
            pool: &Pool,
            docs: &[String],
        ) -> anyhow::Result<(Counts, f64, Option<u64>, u64)> {
            let before = tables_back(pool);
            let ((counts, ms), read) = counting_reads(async {
                let started = Instant::now();
                let counts = pool.map_reduce(count_words, docs.iter().cloned(), merge).await?;
                anyhow::Ok((counts.unwrap_or_default(), millis(started.elapsed())))
            })
            .await?;
            Ok((counts, ms, read, tables_back(pool) - before))
        }

        /// The reference: `map(count_words, docs)`, then every table merged here.
        async fn mapped(
            pool: &Pool,
            docs: &[String],
        ) -> anyhow::Result<(Counts, f64, Option<u64>, u64)> {
            let before = tables_back(pool);
            let ((counts, ms), read) = counting_reads(async {
                let started = Instant::now();
                let tables: Vec<Counts> = pool.map(count_words, docs.iter().cloned()).await?;
                let mut counts = Counts::new();
                for table in tables {
                    merge_into(&mut counts, table);
                }
                anyhow::Ok((counts, millis(started.elapsed())))
            })
            .await?;
            Ok((counts, ms, read, tables_back(pool) - before))
        }

        fn millis(elapsed: Duration) -> f64 {
            elapsed.as_secs_f64() * 1e3
        }

        /// Workload 11 on one pool: [`ROUNDS`] rounds of `map_reduce` and of the reference,
        /// interleaved, the first of each round alternating, each result checked against the
        /// other and against a count made here. The bytes read are the most of any round.
        pub(in crate::pool) async fn word_count(run: &mut Run) -> anyhow::Result<()> {
            let params = &run.params;
            let docs = measure::documents(
                params.reduce_docs,
                params.reduce_words,
                params.reduce_vocabulary,
            );
            let mut expected = Counts::new();
            for doc in &docs {
                for word in doc.split_whitespace() {
                    *expected.entry(word.to_owned()).or_default() += 1;
                }
            }
            let pool = builder(params).build().await?;
            // Neither timed map is the pool's first work.
            let warm = &docs[..docs.len().min(100)];
            reduced(&pool, warm).await?;
            mapped(&pool, warm).await?;
            #[cfg(target_os = "linux")]
            let received_before = crate::received::bytes();

            let (mut reduce_ms, mut map_ms) = (Vec::new(), Vec::new());
            let (mut reduce_read, mut map_read) = (None::<u64>, None::<u64>);
            let (mut reduce_tables, mut map_tables) = (0, 0);
            for round in 0..ROUNDS {
                let mut by_reduce = None;
                let mut by_map = None;
                for reduce_now in [round % 2 == 0, round % 2 != 0] {
                    if reduce_now {
                        let (counts, ms, read, tables) = reduced(&pool, &docs).await?;
                        reduce_ms.push(ms);
                        reduce_read = reduce_read.max(read);
                        reduce_tables = tables;
                        by_reduce = Some(counts);
                    } else {
                        let (counts, ms, read, tables) = mapped(&pool, &docs).await?;
                        map_ms.push(ms);
                        map_read = map_read.max(read);
                        map_tables = tables;
                        by_map = Some(counts);
                    }
                }
                anyhow::ensure!(
                    by_reduce == by_map,
                    "map_reduce and map + merge counted differently"
                );
                anyhow::ensure!(
                    by_map.as_ref() == Some(&expected),
                    "both counts differ from the parent's own"
                );
            }
            #[cfg(target_os = "linux")]
            anyhow::ensure!(
                crate::received::bytes() > received_before,
                "the suite's recv counted nothing: polyloop's sockets read some other way"
            );
            pool.close().await?;

            let (reduce, map) = (measure::median(reduce_ms), measure::median(map_ms));
            run.report.polyloop("reduce_map_merge_ms", map);
            run.report.polyloop("reduce_tables_back", reduce_tables as f64);
            run.report.polyloop("reduce_map_merge_tables_back", map_tables as f64);
            let bytes =
                |read: Option<u64>| read.map_or_else(|| "n/a".to_owned(), |b| b.to_string());
            if let (Some(reduce_read), Some(map_read)) = (reduce_read, map_read) {
                run.report.polyloop("reduce_bytes_read", reduce_read as f64);
                run.report.polyloop("reduce_map_merge_bytes_read", map_read as f64);
            }
            run.polyloop(
                "reduce_ms",
                reduce,
                &format!(
                    "polyloop: {} documents, map_reduce {reduce:.1} ms ({reduce_tables} tables \
                     back, {} bytes read), map + merge {map:.1} ms ({map_tables} tables back, {} \
                     bytes read): {:.2}x",
                    docs.len(),
                    bytes(reduce_read),
                    bytes(map_read),
                    reduce / map
                ),
            );
            Ok(())
        }
    }
}
