#include "chat/frontends/irc/registration.h"

#include <algorithm>

#include "chat/frontends/tcp/tcp_session.h"

namespace chat {

namespace {

class IrcPart final : public FrontEndPart {
 public:
  IrcPart(const FrontEndShard& shard, const IrcOptions& options) : sessions_(shard.sessions), options_(options) {}

  bool connect(reactor::TcpConnection& conn) override {
    auto session = std::make_shared<TcpSession>(sessions_, conn, std::make_unique<IrcCodec>(options_, reactor::Clock::now()));
    conn.set_handler(session);
    session->start();
    return true;
  }

  // Registration and ping timeouts: one sweep per shard over its IRC members, often enough for the
  // shortest of them to be kept within a quarter of itself (and at least once a second).
  reactor::Clock::duration sweep_every() const override {
    auto shortest = std::min({options_.registration_timeout, options_.ping_interval, options_.ping_timeout});
    return std::clamp(shortest / 4, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
  }
  void sweep(reactor::ConnectionHandler& handler, reactor::Clock::time_point now) override {
    static_cast<TcpSession&>(handler).tick(now);  // connect() made every IRC connection's handler
  }

 private:
  SessionContext& sessions_;
  const IrcOptions& options_;
};

}  // namespace

const FrontEnd& irc_front_end() {
  static const FrontEnd front{
      .name = "irc",
      .tls_name = "ircs",
      .register_formats = [] {
        irc_format(IrcTags::kNone);
        irc_format(IrcTags::kTime);
        irc_format(IrcTags::kAll);
      },
      .make = [](const FrontEndShard& shard, const void* shared) -> std::unique_ptr<FrontEndPart> {
        return std::make_unique<IrcPart>(shard, *static_cast<const IrcOptions*>(shared));
      },
  };
  return front;
}

ServedFrontEnd serve_irc(uint16_t port, uint16_t tls_port, const IrcOptions& options) {
  return {&irc_front_end(), port, tls_port, std::make_shared<const IrcOptions>(options)};
}

}  // namespace chat
