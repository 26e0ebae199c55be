// Interest (what a handler wants to hear about) and readiness (what the demultiplexer reports).
#pragma once

#include <cstdint>

namespace reactor {

enum class Interest : uint8_t { kNone = 0, kRead = 1, kWrite = 2, kReadWrite = 3 };

constexpr Interest operator|(Interest a, Interest b) {
  return static_cast<Interest>(static_cast<uint8_t>(a) | static_cast<uint8_t>(b));
}
constexpr Interest operator&(Interest a, Interest b) {
  return static_cast<Interest>(static_cast<uint8_t>(a) & static_cast<uint8_t>(b));
}
constexpr Interest without(Interest a, Interest b) {
  return static_cast<Interest>(static_cast<uint8_t>(a) & ~static_cast<uint8_t>(b));
}
constexpr bool has(Interest set, Interest bit) { return (set & bit) != Interest::kNone; }

// Readiness bits handed to an event handler.
using Events = uint32_t;
inline constexpr Events kReadable = 1u << 0;
inline constexpr Events kWritable = 1u << 1;
inline constexpr Events kError = 1u << 2;   // error pending on the descriptor (EPOLLERR, POLLERR)
inline constexpr Events kHangup = 1u << 3;  // peer hung up (EPOLLHUP, EPOLLRDHUP, POLLHUP)

const char* interest_name(Interest interest);

}  // namespace reactor
