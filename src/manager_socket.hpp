// manager_socket.hpp — addresses, listening and connecting sockets, and length-prefixed
// frames for the Manager (internal).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail::manager {

/// A parsed manager address (see manager.hpp for the syntax).
struct Address {
  enum class Family { tcp, unix_path, unix_abstract };
  Family family = Family::tcp;
  std::string host;  ///< tcp: as written, without brackets
  std::string port;  ///< tcp
  std::string path;  ///< unix_path: the file; unix_abstract: the name without '@'

  /// UsageError with the accepted forms for anything else.
  static Address parse(std::string_view text);
  bool is_unix() const noexcept { return family != Family::tcp; }
};

/// A listening socket and the address clients use to reach it (port 0 resolved).
struct Listener {
  UniqueFd fd;
  std::string address;
  std::string unlink_path;  ///< a Unix socket file this listener created, removed by its owner
};

/// socket + bind + listen (SOCK_CLOEXEC | SOCK_NONBLOCK). A Unix socket file left behind by a
/// server that died (nobody accepts on it) is replaced; one in use is SystemError(EADDRINUSE).
Listener listen_on(const Address& address);

/// Connects within `timeout`. SystemError naming the address on failure (ECONNREFUSED when
/// nothing listens there). TCP connections get TCP_NODELAY: every request is one small frame.
UniqueFd connect_to(const Address& address, const std::string& text,
                    std::chrono::nanoseconds timeout);

/// The peer of a Unix socket runs as this process's user (SO_PEERCRED).
bool peer_is_same_user(int fd);

/// sys::send_all on a connected (blocking) socket, a peer that is gone being ConnectionClosed.
void send_all_blocking(int fd, std::span<const std::byte> data);
/// Reads exactly buf.size() bytes before `deadline` (nullopt: no limit). False at EOF before
/// the first byte; ConnectionClosed at EOF mid-way; TimeoutError when the deadline passes.
bool read_exact_until(int fd, std::span<std::byte> buf,
                      std::optional<std::chrono::steady_clock::time_point> deadline);

/// Receives length-prefixed frames into one growing buffer. A frame's memory grows with the
/// bytes that actually arrive, so a lying length costs nothing until the data is there.
class FrameReader {
 public:
  /// Reads the next frame from fd, waiting as long as it takes. nullopt at a clean EOF
  /// between frames. ProtocolError for a frame over `limit` bytes; ConnectionClosed at EOF
  /// mid-frame. The frame stays valid until the next read.
  std::optional<std::span<const std::byte>> read(int fd, std::uint64_t limit);
  /// Bytes of buffer held (tests check that it follows what arrived).
  std::size_t capacity() const noexcept { return buffer_.capacity(); }

 private:
  bool fill(int fd, std::size_t want, bool frame_started);
  std::vector<std::byte> buffer_;
  std::size_t begin_ = 0;  ///< start of unconsumed bytes
  std::size_t end_ = 0;    ///< end of received bytes
};

/// Writes [length:u64le][payload] where the payload already sits in `frame` after 8 bytes of
/// room: one send for the whole frame.
void send_frame(int fd, std::span<std::byte> frame);

}  // namespace mproc::detail::manager
