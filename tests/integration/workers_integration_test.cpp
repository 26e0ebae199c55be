// chat-server --workers: the supervisor with real workers, joined through a redis-server of the
// test's own. The supervisor's rules one by one (crash loops, backoff, the SIGKILL after the grace
// period) are tested with short timings in tests/unit/workers_test.cpp.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chat_helpers.h"
#include "process.h"
#include "redis_helpers.h"

using namespace chattest;
using redistest::RedisServer;
using testproc::Server;

namespace {

// The pid in a supervisor line "worker N started (pid P)", or -1.
pid_t started_pid(const std::optional<std::string>& line) {
  std::smatch m;
  if (!line || !std::regex_search(*line, m, std::regex(R"(started \(pid (\d+)\))"))) return -1;
  return static_cast<pid_t>(std::stoi(m[1]));
}

// Exited: reaped, or a zombie nobody reaps yet.
bool gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("State:")) return line.find('Z') != std::string::npos;
  }
  return true;
}

bool gone_within(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!gone(pid)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);  // no readiness signal exists for another process's exit
  }
  return true;
}

}  // namespace

TEST(ChatServerWorkers, AKilledWorkerIsReplacedAndTheServiceKeepsAnswering) {
  RedisServer redis;
  Server service(redistest::node_args({"--workers", "2", "--threads", "1", "--redis", redis.url()}));
  Process& supervisor = service.process;
  ASSERT_TRUE(supervisor.wait_for_line("chat-server: listening on", 20s)) << "the second worker";
  pid_t first = started_pid(supervisor.wait_for_err_line("[supervisor] worker 0 started", 10s));
  pid_t other = started_pid(supervisor.wait_for_err_line("[supervisor] worker 1 started", 10s));
  ASSERT_GT(first, 0) << supervisor.err();
  ASSERT_GT(other, 0) << supervisor.err();

  // At once, well inside what used to be the two seconds in which one crash stopped everything.
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(supervisor.wait_for_err_line("worker 0 (pid " + std::to_string(first) + ") killed by signal 9", 10s))
      << supervisor.err();
  pid_t second = started_pid(supervisor.wait_for_err_line("[supervisor] worker 0 started", 10s));
  ASSERT_GT(second, 0) << "worker 0 was not started again: " << supervisor.err();
  ASSERT_TRUE(supervisor.wait_for_line("chat-server: listening on", 20s)) << "the new worker 0: " << supervisor.err();

  // Members on both workers (the kernel spreads connections over the two listeners) share a room.
  std::vector<std::unique_ptr<Native>> members;
  for (int i = 0; i < 20; ++i) {
    members.push_back(std::make_unique<Native>(service.port, "m" + std::to_string(i)));
    ASSERT_EQ(members.back()->welcome.value("type", ""), "welcome");
    json joined = members.back()->request({{"type", "join"}, {"room", "hall"}});
    ASSERT_EQ(joined.value("type", ""), "joined") << joined.dump();
  }
  members[0]->send(json{{"type", "message"}, {"room", "hall"}, {"text", "still here"}}.dump() + "\n");
  for (auto& m : members) {
    json got = expect_type(*m, "message");
    EXPECT_EQ(got.value("user", "") + ":" + got.value("text", ""), "m0:still here") << got.dump();
  }
  // Each worker answers SIGUSR1 under its own tag; the new worker 0 took connections.
  ::kill(supervisor.pid(), SIGUSR1);
  auto new_stats = supervisor.wait_for_err_line("[worker 0, pid " + std::to_string(second) + "] stats:", 10s);
  ASSERT_TRUE(new_stats) << supervisor.err();
  EXPECT_GT(counter(*new_stats, "accepted"), 0) << *new_stats;
  EXPECT_FALSE(gone(other)) << "worker 1 must not be touched";

  auto status = supervisor.signal_and_wait(SIGTERM, 30s);
  ASSERT_TRUE(status.has_value()) << "the supervisor did not stop";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << supervisor.err();
  EXPECT_EQ(supervisor.err().find("Sanitizer"), std::string::npos) << supervisor.err();
  EXPECT_TRUE(gone(second));
  EXPECT_TRUE(gone(other));
}

TEST(ChatServerWorkers, WorkersStopWhenTheirSupervisorIsKilled) {
  RedisServer redis;
  Server service(redistest::node_args({"--workers", "2", "--threads", "1", "--redis", redis.url()}));
  Process& supervisor = service.process;
  ASSERT_TRUE(supervisor.wait_for_line("chat-server: listening on", 20s)) << "the second worker";
  pid_t a = started_pid(supervisor.wait_for_err_line("[supervisor] worker 0 started", 10s));
  pid_t b = started_pid(supervisor.wait_for_err_line("[supervisor] worker 1 started", 10s));
  ASSERT_GT(a, 0) << supervisor.err();
  ASSERT_GT(b, 0) << supervisor.err();
  // SIGKILL: the supervisor can pass nothing on; the parent-death signal (SIGTERM) must.
  auto status = supervisor.signal_and_wait(SIGKILL, 10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(gone_within(a, 20s)) << "worker 0 outlived its supervisor";
  EXPECT_TRUE(gone_within(b, 20s)) << "worker 1 outlived its supervisor";
}
