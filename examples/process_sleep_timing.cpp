// process_sleep_timing.cpp — the same work sequentially and in parallel processes, timed.
//
// Mirrors: "Python Multiprocessing: Unleashing Parallelism for CPU-Bound Tasks"
//          (seed 000_034840ab600c0838.txt), section "3. Basic Multiprocessing Example":
//          do_something(seconds) called twice in a row, then in two Processes.
//          Part 3 is the Process-only form of the ten-task run in section "4. Using
//          ProcessPoolExecutor" (the executor version comes with ProcessPoolExecutor).
//
// What to notice
//  - Timing uses std::chrono::steady_clock, the counterpart of time.perf_counter().
//  - The tutorial sleeps 1 s per call; this program sleeps 0.3 s so the tour stays quick.
//    Sequential: about 2 x 0.3 s. Two processes: about 0.3 s, plus a millisecond or so to
//    start them.
//  - Ten sleeping processes also take about 0.3 s on a 2-core machine: sleeping does not
//    use a CPU. CPU-bound work would not scale past the number of cores (see
//    sqrt_serial_vs_processes.cpp).
//  - The argument is a std::chrono duration, not a bare number of seconds.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

void do_something(std::chrono::milliseconds duration) {
  const double seconds = std::chrono::duration<double>(duration).count();
  std::printf("Sleeping for %.1f second(s)...\n", seconds);
  std::this_thread::sleep_for(duration);
  std::printf("Done sleeping!\n");
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int main() {
  constexpr auto kNap = 300ms;  // the tutorial's 1 second, scaled down
  std::printf("(each call sleeps 0.3 s; the tutorial uses 1 s)\n\n");

  std::printf("-- 1. two calls, one after the other\n");
  auto start = std::chrono::steady_clock::now();
  do_something(kNap);
  do_something(kNap);
  std::printf("Finished in %.2f second(s)  (expect about 0.6)\n\n", seconds_since(start));

  std::printf("-- 2. two calls in two processes\n");
  start = std::chrono::steady_clock::now();
  mproc::Process p1(do_something, kNap);
  mproc::Process p2(do_something, kNap);
  p1.start();
  p2.start();
  p1.join();  // wait for p1 to complete
  p2.join();  // wait for p2 to complete
  std::printf("Finished in %.2f second(s)  (expect about 0.3)\n\n", seconds_since(start));

  std::printf("-- 3. ten calls in ten processes\n");
  start = std::chrono::steady_clock::now();
  std::vector<mproc::Process> processes;
  for (int i = 0; i < 10; ++i) {
    processes.emplace_back(do_something, kNap);
    processes.back().start();
  }
  for (auto& process : processes) process.join();
  std::printf("Finished in %.2f second(s)  (expect about 0.3, not 3.0)\n", seconds_since(start));
  return 0;
}
