// future_task.hpp — one submitted call as an engine Task completing a Future<R>, and the
// pool/executor initializer (internal; the public name mproc::Initializer is in pool.hpp).
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "mproc/detail/callable.hpp"
#include "mproc/detail/engine.hpp"
#include "mproc/future.hpp"

namespace mproc::detail {

/// The result type of a task `f(args...)` as the caller sees it (references decay).
template <class F, class... Args>
using task_result_t = std::decay_t<std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>...>>;

template <class R>
class FutureTask final : public Task {
 public:
  explicit FutureTask(std::int64_t index) : index_(index) {}

  Future<R> future() const { return promise_.future(); }
  const Promise<R>& promise() const noexcept { return promise_; }

  bool start() override { return promise_.set_running(); }

  void succeed(Decoder& in, std::int64_t, std::chrono::nanoseconds) override {
    try {
      if constexpr (std::is_void_v<R>) {
        in.expect_end();
        promise_.set_value();
      } else {
        R value = mproc::decode<R>(in);
        in.expect_end();
        promise_.set_value(std::move(value));
      }
    } catch (...) {
      // The worker's bytes do not decode as R: this future fails, the pool goes on.
      promise_.set_exception(std::current_exception());
    }
  }

  void fail(const std::exception_ptr& error) noexcept override {
    try {
      if (dynamic_cast_cancelled(error)) {
        promise_.set_cancelled(error);
      } else {
        promise_.set_exception(error);
      }
    } catch (...) {
    }
  }

  std::int64_t index_of(std::size_t) const noexcept override { return index_; }
  bool settled() const noexcept override {
    try {
      return promise_.future().done();
    } catch (...) {
      return false;
    }
  }

 private:
  static bool dynamic_cast_cancelled(const std::exception_ptr& error) {
    try {
      std::rethrow_exception(error);
    } catch (const Cancelled&) {
      return true;
    } catch (...) {
      return false;
    }
  }

  Promise<R> promise_;
  std::int64_t index_;
};

/// Encodes `f(args...)` as a task of `engine` and submits it; the future completes with the
/// result. The call must satisfy transferable_call (encode_call explains a refusal).
/// The task's index in errors (RemoteError::task_index) is its engine id: the pool's
/// submission sequence number, from 1.
template <class F, class... Args>
auto submit_call(Engine& engine, F&& f, Args&&... args) -> Future<task_result_t<F, Args...>> {
  using R = task_result_t<F, Args...>;
  Encoder out = EncodedCall::start();
  encode_call(out, f, args...);
  const std::uint64_t id = engine.reserve_id();
  auto task = std::make_unique<FutureTask<R>>(static_cast<std::int64_t>(id));
  task->call = EncodedCall::from(std::move(out));
  task->id = id;
  task->promise().set_force_cancel_hook(engine.force_cancel_hook(task->id));
  Future<R> future = task->future();
  engine.submit(std::move(task));
  return future;
}

}  // namespace mproc::detail
