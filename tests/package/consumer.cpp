// Starts a child through the installed library and checks its exit code.
#include <cstdio>
#include <mproc/mproc.hpp>

static void child() {}

int main() {
  mproc::Process p(child);
  p.start();
  p.join();
  if (p.exitcode() != 0) return 1;
  std::printf("consumer ok: %d cpus\n", mproc::cpu_count());
  return 0;
}
