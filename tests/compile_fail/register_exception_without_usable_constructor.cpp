// expect: needs a constructor taking the message
// The receiving process rebuilds a registered exception from its message (or default-constructs
// it): a type with neither constructor cannot be registered.
#include <stdexcept>

#include "mproc/errors.hpp"

struct NeedsACode : std::runtime_error {
  NeedsACode(int code, const std::string& text) : std::runtime_error(text), code_(code) {}
  int code_;
};

int main() {
  mproc::register_exception<NeedsACode>();
}
