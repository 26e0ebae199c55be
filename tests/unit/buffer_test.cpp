#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "reactor/buffer.h"
#include "reactor/output_queue.h"
#include "test_util.h"

using reactor::Buffer;
using reactor::OutputQueue;

TEST(Buffer, HoldsNoMemoryWhileEmpty) {
  Buffer b;
  EXPECT_EQ(b.capacity(), 0u);
  b.append("hello");
  EXPECT_EQ(b.view(), "hello");
  EXPECT_GT(b.capacity(), 0u);
  b.consume(2);
  EXPECT_EQ(b.view(), "llo");
  b.consume(3);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.capacity(), 0u);
}

TEST(Buffer, GrowsAndKeepsOrder) {
  Buffer b;
  std::string expect;
  for (int i = 0; i < 5000; ++i) {
    std::string piece = std::to_string(i) + ",";
    b.append(piece);
    expect += piece;
    if (i % 7 == 0) {
      b.consume(3);
      expect.erase(0, 3);
    }
  }
  EXPECT_EQ(b.view(), expect);
}

TEST(Buffer, ReadFromTakesMoreThanItsCapacityThroughTheSpill) {
  auto [a, peer] = testutil::make_socketpair();
  int size = 1 << 20;
  ::setsockopt(peer.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  std::string data(100000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31);
  ssize_t sent = ::write(peer.get(), data.data(), data.size());
  ASSERT_GT(sent, 0);
  Buffer b;
  b.append("xy");
  std::string got;
  while (got.size() + 2 < static_cast<size_t>(sent) + 2) {
    ssize_t n = b.read_from(a.get());
    ASSERT_GT(n, 0);
    got = std::string(b.view().substr(2));
  }
  EXPECT_EQ(got, data.substr(0, static_cast<size_t>(sent)));
}

TEST(OutputQueue, CoalescesSmallWritesAndSharesBigOnes) {
  OutputQueue q;
  q.append(std::string_view("a"));
  q.append(std::string_view("b"));
  EXPECT_EQ(q.chunks(), 1u);
  auto shared = std::make_shared<const std::string>("shared");
  q.append(shared);
  q.append(shared);
  EXPECT_EQ(q.chunks(), 3u);
  EXPECT_EQ(shared.use_count(), 3) << "queued by reference, not copied";
  EXPECT_EQ(q.bytes(), 14u);
  auto [a, peer] = testutil::make_socketpair();
  ASSERT_EQ(q.write_to(a.get()), 14);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(shared.use_count(), 1);
  char buf[64];
  ASSERT_EQ(::read(peer.get(), buf, sizeof buf), 14);
  EXPECT_EQ(std::string(buf, 14), "absharedshared");
}

TEST(OutputQueue, PartialWritesResumeWhereTheyStopped) {
  auto [a, peer] = testutil::make_socketpair();
  OutputQueue q;
  std::string expect;
  for (int i = 0; i < 3000; ++i) {  // more chunks than IOV_MAX, more bytes than the socket takes
    std::string s(1000 + i % 17, static_cast<char>('a' + i % 26));
    if (i % 2) {
      q.append(std::make_shared<const std::string>(s));
    } else {
      q.append(std::string_view(s));
    }
    expect += s;
  }
  std::string got;
  char buf[65536];
  while (!q.empty()) {
    q.write_to(a.get());
    ssize_t n;
    while ((n = ::read(peer.get(), buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(got.size(), expect.size());
  EXPECT_TRUE(got == expect);
}
