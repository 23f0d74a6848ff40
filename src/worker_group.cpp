// worker_group.cpp — see worker_group.hpp.
#include "worker_group.hpp"

#include <signal.h>
#include <unistd.h>

#include <exception>
#include <string>

#include "detail/sys.hpp"
#include "lifeline.hpp"
#include "mproc/log.hpp"

namespace mproc::detail::worker_group {

void lead(int owner_lifeline) {
  sys::become_process_group_leader();
  if (owner_lifeline < 0) return;
  const bool owner_alive = lifeline::arm_group_kill(owner_lifeline);
  ::close(owner_lifeline);  // our copy; the armed description stays open
  if (!owner_alive) ::_exit(128 + SIGKILL);
}

void kill(int leader, std::string_view who) noexcept {
  try {
    if (leader > 1) sys::kill_process_group(leader, SIGKILL);
  } catch (const std::exception& e) {
    log(LogLevel::warning,
        std::string(who) + ": cannot kill a worker's process group: " + e.what());
  }
}

}  // namespace mproc::detail::worker_group
