// chat-server: the chat service. Speaks the article's protocol (JSON objects in, "[user] text"
// lines out, everyone in the lobby) and the native JSON-lines protocol (docs/PROTOCOL.md) on one port.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <thread>

#include "app/cli.h"
#include "chat/server.h"
#include "reactor/log.h"

int main(int argc, char** argv) {
  CLI::App cli{"Chat server: rooms, broadcast, the article's protocol and native JSON lines.", "chat-server"};
  std::string host = "127.0.0.1", backend;
  uint16_t port = 1234;
  chat::Limits limits;
  size_t soft_grace_ms = static_cast<size_t>(limits.soft_grace.count());
  size_t grace_ms = 2000;
  bool verbose = false;
  size_t threads = std::max(1u, std::thread::hardware_concurrency());
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
  cli.add_flag("--verbose", verbose, "Log every connection's close");
  if (auto status = app::parse(cli, argc, argv)) return *status;
  if (limits.output_soft > limits.output_hard) {
    std::cerr << "chat-server: --soft-limit must not be above --output-limit\n";
    return 2;
  }
  limits.soft_grace = std::chrono::milliseconds(soft_grace_ms);
  if (verbose) reactor::set_log_level(reactor::LogLevel::kDebug);

  try {
    // Signals are blocked here, before the other shards' threads start, so they inherit the mask
    // and only this thread's signalfd sees them.
    reactor::Reactor loop(backend);
    std::function<void(int)> graceful, report;
    loop.on_signal(SIGINT, [&](int s) { graceful(s); });
    loop.on_signal(SIGTERM, [&](int s) { graceful(s); });
    loop.on_signal(SIGUSR1, [&](int s) { report(s); });
    chat::ChatService service(loop, reactor::InetAddress::resolve(host, port), limits, threads, backend);
    bool stopping = false;
    graceful = [&](int signo) {
      if (stopping) return;
      stopping = true;
      LOG_INFO("signal %d (%s): stopping; flushing queued output for at most %zu ms", signo, strsignal(signo), grace_ms);
      service.shutdown(std::chrono::milliseconds(grace_ms), [&] { loop.stop(); });
    };
    report = [&](int) {
      service.collect_stats([](const chat::Stats& s) { LOG_INFO("stats: %s", s.to_string().c_str()); });
    };
    service.start();
    std::printf("chat-server: listening on %s (%s, %zu thread%s)\n", service.local_address().to_string().c_str(),
                loop.backend_name(), threads, threads == 1 ? "" : "s");
    std::fflush(stdout);
    loop.run();
    service.stop_pool();
    LOG_INFO("stopped. stats: %s", service.final_stats().to_string().c_str());
  } catch (const std::exception& e) {
    std::cerr << "chat-server: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
