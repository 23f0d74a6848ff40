// support.hpp — helpers shared by the benchmark binaries: the raw-syscall peers' I/O loops,
// CPU pinning, and reporting a failure as a benchmark error instead of a crash.
//
// The raw peers call the OS directly on purpose: they are the floor mproc is measured against.
// These helpers add only what every correct caller needs (EINTR retry, short reads/writes), so
// the peers stay honest. Benchmarks never assert: a failed call marks the run as an error
// (State::SkipWithError) and bench/run prints it as an error row.
#pragma once

#include <benchmark/benchmark.h>
#include <sched.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace mproc_bench {

inline constexpr std::size_t kMiB = std::size_t{1} << 20;

/// "call(): strerror(errno)", the message shape mproc's own errors use.
inline std::string errno_message(const char* call) {
  return std::string(call) + "(): " + std::strerror(errno);
}

/// Writes all `size` bytes; false on error (errno set).
inline bool write_all(int fd, const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

/// Reads exactly `size` bytes; false on error or end of file (errno = 0 at end of file).
inline bool read_all(int fd, void* data, std::size_t size) {
  auto* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::read(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      errno = 0;
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

/// The CPU "pinned" runs use: CPU 0 when this process may run there, else the lowest CPU of
/// its affinity mask (a container's cpuset may exclude CPU 0). -1 if the mask is unreadable.
inline int pin_cpu() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) return cpu;
  }
  return -1;
}

/// Pins the calling process to pin_cpu(); false on failure (errno set).
inline bool pin_self() {
  const int cpu = pin_cpu();
  if (cpu < 0) return false;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return ::sched_setaffinity(0, sizeof one, &one) == 0;
}

/// For the scope's lifetime, pins this process (and so every child it forks or spawns, which
/// inherit the mask) to pin_cpu() when `enabled`; restores the previous mask afterwards.
class ScopedPin {
 public:
  explicit ScopedPin(bool enabled) {
    if (!enabled) return;
    CPU_ZERO(&saved_);
    if (::sched_getaffinity(0, sizeof saved_, &saved_) != 0) {
      error_ = errno_message("sched_getaffinity");
      return;
    }
    if (!pin_self()) {
      error_ = errno_message("sched_setaffinity");
      return;
    }
    pinned_ = true;
  }
  ~ScopedPin() {
    if (pinned_) ::sched_setaffinity(0, sizeof saved_, &saved_);
  }
  ScopedPin(const ScopedPin&) = delete;
  ScopedPin& operator=(const ScopedPin&) = delete;

  /// Empty when pinning succeeded or was not asked for.
  const std::string& error() const noexcept { return error_; }

 private:
  cpu_set_t saved_{};
  bool pinned_ = false;
  std::string error_;
};

/// Forks a child that runs `body()` (returning its exit status) and then _exit()s, so no
/// atexit handler or benchmark state of the parent runs twice. Returns the pid, -1 on error.
template <class Body>
pid_t fork_child(Body&& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  return pid;
}

/// Waits for `pid`; true if it exited with status 0. On false, `why` says what happened.
inline bool reap(pid_t pid, std::string* why = nullptr) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      if (why != nullptr) *why = errno_message("waitpid");
      return false;
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  if (why != nullptr) {
    *why = WIFSIGNALED(status) ? "child killed by signal " + std::to_string(WTERMSIG(status))
                               : "child exited with status " + std::to_string(WEXITSTATUS(status));
  }
  return false;
}

/// Closes `fd` if it is open and marks it closed. Never retried: after EINTR the descriptor is
/// gone on Linux.
inline void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace mproc_bench
