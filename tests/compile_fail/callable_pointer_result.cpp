// expect: the call's result cannot be sent back
// A task's result travels back to the caller: a pointer would point into the worker's memory.
#include "mproc/detail/callable.hpp"

int* find(int key) {
  static int table[4] = {};
  return &table[key & 3];
}

int main() {
  mproc::Encoder out;
  mproc::detail::encode_call(out, &find, 2);
}
