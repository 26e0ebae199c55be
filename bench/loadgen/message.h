// The text of a chat-mode message: who sent it, when, and in which phase, padded to a fixed size.
//
//   <kind><publisher>.<sequence>.<sent_ns>.<filler>
//
// kind: 'B' barrier (readiness warm-up), 'W' load before the measurement, 'M' measured.
// sent_ns: CLOCK_MONOTONIC when the publisher queued it (one clock for every process).
// filler: "abcdefghijklmnopqrstuvwxyz" repeated, up to exactly --payload bytes. The text needs no
// JSON escaping and contains no '[', ']', '\r' or '\n', so with its known length it delimits itself
// in the article's "[user] text" output even when messages arrive back to back without newlines.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace loadgen {

enum class Kind : char { kBarrier = 'B', kWarm = 'W', kMeasured = 'M' };

struct Stamp {
  Kind kind = Kind::kMeasured;
  uint32_t publisher = 0;
  uint64_t seq = 0;
  uint64_t sent_ns = 0;
};

// The smallest --payload allowed in chat mode: room for the longest header in practice.
inline constexpr int kMinChatPayload = 48;

// Writes exactly `size` bytes to `out`. False if the header does not fit.
inline bool format_text(char* out, size_t size, const Stamp& s) {
  char* p = out;
  char* end = out + size;
  auto put_char = [&](char c) {
    if (p == end) return false;
    *p++ = c;
    return true;
  };
  auto put_number = [&](uint64_t v) {
    char digits[24];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    if (end - p < n) return false;
    while (n) *p++ = digits[--n];
    return true;
  };
  if (!put_char(static_cast<char>(s.kind)) || !put_number(s.publisher) || !put_char('.') || !put_number(s.seq) ||
      !put_char('.') || !put_number(s.sent_ns) || !put_char('.')) {
    return false;
  }
  for (size_t i = 0; p < end; ++i) *p++ = static_cast<char>('a' + i % 26);
  return true;
}

// The header's length (up to and including its third '.'), or 0. With --ids the header is also the
// message's id: unique within a run for a publisher (kind, publisher, sequence), at most 44
// printable characters, and it carries the send time, so an ack is timed without a lookup.
inline size_t header_size(std::string_view t) {
  int dots = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '.' && ++dots == 3) return i + 1;
  }
  return 0;
}

// Parses the header of a text (or an id); nullopt when it is not one of ours.
inline std::optional<Stamp> parse_text(std::string_view t) {
  if (t.size() < 8) return std::nullopt;
  Stamp s;
  char k = t[0];
  if (k != 'B' && k != 'W' && k != 'M') return std::nullopt;
  s.kind = static_cast<Kind>(k);
  size_t i = 1;
  auto number = [&](uint64_t& v) {
    size_t start = i;
    v = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9' && i - start < 20) v = v * 10 + static_cast<uint64_t>(t[i++] - '0');
    if (i == start || i >= t.size() || t[i] != '.') return false;
    ++i;
    return true;
  };
  uint64_t pub = 0;
  if (!number(pub) || !number(s.seq) || !number(s.sent_ns)) return std::nullopt;
  if (pub > UINT32_MAX) return std::nullopt;
  s.publisher = static_cast<uint32_t>(pub);
  return s;
}

}  // namespace loadgen
