#!/usr/bin/env python3
"""Workload 1 of polyloop's benchmark suite, the no-op map, on the standard library's
multiprocessing.Pool(2), the baseline polyloop's map throughput is judged against.

`cargo xtask bench --compare-python` runs this script whenever `python3` runs; it needs nothing
beyond the standard library. It writes JSON with the Rust suite's workload keys
(`benches/src/bin/suite.rs`) under "figures", so the report can put the two side by side.
Progress goes to stderr.

Usage: python3 benches/python/mp_pool_suite.py [--quick] [--json PATH]

Each map is `pool.map_async(noop, range(n), chunksize=c).get(limit)`, the same as
`pool.map(noop, range(n), chunksize=c)` with a time limit, for c of 1,000 and 10,000: a figure is
the best chunksize's (the median of three maps at that chunksize), and "chunksize" says which one
won. Fresh figures map once on a pool just built (only the map is timed) and close it; warm ones
map on one pool that has mapped before.
"""

import multiprocessing
import platform
import statistics
import sys
import time

import bench_report

CHUNKSIZES = (1_000, 10_000)
# Maps per chunksize, whose median is the chunksize's figure; fresh ones each on a pool of its own.
REPEATS = 3


def params_for(quick):
    # The Rust suite's sizes of workload 1.
    if quick:
        return {"processes": 2, "noop_small": 10_000, "noop_large": 100_000, "workload_timeout_s": 60}
    return {"processes": 2, "noop_small": 100_000, "noop_large": 1_000_000, "workload_timeout_s": 300}


# At module level, so that a pool's children can find it under any start method.
def noop(x):
    return x


def progress(message):
    print(f"mp.Pool: {message}", file=sys.stderr, flush=True)


class Suite:
    def __init__(self, params):
        self.params = params
        self.figures = {}
        self.chunksize = {}
        self.by_chunksize = {}
        self.errors = {}

    def new_pool(self):
        return multiprocessing.Pool(self.params["processes"])

    def timed_map(self, pool, n, chunksize):
        """Tasks per second of one no-op map of n inputs."""
        started = time.perf_counter()
        out = pool.map_async(noop, range(n), chunksize=chunksize).get(self.params["workload_timeout_s"])
        elapsed = time.perf_counter() - started
        assert out == list(range(n)), "map returned wrong results"
        return n / elapsed

    def fresh_map(self, n, chunksize):
        pool = self.new_pool()
        try:
            rate = self.timed_map(pool, n, chunksize)
        except BaseException:
            pool.terminate()
            raise
        pool.close()
        pool.join()
        return rate

    def record(self, key, n, rates):
        """Keeps the best chunksize's median as the figure of `key`."""
        medians = {c: statistics.median(r) for c, r in rates.items()}
        best = max(medians, key=medians.get)
        self.figures[key] = medians[best]
        self.chunksize[key] = best
        self.by_chunksize[key] = {str(c): rate for c, rate in medians.items()}
        listed = ", ".join(f"chunksize {c}: {rate:.0f}" for c, rate in medians.items())
        progress(f"{key}: {n} inputs, {listed} tasks/s; best {best}")

    def guarded(self, keys, work):
        """Runs one workload; a failure marks its figures failed, and the others still run."""
        try:
            work()
        except Exception as err:  # noqa: BLE001 - every failure is reported, none is fatal
            limit = self.params["workload_timeout_s"]
            message = bench_report.failure(err, limit, multiprocessing.TimeoutError)
            progress(f"FAILED: {message}")
            for key in keys:
                if key not in self.figures:
                    self.errors[key] = message

    def fresh(self):
        p = self.params
        for key, n in (("noop_map_small_fresh", p["noop_small"]), ("noop_map_large_fresh", p["noop_large"])):
            rates = {c: [self.fresh_map(n, c) for _ in range(REPEATS)] for c in CHUNKSIZES}
            self.record(key, n, rates)

    def warm(self):
        pool = self.new_pool()
        try:
            for chunksize in CHUNKSIZES:
                self.timed_map(pool, min(self.params["noop_small"], 10_000), chunksize)
            p = self.params
            for key, n in (("noop_map_small", p["noop_small"]), ("noop_map_large", p["noop_large"])):
                rates = {c: [self.timed_map(pool, n, c) for _ in range(REPEATS)] for c in CHUNKSIZES}
                self.record(key, n, rates)
        except BaseException:
            pool.terminate()
            raise
        pool.close()
        pool.join()

    def run(self):
        progress(f"[1/2] no-op map on fresh pools ({multiprocessing.get_start_method()} start)")
        self.guarded(["noop_map_small_fresh", "noop_map_large_fresh"], self.fresh)
        progress("[2/2] no-op map on a warm pool")
        self.guarded(["noop_map_small", "noop_map_large"], self.warm)


def main():
    args = bench_report.parse_args(__doc__)

    params = dict(params_for(args.quick), chunksizes=list(CHUNKSIZES), repeats=REPEATS,
                  start_method=multiprocessing.get_start_method())
    suite = Suite(params)
    started = time.perf_counter()
    suite.run()
    progress(f"done in {time.perf_counter() - started:.1f} s")
    bench_report.write(args.json, "multiprocessing.Pool", platform.python_version(), args, params,
                       suite.figures, suite.errors, chunksize=suite.chunksize,
                       by_chunksize=suite.by_chunksize)
    return 0


if __name__ == "__main__":
    sys.exit(main())
