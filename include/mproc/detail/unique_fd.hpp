// unique_fd.hpp — sole owner of a file descriptor (internal).
//
// Public headers hold descriptors through this type so that they need no OS header. Closing
// goes through the sys layer (src/detail/sys.cpp), which never retries close().
#pragma once

#include <utility>

namespace mproc::detail {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives up ownership without closing.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the owned descriptor (if any) and takes `fd`. Never throws; a failed close is
  /// reported through the logger.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

}  // namespace mproc::detail
