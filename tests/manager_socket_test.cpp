// Manager sockets (src/manager_socket.hpp, internal): the length-prefixed frames a server
// reads from its clients.
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <thread>

#include "../src/manager_socket.hpp"
#include "mproc/errors.hpp"

namespace {

namespace mm = mproc::detail::manager;
using mproc::detail::UniqueFd;

// Regression, found by fuzz/manager_protocol.cpp (the input is
// fuzz/corpus/manager_protocol/regression-frame-buffer-grows-per-read): the buffer doubled
// on every read inside a frame, whatever the read brought, so a client that announced a
// large frame and trickled a few bytes at a time made the server allocate the whole claim.
TEST(ManagerFrameReader, BufferGrowsOnlyWithTheBytesThatArrive) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const UniqueFd server(sv[0]);
  const UniqueFd client(sv[1]);
  std::thread trickle([&] {
    const std::uint64_t claimed = std::uint64_t{256} << 20;
    unsigned char header[8];
    for (int i = 0; i < 8; ++i) header[i] = static_cast<unsigned char>(claimed >> (8 * i));
    bool ok = ::send(client.get(), header, sizeof header, MSG_NOSIGNAL) == 8;
    for (int piece = 0; ok && piece < 32; ++piece) {
      // Each piece only once the reader has taken everything before it: one read each.
      for (int unread = 1; unread > 0;) {
        if (::ioctl(server.get(), FIONREAD, &unread) != 0) unread = 0;
        if (unread > 0) std::this_thread::yield();
      }
      ok = ::send(client.get(), "abcd", 4, MSG_NOSIGNAL) == 4;
    }
    ::shutdown(client.get(), SHUT_WR);
  });
  mm::FrameReader reader;
  EXPECT_THROW(static_cast<void>(reader.read(server.get(), std::uint64_t{1} << 32)),
               mproc::ConnectionClosed);
  trickle.join();
  EXPECT_LE(reader.capacity(), std::size_t{128} << 10);  // 136 bytes arrived
}

TEST(ManagerFrameReader, FramesSplitAnywhereAreReassembled) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const UniqueFd server(sv[0]);
  const UniqueFd client(sv[1]);
  // Two frames ("hello", "") then a third cut short by EOF.
  const unsigned char stream[] = {5, 0, 0, 0, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o', 0, 0,
                                  0, 0, 0, 0, 0, 0, 9, 0, 0,   0,   0,   0,   0,   0, 'x'};
  std::thread writer([&] {
    for (const unsigned char byte : stream) {
      if (::send(client.get(), &byte, 1, MSG_NOSIGNAL) != 1) break;
    }
    ::shutdown(client.get(), SHUT_WR);
  });
  mm::FrameReader reader;
  const auto first = reader.read(server.get(), 100);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(first->data()), first->size()), "hello");
  const auto second = reader.read(server.get(), 100);
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(second->empty());
  EXPECT_THROW(static_cast<void>(reader.read(server.get(), 100)), mproc::ConnectionClosed);
  writer.join();
}

}  // namespace
