// Pool failure semantics: the crash matrix. Each failure is provoked for real (a task that
// throws, aborts, segfaults, exits, is SIGKILLed from outside, runs out of memory or time) and
// must give exactly the defined exception, leave the pool usable and every other task correct.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/pool.hpp"
#include "mproc/shared.hpp"
#include "support/child_helpers.hpp"

namespace {

using namespace std::chrono_literals;

int square(int x) {
  return x * x;
}

struct MyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Unregistered : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int throw_invalid_argument(int x) {
  if (x == 3) throw std::invalid_argument("bad input 3");
  return x;
}
int throw_unregistered(int x) {
  if (x % 10 == 7) throw Unregistered("item " + std::to_string(x));
  return x;
}
int throw_registered(int) {
  throw MyError("custom");
}
int throw_int(int) {
  throw 42;
}

/// Dies in the way `how` names when x == 5; returns x otherwise.
int die_on_five(int x, int how) {
  if (x != 5) return x;
  switch (how) {
    case 0: std::abort();
    case 1: ::raise(SIGSEGV); break;
    case 2: std::exit(3);
    case 3: ::raise(SIGKILL); break;
    default: break;
  }
  return x;
}

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

int my_pid() {
  return static_cast<int>(::getpid());
}

TEST(PoolFailure, RegisteredStdExceptionComesBackAsItself) {
  mproc::Pool pool(2);
  auto f = pool.apply_async(throw_invalid_argument, 3);
  EXPECT_THROW(f.get(), std::invalid_argument);
  try {
    f.get();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "bad input 3");
  }
  EXPECT_EQ(pool.apply(square, 4), 16);
}

TEST(PoolFailure, UserRegisteredExceptionComesBackAsItself) {
  mproc::register_exception<MyError>();
  mproc::Pool pool(1);
  EXPECT_THROW(pool.apply(throw_registered, 0), MyError);
}

TEST(PoolFailure, UnregisteredExceptionIsARemoteErrorWithTypePidAndIndex) {
  mproc::Pool pool(1);
  auto f = pool.apply_async(throw_unregistered, 7);
  try {
    f.get();
    FAIL() << "expected RemoteError";
  } catch (const mproc::RemoteError& e) {
    EXPECT_NE(e.type_name().find("Unregistered"), std::string::npos) << e.type_name();
    EXPECT_EQ(e.message(), "item 7");
    EXPECT_GT(e.pid(), 0);
    EXPECT_NE(e.pid(), ::getpid());
    EXPECT_GE(e.task_index(), 1);
  }
  EXPECT_THROW(pool.apply(throw_int, 0), mproc::RemoteError);
}

TEST(PoolFailure, MapThrowsTheFirstErrorInInputOrderAfterEverythingIsDone) {
  mproc::Pool pool(2);
  try {
    pool.map(throw_unregistered, std::views::iota(0, 100), {.chunksize = 3});
    FAIL() << "expected RemoteError";
  } catch (const mproc::RemoteError& e) {
    EXPECT_EQ(e.message(), "item 7");
    EXPECT_EQ(e.task_index(), 7);
  }
}

TEST(PoolFailure, MapResultsKeepsEveryValueAndEveryError) {
  mproc::Pool pool(2);
  const auto all = pool.map_results(throw_unregistered, std::views::iota(0, 100));
  ASSERT_EQ(all.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    const auto& r = all[static_cast<std::size_t>(i)];
    if (i % 10 == 7) {
      ASSERT_FALSE(r.has_value()) << i;
      EXPECT_THROW(std::rethrow_exception(r.error()), mproc::RemoteError);
    } else {
      ASSERT_TRUE(r.has_value()) << i;
      EXPECT_EQ(*r, i);
    }
  }
}

class PoolCrash : public ::testing::TestWithParam<int> {};

TEST_P(PoolCrash, DyingWorkerFailsOnlyItsTaskAndIsReplaced) {
  const int how = GetParam();
  mproc::Pool pool(2);
  std::vector<mproc::Future<int>> futures;
  for (int i = 0; i < 10; ++i) futures.push_back(pool.apply_async(die_on_five, i, how));
  for (int i = 0; i < 10; ++i) {
    if (i == 5) {
      try {
        futures[5].get();
        FAIL() << "expected WorkerCrashed";
      } catch (const mproc::WorkerCrashed& e) {
        EXPECT_GT(e.pid(), 0);
        switch (how) {
          case 0: EXPECT_EQ(e.signal(), SIGABRT); break;
          case 1: EXPECT_EQ(e.signal(), SIGSEGV); break;
          case 2:
            EXPECT_EQ(e.signal(), 0);
            EXPECT_EQ(e.exit_code(), 3);
            break;
          case 3: EXPECT_EQ(e.signal(), SIGKILL); break;
        }
      }
    } else {
      EXPECT_EQ(futures[static_cast<std::size_t>(i)].get(), i);
    }
  }
  // Still usable, still two workers.
  EXPECT_EQ(pool.map(square, std::views::iota(0, 50))[49], 49 * 49);
  EXPECT_EQ(pool.processes(), 2u);
}

TEST_P(PoolCrash, CrashInAMapChunkFailsOnlyThatItem) {
  const int how = GetParam();
  mproc::Pool pool(2);
  std::vector<int> in(40);
  for (int i = 0; i < 40; ++i) in[static_cast<std::size_t>(i)] = i % 20;  // 5 twice
  std::vector<std::tuple<int, int>> args;
  for (int i = 0; i < 40; ++i) args.emplace_back(in[static_cast<std::size_t>(i)], how);
  const auto all = pool.map_results(
      [](std::tuple<int, int> a) { return die_on_five(std::get<0>(a), std::get<1>(a)); }, args,
      {.chunksize = 8});
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (in[i] == 5) {
      ASSERT_FALSE(all[i].has_value()) << i;
      EXPECT_THROW(std::rethrow_exception(all[i].error()), mproc::WorkerCrashed);
      try {
        std::rethrow_exception(all[i].error());
      } catch (const mproc::WorkerCrashed& e) {
        EXPECT_EQ(e.task_index(), static_cast<std::int64_t>(i));
      }
    } else {
      ASSERT_TRUE(all[i].has_value()) << i;
      EXPECT_EQ(*all[i], in[i]);
    }
  }
}

std::string crash_name(const ::testing::TestParamInfo<int>& info) {
  static const char* const names[] = {"abort", "segfault", "exit3", "sigkill"};
  return names[info.param];
}

INSTANTIATE_TEST_SUITE_P(Pool, PoolCrash, ::testing::Values(0, 1, 2, 3), crash_name);

// Runs of item 2 so far, shared with the (forked) workers of the split-chunk tests.
mproc::Value<int>* g_item2_runs = nullptr;

/// Item 5 exits with status 15; item 2 exits with status 12 from its second run on (the
/// first run is in the chunk that item 5 breaks, so item 2 crashes in a split-off part).
int crash_in_split_part(int x) {
  if (x == 5) ::_exit(15);
  if (x == 2 && std::atomic_ref<int>(g_item2_runs->value()).fetch_add(1) > 0) ::_exit(12);
  return x;
}

// A chunk that crashes is split into new tasks ([0, k), {k}, (k, n)). Each part must be a
// task of its own: a crash in one part must not be blamed on a part queued behind it.
TEST(PoolFailure, CrashInASplitChunkPartBlamesOnlyItsItem) {
  mproc::Value<int> runs(0);
  g_item2_runs = &runs;
  mproc::Pool pool({.processes = 1, .start = mproc::StartMethod::fork});
  std::vector<int> in(30);
  std::iota(in.begin(), in.end(), 0);
  const auto all = pool.map_results(crash_in_split_part, in, {.chunksize = 30, .timeout = 60s});
  ASSERT_EQ(all.size(), in.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i == 2 || i == 5) {
      ASSERT_FALSE(all[i].has_value()) << i;
      try {
        std::rethrow_exception(all[i].error());
      } catch (const mproc::WorkerCrashed& e) {
        EXPECT_EQ(e.task_index(), static_cast<std::int64_t>(i));
        EXPECT_EQ(e.exit_code(), std::optional<int>(i == 2 ? 12 : 15)) << i;
      } catch (const std::exception& e) {
        ADD_FAILURE() << i << ": " << e.what();
      }
    } else {
      ASSERT_TRUE(all[i].has_value()) << i << ": " << [&] {
        try {
          std::rethrow_exception(all[i].error());
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      }();
      EXPECT_EQ(*all[i], in[i]);
    }
  }
  g_item2_runs = nullptr;
}

/// Item 3 aborts; item 7 never returns (task_timeout ends it).
int abort_then_hang(int x) {
  if (x == 3) std::abort();
  if (x == 7) std::this_thread::sleep_for(1h);
  return x;
}

// The part after a crashed item runs as a task of its own, so task_timeout applies to it.
TEST(PoolFailure, TimeoutAppliesToTheRestOfACrashedChunk) {
  mproc::Pool pool({.processes = 1, .task_timeout = 1s});
  std::vector<int> in(12);
  std::iota(in.begin(), in.end(), 0);
  const auto all = pool.map_results(abort_then_hang, in, {.chunksize = 12, .timeout = 20s});
  ASSERT_EQ(all.size(), in.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i == 3) {
      EXPECT_THROW(std::rethrow_exception(all[i].error()), mproc::WorkerCrashed);
    } else if (i == 7) {
      ASSERT_FALSE(all[i].has_value());
      EXPECT_THROW(std::rethrow_exception(all[i].error()), mproc::TaskTimeout);
    } else {
      ASSERT_TRUE(all[i].has_value()) << i;
      EXPECT_EQ(*all[i], in[i]);
    }
  }
}

TEST(PoolFailure, WorkerKilledFromOutsideFailsTheRunningTask) {
  mproc::Pool pool(1);
  auto pid_future = pool.apply_async(my_pid);
  const int pid = pid_future.get();
  auto f = pool.apply_async(sleep_ms, 10'000);
  while (!f.running()) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  try {
    f.get();
    FAIL() << "expected WorkerCrashed";
  } catch (const mproc::WorkerCrashed& e) {
    EXPECT_EQ(e.signal(), SIGKILL);
    EXPECT_EQ(e.pid(), pid);
  }
  EXPECT_NE(pool.apply(my_pid), pid);
}

TEST(PoolFailure, TaskTimeoutKillsAndReplacesTheWorker) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 1, .task_timeout = 200ms});
  const int before = pool.apply(my_pid);
  auto slow = pool.apply_async(sleep_ms, 20'000);
  auto after = pool.apply_async(square, 9);
  try {
    slow.get();
    FAIL() << "expected TaskTimeout";
  } catch (const mproc::TaskTimeout& e) {
    EXPECT_EQ(e.pid(), before);
    EXPECT_EQ(e.timeout(), std::chrono::nanoseconds(200ms));
  }
  EXPECT_EQ(after.get(), 81);
  EXPECT_NE(pool.apply(my_pid), before);
}

/// Crashes the first time it runs for `marker` (a file it creates), succeeds after.
int crash_once(std::string marker) {
  if (!std::filesystem::exists(marker)) {
    std::ofstream(marker) << "x";
    std::abort();
  }
  return 1;
}

TEST(PoolFailure, MaxRetriesReRunsACrashedTaskOnAFreshWorker) {
  const std::string marker = "/tmp/pool-retry-" + std::to_string(::getpid());
  std::filesystem::remove(marker);
  {
    mproc::Pool pool(mproc::PoolOptions{.processes = 1, .max_retries = 1});
    EXPECT_EQ(pool.apply(crash_once, marker), 1);
  }
  std::filesystem::remove(marker);
  {
    mproc::Pool pool(mproc::PoolOptions{.processes = 1, .max_retries = 0});
    EXPECT_THROW(pool.apply(crash_once, marker), mproc::WorkerCrashed);
  }
  std::filesystem::remove(marker);
}

void failing_initializer() {
  throw std::runtime_error("no database");
}

TEST(PoolFailure, FailingInitializerBreaksThePoolWithItsError) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 2, .initializer = {failing_initializer}});
  try {
    // The pool may be broken already when the call is made: then the call itself throws.
    pool.apply_async(square, 2).get();
    FAIL() << "expected BrokenPool";
  } catch (const mproc::BrokenPool& e) {
    EXPECT_NE(std::string(e.what()).find("no database"), std::string::npos) << e.what();
  }
  // Later calls fail at once.
  EXPECT_THROW(pool.apply(square, 1), mproc::BrokenPool);
}

void crashing_initializer() {
  ::_exit(3);  // not an exception: the worker is gone before it can report anything
}
void killed_initializer() {
  ::raise(SIGSEGV);
}

// Python's Pool forks replacements forever when its initializer kills the worker, and the
// caller waits forever. Here the pool breaks after a few such starts in a row.
TEST(PoolFailure, InitializerThatKillsItsWorkerBreaksThePoolInsteadOfRespawningForever) {
  for (auto* init : {&crashing_initializer, &killed_initializer}) {
    {
      mproc::Pool pool(mproc::PoolOptions{.processes = 2, .initializer = {init}});
      try {
        pool.apply_async(square, 2).get();  // or the call throws, if already broken
        FAIL() << "expected BrokenPool";
      } catch (const mproc::BrokenPool& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("before its initializer returned"), std::string::npos) << what;
        EXPECT_NE(what.find(init == &crashing_initializer ? "exited with status 3"
                                                          : "killed by signal 11"),
                  std::string::npos)
            << what;
      }
      EXPECT_THROW(pool.apply(square, 1), mproc::BrokenPool);
    }
    EXPECT_TRUE(mproc::active_children().empty());
  }
}

TEST(PoolFailure, AnIdlePoolWhoseWorkersCannotStartBreaksToo) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 1, .initializer = {crashing_initializer}});
  // Nothing submitted: it must stop forking on its own, and say why at the next call.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    try {
      pool.apply_async(square, 1);
    } catch (const mproc::BrokenPool&) {
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the pool kept respawning";
    std::this_thread::sleep_for(20ms);
  }
}

TEST(PoolFailure, ReadyIdleWorkersKilledFromOutsideAreReplacedWithoutBreakingThePool) {
  mproc::Pool pool(1);
  EXPECT_EQ(pool.apply(square, 2), 4);
  for (int kill = 0; kill < 12; ++kill) {
    const auto children = mproc::active_children();
    ASSERT_EQ(children.size(), 1u);
    const int victim = children[0].pid();
    std::this_thread::sleep_for(50ms);  // long past its start: it waits for work
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {  // until its replacement is running
      const auto now = mproc::active_children();
      if (now.size() == 1 && now[0].pid() != victim) break;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline);
      std::this_thread::sleep_for(5ms);
    }
  }
  EXPECT_EQ(pool.apply(square, 3), 9);
}

TEST(PoolFailure, TerminateCancelsUnfinishedFutures) {
  mproc::Pool pool(1);
  auto running = pool.apply_async(sleep_ms, 10'000);
  auto queued = pool.apply_async(sleep_ms, 10'000);
  while (!running.running()) std::this_thread::sleep_for(1ms);
  pool.terminate();
  EXPECT_THROW(running.get(), mproc::Cancelled);
  EXPECT_THROW(queued.get(), mproc::Cancelled);
  EXPECT_THROW(pool.apply_async(square, 1), mproc::PoolClosed);
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST(PoolFailure, ForceCancelStopsARunningTaskAndThePoolGoesOn) {
  mproc::Pool pool(1);
  auto f = pool.apply_async(sleep_ms, 10'000);
  while (!f.running()) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(f.cancel());  // running: plain cancel does not touch it
  EXPECT_TRUE(f.cancel(mproc::force));
  EXPECT_TRUE(f.cancelled());
  EXPECT_THROW(f.get(), mproc::Cancelled);
  EXPECT_EQ(pool.apply(square, 5), 25);
}

struct Unencodable {
  int v = 0;
  std::string note;  // not trivially copyable: goes through serialize()
  template <class A>
  void serialize(A& a) {
    if (v < 0) throw std::runtime_error("cannot encode a negative Unencodable");
    a(v, note);
  }
};
Unencodable make_unencodable(int v) {
  return Unencodable{v, "n"};
}

TEST(PoolFailure, AResultThatCannotBeEncodedFailsOnlyThatTask) {
  mproc::Pool pool(1);
  EXPECT_THROW(pool.apply(make_unencodable, -1), std::runtime_error);
  EXPECT_EQ(pool.apply(make_unencodable, 4).v, 4);
}

#if !defined(__SANITIZE_ADDRESS__)
std::size_t allocate_mib(std::size_t mib) {
  std::vector<char> block(mib << 20, 1);
  return block.size();
}

TEST(PoolFailure, MemoryLimitTurnsAHugeAllocationIntoBadAlloc) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 1, .memory_limit = std::size_t{512} << 20});
  EXPECT_THROW(pool.apply(allocate_mib, 2048), std::bad_alloc);
  EXPECT_EQ(pool.apply(allocate_mib, 16), std::size_t{16} << 20);
}
#endif

struct Tagged {
  int x;
  int round;
};

/// Item x of map round `round`; SIGKILLs its own worker at item 250 of round 0 (after the
/// items before it in the chunk wrote their results into the shared output segment).
Tagged tagged(std::tuple<int, int> a) {
  const auto [x, round] = a;
  if (round == 0 && x == 250) ::raise(SIGKILL);
  return Tagged{x, round};
}

TEST(PoolFailure, WorkerKilledMidChunkOfSharedResultsFailsOnlyThatItemAndOutputIsReused) {
  mproc::Pool pool(2);
  for (int round = 0; round < 3; ++round) {
    std::vector<std::tuple<int, int>> args;
    for (int i = 0; i < 1'000; ++i) args.emplace_back(i, round);
    // Chunks of 100: the worker dies at the 51st item of its chunk; the 50 before it are in
    // the segment but were never reported, so they run again elsewhere (once each in the
    // output), as does the rest of the chunk. Later rounds reuse the segment: no stale value
    // of an earlier round may show through.
    const auto all = pool.map_results(tagged, args, {.chunksize = 100});
    ASSERT_EQ(all.size(), 1'000u);
    for (int i = 0; i < 1'000; ++i) {
      const auto& r = all[static_cast<std::size_t>(i)];
      if (round == 0 && i == 250) {
        ASSERT_FALSE(r.has_value());
        try {
          std::rethrow_exception(r.error());
        } catch (const mproc::WorkerCrashed& e) {
          EXPECT_EQ(e.signal(), SIGKILL);
          EXPECT_EQ(e.task_index(), 250);
        }
        continue;
      }
      ASSERT_TRUE(r.has_value()) << i;
      EXPECT_EQ(r->x, i);
      EXPECT_EQ(r->round, round);
    }
  }
  // map() throws that item's error after every other item is done.
  std::vector<std::tuple<int, int>> again;
  for (int i = 0; i < 400; ++i) again.emplace_back(i, 0);
  EXPECT_THROW(pool.map(tagged, again, {.chunksize = 64}), mproc::WorkerCrashed);
}

TEST(PoolFailure, RetriedItemOfSharedResultsWritesItsValue) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 2, .max_retries = 1});
  // die_on_five with how = 3 SIGKILLs at x == 5 on every attempt: with one retry it still
  // fails; every other item's value is in place.
  std::vector<std::tuple<int, int>> args;
  for (int i = 0; i < 64; ++i) args.emplace_back(i, 3);
  const auto all = pool.map_results(
      [](std::tuple<int, int> a) { return die_on_five(std::get<0>(a), std::get<1>(a)); }, args,
      {.chunksize = 16});
  for (int i = 0; i < 64; ++i) {
    const auto& r = all[static_cast<std::size_t>(i)];
    if (i == 5) {
      EXPECT_FALSE(r.has_value());
    } else {
      ASSERT_TRUE(r.has_value()) << i;
      EXPECT_EQ(*r, i);
    }
  }
}

TEST(PoolFailure, EveryItemAccountedForExactlyOnceWhileWorkersAreKilledAtRandom) {
  mproc::Pool pool(3);
  std::atomic<bool> done{false};
  std::atomic<int> kills{0};
  std::thread killer([&] {
    std::mt19937 rng(12345);
    while (!done.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 30));
      const auto children = mproc::active_children();
      if (children.empty()) continue;
      const auto& victim = children[rng() % children.size()];
      if (::kill(victim.pid(), SIGKILL) == 0) ++kills;
    }
  });
  const int n = 200'000;
  const auto all = pool.map_results(
      [](int x) {
        volatile double s = 0;
        for (int i = 0; i < 50; ++i) s = s + i;
        return x;
      },
      std::views::iota(0, n), {.chunksize = 500});
  done = true;
  killer.join();
  ASSERT_EQ(all.size(), static_cast<std::size_t>(n));
  int crashed = 0;
  for (int i = 0; i < n; ++i) {
    const auto& r = all[static_cast<std::size_t>(i)];
    if (r.has_value()) {
      ASSERT_EQ(*r, i);
    } else {
      ++crashed;
      EXPECT_THROW(std::rethrow_exception(r.error()), mproc::WorkerCrashed);
    }
  }
  // At most one item per kill fails; the rest of each chunk is re-run.
  EXPECT_LE(crashed, kills.load());
}

/// In a child: sends the pids of this process's pool workers (count first: the workers
/// inherit the pipe, so the reader cannot wait for EOF).
void send_worker_pids(int fd) {
  const auto children = mproc::active_children();
  const int count = static_cast<int>(children.size());
  if (::write(fd, &count, sizeof count) != sizeof count) ::_exit(2);
  for (const auto& c : children) {
    const int pid = c.pid();
    if (::write(fd, &pid, sizeof pid) != sizeof pid) ::_exit(2);
  }
}

std::vector<int> receive_worker_pids(int fd) {
  int count = 0;
  std::vector<int> pids;
  if (::read(fd, &count, sizeof count) != sizeof count) return pids;
  for (int i = 0; i < count; ++i) {
    int pid = 0;
    if (::read(fd, &pid, sizeof pid) != sizeof pid) break;
    pids.push_back(pid);
  }
  return pids;
}

TEST(PoolFailure, ParentKilledMidMapLeavesNoWorker) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    mproc::Pool pool(2);
    send_worker_pids(fds[1]);
    pool.map(sleep_ms, std::vector<int>(100, 100));
    ::_exit(0);
  }
  ::close(fds[1]);
  const std::vector<int> workers = receive_worker_pids(fds[0]);
  ::close(fds[0]);
  ASSERT_EQ(workers.size(), 2u);
  std::this_thread::sleep_for(100ms);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  for (int w : workers) EXPECT_TRUE(mproc::test::wait_gone(w)) << "worker " << w << " survived";
}

TEST(PoolFailure, CtrlCToTheProcessGroupStopsEverythingWithoutWorkerOutput) {
  int out[2], err[2];
  ASSERT_EQ(::pipe(out), 0);
  ASSERT_EQ(::pipe(err), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::setpgid(0, 0);
    // An interactive program's disposition (a shell starts background jobs with SIGINT ignored).
    ::signal(SIGINT, SIG_DFL);
    ::dup2(err[1], STDERR_FILENO);
    ::close(err[1]);
    ::close(out[0]);
    ::close(err[0]);
    mproc::Pool pool(2);
    send_worker_pids(out[1]);
    pool.map(sleep_ms, std::vector<int>(100, 100));
    ::_exit(0);
  }
  ::close(out[1]);
  ::close(err[1]);
  const std::vector<int> workers = receive_worker_pids(out[0]);
  ::close(out[0]);
  ASSERT_EQ(workers.size(), 2u);
  std::this_thread::sleep_for(100ms);
  ASSERT_EQ(::kill(-child, SIGINT), 0);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
  for (int w : workers) EXPECT_TRUE(mproc::test::wait_gone(w)) << "worker " << w << " survived";
  std::string text;
  char buf[256];
  ssize_t n;
  while ((n = ::read(err[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
  ::close(err[0]);
  EXPECT_EQ(text, "") << "workers printed on Ctrl-C";
}

}  // namespace
