// value_array.cpp — share a number and an array with a child process.
//
// Mirrors: "Python Multiprocessing: True Parallelism for AI Tasks"
//          (seed 001_fc95d968a6b0e27f.txt), section "1. Value and Array for Shared Memory",
//          the update_data(val, arr) program.
//
// What to notice
//  - No typecodes: `Value<int>` and `Array<int>` say the type, and a type that cannot live in
//    shared memory (std::string, a pointer) is a compile error.
//  - The handles are passed by value like any argument; the child gets the *same* memory.
//  - The memory is an anonymous memfd: nothing is left in /dev/shm whatever happens.
#include <mproc/process.hpp>
#include <mproc/shared.hpp>

#include <cstdio>

void update_data(mproc::Value<int> val, mproc::Array<int> arr) {
  val.value() += 1;  // one writer here; with several, take val.get_lock() (shared_counter.cpp)
  arr[0] = 100;
}

int main() {
  mproc::Value<int> val(10);
  mproc::Array<int> arr{0, 1, 2, 3};

  mproc::Process p(update_data, val, arr);
  p.start();
  p.join();

  std::printf("Shared Value: %d\n", val.value());  // 11
  std::printf("Shared Array: [%d, %d, %d, %d]\n", arr[0], arr[1], arr[2],
              arr[3]);  // [100, 1, 2, 3]
  return val.value() == 11 && arr[0] == 100 ? 0 : 1;
}
