// pipe.cpp — Connection framing (see pipe.hpp for the contract and docs/wire-format.md,
// "Connection frames", for the byte layout).
//
// Transport. An AF_UNIX socket round trip costs about 1.6x a pipe(2) round trip on Linux, so
// Pipe() carries every frame header on a pipe — one per direction — and keeps one socketpair
// beside them, the "side socket", for what only a socket can carry: descriptors (SCM_RIGHTS),
// and large payloads, where a socket is several times faster than a 64 KiB pipe. A frame
// header on the pipe with the kFlagSide bit says "this message continues on the side socket as
// one whole frame (header, payload, descriptors)". Each direction has one reader, which takes
// side frames in the order their pipe headers announce them, so messages keep their order.
// A Connection built from a single socket (the public constructor) carries every frame on that
// socket, descriptors on the frame header, exactly as before the pipes existed.
//
// Receive path. Each channel (pipe or socket) keeps a small read-ahead buffer so that a small
// message costs one read (header and payload together); large payloads are read straight into
// the message's own buffer. Because the buffer may read past the current frame, descriptors
// on a socket are matched to frames by stream position: the kernel attaches SCM_RIGHTS to the
// first byte of the sendmsg that carried them (the frame header), hands them to the recvmsg
// that first touches that byte, and ends that recvmsg right after it. So a batch of
// descriptors belongs to the last frame header that starts inside the byte range of the read
// that delivered it, and that header must announce exactly that many; any other batch is a
// protocol error and is closed.
//
// SIGPIPE. write(2) on a pipe has no MSG_NOSIGNAL: a write to a pipe whose reader is gone
// raises SIGPIPE, which by default kills the process. Making a pipe end installs (once per
// process, and only if SIGPIPE still has its default disposition) a handler that does nothing,
// so the write fails with EPIPE and becomes ConnectionClosed. CPython ignores SIGPIPE at
// startup for the same reason; a handler instead of SIG_IGN is not inherited across exec.
// Blocking SIGPIPE around each write would cost two extra system calls per message.
#include "mproc/pipe.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>

#include "detail/sys.hpp"

namespace mproc {
namespace detail {
namespace {

constexpr std::array<std::byte, 4> kMagic = {std::byte{'M'}, std::byte{'P'}, std::byte{'C'},
                                             std::byte{'F'}};
constexpr std::uint8_t kFrameVersion = 1;
constexpr std::size_t kHeaderSize = 16;
// Flag of a pipe frame header: the message is the next frame on the side socket.
constexpr std::uint8_t kFlagSide = 0x01;
// The kernel's SCM_MAX_FD: the most descriptors one sendmsg can carry.
constexpr std::size_t kMaxFds = 253;
// Payloads up to this size travel on the pipe; larger ones on the side socket. Measured with
// 1 MiB messages a default (64 KiB) pipe moves about 0.4 GB/s against 4 GB/s for the socket;
// small frames fit the pipe buffer in one write and gain the pipe's lower latency.
constexpr std::size_t kPipePayloadMax = std::size_t{16} << 10;
// Payloads up to this size are copied behind their header and written with one write(2).
constexpr std::size_t kSmallPayload = 496;
// A side frame up to this size (header included) is written before its pipe header: it fits
// the socket buffer in one piece, so a failure to send it leaves nothing on either channel.
// A larger one must follow its pipe header, or the sender would block on a full socket while
// the receiver waits on the pipe for the header.
constexpr std::size_t kSideFirstMax = std::size_t{32} << 10;
// Read-ahead buffer: big enough that typical messages arrive in one read.
constexpr std::size_t kReadAhead = std::size_t{64} << 10;
// A payload buffer starts at most this big and then grows only as bytes arrive, so a header
// that lies about its length cannot make us allocate what the peer never sends.
constexpr std::size_t kInitialPayload = std::size_t{64} << 20;
// Largest single iovec (Linux transfers at most 0x7ffff000 bytes per call anyway).
constexpr std::size_t kMaxIoChunk = std::size_t{1} << 30;
// "No descriptor" in an encoded connection.
constexpr std::uint32_t kNoFd = 0xFFFFFFFF;

struct FrameHeader {
  std::uint8_t version = 0;
  std::uint8_t flags = 0;
  std::uint16_t fd_count = 0;
  std::uint64_t length = 0;
};

void store_le(std::byte* out, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>(v >> (8 * i));
}

std::uint64_t load_le(const std::byte* in, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i)
    v |= std::uint64_t(std::to_integer<std::uint8_t>(in[i])) << (8 * i);
  return v;
}

std::array<std::byte, kHeaderSize> make_header(std::size_t fd_count, std::uint64_t length,
                                               std::uint8_t flags = 0) {
  std::array<std::byte, kHeaderSize> h{};
  std::copy(kMagic.begin(), kMagic.end(), h.begin());
  h[4] = std::byte{kFrameVersion};
  h[5] = std::byte{flags};
  store_le(h.data() + 6, fd_count, 2);
  store_le(h.data() + 8, length, 8);
  return h;
}

/// Parses and checks a header; `allowed_flags` are the flag bits valid on this channel.
FrameHeader parse_header(const std::byte* h, std::uint8_t allowed_flags) {
  if (!std::equal(kMagic.begin(), kMagic.end(), h)) {
    throw ProtocolError(
        "Connection: received bytes that do not start a message (bad frame magic); the peer "
        "is not an mproc Connection or the stream lost its framing");
  }
  FrameHeader f;
  f.version = std::to_integer<std::uint8_t>(h[4]);
  f.flags = std::to_integer<std::uint8_t>(h[5]);
  f.fd_count = static_cast<std::uint16_t>(load_le(h + 6, 2));
  f.length = load_le(h + 8, 8);
  if (f.version != kFrameVersion) {
    throw ProtocolError("Connection: unsupported frame version " + std::to_string(f.version) +
                        " (this build speaks version " + std::to_string(kFrameVersion) + ")");
  }
  if ((f.flags & ~allowed_flags) != 0) {
    throw ProtocolError("Connection: frame header has unknown flags " + std::to_string(f.flags));
  }
  if (f.fd_count > kMaxFds) {
    throw ProtocolError("Connection: frame header announces " + std::to_string(f.fd_count) +
                        " descriptors (at most " + std::to_string(kMaxFds) + ")");
  }
  if (f.length > max_message_size()) {
    throw ProtocolError("Connection: message of " + std::to_string(f.length) +
                        " bytes exceeds max_message_size() (" + std::to_string(max_message_size()) +
                        "); raise it with mproc::set_max_message_size in the receiver");
  }
  return f;
}

bool is_peer_gone(const SystemError& e) {
  const int err = e.code().value();
  return e.code().category() == std::system_category() &&
         (err == EPIPE || err == ECONNRESET || err == ENOTCONN);
}

/// Installs the SIGPIPE handler once per process (see the top of this file).
void absorb_sigpipe_once() {
  static const bool done = (sys::absorb_sigpipe(), true);
  (void)done;
}

/// One receiving channel: a pipe (read) or a socket (recvmsg, descriptors), with read-ahead.
struct Reader {
  int fd = -1;
  bool socket = false;
  std::unique_ptr<std::byte[]> buf;  // read-ahead, kReadAhead bytes, allocated on first use
  std::size_t begin = 0;             // buf[begin, end) is received but not yet consumed
  std::size_t end = 0;
  std::uint64_t stream_pos = 0;  // bytes received from the channel so far
  struct FdBatch {
    std::uint64_t start;  // stream range of the recvmsg that delivered them
    std::uint64_t end;
    std::vector<UniqueFd> fds;
  };
  std::vector<FdBatch> fd_batches;

  std::size_t buffered() const noexcept { return end - begin; }
  bool idle() const noexcept { return buffered() == 0 && fd_batches.empty(); }

  /// Drops read-ahead bytes and descriptors (after the stream lost its framing).
  void drop() noexcept {
    fd_batches.clear();
    begin = end = 0;
  }

  /// One read into [dst, dst + n). Returns 0 at EOF (a reset connection counts as EOF).
  /// Descriptors that arrive are owned at once, so no error path can leak them.
  std::size_t recv_some(std::byte* dst, std::size_t n) {
    n = std::min(n, kMaxIoChunk);
    if (!socket) {
      const std::size_t got = sys::read(fd, dst, n);
      stream_pos += got;
      return got;
    }
    alignas(cmsghdr) std::array<char, CMSG_SPACE(kMaxFds * sizeof(int))> control;
    iovec iov{dst, n};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    std::size_t got = 0;
    try {
      got = sys::recvmsg(fd, &msg, 0);
    } catch (const SystemError& e) {
      if (is_peer_gone(e)) return 0;
      throw;
    }
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int f;
        std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
        fds.emplace_back(f);
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      throw ProtocolError(
          "Connection: more descriptors arrived than a message may carry "
          "(ancillary data truncated); they were closed");
    }
    if (!fds.empty()) {
      if (got == 0) throw ProtocolError("Connection: descriptors arrived without data");
      fd_batches.push_back({stream_pos, stream_pos + got, std::move(fds)});
    }
    stream_pos += got;
    return got;
  }

  /// The descriptors for the frame occupying stream bytes [at, frame_end), whose header
  /// announces `expected` of them. A batch belongs to the *last* frame starting inside the
  /// read that delivered it (the kernel ends a recvmsg right after the descriptor-carrying
  /// part): the frame starting at `at` if no other frame starts between it and the read's end.
  std::vector<UniqueFd> claim_fds(std::uint64_t at, std::uint64_t frame_end, std::size_t expected) {
    std::vector<UniqueFd> claimed;
    for (auto it = fd_batches.begin(); it != fd_batches.end();) {
      if (it->end <= at) {
        throw ProtocolError(
            "Connection: descriptors arrived inside a message payload, where "
            "no frame header claims them");
      }
      if (it->start <= at && frame_end >= it->end) {
        claimed = std::move(it->fds);
        it = fd_batches.erase(it);
      } else {
        ++it;
      }
    }
    if (claimed.size() != expected) {
      throw ProtocolError("Connection: frame header announces " + std::to_string(expected) +
                          " descriptors but " + std::to_string(claimed.size()) +
                          " arrived with it");
    }
    return claimed;
  }

  /// Reads and checks the next frame header; *at receives its stream position. `announced`:
  /// a pipe header already announced this frame, so EOF before it is a truncated message.
  FrameHeader next_header(std::uint8_t allowed_flags, bool announced, std::uint64_t* at) {
    while (buffered() < kHeaderSize) {
      if (!buf) buf = std::make_unique<std::byte[]>(kReadAhead);
      if (begin > 0) {
        std::memmove(buf.get(), buf.get() + begin, buffered());
        end -= begin;
        begin = 0;
      }
      const std::size_t n = recv_some(buf.get() + end, kReadAhead - end);
      if (n == 0) {
        if (buffered() == 0 && !announced) throw ConnectionClosed("peer closed the connection");
        throw ConnectionClosed(
            "peer closed the connection in the middle of a message "
            "(truncated after " +
            std::to_string(buffered()) + " of " + std::to_string(kHeaderSize) + " header bytes" +
            (announced ? " of its part on the side socket)" : ")"));
      }
      end += n;
    }
    *at = stream_pos - buffered();
    const FrameHeader h = parse_header(buf.get() + begin, allowed_flags);
    begin += kHeaderSize;  // the bytes stay in buf until the next read: see unread_header
    return h;
  }

  /// Puts back the header next_header just returned (a retry then reads it again).
  void unread_header() noexcept { begin -= kHeaderSize; }

  /// Reads the payload of the frame whose header `h` started at `header_at`. With `into`, a
  /// payload that fits is read straight into it (and frame.direct_size set) instead of into
  /// frame.bytes. Never reads past this frame.
  ReceivedFrame payload(const FrameHeader& h, std::uint64_t header_at, std::span<std::byte>* into) {
    const auto length = static_cast<std::size_t>(h.length);  // <= max_message_size()
    const std::uint64_t frame_end = header_at + kHeaderSize + length;
    ReceivedFrame frame;
    if (socket) frame.fds = claim_fds(header_at, frame_end, h.fd_count);

    // First whatever was read ahead, then straight into the destination — the caller's
    // buffer when it is big enough (recv_bytes_into), else the frame's own buffer, which
    // grows (doubling) only as bytes arrive.
    const auto truncated = [length](std::size_t got) {
      return ConnectionClosed(
          "peer closed the connection in the middle of a message "
          "(truncated after " +
          std::to_string(got) + " of " + std::to_string(length) + " payload bytes)");
    };
    const std::size_t ahead = std::min(length, buffered());
    if (into != nullptr && length <= into->size()) {
      std::byte* dst = into->data();
      if (ahead > 0) std::memcpy(dst, buf.get() + begin, ahead);
      begin += ahead;
      if (begin == end) begin = end = 0;
      for (std::size_t got = ahead; got < length;) {
        const std::size_t n = recv_some(dst + got, length - got);
        if (n == 0) throw truncated(got);
        got += n;
      }
      frame.direct_size = length;
    } else {
      frame.bytes.resize(std::max(ahead, std::min(length, kInitialPayload)));
      if (ahead > 0) std::memcpy(frame.bytes.data(), buf.get() + begin, ahead);
      begin += ahead;
      if (begin == end) begin = end = 0;
      std::size_t got = ahead;
      while (got < length) {
        if (got == frame.bytes.size()) {
          frame.bytes.resize(std::min(length, 2 * frame.bytes.size()));
        }
        const std::size_t n = recv_some(frame.bytes.data() + got, frame.bytes.size() - got);
        if (n == 0) throw truncated(got);
        got += n;
      }
    }
    // Descriptors delivered by reads that ended inside this frame belong to no header.
    for (const auto& batch : fd_batches) {
      if (batch.end <= frame_end) {
        throw ProtocolError(
            "Connection: descriptors arrived inside a message payload, where "
            "no frame header claims them");
      }
    }
    return frame;
  }
};

/// Writes all of `parts` (at most two, small: pipe frames only) to a pipe. *started becomes
/// true once a byte is out.
void write_all(int fd, std::array<iovec, 2> parts, int count, bool* started) {
  int first = 0;
  while (first < count) {
    const std::size_t n = sys::writev(fd, parts.data() + first, count - first);
    if (n > 0) *started = true;
    std::size_t left = n;
    while (first < count && left >= parts[static_cast<std::size_t>(first)].iov_len) {
      left -= parts[static_cast<std::size_t>(first)].iov_len;
      ++first;
    }
    if (first < count) {
      auto& part = parts[static_cast<std::size_t>(first)];
      part.iov_base = static_cast<char*>(part.iov_base) + left;
      part.iov_len -= left;
    }
  }
}

/// Sends one whole frame on a socket, descriptors on its first byte. *started as above.
void send_on_socket(int sock, std::span<const std::byte> header, std::span<const std::byte> payload,
                    std::span<const int> fds, bool* started) {
  alignas(cmsghdr) std::array<char, CMSG_SPACE(kMaxFds * sizeof(int))> control{};
  std::size_t control_len = 0;
  if (!fds.empty()) {
    control_len = CMSG_SPACE(fds.size() * sizeof(int));
    auto* c = reinterpret_cast<cmsghdr*>(control.data());
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  std::size_t header_done = 0;
  std::size_t payload_done = 0;
  while (header_done < header.size() || payload_done < payload.size()) {
    std::array<iovec, 2> iov{};
    std::size_t count = 0;
    if (header_done < header.size()) {
      iov[count++] = {const_cast<std::byte*>(header.data() + header_done),
                      header.size() - header_done};
    }
    if (payload_done < payload.size()) {
      iov[count++] = {const_cast<std::byte*>(payload.data() + payload_done),
                      std::min(payload.size() - payload_done, kMaxIoChunk)};
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = count;
    // Descriptors ride on the first sendmsg only, i.e. on the header's first byte.
    if (header_done == 0 && control_len > 0) {
      msg.msg_control = control.data();
      msg.msg_controllen = control_len;
    }
    const std::size_t n = sys::sendmsg(sock, &msg, 0);
    if (n > 0) *started = true;
    const std::size_t to_header = std::min(n, header.size() - header_done);
    header_done += to_header;
    payload_done += n - to_header;
  }
}

}  // namespace

struct ConnectionState {
  ConnectionState(ConnectionFds f, bool r, bool w)
      : in(f.frames_in.release()),
        out(f.frames_out.release()),
        side(f.side.release()),
        readable(r),
        writable(w) {
    // Single-socket mode: frames travel on the socket itself.
    frames.fd = hybrid() ? in : side;
    frames.socket = !hybrid();
    side_reader.fd = side;
    side_reader.socket = true;
  }
  ConnectionState(const ConnectionState&) = delete;
  ConnectionState& operator=(const ConnectionState&) = delete;
  ~ConnectionState() { close(); }

  void close() noexcept {
    // exchange, so that concurrent close() calls close the descriptors once.
    if (open.exchange(false)) {
      for (const int fd : {in, out, side}) UniqueFd{fd}.reset();
    }
  }

  /// Pipes for the frames (Pipe()), or a single socket (the public constructor).
  bool hybrid() const noexcept { return in >= 0 || out >= 0; }
  /// The descriptor that becomes readable when a frame arrives (or writable, for a write end).
  int frame_fd_for_poll() const noexcept {
    if (!hybrid()) return side;
    return readable ? in : out;
  }

  std::atomic<bool> open{true};
  const int in;    // pipe read end carrying frames to this end, or -1
  const int out;   // pipe write end carrying frames from this end, or -1
  const int side;  // the side socket (the only descriptor in single-socket mode)
  const bool readable;
  const bool writable;

  // ---- send side (send_mu) ----
  std::mutex send_mu;
  std::exception_ptr send_failure;  // set when a frame was left half-sent

  // ---- receive side (recv_mu) ----
  std::timed_mutex recv_mu;
  std::exception_ptr recv_failure;  // set once the stream lost its framing (or hit EOF)
  Reader frames;                    // the pipe (or the single socket)
  Reader side_reader;               // the side socket, in hybrid mode

  bool recv_idle() const noexcept { return frames.idle() && side_reader.idle(); }

  /// Makes every later recv rethrow `failure`; drops read-ahead bytes and descriptors.
  void poison_recv(std::exception_ptr failure) noexcept {
    recv_failure = std::move(failure);
    frames.drop();
    side_reader.drop();
  }

  /// Receives one frame (see Reader::payload for `into`). *consumed becomes true once part
  /// of a frame was consumed: a failure after that leaves the stream inside a frame.
  ReceivedFrame receive(std::span<std::byte>* into, bool* consumed) {
    std::uint64_t at = 0;
    if (!hybrid()) {
      const FrameHeader h = frames.next_header(0, false, &at);
      *consumed = true;
      return frames.payload(h, at, into);
    }
    if (frames.idle()) {
      // Fast path (the latency case): one read that brings exactly one whole pipe frame is
      // copied out without the general bookkeeping. Anything else stays read ahead for the
      // general path below, which starts from the buffered bytes.
      if (!frames.buf) frames.buf = std::make_unique<std::byte[]>(kReadAhead);
      frames.begin = frames.end = 0;  // nothing is buffered (idle)
      frames.end = frames.recv_some(frames.buf.get(), kReadAhead);
      if (frames.end >= kHeaderSize) {
        const std::byte* data = frames.buf.get();
        const FrameHeader h = parse_header(data, kFlagSide);
        if (h.flags == 0 && h.fd_count == 0 && frames.end - kHeaderSize == h.length) {
          *consumed = true;
          const auto length = static_cast<std::size_t>(h.length);
          ReceivedFrame frame;
          if (into != nullptr && length <= into->size()) {
            if (length > 0) std::memcpy(into->data(), data + kHeaderSize, length);
            frame.direct_size = length;
          } else {
            frame.bytes.assign(data + kHeaderSize, data + kHeaderSize + length);
          }
          frames.begin = frames.end = 0;
          return frame;
        }
      }
    }
    const FrameHeader h = frames.next_header(kFlagSide, false, &at);
    *consumed = true;
    if ((h.flags & kFlagSide) == 0) {
      if (h.fd_count != 0) {
        throw ProtocolError("Connection: a frame on the pipe announces " +
                            std::to_string(h.fd_count) +
                            " descriptors, which only the side socket can carry");
      }
      return frames.payload(h, at, into);
    }
    FrameHeader s;
    try {
      s = side_reader.next_header(0, true, &at);
    } catch (const SystemError&) {
      // Nothing of the side frame was consumed (a partial header stays read ahead): put the
      // announcement back, so that a failed read (EIO, say) loses nothing.
      frames.unread_header();
      *consumed = false;
      throw;
    }
    if (s.fd_count != h.fd_count || s.length != h.length) {
      throw ProtocolError("Connection: the frame on the side socket (" + std::to_string(s.length) +
                          " bytes, " + std::to_string(s.fd_count) +
                          " descriptors) does not match its announcement on the pipe (" +
                          std::to_string(h.length) + " bytes, " + std::to_string(h.fd_count) +
                          " descriptors)");
    }
    return side_reader.payload(s, at, into);
  }
};

Connection make_connection(ConnectionFds fds, bool readable, bool writable) {
  if (!fds.side) throw UsageError("Connection: needs an open socket descriptor");
  if (!readable && !writable) throw UsageError("Connection: an end must read, write or both");
  if ((fds.frames_in || fds.frames_out) &&
      (bool(fds.frames_in) != readable || bool(fds.frames_out) != writable)) {
    throw UsageError("Connection: needs a frame pipe for each direction it may use, and no other");
  }
  if (fds.frames_out) absorb_sigpipe_once();
  Connection c;
  c.state_ = std::make_shared<ConnectionState>(std::move(fds), readable, writable);
  return c;
}

}  // namespace detail

namespace {

const char* direction_hint(bool sending) {
  return sending ? "Connection: cannot send on the read end of a one-way pipe (Pipe(false) "
                   "returns (reader, writer): send on the second)"
                 : "Connection: cannot receive on the write end of a one-way pipe (Pipe(false) "
                   "returns (reader, writer): receive on the first)";
}

}  // namespace

Connection::Connection(detail::UniqueFd fd, bool readable, bool writable) {
  if (!fd) throw UsageError("Connection: needs an open socket descriptor");
  detail::ConnectionFds fds;
  fds.side = std::move(fd);
  state_ = std::make_shared<detail::ConnectionState>(std::move(fds), readable, writable);
}

void Connection::send_bytes(std::span<const std::byte> data) {
  send_frame(data);
}

void Connection::send_bytes(const void* data, std::size_t size) {
  send_frame({static_cast<const std::byte*>(data), size});
}

void Connection::send_bytes(std::string_view text) {
  send_frame(std::as_bytes(std::span<const char>(text.data(), text.size())));
}

std::vector<std::byte> Connection::recv_bytes() {
  return recv_frame().bytes;
}

void Connection::send_frame(std::span<const std::byte> payload, std::span<const int> fds) {
  if (closed()) throw UsageError("Connection: connection is closed");
  auto& s = *state_;
  if (!s.writable) throw UsageError(direction_hint(true));
  if (fds.size() > detail::kMaxFds) {
    throw UsageError("Connection: a message may carry at most " + std::to_string(detail::kMaxFds) +
                     " descriptors (got " + std::to_string(fds.size()) + ")");
  }
  if (payload.size() > max_message_size()) {
    throw SerializationError("Connection: message of " + std::to_string(payload.size()) +
                             " bytes exceeds max_message_size() (" +
                             std::to_string(max_message_size()) +
                             "); raise it with mproc::set_max_message_size in both processes");
  }
  const auto header = detail::make_header(fds.size(), payload.size());

  std::lock_guard lock(s.send_mu);
  if (!s.open.load()) throw UsageError("Connection: connection is closed");
  if (s.send_failure) std::rethrow_exception(s.send_failure);

  // What the peer sees of a failed send decides whether this direction survives it: nothing
  // at all leaves the connection as it was; anything else leaves the peer unable to find the
  // next frame, so later sends rethrow the failure.
  bool broken = false;  // the channels hold part of this frame
  const auto fail = [&s, &broken]() -> std::exception_ptr {
    std::exception_ptr failure = std::current_exception();
    try {
      throw;
    } catch (const SystemError& e) {
      if (detail::is_peer_gone(e)) {
        failure = std::make_exception_ptr(ConnectionClosed("peer closed the connection"));
      }
    } catch (...) {
    }
    if (broken) s.send_failure = failure;
    return failure;
  };

  if (!s.hybrid()) {
    try {
      detail::send_on_socket(s.side, header, payload, fds, &broken);
    } catch (...) {
      std::rethrow_exception(fail());
    }
    return;
  }

  if (fds.empty() && payload.size() <= detail::kSmallPayload) {
    // The common case, and the one latency is measured on: header and payload copied into
    // one buffer and written with one write(2) (cheaper than writev's iovec import), which
    // the kernel makes atomic (at most PIPE_BUF bytes).
    std::array<std::byte, detail::kHeaderSize + detail::kSmallPayload> frame;
    std::memcpy(frame.data(), header.data(), header.size());
    if (!payload.empty()) std::memcpy(frame.data() + header.size(), payload.data(), payload.size());
    try {
      const std::size_t size = header.size() + payload.size();
      const std::size_t n = detail::sys::write(s.out, frame.data(), size);
      if (n != size) {
        // Not expected below PIPE_BUF; finish the frame anyway rather than trust that.
        broken = n > 0;
        std::array<iovec, 2> rest{};
        rest[0] = {frame.data() + n, size - n};
        detail::write_all(s.out, rest, 1, &broken);
      }
    } catch (...) {
      std::rethrow_exception(fail());
    }
    return;
  }
  if (fds.empty() && payload.size() <= detail::kPipePayloadMax) {
    // Header and payload on the pipe, without copying the payload.
    std::array<iovec, 2> parts{};
    parts[0] = {const_cast<std::byte*>(header.data()), header.size()};
    parts[1] = {const_cast<std::byte*>(payload.data()), payload.size()};
    try {
      detail::write_all(s.out, parts, payload.empty() ? 1 : 2, &broken);
    } catch (...) {
      std::rethrow_exception(fail());
    }
    return;
  }

  // The message goes on the side socket, announced by a header on the pipe.
  const auto announcement = detail::make_header(fds.size(), payload.size(), detail::kFlagSide);
  std::array<iovec, 2> parts{};
  parts[0] = {const_cast<std::byte*>(announcement.data()), announcement.size()};
  bool side_started = false;
  bool pipe_started = false;
  const bool side_first = detail::kHeaderSize + payload.size() <= detail::kSideFirstMax;
  try {
    if (side_first) {
      detail::send_on_socket(s.side, header, payload, fds, &side_started);
      detail::write_all(s.out, parts, 1, &pipe_started);
    } else {
      detail::write_all(s.out, parts, 1, &pipe_started);
      detail::send_on_socket(s.side, header, payload, fds, &side_started);
    }
  } catch (...) {
    // Either channel holding any of this message (even a whole side frame that no pipe
    // header announces) leaves the peer unable to match the next side frame.
    broken = side_started || pipe_started;
    const std::exception_ptr failure = fail();
    // A receiver may be waiting on the socket for the rest of an announced frame: end that
    // direction of the socket so that it reads a truncated message instead of waiting.
    if (pipe_started) {
      try {
        detail::sys::shutdown(s.side, SHUT_WR);
      } catch (const SystemError&) {
        // Already shut or disconnected: the receiver sees EOF either way.
      }
    }
    std::rethrow_exception(failure);
  }
}

detail::ReceivedFrame Connection::recv_frame() {
  return recv_frame_into(nullptr);
}

std::size_t Connection::recv_bytes_into(std::span<std::byte> buffer) {
  detail::ReceivedFrame frame = recv_frame_into(&buffer);
  if (frame.direct_size != detail::ReceivedFrame::npos) return frame.direct_size;
  throw BufferTooShort(std::move(frame.bytes), buffer.size());
}

detail::ReceivedFrame Connection::recv_frame_into(std::span<std::byte>* into) {
  if (closed()) throw UsageError("Connection: connection is closed");
  auto& s = *state_;
  if (!s.readable) throw UsageError(direction_hint(false));
  std::lock_guard lock(s.recv_mu);
  if (!s.open.load()) throw UsageError("Connection: connection is closed");
  if (s.recv_failure) std::rethrow_exception(s.recv_failure);
  bool consumed = false;
  try {
    return s.receive(into, &consumed);
  } catch (const SystemError&) {
    // A failed read before any part of a frame was consumed (e.g. EIO on the first read)
    // leaves the stream at a frame boundary, whatever was read ahead: the connection stays
    // usable. Otherwise the stream lost its framing.
    if (consumed) s.poison_recv(std::current_exception());
    throw;
  } catch (...) {
    // ProtocolError, ConnectionClosed (EOF: sticky anyway), or a failure mid-frame: the read
    // position may be inside a frame, so message boundaries cannot be found any more.
    s.poison_recv(std::current_exception());
    throw;
  }
}

bool Connection::poll_for(std::chrono::nanoseconds timeout) {
  if (closed()) throw UsageError("Connection: connection is closed");
  auto& s = *state_;
  if (!s.readable) throw UsageError(direction_hint(false));
  timeout = std::max(timeout, std::chrono::nanoseconds::zero());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  {
    // Bytes already read ahead (or a sticky failure) mean recv will not block. Another
    // thread inside recv holds the lock; wait for it no longer than the timeout. Side-socket
    // bytes alone do not count: each side frame is announced on the pipe first.
    // try_lock first: the common uncontended case needs no clock, and a zero timeout never
    // reaches pthread_mutex_clocklock (which ThreadSanitizer does not intercept).
    std::unique_lock lock(s.recv_mu, std::defer_lock);
    if (!lock.try_lock() &&
        (timeout == std::chrono::nanoseconds::zero() || !lock.try_lock_until(deadline))) {
      return false;
    }
    if (s.frames.buffered() > 0 || s.recv_failure) return true;
  }
  if (!s.open.load()) throw UsageError("Connection: connection is closed");
  pollfd p{s.frame_fd_for_poll(), POLLIN, 0};
  const auto left = std::max(deadline - std::chrono::steady_clock::now(),
                             std::chrono::steady_clock::duration::zero());
  return detail::sys::poll(&p, 1, std::chrono::duration_cast<std::chrono::nanoseconds>(left)) > 0;
}

void Connection::close() noexcept {
  if (state_) state_->close();
}

bool Connection::closed() const noexcept {
  return !state_ || !state_->open.load();
}

bool Connection::readable() const noexcept {
  return state_ && state_->readable;
}

bool Connection::writable() const noexcept {
  return state_ && state_->writable;
}

int Connection::fileno() const {
  if (closed()) throw UsageError("Connection: connection is closed");
  return state_->frame_fd_for_poll();
}

std::pair<Connection, Connection> Pipe(bool duplex) {
  // The side socket keeps the kernel's default buffers (208 KiB) on purpose: measured with
  // 1 MiB messages, 4 MiB buffers made both Connection and a raw socketpair loop slower (about
  // 5.2 -> 3.4 GB/s raw), as the data in flight no longer stays in cache. The pipes keep their
  // default 64 KiB: they carry only small frames, and enlarged pipes count against the
  // per-user pipe-user-pages-soft budget.
  auto [first, second] = detail::sys::socketpair(SOCK_STREAM);
  auto there = detail::sys::pipe();  // frames from the first end to the second
  if (duplex) {
    auto back = detail::sys::pipe();  // frames from the second end to the first
    return {detail::make_connection(
                {std::move(back.first), std::move(there.second), std::move(first)}, true, true),
            detail::make_connection(
                {std::move(there.first), std::move(back.second), std::move(second)}, true, true)};
  }
  // One-way: first only reads, second only writes. Shutting the unused socket directions
  // makes a stray write fail in the kernel too, not only in our checks.
  detail::sys::shutdown(first.get(), SHUT_WR);
  detail::sys::shutdown(second.get(), SHUT_RD);
  return {detail::make_connection({std::move(there.first), {}, std::move(first)}, true, false),
          detail::make_connection({{}, std::move(there.second), std::move(second)}, false, true)};
}

// ---- handle_codec<Connection> ------------------------------------------------------------

void handle_codec<Connection>::encode(Encoder& out, const Connection& c) {
  if (c.closed()) throw UsageError("Connection: cannot send a closed connection");
  auto& s = *c.state_;
  {
    std::unique_lock lock(s.recv_mu, std::try_to_lock);
    if (!lock.owns_lock()) {
      throw UsageError("Connection: cannot send a connection while another thread receives on it");
    }
    if (!s.recv_idle()) {
      throw UsageError(
          "Connection: cannot send a connection that holds part of an unreceived message "
          "(its bytes were read ahead here); receive the pending message first");
    }
  }
  std::array<std::byte, 13> bytes{};
  detail::store_le(bytes.data(), out.attach_fd(s.side), 4);
  bytes[4] = std::byte((s.readable ? 1 : 0) | (s.writable ? 2 : 0));
  detail::store_le(bytes.data() + 5, s.in >= 0 ? out.attach_fd(s.in) : detail::kNoFd, 4);
  detail::store_le(bytes.data() + 9, s.out >= 0 ? out.attach_fd(s.out) : detail::kNoFd, 4);
  out.write_bytes(bytes.data(), bytes.size());
}

Connection handle_codec<Connection>::decode(Decoder& in) {
  std::array<std::byte, 13> bytes{};
  in.read_bytes(bytes.data(), bytes.size());
  const auto side = static_cast<std::uint32_t>(detail::load_le(bytes.data(), 4));
  const auto direction = std::to_integer<unsigned>(bytes[4]);
  const auto frames_in = static_cast<std::uint32_t>(detail::load_le(bytes.data() + 5, 4));
  const auto frames_out = static_cast<std::uint32_t>(detail::load_le(bytes.data() + 9, 4));
  if (direction == 0 || direction > 3) {
    throw ProtocolError("Connection: invalid direction byte " + std::to_string(direction) +
                        " in an encoded connection");
  }
  const bool readable = (direction & 1) != 0;
  const bool writable = (direction & 2) != 0;
  const bool single = frames_in == detail::kNoFd && frames_out == detail::kNoFd;
  if (!single &&
      ((frames_in != detail::kNoFd) != readable || (frames_out != detail::kNoFd) != writable)) {
    throw ProtocolError(
        "Connection: an encoded connection's frame pipes do not match its directions");
  }
  detail::ConnectionFds fds;
  fds.side = in.take_fd(side);
  if (frames_in != detail::kNoFd) fds.frames_in = in.take_fd(frames_in);
  if (frames_out != detail::kNoFd) fds.frames_out = in.take_fd(frames_out);
  return detail::make_connection(std::move(fds), readable, writable);
}

}  // namespace mproc
