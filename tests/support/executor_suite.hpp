// executor_suite.hpp — one test body for every executor with ProcessPoolExecutor's interface
// (the local ProcessPoolExecutor, mproc::mpi::Executor). Instantiate it with a traits type:
//
//     struct Traits {
//       using Executor = mproc::ProcessPoolExecutor;
//       static Executor make(std::size_t workers);   // 0 = every worker available
//     };
//     INSTANTIATE_TYPED_TEST_SUITE_P(Local, ExecutorSuite, ::testing::Types<Traits>);
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/errors.hpp"
#include "mproc/future.hpp"

namespace mproc::test::suite {

using namespace std::chrono_literals;

inline int square(int x) {
  return x * x;
}
inline int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
inline int throws_invalid(int x) {
  if (x >= 0) throw std::invalid_argument("bad " + std::to_string(x));
  return x;
}
struct Unregistered : std::exception {
  const char* what() const noexcept override { return "not registered"; }
};
inline int throws_unregistered(int) {
  throw Unregistered{};
}
inline std::string concat(std::string a, const std::vector<int>& v) {
  for (int x : v) a += std::to_string(x);
  return a;
}

template <class Traits>
class ExecutorSuite : public ::testing::Test {};

TYPED_TEST_SUITE_P(ExecutorSuite);

TYPED_TEST_P(ExecutorSuite, SubmitReturnsFuturesWithResults) {
  auto ex = TypeParam::make(0);
  std::vector<mproc::Future<int>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(ex.submit(square, i));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].get(), i * i);
  EXPECT_EQ(ex.submit(concat, std::string("x"), std::vector<int>{1, 2, 3}).get(), "x123");
  EXPECT_EQ(ex.submit([](int a, int b) { return a + b; }, 20, 22).get(), 42);
}

TYPED_TEST_P(ExecutorSuite, ExceptionsComeBackAsThemselvesOrRemoteError) {
  auto ex = TypeParam::make(0);
  auto registered = ex.submit(throws_invalid, 3);
  try {
    registered.get();
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "bad 3");
  }
  auto other = ex.submit(throws_unregistered, 1);
  try {
    other.get();
    ADD_FAILURE() << "no exception";
  } catch (const mproc::RemoteError& e) {
    EXPECT_NE(e.type_name().find("Unregistered"), std::string::npos) << e.type_name();
    EXPECT_EQ(e.message(), "not registered");
  }
}

TYPED_TEST_P(ExecutorSuite, AsCompletedYieldsFuturesInCompletionOrder) {
  auto ex = TypeParam::make(2);
  std::vector<mproc::Future<int>> fs{ex.submit(sleep_ms, 300), ex.submit(sleep_ms, 10)};
  std::vector<int> order;
  for (auto&& f : mproc::as_completed(fs)) order.push_back(f.get());
  EXPECT_EQ(order, (std::vector<int>{10, 300}));
}

TYPED_TEST_P(ExecutorSuite, WaitFirstCompletedReturnsEarly) {
  auto ex = TypeParam::make(2);
  std::vector<mproc::Future<int>> fs{ex.submit(sleep_ms, 500), ex.submit(sleep_ms, 5)};
  auto [done, not_done] = mproc::wait(fs, mproc::ReturnWhen::first_completed);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].get(), 5);
  EXPECT_EQ(not_done.size(), 1u);
  auto all = mproc::wait(fs);
  EXPECT_EQ(all.done.size(), 2u);
}

TYPED_TEST_P(ExecutorSuite, MapIsLazyOrderedAndTakesAChunksize) {
  auto ex = TypeParam::make(0);
  std::vector<int> out;
  for (int y : ex.map(square, std::views::iota(0, 100), {.chunksize = 7})) out.push_back(y);
  ASSERT_EQ(out.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i * i);
  std::vector<int> input(1000);
  for (int i = 0; i < 1000; ++i) input[static_cast<std::size_t>(i)] = i - 500;
  long long sum = 0, expect = 0;
  for (int y : ex.map(square, input)) sum += y;
  for (int x : input) expect += x * x;
  EXPECT_EQ(sum, expect);
}

TYPED_TEST_P(ExecutorSuite, MapRethrowsItemErrorsAndGoesOn) {
  auto ex = TypeParam::make(0);
  auto results = ex.map(throws_invalid, std::vector<int>{-1, 2, -3}, {.chunksize = 3});
  auto it = results.begin();
  EXPECT_EQ(*it, -1);
  EXPECT_THROW(++it, std::invalid_argument);
  ++it;
  EXPECT_EQ(*it, -3);
}

TYPED_TEST_P(ExecutorSuite, MapPastItsTimeoutThrowsTimeoutErrorAndLeavesTasksAlone) {
  auto ex = TypeParam::make(1);
  auto results = ex.map(sleep_ms, std::vector<int>{1, 2000}, {.chunksize = 1, .timeout = 200ms});
  auto it = results.begin();
  EXPECT_EQ(*it, 1);
  EXPECT_THROW(++it, mproc::TimeoutError);
  EXPECT_EQ(ex.submit(square, 3).get(), 9);
}

TYPED_TEST_P(ExecutorSuite, SubmitAfterShutdownThrowsPoolClosed) {
  auto ex = TypeParam::make(1);
  ex.shutdown();
  EXPECT_THROW(ex.submit(square, 1), mproc::PoolClosed);
  ex.shutdown();  // idempotent
}

TYPED_TEST_P(ExecutorSuite, ShutdownWithCancelFuturesCancelsPendingOnes) {
  auto ex = TypeParam::make(1);
  auto running = ex.submit(sleep_ms, 300);
  std::vector<mproc::Future<int>> queued;
  for (int i = 0; i < 20; ++i) queued.push_back(ex.submit(sleep_ms, 300));
  while (!running.running()) std::this_thread::sleep_for(1ms);
  ex.shutdown(/*wait=*/true, /*cancel_futures=*/true);
  EXPECT_EQ(running.get(), 300);
  const auto cancelled =
      std::count_if(queued.begin(), queued.end(), [](const auto& f) { return f.cancelled(); });
  EXPECT_GE(cancelled, 17);
  for (const auto& f : queued) EXPECT_TRUE(f.done());
}

TYPED_TEST_P(ExecutorSuite, PendingFuturesAreCancellable) {
  auto ex = TypeParam::make(1);
  auto running = ex.submit(sleep_ms, 200);
  std::vector<mproc::Future<int>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(ex.submit(square, i));
  EXPECT_TRUE(queued.back().cancel());
  EXPECT_THROW(queued.back().get(), mproc::Cancelled);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(queued[static_cast<std::size_t>(i)].get(), i * i);
}

TYPED_TEST_P(ExecutorSuite, ThenAndDoneCallbacksRunOnceResultsArrive) {
  auto ex = TypeParam::make(1);
  auto f = ex.submit(square, 5);
  auto g = f.then([](const int& v) { return std::to_string(v); });
  EXPECT_EQ(g.get(), "25");
}

REGISTER_TYPED_TEST_SUITE_P(ExecutorSuite, SubmitReturnsFuturesWithResults,
                            ExceptionsComeBackAsThemselvesOrRemoteError,
                            AsCompletedYieldsFuturesInCompletionOrder,
                            WaitFirstCompletedReturnsEarly, MapIsLazyOrderedAndTakesAChunksize,
                            MapRethrowsItemErrorsAndGoesOn,
                            MapPastItsTimeoutThrowsTimeoutErrorAndLeavesTasksAlone,
                            SubmitAfterShutdownThrowsPoolClosed,
                            ShutdownWithCancelFuturesCancelsPendingOnes,
                            PendingFuturesAreCancellable, ThenAndDoneCallbacksRunOnceResultsArrive);

}  // namespace mproc::test::suite
