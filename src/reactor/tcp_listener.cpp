#include "reactor/tcp_listener.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>

#include "reactor/error.h"
#include "reactor/log.h"

namespace reactor {

Handle bound_socket(const InetAddress& address, ListenOptions options, bool nonblocking) {
  Handle socket(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (!socket) throw_system_error("socket");
  int one = 1;
  ::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (options.reuse_port &&
      ::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
    throw_system_error("setsockopt(SO_REUSEPORT)");
  }
  if (::bind(socket.get(), address.get(), address.length()) < 0) {
    throw_system_error(("bind " + address.to_string()).c_str());
  }
  return socket;
}

Handle listen_socket(const InetAddress& address, ListenOptions options, bool nonblocking) {
  Handle socket = bound_socket(address, options, nonblocking);
  if (::listen(socket.get(), options.backlog) < 0) throw_system_error("listen");
  return socket;
}

TcpListener::TcpListener(Reactor& reactor, const InetAddress& address, ListenOptions options)
    : reactor_(reactor), socket_(listen_socket(address, options)) {
  local_ = InetAddress::local_of(socket_.get());
  spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

TcpListener::~TcpListener() { stop(); }

void TcpListener::start(AcceptCallback callback) {
  callback_ = std::move(callback);
  if (accepting_) return;
  accepting_ = true;
  reactor_.add(socket_.get(), Interest::kRead, [this](Events) { handle_accept(); });
}

void TcpListener::close() {
  stop();
  socket_ = Handle();
  spare_ = Handle();
}

void TcpListener::stop() {
  if (retry_timer_) reactor_.cancel(retry_timer_);
  retry_timer_ = 0;
  if (accepting_) reactor_.remove(socket_.get());
  accepting_ = false;
}

void TcpListener::handle_accept() {
  for (int i = 0; i < kAcceptsPerEvent; ++i) {
    InetAddress peer;
    socklen_t len = sizeof(sockaddr_storage);
    int fd = ::accept4(socket_.get(), peer.get(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      peer.set_length(len);
      ++stats_.accepted;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      callback_(Handle(fd), peer);
      if (!accepting_) return;  // the callback stopped us
      continue;
    }
    switch (errno) {
      case EAGAIN:
        return;
      case EINTR:
      case ECONNABORTED:  // the client gave up while in the backlog
      case EPROTO:
        continue;
      case EMFILE:
      case ENFILE:
        handle_exhaustion(errno);
        return;
      default:
        ++stats_.errors;
        LOG_ERROR("%s", describe_errno("accept4", errno).c_str());
        return;
    }
  }
}

void TcpListener::handle_exhaustion(int err) {
  ++stats_.fd_exhausted;
  uint64_t shed_before = stats_.shed;
  while (spare_) {
    spare_.reset();  // one descriptor free: enough to accept one connection and close it
    int fd = ::accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      Handle drop(fd);  // closed at once: the client sees the connection end, not a hang
      ++stats_.shed;
    }
    spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (fd < 0 || stats_.shed - shed_before >= static_cast<uint64_t>(kAcceptsPerEvent)) break;
  }
  auto now = Clock::now();
  if (now - last_warning_ >= std::chrono::seconds(1)) {
    last_warning_ = now;
    LOG_WARN("%s: out of descriptors on %s; %llu connection(s) shed so far",
             describe_errno("accept4", err).c_str(), local_.to_string().c_str(),
             static_cast<unsigned long long>(stats_.shed));
  }
  if (!spare_ && accepting_) {
    // Not even the spare could be had: stop watching for a while rather than spin.
    reactor_.modify(socket_.get(), Interest::kNone);
    retry_timer_ = reactor_.run_after(kRetryDelay, [this] {
      retry_timer_ = 0;
      if (accepting_) reactor_.modify(socket_.get(), Interest::kRead);
      spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    });
  }
}

}  // namespace reactor
