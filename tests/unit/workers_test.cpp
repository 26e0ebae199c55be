// The --workers supervisor (app::supervise) with short shell scripts as its workers and short
// timings. Each test runs the supervisor in a child process of its own (it takes signals, forks and
// reaps), reads what it and its workers print, and signals it as an operator would.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "app/redis_url.h"
#include "app/workers.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Workers log nothing of their own: they say "up INDEX PID" when started, and what else the test
// asks of them, on the stdout they share with the supervisor's log.
constexpr const char* kUp = R"(echo "up $TEST_WORKER $$"; )";

app::SupervisorTimings fast() {
  app::SupervisorTimings t;
  t.stop_grace = 5s;
  t.start_window = 2s;
  t.first_backoff = 10ms;
  t.max_backoff = 80ms;
  t.healthy_after = 10s;
  t.crash_limit = 5;
  t.crash_window = 60s;
  return t;
}

// app::supervise(workers, sh -c script) in a child process, in a process group of its own (so that
// whatever a failed test leaves behind is killed with it); its stdout and stderr, and its workers',
// come back through one pipe.
class Supervised {
 public:
  Supervised(size_t workers, const std::string& script, app::SupervisorTimings timings) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::dup2(fds[1], STDOUT_FILENO);
      ::dup2(fds[1], STDERR_FILENO);
      app::WorkerCommand command{.program = "/bin/sh",
                                 .argv = {"sh", "-c", script},
                                 .index_variable = "TEST_WORKER",
                                 .keep_signals_blocked = false};
      int status = 99;
      try {
        status = app::supervise(workers, command, timings);
      } catch (...) {
      }
      std::fflush(stdout);
      std::fflush(stderr);
      std::_Exit(status);
    }
    ::setpgid(pid_, pid_);
    ::close(fds[1]);
    fd_ = fds[0];
  }
  ~Supervised() {
    if (!status_) {
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::kill(-pid_, SIGKILL);  // a worker that outlived it
    ::close(fd_);
  }

  pid_t pid() const { return pid_; }
  const std::string& output() const { return out_; }

  // Every match of `pattern` in the output so far, each as its capture groups; waits until there
  // are at least `n` (returns what there is at the deadline).
  std::vector<std::vector<std::string>> matches(const std::string& pattern, size_t n = 0,
                                                std::chrono::milliseconds timeout = 20s) {
    std::regex re(pattern);
    auto deadline = Clock::now() + timeout;
    for (;;) {
      std::vector<std::vector<std::string>> all;
      for (auto it = std::sregex_iterator(out_.begin(), out_.end(), re); it != std::sregex_iterator(); ++it) {
        std::vector<std::string> groups;
        for (size_t g = 1; g < it->size(); ++g) groups.push_back((*it)[g].str());
        all.push_back(groups);
      }
      if (all.size() >= n || Clock::now() >= deadline || eof_) return all;
      pump(deadline);
    }
  }

  // The supervisor's wait status, or nullopt if it is still running at the deadline.
  std::optional<int> wait(std::chrono::milliseconds timeout = 20s) {
    auto deadline = Clock::now() + timeout;
    while (!status_) {
      int ws;
      if (::waitpid(pid_, &ws, WNOHANG) == pid_) {
        status_ = ws;
        break;
      }
      if (Clock::now() >= deadline) break;
      if (eof_) {
        ::usleep(10'000);  // nothing more to read; it is only reaping its last worker
      } else {
        pump(std::min(deadline, Clock::now() + 50ms));
      }
    }
    // What it and its workers printed before they exited.
    while (status_ && !eof_ && pump(Clock::now() + 100ms)) {
    }
    return status_;
  }

 private:
  // Reads what is there, waiting until `deadline` for something; false if nothing came.
  bool pump(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::max<long>(left, 0))) <= 0) return false;
    char buf[4096];
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    out_.append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string out_;
  bool eof_ = false;
  std::optional<int> status_;
};

bool gone(pid_t pid) {
  // A reaped process is gone; so, for this purpose, is one that is only a zombie.
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("State:")) return line.find('Z') != std::string::npos;
  }
  return true;
}

pid_t pid_of(const std::vector<std::string>& up) { return static_cast<pid_t>(std::stoi(up.at(1))); }

// A directory of the test's own, removed at its end (workers keep their state between runs there).
struct TempDir {
  TempDir() : path(std::filesystem::temp_directory_path() / ("workers_test." + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

int count_lines_with(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = 0; (at = text.find(what, at)) != std::string::npos; at += what.size()) ++n;
  return n;
}

}  // namespace

TEST(Workers, AKilledWorkerIsReplacedAndTheOthersKeepRunning) {
  Supervised s(2, std::string(kUp) + "exec sleep 60", fast());
  auto up = s.matches(R"(up (\d) (\d+))", 2);
  ASSERT_EQ(up.size(), 2u) << s.output();
  pid_t first = pid_of(up[0][0] == "0" ? up[0] : up[1]);
  pid_t other = pid_of(up[0][0] == "0" ? up[1] : up[0]);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  auto again = s.matches(R"(up 0 (\d+))", 2);
  ASSERT_EQ(again.size(), 2u) << "worker 0 was not started again:\n" << s.output();
  pid_t second = static_cast<pid_t>(std::stoi(again[1][0]));
  EXPECT_NE(second, first);
  EXPECT_FALSE(gone(second));
  EXPECT_FALSE(gone(other)) << "worker 1 must not be touched";
  EXPECT_EQ(s.matches(R"(up 1 )").size(), 1u);
  EXPECT_NE(s.output().find("[supervisor] worker 0 (pid " + std::to_string(first) + ") killed by signal 9"),
            std::string::npos)
      << s.output();
  ASSERT_EQ(::kill(s.pid(), SIGTERM), 0);
  auto status = s.wait();
  ASSERT_TRUE(status) << "the supervisor did not stop:\n" << s.output();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << s.output();
}

TEST(Workers, OneEarlyCrashIsSurvivedWithTheDefaultTimings) {
  // Worker 0 dies at once the first time only (a marker file remembers), well inside the start
  // window; the defaults start it again after 100 ms instead of stopping the service.
  TempDir dir;
  std::string marker = (dir.path / "crashed").string();
  Supervised s(2,
               std::string(kUp) + "if [ \"$TEST_WORKER\" = 0 ] && [ ! -e " + marker + " ]; then touch " + marker +
                   "; kill -KILL $$; fi; exec sleep 60",
               app::SupervisorTimings{});
  auto zero = s.matches(R"(up 0 (\d+))", 2);
  ASSERT_EQ(zero.size(), 2u) << "worker 0 was not started again:\n" << s.output();
  EXPECT_NE(s.output().find("killed by signal 9 (Killed)"), std::string::npos) << s.output();
  EXPECT_NE(s.output().find("starting another in 100 ms"), std::string::npos) << s.output();
  EXPECT_FALSE(s.wait(200ms)) << "the supervisor stopped after one crash:\n" << s.output();
  EXPECT_FALSE(gone(static_cast<pid_t>(std::stoi(zero[1][0]))));
  ::kill(s.pid(), SIGTERM);
  auto status = s.wait();
  ASSERT_TRUE(status) << s.output();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << s.output();
}

TEST(Workers, ACrashLoopStopsEverythingWithOneLineAndStatusOne) {
  // Worker 1 dies at once every time; worker 0 is fine and must be stopped with the rest.
  auto t = fast();
  t.crash_limit = 3;
  t.crash_window = 30s;
  Supervised s(2, std::string(kUp) + "if [ \"$TEST_WORKER\" = 1 ]; then kill -KILL $$; fi; exec sleep 60", t);
  auto status = s.wait();
  ASSERT_TRUE(status) << "the supervisor did not give up:\n" << s.output();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << s.output();
  EXPECT_EQ(s.matches(R"(up 1 )").size(), 3u) << s.output();
  EXPECT_EQ(count_lines_with(s.output(), "giving up"), 1) << s.output();
  EXPECT_NE(s.output().find("worker 1 crashed 3 times within 30 s (the last one killed by signal 9 (Killed)"),
            std::string::npos)
      << s.output();
  // The backoff doubled between the crashes.
  EXPECT_NE(s.output().find("starting another in 10 ms"), std::string::npos) << s.output();
  EXPECT_NE(s.output().find("starting another in 20 ms"), std::string::npos) << s.output();
  auto zero = s.matches(R"(up 0 (\d+))");
  ASSERT_EQ(zero.size(), 1u) << s.output();
  EXPECT_TRUE(gone(pid_of({"0", zero[0][0]}))) << "worker 0 outlived its supervisor";
}

TEST(Workers, TheBackoffDoublesUpToItsMaximumAndStartsOverAfterAHealthyRun) {
  // Runs 1-4 die at once, run 5 after 0.6 s (past healthy_after), run 6 at once, run 7 stays.
  TempDir dir;
  std::string count = (dir.path / "runs").string();
  auto t = fast();
  t.first_backoff = 10ms;
  t.max_backoff = 40ms;
  t.healthy_after = 300ms;
  t.crash_limit = 10;
  Supervised s(1,
               "n=$(cat " + count + " 2>/dev/null || echo 0); n=$((n + 1)); echo $n > " + count +
                   "; echo \"run $n\"; case $n in 1|2|3|4|6) kill -KILL $$;; 5) sleep 0.6; kill -KILL $$;; esac; "
                   "exec sleep 60",
               t);
  auto runs = s.matches(R"(run (\d+))", 7);
  ASSERT_EQ(runs.size(), 7u) << s.output();
  auto delays = s.matches(R"(starting another in (\d+) ms)");
  std::vector<std::string> got;
  for (auto& d : delays) got.push_back(d[0]);
  EXPECT_EQ(got, (std::vector<std::string>{"10", "20", "40", "40", "10", "20"})) << s.output();
  ::kill(s.pid(), SIGTERM);
  auto status = s.wait();
  ASSERT_TRUE(status) << s.output();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << s.output();
}

TEST(Workers, AnErrorStatusAtStartStopsEverythingAtOnceWithThatStatus) {
  // A bad flag or a port in use: another start would fail the same way.
  Supervised s(3, std::string(kUp) + "if [ \"$TEST_WORKER\" = 2 ]; then exit 3; fi; exec sleep 60", fast());
  auto status = s.wait();
  ASSERT_TRUE(status) << s.output();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 3) << s.output();
  EXPECT_EQ(s.matches(R"(up 2 )").size(), 1u) << "it was started again:\n" << s.output();
  EXPECT_NE(s.output().find("exited with status 3 at start; stopping"), std::string::npos) << s.output();
  for (auto& up : s.matches(R"(up (\d) (\d+))")) EXPECT_TRUE(gone(pid_of(up))) << "worker " << up[0];
}

TEST(Workers, SigtermReachesEveryWorkerAndTheSupervisorExitsZeroOnceTheyHaveExited) {
  // Each worker takes 0.3 s to stop, as a server flushing its output would.
  Supervised s(3,
               "trap 'echo \"term $TEST_WORKER\"; kill $!; sleep 0.3; echo \"bye $TEST_WORKER\"; exit 0' TERM; "
               "trap 'echo \"usr1 $TEST_WORKER\"' USR1; " +
                   std::string(kUp) + "while :; do sleep 60 & wait $!; done",
               fast());
  auto up = s.matches(R"(up (\d) (\d+))", 3);
  ASSERT_EQ(up.size(), 3u) << s.output();
  // SIGUSR1 is passed on too.
  ::kill(s.pid(), SIGUSR1);
  EXPECT_EQ(s.matches(R"(usr1 (\d))", 3).size(), 3u) << s.output();
  ::kill(s.pid(), SIGTERM);
  auto status = s.wait();
  ASSERT_TRUE(status) << s.output();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << s.output();
  EXPECT_EQ(s.matches(R"(term (\d))").size(), 3u) << s.output();
  EXPECT_EQ(s.matches(R"(bye (\d))").size(), 3u) << "it exited before its workers:\n" << s.output();
  for (auto& u : up) EXPECT_TRUE(gone(pid_of(u))) << "worker " << u[0];
  EXPECT_EQ(s.output().find("killing it"), std::string::npos) << s.output();
}

TEST(Workers, AWorkerThatIgnoresSigtermIsKilledAfterTheGracePeriod) {
  auto t = fast();
  t.stop_grace = 700ms;
  // An ignored signal stays ignored across exec: this sleep cannot be stopped with SIGTERM.
  // The trap is set before the worker says it is up: a SIGTERM after "up" finds it ignored.
  Supervised s(2, "if [ \"$TEST_WORKER\" = 1 ]; then trap '' TERM; fi; " + std::string(kUp) + "exec sleep 60", t);
  auto up = s.matches(R"(up (\d) (\d+))", 2);
  ASSERT_EQ(up.size(), 2u) << s.output();
  auto start = Clock::now();
  ::kill(s.pid(), SIGTERM);
  auto status = s.wait();
  auto took = Clock::now() - start;
  ASSERT_TRUE(status) << s.output();
  EXPECT_GE(took, 700ms) << "killed before the grace period was over";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << s.output();
  pid_t stuck = pid_of(up[0][0] == "1" ? up[0] : up[1]);
  EXPECT_NE(s.output().find("worker 1 (pid " + std::to_string(stuck) + ") did not stop within 700 ms of SIGTERM; killing it"),
            std::string::npos)
      << s.output();
  EXPECT_EQ(count_lines_with(s.output(), "killing it"), 1) << s.output();
  for (auto& u : up) EXPECT_TRUE(gone(pid_of(u))) << "worker " << u[0];
}

// A worker is told --workers 1, also where a --config file says workers = N (flags win over it).
TEST(Workers, WorkerArgsReplaceWorkersAndPortAndAddReusePort) {
  const char* argv[] = {"chat-server", "--workers", "4", "--port=0", "--redis", "redis://x:1", "--workers=2",
                        "--port", "9", "--threads", "1"};
  auto args = app::worker_args(11, const_cast<char**>(argv), 4321);
  EXPECT_EQ(args, (std::vector<std::string>{"chat-server", "--redis", "redis://x:1", "--threads", "1", "--port", "4321",
                                            "--reuse-port", "--workers", "1"}));
}

TEST(RedisUrl, TakesHostAndPortWithOrWithoutTheScheme) {
  auto a = app::parse_redis_url("redis://127.0.0.1:6380");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 6380);
  auto b = app::parse_redis_url("cache.local/");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "cache.local");
  EXPECT_EQ(b->port, 6379);
  for (const char* bad : {"", "http://x", "redis://", "x:0", "x:65536", "x:99999", "x:", "a b", "redis://x:1/2"}) {
    EXPECT_FALSE(app::parse_redis_url(bad)) << bad;
  }
}
