// process_many.cpp — start several processes in a loop, then join them all.
//
// Mirrors: "Python Multiprocessing: True Parallelism for AI Tasks"
//          (seed 001_fc95d968a6b0e27f.txt), section "4. Running Multiple Processes in
//          Parallel", the task(name) program with names A, B, C.
//
// What to notice
//  - The same shape as Python: keep the processes in a container, start each as it is
//    created, then join each one. mproc::Process is movable (not copyable), so it lives in a
//    std::vector like any other owning object.
//  - Pass values, not pointers: each std::string is copied into its child, which works with
//    every start method. A `const char*` would only mean something in a fork child (a copy of
//    this address space); a spawn or forkserver child cannot be given one at all.
//  - The children run at the same time, so the order of their lines may differ from run to run.
//  - Forgetting join() is not a leak: destroying a started Process joins it (a daemon one is
//    killed instead). Joining explicitly still says what you mean.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <string>
#include <vector>

void task(std::string name) {
  std::printf("Running task: %s (in %s, pid %d)\n", name.c_str(),
              mproc::current_process().name().c_str(), mproc::current_process().pid());
}

int main() {
  const std::vector<std::string> names = {"A", "B", "C"};
  std::vector<mproc::Process> processes;

  for (const auto& name : names) {
    processes.emplace_back(task, name);
    processes.back().start();
  }
  for (auto& process : processes) {
    process.join();
  }

  int failures = 0;
  for (const auto& process : processes) {
    std::printf("%s exited with %d\n", process.name().c_str(), *process.exitcode());
    failures += *process.exitcode() != 0;
  }
  return failures == 0 ? 0 : 1;
}
