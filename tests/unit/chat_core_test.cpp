// The chat core's rules, stated against a fake transport: sessions and hubs without sockets or
// processes. A member is a Session over a FakeTransport that keeps every chunk it is given; the
// rules are those of docs/PROTOCOL.md (the integration tests hold the same rules over TCP).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "chat/codecs/article.h"
#include "chat/codecs/native.h"
#include "chat/event.h"
#include "chat/hub.h"
#include "chat/json.h"
#include "chat/session.h"
#include "reactor/reactor.h"
#include "reactor/reactor_pool.h"

namespace {

using chat::Json;
using namespace std::chrono_literals;

// A transport that keeps what it is given. What it has queued stays queued until drain(), as if
// the peer never read; close_* record the reason.
class FakeTransport final : public chat::Transport {
 public:
  bool open() const override { return !closed; }
  reactor::SendResult send(const reactor::SharedBytes& bytes) override {
    if (closed) return reactor::SendResult::kClosed;
    sent.push_back(bytes);
    queued_.bytes += bytes->size();
    ++queued_.chunks;
    return reactor::SendResult::kQueued;
  }
  chat::QueuedOutput queued() const override { return queued_; }
  void pause_reading() override { paused = true; }
  void resume_reading() override { paused = false; }
  void close_soon(reactor::CloseCode code, std::string_view text) override { close(code, text); }
  void close_after_flush(reactor::CloseCode code, std::string_view text) override { close(code, text); }

  void drain() { queued_ = {}; }  // the peer read everything

  std::vector<reactor::SharedBytes> sent;
  std::optional<reactor::CloseReason> closed;
  bool paused = false;

 private:
  void close(reactor::CloseCode code, std::string_view text) {
    if (!closed) closed = reactor::CloseReason{code, std::string(text)};
  }
  chat::QueuedOutput queued_;
};

uint64_t next_id() {
  static uint64_t id = 1000;
  return ++id;
}

// One connection: a session over a fake transport, and the bytes it has been sent.
struct Client {
  FakeTransport transport;
  std::shared_ptr<chat::Session> session;
  reactor::Buffer input;

  Client(chat::SessionContext& shard, std::unique_ptr<chat::Codec> codec) {
    session = std::make_shared<chat::Session>(shard, transport, next_id(), std::move(codec));
    session->start();
  }
  ~Client() { leave(); }
  void leave() {
    if (session) session->closed();
    session.reset();
  }

  void say(std::string_view bytes) {
    input.append(bytes);
    session->input(input);
  }
  std::string text(size_t i) const { return *transport.sent.at(i); }
  std::string last() const { return transport.sent.empty() ? "" : *transport.sent.back(); }
  // Every chunk sent, parsed (each is one JSON line in the native dialect).
  std::vector<Json> json() const {
    std::vector<Json> out;
    for (const auto& b : transport.sent) out.push_back(Json::parse(*b));
    return out;
  }
  // The chunks whose "type" is `type`.
  std::vector<Json> of_type(const std::string& type) const {
    std::vector<Json> out;
    for (auto& j : json()) {
      if (j["type"] == type) out.push_back(j);
    }
    return out;
  }
};

// A connection of the TCP port that greets as `name`: the article's codec hands it to the native
// one, as over TCP.
std::unique_ptr<Client> native(chat::SessionContext& shard, const std::string& name) {
  auto c = std::make_unique<Client>(shard, std::make_unique<chat::ArticleCodec>(shard.limits.max_frame));
  c->say(R"({"type":"hello","user":")" + name + "\"}\n");
  EXPECT_EQ(c->json().at(0)["type"], "welcome") << c->last();
  EXPECT_EQ(c->session->format(), chat::native_format().id());
  return c;
}

std::unique_ptr<Client> article(chat::SessionContext& shard) {
  return std::make_unique<Client>(shard, std::make_unique<chat::ArticleCodec>(shard.limits.max_frame));
}

std::string request(const Json& j) { return j.dump() + "\n"; }

// One shard on the test's thread.
struct OneShard {
  explicit OneShard(chat::Limits l = {}, size_t presence_max = 100) : limits(l), table(1, presence_max) {
    limits.presence_max_members = presence_max;
    table.attach(0, loop, hub);
  }
  reactor::Reactor loop;
  chat::Limits limits;
  chat::ShardTable table;
  chat::Stats stats;
  chat::Hub hub{table, 0};
  chat::SessionContext shard{hub, stats, limits,
                             chat::OutputLimit(limits.output_hard, limits.output_soft, limits.soft_grace)};
};

// ---- A third wire format, added without touching the hub or the session -----------------------

// "user: text" lines; no presence.
class ColonFormat final : public chat::Format {
 public:
  ColonFormat() : Format("colon") {}
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
    ASSERT_TRUE(s.table().claim_name(name_, s.id()));
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
  reactor::SharedBytes joined(const std::string&, const chat::JoinReply&, std::optional<bool>) override {
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

// Two shards: shard 0 on the test's thread, shard 1 on a pool thread. Rooms owned by shard 1 are
// answered from there.
struct TwoShards {
  TwoShards()
      : table(2, 100),
        pool(1, "", [this](reactor::Reactor& r, size_t) {
          remote_hub = std::make_unique<chat::Hub>(table, 1);
          table.attach(1, r, *remote_hub);
        }, [this](reactor::Reactor&, size_t) { remote_hub.reset(); }) {
    table.attach(0, loop, hub);
  }
  ~TwoShards() {
    pool.stop();
    pool.join();
  }
  // A room whose owner is shard 1.
  std::string remote_room() const {
    for (int i = 0;; ++i) {
      std::string r = "room" + std::to_string(i);
      if (table.owner_of(r) == 1) return r;
    }
  }
  // Runs shard 0's loop until `done` or 5 s.
  bool run_until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      loop.run_once(10);
    }
    return true;
  }

  reactor::Reactor loop;
  chat::Limits limits;
  chat::ShardTable table;
  chat::Stats stats;
  chat::Hub hub{table, 0};
  std::unique_ptr<chat::Hub> remote_hub;
  reactor::ReactorPool pool;
  chat::SessionContext shard{hub, stats, limits,
                             chat::OutputLimit(limits.output_hard, limits.output_soft, limits.soft_grace)};
};

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
