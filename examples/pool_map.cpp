// pool_map.cpp — a Pool of worker processes mapping a function over a list.
//
// Mirrors: "Python Multiprocessing: True Parallelism for AI Tasks" (seed 001_fc95d968a6b0e27f.txt),
//          "Using Pool for Managing Multiple Processes": `cube` mapped over [1, 2, 3, 4] with
//          Pool(4), printing [1, 8, 27, 64]; and "A Starter's Guide to Parallel and
//          Multiprocessing Python" (seed 003_5a8e802222bb39cd.txt), "The class Pool": square
//          roots of range(10, N) with Pool() and "Program finished!".
//
// What to notice
//  - `mproc::Pool pool(4)` is `with Pool(4) as pool:`. The destructor closes the pool and waits
//    for its workers, like leaving the `with` block; nothing to call by hand.
//  - pool.map(cube, numbers) returns a std::vector in input order, whichever worker ran what.
//  - The function is an ordinary function: the workers run the same binary, so only its
//    identity and the arguments travel. A lambda that captures something would not compile
//    (it could hold pointers into this process); pass the data as arguments instead.
//  - Pool() with no size uses cpu_count() workers, as in Python.
//  - std::views::iota(10, N) is range(10, N): it travels as its two bounds, not as N numbers.
//  - No `if __name__ == "__main__":` guard is needed.
#include <mproc/mproc.hpp>

#include <cmath>
#include <cstdio>
#include <ranges>
#include <vector>

int cube(int n) {
  return n * n * n;
}

// The tutorial calls its square root "cube" too; here it gets its own name.
double root(int x) {
  return std::sqrt(static_cast<double>(x));
}

int main() {
  const std::vector<int> numbers{1, 2, 3, 4};
  std::vector<int> cubes;
  {
    mproc::Pool pool(4);
    cubes = pool.map(cube, numbers);
  }  // the pool closes and its four workers exit here
  std::printf("[");
  for (std::size_t i = 0; i < cubes.size(); ++i) std::printf(i ? ", %d" : "%d", cubes[i]);
  std::printf("]\n");

  constexpr int N = 5'000'000;
  std::vector<double> roots;
  {
    mproc::Pool pool;  // cpu_count() workers
    roots = pool.map(root, std::views::iota(10, N));
  }
  std::printf("Program finished! %zu square roots, sqrt(%d) = %.4f\n", roots.size(), N - 1,
              roots.back());

  const bool ok = cubes == std::vector<int>{1, 8, 27, 64} && roots.size() == N - 10 &&
                  roots.front() == std::sqrt(10.0) && roots.back() == std::sqrt(double{N - 1});
  return ok ? 0 : 1;
}
