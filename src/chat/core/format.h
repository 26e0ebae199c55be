// Wire formats: how room events look on one kind of connection. A format is stateless and shared
// by every connection that speaks it; what a connection keeps (a framer, a handshake state) lives
// in its Codec (chat/session/codec.h). Formats register themselves when first constructed and get a small
// id, so the room core can count members per format and keep one rendering per format without
// knowing any of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "reactor/output_queue.h"

namespace chat {

struct RoomEvent;

using FormatId = uint8_t;
inline constexpr size_t kMaxFormats = 8;

class Format {
 public:
  // Registers the format; throws std::length_error past kMaxFormats. Construct each format once,
  // as a function-local static (registration takes a mutex, so any thread may be first; the
  // chat server registers its formats in a fixed order when it starts).
  // `front`: the front end whose members speak it ("article", "native", "web", "irc"): what other
  // front ends show of a member (IRC's host part).
  Format(std::string name, std::string front);
  virtual ~Format() = default;
  Format(const Format&) = delete;
  Format& operator=(const Format&) = delete;

  FormatId id() const { return id_; }
  const std::string& name() const { return name_; }
  const std::string& front() const { return front_; }

  // `event` in this format, or null if the format does not carry events of its kind.
  virtual reactor::SharedBytes encode(const RoomEvent& event) const = 0;
  // Whether a member of this format is played a room's recent history when it joins, from where it
  // left off: the room's owner then keeps a mark of what it was sent when it leaves (Store::set_mark).
  virtual bool plays_back() const { return false; }

  // The registered formats, by id (ids are 0 .. count() - 1, in registration order).
  static size_t count();
  static const Format& by_id(FormatId id);

 private:
  std::string name_;
  std::string front_;
  FormatId id_;
};

}  // namespace chat
