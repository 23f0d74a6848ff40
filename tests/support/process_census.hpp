#pragma once
// What this process holds right now, read from /proc: its descriptors, its children and the
// names in a directory. Free of GoogleTest, so that the soak and the leak check share it.
// Written apart from libmproc's own /proc helpers (sys::open_fds) on purpose: a leak check
// must not rely on the code it checks.

#include <set>
#include <string>

namespace mproc::test {

/// The descriptors open in this process (the one used to list them excluded).
std::set<int> open_fds();

/// What descriptor `fd` refers to ("?" when it cannot be read).
std::string fd_target(int fd);

/// Children of this process (all threads), zombies included.
std::set<int> child_pids();

/// The entries of `dir_path` whose names start with `prefix`.
std::set<std::string> names_in(const char* dir_path, const char* prefix);

}  // namespace mproc::test
