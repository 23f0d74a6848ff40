// remote_exception.hpp — an exception thrown in one process, raised again in another (internal).
//
// A task that throws in a worker fails its future in the parent with the same exception when
// its type is registered (mproc::register_exception<E>(), errors.hpp), and with a
// mproc::RemoteError carrying the type name, what(), pid, task index and backtrace otherwise.
// Python counterpart: the pickled exception plus the "remote traceback" text that
// concurrent.futures attaches as __cause__.
//
//     // worker                                   // parent
//     detail::TaskScope scope;                    auto error = detail::decode_exception(
//     try { run(task); }                                in, worker_pid, task_index);
//     catch (...) {                                future.set_exception(error);
//       detail::encode_exception(out, std::current_exception());
//     }
//
// Guarantees
//  - encode_exception accepts any exception_ptr: std::exception subclasses, `throw 42`, a what()
//    that itself throws, multi-megabyte messages (message and backtrace are capped at 64 KiB
//    each). The only exception it lets out is std::bad_alloc from growing the Encoder, and
//    then `out` is left as it was.
//  - decode_exception never trusts its input: truncated or corrupted bytes raise ProtocolError,
//    and it allocates no more than the bytes present.
//  - Backtraces: while a TaskScope lives on a thread, every exception thrown on that thread
//    records the return addresses of its throw site (mproc interposes __cxa_throw; a program
//    that links libstdc++ statically or defines its own __cxa_throw keeps that one and gets no
//    backtraces). encode_exception symbolises them when it encodes that same exception on that
//    same thread, one line per frame, "#0  parse(std::string const&)+0x2c in app+0x41f2c":
//    function names come from the module's ELF symbol table (static functions included; a
//    stripped binary shows only exported names), module+offset suits addr2line. Otherwise
//    the backtrace is empty.
//
// Wire format (inside a message; both ends run the same binary), lengths little-endian u32,
// each text at most kMaxExceptionText bytes:
//
//     +-----+-----+----------+-----------+----------+---------+----------+-------------+
//     | 'X' | 1   | name len | type name | msg len  | what()  | bt len   | backtrace   |
//     | tag | ver | u32      | bytes     | u32      | bytes   | u32      | bytes       |
//     +-----+-----+----------+-----------+----------+---------+----------+-------------+
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <typeinfo>

namespace mproc {
class Encoder;
class Decoder;
}  // namespace mproc

namespace mproc::detail {

/// Largest type name, message or backtrace that travels (longer ones are cut, marked "...").
inline constexpr std::size_t kMaxExceptionText = 64 * 1024;

/// Writes the exception a task threw in this process: the demangled name of its dynamic type
/// (typeid of the caught std::exception; abi::__cxa_current_exception_type for other throws
/// such as `throw 42`), what() (empty for non-std exceptions), and the backtrace captured at
/// the throw when a TaskScope was active on this thread (else empty). UsageError if `error`
/// is null.
void encode_exception(Encoder& out, const std::exception_ptr& error);

/// Reads what encode_exception wrote. A registered type comes back as itself; every other as
/// RemoteError(type_name, message, pid, task_index, backtrace). ProtocolError on malformed
/// or truncated input.
std::exception_ptr decode_exception(Decoder& in, std::int64_t pid, std::int64_t task_index);

/// The demangled name of `type` as register_exception and encode_exception spell it, e.g.
/// "std::invalid_argument", "int", "(anonymous namespace)::MyError".
std::string exception_type_name(const std::type_info& type);

/// While one lives on a thread, exceptions thrown on that thread record their backtrace for
/// encode_exception. Nestable; costs a thread-local increment and decrement when nothing is thrown.
/// Worker loops create one per task; an outermost TaskScope forgets the backtraces of
/// earlier tasks when it starts.
class TaskScope {
 public:
  TaskScope() noexcept;
  ~TaskScope();
  TaskScope(const TaskScope&) = delete;
  TaskScope& operator=(const TaskScope&) = delete;
};

}  // namespace mproc::detail
