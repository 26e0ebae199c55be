#include "reactor/handle.h"

#include <fcntl.h>
#include <unistd.h>

#include "reactor/error.h"

namespace reactor {

void Handle::reset(int fd) noexcept {
  // close() is not retried on EINTR: on Linux the descriptor is released either way.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

void set_nonblocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) throw_system_error("fcntl(F_GETFL)");
  int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) < 0) throw_system_error("fcntl(F_SETFL)");
}

}  // namespace reactor
