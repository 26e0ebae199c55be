// TcpListener: a non-blocking listening socket on a Reactor. Accepts in a loop (accept4, up to
// kAcceptsPerEvent per readiness event so one busy listener cannot starve the other handlers).
//
// Running out of descriptors (EMFILE/ENFILE) must not turn into a busy loop: a level-triggered
// listener with a full backlog stays readable forever. Like libuv and libev, the listener keeps one
// spare descriptor; when accept fails for want of descriptors it frees the spare, accepts and closes
// the pending connections (the clients see a clean close instead of hanging in the backlog), takes
// the spare back, and logs at most once a second. If even the spare cannot be had, it stops
// watching the socket for kRetryDelay and tries again.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "reactor/handle.h"
#include "reactor/inet_address.h"
#include "reactor/reactor.h"

namespace reactor {

struct ListenOptions {
  int backlog = 4096;       // capped by net.core.somaxconn
  bool reuse_port = false;  // SO_REUSEPORT: several listeners (threads, processes) on one port
};

struct ListenerStats {
  uint64_t accepted = 0;
  uint64_t shed = 0;           // connections accepted and closed because descriptors ran out
  uint64_t fd_exhausted = 0;   // accept calls that failed with EMFILE/ENFILE
  uint64_t errors = 0;         // other accept failures
};

// A bound socket (SO_REUSEADDR, and SO_REUSEPORT if asked), close-on-exec, not listening: it
// holds the address (and, with SO_REUSEPORT, lets others bind it too) but takes no connections.
// Throws std::system_error, e.g. "bind 127.0.0.1:1234: Address already in use".
Handle bound_socket(const InetAddress& address, ListenOptions options, bool nonblocking = true);
// The same, listening.
Handle listen_socket(const InetAddress& address, ListenOptions options, bool nonblocking = true);

class TcpListener {
 public:
  using AcceptCallback = std::function<void(Handle socket, const InetAddress& peer)>;
  static constexpr int kAcceptsPerEvent = 64;
  static constexpr std::chrono::milliseconds kRetryDelay{100};

  // Binds and listens. Throws std::system_error, e.g. "bind 127.0.0.1:1234: Address already in use".
  TcpListener(Reactor& reactor, const InetAddress& address, ListenOptions options = {});
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  // Start accepting; `callback` gets each new socket (non-blocking, close-on-exec).
  void start(AcceptCallback callback);
  // Stop accepting (the socket stays bound; pending connections wait in the backlog).
  void stop();
  // Stop accepting and close the socket: a new connection is refused (with SO_REUSEPORT, it goes to
  // the port's other listeners), and the kernel resets those still in the backlog.
  void close();

  const InetAddress& local_address() const { return local_; }
  const ListenerStats& stats() const { return stats_; }
  int fd() const { return socket_.get(); }

 private:
  void handle_accept();
  void handle_exhaustion(int err);

  Reactor& reactor_;
  Handle socket_;
  Handle spare_;
  InetAddress local_;
  AcceptCallback callback_;
  ListenerStats stats_;
  Clock::time_point last_warning_{};
  TimerId retry_timer_ = 0;
  bool accepting_ = false;
};

}  // namespace reactor
