// ChatServer: the chat service on one Reactor. A TcpServer whose connections each carry a Session;
// the Hub routes between sessions. Knows sockets only through the reactor library.
#pragma once

#include <chrono>
#include <memory>
#include <unordered_map>

#include "chat/hub.h"
#include "chat/protocol.h"
#include "reactor/tcp_server.h"

namespace chat {

class ChatServer {
 public:
  ChatServer(reactor::Reactor& reactor, const reactor::InetAddress& address, Limits limits);
  ~ChatServer();

  void start();
  // Graceful stop: stop accepting, let every connection's queued output leave, close each one,
  // and call `done` when all are closed or `grace` has passed (what is left is closed then).
  void shutdown(std::chrono::milliseconds grace, std::function<void()> done);

  const reactor::InetAddress& local_address() const { return server_.local_address(); }
  const Stats& stats() const { return stats_; }
  std::string stats_line() const;

 private:
  void on_connection(const reactor::TcpConnectionPtr& conn);
  void on_close(const reactor::TcpConnectionPtr& conn, std::string_view reason);
  void maybe_finish_shutdown();

  reactor::Reactor& reactor_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // close callbacks run later: check first
  Limits limits_;
  Stats stats_;
  Hub hub_;
  reactor::TcpServer server_;
  std::unordered_map<uint64_t, reactor::TcpConnectionPtr> connections_;
  std::function<void()> shutdown_done_;
  reactor::TimerId shutdown_timer_ = 0;
};

}  // namespace chat
