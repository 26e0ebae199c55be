// chat-server: the chat service. Speaks the article's protocol (JSON objects in, "[user] text"
// lines out, everyone in the lobby) and the native JSON-lines protocol (docs/PROTOCOL.md) on one port.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <regex>
#include <thread>

#include "app/cli.h"
#include "chat/server.h"
#include "reactor/log.h"
#include "reactor/handle.h"

namespace {

// One node: the chat service on this process's reactors until SIGINT/SIGTERM.
int run_node(const std::string& host, uint16_t port, const chat::Limits& limits, const chat::ServiceOptions& options,
             size_t grace_ms) {
  try {
    // Signals are blocked here, before the other shards' threads start, so they inherit the mask
    // and only this thread's signalfd sees them.
    reactor::Reactor loop(options.backend);
    std::function<void(int)> graceful, report;
    loop.on_signal(SIGINT, [&](int s) { graceful(s); });
    loop.on_signal(SIGTERM, [&](int s) { graceful(s); });
    loop.on_signal(SIGUSR1, [&](int s) { report(s); });
    chat::ChatService service(loop, reactor::InetAddress::resolve(host, port), limits, options);
    bool stopping = false;
    graceful = [&](int signo) {
      if (stopping) return;
      stopping = true;
      LOG_INFO("signal %d (%s): stopping; flushing queued output for at most %zu ms", signo, strsignal(signo), grace_ms);
      service.shutdown(std::chrono::milliseconds(grace_ms), [&] { loop.stop(); });
    };
    report = [&](int) {
      service.collect_stats([&service](const chat::Stats& s) {
        std::string bp = service.backplane_stats();
        LOG_INFO("stats: %s%s%s", s.to_string().c_str(), bp.empty() ? "" : " ", bp.c_str());
      });
    };
    service.start();
    std::printf("chat-server: listening on %s (%s, %zu thread%s%s%s)\n", service.local_address().to_string().c_str(),
                loop.backend_name(), options.threads, options.threads == 1 ? "" : "s",
                options.redis_host.empty() ? "" : ", redis ", options.redis_host.empty() ? "" : (options.redis_host + ":" + std::to_string(options.redis_port)).c_str());
    std::fflush(stdout);
    loop.run();
    service.stop_pool();
    std::string bp = service.backplane_stats();
    LOG_INFO("stopped. stats: %s%s%s", service.final_stats().to_string().c_str(), bp.empty() ? "" : " ", bp.c_str());
  } catch (const std::exception& e) {
    std::cerr << "chat-server: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

// --workers N: N node processes listening on one port (SO_REUSEPORT; the kernel spreads new
// connections over them), sharing rooms through Redis. This process only supervises: it forwards
// SIGINT/SIGTERM/SIGUSR1, restarts a worker that a signal killed, and stops everything when a
// worker exits by itself with an error (a bad flag, a port in use).
int supervise(size_t workers, const std::string& host, uint16_t port, const chat::Limits& limits,
              chat::ServiceOptions options, size_t grace_ms) {
  options.reuse_port = true;
  // Port 0: choose one now, and hold it (bound, not listening: it takes no connections) until the
  // workers have theirs.
  reactor::InetAddress address = reactor::InetAddress::resolve(host, port);
  reactor::Handle placeholder(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  int on = 1;
  ::setsockopt(placeholder.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  ::setsockopt(placeholder.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  if (::bind(placeholder.get(), address.get(), address.length()) != 0) {
    throw std::runtime_error("bind " + address.to_string() + ": " + strerror(errno));
  }
  uint16_t chosen = reactor::InetAddress::local_of(placeholder.get()).port();

  reactor::Reactor loop;  // blocks the signals it watches: children unblock theirs in their reactor
  std::map<pid_t, size_t> running;  // pid -> worker index
  bool stopping = false;
  int status = 0;
  auto spawn = [&](size_t index) {
    std::fflush(stdout);
    pid_t pid = ::fork();
    if (pid < 0) {
      LOG_ERROR("fork: %s", strerror(errno));
      return false;
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the supervisor
      placeholder = reactor::Handle();
      std::_Exit(run_node(host, chosen, limits, options, grace_ms));
    }
    running[pid] = index;
    return true;
  };
  auto stop_all = [&](int signo) {
    stopping = true;
    for (auto& [pid, index] : running) ::kill(pid, signo);
    if (running.empty()) loop.stop();
  };
  loop.on_signal(SIGINT, [&](int) { stop_all(SIGTERM); });
  loop.on_signal(SIGTERM, [&](int) { stop_all(SIGTERM); });
  loop.on_signal(SIGUSR1, [&](int) {
    for (auto& [pid, index] : running) ::kill(pid, SIGUSR1);
  });
  loop.on_signal(SIGCHLD, [&](int) {
    int ws;
    pid_t pid;
    while ((pid = ::waitpid(-1, &ws, WNOHANG)) > 0) {
      auto it = running.find(pid);
      if (it == running.end()) continue;
      size_t index = it->second;
      running.erase(it);
      if (stopping) {
        if (WIFEXITED(ws) && WEXITSTATUS(ws) != 0) status = WEXITSTATUS(ws);
      } else if (WIFSIGNALED(ws)) {
        LOG_WARN("worker %zu (pid %d) killed by signal %d (%s); starting another", index, pid, WTERMSIG(ws),
                 strsignal(WTERMSIG(ws)));
        loop.run_after(std::chrono::milliseconds(200), [&, index] {
          if (!stopping) spawn(index);
        });
      } else {
        LOG_ERROR("worker %zu (pid %d) exited with status %d; stopping", index, pid, WEXITSTATUS(ws));
        status = WEXITSTATUS(ws) ? WEXITSTATUS(ws) : 1;
        stop_all(SIGTERM);
      }
    }
    if (stopping && running.empty()) loop.stop();
  });
  for (size_t i = 0; i < workers; ++i) {
    if (!spawn(i)) {
      stop_all(SIGTERM);
      status = 1;
      break;
    }
  }
  std::printf("chat-server: %zu workers on %s:%u, joined through redis %s:%u\n", workers, host.c_str(), chosen,
              options.redis_host.c_str(), options.redis_port);
  std::fflush(stdout);
  // The workers bind before they print; until then this socket keeps the port ours.
  loop.run_after(std::chrono::seconds(5), [&] { placeholder = reactor::Handle(); });
  loop.run();
  return status;
}

// "redis://HOST[:PORT]" or "HOST[:PORT]".
bool parse_redis_url(const std::string& url, std::string& host, uint16_t& port) {
  static const std::regex re(R"(^(?:redis://)?([A-Za-z0-9_.\-]+)(?::(\d{1,5}))?/?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) return false;
  host = m[1];
  if (m[2].matched) {
    long p = std::stol(m[2]);
    if (p < 1 || p > 65535) return false;
    port = static_cast<uint16_t>(p);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Chat server: rooms, broadcast, the article's protocol and native JSON lines.", "chat-server"};
  std::string host = "127.0.0.1", backend;
  uint16_t port = 1234;
  chat::Limits limits;
  size_t soft_grace_ms = static_cast<size_t>(limits.soft_grace.count());
  size_t grace_ms = 2000;
  bool verbose = false;
  size_t threads = std::max(1u, std::thread::hardware_concurrency());
  size_t workers = 1;
  std::string redis_url;
  cli.add_option("--host", host, "Address to listen on")->capture_default_str();
  cli.add_option("--port", port, "Port to listen on (0: any free port)")->capture_default_str();
  cli.add_option("--backend", backend, "Event demultiplexer: epoll, poll or select (default: best available)")
      ->check(CLI::IsMember({"epoll", "poll", "select"}));
  cli.add_option("--max-frame", limits.max_frame, "Largest JSON object or line accepted, in bytes")
      ->capture_default_str()
      ->check(CLI::Range(size_t{64}, size_t{16} << 20));
  cli.add_option("--output-limit", limits.output_hard,
                 "Hard limit on bytes queued to one member; past it the member is closed")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1024}, size_t{1} << 32));
  cli.add_option("--soft-limit", limits.output_soft,
                 "Soft limit on bytes queued to one member; a member above it for longer than "
                 "--soft-ms is closed")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1024}, size_t{1} << 32));
  cli.add_option("--soft-ms", soft_grace_ms, "How long a member may stay above --soft-limit, in milliseconds")
      ->capture_default_str();
  cli.add_option("--max-rooms", limits.max_rooms, "Rooms one connection may be in")->capture_default_str();
  cli.add_option("--presence-max-members", limits.presence_max_members,
                 "Rooms with more members than this get no join/leave events and no member lists")
      ->capture_default_str();
  cli.add_option("--max-connections", limits.max_connections, "Connections at once, split evenly over the reactors (0: as descriptors allow)")
      ->capture_default_str();
  cli.add_option("--shutdown-grace-ms", grace_ms,
                 "On SIGINT/SIGTERM, how long queued output may take to leave before connections are closed")
      ->capture_default_str();
  cli.add_option("--threads", threads, "Reactors, one thread each (default: the number of cores)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{256}));
  cli.add_option("--redis", redis_url,
                 "Share rooms with other chat-server processes through Redis pub/sub: redis://HOST:PORT");
  cli.add_option("--workers", workers,
                 "Run this many server processes on one port (SO_REUSEPORT), joined through --redis")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{64}));
  cli.add_flag("--verbose", verbose, "Log every connection's close");
  if (auto status = app::parse(cli, argc, argv)) return *status;
  if (limits.output_soft > limits.output_hard) {
    std::cerr << "chat-server: --soft-limit must not be above --output-limit\n";
    return 2;
  }
  limits.soft_grace = std::chrono::milliseconds(soft_grace_ms);
  if (verbose) reactor::set_log_level(reactor::LogLevel::kDebug);

  chat::ServiceOptions options;
  options.threads = threads;
  options.backend = backend;
  if (!redis_url.empty() && !parse_redis_url(redis_url, options.redis_host, options.redis_port)) {
    std::cerr << "chat-server: --redis must look like redis://HOST:PORT, not '" << redis_url << "'\n";
    return 2;
  }
  if (workers > 1) {
    if (redis_url.empty()) {
      std::cerr << "chat-server: --workers needs --redis: worker processes share rooms through Redis\n";
      return 2;
    }
    try {
      return supervise(workers, host, port, limits, options, grace_ms);
    } catch (const std::exception& e) {
      std::cerr << "chat-server: " << e.what() << "\n";
      return 1;
    }
  }
  return run_node(host, port, limits, options, grace_ms);
}
