// epoll backend: level-triggered, one epoll_ctl per interest change (the Reactor coalesces changes
// so that an interest switched on and off within one iteration never reaches the kernel).
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include "reactor/demultiplexer.h"
#include "reactor/error.h"
#include "reactor/handle.h"

namespace reactor {
namespace {

uint32_t to_epoll(Interest interest) {
  uint32_t events = 0;
  if (has(interest, Interest::kRead)) events |= EPOLLIN | EPOLLRDHUP;
  if (has(interest, Interest::kWrite)) events |= EPOLLOUT;
  return events;
}

class EpollDemultiplexer final : public Demultiplexer {
 public:
  EpollDemultiplexer() : epfd_(::epoll_create1(EPOLL_CLOEXEC)), events_(64) {
    if (!epfd_) throw_system_error("epoll_create1");
  }
  const char* name() const noexcept override { return "epoll"; }

  void add(int fd, Interest interest) override { ctl(EPOLL_CTL_ADD, fd, interest, "epoll_ctl(ADD)"); }
  void modify(int fd, Interest interest) override {
    ctl(EPOLL_CTL_MOD, fd, interest, "epoll_ctl(MOD)");
  }
  void remove(int fd) override {
    epoll_event ev{};
    // EBADF/ENOENT: already closed (the kernel dropped it) or never added; nothing to undo.
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, &ev) < 0 && errno != EBADF && errno != ENOENT) {
      throw_system_error("epoll_ctl(DEL)");
    }
  }

  void wait(int timeout_ms, std::vector<ReadyEvent>& out) override {
    out.clear();
    int n = ::epoll_wait(epfd_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return;
      throw_system_error("epoll_wait");
    }
    out.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      uint32_t e = events_[i].events;
      Events r = 0;
      if (e & (EPOLLIN | EPOLLPRI)) r |= kReadable;
      if (e & EPOLLOUT) r |= kWritable;
      if (e & EPOLLERR) r |= kError;
      if (e & (EPOLLHUP | EPOLLRDHUP)) r |= kHangup;
      out.push_back({events_[i].data.fd, r});
    }
    // A full batch suggests more were ready: grow so a busy loop needs fewer waits (capped).
    if (static_cast<size_t>(n) == events_.size() && events_.size() < 4096) {
      events_.resize(events_.size() * 2);
    }
  }

 private:
  void ctl(int op, int fd, Interest interest, const char* call) {
    epoll_event ev{};
    ev.events = to_epoll(interest);
    ev.data.fd = fd;
    if (::epoll_ctl(epfd_.get(), op, fd, &ev) < 0) throw_system_error(call);
  }

  Handle epfd_;
  std::vector<epoll_event> events_;
};

}  // namespace

std::unique_ptr<Demultiplexer> make_epoll_demultiplexer() {
  return std::make_unique<EpollDemultiplexer>();
}

}  // namespace reactor
