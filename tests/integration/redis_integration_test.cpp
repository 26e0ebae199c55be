// Several chat-server nodes joined through one redis-server on loopback (started by the tests).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chat_helpers.h"
#include "irc_helpers.h"
#include "process.h"
#include "redis_helpers.h"

using namespace chattest;
using redistest::free_port;
using redistest::RedisServer;
using testproc::Server;

namespace {

std::vector<std::string> node(const RedisServer& redis, const std::string& threads) {
  return redistest::node_args({"--redis", redis.url(), "--threads", threads});
}

// A native member of `room`, told "joined": from then on it receives whatever any node publishes.
struct Member : Native {
  Member(int port, const std::string& user, const std::string& room) : Native(port, user) {
    joined = request({{"type", "join"}, {"room", room}});
  }
  json joined;
};

// The next `n` chat messages `m` receives (presence events skipped); fewer if they stop coming.
std::vector<json> messages(LineClient& m, size_t n, std::chrono::milliseconds timeout = 15s) {
  std::vector<json> got;
  while (got.size() < n) {
    json j = next_json(m, timeout);
    std::string type = j.value("type", "");
    if (type == "<nothing>") break;
    if (type == "message") got.push_back(j);
  }
  return got;
}

std::string said(const json& m) { return m.value("user", "") + ":" + m.value("text", ""); }

std::vector<std::string> said_all(const std::vector<json>& got) {
  std::vector<std::string> out;
  for (const json& m : got) out.push_back(said(m));
  return out;
}

void say(LineClient& m, const std::string& text, const std::string& room = "hall") {
  m.send(json{{"type", "message"}, {"room", room}, {"text", text}}.dump() + "\n");
}

// Nothing more than what was read: a ping's pong comes with no chat message before it.
::testing::AssertionResult nothing_more(LineClient& m) {
  m.send(json{{"type", "ping"}}.dump() + "\n");
  std::vector<json> skipped;
  json pong = expect_type(m, "pong", &skipped);
  if (pong["type"] != "pong") return ::testing::AssertionFailure() << "no pong: " << pong;
  for (const json& j : skipped) {
    if (j.value("type", "") == "message") return ::testing::AssertionFailure() << "one more message: " << j;
  }
  return ::testing::AssertionSuccess();
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Waits for a node's "redis ...: connected" line (the link is up: Redis answered).
void wait_connected(Server& s, const char* what = "connected") {
  ASSERT_TRUE(s.process.wait_for_err_line(what, 20s)) << s.process.err();
}

// A RESP command, as redis-cli would send it.
std::string resp(std::initializer_list<std::string> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

// PUBSUB NUMSUB CHANNEL: how many connections are subscribed to it (-1 if Redis did not answer).
long numsub(LineClient& redis, const std::string& channel) {
  redis.send(resp({"PUBSUB", "NUMSUB", channel}));
  std::optional<std::string> l;
  for (int i = 0; i < 4; ++i) l = redis.line(5s);  // *2, $LEN, CHANNEL, :N
  if (!l || l->size() < 2 || (*l)[0] != ':') return -1;
  return std::stol(l->substr(1));
}

// One line of Redis's answer ("+OK", "-ERR ...").
std::string redis_do(LineClient& redis, std::initializer_list<std::string> args) {
  redis.send(resp(args));
  std::string l = redis.line(5s).value_or("<nothing>");
  if (!l.empty() && l.back() == '\r') l.pop_back();
  return l;
}

// The backplane's part of a stats line (its names, such as refused=, are not unique in the line).
std::string redis_part(const std::string& stats) {
  size_t at = stats.find(" redis=");
  return at == std::string::npos ? "" : stats.substr(at);
}

std::string stats_field(const std::string& stats, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(stats, m, std::regex(" " + name + "=(\\S+)"))) return "<absent>";
  return m[1];
}



}  // namespace

TEST(RedisBackplane, AMessageSentOnAnyNodeReachesEveryMemberOnEveryNodeOnceInOneOrder) {
  RedisServer redis;
  std::vector<std::unique_ptr<Server>> nodes;
  for (const char* threads : {"2", "1", "2"}) nodes.push_back(std::make_unique<Server>(node(redis, threads)));
  constexpr int kPerNode = 8, kRounds = 30;
  std::vector<std::unique_ptr<Member>> members;
  for (int n = 0; n < 3; ++n) {
    for (int i = 0; i < kPerNode; ++i) {
      members.push_back(std::make_unique<Member>(nodes[n]->port, "n" + std::to_string(n) + "m" + std::to_string(i), "hall"));
      ASSERT_EQ(members.back()->joined["type"], "joined") << members.back()->joined;
    }
  }
  // Member 0 of each node speaks, the three interleaved.
  for (int r = 0; r < kRounds; ++r) {
    for (int n = 0; n < 3; ++n) {
      members[n * kPerNode]->send(json{{"type", "message"}, {"room", "hall"}, {"text", "t" + std::to_string(r)}}.dump() + "\n");
    }
  }
  std::vector<std::string> reference;
  std::vector<uint64_t> reference_seq;
  for (size_t k = 0; k < members.size(); ++k) {
    std::vector<json> got = messages(*members[k], 3 * kRounds);
    ASSERT_EQ(got.size(), size_t{3 * kRounds}) << "member " << k << " missed messages";
    std::vector<std::string> order;
    std::vector<uint64_t> seqs;
    std::map<std::string, int> next_from;  // per sender: the next text expected
    for (const json& m : got) {
      order.push_back(said(m));
      seqs.push_back(m["seq"].get<uint64_t>());
      std::string user = m["user"];
      EXPECT_EQ(m["text"], "t" + std::to_string(next_from[user]++)) << "a sender's messages in the order sent";
    }
    EXPECT_EQ(std::set<std::string>(order.begin(), order.end()).size(), order.size()) << "each message once";
    for (size_t i = 1; i < seqs.size(); ++i) EXPECT_LT(seqs[i - 1], seqs[i]) << "numbers rise";
    if (k == 0) {
      reference = order;
      reference_seq = seqs;
    } else {
      EXPECT_EQ(order, reference) << "member " << k << ": the same order on every node";
      EXPECT_EQ(seqs, reference_seq) << "member " << k << ": the same numbers on every node";
    }
  }
  // Nothing more arrives: exactly once.
  for (auto& m : members) EXPECT_TRUE(nothing_more(*m));
}

TEST(RedisBackplane, ANodeKilledMidStreamDoesNotDisturbTheOthers) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "1"));
  auto c = std::make_unique<Server>(node(redis, "1"));
  Member speaker(a.port, "speaker", "hall");
  std::vector<std::unique_ptr<Member>> listeners, doomed;
  for (int i = 0; i < 3; ++i) {
    listeners.push_back(std::make_unique<Member>(a.port, "a" + std::to_string(i), "hall"));
    listeners.push_back(std::make_unique<Member>(b.port, "b" + std::to_string(i), "hall"));
    doomed.push_back(std::make_unique<Member>(c->port, "c" + std::to_string(i), "hall"));
  }
  constexpr int kBefore = 100, kAfter = 100;
  std::string batch;
  for (int i = 0; i < kBefore; ++i) batch += json{{"type", "message"}, {"room", "hall"}, {"text", std::to_string(i)}}.dump() + "\n";
  speaker.send(batch);
  // Node C is in the middle of receiving them when it dies.
  ASSERT_EQ(messages(*doomed[0], 10).size(), 10u);
  ASSERT_TRUE(::kill(c->process.pid(), SIGKILL) == 0);
  c->process.wait(10s);
  batch.clear();
  for (int i = kBefore; i < kBefore + kAfter; ++i) {
    batch += json{{"type", "message"}, {"room", "hall"}, {"text", std::to_string(i)}}.dump() + "\n";
  }
  speaker.send(batch);
  for (auto& l : listeners) {
    std::vector<json> got = messages(*l, kBefore + kAfter);
    ASSERT_EQ(got.size(), size_t{kBefore + kAfter}) << "a listener on a surviving node lost messages";
    for (int i = 0; i < kBefore + kAfter; ++i) EXPECT_EQ(got[i]["text"], std::to_string(i));
  }
  EXPECT_EQ(messages(speaker, kBefore + kAfter).size(), size_t{kBefore + kAfter}) << "the speaker's own copies";
}

// docs/PROTOCOL.md: a lost connection is an outage at once; each node serves its own members;
// it reconnects with a backoff of at most 2 s and resubscribes, and traffic crosses nodes again.
TEST(RedisBackplane, AfterRedisRestartsTheNodesResubscribeAndTrafficResumes) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "1"));
  wait_connected(a);
  wait_connected(b);
  Member alice(a.port, "alice", "hall"), bob(b.port, "bob", "hall");
  say(alice, "before");
  EXPECT_EQ(said_all(messages(bob, 1)), std::vector<std::string>{"alice:before"});
  EXPECT_EQ(said_all(messages(alice, 1)), std::vector<std::string>{"alice:before"});

  auto killed = Clock::now();
  redis.kill();
  ASSERT_TRUE(a.process.wait_for_err_line("serving this node's members only", 10s)) << a.process.err();
  ASSERT_TRUE(b.process.wait_for_err_line("serving this node's members only", 10s)) << b.process.err();
  EXPECT_LT(seconds_since(killed), 3.0) << "a closed connection is an outage at once";
  // Redis away: each node goes on serving its own members, at once.
  auto sent = Clock::now();
  say(alice, "during");
  std::vector<json> during = messages(alice, 1, 5s);
  ASSERT_EQ(said_all(during), std::vector<std::string>{"alice:during"});
  EXPECT_LT(seconds_since(sent), 2.0);
  EXPECT_GT(during[0]["seq"].get<uint64_t>(), 1u);

  redis.start();
  auto restarted = Clock::now();
  ASSERT_TRUE(a.process.wait_for_err_line("connected again", 20s)) << a.process.err();
  ASSERT_TRUE(b.process.wait_for_err_line("connected again", 20s)) << b.process.err();
  // The backoff is at most 2 s; the margin is for a loaded machine.
  EXPECT_LT(seconds_since(restarted), 2.0 + 3.0);
  // Connected again means every room is subscribed again: traffic crosses nodes at once, both ways,
  // and what alice said during the outage stayed on her node.
  say(alice, "alice back");
  EXPECT_EQ(said_all(messages(alice, 1)), std::vector<std::string>{"alice:alice back"});
  EXPECT_EQ(said_all(messages(bob, 1)), std::vector<std::string>{"alice:alice back"});
  say(bob, "bob back");
  EXPECT_EQ(said_all(messages(bob, 1)), std::vector<std::string>{"bob:bob back"});
  std::vector<json> last = messages(alice, 1);
  ASSERT_EQ(said_all(last), std::vector<std::string>{"bob:bob back"});
  EXPECT_GT(last[0]["seq"].get<uint64_t>(), during[0]["seq"].get<uint64_t>()) << "numbers keep rising";
  EXPECT_TRUE(nothing_more(alice));
  EXPECT_TRUE(nothing_more(bob));
}

// Garbage that really reaches the node: its channel is subscribed before anything is published,
// and Redis says each PUBLISH had a subscriber (":1"; ":0" would mean nobody heard it).
TEST(RedisBackplane, GarbageOnARoomsChannelIsIgnored) {
  RedisServer redis;
  Server a(node(redis, "2"));
  wait_connected(a);
  Member alice(a.port, "alice", "hall");
  ASSERT_EQ(alice.joined["type"], "joined");
  LineClient raw(redis.port);
  const std::string channel = "reactor-chat:room:hall";
  auto asked = Clock::now();
  long subscribers = 0;
  while ((subscribers = numsub(raw, channel)) == 0 && seconds_since(asked) < 10) std::this_thread::sleep_for(20ms);
  ASSERT_EQ(subscribers, 1) << "the node never subscribed to " << channel << "; " << a.process.err();
  for (const char* bad : {"1 {\"user\":\"x\",\"text\":\"y\",\"ts\":\"soon\"}", "not a number", "7 [1,2]",
                          "0 {\"user\":\"x\",\"text\":\"y\"}", "9 {\"user\":1,\"text\":\"y\"}", "12 {broken"}) {
    raw.send(resp({"PUBLISH", channel, bad}));
    std::string reply = raw.line(5s).value_or("<nothing>");  // ":N": N subscribers got it
    ASSERT_TRUE(reply.size() >= 2 && reply[0] == ':') << "PUBLISH answered " << reply;
    EXPECT_GE(std::stol(reply.substr(1)), 1) << "nobody was subscribed when '" << bad << "' was published";
  }
  EXPECT_TRUE(a.process.wait_for_err_line("malformed message on " + channel + " ignored", 5s)) << a.process.err();
  alice.send(json{{"type", "message"}, {"room", "hall"}, {"text", "still here"}}.dump() + "\n");
  std::vector<json> got = messages(alice, 1);
  ASSERT_EQ(got.size(), 1u) << a.process.err();
  EXPECT_EQ(said(got[0]), "alice:still here") << "nothing of the garbage reached a member";
  EXPECT_EQ(a.process.wait(std::chrono::milliseconds(0)), std::nullopt) << "the node is alive";
}

// A Redis that stops answering (a partition, a stopped process) without closing anything. What
// docs/PROTOCOL.md promises: what was sent to Redis and has not come back within 4 s (checked 4
// times a second) is delivered on its own node, in order, once; until Redis answers again (a
// connection the frozen Redis's kernel accepts is not an answer) messages are delivered on their
// node at once; after SIGCONT the nodes are connected again within the 2 s backoff and traffic
// crosses nodes again.
TEST(RedisBackplane, AFrozenRedisDeliversLocallyWhatWasSentAndRecovers) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "2"));
  wait_connected(a);
  wait_connected(b);
  Member alice(a.port, "alice", "hall"), amy(a.port, "amy", "hall"), bob(b.port, "bob", "hall");
  say(alice, "before");
  ASSERT_EQ(said_all(messages(bob, 1)), std::vector<std::string>{"alice:before"});
  ASSERT_EQ(said_all(messages(amy, 1)), std::vector<std::string>{"alice:before"});
  ASSERT_EQ(said_all(messages(alice, 1)), std::vector<std::string>{"alice:before"});

  ASSERT_EQ(::kill(redis.process->pid(), SIGSTOP), 0);
  auto stopped = Clock::now();
  say(alice, "m1");
  say(alice, "m2");
  say(alice, "m3");
  const std::vector<std::string> in_flight{"alice:m1", "alice:m2", "alice:m3"};
  ASSERT_TRUE(a.process.wait_for_err_line("no answer", 20s)) << a.process.err();
  EXPECT_LT(seconds_since(stopped), 4.25 + 3.0) << "detected within the documented 4.25 s (plus a margin)";
  EXPECT_EQ(said_all(messages(amy, 3, 3s)), in_flight) << "sent before the outage was noticed: delivered here";
  EXPECT_EQ(said_all(messages(alice, 3, 3s)), in_flight) << "the sender's own copies";
  ASSERT_TRUE(b.process.wait_for_err_line("no answer", 10s)) << b.process.err();

  // Redis is still stopped, and the nodes try again (their kernel-accepted connections get no
  // answer): each message is delivered on its node at once, for several seconds.
  std::vector<std::string> during;
  for (int i = 0; i < 8; ++i) {
    std::string text = "d" + std::to_string(i);
    auto sent = Clock::now();
    say(alice, text);
    during.push_back("alice:" + text);
    EXPECT_EQ(said_all(messages(amy, 1, 2s)), std::vector<std::string>{during.back()});
    EXPECT_LT(seconds_since(sent), 1.5) << text << " waited for the stopped Redis";
    EXPECT_EQ(said_all(messages(alice, 1, 2s)), std::vector<std::string>{during.back()});
    say(bob, "b" + std::to_string(i));
    EXPECT_EQ(said_all(messages(bob, 1, 2s)), std::vector<std::string>{"bob:b" + std::to_string(i)});
    std::this_thread::sleep_for(600ms);  // the outage goes on: spread the messages over 5 s
  }
  std::string stats = stats_of(a.process);
  EXPECT_EQ(stats_field(stats, "redis"), "down") << stats;
  EXPECT_EQ(a.process.err().find("connected again"), std::string::npos) << "up while Redis is stopped: " << a.process.err();

  ASSERT_EQ(::kill(redis.process->pid(), SIGCONT), 0);
  auto resumed = Clock::now();
  ASSERT_TRUE(a.process.wait_for_err_line("connected again", 20s)) << a.process.err();
  ASSERT_TRUE(b.process.wait_for_err_line("connected again", 20s)) << b.process.err();
  EXPECT_LT(seconds_since(resumed), 2.0 + 3.0) << "the backoff is at most 2 s (plus a margin)";
  EXPECT_EQ(stats_field(stats_of(a.process), "redis"), "up");
  say(alice, "after");
  EXPECT_EQ(said_all(messages(bob, 1)), std::vector<std::string>{"alice:after"});
  EXPECT_EQ(said_all(messages(amy, 1)), std::vector<std::string>{"alice:after"});
  EXPECT_EQ(said_all(messages(alice, 1)), std::vector<std::string>{"alice:after"});
  say(bob, "bob after");
  EXPECT_EQ(said_all(messages(amy, 1)), std::vector<std::string>{"bob:bob after"});
  EXPECT_EQ(said_all(messages(bob, 1)), std::vector<std::string>{"bob:bob after"});
  EXPECT_EQ(said_all(messages(alice, 1)), std::vector<std::string>{"bob:bob after"});
  for (LineClient* m : std::initializer_list<LineClient*>{&alice, &amy, &bob}) EXPECT_TRUE(nothing_more(*m));
}

// One member floods its room while Redis is stopped: what waits for Redis is bounded (8 MiB as
// counted), the rest is delivered on this node at once (counted as overflow, logged at most once
// per 10 s), and every message reaches the room's members here exactly once. The flooder spends
// much of the flood held back by the server (the work between reactors is over its bound), and
// most of its reads end in the middle of a frame: neither is a frame left unfinished, and a short
// --frame-timeout-ms must not close it (the release programs run with 200 ms; the sanitized ones,
// several times slower, with the default).
TEST(RedisBackplane, AFloodWhileRedisIsFrozenStaysBoundedAndIsDeliveredHere) {
  RedisServer redis;
  std::vector<std::string> args = node(redis, "1");
  if (!testproc::programs_under_sanitizer()) args.insert(args.end(), {"--frame-timeout-ms", "200"});
  Server a(args);
  wait_connected(a);
  Member flooder(a.port, "flood", "hall"), amy(a.port, "amy", "hall");
  // Under a sanitizer the programs are 10x slower and memory figures say nothing: fewer messages.
  const int kMessages = testproc::programs_under_sanitizer() ? 10000 : 50000;
  const std::string padding(1000, 'x');
  long before_kib = testproc::rss_kib(a.process.pid());
  ASSERT_EQ(::kill(redis.process->pid(), SIGSTOP), 0);

  // Both members read everything they get, on their own threads, counting each message.
  struct Reader {
    std::vector<int> seen;
    int total = 0;
    std::thread thread;
  };
  auto read_all = [kMessages](int fd, Reader* r) {
    std::string buffer;
    char chunk[65536];
    auto deadline = Clock::now() + 60s;
    while (r->total < kMessages && Clock::now() < deadline) {
      timeval tv{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n == 0) return;
      if (n < 0) continue;
      buffer.append(chunk, static_cast<size_t>(n));
      size_t start = 0;
      for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
        size_t at = buffer.find("\"text\":\"f", start);
        if (at == std::string::npos || at > nl) continue;
        int i = std::atoi(buffer.c_str() + at + 9);
        if (i >= 0 && i < kMessages) ++r->seen[i];
        ++r->total;
      }
      buffer.erase(0, start);
    }
  };
  Reader from_flooder, from_amy;
  from_flooder.seen.assign(kMessages, 0);
  from_amy.seen.assign(kMessages, 0);
  from_flooder.thread = std::thread(read_all, flooder.fd(), &from_flooder);
  from_amy.thread = std::thread(read_all, amy.fd(), &from_amy);
  std::string batch;
  for (int i = 0; i < kMessages; ++i) {
    batch += json{{"type", "message"}, {"room", "hall"}, {"text", "f" + std::to_string(i) + " " + padding}}.dump() + "\n";
    if (batch.size() > 256 * 1024 || i + 1 == kMessages) {
      flooder.send(batch);
      batch.clear();
    }
  }
  from_flooder.thread.join();
  from_amy.thread.join();
  long peak_kib = testproc::peak_rss_kib(a.process.pid());
  std::string stats = redis_part(stats_of(a.process));
  ::kill(redis.process->pid(), SIGCONT);

  for (Reader* r : {&from_flooder, &from_amy}) {
    EXPECT_EQ(r->total, kMessages) << "delivered here, Redis being stopped";
    EXPECT_EQ(std::count(r->seen.begin(), r->seen.end(), 1), kMessages) << "each exactly once";
  }
  EXPECT_EQ(counter(stats, "local_only"), kMessages) << stats;
  if (!testproc::programs_under_sanitizer()) {
    // 50 MB of messages went through; before the bound, each waited for Redis (~120 MB held).
    EXPECT_LT(peak_kib - before_kib, 48 * 1024) << "peak " << peak_kib << " KiB, before " << before_kib << " KiB";
    EXPECT_GT(counter(stats, "overflow"), 0) << stats;
    EXPECT_GE(count_of(a.process.err(), "already wait for Redis"), 1u) << a.process.err();
  }
  EXPECT_LE(count_of(a.process.err(), "already wait for Redis"), 2u) << "rate-limited";
}

// --redis to a Redis that does not answer: the node starts (one warning) and says so in its
// listening line and its SIGUSR1 stats; a stopped Redis's kernel accepting the connection is not up.
TEST(RedisBackplane, ARedisThatDoesNotAnswerAtStartUpIsVisible) {
  int port = free_port();  // nothing listens there
  Server a(redistest::node_args({"--redis", "redis://127.0.0.1:" + std::to_string(port), "--threads", "2"}));
  EXPECT_NE(a.process.out().find("redis 127.0.0.1:" + std::to_string(port) + " connecting"), std::string::npos)
      << a.process.out();
  ASSERT_TRUE(a.process.wait_for_err_line("serving this node's members only", 10s)) << a.process.err();
  std::string stats;
  for (int i = 0; i < 50 && counter(stats, "outages") < 4; ++i) {  // retries go on
    a.process.wait_for_err_line("\x01never", 200ms);
    stats = redis_part(stats_of(a.process));
  }
  EXPECT_EQ(stats_field(stats, "redis"), "down") << stats;
  EXPECT_GE(counter(stats, "outages"), 4) << stats;
  EXPECT_EQ(count_of(a.process.err(), " warn "), 1u) << "one warning, not one per retry";
  Member alice(a.port, "alice", "hall"), amy(a.port, "amy", "hall");
  ASSERT_EQ(alice.joined["type"], "joined");
  say(alice, "alone");
  EXPECT_EQ(said_all(messages(amy, 1, 5s)), std::vector<std::string>{"alice:alone"});
  EXPECT_EQ(counter(redis_part(stats_of(a.process)), "local_only"), 1);

  RedisServer redis;
  ASSERT_EQ(::kill(redis.process->pid(), SIGSTOP), 0);
  Server b(node(redis, "1"));
  EXPECT_NE(b.process.out().find("redis 127.0.0.1:" + std::to_string(redis.port) + " connecting"), std::string::npos)
      << b.process.out();
  EXPECT_EQ(stats_field(stats_of(b.process), "redis"), "connecting") << "TCP is connected, Redis has not answered";
  ASSERT_TRUE(b.process.wait_for_err_line("no answer within 4 s", 10s)) << b.process.err();
  EXPECT_EQ(stats_field(stats_of(b.process), "redis"), "down");
  ::kill(redis.process->pid(), SIGCONT);
  ASSERT_TRUE(b.process.wait_for_err_line("connected again", 10s)) << b.process.err();
  EXPECT_EQ(stats_field(stats_of(b.process), "redis"), "up");
}

// SIGUSR1 with --redis: every field, counting what happened.
TEST(RedisBackplane, StatsCountWhatTheBackplaneDid) {
  RedisServer redis;
  Server a(node(redis, "2"));
  wait_connected(a);
  Member alice(a.port, "alice", "hall"), amy(a.port, "amy", "hall");
  for (const char* t : {"one", "two", "three"}) say(alice, t);
  EXPECT_EQ(messages(amy, 3).size(), 3u);
  EXPECT_EQ(messages(alice, 3).size(), 3u);
  EXPECT_TRUE(nothing_more(alice));  // the pong: everything published before has come back
  std::string stats = redis_part(stats_of(a.process));
  EXPECT_EQ(stats_field(stats, "redis"), "up") << stats;
  EXPECT_EQ(counter(stats, "published"), 3) << stats;
  EXPECT_EQ(counter(stats, "received"), 3) << stats;
  EXPECT_EQ(counter(stats, "local_only"), 0) << stats;
  EXPECT_EQ(counter(stats, "refused"), 0) << stats;
  EXPECT_EQ(counter(stats, "overflow"), 0) << stats;
  EXPECT_EQ(counter(stats, "waiting_bytes"), 0) << stats;
  EXPECT_EQ(counter(stats, "outages"), 0) << stats;
}

// A publish Redis refuses (here: out of memory) is delivered on the sender's node only.
TEST(RedisBackplane, APublishRedisRefusesIsDeliveredOnTheSendersNodeOnly) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "1"));
  wait_connected(a);
  wait_connected(b);
  Member alice(a.port, "alice", "hall"), amy(a.port, "amy", "hall"), bob(b.port, "bob", "hall");
  LineClient raw(redis.port);
  ASSERT_EQ(redis_do(raw, {"CONFIG", "SET", "maxmemory-policy", "noeviction"}), "+OK");
  ASSERT_EQ(redis_do(raw, {"CONFIG", "SET", "maxmemory", "1"}), "+OK");
  say(alice, "refused");
  EXPECT_EQ(said_all(messages(amy, 1, 5s)), std::vector<std::string>{"alice:refused"});
  EXPECT_EQ(said_all(messages(alice, 1, 5s)), std::vector<std::string>{"alice:refused"});
  EXPECT_TRUE(a.process.wait_for_err_line("publish refused", 5s)) << a.process.err();
  std::string stats = redis_part(stats_of(a.process));
  EXPECT_EQ(counter(stats, "refused"), 1) << stats;
  EXPECT_EQ(counter(stats, "local_only"), 1) << stats;
  EXPECT_EQ(counter(stats, "outages"), 0) << stats;
  ASSERT_EQ(redis_do(raw, {"CONFIG", "SET", "maxmemory", "0"}), "+OK");
  say(alice, "accepted");
  EXPECT_EQ(said_all(messages(bob, 1)), std::vector<std::string>{"alice:accepted"}) << "the refused one never left";
  EXPECT_EQ(said_all(messages(amy, 1)), std::vector<std::string>{"alice:accepted"});
  EXPECT_EQ(said_all(messages(alice, 1)), std::vector<std::string>{"alice:accepted"});
  for (LineClient* m : std::initializer_list<LineClient*>{&alice, &amy, &bob}) EXPECT_TRUE(nothing_more(*m));
}

// The reconnection backoff: 100 ms, doubling, at most 2 s. A listener that accepts and closes at
// once stands in for a Redis that keeps dropping the node.
TEST(RedisBackplane, ReconnectionBacksOffFrom100MsTo2S) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 64), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  // 100 + 200 + 400 + 800 + 1600 + 2000 + 2000 ms between the first eight attempts (7.1 s).
  const std::vector<int> expected_ms{100, 200, 400, 800, 1600, 2000, 2000};
  // The acceptor's clock times the attempts: an attempt is two connections (pub and sub) made
  // together, so a connection more than 50 ms after the attempt's first begins the next one.
  std::mutex mu;
  std::condition_variable seen;
  std::vector<Clock::time_point> attempts;
  size_t connections = 0;
  std::atomic<bool> stop{false};
  std::thread acceptor([&] {
    timeval tv{0, 100000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!stop) {
      int c = ::accept(fd, nullptr, nullptr);
      if (c < 0) continue;
      auto t = Clock::now();
      ::close(c);
      std::lock_guard lock(mu);
      ++connections;
      if (attempts.empty() || t - attempts.back() > 50ms) attempts.push_back(t);
      seen.notify_all();
    }
  });
  {
    Server a(redistest::node_args({"--redis", "redis://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)), "--threads", "1"}));
    // Until the acceptor has seen the attempt that ends the last expected gap (7.1 s after the
    // first; the deadline is only for a node that stops trying).
    std::unique_lock lock(mu);
    seen.wait_for(lock, 30s, [&] { return attempts.size() >= expected_ms.size() + 1; });
  }
  stop = true;
  acceptor.join();
  ::close(fd);
  ASSERT_GE(attempts.size(), expected_ms.size() + 1) << connections << " connections";
  for (size_t i = 0; i < expected_ms.size(); ++i) {
    auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(attempts[i + 1] - attempts[i]).count();
    EXPECT_GE(gap, expected_ms[i] - 30) << "attempt " << i + 1;
    EXPECT_LE(gap, expected_ms[i] + 600) << "attempt " << i + 1 << " (a loaded machine's margin)";
  }
}

// A room's channel stays subscribed for 5 s after the node's last member left (a room that empties
// and fills again costs no UNSUBSCRIBE/SUBSCRIBE pair), then is unsubscribed (within 6 s).
TEST(RedisBackplane, AnEmptyRoomIsUnsubscribedAfterFiveSeconds) {
  RedisServer redis;
  Server a(node(redis, "2"));
  wait_connected(a);
  LineClient raw(redis.port);
  const std::string channel = "reactor-chat:room:hall";
  Member alice(a.port, "alice", "hall");
  ASSERT_EQ(alice.joined["type"], "joined");
  EXPECT_EQ(numsub(raw, channel), 1) << "joined: the node is subscribed";
  EXPECT_EQ(alice.request({{"type", "leave"}, {"room", "hall"}})["type"], "left");
  auto left = Clock::now();
  double unsubscribed_after = -1;
  while (seconds_since(left) < 15) {
    long n = numsub(raw, channel);
    ASSERT_GE(n, 0);
    if (n == 0) {
      unsubscribed_after = seconds_since(left);
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_GE(unsubscribed_after, 4.8) << "stays subscribed for 5 s";
  EXPECT_LE(unsubscribed_after, 6.0 + 2.0) << "unsubscribed within 6 s (plus a margin)";
}

TEST(RedisBackplane, WorkersShareOnePortAndOneRoom) {
  RedisServer redis;
  Server workers(redistest::node_args({"--workers", "2", "--threads", "1", "--redis", redis.url()}));
  ASSERT_TRUE(workers.process.wait_for_line("chat-server: listening on", 20s)) << "the second worker";
  std::vector<std::unique_ptr<Member>> members;
  for (int i = 0; i < 40; ++i) {
    members.push_back(std::make_unique<Member>(workers.port, "w" + std::to_string(i), "hall"));
    ASSERT_EQ(members.back()->joined["type"], "joined");
  }
  members[0]->send(json{{"type", "message"}, {"room", "hall"}, {"text", "to all"}}.dump() + "\n");
  for (auto& m : members) {
    std::vector<json> got = messages(*m, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(said(got[0]), "w0:to all");
  }
  // Both workers took connections (40 connections all hashed to one: 2^-39).
  ::kill(workers.process.pid(), SIGUSR1);
  std::string first = workers.process.wait_for_err_line("stats:", 10s).value_or("");
  std::string second = workers.process.wait_for_err_line("stats:", 10s).value_or("");
  EXPECT_GT(counter(first, "accepted"), 0) << first;
  EXPECT_GT(counter(second, "accepted"), 0) << second;
  EXPECT_EQ(counter(first, "accepted") + counter(second, "accepted"), 40);

  auto status = workers.process.signal_and_wait(SIGTERM, 20s);
  ASSERT_TRUE(status.has_value()) << "the supervisor did not stop";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << workers.process.err();
}

TEST(RedisBackplane, WorkersWithoutRedisIsOneLineAndExitTwo) {
  Process p({CHAT_SERVER_BIN, "--workers", "2"});
  auto status = p.wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(p.err().find("--workers needs --redis"), std::string::npos) << p.err();
  Process q({CHAT_SERVER_BIN, "--redis", "http://x"});
  status = q.wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_EQ(std::count(q.err().begin(), q.err().end(), '\n'), 1) << q.err();
}

// ---- History in Redis Streams (docs/PROTOCOL.md, "Several nodes") -------------------------------

namespace {

json say_with_id(LineClient& m, const std::string& text, const std::string& id, const std::string& room = "hall") {
  json j{{"type", "message"}, {"room", room}, {"text", text}, {"id", id}};
  m.send(j.dump() + "\n");
  return j;
}

json history(Native& m, const std::string& room, size_t limit, uint64_t before = 0) {
  json req{{"type", "history"}, {"room", room}, {"limit", limit}};
  if (before != 0) req["before"] = before;
  m.send(req.dump() + "\n");
  for (;;) {  // presence and messages may come first
    json j = next_json(m);
    std::string type = j.value("type", "");
    if (type == "history" || type == "error" || type == "<nothing>") return j;
  }
}

json join_since(Native& m, const std::string& room, uint64_t since, const std::string& epoch) {
  m.send(json{{"type", "join"}, {"room", room}, {"since", since}, {"epoch", epoch}}.dump() + "\n");
  return expect_type(m, "joined");
}

std::vector<uint64_t> seqs_of(const std::vector<json>& got) {
  std::vector<uint64_t> out;
  for (const json& m : got) out.push_back(m.value("seq", uint64_t{0}));
  return out;
}

std::vector<uint64_t> range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> out;
  for (uint64_t s = first; s <= last; ++s) out.push_back(s);
  return out;
}

}  // namespace

// A message with an id is acknowledged with its number once Redis has it, after the sender's own
// copy; every copy carries the id. The same (room, user, id) sent again through another node is
// recognised by Redis: the same ack, and nobody receives it twice.
TEST(RedisHistory, AnIdIsAckedOnceStoredARetryThroughAnotherNodeGetsTheSameAnswerAnotherTextIsRefused) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "2"));
  wait_connected(a);
  wait_connected(b);
  auto alice = std::make_unique<Member>(a.port, "alice", "hall");
  Member bob(b.port, "bob", "hall");
  say_with_id(*alice, "hello", "m-1");
  std::vector<json> own = messages(*alice, 1);
  ASSERT_EQ(own.size(), 1u);
  EXPECT_EQ(own[0].value("id", ""), "m-1") << own[0];
  uint64_t seq = own[0].value("seq", uint64_t{0});
  ASSERT_GT(seq, 0u);
  json ack = expect_type(*alice, "ack");
  EXPECT_EQ(ack, (json{{"type", "ack"}, {"room", "hall"}, {"id", "m-1"}, {"seq", seq}}));
  std::vector<json> copy = messages(bob, 1);
  ASSERT_EQ(copy.size(), 1u);
  EXPECT_EQ(copy[0].value("id", ""), "m-1");
  EXPECT_EQ(copy[0].value("seq", uint64_t{0}), seq);

  // Alice's connection breaks before she saw the ack (as far as her client knows); she retries
  // through node B.
  alice.reset();
  Member again(b.port, "alice", "hall");
  say_with_id(again, "hello", "m-1");
  std::vector<json> skipped;
  json ack2 = expect_type(again, "ack", &skipped);
  EXPECT_EQ(ack2, ack) << "the same answer, the same number";
  for (const json& j : skipped) EXPECT_NE(j.value("type", ""), "message") << "delivered again: " << j;
  say_with_id(again, "next", "m-2");
  std::vector<json> next = messages(bob, 1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(said(next[0]), "alice:next") << "bob got the retry: " << next[0];
  EXPECT_EQ(next[0].value("seq", uint64_t{0}), seq + 1);
  EXPECT_EQ(expect_type(again, "ack").value("seq", uint64_t{0}), seq + 1);
  // Another text under a used id: refused (by Redis, which remembers the id for every node), naming
  // the id; no one gets it.
  say_with_id(again, "DIFFERENT", "m-1");
  std::vector<json> before;
  json refused = expect_type(again, "error", &before);
  EXPECT_EQ(refused.value("code", ""), "id_reused") << refused;
  EXPECT_EQ(refused.value("id", ""), "m-1") << refused;
  for (const json& j : before) EXPECT_NE(j.value("type", ""), "message") << "delivered: " << j;
  EXPECT_TRUE(nothing_more(bob));
  EXPECT_EQ(counter(redis_part(stats_of(b.process)), "duplicates"), 2);
}

// One history for every node: what was said on node A is in `joined.seq` and `history` on node B,
// which had no member in the room meanwhile (so saw none of it live).
TEST(RedisHistory, HistoryWrittenOnOneNodeIsReadOnAnother) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "2"));
  wait_connected(a);
  wait_connected(b);
  Member alice(a.port, "alice", "hall");
  for (int i = 1; i <= 5; ++i) say_with_id(alice, "t" + std::to_string(i), "id" + std::to_string(i));
  ASSERT_EQ(seqs_of(messages(alice, 5)), range(1, 5));
  Member bob(b.port, "bob", "hall");
  ASSERT_EQ(bob.joined.value("type", ""), "joined") << bob.joined;
  EXPECT_EQ(bob.joined.value("seq", uint64_t{0}), 5u) << "the room's last number, from Redis: " << bob.joined;
  EXPECT_EQ(bob.joined.value("epoch", ""), alice.joined.value("epoch", "")) << "one epoch for every node";
  json newest = history(bob, "hall", 3);
  ASSERT_EQ(newest.value("type", ""), "history") << newest;
  EXPECT_EQ(newest["epoch"], alice.joined["epoch"]);
  std::vector<json> got = newest["messages"].get<std::vector<json>>();
  EXPECT_EQ(seqs_of(got), range(3, 5)) << newest;
  EXPECT_EQ(said_all(got), (std::vector<std::string>{"alice:t3", "alice:t4", "alice:t5"}));
  for (const json& m : got) EXPECT_EQ(m.value("id", ""), "id" + std::to_string(m["seq"].get<int>()));
  json older = history(bob, "hall", 50, 3);
  EXPECT_EQ(seqs_of(older["messages"].get<std::vector<json>>()), range(1, 2)) << older;
}

// A member of node B leaves; while a member of node A keeps publishing, it comes back on node A
// with since/epoch: every message after `since` once, in order, the replay then the live ones.
TEST(RedisHistory, AMemberRecoversOnAnotherNodeWhileSomeoneKeepsPublishing) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "2"));
  wait_connected(a);
  wait_connected(b);
  Member speaker(a.port, "speaker", "hall");
  auto listener = std::make_unique<Member>(b.port, "listener", "hall");
  std::string epoch = listener->joined.value("epoch", "");
  constexpr int kFirst = 20, kBatches = 30, kBatch = 10;
  for (int i = 0; i < kFirst; ++i) say(speaker, "f" + std::to_string(i));
  ASSERT_EQ(messages(speaker, kFirst).size(), size_t{kFirst});
  std::vector<json> first = messages(*listener, kFirst);
  ASSERT_EQ(seqs_of(first), range(1, kFirst));
  listener.reset();  // gone (its node has no member in the room now)

  // The speaker goes on, a batch at a time, each once its copies came back.
  std::mutex mutex;
  std::condition_variable progress;
  int batches = 0;
  bool spoke = true;
  std::thread speaking([&] {
    for (int b = 0; b < kBatches; ++b) {
      std::string batch;
      for (int i = 0; i < kBatch; ++i) {
        batch += json{{"type", "message"}, {"room", "hall"}, {"text", "s" + std::to_string(b * kBatch + i)}}.dump() + "\n";
      }
      speaker.send(batch);
      bool ok = messages(speaker, kBatch).size() == size_t{kBatch};
      std::lock_guard<std::mutex> lock(mutex);
      spoke = spoke && ok;
      ++batches;
      progress.notify_all();
    }
  });
  // Once a few batches were said, the listener comes back, on node A, as the speaker goes on.
  Native back(a.port, "listener");
  {
    std::unique_lock<std::mutex> lock(mutex);
    progress.wait(lock, [&] { return batches >= 3; });
  }
  json joined = join_since(back, "hall", kFirst, epoch);
  int batches_at_join;
  {
    std::lock_guard<std::mutex> lock(mutex);
    batches_at_join = batches;
  }
  speaking.join();
  ASSERT_TRUE(spoke) << "the speaker's own copies";
  EXPECT_LT(batches_at_join, kBatches) << "the speaker was done before the listener was back: nothing concurrent";
  EXPECT_EQ(joined.value("recovered", false), true) << joined;
  EXPECT_EQ(joined.value("epoch", ""), epoch);
  constexpr int kLast = kFirst + kBatches * kBatch;
  std::vector<json> got = messages(back, kLast - kFirst);
  EXPECT_EQ(seqs_of(got), range(kFirst + 1, kLast)) << "no gap, no duplicate";
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].value("text", ""), "s" + std::to_string(i));
  EXPECT_TRUE(nothing_more(back));
}

// Redis restarted without persistence lost every room's history: a new epoch, and a member that
// comes back with the old one is told it was not recovered.
TEST(RedisHistory, ARedisThatLostItsDataHasANewEpoch) {
  RedisServer redis;
  Server a(node(redis, "2"));
  wait_connected(a);
  Member alice(a.port, "alice", "hall");
  std::string old_epoch = alice.joined.value("epoch", "");
  ASSERT_FALSE(old_epoch.empty());
  say(alice, "before");
  ASSERT_EQ(seqs_of(messages(alice, 1)), range(1, 1));
  json h = history(alice, "hall", 10);
  ASSERT_EQ(h["epoch"], old_epoch) << h;
  ASSERT_EQ(h["messages"].size(), 1u) << h;

  redis.kill();
  redis.start();  // the same port, nothing kept
  ASSERT_TRUE(a.process.wait_for_err_line("connected again", 20s)) << a.process.err();
  Native bob(a.port, "bob");
  json joined = join_since(bob, "hall", 1, old_epoch);
  EXPECT_EQ(joined.value("recovered", true), false) << joined;
  std::string new_epoch = joined.value("epoch", "");
  EXPECT_FALSE(new_epoch.empty());
  EXPECT_NE(new_epoch, old_epoch) << joined;
  json after = history(bob, "hall", 10);
  EXPECT_EQ(after.value("epoch", ""), new_epoch) << after;
  EXPECT_EQ(after["messages"], json::array()) << "the lost history is not claimed: " << after;
  say(bob, "after");
  std::vector<json> got = messages(alice, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_GT(got[0].value("seq", uint64_t{0}), 1u) << "this node's numbers keep rising";
  EXPECT_EQ(history(alice, "hall", 10)["messages"].size(), 1u) << "the new epoch's history";
}

// Redis away: live chat goes on on each node, a message with an id is answered not_stored (after
// its copy), and a history request is answered unavailable. Once Redis is back, the same id can be
// sent again and is stored.
TEST(RedisHistory, WhileRedisIsAwayAnIdIsNotStoredAndHistoryIsUnavailable) {
  RedisServer redis;
  Server a(node(redis, "2"));
  wait_connected(a);
  Member alice(a.port, "alice", "hall"), amy(a.port, "amy", "hall");
  redis.kill();
  ASSERT_TRUE(a.process.wait_for_err_line("serving this node's members only", 10s)) << a.process.err();
  say_with_id(alice, "during", "d-1");
  std::vector<json> live = messages(amy, 1, 5s);
  ASSERT_EQ(said_all(live), std::vector<std::string>{"alice:during"});
  EXPECT_EQ(live[0].value("id", ""), "d-1");
  ASSERT_EQ(said_all(messages(alice, 1, 5s)), std::vector<std::string>{"alice:during"});
  json answer = next_json(alice);
  EXPECT_EQ(answer.value("type", ""), "error") << answer;
  EXPECT_EQ(answer.value("code", ""), "not_stored") << answer;
  EXPECT_EQ(answer.value("id", ""), "d-1") << answer;
  json h = history(alice, "hall", 10);
  EXPECT_EQ(h.value("type", ""), "error") << h;
  EXPECT_EQ(h.value("code", ""), "unavailable") << h;
  EXPECT_EQ(h.value("room", ""), "hall") << h;

  redis.start();
  ASSERT_TRUE(a.process.wait_for_err_line("connected again", 20s)) << a.process.err();
  say_with_id(alice, "during", "d-1");
  std::vector<json> stored = messages(alice, 1);
  ASSERT_EQ(stored.size(), 1u);
  json ack = expect_type(alice, "ack");
  EXPECT_EQ(ack.value("id", ""), "d-1") << ack;
  EXPECT_EQ(ack.value("seq", uint64_t{0}), stored[0].value("seq", uint64_t{0})) << ack;
  json now = history(alice, "hall", 10);
  ASSERT_EQ(now.value("type", ""), "history") << now;
  EXPECT_EQ(seqs_of(now["messages"].get<std::vector<json>>()), std::vector<uint64_t>{ack["seq"].get<uint64_t>()})
      << "only what Redis kept: " << now;
}

// Through an outage that starts and ends while two nodes' members pipeline messages with ids (Redis
// killed, then frozen), every id gets exactly one answer, and it is `ack` or `not_stored`: never
// another error, never none, never two.
TEST(RedisHistory, ThroughOutagesEveryIdOnEveryNodeIsAnsweredOnceAckOrNotStored) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "1"));
  wait_connected(a);
  wait_connected(b);
  Member ann(a.port, "ann", "hall"), bob(b.port, "bob", "hall");
  std::map<std::string, std::vector<std::string>> answers;  // id -> the answers it got ("ack", or the error code)
  int sent = 0;
  auto burst = [&](int n) {
    std::string to_ann, to_bob;
    for (int i = 0; i < n; ++i, ++sent) {
      std::string k = std::to_string(sent);
      to_ann += json{{"type", "message"}, {"room", "hall"}, {"text", "a" + k}, {"id", "a" + k}}.dump() + "\n";
      to_bob += json{{"type", "message"}, {"room", "hall"}, {"text", "b" + k}, {"id", "b" + k}}.dump() + "\n";
    }
    ann.send(to_ann);
    bob.send(to_bob);
  };
  // Reads both members' answers until every id sent so far has one (or nothing comes for 20 s).
  auto answered = [&] {
    for (Member* m : {&ann, &bob}) {
      char side = m == &ann ? 'a' : 'b';
      auto done = [&] {
        for (int i = 0; i < sent; ++i) {
          if (!answers.contains(side + std::to_string(i))) return false;
        }
        return true;
      };
      while (!done()) {
        json j = next_json(*m, 20s);
        std::string type = j.value("type", "");
        if (type == "<nothing>") return;
        if (type == "ack") answers[j.value("id", "")].push_back("ack");
        if (type == "error") answers[j.value("id", "<no id>")].push_back(j.value("code", "") + " " + j.dump());
      }
    }
  };
  burst(100);
  answered();
  // Killed while a burst is on its way.
  burst(100);
  redis.kill();
  for (Server* s : {&a, &b}) ASSERT_TRUE(s->process.wait_for_err_line("serving this node's members only", 10s)) << s->process.err();
  burst(100);
  answered();
  redis.start();
  for (Server* s : {&a, &b}) ASSERT_TRUE(s->process.wait_for_err_line("connected again", 20s)) << s->process.err();
  burst(100);
  // Frozen while a burst is on its way: away once silent for the limit.
  ASSERT_EQ(::kill(redis.process->pid(), SIGSTOP), 0);
  burst(100);
  answered();
  ASSERT_EQ(::kill(redis.process->pid(), SIGCONT), 0);
  for (Server* s : {&a, &b}) ASSERT_TRUE(s->process.wait_for_err_line("connected again", 20s)) << s->process.err();
  burst(50);
  answered();

  std::map<std::string, int> kinds;
  for (int i = 0; i < sent; ++i) {
    for (const char* side : {"a", "b"}) {
      std::string id = side + std::to_string(i);
      auto it = answers.find(id);
      ASSERT_NE(it, answers.end()) << id << " got no answer";
      ASSERT_EQ(it->second.size(), 1u) << id << " got " << it->second.size() << " answers: " << it->second[0] << ", " << it->second[1];
      const std::string& got = it->second[0];
      EXPECT_TRUE(got == "ack" || got.starts_with("not_stored ")) << id << ": " << got;
      ++kinds[got.substr(0, got.find(' '))];
    }
  }
  EXPECT_EQ(answers.count("<no id>"), 0u) << "an error without an id: " << answers["<no id>"][0];
  EXPECT_EQ(answers.size(), static_cast<size_t>(2 * sent)) << "answers for ids never sent";
  EXPECT_GT(kinds["ack"], 0);
  EXPECT_GT(kinds["not_stored"], 0) << "the outages never took effect";
}

// --history-messages bounds each room's stream; a member that missed more than was kept is told so.
TEST(RedisHistory, AStreamKeepsTheNewestMessagesOnly) {
  RedisServer redis;
  Server a(redistest::node_args({"--redis", redis.url(), "--threads", "2", "--history-messages", "3"}));
  wait_connected(a);
  Member alice(a.port, "alice", "hall");
  for (int i = 1; i <= 6; ++i) say(alice, "t" + std::to_string(i));
  ASSERT_EQ(seqs_of(messages(alice, 6)), range(1, 6));
  json h = history(alice, "hall", 100);
  EXPECT_EQ(seqs_of(h["messages"].get<std::vector<json>>()), range(4, 6)) << h;
  Native bob(a.port, "bob");
  EXPECT_EQ(join_since(bob, "hall", 1, alice.joined["epoch"]).value("recovered", true), false);
  Native carol(a.port, "carol");
  json joined = join_since(carol, "hall", 3, alice.joined["epoch"]);
  EXPECT_EQ(joined.value("recovered", false), true) << joined;
  EXPECT_EQ(seqs_of(messages(carol, 3)), range(4, 6));
}

// The --store rule with --redis.
TEST(RedisHistory, StoresThatCannotServeSeveralNodesAreOneLineAndExitTwo) {
  Process p({CHAT_SERVER_BIN, "--port", "0", "--redis", "redis://127.0.0.1:1", "--store", "memory"});
  auto status = p.wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(p.err().find("--store memory cannot be used with --redis"), std::string::npos) << p.err();
  EXPECT_EQ(std::count(p.err().begin(), p.err().end(), '\n'), 1) << p.err();
  Process q({CHAT_SERVER_BIN, "--port", "0", "--store", "redis"});
  status = q.wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(q.err().find("--store redis needs --redis"), std::string::npos) << q.err();
}

// ---- The sender's front end across nodes (docs/PROTOCOL.md, "IRC") ------------------------------

namespace {

// The IRC port a node printed (chattest::chat_args gives --irc-port 0), or -1.
int irc_port_of(Server& s) {
  auto line = s.process.wait_for_line("irc listening on", 20s);
  return line ? std::stoi(line->substr(line->rfind(':') + 1)) : -1;
}

// Redis's answer to a command that answers one bulk string ("$N", then the string), or "<nothing>".
std::string redis_string(LineClient& redis, std::initializer_list<std::string> args) {
  std::string head = redis_do(redis, args);
  if (head.empty() || head[0] != '$' || head == "$-1") return head.empty() ? "<nothing>" : head;
  std::string value = redis.line(5s).value_or("<nothing>");
  if (!value.empty() && value.back() == '\r') value.pop_back();
  return value;
}

// The field `field` of the entry `seq` of a room's stream ("(none)" if the entry has no such field).
std::string stream_field(LineClient& redis, const std::string& room, uint64_t seq, const std::string& field) {
  return redis_string(redis, {"EVAL",
                              "local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]\n"
                              "if not e then return '(no entry)' end\n"
                              "for i = 1, #e[2], 2 do if e[2][i] == ARGV[2] then return e[2][i + 1] end end\n"
                              "return '(none)'\n",
                              "1", "reactor-chat:history:" + room, std::to_string(seq), field});
}

}  // namespace

// A member of another front end shows on IRC as nick!nick@FRONT, on every node: the front end
// travels with the message through Redis (the published body), and is kept in the room's stream
// with it. A body without one (from a node of an older build) is a message of a front end not
// known (@chat); one with a front end that is not a name of ours is malformed, never an IRC line.
TEST(RedisBackplane, TheSendersFrontEndReachesIrcMembersOnOtherNodesAndIsKeptInTheStream) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "2"));
  wait_connected(a);
  wait_connected(b);
  int irc_a = irc_port_of(a), irc_b = irc_port_of(b);
  ASSERT_GT(irc_a, 0) << a.process.out();
  ASSERT_GT(irc_b, 0) << b.process.out();
  irctest::Irc kim(irc_b);
  ASSERT_TRUE(kim.registers("kim"));
  ASSERT_TRUE(kim.joins("#hall"));
  Member nat(a.port, "nat", "hall");
  irctest::Irc ike(irc_a);
  ASSERT_TRUE(ike.registers("ike"));
  ASSERT_TRUE(ike.joins("#hall"));

  say(nat, "from native");
  EXPECT_NE(kim.expect("^:nat!nat@native PRIVMSG #hall :from native$"), "") << testing::PrintToString(kim.seen);
  ike.say("PRIVMSG #hall :from irc");
  EXPECT_NE(kim.expect("^:ike!ike@irc PRIVMSG #hall :from irc$"), "") << testing::PrintToString(kim.seen);

  LineClient raw(redis.port);
  EXPECT_EQ(stream_field(raw, "hall", 1, "text"), "from native");
  EXPECT_EQ(stream_field(raw, "hall", 1, "front"), "native");
  EXPECT_EQ(stream_field(raw, "hall", 2, "front"), "irc");

  // What no node of this build sends: an older node's body, and bodies whose front end would make
  // another IRC line or a host that is not a name.
  for (const char* body : {R"(3 {"user":"mal","text":"injected","front":"x\r\nQUIT :gone"})",
                           R"(4 {"user":"mal","text":"spaced","front":"a b"})",
                           R"(5 {"user":"old","text":"from an older node","ts":1})"}) {
    EXPECT_EQ(redis_do(raw, {"PUBLISH", "reactor-chat:room:hall", body}), ":2") << "both nodes subscribed";
  }
  std::vector<std::string> before;
  std::string old;
  for (int i = 0; i < 50 && old.empty(); ++i) {
    auto l = kim.next(10s);
    if (!l) break;
    if (l->find("older node") != std::string::npos) old = *l;
    else before.push_back(*l);
  }
  EXPECT_EQ(old, ":old!old@chat PRIVMSG #hall :from an older node");
  EXPECT_FALSE(irctest::contains(before, "mal|QUIT|gone")) << testing::PrintToString(before);
  EXPECT_TRUE(b.process.wait_for_err_line("malformed message on reactor-chat:room:hall", 5s)) << b.process.err();
}

// A message Redis refuses is delivered on its sender's node only, and still with its front end.
TEST(RedisBackplane, AMessageDeliveredOnItsOwnNodeOnlyKeepsItsFrontEnd) {
  RedisServer redis;
  Server a(node(redis, "2"));
  wait_connected(a);
  int irc_a = irc_port_of(a);
  ASSERT_GT(irc_a, 0) << a.process.out();
  Member nat(a.port, "nat", "hall");
  irctest::Irc ike(irc_a);
  ASSERT_TRUE(ike.registers("ike"));
  ASSERT_TRUE(ike.joins("#hall"));
  LineClient raw(redis.port);
  ASSERT_EQ(redis_do(raw, {"CONFIG", "SET", "maxmemory-policy", "noeviction"}), "+OK");
  ASSERT_EQ(redis_do(raw, {"CONFIG", "SET", "maxmemory", "1"}), "+OK");
  say(nat, "refused by redis");
  EXPECT_NE(ike.expect("^:nat!nat@native PRIVMSG #hall :refused by redis$"), "") << testing::PrintToString(ike.seen);
  EXPECT_TRUE(a.process.wait_for_err_line("publish refused", 5s)) << a.process.err();
  EXPECT_EQ(counter(redis_part(stats_of(a.process)), "local_only"), 1);
}
