// pool.hpp — Pool: a fixed set of worker processes running tasks and maps (Python's
// multiprocessing.Pool), and the one-shot mproc::map / mproc::map_reduce.
//
//     double root(int x) { return std::sqrt(x); }
//     mproc::Pool pool(4);                                         // 0 = cpu_count()
//     std::vector<double> r = pool.map(root, std::views::iota(10, 5'000'000));
//     mproc::Future<double> f = pool.apply_async(root, 49);        // f.get() == 7
//     for (double x : pool.imap(root, inputs)) use(x);             // lazy, in order
//     auto all = pool.map_results(parse, lines);                   // every value or error
//
// Concepts
//  - Tasks run in worker processes named PoolWorker-1, PoolWorker-2, ... (start method per
//    PoolOptions::start, else get_start_method() when the pool is made; replacements use the
//    same). Functions must be transferable (function pointer, captureless lambda, encodable
//    function object); arguments, items and results travel through the codec (codec.hpp).
//    A capturing lambda is a compile error that points to the one-shot mproc::map.
//  - A map is split into chunks. chunksize = 0 (default) adapts: the first chunks hold one item,
//    then chunks aim at ~4 ms of measured work each and shrink towards the end. An integer
//    std::views::iota range travels as bounds; results of trivially copyable type are written
//    by the workers into shared memory (a memfd reused across maps) and copied once into the
//    output. With MPROC_LOG=debug a map reports when dispatch cost more
//    than the work (a serial loop would have been faster).
//  - Every apply_async counts as one task, every map chunk as one (maxtasksperchild).
//
// Failure semantics (errors.hpp)
//  - A task's exception comes back as itself when its type is registered (std:: logic and
//    runtime errors, mproc's own, register_exception<E>()), else as RemoteError with the type
//    name, message, pid, task index (for maps: the input index) and a backtrace.
//  - A worker that dies fails only what it was running — for a map, only the item it was on —
//    with WorkerCrashed (signal or exit code, pid); it is replaced, the rest of its chunk and
//    anything queued on it run elsewhere. task_timeout kills and replaces the worker and fails
//    the task with TaskTimeout. max_retries re-runs crashed or timed-out work first.
//  - map() waits for every item, then throws the first error in input order; map_results()
//    returns them all. A result that cannot be encoded or decoded fails that item only.
//  - An initializer that throws breaks the pool: BrokenPool for everything unfinished and
//    every later call.
//  - Ctrl-C: workers ignore SIGINT, so the parent alone decides; when it dies, its workers die
//    with it (SIGKILL from the kernel), whatever the start method.
//
// Lifetime: close() refuses new work (PoolClosed), join() waits for the queued work and the
// workers' exit, terminate() kills the workers and fails everything unfinished with
// Cancelled. The destructor closes and joins, or terminates while an exception is unwinding.
//
// Thread safety: every member may be called from any thread; lazy results (imap, MapResults)
// are iterated by one thread at a time. Futures' callbacks run on the pool's engine thread:
// keep them short and never join the pool from one.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/engine.hpp"
#include "mproc/detail/future_task.hpp"
#include "mproc/detail/map_job.hpp"
#include "mproc/detail/one_shot_map.hpp"
#include "mproc/future.hpp"
#include "mproc/initializer.hpp"
#include "mproc/process.hpp"
#include "mproc/result.hpp"

namespace mproc {

struct PoolOptions {
  std::size_t processes = 0;           ///< 0 = cpu_count()
  Initializer initializer{};           ///< run once in every worker before its first task
  std::size_t maxtasksperchild = 0;    ///< replace a worker after this many tasks; 0 = never
  std::optional<StartMethod> start{};  ///< nullopt = get_start_method() at construction
  std::optional<std::chrono::nanoseconds> task_timeout{};  ///< per task (per map chunk)
  int max_retries = 0;                                     ///< re-runs of crashed / timed-out work
  std::size_t memory_limit = 0;  ///< address-space bytes per worker (RLIMIT_AS); 0 = none
};

struct MapOptions {
  std::size_t chunksize = 0;  ///< items per task; 0 = adaptive
  bool progress = false;      ///< progress bar on stderr (plain lines when not a terminal)
  /// Waiting for results longer than this (from the call) throws TimeoutError; the tasks
  /// themselves are not touched (that is task_timeout).
  std::optional<std::chrono::nanoseconds> timeout{};
};

class Pool {
  template <class F, class Rng>
  using map_result = detail::pool_map_result_t<false, F, Rng>;
  template <class F, class Rng>
  using starmap_result = detail::pool_map_result_t<true, F, Rng>;
  template <class R>
  using map_vector = std::conditional_t<std::is_void_v<R>, void, std::vector<R>>;

 public:
  /// A pool of `processes` workers (0 = cpu_count()), started now.
  explicit Pool(std::size_t processes = 0) : Pool(PoolOptions{.processes = processes}) {}
  explicit Pool(PoolOptions options);
  Pool(Pool&&) noexcept = default;
  Pool& operator=(Pool&&) = delete;
  /// close() + join(); terminate() instead while an exception is unwinding the stack.
  ~Pool();

  /// fn(x) for every x of `range`, in input order. Blocks until all are done, then throws the
  /// first error in input order (TimeoutError past options.timeout).
  template <class F, std::ranges::input_range Rng>
  auto map(F&& fn, Rng&& range, MapOptions options = {}) -> map_vector<map_result<F, Rng>> {
    return blocking_map<false>(std::forward<F>(fn), std::forward<Rng>(range), options);
  }

  /// Like map, but never throws a task's error: per input, its value or its error.
  template <class F, std::ranges::input_range Rng>
  auto map_results(F&& fn, Rng&& range, MapOptions options = {})
      -> std::vector<Result<map_result<F, Rng>>> {
    auto state = start<false>(std::forward<F>(fn), std::forward<Rng>(range), options,
                              detail::MapState<map_result<F, Rng>>::Order::none);
    state->wait_all();
    return state->results();
  }

  /// std::apply(fn, t) for every tuple t of `range`, in input order (Python's starmap).
  template <class F, std::ranges::input_range Rng>
  auto starmap(F&& fn, Rng&& range, MapOptions options = {}) -> map_vector<starmap_result<F, Rng>> {
    return blocking_map<true>(std::forward<F>(fn), std::forward<Rng>(range), options);
  }

  /// Lazy map: results in input order as they become ready (an input range; see MapResults).
  template <class F, std::ranges::input_range Rng>
  auto imap(F&& fn, Rng&& range, MapOptions options = {})
      -> detail::MapResults<map_result<F, Rng>> {
    using R = map_result<F, Rng>;
    auto state = start<false>(std::forward<F>(fn), std::forward<Rng>(range), options,
                              detail::MapState<R>::Order::ordered);
    return {std::move(state), detail::MapState<R>::Order::ordered};
  }

  /// Lazy map: results in completion order.
  template <class F, std::ranges::input_range Rng>
  auto imap_unordered(F&& fn, Rng&& range, MapOptions options = {})
      -> detail::MapResults<map_result<F, Rng>> {
    using R = map_result<F, Rng>;
    auto state = start<false>(std::forward<F>(fn), std::forward<Rng>(range), options,
                              detail::MapState<R>::Order::unordered);
    return {std::move(state), detail::MapState<R>::Order::unordered};
  }

  /// The whole map as one future: its value is the result vector, or the first error in
  /// input order.
  template <class F, std::ranges::input_range Rng>
  auto map_async(F&& fn, Rng&& range, MapOptions options = {})
      -> Future<map_vector<map_result<F, Rng>>> {
    using R = map_result<F, Rng>;
    using V = map_vector<R>;
    auto state = start<false>(std::forward<F>(fn), std::forward<Rng>(range), options,
                              detail::MapState<R>::Order::none);
    auto promise = std::make_shared<detail::Promise<V>>();
    Future<V> future = promise->future();
    promise->set_running();
    state->on_complete([state_ptr = state.get(), promise] {
      try {
        if constexpr (std::is_void_v<R>) {
          if (auto e = state_ptr->first_error()) std::rethrow_exception(e);
          promise->set_value();
        } else {
          promise->set_value(state_ptr->values());
        }
      } catch (...) {
        promise->set_exception(std::current_exception());
      }
    });
    return future;
  }

  /// fn(args...) in a worker; its future. PoolClosed after close()/terminate().
  template <class F, class... Args>
  auto apply_async(F&& fn, Args&&... args) -> Future<detail::task_result_t<F, Args...>> {
    return detail::submit_call(engine(), std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// apply_async(fn, args...).get(), by value.
  template <class F, class... Args>
  auto apply(F&& fn, Args&&... args) -> detail::task_result_t<F, Args...> {
    auto future = apply_async(std::forward<F>(fn), std::forward<Args>(args)...);
    if constexpr (std::is_void_v<detail::task_result_t<F, Args...>>) {
      future.get();
    } else {
      return future.get();
    }
  }

  /// No new work; queued work still runs.
  void close();
  /// Waits for the queued work and the workers' exit. UsageError unless closed or terminated.
  void join();
  /// Kills the workers now; unfinished work fails with Cancelled.
  void terminate() noexcept;
  /// The number of worker processes.
  std::size_t processes() const noexcept;

 private:
  detail::Engine& engine() const;

  template <bool Star, class F, class Rng>
  auto start(F&& fn, Rng&& range, const MapOptions& options,
             typename detail::MapState<detail::pool_map_result_t<Star, F, Rng>>::Order order) {
    return detail::start_map<Star>(engine(), std::forward<F>(fn), std::forward<Rng>(range),
                                   options.chunksize, options.progress, options.timeout, order);
  }

  /// map/starmap: waits for every item, then the values or the first error in input order.
  template <bool Star, class F, class Rng>
  auto blocking_map(F&& fn, Rng&& range, const MapOptions& options)
      -> map_vector<detail::pool_map_result_t<Star, F, Rng>> {
    using R = detail::pool_map_result_t<Star, F, Rng>;
    auto state = start<Star>(std::forward<F>(fn), std::forward<Rng>(range), options,
                             detail::MapState<R>::Order::none);
    if constexpr (std::is_void_v<R>) {
      state->wait_all();
      if (auto e = state->first_error()) std::rethrow_exception(e);
    } else {
      return state->collect_values();
    }
  }

  std::unique_ptr<detail::Engine> engine_;
  int uncaught_ = 0;
};

}  // namespace mproc
