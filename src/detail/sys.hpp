// sys.hpp — the one place that calls the operating system and reads errno (internal).
//
// Every wrapper:
//  - retries EINTR where retrying is right (read, write, poll with a recomputed deadline,
//    waitid, sendmsg/recvmsg, accept…), and never retries close();
//  - turns -1/errno into mproc::SystemError with one message shape,
//    `pipe2(): Too many open files`;
//  - consults the failure-injection hook first, so tests can prove error paths that a real
//    system will not produce on demand (root ignores RLIMIT_NPROC, for instance).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mproc/detail/unique_fd.hpp"

struct iovec;
struct msghdr;
struct pollfd;

namespace mproc::detail::sys {

/// Throws SystemError for `err` with `call` as the call description.
[[noreturn]] void throw_errno(std::string_view call, int err);

/// Returns `rc` unchanged, or throws SystemError built from errno when rc == -1.
long check(long rc, std::string_view call);

// ---- failure injection (tests) --------------------------------------------------------
/// The next `count` calls of the wrapper named `call` (e.g. "fork", "pipe2", "write") fail
/// with `err` before reaching the kernel. count = 0 clears. Thread-safe.
void inject_failure(std::string_view call, int err, int count = 1);
/// Returns the injected errno for `call` and consumes one use, or 0. Async-signal-safe.
int injected(const char* call) noexcept;

// ---- descriptors ----------------------------------------------------------------------
struct FdPair {
  UniqueFd first;
  UniqueFd second;
};
/// pipe2(O_CLOEXEC | flags): first = read end, second = write end.
FdPair pipe(int flags = 0);
/// socketpair(AF_UNIX, type | SOCK_CLOEXEC).
FdPair socketpair(int type);
/// close() once, never retried (Linux always releases the descriptor). Returns errno or 0.
int close(int fd) noexcept;
void set_cloexec(int fd, bool on);
/// Descriptors currently open in this process (from /proc/self/fd), sorted.
std::vector<int> open_fds();

// ---- byte I/O ---------------------------------------------------------------------------
/// read(2) retrying EINTR. Returns bytes read, 0 at EOF. Throws SystemError otherwise.
std::size_t read(int fd, void* buf, std::size_t n);
/// Reads exactly buf.size() bytes. Returns false if EOF came first (partial data is an
/// error: *partial is set to the byte count read when non-null).
bool read_exact(int fd, std::span<std::byte> buf, std::size_t* partial = nullptr);
/// open(path, O_RDONLY | O_CLOEXEC) of an existing file.
UniqueFd open_read_only(const char* path);
/// pread(2) retrying EINTR: up to n bytes at `offset`; 0 at end of file.
std::size_t pread(int fd, void* buf, std::size_t n, std::uint64_t offset);
/// isatty(3): true if fd is a terminal (false for anything else, a closed fd included).
bool isatty(int fd) noexcept;
/// CLOCK_MONOTONIC_COARSE in nanoseconds: a few ns per call, a few ms of resolution, for code
/// that checks the time on every call of a hot path.
std::int64_t monotonic_coarse_ns() noexcept;
/// write(2) / writev(2) retrying EINTR. Return the bytes written (possibly fewer than asked).
/// On a pipe, a reader that is gone is SystemError(EPIPE); see absorb_sigpipe for the signal.
std::size_t write(int fd, const void* buf, std::size_t n);
std::size_t writev(int fd, const struct iovec* iov, int count);
/// If SIGPIPE's disposition is still the default (terminate the process), installs a handler
/// that does nothing (SA_RESTART), so that writing to a pipe whose reader is gone fails with
/// EPIPE instead of killing the process. A caught signal, unlike SIG_IGN, is reset to the
/// default by exec, so programs this process starts are unaffected. A disposition the program
/// chose itself is left alone. Returns true if it installed the handler.
bool absorb_sigpipe();
/// send(MSG_NOSIGNAL) of every byte on a socket, retrying EINTR and short writes.
void send_all(int fd, std::span<const std::byte> data);
/// sendmsg/recvmsg retrying EINTR. recvmsg returns 0 at EOF.
std::size_t sendmsg(int fd, const msghdr* msg, int flags);
std::size_t recvmsg(int fd, msghdr* msg, int flags);

/// poll(2) with a deadline: retries EINTR with the remaining time. timeout nullopt = forever.
/// Returns the number of ready descriptors (0 on timeout).
int poll(pollfd* fds, std::size_t nfds, std::optional<std::chrono::nanoseconds> timeout);

// ---- sockets -------------------------------------------------------------------------------
/// shutdown(2); `how` is SHUT_RD, SHUT_WR or SHUT_RDWR.
void shutdown(int fd, int how);

// ---- processes ----------------------------------------------------------------------------
pid_t fork();
UniqueFd pidfd_open(pid_t pid);
/// pidfd_send_signal; returns false when the process is already gone (ESRCH).
bool pidfd_send_signal(int pidfd, int sig);
/// waitid(P_PIDFD, WEXITED | options). Returns nullopt if WNOHANG and not exited.
/// The result is the raw wait status encoded as: >= 0 exit code, < 0 -signal.
std::optional<int> waitid_pidfd(int pidfd, int options);

// ---- shared memory and futexes ---------------------------------------------------------------
/// memfd_create(name, MFD_CLOEXEC): anonymous memory that vanishes with its last reference.
UniqueFd memfd_create(const char* name);
/// ftruncate(2) then posix_fallocate(3), so that a full tmpfs is an error now (ENOSPC) rather
/// than a SIGBUS at first touch.
void allocate(int fd, std::size_t size);
/// Size of the file behind fd (fstat).
std::size_t file_size(int fd);
/// mmap(PROT_READ | PROT_WRITE, MAP_SHARED) of the whole file.
void* map_shared(int fd, std::size_t size);
/// munmap; failures are reported through the logger (used from destructors).
void unmap(void* addr, std::size_t size) noexcept;
/// FUTEX_WAIT (shared, not FUTEX_PRIVATE_FLAG: the word lives in memory mapped by several
/// processes) while *word == expected. Returns false on timeout; true when woken, when the
/// value differed, or on a signal (EINTR: callers re-check their condition in a loop).
bool futex_wait(const std::uint32_t* word, std::uint32_t expected,
                std::optional<std::chrono::nanoseconds> timeout);
/// FUTEX_WAKE (shared): wakes up to `count` waiters; returns how many were woken.
int futex_wake(const std::uint32_t* word, int count);
/// shm_open(name, flags | O_CLOEXEC, mode) of a POSIX named segment ("/name").
UniqueFd shm_open(const std::string& name, int flags, unsigned mode);
/// shm_unlink(name).
void shm_unlink(const std::string& name);
/// True if `pid` exists and is not a zombie (kill(pid, 0), then /proc/<pid>/stat). A reused
/// pid reads as alive: callers that recover resources err on the side of not recovering.
bool process_alive(pid_t pid) noexcept;
/// This thread's kernel id, cached per thread (refreshed in a fork child).
pid_t this_thread_id() noexcept;

// ---- pool engine -------------------------------------------------------------------------
/// fcntl(F_DUPFD_CLOEXEC): a second descriptor for the same open file.
UniqueFd dup(int fd);
/// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): a counter other threads can wake a poll() with.
UniqueFd eventfd();
/// Adds 1 to the eventfd counter (never blocks: the counter cannot overflow in practice).
void eventfd_signal(int fd);
/// Resets the eventfd counter to 0; a no-op when it is already 0.
void eventfd_drain(int fd);
/// setrlimit(RLIMIT_AS, bytes) for this process: allocations beyond it fail (std::bad_alloc).
void limit_address_space(std::size_t bytes);
/// signal(sig, SIG_IGN) through sigaction.
void ignore_signal(int sig);
/// setpgid(0, 0): the calling process leads a new process group (its id = the caller's pid).
void become_process_group_leader();
/// kill(-pgid, sig): signals every process in group `pgid`; false if the group is empty
/// (ESRCH) or holds only processes we may not signal (EPERM).
bool kill_process_group(int pgid, int sig);

}  // namespace mproc::detail::sys
