// log.hpp — mproc's diagnostics.
//
// Off by default (only warnings), turned on with `mproc::log_to_stderr(mproc::LogLevel::debug)`
// or the environment variable MPROC_LOG=debug|info|warning|error|off. Lines go to stderr as
// `[mproc <level> pid <pid>] message`, written with one write(2) so lines from many processes
// never interleave mid-line. Destructors and background threads report here instead of
// throwing or swallowing errors.
#pragma once

#include <string_view>

namespace mproc {

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3, off = 4 };

/// Sets the lowest level printed from now on, in this process and the children it starts.
void log_to_stderr(LogLevel level = LogLevel::info);

/// The level currently in force (from log_to_stderr, else MPROC_LOG, else warning).
LogLevel log_level() noexcept;

namespace detail {
/// Writes one line if `level` is enabled. Never throws.
void log(LogLevel level, std::string_view message) noexcept;
}  // namespace detail

}  // namespace mproc
