// Condition (Python semantics, on a Lock) and Event: futex words in shared memory.
#include <climits>
#include <new>

#include "detail/sys.hpp"
#include "mproc/sync.hpp"
#include "sync_state.hpp"

namespace mproc::detail {
namespace {
// Read-only spin before sleeping: a wake-up that arrives within it costs no system call.
constexpr int spin_iterations = 200;

}  // namespace
}  // namespace mproc::detail

namespace mproc {

namespace sys = detail::sys;
using detail::ConditionState;
using detail::EventState;
using detail::state_of;

// ---- Condition --------------------------------------------------------------------------------

namespace {
detail::SharedRef new_condition() {
  detail::SharedRef ref = detail::create_shared(sizeof(ConditionState), "mproc-condition");
  auto* st = new (ref.state()) ConditionState;
  st->seq.store(0, std::memory_order_relaxed);
  st->waiters.store(0, std::memory_order_relaxed);
  detail::init_header(st->header, detail::SyncKind::condition);
  return ref;
}

void require_held(const Lock& lock, const char* what) {
  if (!lock.held_by_caller()) {
    throw UsageError(std::string("Condition.") + what +
                     "(): the calling thread must hold the condition's lock");
  }
}
}  // namespace

Condition::Condition() : ref_(new_condition()), lock_() {}

Condition::Condition(const Lock& lock) : ref_(new_condition()), lock_(lock) {}

bool Condition::wait_ns(const std::chrono::nanoseconds* timeout) {
  require_held(lock_, timeout == nullptr ? "wait" : "wait_for");
  auto& st = state_of<ConditionState>(ref_);
  const detail::Deadline deadline(timeout);
  // Read under the lock: a notify, which needs the lock, can only come after this.
  const std::uint32_t seen = st.seq.load(std::memory_order_acquire);
  st.waiters.fetch_add(1, std::memory_order_relaxed);
  lock_.unlock();
  bool notified = false;
  try {
    for (int i = 0; i < detail::spin_iterations; ++i) {
      if (st.seq.load(std::memory_order_acquire) != seen) break;
      detail::cpu_relax();
    }
    for (;;) {
      if (st.seq.load(std::memory_order_acquire) != seen) {
        notified = true;
        break;
      }
      const auto left = deadline.remaining();
      if (left && *left == left->zero()) break;
      static_cast<void>(sys::futex_wait(detail::futex_word(st.seq), seen, left));
    }
  } catch (...) {
    st.waiters.fetch_sub(1, std::memory_order_relaxed);
    lock_.lock();
    throw;
  }
  st.waiters.fetch_sub(1, std::memory_order_relaxed);
  lock_.lock();
  return notified;
}

void Condition::notify(std::uint32_t n) {
  require_held(lock_, "notify");
  if (n == 0) return;
  auto& st = state_of<ConditionState>(ref_);
  st.seq.fetch_add(1, std::memory_order_release);
  if (st.waiters.load(std::memory_order_relaxed) != 0) {
    sys::futex_wake(detail::futex_word(st.seq), n > INT_MAX ? INT_MAX : static_cast<int>(n));
  }
}

void Condition::notify_all() {
  require_held(lock_, "notify_all");
  auto& st = state_of<ConditionState>(ref_);
  st.seq.fetch_add(1, std::memory_order_release);
  if (st.waiters.load(std::memory_order_relaxed) != 0) {
    sys::futex_wake(detail::futex_word(st.seq), INT_MAX);
  }
}

// ---- Event ------------------------------------------------------------------------------------

namespace {
constexpr std::uint32_t event_set = 1;
constexpr std::uint32_t event_sleepers = 2;

bool event_wait(EventState& st, const detail::Deadline& deadline) {
  for (int i = 0; i < detail::spin_iterations; ++i) {
    if (st.word.load(std::memory_order_acquire) & event_set) return true;
    detail::cpu_relax();
  }
  for (;;) {
    std::uint32_t v = st.word.load(std::memory_order_acquire);
    if (v & event_set) return true;
    // Announce a sleeper before sleeping, so set() knows to make the system call.
    if (!(v & event_sleepers)) {
      if (!st.word.compare_exchange_weak(v, v | event_sleepers, std::memory_order_acquire)) {
        continue;
      }
      v |= event_sleepers;
    }
    const auto left = deadline.remaining();
    if (left && *left == left->zero()) return false;
    static_cast<void>(sys::futex_wait(detail::futex_word(st.word), v, left));
  }
}
}  // namespace

Event::Event() : ref_(detail::create_shared(sizeof(EventState), "mproc-event")) {
  auto* st = new (ref_.state()) EventState;
  st->word.store(0, std::memory_order_relaxed);
  detail::init_header(st->header, detail::SyncKind::event);
}

void Event::set() {
  auto& st = state_of<EventState>(ref_);
  // Clears the sleepers bit: everyone asleep is woken here, and a later sleeper sets it again.
  const std::uint32_t old = st.word.exchange(event_set, std::memory_order_release);
  if (old & event_sleepers) sys::futex_wake(detail::futex_word(st.word), INT_MAX);
}

void Event::clear() noexcept {
  state_of<EventState>(ref_).word.fetch_and(~event_set, std::memory_order_relaxed);
}

bool Event::is_set() const noexcept {
  return (state_of<EventState>(ref_).word.load(std::memory_order_acquire) & event_set) != 0;
}

void Event::wait() {
  const detail::Deadline forever(nullptr);
  event_wait(state_of<EventState>(ref_), forever);
}

bool Event::wait_for_ns(std::chrono::nanoseconds timeout) {
  const detail::Deadline deadline(timeout);
  return event_wait(state_of<EventState>(ref_), deadline);
}

// ---- Condition's codec
// ----------------------------------------------------------------------------

void handle_codec<Condition>::encode(Encoder& out, const Condition& c) {
  detail::encode_shared(out, c.shared_ref());
  mproc::encode(out, c.get_lock());
}

Condition handle_codec<Condition>::decode(Decoder& in) {
  detail::SharedRef ref = detail::decode_shared(
      in, detail::SyncKind::condition, detail::shared_state_size(detail::SyncKind::condition));
  Lock lock = mproc::decode<Lock>(in);
  return Condition(detail::Adopt{}, std::move(ref), std::move(lock));
}

}  // namespace mproc
