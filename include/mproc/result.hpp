// result.hpp — Result<T>: one input's outcome of a map, the value or the error that replaced it.
//
//     std::vector<mproc::Result<int>> all = pool.map_results(parse, lines);
//     for (const auto& r : all) {
//       if (r.has_value()) use(*r);
//       else log_failure(r.error());            // std::exception_ptr: rethrow to inspect
//     }
//
// Python has no counterpart: Pool.map raises the first error and loses every other result.
// map_results keeps them all: per input, the value or the exception (a RemoteError,
// WorkerCrashed, TaskTimeout, a registered exception type, ...).
//
// A Result is a plain value type (copyable when T is); it is not transferable to other
// processes. Result<void> holds no value.
#pragma once

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "mproc/errors.hpp"

namespace mproc {

template <class T>
class Result {
  static_assert(!std::is_reference_v<T> && !std::is_array_v<T>,
                "Result<T>: T must be an object type or void");

 public:
  /// A value.
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit, like std::optional
  /// An error (must not be null: UsageError).
  static Result failure(std::exception_ptr error) { return Result(std::move(error)); }

  bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }

  /// The value; rethrows the error if there is none.
  const T& value() const& {
    if (!value_) std::rethrow_exception(error_);
    return *value_;
  }
  T& value() & {
    if (!value_) std::rethrow_exception(error_);
    return *value_;
  }
  T&& value() && {
    if (!value_) std::rethrow_exception(error_);
    return std::move(*value_);
  }
  /// The value; UsageError if there is none (use value() to rethrow the error instead).
  const T& operator*() const& { return checked(); }
  T& operator*() & { return const_cast<T&>(checked()); }
  const T* operator->() const { return &checked(); }
  T* operator->() { return const_cast<T*>(&checked()); }

  /// The error; nullptr when there is a value.
  std::exception_ptr error() const noexcept { return error_; }

 private:
  explicit Result(std::exception_ptr error) : error_(std::move(error)) {
    if (!error_) throw UsageError("Result::failure: the error must not be null");
  }
  const T& checked() const {
    if (!value_) throw UsageError("Result: no value (it holds an error; value() rethrows it)");
    return *value_;
  }

  std::optional<T> value_;
  std::exception_ptr error_;
};

template <>
class Result<void> {
 public:
  Result() = default;
  static Result failure(std::exception_ptr error) {
    if (!error) throw UsageError("Result::failure: the error must not be null");
    Result r;
    r.error_ = std::move(error);
    return r;
  }
  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  /// Rethrows the error if there is one.
  void value() const {
    if (error_) std::rethrow_exception(error_);
  }
  std::exception_ptr error() const noexcept { return error_; }

 private:
  std::exception_ptr error_;
};

}  // namespace mproc
