#include "chat/core/random_id.h"

#include <random>

namespace chat {

std::string random_hex(size_t digits) {
  thread_local std::mt19937_64 generator = [] {
    std::random_device os;
    std::seed_seq seed{os(), os(), os(), os()};
    return std::mt19937_64(seed);
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(digits, '0');
  uint64_t bits = 0;
  for (size_t i = 0; i < digits; ++i) {
    if (i % 16 == 0) bits = generator();
    out[i] = kHex[bits & 0xf];
    bits >>= 4;
  }
  return out;
}

}  // namespace chat
