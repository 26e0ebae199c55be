// Framing: turning a byte stream into frames for the two wire dialects.
//
//   ObjectFramer  the article's dialect: JSON objects back to back, with or without whitespace
//                 between them, several in one read or one split across many reads.
//   LineFramer    the native dialect: one JSON value per line ('\n', optionally "\r\n").
//
// Both scan incrementally (a frame arriving a byte at a time is scanned once, not once per byte),
// bound what they hold, and resynchronise after bad input instead of giving up: garbage between
// objects is skipped to the next '{', and an overlong frame is discarded up to its end (the closing
// brace at depth 0, or the newline), then reported once. The caller owns the bytes: it passes the
// unconsumed input each time and drops `consumed` bytes afterwards.
#pragma once

#include <cstddef>
#include <string_view>

namespace chat {

enum class FrameStatus {
  kFrame,     // `frame` is one complete object / line
  kNeedMore,  // nothing complete yet; keep the bytes, call again when more arrive
  kGarbage,   // `consumed` bytes outside any object were skipped (ObjectFramer only)
  kTooLong,   // a frame longer than the limit ended; `consumed` bytes of it were discarded
  kLost,      // an overlong frame went on past 16 times the limit without ending: the stream
              // cannot be resynchronised (close the connection). Decided at the byte that takes
              // it past, so the same stream is given up at the same place however it arrives.
};

struct FrameResult {
  FrameStatus status;
  size_t consumed;         // bytes the caller must drop from the front of its input
  std::string_view frame;  // kFrame only: a view into the caller's input
  size_t frame_size = 0;   // kTooLong: the size of the discarded frame; kLost: its size when given up
};

// How far past the frame limit a framer keeps discarding before it gives the stream up.
inline constexpr size_t kDiscardFactor = 16;

class ObjectFramer {
 public:
  explicit ObjectFramer(size_t max_frame) : max_frame_(max_frame) {}
  FrameResult next(std::string_view input);
  // Bytes of the current partial frame already scanned (for tests of incremental scanning).
  size_t scanned() const { return pos_; }
  // Inside an overlong object, dropping its bytes until it ends.
  bool discarding() const { return discarding_; }

 private:
  void reset_object();

  size_t max_frame_;
  size_t pos_ = 0;     // how far into the current input scanning got
  size_t depth_ = 0;   // brace/bracket nesting inside the current object
  bool in_string_ = false;
  bool escape_ = false;
  bool discarding_ = false;  // inside an overlong object: drop bytes until it ends
  size_t discarded_ = 0;
};

class LineFramer {
 public:
  explicit LineFramer(size_t max_frame) : max_frame_(max_frame) {}
  FrameResult next(std::string_view input);

 private:
  size_t max_frame_;
  size_t pos_ = 0;
  bool discarding_ = false;
  size_t discarded_ = 0;
};

// True if `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace chat
