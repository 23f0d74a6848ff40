// process_state.hpp — what a Process is behind its handle, and this process's identity
// (internal).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mproc/detail/unique_fd.hpp"
#include "mproc/process.hpp"

namespace mproc::detail {

/// How a started child is observed and reaped.
///  - direct children (fork, spawn): pidfd readable on exit, reaped with waitid(P_PIDFD);
///  - forkserver children are the forkserver's: pidfd for signals, and a status socket on
///    which the forkserver writes the wait status (EOF = the forkserver died, and with it the
///    child, killed through its lifeline).
class ProcessState {
 public:
  std::string name;
  bool daemon = false;
  StartMethod method = StartMethod::fork;
  ForkTarget fork_target;
  CallWriter call_writer;

  // Set by start(); immutable afterwards.
  std::atomic<pid_t> pid{0};  ///< read by other threads (active_children) during start()
  pid_t owner = 0;            ///< the process that started it; only it may wait
  UniqueFd pidfd;
  UniqueFd status_fd;  ///< forkserver children only

  bool started() const noexcept { return pid != 0; }
  bool closed = false;  ///< close() released the descriptors
  /// Waits up to `timeout` (nullopt = forever) and reaps. True once the child has ended.
  bool wait(std::optional<std::chrono::nanoseconds> timeout);
  std::optional<int> exitcode();
  /// Sends `sig` unless the child already ended.
  void signal(int sig);
  /// True if the calling process started this child.
  bool owned_here() const noexcept;

 private:
  std::mutex mu_;
  std::optional<int> exitcode_;
  bool reap_locked(bool block);
};

// ---- this process's identity ------------------------------------------------------------
struct Identity {
  std::string name = "MainProcess";
  std::vector<int> path;  ///< e.g. {1, 2} for "Process-1:2"
  int parent_pid = 0;     ///< 0 in the main process
  std::string parent_name;
  Identity* previous = nullptr;  ///< the identity this one replaced (kept reachable)
};
Identity& identity();
/// The name the next child gets: "Process-<path>:<n>".
std::string next_child_name();
/// A child's identity, built by the parent before fork so that the child only swaps a pointer
/// (allocating in a fork child touches, and so copies, many pages).
Identity* make_child_identity(std::string name, int parent_pid, std::string parent_name);
/// In the child (async-signal-safe): makes `child` this process's identity.
void adopt_identity(Identity* child) noexcept;
/// make_child_identity + adopt_identity, for spawn and forkserver children.
void become_child(std::string name, int parent_pid, std::string parent_name);

// ---- the registry of live children ---------------------------------------------------------
void register_child(const std::shared_ptr<ProcessState>& state);
/// In a fork child: drop everything inherited (no locks are taken).
void reset_registry_after_fork() noexcept;

// ---- start strategies -------------------------------------------------------------------------
void start_fork(ProcessState& state);
void start_spawn(ProcessState& state);
void start_forkserver(ProcessState& state);
/// Takes a pidfd for the new direct child `pid` and records both in `state`; if that fails,
/// kills and reaps the child before rethrowing.
void track_child(ProcessState& state, pid_t pid);

/// Runs `body` as a child's whole life and exits: 0 on return, 1 (after printing the
/// exception with the process name) on an exception. `use_exit` calls std::exit (a fresh
/// exec'd image) instead of _exit (a fork copy, whose statics belong to the parent).
[[noreturn]] void run_child_and_exit(const std::function<void()>& body, bool use_exit) noexcept;

/// Flushes stdout, stderr and std::cout if they hold pending output.
void flush_standard_streams() noexcept;

/// Number of threads in this process (from /proc/self/stat).
int thread_count();

}  // namespace mproc::detail

namespace mproc::detail {
/// Flushes C and C++ output buffers so a fork does not duplicate pending output.
void flush_stdio_before_fork() noexcept;
/// First steps of every forked child (async-signal-safe): arm death-with-parent (exit at once
/// if the parent is already gone; see lifeline.hpp) and unblock all signals.
void prepare_fork_child(int parent_pid, bool keep_lifeline_across_exec,
                        bool forked_by_main_thread) noexcept;
}  // namespace mproc::detail
