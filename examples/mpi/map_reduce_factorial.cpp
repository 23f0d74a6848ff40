// mpi/map_reduce_factorial.cpp — map_reduce_factorial.cpp on MPI ranks: the same recursive
// factorial over a million random integers in [1, 100), summed, with mproc::mpi::Executor in
// place of the local pool (1 worker rank, then every worker rank).
//
//     mpiexec --oversubscribe -n 3 build/release/examples/mpi_map_reduce_factorial
//
// What to notice
//  - mproc::mpi::init(argc, argv) is the first line of main: ranks >= 1 serve tasks inside it
//    and exit 0 when rank 0 returns from main. Only rank 0 runs the rest.
//  - The inputs travel to the ranks in chunks (a std::vector<int> slice per message) and the
//    doubles come back the same way: nothing is shared, so this runs across machines as is.
//  - The reduce half runs on rank 0 over the ordered, lazy map results.
#include <mproc/mpi/executor.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

// n! by recursion, as in the tutorial.
double factorial(int n) {
  return n == 0 ? 1.0 : n * factorial(n - 1);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int main(int argc, char** argv) {
  mproc::mpi::init(argc, argv);

  std::mt19937 rng(2017);
  std::uniform_int_distribution<int> pick(1, 99);
  std::vector<int> inputs(1'000'000);
  for (int& x : inputs) x = pick(rng);

  auto start = std::chrono::steady_clock::now();
  double expected = 0.0;
  for (int x : inputs) expected += factorial(x);
  std::printf("Serial loop:  Seconds: %.3f\n", seconds_since(start));

  const auto all = static_cast<std::size_t>(mproc::mpi::world_size() - 1);
  bool ok = true;
  for (std::size_t ranks : {std::size_t{1}, all}) {
    mproc::mpi::Executor ex(ranks);
    start = std::chrono::steady_clock::now();
    double total = 0.0;
    for (double f : ex.map(factorial, inputs)) total += f;
    std::printf("Worker ranks: %zu, Seconds: %.3f, sum of the factorials = %.6e\n", ranks,
                seconds_since(start), total);
    ok &= total == expected;  // same items, same order of addition: bit for bit
    if (ranks == all) break;
  }
  std::printf("results %s the serial loop\n", ok ? "match" : "DIFFER FROM");
  return ok ? 0 : 1;
}
