// queue_bench.cpp — Queue throughput across processes: 8-byte and 64 KiB items, 1 producer ->
// 1 consumer and 2 -> 2, against Boost.Interprocess message_queue on the same workloads.
//
// Shape (same for both implementations): producer children put items as fast as they can; the
// parent is a consumer and one iteration = the parent takes kBatch items. In the 2 -> 2 runs a
// consumer child drains alongside the parent, so the items moved per iteration are about
// 2 x kBatch (reported so: items_per_second / bytes_per_second count both consumers).
//   queue_8B_1to1/{mproc,boost_message_queue}       items = 8-byte integers
//   queue_8B_2to2/{mproc,boost_message_queue}
//   queue_64KiB_1to1/{mproc,boost_message_queue}    items = 64 KiB byte vectors (mproc) /
//   queue_64KiB_2to2/{mproc,boost_message_queue}    64 KiB messages (Boost)
// Boost's queue holds 1 MiB of messages (131072 x 8 B, 16 x 64 KiB), like mproc's ring.
// bench/python/queue_throughput.py measures multiprocessing.Queue 1 -> 1 on the same items.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <unistd.h>

#include <boost/interprocess/ipc/message_queue.hpp>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mproc/process.hpp>
#include <mproc/queue.hpp>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

namespace bip = boost::interprocess;

constexpr std::size_t kBig = 64 * 1024;
constexpr std::int64_t kSmallBatch = 100000;
constexpr std::int64_t kBigBatch = 256;

mproc::ProcessOptions fork_options() {
  mproc::ProcessOptions options;
  options.start = mproc::StartMethod::fork;
  options.daemon = true;  // killed when the benchmark's Process objects go away
  return options;
}

// ---- mproc ---------------------------------------------------------------------------------

void small_producer(mproc::Queue<std::uint64_t> q) {
  try {
    for (std::uint64_t i = 0;; ++i) q.put(i);
  } catch (const mproc::QueueClosed&) {
  }
}
void small_consumer(mproc::Queue<std::uint64_t> q) {
  try {
    for (;;) benchmark::DoNotOptimize(q.get());
  } catch (const mproc::QueueClosed&) {
  }
}
void big_producer(mproc::Queue<std::vector<std::byte>> q) {
  const std::vector<std::byte> item(kBig, std::byte{7});
  try {
    for (;;) q.put(item);
  } catch (const mproc::QueueClosed&) {
  }
}
void big_consumer(mproc::Queue<std::vector<std::byte>> q) {
  try {
    for (;;) benchmark::DoNotOptimize(q.get().data());
  } catch (const mproc::QueueClosed&) {
  }
}

template <class T, class Producer, class Consumer>
void mproc_run(benchmark::State& state, int pairs, std::int64_t batch, std::size_t item_bytes,
               Producer producer, Consumer consumer) {
  try {
    mproc::Queue<T> q;
    std::vector<mproc::Process> children;
    for (int i = 0; i < pairs; ++i) children.emplace_back(fork_options(), producer, q);
    for (int i = 1; i < pairs; ++i) children.emplace_back(fork_options(), consumer, q);
    for (auto& c : children) c.start();
    for (auto _ : state) {
      for (std::int64_t i = 0; i < batch; ++i) benchmark::DoNotOptimize(q.get());
    }
    q.close();
    for (auto& c : children) c.join();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  state.SetItemsProcessed(state.iterations() * batch * pairs);
  state.SetBytesProcessed(state.iterations() * batch * pairs *
                          static_cast<std::int64_t>(item_bytes));
}

void mproc_8B_1to1(benchmark::State& s) {
  mproc_run<std::uint64_t>(s, 1, kSmallBatch, 8, small_producer, small_consumer);
}
void mproc_8B_2to2(benchmark::State& s) {
  mproc_run<std::uint64_t>(s, 2, kSmallBatch, 8, small_producer, small_consumer);
}
void mproc_64KiB_1to1(benchmark::State& s) {
  mproc_run<std::vector<std::byte>>(s, 1, kBigBatch, kBig, big_producer, big_consumer);
}
void mproc_64KiB_2to2(benchmark::State& s) {
  mproc_run<std::vector<std::byte>>(s, 2, kBigBatch, kBig, big_producer, big_consumer);
}

// ---- Boost.Interprocess message_queue --------------------------------------------------------

void boost_run(benchmark::State& state, int pairs, std::int64_t batch, std::size_t item_bytes,
               std::size_t max_messages) {
  const std::string name = "mproc_bench_mq_" + std::to_string(::getpid());
  bip::message_queue::remove(name.c_str());
  std::vector<pid_t> children;
  try {
    bip::message_queue mq(bip::create_only, name.c_str(), max_messages, item_bytes);
    for (int i = 0; i < pairs; ++i) {
      children.push_back(mproc_bench::fork_child([&] {
        bip::message_queue q(bip::open_only, name.c_str());
        std::vector<std::byte> item(item_bytes, std::byte{7});
        for (;;) q.send(item.data(), item.size(), 0);
        return 0;
      }));
    }
    for (int i = 1; i < pairs; ++i) {
      children.push_back(mproc_bench::fork_child([&] {
        bip::message_queue q(bip::open_only, name.c_str());
        std::vector<std::byte> item(item_bytes);
        bip::message_queue::size_type got = 0;
        unsigned prio = 0;
        for (;;) q.receive(item.data(), item.size(), got, prio);
        return 0;
      }));
    }
    std::vector<std::byte> item(item_bytes);
    bip::message_queue::size_type got = 0;
    unsigned prio = 0;
    for (auto _ : state) {
      for (std::int64_t i = 0; i < batch; ++i) {
        mq.receive(item.data(), item.size(), got, prio);
        benchmark::DoNotOptimize(item.data());
      }
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  // The children loop forever (a blocked send has no portable way out): kill and reap them.
  for (pid_t pid : children) {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      mproc_bench::reap(pid);
    }
  }
  bip::message_queue::remove(name.c_str());
  state.SetItemsProcessed(state.iterations() * batch * pairs);
  state.SetBytesProcessed(state.iterations() * batch * pairs *
                          static_cast<std::int64_t>(item_bytes));
}

void boost_8B_1to1(benchmark::State& s) {
  boost_run(s, 1, kSmallBatch, 8, 131072);
}
void boost_8B_2to2(benchmark::State& s) {
  boost_run(s, 2, kSmallBatch, 8, 131072);
}
void boost_64KiB_1to1(benchmark::State& s) {
  boost_run(s, 1, kBigBatch, kBig, 16);
}
void boost_64KiB_2to2(benchmark::State& s) {
  boost_run(s, 2, kBigBatch, kBig, 16);
}

}  // namespace

BENCHMARK(mproc_8B_1to1)->Name("queue_8B_1to1/mproc")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(boost_8B_1to1)
    ->Name("queue_8B_1to1/boost_message_queue")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(mproc_8B_2to2)->Name("queue_8B_2to2/mproc")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(boost_8B_2to2)
    ->Name("queue_8B_2to2/boost_message_queue")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(mproc_64KiB_1to1)
    ->Name("queue_64KiB_1to1/mproc")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(boost_64KiB_1to1)
    ->Name("queue_64KiB_1to1/boost_message_queue")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(mproc_64KiB_2to2)
    ->Name("queue_64KiB_2to2/mproc")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(boost_64KiB_2to2)
    ->Name("queue_64KiB_2to2/boost_message_queue")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
