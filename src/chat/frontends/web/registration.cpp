#include "chat/frontends/web/registration.h"

#include "chat/frontends/tcp/native.h"
#include "chat/frontends/web/ws_session.h"

namespace chat {

namespace {

// What every shard's web part shares: the options and the page's files.
struct WebShared {
  WebOptions options;
  http::StaticFiles files;
};

class WebPart final : public FrontEndPart {
 public:
  WebPart(const FrontEndShard& shard, const WebShared& shared)
      : web_{shard.sessions, shared.files, shared.options, shard.draining, shard.became_member, shard.metrics} {}

  bool connect(reactor::TcpConnection& conn) override {
    auto session = std::make_shared<HttpSession>(web_, conn);
    conn.set_handler(session);
    session->start();
    return false;  // a member once /ws upgrades it (WebContext::upgraded)
  }

  // WebSocket keep-alive: one sweep per shard, not a timer per member (every byte of a member is
  // paid 10,000 times).
  reactor::Clock::duration sweep_every() const override {
    return std::max<reactor::Clock::duration>(web_.options.ws_ping_interval / 4, std::chrono::milliseconds(100));
  }
  void sweep(reactor::ConnectionHandler& handler, reactor::Clock::time_point now) override {
    if (auto* ws = dynamic_cast<WsSession*>(&handler)) ws->keep_alive(now, web_.options.ws_ping_interval, web_.options.ws_pong_timeout);
  }

  // A WebSocket member closes with a close frame: 1012 (draining) or 1001.
  void farewell(reactor::TcpConnection& conn, bool restart) override {
    if (auto* session = dynamic_cast<Session*>(conn.handler())) session->going_away(restart);
    if (auto* ws = dynamic_cast<WsSession*>(conn.handler())) {
      ws->close_after_flush(farewell_code(restart), farewell_reason(restart));
    } else {
      conn.close_after_flush(farewell_code(restart), farewell_reason(restart));
    }
  }

 private:
  WebContext web_;
};

}  // namespace

const FrontEnd& web_front_end() {
  static const FrontEnd front{
      .name = "http",
      .tls_name = "https",
      .register_formats = [] { native_ws_format(); },
      .outlives_members = true,
      .serves_metrics = true,
      .prepare = [](const std::shared_ptr<const void>& options) -> std::shared_ptr<const void> {
        const auto& o = *static_cast<const WebOptions*>(options.get());
        return std::make_shared<WebShared>(
            WebShared{o, o.web_root.empty() ? http::StaticFiles::embedded() : http::StaticFiles::directory(o.web_root)});
      },
      .make = [](const FrontEndShard& shard, const void* shared) -> std::unique_ptr<FrontEndPart> {
        return std::make_unique<WebPart>(shard, *static_cast<const WebShared*>(shared));
      },
  };
  return front;
}

ServedFrontEnd serve_web(uint16_t port, uint16_t tls_port, const WebOptions& options) {
  return {&web_front_end(), port, tls_port, std::make_shared<const WebOptions>(options)};
}

}  // namespace chat
