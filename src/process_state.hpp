// process_state.hpp — what a Process is behind its handle, and this process's identity
// (internal).
#pragma once

#include <sys/types.h>

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
  pid_t pid = 0;
  pid_t owner = 0;  ///< the process that started it; only it may wait
  UniqueFd pidfd;
  UniqueFd status_fd;  ///< forkserver children only

  bool started() const noexcept { return pid != 0; }
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
  std::vector<int> path;            ///< e.g. {1, 2} for "Process-1:2"
  int parent_pid = 0;               ///< 0 in the main process
  std::string parent_name;
};
Identity& identity();
/// The name the next child gets: "Process-<path>:<n>".
std::string next_child_name();
/// Called in every new child (fork, and spawn/forkserver bootstrap) with its new identity:
/// forgets the parent's children and registry state.
void become_child(std::string name, int parent_pid, std::string parent_name);

// ---- the registry of live children ---------------------------------------------------------
void register_child(const std::shared_ptr<ProcessState>& state);
/// In a fork child: drop everything inherited (no locks are taken).
void reset_registry_after_fork() noexcept;

// ---- start strategies -------------------------------------------------------------------------
void start_fork(ProcessState& state);
void start_spawn(ProcessState& state);
void start_forkserver(ProcessState& state);

/// Runs `body` as a child's whole life and exits: 0 on return, 1 (after printing the
/// exception with the process name) on an exception. `use_exit` calls std::exit (a fresh
/// exec'd image) instead of _exit (a fork copy, whose statics belong to the parent).
[[noreturn]] void run_child_and_exit(const std::function<void()>& body, bool use_exit) noexcept;

/// Number of threads in this process (from /proc/self/stat).
int thread_count();

}  // namespace mproc::detail

namespace mproc::detail {
/// Flushes C and C++ output buffers so a fork does not duplicate pending output.
void flush_stdio_before_fork() noexcept;
/// First steps of every forked child (async-signal-safe): arm the lifeline (exit at once if
/// the parent is already gone) and unblock all signals.
void prepare_fork_child(int parent_pid, bool keep_lifeline_across_exec) noexcept;
}  // namespace mproc::detail
