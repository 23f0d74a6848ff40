// callable.hpp — transferable callables: a call `f(args...)` written in one process and run in
// another process of the same program (internal).
//
// Python counterpart: pickling a task — `pickle` sends a function by qualified name and the
// arguments by value. C++ functions have no names at run time, so mproc names code by *where it
// is*: (module identity, offset from the module's load base). The module identity is the ELF
// GNU build-id, so the token is valid in every process running the same binary — fork
// children, forkserver children and fresh exec's (spawn) loaded at different, randomised
// addresses (ASLR) — and meaningless, detected, anywhere else.
//
// What is transferable (concept `transferable_call<F, Args...>`, F and Args decayed):
//  - a function pointer;
//  - an empty class (captureless lambda, empty function object) that is default-constructible
//    or trivially copyable: the receiver makes its own;
//  - a class with cereal serialization (`serialize`, or `save`/`load`) that mproc::transferable
//    accepts: the function object's state travels with the codec;
//  and every argument is mproc::transferable and not a raw pointer, F is invocable with the
//  arguments as rvalues (the worker owns decoded copies and moves them into the call, so a
//  parameter `T&` is refused: it would modify a copy nobody sees), and the result is void or
//  transferable (a Pool/Executor task sends it back). `transferable_target<F, Args...>` is the
//  same without the result rule, for callers that discard the result (Process targets).
//  Capturing lambdas are refused: a captured reference looks exactly like a value and would
//  dangle in the worker. encode_call turns each refusal into a static_assert that says what to
//  do; the concepts themselves never fire an assertion (usable in `if constexpr`).
//
// Guarantees when decoding (run_call): the bytes never supply a code address. The call's entry
// point is a *trampoline* — one instantiation of CallEntry per (F, Args...) — and the receiver
// accepts only addresses that a trampoline registered during static initialisation of this
// process. A function pointer F travels as a second (module, offset) token; the receiver checks
// that it lies in an executable segment of a loaded module and, when the module's unwind
// tables (.eh_frame) cover the address, that it is the *start* of a function; it is then called
// through the registered trampoline for F's exact signature. What is not (and cannot be)
// verified is that the function at that address has that signature: only a sender that forges
// tokens can break that, and mproc's channels connect processes of one program (Connections
// with an authkey authenticate the peer). The checks are there for corruption and version skew:
// any inconsistency is a ProtocolError, never a jump to a bad address.
//
// Wire layout of one encoded call (the header's integers are little-endian; the callable part
// and arguments are in the codec's format):
//
//     +---------+------------------------------------------+---------------+-------------+
//     | version | CodeRef of the trampoline                | callable part | arguments   |
//     | u8 = 1  | kind u8 | n u8 | id: n bytes | offset u64 |               | encode(a_i) |
//     +---------+------------------------------------------+---------------+-------------+
//     kind 1 = GNU build-id (n = its length, 1..64 bytes);
//     kind 2 = content digest (n = 16) for modules without a build-id, see callable.cpp.
//     callable part: a function pointer's target as a second CodeRef; nothing for an empty
//     class; mproc::encode(f) for a serializable function object.
//
// Example:
//
//     int add(int a, int b) { return a + b; }
//     Encoder call;  detail::encode_call(call, &add, 2, 3);   // parent
//     Decoder in(call.bytes());  Encoder out;  detail::run_call(in, &out);   // worker
//     // out holds encode(5)
//
// Registration timing: a trampoline exists in a process once the static initialisers of the
// translation unit that instantiated encode_call for its (F, Args...) have run — before main
// for the executable, during dlopen for a plugin. run_call before then (for example from a
// static constructor that runs earlier) reports the call entry as unknown (ProtocolError).
//
// Thread-safety: every function here may be called from any number of threads at once. The
// module table and the registry are behind reader/writer locks held only for a lookup.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mproc/codec.hpp"

namespace mproc::detail {

// ---- identities of code ------------------------------------------------------------------

/// Identity of a loaded ELF module (the executable or a shared library), the same in every
/// process that maps the same file.
struct ModuleId {
  enum class Kind : std::uint8_t {
    build_id = 1,        ///< the NT_GNU_BUILD_ID note
    content_digest = 2,  ///< 128-bit digest of the module's read-only executable segments
  };
  static constexpr std::size_t max_size = 64;

  Kind kind = Kind::build_id;
  std::uint8_t size = 0;  ///< bytes used in `bytes`
  std::array<std::byte, max_size> bytes{};

  std::span<const std::byte> view() const noexcept { return {bytes.data(), size}; }
  friend bool operator==(const ModuleId& a, const ModuleId& b) noexcept;
};

/// Lower-case hex of the identity's bytes, e.g. "3f5a…".
std::string to_hex(const ModuleId& id);

/// A code address as (module, offset from the module's load bias): valid across processes.
struct CodeRef {
  ModuleId module;
  std::uint64_t offset = 0;
};

/// The CodeRef of `address` in this process. Throws UsageError if no loaded module maps it
/// (JIT-generated code, for example, cannot travel).
CodeRef code_ref_of(std::uintptr_t address);

/// The address `ref` names in this process. Throws ProtocolError if its module is not loaded
/// here or the offset lies outside the module's loaded segments. No other validation: callers
/// use resolve_trampoline / resolve_function_entry for code they will call.
std::uintptr_t resolve_address(const CodeRef& ref);

/// Like code_ref_of, for a function pointer's target; also checks what the receiving side will
/// check (executable segment, start of a function when unwind tables cover it), so a pointer
/// that encodes always resolves. Throws UsageError otherwise (null included).
CodeRef function_ref_of(std::uintptr_t address);

/// The function entry `ref` names, validated as described in the header map, or ProtocolError.
std::uintptr_t resolve_function_entry(const CodeRef& ref);

void write_code_ref(Encoder& out, const CodeRef& ref);
/// Reads a CodeRef; ProtocolError on truncation or an unknown kind / bad length.
CodeRef read_code_ref(Decoder& in);

// ---- trampolines ------------------------------------------------------------------------------

/// Entry point of one kind of call: decodes the callable and its arguments, invokes, encodes
/// the result into `result` when non-null and the call returns a value.
using Trampoline = void (*)(Decoder& in, Encoder* result);

/// Adds/removes a trampoline in this process's registry (static initialisation and, for a
/// dlclose'd module, static destruction). Registrations are counted: the same address may be
/// registered by several copies of one template instantiation.
void register_trampoline(Trampoline entry);
void unregister_trampoline(Trampoline entry) noexcept;

/// The registered trampoline `ref` names, or ProtocolError.
Trampoline resolve_trampoline(const CodeRef& ref);

/// Version byte that opens every encoded call.
inline constexpr std::uint8_t call_wire_version = 1;

// ---- the concepts ---------------------------------------------------------------------------

// clang-format off  (clang-format 14 mangles concept definitions)
template <class F>
concept function_pointer = std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

/// An empty class the receiver can make on its own (captureless lambda, empty function object).
template <class F>
concept stateless_function_object = std::is_class_v<F> && std::is_empty_v<F> &&
    (std::is_default_constructible_v<F> || std::is_trivially_copyable_v<F>);

/// T has cereal serialization for the codec's archives (a `serialize` member, `save`/`load`,
/// or the non-member forms). Being mproc::transferable is not enough for a function object:
/// trivially copyable types travel as raw bytes, and a capturing lambda is trivially copyable
/// too (even one that captures a reference).
template <class T>
concept cereal_serializable =
    std::is_class_v<T> &&
        cereal::traits::detail::count_output_serializers<T, OutputArchive>::value == 1 &&
    cereal::traits::detail::count_input_serializers<T, InputArchive>::value == 1;

/// A function object that opted in to carry its state across: it has cereal serialization.
template <class F>
concept serializable_function_object = std::is_class_v<F> && !stateless_function_object<F> &&
                                       cereal_serializable<F> && mproc::transferable<F>;

template <class F>
concept transferable_callable =
    function_pointer<F> || stateless_function_object<F> || serializable_function_object<F>;

/// An argument that can travel: encoded by value, never a pointer (it would point into the
/// sender's memory).
template <class T>
concept transferable_argument = !std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
                                !std::is_null_pointer_v<T> && mproc::transferable<T>;

/// What the worker's call returns: void or a transferable value (references decay).
template <class R>
concept transferable_result = std::is_void_v<R> ||
    (transferable_argument<std::decay_t<R>>&& std::is_copy_constructible_v<std::decay_t<R>>);

/// F(args...) can run in another process of this program; the result is discarded.
template <class F, class... Args>
concept transferable_target = transferable_callable<std::decay_t<F>> &&
                              (transferable_argument<std::decay_t<Args>>&&...) &&
                              std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>...>;

/// F(args...) can run in another process of this program and its result can come back.
template <class F, class... Args>
concept transferable_call =
    transferable_target<F, Args...> && transferable_result < std::invoke_result_t < std::decay_t<F>
&, std::decay_t<Args>... >> ;
// clang-format on

// ---- implementation details of encode_call ----------------------------------------------

/// Reads the callable part written by encode_callable_part (below).
template <class F>
F decode_callable(Decoder& in) {
  if constexpr (function_pointer<F>) {
    return reinterpret_cast<F>(resolve_function_entry(read_code_ref(in)));
  } else if constexpr (stateless_function_object<F>) {
    if constexpr (std::is_default_constructible_v<F>) {
      return F{};
    } else {
      // Empty and trivially copyable: its object representation carries no information.
      return std::bit_cast<F>(std::array<unsigned char, sizeof(F)>{});
    }
  } else {
    return mproc::decode<F>(in);
  }
}

/// Replaces the descriptors attached to `out` since `since` with owned duplicates, kept open on
/// this thread until release_retained_fds(). A call's result may be a handle whose descriptor
/// closes when the value is destroyed, before the caller sends the encoded bytes.
void retain_attached_fds(Encoder& out, Encoder::Mark since);
/// Closes the duplicates retain_attached_fds made on this thread.
void release_retained_fds() noexcept;

/// One trampoline per (F, discard result?, Args...), all decayed. Instantiating token()
/// instantiates `registration`, whose initialiser (static initialisation of the program, or of
/// a dlopen'ed module) adds invoke() to the registry of this process.
template <class F, bool DiscardResult, class... Args>
struct CallEntry {
  static void invoke(Decoder& in, Encoder* result) {
    F f = decode_callable<F>(in);
    // Braced initialisation evaluates the decodes left to right: the wire order.
    std::tuple<Args...> args{mproc::decode<Args>(in)...};
    using R = std::invoke_result_t<F&, Args...>;
    if constexpr (std::is_void_v<R> || DiscardResult) {
      std::apply(f, std::move(args));
    } else {
      // Bind references too: a function returning a reference has its referee encoded.
      decltype(auto) value = std::apply(f, std::move(args));
      if (result != nullptr) {
        const std::decay_t<R>& ref = value;
        const Encoder::Mark mark = result->mark();
        mproc::encode(*result, ref);
        if (result->fds().size() > mark.fds) retain_attached_fds(*result, mark);
      }
    }
  }

  static const CodeRef& token() {
    (void)&registration;  // odr-use: instantiates the registration for every encoded kind
    static const CodeRef ref = code_ref_of(reinterpret_cast<std::uintptr_t>(&invoke));
    return ref;
  }

 private:
  struct Registration {
    Registration() { register_trampoline(&invoke); }
    ~Registration() { unregister_trampoline(&invoke); }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
  };
  static inline const Registration registration{};
};

template <class F>
void encode_callable_part(Encoder& out, const F& f) {
  if constexpr (function_pointer<F>) {
    write_code_ref(out, function_ref_of(reinterpret_cast<std::uintptr_t>(f)));
  } else if constexpr (serializable_function_object<F>) {
    mproc::encode(out, f);
  }  // stateless: nothing
}

/// A transferable callable carried as a *value* (for instance the function each item of a map
/// chunk goes through): it travels exactly as encode_call sends a callable (a code token, its
/// state, or nothing). F must satisfy transferable_callable.
template <class F>
struct CallableBox {
  F fn;
};

template <bool DiscardResult, class F, class... Args>
void write_call(Encoder& out, const F& f, const Args&... args) {
  using Entry = CallEntry<F, DiscardResult, Args...>;
  const Encoder::Mark start = out.mark();
  try {
    const std::uint8_t version = call_wire_version;
    out.write_bytes(&version, 1);
    write_code_ref(out, Entry::token());
    encode_callable_part(out, f);
    (mproc::encode(out, args), ...);
  } catch (...) {
    out.rewind(start);  // no half-written call: `out` may hold other messages
    throw;
  }
}

/// The static_asserts of encode_call, one message per cause. Each condition is true unless its
/// own cause applies, so a refusal reads as one message, not a cascade.
template <bool CheckResult, class F, class... Args>
constexpr void check_transferable() {
  static_assert(transferable_callable<F> || !std::is_class_v<F> || !cereal_serializable<F>,
                "mproc: this function object has a serialize() member, but the codec cannot "
                "decode it in the worker: it must be default-constructible and every member it "
                "serializes must be transferable (see codec.hpp).");
  static_assert(transferable_callable<F> || !std::is_class_v<F> || cereal_serializable<F>,
                "mproc: this callable captures state, which cannot travel to another process: a "
                "captured reference would dangle there (this applies to capturing lambdas and "
                "to function objects with data members). Pass the data as arguments, give the "
                "function object a serialize() member, or use StartMethod::fork or the one-shot "
                "mproc::map, which run any callable.");
  static_assert(std::is_class_v<F> || function_pointer<F>,
                "mproc: this callable cannot travel to another process: use a function "
                "pointer, a captureless lambda or a function object (member function pointers "
                "are not supported: wrap the call in a captureless lambda taking the object).");
  static_assert(((!std::is_pointer_v<Args> && !std::is_member_pointer_v<Args> &&
                  !std::is_null_pointer_v<Args>)&&...),
                "mproc: an argument is a raw pointer, which would point into this process's "
                "memory in the worker. Send the value, not a pointer (std::string for a C "
                "string, std::vector/std::span data as a std::vector, or a shared mproc::Array "
                "/ SharedMemory handle for data the worker should see in place).");
  static_assert(((std::is_pointer_v<Args> || std::is_member_pointer_v<Args> ||
                  std::is_null_pointer_v<Args> || mproc::transferable<Args>)&&...),
                "mproc: an argument type cannot be encoded: give it a serialize() member (see "
                "codec.hpp) or pass its data in a transferable type.");
  if constexpr (transferable_callable<F>) {
    static_assert(std::is_invocable_v<F&, Args...>,
                  "mproc: the callable is not invocable with these arguments as they arrive in "
                  "the worker: each argument is a decoded copy passed as an rvalue (take it by "
                  "value or const&; a T& parameter would only modify the worker's copy).");
    if constexpr (CheckResult && std::is_invocable_v<F&, Args...>) {
      static_assert(transferable_result<std::invoke_result_t<F&, Args...>>,
                    "mproc: the call's result cannot be sent back: return void or a "
                    "transferable value (not a pointer; give a class a serialize() member).");
    }
  }
}

// ---- the API ------------------------------------------------------------------------------

/// Appends the call `f(args...)`: token naming the code, the callable's state, the arguments.
/// A call that cannot travel is a compile error saying why and what to do instead.
/// Throws UsageError if a function pointer does not point at a function of a loaded module,
/// and what mproc::encode throws for an argument; on any exception `out` is left as it was.
template <class F, class... Args>
void encode_call(Encoder& out, const F& f, const Args&... args) {
  check_transferable<true, std::decay_t<F>, std::decay_t<Args>...>();
  if constexpr (transferable_call<F, Args...>) {
    write_call<false, std::decay_t<F>, std::decay_t<Args>...>(out, f, args...);
  }
}

/// Like encode_call for a call whose result nobody reads (a Process target): the result type
/// need not be transferable, and run_call never encodes it.
template <class F, class... Args>
void encode_call_discarding_result(Encoder& out, const F& f, const Args&... args) {
  check_transferable<false, std::decay_t<F>, std::decay_t<Args>...>();
  if constexpr (transferable_target<F, Args...>) {
    write_call<true, std::decay_t<F>, std::decay_t<Args>...>(out, f, args...);
  }
}

/// Decodes a call written by encode_call and runs it. When `result` is non-null and the call
/// returns a value, the value is encoded into it. Exceptions thrown by the call propagate
/// unchanged; bytes that do not name a valid call of this program raise ProtocolError (decoding
/// the arguments may also raise the codec's SerializationError). Consumes exactly the call's
/// bytes: anything the caller wrote after it remains in `in`.
void run_call(Decoder& in, Encoder* result);

}  // namespace mproc::detail

template <class F>
struct mproc::handle_codec<mproc::detail::CallableBox<F>> {
  static_assert(mproc::detail::transferable_callable<F>,
                "CallableBox<F>: F must be a transferable callable (see detail/callable.hpp)");
  static void encode(Encoder& out, const detail::CallableBox<F>& box) {
    detail::encode_callable_part(out, box.fn);
  }
  static detail::CallableBox<F> decode(Decoder& in) {
    return detail::CallableBox<F>{detail::decode_callable<F>(in)};
  }
};
