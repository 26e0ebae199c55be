// The echo service, and the article's three server models:
//   reactor    the real server: our Reactor, any backend
//   threads    the article's first solution: a thread per connection, blocking I/O
//   busy-wait  its second: non-blocking sockets polled in a loop, no demultiplexer
// The two baselines exist so the benchmarks can reproduce the article's argument with numbers;
// they are small and honest, neither crippled nor optimised beyond the article's idea.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "reactor/inet_address.h"
#include "reactor/tcp_connection.h"

namespace echo {

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 1234;
  std::string backend;  // reactor model only; "" = best available
};

// Called once the socket listens, with the real address (port 0 becomes the chosen port) and the
// name of what waits for events ("epoll", "poll", "select", "threads", "busy-wait").
using ReadyCallback = std::function<void(const reactor::InetAddress& address, const char* engine)>;

// Runs until SIGINT or SIGTERM, then returns (graceful stop).
void run_reactor(const Options& options, const ReadyCallback& ready);
// The baselines run until killed, as in the article.
[[noreturn]] void run_threads(const Options& options, const ReadyCallback& ready);
[[noreturn]] void run_busy_wait(const Options& options, const ReadyCallback& ready);

// Echo on any connection: every byte read is sent back. A peer that sends but does not read is
// pushed back on: reading pauses at the high-water mark and resumes once its output drains.
reactor::ConnectionCallbacks echo_callbacks();

// Size of each read in every model.
inline constexpr size_t kReadSize = 64 * 1024;

}  // namespace echo
