#include "reactor/output_queue.h"

#include <limits.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>

namespace reactor {
namespace {
// Coalesce small sends into one owned chunk up to this size; larger ones get a chunk each.
constexpr size_t kCoalesceLimit = 16 * 1024;
constexpr int kMaxIov = IOV_MAX < 1024 ? IOV_MAX : 1024;
}  // namespace

void OutputQueue::append(std::string_view bytes) {
  if (bytes.empty()) return;
  bytes_ += bytes.size();
  if (head_ < chunks_.size()) {
    Chunk& last = chunks_.back();
    if (last.owned != nullptr && last.owned->size() + bytes.size() <= kCoalesceLimit) {
      last.owned->append(bytes);
      return;
    }
  }
  auto owned = std::make_shared<std::string>(bytes);
  std::string* raw = owned.get();
  chunks_.push_back({std::move(owned), raw, 0});
}

void OutputQueue::append(SharedBytes bytes) {
  if (!bytes || bytes->empty()) return;
  bytes_ += bytes->size();
  chunks_.push_back({std::move(bytes), nullptr, 0});
}

void OutputQueue::clear() {
  // Release the memory too: an idle connection keeps no queue.
  std::vector<Chunk>().swap(chunks_);
  head_ = 0;
  bytes_ = 0;
}

ssize_t OutputQueue::write_to(int fd, size_t* attempted) {
  iovec iov[kMaxIov];
  int n = 0;
  size_t offered = 0;
  for (size_t i = head_; i < chunks_.size() && n < kMaxIov; ++i, ++n) {
    const Chunk& c = chunks_[i];
    iov[n].iov_base = const_cast<char*>(c.data->data() + c.offset);
    iov[n].iov_len = c.data->size() - c.offset;
    offered += iov[n].iov_len;
  }
  if (attempted != nullptr) *attempted = offered;
  if (n == 1) {  // the common case: plain send, cheaper in the kernel than an iovec
    ssize_t written = ::send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (written > 0) consume(static_cast<size_t>(written));
    return written;
  }
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = static_cast<size_t>(n);
  // sendmsg rather than writev: MSG_NOSIGNAL turns a write to a closed peer into EPIPE instead of
  // SIGPIPE, with no process-wide signal setting.
  ssize_t written = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (written > 0) consume(static_cast<size_t>(written));
  return written;
}

size_t OutputQueue::take(char* dst, size_t max) {
  size_t n = 0;
  for (size_t i = head_; i < chunks_.size() && n < max; ++i) {
    const Chunk& c = chunks_[i];
    size_t k = std::min(c.data->size() - c.offset, max - n);
    std::copy_n(c.data->data() + c.offset, k, dst + n);
    n += k;
  }
  if (n > 0) consume(n);
  return n;
}

void OutputQueue::consume(size_t n) {
  bytes_ -= n;
  while (n > 0) {
    Chunk& c = chunks_[head_];
    size_t left = c.data->size() - c.offset;
    if (n < left) {
      c.offset += n;
      return;
    }
    n -= left;
    c.data.reset();
    ++head_;
  }
  if (head_ == chunks_.size()) {
    clear();
  } else if (head_ > 32 && head_ * 2 > chunks_.size()) {
    chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
}

}  // namespace reactor
