// shared.hpp — memory shared between processes: Value<T>, Array<T> (Python's
// multiprocessing.Value / Array) and named SharedMemory (multiprocessing.shared_memory).
//
//     mproc::Value<int> counter(0);
//     mproc::Array<double> samples(1000);                 // zero-filled
//     mproc::Process p([](mproc::Value<int> c, mproc::Array<double> a) {
//       std::lock_guard g(c.get_lock());
//       c.value() += 1;
//       a[0] = 1.5;
//     }, counter, samples);
//     p.start(); p.join();                                // counter.value() == 1, samples[0]
//     == 1.5
//
// Value and Array are anonymous: their memory is a memfd that disappears with the last process
// holding a handle (crash, kill or exit alike); nothing is left in /dev/shm. Each carries a
// Lock (get_lock(), the same lock every call) that the caller takes around compound updates;
// the data itself is plain memory, so a bare `v.value() += 1` from two processes races, as in
// Python with lock=False. Memory is reserved at creation: a full tmpfs is a SystemError from
// the constructor (its message says how to fix it), never a SIGBUS later.
//
// - Concurrency: any thread of any process may read and write the data; updates that must be
//   atomic go under get_lock() (or use std::atomic_ref on suitable T).
// - Visibility: writes made before get_lock().unlock() are visible to a process after its
//   get_lock().lock() returns.
// - Death: the lock is robust (see sync.hpp): if a process dies holding it, the next lock()
//   succeeds and get_lock().previous_owner_died() says the data may be half-updated.
// - Start methods: handles are by-value arguments of Process targets and pool tasks under
//   fork, forkserver and spawn; the child gets the same memory (the memfd travels with the
//   arguments). Lifetime: while any process holds a handle.
//
// SharedMemory is named (POSIX shm, /dev/shm/<name>), like Python's: it outlives its creator
// until someone calls unlink() — including when the creator is killed. Prefer Value/Array or a
// SharedMemory passed as a handle unless unrelated programs must find it by name.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "mproc/codec.hpp"
#include "mproc/detail/shared_segment.hpp"
#include "mproc/errors.hpp"
#include "mproc/sync.hpp"

namespace mproc {

namespace detail {

/// Memory behind a Value or Array:
///
///     0                  lock_state_size        +32               data_offset
///     +------------------+----------------------+-----------------+---------------------+
///     | Lock state        | StateHeader(array)   | elem_size:u64   | count * T           |
///     | (robust mutex)    | magic kind version   | count:u64       | zero-filled         |
///     |                   |                      | fingerprint:u64 |                     |
///     +------------------+----------------------+-----------------+---------------------+
///
/// The element type's fingerprint and size are checked when a handle is decoded, so a Value<int>
/// can never be read as an Array<double>.
inline constexpr std::size_t array_data_offset = 256;

class SharedArrayBase {
 public:
  /// A new lock + `count` zeroed elements of `elem_size` bytes. UsageError if the size
  /// overflows; SystemError if it cannot be reserved.
  SharedArrayBase(std::size_t count, std::size_t elem_size, std::uint64_t fingerprint,
                  const char* debug_name);
  /// Reads a handle written by encode(); ProtocolError if it is not an array of this element.
  static SharedArrayBase decode(Decoder& in, std::size_t elem_size, std::uint64_t fingerprint);
  void encode(Encoder& out) const;

  void* data() const noexcept {
    return static_cast<std::byte*>(lock_.shared_ref().segment.data()) + array_data_offset;
  }
  std::size_t count() const noexcept { return count_; }
  /// A handle's lock is part of the shared object, not of the handle's value: const handles
  /// lock too (as std::shared_ptr<T> const gives a non-const T).
  Lock& lock() const noexcept { return lock_; }

 private:
  SharedArrayBase(Lock lock, std::size_t count) noexcept : lock_(std::move(lock)), count_(count) {}
  mutable Lock lock_;  // its SharedRef is the whole segment, lock state at offset 0
  std::size_t count_;
};

template <class T>
constexpr void check_shared_element() {
  static_assert(std::is_trivially_copyable_v<T>,
                "Value<T>/Array<T> live in shared memory: T must be trivially copyable (no "
                "std::string, std::vector or pointers-to-owned-memory; use fixed-size arrays or a "
                "Queue to send such values)");
  static_assert(!std::is_pointer_v<T> && !std::is_member_pointer_v<T>,
                "Value<T>/Array<T>: a pointer is meaningless in another process");
  static_assert(!std::is_const_v<T> && !std::is_volatile_v<T> && !std::is_reference_v<T>,
                "Value<T>/Array<T>: T must be a plain object type");
  static_assert(alignof(T) <= 64, "Value<T>/Array<T>: T may be aligned to at most 64 bytes");
}

}  // namespace detail

// ---- Value ----------------------------------------------------------------------------------

/// One T in shared memory, with its own Lock (multiprocessing.Value(typecode, x)).
template <class T>
class Value {
 public:
  /// A value-initialised T (zero for arithmetic types).
  Value() : Value(T{}) {}
  explicit Value(const T& initial) : base_(1, sizeof(T), type_fingerprint<T>(), "mproc-value") {
    std::memcpy(base_.data(), std::addressof(initial), sizeof(T));
  }

  /// The shared T. Reads and writes are plain memory accesses: hold get_lock() for updates
  /// that must not interleave with other processes'.
  T& value() const noexcept { return *static_cast<T*>(base_.data()); }
  /// The lock guarding this value; the same lock every call.
  Lock& get_lock() const noexcept { return base_.lock(); }

  explicit Value(detail::SharedArrayBase base) noexcept : base_(std::move(base)) {}
  const detail::SharedArrayBase& base() const noexcept { return base_; }

 private:
  static_assert((detail::check_shared_element<T>(), true));
  detail::SharedArrayBase base_;
};

// ---- Array ----------------------------------------------------------------------------------

/// `size()` Ts in shared memory, with one Lock (multiprocessing.Array(typecode, n)).
template <class T>
class Array {
 public:
  using value_type = T;
  using iterator = T*;
  using const_iterator = const T*;

  /// `count` zero-filled elements.
  explicit Array(std::size_t count)
      : base_(count, sizeof(T), type_fingerprint<T>(), "mproc-array") {}
  Array(std::initializer_list<T> init) : Array(std::span<const T>(init.begin(), init.size())) {}
  /// A copy of the elements of `range` (any sized input range of T-convertible values).
  /// (Never chosen for copying an Array: copies share the memory, they do not clone it.)
  template <std::ranges::input_range R>
  requires(std::convertible_to<std::ranges::range_reference_t<R>, T> &&
           !std::is_same_v<std::remove_cvref_t<R>, Array>) explicit Array(R&& range)
      : Array(count_of(range)) {
    std::ranges::copy(range, begin());
  }

  T& operator[](std::size_t i) const noexcept { return data()[i]; }
  /// Bounds-checked access: UsageError if i >= size().
  T& at(std::size_t i) const {
    if (i >= size()) {
      throw UsageError("Array.at(" + std::to_string(i) + "): index out of range (size " +
                       std::to_string(size()) + ")");
    }
    return data()[i];
  }
  std::size_t size() const noexcept { return base_.count(); }
  T* data() const noexcept { return static_cast<T*>(base_.data()); }
  std::span<T> span() const noexcept { return {data(), size()}; }
  T* begin() const noexcept { return data(); }
  T* end() const noexcept { return data() + size(); }
  /// The lock guarding the elements; the same lock every call.
  Lock& get_lock() const noexcept { return base_.lock(); }

  explicit Array(detail::SharedArrayBase base) noexcept : base_(std::move(base)) {}
  const detail::SharedArrayBase& base() const noexcept { return base_; }

 private:
  static_assert((detail::check_shared_element<T>(), true));
  template <class R>
  static std::size_t count_of(R& range) {
    if constexpr (std::ranges::sized_range<R>) {
      return static_cast<std::size_t>(std::ranges::size(range));
    } else {
      return static_cast<std::size_t>(std::ranges::distance(range));
    }
  }
  detail::SharedArrayBase base_;
};

// ---- SharedMemory ---------------------------------------------------------------------------

/// A named POSIX shared memory block (Python's multiprocessing.shared_memory.SharedMemory).
///
///     auto shm = mproc::SharedMemory::create("mproc_frames", 1 << 20);   // /dev/shm/mproc_frames
///     // another process: auto same = mproc::SharedMemory::open("mproc_frames");
///     shm.unlink();                          // the name goes; mappings stay valid until closed
///
/// Names: 1-250 characters of [A-Za-z0-9._-], an optional leading '/' (ignored), not "." or
/// ".."; anything else is a UsageError. The block is created with O_EXCL and mode 0600 (private
/// to the user). Copies of a SharedMemory share one mapping; close() drops this handle's share
/// and the mapping goes with the last one. A handle passed to a Process or task carries the
/// descriptor, so the receiver maps the same memory even after unlink().
///
/// - Concurrency: the bytes are plain memory; synchronise with a Lock. The handle is like a
///   shared_ptr (copy per thread).
/// - Death: a killed creator leaves the name behind, exactly as in Python; whoever knows it
///   can open() and unlink() it. Anonymous Value/Array never leak.
class SharedMemory {
 public:
  SharedMemory() noexcept = default;
  /// Creates /dev/shm/<name> of `size` bytes (reserved now: a full tmpfs is a SystemError
  /// whose message says how to fix it). SystemError EEXIST if the name exists; UsageError for
  /// a bad name or size 0. Nothing is left behind when creation fails.
  static SharedMemory create(std::string_view name, std::size_t size);
  /// As create(), with a fresh unique name starting with "mproc_".
  static SharedMemory create(std::size_t size);
  /// Opens an existing block. SystemError ENOENT if there is none.
  static SharedMemory open(std::string_view name);

  /// The mapped bytes; empty after close().
  std::span<std::byte> buf() const noexcept {
    return {static_cast<std::byte*>(segment_.data()), segment_ ? size_ : 0};
  }
  /// The name without a leading '/'.
  const std::string& name() const noexcept { return name_; }
  /// Size in bytes (as created, or as found by open()).
  std::size_t size() const noexcept { return size_; }
  /// Drops this handle's mapping (the last handle unmaps). Idempotent.
  void close() noexcept { segment_ = {}; }
  /// Removes the name (SystemError ENOENT if already gone). Mappings stay valid.
  void unlink();

  SharedMemory(std::string name, detail::SharedSegment segment, std::size_t size) noexcept
      : name_(std::move(name)), segment_(std::move(segment)), size_(size) {}
  const detail::SharedSegment& segment() const noexcept { return segment_; }

 private:
  std::string name_;
  detail::SharedSegment segment_;
  std::size_t size_ = 0;
};

// ---- codecs ---------------------------------------------------------------------------------

template <class T>
struct handle_codec<Value<T>> {
  static void encode(Encoder& out, const Value<T>& v) { v.base().encode(out); }
  static Value<T> decode(Decoder& in) {
    return Value<T>(detail::SharedArrayBase::decode(in, sizeof(T), type_fingerprint<T>()));
  }
};

template <class T>
struct handle_codec<Array<T>> {
  static void encode(Encoder& out, const Array<T>& a) { a.base().encode(out); }
  static Array<T> decode(Decoder& in) {
    return Array<T>(detail::SharedArrayBase::decode(in, sizeof(T), type_fingerprint<T>()));
  }
};

template <>
struct handle_codec<SharedMemory> {
  static void encode(Encoder& out, const SharedMemory& shm);
  static SharedMemory decode(Decoder& in);
};

}  // namespace mproc
