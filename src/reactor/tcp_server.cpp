#include "reactor/tcp_server.h"

#include "reactor/log.h"

namespace reactor {

TcpServer::TcpServer(Reactor& reactor, ConnectionCallbacks callbacks, ConnectionOptions connection_options)
    : reactor_(reactor), stats_(std::make_shared<ServerStats>()), options_(connection_options) {
  // Count closes through the shared callbacks; the stats outlive the server if connections do.
  auto user_close = std::move(callbacks.on_close);
  callbacks.on_close = [stats = stats_, user_close](const TcpConnectionPtr& c, const CloseReason& why) {
    --stats->open;
    if (user_close) user_close(c, why);
  };
  callbacks_ = std::make_shared<const ConnectionCallbacks>(std::move(callbacks));
}

TcpServer::TcpServer(Reactor& reactor, const InetAddress& address, ConnectionCallbacks callbacks,
                     ConnectionOptions connection_options, ListenOptions listen_options)
    : TcpServer(reactor, std::move(callbacks), connection_options) {
  listen(address, listen_options);
}

void TcpServer::listen(const InetAddress& address, ListenOptions options) {
  listener_ = std::make_unique<TcpListener>(reactor_, address, options);
}

void TcpServer::start() {
  if (!listener_) return;
  listener_->start([this](Handle socket, const InetAddress& peer) {
    if (accept_hook_ && accept_hook_(socket, peer)) return;
    adopt(std::move(socket), peer);
  });
}

void TcpServer::stop_accepting() {
  if (listener_) listener_->stop();
}

void TcpServer::close_listener() {
  if (listener_) listener_->close();
}

void TcpServer::adopt(Handle socket, const InetAddress& peer) {
  ++stats_->accepted;
  auto conn = TcpConnection::create(reactor_, std::move(socket), callbacks_, options_);
  try {
    conn->start();
  } catch (const std::exception& e) {
    ++stats_->rejected;
    static thread_local LogLimiter refusals(5, std::chrono::seconds(10));
    uint64_t left_out = 0;
    if (refusals.allow(&left_out)) {
      LOG_WARN("connection from %s refused: %s%s", peer.to_string().c_str(), e.what(), more_like_it(left_out).c_str());
    }
    return;  // the socket closes with `conn`
  }
  ++stats_->open;
  if (on_connection_) on_connection_(conn);
}

}  // namespace reactor
