// manager_dict.cpp — children write their results into a Manager dict; the parent reads it.
//
// Mirrors: "Multiprocessing to Parrallel and Speed Up" (seed 002_ef51f5f6559abac5.txt),
//          "Step 4: Return Child Process Data to Parent Process with multiprocessing.Manager":
//          Pool.starmap over (start, end, shared dict) tuples; each task stores its result
//          under its start index; the parent prints the dict (in the order the tasks wrote it),
//          then sorted by key, then as an array.
//
// What to notice
//  - m.dict<int, long long>() is typed: a child cannot store a string by mistake, and reading
//    needs no cast. Each set/get is one round trip to the manager's server process.
//  - The proxy is an ordinary by-value argument: it goes into the tuples like the integers.
//  - items() is one round trip and returns a std::map, already sorted by key — the tutorial's
//    OrderedDict(sorted(...)) step is built in.
//  - A Python dict also remembers insertion order, which is how the tutorial's "Return Dict"
//    shows the order the tasks finished in ({1: 3, 0: 1, 2: 5, 3: 7}). A std::map does not, so
//    each task also appends its key to a Manager list, `finished`: read together they print
//    the same line (the order changes from run to run).
//  - No `if __name__ == "__main__"` guard: the manager's server does not re-run main().
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <tuple>
#include <vector>

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void process_slice(int idx_start, int idx_end, mproc::Dict<int, long long> results,
                   mproc::List<int> finished) {
  long long sum = 0;
  for (int i = idx_start; i <= idx_end; ++i) sum += i;
  std::printf("Time: %.2f | Start: %d | End: %d | Result: %lld\n", now_seconds(), idx_start,
              idx_end, sum);
  std::fflush(stdout);
  results.set(idx_start, sum);
  finished.append(idx_start);  // after the set: a key in `finished` is in `results`
}

int main() {
  mproc::Manager manager;
  auto results = manager.dict<int, long long>();
  auto finished = manager.list<int>();

  std::vector<std::tuple<int, int, mproc::Dict<int, long long>, mproc::List<int>>> tasks;
  for (int i = 0; i < 4; ++i) tasks.emplace_back(i, i + 1, results, finished);
  mproc::Pool pool(4);
  pool.starmap(process_slice, tasks);

  const std::map<int, long long> ordered = results.items();
  const std::vector<int> order = finished.to_vector();
  std::printf("Return Dict: {");
  for (std::size_t i = 0; i < order.size(); ++i)
    std::printf("%s%d: %lld", i ? ", " : "", order[i], ordered.at(order[i]));
  std::printf("}\nOrdered Dict: {");
  for (const auto& [k, v] : ordered) std::printf("%s%d: %lld", k ? ", " : "", k, v);
  std::printf("}\nFinal Array: [");
  std::vector<long long> array;
  for (const auto& [k, v] : ordered) array.push_back(v);
  for (std::size_t i = 0; i < array.size(); ++i) std::printf(i ? ", %lld" : "%lld", array[i]);
  std::printf("]\n");
  return array == std::vector<long long>{1, 3, 5, 7} && order.size() == ordered.size() ? 0 : 1;
}
