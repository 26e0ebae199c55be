// Fuzz input cut into reads, as a socket would deliver it: pieces of 1 to `range` bytes whose sizes
// come from `seed` (the same input always splits the same way, so a crash reproduces).
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace fuzzing {

inline std::vector<std::string_view> split_into_reads(std::string_view data, unsigned seed, size_t range) {
  std::vector<std::string_view> reads;
  for (size_t off = 0; off < data.size();) {
    seed = seed * 1103515245u + 12345u;
    size_t n = 1 + (seed >> 16) % range;
    reads.push_back(data.substr(off, n));
    off += n;
  }
  return reads;
}

}  // namespace fuzzing
