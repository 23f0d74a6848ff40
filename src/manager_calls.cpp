// The code a Manager server runs on a client's behalf: only registered manager entries.
#include "mproc/detail/manager_calls.hpp"

#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "detail/leaked_global.hpp"

namespace mproc::detail::manager {

namespace {

thread_local ServerCall* t_server_call = nullptr;

/// Counted like the trampoline registry: a template instantiated in several modules registers
/// the same address more than once.
struct EntryRegistry {
  std::shared_mutex mutex;
  std::unordered_map<Trampoline, int> entries;
};

std::atomic<EntryRegistry*> g_entries{nullptr};

EntryRegistry& entry_registry() {
  return leaked_global(g_entries);
}

}  // namespace

ServerCall& current_server_call() {
  if (t_server_call == nullptr) {
    throw UsageError("mproc::Manager: a manager entry ran outside a manager server");
  }
  return *t_server_call;
}

ScopedServerCall::ScopedServerCall(ServerCall& call) noexcept : previous_(t_server_call) {
  t_server_call = &call;
}

ScopedServerCall::~ScopedServerCall() {
  t_server_call = previous_;
}

void register_manager_entry(Trampoline entry) {
  EntryRegistry& registry = entry_registry();
  const std::unique_lock lock(registry.mutex);
  ++registry.entries[entry];
}

void unregister_manager_entry(Trampoline entry) noexcept {
  EntryRegistry& registry = entry_registry();
  const std::unique_lock lock(registry.mutex);
  const auto it = registry.entries.find(entry);
  if (it != registry.entries.end() && --it->second == 0) registry.entries.erase(it);
}

void run_manager_call(Decoder& in, Encoder& result) {
  std::uint8_t version = 0;
  in.read_bytes(&version, 1);
  if (version != call_wire_version) {
    throw ProtocolError("mproc::Manager: unsupported call wire version " + std::to_string(version));
  }
  const Trampoline entry = resolve_trampoline(read_code_ref(in));
  {
    EntryRegistry& registry = entry_registry();
    const std::shared_lock lock(registry.mutex);
    if (!registry.entries.contains(entry)) {
      throw ProtocolError(
          "mproc::Manager: the request names code that is not a manager function (an update "
          "function, object factory or method); the server runs nothing else");
    }
  }
  entry(in, &result);
}

}  // namespace mproc::detail::manager
