# The two commands: `make demo` and `make test`. Both install missing Debian packages first.
BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE    ?= cmake
CTEST    ?= ctest
# Tests fork and exec a lot but mostly wait: run more of them than there are cores.
TEST_JOBS ?= $(shell echo $$(( $(JOBS) * 2 )))

RELEASE := $(BUILD)/release
ASAN    := $(BUILD)/asan

.PHONY: all deps build test test-release test-asan demo bench clean format

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

test: test-release test-asan

demo: build
	@scripts/demo.sh $(RELEASE)

bench: build
	bench/run --build $(RELEASE)

format:
	clang-format -i $$(git ls-files '*.hpp' '*.cpp')

clean:
	rm -rf $(BUILD)
