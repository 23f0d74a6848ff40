#include "detail/sys.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

#include "mproc/errors.hpp"
#include "mproc/log.hpp"

namespace mproc::detail {

void UniqueFd::reset(int fd) noexcept {
  const int old = std::exchange(fd_, fd);
  if (old >= 0) {
    if (const int err = sys::close(old); err != 0 && err != EINTR) {
      log(LogLevel::error, "close(" + std::to_string(old) + "): " + std::strerror(err));
    }
  }
}

namespace sys {

// ---- errors ---------------------------------------------------------------------------------

void throw_errno(std::string_view call, int err) {
  throw SystemError(std::error_code(err, std::system_category()), std::string(call));
}

long check(long rc, std::string_view call) {
  if (rc == -1) throw_errno(call, errno);
  return rc;
}

// ---- failure injection ------------------------------------------------------------------------
// A small fixed table of atomics, so that injected() stays async-signal-safe (it is consulted
// in forked children before exec).
namespace {
struct Injection {
  std::array<char, 24> call{};
  std::atomic<int> err{0};
  std::atomic<int> remaining{0};
};
std::array<Injection, 8> g_injections;
std::atomic<bool> g_any_injection{false};

bool same_name(const std::array<char, 24>& a, const char* b) noexcept {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
    if (a[i] == '\0') return true;
  }
  return false;
}
}  // namespace

void inject_failure(std::string_view call, int err, int count) {
  if (call.size() >= 24) throw UsageError("inject_failure: call name too long");
  std::array<char, 24> name{};
  std::copy(call.begin(), call.end(), name.begin());
  Injection* slot = nullptr;
  for (auto& inj : g_injections) {
    if (inj.call == name || (slot == nullptr && inj.remaining.load() == 0)) {
      slot = &inj;
      if (inj.call == name) break;
    }
  }
  if (slot == nullptr) throw UsageError("inject_failure: too many injections at once");
  slot->remaining.store(0);
  slot->call = name;
  slot->err.store(err);
  slot->remaining.store(count);
  g_any_injection.store(true);
}

int injected(const char* call) noexcept {
  if (!g_any_injection.load(std::memory_order_relaxed)) return 0;
  for (auto& inj : g_injections) {
    if (inj.remaining.load() > 0 && same_name(inj.call, call)) {
      if (inj.remaining.fetch_sub(1) > 0) return inj.err.load();
      inj.remaining.store(0);
    }
  }
  return 0;
}

#define MPROC_INJECT(name)                         \
  do {                                             \
    if (const int injected_err = injected(name)) { \
      throw_errno(name "()", injected_err);        \
    }                                              \
  } while (false)

// ---- descriptors --------------------------------------------------------------------------------

FdPair pipe(int flags) {
  MPROC_INJECT("pipe2");
  int fds[2];
  check(::pipe2(fds, O_CLOEXEC | flags), "pipe2()");
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

FdPair socketpair(int type) {
  MPROC_INJECT("socketpair");
  int fds[2];
  check(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds), "socketpair()");
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

int close(int fd) noexcept {
  // Never retried: on Linux the descriptor is released even when close() reports EINTR, and a
  // retry could close a descriptor another thread has just been given.
  return ::close(fd) == 0 ? 0 : errno;
}

void set_cloexec(int fd, bool on) {
  const int flags = static_cast<int>(check(::fcntl(fd, F_GETFD), "fcntl(F_GETFD)"));
  check(::fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC)), "fcntl(F_SETFD)");
}

std::vector<int> open_fds() {
  std::vector<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) throw_errno("opendir(\"/proc/self/fd\")", errno);
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd != own) fds.push_back(fd);
  }
  ::closedir(dir);
  std::sort(fds.begin(), fds.end());
  return fds;
}

// ---- byte I/O ---------------------------------------------------------------------------------

std::size_t read(int fd, void* buf, std::size_t n) {
  MPROC_INJECT("read");
  for (;;) {
    const ssize_t rc = ::read(fd, buf, n);
    if (rc >= 0) return static_cast<std::size_t>(rc);
    if (errno != EINTR) throw_errno("read()", errno);
  }
}

bool read_exact(int fd, std::span<std::byte> buf, std::size_t* partial) {
  std::size_t done = 0;
  while (done < buf.size()) {
    const std::size_t n = read(fd, buf.data() + done, buf.size() - done);
    if (n == 0) {
      if (partial != nullptr) *partial = done;
      return false;
    }
    done += n;
  }
  if (partial != nullptr) *partial = done;
  return true;
}

UniqueFd open_read_only(const char* path) {
  MPROC_INJECT("open");
  for (;;) {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EINTR) throw_errno(std::string("open(\"") + path + "\")", errno);
  }
}

std::size_t pread(int fd, void* buf, std::size_t n, std::uint64_t offset) {
  MPROC_INJECT("pread");
  for (;;) {
    const ssize_t rc = ::pread(fd, buf, n, static_cast<off_t>(offset));
    if (rc >= 0) return static_cast<std::size_t>(rc);
    if (errno != EINTR) throw_errno("pread()", errno);
  }
}

bool isatty(int fd) noexcept {
  return ::isatty(fd) == 1;
}

std::int64_t monotonic_coarse_ns() noexcept {
  timespec ts{};
  if (::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0) return 0;  // cannot fail on Linux
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::size_t write(int fd, const void* buf, std::size_t n) {
  MPROC_INJECT("write");
  for (;;) {
    const ssize_t rc = ::write(fd, buf, n);
    if (rc >= 0) return static_cast<std::size_t>(rc);
    if (errno != EINTR) throw_errno("write()", errno);
  }
}

std::size_t writev(int fd, const struct iovec* iov, int count) {
  MPROC_INJECT("writev");
  for (;;) {
    const ssize_t rc = ::writev(fd, iov, count);
    if (rc >= 0) return static_cast<std::size_t>(rc);
    if (errno != EINTR) throw_errno("writev()", errno);
  }
}

namespace {
extern "C" void mproc_absorb_sigpipe(int) {}
}  // namespace

bool absorb_sigpipe() {
  struct sigaction old {};
  check(::sigaction(SIGPIPE, nullptr, &old), "sigaction(SIGPIPE)");
  if ((old.sa_flags & SA_SIGINFO) != 0 || old.sa_handler != SIG_DFL) return false;
  struct sigaction sa {};
  sa.sa_handler = mproc_absorb_sigpipe;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  check(::sigaction(SIGPIPE, &sa, nullptr), "sigaction(SIGPIPE)");
  return true;
}

void send_all(int fd, std::span<const std::byte> data) {
  MPROC_INJECT("send");
  while (!data.empty()) {
    const ssize_t rc = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (rc < 0) {
      if (errno == EINTR) continue;
      throw_errno("send()", errno);
    }
    data = data.subspan(static_cast<std::size_t>(rc));
  }
}

std::size_t sendmsg(int fd, const msghdr* msg, int flags) {
  MPROC_INJECT("sendmsg");
  for (;;) {
    const ssize_t rc = ::sendmsg(fd, msg, flags | MSG_NOSIGNAL);
    if (rc >= 0) return static_cast<std::size_t>(rc);
    if (errno != EINTR) throw_errno("sendmsg()", errno);
  }
}

std::size_t recvmsg(int fd, msghdr* msg, int flags) {
  MPROC_INJECT("recvmsg");
  for (;;) {
    const ssize_t rc = ::recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC);
    if (rc >= 0) return static_cast<std::size_t>(rc);
    if (errno != EINTR) throw_errno("recvmsg()", errno);
  }
}

int poll(pollfd* fds, std::size_t nfds, std::optional<std::chrono::nanoseconds> timeout) {
  MPROC_INJECT("poll");
  using clock = std::chrono::steady_clock;
  const auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
  for (;;) {
    int ms = -1;
    if (timeout) {
      const auto left = deadline - clock::now();
      if (left <= std::chrono::nanoseconds::zero()) {
        ms = 0;
      } else {
        // Round up so a short timeout does not become a busy loop of zero-length polls.
        const auto left_ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
        ms = static_cast<int>(std::min<long long>(left_ms, INT_MAX));
      }
    }
    const int rc = ::poll(fds, static_cast<nfds_t>(nfds), ms);
    if (rc >= 0) return rc;
    if (errno != EINTR) throw_errno("poll()", errno);
  }
}

// ---- sockets ------------------------------------------------------------------------------------

void shutdown(int fd, int how) {
  MPROC_INJECT("shutdown");
  check(::shutdown(fd, how), "shutdown(" + std::to_string(how) + ")");
}

// ---- processes ----------------------------------------------------------------------------------

pid_t fork() {
  MPROC_INJECT("fork");
  return static_cast<pid_t>(check(::fork(), "fork()"));
}

UniqueFd pidfd_open(pid_t pid) {
  MPROC_INJECT("pidfd_open");
  return UniqueFd(static_cast<int>(
      check(::syscall(SYS_pidfd_open, pid, 0), "pidfd_open(" + std::to_string(pid) + ")")));
}

bool pidfd_send_signal(int pidfd, int sig) {
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0) return true;
  if (errno == ESRCH) return false;
  throw_errno("pidfd_send_signal(" + std::to_string(sig) + ")", errno);
}

std::optional<int> waitid_pidfd(int pidfd, int options) {
  siginfo_t info{};
  for (;;) {
    const int rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                            WEXITED | options);
    if (rc == 0) break;
    if (errno != EINTR) throw_errno("waitid(P_PIDFD)", errno);
  }
  if (info.si_pid == 0) return std::nullopt;  // WNOHANG and still running
  if (info.si_code == CLD_EXITED) return info.si_status;
  return -info.si_status;  // CLD_KILLED / CLD_DUMPED
}

// ---- shared memory and futexes
// -------------------------------------------------------------------

UniqueFd memfd_create(const char* name) {
  MPROC_INJECT("memfd_create");
  return UniqueFd(static_cast<int>(
      check(::memfd_create(name, MFD_CLOEXEC), std::string("memfd_create(\"") + name + "\")")));
}

void allocate(int fd, std::size_t size) {
  // An injected failure stands for posix_fallocate's result, so that tests see the message a
  // real full tmpfs gives (with the fix in it).
  const int injected_fallocate = injected("fallocate");
  for (;;) {
    if (::ftruncate(fd, static_cast<off_t>(size)) == 0) break;
    if (errno != EINTR) throw_errno("ftruncate(" + std::to_string(size) + ")", errno);
  }
  if (size == 0) return;
  int rc = injected_fallocate;
  if (rc == 0) {
    do {
      rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
    } while (rc == EINTR);
  }
  if (rc != 0) {
    std::string call = "posix_fallocate(" + std::to_string(size) + " bytes)";
    if (rc == ENOSPC) {
      call +=
          " — shared memory (tmpfs, e.g. /dev/shm) is full; free some or enlarge it "
          "(containers: --shm-size)";
    }
    throw_errno(call, rc);
  }
}

std::size_t file_size(int fd) {
  struct stat st {};
  check(::fstat(fd, &st), "fstat()");
  return static_cast<std::size_t>(st.st_size);
}

void* map_shared(int fd, std::size_t size) {
  MPROC_INJECT("mmap");
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw_errno("mmap(" + std::to_string(size) + " bytes)", errno);
  return p;
}

void unmap(void* addr, std::size_t size) noexcept {
  if (::munmap(addr, size) != 0) {
    log(LogLevel::error, std::string("munmap(): ") + std::strerror(errno));
  }
}

bool futex_wait(const std::uint32_t* word, std::uint32_t expected,
                std::optional<std::chrono::nanoseconds> timeout) {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout) {
    const auto ns = std::max<std::int64_t>(timeout->count(), 0);
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    tsp = &ts;
  }
  // Relative timeout with FUTEX_WAIT; the caller recomputes it after a spurious return.
  const long rc = ::syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, nullptr, 0);
  if (rc == 0) return true;
  if (errno == EAGAIN || errno == EINTR) return true;
  if (errno == ETIMEDOUT) return false;
  throw_errno("futex(FUTEX_WAIT)", errno);
}

int futex_wake(const std::uint32_t* word, int count) {
  const long rc = ::syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return static_cast<int>(check(rc, "futex(FUTEX_WAKE)"));
}

UniqueFd shm_open(const std::string& name, int flags, unsigned mode) {
  MPROC_INJECT("shm_open");
  for (;;) {
    const int fd = ::shm_open(name.c_str(), flags | O_CLOEXEC, static_cast<mode_t>(mode));
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EINTR) throw_errno("shm_open(\"" + name + "\")", errno);
  }
}

void shm_unlink(const std::string& name) {
  MPROC_INJECT("shm_unlink");
  check(::shm_unlink(name.c_str()), "shm_unlink(\"" + name + "\")");
}

bool process_alive(pid_t pid) noexcept {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  // A killed child stays a zombie until its parent reaps it; it holds nothing any more.
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;
  char buf[512];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return true;
  buf[n] = '\0';
  const char* close_paren = std::strrchr(buf, ')');
  if (close_paren == nullptr || close_paren[1] == '\0' || close_paren[2] == '\0') return true;
  return close_paren[2] != 'Z' && close_paren[2] != 'X';
}

namespace {
thread_local pid_t t_thread_id = 0;
}  // namespace

pid_t this_thread_id() noexcept {
  if (t_thread_id == 0) {
    static const bool registered = [] {
      // The forking thread continues in the child under a new id.
      ::pthread_atfork(nullptr, nullptr, [] { t_thread_id = 0; });
      return true;
    }();
    static_cast<void>(registered);
    t_thread_id = static_cast<pid_t>(::syscall(SYS_gettid));
  }
  return t_thread_id;
}

// ---- pool engine -------------------------------------------------------------------------

UniqueFd dup(int fd) {
  MPROC_INJECT("dup");
  return UniqueFd(
      static_cast<int>(check(::fcntl(fd, F_DUPFD_CLOEXEC, 0), "fcntl(F_DUPFD_CLOEXEC)")));
}

UniqueFd eventfd() {
  MPROC_INJECT("eventfd");
  return UniqueFd(static_cast<int>(check(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd()")));
}

void eventfd_signal(int fd) {
  const std::uint64_t one = 1;
  for (;;) {
    if (::write(fd, &one, sizeof one) == static_cast<ssize_t>(sizeof one)) return;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return;  // the counter is saturated: the reader is woken anyway
    throw_errno("write(eventfd)", errno);
  }
}

void eventfd_drain(int fd) {
  std::uint64_t value = 0;
  for (;;) {
    if (::read(fd, &value, sizeof value) >= 0) return;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return;
    throw_errno("read(eventfd)", errno);
  }
}

void limit_address_space(std::size_t bytes) {
  MPROC_INJECT("setrlimit");
  const rlimit limit{static_cast<rlim_t>(bytes), static_cast<rlim_t>(bytes)};
  check(::setrlimit(RLIMIT_AS, &limit), "setrlimit(RLIMIT_AS)");
}

void ignore_signal(int sig) {
  struct sigaction action {};
  action.sa_handler = SIG_IGN;
  ::sigemptyset(&action.sa_mask);
  check(::sigaction(sig, &action, nullptr), "sigaction()");
}

void become_process_group_leader() {
  check(::setpgid(0, 0), "setpgid(0, 0)");
}

bool kill_process_group(int pgid, int sig) {
  if (pgid <= 1)
    throw UsageError("kill_process_group: refusing process group " + std::to_string(pgid));
  if (::kill(-pgid, sig) == 0) return true;
  if (errno == ESRCH || errno == EPERM) return false;
  throw_errno("kill(-" + std::to_string(pgid) + ", " + std::to_string(sig) + ")", errno);
}

}  // namespace sys
}  // namespace mproc::detail
