// Test main shared by every test binary: GoogleTest plus the leak check after every test, or
// a registered child main when the binary was exec'd as a child program (child_main.hpp).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "support/child_main.hpp"
#include "support/leak_check.hpp"

int main(int argc, char** argv) {
  if (const char* child = std::getenv(mproc::test::child_main_env)) {
    const auto& mains = mproc::test::child_mains();
    const auto it = mains.find(child);
    if (it == mains.end()) {
      std::fprintf(stderr, "no child main named %s in this test binary\n", child);
      return 125;
    }
    return it->second();
  }
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::UnitTest::GetInstance()->listeners().Append(new mproc::test::LeakCheckListener);
  return RUN_ALL_TESTS();
}
