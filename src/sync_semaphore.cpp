// Semaphore and BoundedSemaphore: a count guarded by a robust mutex, a futex word to sleep on,
// and a table of holders so that permits of dead processes can be returned (sync.hpp).
#include <pthread.h>

#include <climits>
#include <new>
#include <string>

#include "detail/sys.hpp"
#include "mproc/log.hpp"
#include "mproc/sync.hpp"
#include "sync_state.hpp"

namespace mproc::detail {
namespace {

// How often a waiting acquire() re-checks whether holders are still alive.
constexpr std::chrono::milliseconds liveness_period{100};
constexpr int spin_iterations = 100;

using Holder = SemaphoreState::Holder;

std::uint64_t permits_held(const SemaphoreState& st) noexcept {
  std::uint64_t held = 0;
  for (const Holder& h : st.holders) held += h.permits;
  return held;
}

// Records that this process took one permit. Guard held. Untracked if the table is full.
void note_acquired(SemaphoreState& st, pid_t self) noexcept {
  Holder* free_slot = nullptr;
  for (Holder& h : st.holders) {
    if (h.pid == self) {
      ++h.permits;
      return;
    }
    if (free_slot == nullptr && h.pid == 0) free_slot = &h;
  }
  if (free_slot != nullptr) {
    free_slot->permits = 1;
    free_slot->pid = self;
  }
}

// Records that this process gave back n permits; a release beyond what it holds is a signal
// and changes no record. Guard held.
void note_released(SemaphoreState& st, pid_t self, std::uint32_t n) noexcept {
  for (Holder& h : st.holders) {
    if (h.pid == self) {
      h.permits = h.permits > n ? h.permits - n : 0;
      if (h.permits == 0) h.pid = 0;
      return;
    }
  }
}

// Returns the permits of processes that no longer exist, up to the initial value (see
// sync.hpp). Guard held. Returns how many permits came back.
std::uint32_t recover_dead_holders(SemaphoreState& st) {
  std::uint32_t recovered = 0;
  for (Holder& h : st.holders) {
    if (h.pid == 0 || h.pid == this_process_id() || sys::process_alive(h.pid)) continue;
    const std::uint32_t lost = h.permits;
    const pid_t dead = h.pid;
    h.permits = 0;
    h.pid = 0;
    const std::uint64_t in_use = std::uint64_t{st.count} + permits_held(st);
    const std::uint64_t room = st.initial > in_use ? st.initial - in_use : 0;
    const auto give = static_cast<std::uint32_t>(room < lost ? room : lost);
    if (give > 0) {
      st.count += give;
      recovered += give;
      log(LogLevel::warning, "Semaphore: process " + std::to_string(dead) + " died holding " +
                                 std::to_string(lost) + " permit(s); " + std::to_string(give) +
                                 " returned");
    }
  }
  return recovered;
}

void wake(SemaphoreState& st, std::uint32_t n) {
  st.seq.fetch_add(1, std::memory_order_release);
  sys::futex_wake(detail::futex_word(st.seq), n > INT_MAX ? INT_MAX : static_cast<int>(n));
}

bool take(SemaphoreState& st, pid_t self) noexcept {
  if (st.count == 0) return false;
  // Record first: if this process dies between the two steps, the record alone is harmless
  // (recovery never goes above the initial value).
  note_acquired(st, self);
  --st.count;
  return true;
}

bool acquire_impl(SemaphoreState& st, const Deadline& deadline, bool try_only) {
  const pid_t self = this_process_id();
  std::uint32_t seen = 0;
  {
    GuardLock guard(st.guard);
    if (guard.owner_died()) recover_dead_holders(st);
    if (take(st, self)) return true;
    if (try_only) return false;
    // About to wait: permits of dead holders are what a waiter would wait for in vain.
    if (recover_dead_holders(st) > 0 && take(st, self)) return true;
    ++st.waiters;
    seen = st.seq.load(std::memory_order_acquire);
  }
  auto last_check = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < spin_iterations && st.seq.load(std::memory_order_acquire) == seen; ++i) {
      cpu_relax();
    }
    if (st.seq.load(std::memory_order_acquire) == seen) {
      // Sleeps at most one liveness period, so dead holders are noticed while waiting.
      static_cast<void>(
          sys::futex_wait(detail::futex_word(st.seq), seen, deadline.slice(liveness_period)));
    }
    GuardLock guard(st.guard);
    const auto now = std::chrono::steady_clock::now();
    if (guard.owner_died() || now - last_check >= liveness_period) {
      recover_dead_holders(st);
      last_check = now;
    }
    if (take(st, self)) {
      --st.waiters;
      return true;
    }
    if (deadline.passed()) {
      --st.waiters;
      return false;
    }
    seen = st.seq.load(std::memory_order_acquire);
  }
}

}  // namespace
}  // namespace mproc::detail

namespace mproc {

using detail::SemaphoreState;
using detail::state_of;

Semaphore::Semaphore(std::uint32_t initial) : Semaphore(initial, false) {}

Semaphore::Semaphore(std::uint32_t initial, bool bounded) {
  if (initial > max()) {
    throw UsageError("Semaphore: initial value " + std::to_string(initial) +
                     " exceeds Semaphore::max() = " + std::to_string(max()));
  }
  ref_ = detail::create_shared(sizeof(SemaphoreState),
                               bounded ? "mproc-bounded-semaphore" : "mproc-semaphore");
  auto* st = new (ref_.state()) SemaphoreState;
  detail::init_robust_mutex(st->guard, PTHREAD_MUTEX_NORMAL);
  st->count = initial;
  st->initial = initial;
  st->bounded = bounded ? 1 : 0;
  st->waiters = 0;
  st->seq.store(0, std::memory_order_relaxed);
  for (auto& h : st->holders) h = {0, 0};
  detail::init_header(st->header, detail::SyncKind::semaphore);
}

void Semaphore::acquire() {
  const detail::Deadline forever(nullptr);
  detail::acquire_impl(state_of<SemaphoreState>(ref_), forever, false);
}

bool Semaphore::try_acquire() {
  const detail::Deadline now(nullptr);
  return detail::acquire_impl(state_of<SemaphoreState>(ref_), now, true);
}

bool Semaphore::try_acquire_for_ns(std::chrono::nanoseconds timeout) {
  if (timeout <= timeout.zero()) return try_acquire();
  const detail::Deadline deadline(timeout);
  return detail::acquire_impl(state_of<SemaphoreState>(ref_), deadline, false);
}

void Semaphore::release(std::uint32_t n) {
  if (n == 0) return;
  auto& st = state_of<SemaphoreState>(ref_);
  bool wake = false;
  {
    detail::GuardLock guard(st.guard);
    if (st.bounded != 0 && std::uint64_t{st.count} + n > st.initial) {
      throw UsageError("BoundedSemaphore.release(): would raise the value to " +
                       std::to_string(std::uint64_t{st.count} + n) + ", above its initial " +
                       std::to_string(st.initial) + " (released more often than acquired)");
    }
    if (std::uint64_t{st.count} + n > max()) {
      throw UsageError("Semaphore.release(): the value would exceed Semaphore::max()");
    }
    st.count += n;
    detail::note_released(st, detail::this_process_id(), n);
    wake = st.waiters > 0;
  }
  if (wake) detail::wake(st, n);
}

std::uint32_t Semaphore::value() const {
  auto& st = state_of<SemaphoreState>(ref_);
  detail::GuardLock guard(st.guard);
  return st.count;
}

}  // namespace mproc
