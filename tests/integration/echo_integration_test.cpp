// The echo server and client as processes, over real sockets: every model and backend.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "process.h"

using namespace std::chrono_literals;
using testproc::Process;
using testproc::Server;

namespace {

struct Variant {
  std::string name;
  std::vector<std::string> args;
};

std::vector<std::string> server_args(const Variant& v, const std::string& port = "0") {
  std::vector<std::string> args{ECHO_SERVER_BIN, "--port", port};
  args.insert(args.end(), v.args.begin(), v.args.end());
  return args;
}

// The article's first two models run until killed: a signal ends them, not a clean exit.
void expect_stop(Server& server, const Variant& v) {
  if (v.name == "threads" || v.name == "busy_wait") server.process.may_die_by_signal();
}

std::string count_lines(const std::string& s, size_t* n) {
  *n = static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
  return s;
}

}  // namespace

class EchoModels : public ::testing::TestWithParam<Variant> {};

INSTANTIATE_TEST_SUITE_P(
    AllModelsAndBackends, EchoModels,
    ::testing::Values(Variant{"reactor_epoll", {"--model", "reactor", "--backend", "epoll"}},
                      Variant{"reactor_poll", {"--model", "reactor", "--backend", "poll"}},
                      Variant{"reactor_select", {"--model", "reactor", "--backend", "select"}},
                      Variant{"threads", {"--model", "threads"}},
                      Variant{"busy_wait", {"--model", "busy-wait"}}),
    [](const auto& info) { return info.param.name; });

TEST_P(EchoModels, EchoesWhatItReceives) {
  Server server(server_args(GetParam()));
  expect_stop(server, GetParam());
  int fd = testproc::connect_to(server.port);
  ASSERT_GE(fd, 0);
  for (std::string msg : {"Hello Kim", "How r u?", "Great, Thanks for asking."}) {
    ASSERT_EQ(::send(fd, msg.data(), msg.size(), 0), static_cast<ssize_t>(msg.size()));
    std::string got;
    char buf[256];
    while (got.size() < msg.size()) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      ASSERT_GT(n, 0);
      got.append(buf, static_cast<size_t>(n));
    }
    EXPECT_EQ(got, msg);
  }
  ::close(fd);
}

TEST_P(EchoModels, ThousandConcurrentConnectionsEachGetTheirOwnBytes) {
  Server server(server_args(GetParam()));
  expect_stop(server, GetParam());
  EXPECT_EQ(testproc::echo_many(server.port, 1000, 200, 60s), "");
}

TEST_P(EchoModels, OneMebibyteMessageComesBackByteExact) {
  Server server(server_args(GetParam()));
  expect_stop(server, GetParam());
  EXPECT_EQ(testproc::echo_many(server.port, 1, 1 << 20, 60s), "");
  EXPECT_EQ(testproc::echo_many(server.port, 4, 1 << 20, 60s), "") << "several at once";
}

TEST(EchoServer, ReactorStopsGracefullyOnSigtermAndSigint) {
  for (int signo : {SIGTERM, SIGINT}) {
    Server server({ECHO_SERVER_BIN, "--port", "0"});
    int fd = testproc::connect_to(server.port);  // an open connection does not hold up the stop
    ASSERT_GE(fd, 0);
    auto status = server.process.signal_and_wait(signo, 10s);
    ASSERT_TRUE(status.has_value()) << "did not stop";
    EXPECT_TRUE(WIFEXITED(*status)) << "killed by the signal instead of stopping";
    EXPECT_EQ(WEXITSTATUS(*status), 0);
    ::close(fd);
  }
}

TEST(EchoServer, DefaultBackendIsEpoll) {
  Server server({ECHO_SERVER_BIN, "--port", "0"});
  EXPECT_NE(server.process.out().find("epoll"), std::string::npos) << server.process.out();
}

TEST(EchoServer, UserMistakesAreOneClearLineAndANonZeroExit) {
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  };
  Server holder({ECHO_SERVER_BIN, "--port", "0"});
  std::vector<Case> cases = {
      {{"--backend", "kqueue"}, "kqueue"},
      {{"--model", "fibers"}, "fibers"},
      {{"--port", "70000"}, "--port"},
      {{"--port", "abc"}, "--port"},
      {{"--frobnicate"}, "frobnicate"},
      {{"--model", "threads", "--backend", "poll"}, "--backend"},
      {{"--port", std::to_string(holder.port)}, "Address already in use"},
      {{"--host", "no.such.host.invalid"}, "no.such.host.invalid"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv{ECHO_SERVER_BIN};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    Process p(argv);
    auto status = p.wait(10s);
    ASSERT_TRUE(status.has_value());
    ASSERT_TRUE(WIFEXITED(*status)) << "crashed on " << c.args[0];
    EXPECT_NE(WEXITSTATUS(*status), 0) << c.expect;
    size_t lines;
    count_lines(p.err(), &lines);
    EXPECT_EQ(lines, 1u) << p.err();
    EXPECT_NE(p.err().find(c.expect), std::string::npos) << p.err();
    EXPECT_EQ(p.err().find("terminate called"), std::string::npos) << p.err();
  }
}

TEST(EchoClient, PipedStdinComesBackAndTheClientExitsCleanly) {
  Server server({ECHO_SERVER_BIN, "--port", "0"});
  Process client({ECHO_CLIENT_BIN, "--port", std::to_string(server.port)});
  std::string input;
  for (int i = 0; i < 2000; ++i) input += "line " + std::to_string(i) + " of the piped input\n";
  client.write_stdin(input);
  client.close_stdin();
  auto status = client.wait(30s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << client.err();
  EXPECT_EQ(client.out(), input);
}

TEST(EchoClient, ExitsWithAClearErrorWhenTheServerIsAway) {
  int port;
  {
    Server probe({ECHO_SERVER_BIN, "--port", "0"});
    port = probe.port;
  }  // killed: nobody listens there now
  Process client({ECHO_CLIENT_BIN, "--port", std::to_string(port)});
  auto status = client.wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0);
  EXPECT_NE(client.err().find("Connection refused"), std::string::npos) << client.err();
}

// The article's own client, unmodified, against our server. EchoClient.py connects to
// localhost:1234, so this test needs that port (ctest runs it alone: RESOURCE_LOCK).
TEST(ArticleClients, EchoClientPyGetsItsLinesBack) {
  std::string script = std::string(SEED_DIR) + "/EchoClient.py";
  ASSERT_TRUE(std::filesystem::exists(script)) << "missing " << script;
  Server server({ECHO_SERVER_BIN, "--port", "1234"});
  Process client({"python3", script});
  std::vector<std::string> lines = {"Hello", "How r u?", "Great, Thanks for asking."};
  for (auto& l : lines) client.write_stdin(l + "\n");
  client.close_stdin();  // input() then raises EOFError and the client ends
  auto status = client.wait(30s);
  ASSERT_TRUE(status.has_value()) << "EchoClient.py hung";
  std::string expect;
  for (auto& l : lines) expect += "Enter msg: Received:  " + l + "\n";
  EXPECT_EQ(client.out().substr(0, expect.size()), expect) << client.out() << client.err();
}
