// The chat core's rules, stated against a fake transport: sessions and hubs without sockets or
// processes. A member is a Session over a FakeTransport that keeps every chunk it is given; the
// rules are those of docs/PROTOCOL.md (the integration tests hold the same rules over TCP).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "chat/core/event.h"
#include "chat/core/hub.h"
#include "chat/core/store.h"
#include "chat/frontends/tcp/article.h"
#include "chat/frontends/tcp/native.h"
#include "chat/ops/json.h"
#include "chat/session/session.h"
#include "reactor/blocking_pool.h"
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
  void redeliver_input() override { ++redelivered; }
  void close_soon(reactor::CloseCode code, std::string_view text) override { close(code, text); }
  void close_after_flush(reactor::CloseCode code, std::string_view text) override { close(code, text); }

  void drain() { queued_ = {}; }  // the peer read everything

  std::vector<reactor::SharedBytes> sent;
  std::optional<reactor::CloseReason> closed;
  bool paused = false;
  int redelivered = 0;

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

// ---- History: numbering, ids and acks, recovery, scrollback --------------------------------------

// A memory store whose every call runs on a pool thread, its completion posted back, as the SQLite
// store's are: answers from the store come later, from another thread.
class PooledStore final : public chat::Store {
 public:
  explicit PooledStore(chat::Retention retention = {}) : inner_(chat::make_memory_store(retention)) {}
  std::string epoch() const override { return inner_->epoch(); }
  std::vector<chat::StoredRoom> load() override { return {}; }
  void append(reactor::Reactor& r, const std::string& room, chat::StoredMessage m, AppendDone done) override {
    auto stored = std::make_shared<bool>(false);
    pool_.submit(
        r, [this, &r, room, m = std::move(m), stored]() mutable {
          // The memory store completes inside its calls and never touches the reactor.
          inner_->append(r, room, std::move(m), [&](bool ok) { *stored = ok && !failing; });
        },
        [done = std::move(done), stored] { done(*stored); });
  }
  void read(reactor::Reactor& r, const std::string& room, uint64_t after, uint64_t before, size_t limit, bool newest,
            ReadDone done) override {
    auto result = std::make_shared<chat::ReadResult>();
    pool_.submit(
        r, [=, this, &r] { inner_->read(r, room, after, before, limit, newest, [&](chat::ReadResult res) { *result = std::move(res); }); },
        [done = std::move(done), result] { done(std::move(*result)); });
  }
  void fence(reactor::Reactor& r, std::function<void()> done) override { pool_.submit(r, [] {}, std::move(done)); }
  bool asynchronous() const override { return true; }

  std::atomic<bool> failing{false};  // appends answer "not stored" (what was given is dropped)

 private:
  std::unique_ptr<chat::Store> inner_;
  reactor::BlockingPool pool_{1, "test-store"};
};

// A store that keeps nothing and says so (a full disk) while `failing`, else a memory store.
class FlakyStore final : public chat::Store {
 public:
  std::string epoch() const override { return inner_->epoch(); }
  std::vector<chat::StoredRoom> load() override { return {}; }
  void append(reactor::Reactor& r, const std::string& room, chat::StoredMessage m, AppendDone done) override {
    if (failing) return done(false);
    inner_->append(r, room, std::move(m), std::move(done));
  }
  void read(reactor::Reactor& r, const std::string& room, uint64_t after, uint64_t before, size_t limit, bool newest,
            ReadDone done) override {
    if (failing) return done(chat::ReadResult{});
    inner_->read(r, room, after, before, limit, newest, std::move(done));
  }
  void fence(reactor::Reactor&, std::function<void()> done) override { done(); }
  bool asynchronous() const override { return false; }
  bool failing = false;

 private:
  std::unique_ptr<chat::Store> inner_ = chat::make_memory_store({});
};

// One shard keeping history in `store`.
struct HistoryShard : OneShard {
  explicit HistoryShard(chat::Store& store, chat::Limits l = {}) : OneShard(l) { table.set_store(&store, {}, {}); }
};

std::vector<uint64_t> seqs_of(const Client& c, const std::string& room) {
  std::vector<uint64_t> out;
  for (auto& m : c.of_type("message")) {
    if (m["room"] == room) out.push_back(m["seq"]);
  }
  return out;
}

std::vector<uint64_t> range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (uint64_t i = from; i <= to; ++i) out.push_back(i);
  return out;
}

Json message(const std::string& room, const std::string& text, const std::string& id = "") {
  Json j = {{"type", "message"}, {"room", room}, {"text", text}};
  if (!id.empty()) j["id"] = id;
  return j;
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

TEST(ChatCoreHistory, APublishWithAnIdIsAckedOnceItsCopyIsOutAndARetryIsOnlyAckedAgain) {
  auto store = chat::make_memory_store({});
  HistoryShard s(*store);
  auto a = native(s.shard, "a"), b = native(s.shard, "b");
  a->say(request({{"type", "join"}, {"room", "r"}}));
  b->say(request({{"type", "join"}, {"room", "r"}}));
  a->say(request(message("r", "hello", "m-1")));
  std::vector<Json> out = a->json();
  ASSERT_GE(out.size(), 2u);
  Json copy = out[out.size() - 2], ack = out.back();
  EXPECT_EQ(copy["type"], "message");
  EXPECT_EQ(copy["id"], "m-1");
  EXPECT_EQ(ack, (Json{{"type", "ack"}, {"room", "r"}, {"id", "m-1"}, {"seq", copy["seq"]}}));
  EXPECT_EQ(b->of_type("message").back()["id"], "m-1");
  EXPECT_TRUE(b->of_type("ack").empty()) << "only the sender is acked";

  // The same (room, user, id) again, even from another connection of the same user: the same ack,
  // no second copy for anyone.
  size_t b_messages = b->of_type("message").size();
  a->say(request(message("r", "hello", "m-1")));
  a->leave();
  auto a2 = native(s.shard, "a");
  a2->say(request({{"type", "join"}, {"room", "r"}}));
  a2->say(request(message("r", "hello", "m-1")));
  EXPECT_EQ(a2->of_type("ack").at(0), ack);
  EXPECT_TRUE(a2->of_type("message").empty());
  EXPECT_EQ(b->of_type("message").size(), b_messages);
  // Another user's same id is another message; so is the same id in another room.
  b->say(request(message("r", "hello", "m-1")));
  EXPECT_EQ(b->of_type("ack").at(0)["seq"], copy["seq"].get<uint64_t>() + 1);
  // A message without an id is not acked; a bad id is refused.
  a2->say(request(message("r", "plain")));
  EXPECT_EQ(a2->of_type("ack").size(), 1u);
  for (Json bad : {Json(""), Json(std::string(65, 'x')), Json("has space"), Json(7), Json("caf\u00e9")}) {
    Json m = message("r", "t");
    m["id"] = bad;
    a2->say(request(m));
    EXPECT_EQ(a2->json().back()["code"], "bad_request") << bad;
  }
  EXPECT_EQ(s.stats.acks, 4u);
}

TEST(ChatCoreHistory, AMemberWhoComesBackIsReplayedWhatItMissedThenLiveWithNoGapOrDuplicate) {
  auto store = chat::make_memory_store({});
  HistoryShard s(*store);
  auto a = native(s.shard, "a");
  a->say(request({{"type", "join"}, {"room", "r"}}));
  Json first = a->of_type("joined").at(0);
  EXPECT_EQ(first["seq"], 0);
  std::string epoch = first["epoch"];
  EXPECT_EQ(epoch, store->epoch());
  for (int i = 1; i <= 5; ++i) a->say(request(message("r", "m" + std::to_string(i))));
  {
    auto b = native(s.shard, "b");
    b->say(request({{"type", "join"}, {"room", "r"}}));
    EXPECT_EQ(b->of_type("joined").at(0)["seq"], 5);
    a->say(request(message("r", "m6")));
    EXPECT_EQ(seqs_of(*b, "r"), std::vector<uint64_t>{6});
  }  // b goes away having seen 6
  for (int i = 7; i <= 9; ++i) a->say(request(message("r", "m" + std::to_string(i), "id" + std::to_string(i))));
  auto b = native(s.shard, "b");
  b->say(request({{"type", "join"}, {"room", "r"}, {"since", 6}, {"epoch", epoch}}));
  a->say(request(message("r", "m10")));
  std::vector<Json> out = b->json();
  ASSERT_GE(out.size(), 6u);
  EXPECT_EQ(out[1]["type"], "joined");
  EXPECT_EQ(out[1]["recovered"], true);
  EXPECT_EQ(out[1]["seq"], 9);
  EXPECT_EQ(seqs_of(*b, "r"), range(7, 10));
  EXPECT_EQ(out[2]["text"], "m7");
  EXPECT_EQ(out[2]["id"], "id7");
  EXPECT_EQ(s.stats.replayed, 3u);
  EXPECT_EQ(s.stats.recoveries, 1u);

  // Nothing missed: recovered, nothing replayed.
  auto c = native(s.shard, "c");
  c->say(request({{"type", "join"}, {"room", "r"}, {"since", 10}, {"epoch", epoch}}));
  EXPECT_EQ(c->of_type("joined").at(0)["recovered"], true);
  EXPECT_TRUE(c->of_type("message").empty());
}

TEST(ChatCoreHistory, RecoveryIsAllOrNothingAndSaysSo) {
  auto store = chat::make_memory_store(chat::Retention{.max_messages = 3});
  chat::Limits limits;
  limits.replay_limit = 4;
  HistoryShard s(*store, limits);
  auto a = native(s.shard, "a");
  a->say(request({{"type", "join"}, {"room", "r"}}));
  std::string epoch = a->of_type("joined").at(0)["epoch"];
  for (int i = 1; i <= 10; ++i) a->say(request(message("r", "m" + std::to_string(i))));
  auto joined_since = [&](Json since, Json ep) {
    auto c = native(s.shard, "c");
    c->say(request({{"type", "join"}, {"room", "r"}, {"since", since}, {"epoch", ep}}));
    a->say(request(message("r", "live")));
    Json joined = c->of_type("joined").at(0);
    std::vector<uint64_t> seqs = seqs_of(*c, "r");
    // Whatever the answer, what follows is live and has no gap from joined's seq on.
    EXPECT_EQ(seqs.back(), joined["seq"].get<uint64_t>() + 1) << joined;
    return std::make_pair(joined, seqs);
  };
  // Another epoch: the numbers mean nothing; nothing is replayed.
  auto [other, other_seqs] = joined_since(3, "another-epoch");
  EXPECT_EQ(other["recovered"], false);
  EXPECT_EQ(other["seq"], 10);
  EXPECT_EQ(other_seqs, std::vector<uint64_t>{11});
  // Within the limit: recovered.
  auto [near, near_seqs] = joined_since(8, epoch);
  EXPECT_EQ(near["recovered"], true);
  EXPECT_EQ(near_seqs, range(9, 12));
  // Past the replay limit (4): not recovered, nothing replayed.
  auto [far, far_seqs] = joined_since(5, epoch);
  EXPECT_EQ(far["recovered"], false);
  EXPECT_EQ(far_seqs, std::vector<uint64_t>{13});
  // Older than retention (the store keeps 3: 11..13 now): 10 to 13 is within the limit, but 10
  // was forgotten.
  auto [old, old_seqs] = joined_since(9, epoch);
  EXPECT_EQ(old["recovered"], false);
  EXPECT_EQ(old_seqs, std::vector<uint64_t>{14});
  // A number from the future of this epoch: not recovered.
  auto [ahead, ahead_seqs] = joined_since(1000, epoch);
  EXPECT_EQ(ahead["recovered"], false);
  EXPECT_GE(s.stats.recoveries_failed, 4u);
  // since and epoch go together; since is a count.
  auto d = native(s.shard, "d");
  for (Json bad : {Json{{"type", "join"}, {"room", "r"}, {"since", 1}},
                   Json{{"type", "join"}, {"room", "r"}, {"epoch", epoch}},
                   Json{{"type", "join"}, {"room", "r"}, {"since", -1}, {"epoch", epoch}},
                   Json{{"type", "join"}, {"room", "r"}, {"since", "1"}, {"epoch", epoch}},
                   Json{{"type", "join"}, {"room", "r"}, {"since", 1}, {"epoch", 5}}}) {
    d->say(request(bad));
    EXPECT_EQ(d->json().back()["code"], "bad_request") << bad;
  }
  EXPECT_TRUE(d->of_type("joined").empty());
}

TEST(ChatCoreHistory, HistoryGivesTheNewestBeforeANumberOldestFirst) {
  auto store = chat::make_memory_store({});
  HistoryShard s(*store);
  auto a = native(s.shard, "a");
  a->say(request({{"type", "history"}, {"room", "r"}}));
  EXPECT_EQ(a->json().back()["code"], "not_member");
  a->say(request({{"type", "join"}, {"room", "r"}}));
  for (int i = 1; i <= 30; ++i) a->say(request(message("r", "m" + std::to_string(i), i == 20 ? "x20" : "")));
  a->say(request({{"type", "history"}, {"room", "r"}, {"before", 21}, {"limit", 5}}));
  Json h = a->json().back();
  EXPECT_EQ(h["type"], "history");
  EXPECT_EQ(h["epoch"], store->epoch());
  ASSERT_EQ(h["messages"].size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(h["messages"][i]["seq"], 16 + i);
    EXPECT_EQ(h["messages"][i]["text"], "m" + std::to_string(16 + i));
    EXPECT_EQ(h["messages"][i]["type"], "message");
  }
  EXPECT_EQ(h["messages"][4]["id"], "x20");
  a->say(request({{"type", "history"}, {"room", "r"}}));  // the newest 50 (all 30)
  EXPECT_EQ(a->json().back()["messages"].size(), 30u);
  for (Json bad : {Json{{"type", "history"}, {"room", "r"}, {"limit", 0}},
                   Json{{"type", "history"}, {"room", "r"}, {"limit", 101}},
                   Json{{"type", "history"}, {"room", "r"}, {"before", "x"}}, Json{{"type", "history"}}}) {
    a->say(request(bad));
    EXPECT_EQ(a->json().back()["code"], "bad_request") << bad;
  }
  EXPECT_EQ(s.stats.history_reads, 2u);
}

TEST(ChatCoreHistory, WhenTheStoreFailsLiveChatGoesOnAndNothingUnstoredIsAcked) {
  FlakyStore store;
  HistoryShard s(store);
  auto a = native(s.shard, "a"), b = native(s.shard, "b");
  a->say(request({{"type", "join"}, {"room", "r"}}));
  b->say(request({{"type", "join"}, {"room", "r"}}));
  store.failing = true;
  a->say(request(message("r", "lost?", "k1")));
  Json refused = a->json().back();
  EXPECT_EQ(refused["type"], "error");
  EXPECT_EQ(refused["code"], "not_stored");
  EXPECT_EQ(refused["id"], "k1");
  EXPECT_EQ(refused["room"], "r");
  EXPECT_EQ(b->of_type("message").back()["text"], "lost?") << "live chat goes on";
  EXPECT_TRUE(a->of_type("ack").empty());
  EXPECT_EQ(s.stats.not_stored, 1u);
  a->say(request({{"type", "history"}, {"room", "r"}}));
  EXPECT_EQ(a->json().back()["code"], "unavailable");
  // The store is back: the retry is stored (and acked) rather than taken for a duplicate.
  store.failing = false;
  a->say(request(message("r", "lost?", "k1")));
  EXPECT_EQ(a->json().back()["type"], "ack");
  EXPECT_EQ(a->json().back()["seq"], 2);
  // A recovery across the hole the failure left is not "recovered".
  std::string epoch = a->of_type("joined").at(0)["epoch"];
  auto c = native(s.shard, "c");
  c->say(request({{"type", "join"}, {"room", "r"}, {"since", 0}, {"epoch", epoch}}));
  EXPECT_EQ(c->of_type("joined").at(0)["recovered"], false);
}

// With the store on another thread (as SQLite's is): the ack comes after the copy, a pong after
// both, and a member recovering while another shard keeps publishing misses nothing and gets nothing
// twice, whenever it joins.
TEST(ChatCoreHistory, WithAStoreOnAnotherThreadAnswersKeepTheirOrderAndRecoveryHasNoGap) {
  TwoShards s;
  PooledStore store;
  s.table.set_store(&store, {}, {});
  std::string room = s.remote_room();
  auto a = native(s.shard, "a");
  a->say(request({{"type", "join"}, {"room", room}}) + request(message(room, "one", "i1")) +
         request({{"type", "ping"}}));
  ASSERT_TRUE(s.run_until([&] { return !a->of_type("pong").empty(); }));
  std::vector<std::string> types;
  for (auto& j : a->json()) types.push_back(j["type"]);
  EXPECT_EQ(types, (std::vector<std::string>{"welcome", "joined", "message", "ack", "pong"}));
  std::string epoch = a->of_type("joined").at(0)["epoch"];

  // b comes and goes while a publishes; each time it comes back it asks for what it missed.
  std::mt19937 random(11);
  uint64_t sent = 1, seen = 1;  // b has "seen" 1 (as if it had been there)
  for (int round = 0; round < 20; ++round) {
    auto b = native(s.shard, "b" + std::to_string(round));
    int before = static_cast<int>(random() % 4), during = static_cast<int>(random() % 6);
    for (int i = 0; i < before; ++i, ++sent) a->say(request(message(room, "m" + std::to_string(sent + 1))));
    b->say(request({{"type", "join"}, {"room", room}, {"since", seen}, {"epoch", epoch}}));
    for (int i = 0; i < during; ++i, ++sent) a->say(request(message(room, "m" + std::to_string(sent + 1))));
    b->say(request({{"type", "ping"}}));
    a->say(request({{"type", "ping"}}));
    ASSERT_TRUE(s.run_until([&] { return !b->of_type("pong").empty() && a->of_type("pong").size() == size_t(round) + 2; }));
    Json joined = b->of_type("joined").at(0);
    EXPECT_EQ(joined["recovered"], true) << joined;
    EXPECT_EQ(seqs_of(*b, room), range(seen + 1, sent)) << "round " << round << " joined " << joined;
    seen = sent;
  }
}

// A plain join while messages are on their way into the store: joined's number is the last one
// delivered, so every message after joined is numbered above it (none "from the past").
TEST(ChatCoreHistory, AJoinWhileMessagesAreOnTheirWayIntoTheStoreGetsOnlyHigherNumbersAfterJoined) {
  TwoShards s;
  PooledStore store;
  s.table.set_store(&store, {}, {});
  for (std::string room : {s.remote_room(), std::string("local")}) {
    if (room == "local") {
      for (int i = 0; s.table.owner_of(room) != 0; ++i) room = "local" + std::to_string(i);
    }
    auto a = native(s.shard, "a" + room), b = native(s.shard, "b" + room);
    a->say(request({{"type", "join"}, {"room", room}}));
    std::string burst;
    for (int i = 0; i < 50; ++i) burst += request(message(room, "m" + std::to_string(i)));
    a->say(burst);  // numbered at once; delivered as the store's thread keeps them
    b->say(request({{"type", "join"}, {"room", room}}) + request({{"type", "ping"}}));
    a->say(request({{"type", "ping"}}));
    ASSERT_TRUE(s.run_until([&] { return !b->of_type("pong").empty() && !a->of_type("pong").empty(); }));
    std::vector<Json> out = b->json();
    uint64_t joined_seq = 0;
    bool after_joined = false;
    for (auto& j : out) {
      if (j["type"] == "joined") {
        joined_seq = j["seq"];
        after_joined = true;
      } else if (j["type"] == "message" && after_joined) {
        EXPECT_GT(j["seq"].get<uint64_t>(), joined_seq) << room << ": a message from before joined's number came after it";
      }
    }
    EXPECT_TRUE(after_joined);
  }
}

// The dedupe window remembers the last ids or the young ones, but never more than its bound: a
// room flooded with ids keeps its newest dedupe_max_ids (memory stays bounded whatever the rate).
TEST(ChatCoreHistory, TheDedupeWindowIsBoundedWhateverTheRate) {
  chat::Retention r;
  r.dedupe_ids = 2;
  r.dedupe_ms = 3'600'000;
  r.dedupe_max_ids = 4;
  chat::IdWindow window;
  for (uint64_t i = 1; i <= 9; ++i) window.add("u", "k" + std::to_string(i), {.seq = i, .ts_ms = 1000, .stored = true}, r);
  EXPECT_EQ(window.size(), 4u);
  EXPECT_EQ(window.find("u", "k5"), nullptr);
  ASSERT_NE(window.find("u", "k6"), nullptr);
  EXPECT_EQ(window.find("u", "k6")->seq, 6u);
  // Old ones past the count go at once; young ones within the bound stay.
  chat::IdWindow aging;
  for (uint64_t i = 1; i <= 3; ++i) aging.add("u", "a" + std::to_string(i), {.seq = i, .ts_ms = 0, .stored = true}, r);
  aging.add("u", "b", {.seq = 4, .ts_ms = 4'000'000, .stored = true}, r);
  EXPECT_EQ(aging.size(), 2u);
  EXPECT_NE(aging.find("u", "a3"), nullptr);
  EXPECT_NE(aging.find("u", "b"), nullptr);
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

}  // namespace
