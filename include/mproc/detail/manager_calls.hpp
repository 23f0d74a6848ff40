// manager_calls.hpp — code a Manager runs in its server: Dict::update functions, user-object
// factories and methods (internal).
//
// Each is a trampoline, registered like pool tasks (detail/callable.hpp) so that only a code
// token travels, and also registered as a *manager* entry: the server runs nothing else (a
// peer cannot make it run a pool task's or Process target's trampoline). The server hands a
// trampoline what it needs — the stored value, the object — through a ServerCall on its
// thread, since the trampoline signature carries only the request bytes.
//
// Wire layout of a manager call: version:u8, CodeRef of the entry, the callable part
// (detail::encode_callable_part), the arguments (mproc::encode each).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mproc/codec.hpp"
#include "mproc/detail/callable.hpp"
#include "mproc/detail/type_name.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::manager {

/// What the server provides to the entry it runs, on the running thread.
struct ServerCall {
  /// dict update: the encoded current value, or null when the key is absent.
  const std::string* current = nullptr;
  /// object call: the object and its type's fingerprint.
  void* object = nullptr;
  std::uint64_t object_type = 0;
  /// object creation: the entry puts the new object here.
  std::shared_ptr<void> created;
  std::uint64_t created_type = 0;
  /// Whether the entry may call a function pointer named by the request. A pointer's target
  /// is an address the client chose: any function of the server with that signature. Allowed
  /// only for peers that the kernel vouches run as the server's own user (Unix sockets,
  /// SO_PEERCRED), who could debug the server anyway; refused over TCP.
  bool function_pointers = false;
};

/// The ServerCall of this thread; UsageError outside a manager server.
ServerCall& current_server_call();

/// Makes `call` this thread's ServerCall while it lives (the server, around each entry).
class ScopedServerCall {
 public:
  explicit ScopedServerCall(ServerCall& call) noexcept;
  ~ScopedServerCall();
  ScopedServerCall(const ScopedServerCall&) = delete;
  ScopedServerCall& operator=(const ScopedServerCall&) = delete;

 private:
  ServerCall* previous_;
};

/// Refuses a function-pointer callable unless this call allows one (see ServerCall).
template <class F>
void check_callable_allowed() {
  if constexpr (std::is_pointer_v<F> || std::is_member_pointer_v<F>) {
    if (!current_server_call().function_pointers) {
      throw ProtocolError(
          "mproc::Manager: this server is reached over TCP and runs only lambdas and function "
          "objects, not function pointers (a pointer names an address the server would have "
          "to trust)");
    }
  }
}

/// Whether `address` (a manager address) is reached over TCP, where only lambdas and
/// function objects run in the server (see ServerCall::function_pointers).
inline bool is_tcp_address(std::string_view address) noexcept {
  return !address.starts_with("@") && !address.starts_with("unix:");
}

/// The client side of the same rule, before anything is sent: a UsageError that says what
/// to write instead.
template <class F>
void check_callable_for(std::string_view address, const char* where) {
  if constexpr (std::is_pointer_v<F> || std::is_member_pointer_v<F>) {
    if (is_tcp_address(address)) {
      throw UsageError(std::string(where) +
                       ": a manager reached over TCP runs lambdas and function objects, not "
                       "function pointers (the server cannot trust an address a client "
                       "sends): wrap the function in a captureless lambda, e.g. "
                       "[](auto v) { return fn(v); }");
    }
  }
}

void register_manager_entry(Trampoline entry);
void unregister_manager_entry(Trampoline entry) noexcept;
/// Runs the manager call in `in` (version, token, callable, arguments), writing its result to
/// `result`. ProtocolError if the token names no manager entry of this program.
void run_manager_call(Decoder& in, Encoder& result);

/// Registration shared by the entries below: one per instantiation, made during static
/// initialisation of the program (as CallEntry's).
template <Trampoline Invoke>
struct ManagerEntryToken {
  static const CodeRef& token() {
    (void)&registration;
    static const CodeRef ref = code_ref_of(reinterpret_cast<std::uintptr_t>(Invoke));
    return ref;
  }

 private:
  struct Registration {
    Registration() {
      register_trampoline(Invoke);
      register_manager_entry(Invoke);
    }
    ~Registration() {
      unregister_manager_entry(Invoke);
      unregister_trampoline(Invoke);
    }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
  };
  static inline const Registration registration{};
};

/// The callable part of an entry whose code is fixed by its type (factories, methods).
struct NoCallable {};

template <class Entry, class F, class... Args>
void write_manager_call(Encoder& out, const F& f, const Args&... args) {
  const std::uint8_t version = call_wire_version;
  out.write_bytes(&version, 1);
  write_code_ref(out, ManagerEntryToken<&Entry::invoke>::token());
  encode_callable_part(out, f);
  (mproc::encode(out, args), ...);
}

/// The object of an object call, checked to be a T.
template <class T>
T& current_object() {
  ServerCall& call = current_server_call();
  if (call.object == nullptr || call.object_type != type_fingerprint<T>()) {
    throw SerializationError("mproc::Manager: the object is not a " + std::string(type_name<T>()) +
                             " (proxy and server disagree)");
  }
  return *static_cast<T*>(call.object);
}

/// Dict<K, V>::update: new value = f(current value or nullopt).
template <class F, class V>
struct DictUpdateEntry {
  static void invoke(Decoder& in, Encoder* result) {
    check_callable_allowed<F>();
    F f = decode_callable<F>(in);
    in.expect_end();
    const ServerCall& call = current_server_call();
    std::optional<V> old;
    if (call.current != nullptr) {
      Decoder stored(std::as_bytes(std::span(call.current->data(), call.current->size())));
      old.emplace(mproc::decode<V>(stored));
      stored.expect_end();
    }
    const V updated = std::invoke(f, std::move(old));
    mproc::encode(*result, updated);
  }
};

/// Manager::make<T>(args...): constructs T in the server.
template <class T, class... Args>
struct ObjectFactoryEntry {
  static void invoke(Decoder& in, Encoder*) {
    // Braced initialisation decodes left to right: the wire order.
    std::tuple<Args...> args{mproc::decode<Args>(in)...};
    in.expect_end();
    ServerCall& call = current_server_call();
    call.created = std::apply(
        [](Args&... a) {
          return std::static_pointer_cast<void>(std::make_shared<T>(std::move(a)...));
        },
        args);
    call.created_type = type_fingerprint<T>();
  }
};

template <class R>
void encode_result(Encoder& out, R&& value) {
  const std::decay_t<R>& ref = value;
  mproc::encode(out, ref);
}

/// Object<T>::call<&T::method>(args...).
template <class T, auto Method, class... Args>
struct ObjectMethodEntry {
  static void invoke(Decoder& in, Encoder* result) {
    std::tuple<Args...> args{mproc::decode<Args>(in)...};
    in.expect_end();
    T& object = current_object<T>();
    using R = std::invoke_result_t<decltype(Method), T&, Args...>;
    if constexpr (std::is_void_v<R>) {
      std::apply([&](Args&... a) { std::invoke(Method, object, std::move(a)...); }, args);
    } else {
      decltype(auto) value = std::apply(
          [&](Args&... a) -> decltype(auto) {
            return std::invoke(Method, object, std::move(a)...);
          },
          args);
      encode_result(*result, value);
    }
  }
};

/// Object<T>::apply(fn, args...): fn(T&, args...).
template <class T, class F, class... Args>
struct ObjectApplyEntry {
  static void invoke(Decoder& in, Encoder* result) {
    check_callable_allowed<F>();
    F f = decode_callable<F>(in);
    std::tuple<Args...> args{mproc::decode<Args>(in)...};
    in.expect_end();
    T& object = current_object<T>();
    using R = std::invoke_result_t<F&, T&, Args...>;
    if constexpr (std::is_void_v<R>) {
      std::apply([&](Args&... a) { std::invoke(f, object, std::move(a)...); }, args);
    } else {
      decltype(auto) value = std::apply(
          [&](Args&... a) -> decltype(auto) { return std::invoke(f, object, std::move(a)...); },
          args);
      encode_result(*result, value);
    }
  }
};

}  // namespace mproc::detail::manager
