#!/usr/bin/python3 -B
"""Python peers of bench/manager_bench.cpp: Manager().dict() from 2 processes, each
alternating d[k] = v and d[k] on its own keys (time per operation, set or get, from both
released at a barrier to both done), and the round trip of one d[k] in one process."""

import multiprocessing
import sys
import time

import common

OPS_PER_PROCESS = 2000  # set+get pairs per process per repetition


def setget_worker(d, barrier, base, count):
    barrier.wait()
    for i in range(count):
        key = base + (i & 1023)
        d[key] = i
        d[key]
    barrier.wait()


def setget_2proc(ctx, d, count):
    """Seconds per operation for 2 processes doing `count` set+get pairs each."""
    barrier = ctx.Barrier(3)
    workers = [ctx.Process(target=setget_worker, args=(d, barrier, base, count))
               for base in (0, 1 << 20)]
    for w in workers:
        w.start()
    barrier.wait()
    begin = time.perf_counter()
    barrier.wait()
    elapsed = time.perf_counter() - begin
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"worker exited with {w.exitcode}")
    return elapsed / (2 * 2 * count)


def roundtrip(d, count):
    begin = time.perf_counter()
    for _ in range(count):
        d[1]
    return (time.perf_counter() - begin) / count


def main():
    args = common.parse_args(__doc__)
    failures = [0]
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        d = manager.dict()
        d[1] = 42
        try:
            count = OPS_PER_PROCESS // (4 if args.quick else 1)
            samples = [setget_2proc(ctx, d, count) for _ in range(args.repetitions)]
            common.emit("manager_dict_setget_2proc", "seconds_per_op", samples, 4 * count)
        except Exception as exc:  # report, go on with the next workload
            common.emit_error("manager_dict_setget_2proc", exc)
            failures[0] += 1
        common.run_workload("manager_roundtrip_unix", "seconds_per_op", args,
                            lambda count: roundtrip(d, count), failures)
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
