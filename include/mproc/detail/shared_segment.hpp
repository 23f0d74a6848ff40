// shared_segment.hpp — memory shared between processes, as a copyable handle (internal).
//
// The building block of Value, Array, the locks and the queues. A segment is a memfd: it has
// no name, so nothing can leak into /dev/shm and nothing needs unlinking; it disappears when
// the last process that maps it (or holds its descriptor) goes away, crash or not. Its size is
// reserved with posix_fallocate when it is created, so a full tmpfs is a SystemError at
// creation, never a SIGBUS later.
//
// Copies of a SharedSegment share one mapping (and one descriptor) in this process. It travels
// to other processes as its descriptor (handle_codec): the receiver maps the same memory. A
// fork child simply inherits the mapping. The mapping is zero-filled at creation.
#pragma once

#include <cstddef>
#include <memory>

#include "mproc/codec.hpp"

namespace mproc::detail {

class SharedSegment {
 public:
  SharedSegment() noexcept = default;
  /// A new zero-filled segment of `size` bytes (rounded up to a page). `debug_name` shows in
  /// /proc/<pid>/fd and /proc/<pid>/maps as "memfd:<debug_name>".
  static SharedSegment create(std::size_t size, const char* debug_name = "mproc");
  /// Maps the segment behind `fd` (a descriptor received from another process).
  static SharedSegment attach(UniqueFd fd);

  void* data() const noexcept;
  std::size_t size() const noexcept;
  int fd() const noexcept;
  explicit operator bool() const noexcept { return mapping_ != nullptr; }

 private:
  struct Mapping;
  std::shared_ptr<Mapping> mapping_;
};

}  // namespace mproc::detail

template <>
struct mproc::handle_codec<mproc::detail::SharedSegment> {
  static void encode(Encoder& out, const detail::SharedSegment& segment);
  static detail::SharedSegment decode(Decoder& in);
};
