// Tests for transferable callables (include/mproc/detail/callable.hpp): encode_call in one
// place, run_call in another — this process, a fork child, and a fresh exec of this binary
// (loaded at a different address when ASLR is on).
#include "mproc/detail/callable.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/child_main.hpp"

namespace {

using mproc::Decoder;
using mproc::Encoder;
using mproc::ProtocolError;
using mproc::UsageError;
namespace detail = mproc::detail;

// ---- callables under test -------------------------------------------------------------------

std::string describe_args(int n, std::string s, std::vector<double> v) {
  double sum = 0;
  for (double x : v) sum += x;
  return std::to_string(n) + ":" + s + ":" + std::to_string(v.size()) + ":" +
         std::to_string(static_cast<int>(sum));
}

int add(int a, int b) {
  return a + b;
}
int multiply(int a, int b) {
  return a * b;
}

std::atomic<int> g_side_effect{0};
void store(int v) {
  g_side_effect = v;
}

struct Boom : std::runtime_error {
  using std::runtime_error::runtime_error;
  int code = 42;
};
int throws_boom(int) {
  throw Boom("boom from the call");
}

struct Negate {  // empty, default-constructible
  int operator()(int x) const { return -x; }
};

struct NoDefault {  // empty, trivially copyable, not default-constructible
  explicit constexpr NoDefault(int) {}
  int operator()(int x) const { return x + 1000; }
};

struct Scale {  // state that opts in to travel
  double factor = 1;
  std::string label;
  template <class Archive>
  void serialize(Archive& a) {
    a(factor, label);
  }
  std::string operator()(double x) const { return label + "=" + std::to_string(x * factor); }
};

struct NoDefaultWithState {  // opts in, but the worker cannot construct one to load into
  explicit NoDefaultWithState(std::string s) : s_(std::move(s)) {}
  std::string s_;
  template <class Archive>
  void serialize(Archive& a) {
    a(s_);
  }
  std::string operator()() const { return s_; }
};

struct Offset {  // opts in; trivially copyable, so the codec sends its bytes
  explicit Offset(int by) : by_(by) {}
  int by_;
  template <class Archive>
  void serialize(Archive& a) {
    a(by_);
  }
  int operator()(int x) const { return x + by_; }
};

struct Unserializable {  // state, no opt-in
  int n = 0;
  int operator()() const { return n; }
};

int* returns_pointer(int) {
  static int x = 7;
  return &x;
}

void takes_reference(int&) {}

const std::string& returns_reference(const std::string&) {
  static const std::string value = "by reference";
  return value;
}

// ---- the concept -----------------------------------------------------------------------------

constexpr auto captureless = [](int x) { return x * 2; };
inline int g_captured = 0;
inline auto capturing_by_value = [n = 1](int x) { return x + n; };
inline auto capturing_by_reference = [&r = g_captured](int x) { return x + r; };

static_assert(detail::transferable_call<decltype(&add), int, int>);
static_assert(detail::transferable_call<int (*)(int, int), int, int>);
static_assert(detail::transferable_call<decltype(add), int, int>);  // function decays
static_assert(
    detail::transferable_call<decltype(&describe_args), int, std::string, std::vector<double>>);
static_assert(detail::transferable_call<decltype(&store), int>);
static_assert(detail::transferable_call<decltype(captureless), int>);
static_assert(detail::transferable_call<Negate, int>);
static_assert(detail::transferable_call<NoDefault, int>);
static_assert(detail::transferable_call<Scale, double>);
static_assert(detail::transferable_call<decltype(&returns_reference), std::string>);

static_assert(!detail::transferable_call<decltype(capturing_by_value), int>);
static_assert(!detail::transferable_call<decltype(capturing_by_reference), int>);
static_assert(!detail::transferable_call<Unserializable>);
static_assert(!detail::transferable_call<NoDefaultWithState>);
static_assert(detail::transferable_call<Offset, int>);
static_assert(!detail::transferable_call<decltype(&add), int*, int>);  // raw pointer argument
static_assert(!detail::transferable_call<decltype(&add), int>);        // wrong arity
static_assert(!detail::transferable_call<decltype(&takes_reference), int>);
static_assert(!detail::transferable_call<decltype(&returns_pointer), int>);   // result can't travel
static_assert(detail::transferable_target<decltype(&returns_pointer), int>);  // ...unless dropped
static_assert(!detail::transferable_call<int, int>);
static_assert(!detail::transferable_call<void*>);
static_assert(!detail::transferable_call<decltype(&Negate::operator()), Negate, int>);

// ---- helpers ---------------------------------------------------------------------------------

template <class T>
T run_and_decode(const Encoder& call) {
  Decoder in(call.bytes());
  Encoder result;
  detail::run_call(in, &result);
  EXPECT_EQ(in.remaining(), 0u);
  Decoder r(result.bytes());
  T value = mproc::decode<T>(r);
  r.expect_end();
  return value;
}

template <class F, class... Args>
Encoder encoded(const F& f, const Args&... args) {
  Encoder out;
  detail::encode_call(out, f, args...);
  return out;
}

void run_bytes(const std::vector<std::byte>& bytes) {
  Decoder in(bytes);
  Encoder result;
  detail::run_call(in, &result);
}

/// Offset of the trampoline's CodeRef offset field in an encoded call.
std::size_t trampoline_offset_position(const std::vector<std::byte>& call) {
  return 1 + 2 + std::to_integer<std::size_t>(call.at(2));
}

std::string protocol_error_of(const std::vector<std::byte>& bytes) {
  try {
    run_bytes(bytes);
  } catch (const ProtocolError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ProtocolError";
  return {};
}

// ---- calls in this process
// -----------------------------------------------------------------------

TEST(Callable, FreeFunctionReceivesItsArgumentsByValue) {
  const Encoder call =
      encoded(&describe_args, 7, std::string("seven"), std::vector<double>{1, 2, 4});
  EXPECT_EQ(run_and_decode<std::string>(call), "7:seven:3:7");
}

TEST(Callable, FunctionNamedWithoutAmpersandDecaysToItsPointer) {
  EXPECT_EQ(run_and_decode<int>(encoded(add, 2, 3)), 5);
}

TEST(Callable, VoidFunctionRunsAndLeavesTheResultEmpty) {
  g_side_effect = 0;
  const Encoder call = encoded(&store, 99);
  Decoder in(call.bytes());
  Encoder result;
  detail::run_call(in, &result);
  EXPECT_EQ(g_side_effect.load(), 99);
  EXPECT_TRUE(result.bytes().empty());
}

TEST(Callable, NullResultEncoderDiscardsTheValue) {
  const Encoder call = encoded(&add, 1, 1);
  Decoder in(call.bytes());
  detail::run_call(in, nullptr);
  EXPECT_EQ(in.remaining(), 0u);
}

TEST(Callable, CapturelessLambdaRuns) {
  EXPECT_EQ(run_and_decode<int>(encoded(captureless, 21)), 42);
  EXPECT_EQ(
      run_and_decode<std::string>(encoded(
          [](const std::string& s, int n) { return s + std::to_string(n); }, std::string("n="), 3)),
      "n=3");
}

TEST(Callable, EmptyFunctionObjectsRunWithoutSendingState) {
  EXPECT_EQ(run_and_decode<int>(encoded(Negate{}, 5)), -5);
  EXPECT_EQ(run_and_decode<int>(encoded(NoDefault{0}, 5)), 1005);
  // Nothing but the header and the argument: version, CodeRef, int.
  const Encoder call = encoded(Negate{}, 5);
  EXPECT_EQ(call.bytes().size(), trampoline_offset_position(call.bytes()) + 8 + sizeof(int));
}

TEST(Callable, SerializableFunctionObjectCarriesItsState) {
  EXPECT_EQ(run_and_decode<std::string>(encoded(Scale{2.5, "x"}, 4.0)), "x=10.000000");
  EXPECT_EQ(run_and_decode<std::string>(encoded(Scale{-1, "y"}, 3.0)), "y=-3.000000");
  EXPECT_EQ(run_and_decode<int>(encoded(Offset{10}, 5)), 15);
}

TEST(Callable, FunctionPointerVariableCallsTheFunctionItHolds) {
  for (int (*fn)(int, int) : {&add, &multiply}) {
    EXPECT_EQ(run_and_decode<int>(encoded(fn, 6, 7)), fn(6, 7));
  }
}

TEST(Callable, FunctionPointerIntoAnotherModuleRuns) {
  // The C library's functions live in libc.so / libm.so, not in this executable.
  int (*abs_fn)(int) = &::abs;
  double (*sqrt_fn)(double) = &::sqrt;
  EXPECT_EQ(run_and_decode<int>(encoded(abs_fn, -12)), 12);
  EXPECT_EQ(run_and_decode<double>(encoded(sqrt_fn, 9.0)), 3.0);
  const auto here = detail::code_ref_of(reinterpret_cast<std::uintptr_t>(&add));
  const auto there = detail::function_ref_of(reinterpret_cast<std::uintptr_t>(sqrt_fn));
  EXPECT_FALSE(here.module == there.module);
}

TEST(Callable, ReferenceResultIsEncodedAsItsValue) {
  EXPECT_EQ(run_and_decode<std::string>(encoded(&returns_reference, std::string("ignored"))),
            "by reference");
}

TEST(Callable, DiscardingResultAcceptsAResultThatCannotTravel) {
  Encoder call;
  detail::encode_call_discarding_result(call, &returns_pointer, 1);
  Decoder in(call.bytes());
  Encoder result;
  detail::run_call(in, &result);
  EXPECT_TRUE(result.bytes().empty());
  EXPECT_EQ(in.remaining(), 0u);
}

TEST(Callable, ExceptionFromTheCallPropagatesUnchanged) {
  const Encoder call = encoded(&throws_boom, 1);
  Decoder in(call.bytes());
  Encoder result;
  try {
    detail::run_call(in, &result);
    FAIL() << "no exception";
  } catch (const Boom& e) {
    EXPECT_STREQ(e.what(), "boom from the call");
    EXPECT_EQ(e.code, 42);
  }
  EXPECT_TRUE(result.bytes().empty());
}

TEST(Callable, BytesAfterTheCallAreLeftForTheCaller) {
  Encoder call = encoded(&add, 1, 2);
  mproc::encode(call, 12345);
  Decoder in(call.bytes());
  Encoder result;
  detail::run_call(in, &result);
  EXPECT_EQ(mproc::decode<int>(in), 12345);
  in.expect_end();
}

TEST(Callable, ManyThreadsRunCallsConcurrently) {
  const Encoder a = encoded(&add, 20, 22);
  const Encoder s = encoded(Scale{2, "t"}, 1.0);
  const Encoder f = encoded(static_cast<int (*)(int, int)>(&multiply), 6, 7);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 300; ++i) {
        if (run_and_decode<int>(a) != 42) ++wrong;
        if (run_and_decode<int>(f) != 42) ++wrong;
        if (run_and_decode<std::string>(s) != "t=2.000000") ++wrong;
        Encoder fresh;  // encoding concurrently too (first use initialises cached tokens)
        detail::encode_call(
            fresh, [](int x) { return x + 1; }, i);
        if (run_and_decode<int>(fresh) != i + 1) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// ---- code references ---------------------------------------------------------------------------

TEST(CodeRef, AddressRoundTripsThroughModuleAndOffset) {
  const auto address = reinterpret_cast<std::uintptr_t>(&add);
  const detail::CodeRef ref = detail::code_ref_of(address);
  EXPECT_EQ(ref.module.kind, detail::ModuleId::Kind::build_id);  // Debian links with build-ids
  EXPECT_GT(ref.module.size, 0u);
  EXPECT_EQ(detail::resolve_address(ref), address);
  EXPECT_EQ(detail::resolve_function_entry(ref), address);

  // Same module, offsets differ by the distance between the functions.
  const auto other = reinterpret_cast<std::uintptr_t>(&multiply);
  const detail::CodeRef other_ref = detail::code_ref_of(other);
  EXPECT_EQ(other_ref.module, ref.module);
  EXPECT_EQ(other_ref.offset - ref.offset, other - address);

  // A function of the C library is named relative to another module.
  const auto libc = reinterpret_cast<std::uintptr_t>(&::getppid);
  const detail::CodeRef libc_ref = detail::code_ref_of(libc);
  EXPECT_FALSE(libc_ref.module == ref.module);
  EXPECT_EQ(detail::resolve_address(libc_ref), libc);
}

TEST(CodeRef, CodeRefSurvivesItsWireForm) {
  const detail::CodeRef ref = detail::code_ref_of(reinterpret_cast<std::uintptr_t>(&add));
  Encoder out;
  detail::write_code_ref(out, ref);
  EXPECT_EQ(out.bytes().size(), 2u + ref.module.size + 8u);
  Decoder in(out.bytes());
  const detail::CodeRef back = detail::read_code_ref(in);
  in.expect_end();
  EXPECT_EQ(back.module, ref.module);
  EXPECT_EQ(back.offset, ref.offset);
  EXPECT_EQ(detail::to_hex(ref.module).size(), 2u * ref.module.size);
}

TEST(CodeRef, AddressOutsideEveryModuleIsRefused) {
  auto heap = std::make_unique<int>(1);
  EXPECT_THROW(detail::code_ref_of(reinterpret_cast<std::uintptr_t>(heap.get())), UsageError);
  EXPECT_THROW(detail::function_ref_of(0), UsageError);
}

TEST(CodeRef, PointerIntoTheMiddleOfAFunctionIsRefused) {
  const auto address = reinterpret_cast<std::uintptr_t>(&describe_args);
  try {
    (void)detail::function_ref_of(address + 1);
    FAIL() << "no UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("inside a function"), std::string::npos) << e.what();
  }
  detail::CodeRef ref = detail::code_ref_of(address);
  ++ref.offset;
  EXPECT_THROW(detail::resolve_function_entry(ref), ProtocolError);
}

TEST(CodeRef, DataAddressIsNotAFunction) {
  static const int in_rodata = 3;
  EXPECT_THROW(detail::function_ref_of(reinterpret_cast<std::uintptr_t>(&in_rodata)), UsageError);
  const detail::CodeRef ref = detail::code_ref_of(reinterpret_cast<std::uintptr_t>(&in_rodata));
  EXPECT_THROW(detail::resolve_function_entry(ref), ProtocolError);
  EXPECT_THROW(detail::resolve_trampoline(ref), ProtocolError);
}

TEST(CodeRef, OffsetBeyondTheModuleIsAProtocolError) {
  detail::CodeRef ref = detail::code_ref_of(reinterpret_cast<std::uintptr_t>(&add));
  ref.offset = ~std::uint64_t{0} - 2;  // would wrap around the address space
  EXPECT_THROW(detail::resolve_address(ref), ProtocolError);
  ref.offset = std::uint64_t{1} << 46;
  EXPECT_THROW(detail::resolve_address(ref), ProtocolError);
}

// ---- bad input ---------------------------------------------------------------------------------

TEST(Callable, TamperedTrampolineOffsetRaisesProtocolError) {
  const Encoder call = encoded(&add, 1, 2);
  const std::size_t pos = trampoline_offset_position(call.bytes());
  for (std::size_t byte : {0u, 1u, 5u}) {
    std::vector<std::byte> bad = call.bytes();
    bad[pos + byte] ^= std::byte{0x5a};
    EXPECT_NE(protocol_error_of(bad), "") << "byte " << byte;
  }
  // The entry point moved by one byte is not a registered call entry.
  std::vector<std::byte> shifted = call.bytes();
  shifted[pos] = static_cast<std::byte>(std::to_integer<unsigned>(shifted[pos]) + 1);
  EXPECT_NE(protocol_error_of(shifted).find("not an mproc call entry"), std::string::npos);
}

TEST(Callable, TamperedFunctionPointerTargetRaisesProtocolError) {
  int (*fn)(int, int) = &add;
  const Encoder call = encoded(fn, 1, 2);
  // Layout: version, trampoline CodeRef, target CodeRef (kind, n, id, offset), args.
  const std::size_t target = trampoline_offset_position(call.bytes()) + 8;
  const std::size_t offset = target + 2 + std::to_integer<std::size_t>(call.bytes()[target + 1]);
  std::vector<std::byte> bad = call.bytes();
  bad[offset] = static_cast<std::byte>(std::to_integer<unsigned>(bad[offset]) + 1);
  EXPECT_NE(protocol_error_of(bad).find("inside a function"), std::string::npos);
  bad = call.bytes();
  bad[offset + 5] ^= std::byte{0x40};
  EXPECT_NE(protocol_error_of(bad), "");
}

TEST(Callable, UnknownBuildIdRaisesProtocolErrorNamingIt) {
  const Encoder call = encoded(&add, 1, 2);
  std::vector<std::byte> bad = call.bytes();
  bad[3] ^= std::byte{0xff};  // first byte of the trampoline's module id
  const std::string what = protocol_error_of(bad);
  EXPECT_NE(what.find("not loaded in this process (pid " + std::to_string(::getpid())),
            std::string::npos)
      << what;
  EXPECT_NE(what.find("workers must run the same binary"), std::string::npos) << what;
}

TEST(Callable, UnknownVersionOrModuleKindRaisesProtocolError) {
  const Encoder call = encoded(&add, 1, 2);
  std::vector<std::byte> bad = call.bytes();
  bad[0] = std::byte{9};
  EXPECT_NE(protocol_error_of(bad).find("version 9"), std::string::npos);
  bad = call.bytes();
  bad[1] = std::byte{7};  // module id kind
  EXPECT_NE(protocol_error_of(bad).find("unknown kind"), std::string::npos);
  bad = call.bytes();
  bad[2] = std::byte{0};  // build-id length
  EXPECT_NE(protocol_error_of(bad), "");
  bad = call.bytes();
  bad[2] = std::byte{200};
  EXPECT_NE(protocol_error_of(bad), "");
  bad = call.bytes();
  bad[1] = std::byte{2};  // content digest, but of the build-id's length
  EXPECT_NE(protocol_error_of(bad), "");
}

TEST(Callable, TruncatedCallRaisesProtocolErrorAtEveryLength) {
  int (*fn)(int, int) = &multiply;
  const std::vector<Encoder> calls = {
      encoded(&describe_args, 7, std::string("seven"), std::vector<double>{1, 2, 4}),
      encoded(fn, 3, 4),
      encoded(Scale{2, "label"}, 1.5),
      encoded(Negate{}, 1),
  };
  for (const Encoder& call : calls) {
    const auto& bytes = call.bytes();
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      const std::vector<std::byte> cut(bytes.begin(), bytes.begin() + static_cast<long>(n));
      EXPECT_THROW(run_bytes(cut), ProtocolError) << "length " << n << " of " << bytes.size();
    }
    EXPECT_NO_THROW(run_bytes(bytes));
  }
}

TEST(Callable, EncodeFailureLeavesTheEncoderAsItWas) {
  Encoder out;
  mproc::encode(out, 7);
  const std::vector<std::byte> before = out.bytes();
  int (*null_fn)(int, int) = nullptr;
  EXPECT_THROW(detail::encode_call(out, null_fn, 1, 2), UsageError);
  EXPECT_EQ(out.bytes(), before);
}

// ---- other processes ----------------------------------------------------------------------------

/// Reads everything from `fd` until EOF, failing the test if that takes longer than 30 s.
std::string read_all_with_deadline(int fd) {
  std::string data;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ADD_FAILURE() << "deadlock: the child did not finish within 30 s";
      return data;
    }
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) {
      ADD_FAILURE() << "poll: " << std::strerror(errno);
      return data;
    }
    if (rc == 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return data;
    data.append(buf, static_cast<std::size_t>(n));
  }
}

/// Waits for `pid` (killing it if it is still running) and returns its wait status.
int reap(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 3000; ++i) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ADD_FAILURE() << "deadlock: child " << pid << " did not exit; killed";
  return status;
}

std::string to_hex(const std::vector<std::byte>& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (std::byte b : bytes) {
    s += digits[std::to_integer<unsigned>(b) >> 4];
    s += digits[std::to_integer<unsigned>(b) & 0xf];
  }
  return s;
}

std::vector<std::byte> from_hex(const std::string& s) {
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::vector<std::byte> out;
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) {
    out.push_back(static_cast<std::byte>(nibble(s[i]) * 16 + nibble(s[i + 1])));
  }
  return out;
}

TEST(Callable, CallEncodedInTheParentRunsInAForkChild) {
  int (*fn)(int, int) = &multiply;
  const std::vector<Encoder> calls = {
      encoded(&describe_args, 1, std::string("one"), std::vector<double>{0.5, 0.5}),
      encoded(fn, 6, 9),
      encoded(Scale{3, "s"}, 2.0),
      encoded(captureless, 8),
  };
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: run each call, write each result prefixed by its size; any failure exits 2.
    ::close(fds[0]);
    try {
      for (const Encoder& call : calls) {
        Decoder in(call.bytes());
        Encoder result;
        detail::run_call(in, &result);
        const std::uint64_t size = result.bytes().size();
        if (::write(fds[1], &size, sizeof size) != sizeof size) ::_exit(3);
        if (::write(fds[1], result.bytes().data(), size) != static_cast<ssize_t>(size)) {
          ::_exit(3);
        }
      }
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  const std::string data = read_all_with_deadline(fds[0]);
  ::close(fds[0]);
  const int status = reap(pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  std::vector<std::vector<std::byte>> results;
  for (std::size_t pos = 0; pos < data.size();) {
    std::uint64_t size = 0;
    ASSERT_LE(pos + sizeof size, data.size());
    std::memcpy(&size, data.data() + pos, sizeof size);
    pos += sizeof size;
    ASSERT_LE(pos + size, data.size());
    const auto* p = reinterpret_cast<const std::byte*>(data.data() + pos);
    results.emplace_back(p, p + size);
    pos += size;
  }
  ASSERT_EQ(results.size(), 4u);
  auto decode_as = [&](std::size_t i, auto type) {
    Decoder d(results[i]);
    return mproc::decode<decltype(type)>(d);
  };
  EXPECT_EQ(decode_as(0, std::string()), "1:one:2:1");
  EXPECT_EQ(decode_as(1, int()), 54);
  EXPECT_EQ(decode_as(2, std::string()), "s=6.000000");
  EXPECT_EQ(decode_as(3, int()), 16);
}

constexpr const char* kExecCallsEnv = "MPROC_CALLABLE_TEST_CALLS";
constexpr const char* kExecFdEnv = "MPROC_CALLABLE_TEST_FD";

// Child program for Callable.CallsEncodedHereRunInAFreshExecOfThisBinary, run in a re-exec'd
// copy of this test binary: runs the comma-separated hex calls of its environment and writes
// the hex results, then the address of `add` in this process.
MPROC_TEST_CHILD_MAIN(callable_exec_child) {
  const char* calls = std::getenv(kExecCallsEnv);
  const char* fd_text = std::getenv(kExecFdEnv);
  if (calls == nullptr || fd_text == nullptr) return 2;
  const int fd = std::atoi(fd_text);
  std::string line;
  std::string rest = calls;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::vector<std::byte> call = from_hex(rest.substr(0, comma));
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    Decoder in(call);
    Encoder result;
    detail::run_call(in, &result);
    in.expect_end();
    line += to_hex(result.bytes()) + " ";
  }
  line += std::to_string(reinterpret_cast<std::uintptr_t>(&add)) + "\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 3;
  ::close(fd);
  return 0;
}

TEST(Callable, CallsEncodedHereRunInAFreshExecOfThisBinary) {
  int (*fn)(int, int) = &add;
  double (*sqrt_fn)(double) = &::sqrt;
  const std::vector<Encoder> calls = {encoded(Scale{4, "exec"}, 2.5), encoded(fn, 40, 2),
                                      encoded(sqrt_fn, 16.0), encoded(captureless, 4)};
  std::string calls_env = std::string(kExecCallsEnv) + "=";
  for (const Encoder& call : calls) calls_env += to_hex(call.bytes()) + ",";
  calls_env.pop_back();

  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  // Everything the child needs is prepared before fork: it only dup2s and execs.
  const int child_fd = 100;
  const std::string fd_env = std::string(kExecFdEnv) + "=" + std::to_string(child_fd);
  const std::string child_env = std::string(mproc::test::child_main_env) + "=callable_exec_child";
  const char* argv[] = {"callable_test", nullptr};
  std::vector<const char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(calls_env.c_str());
  envp.push_back(fd_env.c_str());
  envp.push_back(child_env.c_str());
  envp.push_back(nullptr);

  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::dup2(fds[1], child_fd) < 0) ::_exit(126);  // the copy is not close-on-exec
    ::execve("/proc/self/exe", const_cast<char* const*>(argv),
             const_cast<char* const*>(envp.data()));
    ::_exit(127);
  }
  ::close(fds[1]);
  const std::string out = read_all_with_deadline(fds[0]);
  ::close(fds[0]);
  const int status = reap(pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  std::vector<std::string> words;
  for (std::size_t pos = 0; pos < out.size();) {
    const auto end = out.find_first_of(" \n", pos);
    if (end == std::string::npos) break;
    words.push_back(out.substr(pos, end - pos));
    pos = end + 1;
  }
  ASSERT_EQ(words.size(), 5u) << out;
  auto decode_as = [&](std::size_t i, auto type) {
    const std::vector<std::byte> bytes = from_hex(words[i]);
    Decoder d(bytes);
    return mproc::decode<decltype(type)>(d);
  };
  EXPECT_EQ(decode_as(0, std::string()), "exec=10.000000");
  EXPECT_EQ(decode_as(1, int()), 42);
  EXPECT_EQ(decode_as(2, double()), 4.0);
  EXPECT_EQ(decode_as(3, int()), 8);
  const std::uintptr_t child_add = std::stoull(words[4]);
  // With ASLR (the default) the child loaded this binary elsewhere: the tokens were relocated.
  // Under `setarch -R` the addresses match, and the test still proves a fresh process.
  RecordProperty("child_load_address_differs",
                 child_add != reinterpret_cast<std::uintptr_t>(&add) ? "yes" : "no");
}

}  // namespace
