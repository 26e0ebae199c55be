#include "chat/frontends/tcp/tcp_session.h"

#include <sys/ioctl.h>

namespace chat {

bool TcpSession::input_pending() const {
  int n = 0;
  return conn_.fd() >= 0 && ::ioctl(conn_.fd(), FIONREAD, &n) == 0 && n > 0;
}

TcpSession::TcpSession(SessionContext& shard, reactor::TcpConnection& conn, std::unique_ptr<Codec> codec)
    : Session(shard, *this, conn.id(), std::move(codec)), conn_(conn) {}

}  // namespace chat
