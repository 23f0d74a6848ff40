// expect: a pointer/view would dangle in another process
// Pointers nested in containers are refused as well.
#include <map>
#include <string>

#include "mproc/codec.hpp"

int main() {
  std::map<std::string, const char*> names;
  mproc::Encoder out;
  mproc::encode_message(out, names);
}
