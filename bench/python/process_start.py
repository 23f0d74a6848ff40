#!/usr/bin/python3 -B
"""Python peer of bench/process_bench.cpp: Process start()+join() of a trivial target with
multiprocessing's fork, forkserver and spawn start methods."""

import multiprocessing
import sys
import time

import common


def noop():
    pass


def start_join_seconds(ctx, count):
    """Mean seconds per start()+join() over `count` processes."""
    begin = time.perf_counter()
    for _ in range(count):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"child exited with {p.exitcode}")
    return (time.perf_counter() - begin) / count


def main():
    args = common.parse_args(__doc__)
    failures = [0]
    for method in ("fork", "forkserver", "spawn"):
        bench = f"process_start_join/{method}"
        try:
            ctx = multiprocessing.get_context(method)
        except ValueError as exc:  # start method unavailable on this platform
            common.emit_error(bench, exc)
            failures[0] += 1
            continue
        common.run_workload(bench, "seconds_per_op", args,
                            lambda count: start_join_seconds(ctx, count), failures)
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
