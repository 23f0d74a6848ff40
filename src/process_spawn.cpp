// The spawn start method: a fresh exec of this binary per child.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "bootstrap.hpp"
#include "detail/sys.hpp"
#include "lifeline.hpp"
#include "mproc/detail/callable.hpp"
#include "mproc/log.hpp"
#include "process_state.hpp"
#include "spawn.hpp"

extern char** environ;

namespace mproc::detail {
namespace spawn {
namespace {

// argv[0] of this program, so `ps` shows children under the same name as their parent.
const std::string& program_name() {
  static const std::string name = [] {
    std::ifstream cmdline("/proc/self/cmdline", std::ios::binary);
    std::string first;
    std::getline(cmdline, first, '\0');
    return first.empty() ? std::string("mproc-child") : first;
  }();
  return name;
}

void reap_blocking(pid_t pid) noexcept {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

int exec_self(const std::string& role, int channel_fd, const std::vector<int>& keep_fds) {
  // Everything the child needs is built before fork: after fork it makes only
  // async-signal-safe calls, since another thread may have held the allocator's lock.
  std::vector<std::string> env_strings;
  const std::string prefix = std::string(bootstrap::env_name) + "=";
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) env_strings.emplace_back(*e);
  }
  env_strings.push_back(prefix + role + ":" + std::to_string(channel_fd));
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string argv0 = program_name();
  char* argv[] = {argv0.data(), nullptr};
  std::vector<int> inherit = keep_fds;
  inherit.push_back(channel_fd);

  // Close-on-exec error pipe: EOF means exec succeeded, 4 bytes are the child's errno.
  auto error_pipe = sys::pipe();
  const int parent_pid = ::getpid();
  const bool main_thread = lifeline::on_main_thread();
  flush_stdio_before_fork();
  const pid_t pid = [] {
    lifeline::ForkScope scope;
    return sys::fork();
  }();
  if (pid == 0) {
    prepare_fork_child(parent_pid, /*keep_lifeline_across_exec=*/true, main_thread);
    int err = 0;
    for (int fd : inherit) {
      const int flags = ::fcntl(fd, F_GETFD);
      if (flags < 0 || ::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) {
        err = errno;
        break;
      }
    }
    if (err == 0) {
      if (const int injected = sys::injected("execve")) {
        err = injected;
      } else {
        ::execve("/proc/self/exe", argv, envp.data());
        err = errno;
      }
    }
    [[maybe_unused]] auto n = ::write(error_pipe.second.get(), &err, sizeof err);
    ::_exit(127);
  }
  error_pipe.second.reset();
  int child_errno = 0;
  std::size_t got = 0;
  try {
    sys::read_exact(error_pipe.first.get(), std::as_writable_bytes(std::span(&child_errno, 1)),
                    &got);
  } catch (...) {
    ::kill(pid, SIGKILL);
    reap_blocking(pid);
    throw;
  }
  if (got == sizeof child_errno) {
    reap_blocking(pid);
    sys::throw_errno("execve(\"/proc/self/exe\") in the new child", child_errno);
  }
  return pid;
}

[[noreturn]] void run_child(int fd) noexcept {
  run_child_and_exit(
      [fd] {
        UniqueFd channel(fd);
        sys::set_cloexec(fd, true);
        std::uint64_t length = 0;
        if (!sys::read_exact(fd, std::as_writable_bytes(std::span(&length, 1)))) {
          throw ConnectionClosed("spawn child: the parent closed the start channel early");
        }
        if (length > max_message_size()) {
          throw ProtocolError("spawn child: start message of " + std::to_string(length) +
                              " bytes exceeds max_message_size()");
        }
        std::vector<std::byte> body(length);
        if (!sys::read_exact(fd, body)) {
          throw ConnectionClosed("spawn child: the start message was truncated");
        }
        channel.reset();
        Decoder in(body);
        StartMessage start = decode_start_message(in);
        std::vector<UniqueFd> fds;
        fds.reserve(start.fd_numbers.size());
        for (int n : start.fd_numbers) {
          fds.emplace_back(n);
          // Descriptors the call owns must not leak into programs it exec's.
          sys::set_cloexec(n, true);
        }
        become_child(std::move(start.name), start.parent_pid, std::move(start.parent_name));
        set_max_message_size(start.max_message_size);
        Decoder call(start.call, fds);
        run_call(call, nullptr);
      },
      /*use_exit=*/true);
}

Encoder encode_start_message(const std::string& name, const Encoder& call) {
  Encoder body;
  body.reserve(256 + name.size() + call.bytes().size());
  encode(body, bootstrap::spawn_magic);
  encode(body, bootstrap::spawn_version);
  encode(body, name);
  encode(body, static_cast<std::int32_t>(::getpid()));
  encode(body, identity().name);
  encode(body, static_cast<std::uint64_t>(max_message_size()));
  encode(body, call.fds());
  body.write_bytes(call.bytes());
  return body;
}

StartMessage decode_start_message(Decoder& in) {
  if (decode<std::uint32_t>(in) != bootstrap::spawn_magic ||
      decode<std::uint32_t>(in) != bootstrap::spawn_version) {
    throw ProtocolError("child start message has a bad magic or version");
  }
  StartMessage m;
  m.name = decode<std::string>(in);
  m.parent_pid = decode<std::int32_t>(in);
  m.parent_name = decode<std::string>(in);
  m.max_message_size = decode<std::uint64_t>(in);
  if (m.max_message_size == 0) throw ProtocolError("child start message: zero message limit");
  m.fd_numbers = decode<std::vector<int>>(in);
  m.call = in.read_bytes(in.remaining());
  return m;
}

}  // namespace spawn

void start_spawn(ProcessState& state) {
  Encoder call;
  state.call_writer(call);
  const Encoder body = spawn::encode_start_message(state.name, call);

  auto channel = sys::socketpair(SOCK_STREAM);
  const pid_t pid = spawn::exec_self("spawn", channel.second.get(), call.fds());
  channel.second.reset();
  track_child(state, pid);
  const std::uint64_t length = body.bytes().size();
  try {
    sys::send_all(channel.first.get(), std::as_bytes(std::span(&length, 1)));
    sys::send_all(channel.first.get(), body.bytes());
  } catch (const SystemError& e) {
    // The child died before reading its start message; its exit status says how.
    if (e.code().value() != EPIPE && e.code().value() != ECONNRESET) throw;
    log(LogLevel::debug, "Process " + state.name + " exited before reading its start message");
  }
}

}  // namespace mproc::detail
