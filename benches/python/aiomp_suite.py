#!/usr/bin/env python3
"""The workloads 1-7 of polyloop's benchmark suite, run on Python's aiomultiprocess.

`cargo xtask bench --compare-python` runs this script when `python3 -c "import aiomultiprocess"`
works (install it with `pip install aiomultiprocess`). It writes JSON with the same workload keys
as the Rust suite (`benches/src/bin/suite.rs`) under "figures", so the report can put the two side
by side. Progress goes to stderr.

Usage: python3 benches/python/aiomp_suite.py [--quick] [--json PATH]

Sizes follow the Rust suite, except where aiomultiprocess is slow enough that the full size would
take minutes without changing the figure (fewer apply samples); those are listed under "params".
Every workload has a time limit, since aiomultiprocess waits forever on some failures.
"""

import asyncio
import contextlib
import os
import statistics
import sys
import time

import bench_report

try:
    import aiomultiprocess
    from aiomultiprocess import Pool
except ImportError:  # pragma: no cover - reported to the caller, who decides
    aiomultiprocess = None
    Pool = None


def params_for(quick):
    if quick:
        return {
            "processes": 2,
            "noop_small": 1_000,
            "noop_large": 5_000,
            "apply_warmup": 2,
            "apply_samples": 20,
            "sleep_tasks": 320,
            "sleep_ms": 20,
            "sleep_concurrency": 16,
            "sleep_many": 2_000,
            "sleep_many_concurrency": 1_000,
            "cpu_small": 4,
            "cpu_large": 8,
            "cpu_task_ms": 5,
            "result_tasks": 20,
            "result_bytes": 1 << 20,
            "startup_runs": 2,
            "workload_timeout_s": 60,
        }
    return {
        "processes": 2,
        "noop_small": 100_000,
        "noop_large": 1_000_000,
        "apply_warmup": 10,
        "apply_samples": 200,
        "sleep_tasks": 2_000,
        "sleep_ms": 100,
        "sleep_concurrency": 16,
        "sleep_many": 100_000,
        "sleep_many_concurrency": 50_000,
        "cpu_small": 16,
        "cpu_large": 64,
        "cpu_task_ms": 20,
        "result_tasks": 200,
        "result_bytes": 1 << 20,
        "startup_runs": 5,
        "workload_timeout_s": 300,
    }


# Tasks live at module level so that aiomultiprocess's spawned children can import them.


async def noop(x):
    return x


async def nap(ms):
    await asyncio.sleep(ms / 1000)
    return ms


def spin(iters):
    # The same xorshift as the Rust suite, masked to 64 bits.
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for _ in range(iters):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
    return x


async def burn(iters):
    return spin(iters)


async def blob(seed, size):
    return bytes([seed % 256]) * size


def progress(message):
    print(f"aiomp: {message}", file=sys.stderr, flush=True)


def quantile(samples, q):
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def peak_rss_mib(pid):
    """VmHWM of a process in MiB, or None where /proc has no such process (not Linux)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def calibrate_spin(target_s):
    probe = 200_000
    best = min(timed(lambda: spin(probe)) for _ in range(3))
    return max(1, int(probe * target_s / best))


def timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Suite:
    def __init__(self, params):
        self.params = params
        self.figures = {}
        self.errors = {}

    @contextlib.asynccontextmanager
    async def pool(self, **kwargs):
        """A pool closed cleanly after its workload, or terminated when the workload failed or
        timed out, so that no worker outlives the script."""
        pool = Pool(processes=self.params["processes"], **kwargs)
        try:
            yield pool
        except BaseException:
            pool.terminate()
            await asyncio.wait_for(pool.join(), timeout=10)
            raise
        pool.close()
        await pool.join()

    async def guarded(self, keys, work):
        """Runs one workload with the time limit; a failure marks its figures failed."""
        limit = self.params["workload_timeout_s"]
        try:
            await asyncio.wait_for(work(), timeout=limit)
        except Exception as err:  # noqa: BLE001 - every failure is reported, none is fatal
            message = bench_report.failure(err, limit, asyncio.TimeoutError)
            progress(f"FAILED: {message}")
            for key in keys:
                if key not in self.figures:
                    self.errors[key] = message

    async def noop_map(self, pool, n):
        """Tasks per second of one no-op map of n inputs."""
        started = time.perf_counter()
        out = await pool.map(noop, range(n))
        elapsed = time.perf_counter() - started
        assert list(out) == list(range(n)), "map returned wrong results"
        return n / elapsed

    async def noop_map_fresh(self):
        # Each map is the first work of a pool just built, closed after it; only the map is timed.
        p = self.params
        for key, n in (("noop_map_small_fresh", p["noop_small"]), ("noop_map_large_fresh", p["noop_large"])):
            async with self.pool() as pool:
                self.figures[key] = await self.noop_map(pool, n)
            progress(f"no-op map of {n} on a fresh pool: {self.figures[key]:.0f} tasks/s")

    async def noop_apply_rss(self):
        p = self.params
        async with self.pool() as pool:
            await pool.map(noop, range(min(p["noop_small"], 1_000)))
            for key, n in (("noop_map_small", p["noop_small"]), ("noop_map_large", p["noop_large"])):
                self.figures[key] = await self.noop_map(pool, n)
                progress(f"no-op map of {n} on a warm pool: {self.figures[key]:.0f} tasks/s")

            samples = []
            for i in range(p["apply_warmup"] + p["apply_samples"]):
                started = time.perf_counter()
                out = await pool.apply(noop, (i,))
                elapsed = time.perf_counter() - started
                assert out == i, "apply returned a wrong result"
                if i >= p["apply_warmup"]:
                    samples.append(elapsed * 1e6)
            self.figures["apply_p50_us"] = quantile(samples, 0.5)
            self.figures["apply_p99_us"] = quantile(samples, 0.99)
            progress(f"apply p50 {quantile(samples, 0.5):.0f} us, p99 {quantile(samples, 0.99):.0f} us")

            peaks = [peak_rss_mib(process.pid) for process in pool.processes]
            if peaks and all(peak is not None for peak in peaks):
                self.figures["worker_rss_mib"] = max(peaks)
                progress(f"worker peak RSS {max(peaks):.1f} MiB")

    async def sleeps(self, many):
        p = self.params
        if many:
            n, concurrency = p["sleep_many"], p["sleep_many_concurrency"]
        else:
            n, concurrency = p["sleep_tasks"], p["sleep_concurrency"]
        async with self.pool(childconcurrency=concurrency) as pool:
            started = time.perf_counter()
            out = await pool.map(nap, [p["sleep_ms"]] * n)
            elapsed = time.perf_counter() - started
            assert len(out) == n
        slots = p["processes"] * concurrency
        ideal = -(-n // slots) * p["sleep_ms"] / 1000
        progress(f"{n} sleeps at concurrency {concurrency}: {elapsed:.3f} s (ideal {ideal:.3f} s)")
        if many:
            self.figures["sleep_many_s"] = elapsed
        else:
            self.figures["sleep_s"] = elapsed
            self.figures["sleep_vs_ideal"] = elapsed / ideal

    async def cpu(self):
        p = self.params
        iters = calibrate_spin(p["cpu_task_ms"] / 1000)
        async with self.pool() as pool:
            await pool.map(burn, [iters // 20] * p["processes"])
            for key, n in (("cpu_small_speedup", p["cpu_small"]), ("cpu_large_speedup", p["cpu_large"])):
                serial = timed(lambda: [spin(iters) for _ in range(n)])
                started = time.perf_counter()
                await pool.map(burn, [iters] * n)
                parallel = time.perf_counter() - started
                self.figures[key] = serial / parallel
                progress(f"{n} CPU tasks: serial {serial:.3f} s, pool {parallel:.3f} s")

    async def results(self):
        p = self.params
        size = p["result_bytes"]
        async with self.pool() as pool:
            await pool.starmap(blob, [(seed, size) for seed in range(p["processes"] * 2)])
            started = time.perf_counter()
            out = await pool.starmap(blob, [(seed, size) for seed in range(p["result_tasks"])])
            elapsed = time.perf_counter() - started
            total = sum(len(b) for b in out)
            assert total == p["result_tasks"] * size
        self.figures["result_1mib_mib_s"] = total / (1 << 20) / elapsed
        progress(f"1 MiB results: {total / (1 << 20) / elapsed:.0f} MiB/s")

    async def startup(self):
        # aiomultiprocess has no "ready" event: a pool is taken as ready when it has answered
        # one task from each worker's shared queue, i.e. its first apply returned.
        ready, close = [], []
        for _ in range(self.params["startup_runs"]):
            started = time.perf_counter()
            pool = Pool(processes=self.params["processes"])
            try:
                await pool.apply(noop, (0,))
            except BaseException:
                pool.terminate()
                raise
            ready.append((time.perf_counter() - started) * 1e3)
            closing = time.perf_counter()
            pool.close()
            await pool.join()
            close.append((time.perf_counter() - closing) * 1e3)
        self.figures["ready_ms"] = statistics.median(ready)
        self.figures["close_ms"] = statistics.median(close)
        progress(f"ready {statistics.median(ready):.1f} ms, close {statistics.median(close):.1f} ms")

    async def run(self):
        steps = [
            ("1: no-op map on fresh pools", ["noop_map_small_fresh", "noop_map_large_fresh"],
             self.noop_map_fresh),
            ("1, 2, 7: no-op map on a warm pool, apply, worker RSS",
             ["noop_map_small", "noop_map_large", "apply_p50_us", "apply_p99_us", "worker_rss_mib"],
             self.noop_apply_rss),
            ("3: sleeps at concurrency 16", ["sleep_s", "sleep_vs_ideal"], lambda: self.sleeps(False)),
            ("3: many sleeps at high concurrency", ["sleep_many_s"], lambda: self.sleeps(True)),
            ("4: CPU-bound tasks", ["cpu_small_speedup", "cpu_large_speedup"], self.cpu),
            ("5: 1 MiB results", ["result_1mib_mib_s"], self.results),
            ("6: pool ready and close", ["ready_ms", "close_ms"], self.startup),
        ]
        for i, (title, keys, work) in enumerate(steps, 1):
            progress(f"[{i}/{len(steps)}] {title}")
            await self.guarded(keys, work)


def main():
    args = bench_report.parse_args(__doc__)
    if aiomultiprocess is None:
        print("aiomp_suite: aiomultiprocess is not installed (pip install aiomultiprocess)", file=sys.stderr)
        return 2

    params = params_for(args.quick)
    suite = Suite(params)
    started = time.perf_counter()
    asyncio.run(suite.run())
    progress(f"done in {time.perf_counter() - started:.1f} s")
    version = getattr(aiomultiprocess, "__version__", "?")
    bench_report.write(args.json, "aiomultiprocess", version, args, params, suite.figures, suite.errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
