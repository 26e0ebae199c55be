#include "chat/tcp_session.h"

namespace chat {

TcpSession::TcpSession(SessionContext& shard, reactor::TcpConnection& conn, std::unique_ptr<Codec> codec)
    : Session(shard, *this, conn.id(), std::move(codec)), conn_(conn) {}

}  // namespace chat
