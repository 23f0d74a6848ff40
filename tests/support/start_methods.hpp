// One test body, every start method: derive a fixture from EveryStartMethod, write TEST_P
// bodies that start processes with opts(), and instantiate with
// MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(Prefix, Fixture).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "mproc/process.hpp"

namespace mproc::test {

inline const char* start_method_name(StartMethod m) {
  switch (m) {
    case StartMethod::fork: return "fork";
    case StartMethod::forkserver: return "forkserver";
    case StartMethod::spawn: return "spawn";
  }
  return "unknown";
}

class EveryStartMethod : public ::testing::TestWithParam<StartMethod> {
 protected:
  ProcessOptions opts(std::string name = {}) const {
    return ProcessOptions{.name = std::move(name), .start = GetParam()};
  }
};

/// Joins `p` within `timeout`; a child still running then is killed and reported as a
/// deadlock (a test failure) instead of hanging the suite. Returns the exit code.
inline int join_within(Process& p, std::chrono::seconds timeout = std::chrono::seconds(30)) {
  if (!p.join_for(timeout)) {
    p.kill();
    p.join();
    ADD_FAILURE() << "deadlock: child " << p.name() << " still running after " << timeout.count()
                  << " s";
    return -999;
  }
  return p.exitcode().value_or(-998);
}

inline std::string start_method_param_name(const ::testing::TestParamInfo<StartMethod>& info) {
  return start_method_name(info.param);
}

}  // namespace mproc::test

#define MPROC_INSTANTIATE_FOR_EVERY_START_METHOD(prefix, fixture)                     \
  INSTANTIATE_TEST_SUITE_P(                                                           \
      prefix, fixture,                                                                \
      ::testing::Values(::mproc::StartMethod::fork, ::mproc::StartMethod::forkserver, \
                        ::mproc::StartMethod::spawn),                                 \
      ::mproc::test::start_method_param_name)
