// Exceptions across a process boundary: the registry of rethrowable types, the wire record,
// and backtraces captured at the throw (interposed __cxa_throw) and symbolised on demand.
#include "mproc/detail/remote_exception.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <execinfo.h>
#include <link.h>

#include <algorithm>
#include <any>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

#include "detail/sys.hpp"
#include "mproc/codec.hpp"
#include "mproc/errors.hpp"
#include "mproc/log.hpp"

namespace mproc::detail {
namespace {

// ---- names ---------------------------------------------------------------------------------

std::string demangle(const char* mangled) {
  if (mangled == nullptr) return {};
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  if (status == 0 && out != nullptr) return std::string(out.get());
  return std::string(mangled);
}

/// Cuts `text` to at most `limit` bytes, marking the cut with "..." and never splitting a
/// UTF-8 sequence.
void cap_text(std::string& text, std::size_t limit) {
  if (text.size() <= limit) return;
  std::size_t end = limit - 3;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  text.resize(end);
  text += "...";
}

// ---- registry ------------------------------------------------------------------------------
// An append-only lock-free list: lookups never block, so a fork child that inherits the list
// while another parent thread was registering still works, and nothing is destroyed at exit
// (results may be decoded from atexit handlers).

struct Registration {
  std::string name;
  const std::type_info* type;
  ExceptionFactory factory;
  Registration* next;
};

std::atomic<Registration*> g_registrations{nullptr};

Registration* find_registration(std::string_view name) noexcept {
  for (Registration* r = g_registrations.load(std::memory_order_acquire); r != nullptr;
       r = r->next) {
    if (r->name == name) return r;
  }
  return nullptr;
}

void add_registration(const std::type_info& type, ExceptionFactory factory) {
  auto fresh =
      std::make_unique<Registration>(Registration{demangle(type.name()), &type, factory, nullptr});
  Registration* head = g_registrations.load(std::memory_order_acquire);
  for (;;) {
    for (Registration* r = head; r != nullptr; r = r->next) {
      if (r->name != fresh->name) continue;
      if (*r->type == type) return;  // registered already
      throw UsageError("register_exception: two different types are named \"" + fresh->name +
                       "\" (types in anonymous namespaces of different files?); exceptions "
                       "travel by name, so give them distinct names");
    }
    fresh->next = head;
    if (g_registrations.compare_exchange_weak(head, fresh.get(), std::memory_order_acq_rel)) {
      fresh.release();
      return;
    }
  }
}

template <class E>
void add_builtin() {
  add_registration(typeid(E), [](const std::string& what) {
    if constexpr (std::is_constructible_v<E, const std::string&>) {
      return std::make_exception_ptr(E(what));
    } else {
      static_cast<void>(what);
      return std::make_exception_ptr(E());
    }
  });
}

/// Registers the standard and mproc types once, before any lookup or user registration.
void ensure_builtins() {
  static const bool done = [] {
    add_builtin<std::logic_error>();
    add_builtin<std::invalid_argument>();
    add_builtin<std::domain_error>();
    add_builtin<std::length_error>();
    add_builtin<std::out_of_range>();
    add_builtin<std::runtime_error>();
    add_builtin<std::range_error>();
    add_builtin<std::overflow_error>();
    add_builtin<std::underflow_error>();
    add_builtin<std::bad_alloc>();
    add_builtin<std::bad_array_new_length>();
    add_builtin<std::bad_cast>();
    add_builtin<std::bad_typeid>();
    add_builtin<std::bad_function_call>();
    add_builtin<std::bad_optional_access>();
    add_builtin<std::bad_variant_access>();
    add_builtin<std::bad_any_cast>();
    add_builtin<std::bad_weak_ptr>();
    add_builtin<std::exception>();
    add_builtin<Error>();
    add_builtin<Cancelled>();
    add_builtin<PoolClosed>();
    add_builtin<BrokenPool>();
    add_builtin<ProtocolError>();
    add_builtin<SerializationError>();
    add_builtin<QueueClosed>();
    add_builtin<ConnectionClosed>();
    add_builtin<AuthenticationError>();
    add_builtin<TimeoutError>();
    add_builtin<BrokenBarrier>();
    add_builtin<UsageError>();
    return true;
  }();
  static_cast<void>(done);
}

// ---- backtrace capture ---------------------------------------------------------------------
// While a TaskScope is active, the interposed __cxa_throw records the thrown object, its type
// and the return addresses of the throw into a small per-thread ring. encode_exception looks
// the exception up by object address and type, so a backtrace is never attached to another
// exception than the one it was recorded for.

constexpr int kMaxFrames = 62;
constexpr std::size_t kRingSize = 4;

struct ThrowRecord {
  const void* object;
  const std::type_info* type;
  int frame_count;
  void* frames[kMaxFrames];
};

// Trivially initialised thread_locals: no TLS constructor runs inside __cxa_throw.
thread_local int t_scope_depth = 0;
thread_local unsigned t_next_record = 0;
thread_local ThrowRecord t_records[kRingSize];
/// Whether t_records holds anything since the last outermost TaskScope cleared it: a scope
/// around a task that threw nothing then costs two thread-local increments, nothing more
/// (map chunks open one per item).
thread_local bool t_records_dirty = false;

std::atomic<bool> g_backtrace_primed{false};

/// Records the current stack from the thrower's frame down: `thrower` is the return address
/// __cxa_throw was called with, so the frames of the machinery above it (this function,
/// __cxa_throw, a sanitizer's backtrace interceptor) stay out of the trace.
[[gnu::noinline]] void record_throw(void* object, const std::type_info* type,
                                    const void* thrower) noexcept {
  constexpr int kMachineryFrames = 4;
  void* frames[kMaxFrames + kMachineryFrames];
  const int n = ::backtrace(frames, kMaxFrames + kMachineryFrames);
  int first = 0;
  while (first < n && first < kMachineryFrames && frames[first] != thrower) ++first;
  if (first == n || frames[first] != thrower) first = 0;  // unexpected shape: keep it all
  ThrowRecord& r = t_records[t_next_record++ % kRingSize];
  t_records_dirty = true;
  r.object = object;
  r.type = type;
  r.frame_count = std::min(n - first, kMaxFrames);
  if (r.frame_count > 0) {
    std::memcpy(r.frames, frames + first, static_cast<std::size_t>(r.frame_count) * sizeof(void*));
  }
}

const ThrowRecord* find_record(const void* object, const std::type_info* type) noexcept {
  for (std::size_t i = 1; i <= kRingSize; ++i) {  // most recent first
    const ThrowRecord& r = t_records[(t_next_record - i) % kRingSize];
    if (r.object == nullptr || r.object != object) continue;
    if (type != nullptr && r.type != nullptr && *r.type != *type) continue;
    return &r;
  }
  return nullptr;
}

using CxaThrow = void (*)(void*, std::type_info*, void (*)(void*));
std::atomic<CxaThrow> g_real_cxa_throw{nullptr};

}  // namespace
}  // namespace mproc::detail

// Interposes the C++ runtime's __cxa_throw (libstdc++'s is found with dlsym(RTLD_NEXT): the
// sanitizer runtimes' interceptor when present, which then calls libstdc++'s). Weak, so that a
// program that defines its own, or links libstdc++ statically, keeps that one and simply gets
// no backtraces. Default visibility: the executable must export it for libstdc++'s own throws
// (std::vector::at, ...) to come through here too.
namespace __cxxabiv1 {
extern "C" __attribute__((visibility("default"), weak)) void __cxa_throw(
    void* object, std::type_info* type, void (*destructor)(void*)) {
  using mproc::detail::g_real_cxa_throw;
  if (mproc::detail::t_scope_depth > 0) {
    mproc::detail::record_throw(object, type, __builtin_return_address(0));
  }
  mproc::detail::CxaThrow real = g_real_cxa_throw.load(std::memory_order_acquire);
  if (real == nullptr) {
    void* symbol = ::dlsym(RTLD_NEXT, "__cxa_throw");
    std::memcpy(&real, &symbol, sizeof real);
    if (real == nullptr || real == &__cxa_throw) {
      mproc::detail::log(mproc::LogLevel::error,
                         "cannot find the C++ runtime's __cxa_throw behind mproc's; aborting");
      std::abort();
    }
    g_real_cxa_throw.store(real, std::memory_order_release);
  }
  real(object, type, destructor);
  __builtin_unreachable();
}
}  // namespace __cxxabiv1

namespace mproc::detail {
namespace {

// ---- symbolisation -------------------------------------------------------------------------
// Names come from the module's ELF symbol table (.symtab, else .dynsym), read from its file
// once and kept: dladdr alone sees only exported symbols, which leaves most of a program
// nameless. Tables are published on a lock-free list (fork-safe; never freed).

struct Symbol {
  std::uintptr_t start;  // relative to the module's load bias
  std::uintptr_t size;
  std::uint32_t name;  // offset in strings
};

struct SymbolTable {
  std::string path;
  std::uintptr_t bias = 0;
  std::vector<Symbol> symbols;  // sorted by start
  std::string strings;
  SymbolTable* next = nullptr;
};

std::atomic<SymbolTable*> g_symbol_tables{nullptr};

// Bounds that keep a damaged or hostile file from costing more than a big real binary.
constexpr std::uint64_t kMaxSymbolSection = 512ull << 20;

void read_at(int fd, void* out, std::size_t n, std::uint64_t offset) {
  auto* p = static_cast<char*>(out);
  while (n > 0) {
    const std::size_t got = sys::pread(fd, p, n, offset);
    if (got == 0) throw ProtocolError("ELF file is shorter than its headers say");
    p += got;
    n -= got;
    offset += got;
  }
}

/// Loads the function symbols of the ELF file at `path`; an empty table when it has none or
/// cannot be read (the trace then falls back to dladdr and offsets).
std::unique_ptr<SymbolTable> load_symbols(const std::string& path, std::uintptr_t bias) {
  auto table = std::make_unique<SymbolTable>();
  table->path = path;
  table->bias = bias;
  try {
    const UniqueFd fd = sys::open_read_only(path.c_str());
    const std::uint64_t file_size = sys::file_size(fd.get());
    ElfW(Ehdr) header;
    read_at(fd.get(), &header, sizeof header, 0);
    if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 ||
        header.e_shentsize != sizeof(ElfW(Shdr)) || header.e_shnum == 0 ||
        header.e_shoff > file_size ||
        header.e_shnum * sizeof(ElfW(Shdr)) > file_size - header.e_shoff) {
      return table;
    }
    std::vector<ElfW(Shdr)> sections(header.e_shnum);
    read_at(fd.get(), sections.data(), sections.size() * sizeof(ElfW(Shdr)), header.e_shoff);
    const ElfW(Shdr)* symtab = nullptr;
    for (const auto& s : sections) {
      if (s.sh_type == SHT_SYMTAB) symtab = &s;
    }
    if (symtab == nullptr) {
      for (const auto& s : sections) {
        if (s.sh_type == SHT_DYNSYM) symtab = &s;
      }
    }
    if (symtab == nullptr || symtab->sh_link >= sections.size() ||
        symtab->sh_entsize != sizeof(ElfW(Sym))) {
      return table;
    }
    const ElfW(Shdr)& strtab = sections[symtab->sh_link];
    const auto fits = [&](const ElfW(Shdr) & s) {
      return s.sh_size <= kMaxSymbolSection && s.sh_offset <= file_size &&
             s.sh_size <= file_size - s.sh_offset;
    };
    if (!fits(*symtab) || !fits(strtab) || strtab.sh_size > UINT32_MAX) return table;
    std::vector<ElfW(Sym)> symbols(symtab->sh_size / sizeof(ElfW(Sym)));
    read_at(fd.get(), symbols.data(), symbols.size() * sizeof(ElfW(Sym)), symtab->sh_offset);
    table->strings.resize(strtab.sh_size);
    read_at(fd.get(), table->strings.data(), table->strings.size(), strtab.sh_offset);
    if (table->strings.empty() || table->strings.back() != '\0') {
      table->strings.clear();
      return table;
    }
    for (const auto& s : symbols) {
      const unsigned kind = ELF64_ST_TYPE(s.st_info);
      if ((kind != STT_FUNC && kind != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF ||
          s.st_value == 0 || s.st_name == 0 || s.st_name >= table->strings.size()) {
        continue;
      }
      table->symbols.push_back({static_cast<std::uintptr_t>(s.st_value),
                                static_cast<std::uintptr_t>(s.st_size),
                                static_cast<std::uint32_t>(s.st_name)});
    }
    std::sort(table->symbols.begin(), table->symbols.end(),
              [](const Symbol& a, const Symbol& b) { return a.start < b.start; });
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    // No names from this file; the trace still shows module+offset.
    log(LogLevel::debug, std::string("backtrace: no symbols from ") + path + ": " + e.what());
    table->symbols.clear();
  }
  return table;
}

const SymbolTable& symbols_for(const std::string& path, std::uintptr_t bias) {
  SymbolTable* head = g_symbol_tables.load(std::memory_order_acquire);
  for (SymbolTable* t = head; t != nullptr; t = t->next) {
    if (t->bias == bias && t->path == path) return *t;
  }
  std::unique_ptr<SymbolTable> fresh = load_symbols(path, bias);
  for (;;) {
    fresh->next = head;
    if (g_symbol_tables.compare_exchange_weak(head, fresh.get(), std::memory_order_acq_rel)) {
      return *fresh.release();
    }
    // Another thread published meanwhile; ours may be a duplicate, which is harmless.
  }
}

struct Module {
  std::string path;   // file to read symbols from
  std::string shown;  // short name for the trace
  std::uintptr_t bias = 0;
  bool found = false;
};

Module module_of(std::uintptr_t pc) {
  struct Search {
    std::uintptr_t pc;
    Module module;
  } search{pc, {}};
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto* s = static_cast<Search*>(data);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          const std::uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
          if (s->pc < begin || s->pc - begin >= ph.p_memsz) continue;
          s->module.bias = info->dlpi_addr;
          s->module.found = true;
          const char* name = info->dlpi_name;
          if (name == nullptr || name[0] == '\0') {
            // The main program: its path in dlpi_name is empty.
            s->module.path = "/proc/self/exe";
            s->module.shown = program_invocation_short_name;
          } else {
            s->module.path = name;
            const char* slash = std::strrchr(name, '/');
            s->module.shown = slash != nullptr ? slash + 1 : name;
          }
          return 1;
        }
        return 0;
      },
      &search);
  return search.module;
}

std::string hex(std::uintptr_t value) {
  char buf[2 + 2 * sizeof value + 1];
  std::snprintf(buf, sizeof buf, "0x%jx", static_cast<std::uintmax_t>(value));
  return buf;
}

/// One line per frame: "#1  parse(std::string const&)+0x2c in app+0x41f2c".
std::string symbolise(const ThrowRecord& record) {
  std::string out;
  for (int i = 0; i < record.frame_count; ++i) {
    // A return address points after the call; pc - 1 is inside the calling function (for a
    // call to a noreturn function at a function's end, pc itself is in the next function).
    const auto pc = reinterpret_cast<std::uintptr_t>(record.frames[i]) - 1;
    // Appended piece by piece: g++ 12 -O3 reports a false -Wrestrict for `"#" + to_string`.
    out += '#';
    out += std::to_string(i);
    out += "  ";
    const Module module = module_of(pc);
    std::string function;
    std::uintptr_t function_offset = 0;
    if (module.found) {
      const SymbolTable& table = symbols_for(module.path, module.bias);
      const std::uintptr_t relative = pc - module.bias;
      auto it =
          std::upper_bound(table.symbols.begin(), table.symbols.end(), relative,
                           [](std::uintptr_t value, const Symbol& s) { return value < s.start; });
      if (it != table.symbols.begin()) {
        --it;
        if (relative - it->start < std::max<std::uintptr_t>(it->size, 1)) {
          function = demangle(table.strings.c_str() + it->name);
          function_offset = relative - it->start;
        }
      }
    }
    if (function.empty()) {
      Dl_info info{};
      if (::dladdr(reinterpret_cast<void*>(pc), &info) != 0 && info.dli_sname != nullptr) {
        function = demangle(info.dli_sname);
        function_offset = pc - reinterpret_cast<std::uintptr_t>(info.dli_saddr);
      }
    }
    if (function.empty()) {
      out += "??";
    } else {
      out += function;
      out += '+';
      out += hex(function_offset + 1);
    }
    if (module.found) {
      out += " in ";
      out += module.shown;
      out += '+';
      out += hex(pc + 1 - module.bias);
    } else {
      out += " at ";
      out += hex(pc + 1);
    }
    out += '\n';
    if (out.size() > kMaxExceptionText) break;
  }
  cap_text(out, kMaxExceptionText);
  return out;
}

// ---- wire ----------------------------------------------------------------------------------

constexpr unsigned char kTag = 'X';
constexpr unsigned char kVersion = 1;

void write_text(Encoder& out, const std::string& text) {
  const auto n = static_cast<std::uint32_t>(text.size());
  const unsigned char len[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                                static_cast<unsigned char>(n >> 16),
                                static_cast<unsigned char>(n >> 24)};
  out.write_bytes(len, sizeof len);
  out.write_bytes(text.data(), text.size());
}

std::string read_text(Decoder& in, const char* what) {
  unsigned char len[4];
  in.read_bytes(len, sizeof len);
  const std::uint32_t n = std::uint32_t{len[0]} | std::uint32_t{len[1]} << 8 |
                          std::uint32_t{len[2]} << 16 | std::uint32_t{len[3]} << 24;
  if (n > kMaxExceptionText) {
    throw ProtocolError(std::string("exception record: ") + what + " of " + std::to_string(n) +
                        " bytes exceeds the limit of " + std::to_string(kMaxExceptionText));
  }
  const auto bytes = in.read_bytes(n);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

/// The address of the thrown object an exception_ptr holds. Both C++ runtimes (libstdc++ and
/// libc++) represent exception_ptr as exactly that pointer; it is what __cxa_throw received.
const void* thrown_object(const std::exception_ptr& error) noexcept {
  static_assert(sizeof(std::exception_ptr) == sizeof(void*),
                "exception_ptr is expected to hold just the thrown object's address");
  const void* object = nullptr;
  std::memcpy(&object, &error, sizeof object);
  return object;
}

std::string current_type_name() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  return type != nullptr ? exception_type_name(*type) : std::string("<foreign exception>");
}

struct Description {
  std::string type_name;
  std::string message;
  const std::type_info* type = nullptr;
};

/// What the exception is, without letting anything it does (a throwing what()) escape.
Description describe(const std::exception_ptr& error) {
  Description d;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    d.type = &typeid(e);
    d.type_name = exception_type_name(typeid(e));
    try {
      const char* what = e.what();
      if (what != nullptr) d.message.assign(what, ::strnlen(what, kMaxExceptionText + 1));
    } catch (...) {
      d.message = "<what() threw " + current_type_name() + ">";
    }
  } catch (...) {
    d.type = abi::__cxa_current_exception_type();
    d.type_name = current_type_name();
  }
  cap_text(d.type_name, kMaxExceptionText);
  cap_text(d.message, kMaxExceptionText);
  return d;
}

}  // namespace

std::string exception_type_name(const std::type_info& type) {
  return demangle(type.name());
}

void register_exception_factory(const std::type_info& type, ExceptionFactory factory) {
  if (factory == nullptr) throw UsageError("register_exception_factory: factory is null");
  ensure_builtins();
  add_registration(type, factory);
}

TaskScope::TaskScope() noexcept {
  if (t_scope_depth++ == 0) {
    // A new task: earlier tasks' records can only cause false matches now.
    if (t_records_dirty) {
      for (auto& r : t_records) r.object = nullptr;
      t_records_dirty = false;
    }
    // glibc loads the unwinder on the first backtrace(); do it here rather than inside the
    // first throw (where memory may be short). A plain load first: no locked instruction on
    // the hot path.
    if (!g_backtrace_primed.load(std::memory_order_relaxed) &&
        !g_backtrace_primed.exchange(true, std::memory_order_relaxed)) {
      void* frame[1];
      static_cast<void>(::backtrace(frame, 1));
    }
  }
}

TaskScope::~TaskScope() {
  --t_scope_depth;
}

void encode_exception(Encoder& out, const std::exception_ptr& error) {
  if (!error) {
    throw UsageError("encode_exception: the exception_ptr is null (no exception to send)");
  }
  const Description d = describe(error);
  std::string backtrace;
  if (const ThrowRecord* record = find_record(thrown_object(error), d.type)) {
    try {
      backtrace = symbolise(*record);
    } catch (const std::exception& e) {
      // Only decoration: the exception itself still travels.
      log(LogLevel::debug, std::string("backtrace: cannot symbolise: ") + e.what());
      backtrace.clear();
    }
  }
  const Encoder::Mark start = out.mark();
  try {
    out.reserve(2 + 12 + d.type_name.size() + d.message.size() + backtrace.size());
    const unsigned char head[2] = {kTag, kVersion};
    out.write_bytes(head, sizeof head);
    write_text(out, d.type_name);
    write_text(out, d.message);
    write_text(out, backtrace);
  } catch (...) {
    out.rewind(start);
    throw;
  }
}

std::exception_ptr decode_exception(Decoder& in, std::int64_t pid, std::int64_t task_index) {
  unsigned char head[2];
  in.read_bytes(head, sizeof head);
  if (head[0] != kTag) {
    throw ProtocolError("exception record: bad tag " + std::to_string(head[0]) + " (expected " +
                        std::to_string(kTag) + ")");
  }
  if (head[1] != kVersion) {
    throw ProtocolError("exception record: unknown version " + std::to_string(head[1]));
  }
  std::string type_name = read_text(in, "type name");
  std::string message = read_text(in, "message");
  std::string backtrace = read_text(in, "backtrace");
  if (type_name.empty()) throw ProtocolError("exception record: empty type name");

  ensure_builtins();
  if (const Registration* r = find_registration(type_name)) {
    try {
      if (std::exception_ptr rebuilt = r->factory(message)) return rebuilt;
    } catch (...) {
      // E's constructor failed (out of memory?): the RemoteError below still tells the story.
    }
  }
  return std::make_exception_ptr(
      RemoteError(std::move(type_name), std::move(message), pid, task_index, std::move(backtrace)));
}

}  // namespace mproc::detail
