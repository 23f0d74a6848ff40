// expect: a T& parameter would only modify the worker's copy
// A function that writes through a non-const reference parameter would modify a decoded copy.
#include <vector>

#include "mproc/detail/callable.hpp"

void fill(std::vector<int>& out) {
  out.assign(3, 7);
}

int main() {
  std::vector<int> v;
  mproc::Encoder out;
  mproc::detail::encode_call(out, &fill, v);
}
