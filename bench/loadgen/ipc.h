// Parent <-> worker messages: one JSON object per line over a pipe each way.
//
// parent -> worker {"cmd": ...}
//   barrier  (chat) the publishers' process starts the warm-up messages (every 50 ms)
//   go       start the load (echo: active connections; chat: publishing at --rate, unmeasured)
//   start    the measurement window begins
//   stop     the measurement window ends (chat: publishing stops)
//   expect   (chat) {"messages": N}: measured messages sent in all; report "drained" when every
//            member has them
//   report   send the result and exit
// worker -> parent {"ev": ...}
//   ready    every connection is up and subscribed (or failed): {"connected", "connect_errors", ...}
//   warmed   (chat) every member of this process received a warm-up message
//   progress counters, once a second
//   sent     (chat) {"messages": measured messages published}
//   drained  (chat) every member of this process received every measured message
//   result   counters and the latency histogram's buckets
//   fatal    {"message"}: the worker cannot go on
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "loadgen/histogram.h"

namespace loadgen {

using json = nlohmann::json;

// Writes one line, all of it (the descriptor is blocking). False if the other side is gone.
inline bool write_message(int fd, const json& j) {
  std::string line = j.dump() + "\n";
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

// Splits what a non-blocking pipe delivers into lines.
class LineReader {
 public:
  // One read: bytes read, 0 at end of file, -1 with errno (EAGAIN: nothing now).
  ssize_t read_from(int fd) {
    char buf[65536];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) pending_.append(buf, static_cast<size_t>(n));
    return n;
  }
  // The next complete line (without '\n'), if any.
  bool next(std::string& line) {
    size_t nl = pending_.find('\n', scanned_);
    if (nl == std::string::npos) {
      scanned_ = pending_.size();
      return false;
    }
    line.assign(pending_, 0, nl);
    pending_.erase(0, nl + 1);
    scanned_ = 0;
    return true;
  }

 private:
  std::string pending_;
  size_t scanned_ = 0;
};

inline json histogram_to_json(const Histogram& h) {
  json buckets = json::array();
  h.for_each_bucket([&](size_t i, uint64_t c) { buckets.push_back({i, c}); });
  return {{"buckets", buckets}, {"sum", h.sum()}, {"min", h.min()}, {"max", h.max()}};
}

inline void merge_histogram_json(Histogram& into, const json& j) {
  if (!j.is_object()) return;
  for (const auto& b : j.value("buckets", json::array())) {
    into.add_bucket(b.at(0).get<size_t>(), b.at(1).get<uint64_t>());
  }
  into.add_summary(j.value("sum", uint64_t{0}), j.value("min", uint64_t{0}), j.value("max", uint64_t{0}));
}

}  // namespace loadgen
