// mproc::map, map_results, map_reduce: workers forked at the call. Ordering, inputs that cannot
// travel, every failure mode provoked for real (throw, SIGSEGV, abort, exit, SIGKILL, timeout,
// the caller killed), retries, and a stress run with workers killed at random.
#include "mproc/detail/one_shot_map.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mproc/log.hpp"
#include "mproc/process.hpp"
#include "mproc/shared.hpp"
#include "support/child_helpers.hpp"

using namespace std::chrono_literals;

namespace {

// A type that cannot travel (no serialize, holds a mutex and a raw pointer): only a fork child
// that already has it can use it.
struct Opaque {
  explicit Opaque(int v) : value(v), self(this) {}
  Opaque(Opaque&& o) noexcept : value(o.value), self(this) {}
  int value;
  const Opaque* self;
  std::mutex mutex;
};

struct UnregisteredError : std::exception {
  const char* what() const noexcept override { return "not registered"; }
};

enum class Crash { segv, abort, exit3, sigkill };

[[noreturn]] void crash(Crash how) {
  switch (how) {
    case Crash::segv: std::raise(SIGSEGV); break;
    case Crash::abort: std::abort();
    case Crash::exit3: std::exit(3);
    case Crash::sigkill: std::raise(SIGKILL); break;
  }
  std::_Exit(99);
}

int expected_signal(Crash how) {
  switch (how) {
    case Crash::segv: return SIGSEGV;
    case Crash::abort: return SIGABRT;
    case Crash::exit3: return 0;
    case Crash::sigkill: return SIGKILL;
  }
  return -1;
}

// The E that `e` holds, or nullopt.
template <class E>
std::optional<E> as(const std::exception_ptr& e) {
  try {
    if (e) std::rethrow_exception(e);
  } catch (const E& x) {
    return x;
  } catch (...) {
  }
  return std::nullopt;
}

}  // namespace

TEST(OneShotMap, ResultsComeBackInInputOrderForAVector) {
  std::vector<int> in(1000);
  std::iota(in.begin(), in.end(), -500);
  const auto out = mproc::map([](int x) { return x * 3; }, in, {.processes = 3});
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) EXPECT_EQ(out[i], in[i] * 3) << i;
}

TEST(OneShotMap, StringResultsComeBackInInputOrder) {
  const auto out = mproc::map(
      [](int x) { return std::string(static_cast<std::size_t>(x % 7), 'a') + std::to_string(x); },
      std::views::iota(0, 5000), {.processes = 2, .chunksize = 7});
  ASSERT_EQ(out.size(), 5000u);
  for (int i = 0; i < 5000; ++i) {
    EXPECT_EQ(out[static_cast<std::size_t>(i)],
              std::string(static_cast<std::size_t>(i % 7), 'a') + std::to_string(i));
  }
}

TEST(OneShotMap, IotaRangeIsReadInPlaceNotMaterialised) {
  const auto out =
      mproc::map([](long x) { return x * x; }, std::views::iota(10L, 100'010L), {.processes = 2});
  ASSERT_EQ(out.size(), 100'000u);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const long x = 10 + static_cast<long>(i);
    ASSERT_EQ(out[i], x * x);
  }
  // A random-access view's elements are computed by the workers only: if the parent copied
  // the range into a vector first, it would have called the transform itself.
  int parent_calls = 0;
  auto view = std::views::iota(0, 2000) | std::views::transform([&parent_calls](int i) {
                ++parent_calls;
                return i + 1;
              });
  const auto doubled = mproc::map([](int x) { return 2 * x; }, view, {.processes = 2});
  EXPECT_EQ(parent_calls, 0);
  ASSERT_EQ(doubled.size(), 2000u);
  for (int i = 0; i < 2000; ++i) EXPECT_EQ(doubled[static_cast<std::size_t>(i)], 2 * (i + 1));
}

TEST(OneShotMap, NonSerialisableInputsAndCapturingLambdaJustWork) {
  std::vector<Opaque> inputs;
  for (int i = 0; i < 300; ++i) inputs.emplace_back(i);
  const int offset = 1000;
  const std::string suffix = "!";
  const auto out = mproc::map(
      [&](const Opaque& o) {
        // The worker sees the very objects (same addresses: a copy-on-write view of them).
        std::lock_guard guard(const_cast<std::mutex&>(o.mutex));
        return std::to_string(o.self == &o ? o.value + offset : -1) + suffix;
      },
      inputs, {.processes = 2});
  ASSERT_EQ(out.size(), inputs.size());
  for (int i = 0; i < 300; ++i)
    EXPECT_EQ(out[static_cast<std::size_t>(i)], std::to_string(i + offset) + "!");
}

TEST(OneShotMap, InputRangeThatIsNotRandomAccessIsCopiedFirst) {
  std::list<int> in;
  for (int i = 0; i < 500; ++i) in.push_back(i);
  const auto out = mproc::map([](int x) { return x + 1; }, in, {.processes = 2});
  ASSERT_EQ(out.size(), 500u);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i + 1);
  auto odd = std::views::iota(0, 100) | std::views::filter([](int x) { return x % 2 == 1; });
  const auto squares = mproc::map([](int x) { return x * x; }, odd, {.processes = 2});
  ASSERT_EQ(squares.size(), 50u);
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(squares[static_cast<std::size_t>(i)], (2 * i + 1) * (2 * i + 1));
}

TEST(OneShotMap, EmptyInputStartsNoWorkerAndGivesEmptyResults) {
  const std::vector<int> none;
  EXPECT_TRUE(mproc::map([](int x) { return x; }, none).empty());
  EXPECT_TRUE(mproc::map_results([](int x) { return x; }, none).empty());
  EXPECT_EQ(mproc::map_reduce([](int x) { return x; }, none, std::plus<>{}), 0);
  EXPECT_EQ(mproc::map_reduce([](int x) { return std::to_string(x); }, none, std::plus<>{}), "");
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST(OneShotMap, MoreProcessesThanItems) {
  const std::vector<int> in{4, 5, 6};
  const auto out = mproc::map([](int x) { return x * 10; }, in, {.processes = 16});
  EXPECT_EQ(out, (std::vector<int>{40, 50, 60}));
}

TEST(OneShotMap, WorkersAreNamedMapWorker) {
  const auto names = mproc::map([](int) { return mproc::current_process().name(); },
                                std::views::iota(0, 4), {.processes = 2, .chunksize = 1});
  for (const auto& n : names) EXPECT_EQ(n.rfind("MapWorker-", 0), 0u) << n;
}

TEST(OneShotMap, WorkersIgnoreSigint) {
  const auto out = mproc::map(
      [](int x) {
        std::raise(SIGINT);
        return x;
      },
      std::views::iota(0, 20), {.processes = 2});
  ASSERT_EQ(out.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i);
}

TEST(OneShotMap, RegisteredStdExceptionComesBackAsItself) {
  try {
    (void)mproc::map(
        [](int x) {
          if (x == 42) throw std::invalid_argument("bad item 42");
          return x;
        },
        std::views::iota(0, 100), {.processes = 2});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "bad item 42");
  }
}

TEST(OneShotMap, UnregisteredExceptionIsARemoteErrorWithItsIndex) {
  try {
    (void)mproc::map(
        [](int x) {
          if (x == 7) throw UnregisteredError();
          return x;
        },
        std::views::iota(0, 50), {.processes = 2});
    FAIL() << "no exception";
  } catch (const mproc::RemoteError& e) {
    EXPECT_NE(e.type_name().find("UnregisteredError"), std::string::npos) << e.type_name();
    EXPECT_EQ(e.message(), "not registered");
    EXPECT_EQ(e.task_index(), 7);
    EXPECT_GT(e.pid(), 0);
    EXPECT_NE(e.pid(), ::getpid());
  }
}

TEST(OneShotMap, FirstErrorInInputOrderIsThrownAfterEveryItemRan) {
  mproc::Array<int> ran(400);
  try {
    (void)mproc::map(
        [&](int x) {
          std::atomic_ref<int>(ran[static_cast<std::size_t>(x)]).store(1);
          if (x == 350) throw std::runtime_error("late");
          if (x == 120) throw std::out_of_range("early");
          if (x == 121) throw std::logic_error("also early, but later");
          return x;
        },
        std::views::iota(0, 400), {.processes = 2, .chunksize = 5});
    FAIL() << "no exception";
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "early");
  }
  for (std::size_t i = 0; i < 400; ++i) EXPECT_EQ(ran[i], 1) << "item " << i << " never ran";
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST(OneShotMap, MapResultsKeepsEveryValueAndError) {
  const auto out = mproc::map_results(
      [](int x) -> std::string {
        if (x % 10 == 3) throw std::domain_error("no " + std::to_string(x));
        return std::to_string(x);
      },
      std::views::iota(0, 200), {.processes = 2});
  ASSERT_EQ(out.size(), 200u);
  for (int i = 0; i < 200; ++i) {
    const auto& r = out[static_cast<std::size_t>(i)];
    if (i % 10 == 3) {
      ASSERT_FALSE(r.has_value());
      const auto e = as<std::domain_error>(r.error());
      ASSERT_TRUE(e) << i;
      EXPECT_EQ(std::string(e->what()), "no " + std::to_string(i));
    } else {
      ASSERT_TRUE(r.has_value()) << i;
      EXPECT_EQ(*r, std::to_string(i));
    }
  }
}

class OneShotCrash : public ::testing::TestWithParam<Crash> {};

TEST_P(OneShotCrash, FailsExactlyTheItemItWasRunning) {
  const Crash how = GetParam();
  const auto out = mproc::map_results(
      [how](int x) {
        if (x == 37) crash(how);
        return x * 2;
      },
      std::views::iota(0, 120), {.processes = 2, .chunksize = 10});
  ASSERT_EQ(out.size(), 120u);
  for (int i = 0; i < 120; ++i) {
    const auto& r = out[static_cast<std::size_t>(i)];
    if (i != 37) {
      ASSERT_TRUE(r.has_value()) << "item " << i;
      EXPECT_EQ(*r, 2 * i);
      continue;
    }
    ASSERT_FALSE(r.has_value());
    const auto e = as<mproc::WorkerCrashed>(r.error());
    ASSERT_TRUE(e) << "item 37 did not fail with WorkerCrashed";
    EXPECT_EQ(e->task_index(), 37);
    EXPECT_EQ(e->signal(), expected_signal(how));
    if (how == Crash::exit3) {
      EXPECT_EQ(e->exit_code(), 3);
    } else {
      EXPECT_FALSE(e->exit_code().has_value());
    }
    EXPECT_GT(e->pid(), 0);
  }
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST_P(OneShotCrash, MapThrowsWorkerCrashedForTheItem) {
  const Crash how = GetParam();
  try {
    (void)mproc::map(
        [how](int x) {
          if (x == 5) crash(how);
          return x;
        },
        std::views::iota(0, 30), {.processes = 2});
    FAIL() << "no exception";
  } catch (const mproc::WorkerCrashed& e) {
    EXPECT_EQ(e.task_index(), 5);
    EXPECT_EQ(e.signal(), expected_signal(how));
  }
}

TEST_P(OneShotCrash, CrashOnlyTheFirstTimeSucceedsWithRetries) {
  const Crash how = GetParam();
  mproc::Value<int> crashed(0);
  const auto out = mproc::map(
      [how, &crashed](int x) {
        if (x == 61 && std::atomic_ref<int>(crashed.value()).exchange(1) == 0) crash(how);
        return x + 1;
      },
      std::views::iota(0, 100), {.processes = 2, .chunksize = 8, .max_retries = 1});
  ASSERT_EQ(out.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i + 1);
  EXPECT_EQ(crashed.value(), 1);
}

INSTANTIATE_TEST_SUITE_P(EachCrash, OneShotCrash,
                         ::testing::Values(Crash::segv, Crash::abort, Crash::exit3, Crash::sigkill),
                         [](const ::testing::TestParamInfo<Crash>& info) -> std::string {
                           switch (info.param) {
                             case Crash::segv: return "Sigsegv";
                             case Crash::abort: return "Abort";
                             case Crash::exit3: return "Exit3";
                             case Crash::sigkill: return "Sigkill";
                           }
                           return "Unknown";
                         });

TEST(OneShotMap, ItemThatAlwaysCrashesFailsAfterItsRetriesOnFreshWorkers) {
  mproc::Value<int> attempts(0);
  mproc::Array<int> pids(3);
  const auto out = mproc::map_results(
      [&](int x) {
        if (x == 4) {
          const int n = std::atomic_ref<int>(attempts.value()).fetch_add(1);
          if (n < 3) pids[static_cast<std::size_t>(n)] = ::getpid();
          std::abort();
        }
        return x;
      },
      std::views::iota(0, 10), {.processes = 2, .max_retries = 2});
  EXPECT_EQ(attempts.value(), 3);
  EXPECT_EQ(std::set<int>(pids.begin(), pids.end()).size(), 3u) << "a retry reused a worker";
  for (int i = 0; i < 10; ++i) {
    const auto& r = out[static_cast<std::size_t>(i)];
    if (i == 4) {
      const auto e = as<mproc::WorkerCrashed>(r.error());
      ASSERT_TRUE(e);
      EXPECT_EQ(e->signal(), SIGABRT);
      EXPECT_EQ(e->task_index(), 4);
    } else {
      EXPECT_EQ(r.value(), i);
    }
  }
}

TEST(OneShotMap, TaskTimeoutKillsTheWorkerAndFailsOnlyThatItem) {
  const auto start = std::chrono::steady_clock::now();
  const auto out = mproc::map_results(
      [](int x) {
        if (x == 9) std::this_thread::sleep_for(60s);
        return x;
      },
      std::views::iota(0, 40), {.processes = 2, .task_timeout = 300ms});
  // Not a timing assertion: a generous bound that only a hang (the 60 s sleep) would break.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s) << "the stuck worker was not killed";
  ASSERT_EQ(out.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    const auto& r = out[static_cast<std::size_t>(i)];
    if (i == 9) {
      const auto e = as<mproc::TaskTimeout>(r.error());
      ASSERT_TRUE(e) << "item 9 did not fail with TaskTimeout";
      EXPECT_EQ(e->task_index(), 9);
      EXPECT_EQ(e->timeout(), 300ms);
    } else {
      EXPECT_EQ(r.value(), i) << i;
    }
  }
}

TEST(OneShotMap, TimedOutItemSucceedsOnRetry) {
  mproc::Value<int> stuck(0);
  const auto out = mproc::map(
      [&](int x) {
        if (x == 2 && std::atomic_ref<int>(stuck.value()).exchange(1) == 0) {
          std::this_thread::sleep_for(60s);
        }
        return x * 5;
      },
      std::views::iota(0, 6), {.processes = 2, .max_retries = 1, .task_timeout = 300ms});
  EXPECT_EQ(out, (std::vector<int>{0, 5, 10, 15, 20, 25}));
}

TEST(OneShotMap, BadOptionsAreUsageErrors) {
  const std::vector<int> in{1, 2, 3};
  auto id = [](int x) { return x; };
  EXPECT_THROW((void)mproc::map(id, in, {.max_retries = -1}), mproc::UsageError);
  EXPECT_THROW((void)mproc::map(id, in, {.task_timeout = 0ns}), mproc::UsageError);
  EXPECT_THROW((void)mproc::map(id, in, {.task_timeout = -5ms}), mproc::UsageError);
}

TEST(OneShotMap, KilledCallerLeavesNoWorker) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t caller = ::fork();
  if (caller == 0) {
    ::close(pipefd[0]);
    const int out = pipefd[1];
    try {
      (void)mproc::map(
          [out](int x) {
            const int pid = ::getpid();
            if (::write(out, &pid, sizeof pid) != sizeof pid) std::_Exit(1);
            std::this_thread::sleep_for(60s);
            return x;
          },
          std::views::iota(0, 2), {.processes = 2, .chunksize = 1});
    } catch (...) {
    }
    ::_exit(2);
  }
  ::close(pipefd[1]);
  int workers[2] = {0, 0};
  for (int& w : workers) {
    ASSERT_EQ(::read(pipefd[0], &w, sizeof w), static_cast<ssize_t>(sizeof w));
  }
  ::close(pipefd[0]);
  ::kill(caller, SIGKILL);
  int status = 0;
  ::waitpid(caller, &status, 0);
  for (int w : workers) {
    EXPECT_TRUE(mproc::test::wait_gone(w)) << "worker " << w << " outlived its killed caller";
  }
}

namespace {

// Children of `parent` (from /proc/*/stat), except `self`.
std::vector<int> children_of(int parent, int self) {
  std::vector<int> out;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    const int pid = std::atoi(e->d_name);
    if (pid <= 0 || pid == self) continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2) continue;
    if (ppid == parent && state != 'Z') out.push_back(pid);
  }
  ::closedir(dir);
  return out;
}

// A raw child that SIGKILLs a random child of `parent` every few milliseconds until the write
// end of the pipe `stop` is closed; it exits with the number of kills (capped at 255).
pid_t start_killer(int parent, const int (&pipe)[2]) {
  const pid_t pid = ::fork();
  if (pid != 0) {
    ::close(pipe[0]);
    return pid;
  }
  ::close(pipe[1]);
  const int stop = pipe[0];
  std::mt19937 rng(12345);
  int kills = 0;
  for (;;) {
    pollfd p{stop, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(5 + rng() % 20)) != 0) break;  // closed: stop
    const auto victims = children_of(parent, ::getpid());
    if (victims.empty()) continue;
    ::kill(victims[rng() % victims.size()], SIGKILL);
    ++kills;
  }
  ::_exit(std::min(kills, 255));
}

std::uint64_t spin_value(std::uint64_t x) {
  // A few microseconds of work, so 200,000 items last long enough to be shot at many times.
  std::uint64_t h = x;
  for (int i = 0; i < 1500; ++i) h = h * 6364136223846793005ULL + 1442695040888963407ULL;
  return h;
}

}  // namespace

TEST(OneShotMap, WorkersKilledAtRandomLoseAndDuplicateNothing) {
  constexpr std::size_t kItems = 200'000;
  int stop[2];
  ASSERT_EQ(::pipe(stop), 0);
  const pid_t killer = start_killer(::getpid(), stop);
  mproc::Array<std::uint8_t> runs(kItems);  // how often each item's fn ran to completion
  const auto out = mproc::map_results(
      [&](std::size_t i) {
        const auto v = spin_value(i);
        std::atomic_ref<std::uint8_t>(runs[i]).fetch_add(1);
        return v;
      },
      std::views::iota(std::size_t{0}, kItems), {.processes = 2});
  ::close(stop[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(killer, &status, 0), killer);
  ASSERT_TRUE(WIFEXITED(status));
  const int kills = WEXITSTATUS(status);
  ASSERT_EQ(out.size(), kItems);
  std::size_t crashed = 0;
  for (std::size_t i = 0; i < kItems; ++i) {
    const auto& r = out[i];
    if (r.has_value()) {
      ASSERT_EQ(*r, spin_value(i)) << "item " << i << " holds another item's value";
      ASSERT_GE(runs[i], 1) << "item " << i << " has a value but never ran";
    } else {
      const auto e = as<mproc::WorkerCrashed>(r.error());
      ASSERT_TRUE(e) << "item " << i << " failed with something other than WorkerCrashed";
      ASSERT_EQ(e->task_index(), static_cast<std::int64_t>(i));
      ASSERT_EQ(e->signal(), SIGKILL);
      ++crashed;
    }
  }
  // Each kill fails at most the one item its victim was running.
  EXPECT_LE(crashed, static_cast<std::size_t>(kills));
  std::printf("[ info     ] %d workers killed, %zu items failed with WorkerCrashed\n", kills,
              crashed);
}

TEST(OneShotMap, WorkersKilledAtRandomWithRetriesStillCompleteEveryItem) {
  constexpr std::size_t kItems = 200'000;
  int stop[2];
  ASSERT_EQ(::pipe(stop), 0);
  const pid_t killer = start_killer(::getpid(), stop);
  const auto out =
      mproc::map([](std::size_t i) { return spin_value(i); },
                 std::views::iota(std::size_t{0}, kItems), {.processes = 2, .max_retries = 1000});
  ::close(stop[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(killer, &status, 0), killer);
  ASSERT_EQ(out.size(), kItems);
  for (std::size_t i = 0; i < kItems; ++i) ASSERT_EQ(out[i], spin_value(i)) << i;
}

TEST(OneShotMapReduce, MatchesASerialFold) {
  const auto sum = mproc::map_reduce([](std::uint64_t x) { return x * x; },
                                     std::views::iota(std::uint64_t{0}, std::uint64_t{100'000}),
                                     std::plus<>{}, {.processes = 2});
  std::uint64_t serial = 0;
  for (std::uint64_t x = 0; x < 100'000; ++x) serial += x * x;
  EXPECT_EQ(sum, serial);
}

TEST(OneShotMapReduce, CombinesChunksInInputOrder) {
  // String concatenation is associative but not commutative: any reordering shows.
  auto digit = [](int x) { return std::to_string(x % 10); };
  const auto joined = mproc::map_reduce(digit, std::views::iota(0, 3000), std::plus<>{},
                                        {.processes = 2, .chunksize = 7});
  std::string serial;
  for (int x = 0; x < 3000; ++x) serial += digit(x);
  EXPECT_EQ(joined, serial);
  const auto adaptive =
      mproc::map_reduce(digit, std::views::iota(0, 3000), std::plus<>{}, {.processes = 3});
  EXPECT_EQ(adaptive, serial);
}

TEST(OneShotMapReduce, ThrowsTheFirstErrorAndSurvivesCrashes) {
  try {
    (void)mproc::map_reduce(
        [](int x) {
          if (x == 77) throw std::invalid_argument("77");
          if (x == 500) std::abort();
          return x;
        },
        std::views::iota(0, 1000), std::plus<>{}, {.processes = 2});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "77");
  }
  mproc::Value<int> crashed(0);
  const long total = mproc::map_reduce(
      [&](int x) -> long {
        if (x == 500 && std::atomic_ref<int>(crashed.value()).exchange(1) == 0) std::abort();
        return x;
      },
      std::views::iota(0, 1000), std::plus<>{}, {.processes = 2, .max_retries = 1});
  EXPECT_EQ(total, 999L * 1000 / 2);
}

TEST(OneShotMap, ProgressBarRunsWithoutDisturbingResults) {
  const auto out = mproc::map([](int x) { return x; }, std::views::iota(0, 1000),
                              {.processes = 2, .progress = true});
  ASSERT_EQ(out.size(), 1000u);
  EXPECT_EQ(out.back(), 999);
}

TEST(OneShotMap, WorkTooSmallForProcessesIsExplainedAtDebugLevel) {
  // Capture stderr (the log's destination) in an anonymous temporary file.
  std::FILE* capture = std::tmpfile();
  ASSERT_NE(capture, nullptr);
  const int saved = ::dup(2);
  ASSERT_GE(saved, 0);
  ASSERT_EQ(::dup2(::fileno(capture), 2), 2);
  const auto previous = mproc::log_level();
  mproc::log_to_stderr(mproc::LogLevel::debug);
  const auto out =
      mproc::map([](int x) { return x + 1; }, std::views::iota(0, 10), {.processes = 2});
  mproc::log_to_stderr(previous);
  ::dup2(saved, 2);
  ::close(saved);
  std::string text;
  std::rewind(capture);
  char buf[4096];
  while (const std::size_t n = std::fread(buf, 1, sizeof buf, capture)) text.append(buf, n);
  std::fclose(capture);
  EXPECT_EQ(out.size(), 10u);
  EXPECT_NE(text.find("mproc::map: 10 items took about"), std::string::npos) << text;
  EXPECT_NE(text.find("a serial loop would be as fast or faster"), std::string::npos) << text;
}
