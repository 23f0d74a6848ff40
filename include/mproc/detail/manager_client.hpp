// manager_client.hpp — the client half of a Manager proxy: requests, replies, handles
// (internal; the public face is mproc/manager.hpp).
//
// An Endpoint is one manager server as seen from this process: its address, its authkey and
// the connections this process's threads hold to it (one per thread, made on first use, so a
// thread blocked in a lock or queue wait never blocks another thread's proxies, and a lock is
// owned by the thread that took it, as with mproc::Lock). All proxies of one server in one
// process share one Endpoint, whether they were made here or decoded from a message.
//
// Fork: a child never uses its parent's connections (the bytes of two processes would
// interleave on one socket); an atfork handler closes the inherited ones, and the child
// connects anew on first use.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "mproc/codec.hpp"
#include "mproc/detail/manager_protocol.hpp"

namespace mproc::detail::manager {

class Endpoint;

/// The Endpoint for (address, authkey) in this process, made on first use.
std::shared_ptr<Endpoint> endpoint_for(std::string_view address, std::string_view authkey);
const std::string& endpoint_address(const Endpoint& endpoint) noexcept;
const std::string& endpoint_authkey(const Endpoint& endpoint) noexcept;
/// From now on every request through `endpoint` in this process raises ConnectionClosed with
/// `why`; this process's connections to it are closed (or, for other threads' connections,
/// shut down so that they close on their next use).
void close_endpoint(Endpoint& endpoint, std::string why) noexcept;
/// Like close_endpoint, but only this process's connections: the next request reconnects.
void disconnect_endpoint(Endpoint& endpoint) noexcept;

/// The body of a successful reply. Valid until the calling thread's next request.
using ReplyBody = std::span<const std::byte>;

/// One request being written: the frame header, op and object id come first; arguments follow.
class Request {
 public:
  Request(Op op, std::uint64_t object);
  Encoder& out() noexcept { return out_; }
  void put_u8(std::uint8_t v) { out_.write_bytes(&v, 1); }
  void put_u64(std::uint64_t v) { detail::put_u64_le(out_, v); }
  void put_i64(std::int64_t v) { put_u64(static_cast<std::uint64_t>(v)); }
  void put_timeout(std::optional<std::chrono::nanoseconds> timeout) {
    put_i64(timeout ? std::max<std::int64_t>(0, timeout->count()) : -1);
  }
  void put_bytes(std::string_view bytes);
  /// mproc::encode(value), running to the end of the request.
  template <class T>
  void put_value(const T& value) {
    mproc::encode(out_, value);
  }
  /// mproc::encode(value) prefixed with its length, for an argument that is not the last.
  template <class T>
  void put_sized_value(const T& value) {
    const std::size_t at = out_.bytes().size();
    put_u64(0);
    mproc::encode(out_, value);
    patch_u64(at, out_.bytes().size() - at - 8);
  }
  /// Sends the request on this thread's connection and waits for the reply. Throws what the
  /// server raised (registered types as themselves, others as RemoteError), ConnectionClosed
  /// if the server is gone or was shut down, AuthenticationError on a wrong authkey.
  ReplyBody send(Endpoint& endpoint);

 private:
  void patch_u64(std::size_t at, std::uint64_t value) noexcept;
  Encoder out_;
};

/// Reading a reply body.
class Reply {
 public:
  explicit Reply(ReplyBody body) noexcept : in_(body) {}
  std::uint8_t u8() {
    std::uint8_t v = 0;
    in_.read_bytes(&v, 1);
    return v;
  }
  std::uint64_t u64() { return detail::get_u64_le(in_); }
  bool flag() { return u8() != 0; }
  /// A value running to the end of the body.
  template <class T>
  T value() {
    T v = mproc::decode<T>(in_);
    in_.expect_end();
    return v;
  }
  /// A length-prefixed value.
  template <class T>
  T sized_value() {
    const std::uint64_t n = u64();
    Decoder part(in_.read_bytes(static_cast<std::size_t>(n)));
    T v = mproc::decode<T>(part);
    part.expect_end();
    return v;
  }
  void end() const { in_.expect_end(); }

 private:
  Decoder in_;
};

/// What a proxy holds: the server and the object's id there, plus what the object is (checked
/// when a proxy arrives in another process).
struct ObjectRef {
  std::shared_ptr<Endpoint> endpoint;
  std::uint64_t id = 0;

  Endpoint& server() const;  // UsageError for a default-constructed proxy
};

/// Handle wire format of every proxy: address, authkey, id, kind, two type fingerprints.
/// decode_ref checks kind and fingerprints: SerializationError naming the proxy type if the
/// bytes describe another kind of object.
void encode_ref(Encoder& out, const ObjectRef& ref, Kind kind, std::uint64_t type_a,
                std::uint64_t type_b);
ObjectRef decode_ref(Decoder& in, Kind kind, std::uint64_t type_a, std::uint64_t type_b,
                     std::string_view proxy_type);

}  // namespace mproc::detail::manager
