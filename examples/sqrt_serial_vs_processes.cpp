// sqrt_serial_vs_processes.cpp — when do processes pay off? Square roots, serial and split.
//
// Mirrors: "A Starter's Guide to Parallel and Multiprocessing Python"
//          (seed 003_5a8e802222bb39cd.txt), section "How to Get the Most Out of Python
//          Multiprocessing": square roots of 10..N computed serially and in parallel, timed
//          for N = 5,000,000 and N = 100,000. The tutorial's parallel half uses Pool.map (that
//          version comes with Pool); here the range is split by hand over cpu_count() Processes,
//          and each sends its part's result back over its own Pipe.
//
// What to notice
//  - The lesson carries over: starting processes and collecting results has a fixed cost
//    (a millisecond or more), so a small job is faster serially and a big one in parallel.
//    The timings are printed, not checked; on a busy machine the parallel column suffers.
//  - The crossover sits elsewhere than in Python: compiled C++ takes nanoseconds per square
//    root, not hundreds of nanoseconds, so N = 100,000 is over long before a process starts
//    and even N = 5,000,000 is a small job. A larger N is added to show the gain.
//  - Each part reports the sum of its square roots (one number) instead of a list of millions:
//    sending every result back would cost more than computing it, which is the other half of
//    the tutorial's lesson. The sums let us check that both ways computed the same thing.
//  - Speed-up is bounded by the cores you have: at most 2x on a 2-core machine.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

// Sum of sqrt(x) for x in [first, last).
double sqrt_sum(std::int64_t first, std::int64_t last) {
  double sum = 0.0;
  for (std::int64_t x = first; x < last; ++x) sum += std::sqrt(static_cast<double>(x));
  return sum;
}

// A child's job: one slice of the range, its answer sent back on `result`.
void sqrt_part(std::int64_t first, std::int64_t last, mproc::Connection result) {
  result.send(sqrt_sum(first, last));
}

// Splits [first, last) over `workers` processes and adds up their answers.
double sqrt_sum_in_processes(std::int64_t first, std::int64_t last, int workers) {
  std::vector<mproc::Process> processes;
  std::vector<mproc::Connection> results;
  const std::int64_t count = last - first;
  for (int i = 0; i < workers; ++i) {
    const std::int64_t lo = first + count * i / workers;
    const std::int64_t hi = first + count * (i + 1) / workers;
    auto [ours, theirs] = mproc::Pipe(false);
    processes.emplace_back(sqrt_part, lo, hi, theirs);
    processes.back().start();
    theirs.close();  // only the child writes; if it died, our recv() would see EOF, not hang
    results.push_back(ours);
  }
  double total = 0.0;
  for (auto& result : results) total += result.recv<double>();
  for (auto& process : processes) process.join();
  return total;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int main() {
  const int workers = mproc::cpu_count();
  std::printf("splitting over cpu_count() = %d processes\n\n", workers);
  std::printf("%12s %14s %14s %10s\n", "N", "serial [s]", "processes [s]", "speed-up");

  bool agree = true;
  for (const std::int64_t n : {100'000LL, 5'000'000LL, 50'000'000LL}) {
    auto start = std::chrono::steady_clock::now();
    const double serial = sqrt_sum(10, n);
    const double serial_s = seconds_since(start);

    start = std::chrono::steady_clock::now();
    const double parallel = sqrt_sum_in_processes(10, n, workers);
    const double parallel_s = seconds_since(start);

    std::printf("%12lld %14.4f %14.4f %9.2fx\n", static_cast<long long>(n), serial_s, parallel_s,
                serial_s / parallel_s);
    // The parts add in a different order, so the sums agree to rounding, not bit for bit.
    agree &= std::fabs(serial - parallel) <= 1e-9 * std::fabs(serial);
  }
  std::printf("\nserial and process sums %s\n", agree ? "agree" : "DIFFER");
  return agree ? 0 : 1;
}
