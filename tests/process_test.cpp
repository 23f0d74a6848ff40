// Process: exit codes, start methods, names, lifetime, failures.
#include "mproc/process.hpp"

#include "mproc/pipe.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../src/detail/sys.hpp"
#include "mproc/detail/service.hpp"
#include "support/child_helpers.hpp"
#include "support/start_methods.hpp"

using namespace std::chrono_literals;
using mproc::Process;
using mproc::ProcessOptions;
using mproc::StartMethod;

namespace {

// Targets are plain functions so every start method can run them.
void do_nothing() {}
void exit_with(int code) {
  std::exit(code);
}
void throw_runtime_error() {
  throw std::runtime_error("boom from the child");
}
void segfault() {
  std::raise(SIGSEGV);
}
void call_abort() {
  std::abort();
}
void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}
void check_args(int n, std::string s, std::vector<double> v) {
  const bool ok = n == 42 && s == "hello" && v.size() == 3 && v[2] == 2.5;
  std::exit(ok ? 0 : 3);
}
void check_own_name(std::string expected) {
  std::exit(mproc::current_process().name() == expected ? 0 : 4);
}
void check_parent(int parent_pid) {
  const auto parent = mproc::parent_process();
  std::exit(parent && parent->pid() == parent_pid && parent->name() == "MainProcess" ? 0 : 5);
}
// Initialised by the program's static initialisers: a spawn child must see it.
const std::string g_initialised_global = std::string("ready") + "!";
void check_global() {
  std::exit(g_initialised_global == "ready!" ? 0 : 6);
}

// Replies through a Connection received as an argument (an fd inherited by fork, passed by
// SCM_RIGHTS to the forkserver, inherited across exec by spawn).
void echo_doubled(mproc::Connection conn) {
  const int n = conn.recv<int>();
  conn.send(std::to_string(n * 2) + " from " + mproc::current_process().name());
}

class EachStartMethod : public mproc::test::EveryStartMethod {};

MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(Process, EachStartMethod);

TEST_P(EachStartMethod, ReturningTargetExitsWithZero) {
  Process p(opts(), do_nothing);
  EXPECT_FALSE(p.exitcode().has_value());
  p.start();
  EXPECT_GT(p.pid(), 0);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_FALSE(p.is_alive());
}

TEST_P(EachStartMethod, ExitCallGivesItsCode) {
  Process p(opts(), exit_with, 7);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 7);
}

TEST_P(EachStartMethod, ThrowingTargetExitsWithOneAndPrintsTheException) {
  Process p(opts("Thrower"), throw_runtime_error);
  ::testing::internal::CaptureStderr();
  p.start();
  p.join();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(p.exitcode(), 1);
  EXPECT_NE(err.find("Thrower"), std::string::npos) << err;
  EXPECT_NE(err.find("std::runtime_error"), std::string::npos) << err;
  EXPECT_NE(err.find("boom from the child"), std::string::npos) << err;
}

TEST_P(EachStartMethod, SegfaultGivesMinusSignal) {
  Process p(opts(), segfault);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGSEGV);
}

TEST_P(EachStartMethod, AbortGivesMinusSigabrt) {
  Process p(opts(), call_abort);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGABRT);
}

TEST_P(EachStartMethod, KillAndTerminateEndTheChild) {
  Process a(opts(), sleep_ms, 60000);
  Process b(opts(), sleep_ms, 60000);
  a.start();
  b.start();
  EXPECT_TRUE(a.is_alive());
  EXPECT_FALSE(a.exitcode().has_value());
  a.kill();
  b.terminate();
  a.join();
  b.join();
  EXPECT_EQ(a.exitcode(), -SIGKILL);
  EXPECT_EQ(b.exitcode(), -SIGTERM);
  a.kill();  // already ended: no-op
}

TEST_P(EachStartMethod, JoinForTimesOutThenSucceeds) {
  Process p(opts(), sleep_ms, 300);
  p.start();
  EXPECT_FALSE(p.join_for(10ms));
  EXPECT_TRUE(p.is_alive());
  EXPECT_TRUE(p.join_for(30s));
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(EachStartMethod, SentinelBecomesReadableWhenTheChildEnds) {
  Process p(opts(), sleep_ms, 200);
  p.start();
  pollfd pfd{p.sentinel(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);  // still running
  ASSERT_EQ(::poll(&pfd, 1, 30000), 1);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(EachStartMethod, CloseReleasesAnEndedChildOnly) {
  Process p(opts(), sleep_ms, 60000);
  p.start();
  EXPECT_THROW(p.close(), mproc::UsageError);
  p.kill();
  p.join();
  p.close();
  p.close();  // idempotent
  EXPECT_EQ(p.exitcode(), -SIGKILL);
  EXPECT_FALSE(p.is_alive());
  EXPECT_THROW(p.join(), mproc::UsageError);
  EXPECT_THROW((void)p.sentinel(), mproc::UsageError);
}

TEST_P(EachStartMethod, ArgumentsArriveByValue) {
  Process p(opts(), check_args, 42, std::string("hello"), std::vector<double>{0.5, 1.5, 2.5});
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(EachStartMethod, ChildKnowsItsNameAndParent) {
  Process named(opts("Worker-A"), check_own_name, std::string("Worker-A"));
  named.start();
  named.join();
  EXPECT_EQ(named.exitcode(), 0);
  Process child(opts(), check_parent, static_cast<int>(::getpid()));
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST_P(EachStartMethod, ConnectionArgumentReachesTheChild) {
  auto [mine, theirs] = mproc::Pipe();
  Process p(opts("Echo"), echo_doubled, theirs);
  p.start();
  theirs.close();  // the child holds its own copy now
  mine.send(21);
  EXPECT_EQ(mine.recv<std::string>(), "42 from Echo");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(EachStartMethod, PeerOfADeadChildSeesConnectionClosed) {
  auto [mine, theirs] = mproc::Pipe();
  Process p(
      opts(),
      [](mproc::Connection c) {
        (void)c;
        std::raise(SIGKILL);
      },
      theirs);
  p.start();
  theirs.close();
  EXPECT_THROW((void)mine.recv<int>(), mproc::ConnectionClosed);
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGKILL);
}

void check_message_limit(std::size_t expected) {
  std::exit(mproc::max_message_size() == expected ? 0 : 7);
}

TEST_P(EachStartMethod, ChildInheritsTheMessageSizeLimit) {
  const std::size_t before = mproc::max_message_size();
  mproc::set_max_message_size(12345);
  Process p(opts(), check_message_limit, std::size_t{12345});
  p.start();
  mproc::set_max_message_size(before);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(EachStartMethod, ChildSeesStaticallyInitialisedGlobals) {
  Process p(opts(), check_global);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(EachStartMethod, CaptureLessLambdaIsATarget) {
  Process p(
      opts(), [](int code) { std::exit(code + 1); }, 10);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 11);
}

TEST_P(EachStartMethod, ManyMoreChildrenThanCores) {
  std::vector<Process> ps;
  for (int i = 0; i < 24; ++i) ps.emplace_back(opts(), exit_with, i % 5);
  for (auto& p : ps) p.start();
  for (auto& p : ps) p.join();
  for (int i = 0; i < 24; ++i) EXPECT_EQ(ps[i].exitcode(), i % 5);
}

// Starts a sleeping child from a process of its own (from its main thread, or from a thread
// that has exited by then), kills that process with SIGKILL and returns the child's pid.
int kill_parent_of_sleeping_child(StartMethod method, bool from_thread) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return -1;
  const pid_t middle = ::fork();
  if (middle == 0) {
    ::close(pipefd[0]);
    try {
      std::optional<Process> p;
      auto start = [&] {
        p.emplace(ProcessOptions{.start = method}, sleep_ms, 60000);
        p->start();
      };
      if (from_thread) {
        std::thread(start).join();
      } else {
        start();
      }
      const int pid = p->pid();
      if (::write(pipefd[1], &pid, sizeof pid) != sizeof pid) ::_exit(1);
      ::pause();
    } catch (...) {
    }
    ::_exit(2);
  }
  ::close(pipefd[1]);
  int grandchild = 0;
  const bool got = ::read(pipefd[0], &grandchild, sizeof grandchild) == sizeof grandchild;
  ::close(pipefd[0]);
  ::kill(middle, SIGKILL);
  int status = 0;
  ::waitpid(middle, &status, 0);
  return got ? grandchild : -1;
}

TEST_P(EachStartMethod, ChildStartedByTheMainThreadDiesWhenItsParentIsKilled) {
  const int child = kill_parent_of_sleeping_child(GetParam(), /*from_thread=*/false);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(mproc::test::wait_gone(child)) << "child outlived its killed parent";
}

TEST_P(EachStartMethod, ChildStartedByAnExitedThreadDiesWhenItsParentIsKilled) {
  const int child = kill_parent_of_sleeping_child(GetParam(), /*from_thread=*/true);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(mproc::test::wait_gone(child)) << "child outlived its killed parent";
}

TEST(Process, ChildDiesWithItsParentEvenIfTheParentForkedByHand) {
  // A fork() mproc did not make must not keep the parent's lifeline open.
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t middle = ::fork();
  if (middle == 0) {
    ::close(pipefd[0]);
    Process p(sleep_ms, 60000);
    p.start();
    const pid_t raw = ::fork();
    if (raw == 0) {
      ::sleep(60);
      ::_exit(0);
    }
    const int pids[2] = {p.pid(), raw};
    if (::write(pipefd[1], pids, sizeof pids) != sizeof pids) ::_exit(1);
    ::pause();
    ::_exit(2);
  }
  ::close(pipefd[1]);
  int pids[2] = {0, 0};
  ASSERT_EQ(::read(pipefd[0], pids, sizeof pids), static_cast<ssize_t>(sizeof pids));
  ::close(pipefd[0]);
  ::kill(middle, SIGKILL);
  int status = 0;
  ::waitpid(middle, &status, 0);
  EXPECT_TRUE(mproc::test::wait_gone(pids[0])) << "child outlived its killed parent";
  EXPECT_TRUE(mproc::test::pid_running(pids[1]));
  ::kill(pids[1], SIGKILL);
}

TEST(Process, CapturingLambdaRunsWithFork) {
  int captured = 5;
  Process p([captured] { std::exit(captured * 2); });
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 10);
}

TEST(Process, CapturingLambdaWithSpawnIsAUsageError) {
  int captured = 5;
  EXPECT_THROW(Process(ProcessOptions{.start = StartMethod::spawn}, [captured] { (void)captured; }),
               mproc::UsageError);
}

TEST(Process, NamesFollowPythonsScheme) {
  Process a(do_nothing);
  Process b(do_nothing);
  EXPECT_EQ(a.name().rfind("Process-", 0), 0u);
  const int na = std::stoi(a.name().substr(8));
  const int nb = std::stoi(b.name().substr(8));
  EXPECT_EQ(nb, na + 1);
  EXPECT_EQ(mproc::current_process().name(), "MainProcess");
  EXPECT_FALSE(mproc::parent_process().has_value());
  // A child's children are named below it: Process-N:1.
  Process outer([] {
    Process inner(do_nothing);
    const std::string expected = mproc::current_process().name() + ":1";
    std::exit(inner.name() == expected ? 0 : 1);
  });
  outer.start();
  outer.join();
  EXPECT_EQ(outer.exitcode(), 0);
}

TEST(Process, ExitcodeIsEmptyBeforeStartAndWhileRunning) {
  Process p(sleep_ms, 200);
  EXPECT_FALSE(p.exitcode().has_value());
  EXPECT_FALSE(p.is_alive());
  EXPECT_EQ(p.pid(), 0);
  p.start();
  EXPECT_FALSE(p.exitcode().has_value());
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, MisuseIsAUsageError) {
  Process p(do_nothing);
  EXPECT_THROW(p.join(), mproc::UsageError);
  EXPECT_THROW(p.terminate(), mproc::UsageError);
  p.start();
  EXPECT_THROW(p.start(), mproc::UsageError);
  p.join();
}

TEST(Process, ActiveChildrenListsLiveChildrenOnly) {
  Process p(sleep_ms, 60000);
  p.start();
  auto live = mproc::active_children();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].pid(), p.pid());
  EXPECT_EQ(live[0].name(), p.name());
  EXPECT_TRUE(live[0].is_alive());
  p.kill();
  p.join();
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST(Process, DestructorJoinsANonDaemonChild) {
  int pid = 0;
  {
    Process p(sleep_ms, 100);
    p.start();
    pid = p.pid();
  }
  EXPECT_FALSE(mproc::test::pid_running(pid));
}

TEST(Process, DestructorKillsADaemonChild) {
  const auto start = std::chrono::steady_clock::now();
  {
    Process p(ProcessOptions{.daemon = true}, sleep_ms, 60000);
    p.start();
    EXPECT_TRUE(p.daemon());
  }
  // Not a timing assertion of performance: a join would take a minute.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
}

TEST(Process, MovedProcessKeepsItsChild) {
  Process a(exit_with, 3);
  a.start();
  Process b = std::move(a);
  b.join();
  EXPECT_EQ(b.exitcode(), 3);
}

TEST(Process, ChildStartedFromAThreadOutlivesTheThread) {
  // PR_SET_PDEATHSIG would kill this child when the starting thread exits.
  std::optional<Process> p;
  std::thread([&] {
    p.emplace(ProcessOptions{.start = StartMethod::fork}, sleep_ms, 60000);
    p->start();
  }).join();
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(p->is_alive());
  p->kill();
  p->join();
  EXPECT_EQ(p->exitcode(), -SIGKILL);
}

TEST(Process, DefaultStartMethodFollowsThreadCount) {
  EXPECT_EQ(mproc::get_start_method(), StartMethod::fork);
  std::atomic<bool> stop{false};
  std::thread t([&] {
    while (!stop) std::this_thread::sleep_for(1ms);
  });
  EXPECT_EQ(mproc::get_start_method(), StartMethod::forkserver);
  stop = true;
  t.join();
  mproc::set_start_method(StartMethod::spawn);
  EXPECT_EQ(mproc::get_start_method(), StartMethod::spawn);
  mproc::set_start_method(std::nullopt);
}

TEST(Process, FailedForkIsASystemErrorAndLeavesNothing) {
  mproc::detail::sys::inject_failure("fork", EAGAIN);
  Process p(do_nothing);
  try {
    p.start();
    FAIL() << "start() should have thrown";
  } catch (const mproc::SystemError& e) {
    EXPECT_EQ(e.code().value(), EAGAIN);
    EXPECT_NE(std::string(e.what()).find("fork()"), std::string::npos);
  }
  EXPECT_EQ(p.pid(), 0);
}

TEST(Process, FailedExecReportsTheChildsErrno) {
  mproc::detail::sys::inject_failure("execve", ENOEXEC);
  Process p(ProcessOptions{.start = StartMethod::spawn}, do_nothing);
  try {
    p.start();
    FAIL() << "start() should have thrown";
  } catch (const mproc::SystemError& e) {
    EXPECT_EQ(e.code().value(), ENOEXEC);
    EXPECT_NE(std::string(e.what()).find("execve"), std::string::npos) << e.what();
  }
}

TEST(Process, RunningOutOfDescriptorsIsASystemError) {
  // A real limit, in a child of the test so the limit does not outlive the test.
  const int code = mproc::test::in_forked_child([] {
    const auto fds = mproc::detail::sys::open_fds();
    rlimit limit{static_cast<rlim_t>(fds.back() + 1), static_cast<rlim_t>(fds.back() + 1)};
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 10;
    // Fill every free slot below the limit, then free exactly one: a start needs more.
    int last = -1;
    for (int fd; (fd = ::dup(0)) >= 0;) last = fd;
    if (last >= 0) ::close(last);
    try {
      Process p(do_nothing);
      p.start();
      p.join();
      return 11;
    } catch (const mproc::SystemError& e) {
      return e.code().value() == EMFILE ? 0 : 12;
    }
  });
  EXPECT_EQ(code, 0);
}

TEST(Process, EintrStormDoesNotDisturbStartAndJoin) {
  struct sigaction act {};
  act.sa_handler = [](int) {};
  act.sa_flags = 0;  // no SA_RESTART: every blocking call sees EINTR
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGALRM, &act, &old), 0);
  itimerval every{{0, 200}, {0, 200}};
  ASSERT_EQ(::setitimer(ITIMER_REAL, &every, nullptr), 0);
  for (StartMethod m : {StartMethod::fork, StartMethod::spawn, StartMethod::forkserver}) {
    for (int i = 0; i < 5; ++i) {
      Process p(ProcessOptions{.start = m}, sleep_ms, 20);
      p.start();
      EXPECT_FALSE(p.join_for(1ms) && p.exitcode() != 0);
      p.join();
      EXPECT_EQ(p.exitcode(), 0) << mproc::test::start_method_name(m);
    }
  }
  itimerval off{};
  ::setitimer(ITIMER_REAL, &off, nullptr);
  ::sigaction(SIGALRM, &old, nullptr);
}

TEST(Process, KilledForkserverIsReplaced) {
  Process first(ProcessOptions{.start = StartMethod::forkserver}, do_nothing);
  first.start();
  first.join();
  const auto service = mproc::detail::service_resources();
  ASSERT_EQ(service.pids.size(), 1u);
  ::kill(service.pids[0], SIGKILL);
  ASSERT_TRUE(mproc::test::wait_gone(service.pids[0]));
  Process second(ProcessOptions{.start = StartMethod::forkserver}, exit_with, 4);
  second.start();
  second.join();
  EXPECT_EQ(second.exitcode(), 4);
}

void hold_until_killed(mproc::Connection held) {
  (void)held;
  std::this_thread::sleep_for(std::chrono::hours(1));
}

// The forkserver started the child, but the parent cannot open a pidfd for it (EMFILE here):
// start() fails, and the child it cannot track must not be left running.
TEST(Process, ForkserverChildThatCannotBeTrackedIsKilled) {
  Process warm(ProcessOptions{.start = StartMethod::forkserver}, do_nothing);  // server up
  warm.start();
  warm.join();
  auto [watch, held] = mproc::Pipe();
  Process child(ProcessOptions{.start = StartMethod::forkserver}, hold_until_killed, held);
  mproc::detail::sys::inject_failure("pidfd_open", EMFILE);
  try {
    child.start();
    FAIL() << "start() should fail when the child's pidfd cannot be opened";
  } catch (const mproc::SystemError& e) {
    EXPECT_EQ(e.code().value(), EMFILE);
  }
  mproc::detail::sys::inject_failure("pidfd_open", 0, 0);
  held.close();
  // EOF on `watch` once every copy of `held` is gone, i.e. once the child has died.
  pollfd pfd{watch.fileno(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 20'000), 1) << "the untracked child is still running";
  EXPECT_THROW(watch.recv_bytes(), mproc::ConnectionClosed);
}

TEST(Process, CpuCountIsWithinTheAffinityMask) {
  const int n = mproc::cpu_count();
  EXPECT_GE(n, 1);
  cpu_set_t set;
  ASSERT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_LE(n, CPU_COUNT(&set));
  // Pinned to one CPU, a child sees one.
  const int code = mproc::test::in_forked_child([] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (::sched_setaffinity(0, sizeof one, &one) != 0) return 10;
    return mproc::cpu_count();
  });
  EXPECT_EQ(code, 1);
}

}  // namespace
