// queue_workers.cpp — worker processes fed by one queue, sending results back on another.
//
// Mirrors: "Multiprocessing to Parrallel and Speed Up" (seed 002_ef51f5f6559abac5.txt),
//          "Step 5: Share Data Between Parent and Child Processes with multiprocessing.Queue":
//          the parent puts {'status': 'new', 'idx_start': i, 'idx_end': i + 1} tasks into one
//          queue; four workers take them, "work" for a second, and put the task back with
//          'status': 'done' and 'result': 2 * i + 1 into a second queue; the parent collects
//          the results. The tutorial starts its workers through Pool; here they are four
//          Processes, which is all it needs.
//
// What to notice
//  - A task is a plain struct with a serialize member (a Python dict becomes a typed struct).
//  - Workers loop on get() and stop when the parent closes the task queue: get() on a closed,
//    drained queue throws mproc::QueueClosed (Python's version needs sentinel values).
//  - Results arrive in completion order; the parent sorts them, as the tutorial does.
//  - 0.2 s of "work" per task instead of 1 s.
#include <mproc/process.hpp>
#include <mproc/queue.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

struct Task {
  std::string status;
  int idx_start = 0;
  int idx_end = 0;
  long result = 0;
  template <class A>
  void serialize(A& a) {
    a(status, idx_start, idx_end, result);
  }
};

void worker(mproc::Queue<Task> tasks, mproc::Queue<Task> results) {
  const int pid = mproc::current_process().pid();
  try {
    for (;;) {
      Task t = tasks.get();
      std::printf("Process ID: %d | Received: {status: %s, idx_start: %d, idx_end: %d}\n", pid,
                  t.status.c_str(), t.idx_start, t.idx_end);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      t.result = 0;
      for (int i = t.idx_start; i < t.idx_end; ++i) t.result += 2 * i + 1;
      t.status = "done";
      std::printf("Process ID: %d | Result: %ld\n", pid, t.result);
      results.put(t);
    }
  } catch (const mproc::QueueClosed&) {
    // no more tasks
  }
}

int main() {
  constexpr int kTasks = 8, kWorkers = 4;
  mproc::Queue<Task> tasks, results;
  std::vector<mproc::Process> workers;
  for (int i = 0; i < kWorkers; ++i) workers.emplace_back(worker, tasks, results);
  for (auto& w : workers) w.start();

  for (int i = 0; i < kTasks; ++i) tasks.put(Task{"new", i, i + 1, 0});
  tasks.close();  // workers finish what is queued, then stop
  for (auto& w : workers) w.join();

  std::vector<Task> done;
  while (auto r = results.try_get()) done.push_back(*r);
  std::sort(done.begin(), done.end(),
            [](const Task& a, const Task& b) { return a.idx_start < b.idx_start; });
  std::printf("Results:");
  bool ok = done.size() == static_cast<std::size_t>(kTasks);
  for (const auto& t : done) {
    std::printf(" {%s, %d, %d, result: %ld}", t.status.c_str(), t.idx_start, t.idx_end, t.result);
    ok = ok && t.status == "done" && t.result == 2 * t.idx_start + 1;
  }
  std::printf("\n");
  for (const auto& w : workers) ok = ok && w.exitcode() == 0;
  return ok ? 0 : 1;
}
