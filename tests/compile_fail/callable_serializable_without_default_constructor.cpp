// expect: has a serialize\(\) member, but the codec cannot decode it
// The worker decodes a function object's state into a default-constructed object.
#include <string>

#include "mproc/detail/callable.hpp"

struct Greeter {
  explicit Greeter(std::string greeting) : greeting_(std::move(greeting)) {}
  std::string greeting_;
  template <class Archive>
  void serialize(Archive& a) {
    a(greeting_);
  }
  std::string operator()(const std::string& name) const { return greeting_ + name; }
};

int main() {
  mproc::Encoder out;
  mproc::detail::encode_call(out, Greeter("hello "), std::string("world"));
}
