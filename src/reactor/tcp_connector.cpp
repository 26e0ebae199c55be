#include "reactor/tcp_connector.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

namespace reactor {

std::shared_ptr<TcpConnector> TcpConnector::connect(Reactor& reactor, const InetAddress& address,
                                                    Callback callback,
                                                    std::optional<InetAddress> source) {
  auto connector = std::make_shared<TcpConnector>(reactor, std::move(callback));
  connector->begin(address, source);
  return connector;
}

int TcpConnector::bind_source(const InetAddress& source) {
  // With port 0, bind() would pick an ephemeral port now, for any destination, and past half the
  // range that search gets slow. IP_BIND_ADDRESS_NO_PORT defers the choice to connect(), which only
  // needs the port to be free for this destination.
  if (source.port() == 0) {
    int one = 1;
    ::setsockopt(socket_.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  }
  return ::bind(socket_.get(), source.get(), source.length());
}

void TcpConnector::begin(const InetAddress& address, const std::optional<InetAddress>& source) {
  socket_.reset(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int err = 0;
  if (!socket_) {
    err = errno;
  } else if (source && bind_source(*source) < 0) {
    err = errno;
  } else if (::connect(socket_.get(), address.get(), address.length()) < 0) {
    if (errno != EINPROGRESS) {
      err = errno;
    } else {
      watching_ = true;
      reactor_.add(socket_.get(), Interest::kWrite, [self = shared_from_this()](Events) {
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (::getsockopt(self->socket_.get(), SOL_SOCKET, SO_ERROR, &so_error, &len) < 0) {
          so_error = errno;
        }
        self->finish(so_error);
      });
      return;
    }
  }
  // Done already (loopback connects can complete at once): report from the deferred phase, never
  // from inside connect().
  reactor_.defer([self = shared_from_this(), err] { self->finish(err); });
}

void TcpConnector::finish(int error) {
  if (done_) return;
  done_ = true;
  if (watching_) reactor_.remove(socket_.get());
  watching_ = false;
  if (error != 0) {
    socket_.reset();
  } else {
    int one = 1;
    ::setsockopt(socket_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  Callback callback = std::move(callback_);
  callback(std::move(socket_), error);
}

void TcpConnector::cancel() {
  if (done_) return;
  done_ = true;
  if (watching_) reactor_.remove(socket_.get());
  watching_ = false;
  socket_.reset();
  callback_ = nullptr;
}

}  // namespace reactor
