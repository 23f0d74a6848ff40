// mpi_bench.cpp — mproc::mpi::Executor measurements, one JSON line each (bench/python/common.py's
// format). Run: mpiexec --oversubscribe -n 3 mpi_bench [--quick]. Peers: raw_master_worker.cpp
// (raw Open MPI), bench/python/mpi_futures.py (mpi4py.futures); bench/mpi/run runs all three.
#include <mproc/mpi/executor.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <ranges>
#include <string>
#include <vector>

namespace {

int trivial(int x) {
  return x + 1;
}
double factorial(int n) {
  return n == 0 ? 1.0 : n * factorial(n - 1);
}

template <class Fn>
std::vector<double> repeat(int reps, Fn&& fn) {
  std::vector<double> out;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return out;
}

/// `samples` in the metric's unit.
void emit(const char* bench, const char* metric, const std::vector<double>& samples) {
  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  std::string list;
  for (double s : samples) list += (list.empty() ? "" : ", ") + std::to_string(s);
  std::printf(
      "{\"bench\": \"%s\", \"impl\": \"mproc\", \"metric\": \"%s\", \"value\": %.6g, "
      "\"samples\": [%s]}\n",
      bench, metric, sorted[sorted.size() / 2], list.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  mproc::mpi::init(argc, argv);
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int reps = quick ? 3 : 5;
  {
    mproc::mpi::Executor ex;
    long long sink = 0;
    // 10,000 trivial tasks via map (default chunking): tasks per second.
    auto map_s = repeat(reps, [&] {
      for (int y : ex.map(trivial, std::views::iota(0, 10000))) sink += y;
    });
    for (double& s : map_s) s = 10000 / s;
    emit("mpi_map_trivial_10k", "tasks_per_second", map_s);
    // The same with one task per message (chunksize 1): the per-message cost, as raw MPI pays.
    auto one_s = repeat(reps, [&] {
      for (int y : ex.map(trivial, std::views::iota(0, 10000), {.chunksize = 1})) sink += y;
    });
    for (double& s : one_s) s = 10000 / s;
    emit("mpi_map_trivial_10k_chunksize1", "tasks_per_second", one_s);
    // submit + get, one at a time: seconds per round trip (reported as 1/s, then inverted).
    const int n = quick ? 500 : 2000;
    auto rt = repeat(reps, [&] {
      for (int i = 0; i < n; ++i) sink += ex.submit(trivial, i).get();
    });
    for (double& s : rt) s /= n;
    emit("mpi_submit_round_trip", "seconds_per_op", rt);
    if (sink == 42) std::puts("");
  }
  // The factorial workload on 1 worker rank and on 2.
  std::mt19937 rng(2017);
  std::uniform_int_distribution<int> pick(1, 99);
  std::vector<int> inputs(1'000'000);
  for (int& x : inputs) x = pick(rng);
  const auto ranks = static_cast<std::size_t>(mproc::mpi::world_size() - 1);
  for (std::size_t w : {std::size_t{1}, std::min<std::size_t>(2, ranks)}) {
    mproc::mpi::Executor ex(w);
    double total = 0;
    auto s = repeat(reps, [&] {
      for (double f : ex.map(factorial, inputs)) total += f;
    });
    const std::string name = "mpi_factorial_1M/ranks:" + std::to_string(w);
    emit(name.c_str(), "seconds", s);
  }
  return 0;
}
