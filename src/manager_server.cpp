#include "manager_server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

#include "detail/sys.hpp"
#include "manager_auth.hpp"
#include "mproc/detail/archive.hpp"
#include "mproc/detail/remote_exception.hpp"
#include "mproc/errors.hpp"
#include "mproc/log.hpp"

namespace mproc::detail::manager {

namespace {

constexpr std::chrono::seconds kAuthTimeout{10};
/// How often run() joins the threads of connections that ended.
constexpr std::chrono::milliseconds kReapInterval{200};

Kind read_kind(Decoder& in) {
  std::uint8_t k = 0;
  in.read_bytes(&k, 1);
  if (k < static_cast<std::uint8_t>(Kind::dict) || k > static_cast<std::uint8_t>(Kind::object)) {
    throw ProtocolError("mproc::Manager: unknown object kind " + std::to_string(k));
  }
  return static_cast<Kind>(k);
}

std::string read_name(Decoder& in) {
  const std::uint64_t n = get_u64_le(in);
  if (n > in.remaining()) throw_truncated(static_cast<std::size_t>(n), in.remaining());
  const auto bytes = in.read_bytes(static_cast<std::size_t>(n));
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

bool same_type(const Servant& s, Kind kind, std::uint64_t a, std::uint64_t b) {
  return s.kind == kind && s.type_a == a && s.type_b == b;
}

[[noreturn]] void name_taken(const std::string& name) {
  throw SerializationError("mproc::Manager: the object named \"" + name +
                           "\" is of another kind or holds other types than requested");
}

}  // namespace

class Server::Connection final : public Session {
 public:
  Connection(Server& server, UniqueFd socket) : server_(server), fd(std::move(socket)) {
    same_user_peer = server.unix_socket_;  // accept() refuses other users' Unix peers
  }

  bool abandoned() override {
    if (server_.stopping_.load()) return true;
    pollfd p{fd.get(), POLLRDHUP, 0};
    if (::poll(&p, 1, 0) < 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

  Server& server_;
  UniqueFd fd;  // closed only when the Connection is destroyed (under connections_mutex_)
  std::thread thread;
  std::atomic<bool> done{false};
};

Server::Server(Listener listener, std::string authkey, bool accept_shutdown)
    : listener_(std::move(listener)),
      authkey_(std::move(authkey)),
      accept_shutdown_(accept_shutdown),
      unix_socket_(listener_.address.starts_with("@") || listener_.address.starts_with("unix:")),
      wake_(sys::eventfd()) {}

Server::~Server() {
  stop();
  const std::lock_guard lock(connections_mutex_);
  for (auto& c : connections_) {
    if (c->thread.joinable()) c->thread.join();
  }
}

void Server::stop() noexcept {
  if (!stopping_.exchange(true)) {
    try {
      sys::eventfd_signal(wake_.get());
    } catch (...) {
      // The eventfd cannot fail to count; run() also notices stopping_ at its next wake-up.
    }
  }
}

void Server::run(int stop_fd) {
  pollfd fds[3] = {{listener_.fd.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
  const std::size_t nfds = stop_fd >= 0 ? 3 : 2;
  while (!stopping_.load()) {
    reap_finished();
    if (sys::poll(fds, nfds, kReapInterval) == 0) continue;
    if ((fds[1].revents | (nfds == 3 ? fds[2].revents : 0)) != 0) break;
    if (fds[0].revents != 0) accept_ready();
  }
  stopping_.store(true);
  listener_.fd.reset();
  if (!listener_.unlink_path.empty()) ::unlink(listener_.unlink_path.c_str());
  std::list<std::unique_ptr<Connection>> all;
  {
    const std::lock_guard lock(connections_mutex_);
    // Wakes every connection thread out of its recv(); waits notice stopping_ within a slice.
    for (auto& c : connections_) ::shutdown(c->fd.get(), SHUT_RDWR);
    all.swap(connections_);
  }
  for (auto& c : all) {
    if (c->thread.joinable()) c->thread.join();
  }
}

void Server::reap_finished() {
  std::list<std::unique_ptr<Connection>> finished;
  {
    const std::lock_guard lock(connections_mutex_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if ((*it)->done.load()) {
        finished.splice(finished.end(), connections_, it++);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : finished) c->thread.join();
}

void Server::accept_ready() {
  for (;;) {
    const int fd = ::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      log(LogLevel::error, std::string("mproc::Manager: accept(): ") + std::strerror(errno));
      return;  // EMFILE and the like: poll again after the reap interval
    }
    UniqueFd socket(fd);
    if (live_connections_.load() >= kMaxConnections) {
      log(LogLevel::warning, "mproc::Manager: refusing a connection: " +
                                 std::to_string(kMaxConnections) + " are open already");
      continue;
    }
    auto connection = std::make_unique<Connection>(*this, std::move(socket));
    Connection* c = connection.get();
    live_connections_.fetch_add(1);
    try {
      c->thread = std::thread([this, c] { serve(*c); });
    } catch (const std::system_error& e) {
      live_connections_.fetch_sub(1);
      log(LogLevel::error,
          std::string("mproc::Manager: cannot start a connection thread: ") + e.what());
      continue;
    }
    const std::lock_guard lock(connections_mutex_);
    connections_.push_back(std::move(connection));
  }
}

void Server::serve(Connection& c) {
  const int fd = c.fd.get();
  try {
    if (unix_socket_ && !peer_is_same_user(fd)) {
      log(LogLevel::warning, "mproc::Manager: refused a client running as another user");
    } else if (!authenticate_client(fd, authkey_, kAuthTimeout)) {
      log(LogLevel::warning, "mproc::Manager: rejected a client with a wrong authkey");
    } else {
      FrameReader reader;
      Encoder reply;
      const std::uint64_t limit = max_message_size() + kFrameOverhead;
      while (!stopping_.load()) {
        const auto request = reader.read(fd, limit);
        if (!request) break;
        reply.clear();
        put_u64_le(reply, 0);  // frame length, filled in by send_frame
        const bool shutdown_requested = handle(c, *request, reply);
        send_frame(fd, reply.bytes());
        if (shutdown_requested) {
          stop();
          break;
        }
      }
    }
  } catch (const Abandoned&) {
    // The client went away while its request waited.
  } catch (const ConnectionClosed&) {
    // The client went away mid-message.
  } catch (const ProtocolError& e) {
    log(LogLevel::warning, std::string("mproc::Manager: dropping a client: ") + e.what());
  } catch (const std::exception& e) {
    log(LogLevel::warning, std::string("mproc::Manager: dropping a client: ") + e.what());
  }
  for (const auto& held : c.holdings) {
    if (auto servant = held.lock()) servant->session_ended(c);
  }
  c.holdings.clear();
  live_connections_.fetch_sub(1);
  c.done.store(true);
}

bool Server::handle(Session& session, std::span<const std::byte> request, Encoder& reply) {
  const Encoder::Mark start = reply.mark();
  const std::uint8_t ok = static_cast<std::uint8_t>(Status::ok);
  reply.write_bytes(&ok, 1);
  try {
    Decoder in(request);
    std::uint8_t op = 0;
    in.read_bytes(&op, 1);
    const std::uint64_t id = get_u64_le(in);
    if (id == 0) {
      if (static_cast<Op>(op) == Op::shutdown) {
        if (!accept_shutdown_) {
          throw UsageError(
              "mproc::Manager: this is a standalone server (serve_forever); it stops when its "
              "process receives SIGINT or SIGTERM");
        }
        in.expect_end();
        return true;
      }
      handle_manager_op(static_cast<Op>(op), in, reply);
    } else {
      find(id)->handle(static_cast<Op>(op), in, reply, session);
    }
  } catch (const Abandoned&) {
    throw;
  } catch (...) {
    reply.rewind(start);
    const std::uint8_t failed = static_cast<std::uint8_t>(Status::error);
    reply.write_bytes(&failed, 1);
    put_u64_le(reply, static_cast<std::uint64_t>(::getpid()));
    encode_exception(reply, std::current_exception());
  }
  return false;
}

void Server::handle_manager_op(Op op, Decoder& in, Encoder& reply) {
  switch (op) {
    case Op::create: {
      const Kind kind = read_kind(in);
      const std::uint64_t a = get_u64_le(in);
      const std::uint64_t b = get_u64_le(in);
      const std::uint64_t capacity = get_u64_le(in);
      const std::string name = read_name(in);
      if (!name.empty()) {
        const std::shared_lock lock(objects_mutex_);
        if (const auto it = names_.find(name); it != names_.end()) {
          if (!same_type(*objects_.at(it->second), kind, a, b)) name_taken(name);
          put_u64_le(reply, it->second);
          return;
        }
      }
      std::shared_ptr<Servant> made =
          kind == Kind::object ? make_object(a, in) : make_servant(kind, a, b, capacity);
      in.expect_end();
      const std::unique_lock lock(objects_mutex_);
      if (!name.empty()) {
        // Another client may have made it meanwhile: the first one made is the one kept.
        if (const auto it = names_.find(name); it != names_.end()) {
          if (!same_type(*objects_.at(it->second), kind, a, b)) name_taken(name);
          put_u64_le(reply, it->second);
          return;
        }
      }
      const std::uint64_t id = next_id_++;
      objects_.emplace(id, std::move(made));
      if (!name.empty()) names_.emplace(name, id);
      put_u64_le(reply, id);
      return;
    }
    case Op::stats: {
      in.expect_end();
      put_u64_le(reply, live_connections_.load());
      const std::shared_lock lock(objects_mutex_);
      put_u64_le(reply, objects_.size());
      return;
    }
    case Op::ping: in.expect_end(); return;
    default:
      throw ProtocolError("mproc::Manager: unknown manager operation " +
                          std::to_string(static_cast<int>(op)));
  }
}

std::shared_ptr<Servant> Server::find(std::uint64_t id) {
  const std::shared_lock lock(objects_mutex_);
  const auto it = objects_.find(id);
  if (it == objects_.end()) {
    throw UsageError("mproc::Manager: no object " + std::to_string(id) +
                     " in this manager (the proxy belongs to another manager?)");
  }
  return it->second;
}

}  // namespace mproc::detail::manager
