// Regression tests for faults found by adversarial testing: each reproduces an attack or a
// demanding user's load against the release server, with one and two reactors where it matters.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>
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

namespace {

class ChatFaults : public ::testing::TestWithParam<int> {
 protected:
  std::vector<std::string> args(std::vector<std::string> extra = {}) {
    extra.insert(extra.end(), {"--threads", std::to_string(GetParam())});
    return chat_args(extra);
  }
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Reactors, ChatFaults, ::testing::Values(1, 2),
                         [](const ::testing::TestParamInfo<int>& i) { return std::to_string(i.param) + "reactors"; });

// One request nesting 50,000 arrays used to overflow the stack (SIGSEGV, nothing logged). The
// nesting limit holds whatever --max-frame allows, in both dialects.
TEST_P(ChatFaults, DeeplyNestedJsonIsABadJsonErrorNotACrash) {
  Server server(args({"--max-frame", "200000"}));
  Native a(server.port, "deep");
  ASSERT_EQ(a.welcome["type"], "welcome");
  std::string deep = std::string(50000, '[') + std::string(50000, ']');
  a.send("{\"type\":\"ping\",\"id\":" + deep + "}\n");
  json err = next_json(a);
  EXPECT_EQ(err["type"], "error");
  EXPECT_EQ(err["code"], "bad_json");
  EXPECT_NE(err.value("message", "").find("nested deeper than"), std::string::npos) << err;
  EXPECT_EQ(a.request({{"type", "ping"}, {"id", 2}})["id"], 2) << "the connection goes on";
  // The article's dialect: logged and skipped, and the server still serves its lobby.
  LineClient article(server.port);
  Native watcher(server.port, "watcher");
  watcher.request({{"type", "join"}, {"room", "lobby"}});
  article.send("{\"user\":\"x\",\"text\":" + deep + "}");
  article.send("{\"user\":\"amy\",\"text\":\"still here\"}");
  json m = expect_type(watcher, "message");
  EXPECT_EQ(m["text"], "still here");
  EXPECT_GE(counter(stats_of(server.process), "json"), 2);
}

namespace {

// A native member that floods `room` from one thread and reads (and drops) its copies on another,
// as fast as the server lets it, until stopped.
class Flooder {
 public:
  Flooder(int port, const std::string& user, const std::string& room) : client_(port) {
    client_.send(json{{"type", "hello"}, {"user", user}}.dump() + "\n" + json{{"type", "join"}, {"room", room}}.dump() + "\n");
    expect_type(client_, "joined");
    std::string line = json{{"type", "message"}, {"room", room}, {"text", std::string(100, 'f')}}.dump() + "\n";
    for (int i = 0; i < 500; ++i) batch_ += line;
    writer_ = std::thread([this] {
      while (!stop_) {
        if (::send(client_.fd(), batch_.data(), batch_.size(), MSG_NOSIGNAL) <= 0) break;
      }
    });
    reader_ = std::thread([this] {
      char buf[1 << 16];
      while (!stop_) {
        if (::recv(client_.fd(), buf, sizeof buf, 0) <= 0) break;
      }
    });
  }
  ~Flooder() { stop(); }
  void stop() {
    if (stop_.exchange(true)) return;
    ::shutdown(client_.fd(), SHUT_RDWR);
    writer_.join();
    reader_.join();
  }

 private:
  LineClient client_;
  std::string batch_;
  std::atomic<bool> stop_{false};
  std::thread writer_, reader_;
};

}  // namespace

// One sender flooding its own room while another member there never reads: with two reactors the
// tasks posted between them had no bound (RSS grew by 158 MB in 10 s, other rooms waited seconds,
// the memory stayed). Now a reactor that has posted too much stops reading the connections that
// feed it: memory stays bounded, other rooms keep their latency, and the memory comes back.
TEST_P(ChatFaults, AFloodingSenderCannotGrowMemoryOrDelayOtherRooms) {
  Server server(args());
  LineClient never_reads(server.port, 4096);
  never_reads.send("{\"type\":\"hello\",\"user\":\"stone\"}\n{\"type\":\"join\",\"room\":\"busy\"}\n");
  Native calm_a(server.port, "calm_a"), calm_b(server.port, "calm_b");
  ASSERT_EQ(calm_a.request({{"type", "join"}, {"room", "calm"}})["type"], "joined");
  ASSERT_EQ(calm_b.request({{"type", "join"}, {"room", "calm"}})["type"], "joined");
  expect_type(calm_a, "join");  // calm_b's presence
  long rss_start = testproc::rss_kib(server.process.pid());
  long rss_peak = rss_start;
  std::chrono::milliseconds worst{0};
  int round_trips = 0;
  {
    // Two flooders: connections are spread over the reactors, so with two reactors one of them is
    // not on the room's owner and its every message crosses between reactors.
    Flooder flood(server.port, "flood", "busy"), flood2(server.port, "flood2", "busy");
    auto end = std::chrono::steady_clock::now() + 4s;
    for (int i = 0; std::chrono::steady_clock::now() < end; ++i) {
      auto sent = std::chrono::steady_clock::now();
      calm_a.send(json{{"type", "message"}, {"room", "calm"}, {"text", std::to_string(i)}}.dump() + "\n");
      json own = expect_type(calm_a, "message");
      ASSERT_EQ(own["text"], std::to_string(i));
      json other = expect_type(calm_b, "message");
      ASSERT_EQ(other["text"], std::to_string(i));
      worst = std::max(worst, std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - sent));
      ++round_trips;
      rss_peak = std::max(rss_peak, testproc::rss_kib(server.process.pid()));
      std::this_thread::sleep_for(50ms);  // pacing the calm room's talk, not waiting for a result
    }
    // The flood must have flowed for the figures above to mean anything: a sanitized server beside
    // a busy machine may need longer than the 4 s to take its 10,000 messages, so the flood goes on
    // (up to 30 s) until the server's own counter says it has.
    auto flowed_by = std::chrono::steady_clock::now() + 30s;
    while (counter(stats_of(server.process), "in") <= 10000 && std::chrono::steady_clock::now() < flowed_by) {
      rss_peak = std::max(rss_peak, testproc::rss_kib(server.process.pid()));
      std::this_thread::sleep_for(100ms);  // between two looks at the server's counter
    }
    flood.stop();
    flood2.stop();
  }
  std::string stats = stats_of(server.process);
  EXPECT_GT(counter(stats, "in"), 10000) << "the flood did not flow: " << stats;
  if (!testproc::programs_under_sanitizer()) {
    // Unbounded, the calm room's wait grows as the inboxes do: 4 or 5 round trips in the 4 s, the
    // worst 4 s (release, measured with the bound taken out). Bounded, it is what one inbox takes
    // to drain: tens of milliseconds, about 60 round trips, under 0.1 s beside stress-ng. Under a
    // sanitizer that drain is ten times slower and says nothing of the bound (TSan beside a busy
    // core: 3 s): there the calm room is only required to be served, in order, as above.
    EXPECT_LT(worst, 2000ms) << "a calm room waited behind the busy one";
    EXPECT_GE(round_trips, 20) << "the calm room was served " << round_trips << " times in 4 s";
    // The member that never reads holds at most the hard limit (8 MiB); everything else is bounded
    // by the cross-reactor limit. Without the bound this grew by 100+ MB.
    EXPECT_LT(rss_peak - rss_start, 48 * 1024) << "server memory grew by " << rss_peak - rss_start << " KiB";
    // Once the flood is over and the connections closed, most of the memory is given back: the
    // server trims malloc's arenas once a second while over 4 MiB is free in them, so some MiB stay.
    // Measured (release, 2026-12-07): growth at the peak 17-21 MiB; kept 4-9 MiB with two reactors
    // (one arena each), 20 MiB of 21 with the trim taken out (one reactor: glibc's main arena trims
    // itself, so that mutation shows only with two). Kept: at most 60% of the peak, or 8 MiB.
    never_reads.send("");
    ::shutdown(never_reads.fd(), SHUT_RDWR);
    EXPECT_EQ(calm_a.request({{"type", "ping"}, {"id", 9}})["type"], "pong");
    const long may_keep = std::max(8L * 1024, (rss_peak - rss_start) * 6 / 10);
    long rss_end = testproc::rss_kib(server.process.pid());
    for (auto until = std::chrono::steady_clock::now() + 5s;
         rss_end - rss_start >= may_keep && std::chrono::steady_clock::now() < until;
         rss_end = testproc::rss_kib(server.process.pid())) {
      std::this_thread::sleep_for(100ms);  // polling the server's memory, given back within seconds
    }
    EXPECT_LT(rss_end - rss_start, may_keep) << "memory kept after the burst: " << rss_end - rss_start
                                             << " KiB of a peak " << rss_peak - rss_start << " KiB above the start";
  }
}

// A client may write all its requests and half-close at once. With two reactors the answers that
// came from the other reactor (joined, the message's own copy, the pong behind them) were lost:
// the connection closed as soon as its own output had left.
TEST_P(ChatFaults, AHalfClosedClientGetsEveryAnswerThenTheClose) {
  Server server(args());
  std::vector<std::unique_ptr<LineClient>> clients;
  for (int i = 0; i < 50; ++i) {
    auto c = std::make_unique<LineClient>(server.port);
    std::string room = "half" + std::to_string(i % 7);
    c->send(json{{"type", "hello"}, {"user", "h" + std::to_string(i)}}.dump() + "\n" +
            json{{"type", "join"}, {"room", room}}.dump() + "\n" +
            json{{"type", "message"}, {"room", room}, {"text", "bye " + std::to_string(i)}}.dump() + "\n" +
            json{{"type", "ping"}, {"id", i}}.dump() + "\n");
    ::shutdown(c->fd(), SHUT_WR);
    clients.push_back(std::move(c));
  }
  for (int i = 0; i < 50; ++i) {
    LineClient& c = *clients[i];
    EXPECT_EQ(next_json(c)["type"], "welcome") << i;
    std::vector<json> skipped;
    json pong = expect_type(c, "pong", &skipped);
    EXPECT_EQ(pong["id"], i) << "client " << i << " got no pong";
    bool joined = false, own = false;
    for (const json& j : skipped) {
      if (j["type"] == "joined") joined = true;
      if (j["type"] == "message" && j["text"] == "bye " + std::to_string(i)) own = true;
    }
    EXPECT_TRUE(joined) << "client " << i;
    EXPECT_TRUE(own) << "client " << i;
    EXPECT_TRUE(c.closed_by_peer(5s)) << "client " << i << ": no close after the last answer";
  }
}

// SIGTERM while a burst is still on its way to the members: everything the server accepted before
// the signal reaches every member, then the connections close and the server exits 0. With two
// reactors, members used to be cut off anywhere between seq 366 and 542 of 3,000.
TEST_P(ChatFaults, SigtermDeliversEverythingAcceptedBeforeClosing) {
  // The publisher on each reactor in turn (connections are handed out round-robin): with two, the
  // room's owner is then once on another reactor than the publisher, once on the same.
  for (int before : {0, 1}) {
    SCOPED_TRACE("connections before the publisher: " + std::to_string(before));
    // Members may queue the whole burst (they read only after the signal).
    // Without a drain (--drain-ms 0): the stop that holds everything back until it has reached every
    // member (a drain closes members in turn while others chat: tests/integration/drain_test.cpp).
    Server server(args({"--shutdown-grace-ms", "20000", "--soft-limit", "16777216", "--output-limit", "16777216",
                        "--drain-ms", "0"}));
    std::vector<std::unique_ptr<Native>> members;
    for (int i = 0; i < before; ++i) members.push_back(std::make_unique<Native>(server.port, "early" + std::to_string(i)));
    auto publisher = std::make_unique<Native>(server.port, "publisher");
    for (int i = 0; i < 100; ++i) members.push_back(std::make_unique<Native>(server.port, "m" + std::to_string(i)));
    members.push_back(std::make_unique<Native>(server.port, "late"));
    for (auto& m : members) {
      m->send(json{{"type", "join"}, {"room", "burst"}}.dump() + "\n");
      ASSERT_EQ(expect_type(*m, "joined")["room"], "burst");
    }
    publisher->send(json{{"type", "join"}, {"room", "burst"}}.dump() + "\n");
    ASSERT_EQ(expect_type(*publisher, "joined")["room"], "burst");
    std::string burst;
    for (int i = 0; i < 20000; ++i) {
      burst += json{{"type", "message"}, {"room", "burst"}, {"text", std::to_string(i)}}.dump() + "\n";
    }
    publisher->send(burst);
    // SIGTERM while the burst is being handled: once its first copy is back.
    ASSERT_EQ(expect_type(*publisher, "message")["text"], "0");
    auto status = std::async(std::launch::async, [&] { return server.process.signal_and_wait(SIGTERM, 60s); });
    // Members still talk (a keep-alive ping): the server reads no more, and what it never read
    // must not turn its close into a reset that destroys what it sent.
    for (auto& m : members) m->send(json{{"type", "ping"}}.dump() + "\n");
    // Whatever the server accepted before it stopped reading, every member gets all of it, in
    // order: all end at the same message as the publisher's own copies.
    auto read_all = [](LineClient& c, int next) {
      for (json j = next_json(c); j["type"] != "<nothing>"; j = next_json(c)) {
        if (j["type"] != "message") continue;
        EXPECT_EQ(j["text"], std::to_string(next));
        ++next;
      }
      return next;
    };
    int accepted = read_all(*publisher, 1);
    EXPECT_GT(accepted, 1);
    publisher.reset();
    for (size_t i = 0; i < members.size(); ++i) {
      ASSERT_EQ(read_all(*members[i], 0), accepted) << "member " << i << " was cut off";
      EXPECT_TRUE(members[i]->closed_by_peer(1s));
      members[i].reset();  // closing our side ends the server's lingering close at once
    }

    auto st = status.get();
    ASSERT_TRUE(st.has_value());
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << server.process.err();
  }
}


// 1 MB of "{}" in the article's dialect used to write 500,000 log lines (57 MB) in a second. The
// lines about one connection are now a few, with a summary; a flood of bad connections is bounded
// per reactor.
TEST_P(ChatFaults, BadInputCannotFloodTheLog) {
  Server server(args());
  Native watcher(server.port, "watcher");
  watcher.request({{"type", "join"}, {"room", "lobby"}});
  auto started = std::chrono::steady_clock::now();
  {
    LineClient bad(server.port);
    std::string junk;
    for (int i = 0; i < 500000; ++i) junk += "{}";
    bad.send(junk + "{\"user\":\"bad\",\"text\":\"done\"}");
    // Every object was handled. Half a million of them take a sanitized server seconds (TSan: 9 s
    // alone, more beside other work): a deadline for the work, not a measure of its speed.
    ASSERT_EQ(expect_type(watcher, "message", nullptr, 60s)["text"], "done");
  }
  auto summary = server.process.wait_for_err_line("were not logged", 60s);
  ASSERT_TRUE(summary) << server.process.err().substr(0, 2000);
  auto took = std::chrono::steady_clock::now() - started;
  // A connection's budget is 5 lines per 10 s window (a new window's first line says how many the
  // last one left out), then one summary at the close: 6 lines when the half million take under
  // 10 s, as they do in release; a slower server may open another window or two. Whatever the
  // windows, every problem is accounted for: each line, each "(and N more like it)", the summary.
  std::string err = server.process.err();
  size_t lines = count_of(err, "(article dialect)");
  size_t windows = static_cast<size_t>(took / 10s) + 1;
  EXPECT_LE(lines, 5 * windows + 1) << "in " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                    << " ms: " << err.substr(0, 2000);
  long accounted = static_cast<long>(count_of(err, "(article dialect): unknown type of message"));
  std::smatch m;
  for (auto it = err.cbegin(); std::regex_search(it, err.cend(), m, std::regex(R"(\(and (\d+) more like it\))"));
       it = m.suffix().first) {
    accounted += std::stol(m[1]);
  }
  std::smatch left_out;
  ASSERT_TRUE(std::regex_search(*summary, left_out, std::regex(R"((\d+) more problems like those)"))) << *summary;
  accounted += std::stol(left_out[1]);
  EXPECT_EQ(accounted, 500000) << err.substr(0, 2000);
  if (took < 10s) {
    EXPECT_NE(summary->find("499995 more problems"), std::string::npos) << *summary;
  }
  EXPECT_EQ(counter(stats_of(server.process), "request"), 500000);
  // Many connections, each with one bad object: a budget per reactor holds, whatever the count.
  size_t before = count_of(server.process.err(), "(article dialect)");
  std::vector<std::unique_ptr<LineClient>> many;
  for (int i = 0; i < 300; ++i) {
    many.push_back(std::make_unique<LineClient>(server.port));
    many.back()->send("{\"nothing\":1}");
  }
  long problems = 0;
  for (auto until = std::chrono::steady_clock::now() + 60s; problems < 500300 && std::chrono::steady_clock::now() < until;) {
    problems = counter(stats_of(server.process), "request");  // each stats line is a round trip
  }
  EXPECT_EQ(problems, 500300) << "every bad object was seen";
  EXPECT_LE(count_of(server.process.err(), "(article dialect)") - before, 50u * GetParam() + 10)
      << "a flood of bad connections filled the log";
}

// --max-connections is the process's limit, whatever the number of reactors (3 with 4 reactors
// used to admit 4); a refused connection is counted and logged.
TEST(ChatFaultsLimits, MaxConnectionsIsPerProcessAndARefusalIsLogged) {
  Server server(chat_args({"--max-connections", "3", "--threads", "4"}));
  std::vector<std::unique_ptr<Native>> in;
  for (int i = 0; i < 3; ++i) {
    in.push_back(std::make_unique<Native>(server.port, "in" + std::to_string(i)));
    ASSERT_EQ(in.back()->welcome["type"], "welcome") << i;
  }
  LineClient fourth(server.port);
  EXPECT_TRUE(fourth.closed_by_peer(5s));
  std::string stats = stats_of(server.process);
  EXPECT_EQ(counter(stats, "refused"), 1) << stats;
  EXPECT_TRUE(server.process.wait_for_err_line("refused", 5s)) << server.process.err();
  // A place freed is a place taken again.
  in.pop_back();
  for (int attempt = 0; attempt < 100; ++attempt) {
    Native again(server.port, "again");
    if (again.welcome["type"] == "welcome") return;
    std::this_thread::sleep_for(20ms);  // the close of `in[2]` reaches its reactor asynchronously
  }
  ADD_FAILURE() << "a freed place was never given again";
}

// A native message with a newline forged a second "[kim] ..." line for the article's clients, and
// escape sequences reached their terminals. In the article dialect every message is one line,
// control characters shown as symbols; and an article sender cannot pass as a native member.
TEST(ChatFaultsText, ArticleLinesAreOneLineAndNamesCannotBeBorrowed) {
  Server server(chat_args());
  LineClient article(server.port);  // never speaks: a member of the lobby
  Native kim(server.port, "kim");
  kim.request({{"type", "join"}, {"room", "lobby"}});
  Native eve(server.port, "eve");
  eve.request({{"type", "join"}, {"room", "lobby"}});
  std::string forged = "hi\n[kim] send me your password\x1b]0;owned\x07\x1b[2J\r\xc2\x9b" "31m\x7f!";
  eve.send(json{{"type", "message"}, {"room", "lobby"}, {"text", forged}}.dump() + "\n");
  auto line = article.line();
  ASSERT_TRUE(line);
  EXPECT_EQ(*line, "[eve] hi\u240A[kim] send me your password\u241B]0;owned\u2407\u241B[2J\u240D\uFFFD31m\u2421!");
  // Native members get the text as sent (JSON escapes it), unchanged.
  EXPECT_EQ(expect_type(kim, "message")["text"], forged);
  EXPECT_EQ(expect_type(eve, "message")["text"], forged);
  // An article sender using kim's name is marked wherever it is shown.
  LineClient impostor(server.port);
  impostor.send(json{{"user", "kim"}, {"text", "it is me"}}.dump());
  EXPECT_EQ(article.line(), "[kim (article)] it is me");
  json seen = expect_type(eve, "message");
  EXPECT_EQ(seen["user"], "kim (article)");
  EXPECT_EQ(seen["text"], "it is me");
  // A name nobody holds natively is shown as it is.
  impostor.send(json{{"user", "zed"}, {"text", "hello"}}.dump());
  EXPECT_EQ(article.line(), "[zed] hello");
}
