// Manager: typed proxies, their travel to other processes, remote servers, authentication,
// hostile clients and dead peers.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../src/manager_auth.hpp"    // a raw client that authenticates (internal)
#include "../src/manager_socket.hpp"  // raw sockets to the server (internal)
#include "mproc/manager.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/sync.hpp"
#include "support/child_helpers.hpp"
#include "support/start_methods.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::test::join_within;

// ---- helpers run in other processes ------------------------------------------------------

void add_keys(mproc::Dict<std::string, int> d, int first, int count) {
  for (int i = first; i < first + count; ++i) {
    std::string key = std::to_string(i);
    key.insert(0, 1, 'k');  // not "k" + to_string(i): g++ 12 -O3 warns falsely (-Wrestrict)
    d.set(key, i);
  }
}

int increment(std::optional<int> old) {
  return old.value_or(0) + 1;
}

void increment_many(mproc::Dict<std::string, int> d, int times) {
  for (int i = 0; i < times; ++i) d.update("n", &increment);
}

void locked_increments(mproc::Dict<std::string, int> d, mproc::managed::Lock lock, int times) {
  for (int i = 0; i < times; ++i) {
    const std::lock_guard guard(lock);
    d.set("n", d.get("n").value_or(0) + 1);
  }
}

void produce(mproc::managed::Queue<int> q, int count) {
  for (int i = 0; i < count; ++i) q.put(i);
}

void wait_then_append(mproc::managed::Event ev, mproc::List<std::string> out) {
  ev.wait();
  out.append("after the event");
}

void take_lock_and_die(mproc::managed::Lock lock, mproc::managed::Event taken) {
  lock.lock();
  taken.set();
  ::raise(SIGKILL);
}

struct Counter {
  explicit Counter(int start) : value(start) {}
  int add(int n) { return value += n; }
  int get() const { return value; }
  void reset() { value = 0; }
  int fail(int) { throw std::invalid_argument("Counter refuses"); }
  int value;
};

void add_to_counter(mproc::managed::Object<Counter> c, int times) {
  for (int i = 0; i < times; ++i) c.call<&Counter::add>(1);
}

struct UnregisteredError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- local manager: the objects ------------------------------------------------------------

TEST(ManagerDict, SetGetContainsEraseSize) {
  mproc::Manager m;
  auto d = m.dict<std::string, int>();
  EXPECT_EQ(d.size(), 0u);
  EXPECT_TRUE(d.empty());
  d.set("a", 1);
  d.set("b", 2);
  d.set("a", 3);
  EXPECT_EQ(d.get("a"), 3);
  EXPECT_EQ(d.get("missing"), std::nullopt);
  EXPECT_EQ(d.get("missing", 7), 7);
  EXPECT_EQ(d.get("b", 7), 2);
  EXPECT_TRUE(d.contains("b"));
  EXPECT_FALSE(d.contains("c"));
  EXPECT_EQ(d.size(), 2u);
  EXPECT_TRUE(d.erase("b"));
  EXPECT_FALSE(d.erase("b"));
  EXPECT_EQ(d.size(), 1u);
  d.clear();
  EXPECT_EQ(d.size(), 0u);
}

TEST(ManagerDict, ItemsKeysValuesAreOneSnapshot) {
  mproc::Manager m;
  auto d = m.dict<int, std::vector<double>>();
  for (int i = 0; i < 100; ++i) d.set(i, std::vector<double>(static_cast<std::size_t>(i), 0.5));
  const std::map<int, std::vector<double>> items = d.items();
  ASSERT_EQ(items.size(), 100u);
  for (const auto& [k, v] : items) EXPECT_EQ(v.size(), static_cast<std::size_t>(k));
  EXPECT_EQ(d.to_map(), items);
  EXPECT_EQ(d.keys().size(), 100u);
  EXPECT_EQ(d.values().size(), 100u);
}

TEST(ManagerDict, UpdateRunsInTheServerAtomically) {
  mproc::Manager m;
  auto d = m.dict<std::string, int>();
  EXPECT_EQ(d.update("n", &increment), 1);
  EXPECT_EQ(d.update("n", [](std::optional<int> old) { return *old * 10; }), 10);
  std::vector<mproc::Process> workers;
  for (int i = 0; i < 4; ++i) workers.emplace_back(&increment_many, d, 500);
  for (auto& w : workers) w.start();
  for (auto& w : workers) EXPECT_EQ(join_within(w), 0);
  EXPECT_EQ(d.get("n"), 2010);
}

TEST(ManagerDict, UpdateThatThrowsLeavesTheValueAndRethrows) {
  mproc::Manager m;
  auto d = m.dict<std::string, int>();
  d.set("n", 5);
  EXPECT_THROW(d.update("n", [](std::optional<int>) -> int { throw std::invalid_argument("no"); }),
               std::invalid_argument);
  try {
    d.update("n", [](std::optional<int>) -> int { throw UnregisteredError("custom"); });
    FAIL() << "no exception";
  } catch (const mproc::RemoteError& e) {
    EXPECT_NE(e.type_name().find("UnregisteredError"), std::string::npos);
    EXPECT_EQ(e.message(), "custom");
    EXPECT_EQ(e.pid(), m.pid());
  }
  EXPECT_EQ(d.get("n"), 5);
}

TEST(ManagerList, AppendAtSetPopToVector) {
  mproc::Manager m;
  auto l = m.list<double>();
  EXPECT_TRUE(l.empty());
  l.append(1.5);
  l.append(2.5);
  l.append(3.5);
  EXPECT_EQ(l.size(), 3u);
  EXPECT_EQ(l.at(1), 2.5);
  l.set(1, 9.0);
  EXPECT_EQ(l.to_vector(), (std::vector<double>{1.5, 9.0, 3.5}));
  EXPECT_EQ(l.pop(), 3.5);
  EXPECT_THROW(l.at(2), std::out_of_range);
  EXPECT_THROW(l.set(5, 1.0), std::out_of_range);
  l.clear();
  EXPECT_THROW(l.pop(), std::out_of_range);
}

TEST(ManagerQueue, CrossesProcessesInOrder) {
  mproc::Manager m;
  auto q = m.queue<int>();
  mproc::Process p(&produce, q, 1000);
  p.start();
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(q.get(), i);
  EXPECT_EQ(join_within(p), 0);
  EXPECT_EQ(q.try_get(), std::nullopt);
  EXPECT_TRUE(q.empty());
}

TEST(ManagerQueue, TimeoutsAndMaxsize) {
  mproc::Manager m;
  auto q = m.queue<std::string>(2);
  EXPECT_EQ(q.get_for(30ms), std::nullopt);
  q.put("a");
  EXPECT_TRUE(q.put_for("b", 10ms));
  EXPECT_FALSE(q.put_for("c", 30ms));  // full
  EXPECT_EQ(q.qsize(), 2u);
  EXPECT_EQ(q.get(), "a");
  EXPECT_EQ(q.get_for(1s), "b");
}

TEST(ManagerQueue, BlockedGetBlocksOnlyItsOwnThread) {
  mproc::Manager m;
  auto q = m.queue<int>();
  auto d = m.dict<int, int>();
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    EXPECT_EQ(q.get(), 42);
    got = true;
  });
  for (int i = 0; i < 100; ++i) d.set(i, i);  // runs while the other thread waits in the server
  EXPECT_FALSE(got.load());
  EXPECT_EQ(d.size(), 100u);
  q.put(42);
  waiter.join();
  EXPECT_TRUE(got.load());
}

TEST(ManagerLock, MutualExclusionAcrossFourProcesses) {
  mproc::Manager m;
  auto d = m.dict<std::string, int>();
  auto lock = m.lock();
  std::vector<mproc::Process> workers;
  for (int i = 0; i < 4; ++i) workers.emplace_back(&locked_increments, d, lock, 10000);
  for (auto& w : workers) w.start();
  for (auto& w : workers) EXPECT_EQ(join_within(w, std::chrono::seconds(100)), 0);
  EXPECT_EQ(d.get("n"), 40000);
}

TEST(ManagerLock, OwnershipRules) {
  mproc::Manager m;
  auto lock = m.lock();
  EXPECT_THROW(lock.unlock(), mproc::UsageError);
  lock.lock();
  EXPECT_TRUE(lock.locked());
  EXPECT_THROW(lock.lock(), mproc::UsageError);  // not recursive
  EXPECT_FALSE(lock.try_lock());
  std::thread other([&] {
    EXPECT_FALSE(lock.try_lock_for(20ms));
    EXPECT_THROW(lock.unlock(), mproc::UsageError);  // held by another thread
  });
  other.join();
  lock.unlock();
  EXPECT_FALSE(lock.locked());
  EXPECT_TRUE(lock.try_lock());
  lock.unlock();
}

TEST(ManagerLock, AHolderThatDiesReleasesTheLock) {
  mproc::Manager m;
  auto lock = m.lock();
  auto taken = m.event();
  mproc::Process p(&take_lock_and_die, lock, taken);
  p.start();
  taken.wait();
  EXPECT_EQ(join_within(p), -SIGKILL);
  EXPECT_TRUE(lock.try_lock_for(5s));
  lock.unlock();
}

TEST(ManagerLock, AThreadThatEndsReleasesTheLock) {
  mproc::Manager m;
  auto lock = m.lock();
  std::thread([&] { lock.lock(); }).join();
  EXPECT_TRUE(lock.try_lock_for(5s));
  lock.unlock();
}

TEST(ManagerEvent, SetClearWaitAcrossProcesses) {
  mproc::Manager m;
  auto ev = m.event();
  auto out = m.list<std::string>();
  EXPECT_FALSE(ev.is_set());
  EXPECT_FALSE(ev.wait_for(20ms));
  mproc::Process p(&wait_then_append, ev, out);
  p.start();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(out.size(), 0u);
  ev.set();
  EXPECT_EQ(join_within(p), 0);
  EXPECT_EQ(out.to_vector(), std::vector<std::string>{"after the event"});
  EXPECT_TRUE(ev.is_set());
  ev.clear();
  EXPECT_FALSE(ev.is_set());
}

// Regression, found by fuzz/manager_protocol.cpp (input
// fuzz/corpus/manager_protocol/regression-timeout-overflows-deadline): the server computed
// now() + timeout, which overflowed for the longest timeouts (undefined behaviour; in practice
// a deadline in the past, so the wait returned false at once).
TEST(ManagerEvent, LongestTimeoutWaitsForTheEvent) {
  mproc::Manager m;
  auto ev = m.event();
  std::thread setter([ev]() mutable {
    std::this_thread::sleep_for(100ms);
    ev.set();
  });
  EXPECT_TRUE(ev.wait_for(std::chrono::nanoseconds::max()));
  setter.join();
}

TEST(ManagerObject, UserTypeWithMethods) {
  mproc::Manager m;
  auto c = m.make<Counter>(10);
  EXPECT_EQ(c.call<&Counter::add>(5), 15);
  EXPECT_EQ(c.call<&Counter::get>(), 15);
  c.call<&Counter::reset>();
  EXPECT_EQ(c.apply([](Counter& self, int k) { return self.value + k; }, 3), 3);
  EXPECT_THROW(c.call<&Counter::fail>(1), std::invalid_argument);
  std::vector<mproc::Process> workers;
  for (int i = 0; i < 3; ++i) workers.emplace_back(&add_to_counter, c, 200);
  for (auto& w : workers) w.start();
  for (auto& w : workers) EXPECT_EQ(join_within(w), 0);
  EXPECT_EQ(c.call<&Counter::get>(), 600);
}

TEST(ManagerNamed, SameNameSameObjectOtherTypesRefused) {
  mproc::Manager m;
  auto a = m.dict<std::string, int>("inventory");
  a.set("apples", 3);
  auto b = m.dict<std::string, int>("inventory");
  EXPECT_EQ(b.get("apples"), 3);
  EXPECT_TRUE(a == b);
  EXPECT_THROW((m.dict<std::string, double>("inventory")), mproc::SerializationError);
  EXPECT_THROW(m.list<int>("inventory"), mproc::SerializationError);
  auto c1 = m.object<Counter>("counter", 1);
  auto c2 = m.object<Counter>("counter", 100);  // exists: not constructed again
  EXPECT_EQ(c2.call<&Counter::get>(), 1);
  EXPECT_EQ(m.stats().objects, 2u);
}

TEST(ManagerProxies, NestInOtherObjects) {
  mproc::Manager m;
  auto lists = m.dict<std::string, mproc::List<int>>();
  auto l = m.list<int>();
  l.append(7);
  lists.set("sevens", l);
  auto back = lists.get("sevens");
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(*back == l);
  EXPECT_EQ(back->at(0), 7);
}

TEST(ManagerProxies, DescriptorHandlesCannotBeStored) {
  mproc::Manager m;
  auto d = m.dict<int, mproc::Lock>();
  EXPECT_THROW(d.set(1, mproc::Lock()), mproc::UsageError);
}

TEST(ManagerProxies, EmptyProxyIsAUsageError) {
  mproc::Dict<int, int> d;
  EXPECT_FALSE(d);
  EXPECT_THROW(d.size(), mproc::UsageError);
}

TEST(ManagerProxies, WrongProxyTypeOnDecodeIsSerializationError) {
  mproc::Manager m;
  auto d = m.dict<std::string, int>();
  mproc::Encoder out;
  mproc::encode(out, d);
  mproc::Decoder in(out.bytes());
  EXPECT_THROW((mproc::decode<mproc::Dict<std::string, double>>(in)), mproc::SerializationError);
}

TEST(ManagerProxies, TravelToPoolTasks) {
  mproc::Manager m;
  auto d = m.dict<std::string, int>();
  mproc::Pool pool(mproc::PoolOptions{.processes = 2});
  std::vector<mproc::Future<void>> done;
  for (int i = 0; i < 4; ++i) done.push_back(pool.apply_async(&add_keys, d, i * 25, 25));
  for (auto& f : done) f.get();
  EXPECT_EQ(d.size(), 100u);
}

class ManagerStart : public mproc::test::EveryStartMethod {};

TEST_P(ManagerStart, ServerAndChildrenUnderEveryStartMethod) {
  mproc::Manager m(mproc::ManagerOptions{.start = GetParam()});
  auto d = m.dict<std::string, int>();
  mproc::Process p(opts(), &add_keys, d, 0, 50);
  p.start();
  EXPECT_EQ(join_within(p), 0);
  EXPECT_EQ(d.size(), 50u);
  EXPECT_EQ(d.get("k49"), 49);
}

MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(Manager, ManagerStart);

// ---- lifetime ------------------------------------------------------------------------------

TEST(ManagerLifetime, ShutdownIsIdempotentAndProxiesThenRaise) {
  mproc::Manager m;
  auto d = m.dict<std::string, int>();
  d.set("a", 1);
  const int server = m.pid();
  EXPECT_TRUE(mproc::test::pid_running(server));
  m.shutdown();
  m.shutdown();
  EXPECT_TRUE(mproc::test::wait_gone(server));
  try {
    d.get("a");
    FAIL() << "no exception";
  } catch (const mproc::ConnectionClosed& e) {
    EXPECT_NE(std::string(e.what()).find("shut down"), std::string::npos) << e.what();
  }
  EXPECT_THROW(d.set("b", 2), mproc::Error);
}

TEST(ManagerLifetime, DestructorStopsTheServer) {
  int server = 0;
  {
    mproc::Manager m;
    server = m.pid();
    m.dict<int, int>().set(1, 1);
  }
  EXPECT_TRUE(mproc::test::wait_gone(server, 1s));
}

TEST(ManagerLifetime, ServerKilledProxiesFailPromptly) {
  mproc::Manager m;
  auto d = m.dict<std::string, int>();
  d.set("a", 1);
  ASSERT_EQ(::kill(m.pid(), SIGKILL), 0);
  ASSERT_TRUE(mproc::test::wait_gone(m.pid()));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(d.get("a"), mproc::ConnectionClosed);  // the open connection sees EOF
  EXPECT_THROW(d.get("a"), mproc::ConnectionClosed);  // a new one is refused
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  m.shutdown();  // no throw, reaps the server
}

TEST(ManagerLifetime, ServerDiesWithItsOwner) {
  // The owner is a raw fork child that makes a Manager and is then SIGKILLed.
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t owner = ::fork();
  if (owner == 0) {
    ::close(pipefd[0]);
    mproc::Manager m;
    const int server = m.pid();
    static_cast<void>(::write(pipefd[1], &server, sizeof server));
    ::pause();
    ::_exit(0);
  }
  ::close(pipefd[1]);
  int server = 0;
  ASSERT_EQ(::read(pipefd[0], &server, sizeof server), static_cast<ssize_t>(sizeof server));
  ::close(pipefd[0]);
  EXPECT_TRUE(mproc::test::pid_running(server));
  ::kill(owner, SIGKILL);
  int status = 0;
  ::waitpid(owner, &status, 0);
  EXPECT_TRUE(mproc::test::wait_gone(server));
}

TEST(ManagerLifetime, ForkChildUsesItsOwnConnection) {
  mproc::Manager m;
  auto d = m.dict<int, int>();
  d.set(0, 0);  // this thread now has a connection; the child must not share it
  const int rc = mproc::test::in_forked_child([&] {
    for (int i = 1; i <= 100; ++i) d.set(i, i);
    return d.size() == 101 ? 0 : 1;
  });
  EXPECT_EQ(rc, 0);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(d.get(i), i);
}

namespace mm = mproc::detail::manager;

// ---- remote: serve / connect ---------------------------------------------------------------

int remote_client_sets_key(std::string address, std::string key) {
  auto remote = mproc::Manager::connect(address, key);
  remote.dict<std::string, int>("inventory").set("pears", 5);
  return 0;
}

void remote_client(std::string address, std::string key) {
  static_cast<void>(remote_client_sets_key(std::move(address), std::move(key)));
}

TEST(ManagerRemote, TcpServeAndConnectFromAnotherProcess) {
  const std::string key = "correct horse battery staple";
  auto srv = mproc::Manager::serve("127.0.0.1:0", key);
  const std::string where = srv.address();
  EXPECT_TRUE(where.starts_with("127.0.0.1:")) << where;
  EXPECT_NE(where, "127.0.0.1:0");
  mproc::Process p(mproc::ProcessOptions{.start = mproc::StartMethod::spawn}, &remote_client, where,
                   key);
  p.start();
  EXPECT_EQ(join_within(p), 0);
  auto remote = mproc::Manager::connect(where, key);
  EXPECT_EQ((remote.dict<std::string, int>("inventory").get("pears")), 5);
  EXPECT_EQ(remote.pid(), 0);
  remote.shutdown();  // disconnects this process only
  EXPECT_EQ((srv.dict<std::string, int>("inventory").get("pears")), 5);
}

TEST(ManagerRemote, WrongAuthkeyIsRejectedAndTheServerCarriesOn) {
  auto srv = mproc::Manager::serve("127.0.0.1:0", "right key");
  EXPECT_THROW(mproc::Manager::connect(srv.address(), "wrong key"), mproc::AuthenticationError);
  auto d = srv.dict<int, int>();
  d.set(1, 1);
  EXPECT_EQ(mproc::Manager::connect(srv.address(), "right key").stats().objects, 1u);
}

TEST(ManagerRemote, UnixSocketFileIsRemovedAtShutdown) {
  const std::string path = "/tmp/mproc-manager-test-" + std::to_string(::getpid()) + ".sock";
  {
    auto srv = mproc::Manager::serve("unix:" + path, "k");
    EXPECT_TRUE(std::filesystem::exists(path));
    auto remote = mproc::Manager::connect("unix:" + path, "k");
    remote.list<int>("l").append(1);
    EXPECT_EQ(srv.list<int>("l").size(), 1u);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ManagerRemote, ServeForeverRunsUntilSigtermAndRefusesRemoteShutdown) {
  const std::string address = "@mproc-serve-forever-test-" + std::to_string(::getpid());
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t server = ::fork();
  if (server == 0) {
    ::close(ready[0]);
    int code = 0;
    try {
      mproc::Manager::serve_forever(address, "k", [&](const std::string&) {
        const char byte = 1;
        static_cast<void>(::write(ready[1], &byte, 1));
      });
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  {
    auto client = mproc::Manager::connect(address, "k");
    client.dict<std::string, int>("d").set("a", 1);
    EXPECT_EQ((client.dict<std::string, int>("d").get("a")), 1);
    // A standalone server is not stopped by its clients.
    mm::Request request(mm::Op::shutdown, 0);
    EXPECT_THROW(request.send(*mm::endpoint_for(address, "k")), mproc::UsageError);
    EXPECT_EQ(client.stats().objects, 1u);
  }
  ASSERT_EQ(::kill(server, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(server, &status, 0), server);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_THROW(mproc::Manager::connect(address, "k"), mproc::ConnectionClosed);
}

TEST(ManagerRemote, BadArguments) {
  EXPECT_THROW(mproc::Manager::serve("no-port", "k"), mproc::UsageError);
  EXPECT_THROW(mproc::Manager::serve("127.0.0.1:99999", "k"), mproc::UsageError);
  EXPECT_THROW(mproc::Manager::serve("127.0.0.1:0", ""), mproc::UsageError);
  EXPECT_THROW(mproc::Manager::connect("@mproc-nobody-listens-here", "k"), mproc::ConnectionClosed);
  auto srv = mproc::Manager::serve("127.0.0.1:0", "k");
  // The port is taken now.
  EXPECT_THROW(mproc::Manager::serve(srv.address(), "k"), mproc::SystemError);
}

// ---- hostile and dying clients ---------------------------------------------------------------

mproc::detail::UniqueFd raw_connection(const mproc::Manager& m, bool authenticate) {
  auto fd = mm::connect_to(mm::Address::parse(m.address()), m.address(), 5s);
  if (authenticate) mm::authenticate_to_server(fd.get(), m.authkey(), 5s);
  return fd;
}

/// Waits until the server reports `n` connections (threads end asynchronously).
bool connections_become(const mproc::Manager& m, std::size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (m.stats().connections == n) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

void send_raw(int fd, const void* data, std::size_t n) {
  ASSERT_EQ(::send(fd, data, n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
}

bool closed_by_peer(int fd) {
  char buf[256];
  for (;;) {
    const ssize_t rc = ::recv(fd, buf, sizeof buf, 0);
    if (rc == 0) return true;
    if (rc < 0) return errno == ECONNRESET;
  }
}

TEST(ManagerHostile, GarbageBeforeAuthentication) {
  mproc::Manager m;
  auto d = m.dict<int, int>();
  d.set(1, 1);
  auto fd = raw_connection(m, false);
  std::vector<unsigned char> junk(64);
  for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<unsigned char>(i * 37 + 11);
  send_raw(fd.get(), junk.data(), junk.size());
  EXPECT_TRUE(closed_by_peer(fd.get()));
  EXPECT_EQ(d.get(1), 1);
  EXPECT_TRUE(connections_become(m, 1));
}

TEST(ManagerHostile, SilentClientDoesNotStallOthers) {
  mproc::Manager m;
  auto d = m.dict<int, int>();
  auto silent = raw_connection(m, false);  // connects, never answers the challenge
  for (int i = 0; i < 100; ++i) d.set(i, i);
  EXPECT_EQ(d.size(), 100u);
}

TEST(ManagerHostile, GarbageAfterAuthenticationGetsAnErrorReply) {
  mproc::Manager m;
  auto fd = raw_connection(m, true);
  // A well-framed request with an unknown op: an error reply, the connection stays.
  unsigned char frame[8 + 9] = {9, 0, 0, 0, 0, 0, 0, 0, 0xee};
  send_raw(fd.get(), frame, sizeof frame);
  unsigned char header[9];
  ASSERT_EQ(::recv(fd.get(), header, sizeof header, MSG_WAITALL), 9);
  EXPECT_EQ(header[8], 1);  // Status::error
  EXPECT_EQ(m.stats().connections, 2u);
}

TEST(ManagerHostile, RandomRequestsAfterAuthenticationNeverHurtTheServer) {
  mproc::Manager m;
  auto d = m.dict<int, int>();
  d.set(1, 1);
  auto c = m.make<Counter>(1);
  std::uint64_t seed = 0x9e3779b97f4a7c15ull;
  auto next = [&seed] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  for (int round = 0; round < 20; ++round) {
    auto fd = raw_connection(m, true);
    for (int i = 0; i < 50; ++i) {
      // op: a real one most of the time; object: 0, a real id (1..2) or junk.
      std::vector<unsigned char> frame(8 + 1 + 8 + (next() % 64));
      for (std::size_t k = 8; k < frame.size(); ++k) frame[k] = static_cast<unsigned char>(next());
      const unsigned char ops[] = {1, 3, 4, 10, 11, 14, 15, 16, 20, 21, 30, 40, 41, 60, 99};
      frame[8] = ops[next() % sizeof ops];
      const std::uint64_t object = next() % 4;
      for (int b = 0; b < 8; ++b) frame[9 + b] = static_cast<unsigned char>(object >> (8 * b));
      const std::uint64_t length = frame.size() - 8;
      for (int b = 0; b < 8; ++b) frame[b] = static_cast<unsigned char>(length >> (8 * b));
      if (frame[8] == 30 || frame[8] == 40) break;  // may block (queue/lock waits): not here
      if (::send(fd.get(), frame.data(), frame.size(), MSG_NOSIGNAL) < 0) break;
      unsigned char header[9];
      if (::recv(fd.get(), header, sizeof header, MSG_WAITALL) != 9) break;  // dropped
      std::uint64_t body = 0;
      for (int b = 7; b >= 0; --b) body = (body << 8) | header[b];
      std::vector<unsigned char> rest(body - 1);
      if (!rest.empty() && ::recv(fd.get(), rest.data(), rest.size(), MSG_WAITALL) !=
                               static_cast<ssize_t>(rest.size())) {
        break;
      }
    }
  }
  EXPECT_EQ(d.get(1), 1);
  EXPECT_EQ(c.call<&Counter::get>(), 1);
  EXPECT_TRUE(connections_become(m, 1));
}

TEST(ManagerHostile, HugeLengthPrefixDropsOnlyThatClient) {
  mproc::Manager m;
  auto d = m.dict<int, int>();
  d.set(1, 1);
  auto fd = raw_connection(m, true);
  const std::uint64_t ten_gib = 10ull << 30;
  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(ten_gib >> (8 * i));
  send_raw(fd.get(), prefix, sizeof prefix);
  EXPECT_TRUE(closed_by_peer(fd.get()));
  EXPECT_EQ(d.get(1), 1);
  EXPECT_TRUE(connections_become(m, 1));
}

TEST(ManagerHostile, TruncatedFrameThenCloseLeavesNoState) {
  mproc::Manager m;
  auto d = m.dict<int, int>();
  d.set(1, 1);
  {
    auto fd = raw_connection(m, true);
    unsigned char partial[8 + 4] = {100, 0, 0, 0, 0, 0, 0, 0, 10, 1, 0, 0};
    send_raw(fd.get(), partial, sizeof partial);
    EXPECT_TRUE(connections_become(m, 2));
  }
  EXPECT_TRUE(connections_become(m, 1));
  EXPECT_EQ(d.get(1), 1);
}

TEST(ManagerHostile, ClientKilledMidRequest) {
  mproc::Manager m;
  auto d = m.dict<int, int>();
  d.set(1, 1);
  const int rc = mproc::test::in_forked_child([&] {
    auto fd = raw_connection(m, true);
    unsigned char partial[8 + 4] = {100, 0, 0, 0, 0, 0, 0, 0, 10, 1, 0, 0};
    static_cast<void>(::send(fd.get(), partial, sizeof partial, MSG_NOSIGNAL));
    ::raise(SIGKILL);
    return 0;
  });
  EXPECT_EQ(rc, -SIGKILL);
  EXPECT_TRUE(connections_become(m, 1));
  EXPECT_EQ(d.get(1), 1);
}

TEST(ManagerHostile, ClientKilledWhileHoldingALockAndWaiting) {
  mproc::Manager m;
  auto lock = m.lock();
  auto q = m.queue<int>();
  const pid_t child = ::fork();
  if (child == 0) {
    try {
      lock.lock();
      static_cast<void>(q.get());  // waits in the server until killed
    } catch (...) {
    }
    ::_exit(3);
  }
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!lock.locked() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(lock.locked());
  std::this_thread::sleep_for(20ms);  // let the child reach q.get()
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(lock.try_lock_for(5s));
  lock.unlock();
  q.put(1);
  EXPECT_EQ(q.get(), 1);  // the dead waiter took nothing
  EXPECT_TRUE(connections_become(m, 1));
}

}  // namespace
