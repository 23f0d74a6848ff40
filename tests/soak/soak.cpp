// mproc soak: a Pool and a ProcessPoolExecutor run for a configurable time under injected
// faults, and every task must be accounted for exactly once.
//
// Tasks have random durations and random fault plans (throw, abort, SIGSEGV, SIGKILL of their
// own worker, exit(3), running past task_timeout, allocating past the memory limit, crashing
// or timing out only on the first attempt so that a retry succeeds); a killer thread sends
// SIGKILL / SIGSEGV / SIGABRT to random workers from outside. Tasks use an mproc::Lock around a
// shared side-effect counter (an Array slot per task and a Value total) and put their id into
// an mproc::Queue the parent drains. Tasks go in through Pool::apply_async, Pool::map_results,
// ProcessPoolExecutor::submit and ProcessPoolExecutor::map.
//
// At the end it checks: every submitted task ended in exactly one outcome, the one its plan
// allows (a value echoing its id, its own exception, WorkerCrashed with the right signal or
// exit code, TaskTimeout, std::bad_alloc — or WorkerCrashed from a worker the killer hit); no
// outcome arrived twice or for a task not submitted; no task ran after its outcome; a task
// that ran once and succeeded did its side effect and its queue put exactly once; retries stay
// within max_retries; the Value total matches the per-task counts (up to kills inside the
// lock, which the robust lock reports); no descriptor, /dev/shm name, temporary file or child
// process is left; the parent's RSS after warm-up and at the end differ by at most a bound.
// It prints a report and exits non-zero on any violation.
//
//   mproc_soak [--seconds N] [--seed S] [--rss-slack-mib M]     (N defaults to $SOAK_SECONDS, 60)
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/detail/service.hpp"
#include "mproc/executor.hpp"
#include "mproc/log.hpp"
#include "mproc/pool.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared.hpp"
#include "mproc/sync.hpp"
#include "support/process_census.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool with_memory_limit = false;  // RLIMIT_AS and ASan's shadow memory do not mix
#else
constexpr bool with_memory_limit = true;
#endif

constexpr std::size_t capacity = std::size_t{1} << 18;  // task slots, reused round-robin
constexpr auto task_timeout = 2s;
constexpr int pool_retries = 1;
constexpr int executor_retries = 0;
constexpr auto hang_limit = 180s;  // a task without an outcome this long after submission hangs

enum Plan : std::uint8_t {
  plan_none,
  plan_throw,
  plan_abort,
  plan_segv,
  plan_kill_self,
  plan_exit3,
  plan_timeout,
  plan_timeout_once,
  plan_crash_once,
  plan_alloc,
  plan_count
};
const char* const plan_names[plan_count] = {"none",
                                            "throw",
                                            "abort()",
                                            "SIGSEGV",
                                            "SIGKILL self",
                                            "exit(3)",
                                            "task timeout",
                                            "timeout once (retried)",
                                            "abort once (retried)",
                                            "memory limit"};

/// One task: trivially copyable, so a map's inputs travel as bytes.
struct Spec {
  std::uint64_t id = 0;
  std::uint32_t slot = 0;
  std::uint32_t duration_us = 0;
  std::uint8_t plan = plan_none;
  std::uint8_t spin = 0;  // busy-wait instead of sleeping
};

struct Echo {
  std::uint64_t id = 0;
  std::uint64_t check = 0;
};

std::uint64_t checksum(std::uint64_t id) {
  return id * 0x9E3779B97F4A7C15ull ^ 0x5eedull;
}

// ---- worker side -----------------------------------------------------------------------

struct WorkerState {
  mproc::Array<std::uint64_t> owner;     // id of the task that holds each slot
  mproc::Array<std::uint32_t> attempts;  // runs started, per slot
  mproc::Array<std::uint32_t> effects;   // side effects done (under `lock`), per slot
  mproc::Value<std::uint64_t> total;     // sum of all side effects (under `lock`)
  mproc::Value<std::uint64_t> stale;     // runs of a task whose slot it no longer owns
  mproc::Value<std::uint64_t> owner_died;
  mproc::Lock lock;
  mproc::Queue<std::uint64_t> done;
};
WorkerState* g_state = nullptr;

void init_worker(mproc::Array<std::uint64_t> owner, mproc::Array<std::uint32_t> attempts,
                 mproc::Array<std::uint32_t> effects, mproc::Value<std::uint64_t> total,
                 mproc::Value<std::uint64_t> stale, mproc::Value<std::uint64_t> owner_died,
                 mproc::Lock lock, mproc::Queue<std::uint64_t> done) {
  // Lives as long as the worker.
  g_state = new WorkerState{owner, attempts, effects, total, stale, owner_died, lock, done};
}

Echo soak_task(Spec s) {
  WorkerState& st = *g_state;
  if (std::atomic_ref<std::uint64_t>(st.owner[s.slot]).load() != s.id) {
    std::atomic_ref<std::uint64_t>(st.stale.value()).fetch_add(1);
  }
  const std::uint32_t attempt =
      std::atomic_ref<std::uint32_t>(st.attempts[s.slot]).fetch_add(1) + 1;
  const auto work = std::chrono::microseconds(s.duration_us);
  if (s.spin != 0) {
    const auto until = Clock::now() + work;
    while (Clock::now() < until) {
    }
  } else {
    std::this_thread::sleep_for(work);
  }
  if (s.plan == plan_timeout || (s.plan == plan_timeout_once && attempt == 1)) {
    std::this_thread::sleep_for(1h);  // task_timeout ends this
  }
  if (s.plan == plan_alloc) {
    std::vector<char> huge(std::size_t{8} << 30, 1);  // beyond the memory limit: bad_alloc
    if (huge[12345] != 1) std::abort();
  }
  {
    std::unique_lock guard(st.lock);
    if (st.lock.previous_owner_died()) ++st.owner_died.value();
    ++st.effects[s.slot];
    ++st.total.value();
  }
  st.done.put(s.id);
  switch (s.plan) {
    case plan_throw: throw std::runtime_error("soak task " + std::to_string(s.id));
    case plan_abort: std::abort();
    case plan_crash_once:
      if (attempt == 1) std::abort();
      break;
    case plan_segv: ::raise(SIGSEGV); break;
    case plan_kill_self: ::raise(SIGKILL); break;
    case plan_exit3: std::exit(3);
    default: break;
  }
  return Echo{s.id, checksum(s.id)};
}

// ---- parent side -----------------------------------------------------------------------

enum class Face : std::uint8_t { pool_apply, pool_map, executor_submit, executor_map };
const char* const face_names[] = {"Pool::apply_async", "Pool::map_results",
                                  "ProcessPoolExecutor::submit", "ProcessPoolExecutor::map"};

enum Outcome : std::uint8_t {
  out_none,
  out_value,
  out_exception,
  out_crashed,
  out_timeout,
  out_bad_alloc,
  out_count
};
const char* const outcome_names[out_count] = {"(none)",        "value",       "own exception",
                                              "WorkerCrashed", "TaskTimeout", "std::bad_alloc"};

struct Record {
  std::uint64_t id = 0;
  Spec spec;
  Face face = Face::pool_apply;
  Outcome outcome = out_none;
  bool used = false;
  bool finalized = true;
  Clock::time_point submitted;
};

struct Report {
  std::uint64_t submitted = 0;
  std::uint64_t by_face[4] = {};
  std::uint64_t by_plan[plan_count] = {};
  std::uint64_t by_outcome[out_count] = {};
  std::uint64_t outside_kills[3] = {};  // SIGKILL, SIGSEGV, SIGABRT
  std::uint64_t crashed_by_outside = 0;
  std::uint64_t retried_tasks = 0;
  std::uint64_t retries = 0;
  std::uint64_t sum_effects = 0;
  std::uint64_t lost = 0;
  std::uint64_t duplicates = 0;
  std::vector<std::string> violations;
};

class Soak {
 public:
  Soak() : records_(capacity) {
    // Touch every page of the shared counters now, so that their first use during the run
    // does not read as growth of the parent's RSS.
    for (std::size_t i = 0; i < capacity; ++i) {
      owner_[i] = 0;
      attempts_[i] = 0;
      effects_[i] = 0;
    }
  }

  const Report& report() const { return report_; }

  void violation(std::string what) {
    std::lock_guard lock(mutex_);
    if (report_.violations.size() < 50) report_.violations.push_back(std::move(what));
    stop_ = true;
  }
  bool stopping() const { return stop_.load(); }

  mproc::Initializer initializer() const {
    return mproc::Initializer{init_worker, owner_,      attempts_, effects_, total_,
                              stale_,      owner_died_, lock_,     done_};
  }

  /// A fresh task for `face` (its slot prepared), or nullopt when the run must stop.
  std::optional<Spec> next(Face face, std::mt19937_64& rng) {
    Spec s;
    s.id = next_id_.fetch_add(1) + 1;
    s.slot = static_cast<std::uint32_t>(s.id % capacity);
    const unsigned dice = static_cast<unsigned>(rng() % 1000);
    // Per mille: mostly clean tasks, a steady trickle of every fault.
    const bool pool = face == Face::pool_apply || face == Face::pool_map;
    if (dice < 20)
      s.plan = plan_throw;
    else if (dice < 30)
      s.plan = plan_abort;
    else if (dice < 40)
      s.plan = plan_segv;
    else if (dice < 50)
      s.plan = plan_kill_self;
    else if (dice < 57)
      s.plan = plan_exit3;
    else if (dice < 60)
      s.plan = plan_timeout;
    else if (dice < 63)
      s.plan = plan_timeout_once;
    else if (dice < 73)
      s.plan = plan_crash_once;
    else if (dice < 78 && pool && with_memory_limit)
      s.plan = plan_alloc;
    else
      s.plan = plan_none;
    const unsigned d = static_cast<unsigned>(rng() % 100);
    s.duration_us = static_cast<std::uint32_t>(d < 60   ? rng() % 500
                                               : d < 95 ? rng() % 5'000
                                                        : rng() % 20'000);
    s.spin = static_cast<std::uint8_t>(rng() % 4 == 0);
    std::lock_guard lock(mutex_);
    Record& r = records_[s.slot];
    if (r.used && r.outcome == out_none) {
      stop_ = true;
      report_.violations.push_back("slot of task " + std::to_string(r.id) +
                                   " reused while it has no outcome (a hang)");
      return std::nullopt;
    }
    if (r.used && !r.finalized) finalize_locked(r);
    r = Record{s.id, s, face, out_none, true, false, Clock::now()};
    std::atomic_ref<std::uint64_t>(owner_[s.slot]).store(s.id);
    std::atomic_ref<std::uint32_t>(attempts_[s.slot]).store(0);
    effects_[s.slot] = 0;  // no run of an older task can touch it any more
    queued_[s.slot] = 0;
    ++report_.submitted;
    ++report_.by_face[static_cast<int>(face)];
    ++report_.by_plan[s.plan];
    return s;
  }

  /// Records the outcome of task `s`: its value, or the exception it ended with.
  void outcome(const Spec& s, const Echo* value, std::exception_ptr error) {
    Outcome kind = out_value;
    std::string detail;
    int signal = 0;
    std::optional<int> exit_code;
    int pid = 0;
    if (!value) {
      try {
        std::rethrow_exception(error);
      } catch (const mproc::WorkerCrashed& e) {
        kind = out_crashed;
        signal = e.signal();
        exit_code = e.exit_code();
        pid = e.pid();
        detail = e.what();
      } catch (const mproc::TaskTimeout& e) {
        kind = out_timeout;
        detail = e.what();
      } catch (const std::bad_alloc& e) {
        kind = out_bad_alloc;
        detail = e.what();
      } catch (const mproc::Error& e) {
        // Any other mproc error (RemoteError, BrokenPool, Cancelled, TimeoutError...) is wrong:
        // the task's own exception is registered and comes back as itself.
        kind = out_count;
        detail = std::string("unexpected mproc error: ") + e.what();
      } catch (const std::runtime_error& e) {
        kind = out_exception;
        detail = e.what();
      } catch (const std::exception& e) {
        kind = out_count;
        detail = std::string("unexpected exception: ") + e.what();
      } catch (...) {
        kind = out_count;
        detail = "unexpected non-std exception";
      }
    }
    std::lock_guard lock(mutex_);
    Record& r = records_[s.slot];
    if (!r.used || r.id != s.id) {
      fail_locked("an outcome for task " + std::to_string(s.id) + " which is not in flight");
      return;
    }
    if (r.outcome != out_none) {
      ++report_.duplicates;
      fail_locked("task " + std::to_string(s.id) + " got a second outcome");
      return;
    }
    if (kind == out_count) {
      r.outcome = out_exception;
      fail_locked("task " + std::to_string(s.id) + " (" + plan_names[s.plan] + "): " + detail);
      return;
    }
    r.outcome = kind;
    ++report_.by_outcome[kind];
    const bool retries = retries_of(r.face) > 0;
    const bool outside = kind == out_crashed && killed_.count(pid) != 0;
    if (outside) ++report_.crashed_by_outside;
    bool allowed = false;
    switch (kind) {
      case out_value:
        allowed = s.plan == plan_none ||
                  ((s.plan == plan_timeout_once || s.plan == plan_crash_once) && retries);
        if (value->id != s.id || value->check != checksum(s.id)) {
          fail_locked("task " + std::to_string(s.id) + " returned the value of task " +
                      std::to_string(value->id));
        }
        break;
      case out_exception:
        allowed = s.plan == plan_throw && detail == "soak task " + std::to_string(s.id);
        break;
      case out_bad_alloc: allowed = s.plan == plan_alloc; break;
      case out_timeout:
        allowed = s.plan == plan_timeout || (s.plan == plan_timeout_once && !retries);
        break;
      case out_crashed:
        allowed = outside || (s.plan == plan_abort && signal == SIGABRT) ||
                  (s.plan == plan_crash_once && signal == SIGABRT && !retries) ||
                  (s.plan == plan_segv && signal == SIGSEGV) ||
                  (s.plan == plan_kill_self && signal == SIGKILL) ||
                  (s.plan == plan_exit3 && exit_code == 3);
        break;
      default: break;
    }
    if (!allowed) {
      fail_locked("task " + std::to_string(s.id) + " planned '" + plan_names[s.plan] + "' via " +
                  face_names[static_cast<int>(r.face)] + " ended with " + outcome_names[kind] +
                  (detail.empty() ? "" : ": " + detail));
    }
  }

  /// Checks every slot whose task is over, at the end (after the pools are joined and the
  /// queue drained).
  void finish() {
    std::lock_guard lock(mutex_);
    for (auto& r : records_) {
      if (!r.used) continue;
      if (r.outcome == out_none) {
        ++report_.lost;
        fail_locked("task " + std::to_string(r.id) + " (" + plan_names[r.spec.plan] + ", via " +
                    face_names[static_cast<int>(r.face)] + ") has no outcome: lost");
        continue;
      }
      if (!r.finalized) finalize_locked(r);
    }
    {
      std::unique_lock guard(lock_);
      if (lock_.previous_owner_died()) ++owner_died_.value();
    }
    const std::uint64_t total = total_.value();
    const std::uint64_t died = owner_died_.value();
    if (total > report_.sum_effects || report_.sum_effects - total > died) {
      fail_locked("side-effect total " + std::to_string(total) + " vs per-task sum " +
                  std::to_string(report_.sum_effects) + " (" + std::to_string(died) +
                  " lock holders died)");
    }
    if (stale_.value() != 0) {
      fail_locked(std::to_string(stale_.value()) + " task runs started after their outcome");
    }
  }

  /// The drainer: counts the ids tasks put into the queue.
  void drain(bool until_empty) {
    for (;;) {
      auto id = until_empty ? done_.try_get() : done_.get_for(50ms);
      if (!id) return;
      std::lock_guard lock(mutex_);
      const std::size_t slot = *id % capacity;
      if (records_[slot].id != *id) {
        fail_locked("queue item of task " + std::to_string(*id) +
                    " arrived after its slot "
                    "was reused");
        continue;
      }
      ++queued_[slot];
    }
  }

  void note_kill(int pid, int kind) {
    std::lock_guard lock(mutex_);
    killed_.insert(pid);
    ++report_.outside_kills[kind];
  }

  std::uint64_t lock_owner_died() const { return owner_died_.value(); }

 private:
  static int retries_of(Face face) {
    return face == Face::pool_apply || face == Face::pool_map ? pool_retries : executor_retries;
  }

  void fail_locked(std::string what) {
    if (report_.violations.size() < 50) report_.violations.push_back(std::move(what));
    stop_ = true;
  }

  /// The task in `r` can run no more: its counters are final.
  void finalize_locked(Record& r) {
    r.finalized = true;
    const std::uint32_t attempts = std::atomic_ref<std::uint32_t>(attempts_[r.spec.slot]).load();
    const std::uint32_t effects = std::atomic_ref<std::uint32_t>(effects_[r.spec.slot]).load();
    const std::uint32_t queued = queued_[r.spec.slot];
    report_.sum_effects += effects;
    const std::string who = "task " + std::to_string(r.id) + " (" + plan_names[r.spec.plan] +
                            ", via " + face_names[static_cast<int>(r.face)] + ")";
    if (attempts > 1) {
      ++report_.retried_tasks;
      report_.retries += attempts - 1;
    }
    if (effects > attempts) fail_locked(who + ": more side effects than runs");
    if (queued > effects) fail_locked(who + ": more queue items than side effects");
    const bool single = r.face == Face::pool_apply || r.face == Face::executor_submit;
    if (single && attempts > static_cast<std::uint32_t>(1 + retries_of(r.face))) {
      fail_locked(who + ": ran " + std::to_string(attempts) + " times, max_retries " +
                  std::to_string(retries_of(r.face)));
    }
    if (r.outcome == out_value && attempts == 0) fail_locked(who + ": a value without a run");
    if (r.outcome == out_value && attempts == 1 && (effects != 1 || queued != 1)) {
      fail_locked(who + ": ran once and succeeded, but did " + std::to_string(effects) +
                  " side effects and " + std::to_string(queued) + " queue puts");
    }
    if (r.outcome == out_value && effects == 0)
      fail_locked(who + ": a value without its side effect");
  }

  std::mutex mutex_;
  std::vector<Record> records_;
  std::vector<std::uint32_t> queued_ = std::vector<std::uint32_t>(capacity);
  std::set<int> killed_;
  Report report_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> next_id_{0};

  mproc::Array<std::uint64_t> owner_{mproc::Array<std::uint64_t>(capacity)};
  mproc::Array<std::uint32_t> attempts_{mproc::Array<std::uint32_t>(capacity)};
  mproc::Array<std::uint32_t> effects_{mproc::Array<std::uint32_t>(capacity)};
  mproc::Value<std::uint64_t> total_{0};
  mproc::Value<std::uint64_t> stale_{0};
  mproc::Value<std::uint64_t> owner_died_{0};
  mproc::Lock lock_;
  mproc::Queue<std::uint64_t> done_;
};

// ---- process-wide resources ------------------------------------------------------------

/// This process's descriptors and children, minus what mproc keeps on purpose.
std::set<int> own_fds() {
  std::set<int> fds = mproc::test::open_fds();
  for (int fd : mproc::detail::service_resources().fds) fds.erase(fd);
  return fds;
}

std::set<int> own_children() {
  std::set<int> pids = mproc::test::child_pids();
  for (int pid : mproc::detail::service_resources().pids) pids.erase(pid);
  return pids;
}

using mproc::test::names_in;

/// A field of /proc/self/status in KiB ("VmRSS", "RssAnon").
long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + key.size());
  }
  return -1;
}

// ---- the run ---------------------------------------------------------------------------

struct InFlight {
  Spec spec;
  mproc::Future<Echo> future;
  Clock::time_point submitted;
};

/// Keeps up to `window` single tasks in flight through `submit`, recording outcomes as they
/// come, until `end`; then waits for the last ones.
template <class Submit>
void single_tasks(Soak& soak, Face face, std::uint64_t seed, Clock::time_point end,
                  std::size_t window, Submit submit) {
  std::mt19937_64 rng(seed);
  std::deque<InFlight> flight;
  auto settle = [&] {
    for (auto it = flight.begin(); it != flight.end();) {
      if (!it->future.done()) {
        if (Clock::now() - it->submitted > hang_limit) {
          // Reported once; finish() also counts it as lost.
          soak.violation("task " + std::to_string(it->spec.id) + " via " +
                         face_names[static_cast<int>(face)] + " hangs");
          it = flight.erase(it);
          continue;
        }
        ++it;
        continue;
      }
      try {
        const Echo& e = it->future.get();
        soak.outcome(it->spec, &e, nullptr);
      } catch (...) {
        soak.outcome(it->spec, nullptr, std::current_exception());
      }
      it = flight.erase(it);
    }
  };
  bool more = true;
  while (more && Clock::now() < end && !soak.stopping()) {
    while (flight.size() < window) {
      auto spec = soak.next(face, rng);
      if (!spec) {
        more = false;
        break;
      }
      flight.push_back(InFlight{*spec, submit(*spec), Clock::now()});
    }
    settle();
    std::this_thread::sleep_for(1ms);
  }
  // Also after a violation: every task in flight still gets its outcome (or hangs), so that
  // "lost" in the report means lost, not abandoned.
  while (!flight.empty()) {
    settle();
    std::this_thread::sleep_for(2ms);
  }
}

/// Runs maps of random sizes and chunk sizes until `end`, alternating the pool's map_results
/// and the executor's lazy map.
void maps(Soak& soak, mproc::Pool& pool, mproc::ProcessPoolExecutor& ex, std::uint64_t seed,
          Clock::time_point end) {
  std::mt19937_64 rng(seed);
  for (int round = 0; Clock::now() < end && !soak.stopping(); ++round) {
    const bool on_pool = round % 2 == 0;
    const Face face = on_pool ? Face::pool_map : Face::executor_map;
    std::vector<Spec> specs;
    const std::size_t n = 20 + rng() % 280;
    for (std::size_t i = 0; i < n; ++i) {
      auto spec = soak.next(face, rng);
      if (!spec) return;
      specs.push_back(*spec);
    }
    const mproc::MapOptions options{.chunksize = 1 + rng() % 32, .timeout = hang_limit};
    if (on_pool) {
      std::vector<mproc::Result<Echo>> results;
      try {
        results = pool.map_results(soak_task, specs, options);
      } catch (const std::exception& e) {
        soak.violation(std::string("Pool::map_results threw: ") + e.what());
        return;
      }
      if (results.size() != specs.size()) {
        soak.violation("Pool::map_results returned " + std::to_string(results.size()) +
                       " results for " + std::to_string(specs.size()) + " inputs");
        return;
      }
      for (std::size_t i = 0; i < n; ++i) {
        if (results[i].has_value()) {
          soak.outcome(specs[i], &*results[i], nullptr);
        } else {
          soak.outcome(specs[i], nullptr, results[i].error());
        }
      }
    } else {
      std::size_t i = 0;
      auto record_error = [&] {
        if (i < n) soak.outcome(specs[i], nullptr, std::current_exception());
        ++i;
      };
      try {
        auto results = ex.map(soak_task, specs, options);
        // A step (begin or ++) throws the error of the item it reaches; the next step moves
        // past it.
        bool valid = false;
        try {
          (void)results.begin();
          valid = true;
        } catch (const mproc::TimeoutError&) {
          throw;
        } catch (...) {
          record_error();
        }
        auto it = results.begin();  // started already: does not advance
        for (;;) {
          if (valid) {
            const Echo e = *it;
            if (i < n) soak.outcome(specs[i], &e, nullptr);
            ++i;
          } else if (it == results.end()) {
            break;
          }
          try {
            ++it;
          } catch (const mproc::TimeoutError&) {
            throw;
          } catch (...) {
            record_error();
            valid = false;
            continue;
          }
          if (it == results.end()) break;
          valid = true;
        }
      } catch (const mproc::TimeoutError&) {
        soak.violation("ProcessPoolExecutor::map hangs at item " + std::to_string(i));
        return;
      }
      if (i != n) {
        soak.violation("ProcessPoolExecutor::map yielded " + std::to_string(i) + " of " +
                       std::to_string(n) + " items");
        return;
      }
    }
  }
}

/// Sends SIGKILL / SIGSEGV / SIGABRT to a random worker every 50-400 ms until `end`.
void killer(Soak& soak, std::uint64_t seed, Clock::time_point end) {
  std::mt19937_64 rng(seed);
  const int signals[3] = {SIGKILL, SIGSEGV, SIGABRT};
  while (Clock::now() < end && !soak.stopping()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 350));
    std::vector<int> workers;
    for (const auto& child : mproc::active_children()) {
      const std::string name = child.name();
      if (name.rfind("PoolWorker-", 0) == 0 || name.rfind("ProcessPoolWorker-", 0) == 0) {
        workers.push_back(child.pid());
      }
    }
    if (workers.empty()) continue;
    const int pid = workers[rng() % workers.size()];
    const int kind = static_cast<int>(rng() % 3);
    soak.note_kill(pid, kind);  // before the signal: its WorkerCrashed may come at once
    ::kill(pid, signals[kind]);
  }
}

struct Args {
  long seconds = 60;
  std::uint64_t seed = 0;
  long rss_slack_mib = 64;
};

Args parse(int argc, char** argv) {
  Args a;
  if (const char* env = std::getenv("SOAK_SECONDS")) a.seconds = std::atol(env);
  a.seed = std::random_device{}();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--seconds" && value) {
      a.seconds = std::atol(value);
      ++i;
    } else if (arg == "--seed" && value) {
      a.seed = std::strtoull(value, nullptr, 10);
      ++i;
    } else if (arg == "--rss-slack-mib" && value) {
      a.rss_slack_mib = std::atol(value);
      ++i;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seconds N] [--seed S] [--rss-slack-mib M]\n"
                   "  N defaults to $SOAK_SECONDS, else 60\n",
                   argv[0]);
      std::exit(2);
    }
  }
  if (a.seconds < 1) a.seconds = 1;
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  // The faults are expected: keep their one-line warnings off the report.
  if (std::getenv("MPROC_LOG") == nullptr) mproc::log_to_stderr(mproc::LogLevel::error);
  std::printf("mproc soak: %ld s, seed %llu\n", args.seconds,
              static_cast<unsigned long long>(args.seed));
  std::fflush(stdout);
  const auto started = Clock::now();
  const auto end = started + std::chrono::seconds(args.seconds);
  const auto warm = started + std::chrono::seconds(std::clamp(args.seconds / 10, 3L, 60L));

  const auto fds_before = own_fds();
  const auto shm_before = names_in("/dev/shm", "mproc");
  const auto tmp_before = names_in("/tmp", "mproc");
  long rss_warm = -1, anon_warm = -1, rss_end = -1, anon_end = -1;
  std::size_t fds_warm = 0, fds_end = 0;
  std::uint64_t lock_died = 0;
  Report report;
  {
    Soak soak;
    {
      mproc::Pool pool(
          mproc::PoolOptions{.processes = 3,
                             .initializer = soak.initializer(),
                             .maxtasksperchild = 400,
                             .task_timeout = task_timeout,
                             .max_retries = pool_retries,
                             .memory_limit = with_memory_limit ? std::size_t{1} << 30 : 0});
      mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 2,
                                                           .initializer = soak.initializer(),
                                                           .task_timeout = task_timeout,
                                                           .max_retries = executor_retries});
      std::vector<std::thread> threads;
      // A thread that throws is a violation (the library threw where it must not).
      auto guarded = [&soak](const char* what, auto body) {
        return [&soak, what, body] {
          try {
            body();
          } catch (const std::exception& e) {
            soak.violation(std::string(what) + " threw: " + e.what());
          }
        };
      };
      threads.emplace_back(guarded("Pool::apply_async", [&] {
        single_tasks(soak, Face::pool_apply, args.seed + 1, end, 24,
                     [&](const Spec& s) { return pool.apply_async(soak_task, s); });
      }));
      threads.emplace_back(guarded("ProcessPoolExecutor::submit", [&] {
        single_tasks(soak, Face::executor_submit, args.seed + 2, end, 16,
                     [&](const Spec& s) { return ex.submit(soak_task, s); });
      }));
      threads.emplace_back(guarded("maps", [&] { maps(soak, pool, ex, args.seed + 3, end); }));
      threads.emplace_back(guarded("killer", [&] { killer(soak, args.seed + 4, end); }));
      std::atomic<bool> draining{true};
      std::thread drainer([&] {
        while (draining.load()) soak.drain(false);
      });
      // Warm-up sample, then progress every 30 s.
      auto next_progress = started + 30s;
      bool warm_taken = false;
      while (Clock::now() < end + hang_limit && !soak.stopping()) {
        const auto now = Clock::now();
        if (!warm_taken && now >= warm) {
          rss_warm = status_kib("VmRSS");
          anon_warm = status_kib("RssAnon");
          fds_warm = own_fds().size();
          warm_taken = true;
        }
        if (now >= next_progress) {
          std::printf("  %4llds: %llu tasks submitted\n",
                      static_cast<long long>(
                          std::chrono::duration_cast<std::chrono::seconds>(now - started).count()),
                      static_cast<unsigned long long>(soak.report().submitted));
          std::fflush(stdout);
          next_progress += 30s;
        }
        if (now >= end) break;
        std::this_thread::sleep_for(100ms);
      }
      for (auto& t : threads) t.join();
      rss_end = status_kib("VmRSS");
      anon_end = status_kib("RssAnon");
      fds_end = own_fds().size();
      pool.close();
      pool.join();
      ex.shutdown(true);
      draining = false;
      drainer.join();
      soak.drain(true);  // every worker is gone: what is in the queue is all there will be
    }
    soak.finish();
    lock_died = soak.lock_owner_died();
    report = soak.report();
  }
  const double seconds =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count() / 1e3;

  // Nothing left behind once the pools are gone.
  std::vector<std::string> leaks;
  const auto deadline = Clock::now() + 10s;
  std::set<int> children;
  while (!(children = own_children()).empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  for (int pid : children) leaks.push_back("child process " + std::to_string(pid));
  for (int fd : own_fds()) {
    if (!fds_before.count(fd)) leaks.push_back("descriptor " + std::to_string(fd));
  }
  for (const auto& n : names_in("/dev/shm", "mproc")) {
    if (!shm_before.count(n)) leaks.push_back("/dev/shm/" + n);
  }
  for (const auto& n : names_in("/tmp", "mproc")) {
    if (!tmp_before.count(n)) leaks.push_back("/tmp/" + n);
  }
  for (auto& l : leaks) report.violations.push_back("leak: " + l);
  if (fds_end > fds_warm) {
    report.violations.push_back("descriptors grew during the run: " + std::to_string(fds_warm) +
                                " after warm-up, " + std::to_string(fds_end) + " at the end");
  }
  if (rss_warm > 0 && rss_end - rss_warm > args.rss_slack_mib * 1024) {
    report.violations.push_back("parent RSS grew by " +
                                std::to_string((rss_end - rss_warm) / 1024) + " MiB (bound " +
                                std::to_string(args.rss_slack_mib) + " MiB)");
  }

  std::printf("\n== mproc soak report ==\n");
  std::printf("duration                 %.1f s (seed %llu)\n", seconds,
              static_cast<unsigned long long>(args.seed));
  std::printf("tasks submitted          %llu (%.0f/s)\n",
              static_cast<unsigned long long>(report.submitted), report.submitted / seconds);
  for (int f = 0; f < 4; ++f) {
    std::printf("  via %-28s %llu\n", face_names[f],
                static_cast<unsigned long long>(report.by_face[f]));
  }
  std::printf("faults injected in tasks\n");
  for (int p = 1; p < plan_count; ++p) {
    std::printf("  %-32s %llu\n", plan_names[p],
                static_cast<unsigned long long>(report.by_plan[p]));
  }
  std::printf("faults injected from outside\n");
  std::printf("  SIGKILL                          %llu\n",
              static_cast<unsigned long long>(report.outside_kills[0]));
  std::printf("  SIGSEGV                          %llu\n",
              static_cast<unsigned long long>(report.outside_kills[1]));
  std::printf("  SIGABRT                          %llu\n",
              static_cast<unsigned long long>(report.outside_kills[2]));
  std::printf("outcomes\n");
  for (int o = 1; o < out_count; ++o) {
    std::printf("  %-32s %llu\n", outcome_names[o],
                static_cast<unsigned long long>(report.by_outcome[o]));
  }
  std::printf("  (WorkerCrashed by outside kills %llu)\n",
              static_cast<unsigned long long>(report.crashed_by_outside));
  std::printf("timeouts                 %llu\n",
              static_cast<unsigned long long>(report.by_outcome[out_timeout]));
  std::printf("retries                  %llu runs beyond the first, in %llu tasks\n",
              static_cast<unsigned long long>(report.retries),
              static_cast<unsigned long long>(report.retried_tasks));
  std::printf("lock holders died        %llu (robust lock recovered)\n",
              static_cast<unsigned long long>(lock_died));
  std::printf("side effects             %llu\n",
              static_cast<unsigned long long>(report.sum_effects));
  std::printf("tasks lost               %llu\n", static_cast<unsigned long long>(report.lost));
  std::printf("duplicate outcomes       %llu\n",
              static_cast<unsigned long long>(report.duplicates));
  std::printf(
      "parent RSS               %ld KiB after warm-up, %ld KiB at the end (anon %ld -> "
      "%ld KiB)\n",
      rss_warm, rss_end, anon_warm, anon_end);
  std::printf("descriptors              %zu after warm-up, %zu at the end\n", fds_warm, fds_end);
  std::printf("leaks after shutdown     %zu\n", leaks.size());
  if (report.violations.empty()) {
    std::printf("RESULT: PASS\n");
    return 0;
  }
  std::printf("RESULT: FAIL, %zu violation(s)\n", report.violations.size());
  for (const auto& v : report.violations) std::printf("  - %s\n", v.c_str());
  return 1;
}
