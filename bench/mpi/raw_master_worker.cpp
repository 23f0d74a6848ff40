// raw_master_worker.cpp — the baseline: a raw Open MPI master/worker exchange of trivial
// tasks (one int out, one int back, blocking MPI_Send / MPI_Recv(ANY_SOURCE), one task in
// flight per worker), as a hand-written MPI program would do it. One JSON line.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int n = 10000, reps = 5, stop = -1;
  if (rank != 0) {
    for (;;) {
      int x = 0;
      MPI_Recv(&x, 1, MPI_INT, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (x == stop) break;
      ++x;
      MPI_Send(&x, 1, MPI_INT, 0, 0, MPI_COMM_WORLD);
    }
  } else {
    std::vector<double> rates;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      int sent = 0, got = 0;
      long long sink = 0;
      for (int w = 1; w < size && sent < n; ++w, ++sent)
        MPI_Send(&sent, 1, MPI_INT, w, 0, MPI_COMM_WORLD);
      while (got < n) {
        int y = 0;
        MPI_Status st;
        MPI_Recv(&y, 1, MPI_INT, MPI_ANY_SOURCE, 0, MPI_COMM_WORLD, &st);
        ++got;
        sink += y;
        if (sent < n) {
          MPI_Send(&sent, 1, MPI_INT, st.MPI_SOURCE, 0, MPI_COMM_WORLD);
          ++sent;
        }
      }
      rates.push_back(n /
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (sink == 42) std::puts("");
    }
    for (int w = 1; w < size; ++w) MPI_Send(&stop, 1, MPI_INT, w, 0, MPI_COMM_WORLD);
    std::vector<double> sorted = rates;
    std::sort(sorted.begin(), sorted.end());
    std::printf(
        "{\"bench\": \"mpi_map_trivial_10k\", \"impl\": \"raw_mpi_master_worker\", "
        "\"metric\": \"tasks_per_second\", \"value\": %.6g}\n",
        sorted[reps / 2]);
  }
  MPI_Finalize();
  return 0;
}
