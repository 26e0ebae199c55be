// Regression tests for faults found by adversarial testing: each reproduces an attack or a
// demanding user's load against the release server, with one and two reactors where it matters.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>
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
