// process_bench.cpp — Process start+join with a trivial target, per start method, against the
// raw system calls that bound it from below.
//
//   process_start_join/fork/mproc                 Process(fork) start()+join()
//   process_start_join/fork/raw_fork_waitpid      fork() + _exit(0) + waitpid()
//   process_start_join/forkserver/mproc           Process(forkserver) start()+join()
//   process_start_join/spawn/mproc                Process(spawn) start()+join()
//   process_start_join/spawn/raw_posix_spawn_true posix_spawn("/bin/true") + waitpid()
//   process_start_join/spawn/raw_posix_spawn_self posix_spawn(this binary) that exits during
//                                                 static initialisation + waitpid(): the cost
//                                                 of exec'ing and loading this very binary,
//                                                 the floor for any spawn of it
//
// bench/python/process_start.py measures the same workload with multiprocessing.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <mproc/mproc.hpp>
#include <string>
#include <vector>

#include "support.hpp"

extern char** environ;

namespace {

using mproc_bench::errno_message;

constexpr const char* kExitAtInitEnv = "MPROC_BENCH_EXIT_AT_INIT";

// A child spawned by raw_posix_spawn_self leaves here, before main() and before mproc's own
// start-up code runs (mproc's objects initialise after the program's, see CMakeLists.txt).
[[maybe_unused]] const bool exit_at_init = [] {
  if (std::getenv(kExitAtInitEnv) != nullptr) ::_exit(0);
  return false;
}();

void trivial_target() {}

void mproc_start_join(benchmark::State& state, mproc::StartMethod method) {
  mproc::ProcessOptions options;
  options.start = method;
  try {
    // The first start of a method may pay one-time costs (the forkserver's own exec, page
    // faults in the library): not part of a steady-state start+join.
    mproc::Process warm_up(options, trivial_target);
    warm_up.start();
    warm_up.join();

    long failed = 0;
    for (auto _ : state) {
      mproc::Process p(options, trivial_target);
      p.start();
      p.join();
      if (p.exitcode() != 0) ++failed;
    }
    if (failed > 0) {
      state.SkipWithError((std::to_string(failed) + " children exited non-zero").c_str());
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void raw_fork_waitpid(benchmark::State& state) {
  for (auto _ : state) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    if (pid < 0) {
      state.SkipWithError(errno_message("fork").c_str());
      break;
    }
    std::string why;
    if (!mproc_bench::reap(pid, &why)) {
      state.SkipWithError(why.c_str());
      break;
    }
  }
}

// Runs posix_spawn(path, argv, env) + waitpid per iteration.
void posix_spawn_loop(benchmark::State& state, const char* path, char* const* env) {
  char* const argv[] = {const_cast<char*>(path), nullptr};
  for (auto _ : state) {
    pid_t pid = 0;
    if (const int rc = ::posix_spawn(&pid, path, nullptr, nullptr, argv, env); rc != 0) {
      errno = rc;
      state.SkipWithError(errno_message("posix_spawn").c_str());
      break;
    }
    std::string why;
    if (!mproc_bench::reap(pid, &why)) {
      state.SkipWithError(why.c_str());
      break;
    }
  }
}

void raw_posix_spawn_true(benchmark::State& state) {
  posix_spawn_loop(state, "/bin/true", environ);
}

void raw_posix_spawn_self(benchmark::State& state) {
  // Path of this binary, and this environment plus the variable that makes it exit at init.
  std::string self(4096, '\0');
  const ssize_t n = ::readlink("/proc/self/exe", self.data(), self.size() - 1);
  if (n <= 0) {
    state.SkipWithError(errno_message("readlink").c_str());
    return;
  }
  self.resize(static_cast<std::size_t>(n));
  std::string marker = std::string(kExitAtInitEnv) + "=1";
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  env.push_back(marker.data());
  env.push_back(nullptr);
  posix_spawn_loop(state, self.c_str(), env.data());
}

// Process creation is wall-clock work spread over two processes: measure real time.
BENCHMARK_CAPTURE(mproc_start_join, fork, mproc::StartMethod::fork)
    ->Name("process_start_join/fork/mproc")
    ->UseRealTime();
BENCHMARK(raw_fork_waitpid)->Name("process_start_join/fork/raw_fork_waitpid")->UseRealTime();
BENCHMARK_CAPTURE(mproc_start_join, forkserver, mproc::StartMethod::forkserver)
    ->Name("process_start_join/forkserver/mproc")
    ->UseRealTime();
BENCHMARK_CAPTURE(mproc_start_join, spawn, mproc::StartMethod::spawn)
    ->Name("process_start_join/spawn/mproc")
    ->UseRealTime();
BENCHMARK(raw_posix_spawn_true)
    ->Name("process_start_join/spawn/raw_posix_spawn_true")
    ->UseRealTime();
BENCHMARK(raw_posix_spawn_self)
    ->Name("process_start_join/spawn/raw_posix_spawn_self")
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
