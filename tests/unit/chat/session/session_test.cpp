// Session: its output limits (hard and soft, against the transport's queue), and answers that keep
// their order when a room's owner is another shard (a pong after every earlier answer; a peer that
// half-closes gets them all before the close).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../chat_test_util.h"
#include "chat/session/framing.h"

namespace {

using namespace chattest;

// ---- Output limits ----------------------------------------------------------------------------

TEST(ChatCoreLimits, AMemberWhoseQueueWouldPassTheHardLimitIsClosedAndTheRoomGoesOn) {
  chat::Limits limits;
  limits.output_hard = 8192;
  limits.output_soft = 8192;
  OneShard s(limits);
  auto slow = native(s.shard, "slow"), fast = native(s.shard, "fast"), pub = native(s.shard, "pub");
  for (auto* c : {slow.get(), fast.get(), pub.get()}) c->say(request({{"type", "join"}, {"room", "r"}}));
  std::string text(1000, 'x');
  for (int i = 0; i < 20; ++i) {
    pub->say(request({{"type", "message"}, {"room", "r"}, {"text", text}}));
    fast->transport.drain();
    pub->transport.drain();
  }
  ASSERT_TRUE(slow->transport.closed);
  EXPECT_EQ(slow->transport.closed->code, reactor::CloseCode::kSlowConsumer);
  EXPECT_NE(slow->transport.closed->text.find("output limit exceeded"), std::string::npos);
  EXPECT_LE(slow->transport.queued().footprint(), limits.output_hard) << "never queued past the limit";
  EXPECT_EQ(s.stats.slow_consumer_closes, 1u) << "counted once";
  EXPECT_EQ(fast->of_type("message").size(), 20u);
  EXPECT_FALSE(fast->transport.closed);
}

TEST(ChatCoreLimits, AMemberAboveTheSoftLimitLongerThanTheGraceIsClosed) {
  chat::Limits limits;
  limits.output_soft = 2000;
  limits.soft_grace = 100ms;
  OneShard s(limits);
  auto lagging = native(s.shard, "lagging"), pub = native(s.shard, "pub");
  for (auto* c : {lagging.get(), pub.get()}) c->say(request({{"type", "join"}, {"room", "r"}}));
  std::string text(1000, 'x');
  auto say = [&] {
    pub->say(request({{"type", "message"}, {"room", "r"}, {"text", text}}));
    pub->transport.drain();
  };
  for (int i = 0; i < 5; ++i) say();  // above the soft limit, within the grace
  EXPECT_FALSE(lagging->transport.closed);
  // Draining below the soft limit forgives it: the grace starts again.
  lagging->transport.drain();
  std::this_thread::sleep_for(limits.soft_grace * 2);  // the rule is about time passing
  for (int i = 0; i < 5; ++i) say();
  EXPECT_FALSE(lagging->transport.closed);
  std::this_thread::sleep_for(limits.soft_grace * 2);
  say();
  ASSERT_TRUE(lagging->transport.closed);
  EXPECT_EQ(lagging->transport.closed->code, reactor::CloseCode::kSlowConsumer);
  EXPECT_NE(lagging->transport.closed->text.find("over the soft output limit"), std::string::npos);
}

// ---- Answers across shards --------------------------------------------------------------------

TEST(ChatCoreAnswers, APongComesAfterEveryEarlierAnswerAlsoFromAnotherShard) {
  TwoShards s;
  std::string room = s.remote_room();
  auto c = native(s.shard, "c");
  // Pipelined: a join (answered by shard 1), a message (its copy comes back from shard 1), a ping.
  c->say(request({{"type", "join"}, {"room", room}}) + request({{"type", "message"}, {"room", room}, {"text", "t"}}) +
         request({{"type", "ping"}, {"id", 7}}) + request({{"type", "rooms"}}));
  // Nothing can have come back from shard 1 yet: the pong (and the reply after it) wait.
  for (auto& j : c->json()) EXPECT_NE(j["type"], "pong") << j.dump();
  ASSERT_TRUE(s.run_until([&] { return !c->of_type("rooms").empty(); }));
  std::vector<std::string> types;
  for (auto& j : c->json()) types.push_back(j["type"]);
  EXPECT_EQ(types, (std::vector<std::string>{"welcome", "joined", "message", "pong", "rooms"}));
  EXPECT_EQ(c->of_type("pong")[0]["id"], 7);
}

TEST(ChatCoreAnswers, AHalfClosedPeerGetsEveryAnswerFromAnotherShardBeforeTheClose) {
  TwoShards s;
  std::string room = s.remote_room();
  auto c = native(s.shard, "c");
  c->say(request({{"type", "join"}, {"room", room}}));
  c->session->peer_closed();
  EXPECT_FALSE(c->transport.closed) << "closed before shard 1 answered the join";
  ASSERT_TRUE(s.run_until([&] { return c->transport.closed.has_value(); }));
  EXPECT_EQ(c->transport.closed->code, reactor::CloseCode::kPeerClosed);
  EXPECT_EQ(c->of_type("joined").size(), 1u);
}

// Lines "ask ROOM" (the room's owner is asked how many members it has), "ping" (a pong after every
// earlier answer) and anything else (answered at once), in the native format.
class AskCodec final : public chat::Codec {
 public:
  AskCodec() : framer_(1024) {}
  const chat::Format& format() const override { return chat::native_format(); }
  void start(chat::Session&) override {}
  chat::FrameResult next_frame(std::string_view input) override { return framer_.next(input); }
  std::unique_ptr<Codec> on_frame(chat::Session& s, std::string_view frame) override {
    if (frame.starts_with("ask ")) {
      s.ask_room(std::string(frame.substr(4)), [](chat::Session& again, const chat::RoomSnapshot& snap) {
        again.reply(std::make_shared<const std::string>("members " + std::to_string(snap.count) + "\n"));
      });
    } else if (frame == "ping") {
      s.after_earlier_answers(std::make_shared<const std::string>("pong\n"));
    } else {
      s.reply(std::make_shared<const std::string>("now " + std::string(frame) + "\n"));
    }
    return nullptr;
  }
  void on_bad_frame(chat::Session&, const chat::FrameResult&, std::string_view) override {}
  reactor::SharedBytes joined(chat::Session&, const std::string&, const chat::JoinReply&, std::optional<bool>) override {
    return nullptr;
  }

 private:
  chat::LineFramer framer_;
};

// Session::ask_room: the answer comes from the room's owner on another shard, is sent as it comes,
// and a later pong waits for it (the session noted who answers); a reply after the pong waits
// behind the pong.
TEST(ChatCoreAnswers, AnAskedAnswerFromAnotherShardComesBeforeALaterPong) {
  TwoShards s;
  std::string room = s.remote_room();
  Client c(s.shard, std::make_unique<AskCodec>());
  c.say("ask " + room + "\nping\nafter\n");
  EXPECT_TRUE(c.transport.sent.empty()) << c.last();  // nothing can have come back from shard 1 yet
  ASSERT_TRUE(s.run_until([&] { return c.transport.sent.size() == 3; }));
  EXPECT_EQ(c.text(0), "members 0\n");
  EXPECT_EQ(c.text(1), "pong\n");
  EXPECT_EQ(c.text(2), "now after\n");
}

}  // namespace
