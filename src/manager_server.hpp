// manager_server.hpp — the Manager's server: accepts connections, authenticates them, and
// serves each on a thread of its own (internal).
//
// Thread per connection, so that one slow, blocked or malicious client stalls only itself:
// a client that stops mid-frame, waits in Queue::get or holds a lock occupies one thread and
// its buffer, nothing shared. At most kMaxConnections are served at once; more are closed on
// arrival. A connection's memory grows only with bytes that arrived (FrameReader), and a
// frame over max_message_size() closes that connection.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "manager_objects.hpp"
#include "manager_socket.hpp"
#include "mproc/detail/unique_fd.hpp"

namespace mproc::detail::manager {

inline constexpr std::size_t kMaxConnections = 1024;

class Server {
 public:
  /// `accept_shutdown`: a client's shutdown request stops the server (a server owned by a
  /// Manager); a standalone server ignores it.
  Server(Listener listener, std::string authkey, bool accept_shutdown);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Serves until stop() or an accepted shutdown request; also returns when `stop_fd` (>= 0)
  /// becomes readable. Every connection is closed and its thread joined before it returns.
  void run(int stop_fd = -1);
  /// Makes run() return. Thread-safe.
  void stop() noexcept;

  /// Decodes and runs one request frame that arrived on `session`, appending the reply
  /// (status, body) to `reply`. A failed request becomes an error reply; only Abandoned (the
  /// session went away while the request waited) escapes. True for an accepted shutdown
  /// request: the caller sends the reply, then stops. serve() calls it for every frame, and
  /// fuzz/manager_protocol.cpp without a socket.
  bool handle(Session& session, std::span<const std::byte> request, Encoder& reply);

 private:
  class Connection;
  void accept_ready();
  void serve(Connection& connection);
  void handle_manager_op(Op op, Decoder& in, Encoder& reply);
  std::shared_ptr<Servant> find(std::uint64_t id);
  void reap_finished();

  Listener listener_;
  const std::string authkey_;
  const bool accept_shutdown_;
  const bool unix_socket_;
  UniqueFd wake_;  // eventfd: stop() wakes run()
  std::atomic<bool> stopping_{false};

  std::mutex connections_mutex_;
  std::list<std::unique_ptr<Connection>> connections_;
  std::atomic<std::size_t> live_connections_{0};

  std::shared_mutex objects_mutex_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Servant>> objects_;
  std::unordered_map<std::string, std::uint64_t> names_;
  std::uint64_t next_id_ = 1;
};

}  // namespace mproc::detail::manager
