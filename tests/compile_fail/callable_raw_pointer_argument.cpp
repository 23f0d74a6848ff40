// expect: an argument is a raw pointer.*Send the value, not a pointer
// A raw pointer argument would point into the sender's memory in the worker.
#include "mproc/detail/callable.hpp"

int first(const int* values) {
  return values[0];
}

int main() {
  const int values[] = {1, 2, 3};
  mproc::Encoder out;
  mproc::detail::encode_call(out, &first, &values[0]);
}
