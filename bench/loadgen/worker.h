// A worker process: one Reactor (one thread) driving its share of the connections, steered by the
// parent over two pipes (see ipc.h).
//
// WorkerBase does what both modes share: connecting (at most --connect-batch connects in flight,
// each bound round-robin to a source address), the command pipe, progress, the watchdog, the
// final close (SO_LINGER 0: thousands of client sockets in TIME_WAIT would hold the ephemeral ports
// the next run needs), the measurement window and the fields of the result that every mode has.
// EchoWorker and ChatWorker are the two loads: each says what one op is and what it adds.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loadgen/config.h"
#include "loadgen/histogram.h"
#include "loadgen/ipc.h"
#include "reactor/inet_address.h"
#include "reactor/reactor.h"
#include "reactor/tcp_connection.h"
#include "reactor/tcp_connector.h"

namespace loadgen {

// The measurement window, between the parent's "start" and "stop". One definition for every mode:
// the mode's op count, the clock and this process's CPU time are all read at the same two edges, so
// an echo round trip and a chat delivery are counted over the same span. (The parent sums
// window_ops over the workers and divides by the window on its own clock.)
class MeasurementWindow {
 public:
  void open(uint64_t ops);
  void close(uint64_t ops);
  bool is_open() const { return open_; }
  // Starts afresh when the window opens; which samples belong in it is the mode's call.
  Histogram& latency() { return latency_; }
  // The window's part of the result: window_ops, window_s, ops_total, client_cpu_s, latency.
  void add_to(json& result, uint64_t ops_total) const;

 private:
  bool open_ = false;
  uint64_t ops_start_ = 0, ops_end_ = 0;
  uint64_t t_start_ = 0, t_end_ = 0;    // monotonic ns
  double cpu_start_ = 0, cpu_end_ = 0;  // this process's CPU seconds
  Histogram latency_;
};

class WorkerBase {
 public:
  WorkerBase(const Config& cfg, const Share& share, int cmd_fd, int event_fd);
  virtual ~WorkerBase() = default;
  WorkerBase(const WorkerBase&) = delete;
  WorkerBase& operator=(const WorkerBase&) = delete;

  // Runs until the parent asks for the report (0) or something fails (1).
  int run();

 protected:
  // ---- What a mode provides ----
  virtual size_t connection_count() const = 0;
  virtual uint64_t global_number(size_t i) const = 0;
  // Connection `i` is up: wrap the socket, start it, greet the server.
  virtual void on_up(size_t i, reactor::Handle socket) = 0;
  // Every connect is over (up or failed); handshakes may still be pending.
  virtual void on_connects_over() = 0;
  // The connect timeout passed before ready(): give up on what is still pending.
  virtual void give_up_pending() = 0;
  // The ops this worker has counted so far (echo: round trips; chat: deliveries). The window's
  // edges, the progress events and the result all count with it.
  virtual uint64_t ops() const = 0;
  // The errors of the mode's own kinds, beyond connect and close errors (for the progress events).
  virtual uint64_t mode_errors() const = 0;
  // A command other than start, stop and report (which the base handles).
  virtual void on_command(const std::string& cmd, const json& j) = 0;
  // The window has just opened / closed (the ops, clock and CPU at its edge are taken).
  virtual void on_window_opened() {}
  virtual void on_window_closed() {}
  // What the mode adds to the progress events and to the result.
  virtual void add_progress(json&) const {}
  virtual void add_result(json& result) const = 0;

  // ---- For the modes ----
  // Every connection is up and greeted (or failed): tell the parent (once).
  void ready();
  // --batch-until-ready: connection `i`'s handshake is over (subscribed or lost): its connect slot
  // is free. Once per connection that came up.
  void handshake_over();
  void send_event(const json& j);
  void fatal(const std::string& message);
  bool connects_over() const { return connects_over_; }
  static std::chrono::nanoseconds seconds(double s);
  virtual void close_connections() = 0;

  const Config& cfg_;
  Share share_;
  reactor::Reactor loop_;
  reactor::InetAddress address_;
  std::shared_ptr<reactor::ConnectionCallbacks> callbacks_;
  reactor::ConnectionOptions connection_options_;  // --tls: a TLS client filter
  size_t connected_ = 0;
  size_t connect_errors_ = 0;
  uint64_t closed_errors_ = 0;  // connections lost during the run
  std::string first_connect_error_;
  bool finishing_ = false;  // closing on purpose: closes are not errors
  MeasurementWindow window_;

 private:
  json progress() const;
  json result() const;
  void launch_connects();
  void on_connected(size_t i, reactor::Handle socket, int err);
  void connect_timed_out();
  void on_command_readable();
  void finish(int status);

  int cmd_fd_, event_fd_;
  std::vector<reactor::InetAddress> sources_;
  std::vector<std::shared_ptr<reactor::TcpConnector>> connectors_;
  size_t next_connect_ = 0;
  int in_flight_ = 0;
  bool connects_over_ = false;
  bool ready_sent_ = false;
  reactor::TimerId connect_timer_ = 0;
  uint64_t connect_start_ns_ = 0;
  double connect_seconds_ = 0;
  LineReader commands_;
  int status_ = 1;
};

std::unique_ptr<WorkerBase> make_worker(const Config& cfg, const Share& share, int cmd_fd, int event_fd);

}  // namespace loadgen
