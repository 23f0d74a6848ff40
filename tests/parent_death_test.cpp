// The owner of a Pool or a ProcessPoolExecutor dies in the middle of its work — SIGKILL,
// SIGTERM or SIGINT sent to it alone, at random moments (while the pool starts, while tasks
// run), with every start method: nothing it started may survive it (workers, forkserver), no
// /dev/shm name or temporary file of mproc's may stay behind, and its exit status is what the
// signal's disposition says (killed by the signal by default; the handler's exit code when the
// program installed one). This test process is a child subreaper, so every orphaned descendant
// comes back to it and is counted.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mproc/executor.hpp"
#include "mproc/pool.hpp"
#include "mproc/shared.hpp"
#include "support/descendants.hpp"
#include "support/leak_check.hpp"
#include "support/start_methods.hpp"

namespace {

using namespace std::chrono_literals;

constexpr std::size_t n_tasks = 400;

// Where tasks record the pid of the worker that ran them (set by the pool's initializer, so
// it reaches workers under every start method).
mproc::Array<int>* g_seen = nullptr;

void remember(mproc::Array<int> seen) {
  g_seen = new mproc::Array<int>(std::move(seen));  // lives as long as the worker
}

int record_and_sleep(int x) {
  if (g_seen != nullptr) {
    std::atomic_ref<int>((*g_seen)[static_cast<std::size_t>(x) % n_tasks])
        .store(static_cast<int>(::getpid()));
  }
  std::this_thread::sleep_for(20ms);
  return x;
}

enum class Face { pool, executor };

struct Case {
  Face face;
  int sig;
  bool handler;  // the program installed a handler for `sig` that exits with status 7
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string name = info.param.face == Face::pool ? "Pool" : "Executor";
  name += info.param.sig == SIGKILL ? "Sigkill" : info.param.sig == SIGTERM ? "Sigterm" : "Sigint";
  if (info.param.handler) name += "WithHandler";
  return name;
}

void exit_7(int) {
  ::_exit(7);
}

/// The owner: installs the dispositions of an ordinary program, then runs work that would take
/// far longer than the test waits. Never returns normally.
[[noreturn]] void owner_main(const Case& c, mproc::StartMethod method, mproc::Array<int> seen,
                             int ready_fd) {
  // The defaults an interactive program has (a test runner may have started us with SIGINT
  // ignored), or the program's own handler; then tell the test it may send the signal.
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  if (c.handler) ::signal(c.sig, exit_7);
  const char ready = 'r';
  if (::write(ready_fd, &ready, 1) != 1) ::_exit(97);
  ::close(ready_fd);
  try {
    const auto init = mproc::Initializer{remember, seen};
    if (c.face == Face::pool) {
      mproc::Pool pool(mproc::PoolOptions{.processes = 2, .initializer = init, .start = method});
      pool.map(record_and_sleep, std::views::iota(0, static_cast<int>(n_tasks)), {.chunksize = 1});
    } else {
      mproc::ProcessPoolExecutor ex(
          mproc::ExecutorOptions{.max_workers = 2, .initializer = init, .start = method});
      for (int r : ex.map(record_and_sleep, std::views::iota(0, static_cast<int>(n_tasks)),
                          {.chunksize = 1})) {
        (void)r;
      }
    }
  } catch (...) {
    ::_exit(98);
  }
  ::_exit(99);  // finished: the signal never came (the test reports it)
}

bool any_recorded(const mproc::Array<int>& seen) {
  for (std::size_t i = 0; i < n_tasks; ++i) {
    if (std::atomic_ref<int>(seen[i]).load() != 0) return true;
  }
  return false;
}

class ParentDeath : public ::testing::TestWithParam<Case> {};

TEST_P(ParentDeath, NothingSurvivesAndTheExitStatusIsTheSignals) {
  const Case c = GetParam();
  mproc::test::SubreaperScope subreaper;
  ASSERT_TRUE(subreaper.ok()) << "PR_SET_CHILD_SUBREAPER failed";
  std::mt19937 rng(std::random_device{}());
  const mproc::StartMethod methods[] = {mproc::StartMethod::fork, mproc::StartMethod::forkserver,
                                        mproc::StartMethod::spawn};
  for (int iteration = 0; iteration < 6; ++iteration) {
    const auto method = methods[iteration % 3];
    // Even iterations: a random moment while the pool starts (workers may or may not exist
    // yet); odd ones: a random moment after tasks have started running.
    const bool while_starting = iteration % 2 == 0;
    const auto delay = std::chrono::milliseconds(while_starting ? rng() % 40 : rng() % 250);
    SCOPED_TRACE(std::string(mproc::test::start_method_name(method)) +
                 (while_starting ? " while starting" : " while running") + ", delay " +
                 std::to_string(delay.count()) + " ms");
    const auto before = mproc::test::Snapshot::take();
    mproc::Array<int> seen(n_tasks);
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t owner = ::fork();
    ASSERT_GE(owner, 0);
    if (owner == 0) {
      ::close(ready[0]);
      owner_main(c, method, seen, ready[1]);
    }
    ::close(ready[1]);
    char byte = 0;
    const bool owner_ready = ::read(ready[0], &byte, 1) == 1;
    ::close(ready[0]);
    ASSERT_TRUE(owner_ready) << "the owner died before it was ready";

    if (!while_starting) {
      const auto deadline = std::chrono::steady_clock::now() + 60s;
      while (!any_recorded(seen) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(2ms);
      }
      ASSERT_TRUE(any_recorded(seen)) << "deadlock: no task ran within 60 s";
    }
    std::this_thread::sleep_for(delay);
    ASSERT_EQ(::kill(owner, c.sig), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(owner, &status, 0), owner);
    if (c.handler) {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7) << "status " << status;
    } else {
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == c.sig) << "status " << status;
    }

    // Every descendant the owner left is re-parented here: all must end, promptly.
    const auto survivors = mproc::test::reap_children_within(20s, before.children);
    for (const auto& s : survivors) ADD_FAILURE() << "survived its owner: " << s;
    // The workers that ran tasks are among them; check them by pid too.
    for (std::size_t i = 0; i < n_tasks; ++i) {
      const int pid = std::atomic_ref<int>(seen[i]).load();
      if (pid != 0) {
        EXPECT_TRUE(mproc::test::wait_gone(pid, 20s)) << "worker " << pid;
      }
    }
    const auto after = mproc::test::Snapshot::take();
    for (const auto& name : after.shm) {
      EXPECT_TRUE(before.shm.count(name)) << "left in /dev/shm: " << name;
    }
    for (const auto& name : after.tmp) {
      EXPECT_TRUE(before.tmp.count(name)) << "left in /tmp: " << name;
    }
    if (HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Owner, ParentDeath,
    ::testing::Values(Case{Face::pool, SIGKILL, false}, Case{Face::pool, SIGTERM, false},
                      Case{Face::pool, SIGINT, false}, Case{Face::pool, SIGTERM, true},
                      Case{Face::executor, SIGKILL, false}, Case{Face::executor, SIGTERM, false},
                      Case{Face::executor, SIGINT, false}, Case{Face::executor, SIGINT, true}),
    case_name);

}  // namespace
