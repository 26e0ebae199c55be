// Session: its output limits (hard and soft, against the transport's queue), and answers that keep
// their order when a room's owner is another shard (a pong after every earlier answer; a peer that
// half-closes gets them all before the close).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../chat_test_util.h"

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

}  // namespace
