// fuzz_support.hpp — what the fuzz targets share: failing loudly, descriptor leak checks, and
// reading an input as a small script.
//
// A target returns normally when the library behaved as documented (the input decoded, or
// was refused with the documented error type) and calls fail() otherwise, which aborts: both
// libFuzzer and the corpus replay of the test suite (replay_main.cpp) report an abort as a
// failed input.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>
#include <typeinfo>
#include <utility>

#include "mproc/detail/unique_fd.hpp"

namespace mproc_fuzz {

/// Reports a broken contract and aborts.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "\nFUZZ CONTRACT VIOLATION: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

/// fail() for an exception of a type the contract does not allow here; call from a catch block.
[[noreturn]] inline void fail_with_current_exception(const char* where) {
  try {
    throw;
  } catch (const std::exception& e) {
    fail(std::string(where) + ": unexpected exception " + typeid(e).name() + ": " + e.what());
  } catch (...) {
    fail(std::string(where) + ": unexpected exception of a non-std type");
  }
}

/// Open descriptors of this process (entries of /proc/self/fd, the directory's own excluded).
inline int open_fd_count() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) fail("cannot list /proc/self/fd");
  int count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count - 1;  // the descriptor of `dir` itself
}

/// A descriptor to attach to messages (and to dup for decoders that take ownership), open
/// for the life of the process.
inline int dev_null() {
  static const int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0) fail("cannot open /dev/null");
  return fd;
}

/// Fails if the scope it guards left descriptors open (or closed some it did not own).
class FdLeakCheck {
 public:
  FdLeakCheck() : before_((dev_null(), open_fd_count())) {}
  void verify() const {
    const int after = open_fd_count();
    if (after != before_) {
      fail("descriptor leak: " + std::to_string(before_) + " open before the input, " +
           std::to_string(after) + " after");
    }
  }

 private:
  int before_;
};

/// Reads an input front to back; past the end every read yields zeros / empty spans.
class Script {
 public:
  Script(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}
  bool done() const noexcept { return pos_ >= size_; }
  std::size_t left() const noexcept { return size_ - pos_; }
  std::uint8_t u8() noexcept { return done() ? 0 : data_[pos_++]; }
  std::uint16_t u16() noexcept {
    const std::uint16_t lo = u8();
    return static_cast<std::uint16_t>(lo | (u8() << 8));
  }
  /// The next min(n, left()) bytes.
  std::span<const std::byte> bytes(std::size_t n) noexcept {
    n = n < left() ? n : left();
    const auto* p = reinterpret_cast<const std::byte*>(data_ + pos_);
    pos_ += n;
    return {p, n};
  }
  std::span<const std::byte> rest() noexcept { return bytes(left()); }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

/// The entry point of most targets: `run(data, size)` under a descriptor leak check.
template <class Run>
int run_checking_fds(Run run, const std::uint8_t* data, std::size_t size) {
  const FdLeakCheck leaks;
  run(data, size);
  leaks.verify();
  return 0;
}

/// The two ends of a socketpair, `near` for the code under test and `far` for the attacker,
/// who has already sent `bytes` and shut down its writing side.
struct ScriptedPeer {
  mproc::detail::UniqueFd near, far;
};

inline ScriptedPeer scripted_peer(std::span<const std::byte> bytes) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fail("socketpair()");
  ScriptedPeer peer{mproc::detail::UniqueFd(sv[0]), mproc::detail::UniqueFd(sv[1])};
  if (!bytes.empty() &&
      ::send(peer.far.get(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
    fail("send()");
  }
  ::shutdown(peer.far.get(), SHUT_WR);
  return peer;
}

}  // namespace mproc_fuzz
