// chat-server: the chat service. Speaks the article's protocol (JSON objects in, "[user] text"
// lines out, everyone in the lobby) and the native JSON-lines protocol (docs/PROTOCOL.md) on one port.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <iostream>

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
  cli.add_option("--max-connections", limits.max_connections, "Connections at once (0: as descriptors allow)")
      ->capture_default_str();
  cli.add_option("--shutdown-grace-ms", grace_ms,
                 "On SIGINT/SIGTERM, how long queued output may take to leave before connections are closed")
      ->capture_default_str();
  cli.add_flag("--verbose", verbose, "Log every connection's close");
  if (auto status = app::parse(cli, argc, argv)) return *status;
  if (limits.output_soft > limits.output_hard) {
    std::cerr << "chat-server: --soft-limit must not be above --output-limit\n";
    return 2;
  }
  limits.soft_grace = std::chrono::milliseconds(soft_grace_ms);
  if (verbose) reactor::set_log_level(reactor::LogLevel::kDebug);

  try {
    reactor::Reactor loop(backend);
    chat::ChatServer server(loop, reactor::InetAddress::resolve(host, port), limits);
    auto graceful = [&](int signo) {
      LOG_INFO("signal %d (%s): stopping; flushing queued output for at most %zu ms", signo, strsignal(signo), grace_ms);
      server.shutdown(std::chrono::milliseconds(grace_ms), [&] { loop.stop(); });
    };
    loop.on_signal(SIGINT, graceful);
    loop.on_signal(SIGTERM, graceful);
    loop.on_signal(SIGUSR1, [&](int) { LOG_INFO("stats: %s", server.stats_line().c_str()); });
    server.start();
    std::printf("chat-server: listening on %s (%s)\n", server.local_address().to_string().c_str(), loop.backend_name());
    std::fflush(stdout);
    loop.run();
    LOG_INFO("stopped. stats: %s", server.stats_line().c_str());
  } catch (const std::exception& e) {
    std::cerr << "chat-server: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
