// pipe_bench.cpp — Pipe bandwidth (1 MiB messages) and ping-pong latency (8-byte round trips)
// between a parent and a child process, against raw socketpair(2), raw pipe(2) and memcpy.
//
// Bandwidth: one iteration = the parent sends kBatch messages of 1 MiB, the child receives
// them all and replies one byte (so the time covers delivery, not just buffering).
//   pipe_bandwidth_1MiB/mproc            Connection::send_bytes / recv_bytes
//   pipe_bandwidth_1MiB_into/mproc       send_bytes / recv_bytes_into one reused buffer (the
//                                        raw peers below reuse their buffer too)
//   pipe_bandwidth_1MiB_into/raw_socketpair   write/read loops on an AF_UNIX stream socketpair
//   pipe_bandwidth_1MiB_into/raw_pipe         write/read loops on pipe(2) (default capacity)
//   pipe_bandwidth_1MiB_into/memcpy           memcpy of 1 MiB in one process: the RAM bound
//
// Latency: one iteration = parent sends 8 bytes, the child echoes them back. Connection
// carries small frames on a pipe per direction (its side socket only for descriptors and
// payloads over 16 KiB), so raw_pipe is the bound to compare against; raw_socketpair is what
// a socket-only Connection could at best reach.
//   pipe_pingpong_8B/{mproc,raw_pipe,raw_socketpair}/pinned:{0,1}
// pinned:1 pins both processes to one CPU (no cross-CPU wake-up); pinned:0 leaves them to the
// scheduler.
//
// bench/python/pipe_bandwidth.py and pipe_pingpong.py measure the same with multiprocessing.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mproc/mproc.hpp>
#include <span>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

using mproc_bench::close_fd;
using mproc_bench::errno_message;
using mproc_bench::kMiB;
using mproc_bench::read_all;
using mproc_bench::write_all;

constexpr int kBatch = 8;             // 1 MiB messages per acknowledged batch
constexpr std::size_t kPingSize = 8;  // bytes per ping
// Untimed round trips before each timed loop: a freshly forked child first takes copy-on-write
// faults on every page it touches, which would otherwise be charged to the first messages.
constexpr int kWarmupRoundTrips = 2000;
constexpr std::byte kAck{0x06};

std::vector<std::byte> payload(std::size_t size) {
  std::vector<std::byte> data(size);
  for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::byte>(i * 131 + 7);
  return data;
}

// ---- mproc -------------------------------------------------------------------------------

// The children run fork-started: the parent is single-threaded, and fork keeps the pinned runs'
// affinity without any help.
mproc::ProcessOptions fork_options() {
  mproc::ProcessOptions options;
  options.start = mproc::StartMethod::fork;
  return options;
}

// Child of the bandwidth run: acknowledges every kBatch messages; an empty message ends it.
void mproc_sink(mproc::Connection conn, bool into_buffer) {
  const std::array<std::byte, 1> ack{kAck};
  std::vector<std::byte> buffer(into_buffer ? kMiB : 0);
  for (;;) {
    for (int i = 0; i < kBatch; ++i) {
      const std::size_t size =
          into_buffer ? conn.recv_bytes_into(buffer) : conn.recv_bytes().size();
      if (size == 0) return;
    }
    conn.send_bytes(ack);
  }
}

// Child of the ping-pong run: echoes every message; an empty message ends it. Pins itself as
// well as inheriting the parent's mask, so the run is pinned whatever the start method does.
void mproc_echo(mproc::Connection conn, bool pinned) {
  if (pinned && !mproc_bench::pin_self()) std::exit(3);
  for (;;) {
    std::vector<std::byte> message = conn.recv_bytes();
    if (message.empty()) return;
    conn.send_bytes(message);
  }
}

// Ends the child started with `child` by an empty message and reports a bad exit.
void stop_mproc_child(benchmark::State& state, mproc::Connection& conn, mproc::Process& child) {
  conn.send_bytes(std::span<const std::byte>{});
  child.join();
  if (child.exitcode() != 0) {
    state.SkipWithError(
        ("child exited with " + std::to_string(child.exitcode().value_or(-1000))).c_str());
  }
}

void mproc_bandwidth(benchmark::State& state, bool into_buffer) {
  const std::vector<std::byte> message = payload(kMiB);
  try {
    auto [parent, child_end] = mproc::Pipe();
    mproc::Process child(fork_options(), mproc_sink, child_end, into_buffer);
    child.start();
    // As in Python: drop the parent's copy of the child's end, so a child that dies makes
    // recv() raise ConnectionClosed instead of waiting forever.
    child_end.close();
    for (auto _ : state) {
      for (int i = 0; i < kBatch; ++i) parent.send_bytes(message);
      const std::vector<std::byte> ack = parent.recv_bytes();
      benchmark::DoNotOptimize(ack.data());
    }
    stop_mproc_child(state, parent, child);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  state.SetBytesProcessed(state.iterations() * kBatch * static_cast<std::int64_t>(kMiB));
}

void mproc_pingpong(benchmark::State& state) {
  const bool pinned = state.range(0) != 0;
  mproc_bench::ScopedPin pin(pinned);
  if (!pin.error().empty()) {
    state.SkipWithError(pin.error().c_str());
    return;
  }
  const std::vector<std::byte> ping = payload(kPingSize);
  try {
    auto [parent, child_end] = mproc::Pipe();
    mproc::Process child(fork_options(), mproc_echo, child_end, pinned);
    child.start();
    // As in Python: drop the parent's copy of the child's end, so a child that dies makes
    // recv() raise ConnectionClosed instead of waiting forever.
    child_end.close();
    for (int i = 0; i < kWarmupRoundTrips; ++i) {
      parent.send_bytes(ping);
      (void)parent.recv_bytes();
    }
    for (auto _ : state) {
      parent.send_bytes(ping);
      const std::vector<std::byte> pong = parent.recv_bytes();
      benchmark::DoNotOptimize(pong.data());
    }
    stop_mproc_child(state, parent, child);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---- raw peers ---------------------------------------------------------------------------

enum class RawKind { socketpair, pipe };

// A raw channel between parent and child: the parent writes on `parent_out` and reads on
// `parent_in`, the child the other way round. A socketpair is one duplex socket per side (the
// second descriptor is a dup); pipe(2) needs one pipe per direction.
class RawChannel {
 public:
  explicit RawChannel(RawKind kind) {
    if (kind == RawKind::socketpair) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        error = errno_message("socketpair");
        return;
      }
      parent_out = sv[0];
      child_in = sv[1];
      parent_in = ::fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
      child_out = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 0);
      if (parent_in < 0 || child_out < 0) error = errno_message("fcntl");
      return;
    }
    int down[2], up[2];
    if (::pipe2(down, O_CLOEXEC) != 0) {
      error = errno_message("pipe2");
      return;
    }
    child_in = down[0];
    parent_out = down[1];
    if (::pipe2(up, O_CLOEXEC) != 0) {
      error = errno_message("pipe2");
      return;
    }
    parent_in = up[0];
    child_out = up[1];
  }
  RawChannel(const RawChannel&) = delete;
  RawChannel& operator=(const RawChannel&) = delete;
  ~RawChannel() {
    close_parent_ends();
    close_child_ends();
  }

  void close_child_ends() {
    close_fd(child_in);
    close_fd(child_out);
  }
  void close_parent_ends() {
    close_fd(parent_in);
    close_fd(parent_out);
  }

  int parent_out = -1, parent_in = -1, child_in = -1, child_out = -1;
  std::string error;  ///< empty when every descriptor was created
};

// Starts `body(channel)` in a fork child holding only the child ends; the parent keeps only
// its own ends, so either side sees end-of-file when the other exits. -1 on error.
template <class Body>
pid_t start_raw_child(RawChannel& channel, Body body) {
  const pid_t pid = mproc_bench::fork_child([&] {
    channel.close_parent_ends();
    return body(channel);
  });
  if (pid > 0) channel.close_child_ends();
  return pid;
}

// Ends a raw child by closing the parent's ends (the child reads end-of-file) and reaps it.
void stop_raw_child(benchmark::State& state, RawChannel& channel, pid_t pid) {
  channel.close_parent_ends();
  std::string why;
  if (!mproc_bench::reap(pid, &why)) state.SkipWithError(why.c_str());
}

void raw_bandwidth(benchmark::State& state, RawKind kind) {
  const std::vector<std::byte> message = payload(kMiB);
  RawChannel channel(kind);
  if (!channel.error.empty()) {
    state.SkipWithError(channel.error.c_str());
    return;
  }
  const pid_t pid = start_raw_child(channel, [](RawChannel& c) {
    std::vector<std::byte> buffer(kMiB);
    const std::byte ack = kAck;
    for (;;) {
      for (int i = 0; i < kBatch; ++i) {
        if (!read_all(c.child_in, buffer.data(), buffer.size())) return errno == 0 ? 0 : 2;
      }
      if (!write_all(c.child_out, &ack, 1)) return 2;
    }
  });
  if (pid < 0) {
    state.SkipWithError(errno_message("fork").c_str());
    return;
  }
  for (auto _ : state) {
    bool ok = true;
    for (int i = 0; i < kBatch && ok; ++i) {
      ok = write_all(channel.parent_out, message.data(), message.size());
    }
    std::byte ack{};
    if (!ok || !read_all(channel.parent_in, &ack, 1)) {
      state.SkipWithError(errno_message(ok ? "read" : "write").c_str());
      break;
    }
  }
  stop_raw_child(state, channel, pid);
  state.SetBytesProcessed(state.iterations() * kBatch * static_cast<std::int64_t>(kMiB));
}

void raw_pingpong(benchmark::State& state, RawKind kind) {
  const bool pinned = state.range(0) != 0;
  mproc_bench::ScopedPin pin(pinned);
  if (!pin.error().empty()) {
    state.SkipWithError(pin.error().c_str());
    return;
  }
  RawChannel channel(kind);
  if (!channel.error.empty()) {
    state.SkipWithError(channel.error.c_str());
    return;
  }
  const pid_t pid = start_raw_child(channel, [](RawChannel& c) {
    std::array<std::byte, kPingSize> buffer{};
    for (;;) {
      if (!read_all(c.child_in, buffer.data(), buffer.size())) return errno == 0 ? 0 : 2;
      if (!write_all(c.child_out, buffer.data(), buffer.size())) return 2;
    }
  });
  if (pid < 0) {
    state.SkipWithError(errno_message("fork").c_str());
    return;
  }
  const std::vector<std::byte> ping = payload(kPingSize);
  std::array<std::byte, kPingSize> pong{};
  for (int i = 0; i < kWarmupRoundTrips; ++i) {
    if (!write_all(channel.parent_out, ping.data(), ping.size()) ||
        !read_all(channel.parent_in, pong.data(), pong.size())) {
      break;  // the timed loop below reports the failure
    }
  }
  for (auto _ : state) {
    if (!write_all(channel.parent_out, ping.data(), ping.size()) ||
        !read_all(channel.parent_in, pong.data(), pong.size())) {
      state.SkipWithError(errno_message("write/read").c_str());
      break;
    }
    benchmark::DoNotOptimize(pong.data());
  }
  stop_raw_child(state, channel, pid);
}

void memcpy_bandwidth(benchmark::State& state) {
  const std::vector<std::byte> source = payload(kMiB);
  std::vector<std::byte> target(kMiB);
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      std::memcpy(target.data(), source.data(), kMiB);
      benchmark::ClobberMemory();
    }
    benchmark::DoNotOptimize(target.data());
  }
  state.SetBytesProcessed(state.iterations() * kBatch * static_cast<std::int64_t>(kMiB));
}

// Two processes are involved: measure wall-clock time.
BENCHMARK_CAPTURE(mproc_bandwidth, recv_bytes, false)
    ->Name("pipe_bandwidth_1MiB/mproc")
    ->UseRealTime();
BENCHMARK_CAPTURE(mproc_bandwidth, recv_bytes_into, true)
    ->Name("pipe_bandwidth_1MiB_into/mproc")
    ->UseRealTime();
BENCHMARK_CAPTURE(raw_bandwidth, socketpair, RawKind::socketpair)
    ->Name("pipe_bandwidth_1MiB_into/raw_socketpair")
    ->UseRealTime();
BENCHMARK_CAPTURE(raw_bandwidth, pipe, RawKind::pipe)
    ->Name("pipe_bandwidth_1MiB_into/raw_pipe")
    ->UseRealTime();
BENCHMARK(memcpy_bandwidth)->Name("pipe_bandwidth_1MiB_into/memcpy")->UseRealTime();

BENCHMARK(mproc_pingpong)
    ->Name("pipe_pingpong_8B/mproc")
    ->ArgName("pinned")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime();
BENCHMARK_CAPTURE(raw_pingpong, pipe, RawKind::pipe)
    ->Name("pipe_pingpong_8B/raw_pipe")
    ->ArgName("pinned")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime();
BENCHMARK_CAPTURE(raw_pingpong, socketpair, RawKind::socketpair)
    ->Name("pipe_pingpong_8B/raw_socketpair")
    ->ArgName("pinned")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
