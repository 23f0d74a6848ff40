// process_names.cpp — how many CPUs, and who is who: pid and name of each process.
//
// Mirrors: "Multiprocessing to Parrallel and Speed Up" (seed 002_ef51f5f6559abac5.txt),
//          "Step 1: Make Sure to have Sufficent Resources" (counting CPU cores from code) and
//          "Step 2: Use the multiprocessing Library", the multiprocessing.Process variant whose
//          four children print "Time | Process ID | Process Name".
//
// What to notice
//  - cpu_count() counts the CPUs this program may actually use (affinity mask and cgroup
//    quota), so inside a container limited to 2 CPUs it says 2, not the host's 64.
//  - The parent is "MainProcess"; children are "Process-1", "Process-2", ... in creation order,
//    as in Python. ProcessOptions{.name = ...} chooses a name instead.
//  - Every child prints nearly the same start time and they all finish together: they run side
//    by side, not one after another. (The tutorial's children work for a while; here each sleeps
//    0.3 s so the tour stays quick.)
//  - No `if __name__ == "__main__":` guard and no freeze_support() call.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

// Wall-clock seconds since the epoch, like Python's time.time().
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void new_process() {
  const auto me = mproc::current_process();
  std::printf("Time: %.2f | Process ID: %d | Process Name: %s | started\n", now_seconds(), me.pid(),
              me.name().c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::printf("Time: %.2f | Process ID: %d | Process Name: %s | done\n", now_seconds(), me.pid(),
              me.name().c_str());
}

int main() {
  std::printf("cpu_count() = %d\n", mproc::cpu_count());
  const auto me = mproc::current_process();
  std::printf("parent: Process ID: %d | Process Name: %s\n", me.pid(), me.name().c_str());

  const auto start = std::chrono::steady_clock::now();
  std::vector<mproc::Process> processes;
  for (int i = 0; i < 4; ++i) {
    processes.emplace_back(new_process);
  }
  processes.emplace_back(mproc::ProcessOptions{.name = "NamedWorker"}, new_process);
  for (auto& process : processes) process.start();
  for (auto& process : processes) process.join();
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;

  std::printf("%zu processes of 0.3 s each took %.2f s in total\n", processes.size(),
              elapsed.count());
  return 0;
}
