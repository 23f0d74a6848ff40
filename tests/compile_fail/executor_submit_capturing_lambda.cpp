// expect: captures state, which cannot travel to another process
// Submitting a capturing lambda to an executor is a compile error that says what to do.
#include "mproc/executor.hpp"

int main() {
  mproc::ProcessPoolExecutor ex(1);
  int offset = 3;
  auto f = ex.submit([offset](int x) { return x + offset; }, 1);
  return f.get();
}
