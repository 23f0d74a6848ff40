// manager_protocol.cpp — fuzz target: the Manager server on the bytes an authenticated
// client sends (detail/manager_protocol.hpp): FrameReader's length-prefixed framing
// (src/manager_socket.cpp) and Server::handle, which decodes and runs each request against
// the server's objects (src/manager_server.cpp, src/manager_objects.cpp, and the manager-call
// decoding of src/manager_calls.cpp).
//
// Input: piece:u8, then the byte stream of one client connection (request frames).
//
//   piece 0: every byte is in the socket before the server reads;
//   piece n: the bytes arrive n at a time, each piece only after the server has read the
//            previous one (at most 64 pieces, the last takes the rest): a client trickling
//            its bytes, which is what a frame buffer that grows ahead of the data would show.
//
// The loop is the one of Server::serve after the handshake, on one end of a socketpair; the
// replies are checked here instead of being sent. A fresh server per input, so objects made
// by one request (ids 1, 2, ...) are there for the next ones of the same input. Requests that
// wait (queue get/put, event wait) find their client gone after one wait slice, as if it had
// hung up, and end the connection as in the real server.
//
// Contract checked: reading a frame returns it, or throws ProtocolError (over the limit) or
// ConnectionClosed (EOF mid-frame); handling a request never throws (but Abandoned); a reply
// is status 0 + body, or status 1 + pid + a decodable exception whose type is one the protocol
// documents (ProtocolError, UsageError, SerializationError, std::out_of_range for a list
// index). No crash, leak, hang, or allocation beyond what arrived.
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>

#include "fuzz_support.hpp"
#include "manager_objects.hpp"
#include "manager_server.hpp"
#include "manager_socket.hpp"
#include "mproc/codec.hpp"
#include "mproc/detail/manager_protocol.hpp"
#include "mproc/detail/remote_exception.hpp"
#include "mproc/errors.hpp"

namespace {

namespace manager = mproc::detail::manager;
using mproc::detail::UniqueFd;
using mproc_fuzz::fail;

constexpr std::size_t kMaxPieces = 64;

/// The client of the input: gone as soon as a request waits for it.
class HungUpSession final : public manager::Session {
 public:
  bool abandoned() override { return true; }
};

/// Sends the input in pieces, each once the server has read everything before it.
void trickle(int client, int server, std::span<const std::byte> bytes, std::size_t piece,
             const std::atomic<bool>& stop) {
  std::size_t pieces = 0;
  while (!bytes.empty() && !stop.load()) {
    const std::size_t n = ++pieces == kMaxPieces ? bytes.size() : std::min(piece, bytes.size());
    if (::send(client, bytes.data(), n, MSG_DONTWAIT | MSG_NOSIGNAL) != static_cast<ssize_t>(n)) {
      break;
    }
    bytes = bytes.subspan(n);
    for (int unread = 1; unread > 0 && !stop.load();) {
      if (::ioctl(server, FIONREAD, &unread) != 0) unread = 0;
      if (unread > 0) std::this_thread::yield();
    }
  }
  ::shutdown(client, SHUT_WR);
}

void check_reply(std::span<const std::byte> frame) {
  mproc::Decoder in(frame.subspan(8));  // after the length, which send_frame fills in
  try {
    std::uint8_t status = 0;
    in.read_bytes(&status, 1);
    if (status == static_cast<std::uint8_t>(manager::Status::ok)) return;
    if (status != static_cast<std::uint8_t>(manager::Status::error)) fail("unknown reply status");
    const auto pid = static_cast<std::int64_t>(mproc::detail::get_u64_le(in));
    const std::exception_ptr error = mproc::detail::decode_exception(in, pid, -1);
    in.expect_end();
    std::rethrow_exception(error);
  } catch (const mproc::ProtocolError&) {
  } catch (const mproc::UsageError&) {
  } catch (const mproc::SerializationError&) {
  } catch (const std::out_of_range&) {
  } catch (...) {
    mproc_fuzz::fail_with_current_exception("the server's reply");
  }
}

void run(const std::uint8_t* data, std::size_t size) {
  mproc_fuzz::Script script(data, size);
  const std::size_t piece = script.u8();
  const auto stream = script.rest();

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fail("socketpair()");
  const UniqueFd server_end(sv[0]);
  const UniqueFd client_end(sv[1]);
  std::atomic<bool> stop{false};
  std::thread writer;
  if (piece == 0 || stream.size() <= piece) {
    if (!stream.empty() &&
        ::send(client_end.get(), stream.data(), stream.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
      fail("send()");
    }
    ::shutdown(client_end.get(), SHUT_WR);
  } else {
    writer =
        std::thread(trickle, client_end.get(), server_end.get(), stream, piece, std::cref(stop));
  }

  manager::Server server(manager::Listener{}, "fuzz-authkey", /*accept_shutdown=*/true);
  HungUpSession session;
  manager::FrameReader reader;
  mproc::Encoder reply;
  const std::uint64_t limit = mproc::max_message_size() + manager::kFrameOverhead;
  for (;;) {
    std::optional<std::span<const std::byte>> request;
    try {
      request = reader.read(server_end.get(), limit);
    } catch (const mproc::ProtocolError&) {
      break;
    } catch (const mproc::ConnectionClosed&) {
      break;
    } catch (...) {
      mproc_fuzz::fail_with_current_exception("FrameReader::read");
    }
    if (!request) break;
    if (request->size() > limit) fail("FrameReader returned a frame over its limit");
    reply.clear();
    mproc::detail::put_u64_le(reply, 0);
    bool shutdown = false;
    try {
      shutdown = server.handle(session, *request, reply);
    } catch (const manager::Abandoned&) {
      break;  // the real server closes the connection without a reply
    } catch (...) {
      mproc_fuzz::fail_with_current_exception("Server::handle");
    }
    check_reply(reply.bytes());
    if (shutdown) break;
  }
  stop.store(true);
  if (writer.joinable()) writer.join();
  // What Server::serve does when a connection ends: its locks are released.
  for (const auto& held : session.holdings) {
    if (auto servant = held.lock()) servant->session_ended(session);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mproc_fuzz::run_checking_fds(run, data, size);
}
