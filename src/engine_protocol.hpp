// engine_protocol.hpp — frames between the pool engine and its workers, and the shared slot in
// which each worker records what it runs (internal to src/engine*.cpp).
//
// Every frame travels on the worker's Connection and opens with a fixed 16-byte header; its
// integers are native-endian (both ends run the same binary on the same machine).
//
//   parent -> worker
//     INIT       | 1 | pad 15 |  encoded call (the initializer), descriptors attached
//     TASK       | 2 | pad 7  | id u64 |  encoded call, descriptors attached
//     BATCH      | 3 | pad 3  | count u32 | pad 8 |  count x (id u64, size u64, call bytes)
//                  (only calls without descriptors are batched)
//     STOP       | 4 | pad 15 |  finish: exit 0
//   worker -> parent
//     RESULT     | 1 | outcome u8 | pad 6 | id u64 | elapsed_ns i64 | pad 8 | payload
//                  outcome 0: payload = the call's encoded result (descriptors attached)
//                  outcome 1: payload = detail::encode_exception of what the call threw
//     INIT_FAIL  | 2 | pad 15 |  encode_exception of what the initializer threw
//
// The slot (64 bytes, one cache line per worker, in a memfd segment both sides map): the
// worker stores task_id before it starts a call and item before each item of a map chunk,
// with started_ns (CLOCK_MONOTONIC) — the parent reads them after a crash to fail exactly
// what was running, and to time out a task. It stores ready = 1 once its initializer has
// returned (at once without one): a worker that dies before that never started at all.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mproc::detail::engine_protocol {

inline constexpr std::size_t header_size = 16;  // == EncodedCall header room
inline constexpr std::size_t result_header_size = 32;

enum class ToWorker : std::uint8_t { init = 1, task = 2, batch = 3, stop = 4 };
enum class ToParent : std::uint8_t { result = 1, init_failed = 2 };
enum class Outcome : std::uint8_t { value = 0, exception = 1 };

struct alignas(64) Slot {
  std::atomic<std::uint64_t> task_id{0};    ///< 0 = not running a task
  std::atomic<std::uint64_t> item{0};       ///< item within the running task (map chunks)
  std::atomic<std::int64_t> started_ns{0};  ///< when task_id started, steady clock
  std::atomic<std::uint32_t> ready{0};      ///< 1 once the worker can take tasks (initialised)
};
static_assert(sizeof(Slot) == 64);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

/// What a worker is told at start (a Process argument: trivially copyable).
struct WorkerSettings {
  std::uint64_t max_tasks = 0;     ///< exit after this many tasks; 0 = never
  std::uint64_t memory_limit = 0;  ///< RLIMIT_AS bytes; 0 = none
  std::uint32_t slot = 0;          ///< index of this worker's Slot
  std::uint32_t has_initializer = 0;
};

}  // namespace mproc::detail::engine_protocol
