#include "chat/frontends/tcp/registration.h"

#include "chat/frontends/tcp/article.h"
#include "chat/frontends/tcp/native.h"
#include "chat/frontends/tcp/tcp_session.h"

namespace chat {

namespace {

class TcpPart final : public FrontEndPart {
 public:
  explicit TcpPart(const FrontEndShard& shard) : sessions_(shard.sessions) {}

  bool connect(reactor::TcpConnection& conn) override {
    // A session starts with the article's codec (a hello hands it to the native one).
    auto session = std::make_shared<TcpSession>(sessions_, conn, std::make_unique<ArticleCodec>(sessions_.limits.max_frame));
    conn.set_handler(session);
    session->start();
    return true;
  }

 private:
  SessionContext& sessions_;
};

}  // namespace

const FrontEnd& tcp_front_end() {
  static const FrontEnd front{
      .name = "tcp",
      .tls_name = "tls",
      .register_formats = [] {
        article_format();
        native_format();
      },
      .make = [](const FrontEndShard& shard, const void*) -> std::unique_ptr<FrontEndPart> {
        return std::make_unique<TcpPart>(shard);
      },
  };
  return front;
}

ServedFrontEnd serve_tcp(uint16_t port, uint16_t tls_port) { return {&tcp_front_end(), port, tls_port, nullptr}; }

}  // namespace chat
