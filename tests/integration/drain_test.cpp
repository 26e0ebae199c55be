// The lame duck: SIGTERM (and SIGUSR2, without stopping) stops taking members, makes /healthz say
// 503, and closes the members one by one over --drain-ms, each told to reconnect first; members
// chat as usual until their turn.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chat_helpers.h"
#include "process.h"

using namespace std::chrono_literals;
using testproc::LineClient;
using testproc::Server;
using namespace chattest;
using Clock = std::chrono::steady_clock;

namespace {

int http_port_of(Server& s) {
  auto line = s.process.wait_for_line("http listening on", 10s);
  std::smatch m;
  if (!line || !std::regex_search(*line, m, std::regex(R"(:(\d+) )"))) return -1;
  return std::stoi(m[1]);
}

// The status of GET /healthz on a connection of its own (0 if none came).
int healthz(int http_port) {
  LineClient c(http_port);
  c.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto status = c.line(10s);
  std::smatch m;
  if (!status || !std::regex_search(*status, m, std::regex(R"(^HTTP/1\.1 (\d+))"))) return 0;
  return std::stoi(m[1]);
}

// Polls /healthz until it says 503 (the drain has begun on the shard that answers).
bool healthz_says_503(int http_port) {
  for (auto deadline = Clock::now() + 10s; Clock::now() < deadline;) {
    if (healthz(http_port) == 503) return true;
  }
  return false;
}

struct Joined : Native {
  Joined(int port, const std::string& user) : Native(port, user) {
    joined = request({{"type", "join"}, {"room", "r"}});
  }
  json joined;
};

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

TEST(Drain, SigtermClosesTheMembersOneByOneOverTheWindowEachToldToReconnect) {
  constexpr int kWindowMs = 3000, kMembers = 3;
  Server server(chat_args({"--threads", "2", "--drain-ms", std::to_string(kWindowMs)}));
  int http = http_port_of(server);
  ASSERT_GT(http, 0);
  ASSERT_EQ(healthz(http), 200);
  std::vector<std::unique_ptr<Joined>> members;
  for (int i = 0; i < kMembers; ++i) {
    members.push_back(std::make_unique<Joined>(server.port, "m" + std::to_string(i)));
    ASSERT_EQ(members.back()->joined["type"], "joined");
  }
  Clock::time_point term = Clock::now();
  ASSERT_EQ(::kill(server.process.pid(), SIGTERM), 0);
  ASSERT_TRUE(healthz_says_503(http));
  // No new member: the chat port is closed.
  EXPECT_LT(testproc::connect_to(server.port), 0) << "the chat port still accepts during the drain";
  // No close is due before a third of the window: until then everyone chats as usual.
  members[0]->send(json{{"type", "message"}, {"room", "r"}, {"text", "still here"}}.dump() + "\n");
  for (auto& m : members) EXPECT_EQ(expect_type(*m, "message").value("text", ""), "still here");
  ASSERT_LT(ms_since(term), kWindowMs / kMembers) << "too slow to tell: the test's own assumption";

  // Watched side by side: when each is told, and when each is closed.
  std::vector<long long> closed_at(kMembers, -1);
  std::vector<bool> told(kMembers, false);
  for (auto deadline = Clock::now() + 20s; Clock::now() < deadline;) {
    bool open = false;
    for (size_t i = 0; i < members.size(); ++i) {
      if (closed_at[i] >= 0) continue;
      open = true;
      if (auto l = members[i]->line(2ms)) {
        json j = json::parse(*l, nullptr, false);
        if (j.value("type", "") == "reconnect") {
          EXPECT_EQ(j.value("reason", ""), "server draining") << j;
          EXPECT_FALSE(told[i]) << "told twice";
          told[i] = true;
        }
      } else if (members[i]->ended()) {
        closed_at[i] = ms_since(term);
        ::shutdown(members[i]->fd(), SHUT_WR);  // as a client does: the server's lingering close ends
        EXPECT_TRUE(told[i]) << "member " << i << " was closed without being told";
      }
    }
    if (!open) break;
  }
  std::sort(closed_at.begin(), closed_at.end());
  // Each reactor spreads its own members over the window (here two on one, at half and all of it,
  // and one on the other, at all of it).
  ASSERT_GE(closed_at.front(), 0) << "a member was not closed";
  EXPECT_GE(closed_at.front(), kWindowMs / kMembers - 200) << "closed before its turn";
  EXPECT_GE(closed_at.back() - closed_at.front(), kWindowMs / 3) << "not spread over the window";
  EXPECT_LT(closed_at.back(), kWindowMs + 2000);
  auto status = server.process.wait(20s);
  ASSERT_TRUE(status && WIFEXITED(*status)) << server.process.err();
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST(Drain, Sigusr2DrainsWithoutStoppingAndSigtermThenStops) {
  Server server(chat_args({"--threads", "2", "--drain-ms", "400"}));
  int http = http_port_of(server);
  ASSERT_GT(http, 0);
  Joined a(server.port, "a"), b(server.port, "b");
  ASSERT_EQ(b.joined["type"], "joined");
  ASSERT_EQ(::kill(server.process.pid(), SIGUSR2), 0);
  for (Joined* m : {&a, &b}) {
    EXPECT_EQ(expect_type(*m, "reconnect").value("reason", ""), "server draining");
    EXPECT_TRUE(m->closed_by_peer(10s));
    ::shutdown(m->fd(), SHUT_WR);  // as a client does: the server's lingering close ends with it
  }
  ASSERT_TRUE(server.process.wait_for_err_line("drained: every member has been closed", 10s)) << server.process.err();
  EXPECT_FALSE(server.process.wait(0ms).has_value()) << "the process went away";
  EXPECT_EQ(healthz(http), 503);
  EXPECT_LT(testproc::connect_to(server.port), 0) << "the chat port accepts after the drain";
  Clock::time_point term = Clock::now();
  auto status = server.process.signal_and_wait(SIGTERM, 10s);
  ASSERT_TRUE(status && WIFEXITED(*status)) << server.process.err();
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_LT(ms_since(term), 2000) << "a drained server stops at once";
}

TEST(Drain, WithoutAWindowEveryMemberIsToldAndClosedAtOnce) {
  Server server(chat_args({"--threads", "2", "--drain-ms", "0"}));
  Joined a(server.port, "a"), b(server.port, "b");
  ASSERT_EQ(b.joined["type"], "joined");
  ASSERT_EQ(::kill(server.process.pid(), SIGTERM), 0);
  for (Joined* m : {&a, &b}) {
    EXPECT_EQ(expect_type(*m, "reconnect").value("reason", ""), "server shutting down");
    EXPECT_TRUE(m->closed_by_peer(10s));
    ::shutdown(m->fd(), SHUT_WR);
  }
  auto status = server.process.wait(10s);
  ASSERT_TRUE(status && WIFEXITED(*status)) << server.process.err();
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

}  // namespace
