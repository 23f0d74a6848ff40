// engine.hpp — the worker-pool engine behind Pool and ProcessPoolExecutor (internal).
//
// One engine = N worker processes, each connected to the parent by its own Connection (tasks
// go down, results come up; descriptors travel with them), plus one shared-memory slot per
// worker where the worker records which task (and which item of a map chunk) it is running
// and since when. The parent can read that slot after the worker died, so a crash fails
// exactly the work that was running (PITFALLS: Python's Pool hangs, ProcessPoolExecutor breaks
// every future). Work a dead worker held but had not started is requeued, never lost.
//
// Dispatch. Work waits in the parent (a FIFO of tasks and map jobs) until a worker has room in
// its window: a few tasks ahead of what it runs, more when tasks are measured to be tiny, so
// queued work stays pending and cancellable. A map job hands out chunks sized from the item
// cost it measures (guided: smaller towards the end). Any thread may submit; the submitting
// thread sends to an idle worker itself (no hand-off to the engine thread on the hot path).
//
// The engine thread polls every worker's connection and process sentinel and an eventfd; it
// decodes results and completes futures (so done-callbacks run there), notices deaths and
// timeouts, and starts replacement workers. It exits after close() once the work is done, or
// at terminate().
//
// Lifetime: the Engine object (owned by a Pool or executor) joins or terminates in its
// destructor; futures outliving it fail with BrokenPool if never completed (Promise rule).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/shared_segment.hpp"
#include "mproc/detail/unique_fd.hpp"
#include "mproc/process.hpp"

namespace mproc::detail {

/// An encoded call with the descriptors its arguments carry, owned (duplicated at encode time:
/// the argument handles may be gone before the task is sent).
struct EncodedCall {
  std::vector<std::byte> bytes;
  std::vector<UniqueFd> fds;

  /// Bytes reserved in front of every call for the frame header (filled in when sent).
  static constexpr std::size_t header_room = 16;
  /// An encoder to write one call into: it starts with header_room zero bytes.
  static Encoder start() {
    Encoder out;
    const std::byte zeros[header_room]{};
    out.write_bytes(zeros, header_room);
    return out;
  }
  /// Takes the bytes of `out` (made by start()) and duplicates its borrowed descriptors.
  static EncodedCall from(Encoder&& out);
};

/// One unit of work: a submitted call, or one chunk of a map. Owned by the engine from submit
/// until it completes; completed on the engine thread (or the thread that cancels it).
class Task {
 public:
  virtual ~Task() = default;

  /// At dispatch: false means the task was cancelled meanwhile; the engine drops it.
  virtual bool start() = 0;
  /// The call returned: `result` holds what the worker encoded. Must not throw (a result that
  /// does not decode fails this task's future with the decoding error). `elapsed` is the time
  /// the worker spent on the call.
  virtual void succeed(Decoder& result, std::int64_t pid, std::chrono::nanoseconds elapsed) = 0;
  /// The task failed as a whole (every item of a chunk). Must not throw.
  virtual void fail(const std::exception_ptr& error) noexcept = 0;
  /// Number of items (> 1 only for map chunks).
  virtual std::size_t items() const noexcept { return 1; }
  /// The index reported in errors for item `k` of this task (task number, or input index).
  virtual std::int64_t index_of(std::size_t k) const noexcept = 0;
  /// For chunks: splits around item k into [0, k), {k}, (k, items()); null where empty.
  virtual std::array<std::unique_ptr<Task>, 3> split(std::size_t k);
  /// Whether the future(s) behind this task are all completed already (cancelled): the
  /// engine may drop it.
  virtual bool settled() const noexcept { return false; }

  EncodedCall call;
  std::uint64_t id = 0;  ///< assigned by the engine at submit
  int attempts = 0;      ///< how many times it ran on a worker that crashed or timed out
};

/// A source of tasks: a map over many items hands out chunks as workers have room.
class Job {
 public:
  virtual ~Job() = default;
  /// The next chunk for a pool of `workers`, or null when every item has been handed out.
  /// Called under the engine's lock: keep it short.
  virtual std::unique_ptr<Task> next(std::size_t workers) = 0;
  /// Fails every item not yet handed out with `error` (terminate, shutdown(cancel_futures)).
  virtual void cancel_remaining(const std::exception_ptr& error) noexcept = 0;
};

struct EngineOptions {
  std::size_t workers = 0;                     ///< 0 = cpu_count()
  std::optional<StartMethod> start{};          ///< nullopt = get_start_method() at construction
  std::string worker_name = "PoolWorker";      ///< workers are named <worker_name>-<n>
  std::shared_ptr<EncodedCall> initializer{};  ///< sent to every worker first; null = none
  std::size_t max_tasks_per_child = 0;         ///< 0 = unlimited
  std::optional<std::chrono::nanoseconds> task_timeout{};
  int max_retries = 0;
  std::size_t memory_limit = 0;  ///< bytes of address space per worker; 0 = none
};

class EngineCore;

/// The shared segments a map's trivially copyable results are written into by the workers
/// (map_job.hpp), one per running map. One is kept for the next map: a fresh segment costs its
/// zero-filling plus a page fault per page in every process that touches it, which for cheap
/// items is more than the map's work. Shared by the engine and the maps (which may outlive it).
class OutputSegments {
 public:
  /// A segment of at least `bytes` (the spare one if big enough; else a new one).
  SharedSegment take(std::size_t bytes);
  /// Returns a segment no map writes into any more; the larger of it and the spare is kept.
  void give(SharedSegment segment) noexcept;

 private:
  std::mutex mutex_;
  SharedSegment spare_;
};

/// Where a map chunk's results go: item k of the chunk at byte offset + k * sizeof(R) of
/// `segment`. Travels as the segment's descriptor (the worker keeps the last few mapped:
/// worker::map_output) and the offset.
struct OutputRef {
  SharedSegment segment;
  std::uint64_t offset = 0;
};

/// A running pool of workers. Thread-safe: every member may be called from any thread of the
/// owning process.
class Engine {
 public:
  explicit Engine(EngineOptions options);
  /// terminate() unless close()+join() already ended it.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Queues a task. PoolClosed after close()/terminate(); BrokenPool if the pool is broken
  /// (its initializer failed). Sets task->id.
  void submit(std::unique_ptr<Task> task);
  void submit(std::shared_ptr<Job> job);
  /// A new task id, for futures that need a force-cancel hook before submit().
  std::uint64_t reserve_id() noexcept;
  /// The hook a Future's cancel(force) calls for task `id`.
  std::function<bool()> force_cancel_hook(std::uint64_t id) const;

  /// No more submissions; workers exit once everything queued is done.
  void close();
  /// Waits until every worker has exited (after close() or terminate()). UsageError if
  /// neither was called.
  void join();
  /// Kills every worker now; every unfinished task fails with Cancelled.
  void terminate() noexcept;
  /// Fails every task not yet dispatched with Cancelled (executor shutdown(cancel_futures)).
  void cancel_pending() noexcept;

  std::size_t worker_count() const noexcept;
  bool closed() const noexcept;
  /// The segments maps write trivially copyable results into.
  const std::shared_ptr<OutputSegments>& output_segments() const noexcept { return outputs_; }

 private:
  std::shared_ptr<EngineCore> core_;
  std::shared_ptr<OutputSegments> outputs_ = std::make_shared<OutputSegments>();
};

// ---- inside a worker process -------------------------------------------------------------

namespace worker {
/// The encoder a map chunk writes its outcome into, or null outside a pool worker's task.
Encoder* result_encoder() noexcept;
/// Records that item `k` of the running task starts (read by the parent after a crash).
void set_item(std::uint64_t k) noexcept;
/// Where set_item stores (null outside a pool worker): for loops that store per item inline.
std::atomic<std::uint64_t>* item_slot() noexcept;
/// The mapping of the output segment behind `fd` (received with a map chunk): the same
/// segment arrives with every chunk of a map, and the pool reuses it for later maps, so the
/// last few stay mapped (keyed by inode) instead of being mapped and faulted in per chunk.
SharedSegment map_output(UniqueFd fd);
}  // namespace worker

}  // namespace mproc::detail

template <>
struct mproc::handle_codec<mproc::detail::OutputRef> {
  static void encode(Encoder& out, const detail::OutputRef& ref);
  static detail::OutputRef decode(Decoder& in);
};
