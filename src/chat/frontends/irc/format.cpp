// How room events and replies look on IRC: the three formats, and the pieces of a line.
#include "chat/frontends/irc/irc.h"

#include <cstdio>
#include <ctime>

#include "chat/core/event.h"
#include "chat/core/names.h"
#include "chat/frontends/irc/lines.h"
#include "chat/frontends/irc/modes.h"
#include "chat/session/session.h"

namespace chat {

namespace {

constexpr std::string_view kNickSpecials = "[]\\`_^{|}";

class IrcFormat final : public Format {
 public:
  IrcFormat(const char* name, IrcTags tags) : Format(name, "irc"), tags_(tags) {}

  // With timestamps a member is played a room's history when it joins (IrcOptions::playback).
  bool plays_back() const override { return tags_ != IrcTags::kNone; }

  reactor::SharedBytes encode(const RoomEvent& e) const override {
    std::string source = source_of(e.user, e.front);
    std::string out;
    switch (e.kind) {
      case EventKind::kMessage:
        // Cut into lines of at most 512 bytes each (message_lines); the other kinds are one line,
        // cut to fit below.
        out = message_lines(tags_, source, e.automatic ? "NOTICE" : "PRIVMSG", "#" + e.room, e.text, e.ts_ms, e.room, e.seq);
        return std::make_shared<const std::string>(std::move(out));
      case EventKind::kJoin: out = tags(now_ms(), {}, 0, 0) + source + " JOIN #" + e.room + "\r\n"; break;
      case EventKind::kLeave:
        if (e.quit) {
          out = tags(now_ms(), {}, 0, 0) + source + " QUIT :" + (e.text.empty() ? "Connection closed" : e.text) + "\r\n";
        } else {
          out = tags(now_ms(), {}, 0, 0) + source + " PART #" + e.room + (e.text.empty() ? "" : " :" + e.text) + "\r\n";
        }
        break;
      case EventKind::kRename: out = tags(now_ms(), {}, 0, 0) + source + " NICK :" + irc_display_nick(e.text) + "\r\n"; break;
      case EventKind::kTopic: out = tags(now_ms(), {}, 0, 0) + source + " TOPIC #" + e.room + " :" + e.text + "\r\n"; break;
      case EventKind::kMode:
        out = tags(now_ms(), {}, 0, 0) + source + " MODE #" + e.room + " " + irc_mode_changes(e.modes) + "\r\n";
        break;
      case EventKind::kKick:
        out = tags(now_ms(), {}, 0, 0) + source + " KICK #" + e.room + " " + irc_display_nick(e.target) + " :" +
              (e.text.empty() ? e.user : e.text) + "\r\n";
        break;
    }
    return std::make_shared<const std::string>(within_limit(std::move(out)));
  }

 private:
  std::string tags(int64_t ms, std::string_view room, uint64_t seq, size_t piece) const {
    return tag_prefix(tags_, ms, room, seq, piece);
  }

  IrcTags tags_;
};

}  // namespace

// "#room" for a room.
std::string channel(std::string_view room) {
  std::string c;
  c.reserve(room.size() + 1);
  c += '#';
  c += room;
  return c;
}

// The room of "#room", if it names one.
bool room_of(std::string_view chan, std::string& room) {
  if (chan.size() < 2 || chan[0] != '#') return false;
  if (!valid_room_name(chan.substr(1))) return false;
  room.assign(chan.substr(1));
  return true;
}

// The IRC host that says a member's front end; "chat" when it is not known (or not a name a host
// may be: what a store's file says is checked here too).
const std::string& host_of(const std::string& front) {
  static const std::string unknown = "chat";
  return valid_front(front) ? front : unknown;
}

// ISO 8601 in UTC with milliseconds, as server-time has it.
std::string iso_time(int64_t ms) {
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm t;
  gmtime_r(&secs, &t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                t.tm_hour, t.tm_min, t.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

// The pieces of `text` as IRC lines can carry it: one per line of the text (CR and NUL dropped),
// each cut at `max` bytes on a UTF-8 character boundary. An empty text is one empty piece.
std::vector<std::string_view> pieces(std::string_view text, size_t max, std::string& scratch) {
  if (text.find_first_of(std::string_view("\r\0", 2)) != std::string_view::npos) {
    scratch.clear();
    for (char c : text) {
      if (c != '\r' && c != '\0') scratch += c;
    }
    text = scratch;
  }
  std::vector<std::string_view> out;
  while (true) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    while (line.size() > max) {
      size_t cut = max;
      while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
      if (cut == 0) cut = max;
      out.push_back(line.substr(0, cut));
      line.remove_prefix(cut);
    }
    if (!line.empty() || out.empty()) out.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
    if (text.empty()) break;
  }
  return out;
}

// A UTF-8 `text` cut to at most `max` bytes, on a character boundary.
std::string utf8_prefix(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut));
}

Shown shown(Session& session, const std::string& name) {
  Shown s;
  std::string nick = irc_display_nick(name);
  if (auto h = session.find_name(name)) {
    s.user = h->user;
    s.realname = h->realname;
    s.away = h->away;
    s.oper = h->oper;
    s.front = h->front;
  }
  if (s.user.empty()) s.user = nick;
  if (s.realname.empty()) s.realname = nick;
  return s;
}

// `lines` (each ending in CRLF) with every line over IRC's 512 bytes (its tags aside) cut to fit, on
// a UTF-8 character boundary: a long topic, kick or part reason loses its end, never runs over.
std::string within_limit(std::string lines) {
  size_t start = 0;
  while (start < lines.size()) {
    size_t end = lines.find("\r\n", start);
    if (end == std::string::npos) break;
    size_t body = start;
    if (lines[start] == '@') body = lines.find(' ', start) + 1;
    if (end - body + 2 > IrcCodec::kMaxLine) {
      size_t cut = body + IrcCodec::kMaxLine - 2;
      while (cut > body && (static_cast<unsigned char>(lines[cut]) & 0xC0) == 0x80) --cut;
      lines.erase(cut, end - cut);
      end = cut;
    }
    start = end + 2;
  }
  return lines;
}

// ":nick!nick@FRONT": how a member of front end `front` appears on IRC.
std::string source_of(std::string_view name, const std::string& front) {
  std::string nick = irc_display_nick(name);
  return ":" + nick + "!" + nick + "@" + host_of(front);
}

// "@time=...;msgid=ROOM~SEQ " (msgid for room messages only, with `tags` kAll; a message cut into
// several lines has one msgid per line: ROOM~SEQ, ROOM~SEQ~1, ...).
// With `batch`, the line belongs to that batch (@batch=ID first).
std::string tag_prefix(IrcTags tags, int64_t ms, std::string_view room, uint64_t seq, size_t piece,
                       std::string_view batch) {
  if (tags == IrcTags::kNone && batch.empty()) return {};
  std::string t = "@";
  if (!batch.empty()) {
    t += "batch=";
    t += batch;
    if (tags != IrcTags::kNone) t += ';';
  }
  if (tags != IrcTags::kNone) t += "time=" + iso_time(ms);
  if (tags == IrcTags::kAll && seq != 0) {
    t += ";msgid=";
    t += room;
    t += "~" + std::to_string(seq);
    if (piece > 0) t += "~" + std::to_string(piece);
  }
  t += ' ';
  return t;
}

// `text` from `source` to `target` as PRIVMSG (or NOTICE) lines: one per line of the text, each
// within IRC's line length.
std::string message_lines(IrcTags tags, const std::string& source, std::string_view command, std::string_view target,
                          std::string_view text, int64_t ts_ms, std::string_view room, uint64_t seq,
                          std::string_view batch) {
  std::string head = " ";
  head += command;
  head += ' ';
  head += target;
  head += " :";
  size_t room_for_text = IrcCodec::kMaxLine - 2 - source.size() - head.size();
  std::string scratch, out;
  size_t k = 0;
  for (std::string_view piece : pieces(text, room_for_text, scratch)) {
    out += tag_prefix(tags, ts_ms, room, seq, k++, batch);
    out += source;
    out += head;
    out += piece;
    out += "\r\n";
  }
  return out;
}

const Format& irc_format(IrcTags tags) {
  static const IrcFormat plain("irc", IrcTags::kNone);
  static const IrcFormat time("irc-time", IrcTags::kTime);
  static const IrcFormat all("irc-tags", IrcTags::kAll);
  switch (tags) {
    case IrcTags::kNone: return plain;
    case IrcTags::kTime: return time;
    case IrcTags::kAll: return all;
  }
  return plain;
}

bool valid_irc_nick(std::string_view nick) {
  if (nick.empty() || nick.size() > 32) return false;
  for (size_t i = 0; i < nick.size(); ++i) {
    char c = nick[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || kNickSpecials.find(c) != std::string_view::npos ||
              (i > 0 && ((c >= '0' && c <= '9') || c == '-'));
    if (!ok) return false;
  }
  return true;
}

std::string echoed(std::string_view token, size_t max) {
  std::string t(token.substr(0, max));
  for (char& c : t) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) c = '_';  // shown, never obeyed
  }
  if (t.empty()) return "*";
  if (t[0] == ':') t[0] = '_';
  return t;
}

std::string irc_display_nick(std::string_view name) {
  std::string nick(name);
  for (char& c : nick) {
    if (c == ' ' || c == '!' || c == '@' || c == ',' || c == '*' || c == '?') c = '_';
  }
  if (nick.empty() || nick[0] == ':' || nick[0] == '#' || nick[0] == '&') nick.insert(0, "_");
  return nick;
}

}  // namespace chat
