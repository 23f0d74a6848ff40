#!/usr/bin/python3 -B
"""Python peer of pipe_bandwidth_1MiB in bench/pipe_bench.cpp: the parent sends batches of
BATCH messages of 1 MiB with Connection.send_bytes; the child receives them with recv_bytes
and acknowledges each batch with one byte."""

import multiprocessing
import sys
import time

import common

MIB = 1 << 20
BATCH = 8  # messages per acknowledged batch, as in pipe_bench.cpp


def sink(conn):
    """Acknowledges every BATCH messages; an empty message ends the child."""
    while True:
        for _ in range(BATCH):
            if not conn.recv_bytes():
                return
        conn.send_bytes(b"\x06")


def seconds_per_batch(conn, message, batches):
    begin = time.perf_counter()
    for _ in range(batches):
        for _ in range(BATCH):
            conn.send_bytes(message)
        conn.recv_bytes()
    return (time.perf_counter() - begin) / batches


def main():
    args = common.parse_args(__doc__)
    failures = [0]
    bench = "pipe_bandwidth_1MiB"
    ctx = multiprocessing.get_context("fork")
    message = bytes((i * 131 + 7) & 0xFF for i in range(MIB))
    parent, child_end = ctx.Pipe()
    child = ctx.Process(target=sink, args=(child_end,))
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
        if child.pid is not None:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
                child.join()
    return 1 if failures[0] else 0


if __name__ == "__main__":
    sys.exit(main())
