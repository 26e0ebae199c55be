// What travels on a room's Redis channel: "NUMBER {"front","id","n","node","text","ts","user"}", and
// what a room's stream gives back (a stream entry's fields).
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

#include "chat/cluster/backplane.h"
#include "chat/cluster/redis_store.h"
#include "chat/core/names.h"

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
  // An IRC NOTICE says so, and parses back as one; a body without it is a plain message.
  std::string notice = chat::encode_published_body("a", "b", 0, {}, 0, {}, "irc", true);
  EXPECT_EQ(notice, R"({"front":"irc","notice":true,"text":"b","ts":0,"user":"a"})");
  chat::Published p;
  ASSERT_TRUE(chat::parse_published("5 " + notice, p));
  EXPECT_TRUE(p.notice);
  ASSERT_TRUE(chat::parse_published("5 " + chat::encode_published_body("a", "b", 0), p));
  EXPECT_FALSE(p.notice);
  EXPECT_FALSE(chat::parse_published(R"(5 {"notice":1,"text":"b","ts":0,"user":"a"})", p));
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

// The sender's front end travels in the body (the IRC host of the sender on every node); a body
// without it (an older node's, anyone's) is still a message, of a front end not known. It becomes an
// IRC prefix's host: nothing but a short name of a-z, 0-9 and '-' is taken.
TEST(BackplanePayload, AFrontEndTravelsAndABadOneIsMalformed) {
  std::string payload = "9 " + chat::encode_published_body("kim", "hi", 1, "abc", 4, "m-1", "native");
  EXPECT_EQ(payload, R"(9 {"front":"native","id":"m-1","n":4,"node":"abc","text":"hi","ts":1,"user":"kim"})");
  chat::Published p;
  ASSERT_TRUE(chat::parse_published(payload, p));
  EXPECT_EQ(p.front, "native");
  EXPECT_EQ(p.id, "m-1");
  // Not known: not sent, and absent reads as not known (also over a Published used before).
  EXPECT_EQ(chat::encode_published_body("kim", "hi", 1, "abc", 4, "", ""),
            R"({"n":4,"node":"abc","text":"hi","ts":1,"user":"kim"})");
  ASSERT_TRUE(chat::parse_published(R"(10 {"n":5,"node":"abc","text":"hi","ts":1,"user":"kim"})", p));
  EXPECT_EQ(p.front, "");
  chat::Published irc;
  ASSERT_TRUE(chat::parse_published(R"(3 {"user":"a","text":"b","front":"irc"})", irc));
  EXPECT_EQ(irc.front, "irc");
  ASSERT_TRUE(chat::parse_published(R"(3 {"user":"a","text":"b","front":"web-2"})", irc));
  EXPECT_EQ(irc.front, "web-2");
  std::string long_front(17, 'x');
  for (std::string bad : {std::string(R"(1 {"user":"a","text":"b","front":7})"),
                          std::string(R"(1 {"user":"a","text":"b","front":null})"),
                          std::string(R"(1 {"user":"a","text":"b","front":""})"),
                          std::string(R"(1 {"user":"a","text":"b","front":"IRC"})"),
                          std::string(R"(1 {"user":"a","text":"b","front":"a b"})"),
                          std::string(R"(1 {"user":"a","text":"b","front":"x\r\nQUIT"})"),
                          std::string(R"(1 {"user":"a","text":"b","front":"h\u00e9"})"),
                          R"(1 {"user":"a","text":"b","front":")" + long_front + "\"}"}) {
    chat::Published r;
    EXPECT_FALSE(chat::parse_published(bad, r)) << bad;
  }
  EXPECT_TRUE(chat::valid_front(std::string(16, 'x')));
  EXPECT_FALSE(chat::valid_front(long_front));
}

namespace {

// A reply as hiredis builds it from RESP bytes (what XRANGE answers).
using Reply = std::unique_ptr<redisReply, void (*)(void*)>;
Reply reply_of(const std::string& resp) {
  redisReader* reader = redisReaderCreate();
  void* reply = nullptr;
  if (redisReaderFeed(reader, resp.data(), resp.size()) != REDIS_OK ||
      redisReaderGetReply(reader, &reply) != REDIS_OK) {
    reply = nullptr;
  }
  redisReaderFree(reader);
  return Reply(static_cast<redisReply*>(reply), freeReplyObject);
}

std::string bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }

// One stream entry: "*2 ID *2N field value ...".
std::string entry(const std::string& id, const std::vector<std::string>& fields) {
  std::string out = "*2\r\n" + bulk(id) + "*" + std::to_string(fields.size()) + "\r\n";
  for (const auto& f : fields) out += bulk(f);
  return out;
}

}  // namespace

// What the publish script XADDs reads back from the stream (history, recovery on any node) with its
// front end; an entry from before front ends were kept has none (not known); one with a front end
// that is not a name of ours is not ours.
TEST(RedisStreamEntry, TheFrontEndIsReadBackAndABadOneIsNotOurs) {
  chat::StoredMessage m;
  auto r = reply_of(
      entry("12-0", {"user", "kim", "text", "hi", "ts", "1795689184469", "id", "m-1", "front", "native"}));
  ASSERT_TRUE(r);
  ASSERT_TRUE(chat::parse_stream_entry(r.get(), m));
  EXPECT_EQ(m.seq, 12u);
  EXPECT_EQ(m.user, "kim");
  EXPECT_EQ(m.text, "hi");
  EXPECT_EQ(m.ts_ms, 1795689184469);
  EXPECT_EQ(m.id, "m-1");
  EXPECT_EQ(m.front, "native");

  chat::StoredMessage old;
  r = reply_of(entry("13-0", {"user", "kim", "text", "before", "ts", "1"}));
  ASSERT_TRUE(chat::parse_stream_entry(r.get(), old));
  EXPECT_EQ(old.seq, 13u);
  EXPECT_EQ(old.front, "");
  EXPECT_EQ(old.id, "");

  for (const std::string& bad : {std::string("IRC"), std::string(""), std::string("a\r\nb"), std::string(17, 'x')}) {
    chat::StoredMessage n;
    r = reply_of(entry("14-0", {"user", "kim", "text", "hi", "ts", "1", "front", bad}));
    EXPECT_FALSE(chat::parse_stream_entry(r.get(), n)) << bad;
  }
  chat::StoredMessage none;
  r = reply_of(entry("0-0", {"user", "kim", "text", "hi"}));
  EXPECT_FALSE(chat::parse_stream_entry(r.get(), none)) << "no number";
  r = reply_of(entry("15-0", {"user", "kim", "front", "irc"}));
  EXPECT_FALSE(chat::parse_stream_entry(r.get(), none)) << "no text";
}
