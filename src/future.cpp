// The non-template half of Future<T>'s shared state (detail/future_state.hpp).
#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include "mproc/detail/future_state.hpp"
#include "mproc/errors.hpp"
#include "mproc/log.hpp"

namespace mproc::detail {

using Status = FutureStateBase::Status;

Status FutureStateBase::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

bool FutureStateBase::done() const {
  return is_done(status());
}

void FutureStateBase::wait() const {
  Lock lock(mutex_);
  cv_.wait(lock, [&] { return is_done(status_); });
}

bool FutureStateBase::wait_until(std::chrono::steady_clock::time_point deadline) const {
  Lock lock(mutex_);
  return cv_.wait_until(lock, deadline, [&] { return is_done(status_); });
}

std::exception_ptr FutureStateBase::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

bool FutureStateBase::set_running() {
  std::lock_guard lock(mutex_);
  if (is_done(status_)) return false;
  status_ = Status::running;
  return true;
}

bool FutureStateBase::set_exception(std::exception_ptr error) {
  if (!error) throw UsageError("Promise::set_exception: the exception_ptr is null");
  Lock lock(mutex_);
  if (is_done(status_)) return false;
  finish(lock, Status::failed, std::move(error));
  return true;
}

bool FutureStateBase::set_cancelled(std::exception_ptr error) {
  Lock lock(mutex_);
  if (is_done(status_)) return false;
  if (!error) error = std::make_exception_ptr(Cancelled("Future: cancelled"));
  finish(lock, Status::cancelled, std::move(error));
  return true;
}

void FutureStateBase::set_force_cancel_hook(std::function<bool()> hook) {
  std::function<bool()> old;  // destroyed outside the lock: it may own engine objects
  std::lock_guard lock(mutex_);
  old = std::exchange(force_hook_, std::move(hook));
}

bool FutureStateBase::cancel() {
  Lock lock(mutex_);
  if (status_ == Status::pending) {
    finish(lock, Status::cancelled,
           std::make_exception_ptr(Cancelled("Future: cancelled before it started")));
    return true;
  }
  return status_ == Status::cancelled;
}

bool FutureStateBase::cancel_force() {
  std::function<bool()> hook;
  {
    Lock lock(mutex_);
    switch (status_) {
      case Status::pending:
        finish(lock, Status::cancelled,
               std::make_exception_ptr(Cancelled("Future: cancelled before it started")));
        return true;
      case Status::running: hook = force_hook_; break;
      default: return status_ == Status::cancelled;
    }
  }
  // The hook runs unlocked: the engine may complete this very future from inside it.
  if (!hook || !hook()) return false;
  // The hook stopped the task; unless its result won the race, this future is now cancelled.
  set_cancelled(std::make_exception_ptr(Cancelled("Future: cancelled while running (forced)")));
  return status() == Status::cancelled;
}

void FutureStateBase::add_callback(Callback callback) {
  {
    std::lock_guard lock(mutex_);
    if (!is_done(status_)) {
      callbacks_.push_back(std::move(callback));
      return;
    }
  }
  run_callback(callback);
}

bool FutureStateBase::add_waiter(const std::shared_ptr<CompletionNotifier>& notifier,
                                 std::size_t index) {
  std::lock_guard lock(mutex_);
  if (is_done(status_)) return false;
  waiters_.emplace_back(notifier, index);
  return true;
}

void FutureStateBase::remove_waiter(const CompletionNotifier* notifier) noexcept {
  std::lock_guard lock(mutex_);
  std::erase_if(waiters_, [&](const auto& w) { return w.first.get() == notifier; });
}

void FutureStateBase::run_callback(Callback& callback) noexcept {
  // As in Python: a done callback's exception is reported, never propagated into whoever
  // happened to complete the future.
  try {
    callback();
  } catch (const std::exception& e) {
    log(LogLevel::error, std::string("Future: a done callback threw: ") + e.what());
  } catch (...) {
    log(LogLevel::error, "Future: a done callback threw a non-std::exception");
  }
}

void FutureStateBase::finish(Lock& lock, Status status, std::exception_ptr error) noexcept {
  status_ = status;
  error_ = std::move(error);
  auto callbacks = std::move(callbacks_);
  auto waiters = std::move(waiters_);
  auto hook = std::move(force_hook_);  // the task is over: release what the hook holds
  callbacks_.clear();
  waiters_.clear();
  force_hook_ = nullptr;
  // Broadcast under the lock: once it is released a woken get() may drop the last handle.
  cv_.notify_all();
  lock.unlock();
  for (auto& [notifier, index] : waiters) notifier->notify(index);
  for (auto& callback : callbacks) run_callback(callback);
}

}  // namespace mproc::detail
