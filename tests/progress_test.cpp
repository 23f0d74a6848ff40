// Tests for the map/imap progress bar (include/mproc/detail/progress.hpp): the exact text of
// each line form, what a bar writes into a pipe on a terminal and elsewhere, exact counts under
// concurrent advance(), and that write errors never surface. No test depends on timing: lines
// drawn between the first and the last are checked for shape only.
#include "mproc/detail/progress.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
// g++ 12 reports a false -Wmaybe-uninitialized inside <regex>'s std::function under
// -fsanitize=address at -O1+ (GCC bug 105562); the warning is about the library, not this test.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#pragma GCC diagnostic pop
#include <string>
#include <thread>
#include <vector>

#include "../src/detail/sys.hpp"  // pipes and failure injection (internal)

using namespace std::chrono_literals;
using mproc::detail::ProgressBar;
using mproc::detail::render_progress;

namespace {

/// Everything written into a pipe, read on a thread so a writer never blocks on a full pipe.
class Capture {
 public:
  Capture() : fds_(mproc::detail::sys::pipe()) {
    reader_ = std::thread([this] {
      char buf[4096];
      for (;;) {
        const std::size_t n = mproc::detail::sys::read(fds_.first.get(), buf, sizeof buf);
        if (n == 0) return;
        text_.append(buf, n);
      }
    });
  }
  ~Capture() {
    if (reader_.joinable()) {
      fds_.second.reset();
      reader_.join();
    }
  }
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  int fd() const { return fds_.second.get(); }
  /// Closes the write end and returns all that was written.
  std::string text() {
    fds_.second.reset();
    if (reader_.joinable()) reader_.join();
    return text_;
  }

 private:
  mproc::detail::sys::FdPair fds_;
  std::thread reader_;
  std::string text_;
};

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::size_t begin = 0;
  for (std::size_t at = text.find(sep); at != std::string::npos; at = text.find(sep, begin)) {
    out.push_back(text.substr(begin, at - begin));
    begin = at + 1;
  }
  out.push_back(text.substr(begin));
  return out;
}

std::string rstrip(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

const std::regex kTerminalLine(
    R"(test +\d+%\|[^|]*\| (\d+)/1000 \[\d\d:\d\d<(\d\d:\d\d|\?), (\? it/s|[0-9.]+ (it/s|s/it))\])");
const std::regex kPlainLine(
    R"(test: (\d+)/1000 \(\d+%\) (\? it/s|[0-9.]+ (it/s|s/it)), (ETA (\d+s|\d+m\d\ds|\d+h\d\dm|\?)|done in \d+s))");

}  // namespace

// ---- rendering -----------------------------------------------------------------------------

TEST(Progress, TerminalLineLooksLikeTqdm) {
  EXPECT_EQ(render_progress("label", 420, 1000, 3490ms, true, false),
            "label  42%|████▏     | 420/1000 [00:03<00:04, 120.3 it/s]");
  EXPECT_EQ(render_progress("mproc", 0, 50, 0ms, true, false),
            "mproc   0%|          | 0/50 [00:00<?, ? it/s]");
  EXPECT_EQ(render_progress("mproc", 50, 50, 10s, true, true),
            "mproc 100%|██████████| 50/50 [00:10<00:00, 5.0 it/s]");
}

TEST(Progress, TerminalBarFillsInEighthsOfACell) {
  // 10 cells of 8 steps: 1/80 is one eighth block; 79/80 is nine full cells and 7/8.
  EXPECT_EQ(render_progress("b", 1, 80, 1s, true, false).substr(0, 20),
            std::string("b   1%|") + "\u258f" + "         |");
  EXPECT_EQ(render_progress("b", 79, 80, 1s, true, false),
            std::string("b  98%|") + "█████████" + "\u2589" + "| 79/80 [00:01<00:00, 79.0 it/s]");
}

TEST(Progress, SlowItemsShowSecondsPerItemAndLongRunsShowHours) {
  EXPECT_EQ(render_progress("slow", 2, 10, 5s, true, false),
            "slow  20%|██        | 2/10 [00:05<00:20, 2.5 s/it]");
  EXPECT_EQ(render_progress("long", 1, 3, 3723s, true, false),
            "long  33%|███▎      | 1/3 [1:02:03<2:04:06, 3723.0 s/it]");
}

TEST(Progress, UnknownTotalShowsCountAndRateOnly) {
  EXPECT_EQ(render_progress("scan", 420, 0, 2s, true, false), "scan 420 it [00:02, 210.0 it/s]");
  EXPECT_EQ(render_progress("scan", 420, 0, 2s, false, false), "scan: 420 items, 210.0 it/s");
  EXPECT_EQ(render_progress("scan", 420, 0, 2s, false, true),
            "scan: 420 items, 210.0 it/s, done in 2s");
}

TEST(Progress, PlainLineHasCountPercentRateAndEta) {
  EXPECT_EQ(render_progress("label", 420, 1000, 3490ms, false, false),
            "label: 420/1000 (42%) 120.3 it/s, ETA 5s");
  EXPECT_EQ(render_progress("label", 1000, 1000, 8s, false, true),
            "label: 1000/1000 (100%) 125.0 it/s, done in 8s");
  EXPECT_EQ(render_progress("label", 1, 100, 10s, false, false),
            "label: 1/100 (1%) 10.0 s/it, ETA 16m30s");
  EXPECT_EQ(render_progress("label", 0, 100, 0s, false, false), "label: 0/100 (0%) ? it/s, ETA ?");
}

TEST(Progress, NinetyNinePointNinePercentIsNotShownAsDone) {
  EXPECT_EQ(render_progress("x", 999'999, 1'000'000, 1s, false, false).substr(0, 29),
            "x: 999999/1000000 (99%) 99999");
}

// ---- drawing -------------------------------------------------------------------------------

TEST(Progress, TerminalBarRedrawsInPlaceAndEndsWithTheFinalLine) {
  Capture out;
  {
    ProgressBar bar(1000, true, "test", out.fd(), true);
    for (int i = 0; i < 1000; ++i) bar.advance(1);
    bar.finish();
  }
  const std::string text = out.text();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.front(), '\r');
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find('\n'), text.size() - 1) << "only the final state ends the line";
  const auto frames = split(text.substr(1, text.size() - 2), '\r');
  ASSERT_GE(frames.size(), 2u);  // the initial state and the final one
  EXPECT_EQ(frames.front().rfind("test   0%|          | 0/1000 [00:", 0), 0u) << text;
  std::size_t previous = 0;
  for (const auto& frame : frames) {
    std::smatch m;
    const std::string line = rstrip(frame);
    ASSERT_TRUE(std::regex_match(line, m, kTerminalLine)) << line;
    const std::size_t count = std::stoul(m[1].str());
    EXPECT_GE(count, previous) << "counts go backwards: " << text;
    previous = count;
  }
  EXPECT_EQ(rstrip(frames.back()).rfind("test 100%|██████████| 1000/1000 [", 0), 0u) << text;
}

TEST(Progress, PlainOutputIsWholeLinesEndingWithTheFinalOne) {
  Capture out;
  {
    ProgressBar bar(1000, true, "test", out.fd(), false);
    for (int i = 0; i < 500; ++i) bar.advance(2);
  }  // the destructor finishes
  const std::string text = out.text();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
  auto lines = split(text, '\n');
  lines.pop_back();  // after the last newline
  for (const auto& line : lines) EXPECT_TRUE(std::regex_match(line, kPlainLine)) << line;
  EXPECT_EQ(lines.back().rfind("test: 1000/1000 (100%) ", 0), 0u) << lines.back();
  EXPECT_NE(lines.back().find(", done in "), std::string::npos) << lines.back();
}

TEST(Progress, ConcurrentAdvanceFromFourThreadsSumsExactly) {
  constexpr std::size_t kPerThread = 100'000;
  Capture out;
  ProgressBar bar(4 * kPerThread, true, "test", out.fd(), true);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&bar] {
      for (std::size_t i = 0; i < kPerThread; ++i) bar.advance(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bar.count(), 4 * kPerThread);
  bar.finish();
  const std::string text = out.text();
  const std::string last = rstrip(text.substr(text.rfind('\r') + 1));
  EXPECT_EQ(last.rfind("test 100%|██████████| 400000/400000 [", 0), 0u) << last;
  // Every frame drawn while the threads raced is whole (one write per redraw).
  for (const auto& frame : split(text.substr(1, text.size() - 2), '\r')) {
    EXPECT_EQ(rstrip(frame).rfind("test ", 0), 0u) << frame;
    EXPECT_EQ(rstrip(frame).back(), ']') << frame;
  }
}

TEST(Progress, FinishDrawsOnceAndLaterAdvancesDrawNothing) {
  Capture out;
  ProgressBar bar(10, true, "test", out.fd(), false);
  bar.advance(3);
  bar.finish();
  bar.finish();
  bar.advance(5);
  EXPECT_EQ(bar.count(), 8u);
  const std::string text = out.text();
  EXPECT_EQ(text.rfind("test: 3/10 (30%) ", 0), 0u) << text;
  EXPECT_EQ(text.find('\n'), text.size() - 1) << text;
}

TEST(Progress, UnknownTotalOnATerminalCountsItems) {
  Capture out;
  {
    ProgressBar bar(0, true, "scan", out.fd(), true);
    bar.advance(7);
  }
  const std::string text = out.text();
  const std::string last = rstrip(text.substr(text.rfind('\r') + 1, std::string::npos));
  EXPECT_EQ(last.rfind("scan 7 it [", 0), 0u) << text;
  EXPECT_EQ(text.find('%'), std::string::npos) << text;
}

TEST(Progress, DisabledBarWritesNothing) {
  Capture out;
  {
    ProgressBar bar(100, false, "test", out.fd(), true);
    for (int i = 0; i < 100; ++i) bar.advance(1);
    bar.finish();
  }
  EXPECT_EQ(out.text(), "");
}

TEST(Progress, ShorterLinesOverwriteLongerOnesCompletely) {
  // The label is the same, but a rate string can shrink; padding must cover the old text.
  Capture out;
  {
    ProgressBar bar(1000, true, "test", out.fd(), true);
    bar.advance(1000);
  }
  const std::string text = out.text();
  const auto frames = split(text.substr(1, text.size() - 2), '\r');
  for (std::size_t i = 1; i < frames.size(); ++i) {
    const auto width = [](const std::string& s) {
      std::size_t n = 0;
      for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
      return n;
    };
    EXPECT_GE(width(frames[i]), width(rstrip(frames[i - 1])));
  }
}

TEST(Progress, WriteErrorsAreIgnored) {
  Capture out;
  mproc::detail::sys::inject_failure("write", EIO, 1000);
  {
    ProgressBar bar(10, true, "test", out.fd(), true);
    bar.advance(10);
    bar.finish();
  }
  mproc::detail::sys::inject_failure("write", 0, 0);
  EXPECT_EQ(out.text(), "");
  ProgressBar to_nowhere(10, true, "test", -1, true);  // EBADF on every write
  to_nowhere.advance(10);
  to_nowhere.finish();
  EXPECT_EQ(to_nowhere.count(), 10u);
}

TEST(Progress, TerminalDetectionFollowsTheDescriptor) {
  // A pipe is not a terminal: without an override the plain form is used.
  Capture out;
  {
    ProgressBar bar(4, true, "test", out.fd());
    bar.advance(4);
  }
  const std::string text = out.text();
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  EXPECT_EQ(text.rfind("test: 4/4 (100%) ", 0), 0u) << text;
}
