# The two commands: `make demo` and `make test`. Both install missing Debian packages first.
BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE    ?= cmake
CTEST    ?= ctest
# Tests fork and exec a lot but mostly wait: run more of them than there are cores.
TEST_JOBS ?= $(shell echo $$(( $(JOBS) * 2 )))

RELEASE := $(BUILD)/release
ASAN    := $(BUILD)/asan
FUZZ    := $(BUILD)/fuzz
# `make fuzz`: each libFuzzer target (fuzz/<name>.cpp) runs this many seconds.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(sort $(basename $(notdir $(filter-out fuzz/replay_main.cpp,$(wildcard fuzz/*.cpp)))))
TSAN    := $(BUILD)/tsan
# ThreadSanitizer checks the threads inside the parent: futures and their callbacks, the
# progress thread, the pool's engine and sender threads, submitting threads. (Workers are
# other processes, which TSan cannot see across.)
TSAN_TESTS := future_test progress_test executor_test pool_test pool_failure_test
# Their test suites (ctest names are Suite.Test, Prefix/Suite.Test/param).
TSAN_SUITES := ^(AsCompleted|Future|Wait|Progress|Executor|Local|Pool|PoolFailure)[./]
# TSan reserves terabytes of address space for its shadow: an RLIMIT_AS test cannot run.
TSAN_EXCLUDE := MemoryLimit

.PHONY: all deps build test test-release test-asan test-tsan demo bench report clean format fuzz soak

all: build

deps:
	@scripts/deps.sh

$(RELEASE)/CMakeCache.txt:
	$(CMAKE) -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release -DMPROC_WERROR=ON

$(ASAN)/CMakeCache.txt:
	$(CMAKE) -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROC_WERROR=ON \
	  -DMPROC_BENCH=OFF -DMPROC_SANITIZE=address,undefined

build: deps $(RELEASE)/CMakeCache.txt
	$(CMAKE) --build $(RELEASE) -j $(JOBS)

test-release: build
	cd $(RELEASE) && $(CTEST) --output-on-failure -j $(TEST_JOBS)

test-asan: deps $(ASAN)/CMakeCache.txt
	$(CMAKE) --build $(ASAN) -j $(JOBS)
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(CTEST) --output-on-failure -j $(TEST_JOBS)

$(TSAN)/CMakeCache.txt:
	$(CMAKE) -S . -B $(TSAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROC_WERROR=ON \
	  -DMPROC_BENCH=OFF -DMPROC_SANITIZE=thread

test-tsan: deps $(TSAN)/CMakeCache.txt
	$(CMAKE) --build $(TSAN) -j $(JOBS) --target $(TSAN_TESTS)
	cd $(TSAN) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:handle_segv=0:handle_sigbus=0:suppressions=$(CURDIR)/tests/tsan.supp \
	  $(CTEST) --output-on-failure -j $(TEST_JOBS) -R '$(TSAN_SUITES)' -E '$(TSAN_EXCLUDE)'

test: test-release test-asan test-tsan

# libFuzzer needs clang: the fuzzers and libmproc built with ASan+UBSan and coverage
# (-O1, line tables for the reports), then each run on a copy of its seed corpus.
$(FUZZ)/CMakeCache.txt:
	CC=clang-14 CXX=clang++-14 $(CMAKE) -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
	  -DMPROC_FUZZ=ON -DMPROC_DEVELOP=OFF -DMPROC_BENCH=OFF

fuzz: deps $(FUZZ)/CMakeCache.txt
	$(CMAKE) --build $(FUZZ) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	scripts/fuzz.sh $(FUZZ) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# A long randomised fault-injection run of a pool and an executor (tests/soak/soak.cpp): every
# task accounted for exactly once, no leaks, RSS stable. SOAK_SECONDS=600 for the full report.
SOAK_SECONDS ?= 60
soak: build
	$(CMAKE) --build $(RELEASE) -j $(JOBS) --target mproc_soak
	$(RELEASE)/tests/soak/mproc_soak --seconds $(SOAK_SECONDS)

demo: build
	@scripts/demo.sh $(RELEASE)

bench: build
	bench/run --build $(RELEASE)

# The full suite (and the MPI benchmarks), written to docs/benchmarks.md and docs/benchmarks.png.
report: build
	bench/report --build $(RELEASE)

format:
	clang-format -i $$(git ls-files '*.hpp' '*.cpp')

clean:
	rm -rf $(BUILD)
