"""Helpers shared by the Python peers of mproc's benchmarks (stdlib only).

Every peer prints one JSON line per measurement on stdout:
    {"bench": "process_start_join/fork", "impl": "python",
     "metric": "seconds_per_op", "value": 0.0021, "samples": [...]}
or, when a workload fails, {"bench": ..., "impl": "python", "error": "..."} and goes on.
`value` is the median of the repetitions in `samples`. bench/run collects these lines.
"""

import argparse
import json
import os
import statistics
import sys
import traceback


def parse_args(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="fewer and shorter repetitions (for `make demo`)")
    parser.add_argument("--repetitions", type=int, default=None,
                        help="repetitions per workload (default 5, or 3 with --quick)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds each repetition lasts at least (default 0.3, or 0.1 "
                             "with --quick)")
    args = parser.parse_args()
    if args.repetitions is None:
        args.repetitions = 3 if args.quick else 5
    if args.min_time is None:
        args.min_time = 0.1 if args.quick else 0.3
    if args.repetitions < 1 or args.min_time <= 0:
        parser.error("--repetitions must be >= 1 and --min-time > 0")
    return args


def emit(bench, metric, samples, ops, impl="python"):
    """impl names the peer when a workload has several Python ones (e.g. "python_executor")."""
    print(json.dumps({"bench": bench, "impl": impl, "metric": metric,
                      "value": statistics.median(samples), "samples": samples,
                      "ops_per_repetition": ops}), flush=True)


def emit_error(bench, exc, impl="python"):
    print(json.dumps({"bench": bench, "impl": impl,
                      "error": f"{type(exc).__name__}: {exc}"}), flush=True)
    traceback.print_exc(file=sys.stderr)


def calibrate(seconds_per_op, min_time, limit=10_000_000):
    """Operations per repetition so that one lasts about min_time, found the way Google
    Benchmark does: grow a trial run until it is long enough to extrapolate from. The trials
    double as warm-up (the first one pays one-time costs such as forkserver's start)."""
    count = 1
    while True:
        per_op = seconds_per_op(count)
        elapsed = per_op * count
        if elapsed >= min_time / 4 or count >= limit:
            return max(1, min(limit, int(min_time / max(per_op, 1e-9)) + 1))
        count = min(limit, count * 10 if elapsed < min_time / 40 else count * 4)


def run_workload(bench, metric, args, seconds_per_op, failures, value=lambda s: s):
    """Measures seconds_per_op(count) args.repetitions times and emits the median of
    value(seconds per op). A failure is reported as an error line, counted in failures[0],
    and the next workload still runs."""
    try:
        count = calibrate(seconds_per_op, args.min_time)
        samples = [value(seconds_per_op(count)) for _ in range(args.repetitions)]
        emit(bench, metric, samples, count)
    except Exception as exc:  # report, never abort the remaining workloads
        emit_error(bench, exc)
        failures[0] += 1


def pin_cpu():
    """CPU 0 if this process may run there, else the lowest CPU it may use (a container's
    cpuset can exclude CPU 0) -- the same choice as bench/support.hpp."""
    allowed = os.sched_getaffinity(0)
    return 0 if 0 in allowed else min(allowed)


def reap(child, timeout=30):
    """Joins a started child; kills it if it is still running after `timeout` seconds."""
    if child.pid is None:
        return
    child.join(timeout=timeout)
    if child.is_alive():
        child.kill()
        child.join()
