// Tests for exceptions crossing a process boundary (include/mproc/detail/remote_exception.hpp,
// register_exception in errors.hpp): every pre-registered type comes back as itself, other
// types as RemoteError, backtraces name the thrower, and malformed records are ProtocolErrors.
#include "mproc/detail/remote_exception.hpp"

#include <gtest/gtest.h>

#include <any>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>
#include <variant>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/errors.hpp"
#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "support/start_methods.hpp"

using namespace std::chrono_literals;
using mproc::detail::decode_exception;
using mproc::detail::encode_exception;
using mproc::detail::kMaxExceptionText;
using mproc::detail::TaskScope;

namespace {

// ---- user types ---------------------------------------------------------------------------

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct CharPointerError : std::exception {
  explicit CharPointerError(const char* text) : text_(text) {}
  const char* what() const noexcept override { return text_.c_str(); }
  std::string text_;
};

struct DefaultOnlyError : std::exception {
  const char* what() const noexcept override { return "default only"; }
};

struct UnregisteredError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct NotAStdException {
  int code = 7;
};

struct NullWhat : std::exception {
  // A broken but possible what(): std::exception::what() is noexcept, so an override cannot
  // throw (the compiler refuses a looser specification, and a throw inside terminates), but
  // it can return null.
  const char* what() const noexcept override { return nullptr; }
};

// ---- helpers -------------------------------------------------------------------------------

std::vector<std::byte> encode(const std::exception_ptr& e) {
  mproc::Encoder out;
  encode_exception(out, e);
  return out.bytes();
}

std::exception_ptr decode(const std::vector<std::byte>& bytes, std::int64_t pid = 1234,
                          std::int64_t task = 7) {
  mproc::Decoder in(bytes);
  std::exception_ptr e = decode_exception(in, pid, task);
  EXPECT_EQ(in.remaining(), 0u) << "decode_exception left bytes unread";
  return e;
}

std::exception_ptr round_trip(const std::exception_ptr& e, std::int64_t pid = 1234,
                              std::int64_t task = 7) {
  return decode(encode(e), pid, task);
}

/// The three texts of an encoded record, read as the wire format in the header describes.
struct Record {
  std::string type_name, message, backtrace;
};
Record parse_record(const std::vector<std::byte>& bytes) {
  std::size_t pos = 2;
  const auto text = [&] {
    std::uint32_t n = 0;
    for (int i = 0; i < 4; ++i)
      n |= std::uint32_t(std::to_integer<unsigned>(bytes.at(pos++))) << (8 * i);
    std::string s(reinterpret_cast<const char*>(bytes.data()) + pos, n);
    pos += n;
    return s;
  };
  Record r;
  r.type_name = text();
  r.message = text();
  r.backtrace = text();
  return r;
}

/// Rethrows `e` and checks it is exactly an E with `what` as what().
template <class E>
void expect_is(const std::exception_ptr& e, const std::string& what) {
  ASSERT_TRUE(e);
  try {
    std::rethrow_exception(e);
  } catch (const E& caught) {
    EXPECT_EQ(typeid(caught), typeid(E)) << "came back as " << typeid(caught).name();
    EXPECT_EQ(std::string(caught.what()), what);
    return;
  } catch (const std::exception& other) {
    ADD_FAILURE() << "expected " << typeid(E).name() << ", got " << typeid(other).name() << ": "
                  << other.what();
    return;
  } catch (...) {
    ADD_FAILURE() << "expected " << typeid(E).name() << ", got a non-std exception";
  }
}

template <class E>
void expect_round_trips(E original) {
  SCOPED_TRACE(mproc::detail::exception_type_name(typeid(E)));
  const std::string what = original.what();
  expect_is<E>(round_trip(std::make_exception_ptr(std::move(original))), what);
}

mproc::RemoteError as_remote(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const mproc::RemoteError& r) {
    return r;
  } catch (const std::exception& other) {
    ADD_FAILURE() << "expected RemoteError, got " << typeid(other).name() << ": " << other.what();
  } catch (...) {
    ADD_FAILURE() << "expected RemoteError, got a non-std exception";
  }
  return mproc::RemoteError("none", "none", -1);
}

volatile int g_sink = 0;

// noipa and the store after the call keep every level a real frame, even at -O3.
[[gnu::noipa]] void throw_from_deep_inside(int depth) {
  if (depth > 0) {
    throw_from_deep_inside(depth - 1);
    g_sink = depth;
    return;
  }
  throw UnregisteredError("bad input");
}

[[gnu::noipa]] int access_out_of_range_here(const std::vector<int>& v) {
  return v.at(v.size() + 3);
}

std::exception_ptr capture(const std::function<void()>& f) {
  try {
    f();
  } catch (...) {
    return std::current_exception();
  }
  ADD_FAILURE() << "nothing was thrown";
  return nullptr;
}

}  // namespace

// ---- registered types ----------------------------------------------------------------------

TEST(RemoteException, StandardStringExceptionsComeBackAsThemselves) {
  expect_round_trips(std::logic_error("logic"));
  expect_round_trips(std::invalid_argument("invalid argument"));
  expect_round_trips(std::domain_error("domain"));
  expect_round_trips(std::length_error("length"));
  expect_round_trips(std::out_of_range("out of range"));
  expect_round_trips(std::runtime_error("runtime"));
  expect_round_trips(std::range_error("range"));
  expect_round_trips(std::overflow_error("overflow"));
  expect_round_trips(std::underflow_error("underflow"));
}

TEST(RemoteException, StandardDefaultConstructibleExceptionsComeBackAsThemselves) {
  expect_round_trips(std::bad_alloc());
  expect_round_trips(std::bad_array_new_length());
  expect_round_trips(std::bad_cast());
  expect_round_trips(std::bad_typeid());
  expect_round_trips(std::bad_function_call());
  expect_round_trips(std::bad_optional_access());
  expect_round_trips(std::bad_variant_access());
  expect_round_trips(std::bad_any_cast());
}

TEST(RemoteException, ExceptionsThrownByTheStandardLibraryComeBackAsThemselves) {
  const std::vector<int> v{1, 2, 3};
  const auto e = capture([&] { static_cast<void>(access_out_of_range_here(v)); });
  std::string what;
  try {
    std::rethrow_exception(e);
  } catch (const std::out_of_range& r) {
    what = r.what();
  }
  expect_is<std::out_of_range>(round_trip(e), what);
  const auto bad_get = capture([] {
    std::variant<int, double> x = 1;
    static_cast<void>(std::get<double>(x));
  });
  EXPECT_THROW(std::rethrow_exception(round_trip(bad_get)), std::bad_variant_access);
}

TEST(RemoteException, MprocErrorsComeBackAsThemselves) {
  expect_round_trips(mproc::Error("error"));
  expect_round_trips(mproc::Cancelled("cancelled"));
  expect_round_trips(mproc::PoolClosed("pool closed"));
  expect_round_trips(mproc::BrokenPool("broken pool"));
  expect_round_trips(mproc::ProtocolError("protocol"));
  expect_round_trips(mproc::SerializationError("serialization"));
  expect_round_trips(mproc::QueueClosed("queue closed"));
  expect_round_trips(mproc::ConnectionClosed("connection closed"));
  expect_round_trips(mproc::AuthenticationError("authentication"));
  expect_round_trips(mproc::TimeoutError("timeout"));
  expect_round_trips(mproc::BrokenBarrier("broken barrier"));
  expect_round_trips(mproc::UsageError("usage"));
}

TEST(RemoteException, RegisteredUserTypesComeBackAsThemselves) {
  mproc::register_exception<ParseError>();
  mproc::register_exception<CharPointerError>();
  mproc::register_exception<DefaultOnlyError>();
  expect_round_trips(ParseError("line 3: unexpected '}'"));
  expect_round_trips(CharPointerError("from a char pointer"));
  expect_round_trips(DefaultOnlyError());
}

TEST(RemoteException, RegisteringTwiceOrFromManyThreadsAtOnceIsFine) {
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([] {
      for (int j = 0; j < 100; ++j) {
        mproc::register_exception<ParseError>();
        mproc::register_exception<std::runtime_error>();
        mproc::register_exception<DefaultOnlyError>();
      }
    });
  }
  for (auto& t : threads) t.join();
  expect_round_trips(ParseError("still itself"));
  expect_round_trips(DefaultOnlyError());
}

TEST(RemoteException, RegisteredTypeDoesNotSwallowOtherTypes) {
  mproc::register_exception<ParseError>();
  const auto r = as_remote(round_trip(std::make_exception_ptr(UnregisteredError("x"))));
  EXPECT_EQ(r.type_name(), "(anonymous namespace)::UnregisteredError");
}

// ---- RemoteError ---------------------------------------------------------------------------

TEST(RemoteException, UnregisteredTypeComesBackAsRemoteErrorWithEveryFact) {
  const auto r =
      as_remote(round_trip(std::make_exception_ptr(UnregisteredError("bad input")), 4321, 17));
  EXPECT_EQ(r.type_name(), "(anonymous namespace)::UnregisteredError");
  EXPECT_EQ(r.message(), "bad input");
  EXPECT_EQ(r.pid(), 4321);
  EXPECT_EQ(r.task_index(), 17);
  const std::string what = r.what();
  EXPECT_NE(what.find("UnregisteredError"), std::string::npos) << what;
  EXPECT_NE(what.find("bad input"), std::string::npos) << what;
  EXPECT_NE(what.find("4321"), std::string::npos) << what;
  EXPECT_NE(what.find("17"), std::string::npos) << what;
}

TEST(RemoteException, ThrownIntComesBackAsRemoteErrorNamedInt) {
  const auto r = as_remote(round_trip(capture([] { throw 42; })));
  EXPECT_EQ(r.type_name(), "int");
  EXPECT_EQ(r.message(), "");
  EXPECT_EQ(r.pid(), 1234);
  EXPECT_EQ(r.task_index(), 7);
}

TEST(RemoteException, NonStdClassComesBackAsRemoteErrorWithItsName) {
  const auto r = as_remote(round_trip(capture([] { throw NotAStdException{}; })));
  EXPECT_EQ(r.type_name(), "(anonymous namespace)::NotAStdException");
  EXPECT_EQ(r.message(), "");
}

TEST(RemoteException, RemoteErrorItselfTravelsAsRemoteError) {
  // A task that called a pool and let its RemoteError escape: the outer caller sees the
  // inner one's what() under the RemoteError type.
  const mproc::RemoteError inner("ValueError", "deep", 99, 2);
  const auto r = as_remote(round_trip(std::make_exception_ptr(inner), 5, 6));
  EXPECT_EQ(r.type_name(), "mproc::RemoteError");
  EXPECT_EQ(r.message(), inner.what());
  EXPECT_EQ(r.pid(), 5);
}

TEST(RemoteException, NullExceptionPtrIsAUsageError) {
  mproc::Encoder out;
  EXPECT_THROW(encode_exception(out, nullptr), mproc::UsageError);
  EXPECT_TRUE(out.bytes().empty());
}

TEST(RemoteException, HugeMessageIsCappedAndStillRoundTrips) {
  std::string huge(3 * kMaxExceptionText, 'm');
  huge.replace(kMaxExceptionText - 4, 2, "\xc3\xa9");  // an 'é' straddling the cut
  const auto bytes = encode(std::make_exception_ptr(std::runtime_error(huge)));
  EXPECT_LT(bytes.size(), 2 * kMaxExceptionText);
  try {
    std::rethrow_exception(decode(bytes));
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_LE(what.size(), kMaxExceptionText);
    EXPECT_GT(what.size(), kMaxExceptionText - 8);
    EXPECT_EQ(what.substr(what.size() - 3), "...");
    EXPECT_EQ(what.find('\xc3'), std::string::npos) << "a UTF-8 sequence was split";
  }
}

TEST(RemoteException, MessageWithNulAndBinaryBytesRoundTripsUpToTheNul) {
  // what() is a C string: everything up to the first NUL travels, byte for byte.
  std::string text = "caf\xc3\xa9 \x01\x7f\xff";
  expect_round_trips(std::runtime_error(text));
  const auto r =
      as_remote(round_trip(std::make_exception_ptr(UnregisteredError(std::string("a\0b", 3)))));
  EXPECT_EQ(r.message(), "a");
}

TEST(RemoteException, WhatReturningNullEncodesAnEmptyMessage) {
  const auto r = as_remote(round_trip(std::make_exception_ptr(NullWhat())));
  EXPECT_EQ(r.type_name(), "(anonymous namespace)::NullWhat");
  EXPECT_EQ(r.message(), "");
}

// ---- backtraces ----------------------------------------------------------------------------

TEST(RemoteException, BacktraceUnderTaskScopeNamesTheThrowingFunctionFirst) {
  std::exception_ptr e;
  {
    TaskScope scope;
    e = capture([] { throw_from_deep_inside(3); });
  }
  const auto r = as_remote(round_trip(e));
  const std::string& bt = r.backtrace();
  ASSERT_FALSE(bt.empty());
  const std::string first_line = bt.substr(0, bt.find('\n'));
  EXPECT_NE(first_line.find("throw_from_deep_inside(int)"), std::string::npos) << bt;
  EXPECT_EQ(first_line.rfind("#0", 0), 0u) << bt;
  // The recursion shows as several frames, and mproc's own throw machinery is not there.
  std::size_t frames_in_thrower = 0;
  for (std::size_t at = bt.find("throw_from_deep_inside"); at != std::string::npos;
       at = bt.find("throw_from_deep_inside", at + 1)) {
    ++frames_in_thrower;
  }
  EXPECT_EQ(frames_in_thrower, 4u) << bt;
  EXPECT_EQ(bt.find("__cxa_throw"), std::string::npos) << bt;
  EXPECT_EQ(bt.find("record_throw"), std::string::npos) << bt;
  EXPECT_NE(bt.find("remote_exception_test+0x"), std::string::npos) << bt;
}

TEST(RemoteException, BacktraceOfAThrowInsideTheStandardLibraryIsCaptured) {
  const std::vector<int> v{1, 2, 3};
  std::exception_ptr e;
  {
    TaskScope scope;
    e = capture([&] { static_cast<void>(access_out_of_range_here(v)); });
  }
  // out_of_range is registered (it comes back without a backtrace); read the record itself.
  const Record record = parse_record(encode(e));
  EXPECT_EQ(record.type_name, "std::out_of_range");
  EXPECT_NE(record.backtrace.find("access_out_of_range_here"), std::string::npos)
      << record.backtrace;
  EXPECT_NE(record.backtrace.find("libstdc++"), std::string::npos) << record.backtrace;
}

TEST(RemoteException, NoBacktraceWithoutTaskScope) {
  const auto e = capture([] { throw_from_deep_inside(1); });
  EXPECT_EQ(as_remote(round_trip(e)).backtrace(), "");
}

TEST(RemoteException, BacktraceIsNeverAttachedToAnotherException) {
  TaskScope scope;
  const auto thrown = capture([] { throw_from_deep_inside(0); });
  // Never thrown: made directly, so no backtrace exists for it.
  const auto made = std::make_exception_ptr(UnregisteredError("made"));
  const auto thrown_int = capture([] { throw 5; });
  EXPECT_FALSE(as_remote(round_trip(thrown)).backtrace().empty());
  EXPECT_EQ(as_remote(round_trip(made)).backtrace(), "");
  EXPECT_FALSE(as_remote(round_trip(thrown_int)).backtrace().empty());
}

TEST(RemoteException, NestedScopesKeepCapturingUntilTheOutermostEnds) {
  TaskScope outer;
  { TaskScope inner; }
  const auto e = capture([] { throw_from_deep_inside(0); });
  EXPECT_NE(as_remote(round_trip(e)).backtrace().find("throw_from_deep_inside"), std::string::npos);
}

TEST(RemoteException, ANewTaskForgetsTheBacktracesOfEarlierTasks) {
  std::exception_ptr earlier;
  {
    TaskScope task1;
    earlier = capture([] { throw_from_deep_inside(0); });
  }
  TaskScope task2;
  EXPECT_EQ(as_remote(round_trip(earlier)).backtrace(), "");
}

TEST(RemoteException, BacktraceIsCapturedOnEveryThreadWithItsOwnScope) {
  std::vector<std::string> traces(4);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < traces.size(); ++i) {
    threads.emplace_back([&traces, i] {
      TaskScope scope;
      for (int j = 0; j < 50; ++j) {
        const auto e = capture([] { throw_from_deep_inside(2); });
        traces[i] = parse_record(encode(e)).backtrace;
        if (traces[i].find("throw_from_deep_inside") == std::string::npos) return;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& bt : traces) EXPECT_NE(bt.find("throw_from_deep_inside"), std::string::npos);
}

// ---- malformed input -----------------------------------------------------------------------

TEST(RemoteException, EveryTruncationRaisesProtocolError) {
  std::exception_ptr e;
  {
    TaskScope scope;
    e = capture([] { throw_from_deep_inside(1); });
  }
  const auto bytes = encode(e);
  ASSERT_GT(bytes.size(), 50u);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + static_cast<long>(n));
    mproc::Decoder in(prefix);
    EXPECT_THROW(decode_exception(in, 1, 1), mproc::ProtocolError) << "prefix of " << n;
  }
}

TEST(RemoteException, RandomByteFlipsNeverCrash) {
  std::exception_ptr e;
  {
    TaskScope scope;
    e = capture([] { throw_from_deep_inside(1); });
  }
  const auto good = encode(e);
  std::mt19937_64 rng(12345);
  int protocol_errors = 0;
  for (int round = 0; round < 3000; ++round) {
    auto bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Favour the header and length fields, where damage matters most.
      const std::size_t at = (rng() % 3 == 0) ? rng() % 16 : rng() % bytes.size();
      bytes[at] ^= static_cast<std::byte>(1u << (rng() % 8));
    }
    mproc::Decoder in(bytes);
    try {
      const auto decoded = decode_exception(in, 1, 1);
      EXPECT_TRUE(decoded);
    } catch (const mproc::ProtocolError&) {
      ++protocol_errors;
    } catch (const std::exception& other) {
      ADD_FAILURE() << "round " << round << ": " << typeid(other).name() << ": " << other.what();
    }
  }
  EXPECT_GT(protocol_errors, 0);
}

TEST(RemoteException, HugeLengthFieldRaisesProtocolErrorWithoutAllocating) {
  auto bytes = encode(std::make_exception_ptr(UnregisteredError("x")));
  for (std::size_t i = 2; i < 6; ++i) bytes[i] = std::byte{0xff};  // type name length 4 GiB-1
  mproc::Decoder in(bytes);
  try {
    static_cast<void>(decode_exception(in, 1, 1));
    ADD_FAILURE() << "decoded";
  } catch (const mproc::ProtocolError& error) {
    EXPECT_NE(std::string(error.what()).find("exceeds"), std::string::npos) << error.what();
  }
}

TEST(RemoteException, BadTagVersionOrEmptyTypeNameRaisesProtocolError) {
  const auto good = encode(std::make_exception_ptr(UnregisteredError("x")));
  auto bad_tag = good;
  bad_tag[0] = std::byte{'Y'};
  auto bad_version = good;
  bad_version[1] = std::byte{2};
  std::vector<std::byte> empty_name{std::byte{'X'}, std::byte{1}, std::byte{0}, std::byte{0},
                                    std::byte{0},   std::byte{0}, std::byte{0}, std::byte{0},
                                    std::byte{0},   std::byte{0}, std::byte{0}, std::byte{0},
                                    std::byte{0},   std::byte{0}};
  for (const auto* bytes : {&bad_tag, &bad_version, &empty_name}) {
    mproc::Decoder in(*bytes);
    EXPECT_THROW(decode_exception(in, 1, 1), mproc::ProtocolError);
  }
}

TEST(RemoteException, EncodingAppendsToWhatIsAlreadyInTheEncoder) {
  mproc::Encoder out;
  mproc::encode(out, std::uint32_t{0xabcd});
  encode_exception(out, std::make_exception_ptr(std::invalid_argument("n < 0")));
  mproc::encode(out, std::uint32_t{0x1234});
  mproc::Decoder in(out.bytes());
  EXPECT_EQ(mproc::decode<std::uint32_t>(in), 0xabcdu);
  expect_is<std::invalid_argument>(decode_exception(in, 1, 1), "n < 0");
  EXPECT_EQ(mproc::decode<std::uint32_t>(in), 0x1234u);
  EXPECT_EQ(in.remaining(), 0u);
}

// ---- across a real process boundary --------------------------------------------------------

TEST(RemoteException, ExceptionsThrownInAForkChildAreRaisedInTheParent) {
  auto [parent, child] = mproc::Pipe();
  mproc::Process p(
      mproc::ProcessOptions{.start = mproc::StartMethod::fork},
      [](mproc::Connection c) {
        const auto send = [&c](const std::exception_ptr& e) {
          mproc::Encoder out;
          encode_exception(out, e);
          c.send_bytes(out.bytes());
        };
        TaskScope scope;
        send(capture([] { throw_from_deep_inside(2); }));
        send(capture([] { throw std::invalid_argument("negative count"); }));
        send(capture([] { throw 42; }));
      },
      child);
  p.start();
  child.close();
  std::vector<std::exception_ptr> received;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(parent.poll(30s)) << "deadlock: nothing from the child";
    const auto bytes = parent.recv_bytes();
    received.push_back(decode(bytes, p.pid(), i));
  }
  EXPECT_EQ(mproc::test::join_within(p), 0);

  const auto first = as_remote(received[0]);
  EXPECT_EQ(first.type_name(), "(anonymous namespace)::UnregisteredError");
  EXPECT_EQ(first.message(), "bad input");
  EXPECT_EQ(first.pid(), p.pid());
  EXPECT_EQ(first.task_index(), 0);
  EXPECT_NE(first.backtrace().find("throw_from_deep_inside(int)"), std::string::npos)
      << first.backtrace();
  expect_is<std::invalid_argument>(received[1], "negative count");
  const auto third = as_remote(received[2]);
  EXPECT_EQ(third.type_name(), "int");
  EXPECT_EQ(third.task_index(), 2);
}
