#include "mproc/process.hpp"

#include <cxxabi.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#if defined(__GLIBCXX__)
#include <ext/stdio_sync_filebuf.h>
#endif
#include <sstream>

#include "bootstrap.hpp"
#include "detail/leaked_global.hpp"
#include "detail/sys.hpp"
#include "forkserver.hpp"
#include "lifeline.hpp"
#include "mproc/detail/service.hpp"
#include "mproc/log.hpp"
#include "process_state.hpp"

namespace mproc {
namespace detail {

// ---- ProcessState -------------------------------------------------------------------------

bool ProcessState::owned_here() const noexcept {
  return owner == ::getpid();
}

bool ProcessState::reap_locked(bool block) {
  if (exitcode_) return true;
  if (status_fd) {
    // Forkserver child: the forkserver writes the 4-byte status, then closes.
    if (!block) {
      pollfd pfd{status_fd.get(), POLLIN, 0};
      if (sys::poll(&pfd, 1, std::chrono::nanoseconds::zero()) == 0) return false;
    }
    int status = 0;
    std::size_t got = 0;
    if (sys::read_exact(status_fd.get(), std::as_writable_bytes(std::span(&status, 1)), &got)) {
      exitcode_ = status;
    } else {
      // The forkserver died; its children die with it (lifeline), so report SIGKILL.
      exitcode_ = -SIGKILL;
    }
    return true;
  }
  const auto code = sys::waitid_pidfd(pidfd.get(), block ? 0 : WNOHANG);
  if (!code) return false;
  exitcode_ = *code;
  return true;
}

bool ProcessState::wait(std::optional<std::chrono::nanoseconds> timeout) {
  {
    std::lock_guard lock(mu_);
    if (exitcode_) return true;
  }
  // Wait without holding the lock, so is_alive()/exitcode() from other threads stay prompt.
  const int fd = status_fd ? status_fd.get() : pidfd.get();
  pollfd pfd{fd, POLLIN, 0};
  if (sys::poll(&pfd, 1, timeout) == 0) return false;
  std::lock_guard lock(mu_);
  return reap_locked(/*block=*/true);
}

std::optional<int> ProcessState::exitcode() {
  std::lock_guard lock(mu_);
  if (!started() || !owned_here()) return exitcode_;
  reap_locked(/*block=*/false);
  return exitcode_;
}

void ProcessState::signal(int sig) {
  std::lock_guard lock(mu_);
  if (exitcode_ || !pidfd) return;  // no pidfd: a forkserver child that ended at once
  // A pidfd names this very process even if its pid has been reused since.
  sys::pidfd_send_signal(pidfd.get(), sig);
}

// ---- identity ---------------------------------------------------------------------------------

namespace {
// The identity in force; replaced wholesale (never mutated) so a fork child adopts a new one
// with a single pointer store. Deliberately leaked: used from atexit handlers and static
// constructors in any order.
std::atomic<Identity*> g_identity{nullptr};
std::atomic<int> g_child_counter{0};

std::string path_string(const std::vector<int>& path) {
  std::string s;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (i > 0) s += ':';
    s += std::to_string(path[i]);
  }
  return s;
}

// "Process-1:2" -> {1, 2}; names that do not follow the scheme give {}.
std::vector<int> path_of(const std::string& name) {
  std::vector<int> path;
  const auto dash = name.rfind('-');
  if (dash == std::string::npos) return path;
  int value = 0;
  bool digits = false;
  for (std::size_t i = dash + 1; i <= name.size(); ++i) {
    const char c = i < name.size() ? name[i] : ':';
    if (c >= '0' && c <= '9' && value < 100'000'000) {
      value = value * 10 + (c - '0');
      digits = true;
    } else if (c == ':' && digits) {
      path.push_back(value);
      value = 0;
      digits = false;
    } else {
      return {};
    }
  }
  return path;
}
}  // namespace

Identity& identity() {
  return leaked_global(g_identity);
}

std::string next_child_name() {
  auto path = identity().path;
  path.push_back(g_child_counter.fetch_add(1) + 1);
  return "Process-" + path_string(path);
}

Identity* make_child_identity(std::string name, int parent_pid, std::string parent_name) {
  auto* child = new Identity;
  child->path = path_of(name);
  child->name = std::move(name);
  child->parent_pid = parent_pid;
  child->parent_name = std::move(parent_name);
  return child;
}

void adopt_identity(Identity* child) noexcept {
  // The parent's identity stays allocated in this copy of its memory, reachable through
  // `previous` (so leak checkers do not flag it); nothing frees it.
  child->previous = g_identity.load(std::memory_order_relaxed);
  g_identity.store(child, std::memory_order_release);
  g_child_counter.store(0, std::memory_order_relaxed);
}

void become_child(std::string name, int parent_pid, std::string parent_name) {
  adopt_identity(make_child_identity(std::move(name), parent_pid, std::move(parent_name)));
}

// ---- registry of live children ----------------------------------------------------------------

namespace {
struct Registry {
  std::mutex mu;
  std::vector<std::weak_ptr<ProcessState>> children;
  Registry* abandoned_next = nullptr;
};
// Replaced (not destroyed) after fork: another thread may have held the mutex at fork time.
// Abandoned copies stay reachable from g_abandoned, so leak checkers do not flag them.
std::atomic<Registry*> g_registry{nullptr};
Registry* g_abandoned = nullptr;

Registry& registry() {
  return leaked_global(g_registry);
}

void at_exit_reap_children() noexcept {
  // Python's semantics at interpreter exit: daemonic children are terminated, the others
  // joined. Children whose Process object is still alive here were leaked or are statics.
  std::vector<std::shared_ptr<ProcessState>> live;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    for (auto& weak : r.children) {
      if (auto state = weak.lock()) live.push_back(std::move(state));
    }
  }
  for (auto& state : live) {
    try {
      if (!state->started() || !state->owned_here()) continue;
      if (state->daemon) state->signal(SIGKILL);
      state->wait(std::nullopt);
    } catch (const std::exception& e) {
      log(LogLevel::error, std::string("reaping ") + state->name + " at exit: " + e.what());
    }
  }
}
}  // namespace

void register_child(const std::shared_ptr<ProcessState>& state) {
  static const bool registered_atexit = [] {
    std::atexit(at_exit_reap_children);
    // Any fork child (ours or the program's own) starts with no children of its own.
    ::pthread_atfork(nullptr, nullptr, reset_registry_after_fork);
    return true;
  }();
  (void)registered_atexit;
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  // Drop entries of children that are gone, so the list stays as long as the live set.
  std::erase_if(r.children, [](const std::weak_ptr<ProcessState>& w) { return w.expired(); });
  r.children.push_back(state);
}

void reset_registry_after_fork() noexcept {
  // The parent's copy may be locked by a thread that does not exist here: abandon it.
  if (Registry* old = g_registry.exchange(nullptr)) {
    old->abandoned_next = g_abandoned;
    g_abandoned = old;
  }
}

// ---- child life ---------------------------------------------------------------------------------

namespace {
std::string current_exception_type() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  if (type == nullptr) return "unknown exception";
  int status = 0;
  char* demangled = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
  std::string name = (status == 0 && demangled != nullptr) ? demangled : type->name();
  std::free(demangled);
  return name;
}
}  // namespace

void flush_standard_streams() noexcept {
  // Only what has pending output: every FILE or stream touched here is a page the child copies.
#if defined(__GLIBCXX__)
  // With sync_with_stdio(true), the default, std::cout writes straight into C's stdout.
  if (dynamic_cast<__gnu_cxx::stdio_sync_filebuf<char>*>(std::cout.rdbuf()) == nullptr) {
    std::cout.flush();
  }
#else
  std::cout.flush();
#endif
  if (::__fpending(stdout) > 0) std::fflush(stdout);
  if (::__fpending(stderr) > 0) std::fflush(stderr);
}

void run_child_and_exit(const std::function<void()>& body, bool use_exit) noexcept {
  int code = 0;
  try {
    body();
  } catch (const std::exception& e) {
    const std::string line = "Process " + identity().name + " (pid " + std::to_string(::getpid()) +
                             "): uncaught " + current_exception_type() + ": " + e.what() + "\n";
    std::fflush(stdout);
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
    code = 1;
  } catch (...) {
    const std::string line = "Process " + identity().name + " (pid " + std::to_string(::getpid()) +
                             "): uncaught " + current_exception_type() + "\n";
    std::fflush(stdout);
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
    code = 1;
  }
  if (use_exit) std::exit(code);
  // A fork child's statics are copies of the parent's: run no destructors, only flush what
  // the target printed to stdout/stderr (as Python's os._exit path does).
  flush_standard_streams();
  ::_exit(code);
}

int thread_count() {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  // Field 20 (num_threads); the command name (field 2) may contain spaces, so count from ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return 1;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 20 && rest >> field; ++i) {
    if (i == 20) return std::max(1, std::atoi(field.c_str()));
  }
  return 1;
}

}  // namespace detail

// ---- start method -----------------------------------------------------------------------------

namespace {
// -1 = automatic, else a StartMethod value.
std::atomic<int> g_start_method{-1};
}  // namespace

StartMethod get_start_method() {
  const int forced = g_start_method.load();
  if (forced >= 0) return static_cast<StartMethod>(forced);
  return detail::thread_count() > 1 ? StartMethod::forkserver : StartMethod::fork;
}

void set_start_method(std::optional<StartMethod> method) {
  g_start_method.store(method ? static_cast<int>(*method) : -1);
}

// ---- Process
// -------------------------------------------------------------------------------------

Process::Process(ProcessOptions options, detail::ForkTarget fork_target,
                 detail::CallWriter call_writer)
    : state_(std::make_shared<detail::ProcessState>()) {
  state_->name = options.name.empty() ? detail::next_child_name() : std::move(options.name);
  state_->daemon = options.daemon;
  state_->fork_target = std::move(fork_target);
  state_->call_writer = std::move(call_writer);
  if (options.start) {
    state_->method = *options.start;
    if (state_->method != StartMethod::fork && !state_->call_writer) {
      throw UsageError(
          "Process " + state_->name +
          ": this target cannot be started with forkserver or spawn: it captures state (or "
          "takes arguments that cannot be encoded), and only a fork child, a copy of this "
          "process, can run it. Pass the data as arguments to a function pointer or a "
          "captureless lambda, or use StartMethod::fork.");
    }
  } else {
    state_->method = get_start_method();
    if (state_->method != StartMethod::fork && !state_->call_writer) {
      // Only a fork child can run a target that cannot travel.
      detail::log(
          LogLevel::warning,
          "Process " + state_->name +
              ": target captures state, so it is started with fork although this process has "
              "several threads (a fork child may inherit a lock another thread held). Pass "
              "the data as arguments to a transferable target to use forkserver.");
      state_->method = StartMethod::fork;
    }
  }
}

Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    Process old(std::move(*this));
    state_ = std::move(other.state_);
  }
  return *this;
}

Process::~Process() {
  if (!state_ || !state_->started() || !state_->owned_here()) return;
  try {
    if (state_->daemon) {
      state_->signal(SIGKILL);
    } else if (!state_->wait(std::chrono::nanoseconds::zero())) {
      detail::log(LogLevel::debug, "Process " + state_->name + " destroyed while running: joining");
    }
    state_->wait(std::nullopt);
  } catch (const std::exception& e) {
    detail::log(LogLevel::error, "~Process(" + state_->name + "): " + e.what());
  }
}

void Process::start() {
  if (!state_) throw UsageError("Process: start() on a moved-from Process");
  if (state_->started()) {
    throw UsageError("Process " + state_->name +
                     ": start() called twice; a process object "
                     "can only be started once (create a new Process)");
  }
  detail::bootstrap::anchor();
  detail::lifeline::ensure();
  // Registered before the child exists: bookkeeping done after fork() would dirty pages the
  // parent still shares with the child, and each one would be copied.
  state_->owner = ::getpid();
  detail::register_child(state_);
  switch (state_->method) {
    case StartMethod::fork: detail::start_fork(*state_); break;
    case StartMethod::spawn: detail::start_spawn(*state_); break;
    case StartMethod::forkserver: detail::start_forkserver(*state_); break;
  }
}

namespace {
void require_joinable(const std::shared_ptr<detail::ProcessState>& state, const char* what) {
  if (!state) throw UsageError(std::string("Process: ") + what + " on a moved-from Process");
  if (!state->started()) {
    throw UsageError("Process " + state->name + ": " + what + " before start()");
  }
  if (state->closed) {
    throw UsageError("Process " + state->name + ": " + what + " after close()");
  }
  if (!state->owned_here()) {
    throw UsageError("Process " + state->name + ": only the process that started it (pid " +
                     std::to_string(state->owner) + ") can " + what);
  }
}
}  // namespace

void Process::join() {
  require_joinable(state_, "join()");
  state_->wait(std::nullopt);
}

bool Process::join_for(std::chrono::nanoseconds timeout) {
  require_joinable(state_, "join_for()");
  return state_->wait(std::max(timeout, std::chrono::nanoseconds::zero()));
}

bool Process::is_alive() const {
  if (!state_ || !state_->started() || !state_->owned_here() || state_->closed) return false;
  return !state_->exitcode().has_value();
}

int Process::pid() const noexcept {
  return state_ ? state_->pid.load() : 0;
}

const std::string& Process::name() const noexcept {
  static const std::string empty;
  return state_ ? state_->name : empty;
}

bool Process::daemon() const noexcept {
  return state_ && state_->daemon;
}

std::optional<int> Process::exitcode() const {
  if (!state_ || !state_->started()) return std::nullopt;
  if (state_->closed) return state_->exitcode();
  return state_->exitcode();
}

void Process::terminate() {
  require_joinable(state_, "terminate()");
  state_->signal(SIGTERM);
}

void Process::kill() {
  require_joinable(state_, "kill()");
  state_->signal(SIGKILL);
}

int Process::sentinel() const {
  require_joinable(state_, "sentinel()");
  return state_->status_fd ? state_->status_fd.get() : state_->pidfd.get();
}

void Process::close() {
  if (!state_ || !state_->started() || state_->closed) return;
  if (state_->owned_here() && !state_->exitcode()) {
    throw UsageError("Process " + state_->name +
                     ": close() while the child is still running; join() or kill() it first");
  }
  state_->status_fd.reset();
  state_->pidfd.reset();
  state_->closed = true;
}

// ---- introspection
// -------------------------------------------------------------------------------

bool ProcessInfo::is_alive() const {
  if (pid_ == ::getpid()) return true;
  std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z' &&
         line[close + 2] != 'X';
}

ProcessInfo current_process() {
  return ProcessInfo(::getpid(), detail::identity().name);
}

std::optional<ProcessInfo> parent_process() {
  const auto& self = detail::identity();
  if (self.parent_pid == 0) return std::nullopt;
  return ProcessInfo(self.parent_pid, self.parent_name);
}

std::vector<ProcessInfo> active_children() {
  std::vector<std::shared_ptr<detail::ProcessState>> states;
  {
    auto& r = detail::registry();
    std::lock_guard lock(r.mu);
    for (auto& weak : r.children) {
      if (auto s = weak.lock()) states.push_back(std::move(s));
    }
  }
  std::vector<ProcessInfo> live;
  for (auto& s : states) {
    // Like Python, asking reaps the children that have ended.
    if (s->started() && s->owned_here() && !s->exitcode()) live.emplace_back(s->pid, s->name);
  }
  return live;
}

namespace detail {
ServiceResources service_resources() {
  ServiceResources r;
  if (lifeline::read_fd() >= 0) r.fds.push_back(lifeline::read_fd());
  if (lifeline::write_fd() >= 0) r.fds.push_back(lifeline::write_fd());
  forkserver::add_service_resources(r.pids, r.fds);
  return r;
}
}  // namespace detail

int cpu_count() {
  int count = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    count = CPU_COUNT(&set);
  } else {
    count = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  }
  // cgroup v2: the quota of this cgroup and of each ancestor ("max" = none), rounded up.
  std::ifstream cgroup("/proc/self/cgroup");
  std::string line;
  while (std::getline(cgroup, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    std::string path = line.substr(3);
    for (;;) {
      std::ifstream max_file("/sys/fs/cgroup" + path + "/cpu.max");
      std::string quota;
      long long period = 0;
      if (max_file >> quota >> period && quota != "max" && period > 0) {
        const long long q = std::atoll(quota.c_str());
        if (q > 0) {
          count = std::min(count, static_cast<int>((q + period - 1) / period));
        }
      }
      if (path.empty() || path == "/") break;
      const auto slash = path.rfind('/');
      path = slash == 0 ? "/" : path.substr(0, slash);
    }
  }
  return std::max(count, 1);
}

}  // namespace mproc
