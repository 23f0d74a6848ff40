// queue_write_read.cpp — one process writes into a Queue, another reads from it.
//
// Mirrors: "Python Multiprocessing: True Parallelism for AI Tasks"
//          (seed 001_fc95d968a6b0e27f.txt), "2. Using Queue for Inter-Process Communication":
//          write_data(q) puts "Hello from child process"; read_data(q) gets and prints it;
//          p1 is started and joined before p2 starts reading.
//
// What to notice
//  - Queue<T> says what travels: here std::string. Any transferable type works.
//  - The queue is a cheap handle: pass it to each Process as an argument (fork, forkserver and
//    spawn alike); every copy is the same queue.
//  - p1 exits as soon as it has put its item, although nobody has read it yet: the item is in
//    shared memory, not in a feeder thread of p1 (Python's "joining processes that use queues"
//    trap cannot happen).
//  - After close(), a get on the drained queue throws mproc::QueueClosed instead of blocking.
#include <mproc/process.hpp>
#include <mproc/queue.hpp>

#include <cstdio>
#include <string>

void write_data(mproc::Queue<std::string> q) {
  q.put("Hello from child process");
}

void read_data(mproc::Queue<std::string> q) {
  std::printf("Message: %s\n", q.get().c_str());
}

int main() {
  mproc::Queue<std::string> q;
  mproc::Process p1(write_data, q);  // process to write data to the queue
  mproc::Process p2(read_data, q);   // process to read data from the queue
  p1.start();
  p1.join();  // ensure p1 finishes before p2 starts reading
  p2.start();
  p2.join();

  q.close();
  try {
    (void)q.get();
    std::printf("unexpected: an item after close\n");
    return 1;
  } catch (const mproc::QueueClosed& e) {
    std::printf("the closed, drained queue says: %s\n", e.what());
  }
  return *p1.exitcode() == 0 && *p2.exitcode() == 0 ? 0 : 1;
}
