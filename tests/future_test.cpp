// Future<T>, detail::Promise<T>, as_completed() and wait(): single-process, multi-threaded.
// No timing assertions: timeouts below only bound waits that must not complete, or keep a
// broken implementation from hanging.
#include "mproc/future.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using mproc::Future;
using mproc::ReturnWhen;
using mproc::detail::Promise;

namespace {

// Generous bound for waits that must succeed: only reached if the implementation is broken.
constexpr auto deadlock = 30s;

template <class T>
std::vector<Promise<T>> make_promises(std::size_t n) {
  std::vector<Promise<T>> ps(n);
  return ps;
}

template <class T>
std::vector<Future<T>> futures_of(const std::vector<Promise<T>>& ps) {
  std::vector<Future<T>> fs;
  for (const auto& p : ps) fs.push_back(p.future());
  return fs;
}

}  // namespace

TEST(Future, ValueIsReturnedByGet) {
  Promise<std::string> p;
  auto f = p.future();
  EXPECT_FALSE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_TRUE(p.set_running());
  EXPECT_TRUE(f.running());
  EXPECT_TRUE(p.set_value("hello"));
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_FALSE(f.cancelled());
  EXPECT_EQ(f.get(), "hello");
  EXPECT_EQ(f.exception(), nullptr);
}

TEST(Future, GetIsRepeatableAndReturnsTheSameReference) {
  Promise<std::vector<int>> p;
  auto f = p.future();
  auto copy = f;
  p.set_value({1, 2, 3});
  const auto& a = f.get();
  const auto& b = f.get();
  const auto& c = copy.get();
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(&a, &c);
  EXPECT_EQ(a, (std::vector<int>{1, 2, 3}));
  EXPECT_TRUE(f == copy);
}

TEST(Future, ExceptionIsRethrownByGetAndReturnedByException) {
  Promise<int> p;
  auto f = p.future();
  p.set_exception(std::make_exception_ptr(std::runtime_error("boom")));
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.cancelled());
  EXPECT_THROW(f.get(), std::runtime_error);
  EXPECT_THROW(f.get(), std::runtime_error);
  const auto e = f.exception();
  ASSERT_NE(e, nullptr);
  try {
    std::rethrow_exception(e);
  } catch (const std::runtime_error& err) {
    EXPECT_STREQ(err.what(), "boom");
  }
}

TEST(Future, VoidFutureCompletesAndFails) {
  Promise<void> ok;
  Promise<void> bad;
  auto f = ok.future();
  auto g = bad.future();
  EXPECT_TRUE(ok.set_value());
  EXPECT_NO_THROW(f.get());
  EXPECT_FALSE(ok.set_value());
  bad.set_exception(std::make_exception_ptr(std::logic_error("no")));
  EXPECT_THROW(g.get(), std::logic_error);
}

TEST(Future, GetForThrowsTimeoutErrorWhilePendingAndReturnsAfterCompletion) {
  Promise<int> p;
  auto f = p.future();
  EXPECT_THROW(f.get_for(1ms), mproc::TimeoutError);
  EXPECT_THROW(f.get_for(0s), mproc::TimeoutError);
  EXPECT_FALSE(f.wait_for(1ms));
  EXPECT_FALSE(f.wait_until(std::chrono::system_clock::now() + 1ms));
  EXPECT_FALSE(f.done());
  p.set_value(7);
  EXPECT_EQ(f.get_for(deadlock), 7);
  EXPECT_EQ(f.get_for(0s), 7);
  EXPECT_TRUE(f.wait_for(0s));
  EXPECT_TRUE(f.wait_for(std::chrono::hours::max()));  // saturates instead of overflowing
}

TEST(Future, GetForWaitsForACompletionFromAnotherThread) {
  Promise<int> p;
  auto f = p.future();
  std::thread t([&] { p.set_value(42); });
  EXPECT_EQ(f.get_for(deadlock), 42);
  t.join();
}

TEST(Future, CancelPendingSucceedsAndGetThrowsCancelled) {
  Promise<int> p;
  auto f = p.future();
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_THROW(f.get(), mproc::Cancelled);
  EXPECT_THROW(f.get_for(0s), mproc::Cancelled);
  const auto e = f.exception();
  ASSERT_NE(e, nullptr);
  EXPECT_THROW(std::rethrow_exception(e), mproc::Cancelled);
  EXPECT_TRUE(f.cancel());        // already cancelled: still true, as in Python
  EXPECT_FALSE(p.set_running());  // the engine skips the task
}

TEST(Future, CancelRunningOrFinishedFails) {
  Promise<int> p;
  auto f = p.future();
  ASSERT_TRUE(p.set_running());
  EXPECT_FALSE(f.cancel());
  EXPECT_FALSE(f.cancelled());
  EXPECT_TRUE(f.running());
  p.set_value(1);
  EXPECT_FALSE(f.cancel());
  EXPECT_FALSE(f.cancel(mproc::force));
  EXPECT_EQ(f.get(), 1);
}

TEST(Future, ForceCancelOfARunningFutureCallsTheHook) {
  Promise<int> p;
  auto f = p.future();
  std::atomic<int> calls{0};
  p.set_force_cancel_hook([&] {
    ++calls;
    return true;
  });
  ASSERT_TRUE(p.set_running());
  EXPECT_TRUE(f.cancel(mproc::force));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_TRUE(f.cancelled());
  EXPECT_THROW(f.get(), mproc::Cancelled);
  // The worker's late result (or death report) is ignored.
  EXPECT_FALSE(p.set_value(5));
  EXPECT_FALSE(p.set_exception(std::make_exception_ptr(std::runtime_error("late"))));
  EXPECT_TRUE(f.cancelled());
}

TEST(Future, ForceCancelHookMayCompleteTheFutureItself) {
  Promise<int> p;
  auto f = p.future();
  p.set_force_cancel_hook([&] { return p.set_cancelled(); });
  ASSERT_TRUE(p.set_running());
  EXPECT_TRUE(f.cancel(mproc::force));
  EXPECT_TRUE(f.cancelled());
}

TEST(Future, ForceCancelFailsWhenTheHookRefusesOrIsMissing) {
  Promise<int> refused;
  refused.set_force_cancel_hook([] { return false; });
  ASSERT_TRUE(refused.set_running());
  EXPECT_FALSE(refused.future().cancel(mproc::force));
  EXPECT_FALSE(refused.future().done());

  Promise<int> no_hook;
  ASSERT_TRUE(no_hook.set_running());
  EXPECT_FALSE(no_hook.future().cancel(mproc::force));
  EXPECT_FALSE(no_hook.future().done());
}

TEST(Future, ForceCancelLosesToAResultThatArrivesFirst) {
  Promise<int> p;
  auto f = p.future();
  p.set_force_cancel_hook([&] {
    p.set_value(3);  // the task finished while the worker was being stopped
    return true;
  });
  ASSERT_TRUE(p.set_running());
  EXPECT_FALSE(f.cancel(mproc::force));
  EXPECT_EQ(f.get(), 3);
}

TEST(Future, ForceCancelOfAPendingFutureDoesNotCallTheHook) {
  Promise<int> p;
  bool called = false;
  p.set_force_cancel_hook([&] { return called = true; });
  EXPECT_TRUE(p.future().cancel(mproc::force));
  EXPECT_FALSE(called);
  EXPECT_TRUE(p.future().cancelled());
}

TEST(Future, OnlyTheFirstCompletionCounts) {
  Promise<int> p;
  auto f = p.future();
  EXPECT_TRUE(p.set_value(1));
  EXPECT_FALSE(p.set_value(2));
  EXPECT_FALSE(p.set_exception(std::make_exception_ptr(std::runtime_error("x"))));
  EXPECT_FALSE(p.set_cancelled());
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(f.get(), 1);

  Promise<int> q;
  EXPECT_TRUE(q.future().cancel());
  EXPECT_FALSE(q.set_value(2));
  EXPECT_TRUE(q.future().cancelled());
}

TEST(Future, NullExceptionIsAUsageError) {
  Promise<int> p;
  EXPECT_THROW(p.set_exception(nullptr), mproc::UsageError);
  EXPECT_FALSE(p.future().done());
}

TEST(Future, EmptyHandleThrowsUsageError) {
  Future<int> f;
  EXPECT_FALSE(f.valid());
  EXPECT_THROW(f.get(), mproc::UsageError);
  EXPECT_THROW(f.done(), mproc::UsageError);
  EXPECT_THROW(f.cancel(), mproc::UsageError);
  EXPECT_THROW(f.add_done_callback([](const Future<int>&) {}), mproc::UsageError);
  std::vector<Future<int>> fs{f};
  EXPECT_THROW(mproc::wait(fs), mproc::UsageError);
  EXPECT_THROW(mproc::as_completed(fs), mproc::UsageError);
}

TEST(Future, DestroyedPromiseFailsItsFutureWithBrokenPool) {
  Future<int> f;
  {
    Promise<int> p;
    f = p.future();
  }
  EXPECT_TRUE(f.done());
  EXPECT_THROW(f.get(), mproc::BrokenPool);
}

TEST(Future, DoneCallbackRunsOnceOnCompletionWithTheFuture) {
  Promise<int> p;
  auto f = p.future();
  int calls = 0;
  int seen = 0;
  f.add_done_callback([&](const Future<int>& g) {
    ++calls;
    seen = g.get();
    EXPECT_TRUE(g == f);
  });
  EXPECT_EQ(calls, 0);
  p.set_value(9);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, 9);
  p.set_value(10);
  EXPECT_EQ(calls, 1);
}

TEST(Future, DoneCallbackOnADoneFutureRunsImmediately) {
  Promise<int> p;
  auto f = p.future();
  f.cancel();
  bool ran = false;
  f.add_done_callback([&](const Future<int>& g) { ran = g.cancelled(); });
  EXPECT_TRUE(ran);
}

TEST(Future, DoneCallbacksRunInRegistrationOrderAndAMoveOnlyCallbackWorks) {
  Promise<void> p;
  auto f = p.future();
  std::vector<int> order;
  auto token = std::make_unique<int>(2);
  f.add_done_callback([&](const Future<void>&) { order.push_back(1); });
  f.add_done_callback([&, t = std::move(token)](const Future<void>&) { order.push_back(*t); });
  p.set_value();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(Future, ThrowingDoneCallbackIsSwallowed) {
  Promise<int> p;
  auto f = p.future();
  bool later_ran = false;
  f.add_done_callback([](const Future<int>&) { throw std::runtime_error("callback failed"); });
  f.add_done_callback([](const Future<int>&) { throw 42; });
  f.add_done_callback([&](const Future<int>&) { later_ran = true; });
  EXPECT_TRUE(p.set_value(1));
  EXPECT_TRUE(later_ran);
  EXPECT_NO_THROW(
      f.add_done_callback([](const Future<int>&) { throw std::runtime_error("again"); }));
  EXPECT_EQ(f.get(), 1);
}

TEST(Future, CallbackMayDropTheLastHandle) {
  auto p = std::make_unique<Promise<int>>();
  auto holder = std::make_shared<Future<int>>(p->future());
  holder->add_done_callback([&](const Future<int>&) { holder.reset(); });
  p->set_value(1);
  EXPECT_EQ(holder, nullptr);
  p.reset();
}

TEST(Future, ThenChainsValues) {
  Promise<int> p;
  auto f = p.future();
  Future<std::string> g = f.then([](const int& v) { return std::to_string(v * 2); });
  Future<std::size_t> h = g.then([](const std::string& s) { return s.size(); });
  EXPECT_FALSE(g.done());
  p.set_value(21);
  EXPECT_EQ(g.get(), "42");
  EXPECT_EQ(h.get(), 2u);
}

TEST(Future, MoveOnlyValuesWork) {
  Promise<std::unique_ptr<int>> p;
  auto f = p.future();
  auto g = f.then([](const std::unique_ptr<int>& v) { return std::make_unique<int>(*v + 1); });
  p.set_value(std::make_unique<int>(1));
  EXPECT_EQ(*f.get(), 1);
  EXPECT_EQ(*g.get(), 2);
}

TEST(Future, ThenOnADoneFutureRunsAtOnce) {
  Promise<int> p;
  p.set_value(1);
  auto g = p.future().then([](int v) { return v + 1; });
  EXPECT_TRUE(g.done());
  EXPECT_EQ(g.get(), 2);
}

TEST(Future, ThenPropagatesExceptionsAndCancellation) {
  Promise<int> p;
  bool ran = false;
  auto g = p.future().then([&](int v) {
    ran = true;
    return v;
  });
  p.set_exception(std::make_exception_ptr(std::out_of_range("source")));
  EXPECT_THROW(g.get(), std::out_of_range);
  EXPECT_FALSE(ran);
  EXPECT_EQ(g.exception(), p.future().exception());  // the same exception object

  Promise<int> q;
  auto h = q.future().then([&](int v) { return v; });
  q.future().cancel();
  EXPECT_TRUE(h.cancelled());
  EXPECT_THROW(h.get(), mproc::Cancelled);

  Promise<int> r;
  auto k = r.future().then([](int) -> int { throw std::invalid_argument("in then"); });
  r.set_value(1);
  EXPECT_THROW(k.get(), std::invalid_argument);
}

TEST(Future, ThenOnVoidFutures) {
  Promise<void> p;
  int count = 0;
  Future<int> g = p.future().then([&] { return ++count; });
  Future<void> h = g.then([&](int v) { count += v * 10; });
  Future<void> k = h.then([&] { ++count; });
  p.set_value();
  EXPECT_EQ(g.get(), 1);
  EXPECT_NO_THROW(h.get());
  EXPECT_NO_THROW(k.get());
  EXPECT_EQ(count, 12);
}

TEST(Future, CancelledContinuationDoesNotRun) {
  Promise<int> p;
  bool ran = false;
  auto g = p.future().then([&](int v) {
    ran = true;
    return v;
  });
  EXPECT_TRUE(g.cancel());
  p.set_value(1);
  EXPECT_FALSE(ran);
  EXPECT_TRUE(g.cancelled());
}

TEST(Future, ContinuationOfAnAbandonedFutureFailsWithBrokenPool) {
  Future<int> g;
  {
    Promise<int> p;
    g = p.future().then([](int v) { return v; });
  }
  EXPECT_THROW(g.get(), mproc::BrokenPool);
}

TEST(Future, ManyThreadsWaitOnOneFuture) {
  Promise<int> p;
  auto f = p.future();
  std::atomic<int> got{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([f, &got] {
      if (f.get_for(deadlock) == 5) ++got;
    });
  }
  p.set_value(5);
  for (auto& t : threads) t.join();
  EXPECT_EQ(got.load(), 16);
}

TEST(AsCompleted, YieldsInCompletionOrder) {
  auto ps = make_promises<int>(5);
  auto fs = futures_of(ps);
  ps[3].set_value(3);  // done before the call: comes first
  auto range = mproc::as_completed(fs);
  std::thread completer([&] {
    for (int i = 4; i >= 0; --i) {
      if (i == 3) continue;
      ps[static_cast<std::size_t>(i)].set_value(i);
    }
  });
  std::vector<int> order;
  for (auto&& f : range) order.push_back(f.get());
  completer.join();
  EXPECT_EQ(order.size(), 5u);
  EXPECT_EQ(order.front(), 3);
  // One thread completes the rest in sequence, so completion order is 4, 2, 1, 0.
  std::vector<int> rest(order.begin() + 1, order.end());
  EXPECT_EQ(rest, (std::vector<int>{4, 2, 1, 0}));
}

TEST(AsCompleted, ReverseCompletionFromAnotherThreadIsYieldedInThatOrder) {
  auto ps = make_promises<int>(50);
  auto fs = futures_of(ps);
  std::vector<int> order;
  {
    auto range = mproc::as_completed(fs, deadlock);
    std::thread completer([&] {
      for (std::size_t i = ps.size(); i-- > 0;) ps[i].set_value(static_cast<int>(i));
    });
    for (auto&& f : range) order.push_back(f.get());
    completer.join();
  }
  std::vector<int> expected(50);
  std::iota(expected.rbegin(), expected.rend(), 0);
  EXPECT_EQ(order, expected);
}

TEST(AsCompleted, TimeoutThrowsWhenIteratingPastTheDeadline) {
  auto ps = make_promises<int>(3);
  auto fs = futures_of(ps);
  ps[1].set_value(1);
  auto range = mproc::as_completed(fs, 10ms);
  auto it = range.begin();
  ASSERT_FALSE(it == std::default_sentinel);
  EXPECT_EQ(it->get(), 1);
  EXPECT_THROW(++it, mproc::TimeoutError);
  EXPECT_THROW(++it, mproc::TimeoutError);
}

TEST(AsCompleted, EmptyInputYieldsNothingAndCancelledFuturesAreYielded) {
  std::vector<Future<int>> none;
  int n = 0;
  for (auto&& f : mproc::as_completed(none)) n += f.get();
  EXPECT_EQ(n, 0);

  Promise<int> p;
  Promise<int> q;
  q.set_value(1);
  p.future().cancel();
  std::size_t count = 0;
  for (auto&& f : mproc::as_completed({p.future(), q.future()})) {
    EXPECT_TRUE(f.done());
    ++count;
  }
  EXPECT_EQ(count, 2u);
}

TEST(AsCompleted, AbandonedIterationUnregistersFromPendingFutures) {
  Promise<int> p;
  Promise<int> q;
  q.set_value(1);
  std::vector<Future<int>> fs{p.future(), q.future()};
  for (int round = 0; round < 100; ++round) {
    for (auto&& f : mproc::as_completed(fs)) {
      EXPECT_EQ(f.get(), 1);
      break;
    }
  }
  p.set_value(2);  // notifies no stale waiter (ASan would catch a dangling one)
  EXPECT_EQ(p.future().get(), 2);
}

TEST(AsCompleted, TenThousandFuturesFromFourThreadsAreEachYieldedOnce) {
  constexpr std::size_t n = 10'000;
  auto ps = make_promises<std::size_t>(n);
  auto fs = futures_of(ps);
  auto range = mproc::as_completed(fs, deadlock);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = t; i < n; i += 4) ps[i].set_value(i);
    });
  }
  std::vector<int> seen(n, 0);
  std::size_t total = 0;
  for (auto&& f : range) {
    ++seen[f.get()];
    ++total;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(total, n);
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
}

TEST(Wait, AllCompletedWaitsForEveryFuture) {
  auto ps = make_promises<int>(4);
  auto fs = futures_of(ps);
  std::thread t([&] {
    for (auto& p : ps) p.set_value(1);
  });
  auto [done, not_done] = mproc::wait(fs, ReturnWhen::all_completed, deadlock);
  t.join();
  EXPECT_EQ(done.size(), 4u);
  EXPECT_TRUE(not_done.empty());
  EXPECT_TRUE(done[0] == fs[0] && done[3] == fs[3]);  // input order
}

TEST(Wait, FirstCompletedReturnsOnceAnyIsDone) {
  auto ps = make_promises<int>(4);
  auto fs = futures_of(ps);
  std::thread t([&] { ps[2].set_value(2); });
  auto [done, not_done] = mproc::wait(fs, ReturnWhen::first_completed, deadlock);
  t.join();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0] == fs[2]);
  EXPECT_EQ(not_done.size(), 3u);
}

TEST(Wait, FirstExceptionReturnsOnAFailureButNotOnValuesOrCancellation) {
  auto ps = make_promises<int>(4);
  auto fs = futures_of(ps);
  ps[0].set_value(0);
  fs[1].cancel();
  {
    auto [done, not_done] = mproc::wait(fs, ReturnWhen::first_exception, 10ms);
    EXPECT_EQ(done.size(), 2u);  // timed out: a value and a cancellation don't count
    EXPECT_EQ(not_done.size(), 2u);
  }
  std::thread t([&] { ps[3].set_exception(std::make_exception_ptr(std::runtime_error("x"))); });
  auto [done, not_done] = mproc::wait(fs, ReturnWhen::first_exception, deadlock);
  t.join();
  EXPECT_EQ(done.size(), 3u);
  ASSERT_EQ(not_done.size(), 1u);
  EXPECT_TRUE(not_done[0] == fs[2]);
}

TEST(Wait, FirstExceptionWithoutFailuresWaitsForAll) {
  auto ps = make_promises<int>(3);
  auto fs = futures_of(ps);
  std::thread t([&] {
    for (auto& p : ps) p.set_value(1);
  });
  auto [done, not_done] = mproc::wait(fs, ReturnWhen::first_exception);
  t.join();
  EXPECT_EQ(done.size(), 3u);
  EXPECT_TRUE(not_done.empty());
}

TEST(Wait, TimeoutReturnsPartialResults) {
  auto ps = make_promises<int>(3);
  auto fs = futures_of(ps);
  ps[1].set_value(1);
  for (auto when : {ReturnWhen::all_completed, ReturnWhen::first_exception}) {
    auto [done, not_done] = mproc::wait(fs, when, 1ms);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0] == fs[1]);
    ASSERT_EQ(not_done.size(), 2u);
    EXPECT_TRUE(not_done[0] == fs[0] && not_done[1] == fs[2]);
  }
  auto [done, not_done] =
      mproc::wait(std::vector<Future<int>>{fs[0]}, ReturnWhen::first_completed, 0s);
  EXPECT_TRUE(done.empty());
  EXPECT_EQ(not_done.size(), 1u);
}

TEST(Wait, EmptyInputReturnsAtOnce) {
  std::vector<Future<void>> none;
  for (auto when :
       {ReturnWhen::first_completed, ReturnWhen::first_exception, ReturnWhen::all_completed}) {
    auto [done, not_done] = mproc::wait(none, when);
    EXPECT_TRUE(done.empty());
    EXPECT_TRUE(not_done.empty());
  }
}

TEST(Wait, RepeatedTimedOutWaitsDoNotAccumulateRegistrations) {
  Promise<int> p;
  std::vector<Future<int>> fs{p.future()};
  for (int i = 0; i < 1000; ++i) {
    auto [done, not_done] = mproc::wait(fs, ReturnWhen::first_completed, 0s);
    EXPECT_EQ(not_done.size(), 1u);
  }
  p.set_value(1);
  auto [done, not_done] = mproc::wait(fs);
  EXPECT_EQ(done.size(), 1u);
}
