// Tests for sync.hpp: Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier.
//
// Cross-process tests run their other party in an mproc::Process with a function-pointer
// target and handle arguments, so every start method (fork, forkserver, spawn) is exercised.
// A child reports failure by throwing (exit code 1, message on stderr) or with std::exit(n).
// Every wait has a deadline: a hang fails with "deadlock" instead of stalling.
#include "mproc/sync.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/shared.hpp"
#include "support/start_methods.hpp"

using namespace std::chrono_literals;
using mproc::Barrier;
using mproc::BoundedSemaphore;
using mproc::Condition;
using mproc::Event;
using mproc::Lock;
using mproc::Process;
using mproc::ProcessOptions;
using mproc::RLock;
using mproc::Semaphore;
using mproc::StartMethod;

namespace {

constexpr auto deadline = 30s;

void require(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(what);
}

int join_code(Process& p) {
  return mproc::test::join_within(p, deadline);
}

// ---- child targets ------------------------------------------------------------------------

void try_lock_expecting(Lock lock, bool expected) {
  const bool got = lock.try_lock();
  if (got) lock.unlock();
  std::exit(got == expected ? 0 : 3);
}

// Takes the lock, announces it, and waits to be killed inside the critical section.
void hold_lock_until_killed(Lock lock, Event holding) {
  lock.lock();
  holding.set();
  std::this_thread::sleep_for(120s);
}

void hold_rlock_until_killed(RLock lock, Event holding) {
  lock.lock();
  lock.lock();  // twice: recursion depth must not matter to recovery
  holding.set();
  std::this_thread::sleep_for(120s);
}

void hold_permit_until_killed(Semaphore sem, Event holding) {
  sem.acquire();
  holding.set();
  std::this_thread::sleep_for(120s);
}

void hold_lock_until_released(Lock lock, Event holding, Event release) {
  std::lock_guard guard(lock);
  holding.set();
  require(release.wait_for(deadline), "release never came");
}

void set_event(Event e) {
  e.set();
}

// Waits for `go`, then answers on `done`.
void echo_event(Event go, Event done) {
  require(go.wait_for(deadline), "go never came");
  done.set();
}

// Produces `count` items one at a time through a one-slot buffer guarded by `cond`.
void produce(Condition cond, mproc::Value<int> slot, int count) {
  std::unique_lock guard(cond);
  for (int i = 1; i <= count; ++i) {
    require(cond.wait_for(deadline, [&] { return slot.value() == 0; }), "consumer stalled");
    slot.value() = i;
    cond.notify_all();
  }
}

void barrier_party(Barrier barrier, mproc::Array<int> indices, int slot) {
  indices[static_cast<std::size_t>(slot)] = static_cast<int>(barrier.wait_for(deadline)) + 100;
}

// Waits without timeout; exits 0 only if the wait ends with BrokenBarrier.
void wait_expecting_broken(Barrier barrier) {
  try {
    static_cast<void>(barrier.wait());
  } catch (const mproc::BrokenBarrier&) {
    std::exit(0);
  }
  std::exit(4);
}

void arrive_and_wait(Barrier barrier) {
  static_cast<void>(barrier.wait());
}

void sleep_long() {
  std::this_thread::sleep_for(120s);
}

// Repeatedly takes both locks in the opposite order to the parent, through std::scoped_lock.
void scoped_increments(Lock a, Lock b, mproc::Value<long> counter, int n) {
  for (int i = 0; i < n; ++i) {
    std::scoped_lock guard(b, a);
    counter.value() += 1;
  }
}

class SyncEveryStartMethod : public mproc::test::EveryStartMethod {};

MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(Sync, SyncEveryStartMethod);

// ---- handles reach the same object under every start method -------------------------------

TEST_P(SyncEveryStartMethod, LockPassedToChildIsTheSameLock) {
  Lock lock;
  lock.lock();
  Process held(opts(), try_lock_expecting, lock, false);
  held.start();
  EXPECT_EQ(join_code(held), 0);
  lock.unlock();
  Process free(opts(), try_lock_expecting, lock, true);
  free.start();
  EXPECT_EQ(join_code(free), 0);
}

TEST_P(SyncEveryStartMethod, LockHolderKilledMidCriticalSectionIsRecovered) {
  Lock lock;
  Event holding;
  Process p(opts(), hold_lock_until_killed, lock, holding);
  p.start();
  ASSERT_TRUE(holding.wait_for(deadline)) << "deadlock: child never took the lock";
  EXPECT_FALSE(lock.try_lock());
  p.kill();
  EXPECT_EQ(join_code(p), -9);
  ASSERT_TRUE(lock.try_lock_for(deadline)) << "deadlock: dead holder's lock not recovered";
  EXPECT_TRUE(lock.previous_owner_died());
  lock.unlock();
  // The next ordinary acquisition clears the flag.
  lock.lock();
  EXPECT_FALSE(lock.previous_owner_died());
  lock.unlock();
}

TEST_P(SyncEveryStartMethod, RLockHolderKilledMidCriticalSectionIsRecovered) {
  RLock lock;
  Event holding;
  Process p(opts(), hold_rlock_until_killed, lock, holding);
  p.start();
  ASSERT_TRUE(holding.wait_for(deadline)) << "deadlock: child never took the lock";
  p.kill();
  EXPECT_EQ(join_code(p), -9);
  ASSERT_TRUE(lock.try_lock_for(deadline)) << "deadlock: dead holder's lock not recovered";
  EXPECT_TRUE(lock.previous_owner_died());
  lock.unlock();
  EXPECT_THROW(lock.unlock(), mproc::UsageError);
}

TEST_P(SyncEveryStartMethod, SemaphorePermitOfKilledHolderIsReturned) {
  Semaphore sem(1);
  Event holding;
  Process p(opts(), hold_permit_until_killed, static_cast<Semaphore>(sem), holding);
  p.start();
  ASSERT_TRUE(holding.wait_for(deadline)) << "deadlock: child never took the permit";
  EXPECT_FALSE(sem.try_acquire());
  p.kill();
  EXPECT_EQ(join_code(p), -9);
  // The waiting acquire notices the dead holder and gets its permit.
  ASSERT_TRUE(sem.try_acquire_for(deadline)) << "deadlock: permit of the dead holder lost";
  EXPECT_EQ(sem.value(), 0u);
  sem.release();
  EXPECT_EQ(sem.value(), 1u);
}

TEST_P(SyncEveryStartMethod, BoundedSemaphoreTravelsAndKeepsItsBound) {
  BoundedSemaphore sem(1);
  Event holding;
  Process p(opts(), hold_permit_until_killed, static_cast<Semaphore>(sem), holding);
  p.start();
  ASSERT_TRUE(holding.wait_for(deadline));
  p.kill();
  EXPECT_EQ(join_code(p), -9);
  ASSERT_TRUE(sem.try_acquire_for(deadline));
  sem.release();
  EXPECT_THROW(sem.release(), mproc::UsageError);
}

TEST_P(SyncEveryStartMethod, EventSetInChildWakesParent) {
  Event e;
  Process p(opts(), set_event, e);
  p.start();
  EXPECT_TRUE(e.wait_for(deadline)) << "deadlock: event never arrived";
  EXPECT_TRUE(e.is_set());
  EXPECT_EQ(join_code(p), 0);
}

TEST_P(SyncEveryStartMethod, EventPingPong) {
  Event go;
  Event done;
  Process p(opts(), echo_event, go, done);
  p.start();
  go.set();
  EXPECT_TRUE(done.wait_for(deadline));
  EXPECT_EQ(join_code(p), 0);
}

TEST_P(SyncEveryStartMethod, ConditionProducerConsumer) {
  Condition cond;
  mproc::Value<int> slot(0);
  constexpr int count = 200;
  Process p(opts(), produce, cond, slot, count);
  p.start();
  {
    std::unique_lock guard(cond);
    for (int expected = 1; expected <= count; ++expected) {
      ASSERT_TRUE(cond.wait_for(deadline, [&] { return slot.value() != 0; }))
          << "deadlock: producer stalled at item " << expected;
      ASSERT_EQ(slot.value(), expected);
      slot.value() = 0;
      cond.notify_all();
    }
  }
  EXPECT_EQ(join_code(p), 0);
}

TEST_P(SyncEveryStartMethod, BarrierOfThreeProcessesReturnsDistinctIndices) {
  Barrier barrier(3);
  mproc::Array<int> indices(3);
  Process a(opts(), barrier_party, barrier, indices, 0);
  Process b(opts(), barrier_party, barrier, indices, 1);
  a.start();
  b.start();
  indices[2] = static_cast<int>(barrier.wait_for(deadline)) + 100;
  EXPECT_EQ(join_code(a), 0);
  EXPECT_EQ(join_code(b), 0);
  std::vector<int> got(indices.begin(), indices.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<int>{100, 101, 102}));
}

TEST_P(SyncEveryStartMethod, BarrierPartyKilledBeforeArrivingBreaksItForTheOthers) {
  Barrier barrier(3);
  Process waiter(opts(), wait_expecting_broken, barrier);
  Process doomed(opts(), sleep_long);
  waiter.start();
  doomed.start();
  doomed.kill();
  EXPECT_EQ(join_code(doomed), -9);
  // The dead party never arrives: the timeout breaks the barrier for every waiter.
  EXPECT_THROW(static_cast<void>(barrier.wait_for(300ms)), mproc::BrokenBarrier);
  EXPECT_TRUE(barrier.broken());
  EXPECT_EQ(join_code(waiter), 0);
}

TEST_P(SyncEveryStartMethod, BarrierWaiterKilledWhileWaitingIsDetected) {
  Barrier barrier(3);
  Process doomed(opts(), arrive_and_wait, barrier);
  doomed.start();
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (barrier.n_waiting() < 1 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(barrier.n_waiting(), 1u) << "deadlock: child never arrived";
  doomed.kill();
  EXPECT_EQ(join_code(doomed), -9);
  // Detected by the liveness check, not by the (long) timeout: the message says so.
  try {
    static_cast<void>(barrier.wait_for(deadline));
    ADD_FAILURE() << "barrier tripped with a dead party";
  } catch (const mproc::BrokenBarrier& e) {
    EXPECT_NE(std::string(e.what()).find("broken while waiting"), std::string::npos) << e.what();
  }
}

TEST_P(SyncEveryStartMethod, ScopedLockOverTwoLocksInOppositeOrdersNeverDeadlocks) {
  Lock a;
  Lock b;
  mproc::Value<long> counter(0);
  constexpr int n = 2000;
  Process p(opts(), scoped_increments, a, b, counter, n);
  p.start();
  for (int i = 0; i < n; ++i) {
    std::scoped_lock guard(a, b);
    counter.value() += 1;
  }
  EXPECT_EQ(join_code(p), 0);
  EXPECT_EQ(counter.value(), 2 * n);
}

TEST_P(SyncEveryStartMethod, TryLockForTimesOutWhileAnotherProcessHoldsTheLock) {
  Lock lock;
  Event holding;
  Event release;
  Process p(opts(), hold_lock_until_released, lock, holding, release);
  p.start();
  ASSERT_TRUE(holding.wait_for(deadline));
  EXPECT_FALSE(lock.try_lock_for(50ms));
  EXPECT_FALSE(lock.try_lock());
  release.set();
  EXPECT_TRUE(lock.try_lock_for(deadline));
  EXPECT_FALSE(lock.previous_owner_died());
  lock.unlock();
  EXPECT_EQ(join_code(p), 0);
}

// ---- single-process behaviour -------------------------------------------------------------

TEST(Lock, TryLockOnALockTheCallerHoldsReturnsFalse) {
  Lock lock;
  lock.lock();
  EXPECT_TRUE(lock.held_by_caller());
  EXPECT_FALSE(lock.try_lock());
  EXPECT_FALSE(lock.try_lock_for(10ms));
  lock.unlock();
  EXPECT_FALSE(lock.held_by_caller());
}

TEST(Lock, LockingTwiceFromOneThreadThrowsInsteadOfDeadlocking) {
  Lock lock;
  lock.lock();
  EXPECT_THROW(lock.lock(), mproc::UsageError);
  lock.unlock();
}

TEST(Lock, UnlockOfAnUnownedLockThrowsUsageError) {
  Lock lock;
  EXPECT_THROW(lock.unlock(), mproc::UsageError);
}

TEST(Lock, UnlockFromAnotherThreadThrowsUsageError) {
  Lock lock;
  lock.lock();
  bool threw = false;
  std::thread([&] {
    try {
      lock.unlock();
    } catch (const mproc::UsageError&) {
      threw = true;
    }
  }).join();
  EXPECT_TRUE(threw);
  lock.unlock();
}

TEST(Lock, CopiesAreTheSameLock) {
  Lock a;
  Lock b = a;
  EXPECT_TRUE(a == b);
  std::lock_guard guard(a);
  EXPECT_FALSE(b.try_lock());
  EXPECT_TRUE(b.held_by_caller());
}

TEST(RLock, IsRecursiveAndReleasedAfterAsManyUnlocks) {
  RLock lock;
  lock.lock();
  EXPECT_TRUE(lock.try_lock());
  EXPECT_TRUE(lock.try_lock_for(10ms));
  lock.unlock();
  lock.unlock();
  EXPECT_TRUE(lock.held_by_caller());
  lock.unlock();
  EXPECT_FALSE(lock.held_by_caller());
  EXPECT_THROW(lock.unlock(), mproc::UsageError);
}

TEST(Semaphore, CountsPermits) {
  Semaphore sem(2);
  EXPECT_EQ(sem.value(), 2u);
  EXPECT_TRUE(sem.try_acquire());
  sem.acquire();
  EXPECT_FALSE(sem.try_acquire());
  EXPECT_FALSE(sem.try_acquire_for(20ms));
  sem.release(2);
  EXPECT_EQ(sem.value(), 2u);
  sem.release();  // an unbounded semaphore may go above its initial value
  EXPECT_EQ(sem.value(), 3u);
}

TEST(Semaphore, ReleaseFromAnotherThreadWakesAWaiter) {
  Semaphore sem(0);
  std::thread releaser([sem]() mutable {
    std::this_thread::sleep_for(20ms);
    sem.release();
  });
  EXPECT_TRUE(sem.try_acquire_for(deadline));
  releaser.join();
}

TEST(Semaphore, InitialValueAboveMaxIsRejected) {
  EXPECT_THROW(Semaphore(Semaphore::max() + 1u), mproc::UsageError);
}

TEST(BoundedSemaphore, OverReleaseThrowsUsageErrorAndChangesNothing) {
  BoundedSemaphore sem(2);
  EXPECT_THROW(sem.release(), mproc::UsageError);
  sem.acquire();
  EXPECT_THROW(sem.release(2), mproc::UsageError);
  EXPECT_EQ(sem.value(), 1u);
  sem.release();
  EXPECT_EQ(sem.value(), 2u);
}

TEST(Condition, WaitForTimesOutAndHoldsTheLockAgain) {
  Condition cond;
  std::unique_lock guard(cond);
  EXPECT_FALSE(cond.wait_for(20ms));
  EXPECT_TRUE(cond.get_lock().held_by_caller());
  EXPECT_FALSE(cond.wait_for(20ms, [] { return false; }));
  EXPECT_TRUE(cond.get_lock().held_by_caller());
}

TEST(Condition, CallsWithoutTheLockThrowUsageError) {
  Condition cond;
  EXPECT_THROW(cond.notify(), mproc::UsageError);
  EXPECT_THROW(cond.notify_all(), mproc::UsageError);
  EXPECT_THROW(cond.wait(), mproc::UsageError);
  EXPECT_THROW(static_cast<void>(cond.wait_for(1ms)), mproc::UsageError);
}

TEST(Condition, UsesTheLockItWasGiven) {
  Lock lock;
  Condition cond(lock);
  std::lock_guard guard(lock);
  EXPECT_TRUE(cond.get_lock().held_by_caller());
  cond.notify();
}

TEST(Event, SetClearIsSetAndWaitFor) {
  Event e;
  EXPECT_FALSE(e.is_set());
  EXPECT_FALSE(e.wait_for(10ms));
  e.set();
  EXPECT_TRUE(e.is_set());
  EXPECT_TRUE(e.wait_for(0ms));
  e.wait();
  e.clear();
  EXPECT_FALSE(e.is_set());
}

// Starts a thread that waits on `barrier` (setting `broken` if the wait breaks) and returns
// once it is waiting.
std::thread waiting_thread(Barrier& barrier, bool& broken) {
  std::thread waiter([&barrier, &broken] {
    try {
      static_cast<void>(barrier.wait_for(deadline));
    } catch (const mproc::BrokenBarrier&) {
      broken = true;
    }
  });
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (barrier.n_waiting() < 1 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(1ms);
  }
  return waiter;
}

TEST(Barrier, ZeroPartiesIsAUsageError) {
  EXPECT_THROW(Barrier(0), mproc::UsageError);
}

TEST(Barrier, SinglePartyTripsImmediatelyEveryRound) {
  Barrier barrier(1);
  EXPECT_EQ(barrier.wait(), 0u);
  EXPECT_EQ(barrier.wait(), 0u);
  EXPECT_EQ(barrier.parties(), 1u);
}

TEST(Barrier, AbortBreaksWaitersAndLaterWaitsUntilReset) {
  Barrier barrier(2);
  bool waiter_broken = false;
  std::thread waiter = waiting_thread(barrier, waiter_broken);
  barrier.abort();
  waiter.join();
  EXPECT_TRUE(waiter_broken);
  EXPECT_TRUE(barrier.broken());
  EXPECT_THROW(static_cast<void>(barrier.wait()), mproc::BrokenBarrier);
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
  // Usable again: two parties meet.
  std::thread other([&] { static_cast<void>(barrier.wait_for(deadline)); });
  EXPECT_NO_THROW(static_cast<void>(barrier.wait_for(deadline)));
  other.join();
}

TEST(Barrier, ResetUnderAWaiterBreaksItsWaitOnly) {
  Barrier barrier(2);
  bool waiter_broken = false;
  std::thread waiter = waiting_thread(barrier, waiter_broken);
  barrier.reset();
  waiter.join();
  EXPECT_TRUE(waiter_broken);
  EXPECT_FALSE(barrier.broken());
  EXPECT_EQ(barrier.n_waiting(), 0u);
}

TEST(Barrier, WaitForTimeoutBreaksTheBarrier) {
  Barrier barrier(2);
  EXPECT_THROW(static_cast<void>(barrier.wait_for(20ms)), mproc::BrokenBarrier);
  EXPECT_TRUE(barrier.broken());
}

// ---- codec ----------------------------------------------------------------------------------

TEST(SyncCodec, DecodedHandleRefersToTheSameObject) {
  Event e;
  mproc::Encoder out;
  mproc::encode_message(out, e);
  std::vector<mproc::detail::UniqueFd> fds;
  for (const int fd : out.fds()) fds.emplace_back(::dup(fd));
  mproc::Decoder in(out.bytes(), fds);
  Event copy = mproc::decode_message<Event>(in);
  copy.set();
  EXPECT_TRUE(e.is_set());
}

TEST(SyncCodec, DescriptorOfAnotherKindIsAProtocolError) {
  Lock lock;
  mproc::Encoder out;
  mproc::encode(out, lock);
  std::vector<mproc::detail::UniqueFd> fds;
  for (const int fd : out.fds()) fds.emplace_back(::dup(fd));
  mproc::Decoder in(out.bytes(), fds);
  EXPECT_THROW(static_cast<void>(mproc::decode<Event>(in)), mproc::ProtocolError);
}

TEST(SyncCodec, ConditionTravelsWithItsLock) {
  Condition cond;
  mproc::Encoder out;
  mproc::encode(out, cond);
  std::vector<mproc::detail::UniqueFd> fds;
  for (const int fd : out.fds()) fds.emplace_back(::dup(fd));
  mproc::Decoder in(out.bytes(), fds);
  Condition copy = mproc::decode<Condition>(in);
  std::lock_guard guard(cond);
  EXPECT_TRUE(copy.get_lock().held_by_caller());
}

}  // namespace
