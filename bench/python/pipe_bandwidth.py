#!/usr/bin/python3 -B
"""Python peer of pipe_bandwidth_1MiB in bench/pipe_bench.cpp: the parent sends batches of
BATCH messages of 1 MiB with Connection.send_bytes; the child receives them with recv_bytes
(pipe_bandwidth_1MiB) or recv_bytes_into one reused buffer (pipe_bandwidth_1MiB_into) and
acknowledges each batch with one byte."""

import multiprocessing
import sys
import time

import common

MIB = 1 << 20
BATCH = 8  # messages per acknowledged batch, as in pipe_bench.cpp


def sink(conn, into_buffer):
    """Acknowledges every BATCH messages; an empty message ends the child."""
    buffer = bytearray(MIB)
    while True:
        for _ in range(BATCH):
            size = conn.recv_bytes_into(buffer) if into_buffer else len(conn.recv_bytes())
            if size == 0:
                return
        conn.send_bytes(b"\x06")


def seconds_per_batch(conn, message, batches):
    begin = time.perf_counter()
    for _ in range(batches):
        for _ in range(BATCH):
            conn.send_bytes(message)
        conn.recv_bytes()
    return (time.perf_counter() - begin) / batches


def measure(bench, into_buffer, message, args, failures):
    ctx = multiprocessing.get_context("fork")
    parent, child_end = ctx.Pipe()
    child = ctx.Process(target=sink, args=(child_end, into_buffer))
    try:
        child.start()
        child_end.close()
        common.run_workload(bench, "bytes_per_second", args,
                            lambda count: seconds_per_batch(parent, message, count), failures,
                            value=lambda seconds: BATCH * MIB / seconds)
        parent.send_bytes(b"")
    except Exception as exc:
        common.emit_error(bench, exc)
        failures[0] += 1
    finally:
        parent.close()
        common.reap(child)


def main():
    args = common.parse_args(__doc__)
    failures = [0]
    message = bytes((i * 131 + 7) & 0xFF for i in range(MIB))
    measure("pipe_bandwidth_1MiB", False, message, args, failures)
    measure("pipe_bandwidth_1MiB_into", True, message, args, failures)
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
