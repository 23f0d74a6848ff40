// handshake_client.cpp — fuzz target: the client side of the Manager's authkey handshake
// (src/manager_auth.cpp, authenticate_to_server) talking to a server that sends attacker
// bytes.
//
// Input: key_length:u8 key[key_length] then the bytes the server sends (greeting, verdict,
// proof).
//
// A peer without the client's fresh nonce cannot prove it knows the key, so the client must
// refuse it. Contract checked: authenticate_to_server throws AuthenticationError (rejected, or
// no valid proof), ProtocolError (not an mproc greeting) or ConnectionClosed (cut short); it
// never succeeds, never throws anything else, answers only a valid greeting (with exactly its
// 64-byte answer), never waits (every input ends in EOF) and leaks no descriptor.
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
constexpr std::size_t kAnswerSize = 32 + 32;   // HMAC + client nonce

void run(const std::uint8_t* data, std::size_t size) {
  mproc_fuzz::Script script(data, size);
  const auto key_bytes = script.bytes(script.u8());
  const std::string key(reinterpret_cast<const char*>(key_bytes.data()), key_bytes.size());
  const auto from_server = script.rest();

  const auto peer = mproc_fuzz::scripted_peer(from_server);
  const UniqueFd& client = peer.near;
  const UniqueFd& server = peer.far;

  try {
    mproc::detail::manager::authenticate_to_server(client.get(), key, std::chrono::seconds(5));
    fail("the client accepted a server that cannot know its nonce");
  } catch (const mproc::AuthenticationError&) {
  } catch (const mproc::ProtocolError&) {
  } catch (const mproc::ConnectionClosed&) {
  } catch (...) {
    mproc_fuzz::fail_with_current_exception("authenticate_to_server");
  }

  // The client answers exactly when the greeting was whole and valid.
  const bool greeted = from_server.size() >= kGreetingSize &&
                       std::memcmp(from_server.data(), kGreeting.data(), kGreeting.size()) == 0;
  std::array<std::byte, kAnswerSize + 1> got{};
  const ssize_t n = ::recv(server.get(), got.data(), got.size(), MSG_DONTWAIT);
  const ssize_t sent = n < 0 ? 0 : n;
  if (sent != (greeted ? static_cast<ssize_t>(kAnswerSize) : 0)) {
    fail("the client sent " + std::to_string(sent) + " bytes to a server that " +
         (greeted ? "greeted it" : "did not greet it"));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mproc_fuzz::run_checking_fds(run, data, size);
}
