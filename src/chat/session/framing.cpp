#include "chat/session/framing.h"

#include <cstdint>

namespace chat {
namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
}  // namespace

void ObjectFramer::reset_object() {
  pos_ = 0;
  depth_ = 0;
  in_string_ = false;
  escape_ = false;
}

FrameResult ObjectFramer::next(std::string_view in) {
  if (discarding_) {
    // Track structure through the overlong object without keeping it. It is given up at the byte
    // that takes it past kDiscardFactor times the limit, wherever the reads split the stream.
    const size_t give_up = max_frame_ * kDiscardFactor;
    for (size_t i = 0; i < in.size(); ++i) {
      if (discarded_ + i + 1 > give_up) return {FrameStatus::kLost, i + 1, {}, discarded_ + i + 1};
      char c = in[i];
      if (in_string_) {
        if (escape_) escape_ = false;
        else if (c == '\\') escape_ = true;
        else if (c == '"') in_string_ = false;
      } else if (c == '"') {
        in_string_ = true;
      } else if (c == '{' || c == '[') {
        ++depth_;
      } else if ((c == '}' || c == ']') && --depth_ == 0) {
        size_t size = discarded_ + i + 1;
        discarding_ = false;
        discarded_ = 0;
        reset_object();
        return {FrameStatus::kTooLong, i + 1, {}, size};
      }
    }
    discarded_ += in.size();
    return {FrameStatus::kNeedMore, in.size(), {}};
  }

  if (pos_ == 0) {  // between objects: skip whitespace, then expect '{'
    size_t i = 0;
    while (i < in.size() && is_space(in[i])) ++i;
    if (i == in.size()) return {FrameStatus::kNeedMore, i, {}};
    if (in[i] != '{') {
      size_t j = i;
      while (j < in.size() && in[j] != '{') ++j;
      return {FrameStatus::kGarbage, j, {}};
    }
    if (i > 0) return {FrameStatus::kNeedMore, i, {}};  // drop the whitespace; call again
  }

  for (size_t i = pos_; i < in.size(); ++i) {
    if (i >= max_frame_) {
      // Overlong: discard what we have and go on dropping until the object ends.
      discarding_ = true;
      discarded_ = i;
      pos_ = 0;
      return {FrameStatus::kNeedMore, i, {}};
    }
    char c = in[i];
    if (in_string_) {
      if (escape_) escape_ = false;
      else if (c == '\\') escape_ = true;
      else if (c == '"') in_string_ = false;
      continue;
    }
    if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      ++depth_;
    } else if (c == '}' || c == ']') {
      if (--depth_ == 0) {
        reset_object();
        return {FrameStatus::kFrame, i + 1, in.substr(0, i + 1)};
      }
    }
  }
  pos_ = in.size();
  return {FrameStatus::kNeedMore, 0, {}};
}

FrameResult LineFramer::next(std::string_view in) {
  // A line is given up at the byte that takes it past kDiscardFactor times the limit (counting
  // every byte before its '\n'), however the reads split the stream.
  const size_t give_up = max_frame_ * kDiscardFactor;
  size_t nl = in.find('\n', pos_);
  size_t seen = discarded_ + (nl == std::string_view::npos ? in.size() : nl);  // bytes of this line
  if (seen > give_up) {
    size_t take = give_up + 1 - discarded_;
    discarding_ = false;
    discarded_ = 0;
    pos_ = 0;
    return {FrameStatus::kLost, take, {}, give_up + 1};
  }
  if (discarding_) {
    if (nl == std::string_view::npos) {
      discarded_ += in.size();
      return {FrameStatus::kNeedMore, in.size(), {}};
    }
    size_t size = discarded_ + nl;
    discarding_ = false;
    discarded_ = 0;
    pos_ = 0;
    return {FrameStatus::kTooLong, nl + 1, {}, size};
  }
  if (nl == std::string_view::npos) {
    // One byte of slack: the line may yet end in "\r\n", and the '\r' does not count.
    if (in.size() > max_frame_ + 1) {
      discarding_ = true;
      discarded_ = in.size();
      pos_ = 0;
      return {FrameStatus::kNeedMore, in.size(), {}};
    }
    pos_ = in.size();
    return {FrameStatus::kNeedMore, 0, {}};
  }
  pos_ = 0;
  size_t end = nl;
  if (end > 0 && in[end - 1] == '\r') --end;
  if (end > max_frame_) return {FrameStatus::kTooLong, nl + 1, {}, end};
  return {FrameStatus::kFrame, nl + 1, in.substr(0, end)};
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace chat
