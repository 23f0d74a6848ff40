// The forkserver start method: client side (start_forkserver) and the helper's loop (serve).
//
// Request on the control socket (client -> forkserver), one per child:
//
//     0        8
//     +--------+--------------------------------------------------------+
//     | u64 len| body: the spawn start message of bootstrap.hpp          |
//     +--------+--------------------------------------------------------+
//     SCM_RIGHTS on the first byte: [status socket, the call's descriptors...]
//
// The forkserver answers on the status socket: i32 pid (or -errno if fork failed), later i32
// wait status (>= 0 exit code, < 0 -signal) when it has reaped the child, then closes it.
#include "forkserver.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "bootstrap.hpp"
#include "detail/leaked_global.hpp"
#include "detail/sys.hpp"
#include "lifeline.hpp"
#include "mproc/detail/callable.hpp"
#include "mproc/log.hpp"
#include "spawn.hpp"

namespace mproc::detail {
namespace forkserver {
namespace {

// SCM_MAX_FD on Linux; a call cannot carry more descriptors than one message can.
constexpr std::size_t kMaxFds = 253;

struct Client {
  std::mutex mu;
  pid_t owner = 0;  ///< the process that started this forkserver
  pid_t pid = 0;
  UniqueFd pidfd;
  UniqueFd control;
};

// Leaked on purpose: used at exit and after fork. Created on first use; forget_after_fork()
// must not create it (allocating in a fork child copies pages for nothing).
std::atomic<Client*> g_client{nullptr};

Client& client() {
  return leaked_global(g_client);
}

void send_with_fds(int fd, std::span<const std::byte> head, const std::vector<int>& fds) {
  iovec iov{const_cast<std::byte*>(head.data()), head.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<std::byte> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  const std::size_t sent = sys::sendmsg(fd, &msg, 0);
  if (sent < head.size()) sys::send_all(fd, head.subspan(sent));
}

// Starts the helper (the caller holds client().mu).
void start_locked(Client& c) {
  auto channel = sys::socketpair(SOCK_STREAM);
  const pid_t pid = spawn::exec_self("forkserver", channel.second.get(), {});
  channel.second.reset();
  c.pidfd = sys::pidfd_open(pid);
  c.pid = pid;
  c.owner = ::getpid();
  c.control = std::move(channel.first);
  log(LogLevel::debug, "forkserver started as pid " + std::to_string(pid));
}

// Forgets a dead helper and reaps it (the caller holds client().mu).
void discard_locked(Client& c) noexcept {
  if (c.pid != 0 && c.owner == ::getpid()) {
    try {
      sys::pidfd_send_signal(c.pidfd.get(), SIGKILL);
      sys::waitid_pidfd(c.pidfd.get(), 0);
    } catch (const std::exception& e) {
      log(LogLevel::warning, std::string("reaping the forkserver: ") + e.what());
    }
  }
  c.control.reset();
  c.pidfd.reset();
  c.pid = 0;
}

// ---- the helper ---------------------------------------------------------------------------------

struct Child {
  pid_t pid;
  UniqueFd pidfd;
  UniqueFd status;
};

void write_status(int fd, std::int32_t value) noexcept {
  try {
    sys::send_all(fd, std::as_bytes(std::span(&value, 1)));
  } catch (const std::exception&) {
    // The client is gone or no longer interested in this child: nothing to tell.
  }
}

// Reads one request; returns false at EOF (the client closed the control socket or died).
bool read_request(int control, std::vector<std::byte>& body, std::vector<UniqueFd>& fds) {
  std::uint64_t length = 0;
  iovec iov{&length, sizeof length};
  alignas(cmsghdr) std::array<std::byte, CMSG_SPACE(sizeof(int) * kMaxFds)> cbuf{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf.data();
  msg.msg_controllen = cbuf.size();
  const std::size_t got = sys::recvmsg(control, &msg, 0);
  fds.clear();
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < n; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.emplace_back(fd);
      }
    }
  }
  if (got == 0) return false;
  if ((msg.msg_flags & MSG_CTRUNC) != 0) throw ProtocolError("forkserver: descriptors truncated");
  if (got < sizeof length &&
      !sys::read_exact(control, std::as_writable_bytes(std::span(&length, 1)).subspan(got))) {
    return false;
  }
  if (length > max_message_size()) throw ProtocolError("forkserver: request too large");
  body.resize(length);
  return sys::read_exact(control, body);
}

}  // namespace

void forget_after_fork() noexcept {
  Client* existing = g_client.load(std::memory_order_acquire);
  if (existing == nullptr) return;
  Client& c = *existing;
  // Nothing to forget (and no page to dirty) unless a forkserver was started.
  if (c.pid == 0 && !c.control && !c.pidfd) return;
  // The mutex may have been held by a parent thread at fork time: replace, don't unlock.
  new (&c.mu) std::mutex;
  c.control.reset();
  c.pidfd.reset();
  c.pid = 0;
  c.owner = 0;
}

void add_service_resources(std::vector<int>& pids, std::vector<int>& fds) {
  Client& c = client();
  std::lock_guard lock(c.mu);
  if (c.pid == 0 || c.owner != ::getpid()) return;
  pids.push_back(c.pid);
  fds.push_back(c.control.get());
  fds.push_back(c.pidfd.get());
}

[[noreturn]] void serve(int control_fd) noexcept {
  // Ctrl-C goes to the whole process group: the client decides what happens to its
  // children, so the helper ignores it (its children get the default action back).
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ignore, nullptr);
  const int parent_pid = ::getppid();
  try {
    UniqueFd control(control_fd);
    sys::set_cloexec(control_fd, true);
    lifeline::ensure();
    std::vector<Child> children;
    std::vector<std::byte> body;
    std::vector<UniqueFd> fds;
    for (;;) {
      std::vector<pollfd> pfds;
      pfds.push_back({control.get(), POLLIN, 0});
      for (auto& ch : children) pfds.push_back({ch.pidfd.get(), POLLIN, 0});
      sys::poll(pfds.data(), pfds.size(), std::nullopt);
      // Reap first, so a status is never reported after the slot is reused.
      for (std::size_t i = children.size(); i-- > 0;) {
        if ((pfds[i + 1].revents & POLLIN) == 0) continue;
        const auto code = sys::waitid_pidfd(children[i].pidfd.get(), 0);
        write_status(children[i].status.get(), code.value_or(-SIGKILL));
        children.erase(children.begin() + static_cast<std::ptrdiff_t>(i));
      }
      if ((pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      if (!read_request(control.get(), body, fds)) break;  // the client is gone
      if (fds.empty()) continue;                           // malformed: nowhere to answer
      UniqueFd status = std::move(fds.front());
      fds.erase(fds.begin());
      flush_stdio_before_fork();
      const int server_pid = ::getpid();
      const pid_t pid = [] {
        lifeline::ForkScope scope;
        return ::fork();
      }();
      if (pid < 0) {
        write_status(status.get(), -errno);
        continue;
      }
      if (pid == 0) {
        // The forkserver's loop runs on its main thread.
        prepare_fork_child(server_pid, /*keep_lifeline_across_exec=*/true,
                           /*forked_by_main_thread=*/true);
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        ::sigaction(SIGINT, &dfl, nullptr);
        // Siblings' descriptors and the control socket are not this child's business.
        (void)control.release();
        ::close(control_fd);
        for (auto& ch : children) {
          ::close(ch.pidfd.release());
          ::close(ch.status.release());
        }
        ::close(status.release());
        run_child_and_exit(
            [&] {
              Decoder in(body);
              spawn::StartMessage start = spawn::decode_start_message(in);
              if (start.fd_numbers.size() != fds.size()) {
                throw ProtocolError("forkserver child: descriptor count mismatch");
              }
              become_child(std::move(start.name), start.parent_pid, std::move(start.parent_name));
              set_max_message_size(start.max_message_size);
              Decoder call(start.call, fds);
              run_call(call, nullptr);
            },
            /*use_exit=*/false);
      }
      const std::int32_t reported = pid;
      write_status(status.get(), reported);
      fds.clear();  // the child has its copies
      children.push_back(Child{pid, sys::pidfd_open(pid), std::move(status)});
    }
  } catch (const std::exception& e) {
    log(LogLevel::error, std::string("forkserver: ") + e.what());
    ::_exit(1);
  }
  (void)parent_pid;
  ::_exit(0);
}

}  // namespace forkserver

void start_forkserver(ProcessState& state) {
  Encoder call;
  state.call_writer(call);
  if (call.fds().size() + 1 > forkserver::kMaxFds) {
    throw UsageError("Process " + state.name + ": the target's arguments carry " +
                     std::to_string(call.fds().size()) + " descriptors; at most " +
                     std::to_string(forkserver::kMaxFds - 1) + " can travel to a child");
  }
  const Encoder body = spawn::encode_start_message(state.name, call);
  const std::uint64_t length = body.bytes().size();

  auto status = sys::socketpair(SOCK_STREAM);
  std::vector<int> fds{status.second.get()};
  fds.insert(fds.end(), call.fds().begin(), call.fds().end());

  auto& c = forkserver::client();
  {
    std::lock_guard lock(c.mu);
    for (int attempt = 0;; ++attempt) {
      if (c.pid == 0 || c.owner != ::getpid()) {
        forkserver::discard_locked(c);
        forkserver::start_locked(c);
      }
      try {
        forkserver::send_with_fds(c.control.get(), std::as_bytes(std::span(&length, 1)), fds);
        sys::send_all(c.control.get(), body.bytes());
        break;
      } catch (const SystemError& e) {
        // A forkserver that died (killed, crashed) is replaced once.
        const int err = e.code().value();
        if (attempt > 0 || (err != EPIPE && err != ECONNRESET)) throw;
        log(LogLevel::warning, "forkserver pid " + std::to_string(c.pid) + " died; restarting it");
        forkserver::discard_locked(c);
      }
    }
  }
  status.second.reset();
  std::int32_t pid = 0;
  if (!sys::read_exact(status.first.get(), std::as_writable_bytes(std::span(&pid, 1)))) {
    throw Error("Process " + state.name + ": the forkserver died before starting it");
  }
  if (pid < 0) sys::throw_errno("fork() in the forkserver", -pid);
  state.status_fd = std::move(status.first);
  try {
    state.pidfd = sys::pidfd_open(pid);
  } catch (const SystemError& e) {
    // ESRCH: the child has already ended and been reaped by the forkserver; its status is on
    // the status socket. Anything else is a real failure.
    if (e.code().value() != ESRCH) {
      // Untrackable: do not leave it running (it is the forkserver's child, which reaps it,
      // so the pid cannot have been reused yet).
      ::kill(pid, SIGKILL);
      throw;
    }
  }
  // Last: a nonzero pid publishes the descriptors to other threads (active_children()).
  state.pid.store(pid, std::memory_order_release);
}

}  // namespace mproc::detail
