// Queue, JoinableQueue, SimpleQueue: order, timeouts, MPMC without loss, any item size,
// close, producer/consumer death, every start method.
#include "mproc/queue.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mproc/process.hpp"
#include "support/child_helpers.hpp"
#include "support/start_methods.hpp"

using namespace std::chrono_literals;
using mproc::JoinableQueue;
using mproc::Process;
using mproc::ProcessOptions;
using mproc::Queue;
using mproc::SimpleQueue;
using mproc::StartMethod;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr int kScale = 10;  // sanitizers are ~10x slower; the release build runs the full count
#else
constexpr int kScale = 1;
#endif

class QueueEveryStartMethod : public mproc::test::EveryStartMethod {};

MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(Queue, QueueEveryStartMethod);

// Items carry (producer, sequence) so the reader can check loss, duplicates and order.
struct Tagged {
  std::int32_t producer;
  std::int32_t seq;
};

void produce_tagged(Queue<Tagged> q, int producer, int count) {
  for (int i = 0; i < count; ++i) q.put(Tagged{producer, i});
}

// Consumes until a {-1, -1} sentinel; reports per-producer counts and an order check on `out`.
void consume_tagged(Queue<Tagged> q, Queue<std::vector<std::int64_t>> out, int producers) {
  std::vector<std::int64_t> sums(static_cast<std::size_t>(producers) * 2, 0);
  std::vector<std::int32_t> last(static_cast<std::size_t>(producers), -1);
  std::int64_t disorder = 0;
  for (;;) {
    const Tagged t = q.get();
    if (t.producer < 0) break;
    auto p = static_cast<std::size_t>(t.producer);
    sums[2 * p] += 1;
    sums[2 * p + 1] += t.seq;
    if (t.seq <= last[p]) ++disorder;  // one producer's items arrive in its order
    last[p] = t.seq;
  }
  sums.push_back(disorder);
  out.put(sums);
}

void put_string(Queue<std::string> q, std::string s) {
  q.put(s);
}
void get_and_check(Queue<std::string> q, std::string expected) {
  std::exit(q.get() == expected ? 0 : 3);
}

void put_many_and_exit(Queue<int> q, int n) {
  for (int i = 0; i < n; ++i) q.put(i);
}

std::vector<char> pattern(std::size_t size, unsigned seed) {
  std::vector<char> v(size);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : v) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return v;
}

// Puts a small marker, then a huge item (the parent kills it meanwhile), then never returns.
void put_huge_forever(Queue<std::vector<char>> q, Queue<int> started) {
  q.put(pattern(10, 1));
  started.put(1);
  q.put(pattern(std::size_t{48} << 20, 2));  // 48 MiB: streams, blocks until read
  started.put(2);
  std::this_thread::sleep_for(60s);
}

// Takes one huge item slowly: reads only part of it before the parent kills it.
void get_one(Queue<std::vector<char>> q, Queue<int> started) {
  started.put(1);
  const auto v = q.get();
  std::exit(v.size() > 0 ? 0 : 3);
}

bool g_slow_decode = false;  // set only in the consumer child

// An item whose decoding never ends: a consumer taking it is "mid-get" until killed.
struct SlowItem {
  std::vector<char> data;
  template <class A>
  void save(A& a) const {
    a(data);
  }
  template <class A>
  void load(A& a) {
    a(data);
    if (g_slow_decode) std::this_thread::sleep_for(60s);
  }
};

void get_slow_item(Queue<SlowItem> q, Queue<int> started) {
  g_slow_decode = true;
  started.put(1);
  (void)q.get();
  std::exit(3);
}

void joinable_worker(JoinableQueue<int> q, Queue<std::int64_t> sums) {
  std::int64_t sum = 0;
  for (;;) {
    const int v = q.get();
    if (v < 0) {
      q.task_done();
      break;
    }
    sum += v;
    q.task_done();
  }
  sums.put(sum);
}

void simple_echo(SimpleQueue<std::string> in, SimpleQueue<std::string> out) {
  out.put(in.get() + "!");
}

}  // namespace

TEST(Queue, FifoOrderWithOneProducer) {
  Queue<int> q;
  for (int i = 0; i < 1000; ++i) q.put(i);
  EXPECT_EQ(q.qsize(), 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(q.get(), i);
  EXPECT_TRUE(q.empty());
}

TEST(Queue, FifoOrderAcrossAProcess) {
  Queue<Tagged> q;
  Queue<std::vector<std::int64_t>> out;
  Process p(produce_tagged, q, 0, 20000);
  p.start();
  for (int i = 0; i < 20000; ++i) {
    const auto t = q.get_for(10s);
    ASSERT_TRUE(t.has_value()) << "deadlock: item " << i << " never arrived";
    ASSERT_EQ(t->seq, i);
  }
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(Queue, BoundedPutForTimesOutWhenFull) {
  Queue<int> q(2);
  EXPECT_EQ(q.maxsize(), 2u);
  q.put(1);
  EXPECT_TRUE(q.try_put(2));
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.put_for(3, 50ms));
  EXPECT_FALSE(q.try_put(3));
  EXPECT_EQ(q.qsize(), 2u);
  EXPECT_EQ(q.get(), 1);
  EXPECT_TRUE(q.put_for(3, 50ms));
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.get(), 3);
}

TEST(Queue, TryGetOnEmptyReturnsNullopt) {
  Queue<std::string> q;
  EXPECT_FALSE(q.try_get().has_value());
  q.put("x");
  EXPECT_EQ(q.try_get(), std::optional<std::string>("x"));
  EXPECT_FALSE(q.try_get().has_value());
}

TEST(Queue, GetForTimesOut) {
  Queue<int> q;
  EXPECT_FALSE(q.get_for(30ms).has_value());
  q.put(7);
  EXPECT_EQ(q.get_for(30ms), std::optional<int>(7));
}

TEST(Queue, QsizeAndEmpty) {
  Queue<std::string> q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.qsize(), 0u);
  q.put("a");
  q.put(std::string(1000, 'b'));
  EXPECT_FALSE(q.empty());
  EXPECT_EQ(q.qsize(), 2u);
  (void)q.get();
  EXPECT_EQ(q.qsize(), 1u);
  (void)q.get();
  EXPECT_TRUE(q.empty());
}

TEST(Queue, MillionItemsThreeProducersTwoConsumersNoLossNoDuplicate) {
  const int per_producer = 1'000'000 / 3 / kScale;
  constexpr int kProducers = 3, kConsumers = 2;
  Queue<Tagged> q(4096);
  Queue<std::vector<std::int64_t>> out;
  std::vector<Process> procs;
  for (int c = 0; c < kConsumers; ++c) procs.emplace_back(consume_tagged, q, out, kProducers);
  for (int p = 0; p < kProducers; ++p) procs.emplace_back(produce_tagged, q, p, per_producer);
  for (auto& p : procs) p.start();
  for (int p = 0; p < kProducers; ++p) {
    ASSERT_TRUE(procs[static_cast<std::size_t>(kConsumers + p)].join_for(60s)) << "deadlock";
  }
  for (int c = 0; c < kConsumers; ++c) q.put(Tagged{-1, -1});
  std::vector<std::int64_t> total(kProducers * 2, 0);
  for (int c = 0; c < kConsumers; ++c) {
    const auto sums = out.get_for(60s);
    ASSERT_TRUE(sums.has_value()) << "deadlock";
    ASSERT_EQ(sums->size(), static_cast<std::size_t>(kProducers * 2 + 1));
    EXPECT_EQ(sums->back(), 0) << "a consumer saw one producer's items out of order";
    for (int i = 0; i < kProducers * 2; ++i) total[i] += (*sums)[i];
  }
  const std::int64_t n = per_producer;
  for (int p = 0; p < kProducers; ++p) {
    EXPECT_EQ(total[2 * p], n) << "producer " << p << ": items lost or duplicated";
    EXPECT_EQ(total[2 * p + 1], n * (n - 1) / 2) << "producer " << p << ": wrong items";
  }
  for (auto& p : procs) {
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
  }
}

TEST(Queue, RandomSizesUpToSeveralMiBInterleavedWithSmallItems) {
  Queue<std::vector<char>> q;
  std::mt19937 rng(42);
  std::vector<std::size_t> sizes;
  for (int i = 0; i < 60; ++i) {
    const int bucket = static_cast<int>(rng() % 4);
    sizes.push_back(bucket == 0   ? rng() % 50
                    : bucket == 1 ? rng() % 5000
                    : bucket == 2 ? rng() % 400'000
                                  : rng() % (std::size_t{5} << 20));
  }
  struct Producer {
    static void run(Queue<std::vector<char>> q, std::vector<std::size_t> sizes) {
      for (std::size_t i = 0; i < sizes.size(); ++i)
        q.put(pattern(sizes[i], static_cast<unsigned>(i)));
    }
  };
  Process p(Producer::run, q, sizes);
  p.start();
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto v = q.get_for(20s);
    ASSERT_TRUE(v.has_value()) << "deadlock at item " << i;
    ASSERT_EQ(v->size(), sizes[i]) << "item " << i;
    ASSERT_TRUE(*v == pattern(sizes[i], static_cast<unsigned>(i))) << "item " << i;
  }
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(Queue, SixtyFourMiBItem) {
  Queue<std::vector<char>> q;
  struct Producer {
    static void run(Queue<std::vector<char>> q) {
      q.put({'a'});
      q.put(pattern(std::size_t{64} << 20, 64));
      q.put({'z'});
    }
  };
  Process p(Producer::run, q);
  p.start();
  EXPECT_EQ(q.get(), std::vector<char>{'a'});
  const auto big = q.get_for(30s);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->size(), std::size_t{64} << 20);
  EXPECT_TRUE(*big == pattern(std::size_t{64} << 20, 64));
  EXPECT_EQ(q.get(), std::vector<char>{'z'});
  p.join();
}

TEST(Queue, ProducerKilledMidPutOfLargeItemLeavesQueueConsistent) {
  Queue<std::vector<char>> q;
  Queue<int> started;
  Process p(put_huge_forever, q, started);
  p.start();
  ASSERT_EQ(started.get_for(10s), std::optional<int>(1));
  // The first item is whole; take it, then let the huge put fill its channel and stall.
  EXPECT_EQ(q.get(), pattern(10, 1));
  std::this_thread::sleep_for(100ms);
  p.kill();
  p.join();
  q.put(pattern(20, 3));
  // The partial item is absent (or whole, never torn); the item after it is intact.
  const auto next = q.get_for(10s);
  ASSERT_TRUE(next.has_value()) << "deadlock after the producer died";
  if (next->size() != 20) {
    EXPECT_EQ(*next, pattern(std::size_t{48} << 20, 2));
    EXPECT_EQ(q.get_for(10s), std::optional<std::vector<char>>(pattern(20, 3)));
  } else {
    EXPECT_EQ(*next, pattern(20, 3));
  }
  EXPECT_TRUE(q.empty());
  // Still fully usable, streamed items included (400 KiB fits in a side channel, so this
  // put does not need a reader running at the same time).
  q.put(pattern(400'000, 4));
  EXPECT_EQ(q.get(), pattern(400'000, 4));
}

TEST(Queue, ConsumerKilledMidGetOfLargeItemLetsOthersContinue) {
  Queue<std::vector<char>> q;
  Queue<int> started;
  Process consumer(get_one, q, started);
  consumer.start();
  ASSERT_EQ(started.get_for(10s), std::optional<int>(1));
  // Bigger than a side channel: the put waits for the consumer, which we kill while it reads
  // (or, if it is quicker than us, just after it read everything: the outcome is the same).
  const std::vector<char> big = pattern(std::size_t{32} << 20, 5);
  std::atomic<bool> putting{false};
  std::thread killer([&] {
    while (!putting) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(2ms);
    for (int i = 0; i < 5000 && !q.empty(); ++i) std::this_thread::sleep_for(100us);
    consumer.kill();
  });
  putting = true;
  q.put(big);  // returns: delivered, or its reader died
  killer.join();
  consumer.join();
  // Every side channel is usable again: as many streamed items as there are channels (4),
  // put with nobody reading (each fits in its channel).
  for (unsigned i = 0; i < 4; ++i) {
    ASSERT_TRUE(q.put_for(pattern(400'000, 10 + i), 10s)) << "deadlock";
  }
  for (unsigned i = 0; i < 4; ++i) {
    const auto v = q.get_for(10s);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, pattern(400'000, 10 + i));
  }
}

// The killed consumer holds either ring cells (a medium item) or a side channel (a large one).
void consumer_killed_while_decoding(std::size_t item_size) {
  Queue<SlowItem> q;
  Queue<int> started;
  Process consumer(get_slow_item, q, started);
  consumer.start();
  ASSERT_EQ(started.get_for(10s), std::optional<int>(1));
  q.put(SlowItem{pattern(item_size, 1)});
  for (int i = 0; i < 5000 && !q.empty(); ++i) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(q.empty()) << "the consumer never took the item";
  std::this_thread::sleep_for(20ms);  // it is decoding now (forever)
  consumer.kill();
  consumer.join();
  EXPECT_EQ(consumer.exitcode(), -SIGKILL);
  // Several ring laps and more large items than there are side channels: this finishes only
  // if the dead consumer's cells or channel are recycled.
  std::thread producer([q, item_size]() mutable {
    for (unsigned i = 0; i < 40; ++i) {
      if (!q.put_for(SlowItem{pattern(item_size, 100 + i)}, 20s)) return;
    }
  });
  for (unsigned i = 0; i < 40; ++i) {
    const auto v = q.get_for(20s);
    if (!v) {
      ADD_FAILURE() << "deadlock at item " << i;
      break;
    }
    EXPECT_TRUE(v->data == pattern(item_size, 100 + i)) << "item " << i;
  }
  producer.join();
}

TEST(Queue, ConsumerKilledWhileTakingMediumItemLetsOthersContinue) {
  consumer_killed_while_decoding(100'000);  // ring cells
}

TEST(Queue, ConsumerKilledWhileTakingLargeItemLetsOthersContinue) {
  consumer_killed_while_decoding(300'000);  // a side channel (fits in one)
}

TEST(Queue, GetOnClosedDrainedQueueThrowsQueueClosed) {
  Queue<int> q;
  q.put(1);
  q.close();
  EXPECT_TRUE(q.closed());
  EXPECT_EQ(q.get(), 1);
  EXPECT_THROW((void)q.get(), mproc::QueueClosed);
  EXPECT_THROW((void)q.try_get(), mproc::QueueClosed);
}

TEST(Queue, CloseWakesABlockedGetter) {
  Queue<int> q;
  std::thread closer([q]() mutable {
    std::this_thread::sleep_for(50ms);
    q.close();
  });
  EXPECT_THROW((void)q.get(), mproc::QueueClosed);
  closer.join();
}

TEST(Queue, PutAfterCloseThrowsQueueClosed) {
  Queue<std::string> q;
  q.close();
  EXPECT_THROW(q.put("x"), mproc::QueueClosed);
  EXPECT_THROW((void)q.try_put("x"), mproc::QueueClosed);
}

TEST_P(QueueEveryStartMethod, ProducerExitsPromptlyWithoutReaderAndItemsSurvive) {
  Queue<int> q;
  Process p(opts(), put_many_and_exit, q, 10000);
  p.start();
  ASSERT_TRUE(p.join_for(20s)) << "the producer blocked on exit";
  EXPECT_EQ(p.exitcode(), 0);
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(q.get_for(5s), std::optional<int>(i));
}

TEST_P(QueueEveryStartMethod, HandleTravelsToChildBothWays) {
  Queue<std::string> q;
  Process writer(opts(), put_string, q, std::string("Hello from child process"));
  writer.start();
  writer.join();
  Process reader(opts(), get_and_check, q, std::string("Hello from child process"));
  reader.start();
  reader.join();
  EXPECT_EQ(reader.exitcode(), 0);
  EXPECT_TRUE(q.empty());
}

TEST_P(QueueEveryStartMethod, JoinableQueueTaskDoneAndJoinAcrossProcesses) {
  JoinableQueue<int> q;
  Queue<std::int64_t> sums;
  Process w1(opts(), joinable_worker, q, sums);
  Process w2(opts(), joinable_worker, q, sums);
  w1.start();
  w2.start();
  std::int64_t expected = 0;
  for (int i = 0; i < 5000; ++i) {
    q.put(i);
    expected += i;
  }
  q.put(-1);
  q.put(-1);
  ASSERT_TRUE(q.join_for(30s)) << "deadlock";
  EXPECT_EQ(sums.get() + sums.get(), expected);
  w1.join();
  w2.join();
}

TEST_P(QueueEveryStartMethod, SimpleQueueRoundTrip) {
  SimpleQueue<std::string> in, out;
  Process p(opts(), simple_echo, in, out);
  p.start();
  EXPECT_TRUE(out.empty());
  in.put("hi");
  EXPECT_EQ(out.get(), "hi!");
  p.join();
}

TEST(JoinableQueue, TaskDoneTooManyTimesThrowsUsageError) {
  JoinableQueue<int> q;
  q.put(1);
  (void)q.get();
  q.task_done();
  EXPECT_TRUE(q.join_for(1s));
  EXPECT_THROW(q.task_done(), mproc::UsageError);
}

TEST(JoinableQueue, JoinForTimesOutWithUnfinishedTasks) {
  JoinableQueue<int> q;
  q.put(1);
  EXPECT_FALSE(q.join_for(30ms));
  (void)q.get();
  EXPECT_FALSE(q.join_for(10ms));
  q.task_done();
  EXPECT_TRUE(q.join_for(10ms));
}

TEST(Queue, CopiesShareOneQueue) {
  Queue<std::map<std::string, int>> a;
  Queue<std::map<std::string, int>> b = a;
  a.put({{"x", 1}, {"y", 2}});
  const auto m = b.get();
  EXPECT_EQ(m.at("y"), 2);
}

TEST(Queue, HandleDecodedAsAnotherItemTypeThrowsSerializationError) {
  Queue<int> q;
  mproc::Encoder out;
  mproc::encode(out, q);
  std::vector<mproc::detail::UniqueFd> fds;
  for (int fd : out.fds()) fds.emplace_back(::dup(fd));
  mproc::Decoder in(out.bytes(), fds);
  EXPECT_THROW((void)mproc::decode<Queue<double>>(in), mproc::SerializationError);
}

TEST(Queue, ManyThreadsInOneProcess) {
  Queue<int> q(64);
  std::atomic<long> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([q]() mutable {
      for (int i = 1; i <= 10000; ++i) q.put(i);
    });
  }
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([q, &sum]() mutable {
      for (int i = 0; i < 15000; ++i) sum += q.get();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(sum.load(), 3L * 10000 * 10001 / 2);
}

TEST(Queue, MaxsizeTooLargeThrowsUsageError) {
  EXPECT_THROW(Queue<int>(std::size_t{1} << 40), mproc::UsageError);
}
