// engine.cpp — the parent side of the pool engine (see include/mproc/detail/engine.hpp).
//
// Locking. `mutex_` guards the scheduling state (pending work, workers, what each holds).
// `send_mutex_` serialises flush(), so the frames for one worker leave in dispatch order.
// Tasks are shared_ptrs: a send reads a task's bytes while a worker's death may already have
// moved the task elsewhere. The engine thread never blocks sending tasks (a sender thread and
// submitting threads do): it must always be free to read results (see request_flush()).
// Futures are completed (callbacks run) with no engine lock held.
#include "mproc/detail/engine.hpp"

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <thread>

#include "detail/sys.hpp"
#include "engine_protocol.hpp"
#include "engine_worker.hpp"
#include "lifeline.hpp"
#include "mproc/detail/remote_exception.hpp"
#include "mproc/detail/shared_segment.hpp"
#include "mproc/errors.hpp"
#include "mproc/log.hpp"
#include "mproc/pipe.hpp"
#include "worker_group.hpp"

namespace mproc::detail {

namespace proto = engine_protocol;
using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

EncodedCall EncodedCall::from(Encoder&& out) {
  EncodedCall call;
  call.fds.reserve(out.fds().size());
  for (int fd : out.fds()) call.fds.push_back(sys::dup(fd));
  call.bytes = std::move(out.bytes());
  return call;
}

SharedSegment OutputSegments::take(std::size_t bytes) {
  {
    std::lock_guard lock(mutex_);
    if (spare_ && spare_.size() >= bytes) return std::move(spare_);
  }
  return SharedSegment::create(bytes, "mproc-map-output");
}

void OutputSegments::give(SharedSegment segment) noexcept {
  std::lock_guard lock(mutex_);
  if (!spare_ || segment.size() > spare_.size()) spare_ = std::move(segment);
}

std::array<std::unique_ptr<Task>, 3> Task::split(std::size_t) {
  throw UsageError("Task::split on a single-item task");
}

namespace {

/// Tasks dispatched ahead of the one running: enough to cover this much work, so that tiny
/// tasks do not wait for a round trip each, and few enough to keep the rest cancellable.
constexpr nanoseconds window_work = std::chrono::microseconds(200);
constexpr std::size_t min_window = 2;
constexpr std::size_t max_window = 64;
/// Calls up to this size are copied into a batch frame; larger ones go alone, in place.
constexpr std::size_t batch_threshold = 64 * 1024;

std::atomic<std::uint64_t> g_worker_number{0};

std::int64_t steady_ns() {
  return std::chrono::duration_cast<nanoseconds>(Clock::now().time_since_epoch()).count();
}

enum class KillReason { none, timeout, cancel, protocol };

struct Worker {
  std::size_t slot = 0;
  std::optional<Process> process;  // set once started
  Connection conn;
  int pid = 0;
  std::deque<std::shared_ptr<Task>> held;  // sent or about to be sent, in order
  std::size_t unsent = 0;                  // the last `unsent` of held are not sent yet
  std::size_t budget = std::numeric_limits<std::size_t>::max();  // max_tasks_per_child
  bool stop_sent = false;
  bool exited = false;   // reaped
  bool ran_any = false;  // a result of it has arrived
  KillReason kill_reason = KillReason::none;
  std::uint64_t kill_task = 0;
  Clock::time_point last_progress = Clock::now();
};

struct Pending {
  std::shared_ptr<Task> task;
  std::shared_ptr<Job> job;
};

}  // namespace

class EngineCore : public std::enable_shared_from_this<EngineCore> {
 public:
  explicit EngineCore(EngineOptions options) : options_(std::move(options)) {
    if (options_.workers == 0) options_.workers = static_cast<std::size_t>(cpu_count());
    method_ = options_.start ? *options_.start : get_start_method();
    slots_ = SharedSegment::create(options_.workers * sizeof(proto::Slot), "mproc-pool");
    wake_ = sys::eventfd();
    // Workers arm this to have the kernel SIGKILL their process groups when we die.
    lifeline::ensure();
    owner_lifeline_ = sys::dup(lifeline::read_fd());
  }

  void start() {
    workers_.resize(options_.workers);
    try {
      for (std::size_t i = 0; i < options_.workers; ++i) workers_[i] = start_worker(i);
    } catch (...) {
      kill_all();
      for (auto& w : workers_) {
        if (w) reap(*w);
      }
      throw;
    }
    thread_ = std::thread([self = shared_from_this()] { self->loop(); });
    thread_id_ = thread_.get_id();
  }

  ~EngineCore() = default;

  // ---- submission ----------------------------------------------------------------------

  void submit(Pending entry) {
    const bool small = entry.task && entry.task->call.bytes.size() <= batch_threshold;
    {
      std::lock_guard lock(mutex_);
      check_open_locked();
      if (entry.task && entry.task->id == 0) entry.task->id = reserve_id();
      pending_.push_back(std::move(entry));
      dispatch_locked();
    }
    // A small task is sent by this thread (no hand-off on the latency path); map chunks and
    // large calls go through the sender thread, so that submit never blocks for long on a
    // busy worker's full socket.
    if (small) {
      flush();
    } else {
      request_flush();
    }
    // The engine thread may be sleeping without a deadline: have it arm the task's timeout.
    if (options_.task_timeout) sys::eventfd_signal(wake_.get());
  }

  std::uint64_t reserve_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  bool force_cancel(std::uint64_t id) {
    std::shared_ptr<Task> removed;
    std::lock_guard lock(mutex_);
    for (auto& w : workers_) {
      if (!w || w->exited) continue;
      auto it =
          std::find_if(w->held.begin(), w->held.end(), [&](const auto& t) { return t->id == id; });
      if (it == w->held.end()) continue;
      const auto* slot = slot_of(*w);
      const std::uint64_t running = slot->task_id.load(std::memory_order_acquire);
      if (running == id || (running == 0 && it == w->held.begin())) {
        // Running (or about to): only killing the worker stops it.
        if (w->kill_reason == KillReason::none) {
          w->kill_reason = KillReason::cancel;
          w->kill_task = id;
          w->process->kill();
        }
        return true;
      }
      // Queued in the worker behind another task: forget it; its result, if the worker gets
      // to it, is ignored. The future is cancelled by our caller.
      const auto pos = static_cast<std::size_t>(it - w->held.begin());
      const std::size_t first_unsent = w->held.size() - w->unsent;
      if (pos >= first_unsent) --w->unsent;
      removed = std::move(*it);
      w->held.erase(it);
      return true;
    }
    return false;
  }

  // ---- lifecycle -------------------------------------------------------------------------

  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    sys::eventfd_signal(wake_.get());
  }

  void join() {
    if (std::this_thread::get_id() == thread_id_) {
      throw UsageError(
          "Pool/executor join() from one of its own done-callbacks would wait for itself; "
          "join from another thread");
    }
    {
      std::lock_guard lock(mutex_);
      if (!closed_) throw UsageError("join(): close() or terminate() the pool first");
    }
    std::lock_guard join_lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
  }

  void terminate() noexcept {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      terminated_ = true;
      kill_all();
    }
    cancel_everything(std::make_exception_ptr(Cancelled("the pool was terminated")));
    try {
      sys::eventfd_signal(wake_.get());
    } catch (const Error&) {
    }
    if (std::this_thread::get_id() == thread_id_) return;  // the loop ends by itself
    std::lock_guard join_lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
  }

  void cancel_pending() noexcept {
    std::deque<Pending> taken;
    {
      std::lock_guard lock(mutex_);
      taken.swap(pending_);
    }
    const auto error = std::make_exception_ptr(Cancelled("cancelled by shutdown(cancel_futures)"));
    for (auto& p : taken) {
      if (p.task) p.task->fail(error);
      if (p.job) p.job->cancel_remaining(error);
    }
  }

  std::size_t worker_count() const noexcept { return options_.workers; }
  bool closed() const noexcept {
    std::lock_guard lock(mutex_);
    return closed_;
  }

 private:
  proto::Slot* slot_of(const Worker& w) const {
    return static_cast<proto::Slot*>(slots_.data()) + w.slot;
  }

  void check_open_locked() const {
    if (broken_) std::rethrow_exception(broken_error_);
    if (closed_)
      throw PoolClosed("the pool is closed (close(), shutdown() or terminate() was called)");
  }

  std::unique_ptr<Worker> start_worker(std::size_t slot) {
    auto w = std::make_unique<Worker>();
    w->slot = slot;
    auto* s = static_cast<proto::Slot*>(slots_.data()) + slot;
    s->task_id.store(0, std::memory_order_relaxed);
    s->item.store(0, std::memory_order_relaxed);
    s->ready.store(0, std::memory_order_relaxed);
    auto [parent_end, child_end] = Pipe();
    proto::WorkerSettings settings;
    settings.max_tasks = options_.max_tasks_per_child;
    settings.memory_limit = options_.memory_limit;
    settings.slot = static_cast<std::uint32_t>(slot);
    settings.has_initializer = options_.initializer ? 1 : 0;
    const std::uint64_t n = g_worker_number.fetch_add(1, std::memory_order_relaxed) + 1;
    ProcessOptions po;
    po.name = options_.worker_name + "-" + std::to_string(n);
    po.daemon = true;
    po.start = method_;
    w->process.emplace(po, &pool_worker_main, child_end, slots_, settings,
                       OwnerLifeline{owner_lifeline_.get()});
    w->process->start();
    child_end.close();  // so that the worker's death reads as EOF here
    w->conn = std::move(parent_end);
    w->pid = w->process->pid();
    if (options_.max_tasks_per_child != 0) w->budget = options_.max_tasks_per_child;
    if (options_.initializer) {
      // A copy: the encoded call may be shared with other pools (the same Initializer).
      std::vector<std::byte> bytes = options_.initializer->bytes;
      std::fill_n(bytes.begin(), proto::header_size, std::byte{0});
      bytes[0] = std::byte{static_cast<std::uint8_t>(proto::ToWorker::init)};
      std::vector<int> fds;
      for (const auto& fd : options_.initializer->fds) fds.push_back(fd.get());
      try {
        w->conn.send_frame(bytes, fds);
      } catch (const ConnectionClosed&) {
        // Died at once: the loop sees its sentinel.
      }
    }
    log(LogLevel::debug,
        "pool: started worker " + w->process->name() + " (pid " + std::to_string(w->pid) + ")");
    return w;
  }

  void kill_all() noexcept {
    for (auto& w : workers_) {
      if (w && !w->exited) {
        try {
          w->process->kill();
        } catch (...) {
        }
      }
    }
  }

  /// Fails every queued and held task with `error` (terminate, broken pool).
  void cancel_everything(const std::exception_ptr& error) noexcept {
    std::deque<Pending> pending;
    std::vector<std::shared_ptr<Task>> held;
    {
      std::lock_guard lock(mutex_);
      pending.swap(pending_);
      for (auto& w : workers_) {
        if (!w) continue;
        for (auto& t : w->held) held.push_back(std::move(t));
        w->held.clear();
        w->unsent = 0;
      }
    }
    for (auto& t : held) t->fail(error);
    for (auto& p : pending) {
      if (p.task) p.task->fail(error);
      if (p.job) p.job->cancel_remaining(error);
    }
  }

  // ---- dispatch ----------------------------------------------------------------------------

  std::size_t window() const noexcept {
    const double per_task = std::max(task_ns_ewma_, 1.0);
    const double n = std::ceil(static_cast<double>(window_work.count()) / per_task);
    return std::clamp(static_cast<std::size_t>(n), min_window, max_window);
  }

  /// The next task to run, or null when nothing is waiting. Drops cancelled tasks.
  std::shared_ptr<Task> take_pending_locked() {
    while (!pending_.empty()) {
      Pending& front = pending_.front();
      if (front.task) {
        auto task = std::move(front.task);
        pending_.pop_front();
        if (task->settled()) continue;
        // The parts of a split chunk are new tasks: without an id of their own they would
        // read as "no task running" in the worker's slot (no timeout, no blame) and match
        // any other unnamed task's result.
        if (task->id == 0) task->id = reserve_id();
        return task;
      }
      auto task = front.job->next(options_.workers);
      if (!task) {
        pending_.pop_front();
        continue;
      }
      task->id = reserve_id();
      return task;
    }
    return nullptr;
  }

  /// Hands pending work to workers with room, always to the least loaded one (an idle worker
  /// before one with a queue). Sending is flush()'s job.
  void dispatch_locked() {
    if (terminated_ || broken_) return;
    const std::size_t limit = window();
    while (!pending_.empty()) {
      Worker* best = nullptr;
      for (auto& w : workers_) {
        if (!w || w->exited || w->stop_sent || w->kill_reason != KillReason::none) continue;
        if (w->held.size() >= limit || w->budget == 0) continue;
        if (best == nullptr || w->held.size() < best->held.size()) best = w.get();
      }
      if (best == nullptr) return;
      auto task = take_pending_locked();
      if (!task) return;
      if (!task->start()) continue;  // cancelled meanwhile
      write_task_header(*task);
      best->held.push_back(std::move(task));
      ++best->unsent;
      --best->budget;
    }
  }

  /// The TASK frame header, written once in front of the call (the id never changes), so
  /// that a send never writes into bytes another send may be reading.
  static void write_task_header(Task& t) {
    std::vector<std::byte>& bytes = t.call.bytes;
    if (bytes[0] != std::byte{0}) return;
    std::memcpy(bytes.data() + 8, &t.id, 8);
    bytes[0] = std::byte{static_cast<std::uint8_t>(proto::ToWorker::task)};
  }

  struct Outgoing {
    Connection conn;
    std::vector<std::shared_ptr<Task>> tasks;  // shared: a death may drop them meanwhile
  };

  /// Sends every task that dispatch assigned and nobody sent yet. Any thread.
  void flush() noexcept {
    std::lock_guard send_lock(send_mutex_);
    for (;;) {
      std::vector<Outgoing> out;
      {
        std::lock_guard lock(mutex_);
        for (auto& w : workers_) {
          if (!w || w->unsent == 0) continue;
          Outgoing o{w->conn, {}};
          for (std::size_t i = w->held.size() - w->unsent; i < w->held.size(); ++i) {
            o.tasks.push_back(w->held[i]);
          }
          w->unsent = 0;
          out.push_back(std::move(o));
        }
      }
      if (out.empty()) return;
      for (auto& o : out) send_tasks(o);
    }
  }

  void send_tasks(Outgoing& o) noexcept {
    try {
      std::vector<std::byte> batch;
      std::uint32_t batched = 0;
      const auto flush_batch = [&] {
        if (batched == 0) return;
        batch[0] = std::byte{static_cast<std::uint8_t>(proto::ToWorker::batch)};
        std::memcpy(batch.data() + 4, &batched, 4);
        o.conn.send_frame(batch);
        batched = 0;
      };
      for (const auto& t : o.tasks) {
        EncodedCall& call = t->call;
        const std::size_t size = call.bytes.size() - proto::header_size;
        if (call.fds.empty() && size <= batch_threshold) {
          if (batched == 0) batch.assign(proto::header_size, std::byte{0});
          const std::uint64_t id = t->id, n = size;
          const auto* idp = reinterpret_cast<const std::byte*>(&id);
          const auto* np = reinterpret_cast<const std::byte*>(&n);
          batch.insert(batch.end(), idp, idp + 8);
          batch.insert(batch.end(), np, np + 8);
          batch.insert(batch.end(), call.bytes.begin() + proto::header_size, call.bytes.end());
          ++batched;
          if (batch.size() > batch_threshold) flush_batch();
          continue;
        }
        flush_batch();
        std::vector<int> fds;
        for (const auto& fd : call.fds) fds.push_back(fd.get());
        o.conn.send_frame(call.bytes, fds);
      }
      flush_batch();
    } catch (const std::exception& e) {
      // The worker died (ConnectionClosed) or the socket failed: the engine thread sees the
      // death and requeues or fails what it held.
      log(LogLevel::debug, std::string("pool: send to a worker failed: ") + e.what());
    }
  }

  // ---- the engine thread -----------------------------------------------------------------

  /// Asks the sender thread to send what dispatch assigned. The engine thread never sends
  /// tasks itself: it must always be free to read results, or a worker blocked writing a large
  /// result and this thread blocked writing it a large task would wait for each other forever.
  void request_flush() {
    {
      std::lock_guard lock(sender_mutex_);
      flush_requested_ = true;
    }
    sender_cv_.notify_one();
  }

  void sender_loop() noexcept {
    for (;;) {
      {
        std::unique_lock lock(sender_mutex_);
        sender_cv_.wait(lock, [&] { return flush_requested_ || sender_stop_; });
        if (!flush_requested_ && sender_stop_) return;
        flush_requested_ = false;
      }
      flush();
    }
  }

  void stop_sender() noexcept {
    {
      std::lock_guard lock(sender_mutex_);
      sender_stop_ = true;
    }
    sender_cv_.notify_one();
    if (sender_.joinable()) sender_.join();
  }

  void loop() noexcept {
    sender_ = std::thread([this] { sender_loop(); });
    struct StopSender {
      EngineCore* core;
      ~StopSender() { core->stop_sender(); }
    } stop_sender_at_exit{this};
    try {
      run_loop();
    } catch (const std::exception& e) {
      // Nothing above is expected to throw; if it does, the pool cannot go on: fail everything
      // rather than leave futures hanging.
      log(LogLevel::error, std::string("pool engine failed: ") + e.what());
      {
        std::lock_guard lock(mutex_);
        broken_ = true;
        broken_error_ =
            std::make_exception_ptr(BrokenPool(std::string("pool engine failed: ") + e.what()));
        closed_ = true;
        kill_all();
      }
      cancel_everything(broken_error_);
      reap_all();
    }
  }

  void reap_all() noexcept {
    for (auto& w : workers_) {
      if (w && !w->exited) {
        try {
          reap(*w);
        } catch (...) {
        }
        w->exited = true;
      }
    }
  }

  /// Kills what is left of `w`'s process group, then waits for `w` and reaps it (the paths
  /// where the worker was just SIGKILLed; on_exit does the same for a worker that ended).
  static void reap(Worker& w) {
    worker_group::kill(w.pid, "pool");
    w.process->join();
  }

  void run_loop() {
    std::vector<pollfd> fds;
    std::vector<std::size_t> owner;  // worker slot of fds[i] (i >= 1)
    for (;;) {
      std::optional<nanoseconds> timeout;
      {
        std::lock_guard lock(mutex_);
        if (finished_locked()) return;
        fds.assign(1, pollfd{wake_.get(), POLLIN, 0});
        owner.assign(1, 0);
        for (auto& w : workers_) {
          if (!w || w->exited) continue;
          fds.push_back(pollfd{w->conn.fileno(), POLLIN, 0});
          owner.push_back(w->slot);
          fds.push_back(pollfd{w->process->sentinel(), POLLIN, 0});
          owner.push_back(w->slot);
        }
        timeout = next_timeout_locked();
        if (needs_replacement_locked()) {
          // A replacement failed to start: try again shortly.
          const nanoseconds retry = std::chrono::milliseconds(100);
          timeout = timeout ? std::min(*timeout, retry) : retry;
        }
      }
      sys::poll(fds.data(), fds.size(), timeout);
      if (fds[0].revents != 0) sys::eventfd_drain(wake_.get());
      // Results first, then deaths: a worker's last results precede its death.
      for (std::size_t i = 1; i < fds.size(); i += 2) {
        if (fds[i].revents != 0) receive(owner[i]);
      }
      for (std::size_t i = 2; i < fds.size(); i += 2) {
        if (fds[i].revents != 0) on_exit(owner[i]);
      }
      check_timeouts();
      bool became_broken;
      bool to_send;
      {
        std::lock_guard lock(mutex_);
        became_broken = replace_workers_locked();
        dispatch_locked();
        stop_idle_workers_locked();
        to_send = has_unsent_locked();
      }
      if (became_broken) cancel_everything(broken_error_);
      // Only when there is something to send: waking the sender thread for nothing costs a
      // context switch per result, on the cores the caller and the workers need.
      if (to_send) request_flush();
    }
  }

  bool finished_locked() const {
    if (!closed_) return false;
    for (const auto& w : workers_) {
      if (w && !w->exited) return false;
    }
    return true;
  }

  /// When the nearest running task times out (nullopt: no timeout pending).
  std::optional<nanoseconds> next_timeout_locked() const {
    if (!options_.task_timeout) return std::nullopt;
    const std::int64_t now = steady_ns();
    std::optional<std::int64_t> nearest;
    for (const auto& w : workers_) {
      if (!w || w->exited || w->held.empty() || w->kill_reason != KillReason::none) continue;
      const auto* s = slot_of(*w);
      const std::int64_t start = s->task_id.load(std::memory_order_acquire) != 0
                                     ? s->started_ns.load(std::memory_order_relaxed)
                                     : now;
      const std::int64_t due = start + options_.task_timeout->count();
      nearest = nearest ? std::min(*nearest, due) : due;
    }
    if (!nearest) return std::nullopt;
    return nanoseconds(std::max<std::int64_t>(*nearest - now, 0) + 1'000'000);  // +1 ms slack
  }

  void check_timeouts() {
    if (!options_.task_timeout) return;
    std::lock_guard lock(mutex_);
    const std::int64_t now = steady_ns();
    for (auto& w : workers_) {
      if (!w || w->exited || w->kill_reason != KillReason::none) continue;
      const auto* s = slot_of(*w);
      const std::uint64_t running = s->task_id.load(std::memory_order_acquire);
      if (running == 0) continue;
      if (now - s->started_ns.load(std::memory_order_relaxed) < options_.task_timeout->count())
        continue;
      const bool ours = std::any_of(w->held.begin(), w->held.end(),
                                    [&](const auto& t) { return t->id == running; });
      if (!ours) continue;
      w->kill_reason = KillReason::timeout;
      w->kill_task = running;
      log(LogLevel::warning,
          "pool: task timed out on " + w->process->name() + "; killing and replacing the worker");
      w->process->kill();
    }
  }

  /// Reads the frames waiting on worker `slot`'s connection.
  void receive(std::size_t slot) {
    Connection conn;
    int pid;
    {
      std::lock_guard lock(mutex_);
      auto& w = workers_[slot];
      if (!w || w->exited) return;
      conn = w->conn;
      pid = w->pid;
    }
    for (;;) {
      ReceivedFrame frame;
      try {
        if (!conn.poll()) return;
        frame = conn.recv_frame();
      } catch (const ConnectionClosed&) {
        return;  // its sentinel reports the death
      } catch (const ProtocolError& e) {
        protocol_violation(slot, e.what());
        return;
      }
      if (!handle_frame(slot, pid, frame)) return;
    }
  }

  void protocol_violation(std::size_t slot, const std::string& what) {
    std::lock_guard lock(mutex_);
    auto& w = workers_[slot];
    if (!w || w->kill_reason != KillReason::none) return;
    log(LogLevel::error, "pool: worker " + w->process->name() + " sent a malformed frame (" + what +
                             "); replacing it");
    w->kill_reason = KillReason::protocol;
    w->process->kill();
  }

  /// Handles one frame from worker `slot`; false if the worker must be dropped.
  bool handle_frame(std::size_t slot, int pid, ReceivedFrame& frame) {
    const std::span<const std::byte> bytes(frame.bytes);
    if (bytes.size() < proto::header_size) {
      protocol_violation(slot, "short frame");
      return false;
    }
    const auto type = static_cast<proto::ToParent>(bytes[0]);
    if (type == proto::ToParent::init_failed) {
      on_initializer_failed(slot, pid, bytes.subspan(proto::header_size));
      return false;
    }
    if (type != proto::ToParent::result || bytes.size() < proto::result_header_size) {
      protocol_violation(slot, "unknown frame type");
      return false;
    }
    const auto outcome = static_cast<proto::Outcome>(bytes[1]);
    std::uint64_t id;
    std::int64_t elapsed;
    std::memcpy(&id, bytes.data() + 8, 8);
    std::memcpy(&elapsed, bytes.data() + 16, 8);
    std::shared_ptr<Task> task;
    {
      std::lock_guard lock(mutex_);
      auto& w = workers_[slot];
      if (!w) return false;
      auto it =
          std::find_if(w->held.begin(), w->held.end(), [&](const auto& t) { return t->id == id; });
      if (it == w->held.end()) return true;  // force-cancelled while queued: ignore
      const auto pos = static_cast<std::size_t>(it - w->held.begin());
      if (pos >= w->held.size() - w->unsent) {
        protocol_violation_locked(*w, "result for a task not sent yet");
        return false;
      }
      task = std::move(*it);
      w->held.erase(it);
      w->last_progress = Clock::now();
      w->ran_any = true;
      fruitless_deaths_ = 0;
      const double per_task = static_cast<double>(std::max<std::int64_t>(elapsed, 0)) /
                              static_cast<double>(task->items());
      task_ns_ewma_ = task_seen_ ? 0.8 * task_ns_ewma_ + 0.2 * per_task : per_task;
      task_seen_ = true;
    }
    Decoder in(bytes.subspan(proto::result_header_size), frame.fds);
    if (outcome == proto::Outcome::value) {
      task->succeed(in, pid, nanoseconds(elapsed));
    } else {
      std::exception_ptr error;
      try {
        error = decode_exception(in, pid, task->index_of(0));
      } catch (...) {
        error = std::current_exception();
      }
      task->fail(error);
    }
    return true;
  }

  void protocol_violation_locked(Worker& w, const std::string& what) {
    if (w.kill_reason != KillReason::none) return;
    log(LogLevel::error, "pool: worker " + w.process->name() + " sent a malformed frame (" + what +
                             "); replacing it");
    w.kill_reason = KillReason::protocol;
    w.process->kill();
  }

  void on_initializer_failed(std::size_t, int pid, std::span<const std::byte> payload) {
    std::string description = "the pool's initializer failed";
    try {
      Decoder in(payload);
      std::rethrow_exception(decode_exception(in, pid, -1));
    } catch (const std::exception& e) {
      description += ": ";
      description += e.what();
    } catch (...) {
    }
    log(LogLevel::error, "pool: " + description + "; the pool is broken");
    {
      std::lock_guard lock(mutex_);
      if (broken_) return;
      broken_ = true;
      broken_error_ = std::make_exception_ptr(BrokenPool(description));
      kill_all();
    }
    cancel_everything(broken_error_);
  }

  /// Worker `slot`'s process ended: collect its last results, fail what it was running,
  /// requeue what it had not started.
  void on_exit(std::size_t slot) {
    receive(slot);
    std::vector<std::pair<std::shared_ptr<Task>, std::exception_ptr>> to_fail;
    bool broke = false;
    {
      std::lock_guard lock(mutex_);
      auto& w = workers_[slot];
      if (!w || w->exited) return;
      worker_group::kill(w->pid, "pool");  // ended, not reaped: its pid still names the group
      w->process->join();                  // returns at once and reaps it
      w->exited = true;
      const int code = w->process->exitcode().value_or(0);
      const auto* s = slot_of(*w);
      const std::uint64_t running = s->task_id.load(std::memory_order_acquire);
      const std::uint64_t item = s->item.load(std::memory_order_acquire);
      if (!broken_ && !terminated_ && w->kill_reason == KillReason::none) {
        broke = note_death_locked(*w, code, running, s->ready.load(std::memory_order_acquire) != 0);
      }
      std::deque<std::shared_ptr<Task>> requeue;
      for (auto& t : w->held) {
        if (t->id != running || terminated_) {
          requeue.push_back(std::move(t));
          continue;
        }
        lose_task_locked(std::move(t), *w, code, item, requeue, to_fail);
      }
      w->held.clear();
      w->unsent = 0;
      if (code != 0 || running != 0) {
        log(LogLevel::warning, "pool: worker " + w->process->name() + " (pid " +
                                   std::to_string(w->pid) + ") " +
                                   (code < 0 ? "was killed by signal " + std::to_string(-code)
                                             : "exited with status " + std::to_string(code)));
      }
      if (!terminated_ && !broken_) {
        for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) {
          pending_.push_front(Pending{std::move(*it), nullptr});
        }
      } else {
        for (auto& t : requeue) {
          to_fail.emplace_back(std::move(t), terminated_ ? std::make_exception_ptr(
                                                               Cancelled("the pool was terminated"))
                                                         : broken_error_);
        }
      }
    }
    for (auto& [task, error] : to_fail) task->fail(error);
    if (broke) cancel_everything(broken_error_);
  }

  /// Counts deaths of workers that never got to run anything: they died before their
  /// initializer returned, or with tasks in hand but before starting the first. When every
  /// start fails like that (an initializer that crashes or exits, a memory_limit too small for
  /// a worker to live), replacing them would fork forever while the pool's callers wait
  /// (Python's Pool does): after a few in a row the pool is broken instead. Any result resets
  /// the count, and so does a death that blames a task; a ready, idle worker killed from
  /// outside does not count. True if the pool just became broken.
  bool note_death_locked(const Worker& w, int code, std::uint64_t running, bool ready) {
    const bool fruitless = running == 0 && !w.ran_any && (!ready || (code != 0 && !w.held.empty()));
    if (!fruitless) {
      if (running != 0) fruitless_deaths_ = 0;
      return false;
    }
    const std::size_t limit = std::max<std::size_t>(4, 2 * options_.workers);
    if (++fruitless_deaths_ < limit) return false;
    const std::string how = code < 0 ? "was killed by signal " + std::to_string(-code)
                                     : "exited with status " + std::to_string(code);
    std::string description = std::to_string(fruitless_deaths_) +
                              " pool workers in a row died before they could run a task (the "
                              "last, " +
                              w.process->name() + " pid " + std::to_string(w.pid) + ", " + how +
                              (ready ? ")" : " before its initializer returned)") +
                              ": check that the initializer does not crash or exit, and that "
                              "memory_limit leaves a worker room to start";
    log(LogLevel::error, "pool: " + description + "; the pool is broken");
    broken_ = true;
    broken_error_ = std::make_exception_ptr(BrokenPool(description));
    kill_all();
    return true;
  }

  /// The worker died running `task` at `item`: requeue the parts of a chunk it had not
  /// reached, and retry or fail the item itself.
  void lose_task_locked(
      std::shared_ptr<Task> task, const Worker& w, int code, std::uint64_t item,
      std::deque<std::shared_ptr<Task>>& requeue,
      std::vector<std::pair<std::shared_ptr<Task>, std::exception_ptr>>& to_fail) {
    if (task->items() > 1) {
      const std::size_t k = std::min<std::size_t>(item, task->items() - 1);
      const int attempts = task->attempts;
      auto parts = task->split(k);
      if (parts[0]) requeue.push_back(std::move(parts[0]));
      task = std::move(parts[1]);
      task->attempts = attempts;
      if (parts[2]) requeue.push_back(std::move(parts[2]));
    }
    const std::int64_t index = task->index_of(0);
    std::exception_ptr error;
    bool retry = false;
    switch (w.kill_reason) {
      case KillReason::cancel:
        error = std::make_exception_ptr(Cancelled("Future: cancelled while running (forced)"));
        break;
      case KillReason::timeout:
        error = std::make_exception_ptr(TaskTimeout(w.pid, *options_.task_timeout, index));
        retry = task->attempts < options_.max_retries;
        break;
      case KillReason::protocol:
        error = std::make_exception_ptr(ProtocolError(
            "the worker running this task sent a malformed message and was replaced"));
        break;
      case KillReason::none:
        error = std::make_exception_ptr(
            WorkerCrashed(w.pid, code < 0 ? -code : 0,
                          code < 0 ? std::nullopt : std::optional<int>(code), index));
        retry = task->attempts < options_.max_retries;
        break;
    }
    if (retry) {
      ++task->attempts;
      log(LogLevel::info, "pool: retrying task " + std::to_string(index) + " (attempt " +
                              std::to_string(task->attempts + 1) + ")");
      requeue.push_front(std::move(task));
      return;
    }
    to_fail.emplace_back(std::move(task), error);
  }

  bool has_pending_locked() const { return !pending_.empty(); }

  bool has_unsent_locked() const {
    return std::any_of(workers_.begin(), workers_.end(),
                       [](const auto& w) { return w && w->unsent > 0; });
  }

  bool needs_replacement_locked() const {
    if (terminated_ || broken_ || (closed_ && !has_pending_locked())) return false;
    return std::any_of(workers_.begin(), workers_.end(),
                       [](const auto& w) { return w && w->exited; });
  }

  /// Starts workers in the slots of exited ones. True if the pool just became broken (no
  /// worker can be started at all): the caller then fails everything, outside the lock.
  bool replace_workers_locked() {
    if (terminated_ || broken_) return false;
    for (auto& w : workers_) {
      if (!w || !w->exited) continue;
      // After close(), replace only while work remains.
      if (closed_ && !has_pending_locked()) continue;
      const std::size_t slot = w->slot;
      try {
        w = start_worker(slot);
      } catch (const std::exception& e) {
        log(LogLevel::error, std::string("pool: cannot start a replacement worker: ") + e.what());
        if (std::none_of(workers_.begin(), workers_.end(),
                         [](const auto& x) { return x && !x->exited; })) {
          broken_ = true;
          broken_error_ = std::make_exception_ptr(
              BrokenPool(std::string("no pool worker can be started: ") + e.what()));
          return true;
        }
        return false;  // the next loop turn tries again
      }
    }
    return false;
  }

  /// After close(): tells idle workers to exit once nothing is left to run.
  void stop_idle_workers_locked() {
    if (!closed_ || has_pending_locked()) return;
    for (auto& w : workers_) {
      if (!w || w->exited || w->stop_sent || !w->held.empty()) continue;
      w->stop_sent = true;
      std::byte frame[proto::header_size]{};
      frame[0] = std::byte{static_cast<std::uint8_t>(proto::ToWorker::stop)};
      try {
        w->conn.send_frame(frame);
      } catch (const Error&) {
        // Already gone: its sentinel says so.
      }
    }
  }

  EngineOptions options_;
  StartMethod method_ = StartMethod::fork;
  SharedSegment slots_;
  UniqueFd wake_;
  UniqueFd owner_lifeline_;  // a descriptor of this process's lifeline read end (workers arm it)

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::deque<Pending> pending_;
  bool closed_ = false;
  bool terminated_ = false;
  bool broken_ = false;
  std::exception_ptr broken_error_;
  double task_ns_ewma_ = 1e6;
  bool task_seen_ = false;
  std::size_t fruitless_deaths_ = 0;  // see note_death_locked

  std::mutex send_mutex_;  // serialises flush(): frames to one worker go out in order
  std::mutex sender_mutex_;
  std::condition_variable sender_cv_;
  bool flush_requested_ = false;
  bool sender_stop_ = false;
  std::thread sender_;
  std::mutex join_mutex_;
  std::thread thread_;
  std::thread::id thread_id_{};
  std::atomic<std::uint64_t> next_id_{1};
};

// ---- Engine ----------------------------------------------------------------------------------

Engine::Engine(EngineOptions options) : core_(std::make_shared<EngineCore>(std::move(options))) {
  core_->start();
}

Engine::~Engine() {
  if (core_) core_->terminate();
}

void Engine::submit(std::unique_ptr<Task> task) {
  core_->submit(Pending{std::move(task), nullptr});
}
void Engine::submit(std::shared_ptr<Job> job) {
  core_->submit(Pending{nullptr, std::move(job)});
}
std::uint64_t Engine::reserve_id() noexcept {
  return core_->reserve_id();
}

std::function<bool()> Engine::force_cancel_hook(std::uint64_t id) const {
  return [weak = std::weak_ptr<EngineCore>(core_), id] {
    const auto core = weak.lock();
    return core && core->force_cancel(id);
  };
}

void Engine::close() {
  core_->close();
}
void Engine::join() {
  core_->join();
}
void Engine::terminate() noexcept {
  core_->terminate();
}
void Engine::cancel_pending() noexcept {
  core_->cancel_pending();
}
std::size_t Engine::worker_count() const noexcept {
  return core_->worker_count();
}
bool Engine::closed() const noexcept {
  return core_->closed();
}

}  // namespace mproc::detail

void mproc::handle_codec<mproc::detail::OutputRef>::encode(Encoder& out,
                                                           const detail::OutputRef& ref) {
  handle_codec<detail::SharedSegment>::encode(out, ref.segment);
  out.write_bytes(&ref.offset, sizeof ref.offset);
}

mproc::detail::OutputRef mproc::handle_codec<mproc::detail::OutputRef>::decode(Decoder& in) {
  std::uint32_t index = 0;
  in.read_bytes(&index, sizeof index);
  detail::OutputRef ref;
  ref.segment = detail::worker::map_output(in.take_fd(index));
  in.read_bytes(&ref.offset, sizeof ref.offset);
  return ref;
}
