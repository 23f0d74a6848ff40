// errors.hpp — everything mproc throws.
//
// Every exception derives from mproc::Error (itself a std::runtime_error), named for what
// happened so a caller can handle each case differently. Facts travel as accessors, not only
// inside what():
//
//     try { f.get(); }
//     catch (const mproc::WorkerCrashed& e) { log(e.pid(), e.signal()); }  // worker died
//     catch (const mproc::RemoteError& e)   { log(e.type_name(), e.what()); } // task threw
//
// Python counterparts: RemoteError ~ the re-raised task exception, WorkerCrashed ~
// BrokenProcessPool (but it fails only the dead worker's task), TimeoutError ~
// concurrent.futures.TimeoutError, UsageError ~ ValueError/RuntimeError on misuse.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <typeinfo>
#include <vector>

namespace mproc {

/// Base of every exception mproc throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A task (or Process target) threw an exception whose type is not registered for rethrow.
/// Carries the remote exception's type name and message, the pid it ran in, its task index
/// (or -1 outside a pool) and a symbolised backtrace when one was captured.
class RemoteError : public Error {
 public:
  RemoteError(std::string type_name, std::string message, std::int64_t pid,
              std::int64_t task_index = -1, std::string backtrace = {});
  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& message() const noexcept { return message_; }
  std::int64_t pid() const noexcept { return pid_; }
  std::int64_t task_index() const noexcept { return task_index_; }
  const std::string& backtrace() const noexcept { return backtrace_; }

 private:
  std::string type_name_;
  std::string message_;
  std::int64_t pid_;
  std::int64_t task_index_;
  std::string backtrace_;
};

/// The worker process running this task died before returning a result.
/// Exactly one of signal() (> 0) and exit_code() is set.
class WorkerCrashed : public Error {
 public:
  WorkerCrashed(std::int64_t pid, int signal, std::optional<int> exit_code,
                std::int64_t task_index = -1);
  std::int64_t pid() const noexcept { return pid_; }
  /// The signal that killed the worker, 0 when it exited.
  int signal() const noexcept { return signal_; }
  /// The worker's exit status when it exited without a signal.
  std::optional<int> exit_code() const noexcept { return exit_code_; }
  std::int64_t task_index() const noexcept { return task_index_; }

 private:
  std::int64_t pid_;
  int signal_;
  std::optional<int> exit_code_;
  std::int64_t task_index_;
};

/// The task ran longer than its task_timeout; its worker was killed and replaced.
class TaskTimeout : public Error {
 public:
  TaskTimeout(std::int64_t pid, std::chrono::nanoseconds timeout, std::int64_t task_index = -1);
  std::int64_t pid() const noexcept { return pid_; }
  std::chrono::nanoseconds timeout() const noexcept { return timeout_; }
  std::int64_t task_index() const noexcept { return task_index_; }

 private:
  std::int64_t pid_;
  std::chrono::nanoseconds timeout_;
  std::int64_t task_index_;
};

/// The future was cancelled (or its pool terminated) before it produced a result.
class Cancelled : public Error {
 public:
  using Error::Error;
};

/// Work was submitted to a pool or executor that was closed or shut down.
class PoolClosed : public Error {
 public:
  using Error::Error;
};

/// The pool cannot recover (for example its dispatcher died); only where recovery is impossible.
class BrokenPool : public Error {
 public:
  using Error::Error;
};

/// Bytes that arrived from another process are not a valid message: truncated, corrupted,
/// over the size limit, of an unknown wire version, or naming code this process does not have.
class ProtocolError : public Error {
 public:
  using Error::Error;
};

/// A well-formed message could not be turned into the requested value (a type mismatch
/// between sender and receiver) or a value could not be encoded.
class SerializationError : public Error {
 public:
  using Error::Error;
};

/// The queue is closed and drained.
class QueueClosed : public Error {
 public:
  using Error::Error;
};

/// The other end of a connection is closed (or its process died).
class ConnectionClosed : public Error {
 public:
  using Error::Error;
};

/// Connection::recv_bytes_into: the message is larger than the buffer (Python's
/// multiprocessing.BufferTooShort). The whole message is kept in the exception: nothing is lost.
class BufferTooShort : public Error {
 public:
  BufferTooShort(std::vector<std::byte> message, std::size_t buffer_size);
  const std::vector<std::byte>& message() const noexcept { return message_; }

 private:
  std::vector<std::byte> message_;
};

/// The peer failed (or refused) the authkey challenge.
class AuthenticationError : public Error {
 public:
  using Error::Error;
};

/// A deadline passed while *waiting* for something; nothing else was touched.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// The barrier was aborted, reset under waiters, or a wait timed out.
class BrokenBarrier : public Error {
 public:
  using Error::Error;
};

/// A call that is not allowed in this state (Python's ValueError / RuntimeError on misuse).
class UsageError : public Error {
 public:
  using Error::Error;
};

/// A system call failed. what() reads `call: strerror`, e.g.
/// `shm_open("/mproc-812-3"): File exists`; code() is the errno as a std::error_code.
class SystemError : public Error {
 public:
  SystemError(std::error_code code, std::string call);
  const std::error_code& code() const noexcept { return code_; }
  /// The failing call as written in what(), e.g. `pipe2()`.
  const std::string& call() const noexcept { return call_; }

 private:
  std::error_code code_;
  std::string call_;
};

// ---- exceptions that cross a process boundary -----------------------------------------------

namespace detail {
/// Builds the exception a registered type stands for, from the remote what().
using ExceptionFactory = std::exception_ptr (*)(const std::string& what);
/// Registers `factory` under the demangled name of `type` (see register_exception).
/// UsageError if another type with the same name is registered already.
void register_exception_factory(const std::type_info& type, ExceptionFactory factory);
}  // namespace detail

/// An E thrown by a task comes back to the caller as an E (what() preserved) instead of a
/// RemoteError. E derives publicly from std::exception and is constructible from std::string
/// (or const char*), or default-constructible (what() then is E's own); E(what) must
/// reproduce what() for the message to survive unchanged. Types travel by their demangled
/// name, identical in every process running the same binary, so registration is needed only
/// in the process that decodes results (the parent), before they arrive; the worker needs
/// nothing. Idempotent and thread-safe. Pre-registered: the std::logic_error and
/// std::runtime_error families, std::bad_alloc, bad_cast, bad_typeid, bad_function_call,
/// bad_optional_access, bad_variant_access, bad_array_new_length, and mproc's own
/// string-constructible errors (Error, Cancelled, ProtocolError, UsageError, ...).
/// A registered exception loses the remote backtrace and pid; a RemoteError keeps them.
///
///     struct ParseError : std::runtime_error { using std::runtime_error::runtime_error; };
///     mproc::register_exception<ParseError>();
///     try { pool.apply(parse, text); } catch (const ParseError& e) { ... }
template <class E>
void register_exception() {
  constexpr bool is_exception = std::is_class_v<E> && std::is_convertible_v<E*, std::exception*>;
  constexpr bool rebuildable = std::is_constructible_v<E, const std::string&> ||
                               std::is_constructible_v<E, const char*> ||
                               std::is_default_constructible_v<E>;
  constexpr bool throwable = std::is_copy_constructible_v<E> || std::is_move_constructible_v<E>;
  static_assert(std::is_same_v<E, std::remove_cvref_t<E>>,
                "mproc::register_exception<E>: E must be a plain class type (no const, no "
                "reference)");
  static_assert(is_exception,
                "mproc::register_exception<E>: E must derive publicly from std::exception "
                "(other thrown types come back as mproc::RemoteError)");
  static_assert(!std::is_abstract_v<E>, "mproc::register_exception<E>: E must not be abstract");
  static_assert(rebuildable,
                "mproc::register_exception<E>: E needs a constructor taking the message "
                "(E(const std::string&) or E(const char*)) or a default constructor, so that "
                "the receiving process can rebuild it");
  static_assert(throwable,
                "mproc::register_exception<E>: E must be copy- or move-constructible to be "
                "thrown");
  // Registering only when every check passed keeps the compiler's output to the one message.
  if constexpr (is_exception && !std::is_abstract_v<E> && rebuildable && throwable) {
    detail::register_exception_factory(typeid(E), [](const std::string& what) {
      if constexpr (std::is_constructible_v<E, const std::string&>) {
        return std::make_exception_ptr(E(what));
      } else if constexpr (std::is_constructible_v<E, const char*>) {
        return std::make_exception_ptr(E(what.c_str()));
      } else {
        static_cast<void>(what);
        return std::make_exception_ptr(E());
      }
    });
  }
}

}  // namespace mproc
