// The coordinator of mproc::map / map_results / map_reduce (include/mproc/detail/one_shot_map.hpp):
// forks the workers, hands them work through a shared cursor, collects their chunk reports,
// and turns dead or stuck workers into per-item errors and re-runs.
//
// Shared memory (one memfd segment, inherited by every worker through fork):
//
//     +--------------------------------------------+----------------+-----+----------------+
//     | MapControl (64 bytes)                      | OneShotWorkerSlot 0| ... | OneShotWorkerSlot
//     n| |  cursor: next unclaimed item               | 64 bytes each  |     |                | |
//     item_cost_ps: measured cost of one item   |                |     |                |
//     +--------------------------------------------+----------------+-----+----------------+
//
// Worker report (one Connection frame per chunk, worker -> parent):
//
//     +-------------+-------------+---------------------------------------+
//     | first: u64  | last: u64   | the kernel's report for [first, last) |
//     +-------------+-------------+---------------------------------------+
//
// Invariants
//  - Every item is claimed exactly once from the cursor; afterwards it is in exactly one place:
//    a worker's current chunk (slot), a report in flight, a parent-side re-run range, or done.
//    A worker's slot names its chunk before the worker runs any of it, and it clears `current`
//    before it sends the report, so the parent (after draining the dead worker's pipe) knows
//    which items are done, which one was running (blamed), and which must run again.
//  - The one window the slot cannot cover (a worker killed between claiming a chunk and
//    naming it in its slot) is closed by a final sweep: when the cursor is exhausted and no
//    worker is left, any item without an outcome is run again.
//  - An outcome is recorded once: reports are accepted only for items not done yet, and a
//    dead worker is judged only after its pipe is drained to EOF.
#include "mproc/detail/one_shot_map.hpp"

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <string>

#include "detail/sys.hpp"
#include "lifeline.hpp"
#include "mproc/detail/progress.hpp"
#include "mproc/log.hpp"
#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "worker_group.hpp"

namespace mproc::detail {

namespace {

struct alignas(64) MapControl {
  std::atomic<std::uint64_t> cursor{0};
  std::atomic<std::uint64_t> item_cost_ps{0};  // 0 = not measured yet
};

struct Range {
  std::size_t first;
  std::size_t last;
};

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMinChunkPs = 100'000'000;     // ~100 µs of work: batch cheap items
constexpr std::uint64_t kMaxChunkPs = 50'000'000'000;  // ~50 ms: bounds a crash's lost work
constexpr std::size_t kProbeChunk = 16;                // before any item has been timed
constexpr std::chrono::seconds kRetireDeadline{10};    // for a worker to exit once work is done

/// The chunk to take when `remaining` items are left in a source (the cursor or a re-run range).
std::size_t chunk_size(std::size_t remaining, std::size_t workers, std::size_t fixed,
                       std::uint64_t cost_ps) {
  if (remaining == 0) return 0;
  if (fixed > 0) return std::min(fixed, remaining);
  std::size_t chunk = std::max<std::size_t>(1, remaining / (2 * workers));
  if (cost_ps == 0) return std::min(chunk, kProbeChunk);
  const std::size_t min_chunk =
      static_cast<std::size_t>(std::max<std::uint64_t>(1, (kMinChunkPs + cost_ps - 1) / cost_ps));
  const std::size_t max_chunk =
      std::max(min_chunk, static_cast<std::size_t>(kMaxChunkPs / cost_ps));
  chunk = std::clamp(chunk, min_chunk, max_chunk);
  return std::min(chunk, remaining);
}

std::int64_t now_ns() {
  return Clock::now().time_since_epoch().count();
}

struct WorkerParams {
  OneShotKernel* kernel;
  MapControl* control;
  OneShotWorkerSlot* slot;
  std::size_t count;
  std::size_t workers;
  std::size_t fixed_chunk;
  bool timed;
  int owner_lifeline;  // the caller's lifeline read end (inherited), armed for the group
};

/// A worker's whole life: the re-run ranges it was forked with, then chunks from the cursor.
void worker_main(const WorkerParams& p, Connection& out, const std::vector<Range>& reruns) {
  sys::ignore_signal(SIGINT);            // Ctrl-C is the caller's to handle
  worker_group::lead(p.owner_lifeline);  // what fn starts dies with this worker, and the caller
  OneShotItemTracker tracker(*p.slot, p.timed);
  Encoder report;
  auto run = [&](std::size_t first, std::size_t last) {
    p.slot->chunk_first.store(first, std::memory_order_relaxed);
    p.slot->chunk_last.store(last, std::memory_order_release);
    report.clear();
    encode(report, static_cast<std::uint64_t>(first));
    encode(report, static_cast<std::uint64_t>(last));
    const auto start = Clock::now();
    p.kernel->run_chunk(first, last, tracker, report);
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
    const auto per_item = static_cast<std::uint64_t>(ns.count()) * 1000 / (last - first);
    p.control->item_cost_ps.store(std::max<std::uint64_t>(1, per_item), std::memory_order_relaxed);
    // Idle before sending: a worker blocked on a full pipe is not running an item (no timeout,
    // no blame), and a death from here on re-runs the whole unreported chunk.
    p.slot->current.store(kOneShotNoItem, std::memory_order_release);
    out.send_frame(report.bytes(), report.fds());
  };
  const auto cost = [&] { return p.control->item_cost_ps.load(std::memory_order_relaxed); };
  for (const Range& r : reruns) {
    for (std::size_t first = r.first; first < r.last;) {
      const std::size_t n = chunk_size(r.last - first, p.workers, p.fixed_chunk, cost());
      run(first, first + n);
      first += n;
    }
  }
  for (;;) {
    std::uint64_t first = p.control->cursor.load(std::memory_order_relaxed);
    std::size_t n = 0;
    do {
      if (first >= p.count) {
        out.close();
        return;
      }
      n = chunk_size(p.count - first, p.workers, p.fixed_chunk, cost());
    } while (!p.control->cursor.compare_exchange_weak(first, first + n, std::memory_order_relaxed));
    run(first, first + n);
  }
}

std::string ms(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f ms", static_cast<double>(d.count()) / 1e6);
  return buf;
}

/// The parent's view of one worker slot.
struct Worker {
  std::optional<Process> process;  // daemon: destroying it kills and reaps the worker
  Connection reports;
  std::optional<std::uint64_t> timed_out_item;  // killed by us for running this item too long
  bool reported = false;                        // sent at least one report
};

class Coordinator {
 public:
  Coordinator(OneShotKernel& kernel, std::size_t count, const OneShotOptions& options,
              std::string_view what)
      : kernel_(kernel),
        count_(count),
        options_(options),
        what_(what),
        done_(count, 0),
        progress_(count, options.progress, std::string(what)) {
    const std::size_t wanted =
        options.processes == 0 ? static_cast<std::size_t>(cpu_count()) : options.processes;
    workers_ = std::max<std::size_t>(1, std::min(wanted, count));
    segment_ = SharedSegment::create(sizeof(MapControl) + workers_ * sizeof(OneShotWorkerSlot),
                                     "mproc-map");
    control_ = ::new (segment_.data()) MapControl();
    slots_ = reinterpret_cast<OneShotWorkerSlot*>(static_cast<char*>(segment_.data()) +
                                                  sizeof(MapControl));
    for (std::size_t i = 0; i < workers_; ++i)
      ::new (static_cast<void*>(slots_ + i)) OneShotWorkerSlot();
    pool_.resize(workers_);
    // Workers that keep dying before reporting anything (a crash at start-up, a fork bomb
    // guard) would otherwise be replaced forever.
    max_fruitless_deaths_ = 10 + 4 * workers_;
    lifeline::ensure();
    owner_lifeline_ = sys::dup(lifeline::read_fd());
  }

  /// On an error path, workers still running die with their process groups.
  ~Coordinator() {
    for (Worker& w : pool_) {
      if (w.process) worker_group::kill(w.process->pid(), what_);  // not reaped yet
    }
  }

  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  void run() {
    const auto started = Clock::now();
    for (std::size_t i = 0; i < workers_; ++i) start_worker(i, {});
    const auto forked = Clock::now() - started;
    while (remaining_ > 0) {
      refill();
      wait_and_handle();
    }
    retire();
    progress_.finish();
    report_small_work(std::chrono::duration_cast<std::chrono::nanoseconds>(forked));
  }

 private:
  void start_worker(std::size_t index, std::vector<Range> reruns) {
    OneShotWorkerSlot& slot = slots_[index];
    slot.current.store(kOneShotNoItem);
    slot.chunk_first.store(0);
    slot.chunk_last.store(0);
    auto [reader, writer] = Pipe(false);
    const WorkerParams params{&kernel_,
                              control_,
                              &slot,
                              count_,
                              workers_,
                              options_.chunksize,
                              options_.task_timeout.has_value(),
                              owner_lifeline_.get()};
    Worker& w = pool_[index];
    w = Worker{};
    w.process.emplace(ProcessOptions{.name = "MapWorker-" + std::to_string(++started_),
                                     .daemon = true,
                                     .start = StartMethod::fork},
                      // An init-capture: clang before 16 cannot capture a structured
                      // binding by name.
                      [params, writer_end = writer, reruns = std::move(reruns)]() mutable {
                        worker_main(params, writer_end, reruns);
                      });
    w.process->start();
    writer.close();  // the worker holds the only write end: its death is EOF here
    w.reports = std::move(reader);
  }

  std::size_t live_workers() const {
    return static_cast<std::size_t>(std::count_if(
        pool_.begin(), pool_.end(), [](const Worker& w) { return w.process.has_value(); }));
  }

  /// Starts workers for pending re-runs and in place of dead ones; when the cursor is exhausted
  /// and nobody is left, sweeps for items claimed by a worker that died before naming them.
  void refill() {
    if (reruns_.empty() && live_workers() == 0 && control_->cursor.load() >= count_) {
      for (std::size_t i = 0; i < count_;) {
        if (done_[i]) {
          ++i;
          continue;
        }
        std::size_t j = i;
        while (j < count_ && !done_[j]) ++j;
        reruns_.push_back({i, j});
        i = j;
      }
    }
    // An empty slot means its worker died (workers leave on their own only once the cursor
    // is exhausted): replace it while there is work.
    for (std::size_t i = 0; i < workers_; ++i) {
      if (pool_[i].process) continue;
      if (!reruns_.empty()) {
        start_worker(i, std::vector<Range>(reruns_.begin(), reruns_.end()));
        reruns_.clear();
      } else if (control_->cursor.load() < count_) {
        start_worker(i, {});
      }
    }
  }

  void wait_and_handle() {
    std::vector<pollfd> fds;
    std::vector<std::size_t> owner;
    for (std::size_t i = 0; i < workers_; ++i) {
      Worker& w = pool_[i];
      if (!w.process) continue;
      if (!w.reports.closed()) {
        fds.push_back({w.reports.fileno(), POLLIN, 0});
        owner.push_back(i);
      }
      fds.push_back({w.process->sentinel(), POLLIN, 0});
      owner.push_back(i | kSentinelBit);
    }
    if (fds.empty()) return;  // refill() will start a worker or sweep
    const int ready = sys::poll(fds.data(), fds.size(), next_deadline());
    if (ready > 0) {
      // Reports first: a worker's last reports must be counted before its death is judged.
      for (std::size_t k = 0; k < fds.size(); ++k) {
        if (fds[k].revents == 0 || (owner[k] & kSentinelBit)) continue;
        receive(owner[k]);
      }
      for (std::size_t k = 0; k < fds.size(); ++k) {
        if (fds[k].revents == 0 || !(owner[k] & kSentinelBit)) continue;
        bury(owner[k] & ~kSentinelBit);
      }
    }
    if (options_.task_timeout) enforce_timeouts();
  }

  /// Every item is done: the workers still alive are leaving (the cursor is exhausted). Let
  /// them exit on their own, so what fn printed is flushed; kill any that does not.
  void retire() {
    for (Worker& w : pool_) {
      if (!w.process) continue;
      // Waits on the sentinel rather than join_for: the group is killed before the reap,
      // while the worker's pid still names it.
      pollfd ended{w.process->sentinel(), POLLIN, 0};
      if (sys::poll(&ended, 1, kRetireDeadline) == 0) {
        log(LogLevel::warning, std::string(what_) + ": worker pid " +
                                   std::to_string(w.process->pid()) +
                                   " did not exit after the map finished; killing it");
        w.process->kill();
      }
      worker_group::kill(w.process->pid(), what_);
      w.process->join();
      w.process.reset();
      w.reports.close();
    }
  }

  /// Receives one report from worker `index`; EOF (or a report cut off by its death) closes it.
  void receive(std::size_t index) {
    Worker& w = pool_[index];
    ReceivedFrame frame;
    try {
      frame = w.reports.recv_frame();
    } catch (const ConnectionClosed&) {
      w.reports.close();
      return;
    }
    Decoder in(frame.bytes, frame.fds);
    const auto first = decode<std::uint64_t>(in);
    const auto last = decode<std::uint64_t>(in);
    if (first >= last || last > count_) {
      throw ProtocolError("mproc::map: a worker reported an invalid item range");
    }
    for (std::size_t i = first; i < last; ++i) {
      if (done_[i]) throw ProtocolError("mproc::map: a worker reported an item twice");
    }
    kernel_.accept_chunk(first, last, in, w.process->pid());
    std::fill(done_.begin() + static_cast<std::ptrdiff_t>(first),
              done_.begin() + static_cast<std::ptrdiff_t>(last), 1);
    remaining_ -= last - first;
    progress_.advance(last - first);
    w.reported = true;
    fruitless_deaths_ = 0;
  }

  /// Worker `index` has ended: drain its reports, then judge what it left behind.
  void bury(std::size_t index) {
    Worker& w = pool_[index];
    // First the group (ended but not reaped: its pid still names it), so that nothing fn
    // started still holds the report pipe open; then only what is already there is read, so
    // that a descendant which left the group cannot keep this waiting for an EOF.
    worker_group::kill(w.process->pid(), what_);
    while (!w.reports.closed() && w.reports.poll()) receive(index);
    w.process->join();  // reaps at once
    const int status = w.process->exitcode().value_or(0);
    const auto pid = static_cast<std::int64_t>(w.process->pid());
    const OneShotWorkerSlot& slot = slots_[index];
    const std::uint64_t current = slot.current.load(std::memory_order_acquire);
    const std::uint64_t first = slot.chunk_first.load(std::memory_order_acquire);
    const std::uint64_t last = std::min<std::uint64_t>(slot.chunk_last.load(), count_);
    const auto timed_out = w.timed_out_item;
    const bool reported = w.reported;
    w.process.reset();
    w.reports = Connection();

    bool blamed = false;
    if (current != kOneShotNoItem && current < count_ && !done_[current]) {
      blamed = true;
      std::exception_ptr error;
      if (timed_out && *timed_out == current) {
        error = std::make_exception_ptr(
            TaskTimeout(pid, *options_.task_timeout, static_cast<std::int64_t>(current)));
      } else {
        const int sig = status < 0 ? -status : 0;
        error = std::make_exception_ptr(
            WorkerCrashed(pid, sig, sig ? std::nullopt : std::optional<int>(status),
                          static_cast<std::int64_t>(current)));
      }
      int& attempts = attempts_[current];
      if (attempts < options_.max_retries) {
        ++attempts;
        log(LogLevel::info, std::string(what_) + ": item " + std::to_string(current) +
                                " lost its worker (pid " + std::to_string(pid) +
                                "); running it again (retry " + std::to_string(attempts) + " of " +
                                std::to_string(options_.max_retries) + ")");
        reruns_.push_back({current, current + 1});
      } else {
        kernel_.fail_item(current, std::move(error));
        done_[current] = 1;
        --remaining_;
        progress_.advance(1);
      }
    } else if (status != 0) {
      log(LogLevel::debug, std::string(what_) + ": worker pid " + std::to_string(pid) +
                               " ended (status " + std::to_string(status) +
                               ") between items; its unreported items run again");
    }
    // Items of its chunk without an outcome (finished but unreported, or never reached).
    for (std::uint64_t i = first; i < last;) {
      if (done_[i] || (blamed && i == current)) {
        ++i;
        continue;
      }
      std::uint64_t j = i;
      while (j < last && !done_[j] && !(blamed && j == current)) ++j;
      reruns_.push_back({i, j});
      i = j;
    }
    if (status != 0 && !blamed && !reported) {
      if (++fruitless_deaths_ > max_fruitless_deaths_) {
        throw BrokenPool(std::string(what_) + ": " + std::to_string(fruitless_deaths_) +
                         " workers in a row died before reporting anything (last exit status " +
                         std::to_string(status) + "); giving up");
      }
    }
  }

  /// The earliest moment a running item can exceed task_timeout (nullopt: wait for events).
  std::optional<std::chrono::nanoseconds> next_deadline() const {
    if (!options_.task_timeout) return std::nullopt;
    std::optional<std::int64_t> earliest;
    for (std::size_t i = 0; i < workers_; ++i) {
      if (!pool_[i].process || pool_[i].timed_out_item) continue;
      const auto [item, started] = running(i);
      if (item == kOneShotNoItem) continue;
      const std::int64_t deadline = started + options_.task_timeout->count();
      if (!earliest || deadline < *earliest) earliest = deadline;
    }
    // Between items nothing can time out; check again soon (an item may start any moment).
    const std::int64_t now = now_ns();
    const std::int64_t cap = options_.task_timeout->count();
    if (!earliest) return std::chrono::nanoseconds(cap);
    return std::chrono::nanoseconds(std::clamp<std::int64_t>(*earliest - now + 1, 0, cap));
  }

  /// The item worker `index` runs and when it started, read consistently.
  std::pair<std::uint64_t, std::int64_t> running(std::size_t index) const {
    const OneShotWorkerSlot& slot = slots_[index];
    for (;;) {
      const std::uint64_t item = slot.current.load(std::memory_order_acquire);
      const std::int64_t started = slot.started_ns.load(std::memory_order_relaxed);
      if (slot.current.load(std::memory_order_acquire) == item) return {item, started};
    }
  }

  void enforce_timeouts() {
    const std::int64_t now = now_ns();
    for (std::size_t i = 0; i < workers_; ++i) {
      Worker& w = pool_[i];
      if (!w.process || w.timed_out_item) continue;
      const auto [item, started] = running(i);
      if (item == kOneShotNoItem || now - started < options_.task_timeout->count()) continue;
      // Judged when its sentinel fires: only if it was still on this item then.
      w.timed_out_item = item;
      log(LogLevel::info, std::string(what_) + ": item " + std::to_string(item) + " exceeded " +
                              ms(*options_.task_timeout) + "; killing worker pid " +
                              std::to_string(w.process->pid()));
      w.process->kill();
    }
  }

  void report_small_work(std::chrono::nanoseconds forking) const {
    if (log_level() > LogLevel::debug || count_ == 0) return;
    const std::uint64_t cost_ps = control_->item_cost_ps.load();
    const auto work = std::chrono::nanoseconds(static_cast<std::int64_t>(
        static_cast<double>(cost_ps) / 1000.0 * static_cast<double>(count_)));
    // In parallel the work costs at least forking + work / workers; serially just work.
    const double w = static_cast<double>(workers_);
    if (static_cast<double>(work.count()) * (1.0 - 1.0 / w) <=
        static_cast<double>(forking.count())) {
      log(LogLevel::debug,
          std::string(what_) + ": " + std::to_string(count_) + " items took about " + ms(work) +
              " of work in all, less than the " + ms(forking) + " spent starting " +
              std::to_string(workers_) +
              " worker processes: a serial loop would be as fast or faster. Give each call "
              "more work (more items, or costlier ones) for processes to pay off.");
    }
  }

  static constexpr std::size_t kSentinelBit = std::size_t{1} << (sizeof(std::size_t) * 8 - 1);

  OneShotKernel& kernel_;
  std::size_t count_;
  OneShotOptions options_;
  std::string_view what_;
  std::vector<std::uint8_t> done_;
  ProgressBar progress_;
  std::size_t workers_ = 1;
  std::size_t remaining_ = count_;
  SharedSegment segment_;
  MapControl* control_ = nullptr;
  OneShotWorkerSlot* slots_ = nullptr;
  std::vector<Worker> pool_;
  std::deque<Range> reruns_;
  std::map<std::size_t, int> attempts_;
  std::size_t started_ = 0;
  std::size_t fruitless_deaths_ = 0;  // workers in a row that died without reporting
  std::size_t max_fruitless_deaths_ = 0;
  UniqueFd owner_lifeline_;  // a descriptor of this process's lifeline read end (workers arm it)
};

}  // namespace

void run_one_shot(OneShotKernel& kernel, std::size_t count, const OneShotOptions& options,
                  std::string_view what) {
  if (options.max_retries < 0) {
    throw UsageError(std::string(what) + ": max_retries must be >= 0 (got " +
                     std::to_string(options.max_retries) + ")");
  }
  if (options.task_timeout && options.task_timeout->count() <= 0) {
    throw UsageError(std::string(what) + ": task_timeout must be positive (got " +
                     std::to_string(options.task_timeout->count()) +
                     " ns); leave it empty for no limit");
  }
  if (count == 0) return;
  Coordinator coordinator(kernel, count, options, what);
  coordinator.run();
}

void one_shot_write_error(Encoder& out, std::size_t index, const std::exception_ptr& error) {
  encode(out, static_cast<std::uint64_t>(index));
  encode_exception(out, error);
}

std::pair<std::size_t, std::exception_ptr> one_shot_read_error(Decoder& in, std::size_t first,
                                                               std::size_t last, std::int64_t pid) {
  const auto index = decode<std::uint64_t>(in);
  if (index < first || index >= last) {
    throw ProtocolError("mproc::map: a report names item " + std::to_string(index) +
                        " outside its chunk [" + std::to_string(first) + ", " +
                        std::to_string(last) + ")");
  }
  return {static_cast<std::size_t>(index),
          decode_exception(in, pid, static_cast<std::int64_t>(index))};
}

void rethrow_first_error(const std::map<std::size_t, std::exception_ptr>& errors) {
  if (!errors.empty()) std::rethrow_exception(errors.begin()->second);
}

}  // namespace mproc::detail
