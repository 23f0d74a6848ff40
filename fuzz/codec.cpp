// codec.cpp — fuzz target: decoding every standard type family of the codec (codec.hpp,
// detail/archive.hpp) from attacker bytes.
//
// Input: selector:u8 then the bytes to decode.
//
//   selector bits 0-5  which type (index into Cases, codec_cases.hpp; others are ignored)
//            bits 6-7  0: mproc::decode<T> of the bytes, then expect_end()
//                      1: decode_message<T> of type_fingerprint<T>() + the bytes (the target
//                         supplies the fingerprint, which differs between compilers, so that
//                         one corpus serves the g++ replay and the clang fuzzer)
//                      2: decode_message<T> of the bytes as they are (fingerprint included)
//                      3: as 1, with max_message_size() = 64 for this input
//
// Contract checked: decoding returns a value or throws ProtocolError; SerializationError only
// for a fingerprint of another type (mode 2); nothing else, no crash, no leak, no allocation
// out of proportion to the input (the replay and libFuzzer both cap allocations). A decoded
// value must survive a round trip: encode_message then decode_message gives an equal value
// (compared by their encodings, or by == for unordered containers, whose order is not kept).
// Descriptors: three copies of /dev/null arrive with every input, for the handle types; those
// not taken are closed with the input.
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "codec_cases.hpp"
#include "fuzz_support.hpp"
#include "mproc/codec.hpp"
#include "mproc/errors.hpp"

namespace {

using mproc::detail::UniqueFd;
using mproc_fuzz::Compare;
using mproc_fuzz::fail;
using mproc_fuzz::kCases;

constexpr std::size_t kDefaultLimit = std::size_t{1} << 32;

template <class T>
std::vector<std::byte> encoding_of(const T& value) {
  mproc::Encoder out;
  mproc::encode_message(out, value);
  return out.bytes();
}

template <class C>
void check_case(std::span<const std::byte> input, unsigned mode) {
  using T = typename C::type;
  std::array<UniqueFd, 3> fds;
  for (auto& fd : fds) fd = UniqueFd(::dup(mproc_fuzz::dev_null()));

  std::vector<std::byte> bytes;
  if (mode == 1 || mode == 3) {
    mproc::Encoder prefix;
    mproc::detail::put_u64_le(prefix, mproc::type_fingerprint<T>());
    bytes = prefix.bytes();
  }
  bytes.insert(bytes.end(), input.begin(), input.end());

  std::optional<T> value;
  try {
    mproc::Decoder in(bytes, fds);
    if (mode == 0) {
      value.emplace(mproc::decode<T>(in));
      in.expect_end();
    } else {
      value.emplace(mproc::decode_message<T>(in));
    }
  } catch (const mproc::ProtocolError&) {
    return;
  } catch (const mproc::SerializationError& e) {
    std::uint64_t fingerprint = 0;
    if (mode == 2 && bytes.size() >= 8) std::memcpy(&fingerprint, bytes.data(), 8);
    if (mode != 2 || bytes.size() < 8 || fingerprint == mproc::type_fingerprint<T>()) {
      fail(std::string("SerializationError without a type mismatch: ") + e.what());
    }
    return;
  } catch (...) {
    mproc_fuzz::fail_with_current_exception(mproc::type_name<T>().data());
  }

  if constexpr (C::how != Compare::none) {
    // The round trip: what decoded must encode, and decode again to the same value.
    const std::vector<std::byte> once = encoding_of(*value);
    mproc::Decoder in(once);
    const T again = mproc::decode_message<T>(in);
    if constexpr (C::how == Compare::value) {
      if (!(again == *value)) fail("round trip changed the value");
    } else {
      if (encoding_of(again) != once) fail("round trip changed the encoding");
    }
  }
}

template <std::size_t... I>
void dispatch(std::size_t index, std::span<const std::byte> input, unsigned mode,
              std::index_sequence<I...>) {
  ((index == I ? check_case<std::tuple_element_t<I, mproc_fuzz::Cases>>(input, mode) : void()),
   ...);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t index = data[0] & 0x3f;
  const unsigned mode = data[0] >> 6;
  if (index >= kCases) return 0;
  mproc::set_max_message_size(mode == 3 ? 64 : kDefaultLimit);
  const mproc_fuzz::FdLeakCheck leaks;
  dispatch(index, {reinterpret_cast<const std::byte*>(data + 1), size - 1}, mode,
           std::make_index_sequence<kCases>{});
  leaks.verify();
  return 0;
}
