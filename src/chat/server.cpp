#include "chat/server.h"

#include "chat/session.h"
#include "reactor/log.h"

namespace chat {

ChatServer::ChatServer(reactor::Reactor& reactor, const reactor::InetAddress& address, Limits limits)
    : reactor_(reactor),
      limits_(limits),
      hub_(limits.presence_max_members),
      server_(reactor, address,
              [this] {
                reactor::ConnectionCallbacks cb;
                cb.on_message = [](const reactor::TcpConnectionPtr& conn, reactor::Buffer& input) {
                  static_cast<Session*>(conn->context.get())->on_input(input);
                };
                cb.on_close = [this, alive = std::weak_ptr<int>(alive_)](
                                  const reactor::TcpConnectionPtr& conn, std::string_view reason) {
                  if (!alive.expired()) on_close(conn, reason);
                };
                return cb;
              }(),
              reactor::ConnectionOptions{.high_water_mark = limits.output_soft, .output_limit = limits.output_hard}) {
  server_.set_on_connection([this](const reactor::TcpConnectionPtr& conn) { on_connection(conn); });
}

ChatServer::~ChatServer() {
  // Close what is still open so that no session outlives the hub it points into.
  auto open = std::move(connections_);
  for (auto& [id, conn] : open) {
    conn->close("server destroyed");
    if (auto* s = static_cast<Session*>(conn->context.get())) s->on_close();
    conn->context.reset();
  }
}

void ChatServer::start() { server_.start(); }

void ChatServer::on_connection(const reactor::TcpConnectionPtr& conn) {
  ++stats_.connections_accepted;
  if (limits_.max_connections && connections_.size() >= limits_.max_connections) {
    ++stats_.connections_refused;
    conn->close("over the connection limit");
    return;
  }
  auto session = std::make_shared<Session>(hub_, stats_, limits_, *conn);
  session->start();
  conn->context = std::move(session);
  connections_.emplace(conn->id(), conn);
  stats_.connections_open = connections_.size();
  if (shutdown_done_) conn->close_after_flush("server shutting down");
}

void ChatServer::on_close(const reactor::TcpConnectionPtr& conn, std::string_view reason) {
  auto it = connections_.find(conn->id());
  if (it == connections_.end()) return;  // refused before it had a session
  if (auto* session = static_cast<Session*>(conn->context.get())) session->on_close();
  conn->context.reset();
  connections_.erase(it);
  stats_.connections_open = connections_.size();
  if (reason.starts_with("slow consumer") || reason.starts_with("stream cannot")) {
    LOG_INFO("connection %llu closed: %s", static_cast<unsigned long long>(conn->id()), std::string(reason).c_str());
  } else {
    LOG_DEBUG("connection %llu closed: %s", static_cast<unsigned long long>(conn->id()), std::string(reason).c_str());
  }
  maybe_finish_shutdown();
}

void ChatServer::shutdown(std::chrono::milliseconds grace, std::function<void()> done) {
  if (shutdown_done_) return;
  shutdown_done_ = std::move(done);
  server_.stop_accepting();
  for (auto& [id, conn] : connections_) conn->close_after_flush("server shutting down");
  shutdown_timer_ = reactor_.run_after(grace, [this] {
    shutdown_timer_ = 0;
    if (!connections_.empty()) {
      LOG_WARN("shutdown: %zu connection(s) still had output after the grace period; closing", connections_.size());
    }
    auto open = connections_;  // close() calls back into on_close (deferred), not into this loop
    for (auto& [id, conn] : open) conn->close("server shutting down (grace period over)");
  });
  maybe_finish_shutdown();
}

void ChatServer::maybe_finish_shutdown() {
  if (!shutdown_done_ || !connections_.empty()) return;
  if (shutdown_timer_) reactor_.cancel(shutdown_timer_);
  shutdown_timer_ = 0;
  auto done = std::move(shutdown_done_);
  shutdown_done_ = [] {};  // stays non-empty: the server is shutting down
  done();
}

std::string ChatServer::stats_line() const { return stats_.to_string(); }

}  // namespace chat
