// service.hpp — long-lived resources mproc keeps on purpose (internal).
//
// A few objects outlive any single call by design: the lifeline pipe that kills children when
// this process dies, and the forkserver with its control socket. Leak checks (tests/support)
// subtract these; everything else a call creates must be gone when it returns.
#pragma once

#include <vector>

namespace mproc::detail {

struct ServiceResources {
  std::vector<int> pids;  ///< helper processes (the forkserver)
  std::vector<int> fds;   ///< descriptors held for the whole life of the process
};

/// What mproc holds on purpose right now in this process.
ServiceResources service_resources();

}  // namespace mproc::detail
