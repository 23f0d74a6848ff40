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
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
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

MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(Executor, ExecutorEveryStart);

TEST(Executor, AsCompletedYieldsFuturesInCompletionOrder) {
  mproc::ProcessPoolExecutor ex(2);
  std::vector<mproc::Future<int>> fs{ex.submit(sleep_ms, 300), ex.submit(sleep_ms, 10)};
  std::vector<int> order;
  for (auto&& f : mproc::as_completed(fs)) order.push_back(f.get());
  EXPECT_EQ(order, (std::vector<int>{10, 300}));
}

TEST(Executor, MapIsLazyOrderedAndTakesAChunksize) {
  mproc::ProcessPoolExecutor ex(2);
  std::vector<int> out;
  for (int y : ex.map(square, std::views::iota(0, 100), {.chunksize = 7})) out.push_back(y);
  ASSERT_EQ(out.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i * i);
}

TEST(Executor, MapPastItsTimeoutThrowsTimeoutErrorAndLeavesTasksAlone) {
  mproc::ProcessPoolExecutor ex(1);
  auto results = ex.map(sleep_ms, std::vector<int>{1, 2000}, {.chunksize = 1, .timeout = 200ms});
  auto it = results.begin();
  EXPECT_EQ(*it, 1);
  EXPECT_THROW(++it, mproc::TimeoutError);
  // The task itself was not touched: the pool stays healthy.
  EXPECT_EQ(ex.submit(square, 3).get(), 9);
}

TEST(Executor, SubmitAfterShutdownThrowsPoolClosed) {
  mproc::ProcessPoolExecutor ex(1);
  ex.shutdown();
  EXPECT_THROW(ex.submit(square, 1), mproc::PoolClosed);
  ex.shutdown();  // idempotent
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST(Executor, ShutdownWithCancelFuturesCancelsPendingOnes) {
  mproc::ProcessPoolExecutor ex(1);
  auto running = ex.submit(sleep_ms, 300);
  std::vector<mproc::Future<int>> queued;
  for (int i = 0; i < 20; ++i) queued.push_back(ex.submit(sleep_ms, 300));
  while (!running.running()) std::this_thread::sleep_for(1ms);
  ex.shutdown(/*wait=*/true, /*cancel_futures=*/true);
  EXPECT_EQ(running.get(), 300);
  const auto cancelled =
      std::count_if(queued.begin(), queued.end(), [](const auto& f) { return f.cancelled(); });
  // Only the small window handed to the worker ahead of time may have run.
  EXPECT_GE(cancelled, 17);
  for (const auto& f : queued) EXPECT_TRUE(f.done());
}

TEST(Executor, PendingFuturesAreCancellable) {
  mproc::ProcessPoolExecutor ex(1);
  auto running = ex.submit(sleep_ms, 200);
  std::vector<mproc::Future<int>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(ex.submit(square, i));
  EXPECT_TRUE(queued.back().cancel());
  EXPECT_THROW(queued.back().get(), mproc::Cancelled);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(queued[static_cast<std::size_t>(i)].get(), i * i);
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

TEST(Executor, ThenAndDoneCallbacksRunOnceResultsArrive) {
  mproc::ProcessPoolExecutor ex(1);
  auto f = ex.submit(square, 5);
  auto g = f.then([](const int& v) { return std::to_string(v); });
  EXPECT_EQ(g.get(), "25");
}

}  // namespace

namespace mproc::test::suite {
INSTANTIATE_TYPED_TEST_SUITE_P(Local, ExecutorSuite, ::testing::Types<LocalTraits>);
}  // namespace mproc::test::suite
