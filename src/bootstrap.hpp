// bootstrap.hpp — how an exec'd copy of this binary becomes an mproc child (internal).
//
// A spawn child and the forkserver are started by exec of /proc/self/exe with
// MPROC_BOOTSTRAP=<role>:<fd> in the environment. A static constructor in libmproc (linked
// after the program's own objects, so it runs after their static initialisers) sees the
// variable, removes it, and runs the role instead of main(): no `__main__` guard is needed.
//
// Spawn start message, read from <fd> (a socket; little-endian):
//
//     0        8
//     +--------+----------------------------------------------------------------+
//     | u64 len| body (len bytes)                                               |
//     +--------+----------------------------------------------------------------+
//     body = codec-encoded: u32 magic 'MPSB', u32 version (1), std::string name,
//            i32 parent pid, std::string parent name, u64 max_message_size,
//            std::vector<int> inherited fds,
//            then the transferable call (detail/callable.hpp) reading those fds by index.
#pragma once

#include <cstdint>

namespace mproc::detail::bootstrap {

inline constexpr std::uint32_t spawn_magic = 0x4253504du;  // "MPSB"
inline constexpr std::uint32_t spawn_version = 1;
inline constexpr const char* env_name = "MPROC_BOOTSTRAP";

/// Referenced by Process::start so the static-archive member holding the bootstrap
/// constructor is always linked into programs that start processes.
void anchor() noexcept;

}  // namespace mproc::detail::bootstrap
