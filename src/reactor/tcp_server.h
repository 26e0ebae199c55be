// TcpServer: turns sockets into started TcpConnections sharing one set of callbacks and options.
// The sockets come from its own TcpListener, or are handed over by another reactor's server
// (adopt), which is how one acceptor spreads connections over a pool of reactors. Connections own
// themselves (through their reactor registration); the server keeps counts, not pointers.
#pragma once

#include <functional>
#include <memory>

#include "reactor/tcp_connection.h"
#include "reactor/tcp_listener.h"

namespace reactor {

struct ServerStats {
  uint64_t accepted = 0;
  uint64_t rejected = 0;  // could not be registered (e.g. select's FD_SETSIZE)
  uint64_t open = 0;      // connections open now
};

class TcpServer {
 public:
  // Without a listener: sockets arrive through adopt().
  TcpServer(Reactor& reactor, ConnectionCallbacks callbacks, ConnectionOptions connection_options = {});
  // With a listener bound to `address` (throws std::system_error, e.g. address in use).
  TcpServer(Reactor& reactor, const InetAddress& address, ConnectionCallbacks callbacks,
            ConnectionOptions connection_options = {}, ListenOptions listen_options = {});

  // Called for each new connection after it is registered.
  void set_on_connection(std::function<void(const TcpConnectionPtr&)> callback) {
    on_connection_ = std::move(callback);
  }
  // Sees each accepted socket first; returning true means it took the socket (to hand it over).
  void set_accept_hook(std::function<bool(Handle& socket, const InetAddress& peer)> hook) {
    accept_hook_ = std::move(hook);
  }
  // Binds a listener to `address` (throws std::system_error, e.g. address in use).
  void listen(const InetAddress& address, ListenOptions options = {});
  void start();  // start accepting (with a listener)
  void stop_accepting();
  // Stops accepting and closes the listening socket: new connections are refused (TcpListener::close).
  void close_listener();
  // Takes a connected, non-blocking socket accepted elsewhere; call on this server's reactor.
  void adopt(Handle socket, const InetAddress& peer);

  bool listening() const { return listener_ != nullptr; }
  const InetAddress& local_address() const { return listener_->local_address(); }
  const ServerStats& stats() const { return *stats_; }
  ListenerStats listener_stats() const { return listener_ ? listener_->stats() : ListenerStats{}; }

 private:
  Reactor& reactor_;
  std::unique_ptr<TcpListener> listener_;
  std::shared_ptr<ServerStats> stats_;
  std::shared_ptr<const ConnectionCallbacks> callbacks_;
  ConnectionOptions options_;
  std::function<void(const TcpConnectionPtr&)> on_connection_;
  std::function<bool(Handle&, const InetAddress&)> accept_hook_;
};

}  // namespace reactor
