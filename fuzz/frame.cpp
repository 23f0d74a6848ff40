// frame.cpp — fuzz target: the Connection frame decoder (docs/wire-format.md, "Connection
// frames"), fed through real descriptors, so that the read-ahead buffers, the pipe/side-socket
// matching and the SCM_RIGHTS bookkeeping of src/pipe.cpp all see the attacker's bytes.
//
// Input (a small script, see fuzz_support.hpp):
//
//     options:u8  unit:u8  chunk*
//     chunk = tag:u8  length:u16le  bytes[length]
//
//   options bit 0  single-socket Connection (Connection(UniqueFd)); else a Pipe() end: a frame
//                  pipe and a side socket
//           bit 1  receive with recv_bytes_into into a buffer of unit * 16 bytes
//           bit 2  max_message_size() = 4096 for this input
//           bit 4  max_message_size() = its default, 4 GiB (a header claiming more than
//                  64 MiB then costs a 64 MiB buffer, ~30 ms); with neither bit, 1 MiB
//           bit 3  receive frames and decode them as std::vector<mproc::Connection> (the
//                  descriptors that arrived are decoded into Connections)
//   tag     bit 7  the chunk goes to the side socket (a Pipe() end; otherwise the pipe)
//           bits 0-2  descriptors (copies of /dev/null) sent with the chunk (SCM_RIGHTS;
//                  socket chunks only)
//
// Every chunk is written (one write/sendmsg each) before anything is received, then the
// writing ends are closed, so each input ends in EOF and nothing waits. The receiver must
// return messages, or throw ProtocolError, ConnectionClosed (EOF, possibly mid-frame) or
// BufferTooShort (recv_bytes_into); a ProtocolError or ConnectionClosed must then repeat on
// the next recv. Decoding a payload may fail with ProtocolError or SerializationError (another
// type). No descriptor may leak.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "mproc/codec.hpp"
#include "mproc/errors.hpp"
#include "mproc/pipe.hpp"

namespace {

using mproc::detail::UniqueFd;
using mproc_fuzz::fail;

constexpr std::size_t kDefaultLimit = std::size_t{1} << 32;
constexpr std::size_t kFuzzLimit = std::size_t{1} << 20;
constexpr int kMaxMessages = 64;

/// Writes one chunk without blocking; false if the channel did not take all of it.
bool write_chunk(int fd, bool socket, std::span<const std::byte> bytes, int fds) {
  if (!socket) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    return n == static_cast<ssize_t>(bytes.size());
  }
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(8 * sizeof(int))> control{};
  if (fds > 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(static_cast<std::size_t>(fds) * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(static_cast<std::size_t>(fds) * sizeof(int));
    for (int i = 0; i < fds; ++i) {
      const int null_fd = mproc_fuzz::dev_null();
      std::memcpy(CMSG_DATA(c) + static_cast<std::size_t>(i) * sizeof(int), &null_fd, sizeof(int));
    }
  }
  const ssize_t n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  return n == static_cast<ssize_t>(bytes.size());
}

/// The error a failed recv threw, to check that the next recv throws it again.
enum class Failure { none, protocol, closed };

Failure receive_one(mproc::Connection& c, unsigned options, std::vector<std::byte>& buffer) {
  try {
    if ((options & 8) != 0) {
      // recv<T>, in two steps so that a malformed payload (not sticky: the frame itself was
      // fine) is told apart from a framing error.
      mproc::detail::ReceivedFrame frame = c.recv_frame();
      try {
        mproc::Decoder in(frame.bytes, frame.fds);
        const auto connections = mproc::decode_message<std::vector<mproc::Connection>>(in);
        for (const auto& received : connections) {
          if (received.closed()) fail("decoded a closed Connection");
        }
      } catch (const mproc::ProtocolError&) {
      } catch (const mproc::SerializationError&) {
      } catch (...) {
        mproc_fuzz::fail_with_current_exception("decode_message<std::vector<Connection>>");
      }
    } else if ((options & 2) != 0) {
      const std::size_t n = c.recv_bytes_into(buffer);
      if (n > buffer.size()) fail("recv_bytes_into returned more bytes than its buffer holds");
    } else {
      const auto bytes = c.recv_bytes();
      if (bytes.size() > mproc::max_message_size()) {
        fail("received a message over max_message_size()");
      }
    }
    return Failure::none;
  } catch (const mproc::ProtocolError&) {
    return Failure::protocol;
  } catch (const mproc::ConnectionClosed&) {
    return Failure::closed;
  } catch (const mproc::BufferTooShort& e) {
    if ((options & 2) == 0) fail(std::string("BufferTooShort from recv_bytes: ") + e.what());
    return Failure::none;
  } catch (...) {
    mproc_fuzz::fail_with_current_exception("Connection::recv");
  }
}

void run(const std::uint8_t* data, std::size_t size) {
  mproc_fuzz::Script script(data, size);
  const unsigned options = script.u8();
  const std::size_t unit = script.u8();
  const bool single = (options & 1) != 0;
  mproc::set_max_message_size((options & 4) != 0    ? 4096
                              : (options & 16) != 0 ? kDefaultLimit
                                                    : kFuzzLimit);

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fail("socketpair()");
  UniqueFd side_rx(sv[0]);
  UniqueFd side_tx(sv[1]);
  UniqueFd pipe_rx;
  UniqueFd pipe_tx;
  if (!single) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) fail("pipe2()");
    pipe_rx = UniqueFd(p[0]);
    pipe_tx = UniqueFd(p[1]);
    // The receiver blocks on its pipe; only the writing end is non-blocking.
    if (::fcntl(pipe_rx.get(), F_SETFL, 0) != 0) fail("fcntl()");
  }

  while (!script.done()) {
    const std::uint8_t tag = script.u8();
    const std::size_t length = script.u16();
    const auto bytes = script.bytes(length);
    if (bytes.empty()) continue;
    const bool to_side = single || (tag & 0x80) != 0;
    const bool written = to_side ? write_chunk(side_tx.get(), true, bytes, tag & 7)
                                 : write_chunk(pipe_tx.get(), false, bytes, 0);
    if (!written) break;  // a full channel: the rest of the input is not sent
  }
  side_tx.reset();
  pipe_tx.reset();

  mproc::Connection c;
  if (single) {
    c = mproc::Connection(std::move(side_rx), true, false);
  } else {
    c = mproc::detail::make_connection({std::move(pipe_rx), UniqueFd(), std::move(side_rx)}, true,
                                       false);
  }
  std::vector<std::byte> buffer(unit * 16);
  for (int i = 0; i < kMaxMessages; ++i) {
    const Failure failure = receive_one(c, options, buffer);
    if (failure == Failure::none) continue;
    // The stream lost its framing (or ended): every later recv repeats the failure.
    if (receive_one(c, options, buffer) != failure) {
      fail("a recv after a ProtocolError / ConnectionClosed did not fail the same way");
    }
    break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mproc_fuzz::run_checking_fds(run, data, size);
}
