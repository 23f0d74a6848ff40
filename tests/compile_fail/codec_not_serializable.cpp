// expect: cannot cross a process boundary: it is not trivially copyable, has no serialize
// A struct with a std::string member and no serialize(): the error says what to add.
#include <string>

#include "mproc/codec.hpp"

struct Config {
  std::string name;
  int level = 0;
};

int main() {
  mproc::Decoder in({});
  static_cast<void>(mproc::decode<Config>(in));
}
