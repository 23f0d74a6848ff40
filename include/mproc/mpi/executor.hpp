// mpi/executor.hpp — mproc::mpi::Executor: ProcessPoolExecutor's interface, tasks run on MPI
// ranks (mpi4py.futures' MPIPoolExecutor, SPMD layout). Optional target mproc::mpi.
//
//     int square(int x) { return x * x; }
//     int main(int argc, char** argv) {
//       mproc::mpi::init(argc, argv);     // ranks >= 1 serve tasks in here and exit(0) when
//                                         // rank 0 is done; only rank 0 returns
//       mproc::mpi::Executor ex;          // workers = ranks 1 .. size-1
//       mproc::Future<int> f = ex.submit(square, 7);                       // f.get() == 49
//       for (int y : ex.map(square, std::views::iota(0, 100), {.chunksize = 8})) use(y);
//       ex.shutdown();                    // or let the destructor do it
//     }
//     // run: mpiexec -n 4 ./app    (srun ./app under Slurm; a hostfile across machines)
//
// Same as ProcessPoolExecutor (executor.hpp): Future<T> (as_completed / wait apply), the
// transferable callables of detail/callable.hpp (function pointers, captureless lambdas,
// serializable function objects; refusals are compile errors), the codec for arguments and
// results, and the exception semantics: a registered exception type is rethrown as itself,
// any other as RemoteError (pid = the worker rank's pid). Every rank must run the same binary
// (code travels as build-id + offset tokens).
//
// Differences from ProcessPoolExecutor:
//  - The workers are the MPI ranks, started by mpiexec, not by the executor. Several Executors
//    (one after another or at once) share them; shutdown() ends an executor, not the ranks.
//    The ranks exit when rank 0 finalizes: mproc::mpi::finalize(), or automatically when main
//    returns / exit() is called (init registers an atexit handler). finalize waits for work
//    still queued by executors that were not shut down.
//  - A worker rank that dies (signal, exit() inside a task) cannot be survived: Open MPI
//    without ULFM (all of Debian's 4.x) aborts the whole job — mpiexec kills every rank and
//    exits non-zero, printing which rank died and how. There is no WorkerCrashed here.
//  - cancel(mproc::force) is not supported (returns false): an MPI rank cannot be replaced.
//    cancel() of a pending future works as usual.
//  - Values that carry file descriptors (mproc::Queue, Lock, SharedMemory, Connection, ...)
//    cannot travel over MPI: UsageError at submit, or the task fails with UsageError.
//  - No task_timeout, max_tasks_per_child, initializer, memory_limit.
//
// Dispatch (rank 0): one dispatcher thread owns every MPI call after init. It keeps up to
// `window` tasks in flight per worker rank (one running, the others queued in the rank's MPI
// receive queue, so a rank never waits for a round trip), sends with MPI_Isend and collects
// results with MPI_Improbe/MPI_Mrecv. A map is cut into chunks as ranks ask for work (guided:
// remaining / (2 * workers), so chunks shrink towards the end), or `chunksize` items each.
//
// Progress strategy (no busy-spin): Open MPI's blocking calls (MPI_Recv, MPI_Wait) spin a
// core at 100%, which on an oversubscribed node takes the CPU from the ranks doing the work.
// mproc therefore never blocks inside MPI: both the rank-0 dispatcher and the worker ranks
// poll with non-blocking calls, a few times back-to-back after activity, then sleep with an
// exponential backoff (2 µs doubling to 200 µs; 5 ms after 100 ms idle), with the thread's
// timer slack set to 1 ns so short sleeps are short. The dispatcher sleeps on a condition
// variable, so a submit wakes it at once, and it sleeps without polling at all while no task
// is in flight. Cost: an idle worker wakes ~5000 times a second for the first 100 ms, then
// ~200 times a second; a result may wait up to one backoff step (≤ 200 µs while busy).
//
// Thread safety: every member may be called from any thread of rank 0. MPI is initialised
// with MPI_THREAD_SERIALIZED; the program must not make its own MPI calls on rank 0 while the
// dispatcher runs (between the first Executor and finalize).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/callable.hpp"
#include "mproc/detail/future_task.hpp"
#include "mproc/detail/map_job.hpp"
#include "mproc/detail/progress.hpp"
#include "mproc/detail/remote_exception.hpp"
#include "mproc/errors.hpp"
#include "mproc/future.hpp"
#include "mproc/pool.hpp"

namespace mproc::mpi {

/// An MPI call failed. what() reads `MPI_Isend: <MPI's error string>`.
class MpiError : public Error {
 public:
  MpiError(int code, std::string call, const std::string& message);
  int code() const noexcept { return code_; }
  const std::string& call() const noexcept { return call_; }

 private:
  int code_;
  std::string call_;
};

/// Initialises MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED; MpiError if the library provides
/// less). Call it first thing in main, with main's argc/argv. On ranks >= 1 it never returns:
/// the rank serves tasks until rank 0 finalizes, then calls MPI_Finalize and exit(0). On rank 0
/// it returns and registers finalize() with atexit. UsageError if called twice.
void init(int& argc, char**& argv);

/// Rank 0: waits for queued work, stops the worker ranks, MPI_Finalize. Idempotent; called by
/// the atexit handler init registers. After it, Executor construction throws UsageError.
void finalize();

/// This process's rank in MPI_COMM_WORLD and the world size (UsageError before init).
int rank();
int world_size();

struct ExecutorOptions {
  std::size_t max_workers = 0;  ///< worker ranks to use (ranks 1..max_workers); 0 = all
  std::size_t window = 2;       ///< tasks in flight per worker rank (>= 1)
};

namespace detail {

class Client;

/// One message of work for a worker rank (rank 0 side).
class Task {
 public:
  virtual ~Task() = default;
  /// The call, as encode_call wrote it, after 8 bytes the dispatcher fills with the task id.
  std::vector<std::byte> message;
  /// False when the task must not run (its future was cancelled).
  virtual bool start() { return true; }
  /// The worker's result bytes (status 0).
  virtual void succeed(Decoder& in, std::int64_t pid) noexcept = 0;
  /// The call threw in the worker (status 1): an encoded exception.
  virtual void fail_remote(Decoder& in, std::int64_t pid) noexcept = 0;
  /// Failed or cancelled without running (shutdown(cancel_futures), MPI failure).
  virtual void fail(const std::exception_ptr& error) noexcept = 0;
};

/// Work that produces tasks on demand (a map's chunks), in the dispatcher thread.
class Source {
 public:
  virtual ~Source() = default;
  /// The next task, or null when none are left.
  virtual std::unique_ptr<Task> next(std::size_t workers) = 0;
  /// Fails every item not yet handed out.
  virtual void cancel_remaining(const std::exception_ptr& error) noexcept = 0;
};

/// An encoder whose first 8 bytes are reserved for the task id.
Encoder start_message();
/// The message bytes of `out`; UsageError if it carries file descriptors.
std::vector<std::byte> finish_message(Encoder&& out);

std::shared_ptr<Client> open_client(const ExecutorOptions& options);
/// PoolClosed after shutdown, BrokenPool after an MPI failure.
void submit(const std::shared_ptr<Client>& client, std::unique_ptr<Task> task);
void submit(const std::shared_ptr<Client>& client, std::shared_ptr<Source> source);
void shutdown(Client& client, bool wait, bool cancel_futures);
std::size_t workers(const Client& client) noexcept;
std::uint64_t next_index(Client& client) noexcept;

/// Worker side: where a map chunk writes its per-item outcomes (null outside a task).
Encoder* chunk_output() noexcept;

template <class R>
class FutureTask final : public Task {
 public:
  explicit FutureTask(std::int64_t index) : index_(index) {}
  Future<R> future() const { return promise_.future(); }
  bool start() override { return promise_.set_running(); }
  void succeed(Decoder& in, std::int64_t) noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        in.expect_end();
        promise_.set_value();
      } else {
        R value = mproc::decode<R>(in);
        in.expect_end();
        promise_.set_value(std::move(value));
      }
    } catch (...) {
      fail(std::current_exception());
    }
  }
  void fail_remote(Decoder& in, std::int64_t pid) noexcept override {
    try {
      fail(mproc::detail::decode_exception(in, pid, index_));
    } catch (...) {
      fail(std::current_exception());
    }
  }
  void fail(const std::exception_ptr& error) noexcept override {
    try {
      try {
        std::rethrow_exception(error);
      } catch (const Cancelled&) {
        promise_.set_cancelled(error);
      } catch (...) {
        promise_.set_exception(error);
      }
    } catch (...) {
    }
  }

 private:
  mproc::detail::Promise<R> promise_;
  std::int64_t index_;
};

// ---- map --------------------------------------------------------------------------------

/// Worker side: fn over every item of the slice; per item `u8 0, value` or `u8 1, exception`
/// after an item count, into chunk_output().
/// Map results that travel as one array of raw bytes per chunk.
template <class R>
inline constexpr bool raw_result_v =
    std::is_trivially_copyable_v<R>&& std::is_default_constructible_v<R> &&
    !std::is_same_v<R, bool> && !std::is_pointer_v<R>;

/// Worker side: fn over every item of the slice, into chunk_output(). Raw results
/// (raw_result_v):  count u64 | errors u64 | count x R | errors x (k u64, exception);
/// otherwise:       count u64 | count x (u8 0, value | u8 1, exception).
template <class F, class Slice>
void run_chunk(mproc::detail::CallableBox<F> box, Slice slice) {
  Encoder* out_ptr = chunk_output();
  if (out_ptr == nullptr) throw UsageError("mpi run_chunk outside an MPI worker rank");
  Encoder& out = *out_ptr;
  constexpr bool iota = requires {
    slice.first;
  };
  std::uint64_t n = 0;
  if constexpr (iota) {
    n = slice.count;
  } else {
    n = slice.size();
  }
  const auto call = [&](std::uint64_t k) -> decltype(auto) {
    if constexpr (iota) {
      using I = decltype(slice.first);
      return std::invoke(box.fn, static_cast<I>(slice.first + static_cast<I>(k)));
    } else {
      return std::invoke(box.fn, std::move(slice[k]));
    }
  };
  using R = std::decay_t<decltype(call(0))>;
  out.write_bytes(&n, sizeof n);
  if constexpr (raw_result_v<R>) {
    const std::size_t errors_at = out.bytes().size();
    std::uint64_t errors = 0;
    out.write_bytes(&errors, sizeof errors);
    const std::size_t values_at = out.bytes().size();
    out.bytes().resize(values_at + n * sizeof(R));  // zeroed: error slots stay zero
    for (std::uint64_t k = 0; k < n; ++k) {
      try {
        mproc::detail::TaskScope scope;
        const R value = call(k);
        std::memcpy(out.bytes().data() + values_at + k * sizeof(R), &value, sizeof(R));
      } catch (...) {
        out.write_bytes(&k, sizeof k);
        mproc::detail::encode_exception(out, std::current_exception());
        ++errors;
      }
    }
    std::memcpy(out.bytes().data() + errors_at, &errors, sizeof errors);
  } else {
    for (std::uint64_t k = 0; k < n; ++k) {
      const Encoder::Mark mark = out.mark();
      try {
        mproc::detail::TaskScope scope;
        decltype(auto) value = call(k);
        const std::uint8_t ok = 0;
        out.write_bytes(&ok, 1);
        const R& ref = value;
        mproc::encode(out, ref);
        if (out.fds().size() > mark.fds) {
          throw UsageError("a map result carries a file descriptor, which cannot travel over MPI");
        }
      } catch (...) {
        out.rewind(mark);
        const std::uint8_t failed = 1;
        out.write_bytes(&failed, 1);
        mproc::detail::encode_exception(out, std::current_exception());
      }
    }
  }
}

/// Rank 0: the outcomes of one map, in input order. Item states (finished_): 0 pending,
/// 1 value, 2 error; an item leaves 0 once, under mutex_, after its value is stored, so a
/// consumer that saw it non-zero under the mutex may read the value without it.
template <class R>
class MapState {
  static constexpr bool raw = raw_result_v<R>;
  using Slot = std::conditional_t<raw, R, std::optional<R>>;

 public:
  MapState(std::size_t n, bool progress,
           std::optional<std::chrono::steady_clock::time_point> deadline)
      : n_(n),
        deadline_(deadline),
        values_(n),
        finished_(n, 0),
        progress_(n, progress, "mproc map") {
    if (n == 0) progress_.finish();
  }
  std::size_t size() const noexcept { return n_; }

  /// Decodes a chunk's outcome for items [begin, begin + count).
  void deliver(Decoder& in, std::size_t begin, std::size_t count, std::int64_t pid) {
    std::uint64_t n = 0;
    in.read_bytes(&n, sizeof n);
    if (n != count) throw ProtocolError("mpi map chunk: item count mismatch");
    std::vector<std::pair<std::size_t, std::exception_ptr>> errors;
    std::vector<Slot> decoded;
    std::span<const std::byte> raw_values;
    if constexpr (raw) {
      std::uint64_t error_count = 0;
      in.read_bytes(&error_count, sizeof error_count);
      if (error_count > count) throw ProtocolError("mpi map chunk: too many errors");
      raw_values = in.read_bytes(count * sizeof(R));
      for (std::uint64_t e = 0; e < error_count; ++e) {
        std::uint64_t k = 0;
        in.read_bytes(&k, sizeof k);
        if (k >= count) throw ProtocolError("mpi map chunk: error index out of range");
        errors.emplace_back(
            k, mproc::detail::decode_exception(in, pid, static_cast<std::int64_t>(begin + k)));
      }
    } else {
      decoded.resize(count);
      for (std::size_t k = 0; k < count; ++k) {
        std::uint8_t tag = 0;
        in.read_bytes(&tag, 1);
        if (tag == 0) {
          decoded[k].emplace(mproc::decode<R>(in));
        } else if (tag == 1) {
          errors.emplace_back(
              k, mproc::detail::decode_exception(in, pid, static_cast<std::int64_t>(begin + k)));
        } else {
          throw ProtocolError("mpi map chunk: bad item tag");
        }
      }
    }
    in.expect_end();
    {
      std::lock_guard lock(mutex_);
      for (const auto& [k, e] : errors) {
        if (finished_[begin + k]) continue;
        errors_.emplace(begin + k, e);
        finished_[begin + k] = 2;
      }
      for (std::size_t k = 0; k < count; ++k) {
        if (finished_[begin + k]) continue;
        if constexpr (raw) {
          std::memcpy(&values_[begin + k], raw_values.data() + k * sizeof(R), sizeof(R));
        } else {
          values_[begin + k] = std::move(decoded[k]);
        }
        finished_[begin + k] = 1;
      }
    }
    progress_.advance(count);
    cv_.notify_all();
  }

  /// Items [begin, begin + count) failed as a whole.
  void fail_range(std::size_t begin, std::size_t count, const std::exception_ptr& error) noexcept {
    try {
      std::lock_guard lock(mutex_);
      for (std::size_t k = begin; k < begin + count; ++k) {
        if (finished_[k]) continue;
        errors_.emplace(k, error);
        finished_[k] = 2;
      }
    } catch (...) {
      std::lock_guard lock(mutex_);
      fatal_ = error;
    }
    progress_.advance(count);
    cv_.notify_all();
  }

  /// Blocks until item i is done (TimeoutError past the deadline). Returns the end of the run
  /// of done items that starts at i: those may be taken without waiting again.
  std::size_t wait_item(std::size_t i) {
    std::unique_lock lock(mutex_);
    const auto ready = [&] { return fatal_ != nullptr || finished_[i] != 0; };
    if (!deadline_) {
      cv_.wait(lock, ready);
    } else if (!cv_.wait_until(lock, *deadline_, ready)) {
      throw TimeoutError("mpi::Executor::map: result " + std::to_string(i) +
                         " not ready within the timeout");
    }
    if (fatal_) return i + 1;
    std::size_t end = i;
    while (end < n_ && finished_[end] != 0) ++end;
    return end;
  }

  /// After wait_item covered i: its value, moved out, or its error thrown (once).
  R take(std::size_t i) {
    if (finished_[i] == 1) {
      if constexpr (raw) {
        return values_[i];
      } else {
        R value = std::move(*values_[i]);
        values_[i].reset();
        return value;
      }
    }
    std::lock_guard lock(mutex_);
    if (auto it = errors_.find(i); it != errors_.end()) {
      auto e = it->second;
      errors_.erase(it);
      std::rethrow_exception(e);
    }
    if (fatal_) std::rethrow_exception(fatal_);
    throw UsageError("mpi::Executor::map: result taken twice");
  }

 private:
  const std::size_t n_;
  const std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Slot> values_;
  std::map<std::size_t, std::exception_ptr> errors_;
  std::vector<std::uint8_t> finished_;
  std::exception_ptr fatal_;
  mproc::detail::ProgressBar progress_;
};

template <class R>
class ChunkTask final : public Task {
 public:
  ChunkTask(std::shared_ptr<MapState<R>> state, std::size_t begin, std::size_t count)
      : state_(std::move(state)), begin_(begin), count_(count) {}
  void succeed(Decoder& in, std::int64_t pid) noexcept override {
    try {
      state_->deliver(in, begin_, count_, pid);
    } catch (...) {
      fail(std::current_exception());
    }
  }
  void fail_remote(Decoder& in, std::int64_t pid) noexcept override {
    try {
      fail(mproc::detail::decode_exception(in, pid, static_cast<std::int64_t>(begin_)));
    } catch (...) {
      fail(std::current_exception());
    }
  }
  void fail(const std::exception_ptr& error) noexcept override {
    state_->fail_range(begin_, count_, error);
  }

 private:
  std::shared_ptr<MapState<R>> state_;
  std::size_t begin_, count_;
};

/// A map of `fn` over `input` (a reference to an lvalue range, or the range itself), cut into
/// chunks in the dispatcher thread as ranks have room.
template <class F, class Input, class R>
class MapSource final : public Source {
  using Range = std::remove_reference_t<Input>;

 public:
  MapSource(F fn, Input&& input, std::size_t chunksize, std::shared_ptr<MapState<R>> state)
      : fn_(std::move(fn)),
        input_(std::forward<Input>(input)),
        chunksize_(chunksize),
        state_(std::move(state)) {}

  std::unique_ptr<Task> next(std::size_t workers) override {
    const std::size_t n = state_->size();
    if (cursor_ >= n) return nullptr;
    const std::size_t remaining = n - cursor_;
    std::size_t size = chunksize_;
    if (size == 0) {
      // Guided: big chunks first, smaller towards the end; never below n / (32 * workers),
      // so the tail is not a long run of one-item messages.
      const std::size_t w = std::max<std::size_t>(workers, 1);
      size = std::max({std::size_t{1}, remaining / (2 * w), n / (32 * w)});
    }
    size = std::min(size, remaining);
    auto task = std::make_unique<ChunkTask<R>>(state_, cursor_, size);
    const std::size_t begin = cursor_;
    cursor_ += size;
    try {
      Encoder out = start_message();
      auto first =
          std::ranges::begin(input_) + static_cast<std::ranges::range_difference_t<Range>>(begin);
      if constexpr (mproc::detail::is_iota_view_v<std::remove_cvref_t<Range>>) {
        using I = std::remove_cvref_t<decltype(*first)>;
        using Slice = mproc::detail::IotaSlice<I>;
        const Slice slice{*first, static_cast<std::uint64_t>(size)};
        mproc::detail::write_call<false, decltype(&run_chunk<F, Slice>),
                                  mproc::detail::CallableBox<F>, Slice>(
            out, &run_chunk<F, Slice>, mproc::detail::CallableBox<F>{fn_}, slice);
      } else {
        using T = std::ranges::range_value_t<Range>;
        using Slice = std::vector<T>;
        Slice slice(first, first + static_cast<std::ranges::range_difference_t<Range>>(size));
        mproc::detail::write_call<false, decltype(&run_chunk<F, Slice>),
                                  mproc::detail::CallableBox<F>, Slice>(
            out, &run_chunk<F, Slice>, mproc::detail::CallableBox<F>{fn_}, slice);
      }
      task->message = finish_message(std::move(out));
    } catch (...) {
      task->fail(std::current_exception());
      return next(workers);
    }
    return task;
  }

  void cancel_remaining(const std::exception_ptr& error) noexcept override {
    const std::size_t n = state_->size();
    if (cursor_ < n) state_->fail_range(cursor_, n - cursor_, error);
    cursor_ = n;
  }

 private:
  F fn_;
  Input input_;
  std::size_t chunksize_;
  std::shared_ptr<MapState<R>> state_;
  std::size_t cursor_ = 0;  // items handed out (dispatcher thread only)
};

/// The results of Executor::map: an input range in input order. Each step blocks for the
/// next result and yields it, or throws its error (iteration may go on after an error); past
/// the map's timeout a step throws TimeoutError. Iterate from one thread.
template <class R>
class MapResults {
  static_assert(!std::is_void_v<R>,
                "mproc: mpi::Executor::map needs a function that returns a "
                "value (submit a void function instead)");

 public:
  explicit MapResults(std::shared_ptr<MapState<R>> state) : state_(std::move(state)) {}

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
  friend class iterator;
  bool at_end() const noexcept { return !current_ && yielded_ >= state_->size(); }
  void advance() {
    current_.reset();
    if (yielded_ >= state_->size()) return;
    const std::size_t i = yielded_;
    // TimeoutError leaves the position unchanged.
    if (i >= ready_end_) ready_end_ = state_->wait_item(i);
    ++yielded_;  // an item's error is thrown once, then iteration moves on
    current_.emplace(state_->take(i));
  }

  std::shared_ptr<MapState<R>> state_;
  std::optional<R> current_;
  std::size_t yielded_ = 0;
  std::size_t ready_end_ = 0;  // items [yielded_, ready_end_) are known done
  bool started_ = false;
};

}  // namespace detail

/// ProcessPoolExecutor's interface over MPI ranks (see the top of this file). Rank 0 only.
class Executor {
 public:
  /// UsageError before init, after finalize, or when there is no worker rank (world size 1)
  /// or fewer than max_workers.
  explicit Executor(std::size_t max_workers = 0)
      : Executor(ExecutorOptions{.max_workers = max_workers}) {}
  explicit Executor(ExecutorOptions options);
  Executor(Executor&&) noexcept = default;
  Executor& operator=(Executor&&) = delete;
  /// shutdown(true); while an exception unwinds the stack it also cancels pending futures.
  ~Executor();

  /// Schedules fn(args...) on a worker rank; PoolClosed after shutdown(). The call is encoded
  /// here (what the codec throws for an argument propagates).
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args) -> Future<mproc::detail::task_result_t<F, Args...>> {
    using R = mproc::detail::task_result_t<F, Args...>;
    const auto& c = client();
    auto task =
        std::make_unique<detail::FutureTask<R>>(static_cast<std::int64_t>(detail::next_index(*c)));
    Encoder out = detail::start_message();
    mproc::detail::encode_call(out, fn, args...);
    task->message = detail::finish_message(std::move(out));
    Future<R> future = task->future();
    detail::submit(c, std::move(task));
    return future;
  }

  /// fn(x) for every x of `range`, as a lazy input range in input order. options.chunksize
  /// = items per message (0 = guided, see the top); options.timeout from the call: a step that
  /// would wait longer throws TimeoutError; options.progress draws the progress bar. An lvalue
  /// range is read in place while chunks are cut: it must outlive the iteration.
  template <class F, std::ranges::input_range Rng>
  auto map(F&& fn, Rng&& range, MapOptions options = {})
      -> detail::MapResults<mproc::detail::pool_map_result_t<false, F, Rng>> {
    using R = mproc::detail::pool_map_result_t<false, F, Rng>;
    mproc::detail::check_map_call<false, F, Rng>();
    using Fn = std::decay_t<F>;
    const auto& c = client();
    const auto deadline =
        options.timeout ? std::optional(std::chrono::steady_clock::now() +
                                        std::chrono::ceil<std::chrono::steady_clock::duration>(
                                            *options.timeout))
                        : std::nullopt;
    if constexpr (std::ranges::random_access_range<Rng> && std::ranges::sized_range<Rng>) {
      const auto n = static_cast<std::size_t>(std::ranges::size(range));
      auto state = std::make_shared<detail::MapState<R>>(n, options.progress, deadline);
      if (n != 0) {
        using Input =
            std::conditional_t<std::is_lvalue_reference_v<Rng>, Rng, std::remove_cvref_t<Rng>>;
        detail::submit(
            c, std::shared_ptr<detail::Source>(std::make_shared<detail::MapSource<Fn, Input, R>>(
                   Fn(std::forward<F>(fn)), std::forward<Rng>(range), options.chunksize, state)));
      }
      return detail::MapResults<R>(std::move(state));
    } else {
      std::vector<std::ranges::range_value_t<Rng>> items;
      for (auto&& x : range) items.push_back(std::forward<decltype(x)>(x));
      if (options.timeout) {
        // The deadline runs from this call: take off what copying the items took.
        const auto left = deadline ? *deadline - std::chrono::steady_clock::now()
                                   : std::chrono::steady_clock::duration{};
        options.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(left);
      }
      return map(std::forward<F>(fn), std::move(items), options);
    }
  }

  /// Refuses new work; cancel_futures also cancels every future not yet handed to a rank;
  /// wait blocks until this executor's remaining work is done. Idempotent. The worker ranks
  /// stay up for other executors (they exit at finalize).
  void shutdown(bool wait = true, bool cancel_futures = false);

  /// The number of worker ranks this executor uses.
  std::size_t max_workers() const noexcept;

 private:
  const std::shared_ptr<detail::Client>& client() const;

  std::shared_ptr<detail::Client> client_;
  int uncaught_ = 0;
};

}  // namespace mproc::mpi
