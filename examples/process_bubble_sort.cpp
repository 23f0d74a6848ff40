// process_bubble_sort.cpp — sort an array in a child process.
//
// Mirrors: "A Starter's Guide to Parallel and Multiprocessing Python"
//          (seed 003_5a8e802222bb39cd.txt), section "A simple example of multiprocessing in
//          Python" and "The class Process": bubble_sort(array) run by a Process.
//
// What to notice
//  - The tutorial's listing creates the Process but never starts it; its prose then adds
//    p.start() and p.join(). This program does all three.
//  - The vector is an argument, so the child receives its own copy. The child sorts that copy;
//    after join() the parent's vector is still unsorted. Processes share nothing unless you
//    ask (a Pipe or Queue to send the result back, or shared memory).
//  - The child sorts and prints while the parent is free to do something else until join().
#include <mproc/mproc.hpp>

#include <cstddef>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

std::string to_string(const std::vector<int>& values) {
  std::string text = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(values[i]);
  }
  return text + "]";
}

void bubble_sort(std::vector<int> array) {
  bool swapped = true;
  while (swapped) {
    swapped = false;
    for (std::size_t i = 0; i + 1 < array.size(); ++i) {
      if (array[i] > array[i + 1]) {
        std::swap(array[i], array[i + 1]);
        swapped = true;
      }
    }
  }
  std::printf("child %s: Array sorted: %s\n", mproc::current_process().name().c_str(),
              to_string(array).c_str());
}

int main() {
  std::vector<int> numbers = {1, 9, 4, 5, 2, 6, 8, 4};

  mproc::Process p(bubble_sort, numbers);
  p.start();
  std::printf("parent: child started, waiting for it\n");
  p.join();

  std::printf("parent: my own vector is untouched: %s\n", to_string(numbers).c_str());
  return *p.exitcode();
}
