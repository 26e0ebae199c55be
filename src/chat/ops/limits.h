// The limits a chat server enforces, one set per server (the flags of chat-server).
#pragma once

#include <chrono>
#include <cstddef>

#include "chat/ops/admission.h"

namespace chat {

struct Limits {
  size_t max_frame = 64 * 1024;            // bytes in one JSON object or line
  size_t output_hard = 8 * 1024 * 1024;    // queued bytes: past this a member is closed at once
  size_t output_soft = 1024 * 1024;        // queued bytes a member may stay above ...
  std::chrono::milliseconds soft_grace{5000};  // ... for this long before it is closed
  size_t max_rooms = 64;                   // rooms one connection may be in
  size_t max_room_members = 50000;         // members one room may have (0: no limit)
  size_t max_server_rooms = 100000;        // rooms with members at once in the process (0: no limit)
  size_t replay_limit = 1000;              // messages one recovering join may replay
  size_t max_connections = 0;              // 0: as many as descriptors allow
  size_t presence_max_members = 100;       // rooms larger than this get no presence events
  AddressLimits per_address;               // connections and connects per client address
  double message_rate = 100;               // messages a second one connection may publish after ...
  double message_burst = 500;              // ... this many at once (rate 0: no limit); past it:
                                           // rate_limited, and past `burst` refusals in a row, closed
  std::chrono::milliseconds frame_timeout{10000};  // a begun frame (line, object) must end within this
  // History (history, CHATHISTORY, recovering joins) costs by what it returns: one answer carries
  // at most `history_reply_bytes` of messages (at least one message; fewer, marked "more", if
  // cut), and one connection may be answered `history_rate` bytes a second after `history_burst`
  // (rate 0: no limit; its address four times as much, AddressLimits). Past it: rate_limited.
  size_t history_reply_bytes = 256 * 1024;
  double history_rate = 1024.0 * 1024;
  double history_burst = 4.0 * 1024 * 1024;
};

}  // namespace chat
