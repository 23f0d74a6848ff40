// Tests about what survives a process: the test process becomes a child subreaper, so every
// descendant orphaned by a death below it (pool workers, a forkserver, the children a task
// forked by hand) is re-parented to it, where it can be seen, waited for and reaped.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "support/child_helpers.hpp"
#include "support/leak_check.hpp"

namespace mproc::test {

/// PR_SET_CHILD_SUBREAPER for the scope's lifetime.
class SubreaperScope {
 public:
  SubreaperScope() { ok_ = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0; }
  ~SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  SubreaperScope(const SubreaperScope&) = delete;
  SubreaperScope& operator=(const SubreaperScope&) = delete;
  bool ok() const noexcept { return ok_; }

 private:
  bool ok_ = false;
};

/// The /proc/<pid>/stat line of `pid` (for failure messages).
inline std::string stat_line(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  return line.empty() ? "pid " + std::to_string(pid) + " (gone)" : line;
}

/// Waits up to `timeout` for every child of this process that is not in `keep` to end, reaping
/// them as they do. Returns the stat lines of those still running at the deadline (then killed
/// and reaped, so that one failure does not leak into the next test).
inline std::vector<std::string> reap_children_within(std::chrono::milliseconds timeout,
                                                     const std::set<int>& keep = {}) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::vector<int> running;
    for (int pid : child_pids()) {
      if (keep.count(pid) != 0) continue;
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) continue;  // ended: reaped now
      running.push_back(pid);
    }
    if (running.empty()) return {};
    if (std::chrono::steady_clock::now() > deadline) {
      std::vector<std::string> survivors;
      for (int pid : running) {
        survivors.push_back(stat_line(pid));
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
      }
      return survivors;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace mproc::test
