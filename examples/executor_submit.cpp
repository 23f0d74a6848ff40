// executor_submit.cpp — ProcessPoolExecutor: submit a call, get a Future, wait for its result.
//
// Mirrors: "Python Multiprocessing: Unleashing Parallelism for CPU-Bound Tasks"
//          (seed 000_034840ab600c0838.txt), "4. Using ProcessPoolExecutor": do_something(1)
//          submitted twice inside `with ProcessPoolExecutor() as executor:`, then
//          f1.result() and f2.result(), the whole block timed.
//
// What to notice
//  - ex.submit(fn, args...) returns an mproc::Future<R> at once; f.get() is Python's
//    f.result(): it waits, then returns the value or rethrows the task's exception.
//  - The executor's scope is the `with` block: its destructor is shutdown(wait = true). Here
//    the futures are read inside the block, as in the tutorial.
//  - Both calls sleep at the same time in two worker processes, so the block takes about one
//    sleep, not two. The tutorial sleeps 1 s; 0.3 s here keeps the tour quick.
//  - The workers' lines and the parent's lines interleave by time, as in Python.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

std::string do_something(double seconds) {
  std::printf("Sleeping for %.1f second(s)...\n", seconds);
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return "Done sleeping..." + std::to_string(seconds).substr(0, 3);
}

int main() {
  const auto start = std::chrono::steady_clock::now();
  std::string r1, r2;
  {
    mproc::ProcessPoolExecutor executor;  // cpu_count() workers, like Python's default
    mproc::Future<std::string> f1 = executor.submit(do_something, 0.3);
    mproc::Future<std::string> f2 = executor.submit(do_something, 0.3);
    r1 = f1.get();  // waits for the result of f1
    r2 = f2.get();
    std::printf("%s\n%s\n", r1.c_str(), r2.c_str());
  }  // shutdown(wait = true): the workers have exited when this line is passed
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::printf("Finished in %.2f second(s)\n", took.count());
  return r1 == "Done sleeping...0.3" && r2 == r1 ? 0 : 1;
}
