// expect: a pointer/view would dangle in another process
// Sending a std::string_view through a Connection would ship a dangling pointer.
#include <mproc/pipe.hpp>

#include <string_view>

int main() {
  auto [a, b] = mproc::Pipe();
  a.send(std::string_view("text"));
}
