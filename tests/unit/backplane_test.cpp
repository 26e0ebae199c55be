// What travels on a room's Redis channel: "NUMBER {"n","node","text","ts","user"}".
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

// The wire format itself, pinned with literals: nodes of different builds share a channel, so a
// change here must be deliberate (a round trip would pass whatever the encoder did).
TEST(BackplanePayload, TheEncodedBodyIsExactlyThis) {
  EXPECT_EQ(chat::encode_published_body("kim", "h\u00e9 \"q\" \\ \n\t", 1795689184469, "00ff00ff00ff00ff", 7),
            R"({"n":7,"node":"00ff00ff00ff00ff","text":"h)"
            "\u00e9"
            R"( \"q\" \\ \n\t","ts":1795689184469,"user":"kim"})");
  // Without a node (a test's or a tool's publish), no node fields.
  EXPECT_EQ(chat::encode_published_body("a", "b", 0), R"({"text":"b","ts":0,"user":"a"})");
  // Invalid UTF-8 is replaced, never sent as is.
  EXPECT_EQ(chat::encode_published_body("a", "\xff", 1), "{\"text\":\"\xef\xbf\xbd\",\"ts\":1,\"user\":\"a\"}");
}

TEST(BackplanePayload, ALiteralPayloadParsesToItsFields) {
  chat::Published p;
  ASSERT_TRUE(chat::parse_published(
      R"(12 {"n":3,"node":"abc","text":"x\ny \u00e9","ts":1795689184469,"user":"kim"})", p));
  EXPECT_EQ(p.seq, 12u);
  EXPECT_EQ(p.user, "kim");
  EXPECT_EQ(p.text, "x\ny \u00e9");
  EXPECT_EQ(p.ts_ms, 1795689184469);
  EXPECT_EQ(p.node, "abc");
  EXPECT_EQ(p.n, 3u);
  // What an older node (or anyone) publishes: no node, no counter, no ts.
  chat::Published q;
  ASSERT_TRUE(chat::parse_published(R"(5 {"user":"a","text":"b"})", q));
  EXPECT_EQ(q.seq, 5u);
  EXPECT_EQ(q.ts_ms, 0);
  EXPECT_EQ(q.node, "");
  EXPECT_EQ(q.n, 0u);
  for (const char* bad : {R"(1 {"user":"a","text":"b","node":7})", R"(1 {"user":"a","text":"b","n":-1})",
                          R"(1 {"user":"a","text":"b","n":"7"})"}) {
    chat::Published r;
    EXPECT_FALSE(chat::parse_published(bad, r)) << bad;
  }
}

TEST(BackplanePayload, AMessageIdTravelsAndABadOneIsMalformed) {
  std::string payload = "9 " + chat::encode_published_body("kim", "hi", 1, "abc", 4, "m-1");
  EXPECT_EQ(payload, R"(9 {"id":"m-1","n":4,"node":"abc","text":"hi","ts":1,"user":"kim"})");
  chat::Published p;
  ASSERT_TRUE(chat::parse_published(payload, p));
  EXPECT_EQ(p.id, "m-1");
  chat::Published none;
  ASSERT_TRUE(chat::parse_published(R"(5 {"user":"a","text":"b"})", none));
  EXPECT_EQ(none.id, "");
  std::string long_id(65, 'x');
  for (std::string bad : {std::string(R"(1 {"user":"a","text":"b","id":7})"), std::string(R"(1 {"user":"a","text":"b","id":""})"),
                          std::string(R"(1 {"user":"a","text":"b","id":"a b"})"),
                          R"(1 {"user":"a","text":"b","id":")" + long_id + "\"}"}) {
    chat::Published r;
    EXPECT_FALSE(chat::parse_published(bad, r)) << bad;
  }
}
