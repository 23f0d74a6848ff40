#!/usr/bin/python3 -B
"""Python peers of the latency workloads in bench/pool_bench.cpp.

  pool_roundtrip_median/{unpinned,pinned}, pool_roundtrip_p99/{unpinned,pinned}
      one trivial task's round trip on a warm 2-worker pool, timed one by one; a repetition's
      value is the median (or 99th percentile) of its round trips:
        "python"           multiprocessing Pool.apply
        "python_executor"  concurrent.futures ProcessPoolExecutor.submit().result()
        "loky"             joblib's loky get_reusable_executor().submit().result()
      Pinned runs put this process and so every worker on one CPU before the pool starts.
  pool_sleep_as_completed
      10 tasks sleeping 0.2 s submitted to ProcessPoolExecutor(2), collected with
      as_completed ("python_executor"): wall time.
  pool_start_ready, pool_start_constructed
      multiprocessing Pool(2) until both workers have answered a task (os.getpid until two
      distinct pids came back), and until the constructor returns; teardown untimed.

Multiprocessing pools use the fork context (Python's default on Linux); loky starts its
workers its own way (fork + exec of a fresh interpreter), which is what its users get.
"""

import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import time

import common

WORKERS = 2
SLEEP_TASKS, SLEEP_SECONDS = 10, 0.2


def identity(x):
    return x


def nap(i):
    time.sleep(SLEEP_SECONDS)
    return i


def quantile(sorted_values, q):
    return sorted_values[int(q * (len(sorted_values) - 1) + 0.5)]


def round_trips(call, count):
    """Seconds of `count` single round trips, sorted."""
    out = []
    for i in range(count):
        begin = time.perf_counter()
        if call(i) != i:
            raise RuntimeError("a round trip returned the wrong value")
        out.append(time.perf_counter() - begin)
    out.sort()
    return out


def make_pool(ctx):
    pool = ctx.Pool(WORKERS)
    return pool, lambda i: pool.apply(identity, (i,)), lambda: (pool.terminate(), pool.join())


def make_executor(ctx):
    ex = concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx)
    return ex, lambda i: ex.submit(identity, i).result(), lambda: ex.shutdown(wait=True)


def make_loky(ctx):
    from joblib.externals.loky import get_reusable_executor
    ex = get_reusable_executor(max_workers=WORKERS)
    return ex, lambda i: ex.submit(identity, i).result(), lambda: ex.shutdown(wait=True)


def run_round_trips(variant, pinned, args, failures, ctx):
    count = 2000 if not args.quick else 500
    saved = os.sched_getaffinity(0)
    for impl, make in (("python", make_pool), ("python_executor", make_executor),
                       ("loky", make_loky)):
        benches = [f"pool_roundtrip_median/{variant}", f"pool_roundtrip_p99/{variant}"]
        stop = None
        try:
            if pinned:
                os.sched_setaffinity(0, {common.pin_cpu()})
            _, call, stop = make(ctx)
            round_trips(call, 200)  # warm-up: every worker started and answering
            medians, p99s = [], []
            for _ in range(args.repetitions):
                seconds = round_trips(call, count)
                medians.append(quantile(seconds, 0.5))
                p99s.append(quantile(seconds, 0.99))
            common.emit(benches[0], "seconds_per_op", medians, count, impl=impl)
            common.emit(benches[1], "seconds_per_op", p99s, count, impl=impl)
        except Exception as exc:  # report, never abort the remaining workloads
            for bench in benches:
                common.emit_error(bench, exc, impl=impl)
            failures[0] += 1
        finally:
            if stop is not None:
                stop()
            os.sched_setaffinity(0, saved)


def run_sleep(args, failures, ctx):
    bench = "pool_sleep_as_completed"
    try:
        with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as ex:
            ex.submit(identity, 0).result()
            samples = []
            for _ in range(args.repetitions):
                begin = time.perf_counter()
                futures = [ex.submit(nap, i) for i in range(SLEEP_TASKS)]
                seen = {f.result() for f in concurrent.futures.as_completed(futures)}
                samples.append(time.perf_counter() - begin)
                if len(seen) != SLEEP_TASKS:
                    raise RuntimeError("as_completed did not yield every task once")
            common.emit(bench, "seconds_per_op", samples, 1, impl="python_executor")
    except Exception as exc:
        common.emit_error(bench, exc, impl="python_executor")
        failures[0] += 1


def start_seconds(ctx, ready, count):
    """Mean seconds from Pool(2) to constructed (ready=False) or to both workers having
    answered a task (ready=True), over `count` pools."""
    total = 0.0
    for _ in range(count):
        begin = time.perf_counter()
        pool = ctx.Pool(WORKERS)
        try:
            if ready:
                pids = set()
                for _ in range(10_000):
                    if len(pids) == WORKERS:
                        break
                    pending = [pool.apply_async(os.getpid) for _ in range(WORKERS)]
                    pids.update(p.get(timeout=30) for p in pending)
                else:
                    raise RuntimeError("a worker never answered")
            total += time.perf_counter() - begin
        finally:
            pool.terminate()
            pool.join()
    return total / count


def run_start(args, failures, ctx):
    for bench, ready in (("pool_start_ready", True), ("pool_start_constructed", False)):
        common.run_workload(bench, "seconds_per_op", args,
                            lambda count, ready=ready: start_seconds(ctx, ready, count),
                            failures)


def main():
    args = common.parse_args(__doc__)
    failures = [0]
    ctx = multiprocessing.get_context("fork")
    run_round_trips("unpinned", False, args, failures, ctx)
    run_round_trips("pinned", True, args, failures, ctx)
    run_sleep(args, failures, ctx)
    run_start(args, failures, ctx)
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
