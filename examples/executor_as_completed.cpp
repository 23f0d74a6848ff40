// executor_as_completed.cpp — results in the order tasks finish, not the order they were sent.
//
// Mirrors: "Python Multiprocessing: Unleashing Parallelism for CPU-Bound Tasks"
//          (seed 000_034840ab600c0838.txt), section 4, "Using as_completed to get results as
//          they become available": ten do_something(1) submitted, then
//          `for future in concurrent.futures.as_completed(futures): print(future.result())`.
//
// What to notice
//  - mproc::as_completed(futures) yields each future as it completes (an input range, used in
//    a range-for), like concurrent.futures.as_completed.
//  - The tutorial's ten tasks all sleep one second, so their completion order is just the
//    scheduling order. Here they sleep different times, submitted longest first (0.45 s down
//    to 0 s), on ten workers so that all of them sleep at once: they finish, and are printed,
//    shortest first, the reverse of the submission order.
//  - Ten workers on a two-core machine is fine for tasks that sleep (or wait for I/O): they
//    use no CPU meanwhile. The loop takes about the longest sleep, 0.45 s. (The tutorial's
//    default cpu_count() workers and 10 x 1 s would take 5 s on two cores; the durations were
//    shrunk to keep the tour quick.)
//  - f.get() returns `const T&` and may be called again; the value stays with the future.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

std::string label(double seconds) {
  char text[64];
  std::snprintf(text, sizeof text, "Done sleeping...%.2f", seconds);
  return text;
}

// Sleeps n twentieths of a second.
std::string do_something(int twentieths) {
  const double seconds = 0.05 * twentieths;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return label(seconds);
}

int main() {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> in_completion_order;
  {
    mproc::ProcessPoolExecutor executor(10);  // one worker per task: they only sleep
    std::vector<mproc::Future<std::string>> futures;
    for (int n = 9; n >= 0; --n) futures.push_back(executor.submit(do_something, n));
    std::printf("submitted ten tasks sleeping 0.45 s, 0.40 s, ... 0.00 s, in that order\n");
    for (auto&& future : mproc::as_completed(futures)) {
      std::printf("%s\n", future.get().c_str());
      in_completion_order.push_back(future.get());
    }
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::printf("Finished in %.2f second(s)\n", took.count());

  // Every task is reported exactly once. The order is the machine's, so it is printed, not
  // checked.
  std::vector<std::string> expected;
  for (int n = 0; n <= 9; ++n) expected.push_back(label(0.05 * n));
  std::sort(in_completion_order.begin(), in_completion_order.end());
  std::sort(expected.begin(), expected.end());
  return in_completion_order == expected ? 0 : 1;
}
