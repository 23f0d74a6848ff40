// The client half of Manager proxies: one connection per (thread, server), requests, replies,
// proxy handles.
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "detail/leaked_global.hpp"
#include "detail/sys.hpp"
#include "manager_auth.hpp"
#include "manager_socket.hpp"
#include "mproc/detail/manager_client.hpp"
#include "mproc/detail/remote_exception.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::manager {

namespace {

constexpr std::chrono::seconds kConnectTimeout{10};

/// One thread's authenticated connection to one server. Closed by its destructor (the owning
/// thread drops it) or, in a fork child, by the atfork handler; other threads only shut it
/// down, which leaves the descriptor valid for its owner.
struct Conn {
  explicit Conn(UniqueFd socket);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  UniqueFd fd;
  FrameReader reader;
};

/// Every live Conn of this process, so that a fork child can close the inherited sockets.
struct ConnRegistry {
  std::mutex mutex;
  std::unordered_set<Conn*> all;
};

std::atomic<ConnRegistry*> g_conn_registry{nullptr};

ConnRegistry& conn_registry() {
  return leaked_global(g_conn_registry);  // used from atfork handlers and thread exit
}

void install_atfork_once() {
  static const bool installed = [] {
    const int rc = ::pthread_atfork([] { conn_registry().mutex.lock(); },
                                    [] { conn_registry().mutex.unlock(); },
                                    [] {
                                      ConnRegistry& registry = conn_registry();
                                      // The child is single-threaded: no other thread can be using
                                      // these sockets.
                                      for (Conn* conn : registry.all) conn->fd.reset();
                                      registry.mutex.unlock();
                                    });
    if (rc != 0) sys::throw_errno("pthread_atfork()", rc);
    return true;
  }();
  static_cast<void>(installed);
}

Conn::Conn(UniqueFd socket) : fd(std::move(socket)) {
  install_atfork_once();
  const std::lock_guard lock(conn_registry().mutex);
  conn_registry().all.insert(this);
}

Conn::~Conn() {
  const std::lock_guard lock(conn_registry().mutex);
  conn_registry().all.erase(this);
  fd.reset();
}

}  // namespace

class Endpoint : public std::enable_shared_from_this<Endpoint> {
 public:
  Endpoint(std::string address_text, std::string key)
      : address(std::move(address_text)),
        parsed(Address::parse(address)),
        authkey(std::move(key)) {}

  const std::string address;
  const Address parsed;
  const std::string authkey;
  std::atomic<bool> closed{false};

  std::mutex mutex;
  std::string closed_why;                  // guarded by mutex
  std::vector<std::weak_ptr<Conn>> conns;  // guarded by mutex: every thread's connection
};

namespace {

/// This thread's connections, one per server.
struct ThreadConnections {
  struct Entry {
    const Endpoint* endpoint;
    std::weak_ptr<Endpoint> alive;
    std::shared_ptr<Conn> conn;
  };
  std::vector<Entry> entries;

  void drop(const Endpoint* endpoint) {
    std::erase_if(entries, [endpoint](const Entry& e) { return e.endpoint == endpoint; });
  }
};

ThreadConnections& thread_connections() {
  thread_local ThreadConnections connections;
  return connections;
}

[[noreturn]] void throw_closed(Endpoint& endpoint) {
  std::string why;
  {
    const std::lock_guard lock(endpoint.mutex);
    why = endpoint.closed_why;
  }
  throw ConnectionClosed(why);
}

[[noreturn]] void throw_unreachable(const Endpoint& endpoint, const std::string& detail) {
  throw ConnectionClosed("mproc::Manager: cannot reach the manager at " + endpoint.address + " (" +
                         detail +
                         "): its server is not running — a Manager's server stops at "
                         "shutdown() and when the process that owns it exits");
}

Conn& connection_for(Endpoint& endpoint) {
  ThreadConnections& mine = thread_connections();
  for (auto it = mine.entries.begin(); it != mine.entries.end();) {
    if (it->alive.expired()) {
      it = mine.entries.erase(it);
      continue;
    }
    if (it->endpoint == &endpoint) {
      if (it->conn->fd) return *it->conn;
      it = mine.entries.erase(it);  // closed in a fork child: connect anew
      continue;
    }
    ++it;
  }
  UniqueFd fd;
  try {
    fd = connect_to(endpoint.parsed, endpoint.address, kConnectTimeout);
    authenticate_to_server(fd.get(), endpoint.authkey, kConnectTimeout);
  } catch (const SystemError& e) {
    throw_unreachable(endpoint, e.what());
  } catch (const ConnectionClosed& e) {
    throw_unreachable(endpoint, e.what());
  } catch (const TimeoutError& e) {
    throw_unreachable(endpoint, e.what());
  }
  auto conn = std::make_shared<Conn>(std::move(fd));
  {
    const std::lock_guard lock(endpoint.mutex);
    std::erase_if(endpoint.conns, [](const std::weak_ptr<Conn>& c) { return c.expired(); });
    endpoint.conns.push_back(conn);
  }
  return *mine.entries
              .emplace_back(ThreadConnections::Entry{&endpoint, endpoint.weak_from_this(), conn})
              .conn;
}

/// Shuts down (but does not close) the other threads' connections to `endpoint`, and closes
/// the calling thread's.
void drop_connections(Endpoint& endpoint) noexcept {
  std::vector<std::shared_ptr<Conn>> others;
  {
    const std::lock_guard lock(endpoint.mutex);
    for (auto& weak : endpoint.conns) {
      if (auto conn = weak.lock()) others.push_back(std::move(conn));
    }
    endpoint.conns.clear();
  }
  // Holding a shared_ptr keeps each Conn, and so its descriptor, alive while we shut it down.
  for (const auto& conn : others) {
    if (conn->fd) ::shutdown(conn->fd.get(), SHUT_RDWR);
  }
  others.clear();
  thread_connections().drop(&endpoint);
}

struct EndpointRegistry {
  std::mutex mutex;
  std::map<std::pair<std::string, std::string>, std::weak_ptr<Endpoint>> by_address;
};

std::atomic<EndpointRegistry*> g_endpoint_registry{nullptr};

EndpointRegistry& endpoint_registry() {
  return leaked_global(g_endpoint_registry);
}

}  // namespace

std::shared_ptr<Endpoint> endpoint_for(std::string_view address, std::string_view authkey) {
  EndpointRegistry& registry = endpoint_registry();
  const std::lock_guard lock(registry.mutex);
  auto key = std::make_pair(std::string(address), std::string(authkey));
  auto& slot = registry.by_address[key];
  if (auto existing = slot.lock(); existing && !existing->closed.load()) return existing;
  auto made = std::make_shared<Endpoint>(key.first, key.second);
  slot = made;
  std::erase_if(registry.by_address, [](const auto& entry) { return entry.second.expired(); });
  return made;
}

const std::string& endpoint_address(const Endpoint& endpoint) noexcept {
  return endpoint.address;
}

const std::string& endpoint_authkey(const Endpoint& endpoint) noexcept {
  return endpoint.authkey;
}

void close_endpoint(Endpoint& endpoint, std::string why) noexcept {
  {
    const std::lock_guard lock(endpoint.mutex);
    if (endpoint.closed.load()) return;
    endpoint.closed_why = std::move(why);
    endpoint.closed.store(true);
  }
  drop_connections(endpoint);
}

void disconnect_endpoint(Endpoint& endpoint) noexcept {
  drop_connections(endpoint);
}

Endpoint& ObjectRef::server() const {
  if (!endpoint) {
    throw UsageError(
        "mproc::Manager proxy: this proxy is empty (default-constructed); get one from a "
        "Manager (m.dict<K, V>(), m.list<T>(), ...)");
  }
  return *endpoint;
}

Request::Request(Op op, std::uint64_t object) {
  out_.reserve(64);
  put_u64(0);  // frame length, filled in by send
  put_u8(static_cast<std::uint8_t>(op));
  put_u64(object);
}

void Request::put_bytes(std::string_view bytes) {
  put_u64(bytes.size());
  out_.write_bytes(bytes.data(), bytes.size());
}

void Request::patch_u64(std::size_t at, std::uint64_t value) noexcept {
  std::byte* p = out_.bytes().data() + at;
  for (std::size_t i = 0; i < 8; ++i) {
    p[i] = static_cast<std::byte>(value & 0xff);
    value >>= 8;
  }
}

ReplyBody Request::send(Endpoint& endpoint) {
  if (endpoint.closed.load(std::memory_order_acquire)) throw_closed(endpoint);
  if (!out_.fds().empty()) {
    throw UsageError(
        "mproc::Manager: a value sent to a manager holds a descriptor (an mproc::Queue, Lock, "
        "Value, Connection, ...), which cannot travel to the server: store manager objects "
        "(m.queue<T>(), m.lock(), ...) or plain data instead");
  }
  const std::uint64_t limit = max_message_size() + kFrameOverhead;
  if (out_.bytes().size() - 8 > limit) {
    throw SerializationError("mproc::Manager: a request of " +
                             std::to_string(out_.bytes().size() - 8) +
                             " bytes is over max_message_size()");
  }
  Conn& conn = connection_for(endpoint);
  std::optional<std::span<const std::byte>> frame;
  try {
    send_frame(conn.fd.get(), out_.bytes());
    frame = conn.reader.read(conn.fd.get(), limit);
  } catch (const ConnectionClosed&) {
  } catch (const SystemError&) {
  }
  if (!frame) {
    thread_connections().drop(&endpoint);
    if (endpoint.closed.load()) throw_closed(endpoint);
    throw ConnectionClosed("mproc::Manager: lost the connection to the manager at " +
                           endpoint.address + ": its server process died or shut down");
  }
  Decoder in(*frame);
  std::uint8_t status = 0;
  in.read_bytes(&status, 1);
  if (status == static_cast<std::uint8_t>(Status::ok)) return frame->subspan(1);
  if (status != static_cast<std::uint8_t>(Status::error)) {
    thread_connections().drop(&endpoint);
    throw ProtocolError("mproc::Manager: a reply with an unknown status " + std::to_string(status));
  }
  const auto pid = static_cast<std::int64_t>(get_u64_le(in));
  std::rethrow_exception(decode_exception(in, pid, -1));
}

void encode_ref(Encoder& out, const ObjectRef& ref, Kind kind, std::uint64_t type_a,
                std::uint64_t type_b) {
  const std::string none;
  mproc::encode(out, ref.endpoint ? ref.endpoint->address : none);
  mproc::encode(out, ref.endpoint ? ref.endpoint->authkey : none);
  put_u64_le(out, ref.id);
  const auto k = static_cast<std::uint8_t>(kind);
  out.write_bytes(&k, 1);
  put_u64_le(out, type_a);
  put_u64_le(out, type_b);
}

ObjectRef decode_ref(Decoder& in, Kind kind, std::uint64_t type_a, std::uint64_t type_b,
                     std::string_view proxy_type) {
  auto address = mproc::decode<std::string>(in);
  auto authkey = mproc::decode<std::string>(in);
  const std::uint64_t id = get_u64_le(in);
  std::uint8_t k = 0;
  in.read_bytes(&k, 1);
  const std::uint64_t a = get_u64_le(in);
  const std::uint64_t b = get_u64_le(in);
  if (k != static_cast<std::uint8_t>(kind) || a != type_a || b != type_b) {
    throw SerializationError(
        "mproc: a proxy of another kind or type of manager object arrived "
        "where a " +
        std::string(proxy_type) + " was expected");
  }
  if (address.empty()) return ObjectRef{};
  return ObjectRef{endpoint_for(address, authkey), id};
}

}  // namespace mproc::detail::manager
