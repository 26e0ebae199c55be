// select backend: two master fd_sets copied for each wait. select() cannot watch a descriptor at or
// above FD_SETSIZE; FD_SET on one would write past the set, so check() refuses it with a clear
// error before anything touches the sets.
#include <sys/select.h>

#include <cerrno>
#include <stdexcept>
#include <string>

#include "reactor/demultiplexer.h"
#include "reactor/error.h"

namespace reactor {
namespace {

class SelectDemultiplexer final : public Demultiplexer {
 public:
  SelectDemultiplexer() {
    FD_ZERO(&read_set_);
    FD_ZERO(&write_set_);
    FD_ZERO(&watched_);
  }
  const char* name() const noexcept override { return "select"; }

  void check(int fd) const override {
    Demultiplexer::check(fd);
    if (fd >= FD_SETSIZE) {
      throw std::invalid_argument("select backend cannot watch descriptor " + std::to_string(fd) +
                                  ": at or above FD_SETSIZE (" + std::to_string(FD_SETSIZE) +
                                  "); use the epoll or poll backend");
    }
  }
  void add(int fd, Interest interest) override {
    check(fd);
    if (FD_ISSET(fd, &watched_)) throw_system_error("select add", EEXIST);
    FD_SET(fd, &watched_);
    ++count_;
    if (fd > max_fd_) max_fd_ = fd;
    set(fd, interest);
  }
  void modify(int fd, Interest interest) override {
    check(fd);
    if (!FD_ISSET(fd, &watched_)) throw_system_error("select modify", ENOENT);
    set(fd, interest);
  }
  void remove(int fd) override {
    if (fd < 0 || fd >= FD_SETSIZE || !FD_ISSET(fd, &watched_)) return;
    FD_CLR(fd, &watched_);
    FD_CLR(fd, &read_set_);
    FD_CLR(fd, &write_set_);
    --count_;
    while (max_fd_ >= 0 && !FD_ISSET(max_fd_, &watched_)) --max_fd_;
  }

  void wait(int timeout_ms, std::vector<ReadyEvent>& out) override {
    out.clear();
    fd_set r = read_set_, w = write_set_;
    timeval tv{}, *ptv = nullptr;
    if (timeout_ms >= 0) {
      tv.tv_sec = timeout_ms / 1000;
      tv.tv_usec = (timeout_ms % 1000) * 1000;
      ptv = &tv;
    }
    int n = ::select(max_fd_ + 1, &r, &w, nullptr, ptv);
    if (n < 0) {
      if (errno == EINTR) return;
      throw_system_error("select");
    }
    for (int fd = 0; fd <= max_fd_ && n > 0; ++fd) {
      Events e = 0;
      if (FD_ISSET(fd, &r)) e |= kReadable;
      if (FD_ISSET(fd, &w)) e |= kWritable;
      if (e) {
        out.push_back({fd, e});
        n -= (e & kReadable ? 1 : 0) + (e & kWritable ? 1 : 0);
      }
    }
  }

 private:
  void set(int fd, Interest interest) {
    if (has(interest, Interest::kRead)) FD_SET(fd, &read_set_); else FD_CLR(fd, &read_set_);
    if (has(interest, Interest::kWrite)) FD_SET(fd, &write_set_); else FD_CLR(fd, &write_set_);
  }

  fd_set read_set_, write_set_, watched_;
  int max_fd_ = -1;
  int count_ = 0;
};

}  // namespace

std::unique_ptr<Demultiplexer> make_select_demultiplexer() {
  return std::make_unique<SelectDemultiplexer>();
}

}  // namespace reactor
