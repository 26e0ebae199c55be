#include "chat/tcp_session.h"

#include "chat/codecs/article.h"

namespace chat {

TcpSession::TcpSession(SessionContext& shard, reactor::TcpConnection& conn)
    : Session(shard, *this, conn.id(), std::make_unique<ArticleCodec>(shard.limits.max_frame)), conn_(conn) {}

}  // namespace chat
