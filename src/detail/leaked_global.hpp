// leaked_global.hpp — process-wide objects created on first use and never destroyed (internal).
//
// mproc's bookkeeping (this process's identity, its children, the forkserver client) is used
// from atexit handlers, static constructors (the spawn bootstrap) and fork children, in any
// order, so it must outlive static destruction. A fork child can also replace the object with
// a single pointer store, which is why the slot is an atomic pointer rather than a
// function-local static.
#pragma once

#include <atomic>

namespace mproc::detail {

/// The object in `slot`, created (default-constructed) by the first caller. Thread-safe.
template <class T>
T& leaked_global(std::atomic<T*>& slot) {
  T* existing = slot.load(std::memory_order_acquire);
  if (existing != nullptr) return *existing;
  auto* fresh = new T;
  if (slot.compare_exchange_strong(existing, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread won the race
  return *existing;
}

}  // namespace mproc::detail
