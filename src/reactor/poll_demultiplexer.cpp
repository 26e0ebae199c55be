// poll backend: a dense pollfd array plus an fd -> slot index, so add/modify/remove are O(1)
// (remove swaps the last entry into the hole) and a wait scans only the watched descriptors.
#include <poll.h>

#include <cerrno>
#include <stdexcept>

#include "reactor/demultiplexer.h"
#include "reactor/error.h"

namespace reactor {
namespace {

short to_poll(Interest interest) {
  short events = 0;
  if (has(interest, Interest::kRead)) events |= POLLIN;
  if (has(interest, Interest::kWrite)) events |= POLLOUT;
  return events;
}

class PollDemultiplexer final : public Demultiplexer {
 public:
  const char* name() const noexcept override { return "poll"; }

  void add(int fd, Interest interest) override {
    check(fd);
    if (static_cast<size_t>(fd) >= index_.size()) index_.resize(static_cast<size_t>(fd) + 1, -1);
    if (index_[fd] >= 0) throw_system_error("poll add", EEXIST);
    index_[fd] = static_cast<int>(fds_.size());
    fds_.push_back({fd, to_poll(interest), 0});
  }
  void modify(int fd, Interest interest) override { fds_[slot(fd)].events = to_poll(interest); }
  void remove(int fd) override {
    if (fd < 0 || static_cast<size_t>(fd) >= index_.size() || index_[fd] < 0) return;
    size_t i = static_cast<size_t>(index_[fd]);
    fds_[i] = fds_.back();
    index_[fds_[i].fd] = static_cast<int>(i);
    fds_.pop_back();
    index_[fd] = -1;
  }

  void wait(int timeout_ms, std::vector<ReadyEvent>& out) override {
    out.clear();
    int n = ::poll(fds_.data(), fds_.size(), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return;
      throw_system_error("poll");
    }
    for (const pollfd& p : fds_) {
      if (n == 0) break;
      if (p.revents == 0) continue;
      --n;
      Events r = 0;
      if (p.revents & (POLLIN | POLLPRI)) r |= kReadable;
      if (p.revents & POLLOUT) r |= kWritable;
      if (p.revents & (POLLERR | POLLNVAL)) r |= kError;  // POLLNVAL: closed while still watched
      if (p.revents & POLLHUP) r |= kHangup;
      out.push_back({p.fd, r});
    }
  }

 private:
  size_t slot(int fd) const {
    if (fd < 0 || static_cast<size_t>(fd) >= index_.size() || index_[fd] < 0) {
      throw_system_error("poll modify", ENOENT);
    }
    return static_cast<size_t>(index_[fd]);
  }

  std::vector<pollfd> fds_;
  std::vector<int> index_;  // fd -> position in fds_, or -1
};

}  // namespace

std::unique_ptr<Demultiplexer> make_poll_demultiplexer() {
  return std::make_unique<PollDemultiplexer>();
}

}  // namespace reactor
