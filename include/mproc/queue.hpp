// queue.hpp — Queue<T>, JoinableQueue<T>, SimpleQueue<T>: multi-producer, multi-consumer FIFO
// queues between processes (Python's multiprocessing.Queue / JoinableQueue / SimpleQueue).
//
//     void worker(mproc::Queue<std::string> jobs, mproc::Queue<int> sizes) {
//       for (;;) sizes.put(static_cast<int>(jobs.get().size()));   // QueueClosed ends it
//     }
//     mproc::Queue<std::string> jobs;  mproc::Queue<int> sizes;
//     mproc::Process p(worker, jobs, sizes);  p.start();
//     jobs.put("hello");  int n = sizes.get();                     // 5
//     jobs.close();  p.join();
//
// Concepts
//  - A queue lives in shared memory (a memfd, reserved at construction: nothing to unlink,
//    nothing to leak, a full tmpfs is an error now, never a SIGBUS later). Queue<T> is a cheap,
//    copyable handle; copies, and handles received by other processes (as Process arguments,
//    under fork, forkserver or spawn), all refer to the same queue.
//  - Items are any mproc::transferable T (codec.hpp). A trivially copyable T is copied as its
//    bytes straight into shared memory; std::vector / std::basic_string of trivially copyable
//    elements are written straight into shared memory too (no per-item allocation); other types
//    are encoded into a per-thread buffer first. get() decodes straight from shared memory.
//    Items cannot carry descriptors (a Queue<Connection> throws UsageError at put).
//  - Small and medium items (up to 256 KiB encoded) are records in a ring of 64-byte cells
//    (1 MiB). Larger items stream through one of 4 side channels of 512 KiB each, so a huge
//    item never holds up small ones and needs no huge reservation; an item of any size up to
//    max_message_size() travels.
//  - Capacity. maxsize > 0 bounds the number of items (put blocks, put_for/try_put fail). With
//    maxsize = 0 ("unbounded") put never fails for lack of room, but it waits for consumers
//    when the fixed ring is full (about 16,000 small items, fewer large ones) or when every
//    side channel is busy: memory stays bounded, and a put never needs a background thread.
//    Python's unbounded put never blocks because a feeder thread buffers items in the
//    producer's memory — the same thread that then blocks its process at exit ("joining
//    processes that use queues") and loses items when it fails. There is no feeder thread here:
//    when put() returns, the item is in shared memory, and the producer can exit at once
//    without anyone reading (an item streamed through a side channel is in shared memory when
//    its last 512 KiB is; put waits for a consumer to take the earlier part).
//  - close(): later puts throw QueueClosed; gets return what is left and then throw
//    QueueClosed instead of waiting (Python's get would block forever). A put already under
//    way when close() is called completes.
//
// Who may call what concurrently: every member, from any number of threads and processes at
// once, on any copies of the handle (close() included). qsize() and empty() are snapshots.
//
// Memory visibility: an item's contents written by put() are visible to the process whose
// get() returns it; everything a process wrote before put() returned happens-before the
// return of the get() that takes the item (release/acquire on the ring's sequence numbers).
// For JoinableQueue, everything done before task_done() is visible after join() returns.
//
// Participant death (any process may be SIGKILLed at any instruction):
//  - A producer killed mid-put: the item is either whole in the queue or absent. Each record
//    carries its writer's thread id, taken before the record is claimed; a consumer that
//    finds an unfinished record whose writer is gone skips it (and frees any side channel it
//    held). Items before and after it are intact. A streamed item whose writer dies mid-stream
//    is dropped by the consumer reading it, which then goes on to the next item.
//  - A consumer killed mid-get: the item it took is lost with it (as with any process that
//    dies holding a value), but nothing else is: a producer that needs its cells or side
//    channel finds the dead reader and recycles them; a producer streaming to it stops.
//  - "Gone" means the thread no longer exists or its process is a zombie
//    (sys::process_alive); a reused id reads as alive, so recovery then waits rather than
//    corrupting. Two tiny windows remain: a producer killed between reserving a place in a
//    bounded queue (or counting an unfinished task) and claiming its record leaves that count
//    one too high.
//  - Nobody else ever waits for a dead process: all waits are futex waits in slices that
//    re-check for dead owners.
//
// Fork, forkserver, spawn: a fork child inherits the mapping; forkserver and spawn children
// receive the memfd descriptor with the handle and map the same memory. A handle received
// under a different T throws SerializationError. Queue<T>, JoinableQueue<T> and SimpleQueue<T>
// are distinct handle types.
//
// Thread safety within a process: the same as across processes (above).
#pragma once

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

#include "mproc/codec.hpp"
#include "mproc/detail/shared_segment.hpp"
#include "mproc/errors.hpp"

namespace mproc {

namespace detail {

class QueueCore;

/// The type-erased queue shared by Queue, JoinableQueue and SimpleQueue (src/queue.cpp).
class QueueHandle {
 public:
  using Clock = std::chrono::steady_clock;
  /// nullopt = wait as long as needed; a time point in the past = do not wait.
  using Deadline = std::optional<Clock::time_point>;
  /// Receives an item's bytes (valid only during the call).
  using Sink = void (*)(void* context, std::span<const std::byte> bytes);

  QueueHandle() noexcept = default;
  /// A new queue. `kind` distinguishes Queue/JoinableQueue/SimpleQueue; `fingerprint` is T's.
  static QueueHandle create(std::size_t maxsize, std::uint32_t kind, std::uint64_t fingerprint);

  /// Puts the concatenation of `parts` as one item. False if the deadline passed first (the
  /// item is then absent). QueueClosed if the queue is closed.
  bool put(std::span<const std::span<const std::byte>> parts, Deadline deadline) const;
  /// Takes one item and hands its bytes to `sink`. False if the deadline passed first.
  /// QueueClosed if the queue is closed and empty. If `sink` throws, the item is consumed and
  /// the exception propagates.
  bool get(Sink sink, void* context, Deadline deadline) const;

  std::size_t qsize() const;
  bool empty() const;
  bool full() const;
  void close() const;
  bool closed() const;
  std::size_t maxsize() const;
  void task_done() const;
  bool join(Deadline deadline) const;

  /// Handle codec: the segment's descriptor, then kind and fingerprint, checked on decode.
  void encode(Encoder& out) const;
  static QueueHandle decode(Decoder& in, std::uint32_t kind, std::uint64_t fingerprint);

 private:
  std::shared_ptr<QueueCore> core_;
};

enum : std::uint32_t { queue_kind_plain = 1, queue_kind_joinable = 2, queue_kind_simple = 3 };

inline QueueHandle::Deadline deadline_after(std::chrono::nanoseconds timeout) {
  const auto now = QueueHandle::Clock::now();
  // Saturate rather than overflow on "effectively forever" timeouts.
  if (timeout > QueueHandle::Clock::time_point::max() - now) return std::nullopt;
  return now + std::chrono::duration_cast<QueueHandle::Clock::duration>(timeout);
}

/// Per-thread scratch encoder for items that are not written straight into shared memory.
Encoder& queue_scratch_encoder();
void queue_release_scratch(Encoder& out) noexcept;
[[noreturn]] void throw_queue_item_has_fds();
[[noreturn]] void throw_queue_item_size(std::size_t got, std::size_t expected);

/// Encodes `item` and puts it. Trivially copyable items and contiguous ranges of them go
/// straight into shared memory.
template <class T>
bool queue_put(const QueueHandle& q, const T& item, QueueHandle::Deadline deadline) {
  constexpr Kind kind = kind_v<T>;
  if constexpr (kind == Kind::raw) {
    const std::span<const std::byte> parts[] = {
        {reinterpret_cast<const std::byte*>(std::addressof(item)), sizeof(T)}};
    return q.put(parts, deadline);
  } else if constexpr (kind == Kind::contiguous) {
    // The codec's own layout for these types: u64 LE count, then the elements' bytes.
    std::uint64_t count = item.size();
    if constexpr (std::endian::native == std::endian::big) count = __builtin_bswap64(count);
    const std::span<const std::byte> parts[] = {
        {reinterpret_cast<const std::byte*>(&count), sizeof count},
        {reinterpret_cast<const std::byte*>(item.data()),
         item.size() * sizeof(typename T::value_type)}};
    return q.put(parts, deadline);
  } else {
    Encoder& out = queue_scratch_encoder();
    struct Release {
      Encoder& out;
      ~Release() { queue_release_scratch(out); }
    } release{out};
    encode(out, item);
    if (!out.fds().empty()) throw_queue_item_has_fds();
    const std::span<const std::byte> parts[] = {{out.bytes().data(), out.bytes().size()}};
    return q.put(parts, deadline);
  }
}

/// Takes one item and decodes it (straight from shared memory for ring records).
template <class T>
std::optional<T> queue_get(const QueueHandle& q, QueueHandle::Deadline deadline) {
  std::optional<T> result;
  const QueueHandle::Sink sink = [](void* context, std::span<const std::byte> bytes) {
    auto& out = *static_cast<std::optional<T>*>(context);
    if constexpr (kind_v<T> == Kind::raw) {
      if (bytes.size() != sizeof(T)) throw_queue_item_size(bytes.size(), sizeof(T));
      out.emplace();
      std::memcpy(static_cast<void*>(std::addressof(*out)), bytes.data(), sizeof(T));
    } else {
      Decoder in(bytes);
      out.emplace(decode<T>(in));
      in.expect_end();
    }
  };
  if (!q.get(sink, &result, deadline)) return std::nullopt;
  return result;
}

}  // namespace detail

/// Python's multiprocessing.Queue. See the top of this header for the guarantees.
template <class T>
class Queue {
  static_assert(transferable<T>,
                "mproc::Queue<T>: T must be transferable (trivially copyable, a std container "
                "of transferable values, or a type with a serialize member); see codec.hpp");
  static_assert(std::is_same_v<T, std::remove_cvref_t<T>>,
                "mproc::Queue<T>: T must be a plain value type (no const, no reference)");

 public:
  /// A new, empty queue holding at most `maxsize` items (0 = no item limit; see "Capacity").
  /// SystemError if the shared memory cannot be reserved.
  explicit Queue(std::size_t maxsize = 0)
      : core_(detail::QueueHandle::create(maxsize, detail::queue_kind_plain,
                                          type_fingerprint<T>())) {}

  /// Adds `item`, waiting for room as long as needed. QueueClosed if the queue is closed;
  /// SerializationError if the item exceeds max_message_size().
  void put(const T& item) { static_cast<void>(detail::queue_put(core_, item, std::nullopt)); }
  /// Like put, but gives up after `timeout`: false, and the item is not in the queue.
  [[nodiscard]] bool put_for(const T& item, std::chrono::nanoseconds timeout) {
    return detail::queue_put(core_, item, detail::deadline_after(timeout));
  }
  /// Adds `item` only if there is room now.
  [[nodiscard]] bool try_put(const T& item) {
    return detail::queue_put(core_, item, detail::QueueHandle::Clock::time_point::min());
  }

  /// Removes and returns the oldest item, waiting as long as needed. QueueClosed once the
  /// queue is closed and empty; ProtocolError/SerializationError if the item cannot be decoded
  /// (it is consumed all the same).
  T get() { return *detail::queue_get<T>(core_, std::nullopt); }
  /// Like get, but nullopt after `timeout` without an item.
  [[nodiscard]] std::optional<T> get_for(std::chrono::nanoseconds timeout) {
    return detail::queue_get<T>(core_, detail::deadline_after(timeout));
  }
  /// An item if one is ready now, else nullopt.
  [[nodiscard]] std::optional<T> try_get() {
    return detail::queue_get<T>(core_, detail::QueueHandle::Clock::time_point::min());
  }

  /// Items in the queue now (a snapshot: other processes may change it at once).
  std::size_t qsize() const { return core_.qsize(); }
  /// True if no item is ready now (a snapshot).
  bool empty() const { return core_.empty(); }
  /// True if maxsize() > 0 and qsize() >= maxsize() (a snapshot).
  bool full() const { return core_.full(); }
  /// The item limit given at construction (0 = none).
  std::size_t maxsize() const { return core_.maxsize(); }
  /// Closes the queue for every process: puts throw QueueClosed; gets drain what is left,
  /// then throw QueueClosed. Idempotent; wakes every waiter.
  void close() { core_.close(); }
  bool closed() const { return core_.closed(); }

 protected:
  struct FromHandle {};
  Queue(FromHandle, detail::QueueHandle core) noexcept : core_(std::move(core)) {}
  Queue(std::size_t maxsize, std::uint32_t kind)
      : core_(detail::QueueHandle::create(maxsize, kind, type_fingerprint<T>())) {}

  detail::QueueHandle core_;

  friend struct handle_codec<Queue<T>>;
};

/// Python's multiprocessing.JoinableQueue: a Queue that also counts unfinished tasks.
/// Every put adds one; task_done() removes one; join() waits until none is left.
template <class T>
class JoinableQueue : public Queue<T> {
 public:
  explicit JoinableQueue(std::size_t maxsize = 0)
      : Queue<T>(maxsize, detail::queue_kind_joinable) {}

  /// Marks one item taken with get() as processed. UsageError if called more times than
  /// items were put (Python's ValueError).
  void task_done() { this->core_.task_done(); }
  /// Waits until every item put has been marked done.
  void join() { static_cast<void>(this->core_.join(std::nullopt)); }
  /// Like join, but false after `timeout`.
  [[nodiscard]] bool join_for(std::chrono::nanoseconds timeout) {
    return this->core_.join(detail::deadline_after(timeout));
  }

 private:
  JoinableQueue(typename Queue<T>::FromHandle tag, detail::QueueHandle core) noexcept
      : Queue<T>(tag, std::move(core)) {}
  friend struct handle_codec<JoinableQueue<T>>;
};

/// Python's multiprocessing.SimpleQueue: an unbounded queue with put, get, empty and close.
template <class T>
class SimpleQueue {
 public:
  SimpleQueue() : q_(0, detail::queue_kind_simple) {}

  void put(const T& item) { q_.put(item); }
  T get() { return q_.get(); }
  bool empty() const { return q_.empty(); }
  void close() { q_.close(); }

 private:
  struct Inner : Queue<T> {
    Inner(std::size_t maxsize, std::uint32_t kind) : Queue<T>(maxsize, kind) {}
    Inner(typename Queue<T>::FromHandle tag, detail::QueueHandle core) noexcept
        : Queue<T>(tag, std::move(core)) {}
    const detail::QueueHandle& handle() const noexcept { return this->core_; }
    static Inner from(detail::QueueHandle core) noexcept {
      return Inner(typename Queue<T>::FromHandle{}, std::move(core));
    }
  };
  explicit SimpleQueue(Inner q) noexcept : q_(std::move(q)) {}
  Inner q_;
  friend struct handle_codec<SimpleQueue<T>>;
};

template <class T>
struct handle_codec<Queue<T>> {
  static void encode(Encoder& out, const Queue<T>& q) { q.core_.encode(out); }
  static Queue<T> decode(Decoder& in) {
    return Queue<T>(
        typename Queue<T>::FromHandle{},
        detail::QueueHandle::decode(in, detail::queue_kind_plain, type_fingerprint<T>()));
  }
};

template <class T>
struct handle_codec<JoinableQueue<T>> {
  static void encode(Encoder& out, const JoinableQueue<T>& q) { q.core_.encode(out); }
  static JoinableQueue<T> decode(Decoder& in) {
    return JoinableQueue<T>(
        typename Queue<T>::FromHandle{},
        detail::QueueHandle::decode(in, detail::queue_kind_joinable, type_fingerprint<T>()));
  }
};

template <class T>
struct handle_codec<SimpleQueue<T>> {
  static void encode(Encoder& out, const SimpleQueue<T>& q) { q.q_.handle().encode(out); }
  static SimpleQueue<T> decode(Decoder& in) {
    return SimpleQueue<T>(SimpleQueue<T>::Inner::from(
        detail::QueueHandle::decode(in, detail::queue_kind_simple, type_fingerprint<T>())));
  }
};

}  // namespace mproc
