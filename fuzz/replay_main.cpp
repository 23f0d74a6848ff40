// replay_main.cpp — runs a fuzz target's LLVMFuzzerTestOneInput over files, without libFuzzer:
// the test suite's fuzz_replay.<target> tests replay the checked-in corpus (and the inputs of
// fixed bugs) with every compiler and sanitizer the suite uses.
//
//     fuzz_replay_<target> <file or directory>...    (a directory: each regular file in it)
//
// A target reports a broken contract by aborting, which fails the test. Like libFuzzer's
// -malloc_limit_mb, a single allocation over kMallocLimit aborts too (for ASan builds the
// sanitizer's own max_allocation_size_mb does this; see tests/CMakeLists.txt).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

#if defined(__SANITIZE_ADDRESS__)
#define MPROC_REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MPROC_REPLAY_ASAN 1
#endif
#endif

#ifndef MPROC_REPLAY_ASAN
namespace {
constexpr std::size_t kMallocLimit = std::size_t{1} << 30;

void* guarded_alloc(std::size_t size) {
  if (size > kMallocLimit) {
    std::fprintf(stderr, "\nFUZZ CONTRACT VIOLATION: an allocation of %zu bytes (limit %zu)\n",
                 size, kMallocLimit);
    std::abort();
  }
  return std::malloc(size == 0 ? 1 : size);
}
}  // namespace

// Replacements of the global operator new (the array and nothrow forms of libstdc++ call
// these) and of the matching operator delete.
void* operator new(std::size_t size) {
  if (void* p = guarded_alloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return guarded_alloc(size);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
#endif

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg(argv[i]);
    if (fs::is_directory(arg)) {
      for (const auto& entry : fs::directory_iterator(arg)) {
        if (entry.is_regular_file()) inputs.push_back(entry.path());
      }
    } else {
      inputs.push_back(arg);
    }
  }
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {
    std::fprintf(stderr, "usage: %s <corpus file or directory>... (found no input)\n", argv[0]);
    return 2;
  }
  for (const fs::path& path : inputs) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      std::fprintf(stderr, "cannot read %s\n", path.c_str());
      return 2;
    }
    const std::vector<char> bytes{std::istreambuf_iterator<char>(file),
                                  std::istreambuf_iterator<char>()};
    std::fprintf(stderr, "replaying %s (%zu bytes)\n", path.c_str(), bytes.size());
    // A copy of exactly the input's size, so that ASan catches a read past its end.
    auto* data = new std::uint8_t[bytes.size()];
    std::copy(bytes.begin(), bytes.end(), data);
    LLVMFuzzerTestOneInput(data, bytes.size());
    delete[] data;
  }
  std::fprintf(stderr, "%zu input(s) replayed\n", inputs.size());
  return 0;
}
