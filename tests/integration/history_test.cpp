// History over real sockets (docs/PROTOCOL.md, "History"): recovery after a reconnect under
// concurrent publishing, acknowledged messages surviving a kill -9, the dedupe window across a
// reconnect and a restart, and a store that fails. The chat core's unit spec (chat_core_test.cpp)
// holds the same rules without processes.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "chat_helpers.h"

namespace {

using namespace chattest;
using testproc::Process;
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

// A data directory of a test's own, removed at its end.
struct DataDir {
  DataDir() {
    char tmpl[] = "/tmp/chat-history-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~DataDir() { std::filesystem::remove_all(path); }
  std::string path;
};

// The server's arguments for a store: "memory", or "sqlite" in `dir`.
std::vector<std::string> store_args(const std::string& store, const DataDir& dir,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--store", store};
  if (store == "sqlite") args.insert(args.end(), {"--data-dir", dir.path});
  args.insert(args.end(), extra.begin(), extra.end());
  return chat_args(args);
}

class ChatHistoryStores : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Stores, ChatHistoryStores, ::testing::Values("memory", "sqlite"));

TEST_P(ChatHistoryStores, MembersComingAndGoingWhileOthersPublishSeeEveryMessageOnceInOrder) {
  DataDir dir;
  Server server(store_args(GetParam(), dir, {"--threads", "2"}));
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

// A message id is the sender's promise that a message sent again is the same message: a retry gets
// the first answer, but another text under a used id is a client bug, refused with an error that
// names the id (nothing numbered, stored or delivered). The SQLite store remembers it across a restart.
TEST_P(ChatHistoryStores, AnIdGivenToAnotherMessageIsRefusedNamingTheId) {
  DataDir dir;
  auto send = [](Native& m, const std::string& text, const std::string& id) {
    m.send(json{{"type", "message"}, {"room", "ids"}, {"text", text}, {"id", id}}.dump() + "\n");
  };
  auto refused = [&](Native& m, const std::string& text, const std::string& id) {
    send(m, text, id);
    std::vector<json> before;
    json e = expect_type(m, "error", &before);
    for (const json& j : before) EXPECT_NE(j.value("type", ""), "message") << "delivered: " << j;
    EXPECT_EQ(e.value("code", ""), "id_reused") << e;
    EXPECT_EQ(e.value("id", ""), id) << e;
    EXPECT_EQ(e.value("room", ""), "ids") << e;
    EXPECT_NE(e.value("message", "").find("'" + id + "'"), std::string::npos) << e;
  };
  uint64_t seq = 0;
  {
    Server server(store_args(GetParam(), dir));
    Native ann(server.port, "ann"), bob(server.port, "bob");
    ASSERT_EQ(ann.request({{"type", "join"}, {"room", "ids"}})["type"], "joined");
    ASSERT_EQ(bob.request({{"type", "join"}, {"room", "ids"}})["type"], "joined");
    send(ann, "hello", "k0");
    json ack = expect_type(ann, "ack");
    seq = ack.value("seq", uint64_t{0});
    ASSERT_GT(seq, 0u) << ack;
    EXPECT_EQ(expect_type(bob, "message")["text"], "hello");
    send(ann, "hello", "k0");  // a retry: the same answer
    EXPECT_EQ(expect_type(ann, "ack"), ack);
    refused(ann, "DIFFERENT", "k0");
    // Another sender may use the same id: ids are the sender's own.
    send(bob, "mine", "k0");
    std::vector<json> before_ack;
    EXPECT_EQ(expect_type(bob, "ack", &before_ack).value("seq", uint64_t{0}), seq + 1);
    ASSERT_EQ(before_ack.size(), 1u);
    EXPECT_EQ(before_ack[0].value("text", ""), "mine") << "bob's own copy, and nothing else: " << before_ack[0];
    // The next message ann gets is bob's: DIFFERENT was delivered to no one (bob's own copy came
    // before his ack).
    EXPECT_EQ(expect_type(ann, "message")["text"], "mine");
  }
  if (GetParam() != "sqlite") return;
  Server again(store_args("sqlite", dir));
  Native ann(again.port, "ann");
  ASSERT_EQ(ann.request({{"type", "join"}, {"room", "ids"}})["type"], "joined");
  refused(ann, "DIFFERENT", "k0");
  send(ann, "hello", "k0");
  EXPECT_EQ(expect_type(ann, "ack").value("seq", uint64_t{0}), seq) << "a retry after the restart: the first answer";
}

// History costs by what it returns: one answer carries at most --history-reply-bytes (the newest
// messages that fit, "more": true), a connection is answered --history-burst bytes and then
// rate_limited, and its address four times as much: reconnecting does not start afresh.
TEST(ChatHistory, AnswersAreCappedInBytesAndBudgetedPerConnectionAndPerAddress) {
  Server server(chat_args({"--history-rate", "1000", "--history-burst", "1000000", "--max-connections-per-address", "100"}));
  const std::string big(60000, 'x');
  {
    Native writer(server.port, "writer");
    ASSERT_EQ(writer.request({{"type", "join"}, {"room", "hist"}})["type"], "joined");
    std::string all;
    for (int i = 1; i <= 100; ++i) {
      all += json{{"type", "message"}, {"room", "hist"}, {"text", std::to_string(i) + big}, {"id", "h" + std::to_string(i)}}.dump() + "\n";
    }
    writer.send(all);
    for (int acked = 0; acked < 100;) {
      json j = next_json(writer);
      ASSERT_NE(j["type"], "<nothing>");
      if (j["type"] == "ack") ++acked;
    }
  }
  // Each connection asks back to back until refused: how many answers it got.
  auto answered_until_refused = [&](const std::string& name, json* first) {
    Native m(server.port, name);
    EXPECT_EQ(m.request({{"type", "join"}, {"room", "hist"}})["type"], "joined");
    for (int n = 0; n < 100; ++n) {
      m.send(json{{"type", "history"}, {"room", "hist"}, {"limit", 100}}.dump() + "\n");
      json j;
      do j = next_json(m); while (j["type"] != "history" && j["type"] != "error" && j["type"] != "<nothing>");
      if (j["type"] != "history") {
        EXPECT_EQ(j.value("code", ""), "rate_limited") << j;
        EXPECT_EQ(j.value("room", ""), "hist") << j;
        return n;
      }
      if (n == 0 && first) *first = j;
    }
    return 100;
  };
  json first;
  // 1,000,000 bytes for the connection: four answers of about 240 KB, the fifth into debt, then refused.
  EXPECT_EQ(answered_until_refused("r1", &first), 5);
  std::vector<json> got = first["messages"].get<std::vector<json>>();
  ASSERT_EQ(got.size(), 4u) << "four of 60 KB fit in 256 KiB";
  EXPECT_EQ(got.front().value("seq", 0), 97);
  EXPECT_EQ(got.back().value("seq", 0), 100) << "the newest";
  EXPECT_EQ(first.value("more", false), true) << "cut: more exist";
  // The address has 4,000,000: two more connections each get their five, the fourth two, the fifth none.
  EXPECT_EQ(answered_until_refused("r2", nullptr), 5);
  EXPECT_EQ(answered_until_refused("r3", nullptr), 5);
  EXPECT_EQ(answered_until_refused("r4", nullptr), 2);
  EXPECT_EQ(answered_until_refused("r5", nullptr), 0) << "a reconnect started a budget afresh";
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "rate_limited"), 5) << stats;
}

// The messages a member recovers from `since` (a fresh connection, everything replayed): seq ->
// the message.
std::map<uint64_t, json> recover_all(int port, const std::string& name, const std::string& room, uint64_t since,
                                     const std::string& epoch, json* joined_out = nullptr) {
  Native m(port, name);
  m.send(json{{"type", "join"}, {"room", room}, {"since", since}, {"epoch", epoch}}.dump() + "\n");
  json joined = expect_type(m, "joined");
  if (joined_out) *joined_out = joined;
  std::map<uint64_t, json> out;
  m.send(json{{"type", "ping"}}.dump() + "\n");  // after the replay
  for (;;) {
    json j = next_json(m);
    if (j["type"] == "message") out[j["seq"]] = j;
    if (j["type"] != "message") break;
  }
  return out;
}

// kill -9 right after acknowledgements: every acknowledged message is there after the restart, at
// its number, in the same epoch; the numbering goes on after the highest; an acknowledged id sent
// again is recognised (the same ack, no second copy).
TEST(ChatHistory, AcknowledgedMessagesSurviveKill9AndTheNumberingGoesOn) {
  DataDir dir;
  constexpr int kSent = 3000;
  std::map<std::string, uint64_t> acked;  // id -> seq
  std::string epoch;
  {
    Server server(store_args("sqlite", dir, {"--threads", "2"}));
    server.process.may_die_by_signal();
    Native p(server.port, "writer");
    json joined = p.request({{"type", "join"}, {"room", "safe"}});
    ASSERT_EQ(joined["type"], "joined");
    epoch = joined["epoch"];
    // Pipelined: everything goes out at once; the kill comes while acks are still arriving.
    std::string burst;
    for (int i = 0; i < kSent; ++i) {
      burst += json{{"type", "message"}, {"room", "safe"}, {"text", "t" + std::to_string(i)}, {"id", "k" + std::to_string(i)}}
                   .dump() + "\n";
    }
    p.send(burst);
    while (acked.size() < kSent / 3) {
      json j = next_json(p);
      if (j["type"] == "ack") acked[j["id"]] = j["seq"];
      ASSERT_NE(j["type"], "<nothing>");
    }
    ::kill(server.process.pid(), SIGKILL);
    for (;;) {  // what was acknowledged before the kill took effect counts too
      json j = next_json(p, 2s);
      if (j["type"] == "ack") acked[j["id"]] = j["seq"];
      if (j["type"] == "<nothing>") break;
    }
    server.process.wait(10s);
  }
  ASSERT_GE(acked.size(), static_cast<size_t>(kSent / 3));
  uint64_t highest = 0;
  for (auto& [id, seq] : acked) highest = std::max(highest, seq);

  Server again(store_args("sqlite", dir, {"--threads", "2", "--replay-limit", "100000"}));
  json joined;
  std::map<uint64_t, json> kept = recover_all(again.port, "reader", "safe", 0, epoch, &joined);
  EXPECT_EQ(joined["epoch"], epoch) << "the same store, the same epoch";
  EXPECT_EQ(joined["recovered"], true) << joined;
  EXPECT_GE(joined["seq"].get<uint64_t>(), highest);
  size_t missing = 0;
  for (auto& [id, seq] : acked) {
    auto it = kept.find(seq);
    if (it == kept.end() || it->second["id"] != id) ++missing;
  }
  EXPECT_EQ(missing, 0u) << "acknowledged messages lost in the kill";
  // The numbering goes on; an acknowledged id is recognised after the restart.
  Native w(again.port, "writer");
  ASSERT_EQ(w.request({{"type", "join"}, {"room", "safe"}})["type"], "joined");
  // The reader's leave may come first (its close and this join go through different reactors):
  // presence is passed over, anything else before the ack (a copy of k0) fails.
  w.send(json{{"type", "message"}, {"room", "safe"}, {"text", "t0"}, {"id", "k0"}}.dump() + "\n");
  std::vector<json> before_ack;
  json retry = expect_type(w, "ack", &before_ack);
  EXPECT_EQ(retry, (json{{"type", "ack"}, {"room", "safe"}, {"id", "k0"}, {"seq", acked.at("k0")}}));
  for (const json& j : before_ack) EXPECT_EQ(j, (json{{"type", "leave"}, {"room", "safe"}, {"user", "reader"}}));
  w.send(json{{"type", "message"}, {"room", "safe"}, {"text", "after"}, {"id", "new"}}.dump() + "\n");
  json copy = expect_type(w, "message");
  EXPECT_EQ(copy["text"], "after") << "the retried id was delivered again";
  EXPECT_EQ(copy["seq"], joined["seq"].get<uint64_t>() + 1);
}

// A store that cannot write (its file may not grow: RLIMIT_FSIZE, as a full disk): a message with an
// id gets not_stored, everyone still gets it live, and the server goes on.
TEST(ChatHistory, AStoreThatCannotWriteAnswersNotStoredAndLiveChatGoesOn) {
  DataDir dir;
  std::vector<std::string> args = store_args("sqlite", dir);
  args.insert(args.begin(), {"prlimit", "--fsize=400000"});
  Server server(args);
  Native a(server.port, "a"), b(server.port, "b");
  ASSERT_EQ(a.request({{"type", "join"}, {"room", "full"}})["type"], "joined");
  ASSERT_EQ(b.request({{"type", "join"}, {"room", "full"}})["type"], "joined");
  std::string text(20000, 'x');
  json refused;
  int sent = 0;
  for (; sent < 100 && refused.is_null(); ++sent) {
    a.send(json{{"type", "message"}, {"room", "full"}, {"text", text}, {"id", "f" + std::to_string(sent)}}.dump() + "\n");
    json copy = expect_type(a, "message");
    ASSERT_EQ(copy["id"], "f" + std::to_string(sent));
    json answer = next_json(a);
    if (answer["type"] == "error") refused = answer;
    else ASSERT_EQ(answer["type"], "ack") << answer;
    EXPECT_EQ(expect_type(b, "message")["id"], "f" + std::to_string(sent)) << "live chat goes on";
  }
  ASSERT_FALSE(refused.is_null()) << "400 kB of file never filled";
  EXPECT_EQ(refused["code"], "not_stored");
  EXPECT_EQ(refused["id"], "f" + std::to_string(sent - 1));
  // Still serving: another message, and a ping.
  a.send(json{{"type", "message"}, {"room", "full"}, {"text", "small"}}.dump() + "\n");
  EXPECT_EQ(expect_type(b, "message")["text"], "small");
  EXPECT_EQ(a.request({{"type", "ping"}})["type"], "message");  // a's own copy of "small" first
  EXPECT_NE(counter(stats_of(server.process), "not_stored"), 0);
}

// A store that cannot be opened or is not ours: one line on stderr, and a non-zero exit.
TEST(ChatHistory, AStoreThatCannotBeOpenedIsOneLineAndANonZeroExit) {
  DataDir dir;
  {
    std::ofstream(dir.path + "/chat.db") << "these bytes are not a database, but they are long enough to matter....";
  }
  std::filesystem::create_directory(dir.path + "/sub");
  std::ofstream(dir.path + "/file") << "x";
  for (std::vector<std::string> args : {std::vector<std::string>{"--data-dir", dir.path},
                                        {"--data-dir", dir.path + "/file/below"}}) {
    std::vector<std::string> argv{CHAT_SERVER_BIN, "--port", "0", "--no-http", "--no-irc", "--store", "sqlite", "--message-rate", "0"};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv);
    auto status = p.wait(10s);
    ASSERT_TRUE(status && WIFEXITED(*status));
    EXPECT_EQ(WEXITSTATUS(*status), 1);
    EXPECT_EQ(std::count(p.err().begin(), p.err().end(), '\n'), 1) << p.err();
  }
}

}  // namespace
