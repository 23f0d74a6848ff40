// manager_auth.hpp — the authkey handshake every Manager connection starts with (internal).
//
// Both sides prove they know the authkey without sending it, before either decodes a payload:
//
//     server -> client   "MPROCMG1" nonce_s[32]
//     client -> server   HMAC-SHA256(key, "mproc-client" nonce_s)[32] nonce_c[32]
//     server -> client   0x00 (rejected, then close)  or  0x01 HMAC-SHA256(key, "mproc-server"
//     nonce_c)[32]
//
// Nonces come from getrandom(2); digests are compared with CRYPTO_memcmp (constant time). The
// messages have fixed sizes, so nothing the peer sends before it is authenticated can make
// this side allocate. Python's multiprocessing.connection does the same with HMAC on its
// authkey (deliver_challenge / answer_challenge).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace mproc::detail::manager {

/// Server side. False if the client failed the challenge (it was told; the caller closes the
/// connection). TimeoutError if the client does not answer within `timeout`, ConnectionClosed
/// if it goes away.
bool authenticate_client(int fd, std::string_view authkey, std::chrono::nanoseconds timeout);

/// Client side. AuthenticationError if the server rejects the key or cannot prove that it has
/// it; ProtocolError if the peer is not an mproc manager; TimeoutError / ConnectionClosed as
/// above.
void authenticate_to_server(int fd, std::string_view authkey, std::chrono::nanoseconds timeout);

/// `n` random bytes from getrandom(2), e.g. for a fresh authkey.
std::string random_bytes(std::size_t n);

}  // namespace mproc::detail::manager
