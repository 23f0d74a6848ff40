// A GoogleTest listener that fails any test leaving behind a descriptor, a child process
// (running or zombie), a /dev/shm name or a temporary file of mproc's. Resources mproc keeps
// on purpose (detail::service_resources) are not leaks.
#include "support/leak_check.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "mproc/detail/service.hpp"
#include "support/process_census.hpp"

namespace mproc::test {

Snapshot Snapshot::take() {
  Snapshot s;
  s.fds = open_fds();
  s.children = child_pids();
  s.shm = names_in("/dev/shm", "mproc");
  s.tmp = names_in("/tmp", "mproc");
  return s;
}

std::vector<std::string> leaks_since(const Snapshot& before) {
  // Children may still be on their way out (a killed process is reaped asynchronously by
  // whoever owns it); give them a moment before calling anything a leak.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  std::vector<std::string> leaks;
  for (;;) {
    leaks.clear();
    const Snapshot now = Snapshot::take();
    const auto service = detail::service_resources();
    const std::set<int> service_fds(service.fds.begin(), service.fds.end());
    const std::set<int> service_pids(service.pids.begin(), service.pids.end());
    for (int fd : now.fds) {
      if (!before.fds.count(fd) && !service_fds.count(fd)) {
        leaks.push_back("fd " + std::to_string(fd) + " -> " + fd_target(fd));
      }
    }
    for (int pid : now.children) {
      if (!before.children.count(pid) && !service_pids.count(pid)) {
        std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
        std::string line;
        std::getline(stat, line);
        leaks.push_back("child process " + line);
      }
    }
    for (const auto& name : now.shm) {
      if (!before.shm.count(name)) leaks.push_back("/dev/shm/" + name);
    }
    for (const auto& name : now.tmp) {
      if (!before.tmp.count(name)) leaks.push_back("/tmp/" + name);
    }
    if (leaks.empty() || std::chrono::steady_clock::now() > deadline) return leaks;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void LeakCheckListener::OnTestStart(const ::testing::TestInfo&) {
  before_ = Snapshot::take();
}

void LeakCheckListener::OnTestEnd(const ::testing::TestInfo& info) {
  const auto leaks = leaks_since(before_);
  if (leaks.empty()) return;
  std::ostringstream msg;
  msg << info.test_suite_name() << "." << info.name() << " leaked:";
  for (const auto& leak : leaks) msg << "\n  " << leak;
  // OnTestEnd runs after the test's result is final; report loudly and make the binary fail.
  std::fprintf(stderr, "LEAK CHECK FAILED: %s\n", msg.str().c_str());
  failed_ = true;
}

void LeakCheckListener::OnTestProgramEnd(const ::testing::UnitTest&) {
  if (failed_) std::_Exit(3);
}

}  // namespace mproc::test
