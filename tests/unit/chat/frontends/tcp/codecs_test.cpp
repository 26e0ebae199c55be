// The TCP port's codecs: the native dialect's errors (each bad request its code, the connection going
// on; a refused message naming its room and id) and the article dialect skipping what it cannot read.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "../../chat_test_util.h"

namespace {

using namespace chattest;

// ---- Errors -----------------------------------------------------------------------------------

TEST(ChatCoreErrors, EveryBadRequestGetsItsErrorAndTheConnectionGoesOn) {
  chat::Limits limits;
  limits.max_rooms = 2;
  OneShard s(limits);
  auto c = native(s.shard, "c");
  struct Case {
    std::string bytes, code;
  };
  std::vector<Case> cases = {
      {"not json\n", "bad_json"},
      {"[1,2]\n", "bad_request"},
      {std::string(40, '[') + std::string(40, ']') + "\n", "bad_json"},
      {"\"\xff\"\n", "bad_utf8"},
      {R"({"text":"no type"})"
       "\n",
       "bad_request"},
      {request({{"type", "dance"}}), "unknown_type"},
      {request({{"type", "message"}, {"room", "r"}, {"text", "not in r"}}), "not_member"},
      {request({{"type", "message"}, {"room", "r"}}), "bad_request"},
      {request({{"type", "join"}, {"room", "bad room!"}}), "bad_room"},
      {request({{"type", "leave"}, {"room", "r"}}), "not_member"},
      {request({{"type", "hello"}, {"user", "again"}}), "bad_request"},
      {request({{"type", "join"}, {"room", "r1"}}) + request({{"type", "join"}, {"room", "r1"}}), "already_member"},
      {request({{"type", "join"}, {"room", "r2"}}) + request({{"type", "join"}, {"room", "r3"}}), "too_many_rooms"},
  };
  for (const auto& k : cases) {
    size_t before = c->transport.sent.size();
    c->say(k.bytes);
    ASSERT_GT(c->transport.sent.size(), before) << k.bytes;
    Json reply = Json::parse(c->last());
    EXPECT_EQ(reply["type"], "error") << k.bytes;
    EXPECT_EQ(reply["code"], k.code) << k.bytes << " -> " << reply.dump();
    EXPECT_FALSE(c->transport.closed) << k.bytes;
  }
  EXPECT_EQ(s.stats.errors_json, 2u);
  EXPECT_EQ(s.stats.errors_utf8, 1u);
  // The connection still works.
  c->say(request({{"type", "message"}, {"room", "r1"}, {"text", "still here"}}));
  EXPECT_EQ(Json::parse(c->last())["text"], "still here");
}

TEST(ChatCoreErrors, TheArticleDialectSkipsWhatItCannotReadAndGoesOn) {
  OneShard s;
  auto writer = article(s.shard), reader = article(s.shard);
  writer->say(R"(garbage{"user":"kim","text":"one"}{"broken":}{"user":"kim"}{"user":"kim","text":"two"})");
  ASSERT_EQ(reader->transport.sent.size(), 2u);
  EXPECT_EQ(reader->text(0), "[kim] one\n");
  EXPECT_EQ(reader->text(1), "[kim] two\n");
  EXPECT_EQ(s.stats.errors_garbage, 1u);
  EXPECT_EQ(s.stats.errors_json, 1u);
  EXPECT_EQ(s.stats.errors_request, 1u);
  EXPECT_EQ(writer->transport.sent.size(), 2u) << "no error replies in this dialect, only the messages";
}

// A client that sends a message with an id learns what became of it by that id: every refusal of
// it names its room and its id (a page shows that very message as not sent).
TEST(ChatCoreErrors, EveryRefusalOfAMessageWithAnIdCarriesItsRoomAndId) {
  auto store = chat::make_memory_store({});
  chat::Limits limits;
  limits.message_rate = 0.001;  // the burst (every request but a ping takes from it), then nothing for long
  limits.message_burst = 4;     // two refused publishes, a join, one that goes
  HistoryShard s(*store, limits);
  auto a = native(s.shard, "a");
  a->say(request(message("elsewhere", "not in it", "n-1")));
  Json refused = a->json().back();
  EXPECT_EQ(refused["code"], "not_member") << refused;
  EXPECT_EQ(refused["room"], "elsewhere") << refused;
  EXPECT_EQ(refused["id"], "n-1") << refused;
  // Without an id, the room alone.
  a->say(request(message("elsewhere", "no id")));
  refused = a->json().back();
  EXPECT_EQ(refused["code"], "not_member") << refused;
  EXPECT_EQ(refused["room"], "elsewhere") << refused;
  EXPECT_FALSE(refused.contains("id")) << refused;
  a->say(request({{"type", "join"}, {"room", "r"}}));
  a->say(request(message("r", "the burst", "n-2")));
  EXPECT_EQ(a->of_type("ack").size(), 1u);
  a->say(request(message("r", "past the rate", "n-3")));
  refused = a->json().back();
  EXPECT_EQ(refused["code"], "rate_limited") << refused;
  EXPECT_EQ(refused["room"], "r") << refused;
  EXPECT_EQ(refused["id"], "n-3") << refused;
}

}  // namespace
