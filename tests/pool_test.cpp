// Pool: maps, tasks, lifecycle, for every start method.
#include "mproc/pool.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <list>
#include <numeric>
#include <ranges>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "mproc/queue.hpp"
#include "support/start_methods.hpp"

namespace {

using namespace std::chrono_literals;

int square(int x) {
  return x * x;
}
double root(int x) {
  return std::sqrt(static_cast<double>(x));
}
std::string repeat(std::string s) {
  return s + s;
}
int add(int a, int b) {
  return a + b;
}
int my_pid() {
  return static_cast<int>(::getpid());
}
void nothing(int) {}
int slow_identity(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(x % 7));
  return x;
}

class PoolEveryStart : public mproc::test::EveryStartMethod {
 protected:
  mproc::PoolOptions pool_opts(std::size_t n = 2) const {
    return mproc::PoolOptions{.processes = n, .start = GetParam()};
  }
};

TEST_P(PoolEveryStart, MapReturnsResultsInInputOrder) {
  mproc::Pool pool(pool_opts());
  std::vector<int> in(1000);
  std::iota(in.begin(), in.end(), -500);
  const std::vector<int> out = pool.map(square, in);
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) EXPECT_EQ(out[i], in[i] * in[i]);
}

TEST_P(PoolEveryStart, ApplyAsyncReturnsEachTasksResult) {
  mproc::Pool pool(pool_opts());
  std::vector<mproc::Future<int>> futures;
  for (int i = 0; i < 50; ++i) futures.push_back(pool.apply_async(add, i, 1000));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(futures[static_cast<std::size_t>(i)].get(), i + 1000);
  EXPECT_EQ(pool.apply(repeat, std::string("ab")), "abab");
}

TEST_P(PoolEveryStart, WorkersAreNamedPoolWorkerAndAppearInActiveChildren) {
  mproc::Pool pool(pool_opts(3));
  std::size_t workers = 0;
  for (const auto& c : mproc::active_children()) {
    if (c.name().rfind("PoolWorker-", 0) == 0) ++workers;
  }
  EXPECT_EQ(workers, 3u);
  EXPECT_EQ(pool.processes(), 3u);
}

MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(Pool, PoolEveryStart);

TEST(Pool, MapOverIotaTravelsAsBoundsAndFillsEveryResult) {
  mproc::Pool pool(2);
  const auto out = pool.map(root, std::views::iota(10, 200'010));
  ASSERT_EQ(out.size(), 200'000u);
  for (std::size_t i = 0; i < out.size(); i += 997) {
    EXPECT_DOUBLE_EQ(out[i], std::sqrt(static_cast<double>(i + 10)));
  }
  EXPECT_DOUBLE_EQ(out.back(), std::sqrt(200'009.0));
}

TEST(Pool, MapOfStringsUsesTheCodecPath) {
  mproc::Pool pool(2);
  const std::vector<std::string> in{"a", "bc", "", "def"};
  EXPECT_EQ(pool.map(repeat, in), (std::vector<std::string>{"aa", "bcbc", "", "defdef"}));
}

TEST(Pool, MapAcceptsNonRandomAccessRangesAndEmptyInput) {
  mproc::Pool pool(2);
  const std::list<int> in{1, 2, 3};
  EXPECT_EQ(pool.map(square, in), (std::vector<int>{1, 4, 9}));
  EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
  auto evens = std::views::iota(0, 10) | std::views::filter([](int x) { return x % 2 == 0; });
  EXPECT_EQ(pool.map(square, evens), (std::vector<int>{0, 4, 16, 36, 64}));
}

TEST(Pool, MapOfVoidFunctionRunsEveryItem) {
  mproc::Pool pool(2);
  pool.map(nothing, std::views::iota(0, 100));
  SUCCEED();
}

TEST(Pool, FixedChunksizeGivesTheSameResults) {
  mproc::Pool pool(2);
  for (std::size_t chunk : {1u, 7u, 1000u}) {
    const auto out = pool.map(square, std::views::iota(0, 500), {.chunksize = chunk});
    for (int i = 0; i < 500; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i * i);
  }
}

TEST(Pool, StarmapAppliesTuples) {
  mproc::Pool pool(2);
  const std::vector<std::tuple<int, int>> in{{1, 2}, {3, 4}, {5, 6}};
  EXPECT_EQ(pool.starmap(add, in), (std::vector<int>{3, 7, 11}));
}

TEST(Pool, ImapYieldsInOrderAndImapUnorderedYieldsEveryItem) {
  mproc::Pool pool(2);
  std::vector<int> ordered;
  for (int x : pool.imap(slow_identity, std::views::iota(0, 60))) ordered.push_back(x);
  std::vector<int> expected(60);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(ordered, expected);
  std::vector<int> unordered;
  for (int x : pool.imap_unordered(slow_identity, std::views::iota(0, 60), {.chunksize = 1})) {
    unordered.push_back(x);
  }
  std::sort(unordered.begin(), unordered.end());
  EXPECT_EQ(unordered, expected);
}

TEST(Pool, MapAsyncCompletesItsFutureWithTheVector) {
  mproc::Pool pool(2);
  auto f = pool.map_async(square, std::vector<int>{1, 2, 3});
  EXPECT_EQ(f.get(), (std::vector<int>{1, 4, 9}));
}

TEST(Pool, ProgressBarDoesNotChangeResults) {
  mproc::Pool pool(2);
  const auto out = pool.map(square, std::views::iota(0, 1000), {.progress = true});
  EXPECT_EQ(out[999], 999 * 999);
}

TEST(Pool, HandlesTravelAsTaskArguments) {
  mproc::Pool pool(2);
  mproc::Queue<int> q;
  pool.apply([](mproc::Queue<int> queue, int v) { queue.put(v * 2); }, q, 21);
  EXPECT_EQ(q.get(), 42);
}

TEST(Pool, CloseRefusesNewWorkAndJoinWaitsForQueuedWork) {
  mproc::Pool pool(2);
  auto f = pool.apply_async(slow_identity, 5);
  pool.close();
  EXPECT_THROW(pool.apply_async(square, 1), mproc::PoolClosed);
  EXPECT_THROW(pool.map(square, std::vector<int>{1}), mproc::PoolClosed);
  pool.join();
  EXPECT_EQ(f.get(), 5);
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST(Pool, JoinBeforeCloseIsAUsageError) {
  mproc::Pool pool(1);
  EXPECT_THROW(pool.join(), mproc::UsageError);
}

TEST(Pool, MaxTasksPerChildReplacesWorkers) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 1, .maxtasksperchild = 2});
  std::set<int> pids;
  for (int i = 0; i < 6; ++i) pids.insert(pool.apply(my_pid));
  EXPECT_EQ(pids.size(), 3u);
}

int g_initialised = 0;
void init_worker(int v) {
  g_initialised = v;
}
int read_initialised() {
  return g_initialised;
}

TEST(Pool, InitializerRunsInEveryWorkerBeforeTasks) {
  mproc::Pool pool(mproc::PoolOptions{.processes = 2, .initializer = {init_worker, 7}});
  EXPECT_EQ(pool.apply(read_initialised), 7);
  const auto all =
      pool.map([](int) { return g_initialised; }, std::views::iota(0, 20), {.chunksize = 1});
  EXPECT_TRUE(std::all_of(all.begin(), all.end(), [](int v) { return v == 7; }));
}

double twice(int x) {
  return 2.0 * x;
}
std::vector<int> echo(std::vector<int> v) {
  return v;
}

TEST(Pool, LargeInputsAndResultsBothWaysNeverDeadlock) {
  // Chunks of hundreds of KB each way fill both socket buffers: the engine must keep reading
  // results while tasks are being sent.
  mproc::Pool pool(2);
  const std::vector<int> in(600'000, 3);
  const auto out = pool.map(twice, in);
  ASSERT_EQ(out.size(), in.size());
  EXPECT_DOUBLE_EQ(out.front(), 6.0);
  EXPECT_DOUBLE_EQ(out.back(), 6.0);
  std::vector<mproc::Future<std::vector<int>>> fs;
  for (int i = 0; i < 6; ++i) fs.push_back(pool.apply_async(echo, std::vector<int>(1'000'000, i)));
  for (int i = 0; i < 6; ++i) {
    const auto& v = fs[static_cast<std::size_t>(i)].get();
    ASSERT_EQ(v.size(), 1'000'000u);
    EXPECT_EQ(v[999'999], i);
  }
}

// ---- trivially copyable results: written by the workers into a shared output segment ------

struct Pair {
  int x;
  double half;
};
Pair make_pair_of(int x) {
  return Pair{x, x / 2.0};
}
long cube(int x) {
  return static_cast<long>(x) * x * x;
}

/// How many mappings of map output segments process `pid` has (memfd:mproc-map-output).
int output_mappings(int pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  std::set<std::string> inodes;
  while (std::getline(maps, line)) {
    if (line.find("memfd:mproc-map-output") == std::string::npos) continue;
    std::istringstream fields(line);
    std::string range, perms, offset, dev, inode;
    fields >> range >> perms >> offset >> dev >> inode;
    inodes.insert(inode);
  }
  return static_cast<int>(inodes.size());
}

TEST(Pool, TriviallyCopyableResultsGoThroughOneReusedSharedSegment) {
  mproc::Pool pool(2);
  for (int round = 0; round < 4; ++round) {
    // Different sizes and types: a segment big enough is reused, whatever map had it before.
    const int n = 20'000 + round * 5'000;
    const auto pairs = pool.map(make_pair_of, std::views::iota(0, n));
    ASSERT_EQ(pairs.size(), static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(pairs[static_cast<std::size_t>(i)].x, i);
      ASSERT_EQ(pairs[static_cast<std::size_t>(i)].half, i / 2.0);
    }
    const auto cubes = pool.map(cube, std::views::iota(0, n / 2), {.chunksize = 777});
    for (int i = 0; i < n / 2; ++i) ASSERT_EQ(cubes[static_cast<std::size_t>(i)], cube(i));
  }
  // Every worker that wrote results keeps the segments it was sent mapped (at most two), and
  // does not map a new one per chunk or per map.
  int workers_with_output = 0;
  for (const auto& child : mproc::active_children()) {
    const int mapped = output_mappings(child.pid());
    EXPECT_LE(mapped, 2) << child.pid();
    if (mapped > 0) ++workers_with_output;
  }
  EXPECT_GE(workers_with_output, 1);
  EXPECT_LE(output_mappings(static_cast<int>(::getpid())), 2);
}

TEST(Pool, ConcurrentMapsOfTriviallyCopyableResultsEachGetTheirOwnOutput) {
  mproc::Pool pool(2);
  auto a = pool.map_async(square, std::views::iota(0, 30'000), {.chunksize = 1'000});
  auto b = pool.map_async(cube, std::views::iota(0, 30'000), {.chunksize = 1'500});
  auto lazy = pool.imap(square, std::views::iota(0, 10'000), {.chunksize = 300});
  const auto results = pool.map_results(cube, std::views::iota(0, 5'000));
  int k = 0;
  for (int v : lazy) {
    ASSERT_EQ(v, square(k));
    ++k;
  }
  EXPECT_EQ(k, 10'000);
  const auto& av = a.get();
  const auto& bv = b.get();
  for (int i = 0; i < 30'000; ++i) {
    ASSERT_EQ(av[static_cast<std::size_t>(i)], square(i));
    ASSERT_EQ(bv[static_cast<std::size_t>(i)], cube(i));
  }
  for (int i = 0; i < 5'000; ++i) ASSERT_EQ(*results[static_cast<std::size_t>(i)], cube(i));
}

}  // namespace
