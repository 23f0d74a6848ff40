// pipe.hpp — Pipe() and Connection: a message channel between two processes
// (Python's multiprocessing.Pipe / multiprocessing.connection.Connection).
//
//     auto [parent_end, child_end] = mproc::Pipe();      // duplex
//     mproc::Process p([](mproc::Connection c) { c.send(c.recv<int>() * 2); }, child_end);
//     p.start();
//     parent_end.send(21);
//     int answer = parent_end.recv<int>();               // 42
//
// Concepts
//  - Pipe() returns two connected ends; each can send and receive. Pipe(false) returns
//    (reader, writer), like Python's Pipe(duplex=False): only the first can recv, only the
//    second can send; the wrong direction throws UsageError.
//  - send(x) encodes any transferable value (codec.hpp) and recv<T>() decodes it; a T that
//    differs from the sent type throws SerializationError. send_bytes/recv_bytes carry raw
//    bytes. Messages are delivered whole and in order; zero-length messages are valid.
//  - A Connection is a cheap, copyable handle: copies share one set of descriptors, and
//    close() on any copy closes them for all of them. The last copy to go closes them too.
//    Connections travel inside messages (even through another Connection, as SCM_RIGHTS) and
//    as Process/task arguments: the receiver gets a handle to the same channel end.
//
// Guarantees
//  - recv never trusts the peer: a bad header, an unknown frame version or a length above
//    max_message_size() throws ProtocolError before anything is allocated, and a payload buffer
//    only grows as bytes actually arrive (a lying 4 GiB length followed by EOF allocates at
//    most 64 MiB). After a ProtocolError the receive direction is unusable (the stream has lost
//    its framing) and every further recv throws ProtocolError.
//  - The peer going away is ConnectionClosed, never a hang and never SIGPIPE: EOF between
//    messages reads "peer closed the connection"; EOF inside a message (the peer died or closed
//    mid-send) is ConnectionClosed too and its message says the message was truncated.
//    (A pipe write has no MSG_NOSIGNAL: the first pipe end a process makes installs a
//    do-nothing SIGPIPE handler if SIGPIPE still has its default disposition, much as CPython
//    ignores SIGPIPE. Unlike SIG_IGN it is reset by exec. A program that sets SIGPIPE back to
//    SIG_DFL afterwards is killed by a write to a dead peer, as it asked.)
//    A blocking recv whose peer process dies returns with ConnectionClosed, as long as no other
//    process still holds the peer's end (close the ends you hand to a child, as in Python).
//  - Descriptors received with a message and not claimed by the decoded value are closed.
//  - Every system call is EINTR-safe; a failure the channel cannot recover from is SystemError.
//
// Thread safety
//  Sends on one end are serialised by a lock, so several threads may send on the same end and
//  every message arrives whole; recvs likewise (each recv gets one whole message). One thread
//  may send while another receives on the same duplex end. close() must not race with another
//  thread's call on the same connection (as in Python, where Connection is not thread-safe at
//  all). Two *processes* using the same end at once interleave their bytes: use a Queue for
//  multi-producer/multi-consumer work. Do not fork while another thread is inside send/recv on
//  a connection the child will use (the child would inherit the held lock).
//
// Fork, forkserver, spawn: a Connection argument reaches the child as the same channel end
// (its descriptors inherited under fork, passed otherwise). A Connection that has received
// part of a message it has not returned yet (bytes read ahead into its buffer) cannot be sent
// to another process: that throws UsageError rather than losing the buffered bytes.
//
// Transport: each direction of a Pipe() has its own pipe(2) for frames (a pipe round trip
// costs about 60% of an AF_UNIX socket's), and the two ends share one AF_UNIX stream
// socketpair, the side socket, for what only a socket carries well: descriptors (SCM_RIGHTS)
// and payloads over 16 KiB (a socket moves them several times faster than a pipe). A frame
// on the pipe with the "side" flag says the message is the next frame on the side socket, so
// order is kept. A duplex end holds three descriptors, a one-way end two.
//
// Wire format (docs/wire-format.md, "Connection frames"): each message is one frame,
//
//      0        4     5       6             8                              16
//      +--------+-----+-------+-------------+-------------------------------+-----------
//      | "MPCF" | ver | flags | fd count    | payload length                | payload…
//      | magic  | =1  | side? | u16 LE      | u64 LE                        |
//      +--------+-----+-------+-------------+-------------------------------+-----------
//
//  on the pipe (flags 0: the payload follows on the pipe; flags 1: no payload here, the next
//  frame on the side socket — same fd count and length, flags 0 — is the message, its
//  descriptors (at most 253, the kernel's SCM_MAX_FD) attached as SCM_RIGHTS to its header).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/unique_fd.hpp"
#include "mproc/errors.hpp"

namespace mproc {

class Connection;

namespace detail {
struct ConnectionState;

/// The descriptors of one end of a Pipe() (internal: Pipe(), the handle codec and tests that
/// forge a peer use it). frames_in/frames_out: the pipe read end carrying frames to this end
/// (present iff it is readable) and the pipe write end carrying frames from it (iff
/// writable); side: the side socket.
struct ConnectionFds {
  UniqueFd frames_in;
  UniqueFd frames_out;
  UniqueFd side;
};
/// An end over pipes and a side socket (the layout Pipe() makes). UsageError if the pipes do
/// not match the directions.
Connection make_connection(ConnectionFds fds, bool readable, bool writable);

/// One received frame: the payload and the descriptors that came with it.
struct ReceivedFrame {
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::vector<std::byte> bytes;
  std::vector<UniqueFd> fds;
  /// When the payload was read into a caller's buffer (recv_bytes_into): its length.
  std::size_t direct_size = npos;
};
}  // namespace detail

/// One end of a Pipe (Python's multiprocessing.connection.Connection).
class Connection {
 public:
  /// A closed connection: every operation but closed()/readable()/writable() throws UsageError.
  Connection() noexcept = default;
  /// Takes ownership of `fd`, a connected AF_UNIX stream socket whose peer speaks this frame
  /// format; every frame then travels on that socket (no pipes, no side flag).
  /// `readable`/`writable` say which directions this end may use.
  explicit Connection(detail::UniqueFd fd, bool readable = true, bool writable = true);

  /// Encodes `value` and sends it as one message. Blocks while the pipe or socket is full (the
  /// peer is not reading). Throws ConnectionClosed if the peer is gone, UsageError on a closed
  /// connection or the read end of a one-way pipe, SerializationError if the encoded message
  /// exceeds max_message_size(), SystemError on other failures.
  template <class T>
  void send(const T& value) {
    detail::assert_transferable<std::remove_cvref_t<T>>();  // explains what to do instead
    Encoder out;
    encode_message(out, value);
    send_frame(out.bytes(), out.fds());
  }

  /// Receives one message and decodes it as T. Blocks until a whole message arrives.
  /// Throws SerializationError if the message holds another type, ProtocolError if it is
  /// malformed or over max_message_size(), ConnectionClosed if the peer closed or died,
  /// UsageError on a closed connection or the write end of a one-way pipe.
  template <class T>
  [[nodiscard]] T recv() {
    detail::assert_transferable<std::remove_cvref_t<T>>();
    detail::ReceivedFrame frame = recv_frame();
    Decoder in(frame.bytes, frame.fds);
    return decode_message<T>(in);  // checks the type fingerprint and that nothing is left over
  }

  /// Sends raw bytes as one message (any descriptors are not involved). Same blocking and
  /// errors as send().
  void send_bytes(std::span<const std::byte> data);
  void send_bytes(const void* data, std::size_t size);
  void send_bytes(std::string_view text);

  /// Receives one message's bytes, whatever sent it (send or send_bytes). Descriptors that
  /// came with the message are closed. Same blocking and errors as recv().
  [[nodiscard]] std::vector<std::byte> recv_bytes();
  /// Receives one message's bytes into `buffer` and returns its length (Python's
  /// recv_bytes_into): no allocation when the message fits, so a loop reusing one buffer
  /// copies each byte once. A larger message throws BufferTooShort holding the whole message
  /// (the connection stays usable). Descriptors that came with the message are closed. Same
  /// blocking and other errors as recv().
  [[nodiscard]] std::size_t recv_bytes_into(std::span<std::byte> buffer);

  /// True if a message (or part of one, or EOF) is ready to be received, without blocking.
  [[nodiscard]] bool poll() { return poll_for(std::chrono::nanoseconds::zero()); }
  /// Waits up to `timeout` for something to receive; true if a recv would not block for the
  /// start of a message (EOF counts: the recv then throws ConnectionClosed). A negative
  /// timeout is zero. UsageError on a closed connection or the write end of a one-way pipe.
  template <class Rep, class Period>
  [[nodiscard]] bool poll(std::chrono::duration<Rep, Period> timeout) {
    return poll_for(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }

  /// Closes the descriptors for every copy of this handle. Idempotent; never throws.
  void close() noexcept;
  [[nodiscard]] bool closed() const noexcept;
  /// Whether this end may receive / send (false for the wrong end of a one-way pipe).
  [[nodiscard]] bool readable() const noexcept;
  [[nodiscard]] bool writable() const noexcept;
  /// The descriptor to wait on with select/poll/epoll: the pipe that becomes readable when a
  /// message arrives (for the write end of a one-way pipe: the pipe it writes; for a
  /// Connection built from one socket: that socket). When the peer closes, a pipe reports
  /// POLLHUP without POLLIN: treat any event as "recv will not block". UsageError once closed.
  [[nodiscard]] int fileno() const;

  /// Sends one frame: `payload` with `fds` attached. The descriptors are borrowed (they must
  /// stay open until the call returns). Used by send(); public for channels built on top.
  void send_frame(std::span<const std::byte> payload, std::span<const int> fds = {});
  /// Receives one whole frame. Used by recv() and recv_bytes().
  [[nodiscard]] detail::ReceivedFrame recv_frame();

 private:
  friend struct handle_codec<Connection>;
  friend Connection detail::make_connection(detail::ConnectionFds, bool, bool);

  bool poll_for(std::chrono::nanoseconds timeout);
  detail::ReceivedFrame recv_frame_into(std::span<std::byte>* into);

  std::shared_ptr<detail::ConnectionState> state_;
};

/// Creates a connected pair of Connections (Python's multiprocessing.Pipe). duplex = true:
/// both ends send and receive. duplex = false: returns (reader, writer).
[[nodiscard]] std::pair<Connection, Connection> Pipe(bool duplex = true);

/// A Connection travels as a handle: its descriptors are attached to the message (SCM_RIGHTS
/// through a Connection, inheritance for spawned children) and the bytes say which attached
/// descriptors they are and which directions the end may use:
///
///      0                 4           5                    9                    13
///      +-----------------+-----------+--------------------+--------------------+
///      | side socket     | direction | frames-in pipe     | frames-out pipe    |
///      | fd index u32 LE |           | fd index u32 LE    | fd index u32 LE    |
///      +-----------------+-----------+--------------------+--------------------+
///   direction: bit 0 readable, bit 1 writable; a pipe index is 0xFFFFFFFF when absent (both
///   absent: a single-socket Connection).
template <>
struct handle_codec<Connection> {
  /// UsageError if `c` is closed or holds read-ahead bytes of an unfinished message.
  static void encode(Encoder& out, const Connection& c);
  /// ProtocolError if a descriptor is missing, the direction byte is invalid or the pipes do
  /// not match the directions.
  static Connection decode(Decoder& in);
};

}  // namespace mproc
