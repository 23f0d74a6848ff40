// type_name.hpp — compile-time type names and fingerprints (internal).
//
// type_name<T>() is the compiler's spelling of T, cut out of __PRETTY_FUNCTION__, e.g.
// "std::vector<int>" or "std::__cxx11::basic_string<char>". It is identical in every process
// running the same binary, which is all mproc needs: type_fingerprint<T>() (FNV-1a 64 of the
// name) tags every message so that a receiver expecting another type notices. Names are not
// portable across compilers; fingerprints are not a wire contract between different builds.
#pragma once

#include <cstdint>
#include <string_view>

namespace mproc::detail {

template <class T>
constexpr std::string_view type_name() noexcept {
#if defined(__clang__) || defined(__GNUC__)
  // GCC:   "... type_name() [with T = int; std::string_view = ...]"
  // Clang: "... type_name() [T = int]"
  constexpr std::string_view pretty = __PRETTY_FUNCTION__;
  constexpr std::string_view marker = "T = ";
  constexpr auto begin = pretty.find(marker) + marker.size();
  constexpr auto end = pretty.find_first_of(";]", begin);
  return pretty.substr(begin, end - begin);
#else
#error "mproc needs __PRETTY_FUNCTION__ (GCC or Clang) to name types"
#endif
}

/// FNV-1a, 64 bit: tiny, constexpr, and good enough to tell the types of one binary apart.
constexpr std::uint64_t fnv1a64(std::string_view text) noexcept {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

}  // namespace mproc::detail

namespace mproc {

/// The compiler's name for T (cv and references kept), e.g. "std::map<int, double>".
template <class T>
constexpr std::string_view type_name() noexcept {
  return detail::type_name<T>();
}

/// 64-bit tag of T that every process running the same binary computes identically.
template <class T>
constexpr std::uint64_t type_fingerprint() noexcept {
  return detail::fnv1a64(detail::type_name<T>());
}

}  // namespace mproc
