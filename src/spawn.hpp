// spawn.hpp — the spawn start method's child side (internal).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mproc/codec.hpp"

namespace mproc::detail::spawn {

/// Exec's a fresh copy of this binary that will run the call in `message` (the bytes after
/// the bootstrap body's fixed fields; see bootstrap.hpp). Returns the child's pid; throws
/// SystemError with the child's errno if exec failed. `keep_fds` stay open in the child.
int exec_self(const std::string& role, int channel_fd, const std::vector<int>& keep_fds);

/// The body of a start message (bootstrap.hpp) for `state`, whose call is `call`.
Encoder encode_start_message(const std::string& name, const Encoder& call);

/// The fields of a start message's body; `call` points into the decoded buffer.
struct StartMessage {
  std::string name;
  std::int32_t parent_pid = 0;
  std::string parent_name;
  std::uint64_t max_message_size = 0;  ///< the parent's max_message_size()
  std::vector<int> fd_numbers;         ///< the call's descriptors as numbered in the parent
  std::span<const std::byte> call;
};
/// Reads a start message's body; ProtocolError on a bad magic or version.
StartMessage decode_start_message(Decoder& in);

/// Body of a spawn child: reads the start message from `fd`, runs the call, exits.
[[noreturn]] void run_child(int fd) noexcept;

}  // namespace mproc::detail::spawn
