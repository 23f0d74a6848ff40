// manager.hpp — a server process that owns shared objects, used through typed proxies.
//
// Python counterpart: multiprocessing.Manager() / BaseManager. Where Python's proxies are
// untyped and pickle every argument, mproc's are typed, encode with the codec, and cost one
// socket round trip per operation:
//
//     mproc::Manager m;                                  // starts the server process
//     auto d = m.dict<std::string, int>();
//     d.set("a", 1);  std::optional<int> v = d.get("a");
//     d.update("a", [](std::optional<int> old) { return old.value_or(0) + 1; });  // atomic
//     mproc::Process p(worker, d);  p.start();           // proxies are by-value arguments
//
//     // across machines
//     auto srv = mproc::Manager::serve("0.0.0.0:5000", authkey);     // a server process
//     auto remote = mproc::Manager::connect("host:5000", authkey);   // anywhere else
//     auto inventory = remote.dict<std::string, int>("inventory");   // named: get or create
//
// Objects. dict<K, V>(), list<T>(), queue<T>(), lock(), event(), and user types: make<T>(args)
// constructs a T in the server, and Object<T>::call<&T::method>(args) / apply(fn, args) run
// code on it there, one call at a time. Every object lives until the manager shuts down;
// named objects (a name given at creation) are found again by that name from any client, and
// asking for a name with other types raises SerializationError.
//
// Proxies are cheap copyable handles: copies refer to the same server object; they are valid
// by-value arguments of Process targets and Pool/Executor tasks, and can be stored in another
// manager object (a dict of lists, ...). Each thread has its own connection to a server, made
// on first use: a thread blocked in Queue::get or Lock::lock blocks no other thread. A managed
// Lock is held by the thread that took it; when that thread's connection goes away (the
// thread ends, or its process dies) the server releases the lock, so a crashed holder never
// deadlocks the others.
//
// Addresses. "host:port" or "[v6addr]:port" (TCP, port 0 = any free port: ask address()),
// "unix:/path" or "/path" (a Unix socket file, removed at shutdown), "@name" (a Linux abstract
// socket: nothing to clean up). A local Manager() listens on a fresh abstract socket.
//
// Security. Every connection first proves on both sides that it knows the authkey: an HMAC-
// SHA256 challenge on a random nonce, compared in constant time, before a byte of payload is
// decoded (a wrong key: AuthenticationError, the server unaffected). Unix sockets also require
// the peer to run as the same user. Requests are bounded by max_message_size(). Data never
// carries code; Dict::update functions and object methods travel as code tokens of this
// program (detail/callable.hpp), so the server must run the same program as its clients to run
// them. A holder of the authkey is trusted to call them.
//
// Failure. A server that dies or shuts down: every request raises ConnectionClosed, at once.
// A proxy used after its Manager's shutdown() in the owning process: ConnectionClosed saying
// so. A client killed mid-request: the server drops that connection (releasing its locks) and
// serves everyone else. An exception thrown in the server (an update function, a method,
// List::at out of range) comes back as itself when registered, else as RemoteError.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/callable.hpp"
#include "mproc/detail/manager_calls.hpp"
#include "mproc/detail/manager_client.hpp"
#include "mproc/detail/manager_protocol.hpp"
#include "mproc/detail/type_name.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"

namespace mproc {

class Manager;

namespace managed {

namespace mgr = detail::manager;

/// What every proxy shares: the server object it names.
class ProxyBase {
 public:
  /// True for a proxy made by a Manager (false for a default-constructed one).
  explicit operator bool() const noexcept { return ref_.endpoint != nullptr; }
  /// The address of the manager serving the object.
  const std::string& address() const { return mgr::endpoint_address(ref_.server()); }
  friend bool operator==(const ProxyBase& a, const ProxyBase& b) noexcept {
    return a.ref_.endpoint == b.ref_.endpoint && a.ref_.id == b.ref_.id;
  }

  const mgr::ObjectRef& object_ref() const noexcept { return ref_; }

 protected:
  ProxyBase() = default;
  explicit ProxyBase(mgr::ObjectRef ref) noexcept : ref_(std::move(ref)) {}
  mgr::ReplyBody send(mgr::Request& request) const { return request.send(ref_.server()); }
  /// send() for the ops whose reply is empty, one flag or one count.
  void send_void(mgr::Request& request) const { mgr::Reply(send(request)).end(); }
  bool send_flag(mgr::Request& request) const {
    mgr::Reply reply(send(request));
    const bool flag = reply.flag();
    reply.end();
    return flag;
  }
  std::size_t send_count(mgr::Request& request) const {
    mgr::Reply reply(send(request));
    const std::uint64_t n = reply.u64();
    reply.end();
    return static_cast<std::size_t>(n);
  }
  mgr::ObjectRef ref_;
};

/// A dict in the manager (Python's Manager().dict()), with typed keys and values.
template <class K, class V>
class Dict : public ProxyBase {
  static_assert(transferable<K> && transferable<V>,
                "mproc::Dict<K, V>: keys and values must be transferable (see codec.hpp)");

 public:
  Dict() = default;

  void set(const K& key, const V& value) {
    mgr::Request r(mgr::Op::dict_set, ref_.id);
    r.put_sized_value(key);
    r.put_value(value);
    send_void(r);
  }
  /// The value stored under `key`, or nullopt.
  std::optional<V> get(const K& key) const {
    mgr::Request r(mgr::Op::dict_get, ref_.id);
    r.put_value(key);
    mgr::Reply reply(send(r));
    if (!reply.flag()) return std::nullopt;
    return reply.template value<V>();
  }
  /// The value stored under `key`, or `fallback` (Python's d.get(k, default)).
  V get(const K& key, const V& fallback) const {
    mgr::Request r(mgr::Op::dict_get_or, ref_.id);
    r.put_sized_value(key);
    r.put_value(fallback);
    return mgr::Reply(send(r)).template value<V>();
  }
  bool contains(const K& key) const {
    mgr::Request r(mgr::Op::dict_contains, ref_.id);
    r.put_value(key);
    return send_flag(r);
  }
  /// Removes `key`; false if it was absent.
  bool erase(const K& key) {
    mgr::Request r(mgr::Op::dict_erase, ref_.id);
    r.put_value(key);
    return send_flag(r);
  }
  std::size_t size() const {
    mgr::Request r(mgr::Op::dict_size, ref_.id);
    return send_count(r);
  }
  bool empty() const { return size() == 0; }
  void clear() {
    mgr::Request r(mgr::Op::dict_clear, ref_.id);
    send_void(r);
  }
  /// A snapshot of every entry, in one round trip.
  std::map<K, V> items() const {
    std::map<K, V> out;
    each_item([&out](K key, V value) { out.insert_or_assign(std::move(key), std::move(value)); });
    return out;
  }
  std::map<K, V> to_map() const { return items(); }
  std::vector<K> keys() const {
    std::vector<K> out;
    each_item([&out](K key, V) { out.push_back(std::move(key)); });
    return out;
  }
  std::vector<V> values() const {
    std::vector<V> out;
    each_item([&out](K, V value) { out.push_back(std::move(value)); });
    return out;
  }
  /// Stores fn(current value or nullopt) under `key` and returns it, atomically: fn runs in
  /// the server while no other operation on this dict runs. fn is a transferable callable
  /// (captureless lambda, serializable function object, or function pointer) taking
  /// std::optional<V> and returning V. If fn throws, the dict is unchanged and the exception
  /// comes back here. A manager reached over TCP refuses function pointers (UsageError here,
  /// ProtocolError in its server): a pointer names an address, which the server cannot trust
  /// from a remote client; wrap the function in a captureless lambda.
  template <class F>
  V update(const K& key, const F& fn) {
    using Fn = std::decay_t<F>;
    static_assert(detail::transferable_callable<Fn>,
                  "mproc::Dict::update: the function runs in the manager's server process, so "
                  "it must be a function pointer, a captureless lambda or a serializable "
                  "function object (a capturing lambda's state cannot travel)");
    static_assert(std::is_invocable_v<const Fn&, std::optional<V>>,
                  "mproc::Dict::update: the function must take std::optional<V> (the current "
                  "value, nullopt when the key is absent)");
    if constexpr (std::is_invocable_v<const Fn&, std::optional<V>>) {
      static_assert(std::is_convertible_v<std::invoke_result_t<const Fn&, std::optional<V>>, V>,
                    "mproc::Dict::update: the function must return the new value (a V)");
    }
    mgr::check_callable_for<Fn>(address(), "mproc::Dict::update");
    mgr::Request r(mgr::Op::dict_update, ref_.id);
    r.put_sized_value(key);
    mgr::write_manager_call<mgr::DictUpdateEntry<Fn, V>>(r.out(), fn);
    return mgr::Reply(send(r)).template value<V>();
  }

 private:
  friend class mproc::Manager;
  friend struct mproc::handle_codec<Dict>;
  explicit Dict(mgr::ObjectRef ref) noexcept : ProxyBase(std::move(ref)) {}

  template <class Sink>
  void each_item(Sink&& sink) const {
    mgr::Request r(mgr::Op::dict_items, ref_.id);
    mgr::Reply reply(send(r));
    const std::uint64_t n = reply.u64();
    for (std::uint64_t i = 0; i < n; ++i) {
      K key = reply.template sized_value<K>();
      V value = reply.template sized_value<V>();
      sink(std::move(key), std::move(value));
    }
    reply.end();
  }
};

/// A list in the manager (Python's Manager().list()).
template <class T>
class List : public ProxyBase {
  static_assert(transferable<T>, "mproc::List<T>: T must be transferable (see codec.hpp)");

 public:
  List() = default;

  void append(const T& value) {
    mgr::Request r(mgr::Op::list_append, ref_.id);
    r.put_value(value);
    send_void(r);
  }
  /// The item at `index`; std::out_of_range past the end.
  T at(std::size_t index) const {
    mgr::Request r(mgr::Op::list_at, ref_.id);
    r.put_u64(index);
    return mgr::Reply(send(r)).template value<T>();
  }
  /// Replaces the item at `index`; std::out_of_range past the end.
  void set(std::size_t index, const T& value) {
    mgr::Request r(mgr::Op::list_set, ref_.id);
    r.put_u64(index);
    r.put_value(value);
    send_void(r);
  }
  /// Removes and returns the last item; std::out_of_range when empty.
  T pop() {
    mgr::Request r(mgr::Op::list_pop, ref_.id);
    return mgr::Reply(send(r)).template value<T>();
  }
  std::size_t size() const {
    mgr::Request r(mgr::Op::list_size, ref_.id);
    return send_count(r);
  }
  bool empty() const { return size() == 0; }
  void clear() {
    mgr::Request r(mgr::Op::list_clear, ref_.id);
    send_void(r);
  }
  /// A snapshot of every item, in one round trip.
  std::vector<T> to_vector() const {
    mgr::Request r(mgr::Op::list_to_vector, ref_.id);
    mgr::Reply reply(send(r));
    const std::uint64_t n = reply.u64();
    std::vector<T> out;
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(reply.template sized_value<T>());
    reply.end();
    return out;
  }

 private:
  friend class mproc::Manager;
  friend struct mproc::handle_codec<List>;
  explicit List(mgr::ObjectRef ref) noexcept : ProxyBase(std::move(ref)) {}
};

/// A FIFO queue in the manager (Python's Manager().Queue()): usable from any client, across
/// machines too. For processes of one machine, mproc::Queue (queue.hpp) is much faster.
template <class T>
class Queue : public ProxyBase {
  static_assert(transferable<T>, "mproc::managed::Queue<T>: T must be transferable");

 public:
  Queue() = default;

  /// Adds `item`, waiting while the queue is full (maxsize > 0).
  void put(const T& item) { static_cast<void>(put_impl(item, std::nullopt)); }
  /// Like put, but false (the item not added) after `timeout` without room.
  [[nodiscard]] bool put_for(const T& item, std::chrono::nanoseconds timeout) {
    return put_impl(item, timeout);
  }
  /// Removes and returns the oldest item, waiting as long as needed.
  T get() { return *get_impl(std::nullopt); }
  /// Like get, but nullopt after `timeout` without an item.
  [[nodiscard]] std::optional<T> get_for(std::chrono::nanoseconds timeout) {
    return get_impl(timeout);
  }
  /// An item if one is there now.
  [[nodiscard]] std::optional<T> try_get() { return get_impl(std::chrono::nanoseconds(0)); }
  std::size_t qsize() const {
    mgr::Request r(mgr::Op::queue_size, ref_.id);
    return send_count(r);
  }
  bool empty() const { return qsize() == 0; }

 private:
  friend class mproc::Manager;
  friend struct mproc::handle_codec<Queue>;
  explicit Queue(mgr::ObjectRef ref) noexcept : ProxyBase(std::move(ref)) {}

  bool put_impl(const T& item, std::optional<std::chrono::nanoseconds> timeout) {
    mgr::Request r(mgr::Op::queue_put, ref_.id);
    r.put_timeout(timeout);
    r.put_value(item);
    return send_flag(r);
  }
  std::optional<T> get_impl(std::optional<std::chrono::nanoseconds> timeout) {
    mgr::Request r(mgr::Op::queue_get, ref_.id);
    r.put_timeout(timeout);
    mgr::Reply reply(send(r));
    if (!reply.flag()) return std::nullopt;
    return reply.template value<T>();
  }
};

/// A lock in the manager, held by the thread that took it (see the top of this file).
/// BasicLockable/Lockable: works with std::lock_guard and std::unique_lock.
class Lock : public ProxyBase {
 public:
  Lock() = default;
  /// Blocks until acquired. UsageError if the calling thread already holds it.
  void lock();
  /// Releases. UsageError if the calling thread does not hold it.
  void unlock();
  /// Acquires if free now; false if held (by anyone, the caller included).
  [[nodiscard]] bool try_lock();
  /// Waits at most `timeout`.
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }
  /// True if some thread holds it (a snapshot).
  [[nodiscard]] bool locked() const;

 private:
  friend class mproc::Manager;
  friend struct mproc::handle_codec<Lock>;
  explicit Lock(mgr::ObjectRef ref) noexcept : ProxyBase(std::move(ref)) {}
  bool acquire(std::optional<std::chrono::nanoseconds> timeout);
};

/// An event in the manager (Python's Manager().Event()).
class Event : public ProxyBase {
 public:
  Event() = default;
  void set();
  void clear();
  [[nodiscard]] bool is_set() const;
  /// Blocks until set.
  void wait();
  /// False if still not set after `timeout`.
  template <class Rep, class Period>
  [[nodiscard]] bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    return wait_impl(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }

 private:
  friend class mproc::Manager;
  friend struct mproc::handle_codec<Event>;
  explicit Event(mgr::ObjectRef ref) noexcept : ProxyBase(std::move(ref)) {}
  bool wait_impl(std::optional<std::chrono::nanoseconds> timeout);
};

/// A T living in the manager's server (Python's BaseManager.register). T needs no codec
/// support; the arguments and results of its calls do. Calls on one object run one at a time.
template <class T>
class Object : public ProxyBase {
 public:
  Object() = default;

  /// Runs (object.*Method)(args...) in the server and returns its result:
  ///     auto c = m.make<Counter>(10);   int now = c.call<&Counter::add>(5);
  template <auto Method, class... Args>
  auto call(const Args&... args) {
    static_assert(std::is_member_function_pointer_v<decltype(Method)>,
                  "mproc::Object<T>::call<&T::method>: the template argument must be a member "
                  "function of T");
    static_assert((detail::transferable_argument<std::decay_t<Args>> && ...),
                  "mproc::Object<T>::call: every argument must be transferable (no pointers)");
    using R = std::decay_t<std::invoke_result_t<decltype(Method), T&, std::decay_t<Args>...>>;
    static_assert(detail::transferable_result<R>,
                  "mproc::Object<T>::call: the method's result must be void or transferable");
    mgr::Request r(mgr::Op::object_call, ref_.id);
    mgr::write_manager_call<mgr::ObjectMethodEntry<T, Method, std::decay_t<Args>...>>(
        r.out(), mgr::NoCallable{}, args...);
    return finish<R>(r);
  }
  /// Runs fn(object, args...) in the server and returns its result. fn is a transferable
  /// callable (captureless lambda, or function pointer except over TCP: see Dict::update)
  /// taking T& first.
  template <class F, class... Args>
  auto apply(const F& fn, const Args&... args) {
    using Fn = std::decay_t<F>;
    static_assert(detail::transferable_callable<Fn>,
                  "mproc::Object<T>::apply: the function runs in the server: use a function "
                  "pointer or a captureless lambda taking T& first");
    static_assert((detail::transferable_argument<std::decay_t<Args>> && ...),
                  "mproc::Object<T>::apply: every argument must be transferable (no pointers)");
    static_assert(std::is_invocable_v<Fn&, T&, std::decay_t<Args>...>,
                  "mproc::Object<T>::apply: the function must be callable as fn(T&, args...)");
    using R = std::decay_t<std::invoke_result_t<Fn&, T&, std::decay_t<Args>...>>;
    mgr::check_callable_for<Fn>(address(), "mproc::Object<T>::apply");
    mgr::Request r(mgr::Op::object_call, ref_.id);
    mgr::write_manager_call<mgr::ObjectApplyEntry<T, Fn, std::decay_t<Args>...>>(r.out(), fn,
                                                                                 args...);
    return finish<R>(r);
  }

 private:
  friend class mproc::Manager;
  friend struct mproc::handle_codec<Object>;
  explicit Object(mgr::ObjectRef ref) noexcept : ProxyBase(std::move(ref)) {}

  template <class R>
  R finish(mgr::Request& r) {
    mgr::Reply reply(send(r));
    if constexpr (std::is_void_v<R>) {
      reply.end();
    } else {
      return reply.template value<R>();
    }
  }
};

}  // namespace managed

/// The proxy types by the names DESIGN.md uses.
template <class K, class V>
using Dict = managed::Dict<K, V>;
template <class T>
using List = managed::List<T>;

struct ManagerOptions {
  /// How the server process starts (nullopt = get_start_method()).
  std::optional<StartMethod> start{};
  /// The server process's name (default "SyncManager-<n>").
  std::string name{};
};

/// Owns a manager server process (Manager(), serve) or connects to one (connect).
class Manager {
 public:
  /// Starts a server process listening on a fresh abstract Unix socket with a random authkey.
  /// SystemError if it cannot start.
  Manager();
  explicit Manager(ManagerOptions options);
  /// Starts a server process listening on `address` (see the top of this file), which
  /// clients reach with connect(address(), authkey). UsageError for a malformed address or an
  /// empty authkey; SystemError if the address cannot be bound (in use, no permission).
  static Manager serve(std::string_view address, std::string_view authkey,
                       ManagerOptions options = {});
  /// Connects to a running server: checks now that it answers and accepts the authkey
  /// (ConnectionClosed / SystemError if unreachable, AuthenticationError on a wrong key).
  static Manager connect(std::string_view address, std::string_view authkey);
  /// Runs a server in the calling process until it receives SIGINT or SIGTERM: a standalone
  /// manager for clients on other machines, which nothing shuts down remotely. `on_ready` is
  /// called with the bound address once it accepts connections.
  static void serve_forever(std::string_view address, std::string_view authkey,
                            const std::function<void(const std::string&)>& on_ready = {});

  Manager(Manager&&) noexcept;
  Manager& operator=(Manager&&) noexcept;
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;
  /// shutdown().
  ~Manager();

  /// Where the server listens, e.g. "127.0.0.1:41234" or "@mproc-manager-…".
  const std::string& address() const;
  /// The key connections authenticate with.
  const std::string& authkey() const;
  /// The server process's pid when this Manager owns it, else 0.
  int pid() const noexcept;
  /// An owning Manager stops its server (objects are gone; every proxy of it, anywhere, then
  /// raises ConnectionClosed). A connected Manager only disconnects this process: its proxies
  /// here raise ConnectionClosed, the server goes on. Idempotent; never throws.
  void shutdown() noexcept;

  template <class K, class V>
  managed::Dict<K, V> dict(std::string_view name = {}) {
    return managed::Dict<K, V>(
        create(detail::manager::Kind::dict, type_fingerprint<K>(), type_fingerprint<V>(), name));
  }
  template <class T>
  managed::List<T> list(std::string_view name = {}) {
    return managed::List<T>(create(detail::manager::Kind::list, type_fingerprint<T>(), 0, name));
  }
  /// A queue of at most `maxsize` items (0 = unbounded).
  template <class T>
  managed::Queue<T> queue(std::size_t maxsize = 0) {
    return queue<T>(std::string_view{}, maxsize);
  }
  template <class T>
  managed::Queue<T> queue(std::string_view name, std::size_t maxsize = 0) {
    return managed::Queue<T>(
        create(detail::manager::Kind::queue, type_fingerprint<T>(), 0, name, maxsize));
  }
  managed::Lock lock(std::string_view name = {});
  managed::Event event(std::string_view name = {});
  /// Constructs T(args...) in the server.
  template <class T, class... Args>
  managed::Object<T> make(const Args&... args) {
    return object<T>(std::string_view{}, args...);
  }
  /// The object named `name`, constructed as T(args...) if there is none yet.
  template <class T, class... Args>
  managed::Object<T> object(std::string_view name, const Args&... args) {
    static_assert((detail::transferable_argument<std::decay_t<Args>> && ...),
                  "mproc::Manager::make<T>(args...): every argument must be transferable");
    static_assert(std::is_constructible_v<T, std::decay_t<Args>&&...>,
                  "mproc::Manager::make<T>(args...): T must be constructible from the arguments");
    Encoder factory;
    detail::manager::write_manager_call<
        detail::manager::ObjectFactoryEntry<T, std::decay_t<Args>...>>(
        factory, detail::manager::NoCallable{}, args...);
    return managed::Object<T>(
        create(detail::manager::Kind::object, type_fingerprint<T>(), 0, name, 0, factory.bytes()));
  }

  /// Connections and objects the server holds now (for tests and monitoring).
  struct Stats {
    std::size_t connections = 0;
    std::size_t objects = 0;
  };
  Stats stats() const;

 private:
  struct Server;
  Manager(std::shared_ptr<detail::manager::Endpoint> endpoint, std::unique_ptr<Server> server);
  detail::manager::Endpoint& endpoint() const;
  detail::manager::ObjectRef create(detail::manager::Kind kind, std::uint64_t type_a,
                                    std::uint64_t type_b, std::string_view name,
                                    std::uint64_t capacity = 0,
                                    std::span<const std::byte> factory = {});

  std::shared_ptr<detail::manager::Endpoint> endpoint_;
  std::unique_ptr<Server> server_;  ///< the server process, when this Manager owns it
};

// ---- handles ---------------------------------------------------------------------------------

template <class K, class V>
struct handle_codec<managed::Dict<K, V>> {
  static void encode(Encoder& out, const managed::Dict<K, V>& p) {
    detail::manager::encode_ref(out, p.object_ref(), detail::manager::Kind::dict,
                                type_fingerprint<K>(), type_fingerprint<V>());
  }
  static managed::Dict<K, V> decode(Decoder& in) {
    return managed::Dict<K, V>(detail::manager::decode_ref(
        in, detail::manager::Kind::dict, type_fingerprint<K>(), type_fingerprint<V>(),
        detail::type_name<managed::Dict<K, V>>()));
  }
};

template <class T>
struct handle_codec<managed::List<T>> {
  static void encode(Encoder& out, const managed::List<T>& p) {
    detail::manager::encode_ref(out, p.object_ref(), detail::manager::Kind::list,
                                type_fingerprint<T>(), 0);
  }
  static managed::List<T> decode(Decoder& in) {
    return managed::List<T>(detail::manager::decode_ref(in, detail::manager::Kind::list,
                                                        type_fingerprint<T>(), 0,
                                                        detail::type_name<managed::List<T>>()));
  }
};

template <class T>
struct handle_codec<managed::Queue<T>> {
  static void encode(Encoder& out, const managed::Queue<T>& p) {
    detail::manager::encode_ref(out, p.object_ref(), detail::manager::Kind::queue,
                                type_fingerprint<T>(), 0);
  }
  static managed::Queue<T> decode(Decoder& in) {
    return managed::Queue<T>(detail::manager::decode_ref(in, detail::manager::Kind::queue,
                                                         type_fingerprint<T>(), 0,
                                                         detail::type_name<managed::Queue<T>>()));
  }
};

template <>
struct handle_codec<managed::Lock> {
  static void encode(Encoder& out, const managed::Lock& p);
  static managed::Lock decode(Decoder& in);
};

template <>
struct handle_codec<managed::Event> {
  static void encode(Encoder& out, const managed::Event& p);
  static managed::Event decode(Decoder& in);
};

template <class T>
struct handle_codec<managed::Object<T>> {
  static void encode(Encoder& out, const managed::Object<T>& p) {
    detail::manager::encode_ref(out, p.object_ref(), detail::manager::Kind::object,
                                type_fingerprint<T>(), 0);
  }
  static managed::Object<T> decode(Decoder& in) {
    return managed::Object<T>(detail::manager::decode_ref(in, detail::manager::Kind::object,
                                                          type_fingerprint<T>(), 0,
                                                          detail::type_name<managed::Object<T>>()));
  }
};

}  // namespace mproc
