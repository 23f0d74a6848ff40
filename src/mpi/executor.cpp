// mpi/executor.cpp — the MPI backend: init/finalize, the worker ranks' serve loop, and rank 0's
// dispatcher thread (see include/mproc/mpi/executor.hpp for the design and progress strategy).
//
// Messages (all in MPI_COMM_WORLD, MPI_BYTE):
//   rank 0 -> worker, tag_task:   u64 task id | encoded call (detail/callable.hpp)
//   worker -> rank 0, tag_result: u64 task id | i64 pid | u8 status | payload
//       status 0: the call's encoded result (map chunks: the per-item outcomes)
//       status 1: the exception the call threw (detail/remote_exception.hpp)
//   rank 0 -> worker, tag_stop:   empty; the worker finalizes and exits 0.
// A worker handles its tasks in the order they arrive (MPI's non-overtaking rule per pair).
#include "mproc/mpi/executor.hpp"

// The C API only: the deprecated C++ bindings do not build with -Wextra -Werror.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <thread>
#include <unordered_map>
#include <variant>

namespace mproc::mpi {

MpiError::MpiError(int code, std::string call, const std::string& message)
    : Error(call + ": " + message), code_(code), call_(std::move(call)) {}

namespace {

constexpr int tag_task = 1;
constexpr int tag_result = 2;
constexpr int tag_stop = 3;
constexpr std::size_t result_header = 8 + 8 + 1;

std::string error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(len));
}

/// Every MPI call goes through this: MPI_COMM_WORLD's handler is MPI_ERRORS_RETURN.
void check(int rc, const char* call) {
  if (rc != MPI_SUCCESS) throw MpiError(rc, call, error_string(rc));
}

int to_int_count(std::size_t n) {
  if (n > static_cast<std::size_t>(INT_MAX)) {
    throw UsageError("mpi::Executor: a message of " + std::to_string(n) +
                     " bytes exceeds MPI's int count (2 GiB)");
  }
  return static_cast<int>(n);
}

/// Polling without spinning a core: for 50 µs after activity the caller polls between
/// sched_yield calls (which hand the core to any runnable process, so oversubscribed work is
/// not starved, yet keep the round-trip latency of a task exchange low), then sleeps in steps
/// that double from 2 µs to 200 µs, and 5 ms once idle for 100 ms.
class Backoff {
 public:
  void reset() noexcept {
    active_ = std::chrono::steady_clock::now();
    sleep_ = std::chrono::microseconds(2);
  }
  /// The pause before the next poll (zero: yield only).
  std::chrono::microseconds next() noexcept {
    const auto idle = std::chrono::steady_clock::now() - active_;
    if (idle < std::chrono::microseconds(50)) return std::chrono::microseconds(0);
    if (idle > std::chrono::milliseconds(100)) return std::chrono::microseconds(5000);
    const auto s = sleep_;
    sleep_ = std::min(sleep_ * 2, std::chrono::microseconds(200));
    return s;
  }
  void pause() noexcept {
    const auto d = next();
    if (d.count() == 0) {
      sched_yield();
      return;
    }
    timespec ts{0, static_cast<long>(d.count()) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }

 private:
  std::chrono::steady_clock::time_point active_ = std::chrono::steady_clock::now();
  std::chrono::microseconds sleep_{2};
};

/// Short sleeps stay short (the default 50 µs slack would dominate the backoff's first steps).
void set_fine_timer_slack() noexcept {
  (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
}

/// Waits for `request` without a blocking MPI call.
void wait_request(MPI_Request& request, const char* call) {
  Backoff backoff;
  for (;;) {
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), call);
    if (done) return;
    backoff.pause();
  }
}

// ---- process-wide state ---------------------------------------------------------------------

enum class Phase { none, running, finalized };
std::atomic<Phase> g_phase{Phase::none};
int g_rank = -1;
int g_size = 0;

thread_local Encoder* t_chunk_output = nullptr;

// ---- worker ranks ----------------------------------------------------------------------------

[[noreturn]] void worker_abort(const char* what) {
  std::fprintf(stderr, "mproc mpi worker rank %d: %s; aborting the job\n", g_rank, what);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 70);
  std::_Exit(70);
}

[[noreturn]] void serve() {
  set_fine_timer_slack();
  const std::int64_t pid = ::getpid();
  std::vector<std::byte> in_buf;
  Encoder out;
  try {
    Backoff backoff;
    for (;;) {
      int flag = 0;
      MPI_Message msg;
      MPI_Status st;
      check(MPI_Improbe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &msg, &st), "MPI_Improbe");
      if (!flag) {
        backoff.pause();
        continue;
      }
      backoff.reset();
      int count = 0;
      check(MPI_Get_count(&st, MPI_BYTE, &count), "MPI_Get_count");
      in_buf.resize(static_cast<std::size_t>(count));
      check(MPI_Mrecv(in_buf.data(), count, MPI_BYTE, &msg, MPI_STATUS_IGNORE), "MPI_Mrecv");
      if (st.MPI_TAG == tag_stop) break;
      if (st.MPI_TAG != tag_task || in_buf.size() < 8)
        worker_abort("unexpected message from rank 0");

      out.clear();
      out.write_bytes(in_buf.data(), 8);  // the task id
      out.write_bytes(&pid, sizeof pid);
      std::uint8_t status = 0;
      out.write_bytes(&status, 1);
      const Encoder::Mark payload = out.mark();
      try {
        Decoder in(std::span<const std::byte>(in_buf).subspan(8));
        mproc::detail::TaskScope scope;
        t_chunk_output = &out;
        mproc::detail::run_call(in, &out);
        t_chunk_output = nullptr;
        if (!out.fds().empty()) {
          throw UsageError("a task result carries a file descriptor, which cannot travel over MPI");
        }
      } catch (...) {
        t_chunk_output = nullptr;
        out.rewind(payload);
        status = 1;
        std::memcpy(out.bytes().data() + 16, &status, 1);
        mproc::detail::encode_exception(out, std::current_exception());
      }
      MPI_Request req;
      check(MPI_Isend(out.bytes().data(), to_int_count(out.bytes().size()), MPI_BYTE, 0, tag_result,
                      MPI_COMM_WORLD, &req),
            "MPI_Isend");
      wait_request(req, "MPI_Test");
    }
    check(MPI_Finalize(), "MPI_Finalize");
  } catch (const std::exception& e) {
    worker_abort(e.what());
  }
  g_phase = Phase::finalized;
  std::exit(0);
}

// ---- rank 0: the dispatcher ---------------------------------------------------------------

}  // namespace

namespace detail {

class Client {
 public:
  Client(std::size_t workers, std::size_t window) : workers_(workers), window_(window) {}
  const std::size_t workers_;
  const std::size_t window_;
  std::atomic<std::uint64_t> next_index_{1};
  // Guarded by the dispatcher's mutex:
  bool closed_ = false;
  std::size_t outstanding_ = 0;  // queued tasks + queued sources + tasks in flight
};

}  // namespace detail

namespace {

using detail::Client;
using detail::Source;
using detail::Task;

class Dispatcher {
 public:
  static Dispatcher& get() {
    static Dispatcher* d = new Dispatcher;  // leaked: must outlive every executor and atexit
    return *d;
  }

  void submit(const std::shared_ptr<Client>& client, std::unique_ptr<Task> task) {
    {
      std::lock_guard lock(mutex_);
      admit_locked(*client);
      queue_.push_back(Item{client, std::move(task), nullptr});
    }
    wake_.notify_one();
  }
  void submit(const std::shared_ptr<Client>& client, std::shared_ptr<Source> source) {
    {
      std::lock_guard lock(mutex_);
      admit_locked(*client);
      queue_.push_back(Item{client, nullptr, std::move(source)});
    }
    wake_.notify_one();
  }

  void shutdown(Client& client, bool wait, bool cancel_futures) {
    std::vector<Item> cancelled;
    {
      std::lock_guard lock(mutex_);
      client.closed_ = true;
      if (cancel_futures) {
        for (auto it = queue_.begin(); it != queue_.end();) {
          if (it->client.get() == &client) {
            cancelled.push_back(std::move(*it));
            it = queue_.erase(it);
          } else {
            ++it;
          }
        }
      }
    }
    // Outside the lock: completing a future runs its callbacks.
    if (!cancelled.empty()) {
      const auto error = std::make_exception_ptr(Cancelled("mpi::Executor: shut down"));
      for (auto& item : cancelled) {
        if (item.task) item.task->fail(error);
        if (item.source) item.source->cancel_remaining(error);
      }
      std::lock_guard lock(mutex_);
      client.outstanding_ -= cancelled.size();
      done_.notify_all();
    }
    if (wait) {
      std::unique_lock lock(mutex_);
      done_.wait(lock, [&] { return client.outstanding_ == 0; });
    }
  }

  /// Starts the thread on first use (rank 0 only).
  void ensure_started() {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable() && !stopping_) thread_ = std::thread([this] { run(); });
  }

  /// Drains the queue, stops the worker ranks, joins the thread.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) {
      thread_.join();
    } else {
      stop_workers();  // never started: stop the ranks from this thread
    }
    std::lock_guard lock(mutex_);
    if (broken_) {
      // The ranks were not told to stop and MPI may be unusable: end the job rather than
      // hang in MPI_Finalize.
      try {
        std::rethrow_exception(broken_);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "mproc mpi: the dispatcher failed (%s); aborting the job\n", e.what());
      } catch (...) {
      }
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 70);
    }
  }

 private:
  struct Item {
    std::shared_ptr<Client> client;
    std::unique_ptr<Task> task;
    std::shared_ptr<Source> source;
  };
  struct InFlight {
    std::shared_ptr<Client> client;
    std::unique_ptr<Task> task;
    int rank;
  };
  struct Send {
    MPI_Request request;
    std::vector<std::byte> buffer;
  };

  Dispatcher() = default;

  void admit_locked(Client& client) {
    if (broken_) {
      std::string why = "unknown error";
      try {
        std::rethrow_exception(broken_);
      } catch (const std::exception& e) {
        why = e.what();
      } catch (...) {
      }
      throw BrokenPool("mpi::Executor: the dispatcher failed: " + why);
    }
    if (client.closed_) throw PoolClosed("mpi::Executor: submit after shutdown()");
    if (stopping_) throw PoolClosed("mpi::Executor: submit after mproc::mpi::finalize()");
    ++client.outstanding_;
  }

  void run() {
    set_fine_timer_slack();
    in_flight_per_rank_.assign(static_cast<std::size_t>(g_size), 0);
    try {
      loop();
    } catch (...) {
      fail_everything(std::current_exception());
      return;  // the ranks cannot be told to stop reliably: stop() aborts the job
    }
    stop_workers();
  }

  void loop() {
    Backoff backoff;
    std::vector<std::pair<Item, int>> to_send;  // filled under the lock, sent outside
    for (;;) {
      bool progressed = false;
      {
        std::unique_lock lock(mutex_);
        fill_locked(to_send);
        if (to_send.empty() && in_flight_.empty() && sends_.empty()) {
          if (stopping_ && queue_.empty()) return;
          if (queue_.empty()) {
            // Nothing to poll: sleep until a submit or stop.
            wake_.wait(lock, [&] { return !queue_.empty() || stopping_; });
            backoff.reset();
            continue;
          }
        }
      }
      for (auto& [item, rank] : to_send) {
        send(std::move(item), rank);
        progressed = true;
      }
      to_send.clear();
      progressed |= test_sends();
      progressed |= receive_results();
      if (progressed) {
        backoff.reset();
        continue;
      }
      const auto pause = backoff.next();
      std::unique_lock lock(mutex_);
      if (pause.count() == 0) {
        lock.unlock();
        sched_yield();
      } else {
        // A submit wakes this at once; results are picked up at the next poll.
        wake_.wait_for(lock, pause, [&] { return has_room_for_head_locked(); });
      }
    }
  }

  /// The rank with the most room among the first `client.workers_`, or 0 when all are full.
  int pick_rank(const Client& client) const {
    int best = 0;
    std::size_t best_load = client.window_;
    for (std::size_t r = 1; r <= client.workers_; ++r) {
      const std::size_t load = in_flight_per_rank_[r];
      if (load < best_load) {
        best = static_cast<int>(r);
        best_load = load;
        if (load == 0) break;
      }
    }
    return best;
  }

  bool has_room_for_head_locked() const {
    return !queue_.empty() && pick_rank(*queue_.front().client) != 0;
  }

  /// Moves tasks from the queue into free window slots (FIFO; a map's source stays at the
  /// head until it has handed out every chunk). Reserves the slots: the sends follow.
  void fill_locked(std::vector<std::pair<Item, int>>& out) {
    std::size_t finished_sources = 0;
    while (!queue_.empty()) {
      Item& head = queue_.front();
      const int rank = pick_rank(*head.client);
      if (rank == 0) break;
      std::unique_ptr<Task> task;
      if (head.task) {
        task = std::move(head.task);
      } else {
        task = head.source->next(head.client->workers_);
        if (!task) {
          // Exhausted: the source's own share of `outstanding_` goes.
          --head.client->outstanding_;
          ++finished_sources;
          queue_.pop_front();
          continue;
        }
        ++head.client->outstanding_;
      }
      auto client = head.client;
      if (!head.source) queue_.pop_front();
      if (!task->start()) {  // cancelled while queued: its future is done already
        --client->outstanding_;
        ++finished_sources;
        continue;
      }
      ++in_flight_per_rank_[static_cast<std::size_t>(rank)];
      out.emplace_back(Item{std::move(client), std::move(task), nullptr}, rank);
    }
    if (finished_sources) done_.notify_all();
  }

  void send(Item item, int rank) {
    const std::uint64_t id = next_id_++;
    auto& msg = item.task->message;
    std::memcpy(msg.data(), &id, sizeof id);
    int count = 0;
    try {
      count = to_int_count(msg.size());
    } catch (...) {
      --in_flight_per_rank_[static_cast<std::size_t>(rank)];
      complete(item.client, [&] { item.task->fail(std::current_exception()); });
      return;
    }
    Send s{MPI_REQUEST_NULL, std::move(msg)};
    check(MPI_Isend(s.buffer.data(), count, MPI_BYTE, rank, tag_task, MPI_COMM_WORLD, &s.request),
          "MPI_Isend");
    sends_.push_back(std::move(s));
    in_flight_.emplace(id, InFlight{std::move(item.client), std::move(item.task), rank});
  }

  /// Frees the buffers of completed sends. True if any completed.
  bool test_sends() {
    bool any = false;
    for (auto it = sends_.begin(); it != sends_.end();) {
      int done = 0;
      check(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) {
        it = sends_.erase(it);
        any = true;
      } else {
        ++it;
      }
    }
    return any;
  }

  /// Takes every result that has arrived. True if any did.
  bool receive_results() {
    bool any = false;
    for (;;) {
      int flag = 0;
      MPI_Message msg;
      MPI_Status st;
      check(MPI_Improbe(MPI_ANY_SOURCE, tag_result, MPI_COMM_WORLD, &flag, &msg, &st),
            "MPI_Improbe");
      if (!flag) return any;
      any = true;
      int count = 0;
      check(MPI_Get_count(&st, MPI_BYTE, &count), "MPI_Get_count");
      buffer_.resize(static_cast<std::size_t>(count));
      check(MPI_Mrecv(buffer_.data(), count, MPI_BYTE, &msg, MPI_STATUS_IGNORE), "MPI_Mrecv");
      if (buffer_.size() < result_header) {
        throw ProtocolError("mpi::Executor: truncated result from rank " +
                            std::to_string(st.MPI_SOURCE));
      }
      std::uint64_t id = 0;
      std::int64_t pid = 0;
      std::uint8_t status = 0;
      std::memcpy(&id, buffer_.data(), 8);
      std::memcpy(&pid, buffer_.data() + 8, 8);
      std::memcpy(&status, buffer_.data() + 16, 1);
      const auto it = in_flight_.find(id);
      if (it == in_flight_.end() || it->second.rank != st.MPI_SOURCE) {
        throw ProtocolError("mpi::Executor: result for an unknown task from rank " +
                            std::to_string(st.MPI_SOURCE));
      }
      InFlight done = std::move(it->second);
      in_flight_.erase(it);
      Decoder in(std::span<const std::byte>(buffer_).subspan(result_header));
      {
        std::lock_guard lock(mutex_);
        --in_flight_per_rank_[static_cast<std::size_t>(done.rank)];
      }
      complete(done.client, [&] {
        if (status == 0) {
          done.task->succeed(in, pid);
        } else {
          done.task->fail_remote(in, pid);
        }
      });
    }
  }

  /// Runs `finish` (which completes the task's future) outside the lock, then counts the
  /// task done for its client.
  template <class Fn>
  void complete(const std::shared_ptr<Client>& client, Fn&& finish) {
    finish();
    std::lock_guard lock(mutex_);
    --client->outstanding_;
    done_.notify_all();
  }

  /// After an MPI failure: every queued and in-flight task fails; later submits throw.
  void fail_everything(std::exception_ptr error) noexcept {
    std::deque<Item> queued;
    {
      std::lock_guard lock(mutex_);
      broken_ = error;
      queued.swap(queue_);
    }
    for (auto& [id, f] : in_flight_) {
      f.task->fail(error);
      std::lock_guard lock(mutex_);
      --f.client->outstanding_;
    }
    in_flight_.clear();
    for (auto& item : queued) {
      if (item.task) item.task->fail(error);
      if (item.source) item.source->cancel_remaining(error);
      std::lock_guard lock(mutex_);
      --item.client->outstanding_;
    }
    std::lock_guard lock(mutex_);
    done_.notify_all();
  }

  void stop_workers() {
    try {
      std::vector<MPI_Request> reqs(static_cast<std::size_t>(g_size - 1), MPI_REQUEST_NULL);
      for (int r = 1; r < g_size; ++r) {
        check(MPI_Isend(nullptr, 0, MPI_BYTE, r, tag_stop, MPI_COMM_WORLD,
                        &reqs[static_cast<std::size_t>(r - 1)]),
              "MPI_Isend");
      }
      for (auto& r : reqs) wait_request(r, "MPI_Test");
      for (auto& s : sends_) wait_request(s.request, "MPI_Test");
      sends_.clear();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mproc mpi: stopping the worker ranks failed: %s\n", e.what());
      MPI_Abort(MPI_COMM_WORLD, 70);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;  // dispatcher: work queued or stop
  std::condition_variable done_;  // shutdown(wait): a client's outstanding count fell
  std::deque<Item> queue_;
  std::vector<std::size_t> in_flight_per_rank_;  // under mutex_ (pick_rank runs in the lock)
  std::exception_ptr broken_;
  bool stopping_ = false;
  std::thread thread_;
  // Dispatcher thread only:
  std::unordered_map<std::uint64_t, InFlight> in_flight_;
  std::deque<Send> sends_;
  std::vector<std::byte> buffer_;
  std::uint64_t next_id_ = 1;
};

void finalize_at_exit() noexcept {
  try {
    finalize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mproc::mpi::finalize at exit: %s\n", e.what());
  }
}

}  // namespace

// ---- public functions --------------------------------------------------------------------

void init(int& argc, char**& argv) {
  Phase expected = Phase::none;
  if (!g_phase.compare_exchange_strong(expected, Phase::running)) {
    throw UsageError("mproc::mpi::init: called twice");
  }
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  // From here on failures are returned, not fatal, so each call site reports its own.
  check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    throw MpiError(MPI_ERR_OTHER, "MPI_Init_thread",
                   "MPI_THREAD_SERIALIZED is needed (rank 0's dispatcher thread makes the MPI "
                   "calls), the library provides level " +
                       std::to_string(provided));
  }
  check(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &g_size), "MPI_Comm_size");
  if (g_rank != 0) serve();
  if (std::atexit(finalize_at_exit) != 0) {
    throw UsageError("mproc::mpi::init: atexit registration failed");
  }
}

void finalize() {
  if (g_rank != 0) return;
  Phase expected = Phase::running;
  if (!g_phase.compare_exchange_strong(expected, Phase::finalized)) return;
  Dispatcher::get().stop();
  check(MPI_Finalize(), "MPI_Finalize");
}

int rank() {
  if (g_phase.load() == Phase::none)
    throw UsageError("mproc::mpi::rank: call mproc::mpi::init first");
  return g_rank;
}

int world_size() {
  if (g_phase.load() == Phase::none) {
    throw UsageError("mproc::mpi::world_size: call mproc::mpi::init first");
  }
  return g_size;
}

namespace detail {

Encoder start_message() {
  Encoder out;
  const std::uint64_t id = 0;
  out.write_bytes(&id, sizeof id);
  return out;
}

std::vector<std::byte> finish_message(Encoder&& out) {
  if (!out.fds().empty()) {
    throw UsageError(
        "mpi::Executor: an argument carries a file descriptor (an mproc handle "
        "such as Queue, Lock or SharedMemory), which cannot travel over MPI");
  }
  return std::move(out.bytes());
}

std::shared_ptr<Client> open_client(const ExecutorOptions& options) {
  const Phase phase = g_phase.load();
  if (phase == Phase::none)
    throw UsageError("mpi::Executor: call mproc::mpi::init(argc, argv) first");
  if (phase == Phase::finalized) throw UsageError("mpi::Executor: after mproc::mpi::finalize()");
  if (g_rank != 0) throw UsageError("mpi::Executor: only rank 0 runs executors");
  const std::size_t available = static_cast<std::size_t>(g_size - 1);
  if (available == 0) {
    throw UsageError(
        "mpi::Executor: no worker ranks (world size 1): run under "
        "`mpiexec -n N ./app` with N >= 2");
  }
  if (options.max_workers > available) {
    throw UsageError("mpi::Executor: max_workers " + std::to_string(options.max_workers) +
                     " but only " + std::to_string(available) + " worker ranks");
  }
  if (options.window == 0) throw UsageError("mpi::Executor: window must be >= 1");
  Dispatcher::get().ensure_started();
  return std::make_shared<Client>(options.max_workers ? options.max_workers : available,
                                  options.window);
}

void submit(const std::shared_ptr<Client>& client, std::unique_ptr<Task> task) {
  Dispatcher::get().submit(client, std::move(task));
}

void submit(const std::shared_ptr<Client>& client, std::shared_ptr<Source> source) {
  Dispatcher::get().submit(client, std::move(source));
}

void shutdown(Client& client, bool wait, bool cancel_futures) {
  Dispatcher::get().shutdown(client, wait, cancel_futures);
}

std::size_t workers(const Client& client) noexcept {
  return client.workers_;
}

std::uint64_t next_index(Client& client) noexcept {
  return client.next_index_.fetch_add(1, std::memory_order_relaxed);
}

Encoder* chunk_output() noexcept {
  return t_chunk_output;
}

}  // namespace detail

}  // namespace mproc::mpi

// ---- Executor ------------------------------------------------------------------------------

namespace mproc::mpi {

Executor::Executor(ExecutorOptions options)
    : client_(detail::open_client(options)), uncaught_(std::uncaught_exceptions()) {}

Executor::~Executor() {
  if (!client_) return;  // moved-from
  try {
    detail::shutdown(*client_, true, std::uncaught_exceptions() > uncaught_);
  } catch (...) {
  }
}

void Executor::shutdown(bool wait, bool cancel_futures) {
  detail::shutdown(*client(), wait, cancel_futures);
}

std::size_t Executor::max_workers() const noexcept {
  return client_ ? detail::workers(*client_) : 0;
}

const std::shared_ptr<detail::Client>& Executor::client() const {
  if (!client_) throw UsageError("mpi::Executor: moved-from");
  return client_;
}

}  // namespace mproc::mpi
