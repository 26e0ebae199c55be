// The limits that keep one abusive client or address from harming the others: connections and
// connects per address, messages per connection, frames left unfinished (slowloris), members per
// room and rooms per server. Each one triggers, is counted, and leaves the other members unharmed.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
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

// A native member from `source` (127.0.0.0/8 is all this machine): hello, and its welcome (or not).
struct From : LineClient {
  From(int port, const std::string& source, const std::string& user) : LineClient(port, source) {
    send(json{{"type", "hello"}, {"user", user}}.dump() + "\n");
    for (int i = 0; i < 100; ++i) {
      welcome = next_json(*this, 5s);
      if (welcome.value("type", "") != "<not json>") break;
    }
  }
  json welcome;
};

// A ping answered (whatever room events come before the pong).
bool pongs(Native& n) {
  n.send(json{{"type", "ping"}, {"id", 7}}.dump() + "\n");
  return expect_type(n, "pong").value("id", 0) == 7;
}

TEST(Protection, ConnectionsPerAddressAreCappedAndCounted) {
  Server server(chat_args({"--threads", "2", "--max-connections-per-address", "3", "--connect-rate", "0"}));
  std::vector<std::unique_ptr<From>> three;
  for (int i = 0; i < 3; ++i) {
    three.push_back(std::make_unique<From>(server.port, "127.0.0.1", "a" + std::to_string(i)));
    ASSERT_EQ(three.back()->welcome.value("type", ""), "welcome");
  }
  From fourth(server.port, "127.0.0.1", "a3");
  EXPECT_NE(fourth.welcome.value("type", ""), "welcome");
  EXPECT_TRUE(fourth.closed_by_peer(5s)) << "a fourth connection from one address was kept";
  // Another address is another count; the three are unharmed.
  From other(server.port, "127.0.0.2", "b0");
  EXPECT_EQ(other.welcome.value("type", ""), "welcome");
  // One of the three leaves: its address has room for one again.
  three.pop_back();
  bool readmitted = false;
  for (auto deadline = Clock::now() + 10s; !readmitted && Clock::now() < deadline;) {
    From again(server.port, "127.0.0.1", "a9");
    readmitted = again.welcome.value("type", "") == "welcome";
  }
  EXPECT_TRUE(readmitted);
  std::string stats = stats_of(server.process);
  EXPECT_GE(counter(stats, "refused_address"), 1) << stats;
  three[0]->send(json{{"type", "ping"}, {"id", 1}}.dump() + "\n");
  EXPECT_EQ(expect_type(*three[0], "pong").value("id", 0), 1);
}

TEST(Protection, ConnectsPerAddressAreRateLimited) {
  Server server(chat_args({"--max-connections-per-address", "0", "--connect-rate", "0.2", "--connect-burst", "5"}));
  std::vector<std::unique_ptr<From>> first;
  for (int i = 0; i < 5; ++i) {
    first.push_back(std::make_unique<From>(server.port, "127.0.0.3", "c" + std::to_string(i)));
    ASSERT_EQ(first.back()->welcome.value("type", ""), "welcome") << i;
  }
  first.clear();  // closing gives no connect back: the bucket refills at one every 5 s
  From sixth(server.port, "127.0.0.3", "c5");
  EXPECT_TRUE(sixth.closed_by_peer(5s)) << "a sixth connect at once was taken";
  From elsewhere(server.port, "127.0.0.4", "d0");
  EXPECT_EQ(elsewhere.welcome.value("type", ""), "welcome");
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "refused_rate"), 1) << stats;
}

TEST(Protection, MessagesPastTheRateAreRefusedAndRefusalAfterRefusalCloses) {
  Server server(chat_args({"--threads", "2", "--message-rate", "5", "--message-burst", "20"}));
  Native flooder(server.port, "flooder"), calm(server.port, "calm");
  ASSERT_EQ(flooder.request({{"type", "join"}, {"room", "r"}})["type"], "joined");
  ASSERT_EQ(calm.request({{"type", "join"}, {"room", "r"}})["type"], "joined");
  auto batch = [](int first, int n) {
    std::string lines;
    for (int i = first; i < first + n; ++i) {
      lines += json{{"type", "message"}, {"room", "r"}, {"text", std::to_string(i)}, {"id", "m" + std::to_string(i)}}.dump() + "\n";
    }
    return lines;
  };
  // 30 at once: the burst (20, less the token the join took) goes, the other 11 are refused, each
  // saying so.
  flooder.send(batch(0, 30));
  int sent = 0, refused = 0;
  while (sent + refused < 30) {
    json j = next_json(flooder);
    std::string type = j.value("type", "");
    ASSERT_NE(type, "<nothing>") << sent << " sent, " << refused << " refused";
    if (type == "message") ++sent;
    if (type == "error") {
      EXPECT_EQ(j.value("code", ""), "rate_limited") << j;
      EXPECT_EQ(j.value("room", ""), "r") << j;
      EXPECT_EQ(j.value("id", ""), "m" + std::to_string(19 + refused)) << j;
      ++refused;
    }
  }
  EXPECT_EQ(sent, 19);
  EXPECT_EQ(refused, 11);
  for (int i = 0; i < 19; ++i) EXPECT_EQ(expect_type(calm, "message").value("text", ""), std::to_string(i));
  // Going on regardless: past 20 refusals in a row, the connection is closed.
  flooder.send(batch(30, 40));
  EXPECT_TRUE(flooder.closed_by_peer(10s));
  EXPECT_TRUE(pongs(calm)) << "the calm member was harmed";
  std::string stats = stats_of(server.process);
  EXPECT_GE(counter(stats, "rate_limited"), 21) << stats;  // 11, then 10 more: 21 in a row (more if a token came between)
  EXPECT_EQ(counter(stats, "rate_closes"), 1) << stats;
}

// Presence churn: one member pipelining joins and leaves of a busy room. Each costs from its request
// budget (told rate_limited, then paced: what it pipelined waits unread), and the room hears at most
// 10 of its comings and goings in 10 s: past them it hears, at the window's end, only where the
// member is then.
TEST(Protection, JoinsAndLeavesCostFromTheBudgetAndOneMembersChurnIsCoalesced) {
  Server server(chat_args({"--threads", "2", "--message-rate", "100", "--message-burst", "500"}));
  std::vector<std::unique_ptr<Native>> calm;
  for (int i = 0; i < 20; ++i) {
    calm.push_back(std::make_unique<Native>(server.port, "c" + std::to_string(i)));
    ASSERT_EQ(calm.back()->request({{"type", "join"}, {"room", "busy"}})["type"], "joined");
  }
  // Presence events about `who` that member k has been sent (up to a pong: what came before).
  auto presence_of = [&](size_t k, const std::string& who) {
    Native& m = *calm[k];
    m.send(json{{"type", "ping"}, {"id", 99}}.dump() + "\n");
    std::vector<json> before;
    EXPECT_EQ(expect_type(m, "pong", &before).value("id", 0), 99);
    std::vector<std::string> kinds;
    for (const json& j : before) {
      if (j.value("user", "") == who && (j["type"] == "join" || j["type"] == "leave")) kinds.push_back(j["type"]);
    }
    return kinds;
  };
  // The next `n` presence events about `who` that member k is sent (fewer if none comes for 15 s):
  // another member's comings and goings reach k from the room's owner in their own time.
  auto next_presence_of = [&](size_t k, const std::string& who, size_t n) {
    std::vector<std::string> kinds;
    while (kinds.size() < n) {
      json j = next_json(*calm[k], 15s);
      if (j["type"] == "<nothing>") break;
      if (j.value("user", "") == who && (j["type"] == "join" || j["type"] == "leave")) kinds.push_back(j["type"]);
    }
    return kinds;
  };
  for (size_t k = 1; k < calm.size(); ++k) presence_of(0, "c" + std::to_string(k));  // the others' joins, read

  // A churner: 2,000 join/leave pairs at once. The first 500 requests go (then the budget is
  // spent): 10 of them are heard, the rest held; then it is told rate_limited and paced.
  auto churner = std::make_unique<Native>(server.port, "churner");
  std::string burst;
  for (int i = 0; i < 2000; ++i) {
    burst += json{{"type", "join"}, {"room", "busy"}}.dump() + "\n" + json{{"type", "leave"}, {"room", "busy"}}.dump() + "\n";
  }
  churner->send(burst);
  int left = 0;  // each leave's "left" (a join's "joined" comes from the room's owner, in its own time)
  for (;;) {
    json j = next_json(*churner, 10s);
    ASSERT_NE(j["type"], "<nothing>") << "never told rate_limited, after " << left << " leaves";
    if (j["type"] == "error" && j["code"] == "rate_limited") break;
    if (j["type"] == "left") ++left;
  }
  // The burst, 250 pairs (more on a slow machine, where tokens come while the burst is read).
  EXPECT_GE(left, 250);
  EXPECT_LT(left, 400);
  churner.reset();  // gone
  // The room heard 10, ending with a leave (the 10th); what came after, and its close (out either
  // way), tell it nothing new: nothing more about it comes (looked at again at the end, after the
  // window).
  std::vector<std::string> heard = next_presence_of(0, "churner", 10);
  EXPECT_EQ(heard.size(), 10u);
  EXPECT_EQ(heard.empty() ? "" : heard.back(), "leave");

  // A flicker that ends inside: 6 pairs and a join. 10 heard; the last three held; at the window's
  // end the room hears the one thing that changed: it is in.
  Native flicker(server.port, "flicker");
  std::string pairs;
  for (int i = 0; i < 6; ++i) pairs += json{{"type", "join"}, {"room", "busy"}}.dump() + "\n" + json{{"type", "leave"}, {"room", "busy"}}.dump() + "\n";
  pairs += json{{"type", "join"}, {"room", "busy"}}.dump() + "\n";
  flicker.send(pairs);
  json last_joined;
  for (int joined = 0; joined < 7;) {
    json j = next_json(flicker, 10s);
    ASSERT_NE(j["type"], "<nothing>");
    if (j["type"] == "joined") ++joined, last_joined = j;
  }
  heard = next_presence_of(1, "flicker", 10);
  EXPECT_EQ(heard.size(), 10u);
  // The flush comes once the window (10 s from the first) is over.
  std::vector<json> more;
  auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline) {
    json j = next_json(*calm[1], 1s);
    if (j.value("user", "") == "flicker") {
      more.push_back(j);
      break;
    }
  }
  ASSERT_EQ(more.size(), 1u) << "the room never heard that flicker stayed";
  EXPECT_EQ(more[0]["type"], "join") << more[0];
  EXPECT_TRUE(pongs(flicker));
  EXPECT_EQ(presence_of(0, "churner").size(), 0u) << "more of the churner's comings and goings were heard";
  std::string stats = stats_of(server.process);
  EXPECT_GE(counter(stats, "presence_held"), 490 + 3) << stats;  // 500 - 10 of the churner, 3 of the flicker
  EXPECT_GE(counter(stats, "rate_limited"), 1) << stats;
}

// Slowloris: many connections each trickling a frame that never ends. Each is closed once its
// frame is older than --frame-timeout-ms, however it trickles; a member meanwhile chats.
TEST(Protection, FramesLeftUnfinishedAreClosedAfterTheFrameTimeout) {
  constexpr int kSlow = 2000, kTimeoutMs = 1000;
  Server server(chat_args({"--threads", "2", "--frame-timeout-ms", std::to_string(kTimeoutMs),
                           "--max-connections-per-address", "0", "--connect-rate", "0"}));
  Native member(server.port, "member");
  ASSERT_EQ(member.request({{"type", "join"}, {"room", "r"}})["type"], "joined");
  std::vector<int> slow;
  Clock::time_point start = Clock::now();
  for (int i = 0; i < kSlow; ++i) {
    int fd = testproc::connect_to(server.port, 0, "127.0.0." + std::to_string(10 + i % 200));
    ASSERT_GE(fd, 0) << i;
    ASSERT_EQ(::send(fd, "{\"type\":\"hel", 12, MSG_NOSIGNAL), 12);
    slow.push_back(fd);
  }
  // A byte every 200 ms from each until the server has closed them all.
  size_t open = slow.size();
  std::vector<bool> closed(slow.size(), false);
  long long first_close = -1;
  while (open > 0 && Clock::now() - start < 20s) {
    for (size_t i = 0; i < slow.size(); ++i) {
      if (closed[i]) continue;
      char buf[256];
      ssize_t n = ::recv(slow[i], buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        closed[i] = true;
        --open;
        if (first_close < 0) {
          first_close = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
        }
        continue;
      }
      ::send(slow[i], "l", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    EXPECT_TRUE(pongs(member)) << "the member was held up";
    std::this_thread::sleep_for(200ms);  // the trickle's own pace, not a wait for the server
  }
  long long took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_EQ(open, 0u) << "still open after " << took << " ms";
  EXPECT_GE(first_close, kTimeoutMs - 50) << "one was closed before its time";
  for (int fd : slow) ::close(fd);
  member.send(json{{"type", "message"}, {"room", "r"}, {"text", "still here"}}.dump() + "\n");
  EXPECT_EQ(expect_type(member, "message").value("text", ""), "still here");
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "frame_timeouts"), kSlow) << stats;
}

TEST(Protection, MembersPerRoomAndRoomsPerServerAreCapped) {
  Server server(chat_args({"--threads", "2", "--max-room-members", "2", "--max-server-rooms", "2"}));
  Native a(server.port, "a"), b(server.port, "b"), c(server.port, "c");
  ASSERT_EQ(a.request({{"type", "join"}, {"room", "r1"}})["type"], "joined");
  ASSERT_EQ(b.request({{"type", "join"}, {"room", "r1"}})["type"], "joined");
  json full = c.request({{"type", "join"}, {"room", "r1"}});
  EXPECT_EQ(full.value("code", ""), "join_refused") << full;
  EXPECT_NE(full.value("message", "").find("as many members"), std::string::npos) << full;
  ASSERT_EQ(c.request({{"type", "join"}, {"room", "r2"}})["type"], "joined");
  json third = c.request({{"type", "join"}, {"room", "r3"}});
  EXPECT_EQ(third.value("code", ""), "join_refused") << third;
  EXPECT_NE(third.value("message", "").find("as many rooms"), std::string::npos) << third;
  // A room that empties makes room for another.
  ASSERT_EQ(c.request({{"type", "leave"}, {"room", "r2"}})["type"], "left");
  bool joined = false;
  json last;
  for (auto deadline = Clock::now() + 10s; !joined && Clock::now() < deadline;) {
    last = c.request({{"type", "join"}, {"room", "r3"}});
    joined = last.value("type", "") == "joined";
  }
  EXPECT_TRUE(joined) << last;
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "room_full"), 1) << stats;
  EXPECT_GE(counter(stats, "server_rooms_full"), 1) << stats;
  EXPECT_TRUE(pongs(a));
}

}  // namespace
