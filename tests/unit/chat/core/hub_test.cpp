// The room core's rules through its members: a format rendered once per room event, one order and
// numbering per room, presence within its limit, one namespace of names.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../chat_test_util.h"
#include "chat/core/format.h"
#include "chat/session/codec.h"
#include "chat/session/framing.h"

namespace {

using namespace chattest;

// ---- A third wire format, added without touching the hub or the session -----------------------

// "user: text" lines; no presence.
class ColonFormat final : public chat::Format {
 public:
  ColonFormat() : Format("colon", "test") {}
  reactor::SharedBytes encode(const chat::RoomEvent& e) const override {
    if (e.kind != chat::EventKind::kMessage) return nullptr;
    return std::make_shared<const std::string>(e.user + ": " + e.text + "\n");
  }
};

const chat::Format& colon_format() {
  static const ColonFormat format;
  return format;
}

// Lines "JOIN room" and "SAY room text", as a member named at construction.
class ColonCodec final : public chat::Codec {
 public:
  explicit ColonCodec(std::string name) : name_(std::move(name)), framer_(1024) {}
  const chat::Format& format() const override { return colon_format(); }
  void start(chat::Session& s) override {
    ASSERT_TRUE(s.claim_name(name_, "test"));
    s.set_name(name_);
  }
  chat::FrameResult next_frame(std::string_view input) override { return framer_.next(input); }
  std::unique_ptr<Codec> on_frame(chat::Session& s, std::string_view frame) override {
    if (frame.starts_with("JOIN ")) {
      s.join(std::string(frame.substr(5)), /*want_reply=*/false);
    } else if (frame.starts_with("SAY ")) {
      auto rest = frame.substr(4);
      auto space = rest.find(' ');
      s.publish(std::string(rest.substr(0, space)), s.name(), rest.substr(space + 1));
    } else {
      s.reply(std::make_shared<const std::string>("? " + std::string(frame) + "\n"));
    }
    return nullptr;
  }
  void on_bad_frame(chat::Session&, const chat::FrameResult&, std::string_view) override {}
  reactor::SharedBytes joined(chat::Session&, const std::string&, const chat::JoinReply&, std::optional<bool>) override {
    return nullptr;
  }

 private:
  std::string name_;
  chat::LineFramer framer_;
};

TEST(ChatCoreFormats, ARoomWithThreeFormatsRendersEachMessageOncePerFormat) {
  OneShard s;
  auto a1 = article(s.shard), a2 = article(s.shard);  // in the lobby from the start
  auto n1 = native(s.shard, "n1"), n2 = native(s.shard, "n2");
  n1->say(request({{"type", "join"}, {"room", "lobby"}}));
  n2->say(request({{"type", "join"}, {"room", "lobby"}}));
  Client c1(s.shard, std::make_unique<ColonCodec>("c1")), c2(s.shard, std::make_unique<ColonCodec>("c2"));
  c1.say("JOIN lobby\n");
  c2.say("JOIN lobby\n");
  EXPECT_NE(colon_format().id(), chat::native_format().id());
  EXPECT_NE(colon_format().id(), chat::article_format().id());
  uint64_t deliveries = s.stats.deliveries;

  c1.say("SAY lobby hello there\n");

  // Each member got the message in its own format...
  EXPECT_EQ(a1->last(), "[c1] hello there\n");
  EXPECT_EQ(c2.last(), "c1: hello there\n");
  EXPECT_EQ(c1.last(), "c1: hello there\n");  // the sender too
  Json m = Json::parse(n1->last());
  EXPECT_EQ(m["type"], "message");
  EXPECT_EQ(m["room"], "lobby");
  EXPECT_EQ(m["user"], "c1");
  EXPECT_EQ(m["text"], "hello there");
  EXPECT_EQ(m["seq"], 1);
  // ... and the members of one format share one buffer: made once per format, never per member.
  EXPECT_EQ(a1->transport.sent.back().get(), a2->transport.sent.back().get());
  EXPECT_EQ(n1->transport.sent.back().get(), n2->transport.sent.back().get());
  EXPECT_EQ(c1.transport.sent.back().get(), c2.transport.sent.back().get());
  EXPECT_EQ(s.stats.deliveries - deliveries, 6u);

  // The other way round: an article client's message reaches the colon members as "user: text".
  a2->say(R"({"user":"kim","text":"hi"})");
  EXPECT_EQ(c2.last(), "kim: hi\n");
  EXPECT_EQ(a1->last(), "[kim] hi\n");
  EXPECT_EQ(Json::parse(n2->last())["seq"], 2);
  // Presence is a format's choice: the natives saw the colon members come, the others nothing.
  bool saw_c1 = false;
  for (auto& j : n1->of_type("join")) saw_c1 = saw_c1 || j["user"] == "c1";
  EXPECT_TRUE(saw_c1);
  EXPECT_EQ(c1.transport.sent.size(), 2u);  // its own message and kim's
  // The stats line names the formats by their registered names.
  EXPECT_NE(s.stats.to_string().find("colon=2"), std::string::npos) << s.stats.to_string();
}

// ---- Order and numbering ----------------------------------------------------------------------

TEST(ChatCoreOrder, EveryMemberSeesARoomsMessagesInOneOrderNumberedFromOne) {
  OneShard s;
  auto a = native(s.shard, "a"), b = native(s.shard, "b");
  for (auto* c : {a.get(), b.get()}) {
    c->say(request({{"type", "join"}, {"room", "r"}}));
    c->say(request({{"type", "join"}, {"room", "q"}}));
  }
  // Interleaved senders, and a second room numbered on its own.
  for (int i = 0; i < 5; ++i) {
    a->say(request({{"type", "message"}, {"room", "r"}, {"text", "a" + std::to_string(i)}}));
    b->say(request({{"type", "message"}, {"room", "r"}, {"text", "b" + std::to_string(i)}}));
    b->say(request({{"type", "message"}, {"room", "q"}, {"text", "q" + std::to_string(i)}}));
  }
  for (auto* c : {a.get(), b.get()}) {
    std::vector<std::string> r_texts;
    uint64_t r_seq = 0, q_seq = 0;
    for (auto& m : c->of_type("message")) {
      uint64_t seq = m["seq"];
      if (m["room"] == "r") {
        EXPECT_EQ(seq, ++r_seq);
        r_texts.push_back(m["text"]);
      } else {
        EXPECT_EQ(seq, ++q_seq);
        EXPECT_EQ(m["text"], "q" + std::to_string(q_seq - 1));
      }
    }
    EXPECT_EQ(r_seq, 10u);
    EXPECT_EQ(q_seq, 5u);
    ASSERT_EQ(r_texts.size(), 10u);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(r_texts[2 * i], "a" + std::to_string(i));
      EXPECT_EQ(r_texts[2 * i + 1], "b" + std::to_string(i));
    }
  }
}

// ---- Presence ---------------------------------------------------------------------------------

TEST(ChatCorePresence, NamedMembersAreAnnouncedWhileTheRoomIsWithinThePresenceLimit) {
  OneShard s({}, /*presence_max=*/3);
  auto n1 = native(s.shard, "n1");
  n1->say(request({{"type", "join"}, {"room", "r"}}));
  auto n2 = native(s.shard, "n2");
  n2->say(request({{"type", "join"}, {"room", "r"}}));
  ASSERT_EQ(n1->of_type("join").size(), 1u);
  EXPECT_EQ(n1->of_type("join")[0]["user"], "n2");
  EXPECT_TRUE(n2->of_type("join").empty()) << "a member is not told of its own arrival";
  Json joined = n2->of_type("joined").at(0);
  EXPECT_EQ(joined["count"], 2);
  EXPECT_EQ(joined["members"], Json::array({"n1", "n2"}));

  // Anonymous members (the article's dialect) are never announced, whatever the size.
  auto a = article(s.shard);
  auto n3 = native(s.shard, "n3");
  n3->say(request({{"type", "join"}, {"room", "lobby"}}));
  auto a2 = article(s.shard);
  EXPECT_TRUE(n3->of_type("join").empty());

  // Past the limit: no presence, and "joined" says how many without the names.
  n3->say(request({{"type", "join"}, {"room", "r"}}));
  auto n4 = native(s.shard, "n4");
  n4->say(request({{"type", "join"}, {"room", "r"}}));
  EXPECT_EQ(n1->of_type("join").size(), 2u) << "n3 (the third) announced, n4 (the fourth) not";
  Json big = n4->of_type("joined").at(0);
  EXPECT_EQ(big["count"], 4);
  EXPECT_FALSE(big.contains("members"));
  // Back within the limit, a leave is announced again.
  n4->say(request({{"type", "leave"}, {"room", "r"}}));
  EXPECT_EQ(n4->of_type("left").size(), 1u);
  n3->say(request({{"type", "leave"}, {"room", "r"}}));
  ASSERT_FALSE(n1->of_type("leave").empty());
  EXPECT_EQ(n1->of_type("leave").back()["user"], "n3");
}

// ---- Names -------------------------------------------------------------------------------------

// One namespace whatever the case (CASEMAPPING=ascii): "bob" cannot connect while "Bob" is, and an
// article-dialect message signed "BOB" is marked as not Bob's.
TEST(ChatCoreNames, NamesAreOneNamespaceWhateverTheirCase) {
  OneShard s;
  auto bob = native(s.shard, "Bob");
  bob->say(request({{"type", "join"}, {"room", "lobby"}}));
  auto other = std::make_unique<Client>(s.shard, std::make_unique<chat::ArticleCodec>(s.shard.limits.max_frame));
  other->say(R"({"type":"hello","user":"bob"})" "\n");
  EXPECT_EQ(other->json().back()["code"], "name_taken") << other->last();
  other->say(R"({"type":"hello","user":"BOB"})" "\n");
  EXPECT_EQ(other->json().back()["code"], "name_taken") << other->last();
  auto anon = article(s.shard);
  anon->say(R"({"user":"BOB","text":"it is me"})");
  Json m = Json::parse(bob->last());
  EXPECT_EQ(m["user"], "BOB (article)");
  // Given back at the close, in any case.
  bob->leave();
  auto again = native(s.shard, "bOb");
  EXPECT_EQ(again->json().at(0)["user"], "bOb");
}

// ---- Asking another shard and gathering from every shard (ShardTable::ask, gather) ------------

// The answer comes back to the asking shard, after what the owner posted there before it; a gather
// hears every shard once and ends once.
TEST(ChatCoreAnswers, AnOwnersAnswerComesHomeAfterWhatItSentBeforeAndAGatherEndsOnce) {
  TwoShards s;
  std::vector<std::string> seen;  // on shard 0 only
  std::thread::id home = std::this_thread::get_id(), owner;
  s.table.ask(
      1, 0,
      [&](chat::Hub& hub) {
        owner = std::this_thread::get_id();
        EXPECT_EQ(hub.shard(), 1u);
        s.table.run_on(0, 1, [&] { seen.push_back("event"); });
        return std::string("answer");
      },
      [&](const std::string& answer) {
        EXPECT_EQ(std::this_thread::get_id(), home);
        seen.push_back(answer);
      });
  ASSERT_TRUE(s.run_until([&] { return seen.size() == 2; }));
  EXPECT_NE(owner, home);
  EXPECT_EQ(seen, (std::vector<std::string>{"event", "answer"}));

  int ends = 0;
  std::vector<size_t> parts;
  s.table.gather_shards(
      0, [](size_t k, chat::Hub& hub) { return k * 10 + hub.shard(); }, std::vector<size_t>{},
      [](std::vector<size_t>& all, size_t, size_t part) { all.push_back(part); },
      [&](std::vector<size_t> all) {
        ++ends;
        parts = std::move(all);
      });
  ASSERT_TRUE(s.run_until([&] { return ends == 1; }));
  std::sort(parts.begin(), parts.end());
  EXPECT_EQ(parts, (std::vector<size_t>{0, 11}));
  bool none = false;
  s.table.gather(0, 0, [](size_t) { return size_t{0}; }, [](size_t, chat::Hub&) { return 0; }, 0,
                 [](int&, size_t, int) {}, [&](int) { none = true; });
  EXPECT_TRUE(none);  // nothing to ask: done at once
  for (int i = 0; i < 5; ++i) s.loop.run_once(1);
  EXPECT_EQ(ends, 1);
}

// A kept message becomes the event its room is sent (live, or replayed by a recovery) field by field.
TEST(ChatCoreFormats, AKeptMessageBecomesAMessageEvent) {
  chat::StoredMessage m{.seq = 7, .ts_ms = 1234, .user = "ann", .text = "hi", .id = "x1", .front = "irc", .automatic = true};
  chat::RoomEvent e = chat::message_event("r", m);
  EXPECT_EQ(e.kind, chat::EventKind::kMessage);
  EXPECT_EQ(e.room, "r");
  EXPECT_EQ(e.user, "ann");
  EXPECT_EQ(e.text, "hi");
  EXPECT_EQ(e.ts_ms, 1234);
  EXPECT_EQ(e.seq, 7u);
  EXPECT_EQ(e.id, "x1");
  EXPECT_EQ(e.front, "irc");
  EXPECT_TRUE(e.automatic);
  EXPECT_EQ(e.member, 0u);
  EXPECT_FALSE(e.quit);
}

}  // namespace
