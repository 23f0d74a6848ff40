// map_job.hpp — a map over many items as an engine Job: chunks sized from measured item
// cost, outcomes written straight into the result storage (internal; used by Pool and
// ProcessPoolExecutor).
//
// Inputs travel by chunk. An integer std::views::iota range travels as bounds (first, count):
// nothing is materialised. Any other random-access sized range travels as the chunk's elements,
// encoded from the range in place (the wire form of std::vector<T>); other ranges are copied
// into a vector first.
//
// A chunk's outcome, written by run_chunk in the worker straight into its result encoder:
//   shared path (R trivially copyable, default-constructible, not bool, not void): the
//       values go into the map's output segment (OutputRef, a memfd the pool reuses for the
//       next map); the frame carries  count u64 | errors u64 | errors x (k u64, exception)
//   void:  count u64 | errors u64 | errors x (k u64, exception)
//   otherwise:
//       count u64 | count x (u8 0, value | u8 1, exception)
// Shared-path values stay in the segment until read (values() copies them out once). A worker
// that dies mid-chunk wrote some slots of its chunk but reported none: the engine re-runs the
// chunk's other items and fails or retries the one it was on, so every slot the parent reads
// was written by a chunk whose result arrived (the RESULT frame follows the writes).
//
// Chunk sizing (MapOptions::chunksize = 0): the first chunks hold one item each; once a chunk
// reports its cost, chunks aim at target_chunk_time of work, and never more than
// remaining / (2 * workers) items (guided scheduling: smaller chunks towards the end so a
// straggler does not dominate).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/callable.hpp"
#include "mproc/detail/engine.hpp"
#include "mproc/detail/progress.hpp"
#include "mproc/detail/remote_exception.hpp"
#include "mproc/future.hpp"
#include "mproc/log.hpp"
#include "mproc/result.hpp"

namespace mproc::detail {

// ---- what travels -----------------------------------------------------------------------

/// Items first, first + 1, ..., first + count - 1 of an integer iota range.
template <class I>
struct IotaSlice {
  I first;
  std::uint64_t count;
};

template <class R>
inline constexpr bool is_iota_view_v = false;
template <class W, class B>
inline constexpr bool is_iota_view_v<std::ranges::iota_view<W, B>> = std::is_integral_v<W>;

/// How a map calls fn on an item: fn(item), or std::apply(fn, item) for starmap.
template <bool Star, class F, class T>
decltype(auto) call_item(F& fn, T&& item) {
  if constexpr (Star) {
    return std::apply(fn, std::forward<T>(item));
  } else {
    return std::invoke(fn, std::forward<T>(item));
  }
}

template <bool Star, class F, class T>
using item_result_t =
    std::decay_t<decltype(call_item<Star>(std::declval<F&>(), std::declval<T>()))>;

/// Results that go straight from the worker's buffer into the output by memcpy.
template <class R>
inline constexpr bool fast_result_v = std::is_void_v<R> ||
                                      (std::is_trivially_copyable_v<R> &&
                                       std::is_default_constructible_v<R> &&
                                       !std::is_same_v<R, bool> && !std::is_pointer_v<R>);

/// Results a worker writes straight into the map's output segment.
template <class R>
inline constexpr bool shared_result_v = fast_result_v<R> && !std::is_void_v<R>;

/// Runs in the worker: fn over every item of the slice, outcome into the result encoder and,
/// when `dest` is given, the values into the output segment.
template <bool Star, class F, class Slice>
void run_chunk_impl(CallableBox<F>& box, Slice& slice, const OutputRef* dest) {
  Encoder* out_ptr = worker::result_encoder();
  if (out_ptr == nullptr) throw UsageError("run_chunk outside a pool worker");
  Encoder& out = *out_ptr;
  F& fn = box.fn;
  constexpr bool iota = requires {
    slice.first;
  };
  const std::uint64_t n = [&] {
    if constexpr (iota) {
      return slice.count;
    } else {
      return static_cast<std::uint64_t>(slice.size());
    }
  }();
  const auto item = [&](std::uint64_t k) -> decltype(auto) {
    if constexpr (iota) {
      using I = decltype(slice.first);
      return static_cast<I>(slice.first + static_cast<I>(k));
    } else {
      return std::move(slice[k]);
    }
  };
  using ItemT = decltype(item(0));
  using R = item_result_t<Star, F, ItemT>;
  out.write_bytes(&n, sizeof n);
  if constexpr (fast_result_v<R>) {
    std::byte* values = nullptr;
    if constexpr (!std::is_void_v<R>) {
      if (dest == nullptr) throw UsageError("run_chunk: no output segment for the results");
      const std::size_t size = dest->segment.size();
      if (dest->offset > size || n > (size - dest->offset) / sizeof(R)) {
        throw ProtocolError("map chunk: output range outside the output segment");
      }
      values = static_cast<std::byte*>(dest->segment.data()) + dest->offset;
    }
    // The error count is patched in at the end: the value path writes nothing to the encoder.
    const std::size_t count_at = out.bytes().size();
    std::uint64_t error_count = 0;
    out.write_bytes(&error_count, sizeof error_count);
    // The per-item cost is the map's overhead: the item store is inline, and no TaskScope per
    // item (the worker's task already runs in one; a nested scope would only count depth).
    std::atomic<std::uint64_t>* const item_slot = worker::item_slot();
    for (std::uint64_t k = 0; k < n; ++k) {
      if (item_slot != nullptr) item_slot->store(k, std::memory_order_release);
      try {
        if constexpr (std::is_void_v<R>) {
          call_item<Star>(fn, item(k));
        } else {
          const R value = call_item<Star>(fn, item(k));
          std::memcpy(values + k * sizeof(R), &value, sizeof(R));
        }
      } catch (...) {
        out.write_bytes(&k, sizeof k);
        encode_exception(out, std::current_exception());
        ++error_count;
      }
    }
    std::memcpy(out.bytes().data() + count_at, &error_count, sizeof error_count);
  } else {
    for (std::uint64_t k = 0; k < n; ++k) {
      worker::set_item(k);
      const Encoder::Mark mark = out.mark();
      try {
        TaskScope scope;
        decltype(auto) value = call_item<Star>(fn, item(k));
        const std::uint8_t ok = 0;
        out.write_bytes(&ok, 1);
        const R& ref = value;
        mproc::encode(out, ref);
        if (out.fds().size() > mark.fds) retain_attached_fds(out, mark);
      } catch (...) {
        out.rewind(mark);
        const std::uint8_t failed = 1;
        out.write_bytes(&failed, 1);
        encode_exception(out, std::current_exception());
      }
    }
  }
}

template <bool Star, class F, class Slice>
void run_chunk(CallableBox<F> box, Slice slice) {
  run_chunk_impl<Star>(box, slice, nullptr);
}

template <bool Star, class F, class Slice>
void run_chunk_into(CallableBox<F> box, Slice slice, OutputRef dest) {
  run_chunk_impl<Star>(box, slice, &dest);
}

// ---- the parent's side ------------------------------------------------------------------

/// Where a map's outcomes land, shared by the job, its chunks and the caller's iterator.
template <class R>
class MapState {
 public:
  using Stored = std::conditional_t<std::is_void_v<R>, Unit, R>;
  static constexpr bool fast = fast_result_v<R>;

  enum class Order { none, ordered, unordered };

  static constexpr bool shared = shared_result_v<R>;

  /// `outputs`: where a shared-path map takes its output segment from (and returns it to).
  MapState(std::size_t n, Order order, bool progress,
           std::optional<std::chrono::steady_clock::time_point> deadline,
           std::shared_ptr<OutputSegments> outputs = nullptr)
      : n_(n), order_(order), deadline_(deadline), progress_(n, progress, "mproc map") {
    if constexpr (shared) {
      if (n > 0) {
        if (!outputs) {
          throw UsageError("MapState: a map of trivially copyable results needs an output pool");
        }
        if (n > static_cast<std::size_t>(-1) / sizeof(R)) {
          throw UsageError("map: too many items for the result array");
        }
        output_ = outputs->take(n * sizeof(R));
        outputs_ = std::move(outputs);
        shared_values_ = static_cast<const Stored*>(output_.data());
      }
    } else if constexpr (!fast) {
      values_.resize(n);
    }
    if (order_ == Order::ordered) finished_.assign(n, 0);
    started_ = std::chrono::steady_clock::now();
    if (n_ == 0) progress_.finish();
  }

  /// The segment goes back to the pool for the next map: nothing writes into it any more
  /// (every chunk completed or failed before the last reference to this state went away,
  /// and a chunk re-run after a crash runs only while its map is alive).
  ~MapState() {
    if (outputs_) outputs_->give(std::move(output_));
  }
  MapState(const MapState&) = delete;
  MapState& operator=(const MapState&) = delete;

  std::size_t size() const noexcept { return n_; }

  /// Where a chunk starting at item `begin` writes its values (shared path).
  OutputRef output_at(std::size_t begin) const {
    return OutputRef{output_, static_cast<std::uint64_t>(begin) * sizeof(Stored)};
  }

  // -- producers (engine thread) --

  /// Decodes a chunk's outcome for items [begin, begin + count).
  void deliver(Decoder& in, std::size_t begin, std::size_t count, std::int64_t pid,
               std::chrono::nanoseconds elapsed) {
    std::uint64_t n = 0;
    in.read_bytes(&n, sizeof n);
    if (n != count) throw ProtocolError("map chunk: item count mismatch");
    std::vector<std::pair<std::size_t, std::exception_ptr>> errors;
    if constexpr (fast) {
      // Shared path: the values are in the output segment already.
      std::uint64_t error_count = 0;
      in.read_bytes(&error_count, sizeof error_count);
      if (error_count > count) throw ProtocolError("map chunk: too many errors");
      for (std::uint64_t e = 0; e < error_count; ++e) {
        std::uint64_t k = 0;
        in.read_bytes(&k, sizeof k);
        if (k >= count) throw ProtocolError("map chunk: error index out of range");
        errors.emplace_back(begin + k,
                            decode_exception(in, pid, static_cast<std::int64_t>(begin + k)));
      }
    } else {
      for (std::size_t k = 0; k < count; ++k) {
        std::uint8_t tag = 0;
        in.read_bytes(&tag, 1);
        if (tag == 0) {
          values_[begin + k].emplace(mproc::decode<R>(in));
        } else if (tag == 1) {
          errors.emplace_back(begin + k,
                              decode_exception(in, pid, static_cast<std::int64_t>(begin + k)));
        } else {
          throw ProtocolError("map chunk: bad item tag");
        }
      }
    }
    in.expect_end();
    complete(begin, count, std::move(errors), elapsed);
  }

  /// Items [begin, begin + count) failed as a whole with `error`.
  void fail_range(std::size_t begin, std::size_t count, const std::exception_ptr& error) noexcept {
    try {
      std::vector<std::pair<std::size_t, std::exception_ptr>> errors;
      errors.reserve(count);
      for (std::size_t k = 0; k < count; ++k) errors.emplace_back(begin + k, error);
      complete(begin, count, std::move(errors), std::chrono::nanoseconds(0));
    } catch (...) {
      // Out of memory recording errors: nothing sensible is left to do but terminate waiting
      // consumers would hang, so record a single failure for the whole map.
      std::lock_guard lock(mutex_);
      fatal_ = error;
      cv_.notify_all();
    }
  }

  /// Measured nanoseconds per item (0 until a chunk reported).
  double item_cost() const noexcept { return item_ns_.load(std::memory_order_relaxed); }

  // -- consumers --

  /// Blocks until every item is done (TimeoutError past the deadline).
  void wait_all() {
    std::unique_lock lock(mutex_);
    wait_locked(lock, [&] { return done_ == n_; });
  }

  /// wait_all() + values(), but on the shared path the values are copied out while the map
  /// runs: each time the items done form a longer prefix, that part is appended (one copy,
  /// overlapping the workers' work, and no zero-filling of the output first).
  std::vector<Stored> collect_values() {
    if constexpr (!shared) {
      wait_all();
      return values();
    } else {
      std::vector<Stored> out;
      out.reserve(n_);
      std::unique_lock lock(mutex_);
      const auto prefix_end = [&] {
        std::size_t end = out.size();
        for (auto it = done_ranges_.find(end); it != done_ranges_.end();
             it = done_ranges_.find(end)) {
          end = it->second;
          done_ranges_.erase(it);
        }
        return end;
      };
      std::size_t end = prefix_end();
      while (out.size() < n_) {
        if (end == out.size()) {
          wait_locked(lock, [&] { return done_ranges_.count(out.size()) != 0; });
          end = prefix_end();
          continue;
        }
        lock.unlock();
        out.insert(out.end(), shared_values_ + out.size(), shared_values_ + end);
        lock.lock();
        end = prefix_end();
      }
      lock.unlock();
      if (auto e = first_error()) std::rethrow_exception(e);
      return out;
    }
  }

  /// Blocks until item i is done (ordered iteration).
  void wait_item(std::size_t i) {
    std::unique_lock lock(mutex_);
    wait_locked(lock, [&] { return finished_[i] != 0; });
  }

  /// Blocks until some item not yet taken is done; returns its index (unordered iteration).
  std::size_t next_unordered() {
    std::unique_lock lock(mutex_);
    wait_locked(lock, [&] { return !ready_.empty(); });
    const std::size_t i = ready_.front();
    ready_.pop_front();
    return i;
  }
  /// The value of done item i, moved out (or its error, thrown).
  Stored take_unlocked_index(std::size_t i) {
    std::lock_guard lock(mutex_);
    return take_locked(i);
  }

  /// After wait_all(): the first error in input order, or null.
  std::exception_ptr first_error() const {
    std::lock_guard lock(mutex_);
    if (fatal_) return fatal_;
    return errors_.empty() ? nullptr : errors_.begin()->second;
  }

  /// After wait_all(): every value (throws the first error in input order).
  std::vector<Stored> values() {
    if (auto e = first_error()) std::rethrow_exception(e);
    if constexpr (fast) {
      if constexpr (std::is_void_v<R>) {
        return std::vector<Stored>(n_);
      } else {
        // The one copy out of the segment (it is reused by the next map).
        return std::vector<Stored>(shared_values_, shared_values_ + n_);
      }
    } else {
      std::vector<Stored> out;
      out.reserve(n_);
      for (auto& v : values_) out.push_back(std::move(*v));
      return out;
    }
  }

  /// After wait_all(): per item, the value or the error.
  std::vector<Result<R>> results() {
    std::vector<Result<R>> out;
    out.reserve(n_);
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < n_; ++i) {
      if (auto it = errors_.find(i); it != errors_.end()) {
        out.push_back(Result<R>::failure(it->second));
      } else if (fatal_) {
        out.push_back(Result<R>::failure(fatal_));
      } else if constexpr (std::is_void_v<R>) {
        out.push_back(Result<void>());
      } else if constexpr (fast) {
        out.push_back(Result<R>(shared_values_[i]));
      } else {
        out.push_back(Result<R>(std::move(*values_[i])));
      }
    }
    return out;
  }

  /// Called once when every item is done (map_async completes its future here).
  void on_complete(std::function<void()> callback) {
    bool now = false;
    {
      std::lock_guard lock(mutex_);
      if (done_ == n_) {
        now = true;
      } else {
        on_complete_ = std::move(callback);
      }
    }
    if (now) callback();
  }

 private:
  template <class Pred>
  void wait_locked(std::unique_lock<std::mutex>& lock, Pred pred) {
    const auto ready = [&] { return fatal_ != nullptr || pred(); };
    if (!deadline_) {
      cv_.wait(lock, ready);
    } else if (!cv_.wait_until(lock, *deadline_, ready)) {
      throw TimeoutError("map: results not ready within the timeout (" + std::to_string(done_) +
                         " of " + std::to_string(n_) + " items done)");
    }
    if (fatal_ && !pred()) std::rethrow_exception(fatal_);
  }

  Stored take_locked(std::size_t i) {
    if (auto it = errors_.find(i); it != errors_.end()) std::rethrow_exception(it->second);
    if constexpr (std::is_void_v<R>) {
      return Unit{};
    } else if constexpr (fast) {
      return shared_values_[i];
    } else {
      return std::move(*values_[i]);
    }
  }

  void complete(std::size_t begin, std::size_t count,
                std::vector<std::pair<std::size_t, std::exception_ptr>> errors,
                std::chrono::nanoseconds elapsed) {
    std::function<void()> callback;
    {
      std::lock_guard lock(mutex_);
      for (auto& [i, e] : errors) errors_.emplace(i, std::move(e));
      if constexpr (shared) {
        if (count != 0) done_ranges_.emplace(begin, begin + count);
      }
      if (order_ == Order::ordered) {
        std::fill_n(finished_.begin() + static_cast<std::ptrdiff_t>(begin), count, 1);
      } else if (order_ == Order::unordered) {
        for (std::size_t k = 0; k < count; ++k) ready_.push_back(begin + k);
      }
      done_ += count;
      work_ += elapsed;
      if (elapsed.count() > 0 && count > 0) {
        const double per_item = static_cast<double>(elapsed.count()) / static_cast<double>(count);
        const double old = item_ns_.load(std::memory_order_relaxed);
        item_ns_.store(old == 0 ? per_item : 0.7 * old + 0.3 * per_item, std::memory_order_relaxed);
      }
      progress_.advance(count);
      if (done_ == n_) {
        callback = std::move(on_complete_);
        report_locked();
      }
    }
    cv_.notify_all();
    if (callback) callback();
  }

  void report_locked() {
    progress_.finish();
    if (log_level() > LogLevel::debug) return;
    using namespace std::chrono;
    const auto wall = duration_cast<microseconds>(steady_clock::now() - started_);
    const auto work = duration_cast<microseconds>(work_);
    std::string line = "map of " + std::to_string(n_) + " items: " + std::to_string(wall.count()) +
                       " us wall, " + std::to_string(work.count()) + " us of work in the workers";
    if (work < wall) {
      line +=
          " — dispatch and transfer cost more than the work itself: parallelism did not pay here "
          "(a serial loop would be faster; use bigger items or fewer, larger calls)";
    }
    log(LogLevel::debug, line);
  }

  const std::size_t n_;
  const Order order_;
  const std::optional<std::chrono::steady_clock::time_point> deadline_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::optional<Stored>> values_;  // not the fast path
  SharedSegment output_;                       // shared path: the values, written by workers
  std::shared_ptr<OutputSegments> outputs_;    // where output_ came from and goes back to
  const Stored* shared_values_ = nullptr;
  std::map<std::size_t, std::size_t> done_ranges_;  // shared path: begin -> end, not collected
  std::map<std::size_t, std::exception_ptr> errors_;
  std::vector<std::uint8_t> finished_;
  std::deque<std::size_t> ready_;
  std::size_t done_ = 0;
  std::exception_ptr fatal_;
  std::function<void()> on_complete_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::nanoseconds work_{0};
  std::atomic<double> item_ns_{0};
  ProgressBar progress_;
};

/// Work a map chunk does for the chunk's items; knows how to make chunks (also after a split).
template <class R>
class ChunkMaker {
 public:
  virtual ~ChunkMaker() = default;
  virtual EncodedCall make_call(std::size_t begin, std::size_t count) = 0;
  virtual MapState<R>& state() noexcept = 0;
};

template <class R>
class ChunkTask final : public Task {
 public:
  ChunkTask(std::shared_ptr<ChunkMaker<R>> maker, std::size_t begin, std::size_t count)
      : maker_(std::move(maker)), begin_(begin), count_(count) {
    call = maker_->make_call(begin, count);
  }
  bool start() override { return true; }
  void succeed(Decoder& in, std::int64_t pid, std::chrono::nanoseconds elapsed) override {
    try {
      maker_->state().deliver(in, begin_, count_, pid, elapsed);
    } catch (...) {
      maker_->state().fail_range(begin_, count_, std::current_exception());
    }
  }
  void fail(const std::exception_ptr& error) noexcept override {
    maker_->state().fail_range(begin_, count_, error);
  }
  std::size_t items() const noexcept override { return count_; }
  std::int64_t index_of(std::size_t k) const noexcept override {
    return static_cast<std::int64_t>(begin_ + k);
  }
  std::array<std::unique_ptr<Task>, 3> split(std::size_t k) override {
    std::array<std::unique_ptr<Task>, 3> parts;
    if (k > 0) parts[0] = std::make_unique<ChunkTask>(maker_, begin_, k);
    parts[1] = std::make_unique<ChunkTask>(maker_, begin_ + k, 1);
    if (k + 1 < count_)
      parts[2] = std::make_unique<ChunkTask>(maker_, begin_ + k + 1, count_ - k - 1);
    return parts;
  }

 private:
  std::shared_ptr<ChunkMaker<R>> maker_;
  std::size_t begin_, count_;
};

/// Chunks aim at this much work each once the item cost is known.
inline constexpr std::chrono::nanoseconds target_chunk_time = std::chrono::milliseconds(4);

/// A map of `fn` over `input` (an owned range or a reference to the caller's).
template <bool Star, class F, class Input, class R>
class MapJob final : public Job,
                     public ChunkMaker<R>,
                     public std::enable_shared_from_this<MapJob<Star, F, Input, R>> {
  using Range = std::remove_reference_t<Input>;

 public:
  MapJob(F fn, Input&& input, std::size_t chunksize, std::shared_ptr<MapState<R>> state)
      : fn_(std::move(fn)),
        input_(std::forward<Input>(input)),
        chunksize_(chunksize),
        state_(std::move(state)) {}

  std::unique_ptr<Task> next(std::size_t workers) override {
    const std::size_t n = state_->size();
    if (cursor_ >= n) return nullptr;
    const std::size_t remaining = n - cursor_;
    std::size_t size;
    if (chunksize_ != 0) {
      size = chunksize_;
    } else if (const double cost = state_->item_cost(); cost > 0) {
      const double by_cost = static_cast<double>(target_chunk_time.count()) / cost;
      const std::size_t guided =
          std::max<std::size_t>(1, remaining / (2 * std::max<std::size_t>(workers, 1)));
      size = std::min(guided, static_cast<std::size_t>(std::max(1.0, by_cost)));
    } else {
      size = 1;  // probe: measure before batching
    }
    size = std::min(size, remaining);
    auto task = std::make_unique<ChunkTask<R>>(this->shared_from_this(), cursor_, size);
    cursor_ += size;
    return task;
  }

  void cancel_remaining(const std::exception_ptr& error) noexcept override {
    const std::size_t n = state_->size();
    if (cursor_ < n) state_->fail_range(cursor_, n - cursor_, error);
    cursor_ = n;
  }

  MapState<R>& state() noexcept override { return *state_; }

  EncodedCall make_call(std::size_t begin, std::size_t count) override {
    Encoder out = EncodedCall::start();
    auto first =
        std::ranges::begin(input_) + static_cast<std::ranges::range_difference_t<Range>>(begin);
    if constexpr (is_iota_view_v<std::remove_cvref_t<Range>>) {
      using I = std::remove_cvref_t<decltype(*first)>;
      const IotaSlice<I> slice{*first, static_cast<std::uint64_t>(count)};
      if constexpr (MapState<R>::shared) {
        write_call<false, decltype(&run_chunk_into<Star, F, IotaSlice<I>>), CallableBox<F>,
                   IotaSlice<I>, OutputRef>(out, &run_chunk_into<Star, F, IotaSlice<I>>,
                                            CallableBox<F>{fn_}, slice, state_->output_at(begin));
      } else {
        write_call<false, decltype(&run_chunk<Star, F, IotaSlice<I>>), CallableBox<F>,
                   IotaSlice<I>>(out, &run_chunk<Star, F, IotaSlice<I>>, CallableBox<F>{fn_},
                                 slice);
      }
    } else {
      using T = std::ranges::range_value_t<Range>;
      constexpr auto run = [] {
        if constexpr (MapState<R>::shared) {
          return &run_chunk_into<Star, F, std::vector<T>>;
        } else {
          return &run_chunk<Star, F, std::vector<T>>;
        }
      }();
      using Entry = std::conditional_t<
          MapState<R>::shared,
          CallEntry<decltype(run), false, CallableBox<F>, std::vector<T>, OutputRef>,
          CallEntry<decltype(run), false, CallableBox<F>, std::vector<T>>>;
      // The wire form of write_call(run, box, std::vector<T>(chunk)[, output]), written from
      // the range in place (no temporary vector).
      const std::uint8_t version = call_wire_version;
      out.write_bytes(&version, 1);
      write_code_ref(out, Entry::token());
      encode_callable_part(out, run);
      handle_codec<CallableBox<F>>::encode(out, CallableBox<F>{fn_});
      const std::uint64_t n = count;
      out.write_bytes(&n, sizeof n);
      if constexpr (std::is_trivially_copyable_v<T> && std::ranges::contiguous_range<Range> &&
                    !std::is_same_v<T, bool>) {
        out.write_bytes(std::to_address(first), count * sizeof(T));
      } else {
        for (std::size_t k = 0; k < count; ++k, ++first)
          mproc::encode(out, static_cast<const T&>(*first));
      }
      if constexpr (MapState<R>::shared) mproc::encode(out, state_->output_at(begin));
    }
    return EncodedCall::from(std::move(out));
  }

 private:
  F fn_;
  Input input_;  // a reference for lvalue ranges, the range itself for rvalues
  std::size_t chunksize_;
  std::shared_ptr<MapState<R>> state_;
  std::size_t cursor_ = 0;  // items handed out so far (under the engine's lock)
};

// ---- starting a map, iterating its results ------------------------------------------------

/// The element a map passes to fn (starmap: a tuple it applies).
template <class Rng>
using map_item_t = std::ranges::range_reference_t<Rng>;

template <bool Star, class F, class Rng>
using pool_map_result_t = item_result_t<Star, std::decay_t<F>, std::ranges::range_value_t<Rng>&&>;

/// Checks at compile time that `fn` can be a map's function over `Rng`, with messages that say
/// what to do, and returns the number of items.
template <bool Star, class F, class Rng>
constexpr void check_map_call() {
  using Fn = std::decay_t<F>;
  using T = std::ranges::range_value_t<Rng>;
  static_assert(transferable_callable<Fn>,
                "mproc: a Pool/Executor map needs a transferable function (a function pointer, a "
                "captureless lambda or an encodable function object): a capturing lambda's "
                "captures cannot travel to the workers. Pass data as items, or use the one-shot "
                "mproc::map, which forks at the call and runs any callable.");
  static_assert(transferable<T> || is_iota_view_v<std::remove_cvref_t<Rng>>,
                "mproc: the map's items must be transferable (see codec.hpp) to reach the "
                "workers; the one-shot mproc::map reads any input in place instead.");
  if constexpr (Star) {
    static_assert(
        requires(Fn & f, T && t) { std::apply(f, std::move(t)); },
        "mproc: starmap's items must be tuples of fn's arguments");
  } else {
    static_assert(std::is_invocable_v<Fn&, T&&>,
                  "mproc: the map's function cannot be called with an item as it arrives in the "
                  "worker (a decoded copy passed as an rvalue: take it by value or const&)");
  }
}

/// Starts a map of `fn` over `range` on `engine`; the returned state collects the outcomes.
template <bool Star, class F, class Rng>
auto start_map(Engine& engine, F&& fn, Rng&& range, std::size_t chunksize, bool progress,
               std::optional<std::chrono::nanoseconds> timeout,
               typename MapState<pool_map_result_t<Star, F, Rng>>::Order order)
    -> std::shared_ptr<MapState<pool_map_result_t<Star, F, Rng>>> {
  check_map_call<Star, F, Rng>();
  using R = pool_map_result_t<Star, F, Rng>;
  using Fn = std::decay_t<F>;
  const auto deadline =
      timeout ? std::optional(std::chrono::steady_clock::now() +
                              std::chrono::ceil<std::chrono::steady_clock::duration>(*timeout))
              : std::nullopt;
  if constexpr (std::ranges::random_access_range<Rng> && std::ranges::sized_range<Rng>) {
    const auto n = static_cast<std::size_t>(std::ranges::size(range));
    auto state =
        std::make_shared<MapState<R>>(n, order, progress, deadline, engine.output_segments());
    if (n != 0) {
      // An lvalue range is referenced (it must outlive a lazy iteration); an rvalue is moved in.
      using Input =
          std::conditional_t<std::is_lvalue_reference_v<Rng>, Rng, std::remove_cvref_t<Rng>>;
      auto job = std::make_shared<MapJob<Star, Fn, Input, R>>(
          Fn(std::forward<F>(fn)), std::forward<Rng>(range), chunksize, state);
      engine.submit(std::shared_ptr<Job>(std::move(job)));
    }
    return state;
  } else {
    // Not random-access (a filter view, a list, an istream view): copy the items first.
    std::vector<std::ranges::range_value_t<Rng>> items;
    if constexpr (std::ranges::sized_range<Rng>) items.reserve(std::ranges::size(range));
    for (auto&& x : range) items.push_back(std::forward<decltype(x)>(x));
    return start_map<Star>(engine, std::forward<F>(fn), std::move(items), chunksize, progress,
                           timeout, order);
  }
}

/// The results of imap / imap_unordered / executor map, as an input range: each step blocks
/// until the next result is ready and yields it, or throws its error (iteration may go on after
/// an error). Past the map's timeout a step throws TimeoutError. Iterate from one thread.
template <class R>
class MapResults {
  static_assert(!std::is_void_v<R>,
                "mproc: imap/imap_unordered/executor map need a function "
                "that returns a value; use map() for a void function");

 public:
  using Order = typename MapState<R>::Order;

  MapResults(std::shared_ptr<MapState<R>> state, Order order)
      : state_(std::move(state)), order_(order) {}

  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    R& operator*() const { return *owner_->current_; }
    R* operator->() const { return &*owner_->current_; }
    iterator& operator++() {
      owner_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return it.finished();
    }

   private:
    friend class MapResults;
    bool finished() const noexcept { return owner_ == nullptr || owner_->at_end(); }
    explicit iterator(MapResults* owner) : owner_(owner) {}
    MapResults* owner_ = nullptr;
  };

  /// Blocks for the first result (may throw its error or TimeoutError).
  iterator begin() {
    if (!started_) {
      started_ = true;
      advance();
    }
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }
  std::size_t size() const noexcept { return state_->size(); }

 private:
  bool at_end() const noexcept { return !current_ && yielded_ >= state_->size(); }

  void advance() {
    current_.reset();
    if (yielded_ >= state_->size()) return;
    // Count the item as yielded before taking it: its error is thrown once, then iteration
    // moves on to the next item.
    if (order_ == Order::ordered) {
      const std::size_t i = yielded_;
      state_->wait_item(i);  // TimeoutError leaves the position unchanged
      ++yielded_;
      current_.emplace(state_->take_unlocked_index(i));
    } else {
      const std::size_t i = state_->next_unordered();
      ++yielded_;
      current_.emplace(state_->take_unlocked_index(i));
    }
  }

  std::shared_ptr<MapState<R>> state_;
  Order order_;
  std::optional<R> current_;
  std::size_t yielded_ = 0;
  bool started_ = false;
};

}  // namespace mproc::detail
