// sync_bench.cpp — locks, Value updates, Event and Barrier round trips between processes,
// against the raw primitives that bound them.
//
//   lock_uncontended/mproc                 Lock lock()+unlock(), no other process
//   lock_uncontended/pthread_pshared       bare PTHREAD_PROCESS_SHARED mutex (not robust)
//   lock_uncontended/std_mutex             std::mutex (process-private)
//   value_increment_2proc/mproc            one `{lock_guard g(v.get_lock()); ++v.value();}` by
//                                          this process while a second process does the same
//                                          non-stop; time per increment of this process, and
//                                          increments_per_second of both together
//   value_increment_2proc/pthread_pshared  the same with a bare process-shared pthread mutex
//   event_pingpong/mproc/pinned:0|1        set() an Event, wait() for the other process's
//                                          answering Event (two Events, clear after wait)
//   barrier_roundtrip_2proc/mproc          one round of a 2-party Barrier
//   barrier_roundtrip_2proc/pthread_pshared  the same with a PTHREAD_PROCESS_SHARED
//                                          pthread_barrier_t
//
// bench/python/sync_*.py measure the same workloads with multiprocessing. The second process is
// a raw fork child running until told to stop (its start is not part of the measurement).
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <exception>
#include <mproc/shared.hpp>
#include <mproc/sync.hpp>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

#include "support.hpp"

namespace {

using mproc_bench::errno_message;

// ---- raw peers' shared memory -------------------------------------------------------------

template <class T>
T* map_shared_object() {
  void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : new (p) T();
}

template <class T>
void unmap_shared_object(T* p) {
  if (p != nullptr) {
    p->~T();
    ::munmap(p, sizeof(T));
  }
}

struct RawCounter {
  pthread_mutex_t mutex;
  long value = 0;
  std::atomic<int> stop{0};
  std::atomic<long> child_increments{0};
};

bool init_pshared_mutex(pthread_mutex_t& m) {
  pthread_mutexattr_t attr;
  ::pthread_mutexattr_init(&attr);
  ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  const int rc = ::pthread_mutex_init(&m, &attr);
  ::pthread_mutexattr_destroy(&attr);
  return rc == 0;
}

// ---- uncontended lock ---------------------------------------------------------------------

void lock_uncontended_mproc(benchmark::State& state) {
  try {
    mproc::Lock lock;
    for (auto _ : state) {
      lock.lock();
      lock.unlock();
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void lock_uncontended_pthread(benchmark::State& state) {
  auto* shared = map_shared_object<RawCounter>();
  if (shared == nullptr || !init_pshared_mutex(shared->mutex)) {
    state.SkipWithError("mmap/pthread_mutex_init failed");
    return;
  }
  for (auto _ : state) {
    ::pthread_mutex_lock(&shared->mutex);
    ::pthread_mutex_unlock(&shared->mutex);
  }
  unmap_shared_object(shared);
}

void lock_uncontended_std(benchmark::State& state) {
  std::mutex m;
  for (auto _ : state) {
    m.lock();
    m.unlock();
  }
}

// ---- Value increments from two processes --------------------------------------------------

// Counts how many increments the child made, so the total rate can be reported.
struct ChildTally {
  std::atomic<int> stop{0};
  std::atomic<long> increments{0};
};

void report_rate(benchmark::State& state, long child_increments) {
  state.counters["increments_per_second"] = benchmark::Counter(
      static_cast<double>(state.iterations() + child_increments), benchmark::Counter::kIsRate);
}

void value_increment_mproc(benchmark::State& state) {
  auto* tally = map_shared_object<ChildTally>();
  if (tally == nullptr) {
    state.SkipWithError(errno_message("mmap").c_str());
    return;
  }
  try {
    mproc::Value<long> counter(0);
    const pid_t child = mproc_bench::fork_child([&] {
      long n = 0;
      while (tally->stop.load(std::memory_order_relaxed) == 0) {
        std::lock_guard guard(counter.get_lock());
        counter.value() += 1;
        ++n;
      }
      tally->increments.store(n);
      return 0;
    });
    if (child < 0) throw std::runtime_error(errno_message("fork"));
    for (auto _ : state) {
      std::lock_guard guard(counter.get_lock());
      counter.value() += 1;
    }
    tally->stop.store(1);
    std::string why;
    if (!mproc_bench::reap(child, &why)) throw std::runtime_error(why);
    if (counter.value() != state.iterations() + tally->increments.load()) {
      throw std::runtime_error("lost increments: the lock did not exclude");
    }
    report_rate(state, tally->increments.load());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  unmap_shared_object(tally);
}

void value_increment_pthread(benchmark::State& state) {
  auto* shared = map_shared_object<RawCounter>();
  if (shared == nullptr || !init_pshared_mutex(shared->mutex)) {
    state.SkipWithError("mmap/pthread_mutex_init failed");
    return;
  }
  const pid_t child = mproc_bench::fork_child([&] {
    long n = 0;
    while (shared->stop.load(std::memory_order_relaxed) == 0) {
      ::pthread_mutex_lock(&shared->mutex);
      shared->value += 1;
      ::pthread_mutex_unlock(&shared->mutex);
      ++n;
    }
    shared->child_increments.store(n);
    return 0;
  });
  if (child < 0) {
    state.SkipWithError(errno_message("fork").c_str());
    unmap_shared_object(shared);
    return;
  }
  for (auto _ : state) {
    ::pthread_mutex_lock(&shared->mutex);
    shared->value += 1;
    ::pthread_mutex_unlock(&shared->mutex);
  }
  shared->stop.store(1);
  std::string why;
  if (!mproc_bench::reap(child, &why)) {
    state.SkipWithError(why.c_str());
  } else {
    report_rate(state, shared->child_increments.load());
  }
  unmap_shared_object(shared);
}

// ---- Event ping-pong ------------------------------------------------------------------------

void event_pingpong_mproc(benchmark::State& state) {
  mproc_bench::ScopedPin pin(state.range(0) != 0);
  if (!pin.error().empty()) {
    state.SkipWithError(pin.error().c_str());
    return;
  }
  try {
    mproc::Event ping;
    mproc::Event pong;
    mproc::Event stop;
    const pid_t child = mproc_bench::fork_child([&] {
      for (;;) {
        ping.wait();
        ping.clear();
        if (stop.is_set()) return 0;
        pong.set();
      }
    });
    if (child < 0) throw std::runtime_error(errno_message("fork"));
    for (auto _ : state) {
      ping.set();
      pong.wait();
      pong.clear();
    }
    stop.set();
    ping.set();
    std::string why;
    if (!mproc_bench::reap(child, &why)) throw std::runtime_error(why);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---- Barrier round trip --------------------------------------------------------------------

// The child meets the parent until it has done `total` rounds; the parent publishes total
// (its own rounds + 1) before its last round, so both stop after the same round whatever the
// timing.
struct Rounds {
  std::atomic<long> total{0};
};

template <class Wait>
int meet_until_total(const Rounds& rounds, Wait wait) {
  for (long done = 1;; ++done) {
    wait();
    const long total = rounds.total.load();
    if (total != 0 && done >= total) return 0;
  }
}

void barrier_roundtrip_mproc(benchmark::State& state) {
  auto* rounds = map_shared_object<Rounds>();
  if (rounds == nullptr) {
    state.SkipWithError(errno_message("mmap").c_str());
    return;
  }
  try {
    mproc::Barrier barrier(2);
    const pid_t child = mproc_bench::fork_child(
        [&] { return meet_until_total(*rounds, [&] { static_cast<void>(barrier.wait()); }); });
    if (child < 0) throw std::runtime_error(errno_message("fork"));
    long done = 0;
    for (auto _ : state) {
      static_cast<void>(barrier.wait());
      ++done;
    }
    rounds->total.store(done + 1);
    static_cast<void>(barrier.wait());
    std::string why;
    if (!mproc_bench::reap(child, &why)) throw std::runtime_error(why);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  unmap_shared_object(rounds);
}

struct RawBarrier {
  pthread_barrier_t barrier;
  Rounds rounds;
};

void barrier_roundtrip_pthread(benchmark::State& state) {
  auto* shared = map_shared_object<RawBarrier>();
  pthread_barrierattr_t attr;
  ::pthread_barrierattr_init(&attr);
  ::pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (shared == nullptr || ::pthread_barrier_init(&shared->barrier, &attr, 2) != 0) {
    state.SkipWithError("mmap/pthread_barrier_init failed");
    return;
  }
  ::pthread_barrierattr_destroy(&attr);
  const pid_t child = mproc_bench::fork_child([&] {
    return meet_until_total(shared->rounds, [&] { ::pthread_barrier_wait(&shared->barrier); });
  });
  if (child < 0) {
    state.SkipWithError(errno_message("fork").c_str());
    unmap_shared_object(shared);
    return;
  }
  long done = 0;
  for (auto _ : state) {
    ::pthread_barrier_wait(&shared->barrier);
    ++done;
  }
  shared->rounds.total.store(done + 1);
  ::pthread_barrier_wait(&shared->barrier);
  std::string why;
  if (!mproc_bench::reap(child, &why)) state.SkipWithError(why.c_str());
  unmap_shared_object(shared);
}

}  // namespace

BENCHMARK(lock_uncontended_mproc)->Name("lock_uncontended/mproc")->UseRealTime();
BENCHMARK(lock_uncontended_pthread)->Name("lock_uncontended/pthread_pshared")->UseRealTime();
BENCHMARK(lock_uncontended_std)->Name("lock_uncontended/std_mutex")->UseRealTime();
BENCHMARK(value_increment_mproc)->Name("value_increment_2proc/mproc")->UseRealTime();
BENCHMARK(value_increment_pthread)->Name("value_increment_2proc/pthread_pshared")->UseRealTime();
BENCHMARK(event_pingpong_mproc)
    ->Name("event_pingpong/mproc")
    ->ArgName("pinned")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime();
BENCHMARK(barrier_roundtrip_mproc)->Name("barrier_roundtrip_2proc/mproc")->UseRealTime();
BENCHMARK(barrier_roundtrip_pthread)
    ->Name("barrier_roundtrip_2proc/pthread_pshared")
    ->UseRealTime();

BENCHMARK_MAIN();
