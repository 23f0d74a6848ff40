// process_exitcode.cpp — find out how a child ended: is_alive(), join_for() and exitcode().
//
// Mirrors: "A Starter's Guide to Parallel and Multiprocessing Python"
//          (seed 003_5a8e802222bb39cd.txt), the question "If I use multiprocessing in
//          Python, how do I handle exceptions?" (check is_alive() and the exitcode attribute),
//          and the "Error Handling" advice in section "6. Best Practices and Considerations" of
//          seed 000_034840ab600c0838.txt.
//
// What to notice
//  - exitcode() is a std::optional<int>: empty while the child runs (Python's None), then 0
//    for success, n after std::exit(n), 1 if the target threw, -signal if it was killed
//    (-15 for terminate()'s SIGTERM) — the same numbers Python reports.
//  - A target that throws does not take the parent down: the child prints the exception type
//    and message on stderr with its process name, and exits with 1. The stderr line
//    "... std::runtime_error ..." in the output is expected.
//  - join_for(timeout) waits with a deadline and returns whether the child ended, so a stuck
//    child never hangs the parent.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

using namespace std::chrono_literals;

void succeed() {
  std::printf("  [child] doing fine\n");
}
void fail_with_exception() {
  throw std::runtime_error("the input file is corrupt");
}
void exit_with_code(int code) {
  std::exit(code);
}
void sleep_a_long_time() {
  std::this_thread::sleep_for(30s);
}

std::string describe(std::optional<int> code) {
  return code ? std::to_string(*code) : "nullopt";
}

// Runs `p` to completion and checks the exit code it reports.
bool run_and_check(mproc::Process& p, int expected, const char* what) {
  p.start();
  p.join();
  const bool ok = p.exitcode() == expected;
  std::printf("%-32s exitcode = %-4s %s\n", what, describe(p.exitcode()).c_str(),
              ok ? "(as expected)" : "(UNEXPECTED)");
  return ok;
}

int main() {
  bool ok = true;

  mproc::Process fine(succeed);
  ok &= run_and_check(fine, 0, "target returned:");

  mproc::Process thrower(fail_with_exception);
  ok &= run_and_check(thrower, 1, "target threw:");

  mproc::Process exiter(exit_with_code, 3);
  ok &= run_and_check(exiter, 3, "target called std::exit(3):");

  mproc::Process sleeper(sleep_a_long_time);
  std::printf("before start():                  exitcode = %s (not started)\n",
              describe(sleeper.exitcode()).c_str());
  sleeper.start();
  const bool ended = sleeper.join_for(100ms);
  std::printf(
      "after join_for(100ms):           ended = %s, is_alive() = %s, exitcode = %s "
      "(still running)\n",
      ended ? "true" : "false", sleeper.is_alive() ? "true" : "false",
      describe(sleeper.exitcode()).c_str());
  sleeper.terminate();
  sleeper.join();
  const bool killed_ok = sleeper.exitcode() == -15 && !sleeper.is_alive();
  std::printf("%-32s exitcode = %-4s %s\n",
              "after terminate() and join():", describe(sleeper.exitcode()).c_str(),
              killed_ok ? "(as expected: -SIGTERM)" : "(UNEXPECTED)");
  ok &= killed_ok && !ended;

  return ok ? 0 : 1;
}
