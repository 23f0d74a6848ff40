// manager_bench.cpp — Manager proxies: throughput from several processes and round-trip
// latency, beside raw socket ping-pongs (the floor one round trip costs) and, in
// bench/python/manager_dict.py, Python's Manager().dict().
//
//   manager_dict_setget_2proc/mproc   2 processes, each alternating d.set(k, v) and d.get(k)
//                                     on its own keys; time per operation (set or get), from
//                                     both processes released at a barrier to both done
//   manager_roundtrip_unix/mproc      one d.get(k) on a local Manager (abstract Unix socket)
//   manager_roundtrip_unix/raw_socket a 24-byte request and a 16-byte reply over a connected
//                                     AF_UNIX stream socket to an echo process
//   manager_roundtrip_tcp/mproc       d.get(k) on Manager::serve("127.0.0.1:0")
//   manager_roundtrip_tcp/raw_socket  the same exchange over TCP loopback (TCP_NODELAY)
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <mproc/mproc.hpp>
#include <string>

#include "support.hpp"

namespace {

constexpr int kOpsPerProcess = 20000;  // set+get pairs per process per iteration

mproc::ProcessOptions fork_options() {
  return mproc::ProcessOptions{.start = mproc::StartMethod::fork};
}

void setget_worker(mproc::Dict<int, int> d, mproc::Barrier barrier, int base) {
  barrier.wait();
  for (int i = 0; i < kOpsPerProcess; ++i) {
    const int key = base + (i & 1023);
    d.set(key, i);
    benchmark::DoNotOptimize(d.get(key));
  }
  barrier.wait();
}

void dict_setget_2proc(benchmark::State& state) {
  try {
    mproc::Manager m(mproc::ManagerOptions{.start = mproc::StartMethod::fork});
    auto d = m.dict<int, int>();
    for (auto _ : state) {
      mproc::Barrier barrier(3);
      mproc::Process a(fork_options(), &setget_worker, d, barrier, 0);
      mproc::Process b(fork_options(), &setget_worker, d, barrier, 1 << 20);
      a.start();
      b.start();
      barrier.wait();
      const auto begin = std::chrono::steady_clock::now();
      barrier.wait();
      const auto end = std::chrono::steady_clock::now();
      state.SetIterationTime(std::chrono::duration<double>(end - begin).count());
      a.join();
      b.join();
      if (a.exitcode() != 0 || b.exitcode() != 0) {
        state.SkipWithError("a worker failed");
        return;
      }
    }
    state.SetItemsProcessed(state.iterations() * 2 * 2 * kOpsPerProcess);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void roundtrip(benchmark::State& state, mproc::Manager& m) {
  auto d = m.dict<int, int>();
  d.set(1, 42);
  for (auto _ : state) benchmark::DoNotOptimize(d.get(1));
  state.SetItemsProcessed(state.iterations());
}

void roundtrip_unix(benchmark::State& state) {
  try {
    mproc::Manager m;
    roundtrip(state, m);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void roundtrip_tcp(benchmark::State& state) {
  try {
    auto m = mproc::Manager::serve("127.0.0.1:0", "bench key");
    roundtrip(state, m);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---- raw peers ----------------------------------------------------------------------------

constexpr std::size_t kRequest = 24;  // what a manager get of an int key sends (with framing)
constexpr std::size_t kReply = 16;

int echo_loop(int fd) {
  char buf[kRequest];
  char reply[kReply] = {};
  for (;;) {
    if (!mproc_bench::read_all(fd, buf, kRequest)) return errno == 0 ? 0 : 1;
    if (!mproc_bench::write_all(fd, reply, kReply)) return 1;
  }
}

void raw_pingpong(benchmark::State& state, int fd, pid_t child) {
  char request[kRequest] = {};
  char reply[kReply];
  for (auto _ : state) {
    if (!mproc_bench::write_all(fd, request, kRequest) ||
        !mproc_bench::read_all(fd, reply, kReply)) {
      state.SkipWithError(mproc_bench::errno_message("read/write").c_str());
      break;
    }
  }
  ::close(fd);
  std::string why;
  if (!mproc_bench::reap(child, &why)) state.SkipWithError(why.c_str());
  state.SetItemsProcessed(state.iterations());
}

void raw_unix(benchmark::State& state) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    state.SkipWithError(mproc_bench::errno_message("socketpair").c_str());
    return;
  }
  const pid_t child = mproc_bench::fork_child([&] {
    ::close(sv[0]);
    return echo_loop(sv[1]);
  });
  ::close(sv[1]);
  raw_pingpong(state, sv[0], child);
}

void raw_tcp(benchmark::State& state) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    state.SkipWithError(mproc_bench::errno_message("listen").c_str());
    return;
  }
  const pid_t child = mproc_bench::fork_child([&] {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) return 1;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return echo_loop(fd);
  });
  ::close(listener);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    state.SkipWithError(mproc_bench::errno_message("connect").c_str());
    ::kill(child, SIGKILL);
    mproc_bench::reap(child);
    return;
  }
  raw_pingpong(state, fd, child);
}

}  // namespace

BENCHMARK(dict_setget_2proc)
    ->Name("manager_dict_setget_2proc/mproc")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(roundtrip_unix)->Name("manager_roundtrip_unix/mproc")->UseRealTime();
BENCHMARK(raw_unix)->Name("manager_roundtrip_unix/raw_socket")->UseRealTime();
BENCHMARK(roundtrip_tcp)->Name("manager_roundtrip_tcp/mproc")->UseRealTime();
BENCHMARK(raw_tcp)->Name("manager_roundtrip_tcp/raw_socket")->UseRealTime();

BENCHMARK_MAIN();
