#pragma once

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "support/process_census.hpp"

namespace mproc::test {

/// Everything a test could leak, at one moment.
struct Snapshot {
  std::set<int> fds;
  std::set<int> children;
  std::set<std::string> shm;  // /dev/shm/mproc*
  std::set<std::string> tmp;  // /tmp/mproc*
  static Snapshot take();
};

/// What exists now that did not exist in `before`, minus mproc's service resources; waits up
/// to 3 s for children to be reaped before reporting.
std::vector<std::string> leaks_since(const Snapshot& before);

class LeakCheckListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo& info) override;
  void OnTestEnd(const ::testing::TestInfo& info) override;
  void OnTestProgramEnd(const ::testing::UnitTest& unit) override;

 private:
  Snapshot before_;
  bool failed_ = false;
};

}  // namespace mproc::test
