// expect: a pointer/view would dangle in another process
// Sending a raw pointer: the address means nothing in the receiving process.
#include "mproc/codec.hpp"

int main() {
  int x = 1;
  int* p = &x;
  mproc::Encoder out;
  mproc::encode_message(out, p);
}
