//! The end-to-end benchmark suite that `cargo xtask bench` runs: its eight workloads through
//! polyloop's facade, beside the same work done by tokio tasks in one process and the raw limits of
//! the machine, written as one JSON document.
//!
//! Usage: `suite [--quick] [--json <path>]` (without `--json` the document goes to stdout).
//! Progress goes to stderr. Every figure is measured in this one run, so ratios are fair.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use polyloop::Pool;
use polyloop_benches::Params;
use polyloop_benches::measure::{self, Progress};
use polyloop_benches::raw::{self, Peer, PeerMode};
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

const STEPS: usize = 9;

#[polyloop::main]
async fn main() -> anyhow::Result<()> {
    // A re-executed copy of this binary serving as the raw socketpair peer never returns here.
    raw::run_peer_if_requested();
    let args = Args::parse()?;
    let params = Params::new(args.quick);
    let mut report = Report::new(params.clone());
    let mut progress = Progress::new(STEPS);
    let started = Instant::now();

    raw_limits(&params, &mut report, &mut progress).await;
    pool::run_all(&params, &mut report, &mut progress).await;

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

/// The raw figures: socketpair round trip and bandwidth, re-exec time and memory of a peer.
async fn raw_limits(params: &Params, report: &mut Report, progress: &mut Progress) {
    progress.step("raw: 32-byte socketpair round trip between two processes, receiver asleep");
    let (warmup, samples) = (params.apply_warmup, params.apply_samples);
    let echo = on_thread(move || {
        raw::pin_measuring_thread()?;
        let mut spawn_times = Vec::new();
        let mut peer = Peer::spawn(PeerMode::Echo, None)?;
        spawn_times.push(peer.spawn_to_first_byte.as_secs_f64() * 1e3);
        let rtt = peer.round_trips(warmup, samples)?;
        let rss = measure::rss_of(peer.pid());
        peer.finish()?;
        // More re-executions for a stable median of the time to first byte.
        for _ in 0..4 {
            let peer = Peer::spawn(PeerMode::Echo, None)?;
            spawn_times.push(peer.spawn_to_first_byte.as_secs_f64() * 1e3);
            peer.finish()?;
        }
        Ok((rtt, rss, measure::median(spawn_times)))
    })
    .await;
    match echo {
        Ok((rtt, rss, first_byte_ms)) => {
            // Replaced by the figures interleaved with polyloop's apply when that workload runs.
            report.raw("socketpair_rtt_p50_us", rtt.quantile_us(0.5));
            report.raw("socketpair_rtt_p99_us", rtt.quantile_us(0.99));
            report.raw("socketpair_rtt_alone_p50_us", rtt.quantile_us(0.5));
            report.raw("reexec_first_byte_ms", first_byte_ms);
            if let Some(rss) = rss {
                report.raw("peer_rss_mib", rss.peak_mib);
            }
            progress.note(&format!(
                "p50 {:.1} us, p99 {:.1} us; re-exec to first byte {first_byte_ms:.2} ms",
                rtt.quantile_us(0.5),
                rtt.quantile_us(0.99)
            ));
        }
        Err(err) => report.error(
            &["socketpair_rtt_p50_us", "socketpair_rtt_p99_us", "reexec_first_byte_ms"],
            &err,
        ),
    }

    progress.step("raw: socketpair bandwidth, 1 MiB messages, default and 4 MiB buffers");
    let (count, size) = (params.result_tasks as u32, params.result_bytes as u32);
    for (key, buffer) in
        [("socketpair_bw_default_mib_s", None), ("socketpair_bw_4mib_mib_s", Some(4 << 20))]
    {
        let measured = on_thread(move || {
            raw::pin_measuring_thread()?;
            let mut peer = Peer::spawn(PeerMode::Source, buffer)?;
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
                report.raw(key, rate);
                progress.note(&format!("{key}: {rate:.0} MiB/s (SO_SNDBUF granted {granted} B)"));
            }
            Err(err) => report.error(&[key], &err),
        }
    }
}

/// Awaits one workload with the run's time limit, so a hang fails the run instead of stalling it.
async fn limited(
    params: &Params,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let limit = Duration::from_secs(params.workload_timeout_s);
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("timed out after {} s", limit.as_secs())),
    }
}

/// Marks the figures `keys` failed when their workload did; figures it measured before stay.
fn check(report: &mut Report, keys: &[&str], outcome: anyhow::Result<()>) {
    if let Err(err) = outcome {
        eprintln!("                 FAILED: {err:#}");
        report.error(keys, &err);
    }
}

/// The workloads that go through polyloop, each beside its in-process reference.
mod pool {
    use super::*;

    fn builder(params: &Params) -> polyloop::PoolBuilder {
        Pool::builder().processes(params.processes)
    }

    pub(super) async fn run_all(params: &Params, report: &mut Report, progress: &mut Progress) {
        let workers = params.processes;

        progress.step("1. no-op map throughput, default settings (and 7. worker RSS)");
        let outcome = limited(params, noop_apply_rss(params, report, progress)).await;
        check(
            report,
            &["noop_map_small", "noop_map_large", "worker_rss_mib", "apply_p50_us", "apply_p99_us"],
            outcome,
        );
        let (small, large) = (params.noop_small, params.noop_large);
        if let Ok((s, l)) = reference::isolated(workers, move || async move {
            (reference::noop_map(small).await, reference::noop_map(large).await)
        })
        .await
        {
            report.reference("noop_map_small", s);
            report.reference("noop_map_large", l);
            progress.note(&format!("in-process tokio: {s:.0} and {l:.0} tasks/s"));
        }

        progress.step("2. apply round trip, in-process reference");
        let (warmup, samples) = (params.apply_warmup, params.apply_samples);
        if let Ok(rtt) =
            reference::isolated(workers, move || reference::apply_round_trips(warmup, samples))
                .await
        {
            report.reference("apply_p50_us", rtt.quantile_us(0.5));
            report.reference("apply_p99_us", rtt.quantile_us(0.99));
        }

        progress.step("3. sleeping tasks at child concurrency 16, and many at high concurrency");
        let outcome = limited(params, sleeps(params, report, false)).await;
        check(report, &["sleep_s", "sleep_vs_ideal"], outcome);
        let outcome = limited(params, sleeps(params, report, true)).await;
        check(report, &["sleep_many_s"], outcome);
        let pause = Duration::from_millis(params.sleep_ms);
        let (n, slots) = (params.sleep_tasks, workers * params.sleep_concurrency as usize);
        let (many, many_slots) =
            (params.sleep_many, workers * params.sleep_many_concurrency as usize);
        if let Ok((s, m)) = reference::isolated(workers, move || async move {
            let few = reference::sleeps(n, slots, pause).await;
            (few, reference::sleeps(many, many_slots, pause).await)
        })
        .await
        {
            let ideal = params.sleep_ideal_s(n, params.sleep_concurrency);
            report.reference("sleep_s", s);
            report.reference("sleep_vs_ideal", s / ideal);
            report.reference("sleep_many_s", m);
        }
        report.raw("sleep_ideal_s", params.sleep_ideal_s(n, params.sleep_concurrency));
        report.raw("sleep_many_ideal_s", params.sleep_ideal_s(many, params.sleep_many_concurrency));

        progress.step("4. CPU-bound tasks: speedup over one process running them in turn");
        let outcome = limited(params, cpu(params, report, progress)).await;
        check(report, &["cpu_small_speedup", "cpu_large_speedup"], outcome);

        progress.step("5. tasks returning 1 MiB each");
        let outcome = limited(params, results(params, report, progress)).await;
        check(report, &["result_1mib_mib_s"], outcome);
        let (n, bytes) = (params.result_tasks, params.result_bytes);
        if let Ok(rate) = reference::isolated(workers, move || reference::results(n, bytes)).await {
            report.reference("result_1mib_mib_s", rate);
        }

        progress.step("6. build() to workers ready, and close()");
        let outcome = limited(params, startup(params, report, progress)).await;
        check(report, &["ready_ms", "close_ms"], outcome);
        let runs = params.startup_runs;
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
            report.reference("ready_ms", ready);
            report.reference("close_ms", close);
        }

        progress.step("8. sweep: throughput by child concurrency and process count");
        let outcome = limited(params, sweep(params, report, progress)).await;
        check(report, &["sweep"], outcome);
        let n = params.sweep_n;
        if let Ok(rate) = reference::isolated(workers, move || reference::noop_map(n)).await {
            report.sweep_reference(rate);
        }
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

    /// Workloads 1, 2 and 7 on one pool with default settings.
    async fn noop_apply_rss(
        params: &Params,
        report: &mut Report,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let pool = builder(params).build().await?;
        noop_map(&pool, params.noop_small.min(10_000)).await?;
        let small = measure::median(vec![
            noop_map(&pool, params.noop_small).await?,
            noop_map(&pool, params.noop_small).await?,
            noop_map(&pool, params.noop_small).await?,
        ]);
        report.polyloop("noop_map_small", small);
        let large = noop_map(&pool, params.noop_large).await?;
        report.polyloop("noop_map_large", large);
        progress.note(&format!("polyloop: {small:.0} and {large:.0} tasks/s"));

        // The raw round trip is measured again here, in blocks interleaved with polyloop's, so
        // both see the same machine: on this VM a wake-up costs ~60 us while the other CPU idles
        // (the hypervisor halts it) and a few microseconds while a neighbour keeps it busy.
        let mut peer = on_thread(|| Ok(Peer::spawn(PeerMode::Echo, None)?)).await?;
        let mut rtt = measure::Samples::with_capacity(params.apply_samples);
        let mut raw_rtt = measure::Samples::with_capacity(params.apply_samples);
        for i in 0..params.apply_warmup {
            pool.apply(noop, i as u64).await?;
        }
        const BLOCK: usize = 50;
        let mut done = 0;
        while done < params.apply_samples {
            let k = BLOCK.min(params.apply_samples - done);
            let (back, samples) = on_thread(move || {
                raw::pin_measuring_thread()?;
                let samples = peer.round_trips(5, k)?;
                Ok((peer, samples))
            })
            .await?;
            peer = back;
            raw_rtt.extend(samples);
            for i in done..done + k {
                let started = Instant::now();
                let out = pool.apply(noop, i as u64).await?;
                let elapsed = started.elapsed();
                anyhow::ensure!(out == i as u64, "apply returned a wrong result");
                rtt.push(elapsed);
            }
            done += k;
        }
        on_thread(move || Ok(peer.finish()?)).await?;
        report.polyloop("apply_p50_us", rtt.quantile_us(0.5));
        report.polyloop("apply_p99_us", rtt.quantile_us(0.99));
        report.raw("socketpair_rtt_p50_us", raw_rtt.quantile_us(0.5));
        report.raw("socketpair_rtt_p99_us", raw_rtt.quantile_us(0.99));
        progress.note(&format!(
            "polyloop apply: p50 {:.1} us, p99 {:.1} us; raw round trip interleaved with it: \
             p50 {:.1} us, p99 {:.1} us",
            rtt.quantile_us(0.5),
            rtt.quantile_us(0.99),
            raw_rtt.quantile_us(0.5),
            raw_rtt.quantile_us(0.99)
        ));

        let pids: Vec<u32> = pool.stats().workers.iter().map(|w| w.pid).collect();
        anyhow::ensure!(!pids.is_empty(), "pool.stats() lists no workers");
        if cfg!(target_os = "linux") {
            let mut peak = 0.0f64;
            for pid in &pids {
                let rss =
                    measure::rss_of(*pid).with_context(|| format!("no /proc/{pid}/status"))?;
                peak = peak.max(rss.peak_mib);
            }
            report.polyloop("worker_rss_mib", peak);
            progress.note(&format!("worker peak RSS (VmHWM) of pids {pids:?}: {peak:.2} MiB"));
        } else {
            progress.note("worker RSS: n/a on this OS");
        }
        pool.close().await?;
        Ok(())
    }

    async fn sleeps(params: &Params, report: &mut Report, many: bool) -> anyhow::Result<()> {
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
        eprintln!(
            "                 polyloop: {n} sleeps at concurrency {concurrency}: {secs:.3} s \
             (ideal {ideal:.3} s, ratio {:.4})",
            secs / ideal
        );
        if many {
            report.polyloop("sleep_many_s", secs);
        } else {
            report.polyloop("sleep_s", secs);
            report.polyloop("sleep_vs_ideal", secs / ideal);
        }
        Ok(())
    }

    async fn cpu(params: &Params, report: &mut Report, progress: &Progress) -> anyhow::Result<()> {
        let target = Duration::from_millis(params.cpu_task_ms);
        let iters = on_thread(move || Ok(measure::calibrate_spin(target))).await?;
        let pool = builder(params).build().await?;
        // One warm-up task per worker, so page faults of a fresh worker are not timed.
        let _: Vec<u64> = pool.map(burn, std::iter::repeat_n(iters / 20, params.processes)).await?;
        for (key, n) in
            [("cpu_small_speedup", params.cpu_small), ("cpu_large_speedup", params.cpu_large)]
        {
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
            report.polyloop(key, serial / parallel);
            let workers = params.processes;
            if let Ok(in_process) =
                reference::isolated(workers, move || reference::cpu(n, iters)).await
            {
                report.reference(key, serial / in_process);
            }
            progress.note(&format!(
                "{n} tasks of {} ms: serial {serial:.3} s, polyloop {parallel:.3} s, speedup {:.2}x, \
                 tasks per worker {spread:?}",
                params.cpu_task_ms,
                serial / parallel
            ));
        }
        report.raw("cpu_ideal_speedup", params.processes as f64);
        pool.close().await?;
        Ok(())
    }

    fn tasks_done(pool: &Pool) -> Vec<u64> {
        pool.stats().workers.iter().map(|w| w.tasks_done).collect()
    }

    async fn results(
        params: &Params,
        report: &mut Report,
        progress: &Progress,
    ) -> anyhow::Result<()> {
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
        report.polyloop("result_1mib_mib_s", rate);
        progress.note(&format!("polyloop: {rate:.0} MiB/s"));
        Ok(())
    }

    async fn startup(
        params: &Params,
        report: &mut Report,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let mut ready = Vec::new();
        let mut close = Vec::new();
        for _ in 0..params.startup_runs {
            let started = Instant::now();
            let pool = Pool::builder().processes(params.processes).build().await?;
            ready.push(started.elapsed().as_secs_f64() * 1e3);
            let closing = Instant::now();
            pool.close().await?;
            close.push(closing.elapsed().as_secs_f64() * 1e3);
        }
        let (ready, close) = (measure::median(ready), measure::median(close));
        report.polyloop("ready_ms", ready);
        report.polyloop("close_ms", close);
        progress.note(&format!("polyloop: ready {ready:.2} ms, close {close:.2} ms (medians)"));
        Ok(())
    }

    async fn sweep(
        params: &Params,
        report: &mut Report,
        progress: &Progress,
    ) -> anyhow::Result<()> {
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
}
