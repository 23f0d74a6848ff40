// make_corpus.cpp — writes the seed corpus of every fuzz target (fuzz/corpus/<target>/) with
// the library's real encoders: frames captured from a sending Connection, codec messages from
// mproc::encode, manager requests from the client's Request. Each valid seed has near-valid
// siblings (truncated, a field patched) so that the fuzzers start at the interesting edges.
//
//     cmake --build <build> --target fuzz_make_corpus
//     <build>/tests/fuzz_make_corpus fuzz/corpus      (overwrites the seed-* files there)
//
// Seeds are named seed-<what>; inputs that once broke the library are named
// regression-<what> and are kept by hand.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "../codec_cases.hpp"
#include "mproc/codec.hpp"
#include "mproc/detail/manager_client.hpp"
#include "mproc/detail/manager_protocol.hpp"
#include "mproc/pipe.hpp"

namespace {

namespace fs = std::filesystem;
namespace manager = mproc::detail::manager;
using mproc::detail::UniqueFd;
using Bytes = std::string;

fs::path g_root;
int g_written = 0;

void write_seed(const std::string& target, const std::string& name, const Bytes& bytes) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / ("seed-" + name), std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + (dir / name).string());
  ++g_written;
}

Bytes to_bytes(std::span<const std::byte> b) {
  return Bytes(reinterpret_cast<const char*>(b.data()), b.size());
}

Bytes u8(unsigned v) {
  return Bytes(1, static_cast<char>(v));
}

Bytes u16le(std::size_t v) {
  return {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff)};
}

Bytes u64le(std::uint64_t v) {
  Bytes out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

// ---- frame: bytes a sending Connection really wrote, as the target's chunk script ---------

/// A sending end whose peer is not a Connection: the bytes are read raw from the channels.
struct Tap {
  mproc::Connection writer;
  UniqueFd pipe;  // read end of the frame pipe (absent for a single-socket Connection)
  UniqueFd side;  // the peer socket

  explicit Tap(bool single) {
    int s[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) != 0)
      throw std::runtime_error("sp");
    side = UniqueFd(s[1]);
    if (single) {
      writer = mproc::Connection(UniqueFd(s[0]), false, true);
      return;
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pipe = UniqueFd(p[0]);
    writer =
        mproc::detail::make_connection({UniqueFd(), UniqueFd(p[1]), UniqueFd(s[0])}, false, true);
  }

  static void add_chunks(Bytes& script, unsigned tag, const Bytes& data) {
    for (std::size_t at = 0; at < data.size(); at += 0xffff) {
      const Bytes part = data.substr(at, 0xffff);
      script += u8(tag) + u16le(part.size()) + part;
    }
  }

  /// Closes the writer and turns what it wrote into chunks: the pipe's bytes, then each
  /// segment of the socket (a segment ends where descriptors arrived), with its descriptors.
  Bytes script(unsigned options, unsigned unit) {
    writer.close();
    Bytes out = u8(options) + u8(unit);
    if (pipe) {
      Bytes data;
      char buf[65536];
      for (ssize_t n; (n = ::read(pipe.get(), buf, sizeof buf)) > 0;) data.append(buf, n);
      add_chunks(out, 0x00, data);
    }
    for (;;) {
      char buf[65536];
      alignas(cmsghdr) char control[CMSG_SPACE(253 * sizeof(int))];
      iovec iov{buf, sizeof buf};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(side.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n <= 0) break;
      unsigned fds = 0;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          ::close(fd);
        }
        fds += static_cast<unsigned>(count);
      }
      add_chunks(out, 0x80 | (fds > 7 ? 7 : fds), Bytes(buf, static_cast<std::size_t>(n)));
    }
    return out;
  }
};

void frame_seeds() {
  const std::string t = "frame";
  for (const bool single : {false, true}) {
    const std::string mode = single ? "single-" : "pipe-";
    const unsigned base = single ? 1 : 0;
    {
      Tap tap(single);
      tap.writer.send_bytes("hello");
      tap.writer.send(std::string("a string message"));
      tap.writer.send_bytes(std::string_view());
      tap.writer.send(std::vector<int>{1, 2, 3});
      write_seed(t, mode + "small-messages", tap.script(base, 0));
    }
    {
      Tap tap(single);
      tap.writer.send_bytes(Bytes(17000, 'x'));  // over 16 KiB: a side-socket frame
      tap.writer.send_bytes("after");
      write_seed(t, mode + "large-message", tap.script(base, 0));
    }
    {
      Tap tap(single);
      auto [a, b] = mproc::Pipe();
      std::vector<mproc::Connection> ends{a};
      tap.writer.send(ends);  // three descriptors on the side socket
      tap.writer.send(std::vector<mproc::Connection>{});
      write_seed(t, mode + "connections", tap.script(base | 8, 0));
    }
    {
      Tap tap(single);
      tap.writer.send_bytes(Bytes(10, 'a'));
      tap.writer.send_bytes(Bytes(40, 'b'));  // longer than the 16-byte buffer
      tap.writer.send_bytes(Bytes(16, 'c'));
      write_seed(t, mode + "recv-into", tap.script(base | 2, 1));
    }
    {
      Tap tap(single);
      tap.writer.send_bytes(Bytes(100, 'a'));
      tap.writer.send_bytes(Bytes(5000, 'b'));  // over the 4096-byte limit of option 4
      write_seed(t, mode + "over-limit", tap.script(base | 4, 0));
    }
    {
      Tap tap(single);
      tap.writer.send_bytes(Bytes(2000, 'd'));
      write_seed(t, mode + "default-limit", tap.script(base | 16, 0));
    }
  }
  // Near-valid pipe frames, by hand from a captured one.
  Tap tap(false);
  tap.writer.send_bytes("hello");
  const Bytes good = tap.script(0, 0);  // options unit tag len16 header[16] "hello"
  const std::size_t h = 5;              // where the frame header starts
  auto patched = [&](std::size_t at, char v) {
    Bytes b = good;
    b[h + at] = v;
    return b;
  };
  write_seed(t, "bad-magic", patched(0, 'X'));
  write_seed(t, "bad-version", patched(4, 2));
  write_seed(t, "unknown-flag", patched(5, 4));
  write_seed(t, "fds-on-pipe", patched(6, 1));
  write_seed(t, "side-announced-missing", patched(5, 1));
  write_seed(t, "length-too-long", patched(8, 6));
  write_seed(t, "huge-length", patched(15, 1));
  Bytes claims = patched(11, 6);  // 100 MiB announced, 5 bytes sent, under the default limit
  claims[0] = 16;
  write_seed(t, "claims-100mib", claims);
  write_seed(t, "truncated-header", good.substr(0, 3) + u16le(10) + good.substr(h, 10));
}

// ---- codec: one encoded value per case ---------------------------------------------------

template <class T>
Bytes bare(const T& value) {
  mproc::Encoder out;
  mproc::encode(out, value);
  return to_bytes(out.bytes());
}

template <class T>
Bytes message(const T& value) {
  mproc::Encoder out;
  mproc::encode_message(out, value);
  return to_bytes(out.bytes());
}

template <std::size_t I, class T>
void codec_seed(const std::string& name, const T& value) {
  using Expected = typename std::tuple_element_t<I, mproc_fuzz::Cases>::type;
  static_assert(std::is_same_v<T, Expected>, "the seed's value has another type than its case");
  const Bytes body = bare(value);
  write_seed("codec", std::to_string(I) + "-" + name, u8(I) + body);
}

void codec_seeds() {
  using namespace mproc_fuzz;
  codec_seed<0>("int32", std::int32_t{-42});
  codec_seed<1>("uint64", std::uint64_t{1} << 40);
  codec_seed<2>("bool", true);
  codec_seed<3>("double", 2.5);
  codec_seed<4>("trivial", Trivial{7, 1.5, {'a', 'b', 'c'}});
  codec_seed<5>("array-int16", std::array<std::int16_t, 4>{1, -2, 3, -4});
  codec_seed<6>("string", std::string("hello, world"));
  codec_seed<7>("vector-int32", std::vector<std::int32_t>{1, 2, 3, 4});
  codec_seed<8>("vector-double", std::vector<double>{0.5, -1.0});
  codec_seed<9>("vector-trivial", std::vector<Trivial>{{1, 2.0, {'x', 'y', 'z'}}});
  codec_seed<10>("vector-string", std::vector<std::string>{"a", "", "ccc"});
  codec_seed<11>("vector-bool", std::vector<bool>{true, false, true});
  codec_seed<12>("map-string-int", std::map<std::string, std::int32_t>{{"a", 1}, {"b", 2}});
  codec_seed<13>("unordered-map", std::unordered_map<std::int32_t, std::string>{{1, "one"}});
  codec_seed<14>("multimap", std::multimap<std::int32_t, std::int32_t>{{1, 2}, {1, 3}});
  codec_seed<15>("set-string", std::set<std::string>{"x", "y"});
  codec_seed<16>("unordered-set", std::unordered_set<std::uint64_t>{5, 6});
  codec_seed<17>("optional-int", std::optional<std::int32_t>(9));
  codec_seed<18>("optional-string", std::optional<std::string>("maybe"));
  codec_seed<19>("variant",
                 std::variant<std::monostate, std::int32_t, std::string, std::vector<std::int32_t>>(
                     std::string("alt")));
  codec_seed<20>("tuple", std::tuple<std::int32_t, std::string, bool>{1, "two", false});
  codec_seed<21>("pair", std::pair<std::string, std::optional<double>>{"pi", 3.14});
  codec_seed<22>("nested-vector-map",
                 std::vector<std::map<std::string, std::vector<std::int32_t>>>{{{"k", {1, 2}}}});
  codec_seed<23>(
      "map-vector-optional",
      std::map<std::int32_t, std::vector<std::optional<std::string>>>{{1, {std::nullopt, "s"}}});
  codec_seed<24>("deque-list", std::deque<std::list<std::string>>{{"a", "b"}, {}});
  codec_seed<25>("array-string", std::array<std::string, 3>{"x", "yy", "zzz"});
  codec_seed<26>("record", Record{"rec", {1, 2}, "note", {{"t", 1}}});
  Node tree{1, {Node{2, {}}, Node{3, {Node{4, {}}}}}};
  codec_seed<27>("node", tree);
  codec_seed<28>("vector-empty", std::vector<Empty>(3));
  codec_seed<29>(
      "pointers",
      std::tuple<std::unique_ptr<std::string>, std::shared_ptr<std::vector<std::int32_t>>>{
          std::make_unique<std::string>("u"), std::make_shared<std::vector<std::int32_t>>(2, 7)});
  {
    auto [a, b] = mproc::Pipe();
    codec_seed<30>("vector-connection", std::vector<mproc::Connection>{a});
    codec_seed<33>("optional-connection", std::optional<mproc::Connection>(b));
  }
  codec_seed<31>("chrono-complex-bitset",
                 std::tuple<std::chrono::nanoseconds, std::complex<double>, std::bitset<70>>{
                     std::chrono::nanoseconds(5), {1.0, -1.0}, std::bitset<70>(0x5)});
  codec_seed<32>(
      "map-variant",
      std::map<std::string, std::variant<std::int64_t, std::string, std::vector<std::string>>>{
          {"i", std::int64_t{1}}, {"v", std::vector<std::string>{"a"}}});

  // Other modes and near-valid inputs.
  const std::vector<std::string> strings{"a", "bb"};
  write_seed("codec", "message-mode-vector-string", u8(10 | 0x40) + bare(strings));
  write_seed("codec", "raw-message-vector-string", u8(10 | 0x80) + message(strings));
  write_seed("codec", "small-limit-string", u8(6 | 0xc0) + bare(std::string(100, 'z')));
  write_seed("codec", "huge-count-vector-string", u8(10) + u64le(~std::uint64_t{0} >> 1));
  write_seed("codec", "huge-count-vector-empty", u8(28) + u64le(std::uint64_t{1} << 40));
  write_seed("codec", "huge-count-map", u8(12) + u64le(std::uint64_t{1} << 60) + u64le(1) + "a");
  write_seed("codec", "bad-bool", u8(2) + u8(2));
  write_seed("codec", "bad-variant-index", u8(19) + Bytes("\x07\x00\x00\x00", 4));
  write_seed("codec", "bad-optional-flag", u8(18) + u8(5));
  write_seed("codec", "truncated-record",
             u8(26) + bare(Record{"rec", {1, 2}, {}, {}}).substr(0, 13));
  write_seed("codec", "trailing-byte-string", u8(6) + bare(std::string("s")) + "!");
  // A chain of Nodes deeper than the codec's nesting limit (256): id, one child, ...
  Bytes deep;
  for (int i = 0; i < 300; ++i) deep += Bytes(4, '\0') + u64le(1);
  deep += Bytes(4, '\0') + u64le(0);
  write_seed("codec", "node-too-deep", u8(27) + deep);
}

// ---- manager protocol: request frames built by the client's Request ----------------------

Bytes frame(manager::Request& r) {
  Bytes b = to_bytes(r.out().bytes());
  const Bytes length = u64le(b.size() - 8);
  b.replace(0, 8, length);
  return b;
}

Bytes create(manager::Kind kind, std::uint64_t capacity = 0, std::string_view name = {}) {
  manager::Request r(manager::Op::create, 0);
  r.put_u8(static_cast<std::uint8_t>(kind));
  r.put_u64(mproc::type_fingerprint<std::string>());
  r.put_u64(mproc::type_fingerprint<int>());
  r.put_u64(capacity);
  r.put_bytes(name);
  return frame(r);
}

Bytes request(manager::Op op, std::uint64_t id) {
  manager::Request r(op, id);
  return frame(r);
}

template <class F>
Bytes request(manager::Op op, std::uint64_t id, F&& args) {
  manager::Request r(op, id);
  args(r);
  return frame(r);
}

void manager_seeds() {
  using manager::Kind;
  using manager::Op;
  const std::string t = "manager_protocol";
  const auto seed = [&](const std::string& name, const Bytes& stream, unsigned piece = 0) {
    write_seed(t, name, u8(piece) + stream);
  };
  const Bytes dict = create(Kind::dict) +
                     request(Op::dict_set, 1,
                             [](auto& r) {
                               r.put_sized_value(std::string("key"));
                               r.put_value(42);
                             }) +
                     request(Op::dict_get, 1, [](auto& r) { r.put_value(std::string("key")); }) +
                     request(Op::dict_get_or, 1,
                             [](auto& r) {
                               r.put_sized_value(std::string("none"));
                               r.put_value(0);
                             }) +
                     request(Op::dict_contains, 1, [](auto& r) { r.put_value(std::string("k")); }) +
                     request(Op::dict_size, 1) + request(Op::dict_items, 1) +
                     request(Op::dict_erase, 1, [](auto& r) { r.put_value(std::string("key")); }) +
                     request(Op::dict_clear, 1);
  seed("dict", dict);
  seed("dict-trickled", dict, 3);
  seed("list", create(Kind::list) + request(Op::list_append, 1, [](auto& r) { r.put_value(1.5); }) +
                   request(Op::list_append, 1, [](auto& r) { r.put_value(2.5); }) +
                   request(Op::list_at, 1, [](auto& r) { r.put_u64(1); }) +
                   request(Op::list_set, 1,
                           [](auto& r) {
                             r.put_u64(0);
                             r.put_value(0.5);
                           }) +
                   request(Op::list_at, 1, [](auto& r) { r.put_u64(9); }) +
                   request(Op::list_size, 1) + request(Op::list_to_vector, 1) +
                   request(Op::list_pop, 1) + request(Op::list_clear, 1) +
                   request(Op::list_pop, 1));
  seed("queue",
       create(Kind::queue, 1) +
           request(Op::queue_put, 1,
                   [](auto& r) {
                     r.put_timeout(std::chrono::nanoseconds(0));
                     r.put_value(std::string("item"));
                   }) +
           request(Op::queue_put, 1,
                   [](auto& r) {
                     r.put_timeout(std::chrono::nanoseconds(0));
                     r.put_value(std::string("full"));
                   }) +
           request(Op::queue_size, 1) +
           request(Op::queue_get, 1, [](auto& r) { r.put_timeout(std::chrono::nanoseconds(0)); }) +
           request(Op::queue_get, 1,
                   [](auto& r) { r.put_timeout(std::chrono::nanoseconds(1000)); }));
  seed("lock", create(Kind::lock) +
                   request(Op::lock_acquire, 1, [](auto& r) { r.put_timeout(std::nullopt); }) +
                   request(Op::lock_acquire, 1,
                           [](auto& r) { r.put_timeout(std::chrono::nanoseconds(0)); }) +
                   request(Op::lock_locked, 1) + request(Op::lock_release, 1) +
                   request(Op::lock_release, 1) +
                   request(Op::lock_acquire, 1, [](auto& r) { r.put_timeout(std::nullopt); }));
  seed("event",
       create(Kind::event) + request(Op::event_is_set, 1) +
           request(Op::event_wait, 1, [](auto& r) { r.put_timeout(std::chrono::nanoseconds(0)); }) +
           request(Op::event_set, 1) +
           request(Op::event_wait, 1, [](auto& r) { r.put_timeout(std::nullopt); }) +
           request(Op::event_clear, 1));
  seed("named-objects", create(Kind::dict, 0, "inventory") + create(Kind::dict, 0, "inventory") +
                            create(Kind::list, 0, "inventory") + request(Op::stats, 0));
  seed("manager-ops", request(Op::ping, 0) + request(Op::stats, 0) +
                          request(static_cast<Op>(99), 0) + request(Op::dict_size, 7) +
                          request(Op::shutdown, 0) + request(Op::ping, 0));
  // Code the server would run: a call naming code of another build (refused).
  const auto call = [](auto& r) {
    r.put_u8(1);  // call wire version
    r.out().write_bytes(Bytes(40, '\x11').data(), 40);
  };
  seed("calls", create(Kind::dict) +
                    request(Op::dict_update, 1,
                            [&](auto& r) {
                              r.put_sized_value(std::string("k"));
                              call(r);
                            }) +
                    request(Op::object_call, 1, call) + request(Op::create, 0, [&](auto& r) {
                      r.put_u8(static_cast<std::uint8_t>(Kind::object));
                      r.put_u64(1);
                      r.put_u64(0);
                      r.put_u64(0);
                      r.put_bytes("");
                      call(r);
                    }));
  seed("wrong-ops", create(Kind::event) + request(Op::dict_get, 1) + request(Op::list_at, 1) +
                        request(Op::queue_get, 1) + request(Op::lock_release, 1) +
                        request(Op::object_call, 1));
  seed("bad-kind", request(Op::create, 0, [](auto& r) {
         r.put_u8(9);
         r.put_u64(0);
       }));
  // Framing: a length over the limit, a frame cut short, a short request.
  seed("frame-over-limit", u64le(~std::uint64_t{0}) + "x");
  seed("frame-truncated", u64le(1000) + Bytes(10, 'x'));
  seed("frame-truncated-trickled", u64le(100000) + Bytes(40, 'x'), 2);
  seed("request-too-short", u64le(3) + "\x04\x00\x00");
}

// ---- handshake ---------------------------------------------------------------------------

void handshake_seeds() {
  const Bytes key = "authkey";
  const Bytes keyed = u8(key.size()) + key;
  const Bytes nonce(32, '\x5a');
  const Bytes answer = Bytes(32, '\x01') + Bytes(32, '\x02');  // HMAC, client nonce
  write_seed("handshake_server", "answer", keyed + answer);
  write_seed("handshake_server", "answer-empty-key", u8(0) + answer);
  write_seed("handshake_server", "answer-truncated", keyed + answer.substr(0, 20));
  write_seed("handshake_server", "answer-and-more", keyed + answer + Bytes(30, 'x'));
  const Bytes greeting = "MPROCMG1" + nonce;
  const Bytes proof(32, '\x03');
  write_seed("handshake_client", "accepted-bad-proof", keyed + greeting + u8(1) + proof);
  write_seed("handshake_client", "rejected", keyed + greeting + u8(0));
  write_seed("handshake_client", "bad-greeting", keyed + "MPROCMG2" + nonce);
  write_seed("handshake_client", "greeting-only", keyed + greeting);
  write_seed("handshake_client", "proof-truncated", keyed + greeting + u8(1) + proof.substr(0, 9));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <fuzz/corpus directory>\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  frame_seeds();
  codec_seeds();
  manager_seeds();
  handshake_seeds();
  std::printf("%d seed files written under %s\n", g_written, g_root.c_str());
  return 0;
}
