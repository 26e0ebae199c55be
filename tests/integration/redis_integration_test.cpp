// Several chat-server nodes joined through one redis-server on loopback (started by the tests).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chat_helpers.h"
#include "process.h"

using namespace chattest;
using testproc::Server;

namespace {

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A throwaway redis-server: no persistence, loopback only.
struct RedisServer {
  RedisServer() : port(free_port()) { start(); }
  void start() {
    process = std::make_unique<Process>(std::vector<std::string>{
        "redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"});
    if (!process->wait_for_line("Ready to accept connections", 20s)) {
      throw std::runtime_error("redis-server did not start: " + process->out() + process->err());
    }
  }
  void kill() {
    process->signal_and_wait(SIGKILL, 10s);
    process.reset();
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port); }
  int port;
  std::unique_ptr<Process> process;
};

std::vector<std::string> node(const RedisServer& redis, const std::string& threads) {
  return chat_args({"--redis", redis.url(), "--threads", threads});
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

// Messages `m` receives up to and including the first that `said` `what` (all of them if it never comes).
std::vector<json> until(LineClient& m, const std::string& what) {
  std::vector<json> seen;
  for (;;) {
    std::vector<json> one = messages(m, 1);
    if (one.empty()) return seen;
    seen.push_back(one[0]);
    if (said(one[0]) == what) return seen;
  }
}

bool contains(const std::vector<json>& seen, const std::string& what) {
  return std::any_of(seen.begin(), seen.end(), [&](const json& m) { return said(m) == what; });
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
  for (auto& m : members) {
    m->send(json{{"type", "ping"}}.dump() + "\n");
    EXPECT_EQ(expect_type(*m, "pong", nullptr)["type"], "pong");
  }
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

TEST(RedisBackplane, AfterRedisRestartsTheNodesResubscribeAndTrafficResumes) {
  RedisServer redis;
  Server a(node(redis, "2")), b(node(redis, "1"));
  Member alice(a.port, "alice", "hall"), bob(b.port, "bob", "hall");
  alice.send(json{{"type", "message"}, {"room", "hall"}, {"text", "before"}}.dump() + "\n");
  EXPECT_EQ(said(messages(bob, 1).at(0)), "alice:before");
  EXPECT_EQ(said(messages(alice, 1).at(0)), "alice:before");

  redis.kill();
  ASSERT_TRUE(a.process.wait_for_err_line("serving this node's members only", 10s)) << a.process.err();
  ASSERT_TRUE(b.process.wait_for_err_line("serving this node's members only", 10s)) << b.process.err();
  // Redis away: each node goes on serving its own members.
  alice.send(json{{"type", "message"}, {"room", "hall"}, {"text", "during"}}.dump() + "\n");
  json during = messages(alice, 1).at(0);
  EXPECT_EQ(said(during), "alice:during");
  EXPECT_GT(during["seq"].get<uint64_t>(), 1u);

  redis.start();
  ASSERT_TRUE(a.process.wait_for_err_line("connected again", 20s)) << a.process.err();
  ASSERT_TRUE(b.process.wait_for_err_line("connected again", 20s)) << b.process.err();
  // A member's own copy comes back through Redis only once its node has resubscribed.
  alice.send(json{{"type", "message"}, {"room", "hall"}, {"text", "alice back"}}.dump() + "\n");
  ASSERT_TRUE(contains(until(alice, "alice:alice back"), "alice:alice back"));
  bob.send(json{{"type", "message"}, {"room", "hall"}, {"text", "bob back"}}.dump() + "\n");
  std::vector<json> seen_by_bob = until(bob, "bob:bob back");
  ASSERT_TRUE(contains(seen_by_bob, "bob:bob back"));
  // Both nodes subscribed again: traffic flows both ways.
  alice.send(json{{"type", "message"}, {"room", "hall"}, {"text", "a2"}}.dump() + "\n");
  std::vector<json> more = until(bob, "alice:a2");
  seen_by_bob.insert(seen_by_bob.end(), more.begin(), more.end());
  EXPECT_TRUE(contains(seen_by_bob, "alice:a2")) << "alice's node to bob's";
  EXPECT_FALSE(contains(seen_by_bob, "alice:during")) << "what alice said during the outage stayed on her node";
  bob.send(json{{"type", "message"}, {"room", "hall"}, {"text", "b2"}}.dump() + "\n");
  std::vector<json> last = until(alice, "bob:b2");
  ASSERT_TRUE(contains(last, "bob:b2")) << "bob's node to alice's";
  EXPECT_GT(last.back()["seq"].get<uint64_t>(), during["seq"].get<uint64_t>()) << "numbers keep rising";
}

// A RESP command, as redis-cli would send it.
std::string resp(std::initializer_list<std::string> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

TEST(RedisBackplane, GarbageOnARoomsChannelIsIgnored) {
  RedisServer redis;
  Server a(node(redis, "2"));
  Member alice(a.port, "alice", "hall");
  LineClient raw(redis.port);
  for (const char* bad : {"1 {\"user\":\"x\",\"text\":\"y\",\"ts\":\"soon\"}", "not a number", "7 [1,2]",
                          "0 {\"user\":\"x\",\"text\":\"y\"}", "9 {\"user\":1,\"text\":\"y\"}", "12 {broken"}) {
    raw.send(resp({"PUBLISH", "reactor-chat:room:hall", bad}));
    ASSERT_TRUE(raw.line(5s).has_value());  // ":1": one subscriber got it
  }
  alice.send(json{{"type", "message"}, {"room", "hall"}, {"text", "still here"}}.dump() + "\n");
  std::vector<json> got = messages(alice, 1);
  ASSERT_EQ(got.size(), 1u) << a.process.err();
  EXPECT_EQ(said(got[0]), "alice:still here") << "nothing of the garbage reached a member";
  EXPECT_EQ(a.process.wait(std::chrono::milliseconds(0)), std::nullopt) << "the node is alive";
}

// A Redis that stops answering (a partition, a stopped process) without closing anything: the
// node notices within seconds and serves its own members.
TEST(RedisBackplane, ASilentRedisCountsAsAway) {
  RedisServer redis;
  Server a(node(redis, "1"));
  Member alice(a.port, "alice", "hall"), amy(a.port, "amy", "hall");
  ASSERT_EQ(::kill(redis.process->pid(), SIGSTOP), 0);
  ASSERT_TRUE(a.process.wait_for_err_line("no answer", 20s)) << a.process.err();
  alice.send(json{{"type", "message"}, {"room", "hall"}, {"text", "anyone?"}}.dump() + "\n");
  std::vector<json> got = messages(amy, 1);
  ::kill(redis.process->pid(), SIGCONT);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(said(got[0]), "alice:anyone?");
}

TEST(RedisBackplane, WorkersShareOnePortAndOneRoom) {
  RedisServer redis;
  Server workers(chat_args({"--workers", "2", "--threads", "1", "--redis", redis.url()}));
  ASSERT_TRUE(workers.process.wait_for_line("listening on", 20s)) << "the second worker";
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
