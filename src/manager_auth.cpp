#include "manager_auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "detail/sys.hpp"
#include "manager_socket.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::manager {

namespace {

constexpr std::size_t kNonce = 32;
constexpr std::size_t kDigest = 32;  // SHA-256
constexpr std::string_view kMagic = "MPROCMG1";
constexpr std::string_view kClientLabel = "mproc-client";
constexpr std::string_view kServerLabel = "mproc-server";

using Nonce = std::array<std::byte, kNonce>;
using Digest = std::array<std::byte, kDigest>;

void fill_random(std::byte* out, std::size_t n) {
  while (n > 0) {
    const ssize_t rc = ::getrandom(out, n, 0);
    if (rc < 0) {
      if (errno == EINTR) continue;
      sys::throw_errno("getrandom()", errno);
    }
    out += rc;
    n -= static_cast<std::size_t>(rc);
  }
}

Digest hmac(std::string_view key, std::string_view label, const Nonce& nonce) {
  std::array<std::byte, 64> message{};
  std::memcpy(message.data(), label.data(), label.size());
  std::memcpy(message.data() + label.size(), nonce.data(), nonce.size());
  Digest out{};
  unsigned int length = 0;
  const unsigned char* ok =
      ::HMAC(::EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(message.data()), label.size() + nonce.size(),
             reinterpret_cast<unsigned char*>(out.data()), &length);
  if (ok == nullptr || length != kDigest) {
    throw Error("mproc::Manager: HMAC-SHA256 failed in OpenSSL");
  }
  return out;
}

bool same(const Digest& a, const std::byte* b) {
  return ::CRYPTO_memcmp(a.data(), b, kDigest) == 0;
}

std::chrono::steady_clock::time_point deadline_after(std::chrono::nanoseconds timeout) {
  return std::chrono::steady_clock::now() + timeout;
}

void read_or_closed(int fd, std::span<std::byte> buf, std::chrono::steady_clock::time_point by,
                    const char* what) {
  if (!read_exact_until(fd, buf, by)) {
    throw ConnectionClosed(std::string("mproc::Manager: the peer closed the connection ") + what);
  }
}

}  // namespace

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  fill_random(reinterpret_cast<std::byte*>(out.data()), n);
  return out;
}

bool authenticate_client(int fd, std::string_view authkey, std::chrono::nanoseconds timeout) {
  const auto by = deadline_after(timeout);
  std::array<std::byte, kMagic.size() + kNonce> hello{};
  std::memcpy(hello.data(), kMagic.data(), kMagic.size());
  Nonce server_nonce{};
  fill_random(server_nonce.data(), kNonce);
  std::memcpy(hello.data() + kMagic.size(), server_nonce.data(), kNonce);
  send_all_blocking(fd, hello);

  std::array<std::byte, kDigest + kNonce> answer{};
  read_or_closed(fd, answer, by, "during authentication");
  if (!same(hmac(authkey, kClientLabel, server_nonce), answer.data())) {
    const std::byte rejected{0};
    send_all_blocking(fd, std::span(&rejected, 1));
    return false;
  }
  Nonce client_nonce{};
  std::memcpy(client_nonce.data(), answer.data() + kDigest, kNonce);
  std::array<std::byte, 1 + kDigest> proof{};
  proof[0] = std::byte{1};
  const Digest mine = hmac(authkey, kServerLabel, client_nonce);
  std::memcpy(proof.data() + 1, mine.data(), kDigest);
  send_all_blocking(fd, proof);
  return true;
}

void authenticate_to_server(int fd, std::string_view authkey, std::chrono::nanoseconds timeout) {
  const auto by = deadline_after(timeout);
  std::array<std::byte, kMagic.size() + kNonce> hello{};
  if (!read_exact_until(fd, hello, by)) {
    throw AuthenticationError(
        "mproc::Manager: the server closed the connection before authenticating (a Unix-socket "
        "server accepts only clients of its own user)");
  }
  if (std::memcmp(hello.data(), kMagic.data(), kMagic.size()) != 0) {
    throw ProtocolError("mproc::Manager: the peer is not an mproc manager (bad greeting)");
  }
  Nonce server_nonce{};
  std::memcpy(server_nonce.data(), hello.data() + kMagic.size(), kNonce);
  Nonce client_nonce{};
  fill_random(client_nonce.data(), kNonce);
  std::array<std::byte, kDigest + kNonce> answer{};
  const Digest mine = hmac(authkey, kClientLabel, server_nonce);
  std::memcpy(answer.data(), mine.data(), kDigest);
  std::memcpy(answer.data() + kDigest, client_nonce.data(), kNonce);
  send_all_blocking(fd, answer);

  std::byte verdict{0};
  if (!read_exact_until(fd, std::span(&verdict, 1), by) || verdict != std::byte{1}) {
    throw AuthenticationError(
        "mproc::Manager: the server rejected the authkey (client and server must use the same "
        "key)");
  }
  Digest proof{};
  read_or_closed(fd, proof, by, "during authentication");
  if (!same(hmac(authkey, kServerLabel, client_nonce), proof.data())) {
    throw AuthenticationError(
        "mproc::Manager: the server could not prove that it knows the authkey");
  }
}

}  // namespace mproc::detail::manager
