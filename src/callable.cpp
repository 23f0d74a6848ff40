// callable.cpp — code tokens (module identity + offset) and the trampoline registry behind
// transferable calls (see include/mproc/detail/callable.hpp for the contract and wire layout).
//
// Module table. dl_iterate_phdr lists the loaded ELF modules; for each we keep its load bias
// (dlpi_addr: what the file's virtual addresses are shifted by), the span and executable parts
// of its PT_LOAD segments, whether it has unwind tables (PT_GNU_EH_FRAME), and its identity:
//  - the NT_GNU_BUILD_ID note, which the linker derives from the file's contents (Debian and
//    every mainstream toolchain emit it by default);
//  - for a module without one (or with one longer than ModuleId::max_size), a 128-bit digest of
//    its read-only executable segments as mapped. Those bytes are exactly the file's bytes:
//    relocations never touch non-writable segments of a module without text relocations. The
//    digest is not a security boundary, only a way to tell the modules of one machine apart; it
//    replaces the "path + size + mtime" fallback because it needs no system call and cannot be
//    fooled by a file rewritten in place while the old copy stays mapped.
// The table is cached and rebuilt when the loader's counters of loaded/unloaded objects
// (dlpi_adds/dlpi_subs) change, so dlopen/dlclose are noticed without rescanning on every call.
//
// Trampoline registry. Every CallEntry<...>::invoke registers its absolute address during static
// initialisation (and unregisters at static destruction, which matters for dlclose'd modules).
// A decoded token is accepted as an entry point only if it resolves to a registered address.
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <unistd.h>
#include <unwind.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "detail/sys.hpp"
#include "mproc/detail/callable.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

bool operator==(const ModuleId& a, const ModuleId& b) noexcept {
  return a.kind == b.kind && a.size == b.size &&
         std::memcmp(a.bytes.data(), b.bytes.data(), a.size) == 0;
}

std::string to_hex(const ModuleId& id) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(std::size_t{id.size} * 2);
  for (std::byte b : id.view()) {
    const auto v = std::to_integer<unsigned>(b);
    s += digits[v >> 4];
    s += digits[v & 0xf];
  }
  return s;
}

namespace {

std::string hex_u64(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s = "0x";
  bool started = false;
  for (int shift = 60; shift >= 0; shift -= 4) {
    const unsigned d = (v >> shift) & 0xf;
    if (d != 0 || started || shift == 0) {
      s += digits[d];
      started = true;
    }
  }
  return s;
}

std::string describe(const ModuleId& id) {
  return (id.kind == ModuleId::Kind::build_id ? "build-id " : "content digest ") + to_hex(id);
}

// ---- module identities ---------------------------------------------------------------------

constexpr std::size_t align_up(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}

/// The GNU build-id note of the module, if it has one that fits in a ModuleId.
std::optional<ModuleId> read_build_id(const dl_phdr_info& info) {
  for (ElfW(Half) i = 0; i < info.dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info.dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const auto* base = reinterpret_cast<const unsigned char*>(info.dlpi_addr + ph.p_vaddr);
    const std::size_t size = ph.p_filesz;
    // Notes are padded to 4 bytes, or to 8 in segments aligned to 8 (GNU property notes).
    const std::size_t align = ph.p_align >= 8 ? 8 : 4;
    std::size_t pos = 0;
    while (size - pos >= sizeof(ElfW(Nhdr))) {
      ElfW(Nhdr) header;
      std::memcpy(&header, base + pos, sizeof header);
      pos += sizeof header;
      const std::size_t name_size = align_up(header.n_namesz, align);
      if (name_size > size - pos) break;
      const unsigned char* name = base + pos;
      pos += name_size;
      if (header.n_descsz > size - pos) break;
      const unsigned char* desc = base + pos;
      pos += std::min(align_up(header.n_descsz, align), size - pos);
      if (header.n_type == NT_GNU_BUILD_ID && header.n_namesz == 4 &&
          std::memcmp(name, "GNU", 4) == 0 && header.n_descsz > 0 &&
          header.n_descsz <= ModuleId::max_size) {
        ModuleId id;
        id.kind = ModuleId::Kind::build_id;
        id.size = static_cast<std::uint8_t>(header.n_descsz);
        std::memcpy(id.bytes.data(), desc, header.n_descsz);
        return id;
      }
    }
  }
  return std::nullopt;
}

constexpr std::uint64_t rotl(std::uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

constexpr std::uint64_t fmix(std::uint64_t x) {  // MurmurHash3's finaliser
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

/// Two independent 64-bit lanes over 8-byte words: fast enough for a few megabytes of code,
/// once per module without a build-id.
class Digest {
 public:
  void add(std::uint64_t w) {
    a_ = rotl(a_ ^ (w * 0x87c37b91114253d5ULL), 31) * 0x4cf5ad432745937fULL;
    b_ = rotl(b_ + (w * 0x9e3779b97f4a7c15ULL), 27) * 0x52dce729ULL + a_;
    ++words_;
  }
  void add_bytes(const unsigned char* p, std::size_t n) {
    for (; n >= 8; p += 8, n -= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      add(w);
    }
    std::uint64_t tail = n;  // length in the top byte keeps "ab" and "ab\0" apart
    for (std::size_t i = 0; i < n; ++i) tail |= std::uint64_t{p[i]} << (8 * (i + 1));
    add(tail);
  }
  ModuleId finish() const {
    ModuleId id;
    id.kind = ModuleId::Kind::content_digest;
    id.size = 16;
    const std::uint64_t h1 = fmix(a_ ^ words_), h2 = fmix(b_ + h1);
    std::memcpy(id.bytes.data(), &h1, 8);
    std::memcpy(id.bytes.data() + 8, &h2, 8);
    return id;
  }

 private:
  std::uint64_t a_ = 0x6a09e667f3bcc908ULL, b_ = 0xbb67ae8584caa73bULL, words_ = 0;
};

ModuleId digest_module(const dl_phdr_info& info) {
  Digest d;
  for (ElfW(Half) i = 0; i < info.dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info.dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    d.add(ph.p_vaddr);
    d.add(ph.p_memsz);
    d.add(ph.p_flags);
    // Only segments relocation cannot have changed (readable, executable, not writable).
    if ((ph.p_flags & PF_R) && (ph.p_flags & PF_X) && !(ph.p_flags & PF_W)) {
      d.add_bytes(reinterpret_cast<const unsigned char*>(info.dlpi_addr + ph.p_vaddr), ph.p_filesz);
    }
  }
  return d.finish();
}

// ---- the module table ---------------------------------------------------------------------

struct Range {
  std::uintptr_t begin, end;  // absolute, [begin, end)
  bool contains(std::uintptr_t a) const { return a >= begin && a < end; }
};

struct Module {
  std::uintptr_t bias = 0;  // dlpi_addr
  Range span{};             // all PT_LOAD segments
  std::vector<Range> code;  // executable PT_LOAD segments
  bool has_unwind_tables = false;
  ModuleId id;
  std::string label;  // path, or "main program <argv[0]>"
};

struct Generation {
  unsigned long long adds = 0, subs = 0;
  bool known = false;  // the loader reported its counters
  bool operator==(const Generation&) const = default;
};

struct ModuleTable {
  Generation generation;
  std::vector<Module> modules;  // sorted by span.begin; spans never overlap

  const Module* by_address(std::uintptr_t a) const {
    auto it = std::upper_bound(modules.begin(), modules.end(), a,
                               [](std::uintptr_t x, const Module& m) { return x < m.span.begin; });
    if (it == modules.begin()) return nullptr;
    --it;
    return it->span.contains(a) ? &*it : nullptr;
  }
  const Module* by_id(const ModuleId& id) const {
    for (const Module& m : modules) {
      if (m.id == id) return &m;
    }
    return nullptr;
  }
};

bool has_counters(std::size_t size) {
  return size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof(dl_phdr_info::dlpi_subs);
}

Generation loader_generation() {
  Generation g;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t size, void* data) -> int {
        auto* out = static_cast<Generation*>(data);
        if (has_counters(size)) *out = {info->dlpi_adds, info->dlpi_subs, true};
        return 1;  // the counters are the same in every entry: stop at the first
      },
      &g);
  return g;
}

std::string module_label(const char* name) {
  if (name != nullptr && name[0] != '\0') return name;
  return std::string("main program ") + program_invocation_name;
}

struct BuildState {
  ModuleTable* table;
  std::exception_ptr error;  // an allocation failure must not unwind through the C loader
};

int collect_module(dl_phdr_info* info, std::size_t size, void* data) {
  auto* state = static_cast<BuildState*>(data);
  try {
    if (has_counters(size) && !state->table->generation.known) {
      state->table->generation = {info->dlpi_adds, info->dlpi_subs, true};
    }
    Module m;
    m.bias = info->dlpi_addr;
    bool any_load = false;
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
      const ElfW(Phdr)& ph = info->dlpi_phdr[i];
      if (ph.p_type == PT_GNU_EH_FRAME) m.has_unwind_tables = true;
      if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
      const Range r{info->dlpi_addr + ph.p_vaddr, info->dlpi_addr + ph.p_vaddr + ph.p_memsz};
      m.span = any_load ? Range{std::min(m.span.begin, r.begin), std::max(m.span.end, r.end)} : r;
      any_load = true;
      if (ph.p_flags & PF_X) m.code.push_back(r);
    }
    if (!any_load) return 0;
    m.id = read_build_id(*info).value_or(ModuleId{});
    if (m.id.size == 0) m.id = digest_module(*info);
    m.label = module_label(info->dlpi_name);
    state->table->modules.push_back(std::move(m));
    return 0;
  } catch (...) {
    state->error = std::current_exception();
    return 1;
  }
}

std::shared_ptr<const ModuleTable> build_table() {
  auto table = std::make_shared<ModuleTable>();
  BuildState state{table.get(), nullptr};
  dl_iterate_phdr(collect_module, &state);
  if (state.error) std::rethrow_exception(state.error);
  std::sort(table->modules.begin(), table->modules.end(),
            [](const Module& a, const Module& b) { return a.span.begin < b.span.begin; });
  return table;
}

/// The cached table, shared by all threads. Leaked on purpose: trampolines of other modules
/// may unregister during static destruction, after this file's statics would be gone.
class ModuleCache {
 public:
  /// A table that is current as of this call. `refresh` forces a rescan (after a miss, in case
  /// the loader does not report its counters).
  std::shared_ptr<const ModuleTable> get(bool refresh = false) {
    const Generation now = loader_generation();
    if (!refresh) {
      std::shared_lock lock(mutex_);
      if (table_ && now.known && table_->generation == now) return table_;
    }
    std::unique_lock lock(mutex_);
    if (!refresh && table_ && now.known && table_->generation == now) return table_;
    table_ = build_table();
    return table_;
  }

 private:
  std::shared_mutex mutex_;
  std::shared_ptr<const ModuleTable> table_;
};

ModuleCache& module_cache() {
  static auto* cache = new ModuleCache;
  return *cache;
}

/// The module mapping `address`, looked up in `table` (refreshed once on a miss).
const Module* find_by_address(std::shared_ptr<const ModuleTable>& table, std::uintptr_t address) {
  table = module_cache().get();
  if (const Module* m = table->by_address(address)) return m;
  table = module_cache().get(/*refresh=*/true);
  return table->by_address(address);
}

/// The loaded module with identity `id`, or ProtocolError naming it.
const Module& find_by_id(std::shared_ptr<const ModuleTable>& table, const ModuleId& id) {
  table = module_cache().get();
  const Module* m = table->by_id(id);
  if (m == nullptr) {
    table = module_cache().get(/*refresh=*/true);
    m = table->by_id(id);
  }
  if (m == nullptr) {
    std::string ours;
    if (const Module* main = table->by_address(reinterpret_cast<std::uintptr_t>(&run_call))) {
      ours = "; this process runs " + main->label + " (" + describe(main->id) + ")";
    }
    throw ProtocolError("mproc: the call names code from module " + describe(id) +
                        ", which is not loaded in this process (pid " + std::to_string(::getpid()) +
                        "): workers must run the same binary" + ours);
  }
  return *m;
}

std::uintptr_t address_in(const Module& m, const CodeRef& ref) {
  const std::uintptr_t address = m.bias + static_cast<std::uintptr_t>(ref.offset);
  if (address < m.bias || !m.span.contains(address)) {  // first test: wrapped around
    throw ProtocolError("mproc: the call names offset " + hex_u64(ref.offset) + " in " + m.label +
                        " (" + describe(m.id) +
                        "), outside the module's loaded segments: the message is corrupt");
  }
  return address;
}

/// Empty when `address` can be called as a function of `m`, else why not.
std::string why_not_function_entry(const Module& m, std::uintptr_t address) {
  const bool in_code = std::any_of(m.code.begin(), m.code.end(),
                                   [&](const Range& r) { return r.contains(address); });
  if (!in_code) return "it is not in an executable segment";
  if (m.has_unwind_tables) {
    // _Unwind_FindEnclosingFunction looks up pc - 1 (it expects return addresses): pass the
    // byte after the candidate entry so the lookup covers the entry itself.
    void* start = _Unwind_FindEnclosingFunction(reinterpret_cast<void*>(address + 1));
    if (start == nullptr) {
      return "no unwind information covers it (compile the function with "
             "-fasynchronous-unwind-tables, the default on x86-64 and aarch64)";
    }
    if (reinterpret_cast<std::uintptr_t>(start) != address) {
      return "it points inside a function, not at its start";
    }
  }
  return {};
}

// ---- the trampoline registry ----------------------------------------------------------------

class Registry {
 public:
  void add(std::uintptr_t a) {
    std::unique_lock lock(mutex_);
    ++entries_[a];
  }
  void remove(std::uintptr_t a) noexcept {
    std::unique_lock lock(mutex_);
    if (auto it = entries_.find(a); it != entries_.end() && --it->second == 0) entries_.erase(it);
  }
  bool contains(std::uintptr_t a) const {
    std::shared_lock lock(mutex_);
    return entries_.find(a) != entries_.end();
  }

 private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::uintptr_t, unsigned> entries_;
};

// Leaked on purpose, so that registrations removed during static destruction (in any order
// relative to this file) still find it.
Registry& registry() {
  static auto* r = new Registry;
  return *r;
}

// Own little-endian helpers: the wire layout of a call is this file's, not the codec's.
void put_offset(Encoder& out, std::uint64_t v) {
  std::array<std::byte, 8> b;
  for (std::size_t i = 0; i < 8; ++i) b[i] = static_cast<std::byte>(v >> (8 * i));
  out.write_bytes(b.data(), b.size());
}

std::uint64_t get_offset(Decoder& in) {
  std::array<std::byte, 8> b;
  in.read_bytes(b.data(), b.size());
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= std::to_integer<std::uint64_t>(b[i]) << (8 * i);
  return v;
}

}  // namespace

// ---- code references ------------------------------------------------------------------------

CodeRef code_ref_of(std::uintptr_t address) {
  std::shared_ptr<const ModuleTable> table;
  const Module* m = find_by_address(table, address);
  if (m == nullptr) {
    throw UsageError("mproc: address " + hex_u64(address) +
                     " is not inside any loaded module (JIT-generated code cannot be sent to "
                     "another process)");
  }
  return CodeRef{m->id, address - m->bias};
}

std::uintptr_t resolve_address(const CodeRef& ref) {
  std::shared_ptr<const ModuleTable> table;
  return address_in(find_by_id(table, ref.module), ref);
}

/// Function entries this thread already checked, for the loader generation they were checked
/// in. The unwind-table lookup of why_not_function_entry costs about a microsecond, and a pool
/// encodes (parent) and decodes (worker) the same function pointer with every task. Thread-local:
/// no lock on the hot path; a dlopen/dlclose changes the generation and empties the cache.
class CheckedEntries {
 public:
  bool contains(const ModuleTable& table, std::uintptr_t address) const noexcept {
    if (!table.generation.known || !(table.generation == generation_)) return false;
    return std::find(entries_.begin(), entries_.end(), address) != entries_.end();
  }
  void add(const ModuleTable& table, std::uintptr_t address) noexcept {
    if (!table.generation.known) return;
    if (!(table.generation == generation_)) {
      generation_ = table.generation;
      entries_.fill(0);
    }
    entries_[next_] = address;
    next_ = (next_ + 1) % entries_.size();
  }

 private:
  Generation generation_;
  std::array<std::uintptr_t, 8> entries_{};
  std::size_t next_ = 0;
};

thread_local CheckedEntries t_checked_entries;

/// why_not_function_entry through this thread's cache of entries found good.
std::string why_not_function_entry_cached(const ModuleTable& table, const Module& m,
                                          std::uintptr_t address) {
  if (t_checked_entries.contains(table, address)) return {};
  std::string why = why_not_function_entry(m, address);
  if (why.empty()) t_checked_entries.add(table, address);
  return why;
}

CodeRef function_ref_of(std::uintptr_t address) {
  if (address == 0) throw UsageError("mproc: cannot send a call through a null function pointer");
  std::shared_ptr<const ModuleTable> table;
  const Module* m = find_by_address(table, address);
  if (m == nullptr) {
    throw UsageError("mproc: the function pointer " + hex_u64(address) +
                     " does not point into any loaded module (JIT-generated code cannot be "
                     "sent to another process)");
  }
  if (std::string why = why_not_function_entry_cached(*table, *m, address); !why.empty()) {
    throw UsageError("mproc: the function pointer " + hex_u64(address) + " into " + m->label +
                     " cannot be sent to another process: " + why);
  }
  return CodeRef{m->id, address - m->bias};
}

std::uintptr_t resolve_function_entry(const CodeRef& ref) {
  std::shared_ptr<const ModuleTable> table;
  const Module& m = find_by_id(table, ref.module);
  const std::uintptr_t address = address_in(m, ref);
  if (std::string why = why_not_function_entry_cached(*table, m, address); !why.empty()) {
    throw ProtocolError("mproc: the call's function pointer names offset " + hex_u64(ref.offset) +
                        " in " + m.label + " (" + describe(m.id) + "), but " + why +
                        ": the message is corrupt or comes from a different build");
  }
  return address;
}

void write_code_ref(Encoder& out, const CodeRef& ref) {
  const std::array<std::uint8_t, 2> head{static_cast<std::uint8_t>(ref.module.kind),
                                         ref.module.size};
  out.write_bytes(head.data(), head.size());
  out.write_bytes(ref.module.bytes.data(), ref.module.size);
  put_offset(out, ref.offset);
}

CodeRef read_code_ref(Decoder& in) {
  std::array<std::uint8_t, 2> head;
  in.read_bytes(head.data(), head.size());
  CodeRef ref;
  const std::size_t size = head[1];
  switch (head[0]) {
    case static_cast<std::uint8_t>(ModuleId::Kind::build_id):
      if (size == 0 || size > ModuleId::max_size) {
        throw ProtocolError("mproc: the call's module build-id has " + std::to_string(size) +
                            " bytes (expected 1 to " + std::to_string(ModuleId::max_size) +
                            "): the message is corrupt");
      }
      ref.module.kind = ModuleId::Kind::build_id;
      break;
    case static_cast<std::uint8_t>(ModuleId::Kind::content_digest):
      if (size != 16) {
        throw ProtocolError("mproc: the call's module digest has " + std::to_string(size) +
                            " bytes (expected 16): the message is corrupt");
      }
      ref.module.kind = ModuleId::Kind::content_digest;
      break;
    default:
      throw ProtocolError("mproc: the call names a module by an unknown kind of identity (" +
                          std::to_string(head[0]) + "): the message is corrupt");
  }
  ref.module.size = static_cast<std::uint8_t>(size);
  in.read_bytes(ref.module.bytes.data(), size);
  ref.offset = get_offset(in);
  return ref;
}

// ---- trampolines and calls ------------------------------------------------------------------

void register_trampoline(Trampoline entry) {
  registry().add(reinterpret_cast<std::uintptr_t>(entry));
}

void unregister_trampoline(Trampoline entry) noexcept {
  registry().remove(reinterpret_cast<std::uintptr_t>(entry));
}

Trampoline resolve_trampoline(const CodeRef& ref) {
  std::shared_ptr<const ModuleTable> table;
  const Module& m = find_by_id(table, ref.module);
  const std::uintptr_t address = address_in(m, ref);
  if (!registry().contains(address)) {
    throw ProtocolError("mproc: the call names offset " + hex_u64(ref.offset) + " in " + m.label +
                        " (" + describe(m.id) + "), which is not an mproc call entry in this " +
                        "process (pid " + std::to_string(::getpid()) +
                        "): the message is corrupt or comes from a different build");
  }
  return reinterpret_cast<Trampoline>(address);
}

void run_call(Decoder& in, Encoder* result) {
  std::uint8_t version = 0;
  in.read_bytes(&version, 1);
  if (version != call_wire_version) {
    throw ProtocolError("mproc: unsupported call wire version " + std::to_string(version) +
                        " (this process speaks " + std::to_string(call_wire_version) + ")");
  }
  const Trampoline entry = resolve_trampoline(read_code_ref(in));
  entry(in, result);
}

namespace {
thread_local std::vector<UniqueFd> t_retained_fds;
}

void retain_attached_fds(Encoder& out, Encoder::Mark since) {
  std::vector<int>& fds = out.fds();
  for (std::size_t i = since.fds; i < fds.size(); ++i) {
    UniqueFd copy = sys::dup(fds[i]);
    fds[i] = copy.get();
    t_retained_fds.push_back(std::move(copy));
  }
}

void release_retained_fds() noexcept {
  t_retained_fds.clear();
}

}  // namespace mproc::detail
