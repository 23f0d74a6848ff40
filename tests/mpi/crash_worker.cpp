// A task kills its worker rank with SIGKILL. Open MPI without ULFM cannot survive a dead rank:
// the documented outcome is that mpiexec ends the whole job promptly with a non-zero status
// and a message naming the dead rank (tests/mpi/crash_test.sh checks it; no hang).
#include <csignal>
#include <cstdio>

#include "mproc/mpi/executor.hpp"

namespace {
int die(int) {
  std::raise(SIGKILL);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  mproc::mpi::init(argc, argv);
  mproc::mpi::Executor ex;
  auto f = ex.submit(die, 1);
  try {
    f.get();
  } catch (const std::exception& e) {
    std::printf("rank 0 saw: %s\n", e.what());
  }
  std::printf("UNEXPECTED: rank 0 survived the dead rank\n");
  return 0;
}
