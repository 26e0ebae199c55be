// loadgen against our own servers: small, bounded runs whose figures must be sane and lossless.
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "process.h"

using namespace std::chrono_literals;
using json = nlohmann::json;
using testproc::Process;
using testproc::Server;

namespace {

json run_loadgen(std::vector<std::string> args, int* exit_status) {
  std::vector<std::string> argv{LOADGEN_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--json");
  Process p(argv);
  auto status = p.wait(120s);
  *exit_status = status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  json j = json::parse(p.out(), nullptr, false);
  if (j.is_discarded()) return json{{"unparsed", p.out()}, {"stderr", p.err()}};
  return j;
}

}  // namespace

TEST(Loadgen, EchoRoundTripsAgainstTheReactorServer) {
  Server server({ECHO_SERVER_BIN, "--port", "0"});
  int status;
  json r = run_loadgen({"--mode", "echo", "--port", std::to_string(server.port), "--connections", "50",
                        "--active", "10", "--duration", "1", "--warmup", "0.2", "--server-pid",
                        std::to_string(server.process.pid())},
                       &status);
  ASSERT_EQ(status, 0) << r.dump();
  EXPECT_EQ(r["errors"], 0) << r.dump();
  EXPECT_GT(r["rtt_per_s"].get<double>(), 100.0) << r.dump();
  EXPECT_GT(r["latency_us"]["p50"].get<double>(), 0.0);
  EXPECT_GT(r["server_cpu_us_per_op"].get<double>(), 0.0);
}

// The dialects loadgen speaks to chat-server, each on the server's port for it: the chat port for
// the native and article dialects, GET /ws on the HTTP port as a browser speaks it (the upgrade,
// masked frames), the IRC port as an IRC client speaks it (NICK/USER, JOIN at 001, ready at 366,
// PRIVMSG, no capabilities; checked by hand against ngircd too: BENCHMARKS.md, "IRC fan-out").
namespace {

struct Dialect {
  std::string name;
  std::vector<std::string> server_flags;  // beside the limits that are off
  std::string port_line;                  // the line that gives its port ("": the chat port's)
  bool server_pid = false;                // loadgen measures the server's CPU too
};

// Its name in the test's name (ctest's "# GetParam() = ...").
void PrintTo(const Dialect& d, std::ostream* os) { *os << '"' << d.name << '"'; }
std::string name_of(const ::testing::TestParamInfo<Dialect>& info) { return info.param.name; }

const Dialect kNative{"native", {"--no-http", "--no-irc"}, "", false};
const Dialect kArticle{"article", {"--no-http", "--no-irc"}, "", false};
const Dialect kWs{"ws", {"--http-port", "0", "--irc-port", "0"}, "http listening on", false};
const Dialect kIrc{"irc", {"--no-http", "--irc-port", "0", "--irc-flood-rate", "0"}, "irc listening on", true};

// chat-server for a dialect's clients, with the limits that would get in a load's way off.
std::vector<std::string> server_argv(const Dialect& d) {
  std::vector<std::string> argv{CHAT_SERVER_BIN, "--port", "0", "--message-rate", "0", "--max-connections-per-address", "0",
                                "--connect-rate", "0", "--store", "memory"};
  argv.insert(argv.end(), d.server_flags.begin(), d.server_flags.end());
  return argv;
}

// The port the dialect's clients go to, or -1 if the server did not say it.
int port_for(Server& server, const Dialect& d) {
  if (d.port_line.empty()) return server.port;
  auto line = server.process.wait_for_line(d.port_line, 20s);
  if (!line) return -1;
  size_t colon = line->find(':', line->find("listening on"));
  return colon == std::string::npos ? -1 : std::stoi(line->substr(colon + 1));
}

class LoadgenChat : public ::testing::TestWithParam<Dialect> {};
class LoadgenAcks : public ::testing::TestWithParam<Dialect> {};

}  // namespace

// Lossless fan-out: 200 members, members and publishers all of the dialect.
TEST_P(LoadgenChat, FanOutIsLossless) {
  const Dialect& d = GetParam();
  Server server(server_argv(d));
  int port = port_for(server, d);
  ASSERT_GT(port, 0) << server.process.out() << server.process.err();
  std::vector<std::string> args{"--mode", "chat", "--dialect", d.name, "--port", std::to_string(port), "--connections",
                                "200", "--rate", "200", "--publishers", "2", "--duration", "1", "--warmup", "0.2",
                                "--drain", "5"};
  if (d.server_pid) args.insert(args.end(), {"--server-pid", std::to_string(server.process.pid())});
  int status;
  json r = run_loadgen(args, &status);
  ASSERT_EQ(status, 0) << d.name << ": " << r.dump();
  EXPECT_EQ(r["dialect"], d.name) << r.dump();
  EXPECT_EQ(r["errors"], 0) << r.dump();
  EXPECT_EQ(r["members_subscribed"], 200) << r.dump();
  EXPECT_GT(r["messages_sent"].get<uint64_t>(), 100u) << r.dump();
  EXPECT_EQ(r["received"], r["expected_deliveries"]) << d.name << ": " << r.dump();
  EXPECT_EQ(r["loss"], 0) << r.dump();
  EXPECT_EQ(r["duplicates"], 0) << r.dump();
  EXPECT_EQ(r["out_of_order"], 0) << r.dump();
}

INSTANTIATE_TEST_SUITE_P(Dialects, LoadgenChat, ::testing::Values(kNative, kArticle, kWs, kIrc), name_of);

// --ids: every publish carries an id and the server acks each once stored; loadgen counts the acks
// of the measured messages (none missing, none refused) and times them from the publish. (The
// article and IRC dialects have no ids: loadgen refuses --ids with them.)
TEST_P(LoadgenAcks, ChatWithIdsCountsAndTimesEveryAck) {
  const Dialect& d = GetParam();
  Server server(server_argv(d));
  int port = port_for(server, d);
  ASSERT_GT(port, 0) << server.process.out() << server.process.err();
  int status;
  json r = run_loadgen({"--mode", "chat", "--dialect", d.name, "--port", std::to_string(port), "--connections",
                        "50", "--rate", "200", "--publishers", "2", "--duration", "1", "--warmup", "0.2",
                        "--drain", "5", "--ids"},
                       &status);
  ASSERT_EQ(status, 0) << d.name << ": " << r.dump();
  EXPECT_EQ(r["ids"], true) << r.dump();
  EXPECT_EQ(r["errors"], 0) << r.dump();
  EXPECT_EQ(r["loss"], 0) << r.dump();
  EXPECT_GT(r["messages_sent"].get<uint64_t>(), 100u) << r.dump();
  // Warm-up messages are acked too: at least one ack per measured message.
  EXPECT_GE(r["acks"].get<uint64_t>(), r["messages_sent"].get<uint64_t>()) << r.dump();
  EXPECT_EQ(r["acks_missing"], 0) << r.dump();
  EXPECT_EQ(r["not_stored"], 0) << r.dump();
  EXPECT_EQ(r["ack_latency_us"]["samples"], r["messages_sent"]) << r.dump();
  EXPECT_GT(r["ack_latency_us"]["p99"].get<double>(), 0.0) << r.dump();
}

INSTANTIATE_TEST_SUITE_P(Dialects, LoadgenAcks, ::testing::Values(kNative, kWs), name_of);

// --window: closed-loop publishing, each publisher keeping N messages unacknowledged; the figure is
// acknowledged messages per second, and nothing is lost or left unacknowledged.
TEST(Loadgen, ChatWithAWindowPublishesAsAcksComeBack) {
  Server server({CHAT_SERVER_BIN, "--port", "0", "--message-rate", "0", "--max-connections-per-address", "0", "--connect-rate", "0", "--no-http", "--no-irc", "--store", "memory"});
  int status;
  json r = run_loadgen({"--mode", "chat", "--port", std::to_string(server.port), "--connections", "2",
                        "--publishers", "2", "--window", "16", "--duration", "1", "--warmup", "0.2", "--drain", "5"},
                       &status);
  ASSERT_EQ(status, 0) << r.dump();
  EXPECT_EQ(r["window"], 16) << r.dump();
  EXPECT_EQ(r["errors"], 0) << r.dump();
  EXPECT_EQ(r["loss"], 0) << r.dump();
  EXPECT_EQ(r["duplicates"], 0) << r.dump();
  EXPECT_EQ(r["out_of_order"], 0) << r.dump();
  EXPECT_EQ(r["acks_missing"], 0) << r.dump();
  // Many windows' worth (2 x 16 = 32 in flight): the publishers refill as the acks come back. Loose
  // enough for a sanitized build on a loaded machine (about 3,500/s measured there).
  EXPECT_GT(r["acks_per_s"].get<double>(), 500.0) << r.dump();
  EXPECT_GT(r["ack_latency_us"]["p50"].get<double>(), 0.0) << r.dump();
}

// --mode recover: members join and leave, messages are published while they are away (prepare),
// then they all reconnect at once with since/epoch while a publisher goes on (storm): every member
// is replayed exactly what it missed, then the live messages, with no gap and no duplicate.
TEST(Loadgen, RecoverStormReplaysWhatEveryMemberMissed) {
  Server server({CHAT_SERVER_BIN, "--port", "0", "--message-rate", "0", "--max-connections-per-address", "0", "--connect-rate", "0", "--no-http", "--no-irc", "--store", "memory", "--threads", "1"});
  const std::string port = std::to_string(server.port);
  int status;
  json prep = run_loadgen({"--mode", "recover", "--phase", "prepare", "--port", port, "--connections", "50",
                           "--missed", "20"},
                          &status);
  ASSERT_EQ(status, 0) << prep.dump();
  ASSERT_EQ(prep["last_seq"].get<uint64_t>(), prep["since"].get<uint64_t>() + 20) << prep.dump();
  ASSERT_FALSE(prep["epoch"].get<std::string>().empty()) << prep.dump();
  json r = run_loadgen({"--mode", "recover", "--phase", "storm", "--port", port, "--connections", "50", "--missed",
                        "20", "--since", std::to_string(prep["since"].get<uint64_t>()), "--epoch",
                        prep["epoch"].get<std::string>(), "--rate", "200", "--duration", "0.5", "--drain", "5"},
                       &status);
  ASSERT_EQ(status, 0) << r.dump();
  EXPECT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["recovered"], 50) << r.dump();
  EXPECT_EQ(r["failed_members"], 0) << r.dump();
  EXPECT_EQ(r["replayed_messages"], 50 * 20) << r.dump();
  EXPECT_EQ(r["drained"], true) << r.dump();
  EXPECT_GT(r["live_received"].get<uint64_t>(), 0u) << r.dump();
  EXPECT_GT(r["last_recovery_s"].get<double>(), 0.0) << r.dump();
}

// A member that cannot be replayed what it missed (another epoch) is told recovered:false, and the
// storm says so: no member counts as recovered, and the exit status is 1.
TEST(Loadgen, RecoverStormCountsMembersThatCouldNotRecover) {
  Server server({CHAT_SERVER_BIN, "--port", "0", "--message-rate", "0", "--max-connections-per-address", "0", "--connect-rate", "0", "--no-http", "--no-irc", "--store", "memory", "--threads", "1"});
  int status;
  json r = run_loadgen({"--mode", "recover", "--phase", "storm", "--port", std::to_string(server.port),
                        "--connections", "10", "--missed", "5", "--since", "3", "--epoch", "not-this-one",
                        "--rate", "50", "--duration", "0.2", "--drain", "1", "--connect-timeout", "5"},
                       &status);
  EXPECT_EQ(status, 1) << r.dump();
  EXPECT_EQ(r["ok"], false) << r.dump();
  EXPECT_EQ(r["recovered_false"], 10) << r.dump();
  EXPECT_EQ(r["recovered"], 0) << r.dump();
}

// The chat port is not an HTTP port: no 101 comes, and loadgen fails the run (exit 1: a run that
// could not be made; 2 would be a refused command line) instead of measuring nothing.
TEST(Loadgen, WebSocketDialectOnANonHttpPortIsAnError) {
  Server server({CHAT_SERVER_BIN, "--port", "0", "--message-rate", "0", "--max-connections-per-address", "0", "--connect-rate", "0", "--no-http", "--no-irc", "--store", "memory"});
  int status;
  json r = run_loadgen({"--mode", "chat", "--dialect", "ws", "--port", std::to_string(server.port), "--connections",
                        "5", "--rate", "10", "--duration", "0.5", "--warmup", "0.1", "--drain", "1",
                        "--connect-timeout", "5"},
                       &status);
  EXPECT_EQ(status, 1) << r.dump();
}

TEST(Loadgen, BadParametersAreOneLineAndExitTwo) {
  std::vector<std::vector<std::string>> cases = {
      {"--mode", "chat", "--port", "1", "--rate", "0"},
      {"--mode", "echo", "--port", "1", "--connections", "5", "--active", "6"},
      {"--mode", "chat", "--port", "1", "--dialect", "carrier-pigeon"},
      {"--mode", "teleport", "--port", "1"},
      {"--port", "1", "--connections", "100000", "--processes", "1"},
      {"--mode", "chat", "--port", "1", "--window", "8", "--rate", "100"},
      {"--mode", "chat", "--port", "1", "--window", "0"},
      {"--mode", "chat", "--port", "1", "--dialect", "redis", "--ids"},
      {"--mode", "chat", "--port", "1", "--dialect", "irc", "--ids"},
      {"--mode", "chat", "--port", "1", "--dialect", "irc", "--window", "8"},
      {"--mode", "chat", "--port", "1", "--dialect", "irc", "--payload", "400"},
      {"--mode", "recover", "--port", "1", "--dialect", "irc"},
      {"--mode", "echo", "--port", "1", "--batch-until-ready"},
      {"--mode", "echo", "--port", "1", "--ids"},
      {"--mode", "recover", "--port", "1", "--phase", "storm"},
      {"--mode", "recover", "--port", "1", "--phase", "replay"},
      {"--mode", "chat", "--port", "1", "--missed", "5"},
  };
  for (auto& args : cases) {
    std::vector<std::string> argv{LOADGEN_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv);
    auto status = p.wait(20s);
    ASSERT_TRUE(status.has_value()) << "hung on " << args[1];
    ASSERT_TRUE(WIFEXITED(*status));
    EXPECT_EQ(WEXITSTATUS(*status), 2) << p.err();
    EXPECT_EQ(std::count(p.err().begin(), p.err().end(), '\n'), 1) << p.err();
  }
}

TEST(Loadgen, NobodyListeningIsAClearErrorNotAHang) {
  int port;
  {
    Server probe({ECHO_SERVER_BIN, "--port", "0"});
    port = probe.port;
  }
  Process p({LOADGEN_BIN, "--mode", "echo", "--port", std::to_string(port), "--connections", "5", "--duration", "1"});
  auto status = p.wait(60s);
  ASSERT_TRUE(status.has_value()) << "hung";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0);
  EXPECT_NE(p.err().find("refused"), std::string::npos) << p.err();
}
