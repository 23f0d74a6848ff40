// mpi::Executor: the executor suite (support/executor_suite.hpp) run on MPI ranks, plus what
// is MPI-specific. Run as `mpiexec --allow-run-as-root --oversubscribe -n 4 executor_mpi_test`;
// ranks >= 1 serve tasks inside init and exit 0 when rank 0's tests are done.
#include "mproc/mpi/executor.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <set>

#include "support/executor_suite.hpp"

namespace {

struct MpiTraits {
  using Executor = mproc::mpi::Executor;
  static Executor make(std::size_t workers) { return Executor(workers); }
};

}  // namespace
namespace mproc::test::suite {
INSTANTIATE_TYPED_TEST_SUITE_P(Mpi, ExecutorSuite, ::testing::Types<MpiTraits>);
}  // namespace mproc::test::suite
namespace {

int my_pid(int) {
  return static_cast<int>(::getpid());
}

TEST(MpiExecutor, TasksRunOnEveryWorkerRankNotOnRankZero) {
  mproc::mpi::Executor ex;
  EXPECT_EQ(ex.max_workers(), static_cast<std::size_t>(mproc::mpi::world_size() - 1));
  std::set<int> pids;
  for (int p : ex.map(my_pid, std::views::iota(0, 3000), {.chunksize = 10})) pids.insert(p);
  EXPECT_EQ(pids.size(), ex.max_workers());
  EXPECT_EQ(pids.count(static_cast<int>(::getpid())), 0u);
}

TEST(MpiExecutor, TwoExecutorsShareTheRanks) {
  mproc::mpi::Executor a(1), b;
  auto fa = a.submit(mproc::test::suite::square, 3);
  auto fb = b.submit(mproc::test::suite::square, 4);
  EXPECT_EQ(fa.get() + fb.get(), 25);
}

TEST(MpiExecutor, ForceCancelIsRefused) {
  mproc::mpi::Executor ex(1);
  auto f = ex.submit(mproc::test::suite::sleep_ms, 100);
  while (!f.running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(f.cancel(mproc::force));
  EXPECT_EQ(f.get(), 100);
}

TEST(MpiExecutor, TooManyWorkersIsAUsageError) {
  EXPECT_THROW(mproc::mpi::Executor(1000), mproc::UsageError);
}

}  // namespace

int main(int argc, char** argv) {
  mproc::mpi::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();  // finalize runs at exit and stops the worker ranks
}
