// The article's second solution: one thread, non-blocking sockets, and no demultiplexer: every
// pass tries accept once and recv on every socket, ready or not. It burns a core even when idle;
// that is the point being measured.
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "echo/echo.h"
#include "reactor/tcp_listener.h"

namespace echo {

void run_busy_wait(const Options& options, const ReadyCallback& ready) {
  auto address = reactor::InetAddress::resolve(options.host, options.port);
  reactor::Handle listener = reactor::listen_socket(address, {}, /*nonblocking=*/true);
  ready(reactor::InetAddress::local_of(listener.get()), "busy-wait");
  std::vector<int> sockets;
  std::vector<char> buffer(kReadSize);
  for (;;) {
    int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      sockets.push_back(fd);
    }
    for (size_t i = 0; i < sockets.size();) {
      int s = sockets[i];
      ssize_t n = ::recv(s, buffer.data(), buffer.size(), 0);
      bool closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
      for (ssize_t off = 0; n > 0 && off < n && !closed;) {  // sendall, busy-waiting on EAGAIN
        ssize_t w = ::send(s, buffer.data() + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w > 0) {
          off += w;
        } else if (errno != EAGAIN && errno != EINTR) {
          closed = true;
        }
      }
      if (closed) {  // remove closed connections
        ::close(s);
        sockets[i] = sockets.back();
        sockets.pop_back();
      } else {
        ++i;
      }
    }
  }
}

}  // namespace echo
