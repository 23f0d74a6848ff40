#!/usr/bin/python3 -B
"""Python peer of queue_8B_1to1 and queue_64KiB_1to1 in bench/queue_bench.cpp: a producer
child puts items into a multiprocessing.Queue as fast as it can; the parent takes them. One
operation = one item taken (seconds_per_op for ints, bytes_per_second for 64 KiB bytes)."""

import multiprocessing
import sys
import time

import common

BIG = 64 * 1024


def produce(q, item, stop):
    while not stop.is_set():
        for _ in range(256):
            q.put(item)


def seconds_per_item(q, count):
    begin = time.perf_counter()
    for _ in range(count):
        q.get()
    return (time.perf_counter() - begin) / count


def run(bench, item, metric, value, args, failures):
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue(maxsize=131072 if isinstance(item, int) else 16)
    stop = ctx.Event()
    child = ctx.Process(target=produce, args=(q, item, stop), daemon=True)
    try:
        child.start()
        common.run_workload(bench, metric, args, lambda count: seconds_per_item(q, count),
                            failures, value=value)
    except Exception as exc:  # report, go on with the next workload
        common.emit_error(bench, exc)
        failures[0] += 1
    finally:
        stop.set()
        child.kill()
        child.join()
        q.cancel_join_thread()
        q.close()


def main():
    args = common.parse_args(__doc__)
    failures = [0]
    run("queue_8B_1to1", 12345678, "seconds_per_op", lambda s: s, args, failures)
    run("queue_64KiB_1to1", bytes(BIG), "bytes_per_second", lambda s: BIG / s, args, failures)
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
