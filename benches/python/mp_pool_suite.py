#!/usr/bin/env python3
"""Workloads 1 and 9 of polyloop's benchmark suite, the no-op map and a read-only dataset in
shared memory, on the standard library's multiprocessing.Pool(2), the baseline polyloop's map
throughput is judged against.

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

Workload 9 is polyloop's SharedBytes row done with multiprocessing.shared_memory: a SharedMemory
of the suite's size holding the same bytes, which each worker attaches once, by name, in the
pool's initializer (the best use of it: no task pays for the attach). Each of the tasks sums the
little-endian u64 words of one 4 KiB page, spread evenly over the dataset as the Rust suite
spreads them, and the sums are checked. Each map is timed on a new SharedMemory and a new pool,
so every worker faults in the pages it reads, as polyloop's workers do; the figure is the best
of chunksize 100 and 1,000, the median of three maps at each.
"""

import multiprocessing
import multiprocessing.shared_memory
import platform
import statistics
import sys
import time

import bench_report

CHUNKSIZES = (1_000, 10_000)
# Chunksizes of workload 9, whose 10,000 tasks a chunksize of 10,000 would give to one worker.
SHARED_CHUNKSIZES = (100, 1_000)
# The bytes each task of workload 9 reads, and the mask of its wrapping u64 sum.
PAGE = 4096
MASK = (1 << 64) - 1
# Maps per chunksize, whose median is the chunksize's figure; fresh ones each on a pool of its own.
REPEATS = 3


def params_for(quick):
    # The Rust suite's sizes of workloads 1 and 9.
    if quick:
        return {"processes": 2, "noop_small": 10_000, "noop_large": 100_000,
                "shared_bytes": 16 << 20, "shared_tasks": 1_000, "workload_timeout_s": 60}
    return {"processes": 2, "noop_small": 100_000, "noop_large": 1_000_000,
            "shared_bytes": 256 << 20, "shared_tasks": 10_000, "workload_timeout_s": 300}


# At module level, so that a pool's children can find it under any start method.
def noop(x):
    return x


# Workload 9's dataset, attached once in each worker by `attach`.
_shared = None


def attach(name):
    """The pool's initializer: attaches the dataset by name, once per worker."""
    global _shared
    try:
        # Python 3.13+: the parent, which created it, alone tracks and unlinks it.
        _shared = multiprocessing.shared_memory.SharedMemory(name=name, track=False)
    except TypeError:
        _shared = multiprocessing.shared_memory.SharedMemory(name=name)


def page_sum(buf, page):
    """The wrapping sum of the little-endian u64 words of page `page` of `buf`, as the Rust
    suite's `measure::page_sum` computes it (the machines it runs on are little-endian)."""
    with buf[page * PAGE:(page + 1) * PAGE] as view, view.cast("Q") as words:
        return sum(words) & MASK


def read_page(page):
    return page_sum(_shared.buf, page)


def dataset(size):
    """The Rust suite's dataset: byte i is i % 251."""
    pattern = bytes(range(251))
    return (pattern * (size // len(pattern) + 1))[:size]


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

    def record(self, key, n, figures, best=max, unit="tasks/s"):
        """Keeps the best chunksize's median (the highest, or the lowest with `best=min`) as the
        figure of `key`."""
        medians = {c: statistics.median(f) for c, f in figures.items()}
        winner = best(medians, key=medians.get)
        self.figures[key] = medians[winner]
        self.chunksize[key] = winner
        self.by_chunksize[key] = {str(c): figure for c, figure in medians.items()}
        digits = 0 if unit == "tasks/s" else 2
        listed = ", ".join(f"chunksize {c}: {figure:.{digits}f}" for c, figure in medians.items())
        progress(f"{key}: {n} inputs, {listed} {unit}; best {winner}")

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

    def shared_map(self, data, pages, expected, chunksize):
        """Milliseconds of one map of `read_page` over `pages`, on a new SharedMemory holding
        `data` and a new pool whose workers attached it; neither is timed."""
        shm = multiprocessing.shared_memory.SharedMemory(create=True, size=len(data))
        try:
            shm.buf[:len(data)] = data
            pool = multiprocessing.Pool(self.params["processes"], initializer=attach,
                                        initargs=(shm.name,))
            try:
                # The timed map is not the pool's first work; a worker attaches before its first
                # task, so by now at least one has.
                pool.map(noop, range(2 * self.params["processes"]), chunksize=1)
                started = time.perf_counter()
                out = pool.map_async(read_page, pages, chunksize=chunksize).get(
                    self.params["workload_timeout_s"])
                elapsed = time.perf_counter() - started
            except BaseException:
                pool.terminate()
                raise
            pool.close()
            pool.join()
        finally:
            shm.close()
            shm.unlink()
        assert out == expected, "the shared_memory tasks returned wrong sums"
        return elapsed * 1e3

    def shared(self):
        size, n = self.params["shared_bytes"], self.params["shared_tasks"]
        data = dataset(size)
        pages = [i * (size // PAGE) // n for i in range(n)]
        with memoryview(data) as view:
            expected = [page_sum(view, page) for page in pages]
        times = {c: [self.shared_map(data, pages, expected, c) for _ in range(REPEATS)]
                 for c in SHARED_CHUNKSIZES}
        self.record("shared_bytes_ms", n, times, best=min, unit="ms")

    def run(self):
        progress(f"[1/3] no-op map on fresh pools ({multiprocessing.get_start_method()} start)")
        self.guarded(["noop_map_small_fresh", "noop_map_large_fresh"], self.fresh)
        progress("[2/3] no-op map on a warm pool")
        self.guarded(["noop_map_small", "noop_map_large"], self.warm)
        progress("[3/3] a read-only dataset in multiprocessing.shared_memory, a page per task")
        self.guarded(["shared_bytes_ms"], self.shared)


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
