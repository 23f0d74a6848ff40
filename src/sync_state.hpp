// sync_state.hpp — layouts of the process-shared states behind sync.hpp and shared.hpp
// (internal to src/).
//
// Every state starts with a StateHeader, so that a handle decoded from another process is
// checked before use: a descriptor that holds something else, or an older layout, is a
// ProtocolError, never undefined behaviour.
//
//     offset 0            16                                   size
//     +-------------------+--------------------------------------+
//     | magic:u32 kind:u32 | type-specific state (below)         |
//     | version:u32 pad:u32|                                     |
//     +-------------------+--------------------------------------+
//
// States live in zero-filled memfd memory and are constructed in place by the creating
// process; no state holds a pointer (each process maps the memory at its own address).
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "mproc/sync.hpp"

namespace mproc::detail {

/// The 32-bit word behind an atomic, for sys::futex_wait/futex_wake (std::atomic<uint32_t> is
/// lock-free and has the layout of its value on every platform mproc supports).
inline const std::uint32_t* futex_word(const std::atomic<std::uint32_t>& a) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  return reinterpret_cast<const std::uint32_t*>(&a);
}

inline constexpr std::uint32_t state_magic = 0x6d53594e;  // "mSYN"
inline constexpr std::uint32_t state_version = 1;

struct StateHeader {
  std::uint32_t magic;
  SyncKind kind;
  std::uint32_t version;
  std::uint32_t reserved;
};

inline void init_header(StateHeader& h, SyncKind kind) noexcept {
  h.kind = kind;
  h.version = state_version;
  h.reserved = 0;
  // Written last, so a state is never seen as valid before it is initialised.
  std::atomic_ref<std::uint32_t>(h.magic).store(state_magic, std::memory_order_release);
}

/// Lock and RLock: a robust, process-shared pthread mutex.
struct LockState {
  StateHeader header;
  pthread_mutex_t mutex;
  /// 1 if the most recent acquisition recovered the mutex from a dead owner.
  std::atomic<std::uint32_t> owner_died;
};
static_assert(sizeof(LockState) <= lock_state_size, "LockState outgrew lock_state_size");

/// Processes tracked per semaphore for permit recovery.
inline constexpr std::size_t semaphore_holders = 64;

/// Semaphore and BoundedSemaphore. Everything but `seq` is guarded by `guard`, a robust mutex
/// held for a few instructions only (never while sleeping).
struct SemaphoreState {
  StateHeader header;
  pthread_mutex_t guard;
  std::uint32_t count;
  std::uint32_t initial;
  std::uint32_t bounded;
  std::uint32_t waiters;
  /// Futex word: bumped by every release, so sleepers notice.
  std::atomic<std::uint32_t> seq;
  std::uint32_t reserved;
  struct Holder {
    pid_t pid;              // 0 = free slot
    std::uint32_t permits;  // acquired by pid and not released by it
  } holders[semaphore_holders];
};

/// Condition: the lock is a separate object (the user's Lock).
struct ConditionState {
  StateHeader header;
  /// Futex word: bumped by every notify.
  std::atomic<std::uint32_t> seq;
  /// Threads between registering and re-acquiring (a dead waiter only costs extra wake-ups).
  std::atomic<std::uint32_t> waiters;
};

/// Event: one futex word. Bit 0: set. Bit 1: someone may be sleeping (set() must wake).
struct EventState {
  StateHeader header;
  std::atomic<std::uint32_t> word;
};

/// Arrivals per round whose death the waiters check.
inline constexpr std::size_t barrier_tracked = 64;

/// Barrier. Everything but `generation` is guarded by `guard` (robust, held briefly).
struct BarrierState {
  StateHeader header;
  pthread_mutex_t guard;
  std::uint32_t parties;
  std::uint32_t reserved;
  // Atomic because broken() and n_waiting() read them without the guard.
  std::atomic<std::uint32_t> count;  // arrivals in the current round
  std::atomic<std::uint32_t> broken;
  /// Futex word: the round number; advances when a round ends (tripped or broken).
  std::atomic<std::uint32_t> generation;
  /// Bit g % 64: round g ended broken. Written before generation advances.
  std::atomic<std::uint64_t> broken_rounds;
  pid_t arrived[barrier_tracked];
};

// ---- helpers shared by the sync sources ------------------------------------------------------

/// A steady_clock deadline, or none (wait forever).
class Deadline {
 public:
  explicit Deadline(const std::chrono::nanoseconds* timeout) {
    if (timeout != nullptr) at_ = std::chrono::steady_clock::now() + *timeout;
  }
  explicit Deadline(std::chrono::nanoseconds timeout)
      : at_(std::chrono::steady_clock::now() + timeout) {}
  bool forever() const noexcept { return !at_; }
  /// Time left (0 once passed); nullopt if forever.
  std::optional<std::chrono::nanoseconds> remaining() const {
    if (!at_) return std::nullopt;
    const auto left = *at_ - std::chrono::steady_clock::now();
    return left > left.zero() ? std::chrono::duration_cast<std::chrono::nanoseconds>(left)
                              : std::chrono::nanoseconds(0);
  }
  bool passed() const { return at_ && std::chrono::steady_clock::now() >= *at_; }
  /// Remaining time capped at `slice` (for waits that re-check something periodically).
  std::chrono::nanoseconds slice(std::chrono::nanoseconds slice) const {
    const auto left = remaining();
    return left && *left < slice ? *left : slice;
  }
  std::optional<std::chrono::steady_clock::time_point> at() const noexcept { return at_; }

 private:
  std::optional<std::chrono::steady_clock::time_point> at_;
};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// This process's id, cached (refreshed in fork children).
pid_t this_process_id() noexcept;

/// Initialises a robust, process-shared mutex of `type` (PTHREAD_MUTEX_ERRORCHECK, ...).
void init_robust_mutex(pthread_mutex_t& m, int type);

/// Holds an internal guard mutex (robust) for a scope. A guard whose holder died mid-update is
/// made consistent and reported through owner_died(): callers repair what they guard.
class GuardLock {
 public:
  explicit GuardLock(pthread_mutex_t& m);
  ~GuardLock();
  GuardLock(const GuardLock&) = delete;
  GuardLock& operator=(const GuardLock&) = delete;
  bool owner_died() const noexcept { return owner_died_; }

 private:
  pthread_mutex_t& m_;
  bool owner_died_ = false;
};

template <class State>
State& state_of(const SharedRef& ref) noexcept {
  return *static_cast<State*>(ref.state());
}

}  // namespace mproc::detail
