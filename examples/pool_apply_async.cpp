// pool_apply_async.cpp — single tasks on a Pool: apply_async returns a Future at once.
//
// Mirrors: "Multiprocessing to Parrallel and Speed Up" (seed 002_ef51f5f6559abac5.txt),
//          "Step 2: Use the multiprocessing Library", the multiprocessing.Pool variant whose
//          tasks print "Time | Process ID | Process Name: ...PoolWorker-N"; and the
//          interview answer in seed 001 that a Pool is used "with methods like map or
//          apply_async".
//
// What to notice
//  - apply_async(fn, args...) queues one call and returns an mproc::Future right away (Python's
//    AsyncResult); future.get() waits for the value. apply(fn, args...) is apply_async + get.
//  - Workers are named PoolWorker-1, PoolWorker-2, ... as in Python (whose spawn workers print
//    SpawnPoolWorker-N). Six tasks on a pool of three: pids repeat, and the later tasks start
//    as the first ones finish (about two rounds of 0.3 s).
//  - An exception thrown by a task comes back from get(): a std::invalid_argument is rethrown
//    as itself, with its message. The worker survives and keeps serving tasks.
//  - The tutorial's tasks work for a while; here each sleeps 0.3 s so the tour stays quick.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

// Wall-clock seconds since the epoch, like Python's time.time().
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One task: says where it runs, works a little, returns its pid.
int new_task(int index) {
  const auto me = mproc::current_process();
  std::printf("Time: %.2f | Task: %d | Process ID: %d | Process Name: %s\n", now_seconds(), index,
              me.pid(), me.name().c_str());
  std::fflush(stdout);  // the worker's stdout is a pipe or file under the tour: show it now
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return me.pid();
}

double checked_sqrt_of_difference(int a, int b) {
  if (a < b)
    throw std::invalid_argument("a must not be smaller than b, got " + std::to_string(a) + " < " +
                                std::to_string(b));
  return std::sqrt(static_cast<double>(a - b));
}

int main() {
  mproc::Pool pool(3);

  const auto start = std::chrono::steady_clock::now();
  std::vector<mproc::Future<int>> futures;
  for (int i = 0; i < 6; ++i) futures.push_back(pool.apply_async(new_task, i));
  std::printf("six tasks queued; the parent goes on while they run\n");
  std::fflush(stdout);
  std::vector<int> pids;
  for (auto& f : futures) pids.push_back(f.get());
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::printf("all six done in %.2f s (0.3 s each, three at a time)\n", took.count());

  // apply: the blocking form.
  std::printf("apply(checked_sqrt_of_difference, 50, 1) = %g\n",
              pool.apply(checked_sqrt_of_difference, 50, 1));

  // A failing task: its exception reaches whoever calls get().
  auto failing = pool.apply_async(checked_sqrt_of_difference, 1, 50);
  bool rethrown = false;
  try {
    failing.get();
  } catch (const std::invalid_argument& e) {
    rethrown = true;
    std::printf("the task threw std::invalid_argument: %s\n", e.what());
  }

  // Every pid belongs to one of the pool's three workers.
  std::vector<int> distinct;
  for (int pid : pids) {
    bool seen = false;
    for (int d : distinct) seen = seen || d == pid;
    if (!seen) distinct.push_back(pid);
  }
  std::printf("%zu distinct worker pids ran the six tasks\n", distinct.size());
  return rethrown && !distinct.empty() && distinct.size() <= 3 ? 0 : 1;
}
