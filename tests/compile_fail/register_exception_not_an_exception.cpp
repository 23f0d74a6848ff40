// expect: must derive publicly from std::exception
// Only std::exception subclasses can be rebuilt from a remote what(); anything else thrown by
// a task comes back as mproc::RemoteError without registration.
#include "mproc/errors.hpp"

struct NotAnException {
  int code = 0;
};

int main() {
  mproc::register_exception<NotAnException>();
}
