// one_shot_bench.cpp — mproc::map against a serial loop on the same workload, in one binary.
//
//   one_shot/sqrt_iota/serial_loop          std::vector<double> filled by a loop over
//                                           sqrt(x), x in [10, 5'000'000)
//   one_shot/sqrt_iota/mproc_map/<procs>    mproc::map(sqrt, iota(10, 5'000'000), {.processes})
//   one_shot/sqrt_iota/mproc_map_reduce/<procs>
//                                           the sum of the same square roots: only one number per
//                                           chunk travels back
//   one_shot/spin/serial_loop, one_shot/spin/mproc_map/<procs>
//                                           a costlier item (~2 µs of arithmetic) over 200,000
//                                           items: where processes pay off
//
// The sqrt workload is the tutorials' "square roots of 10..N" (seed 003): each item costs about
// a nanosecond, so the serial loop is bound by memory bandwidth and mproc::map by forking the
// workers, page faults on the shared result array and the copy into the returned vector. It
// shows the fixed cost of a call; the spin workload shows the gain once items cost something.
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <mproc/mproc.hpp>
#include <ranges>
#include <vector>

#include "support.hpp"

namespace {

constexpr long kSqrtFirst = 10;
constexpr long kSqrtLast = 5'000'000;
constexpr std::uint64_t kSpinItems = 200'000;

double root(long x) {
  return std::sqrt(static_cast<double>(x));
}

std::uint64_t spin(std::uint64_t x) {
  std::uint64_t h = x;
  for (int i = 0; i < 600; ++i) h = h * 6364136223846793005ULL + 1442695040888963407ULL;
  return h;
}

void sqrt_serial_loop(benchmark::State& state) {
  for (auto _ : state) {
    std::vector<double> out;
    out.reserve(static_cast<std::size_t>(kSqrtLast - kSqrtFirst));
    for (long x = kSqrtFirst; x < kSqrtLast; ++x) out.push_back(root(x));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * (kSqrtLast - kSqrtFirst));
}

void sqrt_mproc_map(benchmark::State& state) {
  const auto processes = static_cast<std::size_t>(state.range(0));
  try {
    for (auto _ : state) {
      auto out =
          mproc::map(root, std::views::iota(kSqrtFirst, kSqrtLast), {.processes = processes});
      benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * (kSqrtLast - kSqrtFirst));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void sqrt_serial_sum(benchmark::State& state) {
  for (auto _ : state) {
    double sum = 0;
    for (long x = kSqrtFirst; x < kSqrtLast; ++x) sum += root(x);
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * (kSqrtLast - kSqrtFirst));
}

void sqrt_mproc_map_reduce(benchmark::State& state) {
  const auto processes = static_cast<std::size_t>(state.range(0));
  try {
    for (auto _ : state) {
      double sum = mproc::map_reduce(root, std::views::iota(kSqrtFirst, kSqrtLast), std::plus<>{},
                                     {.processes = processes});
      benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * (kSqrtLast - kSqrtFirst));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void spin_serial_loop(benchmark::State& state) {
  for (auto _ : state) {
    std::vector<std::uint64_t> out;
    out.reserve(kSpinItems);
    for (std::uint64_t x = 0; x < kSpinItems; ++x) out.push_back(spin(x));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kSpinItems));
}

void spin_mproc_map(benchmark::State& state) {
  const auto processes = static_cast<std::size_t>(state.range(0));
  try {
    for (auto _ : state) {
      auto out = mproc::map(spin, std::views::iota(std::uint64_t{0}, kSpinItems),
                            {.processes = processes});
      benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kSpinItems));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Forking and the work happen in other processes: measure wall-clock time.
BENCHMARK(sqrt_serial_loop)
    ->Name("one_shot/sqrt_iota/serial_loop")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(sqrt_mproc_map)
    ->Name("one_shot/sqrt_iota/mproc_map")
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(sqrt_serial_sum)
    ->Name("one_shot/sqrt_iota/serial_sum")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(sqrt_mproc_map_reduce)
    ->Name("one_shot/sqrt_iota/mproc_map_reduce")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(spin_serial_loop)
    ->Name("one_shot/spin/serial_loop")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(spin_mproc_map)
    ->Name("one_shot/spin/mproc_map")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
