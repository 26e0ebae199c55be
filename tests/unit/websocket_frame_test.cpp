// http::websocket_frame: a server's frames as RFC 6455 writes them, read back by http::frame_header.
#include <gtest/gtest.h>

#include <string>

#include "http/websocket.h"

namespace {

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) s += static_cast<char>(b);
  return s;
}

// RFC 6455 5.7: a single-frame unmasked text message containing "Hello".
TEST(WebSocketFrame, RfcExampleText) {
  EXPECT_EQ(http::websocket_frame(0x1, "Hello"), bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
}

// RFC 6455 5.7: 256 bytes binary in a single unmasked frame (16-bit length), and 64 KiB (64-bit).
TEST(WebSocketFrame, RfcExampleLengths) {
  std::string f = http::websocket_frame(0x2, std::string(256, 'x'));
  ASSERT_EQ(f.size(), 4u + 256);
  EXPECT_EQ(f.substr(0, 4), bytes({0x82, 0x7e, 0x01, 0x00}));
  f = http::websocket_frame(0x2, std::string(65536, 'y'));
  ASSERT_EQ(f.size(), 10u + 65536);
  EXPECT_EQ(f.substr(0, 10), bytes({0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}));
  EXPECT_EQ(f.substr(10), std::string(65536, 'y'));
}

// The shortest encoding at each boundary: 125 in 7 bits, 126 and 65535 in 16, 65536 in 64.
TEST(WebSocketFrame, LengthBoundaries) {
  struct Case {
    size_t payload, header;
  };
  for (Case c : {Case{0, 2}, Case{125, 2}, Case{126, 4}, Case{65535, 4}, Case{65536, 10}}) {
    std::string payload(c.payload, 'p');
    std::string f = http::websocket_frame(0x1, payload);
    ASSERT_EQ(f.size(), c.header + c.payload) << c.payload;
    auto h = http::frame_header(f);
    ASSERT_TRUE(h.has_value()) << c.payload;
    EXPECT_TRUE(h->fin);
    EXPECT_EQ(h->rsv, 0);
    EXPECT_EQ(h->opcode, 0x1);
    EXPECT_FALSE(h->masked);  // a server's frames are never masked
    EXPECT_EQ(h->size, c.header) << c.payload;
    EXPECT_EQ(h->payload, c.payload);
    EXPECT_EQ(f.substr(h->size), payload);
  }
}

// Control frames: a close with its status code, an empty ping.
TEST(WebSocketFrame, ControlFrames) {
  EXPECT_EQ(http::websocket_frame(0x9, ""), bytes({0x89, 0x00}));
  EXPECT_EQ(http::websocket_frame(0x8, bytes({0x03, 0xe8})), bytes({0x88, 0x02, 0x03, 0xe8}));
}

}  // namespace
