// expect: captures state, which cannot travel to another process
// A capturing lambda cannot be encoded as a call: the worker would get a dangling reference.
#include <vector>

#include "mproc/detail/callable.hpp"

int main() {
  std::vector<int> data{1, 2, 3};
  mproc::Encoder out;
  mproc::detail::encode_call(
      out, [&data](int i) { return data[static_cast<unsigned>(i)]; }, 1);
}
