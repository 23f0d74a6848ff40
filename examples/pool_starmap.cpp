// pool_starmap.cpp — several arguments per task: a list of tuples and Pool.starmap.
//
// Mirrors: "Multiprocessing to Parrallel and Speed Up" (seed 002_ef51f5f6559abac5.txt),
//          "Step 3: Send Parent Process Data to Child Process": a list of (idx_start, idx_end)
//          tuples handed to a Pool, each task unpacking its tuple and printing
//          "Time | Start | End".
//
// What to notice
//  - pool.starmap(fn, tuples) calls fn(std::get<0>(t), std::get<1>(t), ...) for every tuple,
//    like Python's Pool.starmap; the function takes the arguments directly, so there is no
//    unpacking line. (pool.map with a function taking one std::tuple works too.)
//  - Results come back in input order whatever the finishing order.
//  - The seed's Step 4 returns results through a Manager dict and then sorts them by key;
//    with starmap the results are already in order.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <tuple>
#include <vector>

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The work for one slice [idx_start, idx_end): here, the sum of 2i + 1 over it.
long long process_slice(int idx_start, int idx_end) {
  std::printf("Time: %.2f | Start: %d | End: %d\n", now_seconds(), idx_start, idx_end);
  std::fflush(stdout);
  long long sum = 0;
  for (int i = idx_start; i < idx_end; ++i) sum += 2 * i + 1;
  return sum;
}

int main() {
  std::vector<std::tuple<int, int>> slices;
  for (int i = 0; i < 4; ++i) slices.emplace_back(i, i + 1);

  mproc::Pool pool(4);
  const std::vector<long long> results = pool.starmap(process_slice, slices);

  std::printf("Final Array: [");
  for (std::size_t i = 0; i < results.size(); ++i) std::printf(i ? ", %lld" : "%lld", results[i]);
  std::printf("]\n");
  return results == std::vector<long long>{1, 3, 5, 7} ? 0 : 1;
}
