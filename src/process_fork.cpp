// The fork start method: the child is a copy of the parent and runs the target directly.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

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

void prepare_fork_child(int parent_pid, bool keep_lifeline_across_exec) noexcept {
  if (!lifeline::arm_in_child(parent_pid, keep_lifeline_across_exec)) {
    ::_exit(128 + SIGKILL);  // the parent died before we could arm: do as the signal would
  }
  // Signals a parent thread had blocked must not stay blocked in the child.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void start_fork(ProcessState& state) {
  const int parent_pid = ::getpid();
  std::string parent_name = identity().name;
  flush_stdio_before_fork();
  const pid_t pid = [] {
    lifeline::ForkScope scope;
    return sys::fork();
  }();
  if (pid == 0) {
    prepare_fork_child(parent_pid, /*keep_lifeline_across_exec=*/true);
    reset_registry_after_fork();
    forkserver::forget_after_fork();
    become_child(state.name, parent_pid, std::move(parent_name));
    run_child_and_exit(state.fork_target, /*use_exit=*/false);
  }
  state.pid = pid;
  try {
    state.pidfd = sys::pidfd_open(pid);
  } catch (...) {
    // Without a pidfd the child cannot be tracked: do not leave it running or unreaped.
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    state.pid = 0;
    throw;
  }
}

}  // namespace mproc::detail
