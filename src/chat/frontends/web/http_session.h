// The web front end's HTTP side: one HttpSession per connection to --http-port. It reads requests
// one at a time (http::RequestParser: keep-alive and pipelining, answered in order), serves the
// page's files, /healthz, and hands /ws to a WebSocket session once the handshake is done. A
// request must be complete within the request timeout (slowloris: a client that trickles bytes
// gets a 408 and is closed; so does a connection idle that long, before its first request or
// between two).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chat/session/session.h"
#include "http/request_parser.h"
#include "http/static_files.h"
#include "reactor/tcp_connection.h"

namespace chat {

struct WebOptions {
  std::string web_root;                        // "": the files compiled in
  std::vector<std::string> allowed_origins;    // empty: any Origin may open /ws
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds ws_ping_interval{30000};  // a WebSocket idle this long is pinged ...
  std::chrono::milliseconds ws_pong_timeout{10000};   // ... and closed if no pong comes back in time
};

// What every HTTP connection of a shard shares.
struct WebContext {
  SessionContext& sessions;
  const http::StaticFiles& files;
  const WebOptions& options;
  const bool& draining;  // the server is stopping: /healthz says 503
  std::function<void(uint64_t connection_id)> upgraded;  // the connection became a WebSocket member
  // GET /metrics: asks for the text, which comes back on this shard (null: no /metrics).
  std::function<void(std::function<void(std::string)> done)> metrics;
};

class HttpSession final : public reactor::ConnectionHandler, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(WebContext& web, reactor::TcpConnection& conn);
  void start();

  void on_message(reactor::TcpConnection& conn, reactor::Buffer& input) override;
  void on_close(reactor::TcpConnection& conn, const reactor::CloseReason& reason) override;
  void on_drain(reactor::TcpConnection& conn) override;

 private:
  // Answers one request; false if the connection is no longer ours (upgraded or closing).
  bool handle(const http::Request& request, reactor::Buffer& input);
  void respond(std::string bytes, bool keep_alive, reactor::SharedBytes body = nullptr);
  bool upgrade(const http::Request& request, reactor::Buffer& input);
  // Asks for the metrics and reads no more requests until they are answered.
  void answer_metrics(bool keep_alive, bool head);
  void arm_timer();
  void timer_fired();

  WebContext& web_;
  reactor::TcpConnection& conn_;
  http::RequestParser parser_;
  // Answers a client may leave unread before no more of its requests are read.
  static constexpr size_t kMaxQueued = 256 << 10;

  reactor::TimerId timer_ = 0;
  reactor::Clock::time_point deadline_{};
  bool done_ = false;  // upgraded or closing: no more HTTP on this connection
  bool waiting_for_output_ = false;
  bool waiting_for_metrics_ = false;
};

}  // namespace chat
