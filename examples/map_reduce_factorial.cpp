// map_reduce_factorial.cpp — the factorial of a million random numbers, with 1 to 4 processes.
//
// Mirrors: "Multiprocessing in Python" (seed 004_bcbe8376bde669d4.txt): a recursive
//          factorial mapped over a million random integers in [1, 100) with a Pool of 1, 2, 3
//          and 4 processes, each run timed. Here mproc::map does the Pool's job, and
//          mproc::map_reduce adds the "reduce" half that the tutorial names but leaves out.
//
// What to notice
//  - mproc::map forks its workers at the call: the function and the million inputs are
//    already in memory, so the workers read them through copy-on-write. Nothing is pickled on
//    the way in; only the results travel back (doubles: written straight into shared memory).
//  - map_reduce folds inside the workers and sends back one number per chunk instead of a
//    million results; the parent combines the chunk totals in input order.
//  - 99! does not fit in 64 bits, so the factorial is a double (99! ~ 9.3e155 fits easily).
//  - Timings are printed, not checked. C++ computes a factorial in well under a microsecond,
//    so the whole million takes a fraction of a second and starting processes is a visible
//    part of it; the tutorial's 8.4 s (one Python process) is the cost of the interpreter.
//    Beyond cpu_count() processes nothing improves: the extra workers share the same cores.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

// n! by recursion, as in the tutorial.
double factorial(int n) {
  return n == 0 ? 1.0 : n * factorial(n - 1);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int main() {
  // A million integers in [1, 100), like np.random.randint(1, high=100, size=1000000).
  std::mt19937 rng(2017);
  std::uniform_int_distribution<int> pick(1, 99);
  std::vector<int> inputs(1'000'000);
  for (int& x : inputs) x = pick(rng);

  auto start = std::chrono::steady_clock::now();
  std::vector<double> serial;
  serial.reserve(inputs.size());
  for (int x : inputs) serial.push_back(factorial(x));
  std::printf("Serial loop:  Seconds: %.3f\n", seconds_since(start));

  bool ok = true;
  for (std::size_t processes = 1; processes <= 4; ++processes) {
    start = std::chrono::steady_clock::now();
    const std::vector<double> results = mproc::map(factorial, inputs, {.processes = processes});
    std::printf("Processes: %zu, Seconds: %.3f\n", processes, seconds_since(start));
    ok &= results == serial;  // the same computation, bit for bit
  }

  // The reduce half: the sum of all the factorials, folded in the workers.
  start = std::chrono::steady_clock::now();
  const double total = mproc::map_reduce(factorial, inputs, std::plus<>{});
  const double reduce_s = seconds_since(start);
  double expected = 0.0;
  for (double f : serial) expected += f;
  std::printf("map_reduce: sum of the factorials = %.6e in %.3f s\n", total, reduce_s);
  // The chunks are added in a different grouping than one serial loop: equal to rounding.
  ok &= std::fabs(total - expected) <= 1e-12 * expected;

  std::printf("results %s the serial loop\n", ok ? "match" : "DIFFER FROM");
  return ok ? 0 : 1;
}
