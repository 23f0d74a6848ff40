#!/usr/bin/python3 -B
"""Python peers of bench/sync_bench.cpp, with multiprocessing (fork context):

  value_increment_2proc   `with v.get_lock(): v.value += 1` in this process while a child
                          does the same non-stop; seconds per increment of this process
  event_pingpong/unpinned|pinned
                          set() an Event, wait() for the child's answering Event, clear()
  barrier_roundtrip_2proc one round of a 2-party multiprocessing.Barrier
"""

import os
import sys
import time

import common

CTX = None


def hammer(value, stop):
    while not stop.is_set():
        with value.get_lock():
            value.value += 1


def increments_seconds(value, count):
    lock = value.get_lock()
    begin = time.perf_counter()
    for _ in range(count):
        with lock:
            value.value += 1
    return (time.perf_counter() - begin) / count


def run_value(args, failures):
    bench = "value_increment_2proc"
    value = CTX.Value("l", 0)
    stop = CTX.Event()
    child = CTX.Process(target=hammer, args=(value, stop))
    try:
        child.start()
        common.run_workload(bench, "seconds_per_op", args,
                            lambda count: increments_seconds(value, count), failures)
    finally:
        stop.set()
        common.reap(child)


def answer(ping, pong, stop, cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    while True:
        ping.wait()
        ping.clear()
        if stop.is_set():
            return
        pong.set()


def pingpong_seconds(ping, pong, count):
    begin = time.perf_counter()
    for _ in range(count):
        ping.set()
        pong.wait()
        pong.clear()
    return (time.perf_counter() - begin) / count


def run_event(variant, pinned, args, failures):
    bench = f"event_pingpong/{variant}"
    saved = os.sched_getaffinity(0)
    cpu = common.pin_cpu() if pinned else None
    ping, pong, stop = CTX.Event(), CTX.Event(), CTX.Event()
    child = CTX.Process(target=answer, args=(ping, pong, stop, cpu))
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        child.start()
        common.run_workload(bench, "seconds_per_op", args,
                            lambda count: pingpong_seconds(ping, pong, count), failures)
    finally:
        stop.set()
        ping.set()
        common.reap(child)
        os.sched_setaffinity(0, saved)


def meet(barrier, total):
    """Meets the parent until `total` rounds are done; the parent publishes total (its rounds
    + 1) before its last round, so both stop after the same round."""
    done = 0
    while True:
        barrier.wait()
        done += 1
        if total.value and done >= total.value:
            return


def barrier_seconds(barrier, count, rounds):
    begin = time.perf_counter()
    for _ in range(count):
        barrier.wait()
    rounds[0] += count
    return (time.perf_counter() - begin) / count


def run_barrier(args, failures):
    bench = "barrier_roundtrip_2proc"
    barrier = CTX.Barrier(2)
    total = CTX.Value("q", 0, lock=False)
    rounds = [0]
    child = CTX.Process(target=meet, args=(barrier, total))
    try:
        child.start()
        common.run_workload(bench, "seconds_per_op", args,
                            lambda count: barrier_seconds(barrier, count, rounds), failures)
    finally:
        total.value = rounds[0] + 1
        try:
            barrier.wait(timeout=10)
        except Exception:  # the child may already be gone; it is killed below if not
            pass
        common.reap(child)


def main():
    global CTX
    import multiprocessing
    CTX = multiprocessing.get_context("fork")
    args = common.parse_args(__doc__)
    failures = [0]
    for run in (lambda: run_value(args, failures),
                lambda: run_event("unpinned", False, args, failures),
                lambda: run_event("pinned", True, args, failures),
                lambda: run_barrier(args, failures)):
        try:
            run()
        except Exception as exc:  # one broken workload must not hide the others
            common.emit_error("sync_primitives", exc)
            failures[0] += 1
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
