// Buffer: a connection's input bytes. Contiguous, grows on demand, and holds no memory while empty
// (an idle connection costs no buffer at all). Reads go through readv into the free space plus a
// 64 KiB stack spill area (muduo's trick), so one system call takes everything the kernel has
// without every connection keeping 64 KiB.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string_view>

namespace reactor {

class Buffer {
 public:
  static constexpr size_t kSpill = 64 * 1024;

  Buffer() = default;
  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&&) noexcept = default;

  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  size_t capacity() const { return capacity_; }
  const char* data() const { return base() + begin_; }
  std::string_view view() const { return {data(), size()}; }

  void append(std::string_view bytes);
  // Drops `n` bytes from the front; releases the memory once the buffer is empty.
  void consume(size_t n);
  void clear() { consume(size()); }

  // One readv from `fd`. Returns what read(2) would: bytes read, 0 at end of stream, -1 with errno.
  ssize_t read_from(int fd);

  // Borrowed mode, for the common case of a read that the handler consumes whole: the (empty)
  // buffer shows `size` bytes that live elsewhere (the reader's stack) instead of copying them in.
  // keep() must follow before that memory goes away: it copies what was not consumed.
  void borrow(const char* bytes, size_t size);
  void keep();

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  void reserve_tail(size_t n);
  const char* base() const { return borrowed_ ? borrowed_ : data_.get(); }

  std::unique_ptr<char, Free> data_;
  const char* borrowed_ = nullptr;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace reactor
