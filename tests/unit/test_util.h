// Small helpers shared by the unit tests.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "reactor/handle.h"

namespace testutil {

struct Pipe {
  reactor::Handle read, write;
};

inline Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  return {reactor::Handle(fds[0]), reactor::Handle(fds[1])};
}

inline std::pair<reactor::Handle, reactor::Handle> make_socketpair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    throw std::runtime_error("socketpair failed");
  }
  return {reactor::Handle(fds[0]), reactor::Handle(fds[1])};
}

inline void put_byte(int fd) {
  char c = 'x';
  if (::write(fd, &c, 1) != 1) throw std::runtime_error("write failed");
}

}  // namespace testutil
