// chat-server as a process, over real sockets (chat-client's tests: chat_client_test.cpp).
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chat_helpers.h"
#include "process.h"

using namespace std::chrono_literals;
using json = nlohmann::json;
using testproc::LineClient;
using testproc::Process;
using testproc::Server;
using namespace chattest;


TEST(ChatNative, HelloJoinMessageLeaveAndPresence) {
  Server server(chat_args());
  Native alice(server.port, "alice");
  EXPECT_EQ(alice.welcome, (json{{"type", "welcome"}, {"user", "alice"}}));
  json joined = alice.request({{"type", "join"}, {"room", "dev"}});
  EXPECT_EQ(joined["type"], "joined");
  EXPECT_EQ(joined["members"], json::array({"alice"}));

  Native bob(server.port, "bob");
  json bob_joined = bob.request({{"type", "join"}, {"room", "dev"}});
  EXPECT_EQ(bob_joined["members"].size(), 2u);
  EXPECT_EQ(next_json(alice), (json{{"type", "join"}, {"room", "dev"}, {"user", "bob"}}));

  bob.send(json{{"type", "message"}, {"room", "dev"}, {"text", "héllo \"quoted\" \\ back\nslash"}}.dump() + "\n");
  for (LineClient* c : {static_cast<LineClient*>(&alice), static_cast<LineClient*>(&bob)}) {
    json m = next_json(*c);
    EXPECT_EQ(m["type"], "message");
    EXPECT_EQ(m["room"], "dev");
    EXPECT_EQ(m["user"], "bob");
    EXPECT_EQ(m["text"], "héllo \"quoted\" \\ back\nslash") << "relayed verbatim";
    EXPECT_EQ(m["seq"], 1);
    EXPECT_TRUE(m["ts"].is_number_integer());
  }
  EXPECT_EQ(bob.request({{"type", "leave"}, {"room", "dev"}}), (json{{"type", "left"}, {"room", "dev"}}));
  EXPECT_EQ(next_json(alice), (json{{"type", "leave"}, {"room", "dev"}, {"user", "bob"}}));
  // A closed connection leaves its rooms: presence for the others.
  bob.request({{"type", "join"}, {"room", "dev"}});
  EXPECT_EQ(next_json(alice)["type"], "join");
  ::shutdown(bob.fd(), SHUT_RDWR);
  EXPECT_EQ(next_json(alice), (json{{"type", "leave"}, {"room", "dev"}, {"user", "bob"}}));
}

TEST(ChatNative, SeveralRoomsKeepTheirOwnSequences) {
  Server server(chat_args());
  Native a(server.port, "a");
  Native b(server.port, "b");
  a.request({{"type", "join"}, {"room", "r1"}});
  a.request({{"type", "join"}, {"room", "r2"}});
  b.request({{"type", "join"}, {"room", "r2"}});
  EXPECT_EQ(next_json(a)["type"], "join");  // b joined r2
  EXPECT_EQ(a.request({{"type", "rooms"}}), (json{{"type", "rooms"}, {"rooms", {"r1", "r2"}}}));
  a.send(json{{"type", "message"}, {"room", "r1"}, {"text", "only r1"}}.dump() + "\n");
  a.send(json{{"type", "message"}, {"room", "r2"}, {"text", "r2 first"}}.dump() + "\n");
  a.send(json{{"type", "message"}, {"room", "r2"}, {"text", "r2 second"}}.dump() + "\n");
  json m1 = next_json(a), m2 = next_json(a), m3 = next_json(a);
  EXPECT_EQ(m1["room"], "r1");
  EXPECT_EQ(m1["seq"], 1);
  EXPECT_EQ(m2["seq"], 1);
  EXPECT_EQ(m3["seq"], 2);
  json b1 = next_json(b), b2 = next_json(b);
  EXPECT_EQ(b1["text"], "r2 first");
  EXPECT_EQ(b2["text"], "r2 second");
  EXPECT_EQ(b.request({{"type", "ping"}, {"id", 42}}), (json{{"type", "pong"}, {"id", 42}}));
}

TEST(ChatNative, BigRoomsHaveNoPresenceEvents) {
  Server server(chat_args({"--presence-max-members", "2"}));
  Native a(server.port, "a"), b(server.port, "b"), c(server.port, "c");
  EXPECT_EQ(a.request({{"type", "join"}, {"room", "r"}})["members"], json::array({"a"}));
  json jb = b.request({{"type", "join"}, {"room", "r"}});
  EXPECT_EQ(jb["count"], 2);
  EXPECT_EQ(jb["members"].size(), 2u);
  EXPECT_EQ(next_json(a)["type"], "join");
  json jc = c.request({{"type", "join"}, {"room", "r"}});
  EXPECT_EQ(jc["count"], 3);
  EXPECT_FALSE(jc.contains("members")) << "no member list past the limit";
  // a and b got no presence event for c: the next thing they see is this message.
  c.send(json{{"type", "message"}, {"room", "r"}, {"text", "three"}}.dump() + "\n");
  EXPECT_EQ(next_json(a)["type"], "message");
  EXPECT_EQ(next_json(b)["type"], "message");
}

TEST(ChatNative, ErrorsHaveACodeAndTheConnectionGoesOn) {
  Server server(chat_args({"--max-frame", "1024"}));
  // Before hello: bad and duplicate names.
  LineClient pre(server.port);
  pre.send("{\"type\":\"hello\",\"user\":\"no spaces allowed\"}\n");
  EXPECT_EQ(next_json(pre)["code"], "bad_name");
  Native taken(server.port, "kim");
  LineClient dup(server.port);
  dup.send("{\"type\":\"hello\",\"user\":\"kim\"}\n");
  EXPECT_EQ(next_json(dup)["code"], "name_taken");
  dup.send("{\"type\":\"hello\",\"user\":\"kim2\"}\n");
  EXPECT_EQ(next_json(dup)["type"], "welcome") << "a refused hello may be retried";

  Native c(server.port, "carol");
  struct Case {
    std::string input, code;
  };
  std::vector<Case> cases = {
      {"this is not json\n", "bad_json"},
      {"{\"type\":\"message\",\"room\":\"x\",\"text\":\"\xff\xfe\"}\n", "bad_utf8"},
      {"[1,2,3]\n", "bad_request"},
      {"{\"room\":\"x\"}\n", "bad_request"},
      {"{\"type\":42}\n", "bad_request"},
      {"{\"type\":\"message\",\"room\":\"x\"}\n", "bad_request"},
      {"{\"type\":\"message\",\"room\":\"x\",\"text\":7}\n", "bad_request"},
      {"{\"type\":\"join\"}\n", "bad_request"},
      {"{\"type\":\"join\",\"room\":\"bad room!\"}\n", "bad_room"},
      {"{\"type\":\"teleport\"}\n", "unknown_type"},
      {"{\"type\":\"message\",\"room\":\"nowhere\",\"text\":\"hi\"}\n", "not_member"},
      {"{\"type\":\"leave\",\"room\":\"nowhere\"}\n", "not_member"},
      {"{\"type\":\"hello\",\"user\":\"again\"}\n", "bad_request"},
      {std::string(5000, 'x') + "\n", "too_long"},
  };
  for (const auto& k : cases) {
    c.send(k.input);
    json e = next_json(c);
    EXPECT_EQ(e["type"], "error") << k.input.substr(0, 60);
    EXPECT_EQ(e["code"], k.code) << k.input.substr(0, 60);
    EXPECT_TRUE(e["message"].is_string());
    EXPECT_EQ(c.request({{"type", "ping"}})["type"], "pong") << "connection unusable after " << k.code;
  }
  c.request({{"type", "join"}, {"room", "r"}});
  EXPECT_EQ(c.request({{"type", "join"}, {"room", "r"}})["code"], "already_member");

  // A line that never ends cannot be resynchronised: error, then the server closes.
  LineClient endless(server.port);
  endless.send("{\"type\":\"hello\",\"user\":\"endless\"}\n");
  EXPECT_EQ(next_json(endless)["type"], "welcome");
  for (int i = 0; i < 20; ++i) endless.send(std::string(1024, 'y'));
  json e = next_json(endless);
  EXPECT_EQ(e["code"], "too_long");
  EXPECT_TRUE(endless.closed_by_peer());
  // Nothing else was harmed.
  EXPECT_EQ(c.request({{"type", "ping"}})["type"], "pong");
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "unsynced"), 1) << stats;
  EXPECT_GE(counter(stats, "json"), 1) << stats;
  EXPECT_GE(counter(stats, "utf8"), 1) << stats;
  EXPECT_GE(counter(stats, "too_long"), 1) << stats;
}

TEST(ChatArticle, FramingHundredObjectsInOneSendAndOneObjectAByteAtATime) {
  Server server(chat_args());
  Native observer(server.port, "observer");
  observer.request({{"type", "join"}, {"room", "lobby"}});
  LineClient article(server.port);
  std::string burst;
  for (int i = 0; i < 100; ++i) {
    burst += "{\"user\": \"kim\", \"text\": \"msg " + std::to_string(i) + "\"}";
    if (i % 3 == 0) burst += "\n";
    if (i % 5 == 0) burst += "  ";
  }
  article.send(burst);  // one send: the article's server would lose most of these
  for (int i = 0; i < 100; ++i) {
    json m = next_json(observer);
    ASSERT_EQ(m["type"], "message");
    EXPECT_EQ(m["text"], "msg " + std::to_string(i));
    EXPECT_EQ(m["user"], "kim");
    auto l = article.line();
    ASSERT_TRUE(l);
    EXPECT_EQ(*l, "[kim] msg " + std::to_string(i)) << "the sender gets its own messages, as in the article";
  }
  std::string one = "{\"user\": \"slow\", \"text\": \"one {byte} at a \\\"time\\\"\"}";
  for (char ch : one) article.send(std::string(1, ch));
  EXPECT_EQ(article.line(), "[slow] one {byte} at a \"time\"");
  json m = next_json(observer);
  EXPECT_EQ(m["text"], "one {byte} at a \"time\"");
  EXPECT_EQ(m["seq"], 101);
  // Native messages to the lobby reach the article's clients as "[user] text".
  observer.send(json{{"type", "message"}, {"room", "lobby"}, {"text", "hi article"}}.dump() + "\n");
  EXPECT_EQ(article.line(), "[observer] hi article");
}

TEST(ChatArticle, AConnectionThatNeverSpeaksIsInTheLobby) {
  Server server(chat_args());
  LineClient lurker(server.port);
  Native talker(server.port, "talker");
  talker.request({{"type", "join"}, {"room", "lobby"}});
  EXPECT_EQ(talker.request({{"type", "message"}, {"room", "lobby"}, {"text", "anyone?"}})["text"], "anyone?");
  EXPECT_EQ(lurker.line(), "[talker] anyone?");
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "article"), 1) << stats;
  EXPECT_EQ(counter(stats, "native"), 1) << stats;
}

TEST(ChatArticle, BadInputIsLoggedAndSkipped) {
  Server server(chat_args({"--max-frame", "512"}));
  LineClient article(server.port);
  article.send("{\"user\":\"a\",\"text\":\"first\"}");
  EXPECT_EQ(article.line(), "[a] first");
  article.send("garbage before {\"user\":\"a\",\"text\":\"second\"}");
  EXPECT_EQ(article.line(), "[a] second");
  article.send("{\"user\": \"a\", \"text\": }{\"user\":\"a\",\"text\":\"third\"}");
  EXPECT_EQ(article.line(), "[a] third");
  article.send("{\"user\":\"a\",\"text\":\"\xc3\x28\"}{\"user\":\"a\",\"text\":\"fourth\"}");
  EXPECT_EQ(article.line(), "[a] fourth");
  article.send("{\"nick\":\"a\",\"msg\":\"x\"}{\"user\":\"a\",\"text\":\"fifth\"}");
  EXPECT_EQ(article.line(), "[a] fifth");
  article.send("{\"user\":\"a\",\"text\":\"" + std::string(2000, 'z') + "\"}{\"user\":\"a\",\"text\":\"sixth\"}");
  EXPECT_EQ(article.line(), "[a] sixth");
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "garbage"), 1) << stats;
  EXPECT_EQ(counter(stats, "json"), 1) << stats;
  EXPECT_EQ(counter(stats, "utf8"), 1) << stats;
  EXPECT_EQ(counter(stats, "too_long"), 1) << stats;
  EXPECT_EQ(counter(stats, "request"), 1) << stats;
  EXPECT_NE(server.process.err().find("malformed JSON"), std::string::npos) << server.process.err();
}

class ChatThreads : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(Reactors, ChatThreads, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "_threads"; });

// 1,000 members (spread over the reactors round-robin), four publishers on different reactors:
// every member gets every message exactly once, each sender's messages in the order sent, and all
// members the same room-wide order (the same text under the same sequence number).
TEST_P(ChatThreads, ThousandMembersEachReceiveEveryMessageOnceInOneRoomWideOrder) {
  Server server(chat_args({"--threads", std::to_string(GetParam())}));
  EXPECT_NE(server.process.out().find(std::to_string(GetParam()) + " thread"), std::string::npos)
      << server.process.out();
  constexpr int kMembers = 1000, kPublishers = 4, kPerPublisher = 25;
  std::vector<std::unique_ptr<Native>> members;
  for (int i = 0; i < kMembers; ++i) {
    members.push_back(std::make_unique<Native>(server.port, "m" + std::to_string(i)));
    ASSERT_EQ(members.back()->welcome["type"], "welcome");
    members.back()->send("{\"type\":\"join\",\"room\":\"big\"}\n");
  }
  // Everyone has joined once each has its "joined" reply (presence of later joiners is skipped).
  for (auto& m : members) ASSERT_EQ(expect_type(*m, "joined")["type"], "joined");
  for (int k = 0; k < kPerPublisher; ++k) {
    for (int p = 0; p < kPublishers; ++p) {
      members[static_cast<size_t>(p * 251)]->send(
          json{{"type", "message"}, {"room", "big"}, {"text", std::to_string(p) + ":" + std::to_string(k)}}.dump() + "\n");
    }
  }
  const int total = kPublishers * kPerPublisher;
  std::vector<std::string> order;  // text by sequence number, as the first member saw it
  for (auto& m : members) {
    uint64_t last_seq = 0;
    std::map<std::string, int> next_from;
    std::vector<std::string> seen;
    for (int got = 0; got < total;) {
      json j = next_json(*m);
      ASSERT_NE(j["type"], "<nothing>") << "a member is missing messages after " << got;
      if (j["type"] != "message") continue;  // presence of members that joined later
      uint64_t seq = j["seq"];
      ASSERT_EQ(seq, last_seq + 1) << "gap or duplicate";
      last_seq = seq;
      std::string text = j["text"];
      std::string from = text.substr(0, text.find(':'));
      ASSERT_EQ(std::stoi(text.substr(text.find(':') + 1)), next_from[from]++) << "a sender's order changed";
      seen.push_back(text);
      ++got;
    }
    if (order.empty()) order = seen;
    ASSERT_EQ(seen, order) << "two members saw the room's messages in different orders";
  }
}

TEST(ChatSlowConsumer, AMemberThatNeverReadsIsClosedAndTheOthersKeepUp) {
  Server server(chat_args({"--output-limit", "262144", "--soft-limit", "131072", "--soft-ms", "200"}));
  // A member with a tiny receive window that never reads.
  LineClient slow(server.port, 4096);
  slow.send("{\"type\":\"hello\",\"user\":\"slow\"}\n{\"type\":\"join\",\"room\":\"r\"}\n");
  Native reader(server.port, "reader");  // sends, and reads everything, its own copies included
  reader.request({{"type", "join"}, {"room", "r"}});
  long rss_before = testproc::rss_kib(server.process.pid());
  // Far more than the kernel buffers between the server and the slow member can hold.
  constexpr int kMessages = 12000;
  const std::string line = json{{"type", "message"}, {"room", "r"}, {"text", std::string(1000, 'p')}}.dump() + "\n";
  auto start = std::chrono::steady_clock::now();
  int got = 0;
  for (int sent = 0; sent < kMessages; sent += 100) {
    std::string batch;
    for (int i = 0; i < 100; ++i) batch += line;
    reader.send(batch);
    while (got < sent + 100) {
      json j = next_json(reader, 20s);
      ASSERT_NE(j["type"], "<nothing>") << "the reader stalled at " << got;
      if (j["type"] == "message") ++got;
    }
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(got, kMessages);
  EXPECT_LT(elapsed, 30s);
  EXPECT_TRUE(slow.closed_by_peer(10s)) << "the member that never reads is still connected";
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "slow_consumer"), 1) << stats;
  if (!testproc::programs_under_sanitizer()) {  // ASan keeps freed memory in quarantine: RSS says nothing
    long rss_after = testproc::rss_kib(server.process.pid());
    EXPECT_LT(rss_after - rss_before, 16 * 1024) << "server memory grew by " << rss_after - rss_before << " KiB";
  }
  EXPECT_NE(server.process.err().find("slow consumer"), std::string::npos) << server.process.err();
}

TEST(ChatSlowConsumer, AboveTheSoftLimitForLongerThanTheGraceIsClosed) {
  // Hard limit far away: only the soft limit (64 KiB for 300 ms) can close the slow member.
  Server server(chat_args({"--output-limit", "268435456", "--soft-limit", "65536", "--soft-ms", "300"}));
  LineClient slow(server.port, 4096);
  slow.send("{\"type\":\"hello\",\"user\":\"slow\"}\n{\"type\":\"join\",\"room\":\"r\"}\n");
  Native reader(server.port, "reader");
  reader.request({{"type", "join"}, {"room", "r"}});
  const std::string line = json{{"type", "message"}, {"room", "r"}, {"text", std::string(1000, 's')}}.dump() + "\n";
  int got = 0;
  // Until the server says it closed the slow member (asking the socket would read from it, and
  // this member must never read).
  const std::string soft_close = "over the soft output limit";
  for (int round = 0; round < 200 && !server.process.wait_for_err_line(soft_close, 1ms); ++round) {
    std::string batch;
    for (int i = 0; i < 100; ++i) batch += line;
    reader.send(batch);
    for (int target = got + 100; got < target;) {
      json j = next_json(reader, 20s);
      ASSERT_NE(j["type"], "<nothing>") << "the reader stalled at " << got;
      if (j["type"] == "message") ++got;
    }
    std::this_thread::sleep_for(20ms);  // pacing the publisher, not waiting for a result
  }
  EXPECT_TRUE(slow.closed_by_peer(10s));
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "slow_consumer"), 1) << stats;
  EXPECT_NE(server.process.err().find(soft_close), std::string::npos) << server.process.err();
}

// SIGTERM while megabytes are still queued for a member that has not read a byte (a 4 KiB receive
// window): after the signal it reads every message, in order, up to the last one, then the
// server's "reconnect" notice, then the end of the stream; the server exits 0 with its counters.
TEST(ChatServer, SigtermFlushesAndExitsZeroWithCounters) {
  // ~8 MiB to the slow member: the kernel's buffers take up to 4 MiB of it (tcp_wmem's maximum), the
  // rest stays queued in the server.
  constexpr int kMessages = 8000;
  // One reactor: once the sender has its own copy of a message, the slow member's is queued too.
  Server server(chat_args({"--threads", "1", "--output-limit", "67108864", "--soft-limit", "67108864", "--soft-ms",
                           "600000", "--shutdown-grace-ms", "60000"}));
  LineClient slow(server.port, 4096);
  slow.send("{\"type\":\"hello\",\"user\":\"slow\"}\n");
  ASSERT_EQ(next_json(slow)["type"], "welcome");
  slow.send("{\"type\":\"join\",\"room\":\"r\"}\n");
  ASSERT_EQ(next_json(slow)["type"], "joined");
  Native sender(server.port, "sender");
  ASSERT_EQ(sender.request({{"type", "join"}, {"room", "r"}})["type"], "joined");
  ASSERT_EQ(next_json(slow)["type"], "join") << "the sender's presence, the slow member's last read";
  const std::string padding(1000, 'p');
  for (int sent = 0, copies = 0; sent < kMessages;) {
    std::string batch;
    for (int i = 0; i < 200; ++i, ++sent) {
      batch += json{{"type", "message"}, {"room", "r"}, {"text", "m" + std::to_string(sent) + " " + padding}}.dump() + "\n";
    }
    sender.send(batch);
    while (copies < sent) {
      json j = next_json(sender, 20s);
      ASSERT_EQ(j["type"], "message") << "the sender's copy " << copies << ": " << j;
      ASSERT_EQ(j["text"], "m" + std::to_string(copies) + " " + padding);
      ++copies;
    }
  }
  std::string stats = stats_of(server.process);
  // Both members' copies, and the sender's join told to the slow member: all queued before SIGTERM.
  ASSERT_EQ(counter(stats, "delivered"), 2 * kMessages + 1) << stats;

  ASSERT_EQ(::kill(server.process.pid(), SIGTERM), 0);
  // Then a larger receive window: reading 8 MiB through 4 KiB ones takes long.
  int rcvbuf = 1 << 20;
  ::setsockopt(slow.fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  int got = 0;
  json after_last;
  while (got < kMessages) {
    json j = next_json(slow, 30s);
    if (j["type"] != "message") {
      after_last = j;
      break;
    }
    ASSERT_EQ(j["text"], "m" + std::to_string(got) + " " + padding) << "out of order";
    ++got;
  }
  EXPECT_EQ(got, kMessages) << "cut off after " << got << " of " << kMessages << " messages (then " << after_last
                            << "); " << server.process.err();
  if (got == kMessages) after_last = next_json(slow, 30s);
  EXPECT_EQ(after_last["type"], "reconnect") << after_last;
  EXPECT_TRUE(slow.closed_by_peer(30s)) << "the end of the stream after the last message";
  auto status = server.process.wait(30s);
  ASSERT_TRUE(status.has_value()) << "the server did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server.process.err();
  EXPECT_NE(server.process.err().find("stopped. stats:"), std::string::npos) << server.process.err();
  EXPECT_NE(server.process.err().find("messages in=" + std::to_string(kMessages) + " "), std::string::npos)
      << server.process.err();
  EXPECT_EQ(server.process.err().find("after the grace period"), std::string::npos) << server.process.err();
}

TEST(ChatServer, ConnectionsPastTheLimitAreClosedAndCounted) {
  Server server(chat_args({"--max-connections", "2", "--threads", "1"}));
  Native a(server.port, "a"), b(server.port, "b");
  ASSERT_EQ(b.welcome["type"], "welcome");
  LineClient c(server.port);
  EXPECT_TRUE(c.closed_by_peer(5s));
  EXPECT_EQ(a.request({{"type", "ping"}})["type"], "pong") << "the others are unharmed";
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "refused"), 1) << stats;
}

TEST(ChatServer, UserMistakesAreOneLineAndANonZeroExit) {
  for (std::vector<std::string> args : {std::vector<std::string>{"--max-frame", "huge"},
                                        {"--soft-limit", "9000000", "--output-limit", "4096"},
                                        {"--backend", "io_uring"},
                                        {"--what"}}) {
    std::vector<std::string> argv{CHAT_SERVER_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv);
    auto status = p.wait(10s);
    ASSERT_TRUE(status && WIFEXITED(*status));
    EXPECT_NE(WEXITSTATUS(*status), 0);
    EXPECT_EQ(std::count(p.err().begin(), p.err().end(), '\n'), 1) << p.err();
  }
}

// Rooms live on owner shards; a join's answer and a message's own copy come back from there. A pong
// still comes after the answers to every request before its ping, whichever shards they came from.
TEST(ChatThreadsOrder, PongComesAfterEveryEarlierAnswerFromAnyShard) {
  Server server(chat_args({"--threads", "2"}));
  for (int round = 0; round < 20; ++round) {
    Native c(server.port, "u" + std::to_string(round));
    std::string batch;
    for (int r = 0; r < 8; ++r) {
      std::string room = "r" + std::to_string(r);
      batch += json{{"type", "join"}, {"room", room}}.dump() + "\n";
      batch += json{{"type", "message"}, {"room", room}, {"text", "t" + std::to_string(r)}}.dump() + "\n";
    }
    batch += json{{"type", "ping"}, {"id", 1}}.dump() + "\n";
    batch += json{{"type", "rooms"}}.dump() + "\n";
    c.send(batch);  // one write: the server reads it in one go
    int joined = 0, messages = 0;
    for (;;) {
      json j = next_json(c);
      std::string type = j.value("type", "");
      if (type == "joined") ++joined;
      if (type == "message") ++messages;
      if (type == "pong" || type == "<nothing>" || type == "rooms") {
        EXPECT_EQ(type, "pong") << "round " << round;
        break;
      }
    }
    EXPECT_EQ(joined, 8) << "round " << round;
    EXPECT_EQ(messages, 8) << "round " << round;
    EXPECT_EQ(next_json(c)["type"], "rooms") << "a reply after a waiting pong waits behind it";
  }
}

// --accept reuseport: every reactor has its own SO_REUSEPORT listener on the one port; rooms still
// span the reactors.
TEST(ChatThreadsAccept, AListenerPerReactorSpreadsConnectionsAndRoomsStillSpanThem) {
  Server server(chat_args({"--threads", "2", "--accept", "reuseport"}));
  std::vector<std::unique_ptr<Native>> members;
  for (int i = 0; i < 40; ++i) {
    members.push_back(std::make_unique<Native>(server.port, "rp" + std::to_string(i)));
    ASSERT_EQ(members.back()->request({{"type", "join"}, {"room", "hall"}})["type"], "joined");
  }
  members[7]->send(json{{"type", "message"}, {"room", "hall"}, {"text", "hello all"}}.dump() + "\n");
  for (auto& m : members) {
    json j = expect_type(*m, "message");
    EXPECT_EQ(j["text"], "hello all");
  }
  // Both listeners took connections: with 40 connections, all hashed to one is 2^-39.
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "accepted"), 40) << stats;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(stats, m, std::regex(R"(per reactor open=(\d+),(\d+))"))) << stats;
  EXPECT_GT(std::stoi(m[1]), 0) << stats;
  EXPECT_GT(std::stoi(m[2]), 0) << stats;
  EXPECT_EQ(std::stoi(m[1]) + std::stoi(m[2]), 40) << stats;
}

// The article's own chat client, unmodified: two of them chat through our server. The client only
// reaches localhost:1234 (its -port flag is a string), so this test holds that port.
TEST(ArticleClients, TwoReactorChatClientsSeeEachOthersMessages) {
  std::string script = std::string(SEED_DIR) + "/ReactorChatClient.py";
  ASSERT_TRUE(std::filesystem::exists(script)) << "missing " << script;
  Server server(chat_args({}, "1234"));
  setenv("PYTHONUNBUFFERED", "1", 1);  // see its prints as they happen; the program is unchanged
  Process alice({"python3", script, "-username", "alice"});
  Process bob({"python3", script, "-username", "bob"});
  alice.may_die_by_signal();  // the article's client runs until it is killed
  bob.may_die_by_signal();
  alice.write_stdin("hi from alice\n");
  ASSERT_TRUE(alice.wait_for_line("[alice] hi from alice", 20s)) << alice.out() << alice.err();
  bob.write_stdin("hi from bob\n");
  ASSERT_TRUE(bob.wait_for_line("[bob] hi from bob", 20s)) << bob.out() << bob.err();
  ASSERT_TRUE(alice.wait_for_line("[bob] hi from bob", 20s)) << alice.out();
  alice.write_stdin("alice again\n");
  EXPECT_TRUE(alice.wait_for_line("[alice] alice again", 20s)) << alice.out();
  EXPECT_TRUE(bob.wait_for_line("[alice] alice again", 20s)) << bob.out();
}
