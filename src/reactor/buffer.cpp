#include "reactor/buffer.h"

#include <sys/uio.h>

#include <cstring>
#include <new>

namespace reactor {

void Buffer::reserve_tail(size_t n) {
  if (capacity_ - end_ >= n) return;
  size_t used = size();
  if (capacity_ - used >= n && begin_ > 0) {  // room enough once the live bytes move to the front
    std::memmove(data_.get(), data(), used);
    begin_ = 0;
    end_ = used;
    return;
  }
  size_t want = used + n;
  size_t cap = capacity_ ? capacity_ : 512;
  while (cap < want) cap *= 2;
  char* p = static_cast<char*>(std::malloc(cap));
  if (p == nullptr) throw std::bad_alloc();
  if (used) std::memcpy(p, data(), used);
  data_.reset(p);
  capacity_ = cap;
  begin_ = 0;
  end_ = used;
}

void Buffer::borrow(const char* bytes, size_t size) {
  clear();
  borrowed_ = bytes;
  begin_ = 0;
  end_ = size;
}

void Buffer::keep() {
  if (!borrowed_) return;
  std::string_view rest = view();
  borrowed_ = nullptr;
  begin_ = end_ = 0;
  append(rest);
}

void Buffer::append(std::string_view bytes) {
  if (bytes.empty()) return;
  keep();
  reserve_tail(bytes.size());
  std::memcpy(data_.get() + end_, bytes.data(), bytes.size());
  end_ += bytes.size();
}

void Buffer::consume(size_t n) {
  if (n >= size()) {
    borrowed_ = nullptr;
    data_.reset();
    capacity_ = begin_ = end_ = 0;
  } else {
    begin_ += n;
  }
}

ssize_t Buffer::read_from(int fd) {
  keep();
  char spill[kSpill];
  iovec iov[2];
  size_t tail = capacity_ - end_;
  int count = 0;
  if (tail > 0) iov[count++] = {data_.get() + end_, tail};
  iov[count++] = {spill, sizeof spill};
  ssize_t n = ::readv(fd, iov, count);
  if (n <= 0) return n;
  size_t got = static_cast<size_t>(n);
  if (got <= tail) {
    end_ += got;
  } else {
    end_ += tail;
    append({spill, got - tail});
  }
  return n;
}

}  // namespace reactor
