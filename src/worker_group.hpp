// worker_group.hpp — the process group each worker leads (pool and one-shot map workers;
// internal).
//
// A worker leads a process group of its own, which the processes its tasks start by hand
// (fork(), system(), posix_spawn, an mproc::Process) join. Its owner SIGKILLs the group when
// the worker ends (crash, timeout, forced cancel, terminate, retirement, a normal exit), and
// the owner's lifeline, armed for the group, has the kernel SIGKILL it when the owner dies.
// Without this a task's children would outlive a killed worker (PDEATHSIG covers only mproc's
// own children). Being in its own group also keeps a terminal's Ctrl-C away from the worker.
// A descendant that leaves the group (setsid, setpgid) escapes this.
#pragma once

#include <string_view>

namespace mproc::detail::worker_group {

/// In the worker, first thing: leads a new process group and arms `owner_lifeline` (a
/// descriptor of the owner's lifeline read end that this process holds; -1 = none) to kill
/// it, then closes `owner_lifeline`. Exits at once, as SIGKILL would, if the owner is gone.
/// Throws SystemError if setpgid fails.
void lead(int owner_lifeline);

/// In the owner: SIGKILLs what is left of the group led by worker `leader`. Only before the
/// worker is reaped, while its pid (the group's id) cannot have been reused. A failure is
/// logged as `who`'s, never thrown.
void kill(int leader, std::string_view who) noexcept;

}  // namespace mproc::detail::worker_group
