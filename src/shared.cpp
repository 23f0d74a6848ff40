// Value/Array storage (SharedArrayBase) and named SharedMemory (shared.hpp).
#include "mproc/shared.hpp"

#include <fcntl.h>

#include <atomic>
#include <cerrno>
#include <random>
#include <string>

#include "detail/sys.hpp"
#include "sync_state.hpp"

namespace mproc::detail {

namespace {
struct ArrayHeader {
  StateHeader header;
  std::uint64_t elem_size;
  std::uint64_t count;
  std::uint64_t fingerprint;
};
static_assert(lock_state_size + sizeof(ArrayHeader) <= array_data_offset);

ArrayHeader& header_of(const SharedSegment& segment) noexcept {
  return *reinterpret_cast<ArrayHeader*>(static_cast<std::byte*>(segment.data()) + lock_state_size);
}
}  // namespace

SharedArrayBase::SharedArrayBase(std::size_t count, std::size_t elem_size,
                                 std::uint64_t fingerprint, const char* debug_name)
    : lock_(Adopt{}, SharedRef{}), count_(count) {
  const std::size_t limit = std::numeric_limits<std::size_t>::max() / 2 - array_data_offset;
  if (elem_size != 0 && count > limit / elem_size) {
    throw UsageError("Array: " + std::to_string(count) + " elements of " +
                     std::to_string(elem_size) + " bytes do not fit in memory");
  }
  SharedRef ref = create_shared(array_data_offset + count * elem_size, debug_name);
  init_lock_state(ref.state(), false);
  ArrayHeader& h = header_of(ref.segment);
  h.elem_size = elem_size;
  h.count = count;
  h.fingerprint = fingerprint;
  init_header(h.header, SyncKind::array);
  lock_ = Lock(Adopt{}, std::move(ref));
}

void SharedArrayBase::encode(Encoder& out) const {
  encode_shared(out, lock_.shared_ref());
}

SharedArrayBase SharedArrayBase::decode(Decoder& in, std::size_t elem_size,
                                        std::uint64_t fingerprint) {
  SharedRef ref = decode_shared(in, SyncKind::lock, sizeof(LockState));
  if (ref.offset != 0 || ref.segment.size() < array_data_offset) {
    throw ProtocolError("Value/Array handle: not the start of an array segment");
  }
  const ArrayHeader& h = header_of(ref.segment);
  const std::uint32_t magic =
      std::atomic_ref<const std::uint32_t>(h.header.magic).load(std::memory_order_acquire);
  if (magic != state_magic || h.header.version != state_version ||
      h.header.kind != SyncKind::array) {
    throw ProtocolError("Value/Array handle: the memory does not hold an mproc array");
  }
  if (h.elem_size != elem_size || h.fingerprint != fingerprint) {
    throw SerializationError(
        "Value/Array handle: the shared memory holds elements of another "
        "type (sender and receiver disagree on T)");
  }
  const std::size_t room = ref.segment.size() - array_data_offset;
  if (elem_size != 0 && h.count > room / elem_size) {
    throw ProtocolError("Value/Array handle: " + std::to_string(h.count) +
                        " elements do not fit the " + std::to_string(ref.segment.size()) +
                        "-byte segment");
  }
  const auto count = static_cast<std::size_t>(h.count);
  return SharedArrayBase(Lock(Adopt{}, std::move(ref)), count);
}

}  // namespace mproc::detail

namespace mproc {

namespace {

constexpr std::size_t max_name_length = 250;

// Validates a user's name; returns it without the optional leading '/'.
std::string checked_name(std::string_view name) {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  const auto bad = [&](const std::string& why) {
    throw UsageError("SharedMemory: invalid name \"" + std::string(name) + "\": " + why);
  };
  if (name.empty()) bad("it is empty");
  if (name.size() > max_name_length) bad("longer than 250 characters");
  if (name == "." || name == "..") bad("\".\" and \"..\" are not names");
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) bad("only letters, digits, '.', '_' and '-' are allowed");
  }
  return std::string(name);
}

}  // namespace

SharedMemory SharedMemory::create(std::string_view name, std::size_t size) {
  std::string checked = checked_name(name);
  if (size == 0) {
    throw UsageError("SharedMemory::create(\"" + checked + "\"): size must be > 0");
  }
  const std::string path = "/" + checked;
  detail::UniqueFd fd = detail::sys::shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  try {
    detail::sys::allocate(fd.get(), size);
    auto segment = detail::SharedSegment::attach(std::move(fd));
    return SharedMemory(std::move(checked), std::move(segment), size);
  } catch (...) {
    // We created the name: a failed creation must not leave it behind.
    try {
      detail::sys::shm_unlink(path);
    } catch (...) {
    }
    throw;
  }
}

SharedMemory SharedMemory::create(std::size_t size) {
  static std::atomic<unsigned> counter{0};
  std::random_device random;
  for (int attempt = 0;; ++attempt) {
    std::string name = "mproc_" + std::to_string(detail::this_process_id()) + "_" +
                       std::to_string(counter.fetch_add(1)) + "_" + std::to_string(random());
    try {
      return create(name, size);
    } catch (const SystemError& e) {
      if (e.code() != std::errc::file_exists || attempt >= 16) throw;
    }
  }
}

SharedMemory SharedMemory::open(std::string_view name) {
  std::string checked = checked_name(name);
  detail::UniqueFd fd = detail::sys::shm_open("/" + checked, O_RDWR, 0);
  const std::size_t size = detail::sys::file_size(fd.get());
  if (size == 0) {
    throw UsageError("SharedMemory::open(\"" + checked +
                     "\"): the block is empty (size 0); its creator has not sized it");
  }
  return SharedMemory(std::move(checked), detail::SharedSegment::attach(std::move(fd)), size);
}

void SharedMemory::unlink() {
  if (name_.empty()) throw UsageError("SharedMemory::unlink(): this handle has no name");
  detail::sys::shm_unlink("/" + name_);
}

void handle_codec<SharedMemory>::encode(Encoder& out, const SharedMemory& shm) {
  if (!shm.segment()) throw UsageError("cannot send a closed SharedMemory handle");
  const std::uint64_t length = shm.name().size();
  out.write_bytes(&length, sizeof length);
  out.write_bytes(shm.name().data(), shm.name().size());
  const std::uint64_t size = shm.size();
  out.write_bytes(&size, sizeof size);
  mproc::encode(out, shm.segment());
}

SharedMemory handle_codec<SharedMemory>::decode(Decoder& in) {
  std::uint64_t length = 0;
  in.read_bytes(&length, sizeof length);
  if (length > max_name_length + 1) throw ProtocolError("SharedMemory handle: name too long");
  std::string name(static_cast<std::size_t>(length), '\0');
  in.read_bytes(name.data(), name.size());
  std::uint64_t size = 0;
  in.read_bytes(&size, sizeof size);
  auto segment = mproc::decode<detail::SharedSegment>(in);
  if (size > segment.size()) {
    throw ProtocolError("SharedMemory handle: size " + std::to_string(size) +
                        " exceeds the received segment");
  }
  return SharedMemory(std::move(name), std::move(segment), static_cast<std::size_t>(size));
}

}  // namespace mproc
