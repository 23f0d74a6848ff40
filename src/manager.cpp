// mproc::Manager: starting, reaching and stopping a manager server; Lock and Event proxies.
#include "mproc/manager.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <system_error>

#include "detail/sys.hpp"
#include "manager_auth.hpp"
#include "manager_server.hpp"
#include "manager_socket.hpp"
#include "mproc/log.hpp"
#include "mproc/pipe.hpp"

namespace mproc {

namespace mgr = detail::manager;

namespace {

constexpr std::chrono::seconds kStartTimeout{30};
constexpr std::chrono::seconds kStopTimeout{5};
constexpr std::size_t kAuthkeyBytes = 32;

std::atomic<int> g_manager_count{0};

void check_authkey(std::string_view authkey) {
  if (authkey.empty()) {
    throw UsageError(
        "mproc::Manager: the authkey is empty; pass the secret that clients and "
        "server share (any bytes)");
  }
}

/// The server process's main: binds, reports the address (or why it could not), serves.
/// Report lines: "ok\n<address>", or "system\n<errno>\n<call>", or "other\n<what>".
void server_process_main(std::string address, std::string authkey, Connection ready) {
  detail::sys::ignore_signal(SIGINT);  // Ctrl-C is for the owner; the server goes at its shutdown()
  mgr::Listener listener;
  try {
    listener = mgr::listen_on(mgr::Address::parse(address));
  } catch (const SystemError& e) {
    ready.send("system\n" + std::to_string(e.code().value()) + "\n" + e.call());
    return;
  } catch (const std::exception& e) {
    ready.send(std::string("other\n") + e.what());
    return;
  }
  const std::string bound = listener.address;
  mgr::Server server(std::move(listener), std::move(authkey), true);
  ready.send("ok\n" + bound);
  ready.close();
  server.run();
}

/// Waits for the server's report; throws what it reports, or that it died first.
std::string await_ready(Process& process, Connection& reader) {
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!reader.poll(std::chrono::milliseconds(20))) {
    if (!process.is_alive()) {
      process.join();
      throw Error("mproc::Manager: the server process exited (status " +
                  std::to_string(process.exitcode().value_or(0)) + ") before it was ready");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      process.kill();
      process.join();
      throw TimeoutError("mproc::Manager: the server process did not start within 30 s");
    }
  }
  const auto report = reader.recv<std::string>();
  const std::size_t nl = report.find('\n');
  const std::string kind = report.substr(0, nl);
  const std::string rest = nl == std::string::npos ? std::string() : report.substr(nl + 1);
  if (kind == "ok") return rest;
  process.join();
  if (kind == "system") {
    const std::size_t nl2 = rest.find('\n');
    const int err = std::stoi(rest.substr(0, nl2));
    throw SystemError(std::error_code(err, std::system_category()),
                      nl2 == std::string::npos ? std::string() : rest.substr(nl2 + 1));
  }
  throw Error("mproc::Manager: the server could not start: " + rest);
}

const char* const kShutDown =
    "mproc::Manager: the manager was shut down; its proxies cannot be used after "
    "Manager::shutdown()";

}  // namespace

struct Manager::Server {
  Process process;
  int owner_pid = 0;
  bool stopped = false;
};

Manager::Manager() : Manager(ManagerOptions{}) {}

Manager::Manager(ManagerOptions options) {
  const std::string address = "@mproc-manager-" + std::to_string(::getpid()) + "-" +
                              std::to_string(g_manager_count.fetch_add(1) + 1) + "-" + [] {
                                static constexpr char hex[] = "0123456789abcdef";
                                std::string out;
                                for (const char c : mgr::random_bytes(8)) {
                                  out += hex[(static_cast<unsigned char>(c) >> 4) & 0xf];
                                  out += hex[static_cast<unsigned char>(c) & 0xf];
                                }
                                return out;
                              }();
  *this = serve(address, mgr::random_bytes(kAuthkeyBytes), std::move(options));
}

Manager::Manager(std::shared_ptr<mgr::Endpoint> endpoint, std::unique_ptr<Server> server)
    : endpoint_(std::move(endpoint)), server_(std::move(server)) {}

Manager::Manager(Manager&&) noexcept = default;

Manager& Manager::operator=(Manager&& other) noexcept {
  if (this != &other) {
    shutdown();
    endpoint_ = std::move(other.endpoint_);
    server_ = std::move(other.server_);
  }
  return *this;
}

Manager::~Manager() {
  shutdown();
}

Manager Manager::serve(std::string_view address, std::string_view authkey, ManagerOptions options) {
  static_cast<void>(mgr::Address::parse(address));  // UsageError here, in the caller
  check_authkey(authkey);
  auto [reader, writer] = Pipe(false);
  ProcessOptions process_options;
  process_options.name = options.name.empty()
                             ? "SyncManager-" + std::to_string(g_manager_count.fetch_add(1) + 1)
                             : options.name;
  process_options.daemon = true;  // killed, not joined, if its Manager goes without shutdown
  process_options.start = options.start;
  auto server =
      std::make_unique<Server>(Server{Process(process_options, &server_process_main,
                                              std::string(address), std::string(authkey), writer),
                                      static_cast<int>(::getpid()), false});
  server->process.start();
  writer.close();
  const std::string bound = await_ready(server->process, reader);
  return Manager(mgr::endpoint_for(bound, authkey), std::move(server));
}

Manager Manager::connect(std::string_view address, std::string_view authkey) {
  static_cast<void>(mgr::Address::parse(address));
  check_authkey(authkey);
  Manager client(mgr::endpoint_for(address, authkey), nullptr);
  mgr::Request ping(mgr::Op::ping, 0);
  mgr::Reply(ping.send(client.endpoint())).end();
  return client;
}

void Manager::serve_forever(std::string_view address, std::string_view authkey,
                            const std::function<void(const std::string&)>& on_ready) {
  const mgr::Address parsed = mgr::Address::parse(address);
  check_authkey(authkey);
  // Block the stop signals before the server makes its threads (they inherit the mask), and
  // take them from a signalfd that run() polls.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigset_t previous;
  if (const int rc = ::pthread_sigmask(SIG_BLOCK, &stop_signals, &previous); rc != 0) {
    detail::sys::throw_errno("pthread_sigmask()", rc);
  }
  struct RestoreMask {
    sigset_t mask;
    ~RestoreMask() { ::pthread_sigmask(SIG_SETMASK, &mask, nullptr); }
  } restore{previous};
  detail::UniqueFd signals(static_cast<int>(
      detail::sys::check(::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd()")));
  mgr::Listener listener = mgr::listen_on(parsed);
  const std::string bound = listener.address;
  mgr::Server server(std::move(listener), std::string(authkey), false);
  if (on_ready) on_ready(bound);
  server.run(signals.get());
  signalfd_siginfo consumed{};
  static_cast<void>(::read(signals.get(), &consumed, sizeof consumed));
}

const std::string& Manager::address() const {
  return mgr::endpoint_address(endpoint());
}

const std::string& Manager::authkey() const {
  return mgr::endpoint_authkey(endpoint());
}

int Manager::pid() const noexcept {
  return server_ ? server_->process.pid() : 0;
}

mgr::Endpoint& Manager::endpoint() const {
  if (!endpoint_) throw UsageError("mproc::Manager: this Manager was moved from");
  return *endpoint_;
}

void Manager::shutdown() noexcept {
  if (!endpoint_) return;
  if (!server_) {
    mgr::disconnect_endpoint(*endpoint_);
    return;
  }
  if (server_->stopped) return;
  if (server_->owner_pid != ::getpid()) {
    // A fork child's copy: the server belongs to the parent.
    mgr::disconnect_endpoint(*endpoint_);
    return;
  }
  server_->stopped = true;
  try {
    mgr::Request request(mgr::Op::shutdown, 0);
    mgr::Reply(request.send(*endpoint_)).end();
  } catch (const std::exception& e) {
    // The server is gone already (killed, or it crashed): nothing to stop.
    detail::log(LogLevel::debug, std::string("mproc::Manager::shutdown: ") + e.what());
  }
  mgr::close_endpoint(*endpoint_, kShutDown);
  try {
    if (!server_->process.join_for(kStopTimeout)) {
      detail::log(LogLevel::warning,
                  "mproc::Manager::shutdown: the server did not stop in 5 s; killed");
      server_->process.kill();
      server_->process.join();
    }
  } catch (const std::exception& e) {
    detail::log(LogLevel::error, std::string("mproc::Manager::shutdown: ") + e.what());
  }
}

mgr::ObjectRef Manager::create(mgr::Kind kind, std::uint64_t type_a, std::uint64_t type_b,
                               std::string_view name, std::uint64_t capacity,
                               std::span<const std::byte> factory) {
  mgr::Request request(mgr::Op::create, 0);
  request.put_u8(static_cast<std::uint8_t>(kind));
  request.put_u64(type_a);
  request.put_u64(type_b);
  request.put_u64(capacity);
  request.put_bytes(name);
  request.out().write_bytes(factory.data(), factory.size());
  mgr::Reply reply(request.send(endpoint()));
  const std::uint64_t id = reply.u64();
  reply.end();
  return mgr::ObjectRef{endpoint_, id};
}

managed::Lock Manager::lock(std::string_view name) {
  return managed::Lock(create(mgr::Kind::lock, 0, 0, name));
}

managed::Event Manager::event(std::string_view name) {
  return managed::Event(create(mgr::Kind::event, 0, 0, name));
}

Manager::Stats Manager::stats() const {
  mgr::Request request(mgr::Op::stats, 0);
  mgr::Reply reply(request.send(endpoint()));
  Stats out;
  out.connections = static_cast<std::size_t>(reply.u64());
  out.objects = static_cast<std::size_t>(reply.u64());
  reply.end();
  return out;
}

// ---- Lock and Event -----------------------------------------------------------------------

namespace managed {

void Lock::lock() {
  static_cast<void>(acquire(std::nullopt));
}

bool Lock::try_lock() {
  return acquire(std::chrono::nanoseconds(0));
}

bool Lock::acquire(std::optional<std::chrono::nanoseconds> timeout) {
  mgr::Request r(mgr::Op::lock_acquire, ref_.id);
  r.put_timeout(timeout);
  return send_flag(r);
}

void Lock::unlock() {
  mgr::Request r(mgr::Op::lock_release, ref_.id);
  send_void(r);
}

bool Lock::locked() const {
  mgr::Request r(mgr::Op::lock_locked, ref_.id);
  return send_flag(r);
}

void Event::set() {
  mgr::Request r(mgr::Op::event_set, ref_.id);
  send_void(r);
}

void Event::clear() {
  mgr::Request r(mgr::Op::event_clear, ref_.id);
  send_void(r);
}

bool Event::is_set() const {
  mgr::Request r(mgr::Op::event_is_set, ref_.id);
  return send_flag(r);
}

void Event::wait() {
  static_cast<void>(wait_impl(std::nullopt));
}

bool Event::wait_impl(std::optional<std::chrono::nanoseconds> timeout) {
  mgr::Request r(mgr::Op::event_wait, ref_.id);
  r.put_timeout(timeout);
  return send_flag(r);
}

}  // namespace managed

void handle_codec<managed::Lock>::encode(Encoder& out, const managed::Lock& p) {
  mgr::encode_ref(out, p.object_ref(), mgr::Kind::lock, 0, 0);
}

managed::Lock handle_codec<managed::Lock>::decode(Decoder& in) {
  return managed::Lock(mgr::decode_ref(in, mgr::Kind::lock, 0, 0, "mproc::managed::Lock"));
}

void handle_codec<managed::Event>::encode(Encoder& out, const managed::Event& p) {
  mgr::encode_ref(out, p.object_ref(), mgr::Kind::event, 0, 0);
}

managed::Event handle_codec<managed::Event>::decode(Decoder& in) {
  return managed::Event(mgr::decode_ref(in, mgr::Kind::event, 0, 0, "mproc::managed::Event"));
}

}  // namespace mproc
