// pipe_send_recv.cpp — a two-way conversation between parent and child over a Pipe.
//
// Mirrors: "Python Multiprocessing: True Parallelism for AI Tasks"
//          (seed 001_fc95d968a6b0e27f.txt): Pipe in "Other Useful Classes in Python
//          Multiprocessing" and the interview question "How does inter-process communication
//          (IPC) work in Python multiprocessing? Compare Queue and Pipe" — a Pipe is a pair of
//          connected ends, each with send() and recv(), "a direct telephone line" between two
//          processes. The tutorial shows no Pipe code; this is the program it describes.
//
// What to notice
//  - Pipe() returns both ends; hand one to the child as an argument (a Connection is a cheap
//    handle) and keep the other.
//  - send(x) takes any transferable value; recv<T>() says which type it expects. Strings,
//    vectors and plain structs all travel; asking for the wrong type throws, it never
//    reinterprets bytes.
//  - Both directions on one pipe: the child answers each request on the same end it reads.
//  - poll(timeout) asks "is a message waiting?" without blocking forever.
//  - Close your copy of the child's end after start(), as in Python: then, once the child has
//    exited, recv() reports mproc::ConnectionClosed instead of waiting for a message that can
//    never come.
//  - Pipe(false) is Python's Pipe(duplex=False): (reader, writer); the wrong direction throws
//    mproc::UsageError.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

using namespace std::chrono_literals;

// A plain struct is trivially copyable, so it travels as its bytes.
struct Stats {
  double sum;
  double mean;
};

// The child: greet, then answer each batch of numbers with its statistics until an empty batch
// says "hang up".
void statistician(mproc::Connection line) {
  line.send("hello from " + mproc::current_process().name());
  for (;;) {
    const auto batch = line.recv<std::vector<double>>();
    if (batch.empty()) return;
    const double sum = std::accumulate(batch.begin(), batch.end(), 0.0);
    line.send(Stats{sum, sum / static_cast<double>(batch.size())});
  }
}

void announce(mproc::Connection out) {
  for (int i = 1; i <= 3; ++i) out.send("line " + std::to_string(i));
}

int main() {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process child(statistician, child_end);
  child.start();
  child_end.close();  // the child has its own copy; ours would keep the line open forever

  std::printf("parent got: \"%s\"\n", parent_end.recv<std::string>().c_str());

  const std::vector<std::vector<double>> batches = {{1, 2, 3, 4}, {2.5, 7.5}, {10}};
  for (const auto& batch : batches) {
    parent_end.send(batch);
    if (!parent_end.poll(5s)) {
      std::printf("no answer within 5 s\n");
      return 1;
    }
    const auto stats = parent_end.recv<Stats>();
    std::printf("batch of %zu -> sum %.1f, mean %.2f\n", batch.size(), stats.sum, stats.mean);
  }
  parent_end.send(std::vector<double>{});  // hang up
  child.join();

  try {
    (void)parent_end.recv<std::string>();
    std::printf("unexpected: a message after the child hung up\n");
    return 1;
  } catch (const mproc::ConnectionClosed& e) {
    std::printf("after the child exited, recv() throws ConnectionClosed: %s\n", e.what());
  }

  // One-way pipe: the child only writes, the parent only reads.
  auto [reader, writer] = mproc::Pipe(false);
  mproc::Process announcer(announce, writer);
  announcer.start();
  writer.close();
  for (int i = 0; i < 3; ++i) {
    std::printf("one-way pipe: %s\n", reader.recv<std::string>().c_str());
  }
  announcer.join();
  try {
    reader.send(std::string("reply"));
    std::printf("unexpected: sent on the read end\n");
    return 1;
  } catch (const mproc::UsageError& e) {
    std::printf("sending on the read end throws UsageError: %s\n", e.what());
  }
  return *child.exitcode() == 0 && *announcer.exitcode() == 0 ? 0 : 1;
}
