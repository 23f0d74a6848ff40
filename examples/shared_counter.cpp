// shared_counter.cpp — a counter updated by five processes under a lock.
//
// Mirrors: "Python Multiprocessing: True Parallelism for AI Tasks"
//          (seed 001_fc95d968a6b0e27f.txt), FAQ "How do you prevent race conditions using
//          multiprocessing.Lock?", the critical_section_access(lock, counter) program.
//
// What to notice
//  - The read-modify-write (read, "work", write back) is a critical section: without the lock
//    two processes could read the same value and one increment would be lost.
//  - A Value carries its own lock (counter.get_lock()); the seed passes a separate Lock, which
//    works the same way and is what this program does.
//  - The final value is exactly 5, in any order of the messages.
#include <mproc/process.hpp>
#include <mproc/shared.hpp>
#include <mproc/sync.hpp>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

void critical_section_access(mproc::Lock lock, mproc::Value<int> counter) {
  std::lock_guard guard(lock);
  const int current_value = counter.value();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // simulate some work
  counter.value() = current_value + 1;
  std::printf("Counter updated to: %d\n", counter.value());
  std::fflush(stdout);
}

int main() {
  mproc::Lock lock;
  mproc::Value<int> counter(0);
  std::vector<mproc::Process> processes;
  for (int i = 0; i < 5; ++i) {
    processes.emplace_back(critical_section_access, lock, counter);
    processes.back().start();
  }
  for (auto& p : processes) p.join();
  std::printf("Final counter value: %d\n", counter.value());
  return counter.value() == 5 ? 0 : 1;
}
