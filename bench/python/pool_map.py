#!/usr/bin/python3 -B
"""Python peers of pool_sqrt_map and pool_factorial in bench/pool_bench.cpp: one whole map per
measurement, on a warm pool (start-up is pool_start_* in pool_latency.py).

  pool_sqrt_map     math.sqrt over range(10, 5_000_000), results as a list:
                    multiprocessing Pool(2).map ("python") and
                    ProcessPoolExecutor(2).map(chunksize=...) ("python_executor").
  pool_factorial    a recursive factorial computed as a float (as the C++ does: 99! fits) of
                    1,000,000 random ints in [1, 100): Pool(2).map ("python") and Pool(1).map
                    ("python_1proc").

Both executors use the fork context, Python's default on Linux. The executor gets the chunksize
Pool.map picks by default (len / (4 * workers), rounded up); its own default of 1 would measure
per-item messaging instead. Each workload is timed as a fixed whole map, so --min-time does not
apply; --quick only lowers the repetitions.
"""

import concurrent.futures
import math
import multiprocessing
import random
import sys
import time

import common

SQRT_FIRST, SQRT_LAST = 10, 5_000_000
FACTORIAL_ITEMS = 1_000_000
WORKERS = 2


def factorial(n):
    return 1.0 if n <= 0 else n * factorial(n - 1)


def pool_chunksize(items, workers):
    """What multiprocessing.Pool.map uses when no chunksize is given."""
    chunks, extra = divmod(items, workers * 4)
    return chunks + 1 if extra else chunks


def measure(bench, impl, args, failures, one_map, check):
    """Times one_map() args.repetitions times (after one warm-up call of the pool) and emits
    the median time per map."""
    try:
        samples = []
        for _ in range(args.repetitions):
            begin = time.perf_counter()
            result = one_map()
            samples.append(time.perf_counter() - begin)
            if not check(result):
                raise RuntimeError("the map returned wrong results")
        common.emit(bench, "seconds_per_op", samples, 1, impl=impl)
    except Exception as exc:  # report, never abort the remaining workloads
        common.emit_error(bench, exc, impl=impl)
        failures[0] += 1


def sqrt_ok(result):
    n = SQRT_LAST - SQRT_FIRST
    return (len(result) == n and result[0] == math.sqrt(SQRT_FIRST)
            and result[-1] == math.sqrt(SQRT_LAST - 1))


def run_sqrt(args, failures, ctx):
    bench = "pool_sqrt_map"
    try:
        with ctx.Pool(WORKERS) as pool:
            pool.map(math.sqrt, range(100))
            measure(bench, "python", args, failures,
                    lambda: pool.map(math.sqrt, range(SQRT_FIRST, SQRT_LAST)), sqrt_ok)
    except Exception as exc:
        common.emit_error(bench, exc)
        failures[0] += 1
    chunksize = pool_chunksize(SQRT_LAST - SQRT_FIRST, WORKERS)
    try:
        with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as ex:
            list(ex.map(math.sqrt, range(100)))
            measure(bench, "python_executor", args, failures,
                    lambda: list(ex.map(math.sqrt, range(SQRT_FIRST, SQRT_LAST),
                                        chunksize=chunksize)), sqrt_ok)
    except Exception as exc:
        common.emit_error(bench, exc, impl="python_executor")
        failures[0] += 1


def run_factorial(args, failures, ctx):
    bench = "pool_factorial"
    rng = random.Random(20171212)
    inputs = [rng.randrange(1, 100) for _ in range(FACTORIAL_ITEMS)]
    expected_last = factorial(inputs[-1])

    def ok(result):
        return len(result) == FACTORIAL_ITEMS and result[-1] == expected_last

    for impl, processes in (("python", 2), ("python_1proc", 1)):
        try:
            with ctx.Pool(processes) as pool:
                pool.map(factorial, range(100))
                measure(bench, impl, args, failures, lambda: pool.map(factorial, inputs), ok)
        except Exception as exc:
            common.emit_error(bench, exc, impl=impl)
            failures[0] += 1


def main():
    args = common.parse_args(__doc__)
    failures = [0]
    ctx = multiprocessing.get_context("fork")
    run_sqrt(args, failures, ctx)
    run_factorial(args, failures, ctx)
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
