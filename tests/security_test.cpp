// The claims of docs/security.md that no other test file checks: who can reach mproc's IPC
// objects, and what the Manager's handshake proves and never reveals. (That nothing is left in
// /dev/shm or /tmp is the leak check's job, around every test: tests/support/leak_check.cpp.
// Whole directories cannot be compared here, other tests run at the same time.)
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../src/manager_auth.hpp"    // both ends of the handshake, driven by hand (internal)
#include "../src/manager_socket.hpp"  // raw connections to a server (internal)
#include "mproc/manager.hpp"
#include "mproc/pool.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared.hpp"
#include "mproc/sync.hpp"
#include "support/child_helpers.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace mm = mproc::detail::manager;

/// What each open descriptor of this process refers to (readlink of /proc/self/fd/N).
std::map<int, std::string> open_descriptors() {
  std::map<int, std::string> out;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(e.path().filename());
    std::error_code ec;
    const fs::path target = fs::read_symlink(e.path(), ec);
    // Skip the descriptor of the directory being listed.
    if (!ec && !target.string().starts_with("/proc/")) out[fd] = target.string();
  }
  return out;
}

/// Descriptors opened since `before`.
std::vector<std::string> opened_since(const std::map<int, std::string>& before) {
  std::vector<std::string> out;
  for (const auto& [fd, target] : open_descriptors()) {
    auto it = before.find(fd);
    if (it == before.end() || it->second != target) out.push_back(target);
  }
  return out;
}

/// A descriptor that names nothing another process could open by a path: memfds, sockets,
/// pipes and anonymous inodes (pidfd, eventfd).
bool is_nameless(const std::string& target) {
  return target.starts_with("/memfd:") || target.starts_with("socket:[") ||
         target.starts_with("pipe:[") || target.starts_with("anon_inode:");
}

}  // namespace

TEST(Security, SharedObjectsAreMemfdsWithNoNameInTheFilesystem) {
  const auto fds_before = open_descriptors();
  {
    mproc::Value<long> value(1);
    mproc::Array<int> array(1000);
    mproc::Queue<std::string> queue;
    mproc::Lock lock;
    mproc::Event event;
    mproc::Barrier barrier(2);
    queue.put(std::string(100000, 'x'));  // a large item, through the queue's side channel
    EXPECT_EQ(queue.get().size(), 100000u);
    const auto opened = opened_since(fds_before);
    EXPECT_FALSE(opened.empty());
    for (const auto& target : opened) {
      EXPECT_TRUE(target.starts_with("/memfd:")) << "an anonymous object opened " << target;
    }
  }
}

TEST(Security, PoolChannelsAndSegmentsHaveNoNameAnyoneCouldOpen) {
  const auto fds_before = open_descriptors();
  {
    mproc::Pool pool(2);
    const auto squares = pool.map([](int x) { return x * x; }, std::views::iota(0, 1000));
    ASSERT_EQ(squares.size(), 1000u);
    EXPECT_EQ(squares[999], 999 * 999);
    for (const auto& target : opened_since(fds_before)) {
      EXPECT_TRUE(is_nameless(target)) << "the pool opened " << target;
    }
  }
}

TEST(Security, ManagerUnixSocketFileIsOwnerOnly) {
  const fs::path dir = fs::temp_directory_path() / ("security-test-" + std::to_string(::getpid()));
  fs::create_directory(dir);
  const fs::path socket = dir / "manager.sock";
  {
    auto server = mproc::Manager::serve("unix:" + socket.string(), "a key");
    EXPECT_EQ(fs::status(socket).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write);
  }
  EXPECT_FALSE(fs::exists(socket));
  fs::remove(dir);
}

TEST(Security, LocalManagerRefusesAnotherUserEvenWithTheKey) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  mproc::Manager m;
  auto d = m.dict<int, int>();
  d.set(1, 1);
  const std::string address = m.address();
  const std::string key = m.authkey();
  // The other user knows the address and even the key: the peer-credential check refuses
  // it before the handshake starts.
  const int rc = mproc::test::in_forked_child([&] {
    const uid_t nobody = 65534;
    if (::setgroups(0, nullptr) != 0 || ::setgid(nobody) != 0 || ::setuid(nobody) != 0) return 2;
    try {
      auto fd = mm::connect_to(mm::Address::parse(address), address, 5s);
      mm::authenticate_to_server(fd.get(), key, 5s);
    } catch (const mproc::Error&) {
      return 0;  // refused
    }
    return 1;  // let in
  });
  EXPECT_EQ(rc, 0);
  // The same user with the key is let in.
  auto client = mproc::Manager::connect(address, key);
  EXPECT_EQ((client.dict<int, int>("security").size()), 0u);
  EXPECT_EQ(d.get(1), 1);
}

namespace {

/// Plays a server that does not know the key against the real client side on a socketpair.
/// Returns what the client sent, and whether the client refused the server.
struct FakeServerOutcome {
  std::vector<unsigned char> client_bytes;
  bool client_refused = false;
};

FakeServerOutcome fake_server_handshake(const std::string& key) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  mproc::detail::UniqueFd client(sv[0]), server(sv[1]);
  FakeServerOutcome outcome;
  std::thread client_side([&] {
    try {
      mm::authenticate_to_server(client.get(), key, 5s);
    } catch (const mproc::AuthenticationError&) {
      outcome.client_refused = true;
    }
  });
  std::array<unsigned char, 8 + 32> greeting{};
  std::memcpy(greeting.data(), "MPROCMG1", 8);
  for (std::size_t i = 8; i < greeting.size(); ++i) greeting[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(::send(server.get(), greeting.data(), greeting.size(), MSG_NOSIGNAL), 40);
  outcome.client_bytes.resize(64);  // the client's proof and its own nonce
  EXPECT_EQ(::recv(server.get(), outcome.client_bytes.data(), 64, MSG_WAITALL), 64);
  // "Accepted", with a proof the fake cannot compute: 32 bytes of guesswork.
  std::array<unsigned char, 33> reply{};
  reply[0] = 1;
  EXPECT_EQ(::send(server.get(), reply.data(), reply.size(), MSG_NOSIGNAL), 33);
  client_side.join();
  return outcome;
}

}  // namespace

TEST(Security, ClientRefusesAServerThatCannotProveTheKey) {
  EXPECT_TRUE(fake_server_handshake("the shared secret").client_refused);
}

TEST(Security, TheKeyNeverCrossesTheWire) {
  const std::string key = "correct horse battery staple";
  const auto outcome = fake_server_handshake(key);
  const std::string sent(outcome.client_bytes.begin(), outcome.client_bytes.end());
  EXPECT_EQ(sent.find(key), std::string::npos);
  EXPECT_EQ(sent.find(key.substr(0, 8)), std::string::npos);
}

namespace {

struct Tally {
  int n = 0;
  void add(int k) { n += k; }
  int get() const { return n; }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(n);
  }
};

}  // namespace

TEST(Security, AnAuthenticatedClientCannotMakeTheServerRunOtherCode) {
  mproc::Manager m;
  auto tally = m.make<Tally>();
  tally.call<&Tally::add>(5);
  auto fd = mm::connect_to(mm::Address::parse(m.address()), m.address(), 5s);
  mm::authenticate_to_server(fd.get(), m.authkey(), 5s);
  // object_call on every object id with call bytes that name no registered trampoline (all
  // 0x41, and a valid-looking header over random offsets): an error reply every time.
  for (std::uint64_t object = 0; object < 4; ++object) {
    for (int variant = 0; variant < 8; ++variant) {
      std::vector<unsigned char> frame(8 + 1 + 8 + 96, 0x41);
      for (std::size_t k = 17; k < frame.size(); k += 7) {
        frame[k] = static_cast<unsigned char>(variant * 31 + k);
      }
      frame[8] = 60;  // Op::object_call
      for (int b = 0; b < 8; ++b) frame[9 + b] = static_cast<unsigned char>(object >> (8 * b));
      const std::uint64_t length = frame.size() - 8;
      for (int b = 0; b < 8; ++b) frame[b] = static_cast<unsigned char>(length >> (8 * b));
      ASSERT_EQ(::send(fd.get(), frame.data(), frame.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(frame.size()));
      unsigned char header[9];
      ASSERT_EQ(::recv(fd.get(), header, sizeof header, MSG_WAITALL), 9);
      EXPECT_EQ(header[8], 1) << "object " << object << " variant " << variant;  // error
      std::uint64_t body = 0;
      for (int b = 7; b >= 0; --b) body = (body << 8) | header[b];
      std::vector<unsigned char> rest(body - 1);
      if (!rest.empty()) {
        ASSERT_EQ(::recv(fd.get(), rest.data(), rest.size(), MSG_WAITALL),
                  static_cast<ssize_t>(rest.size()));
      }
    }
  }
  EXPECT_EQ(tally.call<&Tally::get>(), 5);
}

namespace {

int add_one(std::optional<int> old) {
  return old.value_or(0) + 1;
}

/// A dict_update request naming the function pointer `fn`, built by hand: what a client that
/// skips the proxy's own check would send.
void send_pointer_update(const std::string& address, const std::string& key, std::uint64_t dict,
                         int (*fn)(std::optional<int>)) {
  mproc::detail::manager::Request r(mm::Op::dict_update, dict);
  r.put_sized_value(std::string("n"));
  mm::write_manager_call<mm::DictUpdateEntry<int (*)(std::optional<int>), int>>(r.out(), fn);
  mm::Reply(r.send(*mm::endpoint_for(address, key))).value<int>();
}

}  // namespace

TEST(Security, ATcpManagerRunsNoFunctionPointerAClientNames) {
  auto server = mproc::Manager::serve("127.0.0.1:0", "k");
  auto d = server.dict<std::string, int>("d");
  // The proxy refuses before sending, and says what to write instead...
  EXPECT_THROW(d.update("n", &add_one), mproc::UsageError);
  EXPECT_EQ(d.update("n", [](std::optional<int> old) { return add_one(old); }), 1);
  // ...and the server refuses such a request from a client that skips that check: the
  // pointer's target is the client's choice, any function of the server with that signature.
  EXPECT_THROW(send_pointer_update(server.address(), "k", d.object_ref().id, &add_one),
               mproc::ProtocolError);
  EXPECT_EQ(d.get("n"), 1);
}

TEST(Security, AManagerOnAUnixSocketRunsFunctionPointersOfItsOwnUser) {
  mproc::Manager m;  // abstract Unix socket: peers are checked to be this user
  auto d = m.dict<std::string, int>();
  EXPECT_EQ(d.update("n", &add_one), 1);
  send_pointer_update(m.address(), m.authkey(), d.object_ref().id, &add_one);
  EXPECT_EQ(d.get("n"), 2);
}
