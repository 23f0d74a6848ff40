// sync.hpp — process-shared synchronisation: Lock, RLock, Semaphore, BoundedSemaphore,
// Condition, Event, Barrier (Python's multiprocessing.Lock, RLock, Semaphore, ... ).
//
//     mproc::Lock lock;                              // a handle; copies are the same lock
//     mproc::Process p([](mproc::Lock l) { std::lock_guard g(l); /* ... */ }, lock);
//     p.start();
//     { std::scoped_lock g(lock); /* ... */ }
//     p.join();
//
// Every object lives in anonymous shared memory (a memfd, detail::SharedSegment) created by its
// constructor. The C++ object is a cheap handle: copying it, passing it by value to a Process
// target (fork, forkserver or spawn) or a pool task gives another handle to the *same* object.
// The memory lives while any process holds a handle (or a descriptor for it) and disappears
// with the last one, whatever the way they end: nothing to clean up, nothing in /dev/shm.
// Memory is reserved at creation, so a full tmpfs is a SystemError from the constructor.
//
// Common to all types
//  - Concurrency: any thread of any process holding a handle may call any member at any
//    time, except where a member says it needs the caller to hold the lock. A handle object
//    itself is like a std::shared_ptr: copy it per thread rather than assigning one handle
//    from two threads.
//  - Memory visibility: anything a process writes before unlock() / release() / set() /
//    notify() / arriving at a barrier is visible to a process after its matching lock() /
//    acquire() / wait() returns (release/acquire ordering through the shared memory).
//  - Start methods: under fork the child inherits the mapping; under forkserver and spawn the
//    memfd travels with the arguments (SCM_RIGHTS or inheritance across exec) and the child
//    maps the same memory. Behaviour is identical under all three.
//  - Death of a participant: see each type. Locks are robust (a dead holder never deadlocks
//    anyone); Semaphores return permits of dead holders; Barrier waiters notice a dead waiter.
//  - Waits in Event, Condition, Barrier and Semaphore spin briefly, then sleep on a futex; a
//    contended Lock/RLock sleeps in the kernel at once (spinning halved the throughput of
//    contended updates in bench/sync_bench.cpp). Timeouts are steady_clock deadlines,
//    recomputed after signals and spurious wake-ups.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "mproc/codec.hpp"
#include "mproc/detail/shared_segment.hpp"
#include "mproc/errors.hpp"

namespace mproc {

namespace detail {

/// What kind of object a shared state holds; checked when a handle is decoded, so that a
/// descriptor sent as one type is never used as another.
enum class SyncKind : std::uint32_t {
  lock = 1,
  rlock = 2,
  semaphore = 3,
  condition = 4,
  event = 5,
  barrier = 6,
  array = 7,
};

/// Bytes a Lock or RLock occupies in shared memory (Value and Array put one in front of their
/// data). The layout of the state is private to src/sync_lock.cpp.
inline constexpr std::size_t lock_state_size = 128;

/// An object placed in a SharedSegment at an offset: what every handle holds.
struct SharedRef {
  SharedSegment segment;
  std::size_t offset = 0;
  void* state() const noexcept { return static_cast<std::byte*>(segment.data()) + offset; }
};

/// A new segment of `size` bytes holding one object of `kind` at offset 0.
SharedRef create_shared(std::size_t size, const char* debug_name);
/// Writes ref as its segment's descriptor plus the offset.
void encode_shared(Encoder& out, const SharedRef& ref);
/// Reads what encode_shared wrote and checks that an object of `kind`, `size` bytes long,
/// starts at the offset (ProtocolError otherwise).
SharedRef decode_shared(Decoder& in, SyncKind kind, std::size_t size);

/// Tag for the constructors that adopt an existing state (decoding, Value/Array's lock).
struct Adopt {};

/// Places a fresh lock state at `at` (lock_state_size bytes of zeroed shared memory).
void init_lock_state(void* at, bool recursive);

}  // namespace detail

// ---- Lock -----------------------------------------------------------------------------------

/// A process-shared mutual exclusion lock (Python's multiprocessing.Lock), BasicLockable,
/// Lockable and TimedLockable: std::lock_guard, std::unique_lock and std::scoped_lock work.
///
/// - Concurrency: any thread of any process may lock(); only the thread that holds the lock
///   may unlock() it (ownership is per thread, as for std::mutex; Python lets another thread
///   release — here that is a UsageError). Not recursive: lock() by the holding thread throws
///   UsageError instead of deadlocking, try_lock() returns false.
/// - Visibility: writes made before unlock() are visible after the next lock() returns.
/// - Death: robust. If the holder dies (process killed, or the holding thread exits) the next
///   lock()/try_lock() acquires it and previous_owner_died() returns true: the data the lock
///   protects may be half-updated; check it. (The kernel's robust-futex list releases it;
///   implementation: a PTHREAD_MUTEX_ROBUST, PROCESS_SHARED, ERRORCHECK mutex.)
/// - Start methods / lifetime: see the top of this file. A lock held by the parent at fork
///   stays held by the parent's thread; the child does not own it.
class Lock {
 public:
  /// A new, unlocked lock in fresh shared memory. SystemError if memory cannot be reserved.
  Lock();
  /// Blocks until acquired. UsageError if the calling thread already holds it.
  void lock();
  /// Releases. UsageError if the calling thread does not hold it.
  void unlock();
  /// Acquires if free right now; false if held (by anyone, the caller included).
  [[nodiscard]] bool try_lock();
  /// Waits at most `timeout`; false if still held then.
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return try_lock_for_ns(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_lock_for(deadline - Clock::now());
  }
  /// True if the most recent acquisition took the lock over from a holder that died while
  /// holding it. Cleared by the next ordinary acquisition.
  [[nodiscard]] bool previous_owner_died() const noexcept;
  /// True if the calling thread holds the lock.
  [[nodiscard]] bool held_by_caller() const noexcept;

  Lock(detail::Adopt, detail::SharedRef ref) noexcept : ref_(std::move(ref)) {}
  const detail::SharedRef& shared_ref() const noexcept { return ref_; }
  friend bool operator==(const Lock& a, const Lock& b) noexcept {
    return a.ref_.state() == b.ref_.state();
  }

 private:
  bool try_lock_for_ns(std::chrono::nanoseconds timeout);
  detail::SharedRef ref_;
};

// ---- RLock ----------------------------------------------------------------------------------

/// A process-shared recursive lock (Python's multiprocessing.RLock): the holding thread may
/// lock it again; it is released when unlock() has been called as many times as lock().
/// Concurrency, visibility, death (robust: previous_owner_died()) and lifetime as for Lock.
/// unlock() by a thread that does not hold it throws UsageError.
class RLock {
 public:
  RLock();
  void lock();
  void unlock();
  [[nodiscard]] bool try_lock();
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return try_lock_for_ns(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_lock_for(deadline - Clock::now());
  }
  [[nodiscard]] bool previous_owner_died() const noexcept;
  [[nodiscard]] bool held_by_caller() const noexcept;

  RLock(detail::Adopt, detail::SharedRef ref) noexcept : ref_(std::move(ref)) {}
  const detail::SharedRef& shared_ref() const noexcept { return ref_; }

 private:
  bool try_lock_for_ns(std::chrono::nanoseconds timeout);
  detail::SharedRef ref_;
};

// ---- Semaphore, BoundedSemaphore ------------------------------------------------------------

/// A process-shared counting semaphore (Python's multiprocessing.Semaphore), with
/// std::counting_semaphore's member names.
///
/// - Concurrency: any thread of any process may acquire() and release(), in any combination
///   (a semaphore has no owner; releasing from another process is how it signals).
/// - Visibility: writes made before release() are visible after the acquire() it satisfies.
/// - Death: mproc remembers, per process (up to 64 processes at once), how many permits it
///   acquired and has not released itself. When an acquire() has to wait, and every 100 ms
///   while it waits, the processes on record are checked; the permits of one that no longer
///   exists (killed or exited; a zombie counts as gone) are returned — but never beyond the
///   initial value: recovery stops when value() + permits held by others reaches the value
///   the semaphore was created with. So a semaphore used as a pool of n resources gets the
///   permits of a dead holder back, and one used only to signal (created with 0, released by
///   a producer, acquired by consumers) never gains permits from a consumer's exit. Permits
///   of a process beyond the 64 on record, and a permit released by a process that never
///   acquired it, are not tracked. Recovery is logged at warning level.
/// - Start methods / lifetime: see the top of this file.
class Semaphore {
 public:
  /// A semaphore holding `initial` permits. UsageError if initial > max().
  explicit Semaphore(std::uint32_t initial = 1);
  /// Takes a permit, waiting for one.
  void acquire();
  /// Takes a permit if one is available now.
  [[nodiscard]] bool try_acquire();
  /// Waits at most `timeout` for a permit; false if none came.
  template <class Rep, class Period>
  [[nodiscard]] bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
    return try_acquire_for_ns(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_acquire_for(deadline - Clock::now());
  }
  /// Returns `n` permits and wakes waiters. For a BoundedSemaphore, UsageError if that would
  /// take the value above the initial value (nothing is released then). UsageError if the
  /// value would exceed max().
  void release(std::uint32_t n = 1);
  /// Permits available now (Python's get_value()); a snapshot.
  [[nodiscard]] std::uint32_t value() const;
  /// The largest value a semaphore can hold.
  static constexpr std::uint32_t max() noexcept { return 0x7fffffffu; }

  Semaphore(detail::Adopt, detail::SharedRef ref) noexcept : ref_(std::move(ref)) {}
  const detail::SharedRef& shared_ref() const noexcept { return ref_; }

 protected:
  Semaphore(std::uint32_t initial, bool bounded);

 private:
  bool try_acquire_for_ns(std::chrono::nanoseconds timeout);
  detail::SharedRef ref_;
};

/// A Semaphore whose value may never exceed its initial value (Python's BoundedSemaphore):
/// release() beyond it throws UsageError, catching a release without an acquire. Everything
/// else as for Semaphore.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(std::uint32_t initial = 1) : Semaphore(initial, true) {}
  BoundedSemaphore(detail::Adopt, detail::SharedRef ref) noexcept
      : Semaphore(detail::Adopt{}, std::move(ref)) {}
};

// ---- Condition ------------------------------------------------------------------------------

/// A process-shared condition variable with Python's semantics (multiprocessing.Condition):
/// built on a Lock the caller holds while calling wait() and notify(). Itself Lockable
/// (locks its Lock), so `std::unique_lock g(cond);` works.
///
/// - Concurrency: wait*, notify and notify_all need the calling thread to hold the lock
///   (UsageError otherwise, like Python's RuntimeError). wait() may return spuriously, and a
///   notify(n) may wake more than n waiters: use the predicate forms.
/// - Visibility: writes made under the lock before notify() and unlock are visible to a
///   waiter when its wait() returns (it re-acquires the lock).
/// - Death: a waiter re-acquires the lock robustly: if a holder died, the waiter returns
///   holding the lock and get_lock().previous_owner_died() is true. A notifier that dies
///   before notifying cannot be detected: use wait_for.
/// - Start methods / lifetime: see the top of this file; the Lock travels with it.
class Condition {
 public:
  /// A condition on a new Lock.
  Condition();
  /// A condition on `lock` (a handle to the same lock is kept).
  explicit Condition(const Lock& lock);

  void lock() { lock_.lock(); }
  void unlock() { lock_.unlock(); }
  [[nodiscard]] bool try_lock() { return lock_.try_lock(); }
  Lock& get_lock() noexcept { return lock_; }
  const Lock& get_lock() const noexcept { return lock_; }

  /// Releases the lock, waits for a notify, re-acquires the lock.
  void wait() { static_cast<void>(wait_ns(nullptr)); }
  /// As wait(), at most `timeout`: false on timeout (the lock is held again either way).
  template <class Rep, class Period>
  [[nodiscard]] bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    const auto ns = std::chrono::ceil<std::chrono::nanoseconds>(timeout);
    return wait_ns(&ns);
  }
  /// Waits until pred() is true (checked under the lock, first before waiting).
  template <class Pred>
  void wait(Pred pred) {
    while (!pred()) wait();
  }
  /// As wait(pred), at most `timeout`; returns pred()'s last value.
  template <class Rep, class Period, class Pred>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout, Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= left.zero()) return pred();
      static_cast<void>(wait_for(left));
    }
    return true;
  }
  /// Wakes at least min(n, waiters) waiters (more may wake).
  void notify(std::uint32_t n = 1);
  void notify_all();

  Condition(detail::Adopt, detail::SharedRef ref, Lock lock) noexcept
      : ref_(std::move(ref)), lock_(std::move(lock)) {}
  const detail::SharedRef& shared_ref() const noexcept { return ref_; }

 private:
  bool wait_ns(const std::chrono::nanoseconds* timeout);
  detail::SharedRef ref_;
  Lock lock_;
};

// ---- Event ----------------------------------------------------------------------------------

/// A process-shared flag that processes wait for (Python's multiprocessing.Event).
///
/// - Concurrency: any thread of any process may call anything.
/// - Visibility: writes made before set() are visible after a wait() that returns because of
///   it (or an is_set() that returns true).
/// - Death: the flag has no owner; a process that dies before set() leaves the waiters
///   waiting, as in Python — use wait_for. A waiter that dies affects nobody.
/// - Start methods / lifetime: see the top of this file.
class Event {
 public:
  Event();
  /// Sets the flag and wakes every waiter.
  void set();
  void clear() noexcept;
  [[nodiscard]] bool is_set() const noexcept;
  /// Waits until the flag is set.
  void wait();
  /// Waits at most `timeout`; returns is_set().
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    return wait_for_ns(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }

  Event(detail::Adopt, detail::SharedRef ref) noexcept : ref_(std::move(ref)) {}
  const detail::SharedRef& shared_ref() const noexcept { return ref_; }

 private:
  bool wait_for_ns(std::chrono::nanoseconds timeout);
  detail::SharedRef ref_;
};

// ---- Barrier --------------------------------------------------------------------------------

/// A process-shared barrier for `parties` participants (Python's multiprocessing.Barrier).
///
/// - Concurrency: any thread of any process may call anything. Each wait() is one arrival;
///   when `parties` arrivals have happened, all of them return and the barrier is ready for
///   the next round. wait() returns the arrival index, 0 .. parties-1, distinct per round.
/// - Visibility: writes made before a process arrives are visible to every participant of
///   that round after its wait() returns.
/// - Broken state: abort(), a wait_for() that times out, reset() under waiters, or a waiter
///   found dead break the barrier: current waiters and every later wait() throw BrokenBarrier
///   until reset().
/// - Death: while waiting, waiters check every 100 ms whether a process that has arrived in
///   this round has died; if so the barrier breaks (no hang). A party that dies *before*
///   arriving is indistinguishable from a slow one: use wait_for. Deaths are checked for the
///   first 64 arrivals of a round.
/// - Start methods / lifetime: see the top of this file.
class Barrier {
 public:
  /// UsageError if parties == 0.
  explicit Barrier(std::uint32_t parties);
  /// Arrives and waits for the others; returns this arrival's index. BrokenBarrier if the
  /// barrier is or becomes broken.
  std::uint32_t wait() { return wait_ns(nullptr); }
  /// As wait(), at most `timeout`: on timeout breaks the barrier and throws BrokenBarrier.
  template <class Rep, class Period>
  std::uint32_t wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    const auto ns = std::chrono::ceil<std::chrono::nanoseconds>(timeout);
    return wait_ns(&ns);
  }
  /// Breaks the barrier: waiters and later wait() calls throw BrokenBarrier until reset().
  void abort();
  /// Returns to the initial, unbroken state; current waiters get BrokenBarrier.
  void reset();
  [[nodiscard]] bool broken() const noexcept;
  [[nodiscard]] std::uint32_t parties() const noexcept;
  /// Processes waiting in the current round (a snapshot).
  [[nodiscard]] std::uint32_t n_waiting() const noexcept;

  Barrier(detail::Adopt, detail::SharedRef ref) noexcept : ref_(std::move(ref)) {}
  const detail::SharedRef& shared_ref() const noexcept { return ref_; }

 private:
  std::uint32_t wait_ns(const std::chrono::nanoseconds* timeout);
  detail::SharedRef ref_;
};

// ---- codecs ---------------------------------------------------------------------------------

namespace detail {
/// Size of each type's shared state, for decode_shared's bounds check.
std::size_t shared_state_size(SyncKind kind) noexcept;

template <class T, SyncKind Kind>
struct SharedHandleCodec {
  static void encode(Encoder& out, const T& h) { encode_shared(out, h.shared_ref()); }
  static T decode(Decoder& in) {
    return T(Adopt{}, decode_shared(in, Kind, shared_state_size(Kind)));
  }
};
}  // namespace detail

template <>
struct handle_codec<Lock> : detail::SharedHandleCodec<Lock, detail::SyncKind::lock> {};
template <>
struct handle_codec<RLock> : detail::SharedHandleCodec<RLock, detail::SyncKind::rlock> {};
template <>
struct handle_codec<Semaphore> : detail::SharedHandleCodec<Semaphore, detail::SyncKind::semaphore> {
};
template <>
struct handle_codec<BoundedSemaphore>
    : detail::SharedHandleCodec<BoundedSemaphore, detail::SyncKind::semaphore> {};
template <>
struct handle_codec<Event> : detail::SharedHandleCodec<Event, detail::SyncKind::event> {};
template <>
struct handle_codec<Barrier> : detail::SharedHandleCodec<Barrier, detail::SyncKind::barrier> {};
template <>
struct handle_codec<Condition> {
  static void encode(Encoder& out, const Condition& c);
  static Condition decode(Decoder& in);
};

}  // namespace mproc
