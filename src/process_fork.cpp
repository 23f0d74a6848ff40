// The fork start method: the child is a copy of the parent and runs the target directly.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include "detail/sys.hpp"
#include "forkserver.hpp"
#include "lifeline.hpp"
#include "process_state.hpp"

namespace mproc::detail {

void flush_stdio_before_fork() noexcept {
  // Output still buffered at fork time would be printed by both processes.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
}

void prepare_fork_child(int parent_pid, bool keep_lifeline_across_exec,
                        bool forked_by_main_thread) noexcept {
  if (!lifeline::arm_in_child(parent_pid, keep_lifeline_across_exec, forked_by_main_thread)) {
    ::_exit(128 + SIGKILL);  // the parent died before we could arm: do as the signal would
  }
  // Signals a parent thread had blocked must not stay blocked in the child.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void start_fork(ProcessState& state) {
  const int parent_pid = ::getpid();
  // Prepared here so the child only stores a pointer: every page a fork child writes is
  // copied, and allocating touches many.
  std::unique_ptr<Identity> child_identity(
      make_child_identity(state.name, parent_pid, identity().name));
  const bool main_thread = lifeline::on_main_thread();
  flush_stdio_before_fork();
  const pid_t pid = [] {
    lifeline::ForkScope scope;
    return sys::fork();
  }();
  if (pid == 0) {
    prepare_fork_child(parent_pid, /*keep_lifeline_across_exec=*/true, main_thread);
    reset_registry_after_fork();
    forkserver::forget_after_fork();
    adopt_identity(child_identity.release());
    run_child_and_exit(state.fork_target, /*use_exit=*/false);
  }
  track_child(state, pid);
}

void track_child(ProcessState& state, pid_t pid) {
  try {
    state.pidfd = sys::pidfd_open(pid);
  } catch (...) {
    // Without a pidfd the child cannot be tracked: do not leave it running or unreaped.
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    throw;
  }
  // Last: a nonzero pid publishes the pidfd to other threads (active_children()).
  state.pid.store(pid, std::memory_order_release);
}

}  // namespace mproc::detail
