// sqrt_pool_timing.cpp — when does a Pool pay off? Square roots, serial and with Pool.map.
//
// Mirrors: "A Starter's Guide to Parallel and Multiprocessing Python"
//          (seed 003_5a8e802222bb39cd.txt), "How to Get the Most Out of Python
//          Multiprocessing": `with Pool() as pool: pool.map(cube, range(10, N))` timed against
//          a serial loop appending math.sqrt(x), for N = 5,000,000 and N = 100,000.
//          examples/sqrt_serial_vs_processes.cpp does the same split by hand with Processes.
//
// What to notice
//  - As in the tutorial, the Pool column includes starting and stopping the pool (the `with`
//    block is inside the timing): that fixed cost is why small jobs lose.
//  - In C++ a square root costs about a nanosecond, less than moving its result from a worker
//    back into the parent's vector. So for this function the serial loop wins at every N:
//    the tutorial's 1.6 s vs 2.7 s was Python's interpreter cost per item, which processes
//    can share out; C++ has none to share.
//  - The last rows give each item real work (a thousand square roots summed): now the work
//    dominates the transfer and the pool divides the time by about the number of cores.
//  - Timings are printed, not checked; the results are compared with the serial ones.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ranges>
#include <vector>

double root(int x) {
  return std::sqrt(static_cast<double>(x));
}

// A costlier item: about a microsecond of arithmetic.
double heavy_root(int x) {
  double sum = 0.0;
  for (int k = 1; k <= 1000; ++k) sum += std::sqrt(static_cast<double>(x) + k);
  return sum;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One row: `fn` over [10, n), serially and with a Pool of cpu_count() workers.
bool compare(const char* what, double (*fn)(int), int n) {
  auto start = std::chrono::steady_clock::now();
  std::vector<double> serial;
  serial.reserve(static_cast<std::size_t>(n - 10));
  for (int x = 10; x < n; ++x) serial.push_back(fn(x));
  const double serial_s = seconds_since(start);

  start = std::chrono::steady_clock::now();
  std::vector<double> parallel;
  {
    mproc::Pool pool;
    parallel = pool.map(fn, std::views::iota(10, n));
  }
  const double pool_s = seconds_since(start);

  std::printf("%-11s %10d %12.4f %12.4f   %s\n", what, n, serial_s, pool_s,
              pool_s < serial_s ? "pool faster" : "serial faster");
  return parallel == serial;  // the same function on the same inputs: bit-identical
}

int main() {
  std::printf("Pool() has cpu_count() = %d workers\n\n", mproc::cpu_count());
  std::printf("%-11s %10s %12s %12s\n", "function", "N", "serial [s]", "Pool.map [s]");
  bool same = true;
  same &= compare("sqrt", root, 100'000);
  same &= compare("sqrt", root, 5'000'000);
  same &= compare("heavy_root", heavy_root, 20'000);
  same &= compare("heavy_root", heavy_root, 200'000);
  std::printf("\nserial and Pool.map results %s\n", same ? "agree" : "DIFFER");
  return same ? 0 : 1;
}
