// process.hpp — Process: run a callable in a child process (Python's multiprocessing.Process).
//
//     void work(int n) { ... }
//     mproc::Process p(work, 42);           // or Process(ProcessOptions{.name = "w"}, work, 42)
//     p.start();
//     p.join();
//     assert(p.exitcode() == 0);           // 1 if work threw, n after std::exit(n), -9 if killed
//
// Guarantees
//  - Children never outlive their parent: when the parent process dies (even by SIGKILL) the
//    kernel sends SIGKILL to every child it started, whichever thread started them.
//  - Every child is reaped: the destructor joins (non-daemon) or kills and reaps (daemon), and
//    at exit() live daemons are killed and non-daemons joined, as in Python.
//  - A child that fails to start (exec, setup) reports its errno: start() throws SystemError.
//  - No `if __name__ == "__main__"` guard: spawn and forkserver children enter mproc before
//    main() runs (after the program's static initialisers).
//
// Start methods
//  - fork: the child is a copy of the parent; any callable works (capturing lambdas too).
//  - forkserver: a helper process, started once by exec of this binary, forks the children;
//    the target must be transferable (see codec.hpp: function pointer, captureless lambda,
//    empty or encodable function object) and its arguments encodable.
//  - spawn: a fresh exec of this binary per child; same requirements as forkserver.
//  The default is fork while this process has one thread, forkserver once it has more (a fork
//  of a multi-threaded parent can inherit a lock another thread held). A target that only
//  fork can run (it captures state) uses fork whatever the thread count, with a warning.
//
// Thread safety: a Process object is not shared between threads without synchronisation;
// different Process objects may be used from different threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/callable.hpp"
#include "mproc/errors.hpp"

namespace mproc {

enum class StartMethod { fork, forkserver, spawn };

/// The method used when a Process or pool does not name one: the one set by
/// set_start_method(), else fork while single-threaded and forkserver otherwise.
StartMethod get_start_method();
/// Overrides the default start method for this process (nullopt restores the automatic choice).
void set_start_method(std::optional<StartMethod> method);

struct ProcessOptions {
  // Every member has a default initialiser so designated initialisers that name only some
  // of them compile cleanly under -Wextra (g++ 12 warns otherwise).
  std::string name{};                  ///< empty = "Process-N"
  bool daemon = false;                 ///< killed (not joined) when its owner goes away
  std::optional<StartMethod> start{};  ///< nullopt = get_start_method()
};

/// The calling process or one of its children, as seen from this process.
class ProcessInfo {
 public:
  ProcessInfo(int pid, std::string name) : pid_(pid), name_(std::move(name)) {}
  int pid() const noexcept { return pid_; }
  const std::string& name() const noexcept { return name_; }
  /// True while the process runs (a zombie is not alive).
  bool is_alive() const;

 private:
  int pid_;
  std::string name_;
};

namespace detail {
class ProcessState;
/// Runs the target in a fork child (a copy of the parent: any callable).
using ForkTarget = std::function<void()>;
/// Writes the target as a transferable call (detail/callable.hpp) for forkserver and spawn
/// children; empty when the target cannot travel.
using CallWriter = std::function<void(Encoder&)>;
}  // namespace detail

class Process {
 public:
  /// A process that will run `target(args...)`. Nothing starts until start().
  template <class F, class... Args>
  requires std::is_invocable_v < std::decay_t<F>
  &, std::decay_t<Args>&... > explicit Process(F&& target, Args&&... args)
      : Process(ProcessOptions{}, std::forward<F>(target), std::forward<Args>(args)...) {}

  template <class F, class... Args>
  requires std::is_invocable_v < std::decay_t<F>
  &, std::decay_t<Args>&... > Process(ProcessOptions options, F&& target, Args&&... args);

  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  /// Joins a started non-daemon child; kills and reaps a daemon child. Never throws.
  ~Process();

  /// Starts the child. Throws UsageError if already started; SystemError if the child could
  /// not be created or failed before running the target (the child's errno).
  void start();
  /// Waits for the child to end. Throws UsageError if never started.
  void join();
  /// Waits at most `timeout`; returns true if the child has ended.
  bool join_for(std::chrono::nanoseconds timeout);
  bool is_alive() const;
  /// The child's pid; 0 before start().
  int pid() const noexcept;
  const std::string& name() const noexcept;
  bool daemon() const noexcept;
  /// nullopt before start() and while running; the exit status after; -signal if killed;
  /// 1 if the target threw.
  std::optional<int> exitcode() const;
  /// SIGTERM / SIGKILL to the child; no-op if it already ended.
  void terminate();
  void kill();
  /// A descriptor that becomes readable (poll/epoll) when the child ends, for waiting on many
  /// processes and connections at once (Python's `sentinel`). Owned by the Process: valid
  /// until close() or destruction. UsageError before start().
  int sentinel() const;
  /// Releases the descriptors kept for an ended child (Python's `close()`). UsageError if the
  /// child is still running; afterwards only name(), pid(), daemon() and exitcode() work.
  void close();

 private:
  Process(ProcessOptions options, detail::ForkTarget fork_target, detail::CallWriter call_writer);
  std::shared_ptr<detail::ProcessState> state_;
};

/// This process (name "MainProcess" in the main process, the Process name in a child).
ProcessInfo current_process();
/// The process that started this one; nullopt in the main process.
std::optional<ProcessInfo> parent_process();
/// Every live child this process started (pool workers included).
std::vector<ProcessInfo> active_children();
/// CPUs this process may use: the affinity mask, limited by a cgroup v2 cpu.max quota
/// (rounded up), at least 1.
int cpu_count();

// ---- implementation -----------------------------------------------------------------------

template <class F, class... Args>
requires std::is_invocable_v < std::decay_t<F>
&, std::decay_t<Args>&... > Process::Process(ProcessOptions options, F&& target, Args&&... args)
    : state_(nullptr) {
  // One copy of the target and its arguments serves both ways of starting: called directly in
  // a fork child, or encoded (only when a forkserver/spawn start needs it).
  auto bound = std::make_shared<std::tuple<std::decay_t<F>, std::decay_t<Args>...>>(
      std::forward<F>(target), std::forward<Args>(args)...);
  detail::ForkTarget fork_target = [bound] {
    std::apply([](auto& fn, auto&... a) { std::invoke(fn, a...); }, *bound);
  };
  detail::CallWriter call_writer;
  if constexpr (detail::transferable_target<std::decay_t<F>, std::decay_t<Args>...>) {
    call_writer = [bound](Encoder& out) {
      std::apply(
          [&out](const auto&... parts) { detail::encode_call_discarding_result(out, parts...); },
          *bound);
    };
  }
  *this = Process(std::move(options), std::move(fork_target), std::move(call_writer));
}

}  // namespace mproc
