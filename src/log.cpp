#include "mproc/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace mproc {
namespace {

LogLevel parse_level(const char* text) noexcept {
  if (text == nullptr) return LogLevel::warning;
  if (std::strcmp(text, "debug") == 0) return LogLevel::debug;
  if (std::strcmp(text, "info") == 0) return LogLevel::info;
  if (std::strcmp(text, "warning") == 0) return LogLevel::warning;
  if (std::strcmp(text, "error") == 0) return LogLevel::error;
  if (std::strcmp(text, "off") == 0) return LogLevel::off;
  return LogLevel::warning;
}

// -1 = not yet read from the environment.
std::atomic<int> g_level{-1};

const char* level_name(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warning: return "warning";
    case LogLevel::error: return "error";
    case LogLevel::off: return "off";
  }
  return "?";
}

}  // namespace

void log_to_stderr(LogLevel level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
  // Children started by exec (spawn, forkserver) read the level from the environment.
  ::setenv("MPROC_LOG", level_name(level), 1);
}

LogLevel log_level() noexcept {
  int level = g_level.load(std::memory_order_relaxed);
  if (level < 0) {
    level = static_cast<int>(parse_level(std::getenv("MPROC_LOG")));
    g_level.store(level, std::memory_order_relaxed);
  }
  return static_cast<LogLevel>(level);
}

namespace detail {
void log(LogLevel level, std::string_view message) noexcept {
  if (level < log_level() || level == LogLevel::off) return;
  try {
    std::string line = "[mproc ";
    line += level_name(level);
    line += " pid ";
    line += std::to_string(::getpid());
    line += "] ";
    line += message;
    line += '\n';
    // One write so concurrent processes' lines do not interleave; a short write to stderr
    // is not worth retrying from a logger.
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
  } catch (...) {
    // Out of memory while logging: nothing sensible left to do.
  }
}
}  // namespace detail

}  // namespace mproc
