// History as the room core keeps it through the Store interface (chat/core/store.h): numbering, ids
// and acks, recovery, scrollback, a failing store, a store on another thread (as SQLite's is), the
// dedupe window. The SQLite store itself is tested in chat/history/sqlite_store_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../chat_test_util.h"
#include "reactor/blocking_pool.h"

namespace {

using namespace chattest;

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

}  // namespace
