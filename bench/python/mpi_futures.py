"""mpi4py.futures peer of bench/mpi/mpi_bench.cpp (run under mpiexec -n 3 python3 -m
mpi4py.futures bench/python/mpi_futures.py): 10,000 trivial tasks via map, a submit round
trip, the factorial workload on 1 and 2 worker ranks. JSON lines as in common.py."""

import json
import random
import statistics
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def trivial(x):
    return x + 1


def factorial(n):
    return 1.0 if n == 0 else n * factorial(n - 1)


def emit(bench, metric, samples):
    print(json.dumps({"bench": bench, "impl": "mpi4py_futures", "metric": metric,
                      "value": statistics.median(samples), "samples": samples}), flush=True)


def timed(fn, reps):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main():
    quick = "--quick" in sys.argv
    reps = 3 if quick else 5
    with MPIPoolExecutor() as ex:
        ex.submit(trivial, 0).result()  # workers up
        emit("mpi_map_trivial_10k", "tasks_per_second",
             [10000 / s for s in timed(lambda: sum(ex.map(trivial, range(10000))), reps)])
        n = 200 if quick else 500
        emit("mpi_submit_round_trip", "seconds_per_op",
             [s / n for s in timed(lambda: [ex.submit(trivial, i).result() for i in range(n)],
                                   reps)])
    rng = random.Random(2017)
    inputs = [rng.randint(1, 99) for _ in range(1_000_000 if not quick else 200_000)]
    for w in (1, 2):
        with MPIPoolExecutor(max_workers=w) as ex:
            ex.submit(trivial, 0).result()
            emit(f"mpi_factorial_1M/ranks:{w}", "seconds",
                 timed(lambda: sum(ex.map(factorial, inputs, chunksize=10000)), 1))


if __name__ == "__main__":
    main()
