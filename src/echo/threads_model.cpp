// The article's first solution: accept in a loop, one thread per connection, blocking recv/send.
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "echo/echo.h"
#include "reactor/error.h"
#include "reactor/log.h"
#include "reactor/tcp_listener.h"

namespace echo {
namespace {

void serve(int fd) {
  std::vector<char> buffer(kReadSize);
  for (;;) {
    ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);  // blocks this thread until data
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    ssize_t off = 0;
    while (off < n) {  // sendall
      ssize_t w = ::send(fd, buffer.data() + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        ::close(fd);
        return;
      }
      off += w;
    }
  }
  ::close(fd);
}

}  // namespace

void run_threads(const Options& options, const ReadyCallback& ready) {
  auto address = reactor::InetAddress::resolve(options.host, options.port);
  reactor::Handle listener = reactor::listen_socket(address, {}, /*nonblocking=*/false);
  ready(reactor::InetAddress::local_of(listener.get()), "threads");
  for (;;) {
    int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        LOG_WARN("%s", reactor::describe_errno("accept4", errno).c_str());
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    try {
      std::thread(serve, fd).detach();
    } catch (const std::system_error& e) {  // out of threads: refuse this one
      LOG_WARN("cannot start a thread: %s", e.what());
      ::close(fd);
    }
  }
}

}  // namespace echo
