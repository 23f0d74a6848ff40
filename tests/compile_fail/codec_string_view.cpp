// expect: a pointer/view would dangle in another process
// A std::string_view points into the sender's memory: send a std::string instead.
#include <string_view>

#include "mproc/codec.hpp"

int main() {
  std::string_view text = "hello";
  mproc::Encoder out;
  mproc::encode(out, text);
}
