#!/usr/bin/python3 -B
"""Python peers of pool_submit_throughput and pool_map_throughput in bench/pool_bench.cpp:
trivial tasks (identity) through a warm 2-worker pool, reported as time per task or item.

  pool_submit_throughput   every task submitted, then every result waited for:
                             "python"           multiprocessing Pool.apply_async + get()
                             "python_executor"  ProcessPoolExecutor.submit + result()
                             "loky"             joblib's loky executor submit + result()
                           mproc submits 100,000 tasks per measurement; the Python peers take
                           tens of microseconds per task, so they submit 20,000 (5,000 with
                           --quick) per measurement to keep the run short: the time per task
                           is what compares.
  pool_map_throughput      a map of identity over range(100_000) into a list:
                             "python"           Pool.map (its default chunksize)
                             "python_executor"  ProcessPoolExecutor.map, Pool's chunksize
                             "loky"             loky executor map, Pool's chunksize

Multiprocessing pools use the fork context (Python's default on Linux).
"""

import concurrent.futures
import multiprocessing
import sys
import time

import common

WORKERS = 2
MAP_ITEMS = 100_000


def identity(x):
    return x


def pool_chunksize(items, workers):
    """What multiprocessing.Pool.map uses when no chunksize is given."""
    chunks, extra = divmod(items, workers * 4)
    return chunks + 1 if extra else chunks


def make(impl, ctx):
    """(submit, wait, map, shutdown) for one kind of pool."""
    if impl == "python":
        pool = ctx.Pool(WORKERS)
        return (lambda i: pool.apply_async(identity, (i,)), lambda f: f.get(timeout=60),
                lambda items: pool.map(identity, items), lambda: (pool.terminate(), pool.join()))
    if impl == "python_executor":
        ex = concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx)
    else:
        from joblib.externals.loky import get_reusable_executor
        ex = get_reusable_executor(max_workers=WORKERS)
    return (lambda i: ex.submit(identity, i), lambda f: f.result(timeout=60),
            lambda items: list(ex.map(identity, items,
                                      chunksize=pool_chunksize(len(items), WORKERS))),
            lambda: ex.shutdown(wait=True))


def per_item(samples_seconds, items):
    return [s / items for s in samples_seconds]


def run(impl, args, failures, ctx):
    tasks = 5_000 if args.quick else 20_000
    stop = None
    try:
        submit, wait, map_items, stop = make(impl, ctx)
        for i in range(200):  # warm-up: every worker started and answering
            wait(submit(i))
        map_items(range(1000))
    except Exception as exc:
        for bench in ("pool_submit_throughput", "pool_map_throughput"):
            common.emit_error(bench, exc, impl=impl)
        failures[0] += 1
        if stop is not None:
            stop()
        return
    try:
        try:
            samples = []
            for _ in range(args.repetitions):
                begin = time.perf_counter()
                futures = [submit(i) for i in range(tasks)]
                if any(wait(f) != i for i, f in enumerate(futures)):
                    raise RuntimeError("a task returned the wrong value")
                samples.append(time.perf_counter() - begin)
            common.emit("pool_submit_throughput", "seconds_per_op", per_item(samples, tasks),
                        tasks, impl=impl)
        except Exception as exc:  # report, never abort the remaining workloads
            common.emit_error("pool_submit_throughput", exc, impl=impl)
            failures[0] += 1
        try:
            samples = []
            for _ in range(args.repetitions):
                begin = time.perf_counter()
                out = map_items(range(MAP_ITEMS))
                samples.append(time.perf_counter() - begin)
                if len(out) != MAP_ITEMS or out[-1] != MAP_ITEMS - 1:
                    raise RuntimeError("the map returned wrong results")
            common.emit("pool_map_throughput", "seconds_per_op", per_item(samples, MAP_ITEMS),
                        MAP_ITEMS, impl=impl)
        except Exception as exc:
            common.emit_error("pool_map_throughput", exc, impl=impl)
            failures[0] += 1
    finally:
        stop()


def main():
    args = common.parse_args(__doc__)
    failures = [0]
    ctx = multiprocessing.get_context("fork")
    for impl in ("python", "python_executor", "loky"):
        run(impl, args, failures, ctx)
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
