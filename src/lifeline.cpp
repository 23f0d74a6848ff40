#include "lifeline.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <mutex>

#include "detail/sys.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::lifeline {
namespace {
// Constant-initialised: safe to use from any static constructor (the spawn bootstrap).
std::atomic<int> g_read{-1};
std::atomic<int> g_write{-1};
std::mutex g_create_mutex;
thread_local bool t_forking_for_mproc = false;

// Runs in the child of every fork() of this process (async-signal-safe).
void drop_inherited_lifeline_in_foreign_child() noexcept {
  if (t_forking_for_mproc) return;  // arm_in_child() takes over
  const int r = g_read.exchange(-1);
  const int w = g_write.exchange(-1);
  if (w >= 0) ::close(w);
  if (r >= 0) ::close(r);
}

// Formats "/proc/self/fd/<fd>" without allocating (async-signal-safe).
void fd_path(char (&out)[32], int fd) noexcept {
  const char prefix[] = "/proc/self/fd/";
  std::size_t n = 0;
  for (; prefix[n] != '\0'; ++n) out[n] = prefix[n];
  char digits[12];
  std::size_t d = 0;
  do {
    digits[d++] = static_cast<char>('0' + fd % 10);
    fd /= 10;
  } while (fd > 0 && d < sizeof digits);
  while (d > 0) out[n++] = digits[--d];
  out[n] = '\0';
}
}  // namespace

void ensure() {
  if (g_write.load(std::memory_order_acquire) >= 0) return;
  std::lock_guard lock(g_create_mutex);
  if (g_write.load(std::memory_order_relaxed) >= 0) return;
  static const bool handler_installed = [] {
    return ::pthread_atfork(nullptr, nullptr, drop_inherited_lifeline_in_foreign_child) == 0;
  }();
  if (!handler_installed)
    throw SystemError(std::make_error_code(std::errc::resource_unavailable_try_again),
                      "pthread_atfork()");
  auto ends = sys::pipe();
  g_read.store(ends.first.release(), std::memory_order_relaxed);
  g_write.store(ends.second.release(), std::memory_order_release);
}

bool arm_in_child(int parent_pid, bool keep_across_exec, bool forked_by_main_thread) noexcept {
  const int inherited_read = g_read.exchange(-1);
  const int inherited_write = g_write.exchange(-1);
  if (forked_by_main_thread) {
    // The main thread lives as long as the process (short of pthread_exit in main), so the
    // cheap kernel mechanism is exact here; it survives exec too.
    if (inherited_write >= 0) ::close(inherited_write);
    if (inherited_read >= 0) ::close(inherited_read);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    return ::getppid() == parent_pid;
  }
  if (inherited_read < 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    return ::getppid() == parent_pid;
  }
  char path[32];
  fd_path(path, inherited_read);
  // A separate open file description: O_ASYNC and the owner are per description, and the
  // inherited one is shared with every sibling.
  const int armed = ::open(path, O_RDONLY | (keep_across_exec ? 0 : O_CLOEXEC));
  bool parent_alive = true;
  if (armed >= 0) {
    ::fcntl(armed, F_SETOWN, ::getpid());
    ::fcntl(armed, F_SETSIG, SIGKILL);
    ::fcntl(armed, F_SETFL, ::fcntl(armed, F_GETFL) | O_ASYNC);
  }
  ::close(inherited_write);
  ::close(inherited_read);
  if (armed >= 0) {
    // Writers gone already means the parent died before we armed: no signal will come.
    pollfd pfd{armed, POLLIN, 0};
    if (::poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLHUP) != 0) parent_alive = false;
  } else {
    // No /proc: fall back to PR_SET_PDEATHSIG, weaker (tied to the forking thread).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    parent_alive = ::getppid() == parent_pid;
  }
  return parent_alive;
}

bool arm_group_kill(int parent_read_fd) noexcept {
  char path[32];
  fd_path(path, parent_read_fd);
  // Not close-on-exec, on purpose: the signal goes out when the parent's write end closes,
  // and only while some process still holds this description. This process may be gone by
  // then (when the parent is multi-threaded, PR_SET_PDEATHSIG can kill us before its last
  // thread closes its descriptors), so every descendant — programs a task execs included —
  // holds it too. (A descendant that closes all its descriptors, or leaves the group with
  // setsid/setpgid, escapes this.)
  const int armed = ::open(path, O_RDONLY);
  if (armed < 0) return true;  // no /proc: the group is still killed when the worker ends
  f_owner_ex owner{F_OWNER_PGRP, ::getpgrp()};
  ::fcntl(armed, F_SETOWN_EX, &owner);
  ::fcntl(armed, F_SETSIG, SIGKILL);
  ::fcntl(armed, F_SETFL, ::fcntl(armed, F_GETFL) | O_ASYNC);
  // Deliberately never closed (fasync entries live as long as the description).
  pollfd pfd{armed, POLLIN, 0};
  return !(::poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLHUP) != 0);
}

ForkScope::ForkScope() noexcept {
  t_forking_for_mproc = true;
}
ForkScope::~ForkScope() {
  t_forking_for_mproc = false;
}

bool on_main_thread() noexcept {
  return ::gettid() == ::getpid();
}

int read_fd() noexcept {
  return g_read.load();
}
int write_fd() noexcept {
  return g_write.load();
}

}  // namespace mproc::detail::lifeline
