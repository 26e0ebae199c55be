// Limits, validation and counters shared by the chat server's pieces.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace chat {

struct Limits {
  size_t max_frame = 64 * 1024;            // bytes in one JSON object or line
  size_t output_hard = 8 * 1024 * 1024;    // queued bytes: past this a member is closed at once
  size_t output_soft = 1024 * 1024;        // queued bytes a member may stay above ...
  std::chrono::milliseconds soft_grace{5000};  // ... for this long before it is closed
  size_t max_rooms = 64;                   // rooms one connection may be in
  size_t max_connections = 0;              // 0: as many as descriptors allow
  size_t presence_max_members = 100;       // rooms larger than this get no presence events
};

// Counters, printed on SIGUSR1 and at exit.
struct Stats {
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t connections_refused = 0;  // over --max-connections, or not registrable
  uint64_t article_sessions = 0;
  uint64_t native_sessions = 0;
  uint64_t messages_in = 0;          // chat messages accepted for broadcast
  uint64_t deliveries = 0;           // message copies queued to members (by reference)
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;            // bytes queued to members
  uint64_t errors_json = 0;          // malformed JSON
  uint64_t errors_utf8 = 0;          // invalid UTF-8
  uint64_t errors_too_long = 0;      // frames over max_frame
  uint64_t errors_request = 0;       // missing/mistyped fields, unknown types, bad names
  uint64_t errors_garbage = 0;       // bytes outside any object (article dialect)
  uint64_t slow_consumer_closes = 0;
  uint64_t unsynced_closes = 0;      // streams that could not be resynchronised

  std::string to_string() const;
  Stats& operator+=(const Stats& o);
};

// Native user names: 1 to 32 characters from [A-Za-z0-9_.-].
bool valid_native_name(std::string_view name);
// Names in the article's dialect arrive with each message: 1 to 64 bytes, no control characters
// (C0, DEL, C1).
bool valid_article_name(std::string_view name);
// Room names: 1 to 64 characters from [A-Za-z0-9_.#-].
bool valid_room_name(std::string_view room);

inline constexpr const char* kLobby = "lobby";
// Appended to an article-dialect name that a native member holds (native names have no spaces).
inline constexpr const char* kArticleNameMark = " (article)";

}  // namespace chat
