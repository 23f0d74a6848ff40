// expect: captures cannot travel to the workers.*one-shot
// A Pool map of a capturing lambda must be refused at compile time, pointing to mproc::map.
#include <vector>

#include "mproc/pool.hpp"

int main() {
  mproc::Pool pool(1);
  int offset = 3;
  std::vector<int> in{1, 2};
  auto out = pool.map([&](int x) { return x + offset; }, in);
  return static_cast<int>(out.size());
}
