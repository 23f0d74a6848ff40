#include "mproc/detail/shared_segment.hpp"

#include <unistd.h>

#include "detail/sys.hpp"

namespace mproc::detail {

struct SharedSegment::Mapping {
  UniqueFd fd;
  void* data = nullptr;
  std::size_t size = 0;
  Mapping(UniqueFd f, void* d, std::size_t s) : fd(std::move(f)), data(d), size(s) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (data != nullptr) sys::unmap(data, size);
  }
};

namespace {
std::size_t round_to_page(std::size_t size) {
  static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  if (size == 0) size = 1;
  return (size + page - 1) / page * page;
}
}  // namespace

SharedSegment SharedSegment::create(std::size_t size, const char* debug_name) {
  const std::size_t rounded = round_to_page(size);
  UniqueFd fd = sys::memfd_create(debug_name);
  sys::allocate(fd.get(), rounded);
  void* data = sys::map_shared(fd.get(), rounded);
  SharedSegment segment;
  segment.mapping_ = std::make_shared<Mapping>(std::move(fd), data, rounded);
  return segment;
}

SharedSegment SharedSegment::attach(UniqueFd fd) {
  const std::size_t size = sys::file_size(fd.get());
  if (size == 0) throw ProtocolError("SharedSegment: the received descriptor is empty");
  void* data = sys::map_shared(fd.get(), size);
  SharedSegment segment;
  segment.mapping_ = std::make_shared<Mapping>(std::move(fd), data, size);
  return segment;
}

void* SharedSegment::data() const noexcept {
  return mapping_ ? mapping_->data : nullptr;
}
std::size_t SharedSegment::size() const noexcept {
  return mapping_ ? mapping_->size : 0;
}
int SharedSegment::fd() const noexcept {
  return mapping_ ? mapping_->fd.get() : -1;
}

}  // namespace mproc::detail

void mproc::handle_codec<mproc::detail::SharedSegment>::encode(
    Encoder& out, const detail::SharedSegment& segment) {
  if (!segment) throw UsageError("cannot send an empty SharedSegment handle");
  const std::uint32_t index = out.attach_fd(segment.fd());
  out.write_bytes(&index, sizeof index);
}

mproc::detail::SharedSegment mproc::handle_codec<mproc::detail::SharedSegment>::decode(
    Decoder& in) {
  std::uint32_t index = 0;
  in.read_bytes(&index, sizeof index);
  return detail::SharedSegment::attach(in.take_fd(index));
}
