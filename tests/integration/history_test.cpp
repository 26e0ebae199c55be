// History over real sockets (docs/PROTOCOL.md, "History"): recovery after a reconnect under
// concurrent publishing, acknowledged messages surviving a kill -9, the dedupe window across a
// reconnect and a restart, and a store that fails. The chat core's unit spec (chat_core_test.cpp)
// holds the same rules without processes.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "chat_helpers.h"

namespace {

using namespace chattest;
using testproc::Server;
using namespace std::chrono_literals;

// A member that comes and goes: each time it connects (under a fresh name: the old one may not be
// given back yet) it joins with what it last saw, and it keeps every number it is sent.
struct Comer {
  std::string name;
  int visits = 0;
  std::unique_ptr<Native> conn;
  std::vector<uint64_t> seen;  // every seq it was sent, over all its connections
  std::vector<json> joins;     // every joined it got

  void connect(int port, const std::string& room, const std::string& epoch) {
    conn = std::make_unique<Native>(port, name + "-" + std::to_string(visits++));
    json join = {{"type", "join"}, {"room", room}};
    if (!seen.empty()) {
      join["since"] = seen.back();
      join["epoch"] = epoch;
    }
    conn->send(join.dump() + "\n");
    json joined = expect_type(*conn, "joined");
    joins.push_back(joined);
    if (seen.empty()) {  // first visit: everything after joined's number comes live
      seen.push_back(joined["seq"]);
    }
  }
  // Reads what has arrived (for at most `wait`).
  void read(std::chrono::milliseconds wait) {
    auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
      auto l = conn->line(5ms);
      if (!l) continue;
      json j = json::parse(*l, nullptr, false);
      if (j.value("type", "") == "message") seen.push_back(j["seq"]);
    }
  }
};

TEST(ChatHistory, MembersComingAndGoingWhileOthersPublishSeeEveryMessageOnceInOrder) {
  Server server(chat_args({"--threads", "2"}));
  const std::string room = "crowd";
  Native anchor(server.port, "anchor");
  json first = anchor.request({{"type", "join"}, {"room", room}});
  ASSERT_EQ(first["type"], "joined");
  std::string epoch = first["epoch"];

  constexpr int kMessages = 400;
  std::atomic<int> acked{0}, churn{0};
  std::thread publisher([&] {
    Native p(server.port, "publisher");
    p.request({{"type", "join"}, {"room", room}});
    for (int i = 1; i <= kMessages; ++i) {
      p.send(json{{"type", "message"}, {"room", room}, {"text", "m" + std::to_string(i)}, {"id", "p" + std::to_string(i)}}
                 .dump() + "\n");
      if (expect_type(p, "ack").value("type", "") != "ack") return;
      ++acked;
      // Paced by the comers: one message for every other step of theirs, so they come and go
      // all through the stream however fast either side runs.
      while (churn < i / 2) std::this_thread::sleep_for(100us);
    }
  });

  std::mt19937 random(42);
  std::vector<Comer> comers(6);
  for (size_t k = 0; k < comers.size(); ++k) {
    comers[k].name = "c" + std::to_string(k);
    comers[k].connect(server.port, room, epoch);
  }
  while (acked < kMessages) {
    Comer& c = comers[random() % comers.size()];
    if (c.conn && random() % 3 == 0) {
      c.conn.reset();  // gone, mid-stream
    } else if (!c.conn) {
      c.connect(server.port, room, epoch);
    } else {
      c.read(std::chrono::milliseconds(random() % 20));
    }
    ++churn;
  }
  publisher.join();
  ASSERT_EQ(acked, kMessages);
  // Everyone comes back (or stays) and reads to the end.
  for (Comer& c : comers) {
    if (!c.conn) c.connect(server.port, room, epoch);
    for (int i = 0; i < 200 && c.seen.back() < static_cast<uint64_t>(kMessages); ++i) c.read(50ms);
  }
  for (Comer& c : comers) {
    SCOPED_TRACE(c.name + " visits " + std::to_string(c.visits));
    for (size_t v = 1; v < c.joins.size(); ++v) {
      EXPECT_EQ(c.joins[v]["recovered"], true) << c.joins[v];
      EXPECT_EQ(c.joins[v]["epoch"], epoch);
    }
    // From its first joined's number on: every number once, in order.
    std::vector<uint64_t> expected;
    for (uint64_t s = c.seen.front(); s <= static_cast<uint64_t>(kMessages); ++s) expected.push_back(s);
    EXPECT_EQ(c.seen, expected);
    EXPECT_GT(c.visits, 1);
  }
}

}  // namespace
