// codec.hpp — how values cross a process boundary.
//
// Concept: a value sent to another process (Process arguments, Pipe/Queue items, task
// arguments and results) is encoded into bytes plus file descriptors and decoded on the other
// side into an equal, independent value. Python counterpart: pickle — but resolved at compile
// time, and a type that cannot travel is a compile error saying what to do.
//
// Which encoding a type gets (first rule that applies; detail::kind_v<T> in archive.hpp):
//   1. mproc::handle_codec<T> is specialised  -> the handle codec (it may attach descriptors);
//      the receiver gets a handle to the same object (Connection, Lock, Queue, ...).
//   2. trivially copyable, not a pointer/view -> its bytes (one memcpy). Exceptions, because
//      some bit patterns are invalid and must be checked on decode: bool (one byte, 0 or 1),
//      std::optional and std::variant (rule 4 validates the discriminant).
//   3. std::vector / std::basic_string of rule-2 elements -> u64 count + one bulk memcpy.
//      std::vector, std::deque, std::list of other elements, and std::map, multimap, set,
//      multiset and their unordered forms -> u64 count + each element (key, then value),
//      decoded one by one: memory grows only as elements arrive, order is kept.
//   4. anything else cereal can serialise: optional, variant, tuple, pair, std::array of
//      non-trivial elements, unique_ptr, shared_ptr (non-polymorphic), ... and user types with
//      `template <class A> void serialize(A& a) { a(x, y); }` (or save/load members) and a
//      default constructor. Their fields go through these same rules.
//   5. anything else -> static_assert. Raw pointers, member pointers, std::string_view,
//      std::span, std::reference_wrapper are refused: they would dangle in another process.
//      (A pointer *inside* a trivially copyable struct cannot be detected: it is copied.)
//
// Guarantees: decoding never trusts its input. Truncated, corrupted or oversized input raises
// mproc::ProtocolError (a sender/receiver type mismatch raises SerializationError); it never
// crashes, never reads out of bounds, never recurses deeper than detail::max_nesting_depth,
// and never reserves memory for elements the input does not contain: every count is checked
// against the bytes that remain before anything is allocated, so one message costs memory
// proportional to its size (elements that take no bytes on the wire draw on a fixed 64 KiB
// allowance). A message larger than max_message_size() is refused on both sides.
//
// Wire format (detail::codec_version = 1; the Connection framing carries the version):
//
//     message   := fingerprint:u64 value        decode_message checks the fingerprint, then
//                                               that no byte is left over
//     fingerprint = FNV-1a 64 of the compiler's name of T (type_fingerprint<T>())
//
//     value, by rule:
//       rule 2     sizeof(T) bytes, native layout            bool: u8 0|1
//       rule 3     count:u64 count*sizeof(E) bytes           (vector<trivial>, basic_string)
//                  count:u64 element*                        (other sequences, sets)
//                  count:u64 (key value)*                    (maps)
//       rule 4     optional: engaged:u8 [value]      variant: index:i32 value
//                  unique_ptr: valid:u8 [value]      shared_ptr: id:u32 [value]
//                  tuple/pair/user type: fields in order, no names, no padding
//       rule 1     what handle_codec writes, e.g. index:u32 of a descriptor in fds()
//
//     std::vector<double>{1.5, 2.5}:
//     +------------------+------------------+-----------------------------+
//     | fingerprint: u64 | count = 2: u64   | 1.5: f64      | 2.5: f64    |
//     +------------------+------------------+-----------------------------+
//       bytes 0..7         bytes 8..15        bytes 16..31
//
// Counts and fingerprints are little-endian u64; other values keep the native layout, since
// both ends run the same binary on the same machine.
//
// Example:
//
//     mproc::Encoder out;
//     mproc::encode_message(out, std::map<std::string, int>{{"a", 1}});
//     mproc::Decoder in(out.bytes());
//     auto m = mproc::decode_message<std::map<std::string, int>>(in);
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "mproc/detail/type_name.hpp"
#include "mproc/detail/unique_fd.hpp"
#include "mproc/errors.hpp"

namespace mproc {

/// Largest message mproc accepts or produces (default 4 GiB). Decoding never allocates more
/// than this for one message.
std::size_t max_message_size() noexcept;
/// Sets the limit for this process (and children started afterwards). UsageError on 0.
void set_max_message_size(std::size_t bytes);

namespace detail {
[[noreturn]] void throw_truncated(std::size_t wanted, std::size_t remaining);
}  // namespace detail

/// Bytes being written, plus descriptors that travel beside them (SCM_RIGHTS over a
/// Connection, inheritance for spawn children). Descriptors are borrowed: the caller keeps
/// them open until the message has been sent.
class Encoder {
 public:
  /// Appends n bytes; the buffer grows geometrically. Out of line on purpose: inlined into a
  /// caller that has just constructed the Encoder, g++ 12 -O3 reports a false
  /// -Wstringop-overflow inside vector::insert.
  void write_bytes(const void* data, std::size_t n);
  void write_bytes(std::span<const std::byte> data) { write_bytes(data.data(), data.size()); }
  /// Adds a descriptor to travel with the message; returns its index for Decoder::take_fd.
  /// UsageError if fd is negative.
  std::uint32_t attach_fd(int fd);
  std::vector<std::byte>& bytes() noexcept { return bytes_; }
  const std::vector<std::byte>& bytes() const noexcept { return bytes_; }
  const std::vector<int>& fds() const noexcept { return fds_; }
  /// The attached descriptors, for a caller that replaces borrowed ones with owned copies.
  std::vector<int>& fds() noexcept { return fds_; }

  /// Makes room for `additional` more bytes without giving up geometric growth.
  void reserve(std::size_t additional) {
    const std::size_t need = bytes_.size() + additional;
    if (need > bytes_.capacity()) bytes_.reserve(std::max(need, 2 * bytes_.capacity()));
  }
  /// A position to rewind to, e.g. to drop a half-encoded message after an exception.
  struct Mark {
    std::size_t bytes = 0;
    std::size_t fds = 0;
  };
  Mark mark() const noexcept { return {bytes_.size(), fds_.size()}; }
  /// Drops every byte and descriptor added after `m` was taken.
  void rewind(Mark m) noexcept {
    if (m.bytes < bytes_.size()) bytes_.resize(m.bytes);
    if (m.fds < fds_.size()) fds_.resize(m.fds);
  }
  void clear() noexcept {
    bytes_.clear();
    fds_.clear();
  }

 private:
  std::vector<std::byte> bytes_;
  std::vector<int> fds_;
};

/// Reads a message produced by an Encoder. Every read is bounds-checked: running past the end
/// throws ProtocolError. Descriptors received with the message are owned by the caller's
/// span; take_fd moves one out.
class Decoder {
 public:
  explicit Decoder(std::span<const std::byte> bytes, std::span<detail::UniqueFd> fds = {}) noexcept
      : bytes_(bytes), fds_(fds) {}
  /// The next n bytes; ProtocolError if fewer remain.
  std::span<const std::byte> read_bytes(std::size_t n) {
    if (n > bytes_.size() - pos_) detail::throw_truncated(n, bytes_.size() - pos_);
    const auto out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  void read_bytes(void* out, std::size_t n) {
    const auto in = read_bytes(n);
    if (n != 0) std::memcpy(out, in.data(), n);
  }
  /// Moves out the descriptor at `index`; ProtocolError if absent or already taken.
  detail::UniqueFd take_fd(std::uint32_t index);
  std::size_t remaining() const noexcept { return bytes_.size() - pos_; }
  /// ProtocolError unless every byte was consumed.
  void expect_end() const;

 private:
  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
  std::span<detail::UniqueFd> fds_;
};

/// Customisation point for handle types (Connection, Lock, Queue, ...). Specialise it before
/// the first use of the type with the codec:
///
///     template <> struct mproc::handle_codec<MyHandle> {
///       static void encode(Encoder& out, const MyHandle& h);  // may attach_fd
///       static MyHandle decode(Decoder& in);                  // may take_fd
///     };
///
/// Handles nested in std::vector/deque/list need nothing more; nested in other containers
/// (map values, optional, ...) they must also be default-constructible and move-assignable.
template <class T>
struct handle_codec;

}  // namespace mproc

#include "mproc/detail/archive.hpp"

namespace mproc {

/// T (decayed) can be encoded and decoded. Usable in `if constexpr` / requires-clauses: it
/// never fires the static_asserts that encode/decode use to explain a refusal.
template <class T>
concept transferable = detail::transferable_v<std::decay_t<T>>;

/// Appends `value` (without fingerprint) to `out`.
template <class T>
void encode(Encoder& out, const T& value) {
  using U = std::remove_cvref_t<T>;
  detail::assert_transferable<U>();
  constexpr detail::Kind kind = detail::kind_v<U>;
  if constexpr (kind == detail::Kind::raw) {
    out.write_bytes(std::addressof(value), sizeof(U));
  } else if constexpr (kind == detail::Kind::boolean) {
    const unsigned char b = value ? 1 : 0;
    out.write_bytes(&b, 1);
  } else if constexpr (kind == detail::Kind::contiguous) {
    detail::write_contiguous(out, value);
  } else if constexpr (kind == detail::Kind::handle) {
    handle_codec<U>::encode(out, value);
  } else {
    try {
      detail::OutputArchive archive(out);
      archive.write(value);
    } catch (...) {
      detail::rethrow_as_encode_error(detail::type_name<U>());
    }
  }
}

/// Reads a value written by encode<T>. ProtocolError on malformed input.
template <class T>
T decode(Decoder& in) {
  static_assert(std::is_same_v<T, std::remove_cvref_t<T>>,
                "mproc::decode<T>: T must be a plain value type (no const, no reference)");
  detail::assert_transferable<T>();
  constexpr detail::Kind kind = detail::kind_v<T>;
  if constexpr (kind == detail::Kind::raw) {
    return detail::read_raw<T>(in);
  } else if constexpr (kind == detail::Kind::boolean) {
    return detail::read_bool(in);
  } else {
    try {
      if constexpr (kind == detail::Kind::contiguous) {
        T value;
        detail::read_contiguous(in, value);
        return value;
      } else if constexpr (kind == detail::Kind::handle) {
        return handle_codec<T>::decode(in);
      } else {
        detail::InputArchive archive(in);
        T value{};
        archive.read(value);
        return value;
      }
    } catch (...) {
      detail::rethrow_as_decode_error(detail::type_name<T>());
    }
  }
}

/// A whole message: the 8-byte fingerprint of T, then encode(value). SerializationError if
/// the message would exceed max_message_size(); on any exception `out` is left as it was.
template <class T>
void encode_message(Encoder& out, const T& value) {
  using U = std::remove_cvref_t<T>;
  detail::assert_transferable<U>();
  static_cast<void>(detail::type_registered<U>);
  const Encoder::Mark start = out.mark();
  try {
    out.reserve(8 + detail::encoded_size_hint(value));
    detail::put_u64_le(out, type_fingerprint<U>());
    encode(out, value);
    const std::size_t size = out.bytes().size() - start.bytes;
    if (size > max_message_size()) detail::throw_message_too_large(size, detail::type_name<U>());
  } catch (...) {
    out.rewind(start);
    throw;
  }
}

/// Reads a message written by encode_message<T>: SerializationError naming both types if it
/// holds another type, ProtocolError if it is malformed or has bytes left over.
template <class T>
T decode_message(Decoder& in) {
  static_assert(std::is_same_v<T, std::remove_cvref_t<T>>,
                "mproc::decode_message<T>: T must be a plain value type (no const, no reference)");
  detail::assert_transferable<T>();
  static_cast<void>(detail::type_registered<T>);
  if (in.remaining() > max_message_size()) detail::throw_message_over_limit(in.remaining());
  if (in.remaining() < 8) detail::throw_truncated(8, in.remaining());
  const std::uint64_t fingerprint = detail::get_u64_le(in);
  if (fingerprint != type_fingerprint<T>()) {
    detail::throw_type_mismatch(fingerprint, detail::type_name<T>());
  }
  T value = decode<T>(in);
  in.expect_end();
  return value;
}

}  // namespace mproc
