// lock_printing.cpp — let one process at a time print.
//
// Mirrors: "Python Multiprocessing: True Parallelism for AI Tasks"
//          (seed 001_fc95d968a6b0e27f.txt), section "Example: Preventing Race Conditions with
//          Lock", the print_with_lock(lock, text) program.
//
// What to notice
//  - std::lock_guard replaces acquire()/try/finally/release(): the lock is released even if
//    the body throws.
//  - The lock is robust: if a process died while printing, the next one would still get the
//    lock (and lock.previous_owner_died() would say so) instead of everyone hanging.
#include <mproc/process.hpp>
#include <mproc/sync.hpp>

#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

void print_with_lock(mproc::Lock lock, std::string text) {
  std::lock_guard guard(lock);
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
}

int main() {
  mproc::Lock lock;
  std::vector<mproc::Process> processes;
  for (int i = 0; i < 3; ++i) {
    processes.emplace_back(print_with_lock, lock, "Message " + std::to_string(i));
    processes.back().start();
  }
  for (auto& p : processes) p.join();
  return 0;
}
