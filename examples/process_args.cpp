// process_args.cpp — pass arguments to the child's function.
//
// Mirrors: "Python Multiprocessing: True Parallelism for AI Tasks"
//          (seed 001_fc95d968a6b0e27f.txt), section "3. Passing Arguments to a Process",
//          the square(n) program.
//
// What to notice
//  - Arguments follow the function, like std::thread: `Process(square, 6)` instead of
//    `Process(target=square, args=(6,))` — no one-element tuple and its easy-to-forget comma.
//  - Arguments are copied by value into the child. A wrong argument type is a compile error,
//    not a TypeError raised inside the child.
//  - The second child uses the spawn start method: a fresh exec of this same program. Its
//    argument travels encoded over a pipe, and main() does not run again in that child (this
//    program's first line is printed only once) — which is why no `__main__` guard is needed.
#include <mproc/mproc.hpp>

#include <cstdio>

void square(int n) {
  std::printf("Square of %d is %d (computed in %s)\n", n, n * n,
              mproc::current_process().name().c_str());
}

int main() {
  std::printf("main() starts (this line appears once, even though a child is spawned below)\n");

  mproc::Process process(square, 6);
  process.start();
  process.join();

  mproc::Process spawned(
      mproc::ProcessOptions{.name = "SpawnedSquare", .start = mproc::StartMethod::spawn}, square,
      7);
  spawned.start();
  spawned.join();

  std::printf("exit codes: %s=%d, %s=%d\n", process.name().c_str(), *process.exitcode(),
              spawned.name().c_str(), *spawned.exitcode());
  return *process.exitcode() == 0 && *spawned.exitcode() == 0 ? 0 : 1;
}
