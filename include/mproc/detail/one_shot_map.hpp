// one_shot_map.hpp — mproc::map, map_results, map_reduce: a parallel map whose workers are
// forked at the call (included by pool.hpp; public names live in namespace mproc).
//
//     auto blurred = mproc::map([&](const Image& im) { return blur(im, radius); }, images,
//                               {.processes = 4});
//     double total = mproc::map_reduce([](int x) { return std::sqrt(x); },
//                                      std::views::iota(0, 1'000'000), std::plus<>{});
//
// Concept (CERN ROOT's TProcessExecutor): the workers are fork children made *after* the
// function and its inputs exist, so they already hold both — capturing lambdas, references and
// inputs that cannot be serialised just work, and inputs are read through copy-on-write, never
// copied or encoded. Only results travel back; they must be mproc::transferable (codec.hpp).
// Python counterpart: `with Pool(n) as p: p.map(fn, inputs)` with fn and inputs inherited
// by fork — but nothing of the call is pickled.
//
// Guarantees (the Pool's failure semantics, DESIGN.md "Failure semantics")
//  - Results come back in input order. map throws the error of the first failed item in input
//    order, after every item has finished and every worker has been reaped; map_results keeps
//    each item's value or error; map_reduce throws like map.
//  - An item whose fn throws fails alone: a registered exception type (std::invalid_argument,
//    mproc::register_exception<E>()) comes back as itself, any other as RemoteError.
//  - A worker that dies (SIGSEGV, abort, exit, SIGKILL, OOM kill) fails exactly the item it was
//    running with WorkerCrashed(pid, signal, exit_code, item_index), or re-runs it on a fresh
//    worker while it has retries left (max_retries). Items it finished but had not reported yet,
//    and the rest of its chunk, run again on a replacement worker: nothing is lost, and each
//    item's result is kept exactly once. An item running longer than task_timeout has its
//    worker killed and fails with TaskTimeout (or is retried).
//  - Nothing outlives the call: workers end with it (success or exception), and they die with
//    the caller if it is killed. Workers ignore SIGINT, so Ctrl-C reaches the caller only.
//  - The calling thread coordinates (poll on the workers' pipes and pidfds): no extra thread.
//
// Scheduling: workers claim chunks from a shared cursor (guided: chunks shrink towards the end
// so stragglers do not dominate). Chunk sizes adapt to the measured cost of an item: cheap
// items are batched (at least ~100 µs of work per chunk), expensive ones are handed out in
// small chunks (at most ~50 ms of work, which also bounds the work a crash throws away).
// `chunksize` > 0 fixes the size instead. Results of trivially copyable type are written by the
// workers straight into a shared array (nothing is encoded); others travel as one message per
// chunk. With MPROC_LOG=debug, a map whose work is smaller than the cost of starting its
// workers says so.
//
// Caveats: fork copies the calling process, so its cost grows with the caller's resident
// memory, and the callable must not rely on threads of the caller (they do not exist in the
// child). fn returning void is refused at compile time (there is nothing to collect: return a
// value, or use mproc::Process).
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <ranges>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/remote_exception.hpp"
#include "mproc/detail/shared_segment.hpp"
#include "mproc/errors.hpp"
#include "mproc/result.hpp"

namespace mproc {

/// Options of mproc::map, map_results and map_reduce.
struct OneShotOptions {
  std::size_t processes = 0;  ///< 0 = cpu_count(); never more workers than items
  std::size_t chunksize = 0;  ///< 0 = adaptive (guided: chunks shrink towards the end)
  bool progress = false;      ///< a progress bar on stderr (detail::ProgressBar)
  int max_retries = 0;  ///< re-run an item whose worker crashed / timed out, on a fresh worker
  std::optional<std::chrono::nanoseconds>
      task_timeout{};  ///< per item: worker killed → TaskTimeout
};

namespace detail {

/// "No item": a worker slot's `current` between items.
inline constexpr std::uint64_t kOneShotNoItem = ~std::uint64_t{0};

/// What a worker is doing, in shared memory the parent reads while the worker runs (timeouts)
/// and after it died (which item to blame, which items to run again). One cache line each, so
/// workers announcing items do not slow each other down.
struct alignas(64) OneShotWorkerSlot {
  std::atomic<std::uint64_t> current{
      kOneShotNoItem};                        ///< item being run, kOneShotNoItem between items
  std::atomic<std::int64_t> started_ns{0};    ///< steady_clock time it started (timed maps)
  std::atomic<std::uint64_t> chunk_first{0};  ///< the chunk being run: [first, last)
  std::atomic<std::uint64_t> chunk_last{0};
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "mproc::map needs lock-free 64-bit atomics in shared memory");

/// A worker announces each item before running it (inline: it runs once per item).
class OneShotItemTracker {
 public:
  OneShotItemTracker(OneShotWorkerSlot& slot, bool timed) noexcept : slot_(&slot), timed_(timed) {}
  void begin(std::size_t index) noexcept {
    // started_ns before current: a parent that reads current, started_ns, current and sees the
    // same item twice may read a newer start time (harmless: a later deadline), never an older.
    if (timed_) {
      slot_->started_ns.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                              std::memory_order_relaxed);
    }
    slot_->current.store(index, std::memory_order_release);
  }

 private:
  OneShotWorkerSlot* slot_;
  bool timed_;
};

/// The typed half of a one-shot map, behind the non-template coordinator (one_shot_map.cpp).
/// run_chunk runs in a worker; the others run in the parent.
class OneShotKernel {
 public:
  virtual ~OneShotKernel() = default;
  /// Worker: runs items [first, last) in order, calling tracker.begin(i) before item i, and
  /// appends the chunk's report to `out`.
  virtual void run_chunk(std::size_t first, std::size_t last, OneShotItemTracker& tracker,
                         Encoder& out) = 0;
  /// Parent: reads a report written by run_chunk for [first, last) by worker `pid`, recording a
  /// value or an error for every item of the range. Never throws for a bad item: it records the
  /// error for that item (and the rest of the chunk when the framing is lost).
  virtual void accept_chunk(std::size_t first, std::size_t last, Decoder& in,
                            std::int64_t pid) noexcept = 0;
  /// Parent: item `index` failed outside fn (WorkerCrashed, TaskTimeout).
  virtual void fail_item(std::size_t index, std::exception_ptr error) noexcept = 0;
};

/// Runs `count` items of `kernel` on forked workers until every item has a value or an error.
/// Throws only when the map cannot go on (the workers cannot be started, or keep dying before
/// running anything): BrokenPool or SystemError, with every worker killed and reaped.
void run_one_shot(OneShotKernel& kernel, std::size_t count, const OneShotOptions& options,
                  std::string_view what);

/// Writes item `index`'s error into a chunk report (u64 index + encode_exception).
void one_shot_write_error(Encoder& out, std::size_t index, const std::exception_ptr& error);
/// Reads an error written by one_shot_write_error; ProtocolError if the index is outside
/// [first, last) or the bytes are malformed.
std::pair<std::size_t, std::exception_ptr> one_shot_read_error(Decoder& in, std::size_t first,
                                                               std::size_t last, std::int64_t pid);
/// The first error (in input order) among `errors`, rethrown. No-op when empty.
void rethrow_first_error(const std::map<std::size_t, std::exception_ptr>& errors);

/// How the workers reach the inputs: a sized random-access range in place (an lvalue is
/// referenced, an rvalue moved in), any other range copied into a vector first.
template <class R>
class OneShotInputs {
  using Stored = std::conditional_t<std::is_lvalue_reference_v<R>, R, std::remove_cvref_t<R>>;
  static constexpr bool in_place = std::ranges::random_access_range<std::remove_cvref_t<R>> &&
                                   std::ranges::sized_range<std::remove_cvref_t<R>>;

 public:
  explicit OneShotInputs(R&& range) : range_(std::forward<R>(range)) {
    if constexpr (!in_place) {
      for (auto&& x : range_) items_.emplace_back(std::forward<decltype(x)>(x));
    }
  }
  std::size_t size() {
    if constexpr (in_place) {
      return static_cast<std::size_t>(std::ranges::size(range_));
    } else {
      return items_.size();
    }
  }
  decltype(auto) operator[](std::size_t i) {
    if constexpr (in_place) {
      return std::ranges::begin(
          range_)[static_cast<std::ranges::range_difference_t<std::remove_cvref_t<R>>>(i)];
    } else {
      return (items_[i]);
    }
  }

 private:
  struct NoCopy {};
  using Copy = std::conditional_t<in_place, NoCopy,
                                  std::vector<std::ranges::range_value_t<std::remove_cvref_t<R>>>>;
  Stored range_;
  [[no_unique_address]] Copy items_;
};

template <class F, class R>
using one_shot_result_t = std::decay_t<std::invoke_result_t<F&, std::ranges::range_reference_t<R>>>;

template <class Res>
void check_one_shot_result() {
  static_assert(!std::is_void_v<Res>,
                "mproc::map: fn returns void, so there is nothing to collect. Return a value "
                "(e.g. bool), or start mproc::Process objects for side effects.");
  if constexpr (!std::is_void_v<Res>) {
    static_assert(transferable<Res>,
                  "mproc::map: fn's result must travel back to this process, so it must be "
                  "mproc::transferable: a trivially copyable type, a std container/string of "
                  "such, or a type with a serialize(Archive&) member (see mproc/codec.hpp). "
                  "Convert the result to such a type inside fn.");
  }
}

/// Runs fn(inputs[i]) for a chunk and stores results per item: map and map_results.
/// Results of trivially copyable type go straight into a shared array; the report then holds
/// only the errors (count:u64, then each error). Other results travel in the report:
/// per item, tag:u8 (0 value, 1 error) then the value or the exception.
template <class F, class Inputs, class Res>
class OneShotItemsKernel final : public OneShotKernel {
  static constexpr bool kShared = std::is_trivially_copyable_v<Res>;

 public:
  OneShotItemsKernel(F& fn, Inputs& inputs, std::size_t count)
      : fn_(fn), inputs_(inputs), count_(count) {
    if constexpr (kShared) {
      if (count > 0) {
        if (count > static_cast<std::size_t>(-1) / sizeof(Res)) {
          throw UsageError("mproc::map: too many items for the result array");
        }
        results_segment_ = SharedSegment::create(count * sizeof(Res), "mproc-map-results");
        shared_ = static_cast<Res*>(results_segment_.data());
      }
    } else {
      values_.resize(count);
    }
  }

  void run_chunk(std::size_t first, std::size_t last, OneShotItemTracker& tracker,
                 Encoder& out) override {
    if constexpr (kShared) {
      // The error count is patched in at the end, so the value path writes nothing.
      const std::size_t count_at = out.bytes().size();
      std::uint64_t errors = 0;
      encode(out, errors);
      for (std::size_t i = first; i < last; ++i) {
        tracker.begin(i);
        try {
          TaskScope scope;
          ::new (static_cast<void*>(shared_ + i)) Res(std::invoke(fn_, inputs_[i]));
        } catch (...) {
          one_shot_write_error(out, i, std::current_exception());
          ++errors;
        }
      }
      std::memcpy(out.bytes().data() + count_at, &errors, sizeof errors);
    } else {
      for (std::size_t i = first; i < last; ++i) {
        tracker.begin(i);
        const auto mark = out.mark();
        try {
          TaskScope scope;
          Res value = std::invoke(fn_, inputs_[i]);
          const std::uint8_t ok = 0;
          encode(out, ok);
          encode(out, value);  // may throw SerializationError: that item fails alone
        } catch (...) {
          out.rewind(mark);
          const std::uint8_t failed = 1;
          encode(out, failed);
          encode_exception(out, std::current_exception());
        }
      }
    }
  }

  void accept_chunk(std::size_t first, std::size_t last, Decoder& in,
                    std::int64_t pid) noexcept override {
    std::size_t next = first;  // items before `next` have their outcome recorded
    try {
      if constexpr (kShared) {
        const auto errors = decode<std::uint64_t>(in);
        if (errors > last - first) throw ProtocolError("mproc::map: bad error count in a report");
        for (std::uint64_t e = 0; e < errors; ++e) {
          auto [index, error] = one_shot_read_error(in, first, last, pid);
          errors_[index] = std::move(error);
        }
        next = last;
      } else {
        for (; next < last; ++next) {
          const auto tag = decode<std::uint8_t>(in);
          if (tag == 0) {
            values_[next].emplace(decode<Res>(in));
          } else if (tag == 1) {
            errors_[next] = decode_exception(in, pid, static_cast<std::int64_t>(next));
          } else {
            throw ProtocolError("mproc::map: bad item tag in a report");
          }
        }
      }
      in.expect_end();
    } catch (...) {
      // The framing is lost from `next` on: those items fail with the decoding error.
      for (; next < last; ++next) errors_[next] = std::current_exception();
    }
  }

  void fail_item(std::size_t index, std::exception_ptr error) noexcept override {
    try {
      errors_[index] = std::move(error);
    } catch (...) {
      std::terminate();  // a map node allocation failed while recording a failure
    }
  }

  std::vector<Res> values() {
    rethrow_first_error(errors_);
    std::vector<Res> out;
    if constexpr (kShared) {
      out.assign(shared_, shared_ + size());
    } else {
      out.reserve(values_.size());
      for (auto& v : values_) {
        if (!v) throw ProtocolError("mproc::map: an item has no result (internal error)");
        out.push_back(std::move(*v));
      }
    }
    return out;
  }

  std::vector<Result<Res>> results() {
    std::vector<Result<Res>> out;
    const std::size_t n = size();
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (auto e = errors_.find(i); e != errors_.end()) {
        out.push_back(Result<Res>::failure(e->second));
      } else if constexpr (kShared) {
        out.emplace_back(shared_[i]);
      } else if (values_[i]) {
        out.emplace_back(std::move(*values_[i]));
      } else {
        out.push_back(Result<Res>::failure(std::make_exception_ptr(
            ProtocolError("mproc::map_results: an item has no result (internal error)"))));
      }
    }
    return out;
  }

 private:
  std::size_t size() const noexcept { return count_; }

  F& fn_;
  Inputs& inputs_;
  std::size_t count_;
  SharedSegment results_segment_;
  Res* shared_ = nullptr;
  std::vector<std::optional<Res>> values_;
  std::map<std::size_t, std::exception_ptr> errors_;
};

/// Folds fn(inputs[i]) over a chunk in the worker; the parent folds the chunk partials in input
/// order. Report: has_partial:u8 [partial], error count:u64, errors.
template <class F, class Inputs, class Res, class Reduce>
class OneShotReduceKernel final : public OneShotKernel {
 public:
  OneShotReduceKernel(F& fn, Inputs& inputs, Reduce& reduce)
      : fn_(fn), inputs_(inputs), reduce_(reduce) {}

  void run_chunk(std::size_t first, std::size_t last, OneShotItemTracker& tracker,
                 Encoder& out) override {
    std::optional<Res> partial;
    Encoder errors;
    std::uint64_t error_count = 0;
    for (std::size_t i = first; i < last; ++i) {
      tracker.begin(i);
      try {
        TaskScope scope;
        if (partial) {
          partial.emplace(std::invoke(reduce_, std::move(*partial), std::invoke(fn_, inputs_[i])));
        } else {
          partial.emplace(std::invoke(fn_, inputs_[i]));
        }
      } catch (...) {
        // The map will throw this chunk's first error (or an earlier one): the rest of the
        // chunk need not run, and the partial is unusable.
        one_shot_write_error(errors, i, std::current_exception());
        ++error_count;
        partial.reset();
        break;
      }
    }
    const std::uint8_t has = (partial && error_count == 0) ? 1 : 0;
    const auto mark = out.mark();
    try {
      encode(out, has);
      if (has) encode(out, *partial);
    } catch (...) {
      // The partial cannot travel: report it as the error of the chunk's first item.
      out.rewind(mark);
      encode(out, std::uint8_t{0});
      Encoder e;
      one_shot_write_error(e, first, std::current_exception());
      errors.write_bytes(e.bytes());
      ++error_count;
    }
    encode(out, error_count);
    out.write_bytes(errors.bytes());
  }

  void accept_chunk(std::size_t first, std::size_t last, Decoder& in,
                    std::int64_t pid) noexcept override {
    try {
      const auto has = decode<std::uint8_t>(in);
      if (has > 1) throw ProtocolError("mproc::map_reduce: bad partial tag in a report");
      if (has == 1) partials_.emplace(first, decode<Res>(in));
      const auto count = decode<std::uint64_t>(in);
      if (count > last - first + 1) throw ProtocolError("mproc::map_reduce: bad error count");
      for (std::uint64_t e = 0; e < count; ++e) {
        auto [index, error] = one_shot_read_error(in, first, last, pid);
        errors_.emplace(index, std::move(error));
      }
      in.expect_end();
    } catch (...) {
      errors_.emplace(first, std::current_exception());
    }
  }

  void fail_item(std::size_t index, std::exception_ptr error) noexcept override {
    try {
      errors_[index] = std::move(error);
    } catch (...) {
      std::terminate();
    }
  }

  Res result() {
    rethrow_first_error(errors_);
    if (partials_.empty()) {
      if constexpr (std::is_default_constructible_v<Res>) {
        return Res{};
      } else {
        throw UsageError("mproc::map_reduce: empty input and a result type without a default");
      }
    }
    auto it = partials_.begin();
    Res total = std::move(it->second);
    for (++it; it != partials_.end(); ++it) {
      total = std::invoke(reduce_, std::move(total), std::move(it->second));
    }
    return total;
  }

 private:
  F& fn_;
  Inputs& inputs_;
  Reduce& reduce_;
  std::map<std::size_t, Res> partials_;  // chunk first item -> partial, folded in this order
  std::map<std::size_t, std::exception_ptr> errors_;
};

}  // namespace detail

/// fn(element) for every element of `inputs` (any input range; a sized random-access range is
/// used in place, others are copied into a vector first), computed by forked workers; results
/// in input order. Throws the first error in input order, after every item is done and every
/// worker reaped (RemoteError or the registered exception type, WorkerCrashed, TaskTimeout).
/// UsageError on bad options; SystemError / BrokenPool when workers cannot run at all.
template <class F, class R>
requires std::ranges::input_range<R> && std::invocable<F&, std::ranges::range_reference_t<R>>
auto map(F&& fn, R&& inputs, OneShotOptions options = {})
    -> std::vector<detail::one_shot_result_t<F, R>> {
  using Res = detail::one_shot_result_t<F, R>;
  detail::check_one_shot_result<Res>();
  detail::OneShotInputs<R> in(std::forward<R>(inputs));
  const std::size_t count = in.size();
  detail::OneShotItemsKernel<std::remove_reference_t<F>, detail::OneShotInputs<R>, Res> kernel(
      fn, in, count);
  detail::run_one_shot(kernel, count, options, "mproc::map");
  return kernel.values();
}

/// Like map, but per input the value or the error (mproc::Result): nothing is lost and nothing
/// is thrown for a failed item.
template <class F, class R>
requires std::ranges::input_range<R> && std::invocable<F&, std::ranges::range_reference_t<R>>
auto map_results(F&& fn, R&& inputs, OneShotOptions options = {})
    -> std::vector<Result<detail::one_shot_result_t<F, R>>> {
  using Res = detail::one_shot_result_t<F, R>;
  detail::check_one_shot_result<Res>();
  detail::OneShotInputs<R> in(std::forward<R>(inputs));
  const std::size_t count = in.size();
  detail::OneShotItemsKernel<std::remove_reference_t<F>, detail::OneShotInputs<R>, Res> kernel(
      fn, in, count);
  detail::run_one_shot(kernel, count, options, "mproc::map_results");
  return kernel.results();
}

/// reduce(...reduce(reduce(fn(x0), fn(x1)), fn(x2))...): each worker folds its chunks, the
/// parent folds the chunk partials in input order (the same result for any associative
/// reduce, whatever the chunking). Empty input → Res{}. Throws like map.
template <class F, class R, class Reduce>
requires std::ranges::input_range<R> && std::invocable<F&, std::ranges::range_reference_t<R>>
auto map_reduce(F&& fn, R&& inputs, Reduce&& reduce, OneShotOptions options = {})
    -> detail::one_shot_result_t<F, R> {
  using Res = detail::one_shot_result_t<F, R>;
  detail::check_one_shot_result<Res>();
  static_assert(std::is_invocable_v<Reduce&, Res, Res> &&
                    std::is_convertible_v<std::invoke_result_t<Reduce&, Res, Res>, Res>,
                "mproc::map_reduce: reduce(a, b) must accept two results of fn and return "
                "something convertible to that result type");
  detail::OneShotInputs<R> in(std::forward<R>(inputs));
  const std::size_t count = in.size();
  detail::OneShotReduceKernel<std::remove_reference_t<F>, detail::OneShotInputs<R>, Res,
                              std::remove_reference_t<Reduce>>
      kernel(fn, in, reduce);
  detail::run_one_shot(kernel, count, options, "mproc::map_reduce");
  return kernel.result();
}

}  // namespace mproc
