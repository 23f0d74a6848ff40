#include "manager_socket.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "detail/sys.hpp"
#include "mproc/detail/archive.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::manager {

namespace {

constexpr std::string_view kAddressForms =
    "use \"host:port\" (TCP, port 0 = any free port), \"[ipv6]:port\", \"unix:/path\" or "
    "\"/path\" (a Unix socket file), or \"@name\" (a Linux abstract socket)";

[[noreturn]] void bad_address(std::string_view text, std::string_view why) {
  throw UsageError("mproc::Manager: bad address \"" + std::string(text) +
                   "\": " + std::string(why) + "; " + std::string(kAddressForms));
}

struct UnixSockaddr {
  sockaddr_un addr{};
  socklen_t length = 0;
};

UnixSockaddr unix_sockaddr(const Address& a) {
  UnixSockaddr out;
  out.addr.sun_family = AF_UNIX;
  const std::size_t room = sizeof(out.addr.sun_path) - 1;
  if (a.path.size() > room) {
    bad_address(a.path, "a Unix socket name is at most " + std::to_string(room) + " bytes");
  }
  if (a.family == Address::Family::unix_abstract) {
    out.addr.sun_path[0] = '\0';
    std::memcpy(out.addr.sun_path + 1, a.path.data(), a.path.size());
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + a.path.size());
  } else {
    std::memcpy(out.addr.sun_path, a.path.data(), a.path.size());
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + a.path.size() + 1);
  }
  return out;
}

std::string describe(const Address& a) {
  switch (a.family) {
    case Address::Family::unix_abstract: return "@" + a.path;
    case Address::Family::unix_path: return "unix:" + a.path;
    case Address::Family::tcp: break;
  }
  return (a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host) + ":" + a.port;
}

struct AddrInfoList {
  addrinfo* head = nullptr;
  ~AddrInfoList() {
    if (head != nullptr) ::freeaddrinfo(head);
  }
};

AddrInfoList resolve(const Address& a, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  AddrInfoList list;
  const int rc = ::getaddrinfo(a.host.c_str(), a.port.c_str(), &hints, &list.head);
  if (rc != 0) {
    if (rc == EAI_SYSTEM) sys::throw_errno("getaddrinfo(" + describe(a) + ")", errno);
    throw SystemError(std::error_code(EHOSTUNREACH, std::system_category()),
                      "getaddrinfo(" + describe(a) + "): " + ::gai_strerror(rc));
  }
  return list;
}

std::string numeric_address(const sockaddr* sa, socklen_t length) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  const int rc = ::getnameinfo(sa, length, host, sizeof host, port, sizeof port,
                               NI_NUMERICHOST | NI_NUMERICSERV);
  if (rc != 0) {
    throw SystemError(std::error_code(EINVAL, std::system_category()),
                      std::string("getnameinfo(): ") + ::gai_strerror(rc));
  }
  const std::string h(host);
  return (sa->sa_family == AF_INET6 ? "[" + h + "]" : h) + ":" + port;
}

UniqueFd new_socket(int family, bool nonblocking) {
  const int flags = SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
  return UniqueFd(static_cast<int>(sys::check(::socket(family, flags, 0), "socket()")));
}

void set_nonblocking(int fd, bool on) {
  const int flags = static_cast<int>(sys::check(::fcntl(fd, F_GETFL), "fcntl(F_GETFL)"));
  const int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags) sys::check(::fcntl(fd, F_SETFL, wanted), "fcntl(F_SETFL)");
}

/// connect(2) with a deadline on a non-blocking socket; returns errno (0 on success).
int connect_within(int fd, const sockaddr* sa, socklen_t length, std::chrono::nanoseconds timeout) {
  if (::connect(fd, sa, length) == 0) return 0;
  if (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN) return errno;
  pollfd p{fd, POLLOUT, 0};
  if (sys::poll(&p, 1, timeout) == 0) return ETIMEDOUT;
  int err = 0;
  socklen_t len = sizeof err;
  sys::check(::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), "getsockopt(SO_ERROR)");
  return err;
}

/// One recv(2): the bytes received (> 0), or 0 at end of stream (a reset peer counts as one).
/// Retries EINTR and, on a non-blocking socket, waits for data.
std::size_t recv_some(int fd, void* buf, std::size_t n) {
  for (;;) {
    const ssize_t rc = ::recv(fd, buf, n, 0);
    if (rc >= 0) return static_cast<std::size_t>(rc);
    if (errno == ECONNRESET) return 0;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd p{fd, POLLIN, 0};
      sys::poll(&p, 1, std::nullopt);
      continue;
    }
    sys::throw_errno("recv()", errno);
  }
}

}  // namespace

Address Address::parse(std::string_view text) {
  Address a;
  if (text.empty()) bad_address(text, "it is empty");
  if (text.front() == '@') {
    a.family = Family::unix_abstract;
    a.path = std::string(text.substr(1));
    if (a.path.empty()) bad_address(text, "the abstract socket has no name");
    return a;
  }
  if (text.starts_with("unix:")) {
    a.family = Family::unix_path;
    a.path = std::string(text.substr(5));
    if (a.path.empty()) bad_address(text, "the socket path is empty");
    return a;
  }
  if (text.front() == '/' || text.starts_with("./") || text.starts_with("../")) {
    a.family = Family::unix_path;
    a.path = std::string(text);
    return a;
  }
  std::string_view host;
  std::string_view port;
  if (text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      bad_address(text, "an IPv6 address needs the form [addr]:port");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) bad_address(text, "there is no port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      bad_address(text, "write an IPv6 address in brackets");
    }
  }
  if (host.empty()) bad_address(text, "the host is empty");
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(std::string(port)) > 65535) {
    bad_address(text, "the port must be a number from 0 to 65535");
  }
  a.host = std::string(host);
  a.port = std::string(port);
  return a;
}

Listener listen_on(const Address& a) {
  Listener out;
  if (a.is_unix()) {
    const UnixSockaddr sa = unix_sockaddr(a);
    out.fd = new_socket(AF_UNIX, true);
    const auto* addr = reinterpret_cast<const sockaddr*>(&sa.addr);
    if (::bind(out.fd.get(), addr, sa.length) != 0) {
      const int err = errno;
      bool replaced = false;
      if (err == EADDRINUSE && a.family == Address::Family::unix_path) {
        // A file left by a server that died: replace it only if nothing accepts there.
        UniqueFd probe = new_socket(AF_UNIX, true);
        if (::connect(probe.get(), addr, sa.length) != 0 && errno == ECONNREFUSED) {
          sys::check(::unlink(a.path.c_str()), "unlink(" + a.path + ")");
          sys::check(::bind(out.fd.get(), addr, sa.length), "bind(" + describe(a) + ")");
          replaced = true;
        }
      }
      if (!replaced) sys::throw_errno("bind(" + describe(a) + ")", err);
    }
    if (a.family == Address::Family::unix_path) {
      out.unlink_path = a.path;
      sys::check(::chmod(a.path.c_str(), 0600), "chmod(" + a.path + ")");
    }
    sys::check(::listen(out.fd.get(), SOMAXCONN), "listen()");
    out.address = describe(a);
    return out;
  }
  const AddrInfoList list = resolve(a, true);
  int last_error = EADDRNOTAVAIL;
  for (const addrinfo* ai = list.head; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd = new_socket(ai->ai_family, true);
    const int one = 1;
    sys::check(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one),
               "setsockopt(SO_REUSEADDR)");
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last_error = errno;
      continue;
    }
    sys::check(::listen(fd.get(), SOMAXCONN), "listen()");
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    sys::check(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length),
               "getsockname()");
    out.address = numeric_address(reinterpret_cast<const sockaddr*>(&bound), length);
    out.fd = std::move(fd);
    return out;
  }
  sys::throw_errno("bind(" + describe(a) + ")", last_error);
}

UniqueFd connect_to(const Address& a, const std::string& text, std::chrono::nanoseconds timeout) {
  if (a.is_unix()) {
    const UnixSockaddr sa = unix_sockaddr(a);
    UniqueFd fd = new_socket(AF_UNIX, true);
    const int err =
        connect_within(fd.get(), reinterpret_cast<const sockaddr*>(&sa.addr), sa.length, timeout);
    // A Unix socket whose listener is gone reads ENOENT (file) or ECONNREFUSED (abstract).
    if (err != 0) sys::throw_errno("connect(" + text + ")", err == ENOENT ? ECONNREFUSED : err);
    set_nonblocking(fd.get(), false);
    return fd;
  }
  const AddrInfoList list = resolve(a, false);
  int last_error = ECONNREFUSED;
  for (const addrinfo* ai = list.head; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd = new_socket(ai->ai_family, true);
    const int err = connect_within(fd.get(), ai->ai_addr, ai->ai_addrlen, timeout);
    if (err != 0) {
      last_error = err;
      continue;
    }
    set_nonblocking(fd.get(), false);
    const int one = 1;
    sys::check(::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one),
               "setsockopt(TCP_NODELAY)");
    return fd;
  }
  sys::throw_errno("connect(" + text + ")", last_error);
}

bool peer_is_same_user(int fd) {
  ucred cred{};
  socklen_t length = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return false;
  return cred.uid == ::geteuid();
}

void send_all_blocking(int fd, std::span<const std::byte> data) {
  try {
    sys::send_all(fd, data);
  } catch (const SystemError& e) {
    const int err = e.code().value();
    if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) {
      throw ConnectionClosed("mproc::Manager: the peer closed the connection");
    }
    throw;
  }
}

bool read_exact_until(int fd, std::span<std::byte> buf,
                      std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::size_t got = 0;
  while (got < buf.size()) {
    if (deadline) {
      const auto left = *deadline - std::chrono::steady_clock::now();
      pollfd p{fd, POLLIN, 0};
      if (left <= std::chrono::nanoseconds::zero() || sys::poll(&p, 1, left) == 0) {
        throw TimeoutError("mproc::Manager: the peer did not answer in time");
      }
    }
    const std::size_t n = recv_some(fd, buf.data() + got, buf.size() - got);
    if (n == 0) {
      if (got == 0) return false;
      throw ConnectionClosed("mproc::Manager: the peer closed the connection mid-message");
    }
    got += n;
  }
  return true;
}

std::optional<std::span<const std::byte>> FrameReader::read(int fd, std::uint64_t limit) {
  if (begin_ == end_) begin_ = end_ = 0;
  if (!fill(fd, 8, false)) return std::nullopt;
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i) {
    length =
        (length << 8) | static_cast<std::uint8_t>(buffer_[begin_ + static_cast<std::size_t>(i)]);
  }
  if (length > limit) {
    throw ProtocolError("mproc::Manager: a frame of " + std::to_string(length) +
                        " bytes is over the limit of " + std::to_string(limit) + " bytes");
  }
  fill(fd, 8 + static_cast<std::size_t>(length), true);
  const std::span<const std::byte> frame(buffer_.data() + begin_ + 8,
                                         static_cast<std::size_t>(length));
  begin_ += 8 + static_cast<std::size_t>(length);
  return frame;
}

bool FrameReader::fill(int fd, std::size_t want, bool frame_started) {
  constexpr std::size_t kMinChunk = 64 * 1024;
  while (end_ - begin_ < want) {
    if (begin_ + want > buffer_.size()) {
      // Move what is unconsumed to the front, then grow by at most what has arrived (plus
      // one chunk), and only once what arrived fills the buffer: memory follows the bytes
      // received, not the length claimed (growing on every read would let a client that
      // claims 4 GiB and sends a few bytes at a time double the buffer with each one).
      if (begin_ > 0) {
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (want > buffer_.size() && end_ == buffer_.size()) {
        const std::size_t grown = std::max(buffer_.size() * 2, kMinChunk);
        buffer_.resize(std::min(want, std::max(grown, end_ + kMinChunk)));
      }
    }
    const std::size_t n = recv_some(fd, buffer_.data() + end_, buffer_.size() - end_);
    if (n == 0) {
      if (end_ == begin_ && !frame_started) return false;
      throw ConnectionClosed("mproc::Manager: the connection closed in the middle of a message");
    }
    end_ += n;
  }
  return true;
}

void send_frame(int fd, std::span<std::byte> frame) {
  std::uint64_t length = frame.size() - 8;
  for (std::size_t i = 0; i < 8; ++i) {
    frame[i] = static_cast<std::byte>(length & 0xff);
    length >>= 8;
  }
  send_all_blocking(fd, frame);
}

}  // namespace mproc::detail::manager
