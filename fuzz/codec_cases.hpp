// codec_cases.hpp — the types the codec fuzz target decodes (fuzz/codec.cpp), one per index
// of its selector byte, shared with the corpus generator (tools/make_corpus.cpp). Append new
// cases at the end: an index names the same type in every checked-in input.
#pragma once

#include <array>
#include <bitset>
#include <chrono>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/pipe.hpp"

namespace mproc_fuzz {

struct Trivial {
  std::int32_t a;
  double b;
  char c[3];
};

struct Record {
  std::string name;
  std::vector<std::int32_t> values;
  std::optional<std::string> note;
  std::map<std::string, std::int32_t> tags;
  template <class A>
  void serialize(A& a) {
    a(name, values, note, tags);
  }
};

/// A recursive type: the input decides how deep it nests (bounded by max_nesting_depth).
struct Node {
  std::int32_t id = 0;
  std::vector<Node> children;
  template <class A>
  void serialize(A& a) {
    a(id, children);
  }
};

/// Takes no bytes on the wire: a count of them draws on the codec's zero-size allowance.
struct Empty {
  template <class A>
  void serialize(A& /*a*/) {}
};

enum class Compare { encoding, value, none };

template <class T, Compare How = Compare::encoding>
struct Case {
  using type = T;
  static constexpr Compare how = How;
};

using Cases = std::tuple<
    Case<std::int32_t>, Case<std::uint64_t>, Case<bool>, Case<double>, Case<Trivial>,
    Case<std::array<std::int16_t, 4>>, Case<std::string>, Case<std::vector<std::int32_t>>,
    Case<std::vector<double>>, Case<std::vector<Trivial>>, Case<std::vector<std::string>>,
    Case<std::vector<bool>>, Case<std::map<std::string, std::int32_t>>,
    Case<std::unordered_map<std::int32_t, std::string>, Compare::value>,
    Case<std::multimap<std::int32_t, std::int32_t>>, Case<std::set<std::string>>,
    Case<std::unordered_set<std::uint64_t>, Compare::value>, Case<std::optional<std::int32_t>>,
    Case<std::optional<std::string>>,
    Case<std::variant<std::monostate, std::int32_t, std::string, std::vector<std::int32_t>>>,
    Case<std::tuple<std::int32_t, std::string, bool>>,
    Case<std::pair<std::string, std::optional<double>>>,
    Case<std::vector<std::map<std::string, std::vector<std::int32_t>>>>,
    Case<std::map<std::int32_t, std::vector<std::optional<std::string>>>>,
    Case<std::deque<std::list<std::string>>>, Case<std::array<std::string, 3>>, Case<Record>,
    Case<Node>, Case<std::vector<Empty>>,
    Case<std::tuple<std::unique_ptr<std::string>, std::shared_ptr<std::vector<std::int32_t>>>>,
    Case<std::vector<mproc::Connection>, Compare::none>,
    Case<std::tuple<std::chrono::nanoseconds, std::complex<double>, std::bitset<70>>>,
    Case<std::map<std::string, std::variant<std::int64_t, std::string, std::vector<std::string>>>>,
    Case<std::optional<mproc::Connection>, Compare::none>>;

inline constexpr std::size_t kCases = std::tuple_size_v<Cases>;

}  // namespace mproc_fuzz
