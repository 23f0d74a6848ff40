// detail/future_state.hpp — the shared state behind Future<T> and detail::Promise<T>.
//
// One mutex and one condition variable per state. Every transition happens under the mutex;
// completion (the first of value / exception / cancellation) is final and happens once. What
// completion triggers — waking get()/wait() callers, notifying as_completed/wait() notifiers,
// running done callbacks — happens outside the mutex except the condition-variable broadcast,
// so a callback may use the future (or any other) freely.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace mproc::detail {

/// A move-only `void()` callable (std::function needs copyable targets; std::move_only_function
/// is C++23). Used for done callbacks, which often own a Promise.
class Callback {
 public:
  Callback() = default;
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, Callback> &&
           std::is_invocable_v<F&>) explicit Callback(F&& f)
      : impl_(std::make_unique<Impl<std::decay_t<F>>>(std::forward<F>(f))) {}
  explicit operator bool() const noexcept { return impl_ != nullptr; }
  void operator()() { impl_->call(); }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void call() = 0;
  };
  template <class F>
  struct Impl final : Base {
    explicit Impl(F&& f) : f_(std::move(f)) {}
    explicit Impl(const F& f) : f_(f) {}
    void call() override { f_(); }
    F f_;
  };
  std::unique_ptr<Base> impl_;
};

/// Signalled by every future an as_completed()/wait() call watches, with the future's index
/// in that call's input. `ready` is reserved up front for every index, and each index is
/// pushed exactly once, so notify() never allocates (it runs on the completing thread).
struct CompletionNotifier {
  explicit CompletionNotifier(std::size_t count) { ready.reserve(count); }
  void notify(std::size_t index) noexcept {
    std::lock_guard lock(mutex);
    ready.push_back(index);
    cv.notify_all();
  }
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::size_t> ready;  // indices in completion order
};

/// Everything about a future but its value.
class FutureStateBase {
 public:
  enum class Status : unsigned char { pending, running, finished, failed, cancelled };

  FutureStateBase() = default;
  FutureStateBase(const FutureStateBase&) = delete;
  FutureStateBase& operator=(const FutureStateBase&) = delete;

  Status status() const;
  bool done() const;
  /// Blocks until done.
  void wait() const;
  /// Blocks until done or `deadline`; returns done().
  bool wait_until(std::chrono::steady_clock::time_point deadline) const;
  /// The failure (task exception or Cancelled); nullptr while pending or on success.
  std::exception_ptr error() const;

  /// pending -> running. True while the future is not done (so an engine retrying a task on
  /// a new worker may call it again); false once done (cancelled): skip the task.
  bool set_running();
  /// First completion wins; later ones return false.
  bool set_exception(std::exception_ptr error);
  /// Completes as cancelled with `error` (a Cancelled exception), or a fresh one when null.
  bool set_cancelled(std::exception_ptr error = nullptr);
  void set_force_cancel_hook(std::function<bool()> hook);

  /// Future::cancel(): a pending future becomes cancelled. Returns cancelled().
  bool cancel();
  /// Future::cancel(force): also a running one, through the force-cancel hook.
  bool cancel_force();

  /// Runs `callback` once when done: now, on this thread, if already done.
  void add_callback(Callback callback);
  /// Registers `notifier` to receive `index` at completion; false (nothing registered) when
  /// already done.
  bool add_waiter(const std::shared_ptr<CompletionNotifier>& notifier, std::size_t index);
  /// Unregisters every entry of `notifier`; a no-op for entries already notified.
  void remove_waiter(const CompletionNotifier* notifier) noexcept;

 protected:
  using Lock = std::unique_lock<std::mutex>;
  /// With `lock` held on a state that is not done: records the outcome, wakes every waiter,
  /// releases the lock, then notifies notifiers and runs callbacks. Never touches *this after
  /// releasing the lock (a callback may drop the last handle).
  void finish(Lock& lock, Status status, std::exception_ptr error) noexcept;
  static bool is_done(Status s) noexcept { return s >= Status::finished; }
  /// The status, for a caller already holding mutex_.
  Status status_locked() const noexcept { return status_; }

  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;

 private:
  static void run_callback(Callback& callback) noexcept;

  Status status_ = Status::pending;
  std::exception_ptr error_;
  std::function<bool()> force_hook_;
  std::vector<Callback> callbacks_;
  std::vector<std::pair<std::shared_ptr<CompletionNotifier>, std::size_t>> waiters_;
};

/// `Future<void>` stores nothing; this stands in for its value.
struct Unit {};

template <class T>
class FutureState final : public FutureStateBase {
 public:
  using Stored = std::conditional_t<std::is_void_v<T>, Unit, T>;

  bool set_value(Stored&& value) {
    Lock lock(mutex_);
    if (is_done(status_locked())) return false;
    value_.emplace(std::move(value));
    finish(lock, Status::finished, nullptr);
    return true;
  }
  /// Valid once status() is finished; never changes afterwards.
  const Stored& value() const noexcept { return *value_; }

 private:
  // Written once under mutex_ before the state is marked finished; read only after a reader
  // has seen `finished` under mutex_, so the mutex orders the write before every read.
  std::optional<Stored> value_;
};

}  // namespace mproc::detail
