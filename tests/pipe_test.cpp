// Tests for Pipe() and Connection (include/mproc/pipe.hpp).
//
// Cross-process tests fork directly: the child runs its part, exits 0 on success or 1 after
// printing what went wrong, and the parent reaps it with a deadline. Anything that could hang
// polls with a deadline first and fails with "deadlock" instead of stalling.
#include "mproc/pipe.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "../src/detail/sys.hpp"  // failure injection (internal)
#include "mproc/codec.hpp"
#include "mproc/errors.hpp"

// ---- allocation tracking --------------------------------------------------------------------
// Replacing global operator new lets tests prove that a lying length prefix is never trusted:
// they reset the high-water mark, receive, and check the largest single allocation.
namespace {
std::atomic<std::size_t> g_largest_allocation{0};

void note_allocation(std::size_t n) noexcept {
  std::size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
  while (n > seen && !g_largest_allocation.compare_exchange_weak(seen, n)) {
  }
}
}  // namespace

// GCC inlines these into callers and then sees free() on memory from operator new; they are
// a matched malloc/free pair.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  note_allocation(n);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace mproc {
namespace {

using namespace std::chrono_literals;
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kGiB = std::size_t{1} << 30;

// ---- helpers --------------------------------------------------------------------------------

/// Throws (in a child, where gtest assertions cannot report) unless `ok`.
void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("check failed: " + what);
}

/// Forks; the child runs `body` and exits 0, or 1 after printing the exception it threw.
template <class F>
pid_t fork_child(F&& body) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    int code = 0;
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d failed: %s\n", static_cast<int>(::getpid()), e.what());
      code = 1;
    } catch (...) {
      code = 2;
    }
    std::fflush(stderr);
    ::_exit(code);
  }
  return pid;
}

/// Reaps `pid`: its exit code, or -signal. Kills it and fails the test after `limit`.
int wait_child(pid_t pid, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    if (r < 0 && errno != EINTR) {
      ADD_FAILURE() << "waitpid: " << std::strerror(errno);
      return -1000;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      ADD_FAILURE() << "deadlock: child " << pid << " still running after " << limit.count()
                    << " s";
      return -1000;
    }
    std::this_thread::sleep_for(1ms);
  }
}

/// Throws "deadlock" unless something arrives on `c` within `limit`.
void await_readable(Connection& c, std::chrono::seconds limit = 30s) {
  if (!c.poll(limit)) {
    throw std::runtime_error("deadlock: nothing arrived within " + std::to_string(limit.count()) +
                             " s");
  }
}

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Test data that is cheap to make and check even in a -O0 build: a 4 KiB block derived from
// `seed`, repeated, with every block's own offset mixed into its first 8 bytes, so that a
// lost, repeated, shifted or reordered block does not match.
constexpr std::size_t kBlock = 4096;

std::array<std::byte, kBlock> base_block(std::uint64_t seed) {
  std::array<std::byte, kBlock> block;
  for (std::size_t i = 0; i < kBlock; i += 8) {
    const std::uint64_t v = mix(seed + i);
    std::memcpy(block.data() + i, &v, 8);
  }
  return block;
}

void stamp(std::byte* block, std::size_t n, std::uint64_t seed, std::size_t offset) {
  const std::uint64_t v = mix(seed ^ (offset * 0x2545f4914f6cdd1dULL));
  std::memcpy(block, &v, std::min<std::size_t>(n, 8));
}

void fill_pattern(std::span<std::byte> out, std::uint64_t seed) {
  const auto block = base_block(seed);
  for (std::size_t off = 0; off < out.size(); off += kBlock) {
    const std::size_t n = std::min(kBlock, out.size() - off);
    std::memcpy(out.data() + off, block.data(), n);
    stamp(out.data() + off, n, seed, off);
  }
}

/// True if `data` is exactly what fill_pattern(seed) writes into data.size() bytes.
bool matches_pattern(std::span<const std::byte> data, std::uint64_t seed) {
  auto expected = base_block(seed);
  const auto base = expected;
  for (std::size_t off = 0; off < data.size(); off += kBlock) {
    const std::size_t n = std::min(kBlock, data.size() - off);
    std::memcpy(expected.data(), base.data(), 8);
    stamp(expected.data(), n, seed, off);
    if (std::memcmp(data.data() + off, expected.data(), n) != 0) return false;
  }
  return true;
}

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> v(n);
  fill_pattern(v, seed);
  return v;
}

/// Writes raw bytes into a pipe or socket, bypassing the framing (to forge or corrupt frames).
void write_raw(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

/// A frame header as docs/wire-format.md describes it.
std::array<std::uint8_t, 16> header(std::uint64_t length, std::uint16_t fds = 0,
                                    std::uint8_t version = 1, const char* magic = "MPCF",
                                    std::uint8_t flags = 0) {
  std::array<std::uint8_t, 16> h{};
  std::memcpy(h.data(), magic, 4);
  h[4] = version;
  h[5] = flags;
  h[6] = static_cast<std::uint8_t>(fds);
  h[7] = static_cast<std::uint8_t>(fds >> 8);
  for (int i = 0; i < 8; ++i) h[8 + i] = static_cast<std::uint8_t>(length >> (8 * i));
  return h;
}

constexpr std::uint8_t kSide = 0x01;  // pipe frame flag: the message is on the side socket

/// One Connection end under test (duplex) and the raw descriptors of its peer, so that a test
/// can forge what a peer writes on each channel (docs/wire-format.md, "Connection frames").
struct ForgedPeer {
  ForgedPeer() {
    int to[2], from[2], sv[2];
    if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0 ||
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      throw std::runtime_error(std::string("pipe2/socketpair: ") + std::strerror(errno));
    }
    frames.reset(to[1]);
    replies.reset(from[0]);
    side.reset(sv[1]);
    conn = detail::make_connection(
        {detail::UniqueFd(to[0]), detail::UniqueFd(from[1]), detail::UniqueFd(sv[0])}, true, true);
  }
  /// Closes every peer descriptor: the end under test sees EOF on both channels.
  void hang_up() {
    frames.reset();
    replies.reset();
    side.reset();
  }

  Connection conn;
  detail::UniqueFd frames;   // write end of the pipe `conn` reads frames from
  detail::UniqueFd replies;  // read end of the pipe `conn` writes frames to
  detail::UniqueFd side;     // the peer's end of the side socket
};

/// Sets max_message_size() for one test.
class MessageLimit {
 public:
  explicit MessageLimit(std::size_t bytes) : saved_(max_message_size()) {
    set_max_message_size(bytes);
  }
  ~MessageLimit() { set_max_message_size(saved_); }
  MessageLimit(const MessageLimit&) = delete;
  MessageLimit& operator=(const MessageLimit&) = delete;

 private:
  std::size_t saved_;
};

std::string as_string(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// ---- basics -----------------------------------------------------------------------------------

TEST(Pipe, DuplexEndsSendAndReceiveInBothDirections) {
  auto [a, b] = Pipe();
  EXPECT_TRUE(a.readable() && a.writable() && b.readable() && b.writable());
  a.send(41);
  EXPECT_EQ(b.recv<int>(), 41);
  b.send(2.5);
  EXPECT_EQ(a.recv<double>(), 2.5);
  a.send_bytes("hello");
  EXPECT_EQ(as_string(b.recv_bytes()), "hello");
  b.send_bytes(std::string("world"));
  EXPECT_EQ(as_string(a.recv_bytes()), "world");
}

TEST(Pipe, RoundTripsIntsStringsVectorsAndMapsInOneProcess) {
  auto [a, b] = Pipe();
  a.send(std::int64_t{-7});
  a.send(std::string("text with \0 inside", 18));
  a.send(std::vector<int>{1, 2, 3});
  a.send(std::map<std::string, std::vector<double>>{{"x", {1.0, 2.0}}, {"y", {}}});
  EXPECT_EQ(b.recv<std::int64_t>(), -7);
  EXPECT_EQ(b.recv<std::string>(), std::string("text with \0 inside", 18));
  EXPECT_EQ(b.recv<std::vector<int>>(), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ((b.recv<std::map<std::string, std::vector<double>>>()),
            (std::map<std::string, std::vector<double>>{{"x", {1.0, 2.0}}, {"y", {}}}));
}

TEST(Pipe, RoundTripsValuesBetweenProcesses) {
  auto [parent, child] = Pipe();
  const pid_t pid = fork_child([&, &parent = parent, &child = child] {
    parent.close();
    // Echo a few typed values back, changed so the parent sees the child did the work.
    auto n = child.recv<int>();
    auto s = child.recv<std::string>();
    auto v = child.recv<std::vector<std::string>>();
    auto m = child.recv<std::map<int, std::string>>();
    child.send(n + 1);
    child.send(s + "!");
    v.push_back("child");
    child.send(v);
    m[0] = "zero";
    child.send(m);
  });
  child.close();
  parent.send(41);
  parent.send(std::string("hi"));
  parent.send(std::vector<std::string>{"a", "bb"});
  parent.send(std::map<int, std::string>{{1, "one"}});
  await_readable(parent);
  EXPECT_EQ(parent.recv<int>(), 42);
  EXPECT_EQ(parent.recv<std::string>(), "hi!");
  EXPECT_EQ(parent.recv<std::vector<std::string>>(),
            (std::vector<std::string>{"a", "bb", "child"}));
  EXPECT_EQ((parent.recv<std::map<int, std::string>>()),
            (std::map<int, std::string>{{0, "zero"}, {1, "one"}}));
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(Pipe, OneWayPipeReturnsReaderThenWriter) {
  auto [reader, writer] = Pipe(false);
  EXPECT_TRUE(reader.readable());
  EXPECT_FALSE(reader.writable());
  EXPECT_FALSE(writer.readable());
  EXPECT_TRUE(writer.writable());
  writer.send(7);
  EXPECT_EQ(reader.recv<int>(), 7);
}

TEST(Pipe, WrongDirectionOfOneWayPipeThrowsUsageError) {
  auto [reader, writer] = Pipe(false);
  EXPECT_THROW(reader.send(1), UsageError);
  EXPECT_THROW(reader.send_bytes("x"), UsageError);
  EXPECT_THROW((void)writer.recv<int>(), UsageError);
  EXPECT_THROW((void)writer.recv_bytes(), UsageError);
  EXPECT_THROW((void)writer.poll(), UsageError);
  try {
    reader.send(1);
    FAIL() << "send on the read end did not throw";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("read end of a one-way pipe"), std::string::npos)
        << e.what();
  }
  try {
    (void)writer.recv_bytes();
    FAIL() << "recv on the write end did not throw";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("write end of a one-way pipe"), std::string::npos)
        << e.what();
  }
  // The kernel agrees: the reader's descriptor (a pipe's read end) refuses writes too.
  char byte = 'x';
  EXPECT_EQ(::write(reader.fileno(), &byte, 1), -1);
  EXPECT_EQ(errno, EBADF);
  // And the pipe still works in its own direction afterwards.
  writer.send(3);
  EXPECT_EQ(reader.recv<int>(), 3);
}

TEST(Pipe, ZeroLengthMessagesAreDelivered) {
  auto [a, b] = Pipe();
  a.send_bytes(std::span<const std::byte>{});
  a.send_bytes("");
  a.send_bytes("after");
  ASSERT_TRUE(b.poll());
  EXPECT_TRUE(b.recv_bytes().empty());
  EXPECT_TRUE(b.recv_bytes().empty());
  EXPECT_EQ(as_string(b.recv_bytes()), "after");
  EXPECT_FALSE(b.poll());
}

TEST(Pipe, ManySmallMessagesKeepTheirOrderAndBoundaries) {
  auto [a, b] = Pipe();
  // Queue many messages of varied sizes before reading, so that the receiver's read-ahead
  // holds several frames (and frames split across reads) at once.
  constexpr int kCount = 2000;
  std::thread sender([&, &a = a] {
    for (int i = 0; i < kCount; ++i)
      a.send_bytes(pattern(static_cast<std::size_t>(i * 37 % 3001), i));
  });
  for (int i = 0; i < kCount; ++i) {
    const auto got = b.recv_bytes();
    const auto want = pattern(static_cast<std::size_t>(i * 37 % 3001), i);
    ASSERT_EQ(got, want) << "message " << i;
  }
  sender.join();
  EXPECT_FALSE(b.poll());
}

TEST(Pipe, RecvBytesIntoFillsTheCallersBuffer) {
  auto [a, b] = Pipe();
  std::vector<std::byte> buffer(4096);
  a.send_bytes(pattern(1000, 7));
  a.send_bytes(std::span<const std::byte>{});
  a.send(std::string("typed message"));
  EXPECT_EQ(b.recv_bytes_into(buffer), 1000u);
  EXPECT_TRUE(matches_pattern(std::span(buffer).first(1000), 7));
  EXPECT_EQ(b.recv_bytes_into(buffer), 0u);
  // A typed message is bytes too: fingerprint then the encoded value.
  EXPECT_GT(b.recv_bytes_into(buffer), std::string("typed message").size());
  // One message at a time (each read then brings exactly one frame), including one that
  // does not fit.
  std::vector<std::byte> small(16);
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{16}, std::size_t{17}, std::size_t{300}}) {
    a.send_bytes(pattern(size, size));
    ASSERT_TRUE(b.poll(10s));
    if (size <= small.size()) {
      EXPECT_EQ(b.recv_bytes_into(small), size);
      EXPECT_TRUE(matches_pattern(std::span(small).first(size), size));
    } else {
      try {
        (void)b.recv_bytes_into(small);
        ADD_FAILURE() << "a " << size << "-byte message fit a 16-byte buffer";
      } catch (const BufferTooShort& e) {
        EXPECT_EQ(e.message(), pattern(size, size));
      }
    }
  }
}

TEST(Pipe, RecvBytesIntoOfALargeMessageAcrossProcesses) {
  auto [a, b] = Pipe();
  const std::size_t size = std::size_t{48} << 20;
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      a.send_bytes(pattern(size, 11));
      a.send_bytes(pattern(size, 12));
    } catch (...) {
      ::_exit(1);
    }
    ::_exit(0);
  }
  std::vector<std::byte> buffer(size);
  EXPECT_EQ(b.recv_bytes_into(buffer), size);
  EXPECT_TRUE(matches_pattern(buffer, 11));
  EXPECT_EQ(b.recv_bytes_into(buffer), size);
  EXPECT_TRUE(matches_pattern(buffer, 12));
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(Pipe, RecvBytesIntoATooSmallBufferThrowsBufferTooShortWithTheMessage) {
  auto [a, b] = Pipe();
  std::vector<std::byte> small(10);
  a.send_bytes(pattern(100'000, 3));
  a.send_bytes("next");
  try {
    (void)b.recv_bytes_into(small);
    FAIL() << "expected BufferTooShort";
  } catch (const mproc::BufferTooShort& e) {
    EXPECT_EQ(e.message(), pattern(100'000, 3));
  }
  // Nothing was lost and the connection is still usable.
  EXPECT_EQ(b.recv_bytes_into(small), 4u);
  EXPECT_EQ(as_string(std::vector<std::byte>(small.begin(), small.begin() + 4)), "next");
}

TEST(Pipe, RecvBytesIntoClosesDescriptorsThatCameWithTheMessage) {
  auto [a, b] = Pipe();
  auto [c, d] = Pipe();
  a.send(c);  // carries a descriptor
  std::vector<std::byte> buffer(256);
  EXPECT_GT(b.recv_bytes_into(buffer), 0u);  // the leak check proves the fd was closed
}

TEST(Pipe, CopiesShareOneDescriptorAndCloseClosesAll) {
  auto [a, b] = Pipe();
  Connection copy = a;
  EXPECT_EQ(copy.fileno(), a.fileno());
  copy.send(5);
  EXPECT_EQ(b.recv<int>(), 5);
  copy.close();
  EXPECT_TRUE(a.closed());
  EXPECT_TRUE(copy.closed());
  a.close();  // idempotent
  try {
    a.send(1);
    FAIL() << "send on a closed connection did not throw";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("connection is closed"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)a.recv<int>(), UsageError);
  EXPECT_THROW((void)a.poll(), UsageError);
  EXPECT_THROW((void)a.fileno(), UsageError);
  // A default-constructed Connection is closed.
  Connection none;
  EXPECT_TRUE(none.closed());
  EXPECT_THROW(none.send_bytes("x"), UsageError);
  // The peer sees the close.
  EXPECT_THROW((void)b.recv_bytes(), ConnectionClosed);
}

TEST(Pipe, PollTimesOutThenSeesTheMessage) {
  auto [a, b] = Pipe();
  EXPECT_FALSE(b.poll());
  EXPECT_FALSE(b.poll(10ms));
  EXPECT_FALSE(b.poll(-5ms));
  a.send(1);
  EXPECT_TRUE(b.poll(10s));
  EXPECT_TRUE(b.poll());  // polling does not consume
  EXPECT_EQ(b.recv<int>(), 1);
  EXPECT_FALSE(b.poll(std::chrono::duration<double>(0.001)));
}

TEST(Pipe, PollWaitsForAMessageFromAnotherProcess) {
  auto [a, b] = Pipe();
  const pid_t pid = fork_child([&, &a = a, &b = b] {
    b.close();
    std::this_thread::sleep_for(50ms);
    a.send(99);
  });
  a.close();
  EXPECT_TRUE(b.poll(30s));
  EXPECT_EQ(b.recv<int>(), 99);
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(Pipe, PeerCloseRaisesConnectionClosedOnRecvAndSend) {
  auto [a, b] = Pipe();
  a.send(1);
  a.close();
  EXPECT_TRUE(b.poll());
  EXPECT_EQ(b.recv<int>(), 1);  // messages sent before the close still arrive
  EXPECT_TRUE(b.poll());        // EOF counts as readable
  try {
    (void)b.recv<int>();
    FAIL() << "recv after the peer closed did not throw";
  } catch (const ConnectionClosed& e) {
    EXPECT_STREQ(e.what(), "peer closed the connection");
  }
  EXPECT_THROW((void)b.recv_bytes(), ConnectionClosed);
  // Sending to a closed peer is ConnectionClosed, never SIGPIPE (which would kill this test).
  EXPECT_THROW(b.send(2), ConnectionClosed);
  EXPECT_THROW(b.send_bytes(pattern(8 * kMiB, 1)), ConnectionClosed);
}

TEST(Pipe, RecvOfAnotherTypeThrowsSerializationErrorAndTheConnectionStaysUsable) {
  auto [a, b] = Pipe();
  a.send(std::string("not an int"));
  EXPECT_THROW((void)b.recv<int>(), SerializationError);
  a.send(12);
  EXPECT_EQ(b.recv<int>(), 12);
}

TEST(Pipe, ConcurrentSendersOnOneEndDeliverWholeMessages) {
  auto [a, b] = Pipe();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, &a = a, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Large enough that a single message takes several kernel writes.
        const std::uint64_t seed = static_cast<std::uint64_t>(t) << 32 | static_cast<unsigned>(i);
        auto bytes = pattern(256 * 1024 + 8, seed);
        std::memcpy(bytes.data(), &seed, 8);
        a.send_bytes(bytes);
      }
    });
  }
  std::vector<int> next(kThreads, 0);
  for (int n = 0; n < kThreads * kPerThread; ++n) {
    auto got = b.recv_bytes();
    ASSERT_EQ(got.size(), 256 * 1024 + 8);
    std::uint64_t seed;
    std::memcpy(&seed, got.data(), 8);
    const int t = static_cast<int>(seed >> 32);
    ASSERT_TRUE(t >= 0 && t < kThreads);
    ASSERT_EQ(static_cast<int>(seed & 0xffffffffU), next[static_cast<std::size_t>(t)]++);
    auto want = pattern(256 * 1024 + 8, seed);
    std::memcpy(want.data(), &seed, 8);
    ASSERT_EQ(got, want);
  }
  for (auto& s : senders) s.join();
}

// ---- large messages ---------------------------------------------------------------------------

// A few seconds: two 1 GiB buffers and one transfer (longer under ASan).
TEST(Pipe, OneGibibyteMessageCrossesProcessesIntact) {
  auto [parent, child] = Pipe();
  const pid_t pid = fork_child([&, &parent = parent, &child = child] {
    parent.close();
    std::vector<std::byte> data(kGiB);
    fill_pattern(data, 7);
    child.send_bytes(data);
  });
  child.close();
  await_readable(parent);
  const auto got = parent.recv_bytes();
  ASSERT_EQ(got.size(), kGiB);
  EXPECT_TRUE(matches_pattern(got, 7)) << "the 1 GiB payload arrived corrupted";
  EXPECT_FALSE(matches_pattern(got, 8));  // the check can fail
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(Pipe, SixtyFourMebibyteVectorOfDoublesCrossesProcesses) {
  auto [parent, child] = Pipe();
  const std::size_t n = 64 * kMiB / sizeof(double);
  const pid_t pid = fork_child([&, &parent = parent, &child = child] {
    parent.close();
    auto v = child.recv<std::vector<double>>();
    require(v.size() == n, "size");
    for (std::size_t i = 0; i < n; ++i) require(v[i] == static_cast<double>(i) * 0.5, "value");
    v.back() = -1.0;
    child.send(v);
  });
  child.close();
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<double>(i) * 0.5;
  parent.send(v);
  await_readable(parent);
  const auto back = parent.recv<std::vector<double>>();
  v.back() = -1.0;
  EXPECT_TRUE(back == v);
  EXPECT_EQ(wait_child(pid), 0);
}

// ---- the peer going away ------------------------------------------------------------------

TEST(Pipe, PeerKilledMidMessageRaisesConnectionClosed) {
  auto [parent, child] = Pipe();
  const pid_t pid = fork_child([&, &parent = parent, &child = child] {
    parent.close();
    // Far larger than any socket buffer: the child blocks inside this send until killed.
    std::vector<std::byte> data(256 * kMiB);
    child.send_bytes(data);
    std::this_thread::sleep_for(60s);
  });
  child.close();
  await_readable(parent);  // the message has started arriving
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_child(pid), -SIGKILL);
  try {
    (void)parent.recv_bytes();
    FAIL() << "a truncated message was delivered";
  } catch (const ConnectionClosed& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  // The failure is sticky: the stream has no frame boundary to resume from.
  EXPECT_THROW((void)parent.recv_bytes(), ConnectionClosed);
}

TEST(Pipe, BlockedRecvReturnsWhenThePeerProcessDies) {
  auto [parent, child] = Pipe();
  const pid_t pid = fork_child([&, &parent = parent] {
    parent.close();
    std::this_thread::sleep_for(50ms);
    ::raise(SIGKILL);
  });
  child.close();
  EXPECT_TRUE(parent.poll(30s)) << "deadlock: the peer's death did not wake poll";
  EXPECT_THROW((void)parent.recv<int>(), ConnectionClosed);
  EXPECT_EQ(wait_child(pid), -SIGKILL);
}

// ---- malformed input ---------------------------------------------------------------------
// A ForgedPeer writes what a broken or hostile peer might: on the frame pipe, on the side
// socket, or both.

TEST(Pipe, BadMagicRaisesProtocolError) {
  ForgedPeer peer;
  const auto h = header(4, 0, 1, "JUNK");
  write_raw(peer.frames.get(), h.data(), h.size());
  write_raw(peer.frames.get(), "abcd", 4);
  EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
}

TEST(Pipe, BadMagicOnTheSideSocketRaisesProtocolError) {
  ForgedPeer peer;
  const auto announce = header(4, 0, 1, "MPCF", kSide);
  const auto h = header(4, 0, 1, "JUNK");
  write_raw(peer.frames.get(), announce.data(), announce.size());
  write_raw(peer.side.get(), h.data(), h.size());
  write_raw(peer.side.get(), "abcd", 4);
  EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
}

TEST(Pipe, UnknownFrameVersionOrFlagsRaiseProtocolError) {
  {
    ForgedPeer peer;
    const auto h = header(0, 0, 2);
    write_raw(peer.frames.get(), h.data(), h.size());
    try {
      (void)peer.conn.recv_bytes();
      FAIL() << "version 2 accepted";
    } catch (const ProtocolError& e) {
      EXPECT_NE(std::string(e.what()).find("version"), std::string::npos) << e.what();
    }
  }
  {
    ForgedPeer peer;
    const auto h = header(0, 0, 1, "MPCF", 0x80);
    write_raw(peer.frames.get(), h.data(), h.size());
    EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
  }
  {
    // The side flag means something on the pipe only: a side frame carrying it is refused.
    ForgedPeer peer;
    const auto announce = header(0, 0, 1, "MPCF", kSide);
    const auto h = header(0, 0, 1, "MPCF", kSide);
    write_raw(peer.frames.get(), announce.data(), announce.size());
    write_raw(peer.side.get(), h.data(), h.size());
    try {
      (void)peer.conn.recv_bytes();
      FAIL() << "a side frame with the side flag was accepted";
    } catch (const ProtocolError& e) {
      EXPECT_NE(std::string(e.what()).find("flags"), std::string::npos) << e.what();
    }
  }
}

TEST(Pipe, GarbageBytesRaiseProtocolErrorAndTheFailureIsSticky) {
  ForgedPeer peer;
  const char garbage[] = "\x13\x37 this is not a frame header at all";
  write_raw(peer.frames.get(), garbage, sizeof garbage);
  EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
  // Whatever follows, the receiver cannot find a frame boundary again.
  const auto h = header(3);
  write_raw(peer.frames.get(), h.data(), h.size());
  write_raw(peer.frames.get(), "abc", 3);
  EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
}

TEST(Pipe, HugeLengthRaisesProtocolErrorWithoutAllocating) {
  for (const std::uint8_t flags : {std::uint8_t{0}, kSide}) {
    ForgedPeer peer;
    const auto h = header(std::uint64_t{1} << 62, 0, 1, "MPCF", flags);
    write_raw(peer.frames.get(), h.data(), h.size());
    write_raw(flags == 0 ? peer.frames.get() : peer.side.get(), "payload", 7);
    (void)peer.conn.poll(10s);
    g_largest_allocation = 0;
    try {
      (void)peer.conn.recv_bytes();
      FAIL() << "a 2^62-byte length was accepted (flags " << int{flags} << ")";
    } catch (const ProtocolError& e) {
      EXPECT_NE(std::string(e.what()).find("max_message_size"), std::string::npos) << e.what();
    }
    EXPECT_LT(g_largest_allocation.load(), kMiB);
  }
}

TEST(Pipe, HugeLengthOnTheSideSocketRaisesProtocolErrorWithoutAllocating) {
  // The announcement is sane; the side frame then lies.
  ForgedPeer peer;
  const auto announce = header(100, 0, 1, "MPCF", kSide);
  const auto h = header(std::uint64_t{1} << 62);
  write_raw(peer.frames.get(), announce.data(), announce.size());
  write_raw(peer.side.get(), h.data(), h.size());
  g_largest_allocation = 0;
  EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
  EXPECT_LT(g_largest_allocation.load(), kMiB);
}

TEST(Pipe, SideFrameThatDoesNotMatchItsAnnouncementRaisesProtocolError) {
  ForgedPeer peer;
  const auto announce = header(100, 0, 1, "MPCF", kSide);
  const auto h = header(5);
  write_raw(peer.frames.get(), announce.data(), announce.size());
  write_raw(peer.side.get(), h.data(), h.size());
  write_raw(peer.side.get(), "12345", 5);
  try {
    (void)peer.conn.recv_bytes();
    FAIL() << "a side frame of another length was accepted";
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("does not match its announcement"), std::string::npos)
        << e.what();
  }
}

TEST(Pipe, LengthAboveTheMessageLimitRaisesProtocolError) {
  MessageLimit limit(kMiB);
  ForgedPeer peer;
  const auto h = header(kMiB + 1);
  write_raw(peer.frames.get(), h.data(), h.size());
  g_largest_allocation = 0;
  EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
  EXPECT_LT(g_largest_allocation.load(), kMiB);
  // At the limit is fine (sent from a thread: 1 MiB is more than a socket buffer holds).
  auto [c, d] = Pipe();
  std::thread sender([&, &c = c] { c.send_bytes(pattern(kMiB, 3)); });
  EXPECT_EQ(d.recv_bytes(), pattern(kMiB, 3));
  sender.join();
}

TEST(Pipe, SendingMoreThanTheMessageLimitThrowsSerializationError) {
  MessageLimit limit(kMiB);
  auto [a, b] = Pipe();
  EXPECT_THROW(a.send_bytes(pattern(kMiB + 1, 1)), SerializationError);
  EXPECT_THROW(a.send(std::vector<char>(kMiB, 'x')), SerializationError);
  EXPECT_FALSE(b.poll());  // nothing was sent
  a.send_bytes("ok");
  EXPECT_EQ(as_string(b.recv_bytes()), "ok");
}

TEST(Pipe, LyingLengthThenEofAllocatesOnlyWhatArrives) {
  MessageLimit limit(std::size_t{8} << 30);
  // On the side socket, where large payloads travel (and on the pipe, which a peer can write
  // anything into).
  for (const std::uint8_t flags : {kSide, std::uint8_t{0}}) {
    ForgedPeer peer;
    const auto h = header(std::uint64_t{4} << 30);  // claims 4 GiB
    const int payload_fd = flags == 0 ? peer.frames.get() : peer.side.get();
    if (flags != 0) {
      const auto announce = header(std::uint64_t{4} << 30, 0, 1, "MPCF", kSide);
      write_raw(peer.frames.get(), announce.data(), announce.size());
    }
    write_raw(payload_fd, h.data(), h.size());
    write_raw(payload_fd, "only this much", 14);
    peer.hang_up();
    g_largest_allocation = 0;
    try {
      (void)peer.conn.recv_bytes();
      FAIL() << "a truncated message was delivered (flags " << int{flags} << ")";
    } catch (const ConnectionClosed& e) {
      EXPECT_NE(std::string(e.what()).find("truncated after 14 of 4294967296"), std::string::npos)
          << e.what();
    }
    EXPECT_LE(g_largest_allocation.load(), 64 * kMiB);
  }
}

TEST(Pipe, TruncatedPayloadThenEofRaisesConnectionClosed) {
  ForgedPeer peer;
  const auto h = header(100);
  write_raw(peer.frames.get(), h.data(), h.size());
  write_raw(peer.frames.get(), "0123456789", 10);
  peer.hang_up();
  try {
    (void)peer.conn.recv_bytes();
    FAIL() << "a truncated message was delivered";
  } catch (const ConnectionClosed& e) {
    EXPECT_NE(std::string(e.what()).find("truncated after 10 of 100 payload bytes"),
              std::string::npos)
        << e.what();
  }
}

TEST(Pipe, TruncatedHeaderThenEofRaisesConnectionClosed) {
  ForgedPeer peer;
  const auto h = header(100);
  write_raw(peer.frames.get(), h.data(), 5);
  peer.hang_up();
  try {
    (void)peer.conn.recv_bytes();
    FAIL() << "a truncated header was accepted";
  } catch (const ConnectionClosed& e) {
    EXPECT_NE(std::string(e.what()).find("truncated after 5 of 16 header bytes"), std::string::npos)
        << e.what();
  }
}

TEST(Pipe, AnnouncedSideFrameThatNeverComesRaisesConnectionClosed) {
  // The peer announced a message on the pipe and went away before its side-socket part: the
  // message is truncated (not "peer closed the connection", which means between messages).
  ForgedPeer peer;
  const auto announce = header(100, 0, 1, "MPCF", kSide);
  write_raw(peer.frames.get(), announce.data(), announce.size());
  peer.hang_up();
  try {
    (void)peer.conn.recv_bytes();
    FAIL() << "a message without its side frame was delivered";
  } catch (const ConnectionClosed& e) {
    EXPECT_NE(std::string(e.what()).find("truncated after 0 of 16 header bytes"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW((void)peer.conn.recv_bytes(), ConnectionClosed);  // sticky
}

/// Sends `bytes` with `fds` attached as SCM_RIGHTS, bypassing the framing.
void send_with_fds(int sock, std::span<const std::uint8_t> bytes, std::vector<int> fds) {
  iovec iov{const_cast<std::uint8_t*>(bytes.data()), bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(8 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  if (::sendmsg(sock, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
    throw std::runtime_error(std::string("sendmsg: ") + std::strerror(errno));
  }
}

/// Announces on the pipe a side frame of `length` bytes with `fds` descriptors.
void announce(ForgedPeer& peer, std::uint64_t length, std::uint16_t fds) {
  const auto h = header(length, fds, 1, "MPCF", kSide);
  write_raw(peer.frames.get(), h.data(), h.size());
}

TEST(Pipe, UnannouncedDescriptorsRaiseProtocolErrorAndAreClosed) {
  // The leak check after the test proves the received descriptors were closed.
  ForgedPeer peer;
  auto [x, y] = Pipe();
  announce(peer, 0, 0);
  const auto h = header(0, /*fds=*/0);
  send_with_fds(peer.side.get(), h, {x.fileno(), y.fileno()});
  EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
}

TEST(Pipe, DescriptorsArrivingInsideAPayloadRaiseProtocolError) {
  ForgedPeer peer;
  auto [x, y] = Pipe();
  announce(peer, 8, 0);
  const auto h = header(8);
  write_raw(peer.side.get(), h.data(), h.size());
  const std::array<std::uint8_t, 8> payload{};
  send_with_fds(peer.side.get(), payload, {x.fileno()});
  EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
}

TEST(Pipe, MissingAnnouncedDescriptorsRaiseProtocolError) {
  ForgedPeer peer;
  announce(peer, 0, 2);
  const auto h = header(0, /*fds=*/2);
  write_raw(peer.side.get(), h.data(), h.size());
  EXPECT_THROW((void)peer.conn.recv_bytes(), ProtocolError);
}

TEST(Pipe, DescriptorsAnnouncedOnAPipeFrameRaiseProtocolError) {
  // A pipe cannot carry descriptors: a pipe frame (no side flag) that announces some lies.
  ForgedPeer peer;
  const auto h = header(0, /*fds=*/1);
  write_raw(peer.frames.get(), h.data(), h.size());
  try {
    (void)peer.conn.recv_bytes();
    FAIL() << "a pipe frame announcing descriptors was accepted";
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("only the side socket"), std::string::npos) << e.what();
  }
}

TEST(Pipe, ForgedFramesOnBothChannelsAreReceivedInAnnouncedOrder) {
  // The positive case of the layout above, written byte by byte: pipe frame, side frame with
  // a descriptor, pipe frame. Proves the documented format is the one the receiver reads.
  ForgedPeer peer;
  auto [x, y] = Pipe();
  const auto first = header(3);
  write_raw(peer.frames.get(), first.data(), first.size());
  write_raw(peer.frames.get(), "one", 3);
  announce(peer, 3, 1);
  std::vector<std::uint8_t> side_frame(16 + 3);
  const auto h = header(3, 1);
  std::memcpy(side_frame.data(), h.data(), 16);
  std::memcpy(side_frame.data() + 16, "two", 3);
  send_with_fds(peer.side.get(), side_frame, {x.fileno()});
  write_raw(peer.frames.get(), first.data(), first.size());
  write_raw(peer.frames.get(), "3rd", 3);
  EXPECT_EQ(as_string(peer.conn.recv_bytes()), "one");
  detail::ReceivedFrame frame = peer.conn.recv_frame();
  EXPECT_EQ(as_string(frame.bytes), "two");
  ASSERT_EQ(frame.fds.size(), 1U);
  EXPECT_TRUE(frame.fds[0]);
  EXPECT_EQ(as_string(peer.conn.recv_bytes()), "3rd");
  // And what the end under test sends is readable on the raw pipe with the same layout.
  peer.conn.send_bytes("hi");
  std::array<std::uint8_t, 18> got{};
  ASSERT_EQ(::read(peer.replies.get(), got.data(), got.size()), 18);
  const auto want = header(2);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin()));
  EXPECT_EQ(got[16], 'h');
  EXPECT_EQ(got[17], 'i');
}

TEST(Pipe, ConnectionOverOneSocketCarriesFramesAndDescriptors) {
  // The public constructor: every frame (descriptors on its header) on one socket.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Connection a(detail::UniqueFd{sv[0]});
  Connection b(detail::UniqueFd{sv[1]});
  auto [x, y] = Pipe();
  a.send(std::make_tuple(std::string("with"), x));
  a.send_bytes(pattern(200'000, 4));
  EXPECT_EQ(b.fileno(), sv[1]);
  auto [label, got] = b.recv<std::tuple<std::string, Connection>>();
  EXPECT_EQ(label, "with");
  EXPECT_EQ(b.recv_bytes(), pattern(200'000, 4));
  got.send(5);
  EXPECT_EQ(y.recv<int>(), 5);
  // Such an end travels too, and stays a single-socket end.
  auto [c, d] = Pipe();
  c.send(a);
  Connection a2 = d.recv<Connection>();
  a2.send(6);
  EXPECT_EQ(b.recv<int>(), 6);
  // Raw bytes on the socket are frames: the old corrupt-peer checks hold here too.
  write_raw(sv[0], "JUNKJUNKJUNKJUNK", 16);
  EXPECT_THROW((void)b.recv_bytes(), ProtocolError);
}

// ---- pipe and side socket together ----------------------------------------------------------

/// The kinds of message the order tests interleave: each takes a different path (pipe frame,
/// side frame written before or after its announcement, with or without descriptors).
enum class Kind { small, empty, medium, large, fd, fd_and_large };

Kind kind_of(int i) {
  static constexpr std::array kinds = {Kind::small, Kind::fd,     Kind::large,        Kind::small,
                                       Kind::empty, Kind::medium, Kind::fd_and_large, Kind::fd};
  return kinds[static_cast<std::size_t>(i) % kinds.size()];
}

std::size_t size_of(Kind k, int i) {
  switch (k) {
    case Kind::small: return static_cast<std::size_t>(1 + i % 200);
    case Kind::empty: return 0;
    case Kind::medium: return 20'000;  // over the pipe limit, under the side-first limit
    case Kind::large: return 300'000 + static_cast<std::size_t>(i);
    case Kind::fd: return 10;
    case Kind::fd_and_large: return 200'000;
  }
  return 0;
}

/// Sends message i of the sequence; a descriptor message carries a one-way pipe's writer on
/// which the receiver then proves the descriptor is the right one.
void send_nth(Connection& c, int i, std::vector<Connection>& readers) {
  const Kind k = kind_of(i);
  auto bytes = pattern(size_of(k, i), static_cast<std::uint64_t>(i));
  if (k == Kind::fd || k == Kind::fd_and_large) {
    auto [reader, writer] = Pipe(false);
    c.send(std::make_tuple(i, bytes, writer));
    readers.push_back(reader);
  } else {
    c.send_bytes(bytes);
  }
}

/// Receives message i and checks it; replies through a received descriptor.
void check_nth(Connection& c, int i) {
  const Kind k = kind_of(i);
  const auto want = pattern(size_of(k, i), static_cast<std::uint64_t>(i));
  if (k == Kind::fd || k == Kind::fd_and_large) {
    auto [n, bytes, writer] = c.recv<std::tuple<int, std::vector<std::byte>, Connection>>();
    require(n == i, "message " + std::to_string(i) + " arrived as " + std::to_string(n));
    require(bytes == want, "payload of message " + std::to_string(i));
    writer.send(i);
  } else {
    require(c.recv_bytes() == want, "message " + std::to_string(i));
  }
}

TEST(Pipe, DescriptorsAndLargePayloadsInterleavedWithSmallFramesKeepTheirOrder) {
  auto [a, b] = Pipe();
  constexpr int kCount = 64;
  std::vector<Connection> readers;
  std::exception_ptr failure;
  // All queued at once from a thread, so the receiver finds both channels full of frames.
  std::thread sender([&, &a = a] {
    try {
      for (int i = 0; i < kCount; ++i) send_nth(a, i, readers);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  for (int i = 0; i < kCount; ++i) {
    ASSERT_NO_THROW(check_nth(b, i)) << "message " << i;
  }
  sender.join();
  if (failure) std::rethrow_exception(failure);
  int fd_messages = 0;
  for (auto& reader : readers) {
    ASSERT_TRUE(reader.poll(10s));
    const int n = reader.recv<int>();
    EXPECT_TRUE(kind_of(n) == Kind::fd || kind_of(n) == Kind::fd_and_large) << n;
    ++fd_messages;
  }
  EXPECT_EQ(fd_messages, 24);
  EXPECT_FALSE(b.poll());
}

TEST(Pipe, InterleavedChannelsKeepTheirOrderBetweenProcessesInBothDirections) {
  auto [parent, child] = Pipe();
  constexpr int kCount = 48;
  const pid_t pid = fork_child([&, &parent = parent, &child = child] {
    parent.close();
    std::vector<Connection> readers;
    std::thread sender([&] {
      for (int i = 0; i < kCount; ++i) send_nth(child, i, readers);
    });
    for (int i = 0; i < kCount; ++i) {
      await_readable(child);
      check_nth(child, i);
    }
    sender.join();
    for (auto& reader : readers) {
      await_readable(reader);
      require(reader.recv<int>() >= 0, "reply through a descriptor");
    }
  });
  child.close();
  std::vector<Connection> readers;
  std::thread sender([&, &parent = parent] {
    for (int i = 0; i < kCount; ++i) send_nth(parent, i, readers);
  });
  for (int i = 0; i < kCount; ++i) {
    await_readable(parent);
    ASSERT_NO_THROW(check_nth(parent, i)) << "message " << i;
  }
  sender.join();
  for (auto& reader : readers) {
    ASSERT_TRUE(reader.poll(30s));
    EXPECT_GE(reader.recv<int>(), 0);
  }
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(Pipe, FilenoIsTheDescriptorThatBecomesReadableWhenAMessageArrives) {
  auto [a, b] = Pipe();
  pollfd p{b.fileno(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  // A side-socket message (small enough for the socket buffer: no reader runs yet) is
  // announced on the pipe.
  a.send_bytes(pattern(100'000, 5));
  p.revents = 0;
  ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "deadlock: fileno() never became readable";
  EXPECT_NE(p.revents & POLLIN, 0);
  EXPECT_EQ(b.recv_bytes(), pattern(100'000, 5));
  a.send(1);
  p.revents = 0;
  ASSERT_EQ(::poll(&p, 1, 10'000), 1);
  EXPECT_EQ(b.recv<int>(), 1);
  // The write end of a one-way pipe reports the pipe it writes, which is writable.
  auto [reader, writer] = Pipe(false);
  pollfd w{writer.fileno(), POLLOUT, 0};
  EXPECT_EQ(::poll(&w, 1, 0), 1);
  EXPECT_NE(reader.fileno(), writer.fileno());
}

TEST(Pipe, SendingToADeadPeerIsConnectionClosedNotSigpipe) {
  // write(2) on a pipe raises SIGPIPE; Pipe() makes sure it cannot kill the sender.
  auto [a, b] = Pipe();
  struct sigaction current {};
  ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &current), 0);
  EXPECT_NE(current.sa_handler, SIG_DFL);
  const pid_t pid = fork_child([&, &a = a, &b = b] {
    a.close();
    (void)b.recv<int>();
    // Wait until the parent has closed its end (a closed peer reads as POLLHUP): sending
    // before that would still succeed.
    pollfd hup{b.fileno(), POLLIN, 0};
    if (::poll(&hup, 1, 5000) != 1) throw std::runtime_error("the parent never closed its end");
    for (int i = 0; i < 3; ++i) {
      try {
        b.send(i);  // a pipe frame
        throw std::runtime_error("send to a dead peer succeeded");
      } catch (const ConnectionClosed&) {
      }
    }
    try {
      b.send_bytes(pattern(kMiB, 1));  // a side frame
      throw std::runtime_error("send to a dead peer succeeded");
    } catch (const ConnectionClosed&) {
    }
  });
  b.close();
  a.send(0);
  a.close();
  EXPECT_EQ(wait_child(pid), 0);
}

// Peer killed mid-frame, on each channel: a forked ForgedPeer writes part of a frame and
// kills itself; the parent holds no copy of the peer's descriptors.
void peer_dies_after(const std::function<void(ForgedPeer&)>& write_part,
                     const std::string& expected) {
  ForgedPeer peer;
  const pid_t pid = fork_child([&] {
    peer.conn.close();
    write_part(peer);
    ::raise(SIGKILL);
  });
  peer.hang_up();
  EXPECT_EQ(wait_child(pid), -SIGKILL);
  try {
    (void)peer.conn.recv_bytes();
    ADD_FAILURE() << "a truncated message was delivered";
  } catch (const ConnectionClosed& e) {
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)peer.conn.recv_bytes(), ConnectionClosed);
}

TEST(Pipe, PeerKilledMidFrameOnThePipeRaisesConnectionClosed) {
  peer_dies_after(
      [](ForgedPeer& p) {
        const auto h = header(1000);
        write_raw(p.frames.get(), h.data(), h.size());
        write_raw(p.frames.get(), "partial", 7);
      },
      "truncated after 7 of 1000 payload bytes");
  peer_dies_after(
      [](ForgedPeer& p) {
        const auto h = header(1000);
        write_raw(p.frames.get(), h.data(), 9);
      },
      "truncated after 9 of 16 header bytes");
}

TEST(Pipe, PeerKilledMidFrameOnTheSideSocketRaisesConnectionClosed) {
  peer_dies_after(
      [](ForgedPeer& p) {
        announce(p, 1000, 0);
        const auto h = header(1000);
        write_raw(p.side.get(), h.data(), h.size());
        write_raw(p.side.get(), "partial", 7);
      },
      "truncated after 7 of 1000 payload bytes");
  peer_dies_after(
      [](ForgedPeer& p) {
        announce(p, 1000, 0);
        const auto h = header(1000);
        write_raw(p.side.get(), h.data(), 3);
      },
      "truncated after 3 of 16 header bytes");
}

// ---- connections inside messages ------------------------------------------------------------

TEST(Pipe, ConnectionSentThroughAConnectionWorksInAnotherProcess) {
  auto [control, child_control] = Pipe();
  const pid_t pid = fork_child([&, &control = control, &child_control = child_control] {
    control.close();
    await_readable(child_control);
    Connection duplex = child_control.recv<Connection>();
    Connection writer = child_control.recv<Connection>();
    require(duplex.readable() && duplex.writable(), "duplex end keeps both directions");
    require(!writer.readable() && writer.writable(), "writer end stays write-only");
    await_readable(duplex);
    const auto text = duplex.recv<std::string>();
    duplex.send(text + " back");
    writer.send(std::int64_t{1234});
  });
  child_control.close();
  {
    auto [mine, theirs] = Pipe();
    auto [reader, writer] = Pipe(false);
    control.send(theirs);
    control.send(writer);
    // Our copies go away: from now on only the child holds those ends.
    theirs.close();
    writer.close();
    mine.send(std::string("there and"));
    await_readable(mine);
    EXPECT_EQ(mine.recv<std::string>(), "there and back");
    await_readable(reader);
    EXPECT_EQ(reader.recv<std::int64_t>(), 1234);
    // When the child exits, its ends close: we see EOF rather than waiting forever.
    EXPECT_EQ(wait_child(pid), 0);
    EXPECT_THROW((void)mine.recv_bytes(), ConnectionClosed);
    EXPECT_THROW((void)reader.recv_bytes(), ConnectionClosed);
  }
}

TEST(Pipe, QueuedConnectionsEachArriveWithTheirOwnMessage) {
  // Several descriptor-carrying messages interleaved with plain ones, all queued before the
  // receiver reads: descriptors must be matched to the right frames through the read-ahead.
  auto [a, b] = Pipe();
  std::vector<Connection> far_ends;
  for (int i = 0; i < 5; ++i) {
    auto [near, far] = Pipe();
    a.send(near);
    a.send_bytes(pattern(static_cast<std::size_t>(100 * i), i));
    near.close();
    far_ends.push_back(far);
  }
  for (int i = 0; i < 5; ++i) {
    Connection got = b.recv<Connection>();
    EXPECT_EQ(b.recv_bytes(), pattern(static_cast<std::size_t>(100 * i), i));
    got.send(i);
    EXPECT_EQ(far_ends[static_cast<std::size_t>(i)].recv<int>(), i);
  }
}

TEST(Pipe, ConnectionsInsideContainersTravelTogether) {
  auto [a, b] = Pipe();
  auto [x1, y1] = Pipe();
  auto [x2, y2] = Pipe(false);
  a.send(std::vector<Connection>{x1, y2});
  a.send(std::make_tuple(std::string("label"), y1));
  auto got = b.recv<std::vector<Connection>>();
  ASSERT_EQ(got.size(), 2U);
  auto [label, far] = b.recv<std::tuple<std::string, Connection>>();
  EXPECT_EQ(label, "label");
  EXPECT_TRUE(got[1].writable() && !got[1].readable());
  got[0].send(10);  // a copy of x1, reaching y1
  EXPECT_EQ(y1.recv<int>(), 10);
  got[1].send(20);  // a copy of the writer y2, reaching x2
  EXPECT_EQ(x2.recv<int>(), 20);
  far.send(30);  // a copy of y1, reaching x1
  EXPECT_EQ(x1.recv<int>(), 30);
}

TEST(Pipe, ConnectionWithReadAheadBytesCannotBeSent) {
  auto [a, b] = Pipe();
  auto [c, d] = Pipe();
  c.send(1);
  c.send(2);
  EXPECT_EQ(d.recv<int>(), 1);  // reads ahead: message 2 now sits in d's buffer
  EXPECT_THROW(a.send(d), UsageError);
  EXPECT_EQ(d.recv<int>(), 2);
  a.send(d);  // nothing pending any more
  Connection d2 = b.recv<Connection>();
  c.send(3);
  EXPECT_EQ(d2.recv<int>(), 3);
  c.close();
  EXPECT_THROW(a.send(c), UsageError);  // a closed connection cannot travel
}

// ---- interruptions and injected failures ----------------------------------------------------

extern "C" void on_alarm(int) {}

/// SIGALRM every 100 µs without SA_RESTART, for the lifetime of the object.
class AlarmStorm {
 public:
  AlarmStorm() {
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: blocking calls fail with EINTR
    ::sigaction(SIGALRM, &sa, &old_);
    itimerval t{};
    t.it_interval.tv_usec = 100;
    t.it_value.tv_usec = 100;
    ::setitimer(ITIMER_REAL, &t, nullptr);
  }
  ~AlarmStorm() {
    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::sigaction(SIGALRM, &old_, nullptr);
  }
  AlarmStorm(const AlarmStorm&) = delete;
  AlarmStorm& operator=(const AlarmStorm&) = delete;

 private:
  struct sigaction old_ {};
};

/// Sends `out` on `c` from a second thread while receiving one message on `c`.
std::vector<std::byte> send_while_receiving(Connection& c, const std::vector<std::byte>& out) {
  std::exception_ptr failure;
  std::thread sender([&] {
    try {
      c.send_bytes(out);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  std::vector<std::byte> in;
  try {
    in = c.recv_bytes();
  } catch (...) {
    sender.join();
    throw;
  }
  sender.join();
  if (failure) std::rethrow_exception(failure);
  return in;
}

TEST(Pipe, TransfersSurviveAnInterruptStorm) {
  auto [parent, child] = Pipe();
  const std::size_t n = 64 * kMiB;
  const pid_t pid = fork_child([&, &parent = parent, &child = child] {
    parent.close();
    AlarmStorm storm;
    const auto got = send_while_receiving(child, pattern(n, 2));
    require(got == pattern(n, 1), "the parent's 64 MiB arrived intact");
  });
  child.close();
  std::vector<std::byte> got;
  {
    AlarmStorm storm;
    got = send_while_receiving(parent, pattern(n, 1));
  }
  EXPECT_TRUE(got == pattern(n, 2));
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(Pipe, InjectedWriteFailureOnThePipeLeavesTheConnectionUsable) {
  // Small frames go out with one write(2), larger pipe frames with writev(2).
  auto [a, b] = Pipe();
  for (const char* call : {"write", "writev"}) {
    const auto message = pattern(std::string(call) == "write" ? 8 : 4000, 1);
    detail::sys::inject_failure(call, EIO);
    try {
      a.send_bytes(message);
      detail::sys::inject_failure(call, 0, 0);
      FAIL() << "the injected " << call << " failure did not surface";
    } catch (const SystemError& e) {
      EXPECT_EQ(e.code().value(), EIO);
      EXPECT_EQ(e.call(), std::string(call) + "()");
    }
    // Nothing reached the wire, so the connection is still usable.
    EXPECT_FALSE(b.poll());
    a.send_bytes(message);
    EXPECT_EQ(b.recv_bytes(), message);
  }
}

TEST(Pipe, InjectedSendmsgFailureBeforeASmallSideFrameLeavesTheConnectionUsable) {
  // A descriptor-carrying message small enough to go on the side socket before its pipe
  // announcement: a failed sendmsg leaves nothing on either channel.
  auto [a, b] = Pipe();
  auto [x, y] = Pipe();
  detail::sys::inject_failure("sendmsg", EIO);
  try {
    a.send(x);
    FAIL() << "the injected failure did not surface";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code().value(), EIO);
    EXPECT_EQ(e.call(), "sendmsg()");
  }
  EXPECT_FALSE(b.poll());
  a.send(x);
  Connection got = b.recv<Connection>();
  got.send(3);
  EXPECT_EQ(y.recv<int>(), 3);
}

TEST(Pipe, FailureAfterTheAnnouncementWakesTheReceiverWithConnectionClosed) {
  // A large message is announced on the pipe first; if its side frame then fails, the
  // receiver (already waiting on the socket, or about to) must not wait forever, and the
  // sender must not pretend the direction still works.
  auto [a, b] = Pipe();
  detail::sys::inject_failure("sendmsg", EIO);
  EXPECT_THROW(a.send_bytes(pattern(kMiB, 1)), SystemError);
  ASSERT_TRUE(b.poll(10s)) << "deadlock: the announcement did not arrive";
  try {
    (void)b.recv_bytes();
    FAIL() << "a message without its side frame was delivered";
  } catch (const ConnectionClosed& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_THROW(a.send_bytes("later"), SystemError);  // sticky on the sending side
  // The other direction is untouched.
  b.send(4);
  EXPECT_EQ(a.recv<int>(), 4);
}

TEST(Pipe, FailureAfterAnUnannouncedSideFrameMakesSendingSticky) {
  // The side frame went out but its announcement did not: the next side frame could be
  // matched with the wrong announcement, so the sending direction refuses further messages.
  auto [a, b] = Pipe();
  auto [x, y] = Pipe();
  detail::sys::inject_failure("writev", EIO);
  EXPECT_THROW(a.send(x), SystemError);
  EXPECT_THROW(a.send(x), SystemError);
  EXPECT_THROW(a.send_bytes("small"), SystemError);
  EXPECT_FALSE(b.poll());  // no announcement reached the pipe
}

TEST(Pipe, InjectedReadFailureOnEitherChannelSurfacesAsSystemErrorAndLosesNothing) {
  auto [a, b] = Pipe();
  a.send(1);  // a pipe frame
  detail::sys::inject_failure("read", EIO);
  EXPECT_THROW((void)b.recv<int>(), SystemError);
  // The failed call consumed nothing: the message is still there.
  EXPECT_EQ(b.recv<int>(), 1);
  // A side frame (100 KB fits the socket buffer): the failed recvmsg leaves its announcement
  // unconsumed too.
  a.send_bytes(pattern(100'000, 9));
  detail::sys::inject_failure("recvmsg", EIO);
  try {
    (void)b.recv_bytes();
    FAIL() << "the injected failure did not surface";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.call(), "recvmsg()");
  }
  EXPECT_TRUE(b.poll());
  EXPECT_EQ(b.recv_bytes(), pattern(100'000, 9));
}

TEST(Pipe, InjectedPipeFailureSurfacesFromPipe) {
  detail::sys::inject_failure("pipe2", EMFILE);
  EXPECT_THROW((void)Pipe(), SystemError);
}

TEST(Pipe, InjectedSocketpairFailureSurfacesFromPipe) {
  detail::sys::inject_failure("socketpair", EMFILE);
  EXPECT_THROW((void)Pipe(), SystemError);
}

}  // namespace
}  // namespace mproc
