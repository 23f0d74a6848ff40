// Tests for shared.hpp: Value<T>, Array<T>, SharedMemory.
//
// Cross-process tests run their other party in an mproc::Process with a function-pointer
// target and handle arguments, so every start method (fork, forkserver, spawn) is exercised.
// Named segments in these tests start with "mproc" (the leak check fails any test that leaves
// one in /dev/shm) and are unlinked by the test.
#include "mproc/shared.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "../src/detail/sys.hpp"  // failure injection (internal)
#include "mproc/process.hpp"
#include "support/start_methods.hpp"

using namespace std::chrono_literals;
using mproc::Array;
using mproc::Process;
using mproc::ProcessOptions;
using mproc::SharedMemory;
using mproc::StartMethod;
using mproc::Value;

namespace {

constexpr auto deadline = 30s;

int join_code(Process& p) {
  return mproc::test::join_within(p, deadline);
}

// A per-test name, so parallel ctest runs never collide.
std::string test_name(const char* what) {
  return "mproc_test_" + std::string(what) + "_" + std::to_string(::getpid());
}

bool name_exists(const std::string& name) {
  return std::filesystem::exists("/dev/shm/" + name);
}

// ---- child targets ------------------------------------------------------------------------

void increment(Value<long> counter, int n) {
  for (int i = 0; i < n; ++i) {
    std::lock_guard guard(counter.get_lock());
    counter.value() += 1;
  }
}

void fill_array(Array<double> arr) {
  for (std::size_t i = 0; i < arr.size(); ++i) arr[i] = static_cast<double>(i) * 0.5;
}

void write_through_name(std::string name) {
  SharedMemory shm = SharedMemory::open(name);
  if (shm.size() != 4096) std::exit(3);
  shm.buf()[0] = std::byte{42};
  shm.buf()[4095] = std::byte{7};
}

void write_through_handle(SharedMemory shm) {
  if (shm.size() != 100) std::exit(3);
  shm.buf()[99] = std::byte{9};
}

class SharedEveryStartMethod : public mproc::test::EveryStartMethod {};

MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(Shared, SharedEveryStartMethod);

// ---- cross-process --------------------------------------------------------------------------

TEST_P(SharedEveryStartMethod, ValueIncrementsUnderItsLockFromFourProcessesAreExact) {
  Value<long> counter(0);
  std::vector<Process> children;
  for (int i = 0; i < 4; ++i) children.emplace_back(opts(), increment, counter, 10'000);
  for (auto& p : children) p.start();
  for (auto& p : children) EXPECT_EQ(join_code(p), 0);
  EXPECT_EQ(counter.value(), 40'000);
}

TEST_P(SharedEveryStartMethod, ArrayWrittenByChildIsVisibleToParent) {
  Array<double> arr(1000);
  Process p(opts(), fill_array, arr);
  p.start();
  EXPECT_EQ(join_code(p), 0);
  for (std::size_t i = 0; i < arr.size(); ++i) {
    ASSERT_EQ(arr[i], static_cast<double>(i) * 0.5) << "element " << i;
  }
}

TEST_P(SharedEveryStartMethod, SharedMemoryOpenedByNameInChildIsTheSameMemory) {
  const std::string name = test_name("by_name");
  SharedMemory shm = SharedMemory::create(name, 4096);
  Process p(opts(), write_through_name, name);
  p.start();
  EXPECT_EQ(join_code(p), 0);
  EXPECT_EQ(shm.buf()[0], std::byte{42});
  EXPECT_EQ(shm.buf()[4095], std::byte{7});
  shm.unlink();
  EXPECT_FALSE(name_exists(name));
}

TEST_P(SharedEveryStartMethod, SharedMemoryHandleReachesChildEvenAfterUnlink) {
  SharedMemory shm = SharedMemory::create(test_name("handle"), 100);
  shm.unlink();  // the descriptor travels, not the name
  Process p(opts(), write_through_handle, shm);
  p.start();
  EXPECT_EQ(join_code(p), 0);
  EXPECT_EQ(shm.buf()[99], std::byte{9});
}

// ---- Value / Array --------------------------------------------------------------------------

TEST(Value, HoldsItsInitialValueAndDefaultsToZero) {
  Value<int> v(10);
  EXPECT_EQ(v.value(), 10);
  v.value() += 1;
  EXPECT_EQ(v.value(), 11);
  Value<double> d;
  EXPECT_EQ(d.value(), 0.0);
  struct Point {
    int x;
    int y;
  };
  Value<Point> p(Point{3, 4});
  EXPECT_EQ(p.value().y, 4);
}

TEST(Value, GetLockReturnsTheSameLockEveryCall) {
  Value<int> v(0);
  EXPECT_EQ(&v.get_lock(), &v.get_lock());
  Value<int> copy = v;
  std::lock_guard guard(v.get_lock());
  EXPECT_TRUE(copy.get_lock().held_by_caller());
  EXPECT_FALSE(copy.get_lock().try_lock());
}

TEST(Value, CopiesShareTheValue) {
  Value<int> v(1);
  Value<int> copy = v;
  copy.value() = 5;
  EXPECT_EQ(v.value(), 5);
}

TEST(Array, IsZeroFilled) {
  Array<double> arr(1000);
  ASSERT_EQ(arr.size(), 1000u);
  for (double x : arr) ASSERT_EQ(x, 0.0);
}

TEST(Array, FromInitializerListAndFromRange) {
  Array<int> a{0, 1, 2, 3};
  EXPECT_EQ(std::vector<int>(a.begin(), a.end()), (std::vector<int>{0, 1, 2, 3}));
  const std::vector<int> v{5, 6, 7};
  Array<int> b(v);
  EXPECT_EQ(std::vector<int>(b.begin(), b.end()), v);
  std::span<int> s = b.span();
  s[0] = 9;
  EXPECT_EQ(b[0], 9);
}

TEST(Array, CopiesShareTheElements) {
  Array<int> a(3);
  Array<int> copy = a;  // a handle copy, not an element-wise clone
  copy[1] = 4;
  EXPECT_EQ(a[1], 4);
}

TEST(Array, AtChecksBounds) {
  Array<int> a(2);
  EXPECT_NO_THROW(a.at(1) = 3);
  EXPECT_THROW(static_cast<void>(a.at(2)), mproc::UsageError);
}

TEST(Array, ImpossibleSizeIsAUsageError) {
  EXPECT_THROW(Array<double>(std::size_t{1} << 62), mproc::UsageError);
}

TEST(Value, DecodingAsAnotherTypeIsASerializationError) {
  Value<int> v(1);
  mproc::Encoder out;
  mproc::encode(out, v);
  std::vector<mproc::detail::UniqueFd> fds;
  for (const int fd : out.fds()) fds.emplace_back(::dup(fd));
  mproc::Decoder in(out.bytes(), fds);
  EXPECT_THROW(static_cast<void>(mproc::decode<Value<double>>(in)), mproc::SerializationError);
}

TEST(Value, FullTmpfsAtCreationIsAnErrorThatSaysHowToFixIt) {
  mproc::detail::sys::inject_failure("fallocate", ENOSPC);
  try {
    Value<int> v(1);
    ADD_FAILURE() << "creation succeeded on a full tmpfs";
  } catch (const mproc::SystemError& e) {
    EXPECT_EQ(e.code().value(), ENOSPC);
    EXPECT_NE(std::string(e.what()).find("--shm-size"), std::string::npos) << e.what();
  }
}

// ---- SharedMemory ---------------------------------------------------------------------------

TEST(SharedMemory, CreateOpenUnlink) {
  const std::string name = test_name("basic");
  SharedMemory shm = SharedMemory::create(name, 5000);
  EXPECT_EQ(shm.name(), name);
  EXPECT_EQ(shm.size(), 5000u);
  EXPECT_EQ(shm.buf().size(), 5000u);
  EXPECT_TRUE(name_exists(name));
  EXPECT_EQ(std::filesystem::status("/dev/shm/" + name).permissions(),
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  shm.buf()[10] = std::byte{1};
  SharedMemory other = SharedMemory::open("/" + name);  // a leading '/' is accepted
  EXPECT_EQ(other.size(), 5000u);
  EXPECT_EQ(other.buf()[10], std::byte{1});
  shm.unlink();
  EXPECT_FALSE(name_exists(name));
  // Mappings outlive the name.
  other.buf()[11] = std::byte{2};
  EXPECT_EQ(shm.buf()[11], std::byte{2});
  shm.close();
  EXPECT_TRUE(shm.buf().empty());
  shm.close();  // idempotent
}

TEST(SharedMemory, CreatingAnExistingNameIsEEXIST) {
  const std::string name = test_name("collide");
  SharedMemory first = SharedMemory::create(name, 64);
  try {
    static_cast<void>(SharedMemory::create(name, 64));
    ADD_FAILURE() << "O_EXCL did not refuse an existing name";
  } catch (const mproc::SystemError& e) {
    EXPECT_EQ(e.code(), std::errc::file_exists);
    EXPECT_NE(std::string(e.what()).find("shm_open"), std::string::npos) << e.what();
  }
  first.unlink();
  EXPECT_FALSE(name_exists(name));
}

TEST(SharedMemory, OpeningOrUnlinkingAMissingNameIsENOENT) {
  const std::string name = test_name("missing");
  try {
    static_cast<void>(SharedMemory::open(name));
    ADD_FAILURE() << "opened a name that does not exist";
  } catch (const mproc::SystemError& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
  SharedMemory shm = SharedMemory::create(name, 64);
  shm.unlink();
  EXPECT_THROW(shm.unlink(), mproc::SystemError);
}

TEST(SharedMemory, BadNamesAndSizesAreUsageErrors) {
  for (const char* bad : {"", "/", "a/b", ".", "..", "has space", "bad\n"}) {
    EXPECT_THROW(static_cast<void>(SharedMemory::create(bad, 64)), mproc::UsageError) << bad;
  }
  EXPECT_THROW(static_cast<void>(SharedMemory::create(std::string(251, 'a'), 64)),
               mproc::UsageError);
  EXPECT_THROW(static_cast<void>(SharedMemory::create(test_name("zero"), 0)), mproc::UsageError);
  EXPECT_FALSE(name_exists(test_name("zero")));
}

TEST(SharedMemory, GeneratedNamesAreUnique) {
  SharedMemory a = SharedMemory::create(64);
  SharedMemory b = SharedMemory::create(64);
  EXPECT_NE(a.name(), b.name());
  EXPECT_EQ(a.name().rfind("mproc_", 0), 0u);
  a.unlink();
  b.unlink();
}

TEST(SharedMemory, FullTmpfsFailsAtCreationLeavingNoName) {
  const std::string name = test_name("full");
  mproc::detail::sys::inject_failure("fallocate", ENOSPC);
  try {
    static_cast<void>(SharedMemory::create(name, 1 << 20));
    ADD_FAILURE() << "creation succeeded on a full tmpfs";
  } catch (const mproc::SystemError& e) {
    EXPECT_EQ(e.code().value(), ENOSPC);
    EXPECT_NE(std::string(e.what()).find("--shm-size"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(name_exists(name));
}

}  // namespace
