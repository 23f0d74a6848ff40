// progress.hpp — the progress bar of map/imap (`.progress = true`) (internal).
//
// Python counterpart: wrapping pool.imap in tqdm. On a terminal, one line redrawn in place
// (carriage return) at most ten times a second:
//
//     mproc  42%|████▏     | 420/1000 [00:03<00:04, 120.5 it/s]
//
// anywhere else (a log file, a CI console) a plain line every five seconds and a final one:
//
//     mproc: 420/1000 (42%) 120.5 it/s, ETA 4s
//     mproc: 1000/1000 (100%) 121.0 it/s, done in 8s
//
// A total of 0 means unknown: the count and rate are shown, no percentage or ETA.
//
//     detail::ProgressBar bar(items.size(), options.progress);
//     for (...) { ...; bar.advance(1); }      // from any thread
//     bar.finish();                           // or let the destructor do it
//
// Guarantees: advance() is an atomic add and a coarse clock read unless a redraw is due; each
// redraw is one write(2) of a whole line, retried on EINTR; write errors are ignored (the bar
// is decoration and never fails the map). Counts from concurrent advance() calls are never
// lost. Nothing is written when disabled.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mproc::detail {

/// One line as ProgressBar draws it, without the leading \r or trailing newline: the
/// terminal form or the plain form, intermediate or final. Pure (tests check it exactly).
std::string render_progress(std::string_view label, std::size_t done, std::size_t total,
                            std::chrono::nanoseconds elapsed, bool terminal, bool final);

class ProgressBar {
 public:
  /// Draws progress of `total` items on `fd` (2 = stderr) when enabled; does nothing
  /// otherwise. `terminal` overrides isatty(fd) (tests). On a terminal the initial state is
  /// drawn at once.
  ProgressBar(std::size_t total, bool enabled, std::string label = "mproc", int fd = 2,
              std::optional<bool> terminal = std::nullopt);
  /// finish().
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  /// Counts n more items done. Any thread; an atomic add and, rarely, a redraw.
  void advance(std::size_t n) noexcept;
  /// Draws the final state once (ending the line on a terminal); later calls and advance()
  /// after it draw nothing.
  void finish() noexcept;

  /// Items counted so far.
  std::size_t count() const noexcept { return done_.load(std::memory_order_relaxed); }

 private:
  void draw(bool final) noexcept;

  const std::size_t total_;
  const bool enabled_;
  const std::string label_;
  const int fd_;
  const bool terminal_;
  const std::int64_t start_ns_;
  const std::int64_t interval_ns_;
  std::atomic<std::size_t> done_{0};
  std::atomic<std::int64_t> next_draw_ns_;
  std::atomic<bool> drawing_{false};
  std::atomic<bool> finished_{false};
  std::size_t last_width_ = 0;  // columns of the last terminal line (guarded by drawing_)
};

}  // namespace mproc::detail
