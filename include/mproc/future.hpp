// future.hpp — Future<T>: the result of work that finishes later, plus as_completed() and
// wait() over many futures (Python's concurrent.futures.Future, as_completed, wait).
//
//     mproc::Future<int> f = ex.submit(square, 7);
//     f.add_done_callback([](const mproc::Future<int>& g) { std::puts("done"); });
//     mproc::Future<std::string> s = f.then([](const int& v) { return std::to_string(v); });
//     int v = f.get();                                    // 49, or rethrows the task's error
//     for (auto&& g : mproc::as_completed(futures)) use(g.get());  // in completion order
//     auto [done, not_done] = mproc::wait(futures, mproc::ReturnWhen::first_exception, 10s);
//
// Concepts
//  - A Future<T> is a cheap, copyable handle to a shared state (like std::shared_future);
//    copies refer to the same result. A default-constructed (or moved-from) Future is empty:
//    valid() is false and every other member throws UsageError.
//  - States: pending -> running -> done, where done is exactly one of finished (a value),
//    failed (an exception) or cancelled. The first completion wins and is final.
//  - get() returns `const T&` into the shared state, valid while any handle or producer keeps
//    the state alive; it may be called any number of times from any threads. A failed future
//    rethrows the task's exception (the same object each time); a cancelled one throws
//    Cancelled. Future<void>::get() returns void.
//  - cancel() only cancels a pending future, as in Python. cancel(mproc::force) also stops a
//    running task: the executor kills and replaces the worker running it.
//  - Callbacks (add_done_callback, then) run exactly once, on the thread that completes the
//    future — for executors, mproc's result thread, so keep them short — or at once on the
//    calling thread when the future is already done. They never run under a lock.
//  - A future whose producer is destroyed without completing it fails with BrokenPool, so no
//    waiter is ever left hanging.
//
// Thread safety: every member of Future, and as_completed()/wait(), may be called
// concurrently from any threads of the process on any copies of a handle. An AsCompleted
// range is one consumer's iteration: iterate it from one thread at a time.
//
// Memory visibility: everything the producer did before completing the future (for
// executors: decoding the result) happens-before the return of any wait()/get()/done() that
// observes it done, and before its callbacks run.
//
// Futures live in the process that created them; they are not transferable to other processes.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/future_state.hpp"
#include "mproc/errors.hpp"

namespace mproc {

/// Tag for cancel(mproc::force).
struct force_t {
  explicit force_t() = default;
};
inline constexpr force_t force{};

/// When mproc::wait() returns (Python's FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED).
enum class ReturnWhen {
  first_completed,  ///< any future is done (or cancelled)
  first_exception,  ///< any future failed with an exception (cancelled does not count), else all
                    ///< done
  all_completed,    ///< every future is done
};

template <class T>
class Future;

namespace detail {

template <class T>
struct get_result {
  using type = const T&;
};
template <>
struct get_result<void> {
  using type = void;
};

template <class T>
inline constexpr bool is_future_v = false;
template <class T>
inline constexpr bool is_future_v<Future<T>> = true;

/// The value type of `Future<U>` that then(f) produces: what f returns, decayed.
template <class F, class T>
struct then_result {
  using type = std::remove_cvref_t<std::invoke_result_t<F&, const T&>>;
};
template <class F>
struct then_result<F, void> {
  using type = std::remove_cvref_t<std::invoke_result_t<F&>>;
};

/// A deadline `timeout` from now; nullopt ("wait forever") for timeouts beyond ~30 years,
/// which would overflow steady_clock arithmetic. Zero or negative timeouts mean "now".
template <class Rep, class Period>
std::optional<std::chrono::steady_clock::time_point> deadline_after(
    std::chrono::duration<Rep, Period> timeout) {
  using namespace std::chrono;
  const auto now = steady_clock::now();
  if (timeout <= timeout.zero()) return now;
  if (duration<double>(timeout).count() > 1e9) return std::nullopt;
  return now + ceil<steady_clock::duration>(timeout);
}

template <class Clock, class Duration>
std::optional<std::chrono::steady_clock::time_point> deadline_at(
    std::chrono::time_point<Clock, Duration> when) {
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    return std::chrono::time_point_cast<std::chrono::steady_clock::duration>(when);
  } else {
    return deadline_after(when - Clock::now());
  }
}

template <class F, class T>
struct then_invocable : std::is_invocable<F&, const T&> {};
template <class F>
struct then_invocable<F, void> : std::is_invocable<F&> {};
/// What then() accepts: callable with `const T&` (with nothing for Future<void>).
template <class F, class T>
concept then_callable = then_invocable<F, T>::value;

template <class T>
class PromiseBase;
template <class T>
struct WaitImpl;

}  // namespace detail

/// A handle to the result of work that completes later. See the top of this file.
template <class T>
class Future {
  static_assert(!std::is_reference_v<T> && !std::is_array_v<T> && !std::is_const_v<T>,
                "Future<T>: T must be a non-const object type or void");

 public:
  using value_type = T;

  /// An empty handle (valid() is false).
  Future() = default;

  /// Whether this handle refers to a state (false when default-constructed or moved-from).
  bool valid() const noexcept { return state_ != nullptr; }

  /// Blocks until done; returns the value (a reference into the shared state, the same one
  /// every call). Throws the task's exception if it failed, Cancelled if cancelled.
  typename detail::get_result<T>::type get() const {
    const auto& s = state();
    s.wait();
    return result(s);
  }

  /// get() with a time limit: throws TimeoutError if not done within `timeout` (Python's
  /// result(timeout)); the future is untouched and may be waited on again.
  template <class Rep, class Period>
  typename detail::get_result<T>::type get_for(std::chrono::duration<Rep, Period> timeout) const {
    if (!wait_for(timeout)) throw TimeoutError("Future::get_for: not done within the timeout");
    return result(state());
  }

  /// Blocks until done (finished, failed or cancelled). Never throws the task's exception.
  void wait() const { state().wait(); }

  /// Blocks until done or `timeout` passes; returns done().
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    const auto& s = state();
    const auto deadline = detail::deadline_after(timeout);
    if (!deadline) {
      s.wait();
      return true;
    }
    return s.wait_until(*deadline);
  }

  /// Blocks until done or `when`; returns done().
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> when) const {
    const auto& s = state();
    const auto deadline = detail::deadline_at(when);
    if (!deadline) {
      s.wait();
      return true;
    }
    return s.wait_until(*deadline);
  }

  /// True once finished, failed or cancelled. Never blocks (beyond a short lock).
  bool done() const { return state().done(); }
  /// True while the producer reports the task running (not yet done).
  bool running() const { return state().status() == Status::running; }
  /// True if the future was cancelled.
  bool cancelled() const { return state().status() == Status::cancelled; }

  /// Cancels a pending future (Python's cancel()): a running or completed task is not touched.
  /// Returns whether the future is now cancelled (true if it already was). Waiters wake and
  /// callbacks run before it returns.
  bool cancel() const { return state_ref().cancel(); }

  /// Cancels a pending future, or stops a running task: the producer's force-cancel hook
  /// (for executors: kill and replace the worker) runs on this thread. Returns true if the
  /// future is now cancelled — false when it had already finished or failed, when the
  /// producer cannot force-cancel, or when the task's result arrived first.
  bool cancel(force_t) const { return state_ref().cancel_force(); }

  /// Blocks until done; the failure (the task's exception, or the Cancelled exception), or
  /// nullptr when it finished with a value. Python's exception().
  std::exception_ptr exception() const {
    const auto& s = state();
    s.wait();
    return s.error();
  }

  /// Calls `callback(future)` once when done: on the completing thread, or at once on this
  /// thread if already done. An exception it throws is logged (LogLevel::error) and
  /// swallowed, as in Python. `callback` may be move-only. Callbacks run in registration
  /// order relative to each other.
  template <class F>
  requires std::invocable < std::decay_t<F>
  &, const Future<T>& > void add_done_callback(F&& callback) const {
    auto& s = state_ref();
    // A weak reference: the state owns its callbacks, a strong one would be a cycle. The
    // state is alive whenever a callback runs (its completer holds a reference).
    s.add_callback(detail::Callback(
        [cb = std::decay_t<F>(std::forward<F>(callback)), weak = std::weak_ptr(state_)]() mutable {
          if (auto strong = weak.lock()) cb(Future<T>(std::move(strong)));
        }));
  }

  /// A future for `f(value)` (`f()` for Future<void>), run when this one finishes with a
  /// value — on the completing thread, like a done callback. If this future fails or is
  /// cancelled, the result fails (is cancelled) with the same exception and `f` never runs;
  /// if `f` throws, the result fails with that exception. Cancelling the result before `f`
  /// starts means `f` never runs.
  template <class F>
  requires detail::then_callable<std::decay_t<F>, T>
  auto then(F&& f) const -> Future<typename detail::then_result<std::decay_t<F>, T>::type>;

  /// Same shared state.
  friend bool operator==(const Future& a, const Future& b) noexcept { return a.state_ == b.state_; }

 private:
  using State = detail::FutureState<T>;
  using Status = detail::FutureStateBase::Status;
  template <class>
  friend class Future;
  friend class detail::PromiseBase<T>;
  template <class>
  friend class AsCompleted;
  template <class>
  friend struct detail::WaitImpl;

  explicit Future(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}

  const State& state() const { return state_ref(); }
  State& state_ref() const {
    if (!state_) throw UsageError("Future: empty handle (default-constructed or moved-from)");
    return *state_;
  }
  static typename detail::get_result<T>::type result(const State& s) {
    if (s.status() != Status::finished) std::rethrow_exception(s.error());
    if constexpr (!std::is_void_v<T>) return s.value();
  }

  std::shared_ptr<State> state_;
};

namespace detail {

/// The producer's side of one Future<T> (the engine's; tests use it directly). Move-only.
/// Completion calls are thread-safe and exactly-once: the first of set_value, set_exception,
/// set_cancelled wins and returns true; later ones return false and change nothing.
/// Destroying a Promise whose future is not done fails the future with BrokenPool.
template <class T>
class PromiseBase {
 public:
  PromiseBase() : state_(std::make_shared<FutureState<T>>()) {}
  PromiseBase(PromiseBase&&) noexcept = default;
  PromiseBase& operator=(PromiseBase&& other) noexcept {
    if (this != &other) {
      abandon();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~PromiseBase() { abandon(); }

  /// A handle to the future; may be called any number of times.
  Future<T> future() const { return Future<T>(state()); }
  /// Marks the task running. False if the future is already done (cancelled): skip the task.
  bool set_running() const { return state()->set_running(); }
  /// Fails the future with `error` (must not be null: UsageError).
  bool set_exception(std::exception_ptr error) const {
    return state()->set_exception(std::move(error));
  }
  /// Cancels the future unless done (pool terminate, shutdown(cancel_futures)). `error` is
  /// the Cancelled exception to store; null makes a fresh one.
  bool set_cancelled(std::exception_ptr error = nullptr) const {
    return state()->set_cancelled(std::move(error));
  }
  /// What cancel(force) calls on a running future, outside any lock, possibly from several
  /// threads at once: stop the task and return true, or return false if it cannot. It may
  /// complete the future itself. Released when the future completes.
  void set_force_cancel_hook(std::function<bool()> hook) const {
    state()->set_force_cancel_hook(std::move(hook));
  }

 protected:
  const std::shared_ptr<FutureState<T>>& state() const {
    if (!state_) throw UsageError("Promise: moved-from");
    return state_;
  }

 private:
  void abandon() noexcept {
    if (!state_ || state_->done()) return;
    try {
      state_->set_exception(std::make_exception_ptr(
          BrokenPool("Future: its producer was destroyed before completing it")));
    } catch (...) {
      // Out of memory building the exception: cancel instead, which needs no allocation
      // beyond what set_cancelled's fallback needs; waiters must not hang.
      try {
        state_->set_cancelled();
      } catch (...) {
      }
    }
  }

  std::shared_ptr<FutureState<T>> state_;
};

template <class T>
class Promise : public PromiseBase<T> {
 public:
  /// Completes the future with `value`. Returns false (value discarded) if already done.
  bool set_value(T value) const { return this->state()->set_value(std::move(value)); }
};

template <>
class Promise<void> : public PromiseBase<void> {
 public:
  bool set_value() const { return state()->set_value(Unit{}); }
};

}  // namespace detail

template <class T>
template <class F>
requires detail::then_callable<std::decay_t<F>, T>
auto Future<T>::then(F&& f) const
    -> Future<typename detail::then_result<std::decay_t<F>, T>::type> {
  using U = typename detail::then_result<std::decay_t<F>, T>::type;
  auto& s = state_ref();
  detail::Promise<U> next;
  Future<U> result_future = next.future();
  s.add_callback(detail::Callback([fn = std::decay_t<F>(std::forward<F>(f)), next = std::move(next),
                                   weak = std::weak_ptr(state_)]() mutable {
    const auto source = weak.lock();
    if (!source) return;  // cannot happen (the completer holds a reference); next -> BrokenPool
    const auto status = source->status();
    if (status == Status::cancelled) {
      next.set_cancelled(source->error());
      return;
    }
    if (status != Status::finished) {
      next.set_exception(source->error());
      return;
    }
    if (!next.set_running()) return;  // the continuation's future was cancelled
    try {
      if constexpr (std::is_void_v<U>) {
        if constexpr (std::is_void_v<T>) {
          fn();
        } else {
          fn(source->value());
        }
        next.set_value();
      } else if constexpr (std::is_void_v<T>) {
        next.set_value(fn());
      } else {
        next.set_value(fn(source->value()));
      }
    } catch (...) {
      next.set_exception(std::current_exception());
    }
  }));
  return result_future;
}

/// The futures of an as_completed() call, yielded as each completes (an input range,
/// iterated once). Iterating (begin(), ++) blocks until the next future is done; past the
/// deadline of the timeout overload it throws TimeoutError (and again on each later attempt).
/// Futures already done when as_completed() was called come first, in input order. Each
/// input element is yielded exactly once (a future listed twice is yielded twice).
template <class T>
class AsCompleted {
  struct Impl;

 public:
  class iterator {
   public:
    using value_type = Future<T>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    const Future<T>& operator*() const { return *impl_->current; }
    const Future<T>* operator->() const { return &*impl_->current; }
    iterator& operator++() {
      impl_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return it.impl_ == nullptr || !it.impl_->current;
    }

   private:
    friend class AsCompleted;
    explicit iterator(Impl* impl) noexcept : impl_(impl) {}
    Impl* impl_ = nullptr;
  };

  AsCompleted(std::vector<Future<T>> futures,
              std::optional<std::chrono::steady_clock::time_point> deadline)
      : impl_(std::make_unique<Impl>(std::move(futures), deadline)) {}

  /// An iterator at the current future, blocking for the next one when there is none yet
  /// (at the start, or after a TimeoutError); may throw TimeoutError.
  iterator begin() {
    if (!impl_->current) impl_->advance();
    return iterator(impl_.get());
  }
  std::default_sentinel_t end() const noexcept { return {}; }
  /// How many futures this range yields in total.
  std::size_t size() const noexcept { return impl_->futures.size(); }

 private:
  struct Impl {
    Impl(std::vector<Future<T>> fs, std::optional<std::chrono::steady_clock::time_point> dl)
        : futures(std::move(fs)),
          deadline(dl),
          notifier(std::make_shared<detail::CompletionNotifier>(futures.size())) {
      for (std::size_t i = 0; i < futures.size(); ++i) {
        if (!futures[i].state_ref().add_waiter(notifier, i)) notifier->notify(i);
      }
    }
    ~Impl() {
      for (const auto& f : futures) f.state_->remove_waiter(notifier.get());
    }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    void advance() {
      current.reset();
      if (next == futures.size()) return;
      std::unique_lock lock(notifier->mutex);
      const auto ready = [&] { return notifier->ready.size() > next; };
      if (!deadline) {
        notifier->cv.wait(lock, ready);
      } else if (!notifier->cv.wait_until(lock, *deadline, ready)) {
        throw TimeoutError("as_completed: " + std::to_string(futures.size() - next) + " of " +
                           std::to_string(futures.size()) +
                           " futures unfinished when the timeout expired");
      }
      current = futures[notifier->ready[next++]];
    }

    std::vector<Future<T>> futures;
    std::optional<std::chrono::steady_clock::time_point> deadline;
    std::shared_ptr<detail::CompletionNotifier> notifier;
    std::optional<Future<T>> current;
    std::size_t next = 0;  // how many have been yielded
  };

  std::unique_ptr<Impl> impl_;
};

/// What mproc::wait() returns: both in input order (Python's DoneAndNotDoneFutures).
template <class T>
struct WaitResult {
  std::vector<Future<T>> done;
  std::vector<Future<T>> not_done;
};

namespace detail {

template <class R>
concept future_range =
    std::ranges::input_range<R> && is_future_v<std::remove_cvref_t<std::ranges::range_value_t<R>>>;

template <class R>
using future_range_value_t =
    typename std::remove_cvref_t<std::ranges::range_value_t<R>>::value_type;

template <class R>
auto collect_futures(R&& futures) {
  std::vector<Future<future_range_value_t<R>>> out;
  for (auto&& f : futures) {
    if (!f.valid()) throw UsageError("as_completed/wait: an element is an empty Future");
    out.push_back(f);
  }
  return out;
}

/// mproc::wait's body (it needs Future's internals).
template <class U>
struct WaitImpl {
  static WaitResult<U> run(std::vector<Future<U>> futures, ReturnWhen when,
                           std::optional<std::chrono::steady_clock::time_point> deadline) {
    const std::size_t n = futures.size();
    const auto notifier = std::make_shared<detail::CompletionNotifier>(n);
    struct Unregister {
      const std::vector<Future<U>>& fs;
      const detail::CompletionNotifier* n;
      ~Unregister() {
        for (const auto& f : fs) f.state_->remove_waiter(n);
      }
    } unregister{futures, notifier.get()};
    for (std::size_t i = 0; i < n; ++i) {
      if (!futures[i].state_->add_waiter(notifier, i)) notifier->notify(i);
    }
    {
      std::size_t seen = 0;
      bool failed = false;
      std::unique_lock lock(notifier->mutex);
      const auto satisfied = [&] {
        for (; seen < notifier->ready.size(); ++seen) {
          const auto status = futures[notifier->ready[seen]].state_->status();
          failed |= status == detail::FutureStateBase::Status::failed;
        }
        switch (when) {
          case ReturnWhen::first_completed: return seen > 0 || n == 0;
          case ReturnWhen::first_exception: return failed || seen == n;
          case ReturnWhen::all_completed: return seen == n;
        }
        return true;
      };
      if (!deadline) {
        notifier->cv.wait(lock, satisfied);
      } else {
        notifier->cv.wait_until(lock, *deadline, satisfied);
      }
    }
    WaitResult<U> result;
    // Copies, not moves: `unregister` still reads `futures`.
    for (const auto& f : futures) (f.done() ? result.done : result.not_done).push_back(f);
    return result;
  }
};

}  // namespace detail

/// The futures in `futures` (any input range of Future<T>, copied at the call) as each
/// completes. Throws UsageError for an empty Future element.
template <class R>
requires detail::future_range<R> AsCompleted<detail::future_range_value_t<R>> as_completed(
    R&& futures) {
  return {detail::collect_futures(std::forward<R>(futures)), std::nullopt};
}

/// As above; iterating past `timeout` from now throws TimeoutError.
template <class R, class Rep, class Period>
requires detail::future_range<R> AsCompleted<detail::future_range_value_t<R>> as_completed(
    R&& futures, std::chrono::duration<Rep, Period> timeout) {
  const auto deadline = detail::deadline_after(timeout);
  return {detail::collect_futures(std::forward<R>(futures)), deadline};
}

template <class T>
AsCompleted<T> as_completed(std::initializer_list<Future<T>> futures) {
  return as_completed(std::vector<Future<T>>(futures));
}

/// Blocks until `when` is satisfied (Python's concurrent.futures.wait; default ALL_COMPLETED)
/// and returns {done, not_done} at that moment, both in input order. Throws UsageError for an
/// empty Future element; never throws the futures' exceptions.
template <class R>
requires detail::future_range<R> WaitResult<detail::future_range_value_t<R>> wait(
    R&& futures, ReturnWhen when = ReturnWhen::all_completed) {
  using U = detail::future_range_value_t<R>;
  return detail::WaitImpl<U>::run(detail::collect_futures(std::forward<R>(futures)), when,
                                  std::nullopt);
}

/// As above, returning when `timeout` passes even if `when` is not satisfied; not_done then
/// holds what is still unfinished. Never throws TimeoutError.
template <class R, class Rep, class Period>
requires detail::future_range<R> WaitResult<detail::future_range_value_t<R>> wait(
    R&& futures, ReturnWhen when, std::chrono::duration<Rep, Period> timeout) {
  using U = detail::future_range_value_t<R>;
  const auto deadline = detail::deadline_after(timeout);
  return detail::WaitImpl<U>::run(detail::collect_futures(std::forward<R>(futures)), when,
                                  deadline);
}

}  // namespace mproc
