// pool_bench.cpp — Pool and ProcessPoolExecutor against in-process parallelism (a serial loop,
// std::thread, oneTBB) on the tutorials' workloads, plus the engine's fixed costs.
//
//   pool_sqrt_map/{mproc,serial_loop,std_thread,tbb}
//       sqrt(x) for x in [10, 5'000'000) into a fresh std::vector<double>: Pool(2).map over
//       std::views::iota; a serial loop; 2 std::threads each filling half; tbb::parallel_for
//       in a 2-thread arena. The tutorials' "square roots of 10..N" (seed 003).
//   pool_factorial/{mproc,mproc_1proc,serial_loop,std_thread,tbb}
//       recursive factorial (as a double) of 1,000,000 random ints in [1, 100) (seed 004):
//       Pool(2).map and Pool(1).map of a std::vector<int>, the same in-process peers.
//   pool_sleep_as_completed/mproc
//       10 tasks sleeping 0.2 s, submitted to a 2-worker executor and collected with
//       as_completed: wall time (1.0 s is the floor) (seed 000, section 4).
//   pool_roundtrip_median/{mproc,thread_condvar}/pinned:{0,1}
//   pool_roundtrip_p99/{mproc,thread_condvar}/pinned:{0,1}
//       one task's submit -> get() on a warm 2-worker executor, against a std::thread echo
//       server driven by a mutex and condition variables: the median and 99th percentile of
//       single round trips. Pinned runs put every process (or thread) on one CPU.
//   pool_submit_throughput/mproc
//       100,000 trivial tasks: all submitted to a 2-worker executor, then all waited for
//       (time per task).
//   pool_map_throughput/mproc
//       Pool(2).map of a trivial function over iota(0, 100'000) (time per item).
//   pool_start_ready/mproc, pool_start_constructed/mproc
//       Pool(2) construction until both workers have answered a task, and until the
//       constructor returns (teardown not timed).
//   pool_worker_rss/mproc
//       resident memory of the larger of two warm pool workers beyond that of an idle process
//       forked from the same parent just before them (VmRSS from /proc/<pid>/status),
//       reported as the counter "resident_bytes".
//
// Every pool here uses the fork start method explicitly, as Python does on Linux, so the
// comparison does not depend on whether TBB or an earlier pool left threads behind (mproc's
// default would then be forkserver). bench/python/pool_*.py measure the same workloads with
// multiprocessing.Pool, concurrent.futures.ProcessPoolExecutor and loky.
//
// Results are spot-checked against the serial computation: a wrong answer is an error row, not a
// fast number. Maps carry a MapOptions::timeout so that results that stall become an error row
// (a caller blocked inside the engine itself is only ended by bench/run's timeout).
//
// The round-trip benchmarks time each submit -> get() separately; an iteration is a batch of
// them, reported as batch size x the batch's median (or p99) so that items_per_second is the
// inverse of that statistic and Google Benchmark's timing calibration still holds.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <fstream>
#include <mproc/executor.hpp>
#include <mproc/future.hpp>
#include <mproc/pool.hpp>
#include <mproc/process.hpp>
#include <mutex>
#include <random>
#include <ranges>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifdef MPROC_BENCH_HAVE_TBB
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#endif

#include "support.hpp"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kSqrtFirst = 10;
constexpr int kSqrtLast = 5'000'000;
constexpr std::size_t kFactorialItems = 1'000'000;
constexpr int kSleepTasks = 10;
constexpr auto kSleep = std::chrono::milliseconds(200);
constexpr int kTrivialTasks = 100'000;
constexpr int kRoundTripBatch = 200;
constexpr unsigned kWorkers = 2;
// A map waits at most this long (MapOptions::timeout): should the engine ever stall, the run
// becomes an error row (TimeoutError) and the pool is terminated while the exception unwinds,
// instead of hanging until bench/run kills the binary.
constexpr auto kMapDeadline = std::chrono::seconds(10);
constexpr mproc::MapOptions kMapOptions{.timeout = kMapDeadline};

mproc::PoolOptions pool_options(std::size_t processes) {
  return mproc::PoolOptions{.processes = processes, .start = mproc::StartMethod::fork};
}
mproc::ExecutorOptions executor_options() {
  return mproc::ExecutorOptions{.max_workers = kWorkers, .start = mproc::StartMethod::fork};
}

// ---- task functions (transferable: plain functions) -----------------------------------------

double root(int x) {
  return std::sqrt(static_cast<double>(x));
}

// The seed's recursive factorial, as a double so that 99! fits (every peer computes the same).
double factorial(int n) {
  return n <= 0 ? 1.0 : n * factorial(n - 1);
}

int identity(int x) {
  return x;
}

int nap(int i) {
  std::this_thread::sleep_for(kSleep);
  return i;
}

int worker_pid() {
  return static_cast<int>(::getpid());
}

const std::vector<int>& factorial_inputs() {
  static const std::vector<int> inputs = [] {
    std::mt19937 rng(20171212);  // fixed: every run and every peer sees the same inputs
    std::uniform_int_distribution<int> dist(1, 99);
    std::vector<int> v(kFactorialItems);
    for (int& x : v) x = dist(rng);
    return v;
  }();
  return inputs;
}

// Checks a map's output against the serial computation at a few places; a wrong result makes
// the benchmark an error row instead of a fast-looking number.
template <class Fn>
bool spot_check(const std::vector<double>& out, std::size_t expected_size, Fn expected) {
  if (out.size() != expected_size) return false;
  for (std::size_t i = 0; i < out.size(); i += out.size() / 7 + 1) {
    if (out[i] != expected(i)) return false;
  }
  return out.back() == expected(out.size() - 1);
}

bool sqrt_ok(const std::vector<double>& out) {
  return spot_check(out, kSqrtLast - kSqrtFirst,
                    [](std::size_t i) { return root(kSqrtFirst + static_cast<int>(i)); });
}
bool factorial_ok(const std::vector<double>& out) {
  return spot_check(out, kFactorialItems,
                    [](std::size_t i) { return factorial(factorial_inputs()[i]); });
}

// ---- in-process peers ------------------------------------------------------------------------

// out[i] = fn(in(i)) for i in [0, n), split over `threads` std::threads started for the call.
template <class In, class Fn>
std::vector<double> threads_map(std::size_t n, unsigned threads, In in, Fn fn) {
  std::vector<double> out(n);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const std::size_t lo = n * t / threads, hi = n * (t + 1) / threads;
      for (std::size_t i = lo; i < hi; ++i) out[i] = fn(in(i));
    });
  }
  for (auto& th : pool) th.join();
  return out;
}

#ifdef MPROC_BENCH_HAVE_TBB
template <class In, class Fn>
std::vector<double> tbb_map(tbb::task_arena& arena, std::size_t n, In in, Fn fn) {
  std::vector<double> out(n);
  arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n),
                      [&](const tbb::blocked_range<std::size_t>& r) {
                        for (std::size_t i = r.begin(); i != r.end(); ++i) out[i] = fn(in(i));
                      });
  });
  return out;
}
#endif

// ---- square roots of [10, 5'000'000) ----------------------------------------------------------

void sqrt_mproc(benchmark::State& state) {
  try {
    mproc::Pool pool(pool_options(kWorkers));
    pool.map(root, std::views::iota(0, 1000));  // warm-up: workers running, code paged in
    bool ok = true;
    for (auto _ : state) {
      std::vector<double> out =
          pool.map(root, std::views::iota(kSqrtFirst, kSqrtLast), kMapOptions);
      benchmark::DoNotOptimize(out.data());
      ok = ok && sqrt_ok(out);
    }
    if (!ok) state.SkipWithError("Pool.map returned wrong square roots");
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void sqrt_serial(benchmark::State& state) {
  bool ok = true;
  for (auto _ : state) {
    std::vector<double> out(kSqrtLast - kSqrtFirst);
    for (int x = kSqrtFirst; x < kSqrtLast; ++x)
      out[static_cast<std::size_t>(x - kSqrtFirst)] = root(x);
    benchmark::DoNotOptimize(out.data());
    ok = ok && sqrt_ok(out);
  }
  if (!ok) state.SkipWithError("serial loop returned wrong square roots");
}

int sqrt_input(std::size_t i) {
  return kSqrtFirst + static_cast<int>(i);
}

void sqrt_threads(benchmark::State& state) {
  bool ok = true;
  for (auto _ : state) {
    auto out = threads_map(kSqrtLast - kSqrtFirst, kWorkers, sqrt_input, root);
    benchmark::DoNotOptimize(out.data());
    ok = ok && sqrt_ok(out);
  }
  if (!ok) state.SkipWithError("std::thread peer returned wrong square roots");
}

// ---- recursive factorial of 1,000,000 random ints ---------------------------------------------

void factorial_mproc(benchmark::State& state, std::size_t processes) {
  try {
    const std::vector<int>& inputs = factorial_inputs();
    mproc::Pool pool(pool_options(processes));
    pool.map(factorial, std::views::iota(0, 1000));  // warm-up
    bool ok = true;
    for (auto _ : state) {
      std::vector<double> out = pool.map(factorial, inputs, kMapOptions);
      benchmark::DoNotOptimize(out.data());
      ok = ok && factorial_ok(out);
    }
    if (!ok) state.SkipWithError("Pool.map returned wrong factorials");
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
void factorial_mproc_2(benchmark::State& state) {
  factorial_mproc(state, 2);
}
void factorial_mproc_1(benchmark::State& state) {
  factorial_mproc(state, 1);
}

void factorial_serial(benchmark::State& state) {
  const std::vector<int>& inputs = factorial_inputs();
  bool ok = true;
  for (auto _ : state) {
    std::vector<double> out(inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) out[i] = factorial(inputs[i]);
    benchmark::DoNotOptimize(out.data());
    ok = ok && factorial_ok(out);
  }
  if (!ok) state.SkipWithError("serial loop returned wrong factorials");
}

void factorial_threads(benchmark::State& state) {
  const std::vector<int>& inputs = factorial_inputs();
  const auto input = [&inputs](std::size_t i) { return inputs[i]; };
  bool ok = true;
  for (auto _ : state) {
    auto out = threads_map(kFactorialItems, kWorkers, input, factorial);
    benchmark::DoNotOptimize(out.data());
    ok = ok && factorial_ok(out);
  }
  if (!ok) state.SkipWithError("std::thread peer returned wrong factorials");
}

#ifdef MPROC_BENCH_HAVE_TBB
void sqrt_tbb(benchmark::State& state) {
  tbb::task_arena arena(static_cast<int>(kWorkers));
  bool ok = true;
  for (auto _ : state) {
    auto out = tbb_map(arena, kSqrtLast - kSqrtFirst, sqrt_input, root);
    benchmark::DoNotOptimize(out.data());
    ok = ok && sqrt_ok(out);
  }
  if (!ok) state.SkipWithError("TBB peer returned wrong square roots");
}

void factorial_tbb(benchmark::State& state) {
  const std::vector<int>& inputs = factorial_inputs();
  const auto input = [&inputs](std::size_t i) { return inputs[i]; };
  tbb::task_arena arena(static_cast<int>(kWorkers));
  bool ok = true;
  for (auto _ : state) {
    auto out = tbb_map(arena, kFactorialItems, input, factorial);
    benchmark::DoNotOptimize(out.data());
    ok = ok && factorial_ok(out);
  }
  if (!ok) state.SkipWithError("TBB peer returned wrong factorials");
}
#endif

// ---- 10 sleeping tasks collected with as_completed --------------------------------------------

void sleep_as_completed(benchmark::State& state) {
  try {
    mproc::ProcessPoolExecutor ex(executor_options());
    ex.submit(identity, 0).get();  // warm-up
    bool ok = true;
    for (auto _ : state) {
      std::vector<mproc::Future<int>> futures;
      for (int i = 0; i < kSleepTasks; ++i) futures.push_back(ex.submit(nap, i));
      std::set<int> seen;
      for (auto&& f : mproc::as_completed(futures)) seen.insert(f.get());
      ok = ok && seen.size() == kSleepTasks;
    }
    if (!ok) state.SkipWithError("as_completed did not yield every task once");
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---- round-trip latency -----------------------------------------------------------------------

// Times `round_trip(k)` kRoundTripBatch times per iteration and reports the batch's
// `quantile` (0.5 = median) as the time of one item.
template <class RoundTrip>
void timed_batches(benchmark::State& state, double quantile, RoundTrip round_trip) {
  std::vector<double> seconds(kRoundTripBatch);
  const auto rank = static_cast<std::size_t>(quantile * (kRoundTripBatch - 1) + 0.5);
  for (auto _ : state) {
    for (int k = 0; k < kRoundTripBatch; ++k) {
      const auto begin = Clock::now();
      if (!round_trip(k)) {
        state.SkipWithError("a round trip returned the wrong value");
        return;
      }
      seconds[static_cast<std::size_t>(k)] =
          std::chrono::duration<double>(Clock::now() - begin).count();
    }
    std::nth_element(seconds.begin(), seconds.begin() + static_cast<std::ptrdiff_t>(rank),
                     seconds.end());
    state.SetIterationTime(seconds[rank] * kRoundTripBatch);
  }
  state.SetItemsProcessed(state.iterations() * kRoundTripBatch);
}

void roundtrip_mproc(benchmark::State& state, double quantile) {
  mproc_bench::ScopedPin pin(state.range(0) != 0);  // before the workers: they inherit it
  if (!pin.error().empty()) {
    state.SkipWithError(pin.error().c_str());
    return;
  }
  try {
    mproc::ProcessPoolExecutor ex(executor_options());
    for (int i = 0; i < 200; ++i) ex.submit(identity, i).get();  // warm both workers
    timed_batches(state, quantile, [&](int k) { return ex.submit(identity, k).get() == k; });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
void roundtrip_median_mproc(benchmark::State& s) {
  roundtrip_mproc(s, 0.5);
}
void roundtrip_p99_mproc(benchmark::State& s) {
  roundtrip_mproc(s, 0.99);
}

// A thread that echoes requests: the in-process floor for "hand a value to another thread of
// execution and wait for its answer".
class EchoThread {
 public:
  EchoThread() : thread_([this] { serve(); }) {}
  ~EchoThread() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    request_cv_.notify_one();
    thread_.join();
  }
  EchoThread(const EchoThread&) = delete;
  EchoThread& operator=(const EchoThread&) = delete;

  int call(int value) {
    std::unique_lock lock(mutex_);
    request_ = value;
    has_request_ = true;
    request_cv_.notify_one();
    reply_cv_.wait(lock, [this] { return has_reply_; });
    has_reply_ = false;
    return reply_;
  }

 private:
  void serve() {
    std::unique_lock lock(mutex_);
    for (;;) {
      request_cv_.wait(lock, [this] { return has_request_ || stop_; });
      if (stop_) return;
      has_request_ = false;
      reply_ = identity(request_);
      has_reply_ = true;
      reply_cv_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable request_cv_, reply_cv_;
  int request_ = 0, reply_ = 0;
  bool has_request_ = false, has_reply_ = false, stop_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

void roundtrip_thread(benchmark::State& state, double quantile) {
  mproc_bench::ScopedPin pin(state.range(0) != 0);  // before the thread: it inherits it
  if (!pin.error().empty()) {
    state.SkipWithError(pin.error().c_str());
    return;
  }
  EchoThread echo;
  for (int i = 0; i < 200; ++i) echo.call(i);
  timed_batches(state, quantile, [&](int k) { return echo.call(k) == k; });
}
void roundtrip_median_thread(benchmark::State& s) {
  roundtrip_thread(s, 0.5);
}
void roundtrip_p99_thread(benchmark::State& s) {
  roundtrip_thread(s, 0.99);
}

// ---- throughput of trivial tasks --------------------------------------------------------------

void submit_throughput(benchmark::State& state) {
  try {
    mproc::ProcessPoolExecutor ex(executor_options());
    for (int i = 0; i < 100; ++i) ex.submit(identity, i).get();
    std::vector<mproc::Future<int>> futures;
    futures.reserve(kTrivialTasks);
    bool ok = true;
    for (auto _ : state) {
      futures.clear();
      for (int i = 0; i < kTrivialTasks; ++i) futures.push_back(ex.submit(identity, i));
      for (int i = 0; i < kTrivialTasks; ++i) {
        ok = ok && futures[static_cast<std::size_t>(i)].get() == i;
      }
    }
    if (!ok) state.SkipWithError("a task returned the wrong value");
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  state.SetItemsProcessed(state.iterations() * kTrivialTasks);
}

void map_throughput(benchmark::State& state) {
  try {
    mproc::Pool pool(pool_options(kWorkers));
    pool.map(identity, std::views::iota(0, 1000));
    bool ok = true;
    for (auto _ : state) {
      std::vector<int> out = pool.map(identity, std::views::iota(0, kTrivialTasks), kMapOptions);
      benchmark::DoNotOptimize(out.data());
      ok = ok && out.size() == kTrivialTasks && out[12345] == 12345 &&
           out.back() == kTrivialTasks - 1;
    }
    if (!ok) state.SkipWithError("Pool.map returned wrong values");
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  state.SetItemsProcessed(state.iterations() * kTrivialTasks);
}

// ---- start-up and memory ----------------------------------------------------------------------

// Sends pid requests to the pool until both workers have answered one.
void wait_until_every_worker_answered(mproc::Pool& pool) {
  std::set<int> pids;
  for (int round = 0; pids.size() < kWorkers; ++round) {
    if (round == 10'000) throw std::runtime_error("a worker never answered");
    std::vector<mproc::Future<int>> futures;
    for (unsigned w = 0; w < kWorkers; ++w) futures.push_back(pool.apply_async(worker_pid));
    for (auto& f : futures) pids.insert(f.get());
  }
}

void start_ready(benchmark::State& state) {
  try {
    for (auto _ : state) {
      const auto begin = Clock::now();
      mproc::Pool pool(pool_options(kWorkers));
      wait_until_every_worker_answered(pool);
      state.SetIterationTime(std::chrono::duration<double>(Clock::now() - begin).count());
    }  // the pool closes and joins here, untimed
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void start_constructed(benchmark::State& state) {
  try {
    for (auto _ : state) {
      const auto begin = Clock::now();
      mproc::Pool pool(pool_options(kWorkers));
      state.SetIterationTime(std::chrono::duration<double>(Clock::now() - begin).count());
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// VmRSS of `pid` in bytes; throws if /proc has no such line.
double resident_bytes(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      double kib = 0;
      if (fields >> kib) return kib * 1024.0;
    }
  }
  throw std::runtime_error("no VmRSS in /proc/" + std::to_string(pid) + "/status");
}

void worker_rss(benchmark::State& state) {
  int gate[2] = {-1, -1};
  pid_t idle = -1;
  try {
    if (::pipe(gate) != 0) throw std::runtime_error(mproc_bench::errno_message("pipe"));
    // The baseline, forked just before the pool's workers from the same parent: a child that
    // only waits (for end of file on the gate).
    idle = mproc_bench::fork_child([&] {
      char byte;
      mproc_bench::close_fd(gate[1]);
      (void)mproc_bench::read_all(gate[0], &byte, 1);
      return 0;
    });
    if (idle < 0) throw std::runtime_error(mproc_bench::errno_message("fork"));
    mproc_bench::close_fd(gate[0]);
    mproc::Pool pool(pool_options(kWorkers));
    // Warm the workers: a map and single tasks, so their buffers and code are touched.
    pool.map(root, std::views::iota(0, 200'000), kMapOptions);
    for (int i = 0; i < 100; ++i) pool.apply(identity, i);
    std::vector<int> workers;
    for (const auto& child : mproc::active_children()) {
      if (child.name().rfind("PoolWorker-", 0) == 0) workers.push_back(child.pid());
    }
    if (workers.empty()) throw std::runtime_error("no PoolWorker in active_children()");
    double extra = 0;
    for (auto _ : state) {
      double largest = 0;
      for (int pid : workers) largest = std::max(largest, resident_bytes(pid));
      extra = largest - resident_bytes(idle);
    }
    state.counters["resident_bytes"] = extra;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  mproc_bench::close_fd(gate[0]);
  mproc_bench::close_fd(gate[1]);  // the idle child reads end of file and exits
  if (idle > 0) mproc_bench::reap(idle);
}

}  // namespace

BENCHMARK(sqrt_mproc)->Name("pool_sqrt_map/mproc")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(sqrt_serial)
    ->Name("pool_sqrt_map/serial_loop")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(sqrt_threads)
    ->Name("pool_sqrt_map/std_thread")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
#ifdef MPROC_BENCH_HAVE_TBB
BENCHMARK(sqrt_tbb)->Name("pool_sqrt_map/tbb")->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

BENCHMARK(factorial_mproc_2)
    ->Name("pool_factorial/mproc")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(factorial_mproc_1)
    ->Name("pool_factorial/mproc_1proc")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(factorial_serial)
    ->Name("pool_factorial/serial_loop")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(factorial_threads)
    ->Name("pool_factorial/std_thread")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
#ifdef MPROC_BENCH_HAVE_TBB
BENCHMARK(factorial_tbb)->Name("pool_factorial/tbb")->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

BENCHMARK(sleep_as_completed)
    ->Name("pool_sleep_as_completed/mproc")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(roundtrip_median_mproc)
    ->Name("pool_roundtrip_median/mproc")
    ->ArgName("pinned")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime();
BENCHMARK(roundtrip_median_thread)
    ->Name("pool_roundtrip_median/thread_condvar")
    ->ArgName("pinned")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime();
BENCHMARK(roundtrip_p99_mproc)
    ->Name("pool_roundtrip_p99/mproc")
    ->ArgName("pinned")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime();
BENCHMARK(roundtrip_p99_thread)
    ->Name("pool_roundtrip_p99/thread_condvar")
    ->ArgName("pinned")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime();

BENCHMARK(submit_throughput)
    ->Name("pool_submit_throughput/mproc")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(map_throughput)
    ->Name("pool_map_throughput/mproc")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(start_ready)
    ->Name("pool_start_ready/mproc")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(start_constructed)
    ->Name("pool_start_constructed/mproc")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(worker_rss)->Name("pool_worker_rss/mproc")->Iterations(1);

BENCHMARK_MAIN();
