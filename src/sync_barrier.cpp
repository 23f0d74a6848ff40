// Barrier: arrivals counted under a robust guard, a round number to sleep on, and the pids of
// this round's arrivals so that waiters notice one that died (sync.hpp).
#include <climits>
#include <new>
#include <string>

#include "detail/sys.hpp"
#include "mproc/log.hpp"
#include "mproc/sync.hpp"
#include "sync_state.hpp"

namespace mproc::detail {
namespace {

constexpr std::chrono::milliseconds liveness_period{100};
constexpr int spin_iterations = 200;

std::uint64_t round_bit(std::uint32_t round) noexcept {
  return std::uint64_t{1} << (round % 64);
}

void clear_arrivals(BarrierState& st) noexcept {
  st.count = 0;
  for (pid_t& p : st.arrived) p = 0;
}

// Ends the current round as broken: its waiters throw, later waits throw until reset().
// Guard held.
void end_round(BarrierState& st, bool broken) {
  const std::uint32_t round = st.generation.load(std::memory_order_relaxed);
  if (broken) {
    st.broken_rounds.fetch_or(round_bit(round), std::memory_order_relaxed);
  } else {
    st.broken_rounds.fetch_and(~round_bit(round), std::memory_order_relaxed);
  }
  clear_arrivals(st);
  st.generation.store(round + 1, std::memory_order_release);
  sys::futex_wake(futex_word(st.generation), INT_MAX);
}

void break_barrier(BarrierState& st) {
  st.broken = 1;
  end_round(st, true);
}

bool arrival_died(const BarrierState& st) noexcept {
  const std::uint32_t count = st.count.load(std::memory_order_relaxed);
  const std::uint32_t tracked =
      count < barrier_tracked ? count : static_cast<std::uint32_t>(barrier_tracked);
  for (std::uint32_t i = 0; i < tracked; ++i) {
    const pid_t p = st.arrived[i];
    if (p != 0 && p != this_process_id() && !sys::process_alive(p)) return true;
  }
  return false;
}

[[noreturn]] void throw_broken(const char* why) {
  throw BrokenBarrier(std::string("Barrier: ") + why);
}

}  // namespace
}  // namespace mproc::detail

namespace mproc {

namespace sys = detail::sys;
using detail::BarrierState;
using detail::state_of;

Barrier::Barrier(std::uint32_t parties) {
  if (parties == 0) throw UsageError("Barrier: parties must be >= 1 (got 0)");
  ref_ = detail::create_shared(sizeof(BarrierState), "mproc-barrier");
  auto* st = new (ref_.state()) BarrierState;
  detail::init_robust_mutex(st->guard, PTHREAD_MUTEX_NORMAL);
  st->parties = parties;
  st->broken = 0;
  st->reserved = 0;
  st->generation.store(0, std::memory_order_relaxed);
  st->broken_rounds.store(0, std::memory_order_relaxed);
  detail::clear_arrivals(*st);
  detail::init_header(st->header, detail::SyncKind::barrier);
}

std::uint32_t Barrier::wait_ns(const std::chrono::nanoseconds* timeout) {
  auto& st = state_of<BarrierState>(ref_);
  const detail::Deadline deadline(timeout);
  std::uint32_t round = 0;
  std::uint32_t index = 0;
  {
    detail::GuardLock guard(st.guard);
    // A guard holder that died may have left a half-recorded arrival: the round is unusable.
    if (guard.owner_died() && st.broken == 0) detail::break_barrier(st);
    if (st.broken != 0) detail::throw_broken("the barrier is broken (call reset() to reuse it)");
    round = st.generation.load(std::memory_order_relaxed);
    index = st.count++;
    if (index < detail::barrier_tracked) st.arrived[index] = detail::this_process_id();
    if (st.count == st.parties) {
      detail::end_round(st, false);
      return index;
    }
  }
  for (int i = 0; i < detail::spin_iterations; ++i) {
    if (st.generation.load(std::memory_order_acquire) != round) break;
    detail::cpu_relax();
  }
  auto last_check = std::chrono::steady_clock::now();
  while (st.generation.load(std::memory_order_acquire) == round) {
    if (deadline.passed()) {
      detail::GuardLock guard(st.guard);
      if (st.generation.load(std::memory_order_relaxed) == round) {
        detail::break_barrier(st);
        detail::throw_broken("wait_for() timed out; the barrier is now broken");
      }
      break;  // the round ended just in time
    }
    static_cast<void>(sys::futex_wait(detail::futex_word(st.generation), round,
                                      deadline.slice(detail::liveness_period)));
    const auto now = std::chrono::steady_clock::now();
    if (now - last_check >= detail::liveness_period &&
        st.generation.load(std::memory_order_acquire) == round) {
      last_check = now;
      detail::GuardLock guard(st.guard);
      if (st.generation.load(std::memory_order_relaxed) == round &&
          (guard.owner_died() || detail::arrival_died(st))) {
        detail::log(LogLevel::warning,
                    "Barrier: a process that arrived died while waiting; "
                    "breaking the barrier");
        detail::break_barrier(st);
      }
    }
  }
  if (st.broken_rounds.load(std::memory_order_acquire) & detail::round_bit(round)) {
    detail::throw_broken(
        "the barrier was broken while waiting (abort(), reset(), a timeout, or "
        "a participant died)");
  }
  return index;
}

void Barrier::abort() {
  auto& st = state_of<BarrierState>(ref_);
  detail::GuardLock guard(st.guard);
  detail::break_barrier(st);
}

void Barrier::reset() {
  auto& st = state_of<BarrierState>(ref_);
  detail::GuardLock guard(st.guard);
  if (st.count > 0) detail::end_round(st, true);  // current waiters get BrokenBarrier
  st.broken = 0;
}

bool Barrier::broken() const noexcept {
  return state_of<BarrierState>(ref_).broken.load(std::memory_order_relaxed) != 0;
}

std::uint32_t Barrier::parties() const noexcept {
  return state_of<BarrierState>(ref_).parties;
}

std::uint32_t Barrier::n_waiting() const noexcept {
  return state_of<BarrierState>(ref_).count.load(std::memory_order_relaxed);
}

}  // namespace mproc
