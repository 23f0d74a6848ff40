// Test main shared by every test binary: GoogleTest plus the leak check after every test.
#include <gtest/gtest.h>

#include "support/leak_check.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::UnitTest::GetInstance()->listeners().Append(new mproc::test::LeakCheckListener);
  return RUN_ALL_TESTS();
}
