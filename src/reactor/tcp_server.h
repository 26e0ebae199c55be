// TcpServer: a TcpListener that turns each accepted socket into a started TcpConnection sharing
// one set of callbacks and options. Connections own themselves (through their reactor
// registration); the server keeps counts, not pointers.
#pragma once

#include <functional>
#include <memory>

#include "reactor/tcp_connection.h"
#include "reactor/tcp_listener.h"

namespace reactor {

struct ServerStats {
  uint64_t accepted = 0;
  uint64_t rejected = 0;  // accepted but could not be registered (e.g. select's FD_SETSIZE)
  uint64_t open = 0;      // connections open now
};

class TcpServer {
 public:
  TcpServer(Reactor& reactor, const InetAddress& address, ConnectionCallbacks callbacks,
            ConnectionOptions connection_options = {}, ListenOptions listen_options = {});

  // Called for each new connection after it is registered.
  void set_on_connection(std::function<void(const TcpConnectionPtr&)> callback) {
    on_connection_ = std::move(callback);
  }
  void start();
  void stop_accepting() { listener_.stop(); }

  const InetAddress& local_address() const { return listener_.local_address(); }
  const ServerStats& stats() const { return *stats_; }
  const ListenerStats& listener_stats() const { return listener_.stats(); }

 private:
  void on_accept(Handle socket, const InetAddress& peer);

  Reactor& reactor_;
  TcpListener listener_;
  std::shared_ptr<ServerStats> stats_;
  std::shared_ptr<const ConnectionCallbacks> callbacks_;
  ConnectionOptions options_;
  std::function<void(const TcpConnectionPtr&)> on_connection_;
};

}  // namespace reactor
