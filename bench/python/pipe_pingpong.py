#!/usr/bin/python3 -B
"""Python peer of pipe_pingpong_8B in bench/pipe_bench.cpp: round trips of an 8-byte message
to a child that echoes it (send_bytes/recv_bytes), with both processes left to the scheduler
(unpinned) or pinned to one CPU (pinned)."""

import multiprocessing
import os
import sys
import time

import common

PING = bytes((i * 131 + 7) & 0xFF for i in range(8))


def echo(conn, cpu):
    """Echoes every message; an empty message ends the child."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    while True:
        message = conn.recv_bytes()
        if not message:
            return
        conn.send_bytes(message)


def round_trip_seconds(conn, count):
    begin = time.perf_counter()
    for _ in range(count):
        conn.send_bytes(PING)
        conn.recv_bytes()
    return (time.perf_counter() - begin) / count


def run(variant, pinned, args, failures):
    bench = f"pipe_pingpong_8B/{variant}"
    ctx = multiprocessing.get_context("fork")
    saved = os.sched_getaffinity(0)
    cpu = common.pin_cpu() if pinned else None
    parent, child_end = ctx.Pipe()
    child = ctx.Process(target=echo, args=(child_end, cpu))
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        child.start()
        child_end.close()
        common.run_workload(bench, "seconds_per_op", args,
                            lambda count: round_trip_seconds(parent, count), failures)
        parent.send_bytes(b"")
    except Exception as exc:
        common.emit_error(bench, exc)
        failures[0] += 1
    finally:
        parent.close()
        common.reap(child)
        os.sched_setaffinity(0, saved)


def main():
    args = common.parse_args(__doc__)
    failures = [0]
    run("unpinned", False, args, failures)
    run("pinned", True, args, failures)
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
