// expect: cannot cross a process boundary
// A type with no serialize() and not trivially copyable cannot travel.
#include <mproc/pipe.hpp>

#include <string>

struct Opaque {
  std::string text;
};

int main() {
  auto [a, b] = mproc::Pipe();
  a.send(Opaque{"x"});
}
