// initializer.hpp — Initializer: a call every pool/executor worker runs once when it starts
// (Python's Pool(initializer=f, initargs=(...)) and ProcessPoolExecutor(initializer=...)).
//
//     void connect_db(std::string url) { ... }
//     mproc::Pool pool({.processes = 4, .initializer = {connect_db, std::string("db://x")}});
//
// The call is encoded when the Initializer is made, so it must be transferable like any task
// (a function pointer, captureless lambda or encodable function object; encodable arguments).
// If it throws in a worker, the pool is broken: every unfinished task and every later submit
// fails with BrokenPool carrying the initializer's error (Python's Pool would instead restart
// failing workers forever).
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include "mproc/detail/callable.hpp"
#include "mproc/detail/engine.hpp"

namespace mproc {

class Initializer {
 public:
  /// No initializer.
  Initializer() = default;

  /// `fn(args...)`, run once in each worker before its first task.
  template <class F, class... Args>
  requires(!std::is_same_v<std::remove_cvref_t<F>, Initializer>)
      Initializer(F&& fn, Args&&... args) {  // NOLINT: implicit, for designated initialisers
    Encoder out = detail::EncodedCall::start();
    detail::encode_call_discarding_result(out, fn, args...);
    call_ = std::make_shared<detail::EncodedCall>(detail::EncodedCall::from(std::move(out)));
  }

  explicit operator bool() const noexcept { return call_ != nullptr; }

  /// The encoded call (internal).
  const std::shared_ptr<detail::EncodedCall>& encoded() const noexcept { return call_; }

 private:
  std::shared_ptr<detail::EncodedCall> call_;
};

}  // namespace mproc
