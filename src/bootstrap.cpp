#include "bootstrap.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "forkserver.hpp"
#include "spawn.hpp"

namespace mproc::detail::bootstrap {
namespace {

[[noreturn]] void bad_bootstrap(std::string_view value) {
  const std::string line = "mproc: invalid " + std::string(env_name) + "=" + std::string(value) +
                           " in the environment; this variable is reserved for mproc's own "
                           "child processes\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
  ::_exit(2);
}

int parse_fd(std::string_view digits, std::string_view whole) {
  if (digits.empty() || digits.size() > 9) bad_bootstrap(whole);
  int fd = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') bad_bootstrap(whole);
    fd = fd * 10 + (c - '0');
  }
  return fd;
}

void maybe_enter_child_role() {
  const char* raw = std::getenv(env_name);
  if (raw == nullptr) return;
  const std::string value = raw;
  // Grandchildren started with plain exec must not take this role again.
  ::unsetenv(env_name);
  const std::string_view v = value;
  if (v.rfind("spawn:", 0) == 0) spawn::run_child(parse_fd(v.substr(6), v));
  if (v.rfind("forkserver:", 0) == 0) forkserver::serve(parse_fd(v.substr(11), v));
  bad_bootstrap(v);
}

// Runs during static initialisation of the executable (see the file comment in bootstrap.hpp).
const bool g_entered = (maybe_enter_child_role(), true);

}  // namespace

void anchor() noexcept {
  (void)g_entered;
}

}  // namespace mproc::detail::bootstrap
