// The Synchronous Event Demultiplexer: one small interface, three backends (epoll, poll, select),
// chosen at run time by name. Like Redis's ae_*.c, a backend is a handful of operations; like
// nginx, the choice is by name with a preference order.
//
// A backend is dumb on purpose: it reports what the kernel says. Interest bookkeeping, stale-event
// protection and dispatch live in the Reactor, which is why the Reactor can be tested with a fake.
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "reactor/events.h"

namespace reactor {

struct ReadyEvent {
  int fd;
  Events events;  // any of kReadable, kWritable, kError, kHangup
};

class Demultiplexer {
 public:
  virtual ~Demultiplexer() = default;

  virtual const char* name() const noexcept = 0;

  // Throws std::invalid_argument if this backend can never watch `fd` (select: fd >= FD_SETSIZE).
  virtual void check(int fd) const;
  // Start watching `fd` (not watched yet) for `interest` (not kNone). Throws std::system_error.
  virtual void add(int fd, Interest interest) = 0;
  // Change the interest of a watched `fd` (not kNone).
  virtual void modify(int fd, Interest interest) = 0;
  // Stop watching `fd`. Must be called before the descriptor is closed.
  virtual void remove(int fd) = 0;
  // Blocks up to `timeout_ms` (-1: no limit) and replaces `out` with what is ready.
  // An interrupted wait (EINTR) returns with `out` empty.
  virtual void wait(int timeout_ms, std::vector<ReadyEvent>& out) = 0;
};

// Backend names in order of preference, best first: {"epoll", "poll", "select"}.
std::span<const std::string_view> backend_names();

// The backend called `name`; "" or "default" gives the best one that works here (as Python's
// selectors.DefaultSelector). Throws std::invalid_argument naming the choices for an unknown name.
std::unique_ptr<Demultiplexer> make_demultiplexer(std::string_view name = "");

std::unique_ptr<Demultiplexer> make_epoll_demultiplexer();
std::unique_ptr<Demultiplexer> make_poll_demultiplexer();
std::unique_ptr<Demultiplexer> make_select_demultiplexer();

}  // namespace reactor
