// Room events: what happened in a room, in no wire format. The hub produces them; each wire format
// (chat/core/format.h) renders them into bytes.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chat/core/format.h"
#include "chat/core/policy.h"
#include "reactor/output_queue.h"

namespace chat {

enum class EventKind : uint8_t {
  kMessage,  // `user` said `text` in `room`, numbered `seq`, at `ts_ms`
  kJoin,     // `user` (a named member) joined `room`
  kLeave,    // `user` left `room` (`quit`: because its connection closed; `text`: why, if it said)
  kRename,   // `user` (a member of `room`) is now called `text`
  kTopic,    // `user` set `room`'s topic to `text`
  kMode,     // `user` changed `room`'s modes or its members' roles: `modes`, in order
  kKick,     // `user` (an operator) removed `target` from `room`, saying `text`
};

struct RoomEvent {
  EventKind kind = EventKind::kMessage;
  std::string room;
  std::string user;
  std::string text;   // kMessage
  int64_t ts_ms = 0;  // kMessage: milliseconds since the epoch
  uint64_t seq = 0;   // kMessage: its number in the room
  std::string id;     // kMessage: the sender's id for an idempotent publish ("" if none)
  // The front end of the member the event is about (Format::front: "native", "web", "article",
  // "irc"; "" when not known, as for messages kept before it was recorded).
  std::string front;
  uint64_t member = 0;  // presence: the member's id (0 for messages)
  bool quit = false;    // kLeave
  std::string target;   // kKick: the member removed
  bool automatic = false;  // kMessage: an automatic message (StoredMessage::automatic)
  std::vector<ModeChange> modes;  // kMode: the changes made
};

// An event on its way to the members: the event, and its bytes in each wire format present among
// its recipients, made once by the room's owner before it leaves (so never concurrently, and never
// once per member). Every recipient of a format queues a reference to the same bytes. Null bytes:
// the format does not carry this kind of event (the article's dialect has no presence).
struct Delivery {
  RoomEvent event;
  std::array<reactor::SharedBytes, kMaxFormats> bytes;
  size_t bytes_size() const;  // the sum over formats, for the cost of posting it between shards
};
using DeliveryPtr = std::shared_ptr<const Delivery>;

// Milliseconds since the epoch: a message's `ts_ms`.
int64_t now_ms();

}  // namespace chat
