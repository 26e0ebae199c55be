// What travels on a room's Redis channel: "NUMBER {"user","text","ts"}".
#include <gtest/gtest.h>

#include <string>

#include "chat/backplane.h"

TEST(BackplanePayload, WhatANodeEncodesParsesBackWithItsNumber) {
  std::string payload = "42 " + chat::encode_published_body("kim", "h\u00e9llo \"q\" \\ \n", 1795689184469);
  chat::Published p;
  ASSERT_TRUE(chat::parse_published(payload, p));
  EXPECT_EQ(p.seq, 42u);
  EXPECT_EQ(p.user, "kim");
  EXPECT_EQ(p.text, "h\u00e9llo \"q\" \\ \n");
  EXPECT_EQ(p.ts_ms, 1795689184469);
}

TEST(BackplanePayload, AnythingElseIsRefused) {
  for (const char* bad : {"", "1", "1 ", " {\"user\":\"a\",\"text\":\"b\"}", "0 {\"user\":\"a\",\"text\":\"b\"}",
                          "-1 {\"user\":\"a\",\"text\":\"b\"}", "1x {\"user\":\"a\",\"text\":\"b\"}",
                          "99999999999999999999999 {\"user\":\"a\",\"text\":\"b\"}", "1 [\"a\",\"b\"]",
                          "1 {\"user\":\"a\"}", "1 {\"user\":1,\"text\":\"b\"}", "1 {\"user\":\"a\",\"text\":null}",
                          "1 {\"user\":\"a\",\"text\":\"b\",\"ts\":\"soon\"}", "1 {\"user\":\"a\",\"text\":\"b\",\"ts\":1.5}",
                          "1 {\"user\":\"a\",\"text\":\"\xff\"}", "1 {broken"}) {
    chat::Published p;
    EXPECT_FALSE(chat::parse_published(bad, p)) << bad;
  }
}
