// ProcessPoolExecutor: submit, lazy map with timeout, shutdown, futures across processes.
#include "mproc/executor.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/executor_suite.hpp"
#include "support/start_methods.hpp"

namespace {

using namespace std::chrono_literals;

int square(int x) {
  return x * x;
}
int my_pid() {
  return static_cast<int>(::getpid());
}

class ExecutorEveryStart : public mproc::test::EveryStartMethod {};

TEST_P(ExecutorEveryStart, SubmitReturnsFuturesWithResults) {
  mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 2, .start = GetParam()});
  std::vector<mproc::Future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(ex.submit(square, i));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].get(), i * i);
  std::size_t workers = 0;
  for (const auto& c : mproc::active_children()) {
    if (c.name().rfind("ProcessPoolWorker-", 0) == 0) ++workers;
  }
  EXPECT_EQ(workers, 2u);
}

void exiting_initializer() {
  ::_exit(4);
}

// Workers that die in their initializer, whatever the start method: the futures fail with
// BrokenPool (Python's executor breaks too, but its Pool respawns them forever).
TEST_P(ExecutorEveryStart, WorkersThatCannotStartBreakTheExecutor) {
  {
    mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{
        .max_workers = 2, .initializer = {exiting_initializer}, .start = GetParam()});
    try {
      ex.submit(square, 3).get();  // or submit throws, if the executor is broken already
      FAIL() << "expected BrokenPool";
    } catch (const mproc::BrokenPool& e) {
      EXPECT_NE(std::string(e.what()).find("exited with status 4"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(mproc::active_children().empty());
}

MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(Executor, ExecutorEveryStart);

TEST(Executor, SubmitAfterShutdownThrowsPoolClosed) {
  mproc::ProcessPoolExecutor ex(1);
  ex.shutdown();
  EXPECT_THROW(ex.submit(square, 1), mproc::PoolClosed);
  ex.shutdown();  // idempotent
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST(Executor, MaxTasksPerChildAndCrashesKeepEveryOtherFutureIntact) {
  mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 2, .max_tasks_per_child = 3});
  std::set<int> pids;
  std::vector<mproc::Future<int>> fs;
  for (int i = 0; i < 12; ++i) fs.push_back(ex.submit(my_pid));
  for (auto& f : fs) pids.insert(f.get());
  EXPECT_GE(pids.size(), 4u);
  auto crash = ex.submit([] { std::abort(); });
  auto fine = ex.submit(square, 6);
  EXPECT_THROW(crash.get(), mproc::WorkerCrashed);
  EXPECT_EQ(fine.get(), 36);
}

// The body shared with mproc::mpi::Executor (tests/mpi/executor_mpi_test.cpp).
struct LocalTraits {
  using Executor = mproc::ProcessPoolExecutor;
  static Executor make(std::size_t workers) { return Executor(workers == 0 ? 2 : workers); }
};

}  // namespace

namespace mproc::test::suite {
INSTANTIATE_TYPED_TEST_SUITE_P(Local, ExecutorSuite, ::testing::Types<LocalTraits>);
}  // namespace mproc::test::suite
