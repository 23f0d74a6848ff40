// forkserver.hpp — the forkserver start method (internal).
//
// A helper process, started once (lazily) by exec of this binary, forks every forkserver
// child. Children therefore never inherit this process's threads, locks or memory, and start
// fast (a fork of a small, single-threaded process). The helper is a service resource: it
// lives until this process exits, and dies with it through its lifeline.
#pragma once

#include <vector>

#include "process_state.hpp"

namespace mproc::detail::forkserver {

/// In a fork child: the parent's forkserver is not ours; forget it (its descriptors are closed).
void forget_after_fork() noexcept;

/// The forkserver's pid and the descriptors kept for it, if it runs.
void add_service_resources(std::vector<int>& pids, std::vector<int>& fds);

/// The forkserver's main loop, entered from the bootstrap in the helper process.
[[noreturn]] void serve(int control_fd) noexcept;

}  // namespace mproc::detail::forkserver
