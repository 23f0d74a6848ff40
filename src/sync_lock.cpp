// Lock and RLock (robust process-shared pthread mutexes), and the plumbing every sync handle
// shares: creation, encoding, validation on decode.
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <new>
#include <string>

#include "detail/sys.hpp"
#include "mproc/log.hpp"
#include "mproc/sync.hpp"
#include "sync_state.hpp"

namespace mproc::detail {

// ---- plumbing -------------------------------------------------------------------------------

SharedRef create_shared(std::size_t size, const char* debug_name) {
  return SharedRef{SharedSegment::create(size, debug_name), 0};
}

std::size_t shared_state_size(SyncKind kind) noexcept {
  switch (kind) {
    case SyncKind::lock:
    case SyncKind::rlock: return sizeof(LockState);
    case SyncKind::semaphore: return sizeof(SemaphoreState);
    case SyncKind::condition: return sizeof(ConditionState);
    case SyncKind::event: return sizeof(EventState);
    case SyncKind::barrier: return sizeof(BarrierState);
    case SyncKind::array: return sizeof(StateHeader);
  }
  return sizeof(StateHeader);
}

void encode_shared(Encoder& out, const SharedRef& ref) {
  encode(out, ref.segment);
  const std::uint64_t offset = ref.offset;
  out.write_bytes(&offset, sizeof offset);
}

SharedRef decode_shared(Decoder& in, SyncKind kind, std::size_t size) {
  SharedRef ref;
  ref.segment = decode<SharedSegment>(in);
  std::uint64_t offset = 0;
  in.read_bytes(&offset, sizeof offset);
  if (offset % 64 != 0 || offset > ref.segment.size() || ref.segment.size() - offset < size) {
    throw ProtocolError("shared object handle: offset " + std::to_string(offset) +
                        " does not fit its " + std::to_string(ref.segment.size()) +
                        "-byte segment");
  }
  ref.offset = static_cast<std::size_t>(offset);
  const auto& header = *static_cast<const StateHeader*>(ref.state());
  const std::uint32_t magic =
      std::atomic_ref<const std::uint32_t>(header.magic).load(std::memory_order_acquire);
  if (magic != state_magic || header.version != state_version) {
    throw ProtocolError(
        "shared object handle: the memory does not hold an mproc object of a "
        "known layout");
  }
  if (header.kind != kind) {
    throw ProtocolError("shared object handle: expected kind " +
                        std::to_string(static_cast<unsigned>(kind)) + ", found kind " +
                        std::to_string(static_cast<unsigned>(header.kind)));
  }
  return ref;
}

namespace {
pid_t g_process_id = 0;
}  // namespace

pid_t this_process_id() noexcept {
  if (g_process_id == 0) {
    static const bool registered = [] {
      ::pthread_atfork(nullptr, nullptr, [] { g_process_id = 0; });
      return true;
    }();
    static_cast<void>(registered);
    g_process_id = ::getpid();
  }
  return g_process_id;
}

void init_robust_mutex(pthread_mutex_t& m, int type) {
  pthread_mutexattr_t attr;
  int rc = ::pthread_mutexattr_init(&attr);
  if (rc != 0) sys::throw_errno("pthread_mutexattr_init()", rc);
  rc = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = ::pthread_mutexattr_settype(&attr, type);
  if (rc == 0) rc = ::pthread_mutex_init(&m, &attr);
  ::pthread_mutexattr_destroy(&attr);
  if (rc != 0) sys::throw_errno("pthread_mutex_init()", rc);
}

GuardLock::GuardLock(pthread_mutex_t& m) : m_(m) {
  const int rc = ::pthread_mutex_lock(&m_);
  if (rc == EOWNERDEAD) {
    ::pthread_mutex_consistent(&m_);
    owner_died_ = true;
  } else if (rc != 0) {
    sys::throw_errno("pthread_mutex_lock()", rc);
  }
}

GuardLock::~GuardLock() {
  ::pthread_mutex_unlock(&m_);
}

namespace {

// ---- the lock itself --------------------------------------------------------------------------

// The futex word of a robust mutex: the owner's thread id (kernel ABI for robust futexes,
// FUTEX_TID_MASK), 0 when free.
std::uint32_t owner_word(const pthread_mutex_t& m) noexcept {
  return static_cast<std::uint32_t>(__atomic_load_n(&m.__data.__lock, __ATOMIC_RELAXED));
}
constexpr std::uint32_t tid_mask = 0x3fffffff;

timespec to_monotonic_timespec(std::chrono::steady_clock::time_point at) {
  // libstdc++'s steady_clock is CLOCK_MONOTONIC.
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch());
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns.count() % 1'000'000'000);
  return ts;
}

enum class Outcome { acquired, busy };

// Interprets a pthread_mutex_*lock result. EOWNERDEAD: we hold the mutex, its last owner died
// holding it; mark it consistent (usable again) and remember for previous_owner_died().
Outcome finish(LockState& st, int rc, const char* type, const char* call) {
  switch (rc) {
    case 0:
      // Read first: the store would dirty the cache line on every acquisition.
      if (st.owner_died.load(std::memory_order_relaxed) != 0) {
        st.owner_died.store(0, std::memory_order_relaxed);
      }
      return Outcome::acquired;
    case EOWNERDEAD:
      if (const int c = ::pthread_mutex_consistent(&st.mutex); c != 0) {
        sys::throw_errno("pthread_mutex_consistent()", c);
      }
      st.owner_died.store(1, std::memory_order_relaxed);
      log(LogLevel::warning, std::string(type) +
                                 ": the previous holder died while holding it; acquired "
                                 "anyway (previous_owner_died() is true)");
      return Outcome::acquired;
    case EBUSY:
    case ETIMEDOUT: return Outcome::busy;
    case EDEADLK:
      throw UsageError(std::string(type) +
                       ".lock(): the calling thread already holds this lock, which is not "
                       "recursive (use mproc::RLock to lock it again)");
    default: sys::throw_errno(call, rc);
  }
}

bool lock_impl(LockState& st, const char* type, const Deadline* deadline, bool try_only) {
  int rc = ::pthread_mutex_trylock(&st.mutex);
  if (rc == EDEADLK && (try_only || deadline != nullptr)) return false;  // held by the caller
  if (rc != EBUSY || try_only) {
    return finish(st, rc, type, "pthread_mutex_trylock()") == Outcome::acquired;
  }
  // Contended: straight to the kernel, no spinning. Measured on Value increments from two
  // processes: spinning keeps both processes bouncing the lock's cache line and halved the
  // throughput, while a sleeping loser lets the holder run long uncontended batches.
  if (deadline == nullptr) {
    return finish(st, ::pthread_mutex_lock(&st.mutex), type, "pthread_mutex_lock()") ==
           Outcome::acquired;
  }
  const timespec at = to_monotonic_timespec(*deadline->at());
  for (;;) {
    rc = ::pthread_mutex_clocklock(&st.mutex, CLOCK_MONOTONIC, &at);
    if (rc == EDEADLK) return false;
    if (rc != EINTR) break;
  }
  return finish(st, rc, type, "pthread_mutex_clocklock()") == Outcome::acquired;
}

void unlock_impl(LockState& st, const char* type) {
  const int rc = ::pthread_mutex_unlock(&st.mutex);
  if (rc == 0) return;
  if (rc == EPERM) {
    throw UsageError(std::string(type) +
                     ".unlock(): the calling thread does not hold this lock (locks are owned "
                     "by the thread that acquired them)");
  }
  sys::throw_errno("pthread_mutex_unlock()", rc);
}

bool held_impl(const LockState& st) noexcept {
  return (owner_word(st.mutex) & tid_mask) == static_cast<std::uint32_t>(sys::this_thread_id());
}

SharedRef new_lock(bool recursive) {
  SharedRef ref = create_shared(sizeof(LockState), recursive ? "mproc-rlock" : "mproc-lock");
  init_lock_state(ref.state(), recursive);
  return ref;
}

}  // namespace

void init_lock_state(void* at, bool recursive) {
  auto* st = new (at) LockState;
  init_robust_mutex(st->mutex, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
  st->owner_died.store(0, std::memory_order_relaxed);
  init_header(st->header, recursive ? SyncKind::rlock : SyncKind::lock);
}

}  // namespace mproc::detail

namespace mproc {

using detail::LockState;
using detail::state_of;

Lock::Lock() : ref_(detail::new_lock(false)) {}

void Lock::lock() {
  detail::lock_impl(state_of<LockState>(ref_), "Lock", nullptr, false);
}

void Lock::unlock() {
  detail::unlock_impl(state_of<LockState>(ref_), "Lock");
}

bool Lock::try_lock() {
  return detail::lock_impl(state_of<LockState>(ref_), "Lock", nullptr, true);
}

bool Lock::try_lock_for_ns(std::chrono::nanoseconds timeout) {
  if (timeout <= timeout.zero()) return try_lock();
  const detail::Deadline deadline(timeout);
  return detail::lock_impl(state_of<LockState>(ref_), "Lock", &deadline, false);
}

bool Lock::previous_owner_died() const noexcept {
  return state_of<LockState>(ref_).owner_died.load(std::memory_order_relaxed) != 0;
}

bool Lock::held_by_caller() const noexcept {
  return detail::held_impl(state_of<LockState>(ref_));
}

RLock::RLock() : ref_(detail::new_lock(true)) {}

void RLock::lock() {
  detail::lock_impl(state_of<LockState>(ref_), "RLock", nullptr, false);
}

void RLock::unlock() {
  detail::unlock_impl(state_of<LockState>(ref_), "RLock");
}

bool RLock::try_lock() {
  return detail::lock_impl(state_of<LockState>(ref_), "RLock", nullptr, true);
}

bool RLock::try_lock_for_ns(std::chrono::nanoseconds timeout) {
  if (timeout <= timeout.zero()) return try_lock();
  const detail::Deadline deadline(timeout);
  return detail::lock_impl(state_of<LockState>(ref_), "RLock", &deadline, false);
}

bool RLock::previous_owner_died() const noexcept {
  return state_of<LockState>(ref_).owner_died.load(std::memory_order_relaxed) != 0;
}

bool RLock::held_by_caller() const noexcept {
  return detail::held_impl(state_of<LockState>(ref_));
}

}  // namespace mproc
