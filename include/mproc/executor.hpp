// executor.hpp — ProcessPoolExecutor (Python's concurrent.futures.ProcessPoolExecutor).
//
//     int square(int x) { return x * x; }
//     mproc::ProcessPoolExecutor ex(4);                  // 0 = cpu_count()
//     mproc::Future<int> f = ex.submit(square, 7);       // f.get() == 49
//     for (int y : ex.map(square, std::views::iota(0, 100), {.timeout = 10s})) use(y);
//     ex.shutdown();                                     // or let the destructor do it
//
// The same engine as Pool (pool.hpp: callables, chunking, failure semantics), with Python's
// executor vocabulary. Differences from Python that matter:
//  - A crashed worker fails only the future it was running (WorkerCrashed) and is replaced;
//    Python breaks the whole executor (BrokenProcessPool) and every pending future.
//  - Workers are handed at most a small window of tasks ahead, so queued futures stay pending
//    (cancel() works on them) and map never reads far ahead of its consumer's workers.
//  - map(fn, range, {.chunksize, .timeout, .progress}) yields results in input order; a step
//    that would wait past `timeout` (measured from the map call) throws TimeoutError. The
//    default chunksize 0 adapts to measured item cost (Python's default is 1).
//  - shutdown(wait, cancel_futures): cancel_futures=true cancels every future not yet started.
//    submit after shutdown throws PoolClosed. The destructor is shutdown(true); while an
//    exception unwinds the stack it also cancels pending futures (only running tasks are
//    waited for).
//
// Thread safety: every member may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <ranges>
#include <utility>

#include "mproc/detail/engine.hpp"
#include "mproc/detail/future_task.hpp"
#include "mproc/detail/map_job.hpp"
#include "mproc/future.hpp"
#include "mproc/initializer.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"

namespace mproc {

struct ExecutorOptions {
  std::size_t max_workers = 0;          ///< 0 = cpu_count()
  Initializer initializer{};            ///< run once in every worker before its first task
  std::size_t max_tasks_per_child = 0;  ///< replace a worker after this many tasks; 0 = never
  std::optional<StartMethod> start{};   ///< nullopt = get_start_method() at construction
  std::optional<std::chrono::nanoseconds> task_timeout{};  ///< per task: TaskTimeout
  int max_retries = 0;                                     ///< re-runs of crashed / timed-out tasks
  std::size_t memory_limit = 0;  ///< address-space bytes per worker; 0 = none
};

class ProcessPoolExecutor {
 public:
  explicit ProcessPoolExecutor(std::size_t max_workers = 0)
      : ProcessPoolExecutor(ExecutorOptions{.max_workers = max_workers}) {}
  explicit ProcessPoolExecutor(ExecutorOptions options);
  ProcessPoolExecutor(ProcessPoolExecutor&&) noexcept = default;
  ProcessPoolExecutor& operator=(ProcessPoolExecutor&&) = delete;
  ~ProcessPoolExecutor();

  /// Schedules fn(args...); PoolClosed after shutdown().
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args) -> Future<detail::task_result_t<F, Args...>> {
    return detail::submit_call(engine(), std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// fn(x) for every x of `range`, as a lazy input range in input order (see the top).
  template <class F, std::ranges::input_range Rng>
  auto map(F&& fn, Rng&& range, MapOptions options = {})
      -> detail::MapResults<detail::pool_map_result_t<false, F, Rng>> {
    using R = detail::pool_map_result_t<false, F, Rng>;
    using Order = typename detail::MapState<R>::Order;
    auto state = detail::start_map<false>(engine(), std::forward<F>(fn), std::forward<Rng>(range),
                                          options.chunksize, options.progress, options.timeout,
                                          Order::ordered);
    return {std::move(state), Order::ordered};
  }

  /// Refuses new work; cancel_futures also cancels every future not yet started; wait blocks
  /// until the running and remaining work is done and the workers have exited. Idempotent.
  void shutdown(bool wait = true, bool cancel_futures = false);

  std::size_t max_workers() const noexcept;

 private:
  detail::Engine& engine() const;

  std::unique_ptr<detail::Engine> engine_;
  int uncaught_ = 0;
};

}  // namespace mproc
