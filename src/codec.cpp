// codec.cpp — the compiled parts of the codec: limits, descriptor hand-over, error messages,
// and the registry that names received types.
#include "mproc/codec.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace mproc {

namespace {

std::atomic<std::size_t> g_max_message_size{std::size_t{1} << 32};

std::string hex(std::uint64_t v) {
  char buffer[24];
  std::snprintf(buffer, sizeof buffer, "0x%016llx", static_cast<unsigned long long>(v));
  return buffer;
}

/// "a std::string", "an int".
std::string with_article(const std::string& name) {
  const char c = name.empty() ? 'x' : name.front();
  const bool vowel = c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
  return (vowel ? "an " : "a ") + name;
}

struct TypeRegistry {
  std::mutex mutex;
  std::unordered_map<std::uint64_t, std::string_view> names;
};

TypeRegistry& registry() {
  // Leaked on purpose: registrations run from static initialisers of any translation unit
  // and lookups may happen during static destruction.
  static auto* r = new TypeRegistry;
  return *r;
}

}  // namespace

std::size_t max_message_size() noexcept {
  return g_max_message_size.load(std::memory_order_relaxed);
}

void set_max_message_size(std::size_t bytes) {
  if (bytes == 0) {
    throw UsageError("set_max_message_size: the limit must be at least 1 byte (got 0)");
  }
  g_max_message_size.store(bytes, std::memory_order_relaxed);
}

void Encoder::write_bytes(const void* data, std::size_t n) {
  if (n == 0) return;
  const auto* p = static_cast<const std::byte*>(data);
  bytes_.insert(bytes_.end(), p, p + n);
}

std::uint32_t Encoder::attach_fd(int fd) {
  if (fd < 0) {
    throw UsageError("Encoder::attach_fd: descriptor must be >= 0 (got " + std::to_string(fd) +
                     ")");
  }
  if (fds_.size() >= UINT32_MAX) throw SerializationError("too many descriptors in one message");
  fds_.push_back(fd);
  return static_cast<std::uint32_t>(fds_.size() - 1);
}

detail::UniqueFd Decoder::take_fd(std::uint32_t index) {
  if (index >= fds_.size()) {
    throw ProtocolError("malformed message: it refers to descriptor #" + std::to_string(index) +
                        " but " + std::to_string(fds_.size()) + " arrived with it");
  }
  if (!fds_[index]) {
    throw ProtocolError("malformed message: descriptor #" + std::to_string(index) +
                        " is used twice or did not arrive");
  }
  return std::move(fds_[index]);
}

void Decoder::expect_end() const {
  if (remaining() != 0) {
    throw ProtocolError("malformed message: " + std::to_string(remaining()) +
                        " trailing byte(s) after the value (" + std::to_string(bytes_.size()) +
                        " bytes in all)");
  }
}

namespace detail {

void throw_truncated(std::size_t wanted, std::size_t remaining) {
  throw ProtocolError("truncated message: needed " + std::to_string(wanted) + " more byte(s), " +
                      std::to_string(remaining) + " left");
}

void throw_bad_count(std::uint64_t count, std::size_t element_size, std::size_t remaining) {
  throw ProtocolError("malformed message: a count of " + std::to_string(count) + " element(s) of " +
                      std::to_string(element_size) + " byte(s) does not fit in the " +
                      std::to_string(remaining) + " byte(s) left");
}

void throw_bad_bool(unsigned value) {
  throw ProtocolError("malformed message: a bool is encoded as " + std::to_string(value) +
                      " (only 0 and 1 are valid)");
}

void throw_too_deep() {
  throw ProtocolError("malformed message: values nested deeper than " +
                      std::to_string(max_nesting_depth) + " levels");
}

void throw_encode_too_deep() {
  throw SerializationError("cannot encode a value nested deeper than " +
                           std::to_string(max_nesting_depth) +
                           " levels (containers / serialize() calls); flatten it");
}

void throw_message_too_large(std::size_t size, std::string_view type) {
  throw SerializationError(
      "cannot send " + with_article(readable_type_name(type)) + " of " + std::to_string(size) +
      " bytes: over max_message_size() = " + std::to_string(max_message_size()) +
      "; raise it with mproc::set_max_message_size()");
}

void throw_message_over_limit(std::size_t size) {
  throw ProtocolError("message of " + std::to_string(size) +
                      " bytes exceeds max_message_size() = " + std::to_string(max_message_size()));
}

void throw_type_mismatch(std::uint64_t received, std::string_view expected) {
  const std::string want = with_article(readable_type_name(expected));
  const std::string_view got = registered_type_name(received);
  if (!got.empty()) {
    throw SerializationError("type mismatch: received " + with_article(readable_type_name(got)) +
                             " where " + want + " was expected");
  }
  throw SerializationError("type mismatch: received a value of another type (fingerprint " +
                           hex(received) + ") where " + want + " was expected");
}

void rethrow_as_decode_error(std::string_view type) {
  const std::string name = readable_type_name(type);
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const cereal::Exception& e) {
    throw ProtocolError("malformed message while decoding " + with_article(name) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    throw ProtocolError("malformed message: decoding " + with_article(name) + " ran out of memory");
  } catch (const std::length_error& e) {
    throw ProtocolError("malformed message while decoding " + with_article(name) + ": " + e.what());
  } catch (const std::exception& e) {
    // Thrown by user load code (e.g. a constructor validating its invariants).
    throw SerializationError("decoding " + with_article(name) + " failed: " + e.what());
  }
}

void rethrow_as_encode_error(std::string_view type) {
  try {
    throw;
  } catch (const cereal::Exception& e) {
    throw SerializationError("cannot encode " + with_article(readable_type_name(type)) + ": " +
                             e.what());
  }
}

void register_type_name(std::uint64_t fingerprint, std::string_view name) noexcept {
  try {
    TypeRegistry& r = registry();
    const std::lock_guard lock(r.mutex);
    r.names.emplace(fingerprint, name);
  } catch (...) {
    // Out of memory at start-up: mismatch errors will name only the expected type.
  }
}

std::string_view registered_type_name(std::uint64_t fingerprint) noexcept {
  TypeRegistry& r = registry();
  const std::lock_guard lock(r.mutex);
  const auto it = r.names.find(fingerprint);
  return it == r.names.end() ? std::string_view{} : it->second;
}

std::string readable_type_name(std::string_view name) {
  std::string s(name);
  const auto replace_all = [&s](std::string_view from, std::string_view to) {
    for (std::size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos)) {
      s.replace(pos, from.size(), to);
      pos += to.size();
    }
  };
  replace_all("std::__cxx11::", "std::");
  replace_all("std::basic_string<char>", "std::string");
  replace_all("std::basic_string<char, std::char_traits<char>, std::allocator<char> >",
              "std::string");
  replace_all("std::basic_string_view<char>", "std::string_view");
  replace_all("std::basic_string_view<char, std::char_traits<char> >", "std::string_view");
  return s;
}

}  // namespace detail
}  // namespace mproc
