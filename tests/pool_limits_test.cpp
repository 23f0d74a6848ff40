// Pool and executor resource limits: task_timeout and the per-worker memory limit are
// enforced on every worker (replacements included), and whatever a task starts by hand (a
// fork() child, an exec'd program, an mproc::Process) dies with its worker — when the worker
// times out, crashes, is force-cancelled, retires, is terminated, or when the pool's owner dies.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "mproc/executor.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/shared.hpp"
#include "support/child_helpers.hpp"
#include "support/start_methods.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using mproc::test::wait_gone;

int square(int x) {
  return x * x;
}
int my_pid() {
  return static_cast<int>(::getpid());
}

// ---- a task that starts a process of its own --------------------------------------------

enum How : int { raw_fork = 0, exec_program = 1, mproc_process = 2 };
enum Then : int { sleep_long = 0, segfault = 1, return_now = 2 };

void sleep_forever() {
  for (;;) ::pause();
}

/// Starts a descendant the way `how` names, stores its pid in pids[0] and this worker's pid in
/// pids[1], then does what `then` names. Returns the descendant's pid.
int start_descendant_then(mproc::Array<int> pids, int how, int then) {
  int child = -1;
  // Kept alive until the task ends (only an mproc::Process child needs its object).
  std::optional<mproc::Process> process;
  switch (how) {
    case raw_fork:
      child = ::fork();
      if (child == 0) {
        sleep_forever();
        ::_exit(0);
      }
      break;
    case exec_program: {
      // posix_spawn runs no fork handlers and execs: nothing of mproc's reaches the program.
      char arg0[] = "sleep";
      char arg1[] = "1000";
      char* argv[] = {arg0, arg1, nullptr};
      pid_t pid = -1;
      if (::posix_spawnp(&pid, "sleep", nullptr, nullptr, argv, environ) != 0) return -1;
      child = pid;
      break;
    }
    case mproc_process:
      process.emplace(mproc::ProcessOptions{.daemon = true, .start = mproc::StartMethod::fork},
                      sleep_forever);
      process->start();
      child = process->pid();
      break;
    default: return -1;
  }
  std::atomic_ref<int>(pids[1]).store(static_cast<int>(::getpid()));
  std::atomic_ref<int>(pids[0]).store(child);
  switch (then) {
    case sleep_long: std::this_thread::sleep_for(60s); break;
    case segfault: ::raise(SIGSEGV); break;
    default: break;
  }
  return child;
}

/// Waits (with a deadline) for the task to publish its descendant's pid.
int published_pid(const mproc::Array<int>& pids, std::size_t at = 0) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    const int pid = std::atomic_ref<int>(pids[at]).load();
    if (pid != 0) return pid;
    std::this_thread::sleep_for(2ms);
  }
  ADD_FAILURE() << "deadlock: the task never published a pid";
  return -1;
}

/// SIGKILLs `owner` (a forked process whose task published its descendant's pid at 0 and its
/// worker's at 1) and expects the worker and the descendant to die with it.
void kill_owner_and_expect_its_workers_gone(const mproc::Array<int>& pids, pid_t owner) {
  const int child = published_pid(pids, 0);
  const int worker = published_pid(pids, 1);
  ASSERT_EQ(::kill(owner, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(owner, &status, 0), owner);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(wait_gone(worker, 20s)) << "worker " << worker << " outlived its owner";
  EXPECT_TRUE(wait_gone(child, 20s)) << "the task's child " << child << " outlived the owner";
}

std::string how_name(const ::testing::TestParamInfo<int>& info) {
  switch (info.param) {
    case raw_fork: return "RawFork";
    case exec_program: return "ExecProgram";
    case mproc_process: return "MprocProcess";
  }
  return "Unknown";
}

class TaskDescendants : public ::testing::TestWithParam<int> {};

TEST_P(TaskDescendants, DieWhenTheirWorkerTimesOut) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 1, .task_timeout = 2s});
  mproc::Array<int> pids(2);
  auto f = pool.apply_async(start_descendant_then, pids, GetParam(), sleep_long);
  const int child = published_pid(pids);
  ASSERT_GT(child, 0);
  EXPECT_THROW(f.get(), mproc::TaskTimeout);
  EXPECT_TRUE(wait_gone(child, 20s)) << "the task's child " << child << " outlived its worker";
  EXPECT_EQ(pool.apply(square, 7), 49);
}

TEST_P(TaskDescendants, DieWhenTheirWorkerCrashes) {
  mproc::Pool pool(1);
  mproc::Array<int> pids(2);
  auto f = pool.apply_async(start_descendant_then, pids, GetParam(), segfault);
  try {
    f.get();
    FAIL() << "expected WorkerCrashed";
  } catch (const mproc::WorkerCrashed& e) {
    EXPECT_EQ(e.signal(), SIGSEGV);
  }
  const int child = published_pid(pids);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(wait_gone(child, 20s)) << "the task's child " << child << " outlived its worker";
  EXPECT_EQ(pool.apply(square, 7), 49);
}

TEST_P(TaskDescendants, DieWithThePoolOwner) {
  // Every start method: the owner's death must reach the task's children whether the worker
  // is the owner's child (fork, spawn) or the forkserver's.
  for (const auto method :
       {mproc::StartMethod::fork, mproc::StartMethod::forkserver, mproc::StartMethod::spawn}) {
    SCOPED_TRACE(mproc::test::start_method_name(method));
    mproc::Array<int> pids(2);
    const pid_t owner = ::fork();
    ASSERT_GE(owner, 0);
    if (owner == 0) {
      try {
        mproc::Pool pool(mproc::PoolOptions{.processes = 1, .start = method});
        pool.apply(start_descendant_then, pids, GetParam(), sleep_long);
      } catch (...) {
      }
      ::_exit(3);
    }
    kill_owner_and_expect_its_workers_gone(pids, owner);
  }
}

INSTANTIATE_TEST_SUITE_P(Pool, TaskDescendants,
                         ::testing::Values(raw_fork, exec_program, mproc_process), how_name);

TEST(PoolLimits, TaskChildrenDieWhenTheRunningTaskIsForceCancelled) {
  mproc::Pool pool(1);
  mproc::Array<int> pids(2);
  auto f = pool.apply_async(start_descendant_then, pids, raw_fork, sleep_long);
  const int child = published_pid(pids);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(f.cancel(mproc::force));
  EXPECT_TRUE(wait_gone(child, 20s)) << "the task's child " << child << " outlived its worker";
  EXPECT_EQ(pool.apply(square, 3), 9);
}

TEST(PoolLimits, TaskChildrenDieWhenThePoolIsTerminated) {
  mproc::Pool pool(2);
  mproc::Array<int> pids(2);
  auto f = pool.apply_async(start_descendant_then, pids, exec_program, sleep_long);
  const int child = published_pid(pids);
  ASSERT_GT(child, 0);
  pool.terminate();
  EXPECT_THROW(f.get(), mproc::Cancelled);
  EXPECT_TRUE(wait_gone(child, 20s)) << "the task's child " << child << " outlived the pool";
}

TEST(PoolLimits, TaskChildrenDieWhenTheirWorkerRetires) {
  // maxtasksperchild = 1: the worker exits normally after the task; what the task left
  // running goes with it.
  mproc::Pool pool(mproc::PoolOptions{.processes = 1, .maxtasksperchild = 1});
  mproc::Array<int> pids(2);
  const int child = pool.apply(start_descendant_then, pids, raw_fork, return_now);
  ASSERT_GT(child, 0);
  EXPECT_NE(pool.apply(my_pid), std::atomic_ref<int>(pids[1]).load());
  EXPECT_TRUE(wait_gone(child, 20s)) << "the task's child " << child << " outlived its worker";
}

TEST(PoolLimits, ExecutorTaskTimeoutKillsTheTasksChildrenAndTheExecutorGoesOn) {
  mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 1, .task_timeout = 2s});
  mproc::Array<int> pids(2);
  auto f = ex.submit(start_descendant_then, pids, raw_fork, sleep_long);
  const int child = published_pid(pids);
  ASSERT_GT(child, 0);
  try {
    f.get();
    FAIL() << "expected TaskTimeout";
  } catch (const mproc::TaskTimeout& e) {
    EXPECT_EQ(e.timeout(), std::chrono::nanoseconds(2s));
    EXPECT_EQ(e.pid(), std::atomic_ref<int>(pids[1]).load());
  }
  EXPECT_TRUE(wait_gone(child, 20s)) << "the task's child " << child << " outlived its worker";
  EXPECT_EQ(ex.submit(square, 6).get(), 36);
}

// ---- the one-shot map: what fn starts dies with its MapWorker ----------------------------

/// mproc::map_results over one item that starts a descendant the way `how` names, then does
/// what `then` names.
std::vector<mproc::Result<int>> one_shot_descendant(mproc::Array<int> pids, int how, int then,
                                                    mproc::OneShotOptions options = {}) {
  options.processes = 1;
  return mproc::map_results(
      [pids, how, then](int) { return start_descendant_then(pids, how, then); },
      std::vector<int>{0}, options);
}

class OneShotDescendants : public ::testing::TestWithParam<int> {};

TEST_P(OneShotDescendants, DieWhenTheirWorkerTimesOut) {
  mproc::Array<int> pids(2);
  const auto r = one_shot_descendant(pids, GetParam(), sleep_long, {.task_timeout = 2s});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_THROW(std::rethrow_exception(r[0].error()), mproc::TaskTimeout);
  const int child = published_pid(pids);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(wait_gone(child, 20s)) << "fn's child " << child << " outlived its MapWorker";
}

TEST_P(OneShotDescendants, DieWhenTheirWorkerCrashes) {
  mproc::Array<int> pids(2);
  const auto r = one_shot_descendant(pids, GetParam(), segfault);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_THROW(std::rethrow_exception(r[0].error()), mproc::WorkerCrashed);
  const int child = published_pid(pids);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(wait_gone(child, 20s)) << "fn's child " << child << " outlived its MapWorker";
}

TEST_P(OneShotDescendants, DieWhenTheMapEnds) {
  mproc::Array<int> pids(2);
  const auto r = one_shot_descendant(pids, GetParam(), return_now);
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].has_value());
  const int child = *r[0];
  ASSERT_GT(child, 0);
  EXPECT_TRUE(wait_gone(child, 20s)) << "fn's child " << child << " outlived the map";
}

TEST_P(OneShotDescendants, DieWithTheCaller) {
  mproc::Array<int> pids(2);
  const pid_t caller = ::fork();
  ASSERT_GE(caller, 0);
  if (caller == 0) {
    try {
      (void)one_shot_descendant(pids, GetParam(), sleep_long);
    } catch (...) {
    }
    ::_exit(3);
  }
  kill_owner_and_expect_its_workers_gone(pids, caller);
}

INSTANTIATE_TEST_SUITE_P(Map, OneShotDescendants,
                         ::testing::Values(raw_fork, exec_program, mproc_process), how_name);

// ---- task_timeout with retries ------------------------------------------------------------

int count_then_sleep(mproc::Value<int> attempts, int ms) {
  {
    std::lock_guard lock(attempts.get_lock());
    ++attempts.value();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

TEST(PoolLimits, TimedOutTaskIsRetriedOnFreshWorkersThenFailsWithTaskTimeout) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 1, .task_timeout = 300ms, .max_retries = 2});
  mproc::Value<int> attempts(0);
  EXPECT_THROW(pool.apply(count_then_sleep, attempts, 60'000), mproc::TaskTimeout);
  EXPECT_EQ(attempts.value(), 3);  // the first run and two retries
  // A task within the limit is untouched by it.
  EXPECT_EQ(pool.apply(count_then_sleep, attempts, 1), 1);
}

// ---- memory limit ------------------------------------------------------------------------

// RLIMIT_AS cannot coexist with AddressSanitizer's shadow memory.
#if !defined(__SANITIZE_ADDRESS__)
constexpr std::size_t limit = std::size_t{512} << 20;

/// Allocates (and touches) `mib` blocks of 1 MiB, one by one.
std::size_t grow_mib(std::size_t mib) {
  std::vector<std::vector<char>> blocks;
  for (std::size_t i = 0; i < mib; ++i) blocks.emplace_back(std::size_t{1} << 20, 'x');
  return blocks.size();
}

/// A C library that treats a failed malloc as fatal.
std::size_t malloc_or_abort(std::size_t mib) {
  void* p = std::malloc(mib << 20);
  if (p == nullptr) std::abort();
  std::free(p);
  return mib;
}

TEST(PoolLimits, GradualGrowthBeyondTheMemoryLimitIsBadAllocAndTheWorkerStays) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 1, .memory_limit = limit});
  const int worker = pool.apply(my_pid);
  EXPECT_THROW(pool.apply(grow_mib, 4096), std::bad_alloc);
  // The exception freed what the task held: the same worker serves the next task.
  EXPECT_EQ(pool.apply(grow_mib, 64), 64u);
  EXPECT_EQ(pool.apply(my_pid), worker);
}

TEST(PoolLimits, ATaskThatDiesOfTheMemoryLimitIsWorkerCrashedAndTheLimitHoldsOnItsReplacement) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 1, .memory_limit = limit});
  const int first = pool.apply(my_pid);
  try {
    pool.apply(malloc_or_abort, 2048);
    FAIL() << "expected WorkerCrashed";
  } catch (const mproc::WorkerCrashed& e) {
    EXPECT_EQ(e.signal(), SIGABRT);
    EXPECT_EQ(e.pid(), first);
  }
  const int second = pool.apply(my_pid);
  EXPECT_NE(second, first);
  // The replacement runs under the same limit, and the pool is otherwise usable.
  EXPECT_THROW(pool.apply(grow_mib, 4096), std::bad_alloc);
  EXPECT_EQ(pool.apply(malloc_or_abort, 16), 16u);
  EXPECT_EQ(pool.apply(square, 12), 144);
}

TEST(PoolLimits, ExecutorMemoryLimitIsEnforcedAndTheExecutorGoesOn) {
  mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 1, .memory_limit = limit});
  EXPECT_THROW(ex.submit(grow_mib, 4096).get(), std::bad_alloc);
  EXPECT_THROW(ex.submit(malloc_or_abort, 2048).get(), mproc::WorkerCrashed);
  EXPECT_EQ(ex.submit(grow_mib, 32).get(), 32u);
}
#endif

}  // namespace
