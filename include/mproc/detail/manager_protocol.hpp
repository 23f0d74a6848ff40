// manager_protocol.hpp — what a Manager proxy and its server say to each other (internal).
//
// One connection per (client thread, manager). After the authentication handshake
// (src/manager_auth.hpp) every exchange is one request frame and one reply frame:
//
//     frame    = length:u64le  payload            (length <= max_message_size() + 64)
//     request  = op:u8  object:u64le  arguments   (object 0 = the manager itself)
//     reply    = status:u8  body                  status 0: body = the op's result
//                                                 status 1: body = an exception
//                                                           (detail/remote_exception.hpp)
//
// Values travel as mproc::encode(value) bytes (no type fingerprint: the types are checked once,
// when a proxy is made or decoded). Where an argument is followed by another it is prefixed
// with its length (u64le); the last argument runs to the end of the request. Timeouts are
// nanoseconds as i64le, -1 meaning none.
//
// The server stores dict keys and values, list items and queue items as these encoded bytes,
// so it needs no knowledge of their types: two keys are the same key when their encodings are
// equal (for floating-point keys, 0.0 and -0.0 are then different keys). Code runs in the
// server only for Dict::update and user objects, through the same registered trampolines as
// pool tasks (detail/callable.hpp): the server must be the same program as the client.
#pragma once

#include <cstdint>

namespace mproc::detail::manager {

enum class Op : std::uint8_t {
  // manager (object 0)
  create = 1,    // kind:u8 type_a:u64 type_b:u64 capacity:u64 name_len:u64 name [factory call]
                 // -> id:u64
  shutdown = 2,  // -> nothing; the server stops after replying
  stats = 3,     // -> connections:u64 objects:u64
  ping = 4,      // -> nothing

  dict_set = 10,       // key_len key value -> nothing
  dict_get = 11,       // key -> found:u8 [value]
  dict_contains = 12,  // key -> u8
  dict_erase = 13,     // key -> erased:u8
  dict_size = 14,      // -> u64
  dict_items = 15,     // -> n:u64 (key_len key value_len value)*n
  dict_update = 16,    // key_len key call -> value
  dict_clear = 17,     // -> nothing
  dict_get_or = 18,    // key_len key default -> value (stored value, or the default)

  list_append = 20,     // value -> nothing
  list_at = 21,         // index:u64 -> value
  list_set = 22,        // index:u64 value -> nothing
  list_size = 23,       // -> u64
  list_to_vector = 24,  // -> n:u64 (len value)*n
  list_clear = 25,      // -> nothing
  list_pop = 26,        // -> value (the last; IndexError-like std::out_of_range when empty)

  queue_put = 30,   // timeout:i64 value -> put:u8
  queue_get = 31,   // timeout:i64 -> found:u8 [value]
  queue_size = 32,  // -> u64

  lock_acquire = 40,  // timeout:i64 -> acquired:u8
  lock_release = 41,  // -> nothing
  lock_locked = 42,   // -> u8

  event_set = 50,     // -> nothing
  event_clear = 51,   // -> nothing
  event_is_set = 52,  // -> u8
  event_wait = 53,    // timeout:i64 -> u8 (set)

  object_call = 60,  // call -> result (encoded, possibly empty for void)
};

/// What an object id names; a proxy decoded in another process checks it.
enum class Kind : std::uint8_t {
  dict = 1,
  list = 2,
  queue = 3,
  lock = 4,
  event = 5,
  object = 6,
};

enum class Status : std::uint8_t { ok = 0, error = 1 };

/// Room for the op, object id and framing beyond max_message_size() of the value itself.
inline constexpr std::uint64_t kFrameOverhead = 64;

}  // namespace mproc::detail::manager
