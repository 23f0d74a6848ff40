// spawn.hpp — the spawn start method's child side (internal).
#pragma once

#include <string>
#include <vector>

#include "mproc/codec.hpp"

namespace mproc::detail::spawn {

/// Exec's a fresh copy of this binary that will run the call in `message` (the bytes after
/// the bootstrap body's fixed fields; see bootstrap.hpp). Returns the child's pid; throws
/// SystemError with the child's errno if exec failed. `keep_fds` stay open in the child.
int exec_self(const std::string& role, int channel_fd, const std::vector<int>& keep_fds);

/// Body of a spawn child: reads the start message from `fd`, runs the call, exits.
[[noreturn]] void run_child(int fd) noexcept;

}  // namespace mproc::detail::spawn
