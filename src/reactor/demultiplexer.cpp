#include "reactor/demultiplexer.h"

#include <array>
#include <stdexcept>
#include <string>
#include <system_error>

namespace reactor {

const char* interest_name(Interest interest) {
  switch (interest) {
    case Interest::kNone: return "none";
    case Interest::kRead: return "read";
    case Interest::kWrite: return "write";
    case Interest::kReadWrite: return "read|write";
  }
  return "?";
}

void Demultiplexer::check(int fd) const {
  if (fd < 0) throw std::invalid_argument("negative file descriptor " + std::to_string(fd));
}

namespace {
constexpr std::array<std::string_view, 3> kNames = {"epoll", "poll", "select"};
}

std::span<const std::string_view> backend_names() { return kNames; }

std::unique_ptr<Demultiplexer> make_demultiplexer(std::string_view name) {
  if (name.empty() || name == "default") {
    // Probe and fall back: epoll can be missing (seccomp, old kernels); poll and select cannot.
    try {
      return make_epoll_demultiplexer();
    } catch (const std::system_error&) {
      return make_poll_demultiplexer();
    }
  }
  if (name == "epoll") return make_epoll_demultiplexer();
  if (name == "poll") return make_poll_demultiplexer();
  if (name == "select") return make_select_demultiplexer();
  throw std::invalid_argument("unknown backend '" + std::string(name) +
                              "' (choose epoll, poll or select)");
}

}  // namespace reactor
