// manager_objects.hpp — the objects a Manager server holds, one class per kind (internal).
//
// A servant stores values as their encoded bytes (manager_protocol.hpp) and runs one request
// at a time under its own mutex, so requests on different objects proceed in parallel.
// Blocking requests (queue get/put, lock, event wait) wait in short slices and give up when
// their client's connection goes away or the server stops.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/manager_protocol.hpp"

namespace mproc::detail::manager {

/// What a servant needs of the connection a request came on.
class Session {
 public:
  virtual ~Session() = default;
  /// True once the client has gone (or the server is stopping): a waiting request gives up.
  virtual bool abandoned() = 0;
  /// Servants holding something for this session (locks), told when it ends.
  std::vector<std::weak_ptr<class Servant>> holdings;
  /// The peer was checked to run as this process's user (a Unix socket): requests may name
  /// function pointers (ServerCall::function_pointers).
  bool same_user_peer = false;
};

/// Thrown out of a wait whose session was abandoned: the connection is closed, no reply.
struct Abandoned {};

class Servant : public std::enable_shared_from_this<Servant> {
 public:
  Servant(Kind kind, std::uint64_t type_a, std::uint64_t type_b) noexcept
      : kind(kind), type_a(type_a), type_b(type_b) {}
  virtual ~Servant() = default;
  Servant(const Servant&) = delete;
  Servant& operator=(const Servant&) = delete;

  /// Handles `op` with its arguments in `in`, appending the reply body to `out`. Throws for
  /// a failed request (sent back as an exception) and ProtocolError for an op of another kind.
  virtual void handle(Op op, Decoder& in, Encoder& out, Session& session) = 0;
  /// The session ended: release what it held (locks).
  virtual void session_ended(Session& /*session*/) noexcept {}

  const Kind kind;
  const std::uint64_t type_a;
  const std::uint64_t type_b;
};

/// A new servant of `kind`; `capacity` is a queue's maxsize. Objects are made by
/// make_object (their factory runs in the server).
std::shared_ptr<Servant> make_servant(Kind kind, std::uint64_t type_a, std::uint64_t type_b,
                                      std::uint64_t capacity);
/// Runs the factory call in `factory` and wraps the T it made.
std::shared_ptr<Servant> make_object(std::uint64_t type, Decoder& factory);

/// Timeout argument as sent by Request::put_timeout.
std::optional<std::chrono::nanoseconds> read_timeout(Decoder& in);

}  // namespace mproc::detail::manager
