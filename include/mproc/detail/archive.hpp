// archive.hpp — the codec's type dispatch and its cereal archives (internal; include
// "mproc/codec.hpp" instead).
//
// kind_v<T> picks the encoding of T once, at compile time, and the same choice is made at the
// top level (mproc::encode/decode) and for values nested inside containers and user types:
// OutputArchive/InputArchive hide cereal's operator() so that every value cereal hands back
// to the archive — a map's keys, a user type's fields — goes through the same dispatch, and
// only cereal's own wrappers (size tags, name-value pairs, ...) and cereal-kind types reach
// cereal's machinery. The archives are modelled on cereal's BinaryOutputArchive and
// BinaryInputArchive, but write into an Encoder / read from a Decoder (no iostreams), and the
// input side is hardened: every read is bounds-checked, counts are checked against the bytes
// that remain before anything is allocated, bools must be 0 or 1, nesting is bounded.
//
// This header must see Encoder and Decoder: codec.hpp includes it after declaring them, and
// including it first includes codec.hpp (which in turn comes back here), hence the include
// guard below instead of #pragma once.
#include "mproc/codec.hpp"

#ifndef MPROC_DETAIL_ARCHIVE_HPP_
#define MPROC_DETAIL_ARCHIVE_HPP_

#include <cereal/cereal.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/base_class.hpp>
#include <cereal/types/bitset.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/common.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <array>
#include <bit>
#include <chrono>
#include <complex>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <initializer_list>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace mproc::detail {

/// Version of the encoding described in codec.hpp; the Connection framing carries it.
inline constexpr std::uint32_t codec_version = 1;
/// Deepest nesting of containers / user types the codec encodes or decodes. Bounds the
/// decoder's recursion so that a crafted message cannot overflow the stack.
inline constexpr std::size_t max_nesting_depth = 256;
/// A count may exceed the bytes left only for elements that take no bytes on the wire (empty
/// types). This many bytes of memory per message may be spent on such elements.
inline constexpr std::size_t zero_size_slack_bytes = 64 * 1024;

class OutputArchive;
class InputArchive;

// ---- errors (src/codec.cpp) ----------------------------------------------------------------
[[noreturn]] void throw_bad_count(std::uint64_t count, std::size_t element_size,
                                  std::size_t remaining);
[[noreturn]] void throw_bad_bool(unsigned value);
[[noreturn]] void throw_too_deep();
[[noreturn]] void throw_encode_too_deep();
[[noreturn]] void throw_message_too_large(std::size_t size, std::string_view type);
[[noreturn]] void throw_message_over_limit(std::size_t size);
[[noreturn]] void throw_type_mismatch(std::uint64_t received, std::string_view expected);
/// Called inside a catch handler: turns the exception in flight into the codec's error types
/// (cereal::Exception, bad_alloc, length_error -> ProtocolError; other std exceptions thrown
/// by user load code -> SerializationError; mproc::Error and foreign types unchanged).
[[noreturn]] void rethrow_as_decode_error(std::string_view type);
/// Same for encoding: cereal::Exception -> SerializationError.
[[noreturn]] void rethrow_as_encode_error(std::string_view type);

// ---- names of received types ---------------------------------------------------------------
// Every type that encode_message/decode_message is instantiated with registers its name at
// start-up, so that a process of the same binary can name the type it *received* in a
// mismatch error, not only the one it expected.
void register_type_name(std::uint64_t fingerprint, std::string_view name) noexcept;
/// The registered name for `fingerprint`, or an empty view.
std::string_view registered_type_name(std::uint64_t fingerprint) noexcept;
/// "std::__cxx11::basic_string<char>" -> "std::string", and similar spelling clean-ups.
std::string readable_type_name(std::string_view name);

template <class T>
inline const bool type_registered =
    (register_type_name(mproc::type_fingerprint<T>(), detail::type_name<T>()), true);

// ---- little-endian u64 ---------------------------------------------------------------------
inline void put_u64_le(Encoder& out, std::uint64_t v) {
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  out.write_bytes(&v, sizeof v);
}
inline std::uint64_t get_u64_le(Decoder& in) {
  std::uint64_t v;
  in.read_bytes(&v, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

// ---- type classification -------------------------------------------------------------------

/// Views: trivially copyable, but their value is an address that means nothing elsewhere.
template <class T>
struct is_view : std::false_type {};
template <class C, class Tr>
struct is_view<std::basic_string_view<C, Tr>> : std::true_type {};
template <class T, std::size_t N>
struct is_view<std::span<T, N>> : std::true_type {};
template <class T>
struct is_view<std::reference_wrapper<T>> : std::true_type {};
template <class T>
struct is_view<std::initializer_list<T>> : std::true_type {};

template <class T>
inline constexpr bool is_dangling_v = std::is_pointer_v<T> || std::is_member_pointer_v<T> ||
                                      std::is_reference_v<T> || is_view<T>::value;

/// Wrappers cereal creates internally and hands back to the archive; they hold references
/// (trivially copyable!) and must go to cereal's own processing, never be copied as bytes.
template <class T>
struct is_cereal_internal : std::false_type {};
template <class T>
struct is_cereal_internal<cereal::NameValuePair<T>> : std::true_type {};
template <class T>
struct is_cereal_internal<cereal::SizeTag<T>> : std::true_type {};
template <class T>
struct is_cereal_internal<cereal::BinaryData<T>> : std::true_type {};
template <class T>
struct is_cereal_internal<cereal::DeferredData<T>> : std::true_type {};
template <class K, class V>
struct is_cereal_internal<cereal::MapItem<K, V>> : std::true_type {};
template <class T>
struct is_cereal_internal<cereal::memory_detail::PtrWrapper<T>> : std::true_type {};
template <class T>
struct is_cereal_internal<cereal::base_class<T>> : std::true_type {};
template <class T>
struct is_cereal_internal<cereal::virtual_base_class<T>> : std::true_type {};

template <class T>
concept has_handle_codec = requires(Encoder& out, Decoder& in, const T& value) {
  mproc::handle_codec<T>::encode(out, value);
  { mproc::handle_codec<T>::decode(in) } -> std::same_as<T>;
};

/// Copying the bytes is a complete and safe encoding: trivially copyable, not an address, and
/// every bit pattern the input can hold is a valid value as far as we can tell (bool, optional
/// and variant have invalid patterns, so they are validated through other rules). Bools inside
/// a user's trivially copyable struct are not checked: the struct is opaque bytes.
template <class T>
struct raw_safe
    : std::bool_constant<std::is_object_v<T> && std::is_trivially_copyable_v<T> &&
                         !std::is_same_v<std::remove_cv_t<T>, bool> && !is_dangling_v<T> &&
                         !is_cereal_internal<T>::value && !has_handle_codec<T>> {};
template <class T>
struct raw_safe<std::optional<T>> : std::false_type {};
template <class... Ts>
struct raw_safe<std::variant<Ts...>> : std::false_type {};
template <class T, std::size_t N>
struct raw_safe<std::array<T, N>>
    : std::bool_constant<std::is_trivially_copyable_v<std::array<T, N>> && raw_safe<T>::value> {};
template <class T, std::size_t N>
struct raw_safe<T[N]> : raw_safe<T> {};
template <class A, class B>
struct raw_safe<std::pair<A, B>>
    : std::bool_constant<std::is_trivially_copyable_v<std::pair<A, B>> && raw_safe<A>::value &&
                         raw_safe<B>::value> {};
template <class... Ts>
struct raw_safe<std::tuple<Ts...>>
    : std::bool_constant<std::is_trivially_copyable_v<std::tuple<Ts...>> &&
                         (raw_safe<Ts>::value && ...)> {};

/// std::vector / std::basic_string of raw_safe elements: count + one bulk copy.
template <class T>
struct is_contiguous_raw : std::false_type {};
template <class E, class A>
struct is_contiguous_raw<std::vector<E, A>> : raw_safe<E> {};
template <class C, class Tr, class A>
struct is_contiguous_raw<std::basic_string<C, Tr, A>> : raw_safe<C> {};

/// Sequences decoded element by element with push_back, so that elements need no default
/// constructor (handles) and memory grows only as elements actually arrive.
template <class T>
struct sequence_traits {
  static constexpr bool value = false;
};
template <class E, class A>
struct sequence_traits<std::vector<E, A>> {
  static constexpr bool value = true;
  using element = E;
};
template <class E, class A>
struct sequence_traits<std::deque<E, A>> {
  static constexpr bool value = true;
  using element = E;
};
template <class E, class A>
struct sequence_traits<std::list<E, A>> {
  static constexpr bool value = true;
  using element = E;
};

/// Ordered and unordered maps and sets, decoded element by element and inserted at the end
/// (cereal's own map loading reverses the order of equal keys in a multimap).
template <class T>
struct associative_traits {
  static constexpr bool value = false;
};
template <class K, class V, bool Ordered>
struct associative_base {
  static constexpr bool value = true;
  static constexpr bool ordered = Ordered;
  static constexpr bool is_map = !std::is_void_v<V>;
  using key = K;
  using mapped = V;
};
template <class K, class V, class C, class A>
struct associative_traits<std::map<K, V, C, A>> : associative_base<K, V, true> {};
template <class K, class V, class C, class A>
struct associative_traits<std::multimap<K, V, C, A>> : associative_base<K, V, true> {};
template <class K, class C, class A>
struct associative_traits<std::set<K, C, A>> : associative_base<K, void, true> {};
template <class K, class C, class A>
struct associative_traits<std::multiset<K, C, A>> : associative_base<K, void, true> {};
template <class K, class V, class H, class E, class A>
struct associative_traits<std::unordered_map<K, V, H, E, A>> : associative_base<K, V, false> {};
template <class K, class V, class H, class E, class A>
struct associative_traits<std::unordered_multimap<K, V, H, E, A>> : associative_base<K, V, false> {
};
template <class K, class H, class E, class A>
struct associative_traits<std::unordered_set<K, H, E, A>> : associative_base<K, void, false> {};
template <class K, class H, class E, class A>
struct associative_traits<std::unordered_multiset<K, H, E, A>> : associative_base<K, void, false> {
};

/// std::array and C arrays whose elements are not raw_safe (e.g. bool, std::string): each
/// element through the dispatch (cereal would copy an array of bool as unchecked bytes).
template <class T>
struct fixed_array_traits {
  static constexpr bool value = false;
};
template <class E, std::size_t N>
struct fixed_array_traits<std::array<E, N>> {
  static constexpr bool value = true;
  using element = E;
};
template <class E, std::size_t N>
struct fixed_array_traits<E[N]> {
  static constexpr bool value = true;
  using element = E;
};

enum class Kind {
  handle,           // handle_codec<T>
  cereal_internal,  // cereal's wrappers, processed by cereal (only seen inside archives)
  dangling,         // pointer or view: refused
  boolean,          // one byte, 0 or 1
  raw,              // sizeof(T) bytes
  contiguous,       // u64 count + bulk bytes
  sequence,         // u64 count + elements, decoded with push_back
  associative,      // u64 count + keys (and values), inserted one by one
  fixed_array,      // N elements, each through the dispatch
  cereal,           // cereal's serialisation of std types and user serialize()
  unsupported,      // refused
};

template <class T>
constexpr Kind compute_kind() noexcept;
template <class T>
inline constexpr Kind kind_v = compute_kind<T>();

constexpr bool is_transferable_kind(Kind kind) noexcept {
  return kind != Kind::dangling && kind != Kind::unsupported && kind != Kind::cereal_internal;
}
template <class T>
inline constexpr bool transferable_v = is_transferable_kind(kind_v<T>);

/// Elements that cereal loads in place (into a default-constructed object).
template <class T>
inline constexpr bool in_place_ok_v = transferable_v<T> && (kind_v<T> != Kind::handle ||
                                                            (std::is_default_constructible_v<T> &&
                                                             std::is_move_assignable_v<T>));

/// For std templates that cereal serialises: can their elements travel? Other types: yes,
/// cereal's own detection decides.
template <class T>
struct elements_ok : std::true_type {};
template <class T, std::size_t N>
struct elements_ok<std::array<T, N>> : std::bool_constant<in_place_ok_v<T>> {};
template <class T>
struct elements_ok<std::optional<T>> : std::bool_constant<in_place_ok_v<T>> {};
template <class... Ts>
struct elements_ok<std::variant<Ts...>> : std::bool_constant<(in_place_ok_v<Ts> && ...)> {};
template <class... Ts>
struct elements_ok<std::tuple<Ts...>> : std::bool_constant<(in_place_ok_v<Ts> && ...)> {};
template <class A, class B>
struct elements_ok<std::pair<A, B>> : std::bool_constant<in_place_ok_v<A> && in_place_ok_v<B>> {};
template <class T, class D>
struct elements_ok<std::unique_ptr<T, D>>
    : std::bool_constant<std::is_same_v<D, std::default_delete<T>> && !std::is_array_v<T> &&
                         !std::is_polymorphic_v<T> && in_place_ok_v<T>> {};
template <class T>
struct elements_ok<std::shared_ptr<T>>
    : std::bool_constant<!std::is_array_v<T> && !std::is_polymorphic_v<T> && in_place_ok_v<T>> {};
template <class T>
struct elements_ok<std::weak_ptr<T>> : std::false_type {};  // would dangle without its owner

template <class T>
constexpr bool cereal_ok() noexcept {
  if constexpr (!std::is_class_v<T> || std::is_abstract_v<T> ||
                !std::is_default_constructible_v<T>) {
    return false;
  } else {
    return cereal::traits::detail::count_output_serializers<T, OutputArchive>::value == 1 &&
           cereal::traits::detail::count_input_serializers<T, InputArchive>::value == 1 &&
           elements_ok<T>::value;
  }
}

template <class T>
constexpr Kind compute_kind() noexcept {
  if constexpr (has_handle_codec<T>) {
    return Kind::handle;
  } else if constexpr (is_cereal_internal<T>::value) {
    return Kind::cereal_internal;
  } else if constexpr (is_dangling_v<T>) {
    return Kind::dangling;
  } else if constexpr (!std::is_object_v<T> || std::is_const_v<T> || std::is_volatile_v<T>) {
    return Kind::unsupported;
  } else if constexpr (std::is_same_v<T, bool>) {
    return Kind::boolean;
  } else if constexpr (raw_safe<T>::value) {
    return Kind::raw;
  } else if constexpr (is_contiguous_raw<T>::value) {
    return Kind::contiguous;
  } else if constexpr (sequence_traits<T>::value) {
    return transferable_v<typename sequence_traits<T>::element> ? Kind::sequence
                                                                : Kind::unsupported;
  } else if constexpr (fixed_array_traits<T>::value) {
    return in_place_ok_v<typename fixed_array_traits<T>::element> ? Kind::fixed_array
                                                                  : Kind::unsupported;
  } else if constexpr (associative_traits<T>::value) {
    using A = associative_traits<T>;
    if constexpr (A::is_map) {
      return transferable_v<typename A::key> && transferable_v<typename A::mapped>
                 ? Kind::associative
                 : Kind::unsupported;
    } else {
      return transferable_v<typename A::key> ? Kind::associative : Kind::unsupported;
    }
  } else if constexpr (cereal_ok<T>()) {
    return Kind::cereal;
  } else {
    return Kind::unsupported;
  }
}

/// Does T hold a pointer or view somewhere a std container can reach? Only chooses which
/// refusal message a non-transferable type gets.
template <class T>
struct contains_dangling : std::bool_constant<is_dangling_v<T>> {};
template <template <class...> class C, class... Ts>
struct contains_dangling<C<Ts...>>
    : std::bool_constant<is_view<C<Ts...>>::value || (contains_dangling<Ts>::value || ...)> {};
template <class T, std::size_t N>
struct contains_dangling<std::array<T, N>> : contains_dangling<T> {};
template <class T, std::size_t N>
struct contains_dangling<std::span<T, N>> : std::true_type {};
template <class T, std::size_t N>
struct contains_dangling<T[N]> : std::true_type {};  // decays to a pointer at the boundary

/// The compile-time refusal, placed where the user's encode/decode/send/submit instantiates
/// it, so that the error points at their call.
template <class T>
constexpr void assert_transferable() noexcept {
  static_assert(!std::is_array_v<T>,
                "mproc: a C array (or string literal) cannot cross a process boundary as a "
                "value: it decays to a pointer, which would dangle in another process; send a "
                "std::array<T, N>, a std::vector<T>, or a std::string for text");
  static_assert(!contains_dangling<T>::value || transferable_v<T>,
                "mproc: this value cannot cross a process boundary: it is or holds a raw "
                "pointer, member pointer, reference or view (std::string_view, std::span, "
                "std::reference_wrapper, C array); a pointer/view would dangle in another "
                "process; send the value it points to (e.g. std::string instead of "
                "std::string_view, std::vector<T> instead of std::span<T>, std::array instead "
                "of a C array)");
  static_assert(contains_dangling<T>::value || transferable_v<T>,
                "mproc: T cannot cross a process boundary: it is not trivially copyable, has "
                "no serialize() member for cereal, and is not an mproc handle. Add `template "
                "<class A> void serialize(A& a) { a(field1, field2); }` to it (and a default "
                "constructor), or pass the data it holds instead.");
}

/// For a value nested in a container or user type, where a C array field is fine.
template <class T>
constexpr void assert_field_transferable() noexcept {
  if constexpr (std::is_array_v<T>) {
    assert_field_transferable<std::remove_extent_t<T>>();
  } else {
    assert_transferable<T>();
  }
}

// ---- bulk paths shared by the top level and the archives ------------------------------------

template <class T>
T read_raw(Decoder& in) {
  // bit_cast needs no default constructor and no alignment of the source bytes.
  std::array<std::byte, sizeof(T)> buffer;
  in.read_bytes(buffer.data(), sizeof(T));
  return std::bit_cast<T>(buffer);
}

inline bool read_bool(Decoder& in) {
  unsigned char b;
  in.read_bytes(&b, 1);
  if (b > 1) throw_bad_bool(b);  // loading any other byte into a bool is undefined behaviour
  return b == 1;
}

template <class C>
void write_contiguous(Encoder& out, const C& range) {
  using E = typename C::value_type;
  const std::size_t bytes = range.size() * sizeof(E);
  out.reserve(sizeof(std::uint64_t) + bytes);
  put_u64_le(out, range.size());
  out.write_bytes(range.data(), bytes);
}

template <class C>
void read_contiguous(Decoder& in, C& range) {
  using E = typename C::value_type;
  const std::uint64_t count = get_u64_le(in);
  // Checked before allocating: the elements must all be in the bytes that remain.
  if (count > in.remaining() / sizeof(E)) throw_bad_count(count, sizeof(E), in.remaining());
  const auto n = static_cast<std::size_t>(count);
  const std::span<const std::byte> src = in.read_bytes(n * sizeof(E));
  if (reinterpret_cast<std::uintptr_t>(src.data()) % alignof(E) == 0) {
    // One allocation + one memmove. The bytes were written by memcpy/recv into a byte
    // buffer, which implicitly created the E objects read here.
    const E* first = reinterpret_cast<const E*>(src.data());
    range.assign(first, first + n);
  } else if constexpr (std::is_default_constructible_v<E>) {
    range.resize(n);
    if (n != 0) std::memcpy(range.data(), src.data(), n * sizeof(E));
  } else {
    range.clear();
    range.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      std::array<std::byte, sizeof(E)> one;
      std::memcpy(one.data(), src.data() + i * sizeof(E), sizeof(E));
      range.push_back(std::bit_cast<E>(one));
    }
  }
}

/// Bytes to reserve up front for a value (exact for the bulk kinds, 0 when unknown).
template <class T>
std::size_t encoded_size_hint(const T& value) noexcept {
  using U = std::remove_cvref_t<T>;
  if constexpr (kind_v<U> == Kind::raw || kind_v<U> == Kind::boolean) {
    return sizeof(U);
  } else if constexpr (kind_v<U> == Kind::contiguous) {
    return sizeof(std::uint64_t) + value.size() * sizeof(typename U::value_type);
  } else {
    return 0;
  }
}

// ---- archives ------------------------------------------------------------------------------

/// Counts nesting for the lifetime of one level; throws past max_nesting_depth.
class NestingGuard {
 public:
  NestingGuard(std::size_t& depth, bool decoding) : depth_(depth) {
    if (depth_ >= max_nesting_depth) decoding ? throw_too_deep() : throw_encode_too_deep();
    ++depth_;
  }
  ~NestingGuard() { --depth_; }
  NestingGuard(const NestingGuard&) = delete;
  NestingGuard& operator=(const NestingGuard&) = delete;

 private:
  std::size_t& depth_;
};

/// cereal output archive writing into an Encoder (cf. cereal::BinaryOutputArchive).
class OutputArchive : public cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision> {
  using Base = cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision>;

 public:
  explicit OutputArchive(Encoder& out) : Base(this), out_(out) {}
  OutputArchive(const OutputArchive&) = delete;
  OutputArchive& operator=(const OutputArchive&) = delete;

  Encoder& encoder() noexcept { return out_; }
  void saveBinary(const void* data, std::size_t size) { out_.write_bytes(data, size); }

  // cereal calls these on the archive (serialize members, container save functions); hiding
  // the base versions routes every value through write().
  template <class... Ts>
  OutputArchive& operator()(Ts&&... values) {
    (write(values), ...);
    return *this;
  }
  template <class T>
  OutputArchive& operator&(T&& value) {
    write(value);
    return *this;
  }
  template <class T>
  OutputArchive& operator<<(T&& value) {
    write(value);
    return *this;
  }

  template <class T>
  void write(const T& value) {
    using U = std::remove_cv_t<T>;
    constexpr Kind kind = kind_v<U>;
    if constexpr (kind != Kind::cereal_internal) assert_field_transferable<U>();
    if constexpr (kind == Kind::raw) {
      out_.write_bytes(std::addressof(value), sizeof(U));
    } else if constexpr (kind == Kind::boolean) {
      const unsigned char b = value ? 1 : 0;
      out_.write_bytes(&b, 1);
    } else if constexpr (kind == Kind::contiguous) {
      write_contiguous(out_, value);
    } else if constexpr (kind == Kind::handle) {
      mproc::handle_codec<U>::encode(out_, value);
    } else if constexpr (kind == Kind::cereal_internal) {
      Base::operator()(value);
    } else if constexpr (kind == Kind::sequence) {
      using E = typename sequence_traits<U>::element;
      NestingGuard guard(depth_, false);
      put_u64_le(out_, value.size());
      for (auto&& element : value) write<E>(element);
    } else if constexpr (kind == Kind::fixed_array) {
      using E = typename fixed_array_traits<U>::element;
      NestingGuard guard(depth_, false);
      for (const auto& element : value) write<E>(element);
    } else if constexpr (kind == Kind::associative) {
      using A = associative_traits<U>;
      NestingGuard guard(depth_, false);
      put_u64_le(out_, value.size());
      for (const auto& element : value) {
        if constexpr (A::is_map) {
          write<typename A::key>(element.first);
          write<typename A::mapped>(element.second);
        } else {
          write<typename A::key>(element);
        }
      }
    } else if constexpr (kind == Kind::cereal) {
      NestingGuard guard(depth_, false);
      Base::operator()(value);
    }
  }

 private:
  Encoder& out_;
  std::size_t depth_ = 0;
};

/// cereal input archive reading from a Decoder (cf. cereal::BinaryInputArchive), hardened
/// against any input.
class InputArchive : public cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision> {
  using Base = cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision>;

 public:
  explicit InputArchive(Decoder& in) : Base(this), in_(in) {}
  InputArchive(const InputArchive&) = delete;
  InputArchive& operator=(const InputArchive&) = delete;

  Decoder& decoder() noexcept { return in_; }
  void loadBinary(void* data, std::size_t size) { in_.read_bytes(data, size); }

  template <class... Ts>
  InputArchive& operator()(Ts&&... values) {
    (read(std::forward<Ts>(values)), ...);
    return *this;
  }
  template <class T>
  InputArchive& operator&(T&& value) {
    read(std::forward<T>(value));
    return *this;
  }
  template <class T>
  InputArchive& operator>>(T&& value) {
    read(std::forward<T>(value));
    return *this;
  }

  template <class T>
  void read(T&& value) {
    using U = std::remove_cvref_t<T>;
    constexpr Kind kind = kind_v<U>;
    if constexpr (kind != Kind::cereal_internal) assert_field_transferable<U>();
    if constexpr (kind == Kind::raw) {
      in_.read_bytes(std::addressof(value), sizeof(U));
    } else if constexpr (kind == Kind::boolean) {
      value = read_bool(in_);
    } else if constexpr (kind == Kind::contiguous) {
      read_contiguous(in_, value);
    } else if constexpr (kind == Kind::handle) {
      value = mproc::handle_codec<U>::decode(in_);
    } else if constexpr (kind == Kind::cereal_internal) {
      Base::operator()(std::forward<T>(value));
    } else if constexpr (kind == Kind::sequence) {
      NestingGuard guard(depth_, true);
      read_sequence(value);
    } else if constexpr (kind == Kind::fixed_array) {
      NestingGuard guard(depth_, true);
      for (auto& element : value) read(element);
    } else if constexpr (kind == Kind::associative) {
      NestingGuard guard(depth_, true);
      read_associative(value);
    } else if constexpr (kind == Kind::cereal) {
      NestingGuard guard(depth_, true);
      Base::operator()(value);
    }
  }

  /// Validates a count of elements about to be read: each element takes at least one byte,
  /// except empty types, which draw on a per-message allowance. Throws before any allocation.
  void check_count(std::uint64_t count, std::size_t element_size) {
    const std::size_t remaining = in_.remaining();
    if (count <= remaining) return;
    const std::uint64_t excess = count - remaining;
    const std::size_t unit = element_size == 0 ? 1 : element_size;
    if (excess > zero_slack_ / unit) throw_bad_count(count, element_size, remaining);
    zero_slack_ -= static_cast<std::size_t>(excess) * unit;
  }

 private:
  template <class S>
  void read_sequence(S& seq) {
    using E = typename sequence_traits<S>::element;
    const std::uint64_t count = get_u64_le(in_);
    check_count(count, sizeof(E));
    seq.clear();
    if constexpr (requires { seq.reserve(std::size_t{}); }) {
      // Reserve only what the remaining bytes could hold in memory; beyond that the
      // sequence grows as elements actually arrive.
      seq.reserve(
          std::min<std::size_t>(static_cast<std::size_t>(count), in_.remaining() / sizeof(E)));
    }
    for (std::uint64_t i = 0; i < count; ++i) {
      if constexpr (kind_v<E> == Kind::handle || kind_v<E> == Kind::boolean) {
        seq.push_back(make<E>());
      } else {
        read(seq.emplace_back());  // in place: no move of a large element
      }
    }
  }

  template <class C>
  void read_associative(C& container) {
    using A = associative_traits<C>;
    using K = typename A::key;
    const std::uint64_t count = get_u64_le(in_);
    check_count(count, A::is_map ? sizeof(typename C::value_type) : sizeof(K));
    container.clear();
    for (std::uint64_t i = 0; i < count; ++i) {
      K key = make<K>();
      if constexpr (A::is_map) {
        typename A::mapped mapped = make<typename A::mapped>();
        if constexpr (A::ordered) {
          // Keys arrive sorted: inserting at the end is O(1) and keeps equal keys in order.
          container.emplace_hint(container.end(), std::move(key), std::move(mapped));
        } else {
          container.emplace(std::move(key), std::move(mapped));
        }
      } else if constexpr (A::ordered) {
        container.emplace_hint(container.end(), std::move(key));
      } else {
        container.emplace(std::move(key));
      }
    }
  }

  /// A fresh element read from the input (handles need no default constructor).
  template <class E>
  E make() {
    if constexpr (kind_v<E> == Kind::handle) {
      return mproc::handle_codec<E>::decode(in_);
    } else if constexpr (kind_v<E> == Kind::boolean) {
      return read_bool(in_);
    } else if constexpr (kind_v<E> == Kind::raw) {
      return read_raw<E>(in_);
    } else {
      E element{};
      read(element);
      return element;
    }
  }

  Decoder& in_;
  std::size_t depth_ = 0;
  std::size_t zero_slack_ = zero_size_slack_bytes;
};

// ---- the save/load overloads cereal looks up for our archives -------------------------------
// (the same set cereal's binary archive defines)

template <class T>
requires std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const T& value) {
  ar.write(value);
}
template <class T>
requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, T& value) {
  ar.read(value);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const cereal::NameValuePair<T>& nvp) {
  ar(nvp.value);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::NameValuePair<T>& nvp) {
  ar(nvp.value);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const cereal::SizeTag<T>& tag) {
  put_u64_le(ar.encoder(), static_cast<std::uint64_t>(tag.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::SizeTag<T>& tag) {
  using Size = std::remove_reference_t<T>;
  const std::uint64_t size = get_u64_le(ar.decoder());
  // Containers cereal loads (map, set, unordered_*) allocate per element as elements arrive,
  // or reserve buckets; 16 bytes is a conservative cost for an empty element.
  ar.check_count(size, 16);
  if constexpr (sizeof(Size) < sizeof(std::uint64_t)) {
    if (size > std::numeric_limits<Size>::max())
      throw_bad_count(size, 16, ar.decoder().remaining());
  }
  tag.size = static_cast<Size>(size);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const cereal::BinaryData<T>& data) {
  ar.saveBinary(data.data, static_cast<std::size_t>(data.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::BinaryData<T>& data) {
  ar.loadBinary(data.data, static_cast<std::size_t>(data.size));
}

}  // namespace mproc::detail

CEREAL_SETUP_ARCHIVE_TRAITS(mproc::detail::InputArchive, mproc::detail::OutputArchive)

#endif  // MPROC_DETAIL_ARCHIVE_HPP_
