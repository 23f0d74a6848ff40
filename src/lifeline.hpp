// lifeline.hpp — children die when their parent dies (internal).
//
// PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, not the process, so a
// child started from a short-lived thread would be killed early. mproc uses it only for
// children forked by the main thread (which lives as long as the process) and a lifeline pipe
// for the others: the parent holds both ends for its whole life and never writes. Each child opens
// its own open-file description of the read end (via /proc/self/fd) and arms it with
// O_ASYNC + F_SETSIG(SIGKILL) + F_SETOWN(self), then drops its inherited copies of both ends.
// When the parent process dies its write end closes; the kernel then signals every armed
// reader with SIGKILL (pipe_release -> kill_fasync). A child that armed after its parent had
// already died sees POLLHUP at once and exits. The armed descriptor survives exec, so spawn
// and forkserver children are covered too, and the forkserver arms its own children.
#pragma once

namespace mproc::detail::lifeline {

/// Creates this process's lifeline if it does not exist yet. Thread-safe. Call in the parent
/// before fork().
void ensure();

/// In a freshly forked child (async-signal-safe): arms SIGKILL-on-parent-death, drops the
/// inherited lifeline descriptors and forgets them, so the child creates its own lifeline
/// for its own children. `forked_by_main_thread` (computed in the parent) selects
/// PR_SET_PDEATHSIG; otherwise the lifeline is armed, and `keep_across_exec` leaves the armed
/// descriptor open across exec. Returns false if the parent is already gone (the caller
/// should _exit at once).
bool arm_in_child(int parent_pid, bool keep_across_exec, bool forked_by_main_thread) noexcept;

/// In a process that leads its own process group (a pool worker): opens a description of the
/// parent's lifeline read end `parent_read_fd` (a descriptor of it this process holds) and
/// arms it to SIGKILL this process's whole *group* when the parent dies, so that descendants
/// which stayed in the group (children a task forked by hand, a shell it ran) die with the
/// parent too, not only this process. The armed descriptor is kept for the process's life.
/// Returns false if the parent is already gone.
bool arm_group_kill(int parent_read_fd) noexcept;

/// True when the calling thread is the process's main thread.
bool on_main_thread() noexcept;

/// Marks the calling thread as forking on mproc's behalf for its lifetime. A fork() made
/// without one (by the program itself, or another library) gets a child that simply drops
/// the inherited lifeline (a pthread_atfork handler): it must not hold this process's write
/// end open, or this process's children would outlive it.
class ForkScope {
 public:
  ForkScope() noexcept;
  ~ForkScope();
  ForkScope(const ForkScope&) = delete;
  ForkScope& operator=(const ForkScope&) = delete;
};

/// The lifeline descriptors this process holds (for leak accounting), -1 when absent.
int read_fd() noexcept;
int write_fd() noexcept;

}  // namespace mproc::detail::lifeline
