// queue_pool_status.cpp — a Pool whose workers live on a task queue: status records in, status
// records out.
//
// Mirrors: "Multiprocessing to Parrallel and Speed Up" (seed 002_ef51f5f6559abac5.txt),
//          "Step 5: Share Data Between Parent and Child Processes with multiprocessing.Queue",
//          the Pool-started program: two queues; a Pool of four processes is started with the
//          queues handed to each worker (a multiprocessing.Queue reaches pool workers only
//          through initializer/initargs); each worker prints "working", then, while the input queue
//          is not empty, takes a dict {'status': 'new', 'idx_start': i, 'idx_end': i + 1}, prints
//          "Received", works a second, stores 'result': idx_start + idx_end with 'status': 'done'
//          and puts it on the output queue; the parent puts eight dicts, waits for the pool and
//          collects the results. (queue_workers.cpp is the same program with plain Processes.)
//
// What to notice
//  - The queues go in as the initializer's arguments, as in Python:
//    Pool({.processes = 4, .initializer = {worker, q_in, q_out}}). The initializer runs the
//    worker's whole loop, so the pool's processes serve the queue and not pool tasks.
//  - The Python loop's `while not q_in.empty()` races with the parent: a worker that starts
//    before the first put finds the queue empty and quits. Here the worker loops on get(),
//    which waits; the parent closes q_in after the last put, and get() on a closed, drained
//    queue throws mproc::QueueClosed, which ends the loop.
//  - A Python dict becomes a struct with a serialize member; it is printed like the dict.
//  - Part 2 does what Python refuses ("Queue objects should only be shared between processes
//    through inheritance"): the same loop as an ordinary task, apply_async(worker_loop, q_in,
//    q_out), once per worker; each Future returns how many records that worker handled.
//  - 0.2 s of "work" per record instead of 1 s. Results arrive in completion order; the
//    parent sorts them by idx_start.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

// {'status': ..., 'idx_start': ..., 'idx_end': ..., 'result': ...}
struct Job {
  std::string status;
  int idx_start = 0;
  int idx_end = 0;
  int result = 0;
  template <class A>
  void serialize(A& a) {
    a(status, idx_start, idx_end, result);
  }
};

// Wall-clock seconds since the epoch, like Python's time.time().
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Takes jobs from q_in until it is closed and drained; returns how many it handled.
int worker_loop(mproc::Queue<Job> q_in, mproc::Queue<Job> q_out) {
  const int pid = mproc::current_process().pid();
  std::printf("Time: %.2f | Process ID: %d | working\n", now_seconds(), pid);
  std::fflush(stdout);
  int handled = 0;
  try {
    for (;;) {
      Job data = q_in.get();  // waits for a job; QueueClosed once closed and empty
      std::printf(
          "Time: %.2f | Process ID: %d | Received: {'status': '%s', 'idx_start': %d, "
          "'idx_end': %d}\n",
          now_seconds(), pid, data.status.c_str(), data.idx_start, data.idx_end);
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the "work"
      data.result = data.idx_start + data.idx_end;
      data.status = "done";
      std::printf("Time: %.2f | Process ID: %d | Result: %d\n", now_seconds(), pid, data.result);
      std::fflush(stdout);
      q_out.put(data);
      ++handled;
    }
  } catch (const mproc::QueueClosed&) {
    // every job is taken
  }
  return handled;
}

// The tutorial's worker, used as the initializer (whose return value nobody sees).
void worker(mproc::Queue<Job> q_in, mproc::Queue<Job> q_out) {
  worker_loop(q_in, q_out);
}

// Drains q_out, sorted by idx_start; prints the results and checks them.
bool collect(mproc::Queue<Job>& q_out, int jobs) {
  std::vector<Job> results;
  while (auto r = q_out.try_get()) results.push_back(*r);
  std::sort(results.begin(), results.end(),
            [](const Job& a, const Job& b) { return a.idx_start < b.idx_start; });
  std::printf("Time: %.2f | Results: [", now_seconds());
  bool ok = results.size() == static_cast<std::size_t>(jobs);
  for (std::size_t i = 0; i < results.size(); ++i) {
    const Job& j = results[i];
    std::printf("%s{'status': '%s', 'idx_start': %d, 'idx_end': %d, 'result': %d}", i ? ", " : "",
                j.status.c_str(), j.idx_start, j.idx_end, j.result);
    ok = ok && j.status == "done" && j.idx_start == static_cast<int>(i) &&
         j.result == j.idx_start + j.idx_end;
  }
  std::printf("]\n");
  return ok;
}

int main() {
  constexpr int kJobs = 8, kWorkers = 4;

  // Part 1: the tutorial's program. The queues reach the workers through the initializer.
  std::printf("== Pool(initializer=worker, initargs=(q_in, q_out))\n");
  std::fflush(stdout);
  auto start = std::chrono::steady_clock::now();
  mproc::Queue<Job> q_in, q_out;
  bool ok = true;
  {
    mproc::Pool pool({.processes = kWorkers, .initializer = {worker, q_in, q_out}});
    for (int i = 0; i < kJobs; ++i) q_in.put(Job{"new", i, i + 1, 0});
    q_in.close();  // no more jobs: each worker's loop ends when the queue is empty
    pool.close();
    pool.join();  // the workers' initializers have returned and the workers have exited
  }
  ok = collect(q_out, kJobs) && ok;
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::printf("%d jobs of 0.2 s on %d workers in %.2f s\n\n", kJobs, kWorkers, took.count());

  // Part 2: the same loop as pool tasks, with the queues as ordinary task arguments.
  std::printf("== apply_async(worker_loop, q_in, q_out) on each worker\n");
  std::fflush(stdout);
  start = std::chrono::steady_clock::now();
  mproc::Queue<Job> jobs_in, jobs_out;
  mproc::Pool pool(kWorkers);
  std::vector<mproc::Future<int>> loops;
  for (int w = 0; w < kWorkers; ++w)
    loops.push_back(pool.apply_async(worker_loop, jobs_in, jobs_out));
  for (int i = 0; i < kJobs; ++i) jobs_in.put(Job{"new", i, i + 1, 0});
  jobs_in.close();
  int handled = 0;
  for (std::size_t w = 0; w < loops.size(); ++w) {
    const int n = loops[w].get();  // this loop's return value, or its exception
    std::printf("worker loop %zu handled %d jobs\n", w + 1, n);
    handled += n;
  }
  ok = collect(jobs_out, kJobs) && handled == kJobs && ok;
  took = std::chrono::steady_clock::now() - start;
  std::printf("%d jobs of 0.2 s on %d workers in %.2f s\n", kJobs, kWorkers, took.count());
  return ok ? 0 : 1;
}
