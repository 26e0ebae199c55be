// Handle: the pattern's "Handle", an RAII owner of one file descriptor.
#pragma once

#include <utility>

namespace reactor {

class Handle {
 public:
  Handle() noexcept = default;
  explicit Handle(int fd) noexcept : fd_(fd) {}
  ~Handle() { reset(); }

  Handle(Handle&& other) noexcept : fd_(other.release()) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  // Gives up ownership without closing.
  int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the descriptor held (if any) and takes `fd`.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Sets or clears O_NONBLOCK; throws std::system_error naming fcntl.
void set_nonblocking(int fd, bool on = true);

}  // namespace reactor
