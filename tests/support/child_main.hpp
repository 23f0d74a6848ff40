// Child programs inside a test binary: a test that must exec a fresh copy of its own binary
// registers a child main here and execs /proc/self/exe with MPROC_TEST_CHILD=<name> in the
// environment; the shared test main runs that function instead of the tests (after all static
// initialisers, like a real main) and exits with its return value.
#pragma once

#include <functional>
#include <map>
#include <string>

namespace mproc::test {

using ChildMain = int (*)();

inline std::map<std::string, ChildMain>& child_mains() {
  static std::map<std::string, ChildMain> mains;
  return mains;
}

struct RegisterChildMain {
  RegisterChildMain(const char* name, ChildMain fn) { child_mains()[name] = fn; }
};

inline constexpr const char* child_main_env = "MPROC_TEST_CHILD";

}  // namespace mproc::test

/// Defines `int name()` as a child main runnable with MPROC_TEST_CHILD=name.
#define MPROC_TEST_CHILD_MAIN(name)                                                \
  static int name();                                                               \
  static const ::mproc::test::RegisterChildMain name##_registration(#name, &name); \
  static int name()
