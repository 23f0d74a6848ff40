// handshake_server.cpp — fuzz target: the server side of the Manager's authkey handshake
// (src/manager_auth.cpp, authenticate_client) answering a client that sends attacker bytes.
//
// Input: key_length:u8 key[key_length] then the bytes the client sends after the greeting.
//
// The server writes its greeting, reads the client's fixed-size answer, and must reject it:
// without the server's fresh nonce nobody can compute the HMAC it expects. Contract checked:
// authenticate_client returns false (and has told the client with one 0x00 byte) or throws
// ConnectionClosed (the answer was cut short); it never accepts, never throws anything else,
// never waits (every input ends in EOF) and leaks no descriptor.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "manager_auth.hpp"
#include "mproc/detail/unique_fd.hpp"
#include "mproc/errors.hpp"

namespace {

using mproc::detail::UniqueFd;
using mproc_fuzz::fail;

constexpr std::string_view kGreeting = "MPROCMG1";
constexpr std::size_t kGreetingSize = 8 + 32;  // magic + server nonce

void run(const std::uint8_t* data, std::size_t size) {
  mproc_fuzz::Script script(data, size);
  const auto key_bytes = script.bytes(script.u8());
  const std::string key(reinterpret_cast<const char*>(key_bytes.data()), key_bytes.size());
  const auto answer = script.rest();

  const auto peer = mproc_fuzz::scripted_peer(answer);
  const UniqueFd& server = peer.near;
  const UniqueFd& client = peer.far;

  bool rejected = false;
  try {
    if (mproc::detail::manager::authenticate_client(server.get(), key, std::chrono::seconds(5))) {
      fail("the server accepted a client that cannot know its nonce");
    }
    rejected = true;
  } catch (const mproc::ConnectionClosed&) {
  } catch (...) {
    mproc_fuzz::fail_with_current_exception("authenticate_client");
  }

  // What the client received: the greeting, then the rejection byte if the answer was whole.
  std::array<std::byte, kGreetingSize + 2> got{};
  const ssize_t n = ::recv(client.get(), got.data(), got.size(), MSG_DONTWAIT);
  const auto expected = static_cast<ssize_t>(kGreetingSize + (rejected ? 1 : 0));
  if (n != expected || std::memcmp(got.data(), kGreeting.data(), kGreeting.size()) != 0 ||
      (rejected && got[kGreetingSize] != std::byte{0})) {
    fail("the server did not send its greeting (and the rejection byte)");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mproc_fuzz::run_checking_fds(run, data, size);
}
