// The map/imap progress bar: rendering (pure) and the drawing policy (when, where, once).
#include "mproc/detail/progress.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <string_view>
#include <thread>
#include <utility>

#include "detail/sys.hpp"

namespace mproc::detail {
namespace {

constexpr std::size_t kBarCells = 10;
constexpr std::int64_t kTerminalInterval = 100'000'000;  // 10 redraws a second at most
constexpr std::int64_t kPlainInterval = 5'000'000'000;   // a log line every 5 s

// U+2588 FULL BLOCK, then the left 1/8 .. 7/8 blocks (U+258F down to U+2589).
constexpr const char* kFull = "\u2588";
constexpr const char* kEighths[8] = {"",       "\u258f", "\u258e", "\u258d",
                                     "\u258c", "\u258b", "\u258a", "\u2589"};

double seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

/// "03:07" or "1:02:03".
std::string clock_time(double s) {
  const auto total = static_cast<long long>(std::max(0.0, s));
  const long long h = total / 3600, m = total / 60 % 60, sec = total % 60;
  char buf[48];
  if (h > 0) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", h, m, sec);
  } else {
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", m, sec);
  }
  return buf;
}

/// "4s", "2m05s", "1h02m".
std::string short_duration(double s) {
  const auto total = static_cast<long long>(std::llround(std::max(0.0, s)));
  char buf[48];
  if (total < 60) {
    std::snprintf(buf, sizeof buf, "%llds", total);
  } else if (total < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", total / 60, total % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", total / 3600, total / 60 % 60);
  }
  return buf;
}

/// "120.5 it/s", "2.5 s/it" below one item a second, "? it/s" before anything is known.
std::string rate_text(double rate) {
  char buf[64];
  if (!(rate > 0) || !std::isfinite(rate)) return "? it/s";
  if (rate < 1) {
    std::snprintf(buf, sizeof buf, "%.1f s/it", 1 / rate);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f it/s", rate);
  }
  return buf;
}

/// floor(done * scale / total), exact while done * scale fits (it always does in practice).
std::size_t scaled(std::size_t done, std::size_t total, std::size_t scale) {
  done = std::min(done, total);
  if (done <= SIZE_MAX / scale) return done * scale / total;
  return static_cast<std::size_t>(static_cast<long double>(done) * scale / total);
}

std::string bar(std::size_t done, std::size_t total) {
  const std::size_t eighths = scaled(done, total, kBarCells * 8);
  std::string out;
  std::size_t cells = eighths / 8;
  for (std::size_t i = 0; i < cells; ++i) out += kFull;
  if (cells < kBarCells && eighths % 8 != 0) {
    out += kEighths[eighths % 8];
    ++cells;
  }
  out.append(kBarCells - cells, ' ');
  return out;
}

/// Display columns of UTF-8 text whose characters are all one column wide.
std::size_t columns(const std::string& text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

/// Writes all of `text`, retrying EINTR (in sys::write) and short writes; errors end it
/// quietly: a progress bar must never fail the work it decorates.
void write_quietly(int fd, const std::string& text) noexcept {
  try {
    std::size_t done = 0;
    while (done < text.size()) {
      const std::size_t n = sys::write(fd, text.data() + done, text.size() - done);
      if (n == 0) return;
      done += n;
    }
  } catch (...) {
  }
}

}  // namespace

std::string render_progress(std::string_view label, std::size_t done, std::size_t total,
                            std::chrono::nanoseconds elapsed, bool terminal, bool final) {
  const double secs = seconds(elapsed);
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0.0;
  const bool known = total > 0;
  // Floor, so that 100% means everything is done.
  const auto percent = known ? static_cast<int>(scaled(done, total, 100)) : 0;
  const double remaining =
      known && rate > 0 && done < total ? static_cast<double>(total - done) / rate : 0.0;
  const bool eta_known = known && (done >= total || rate > 0);

  // Built by appending one piece at a time: g++ 12 -O3 reports a false -Wrestrict for
  // chains like `" " + std::to_string(n)`.
  std::string line(label);
  const auto add = [&line](std::initializer_list<std::string_view> pieces) {
    for (std::string_view piece : pieces) line.append(piece);
  };
  const std::string count = std::to_string(done);
  const std::string of = std::to_string(total);
  const std::string speed = rate_text(rate);
  char pct[32];
  if (terminal) {
    if (known) {
      std::snprintf(pct, sizeof pct, " %3d%%|", percent);
      const std::string eta = eta_known ? clock_time(remaining) : "?";
      add({pct, bar(done, total), "| ", count, "/", of, " [", clock_time(secs), "<", eta, ", ",
           speed, "]"});
    } else {
      add({" ", count, " it [", clock_time(secs), ", ", speed, "]"});
    }
    return line;
  }
  if (known) {
    std::snprintf(pct, sizeof pct, " (%d%%) ", percent);
    add({": ", count, "/", of, pct, speed});
  } else {
    add({": ", count, " items, ", speed});
  }
  if (final) {
    add({", done in ", short_duration(secs)});
  } else if (known) {
    add({", ETA ", eta_known ? short_duration(remaining) : "?"});
  }
  return line;
}

ProgressBar::ProgressBar(std::size_t total, bool enabled, std::string label, int fd,
                         std::optional<bool> terminal)
    : total_(total),
      enabled_(enabled),
      label_(std::move(label)),
      fd_(fd),
      terminal_(enabled && terminal.value_or(sys::isatty(fd))),
      start_ns_(sys::monotonic_coarse_ns()),
      interval_ns_(terminal_ ? kTerminalInterval : kPlainInterval),
      next_draw_ns_(start_ns_ + interval_ns_) {
  if (enabled_ && terminal_) {
    drawing_.store(true, std::memory_order_relaxed);
    draw(false);
    drawing_.store(false, std::memory_order_release);
  }
}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::advance(std::size_t n) noexcept {
  if (!enabled_) return;
  done_.fetch_add(n, std::memory_order_relaxed);
  const std::int64_t now = sys::monotonic_coarse_ns();
  std::int64_t due = next_draw_ns_.load(std::memory_order_relaxed);
  if (now < due) return;
  // One thread wins the right to draw this interval; the others carry on.
  if (!next_draw_ns_.compare_exchange_strong(due, now + interval_ns_, std::memory_order_relaxed)) {
    return;
  }
  if (drawing_.exchange(true, std::memory_order_acquire)) return;
  if (!finished_.load(std::memory_order_acquire)) draw(false);
  drawing_.store(false, std::memory_order_release);
}

void ProgressBar::finish() noexcept {
  if (!enabled_ || finished_.exchange(true, std::memory_order_acq_rel)) return;
  // Wait out a redraw in progress on another thread, then keep drawing_ forever: nothing is
  // drawn after the final state.
  while (drawing_.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
  draw(true);
}

void ProgressBar::draw(bool final) noexcept {
  try {
    const std::int64_t now = sys::monotonic_coarse_ns();
    const std::string line = render_progress(
        label_, done_.load(std::memory_order_relaxed), total_,
        std::chrono::nanoseconds(std::max<std::int64_t>(0, now - start_ns_)), terminal_, final);
    std::string out;
    if (terminal_) {
      // Redraw in place; pad with spaces over what a longer previous line left behind.
      out = "\r" + line;
      const std::size_t width = columns(line);
      if (width < last_width_) out.append(last_width_ - width, ' ');
      last_width_ = width;
      if (final) out += '\n';
    } else {
      out = line + '\n';
    }
    write_quietly(fd_, out);
  } catch (...) {
    // Out of memory while formatting: skip this redraw.
  }
}

}  // namespace mproc::detail
