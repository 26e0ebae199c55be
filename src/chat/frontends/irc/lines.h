// The pieces of the IRC front end's lines, shared by its files (format.cpp defines them): channel
// names, sources, tags, and lines cut to IRC's length.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chat/core/hub.h"
#include "chat/frontends/irc/irc.h"

namespace chat {

// "#room" for a room.
std::string channel(std::string_view room);
// The room of "#room", if it names one.
bool room_of(std::string_view chan, std::string& room);
// The IRC host that says a member's front end; "chat" when it is not known (or not a name a host
// may be: what a store's file says is checked here too).
const std::string& host_of(const std::string& front);
// ISO 8601 in UTC with milliseconds, as server-time has it.
std::string iso_time(int64_t ms);
// The pieces of `text` as IRC lines can carry it: one per line of the text (CR and NUL dropped),
// each cut at `max` bytes on a UTF-8 character boundary. An empty text is one empty piece.
std::vector<std::string_view> pieces(std::string_view text, size_t max, std::string& scratch);
// A UTF-8 `text` cut to at most `max` bytes, on a character boundary.
std::string utf8_prefix(std::string_view text, size_t max);

// What WHO, WHOIS and USERHOST show of a member named `nick`: its user name, real name, whether
// away and whether a server operator (from the names registry: USER's for IRC members, the name
// for the others).
struct Shown {
  std::string user, realname, front;
  bool away = false, oper = false;
};
Shown shown(Session& session, const std::string& name);

// `lines` (each ending in CRLF) with every line over IRC's 512 bytes (its tags aside) cut to fit, on
// a UTF-8 character boundary: a long topic, kick or part reason loses its end, never runs over.
std::string within_limit(std::string lines);
// ":nick!nick@FRONT": how a member of front end `front` appears on IRC.
std::string source_of(std::string_view name, const std::string& front);
// "@time=...;msgid=ROOM~SEQ " (msgid for room messages only, with `tags` kAll; a message cut into
// several lines has one msgid per line: ROOM~SEQ, ROOM~SEQ~1, ...).
// With `batch`, the line belongs to that batch (@batch=ID first).
std::string tag_prefix(IrcTags tags, int64_t ms, std::string_view room, uint64_t seq, size_t piece,
                       std::string_view batch = {});
// `text` from `source` to `target` as PRIVMSG (or NOTICE) lines: one per line of the text, each
// within IRC's line length.
std::string message_lines(IrcTags tags, const std::string& source, std::string_view command, std::string_view target,
                          std::string_view text, int64_t ts_ms, std::string_view room, uint64_t seq,
                          std::string_view batch = {});

}  // namespace chat
