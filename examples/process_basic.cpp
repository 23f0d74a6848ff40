// process_basic.cpp — start one child process and wait for it.
//
// Mirrors: "Python Multiprocessing: True Parallelism for AI Tasks"
//          (seed 001_fc95d968a6b0e27f.txt), section "2. Creating a Basic Process",
//          the show_message program.
//
// What to notice
//  - No `if __name__ == "__main__":` guard: main() is simply main(). mproc never re-runs it in
//    a child, whatever the start method.
//  - The target is a plain function; construction does nothing, start() creates the child,
//    join() waits for it, exactly as in Python.
//  - The child really is another process: it reports a different pid and the name "Process-1".
//  - A C++ extra: with the default fork start method the child is a copy of the parent, so a
//    lambda that captures local variables (even by reference) works as a target.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <string>

void show_message() {
  const auto me = mproc::current_process();
  std::printf("Process is running (pid %d, name %s)\n", me.pid(), me.name().c_str());
}

int main() {
  const auto me = mproc::current_process();
  std::printf("parent: pid %d, name %s\n", me.pid(), me.name().c_str());

  mproc::Process process(show_message);
  process.start();
  process.join();
  std::printf("parent: %s (pid %d) finished with exit code %d\n", process.name().c_str(),
              process.pid(), *process.exitcode());

  // The capturing-lambda form. The child gets its own copy of `greeting` (fork copies the whole
  // address space), so the reference is valid there; nothing is shared back afterwards.
  std::string greeting = "hello from a lambda";
  mproc::Process lambda_process([&greeting] {
    std::printf("%s, running in %s\n", greeting.c_str(), mproc::current_process().name().c_str());
  });
  lambda_process.start();
  lambda_process.join();
  std::printf("parent: %s finished with exit code %d\n", lambda_process.name().c_str(),
              *lambda_process.exitcode());
  return 0;
}
