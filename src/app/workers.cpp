#include "app/workers.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <string_view>

#include "reactor/handle.h"
#include "reactor/inet_address.h"
#include "reactor/log.h"
#include "reactor/reactor.h"
#include "reactor/tcp_listener.h"

namespace app {
namespace {

using reactor::Clock;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

// "killed by signal 9 (Killed)" or "exited with status 3".
std::string describe(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    int s = WTERMSIG(wait_status);
    return "killed by signal " + std::to_string(s) + " (" + strsignal(s) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(wait_status));
}

// "350 ms" under ten seconds, else "12 s".
std::string span(Clock::duration d) {
  auto ms = duration_cast<milliseconds>(d).count();
  return ms < 10'000 ? std::to_string(ms) + " ms" : std::to_string(ms / 1000) + " s";
}

class Supervisor {
 public:
  Supervisor(reactor::Reactor& loop, size_t workers, const WorkerCommand& command, const SupervisorTimings& timings)
      : loop_(loop), command_(command), timings_(timings), slots_(workers) {
    for (auto& s : slots_) s.backoff = timings_.first_backoff;
  }

  void start() {
    // Watched before the first fork: a worker that dies at once is then reported, not lost.
    loop_.on_signal(SIGINT, [this](int) { stop_all(); });
    loop_.on_signal(SIGTERM, [this](int) { stop_all(); });
    // SIGUSR1 (the counters), SIGUSR2 (drain without stopping) and SIGHUP (the TLS certificate read
    // again) are each worker's business.
    for (int signo : {SIGUSR1, SIGUSR2, SIGHUP}) {
      loop_.on_signal(signo, [this](int s) {
        for (auto& [pid, index] : running_) ::kill(pid, s);
      });
    }
    loop_.on_signal(SIGCHLD, [this](int) { reap(); });
    for (size_t i = 0; i < slots_.size() && !stopping_; ++i) {
      if (!spawn(i)) give_up(1);
    }
  }

  int status() const { return status_; }

 private:
  struct Slot {
    pid_t pid = 0;  // 0: not running (waiting for its backoff, or stopped)
    Clock::time_point started;
    milliseconds backoff;
    std::deque<Clock::time_point> crashes;  // within the last crash_window
  };

  bool spawn(size_t index) {
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t self = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      LOG_ERROR("fork: %s", strerror(errno));
      return false;
    }
    if (pid == 0) exec_worker(index, self);
    Slot& s = slots_[index];
    s.pid = pid;
    s.started = Clock::now();
    running_[pid] = index;
    LOG_INFO("worker %zu started (pid %d)", index, pid);
    return true;
  }

  // In the child, between fork and exec; the supervisor runs one thread, so allocating is safe.
  [[noreturn]] void exec_worker(size_t index, pid_t supervisor) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the supervisor
    if (::getppid() != supervisor) std::_Exit(1);  // it died before prctl
    if (!command_.keep_signals_blocked) {
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
    }
    if (!command_.index_variable.empty()) ::setenv(command_.index_variable.c_str(), std::to_string(index).c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : command_.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(command_.program.c_str(), argv.data());
    std::fprintf(stderr, "worker %zu: exec %s: %s\n", index, command_.program.c_str(), strerror(errno));
    std::_Exit(127);
  }

  void reap() {
    int ws;
    pid_t pid;
    while ((pid = ::waitpid(-1, &ws, WNOHANG)) > 0) {
      auto it = running_.find(pid);
      if (it == running_.end()) continue;
      size_t index = it->second;
      running_.erase(it);
      Slot& s = slots_[index];
      s.pid = 0;
      if (stopping_) {
        if (WIFEXITED(ws) && WEXITSTATUS(ws) != 0 && status_ == 0) status_ = WEXITSTATUS(ws);
      } else {
        exited(index, pid, ws, Clock::now() - s.started);
      }
    }
    if (stopping_ && running_.empty()) loop_.stop();
  }

  void exited(size_t index, pid_t pid, int ws, Clock::duration ran) {
    bool error_status = WIFEXITED(ws) && WEXITSTATUS(ws) != 0;
    bool at_start = ran < timings_.start_window;
    if (error_status && at_start) {
      LOG_ERROR("worker %zu (pid %d) exited with status %d at start; stopping", index, pid, WEXITSTATUS(ws));
      give_up(WEXITSTATUS(ws));
      return;
    }
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && !at_start) {
      LOG_INFO("worker %zu (pid %d) stopped; starting another", index, pid);
      if (!spawn(index)) give_up(1);
      return;
    }
    Slot& s = slots_[index];
    auto now = Clock::now();
    s.crashes.push_back(now);
    while (now - s.crashes.front() > timings_.crash_window) s.crashes.pop_front();
    if (s.crashes.size() >= timings_.crash_limit) {
      LOG_ERROR("worker %zu crashed %zu times within %s (the last one %s, %s after it started); giving up: stopping",
                index, s.crashes.size(), span(timings_.crash_window).c_str(), describe(ws).c_str(), span(ran).c_str());
      give_up(1);
      return;
    }
    if (ran >= timings_.healthy_after) s.backoff = timings_.first_backoff;
    milliseconds delay = s.backoff;
    s.backoff = std::min(s.backoff * 2, timings_.max_backoff);
    LOG_WARN("worker %zu (pid %d) %s, %s after it started; starting another in %s", index, pid, describe(ws).c_str(),
             span(ran).c_str(), span(delay).c_str());
    loop_.run_after(delay, [this, index] {
      if (stopping_) return;
      if (!spawn(index)) give_up(1);
    });
  }

  void give_up(int status) {
    if (status_ == 0) status_ = status;
    stop_all();
  }

  void stop_all() {
    if (stopping_) return;
    stopping_ = true;
    for (auto& [pid, index] : running_) ::kill(pid, SIGTERM);
    if (running_.empty()) {
      loop_.stop();
      return;
    }
    // A worker still there well after its own grace period is stuck.
    loop_.run_after(timings_.stop_grace, [this] {
      for (auto& [pid, index] : running_) {
        LOG_WARN("worker %zu (pid %d) did not stop within %s of SIGTERM; killing it", index, pid,
                 span(timings_.stop_grace).c_str());
        ::kill(pid, SIGKILL);
      }
    });
  }

  reactor::Reactor& loop_;
  const WorkerCommand& command_;
  const SupervisorTimings& timings_;
  std::vector<Slot> slots_;
  std::map<pid_t, size_t> running_;  // pid -> index
  bool stopping_ = false;
  int status_ = 0;
};

}  // namespace

int supervise(size_t workers, const WorkerCommand& command, const SupervisorTimings& timings,
              const std::function<void(reactor::Reactor&)>& started) {
  reactor::set_log_tag("supervisor");
  reactor::Reactor loop;
  Supervisor supervisor(loop, workers, command, timings);
  supervisor.start();
  if (started) started(loop);
  loop.run();
  return supervisor.status();
}

std::vector<std::string> worker_args(int argc, char** argv, uint16_t port) {
  std::vector<std::string> out{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--workers" || a == "--port") {
      ++i;  // and its value
    } else if (!a.starts_with("--workers=") && !a.starts_with("--port=")) {
      out.emplace_back(a);
    }
  }
  // --workers 1: a worker must not supervise again, also when a --config file says workers = N.
  out.insert(out.end(), {"--port", std::to_string(port), "--reuse-port", "--workers", "1"});
  return out;
}

int supervise_on_port(size_t workers, const std::string& host, uint16_t port, int argc, char** argv,
                      const SupervisorTimings& timings) {
  // Port 0: choose one now, and hold it until the workers have theirs.
  reactor::Handle placeholder = reactor::bound_socket(reactor::InetAddress::resolve(host, port),
                                                      reactor::ListenOptions{.reuse_port = true}, false);
  reactor::InetAddress address = reactor::InetAddress::local_of(placeholder.get());
  WorkerCommand command{.program = "/proc/self/exe",
                        .argv = worker_args(argc, argv, address.port()),
                        .index_variable = kWorkerIndexVariable,
                        .keep_signals_blocked = true};
  return supervise(workers, command, timings, [&](reactor::Reactor& loop) {
    std::printf("chat-server: supervising %zu workers on %s\n", workers, address.to_string().c_str());
    std::fflush(stdout);
    // The workers bind as they start; until then this socket keeps the port ours.
    loop.run_after(std::chrono::seconds(5), [&placeholder] { placeholder = reactor::Handle(); });
  });
}

void tag_logs_if_worker() {
  if (const char* index = std::getenv(kWorkerIndexVariable)) {
    reactor::set_log_tag(("worker " + std::string(index) + ", pid " + std::to_string(::getpid())).c_str());
  }
}

}  // namespace app
