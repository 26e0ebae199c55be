#include "chat/frontends/irc/irc.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>

#include <crypt.h>
#include <openssl/crypto.h>

#include "chat/core/event.h"
#include "chat/core/names.h"
#include "chat/frontends/irc/modes.h"
#include "chat/ops/auth.h"
#include "chat/session/session.h"

namespace chat {

// Every byte of an IrcCodec is paid by every idle IRC member: within 120 bytes it takes one 128-byte
// chunk of malloc's (what is rare, a nick before registration or an away message, is apart).
static_assert(sizeof(IrcCodec) <= 120);

namespace {

constexpr std::string_view kNickSpecials = "[]\\`_^{|}";

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

// What WHO, WHOIS and USERHOST show of a member named `nick`: its user name, real name, whether
// away and whether a server operator (from the names registry: USER's for IRC members, the name
// for the others).
struct Shown {
  std::string user, realname, front;
  bool away = false, oper = false;
};
Shown shown(ShardTable& table, const std::string& name) {
  Shown s;
  std::string nick = irc_display_nick(name);
  if (auto h = table.find_name(name)) {
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
                       std::string_view batch = {}) {
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
                          std::string_view batch = {}) {
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

bool irc_hash_usable(const std::string& hash) {
  if (hash.size() < 4 || hash[0] != '$') return false;
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_r("probe", hash.c_str(), data.get());
  return out != nullptr && out[0] == '$';
}

bool irc_password_matches(const std::string& password, const std::string& hash) {
  if (!irc_hash_usable(hash)) return false;
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_r(password.c_str(), hash.c_str(), data.get());
  if (out == nullptr) return false;
  std::string_view got(out);
  return got.size() == hash.size() && CRYPTO_memcmp(got.data(), hash.data(), hash.size()) == 0;
}

const std::string& IrcCodec::asked_nick() const {
  static const std::string none;
  return rare_ ? rare_->nick : none;
}

std::string IrcCodec::target(Session& session) const {
  if (registered_) return session.name();
  return asked_nick().empty() ? std::string("*") : asked_nick();
}

IrcCodec::IrcCodec(const IrcOptions& options, reactor::Clock::time_point now)
    : options_(options), tokens_(static_cast<float>(options.flood_burst)), since_(now), filled_(now) {}

FrameResult IrcCodec::next_frame(std::string_view input) {
  size_t max_tags = (caps_ & kMessageTags) ? irc::kMaxClientTags : 0;
  irc::LineResult r = irc::next_line(input, irc::kMaxBody, max_tags, line_state_);
  switch (r.status) {
    case irc::LineResult::kLine: return {FrameStatus::kFrame, r.consumed, r.line};
    case irc::LineResult::kNeedMore: return {FrameStatus::kNeedMore, r.consumed, {}};
    case irc::LineResult::kTooLong: return {FrameStatus::kTooLong, r.consumed, {}, irc::kMaxBody};
  }
  return {FrameStatus::kNeedMore, 0, {}};
}

void IrcCodec::on_bad_frame(Session& session, const FrameResult& r, std::string_view) {
  if (r.status == FrameStatus::kTooLong) {
    numeric(session, "417", ":Input line was too long (at most 512 bytes, tags aside)");
  }
}

std::string IrcCodec::numeric_line(Session& session, std::string_view code, std::string_view rest) const {
  std::string line;
  std::string target = this->target(session);
  line.reserve(options_.server_name.size() + target.size() + rest.size() + 10);
  line += ':';
  line += options_.server_name;
  line += ' ';
  line += code;
  line += ' ';
  line += target;
  line += ' ';
  line += rest;
  line += "\r\n";
  return within_limit(std::move(line));
}

void IrcCodec::numeric(Session& session, std::string_view code, std::string_view rest) {
  session.reply(std::make_shared<const std::string>(numeric_line(session, code, rest)));
}

void IrcCodec::send_line(Session& session, std::string line) {
  session.reply(std::make_shared<const std::string>(within_limit(std::move(line))));
}

std::string IrcCodec::self_source(Session& session) const {
  const std::string& n = session.name();
  return ":" + n + "!" + n + "@irc";
}

reactor::SharedBytes IrcCodec::going_away(Session&, bool restart) {
  // What IRC servers say when they go; clients reconnect on it.
  return std::make_shared<const std::string>(restart ? "ERROR :Closing Link: (Server draining: please reconnect)\r\n"
                                                     : "ERROR :Closing Link: (Server shutting down)\r\n");
}

void IrcCodec::close_with_error(Session& session, const std::string& reason, reactor::CloseCode code) {
  if (rare().quit_reason.empty()) rare().quit_reason = reason;
  std::string who = target(session);
  send_line(session, "ERROR :Closing Link: " + who + " (" + reason + ")\r\n");
  pending_.clear();
  session.depart();
  session.close_after_flush(code, reason);
}

std::unique_ptr<Codec> IrcCodec::on_frame(Session& session, std::string_view frame) {
  auto now = reactor::Clock::now();
  since_ = now;
  ping_sent_ = {};
  if (frame.find_first_not_of(' ') == std::string_view::npos) return nullptr;  // empty lines are ignored
  // IRC clients still send Latin-1: taken as such and relayed as UTF-8 (docs/PROTOCOL.md).
  std::string converted;
  if (!irc::valid_utf8(frame)) {
    converted = irc::utf8_or_latin1(frame);
    frame = converted;
  }
  irc::Message m;
  irc::ParseError e = irc::parse(frame, m);
  if (e == irc::ParseError::kBadCommand) {
    ++session.stats().errors_request;
    std::string cmd(frame.substr(0, std::min<size_t>(frame.find(' '), 32)));
    if (!cmd.empty() && (cmd[0] == '@' || cmd[0] == ':')) cmd = "*";
    numeric(session, "421", echoed(cmd, 32) + " :Unknown command");
    return nullptr;
  }
  if (e != irc::ParseError::kNone) {
    ++session.stats().errors_request;
    send_line(session, ":" + options_.server_name + " NOTICE " + (registered_ ? session.name() : "*") +
                           " :Line ignored: " + irc::to_string(e) + "\r\n");
    return nullptr;
  }
  command(session, m);
  return nullptr;
}

void IrcCodec::command(Session& session, const irc::Message& m) {
  const std::string& c = m.command;
  if (c == "PING") {
    if (m.params.empty()) return numeric(session, "461", "PING :Not enough parameters");
    // After every earlier answer, also those from rooms' owners on other shards (JOIN's, NAMES'):
    // a client may PING to know it has them all.
    return session.after_earlier_answers(std::make_shared<const std::string>(
        ":" + options_.server_name + " PONG " + options_.server_name + " :" + m.params[0] + "\r\n"));
  }
  if (c == "PONG") return;  // any line is a sign of life (on_frame)
  if (c == "CAP") return cap(session, m);
  if (c == "PASS") return pass(session, m);
  if (c == "AUTHENTICATE") return authenticate(session, m);
  if (c == "NICK") return nick(session, m);
  if (c == "USER") return user(session, m);
  if (c == "QUIT") return quit(session, m);
  if (!registered_) {
    ++session.stats().errors_request;
    return numeric(session, "451", ":You have not registered");
  }
  if (c == "PRIVMSG" || c == "NOTICE") return message(session, m, c == "NOTICE");
  if (c == "JOIN") return join(session, m);
  if (c == "PART") return part(session, m);
  if (c == "NAMES") return names(session, m);
  if (c == "WHO") return who(session, m);
  if (c == "WHOIS") return whois(session, m);
  if (c == "AWAY") return away(session, m);
  if (c == "ISON") return ison(session, m);
  if (c == "USERHOST") return userhost(session, m);
  if (c == "WHOWAS") return whowas(session, m);
  if (c == "OPER") return oper(session, m);
  if (c == "KILL") return kill(session, m);
  if (c == "WALLOPS") return wallops(session, m);
  if (c == "LIST") return list(session, m);
  if (c == "MODE") return mode(session, m);
  if (c == "TOPIC") return topic(session, m);
  if (c == "KICK") return kick(session, m);
  if (c == "CHATHISTORY") return chathistory(session, m);
  if (c == "INVITE") return invite(session, m);
  if (c == "LUSERS") return lusers(session);
  if (c == "MOTD") return motd(session);
  if (c == "VERSION") {
    numeric(session, "351", "chat-server " + options_.server_name + " :Reactor Chat");
    return;
  }
  if (c == "TIME") return numeric(session, "391", options_.server_name + " :" + iso_time(now_ms()));
  if (c == "INFO") {
    numeric(session, "371", ":chat-server, Reactor Chat: one reactor per core, rooms over IRC, native JSON");
    numeric(session, "371", ":lines, WebSocket and the article's dialect");
    return numeric(session, "374", ":End of INFO list");
  }
  ++session.stats().errors_request;
  numeric(session, "421", c.substr(0, 32) + " :Unknown command");
}

// ---- Registration -------------------------------------------------------------------------------

void IrcCodec::cap(Session& session, const irc::Message& m) {
  static constexpr std::string_view kOffered =
      "message-tags server-time echo-message batch draft/chathistory multi-prefix userhost-in-names";
  if (m.params.empty()) return numeric(session, "461", "CAP :Not enough parameters");
  std::string sub = m.params[0];
  for (char& ch : sub) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string head = ":" + options_.server_name + " CAP " + target(session) + " ";
  if (sub == "LS") {
    if (!registered_) negotiating_ = true;
    std::string offered(kOffered);
    if (session.table().authority() != nullptr) {
      // CAP LS 302 and later carry values: the mechanisms SASL takes.
      bool values = m.params.size() > 1 && std::strtol(m.params[1].c_str(), nullptr, 10) >= 302;
      offered += values ? " sasl=PLAIN" : " sasl";
    }
    return send_line(session, head + "LS :" + offered + "\r\n");
  }
  if (sub == "LIST") {
    std::string on;
    if (caps_ & kMessageTags) on += "message-tags ";
    if (caps_ & kServerTime) on += "server-time ";
    if (caps_ & kEchoMessage) on += "echo-message ";
    if (caps_ & kBatch) on += "batch ";
    if (caps_ & kChathistory) on += "draft/chathistory ";
    if (caps_ & kSasl) on += "sasl ";
    if (caps_ & kMultiPrefix) on += "multi-prefix ";
    if (caps_ & kUserhostInNames) on += "userhost-in-names ";
    if (!on.empty()) on.pop_back();
    return send_line(session, head + "LIST :" + on + "\r\n");
  }
  if (sub == "REQ") {
    if (!registered_) negotiating_ = true;
    std::string asked = m.params.size() > 1 ? m.params[1] : "";
    uint16_t caps = caps_;
    bool ok = true;
    size_t pos = 0;
    while (pos < asked.size()) {
      size_t end = asked.find(' ', pos);
      std::string_view name = std::string_view(asked).substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      pos = end == std::string::npos ? asked.size() : end + 1;
      if (name.empty()) continue;
      bool off = name[0] == '-';
      if (off) name.remove_prefix(1);
      uint16_t bit = name == "message-tags" ? kMessageTags
                    : name == "server-time" ? kServerTime
                    : name == "echo-message" ? kEchoMessage
                    : name == "batch" ? kBatch
                    : name == "draft/chathistory" ? kChathistory
                    : name == "sasl" && session.table().authority() != nullptr ? kSasl
                    : name == "multi-prefix" ? kMultiPrefix
                    : name == "userhost-in-names" ? kUserhostInNames
                                             : 0;
      if (bit == 0) {
        ok = false;
        break;
      }
      caps = off ? static_cast<uint16_t>(caps & ~bit) : static_cast<uint16_t>(caps | bit);
    }
    IrcTags tags = (caps & kMessageTags) ? IrcTags::kAll : (caps & kServerTime) ? IrcTags::kTime : IrcTags::kNone;
    // A member's format is fixed while it is in a room (the owners count members per format).
    if (ok && tags != tags_ && !session.rooms().empty()) ok = false;
    if (!ok) return send_line(session, head + "NAK :" + asked + "\r\n");
    caps_ = caps;
    if (tags != tags_) {
      tags_ = tags;
      session.refresh_format();
    }
    return send_line(session, head + "ACK :" + asked + "\r\n");
  }
  if (sub == "END") {
    negotiating_ = false;
    return try_register(session);
  }
  numeric(session, "410", echoed(sub, 32) + " :Invalid CAP command");
}

void IrcCodec::pass(Session& session, const irc::Message& m) {
  if (registered_) return numeric(session, "462", ":You may not reregister");
  if (m.params.empty()) return numeric(session, "461", "PASS :Not enough parameters");
  if (session.table().authority() != nullptr) {
    // --auth-secret: the password is a token (its name must be the nick: try_register checks).
    std::string why;
    if (!accept_token(session, m.params[0], {}, why)) unauthorized(session, why);
    return;
  }
  pass_ok_ = !options_.password.empty() && m.params[0] == options_.password;
}

bool IrcCodec::accept_token(Session& session, std::string_view token, std::string_view user, std::string& why) {
  TokenAuthority::Verdict v = session.table().authority()->verify(token, TokenAuthority::now());
  if (!v.ok()) {
    why = TokenAuthority::describe(v.result);
    return false;
  }
  if (!user.empty() && v.user != user) {
    why = "the token is for another user";
    return false;
  }
  rare().account = std::move(v.user);
  pass_ok_ = true;
  return true;
}

void IrcCodec::unauthorized(Session& session, const std::string& why) {
  std::string lines = numeric_line(session, "464", ":Password incorrect (" + why + ")");
  lines += "ERROR :Closing Link: " + target(session) + " (Unauthorized: " + why + ")\r\n";
  pending_.clear();
  session.refuse_unauthenticated(std::make_shared<const std::string>(std::move(lines)), why);
}

// IRCv3 SASL 3.1, mechanism PLAIN: AUTHENTICATE PLAIN, "AUTHENTICATE +", then the base64 of
// authzid NUL authcid NUL password in chunks of 400 ("+" ends a message of a multiple of 400). The
// password is a token for authcid; authzid is empty or authcid.
void IrcCodec::authenticate(Session& session, const irc::Message& m) {
  if (session.table().authority() == nullptr) {
    ++session.stats().errors_request;
    return numeric(session, "421", "AUTHENTICATE :Unknown command");
  }
  if (m.params.empty()) return numeric(session, "461", "AUTHENTICATE :Not enough parameters");
  // Once per connection, before registration. A PASS with a token does not count: clients (irc-framework
  // among them) send their password both ways, and wait for SASL's answer before CAP END.
  if (registered_ || (rare_ && rare_->sasl_done)) {
    return numeric(session, "907", ":You have already authenticated using SASL");
  }
  if (!(caps_ & kSasl)) return numeric(session, "904", ":SASL authentication failed (CAP REQ :sasl first)");
  const std::string& arg = m.params[0];
  Rare& r = rare();
  if (arg == "*") {
    r.sasl.clear();
    r.sasl_started = false;
    return numeric(session, "906", ":SASL authentication aborted");
  }
  if (!r.sasl_started) {
    std::string mechanism = arg;
    for (char& ch : mechanism) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (mechanism != "PLAIN") {
      numeric(session, "908", "PLAIN :are available SASL mechanisms");
      return sasl_failed(session, "904", "unsupported mechanism");
    }
    r.sasl_started = true;
    return send_line(session, "AUTHENTICATE +\r\n");
  }
  if (arg != "+") {
    if (arg.size() > kSaslChunk || r.sasl.size() + arg.size() > kMaxSasl) {
      r.sasl.clear();
      r.sasl_started = false;
      return sasl_failed(session, "905", "SASL message too long");
    }
    r.sasl += arg;
    if (arg.size() == kSaslChunk) return;  // more to come
  }
  sasl_plain(session);
}

void IrcCodec::sasl_plain(Session& session) {
  std::string message;
  bool decoded = base64_decode(rare().sasl, message);
  rare().sasl.clear();
  rare().sasl_started = false;
  size_t a = decoded ? message.find('\0') : std::string::npos;
  size_t b = a == std::string::npos ? a : message.find('\0', a + 1);
  if (b == std::string::npos || message.find('\0', b + 1) != std::string::npos) {
    return sasl_failed(session, "904", "malformed PLAIN message");
  }
  std::string_view all(message);
  std::string_view authzid = all.substr(0, a), authcid = all.substr(a + 1, b - a - 1), password = all.substr(b + 1);
  if (authcid.empty() || (!authzid.empty() && authzid != authcid)) {
    return sasl_failed(session, "904", "authzid must be empty or the authcid");
  }
  std::string why;
  if (!accept_token(session, password, authcid, why)) return sasl_failed(session, "904", why);
  const std::string& account = rare().account;
  const std::string& nick = asked_nick().empty() ? account : asked_nick();
  numeric(session, "900", nick + "!" + nick + "@irc " + account + " :You are now logged in as " + account);
  numeric(session, "903", ":SASL authentication successful");
  rare().sasl_done = true;
}

void IrcCodec::sasl_failed(Session& session, const char* code, const std::string& why) {
  numeric(session, code, std::string(std::string_view(code) == "905" ? ":SASL message too long" : ":SASL authentication failed") +
                             " (" + why + ")");
  if (++rare().sasl_failures >= kMaxSaslFailures) unauthorized(session, "too many failed SASL attempts");
}

void IrcCodec::nick(Session& session, const irc::Message& m) {
  if (m.params.empty() || m.params[0].empty()) return numeric(session, "431", ":No nickname given");
  const std::string& wanted = m.params[0];
  if (!valid_irc_nick(wanted)) {
    ++session.stats().errors_request;
    return numeric(session, "432", echoed(wanted, 32) + " :Erroneous nickname");
  }
  if (!registered_) {
    if (session.table().name_held(wanted)) return numeric(session, "433", wanted + " :Nickname is already in use");
    rare().nick = wanted;
    return try_register(session);
  }
  const std::string& current = session.name();
  if (wanted == current) return;
  // --auth-secret: the name is the token's, for the connection's life (as a native member's is).
  if (session.table().authority() != nullptr) {
    return numeric(session, "902", ":You must use a nick assigned to you (the name your token is for)");
  }
  // The same name in another case is still this member's (names are compared without case).
  bool same = ShardTable::fold_name(wanted) == ShardTable::fold_name(current);
  if (!same) {
    auto held = session.table().find_name(current);
    if (!session.claim_name(wanted, "irc", held ? held->user : std::string(), held ? held->realname : std::string())) {
      return numeric(session, "433", wanted + " :Nickname is already in use");
    }
  }
  send_line(session, self_source(session) + " NICK :" + wanted + "\r\n");
  session.rename(wanted);
  publish_flags(session);
}

void IrcCodec::user(Session& session, const irc::Message& m) {
  if (registered_) return numeric(session, "462", ":You may not reregister");
  if (m.params.size() < 4 || m.params[0].empty() || m.params[3].empty()) {
    return numeric(session, "461", "USER :Not enough parameters");
  }
  // Kept (converted to UTF-8 with the rest of the line, on_frame) and shown by WHO and WHOIS; the
  // '~' says no ident server confirmed the user name, as IRC servers write it.
  std::string user = "~" + utf8_prefix(m.params[0], kUserLength - 1);
  for (char& ch : user) {
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f || ch == '@' || ch == '!' || ch == '*' || ch == '?') ch = '_';
  }
  rare().user = std::move(user);
  rare().realname = utf8_prefix(m.params[3], kRealnameLength);
  user_given_ = true;
  try_register(session);
}

void IrcCodec::try_register(Session& session) {
  if (registered_ || negotiating_ || asked_nick().empty() || !user_given_) return;
  std::string nick = rare().nick;
  if (session.table().authority() != nullptr) {
    if (!pass_ok_) return unauthorized(session, "authentication required: PASS <token> or SASL PLAIN");
    if (rare().account != nick) return unauthorized(session, "the token is for another nick");
  } else if (!options_.password.empty() && !pass_ok_) {
    numeric(session, "464", ":Password incorrect");
    return close_with_error(session, "Bad password", reactor::CloseCode::kProtocol);
  }
  if (!session.claim_name(nick, "irc", rare().user, rare().realname)) {
    numeric(session, "433", nick + " :Nickname is already in use");
    rare().nick.clear();
    return;
  }
  session.set_name(nick);
  if (session.table().authority() != nullptr) ++session.stats().auth_accepted;
  rare().nick.clear();
  rare().account.clear();
  rare().user.clear();
  rare().realname.clear();
  rare().sasl.clear();
  rare().sasl_started = false;
  rare().sasl_done = false;
  rare().sasl_failures = 0;
  trim_rare();
  registered_ = true;
  welcome(session);
}

void IrcCodec::welcome(Session& session) {
  const std::string& n = session.name();
  const std::string& server = options_.server_name;
  numeric(session, "001", ":Welcome to the " + options_.network + " IRC network " + n + "!" + n + "@irc");
  numeric(session, "002", ":Your host is " + server + ", running chat-server");
  numeric(session, "003", ":This server speaks IRC beside native JSON lines, WebSocket and the article's dialect");
  numeric(session, "004", server + " chat-server iow bklimnostv");
  // ISUPPORT, at most 12 tokens a line (a line has 15 parameters at most: the nick, the tokens and
  // the trailing text).
  const std::vector<std::string> tokens = {
      "AWAYLEN=200",
      "CASEMAPPING=ascii",
      "CHANLEN=65",
      "CHANLIMIT=#:" + std::to_string(session.limits().max_rooms),
      "CHANMODES=b,k,l,imnst",
      "CHANTYPES=#",
      "CHATHISTORY=" + std::to_string(kMaxHistory),
      "KICKLEN=300",
      "MAXTARGETS=" + std::to_string(kMaxTargets),
      "MODES=" + std::to_string(kMaxModes),
      "MSGREFTYPES=msgid",
      "NETWORK=" + options_.network,
      "NICKLEN=32",
      "PREFIX=(ov)@+",
      "TARGMAX=PRIVMSG:" + std::to_string(kMaxTargets) + ",NOTICE:" + std::to_string(kMaxTargets),
      "TOPICLEN=" + std::to_string(kTopicLength),
      "USERLEN=" + std::to_string(kUserLength),
  };
  constexpr size_t kTokensPerLine = 12;
  for (size_t i = 0; i < tokens.size(); i += kTokensPerLine) {
    std::string line;
    for (size_t k = i; k < std::min(tokens.size(), i + kTokensPerLine); ++k) line += tokens[k] + " ";
    numeric(session, "005", line + ":are supported by this server");
  }
  lusers(session);
  motd(session);
}

void IrcCodec::lusers(Session& session) {
  size_t users = session.table().name_count();
  std::string peak = std::to_string(std::max(users, session.table().name_peak()));
  std::string now = std::to_string(users);
  numeric(session, "251", ":There are " + now + " users and 0 invisible on 1 servers");
  numeric(session, "255", ":I have " + now + " clients and 0 servers");
  numeric(session, "265", now + " " + peak + " :Current local users " + now + ", max " + peak);
  numeric(session, "266", now + " " + peak + " :Current global users " + now + ", max " + peak);
}

void IrcCodec::motd(Session& session) {
  if (options_.motd.empty()) return numeric(session, "422", ":MOTD File is missing");
  numeric(session, "375", ":- " + options_.server_name + " Message of the day - ");
  for (const std::string& line : options_.motd) numeric(session, "372", ":- " + line);
  numeric(session, "376", ":End of /MOTD command.");
}

void IrcCodec::quit(Session& session, const irc::Message& m) {
  std::string said = m.params.empty() ? std::string() : m.params[0];
  rare().quit_reason = said.empty() ? "Quit" : "Quit: " + said.substr(0, 300);
  close_with_error(session, rare().quit_reason, reactor::CloseCode::kPeerClosed);
}

// ---- Channels -----------------------------------------------------------------------------------

bool IrcCodec::pending(const std::string& room) const {
  return std::find(pending_.begin(), pending_.end(), room) != pending_.end();
}

void IrcCodec::join(Session& session, const irc::Message& m) {
  if (m.params.empty()) return numeric(session, "461", "JOIN :Not enough parameters");
  if (m.params[0] == "0") {  // leave every channel
    std::vector<std::string> rooms = session.rooms();
    for (const std::string& room : rooms) {
      if (session.leave(room) == HubError::kNone) send_line(session, self_source(session) + " PART #" + room + "\r\n");
    }
    pending_.clear();
    return;
  }
  std::string_view list = m.params[0];
  std::string_view keys = m.params.size() > 1 ? std::string_view(m.params[1]) : std::string_view();
  std::string room;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view chan = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    size_t key_comma = keys.find(',');
    std::string key(keys.substr(0, key_comma));  // the keys go with the channels, in order
    keys = key_comma == std::string_view::npos ? std::string_view() : keys.substr(key_comma + 1);
    if (chan.empty()) continue;
    if (!room_of(chan, room)) {
      ++session.stats().errors_request;
      numeric(session, "403", echoed(chan, 65) + " :No such channel");
      continue;
    }
    if (session.in_room(room)) continue;
    if (session.rooms().size() >= session.limits().max_rooms) {
      ++session.stats().errors_request;
      numeric(session, "405", channel(room) + " :You have joined too many channels");
      continue;
    }
    // The owner answers through joined(): JOIN, then the names (at once, inside join(), when this
    // shard owns the room: pending before the call).
    pending_.push_back(room);
    // A client that shows when a message was said is given the room's last messages first (one
    // that asks for history itself is not).
    bool playback = options_.playback > 0 && (caps_ & (kServerTime | kMessageTags)) && !(caps_ & kChathistory);
    // Once: the store keeps, per nick and channel, the last number this nick was sent (Store's read
    // marks), and only what is newer is played back.
    HubError e = playback ? session.join_recent(room, options_.playback, key, ShardTable::fold_name(session.name()))
                          : session.join(room, true, key);
    if (e != HubError::kNone) std::erase(pending_, room);
  }
}

reactor::SharedBytes IrcCodec::joined(Session& session, const std::string& room, const JoinReply& reply,
                                      std::optional<bool>) {
  std::erase(pending_, room);
  std::string out;
  if (tags_ != IrcTags::kNone) out = "@time=" + iso_time(now_ms()) + " ";
  out += self_source(session) + " JOIN " + channel(room) + "\r\n";
  if (reply.topic && !reply.topic->empty()) topic_reply(session, room, *reply.topic, *reply.topic_by, reply.topic_at, out);
  std::vector<std::string> names{names_entry(session, {}, session.name())};
  if (reply.names) {
    names.clear();
    for (size_t i = 0; i < reply.names->size(); ++i) {
      MemberModes modes = reply.modes && i < reply.modes->size() ? (*reply.modes)[i] : MemberModes{};
      names.push_back(names_entry(session, modes, (*reply.names)[i]));
    }
  }
  names_reply(session, room, names, reply.names != nullptr, reply.count, out);
  return std::make_shared<const std::string>(std::move(out));
}

void IrcCodec::topic_reply(Session& session, const std::string& room, const std::string& topic, const std::string& by,
                           int64_t at, std::string& out) const {
  out += numeric_line(session, "332", channel(room) + " :" + topic);
  out += numeric_line(session, "333", channel(room) + " " + irc_display_nick(by) + " " + std::to_string(at / 1000));
}

namespace {
// The numeric and the rest of its line for a refusal about `about` (a nick, a mode's parameter or
// unknown letter; `mode`: the mode refused) in channel `chan`.
std::pair<const char*, std::string> refusal_line(Refusal why, const std::string& about, RoomMode mode,
                                                 const std::string& chan) {
  switch (why) {
    case Refusal::kNotInRoom: return {"442", chan + " :You're not on that channel"};
    case Refusal::kNotOperator: return {"482", chan + " :You're not channel operator"};
    case Refusal::kNoSuchMember: return {"441", echoed(about, 32) + " " + chan + " :They aren't on that channel"};
    case Refusal::kAlreadyInRoom: return {"443", irc_display_nick(about) + " " + chan + " :is already on channel"};
    case Refusal::kInviteOnly: return {"473", chan + " :Cannot join channel (+i)"};
    case Refusal::kBadKey: return {"475", chan + " :Cannot join channel (+k)"};
    case Refusal::kFull: return {"471", chan + " :Cannot join channel (+l)"};
    case Refusal::kBanned: return {"474", chan + " :Cannot join channel (+b)"};
    case Refusal::kModerated: return {"404", chan + " :Cannot send to channel (+m)"};
    case Refusal::kUnknownMode: return {"472", about + " :is unknown mode char to me"};
    case Refusal::kNeedsParameter: return {"461", std::string("MODE :Not enough parameters (+") + irc_mode_letter(mode) + ")"};
    case Refusal::kTooManyBans: return {"478", chan + " :Channel ban list is full"};
    case Refusal::kRoomLimit: return {"471", chan + " :Cannot join channel (channel is full)"};
    case Refusal::kServerRooms: return {"405", chan + " :Cannot join channel (the server has too many channels)"};
    case Refusal::kIdReused: return {"404", chan + " :Cannot send to channel (a message id used for another message)"};
    case Refusal::kNoSuchRoom: return {"403", chan + " :No such channel"};
    case Refusal::kNoExternal: return {"404", chan + " :Cannot send to channel"};
    case Refusal::kBadParameter:
      if (mode == RoomMode::kKey) return {"525", chan + " :Key is not well-formed"};
      return {"696", chan + " " + std::string(1, irc_mode_letter(mode)) + " " + echoed(about, 32) + " :Invalid mode parameter"};
    case Refusal::kNone: break;
  }
  return {"400", chan + " :" + describe(why)};
}
}  // namespace

std::string IrcCodec::refusal(Session& session, const PolicyAnswer::Refused& r, const std::string& room) const {
  // Nobody in the room by that name: 401 if nobody holds the name at all.
  if (r.why == Refusal::kNoSuchMember && !session.table().find_name(r.about)) {
    return numeric_line(session, "401", echoed(r.about, 32) + " :No such nick/channel");
  }
  auto [code, rest] = refusal_line(r.why, r.about, r.mode, channel(room));
  return numeric_line(session, code, rest);
}

reactor::SharedBytes IrcCodec::join_refused(Session& session, const std::string& room, Refusal why) {
  std::erase(pending_, room);
  return std::make_shared<const std::string>(refusal(session, {why, room}, room));
}

reactor::SharedBytes IrcCodec::publish_refused(Session& session, const std::string& room, Refusal why,
                                              const std::string&) {
  return std::make_shared<const std::string>(refusal(session, {why, room}, room));
}

void IrcCodec::removed(Session&, const std::string& room) { std::erase(pending_, room); }

void IrcCodec::part(Session& session, const irc::Message& m) {
  if (m.params.empty()) return numeric(session, "461", "PART :Not enough parameters");
  std::string reason = m.params.size() > 1 ? m.params[1].substr(0, 300) : std::string();
  std::string_view list = m.params[0];
  std::string room;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view chan = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (chan.empty()) continue;
    if (!room_of(chan, room)) {
      numeric(session, "403", echoed(chan, 65) + " :No such channel");
      continue;
    }
    if (session.leave(room, reason) != HubError::kNone) {
      numeric(session, "442", channel(room) + " :You're not on that channel");
      continue;
    }
    std::erase(pending_, room);
    send_line(session, self_source(session) + " PART " + channel(room) + (reason.empty() ? "" : " :" + reason) + "\r\n");
  }
}

void IrcCodec::message(Session& session, const irc::Message& m, bool notice) {
  const char* cmd = notice ? "NOTICE" : "PRIVMSG";
  if (m.params.empty() || m.params[0].empty()) {
    if (!notice) numeric(session, "411", std::string(":No recipient given (") + cmd + ")");
    return;
  }
  if (m.params.size() < 2 || m.params[1].empty()) {
    if (!notice) numeric(session, "412", ":No text to send");
    return;
  }
  const std::string& text = m.params[1];
  std::string_view list = m.params[0];
  std::string room;
  size_t targets = 0;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view target = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (target.empty()) continue;
    if (++targets > kMaxTargets) {
      if (!notice) numeric(session, "407", echoed(target, 65) + " :Too many targets");
      return;
    }
    if (target[0] == '#') {
      if (!room_of(target, room)) {
        if (!notice) numeric(session, "403", echoed(target, 65) + " :No such channel");
        continue;
      }
      // From outside the channel too: its owner sends it if the channel allows it (-n), else
      // refuses (404, or 403 if there is no such channel: IrcCodec::publish_refused).
      HubError e = session.publish(room, session.name(), text, {}, /*external=*/true, notice);
      if (e == HubError::kRateLimited) {
        if (!notice) numeric(session, "404", channel(room) + " :Cannot send to channel (too many messages)");
      } else if (e != HubError::kNone && !notice) {
        ++session.stats().errors_request;
        numeric(session, "404", channel(room) + " :Cannot send to channel");
      }
      continue;
    }
    send_direct(session, std::string(target), text, notice);
  }
}

void IrcCodec::send_direct(Session& session, std::string target, const std::string& text, bool notice) {
  DirectMessage dm{.from = session.name(), .front = "irc", .to = target, .text = text, .automatic = notice, .ts_ms = now_ms()};
  auto shard = session.hub().direct(std::move(dm), [alive = session.weak_from_this(), this, target, text, notice,
                                                   ts = now_ms()](const DirectResult& r) {
    auto self = alive.lock();
    if (!self || !self->open()) return;
    Session& s = *self;
    std::string out;
    switch (r.status) {
      case DirectResult::kNoSuchName:
        if (!notice) out = numeric_line(s, "401", echoed(target, 32) + " :No such nick/channel");
        break;
      case DirectResult::kNotTaken:
        if (!notice) {
          out = ":" + options_.server_name + " NOTICE " + s.name() + " :" + irc_display_nick(r.name) + " is a " +
                host_of(r.front) + " member: messages to one member reach IRC members only\r\n";
        }
        break;
      case DirectResult::kDelivered:
        if (caps_ & kEchoMessage) {
          out = message_lines(tags_, self_source(s), notice ? "NOTICE" : "PRIVMSG", irc_display_nick(r.name), text, ts,
                              {}, 0);
        }
        if (!notice && !r.away.empty()) out += numeric_line(s, "301", irc_display_nick(r.name) + " :" + r.away);
        break;
    }
    if (!out.empty()) s.send_answer(std::make_shared<const std::string>(std::move(out)));
  });
  if (shard) session.awaiting_shard(*shard);
}

DirectResult IrcCodec::direct(Session& session, const DirectMessage& m) {
  std::string target = session.name();
  if (m.bulletin) {
    if (registered_ && (oper() || (caps_ & kWallops))) {
      std::string lines;
      std::string scratch;
      std::string source = source_of(m.from, m.front);
      for (std::string_view piece : pieces(m.text, kMaxLine - 2 - source.size() - 10, scratch)) {
        lines += source + " WALLOPS :" + std::string(piece) + "\r\n";
      }
      session.push(std::make_shared<const std::string>(std::move(lines)));
    }
    return {DirectResult::kDelivered, {}, {}, {}};
  }
  if (m.invite) {
    session.push(std::make_shared<const std::string>(tag_prefix(tags_, m.ts_ms, {}, 0, 0) + source_of(m.from, m.front) +
                                                     " INVITE " + target + " " + channel(m.text) + "\r\n"));
    return {DirectResult::kDelivered, {}, {}, away()};
  }
  session.push(std::make_shared<const std::string>(message_lines(
      tags_, source_of(m.from, m.front), m.automatic ? "NOTICE" : "PRIVMSG", target, m.text, m.ts_ms, {}, 0)));
  return {DirectResult::kDelivered, {}, {}, away()};
}

void IrcCodec::whois(Session& session, const irc::Message& m) {
  if (m.params.empty()) return numeric(session, "431", ":No nickname given");
  std::string target = m.params.back();  // WHOIS [server] nick
  auto shard = session.hub().whois(target, [alive = session.weak_from_this(), this, target](const std::optional<MemberInfo>& info) {
    auto self = alive.lock();
    if (!self || !self->open()) return;
    Session& s = *self;
    std::string out;
    std::string nick = irc_display_nick(info ? info->name : target.substr(0, 32));
    if (!info) {
      out = numeric_line(s, "401", nick + " :No such nick/channel");
    } else {
      Shown who = shown(s.table(), info->name);
      out = numeric_line(s, "311", nick + " " + who.user + " " + host_of(info->front) + " * :" + who.realname);
      std::string rest = numeric_line(s, "312", nick + " " + options_.server_name + " :" + host_of(info->front) + " front end");
      if (who.oper) rest += numeric_line(s, "313", nick + " :is an IRC operator");
      if (!info->away.empty()) rest += numeric_line(s, "301", nick + " :" + info->away);
      rest += numeric_line(s, "318", nick + " :End of /WHOIS list.");
      // The channels with the member's prefix in each (@#chan), from their owners.
      std::vector<std::string> rooms = info->rooms;
      s.hub().member_modes(info->name, rooms, [alive, this, nick, rooms, out, rest](std::vector<MemberModes> modes) mutable {
        auto self = alive.lock();
        if (!self || !self->open()) return;
        std::string chans;
        for (size_t i = 0; i < rooms.size(); ++i) {
          std::string c = irc_prefix(modes[i], caps_ & kMultiPrefix) + channel(rooms[i]);
          if (!chans.empty() && numeric_line(*self, "319", nick + " :" + chans + " " + c).size() > kMaxLine) {
            out += numeric_line(*self, "319", nick + " :" + chans);
            chans.clear();
          }
          chans += (chans.empty() ? "" : " ") + c;
        }
        if (!chans.empty()) out += numeric_line(*self, "319", nick + " :" + chans);
        self->send_answer(std::make_shared<const std::string>(out + rest));
      });
      s.awaiting_all();
      return;
    }
    out += numeric_line(s, "318", nick + " :End of /WHOIS list.");
    s.send_answer(std::make_shared<const std::string>(std::move(out)));
  });
  if (shard) session.awaiting_shard(*shard);
}

void IrcCodec::away(Session& session, const irc::Message& m) {
  if (m.params.empty() || m.params[0].empty()) {
    if (rare_) rare_->away.clear();
    trim_rare();
    publish_flags(session);
    return numeric(session, "305", ":You are no longer marked as being away");
  }
  rare().away = utf8_prefix(m.params[0], kAwayLength);
  publish_flags(session);
  numeric(session, "306", ":You have been marked as being away");
}

void IrcCodec::user_mode(Session& session, const irc::Message& m) {
  if (ShardTable::fold_name(m.params[0]) != ShardTable::fold_name(session.name())) {
    return numeric(session, "502", ":Can't change mode for other users");
  }
  auto modes = [this] { return std::string("+") + (oper() ? "o" : "") + ((caps_ & kWallops) ? "w" : ""); };
  if (m.params.size() < 2) return numeric(session, "221", modes());
  // +o only through OPER; -o gives it up; +w/-w: WALLOPS or not. Others: 501.
  bool add = true;
  std::string changed;
  char sign = 0;
  for (char c : m.params[1]) {
    if (c == '+' || c == '-') {
      add = c == '+';
      continue;
    }
    if (c == 'o' && !add && oper()) {
      caps_ = static_cast<uint16_t>(caps_ & ~kOper);
    } else if (c == 'w' && add != ((caps_ & kWallops) != 0)) {
      caps_ = add ? static_cast<uint16_t>(caps_ | kWallops) : static_cast<uint16_t>(caps_ & ~kWallops);
    } else if (c == 'o' || c == 'w' || c == 'i') {
      continue;  // nothing to change (+o: OPER gives it; +i: every member is invisible enough)
    } else {
      numeric(session, "501", ":Unknown MODE flag");
      continue;
    }
    if (sign != (add ? '+' : '-')) changed += (sign = add ? '+' : '-');
    changed += c;
  }
  if (changed.empty()) return;
  publish_flags(session);
  send_line(session, self_source(session) + " MODE " + session.name() + " :" + changed + "\r\n");
}

void IrcCodec::oper(Session& session, const irc::Message& m) {
  if (m.params.size() < 2) return numeric(session, "461", "OPER :Not enough parameters");
  if (options_.operators.empty()) return numeric(session, "491", ":No O-lines for your host");
  const IrcOperator* found = nullptr;
  for (const IrcOperator& o : options_.operators) {
    if (o.name == m.params[0]) found = &o;
  }
  // The hash is checked even for a name that is not an operator's: the answer takes as long.
  const std::string& hash = found ? found->hash : options_.operators.front().hash;
  bool ok = irc_password_matches(m.params[1], hash) && found != nullptr;
  if (!ok) {
    ++session.stats().errors_request;
    numeric(session, "464", ":Password incorrect");
    if (++rare().oper_failures >= kMaxOperFailures) close_with_error(session, "Too many failed OPER attempts", reactor::CloseCode::kProtocol);
    return;
  }
  if (rare_) rare_->oper_failures = 0;
  trim_rare();
  bool was = oper();
  caps_ = static_cast<uint16_t>(caps_ | kOper);
  publish_flags(session);
  numeric(session, "381", ":You are now an IRC operator");
  if (!was) send_line(session, self_source(session) + " MODE " + session.name() + " :+o\r\n");
}

void IrcCodec::kill(Session& session, const irc::Message& m) {
  if (m.params.size() < 2) return numeric(session, "461", "KILL :Not enough parameters");
  if (!oper()) return numeric(session, "481", ":Permission Denied- You're not an IRC operator");
  std::string target = m.params[0];
  DirectMessage dm{.from = session.name(), .front = "irc", .to = target, .text = m.params[1].substr(0, 300), .automatic = false,
                   .invite = false, .ts_ms = now_ms(), .kill = true, .bulletin = false};
  auto shard = session.hub().direct(std::move(dm), [alive = session.weak_from_this(), this, target](const DirectResult& r) {
    auto self = alive.lock();
    if (!self || !self->open() || r.status != DirectResult::kNoSuchName) return;
    self->send_answer(std::make_shared<const std::string>(numeric_line(*self, "401", echoed(target, 32) + " :No such nick/channel")));
  });
  if (shard) session.awaiting_shard(*shard);
}

void IrcCodec::wallops(Session& session, const irc::Message& m) {
  if (m.params.empty() || m.params[0].empty()) return numeric(session, "461", "WALLOPS :Not enough parameters");
  if (!oper()) return numeric(session, "481", ":Permission Denied- You're not an IRC operator");
  DirectMessage dm{.from = session.name(), .front = "irc", .to = {}, .text = m.params[0], .automatic = false, .invite = false,
                   .ts_ms = now_ms(), .kill = false, .bulletin = true};
  session.hub().everyone(dm);
}

reactor::SharedBytes IrcCodec::killed(Session& session, const std::string& by, const std::string& reason) {
  rare().quit_reason = "Killed (" + by + " (" + reason + "))";
  pending_.clear();
  return std::make_shared<const std::string>(
      within_limit("ERROR :Closing Link: " + target(session) + " (" + rare().quit_reason + ")\r\n"));
}

void IrcCodec::publish_flags(Session& session) {
  session.table().set_name_flags(session.name(), session.id(), !away().empty(), oper());
}

void IrcCodec::whowas(Session& session, const irc::Message& m) {
  if (m.params.empty() || m.params[0].empty()) return numeric(session, "431", ":No nickname given");
  std::string nick = echoed(m.params[0], 32);
  // A count of zero, a negative one or none: every entry kept.
  size_t max = ShardTable::kWhowas;
  if (m.params.size() > 1) {
    long count = std::strtol(m.params[1].c_str(), nullptr, 10);
    if (count > 0) max = std::min<size_t>(static_cast<size_t>(count), ShardTable::kWhowas);
  }
  std::string out;
  std::vector<ShardTable::PastName> past = session.table().past_names(m.params[0], max);
  for (const ShardTable::PastName& p : past) {
    std::string n = irc_display_nick(p.name);
    std::string user = p.user.empty() ? n : p.user;
    std::string realname = p.realname.empty() ? n : p.realname;
    out += numeric_line(session, "314", n + " " + user + " " + host_of(p.front) + " * :" + realname);
    time_t secs = static_cast<time_t>(p.gone_ms / 1000);
    struct tm t;
    gmtime_r(&secs, &t);
    char when[64];
    std::strftime(when, sizeof when, "%a %b %d %H:%M:%S %Y UTC", &t);
    out += numeric_line(session, "312", n + " " + options_.server_name + " :" + when);
  }
  if (past.empty()) out += numeric_line(session, "406", nick + " :There was no such nickname");
  out += numeric_line(session, "369", nick + " :End of WHOWAS");
  send_line(session, std::move(out));
}

void IrcCodec::ison(Session& session, const irc::Message& m) {
  if (m.params.empty()) return numeric(session, "461", "ISON :Not enough parameters");
  std::string online;
  for (const std::string& p : m.params) {
    size_t pos = 0;
    while (pos < p.size()) {  // "ISON a b" or "ISON :a b"
      size_t end = p.find(' ', pos);
      std::string nick = p.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      pos = end == std::string::npos ? p.size() : end + 1;
      if (nick.empty() || !valid_irc_nick(nick)) continue;
      if (auto h = session.table().find_name(nick)) online += (online.empty() ? "" : " ") + nick;
    }
  }
  numeric(session, "303", ":" + online);
}

void IrcCodec::userhost(Session& session, const irc::Message& m) {
  if (m.params.empty()) return numeric(session, "461", "USERHOST :Not enough parameters");
  std::string reply;
  for (size_t i = 0; i < m.params.size() && i < 5; ++i) {
    const std::string& nick = m.params[i];
    if (!valid_irc_nick(nick)) continue;
    if (auto h = session.table().find_name(nick)) {
      std::string user = h->user.empty() ? nick : h->user;
      reply += (reply.empty() ? "" : " ") + nick + (h->oper ? "*" : "") + "=" + (h->away ? "-" : "+") + user + "@" +
               host_of(h->front);
    }
  }
  numeric(session, "302", ":" + reply);
}

std::string IrcCodec::names_entry(Session& session, const MemberModes& modes, const std::string& name) const {
  std::string entry = irc_prefix(modes, caps_ & kMultiPrefix) + irc_display_nick(name);
  if (caps_ & kUserhostInNames) {
    Shown who = shown(session.table(), name);
    entry += "!" + who.user + "@" + host_of(who.front);
  }
  return entry;
}

void IrcCodec::names_reply(Session& session, const std::string& room, const std::vector<std::string>& names,
                           bool listed, size_t count, std::string& out) const {
  std::string head = "= " + channel(room) + " :";
  std::string line;
  auto flush = [&] {
    if (!line.empty()) out += numeric_line(session, "353", head + line);
    line.clear();
  };
  size_t room_for_names = kMaxLine - 2 - numeric_line(session, "353", head).size();
  for (const std::string& nick : names) {
    if (!line.empty() && line.size() + 1 + nick.size() > room_for_names) flush();
    if (!line.empty()) line += ' ';
    line += nick;
  }
  flush();
  out += numeric_line(session, "366", channel(room) + " :End of /NAMES list.");
  if (!listed) {
    out += ":" + options_.server_name + " NOTICE " + session.name() + " :" + channel(room) + " has " +
           std::to_string(count) + " members: too many to list or to follow their comings and goings\r\n";
  }
}

void IrcCodec::names(Session& session, const irc::Message& m) {
  std::string room;
  if (m.params.empty() || !room_of(m.params[0], room)) {
    std::string chan = m.params.empty() ? "*" : echoed(m.params[0], 65);
    return numeric(session, "366", chan + " :End of /NAMES list.");
  }
  session.hub().inspect(room, [alive = session.weak_from_this(), room, this](const RoomSnapshot& snap) {
    auto self = alive.lock();
    if (!self) return;
    std::vector<std::string> names;
    for (const RoomMemberInfo& mi : snap.members) names.push_back(names_entry(*self, mi.modes, mi.name));
    std::string out;
    names_reply(*self, room, names, snap.listed || snap.count == 0, snap.count, out);
    self->send_answer(std::make_shared<const std::string>(std::move(out)));
  });
  session.awaiting(room);
}

std::string IrcCodec::who_line(Session& session, const std::string& chan, const std::string& name,
                               const std::string& front, const std::string& prefixes) const {
  Shown who = shown(session.table(), name);
  return numeric_line(session, "352", chan + " " + who.user + " " + host_of(front) + " " + options_.server_name + " " +
                                          irc_display_nick(name) + (who.away ? " G" : " H") + (who.oper ? "*" : "") +
                                          prefixes + " :0 " + who.realname);
}

void IrcCodec::who(Session& session, const irc::Message& m) {
  std::string mask = m.params.empty() ? "*" : m.params[0];
  std::string room;
  if (!room_of(mask, room) && mask.find_first_of("*?") != std::string::npos) {
    // WHO mask: the members whose nicks match it, from every reactor.
    session.hub().find_members(mask, kMaxWho, [alive = session.weak_from_this(), mask, this](std::vector<MemberInfo> found) {
      auto self = alive.lock();
      if (!self || !self->open()) return;
      std::sort(found.begin(), found.end(), [](const MemberInfo& a, const MemberInfo& b) { return a.name < b.name; });
      std::string out;
      for (const MemberInfo& info : found) out += who_line(*self, "*", info.name, info.front, "");
      out += numeric_line(*self, "315", echoed(mask, 65) + " :End of /WHO list.");
      self->send_answer(std::make_shared<const std::string>(std::move(out)));
    });
    session.awaiting_all();
    return;
  }
  if (!room_of(mask, room)) {
    // WHO nick: that member, if a name.
    auto shard = session.hub().whois(mask, [alive = session.weak_from_this(), this, mask](const std::optional<MemberInfo>& info) {
      auto self = alive.lock();
      if (!self || !self->open()) return;
      std::string out;
      if (info) out = who_line(*self, "*", info->name, info->front, "");
      out += numeric_line(*self, "315", irc_display_nick(info ? info->name : mask.substr(0, 65)) + " :End of /WHO list.");
      self->send_answer(std::make_shared<const std::string>(std::move(out)));
    });
    if (shard) session.awaiting_shard(*shard);
    return;
  }
  session.hub().inspect(room, [alive = session.weak_from_this(), room, this](const RoomSnapshot& snap) {
    auto self = alive.lock();
    if (!self) return;
    std::string out;
    for (const RoomMemberInfo& mi : snap.members) out += who_line(*self, channel(room), mi.name, mi.front, irc_prefix(mi.modes, caps_ & kMultiPrefix));
    out += numeric_line(*self, "315", channel(room) + " :End of /WHO list.");
    self->send_answer(std::make_shared<const std::string>(std::move(out)));
  });
  session.awaiting(room);
}

void IrcCodec::list(Session& session, const irc::Message& m) {
  std::vector<std::string> only;
  if (!m.params.empty()) {
    std::string_view l = m.params[0];
    std::string room;
    while (!l.empty()) {
      size_t comma = l.find(',');
      if (room_of(l.substr(0, comma), room)) only.push_back(room);
      l = comma == std::string_view::npos ? std::string_view() : l.substr(comma + 1);
    }
  }
  session.hub().list_rooms(kMaxListed, [alive = session.weak_from_this(), only, this](std::vector<RoomCount> rooms) {
    auto self = alive.lock();
    if (!self) return;
    // A secret channel (+s) is listed to its members only.
    std::erase_if(rooms, [&](const RoomCount& r) { return r.secret && !self->in_room(r.room); });
    std::sort(rooms.begin(), rooms.end(), [](const RoomCount& a, const RoomCount& b) { return a.room < b.room; });
    std::string out = numeric_line(*self, "321", "Channel :Users  Name");
    for (const RoomCount& r : rooms) {
      if (!only.empty() && std::find(only.begin(), only.end(), r.room) == only.end()) continue;
      out += numeric_line(*self, "322", channel(r.room) + " " + std::to_string(r.count) + " :");
    }
    out += numeric_line(*self, "323", ":End of /LIST");
    self->send_answer(std::make_shared<const std::string>(std::move(out)));
  });
  session.awaiting_all();
}

void IrcCodec::mode(Session& session, const irc::Message& m) {
  if (m.params.empty()) return numeric(session, "461", "MODE :Not enough parameters");
  const std::string& target = m.params[0];
  std::string room;
  if (target[0] != '#') return user_mode(session, m);
  if (!room_of(target, room)) return numeric(session, "403", echoed(target, 65) + " :No such channel");
  bool ban_list = m.params.size() == 2 && (m.params[1] == "b" || m.params[1] == "+b");
  if (m.params.size() == 1 || ban_list) {  // a query: what the owner has now
    session.hub().inspect(room, [alive = session.weak_from_this(), room, ban_list, this](const RoomSnapshot& snap) {
      auto self = alive.lock();
      if (!self || !self->open()) return;
      std::string out;
      if (ban_list) {
        for (const BanMask& ban : snap.policy.bans) {
          out += numeric_line(*self, "367", channel(room) + " " + irc_ban_mask(ban));
        }
        out += numeric_line(*self, "368", channel(room) + " :End of channel ban list");
      } else {
        // The key is shown to members only.
        std::string modes = irc_channel_modes(snap.policy, self->in_room(room));
        out = numeric_line(*self, "324", channel(room) + " " + modes);
        if (snap.count == 0) {
          out = numeric_line(*self, "403", channel(room) + " :No such channel");
        } else {
          out += numeric_line(*self, "329", channel(room) + " " + std::to_string(snap.created_ms / 1000));
        }
      }
      self->send_answer(std::make_shared<const std::string>(std::move(out)));
    });
    session.awaiting(room);
    return;
  }
  // Changes: "+o-v+k bob kim secret".
  IrcModeParse parsed = irc_parse_mode_changes(m.params, channel(room), kMaxModes);
  for (const auto& [code, rest] : parsed.errors) numeric(session, code, rest);
  PolicyRequest req;
  req.kind = PolicyRequest::kModes;
  req.modes = std::move(parsed.changes);
  if (req.modes.empty()) return;
  session.hub().policy(room, &session, std::move(req), [alive = session.weak_from_this(), room, this](const PolicyAnswer& a) {
    auto self = alive.lock();
    if (!self || !self->open()) return;
    std::string out;
    for (const PolicyAnswer::Refused& r : a.refusals) out += refusal(*self, r, room);
    if (!out.empty()) self->send_answer(std::make_shared<const std::string>(std::move(out)));
  });
  session.awaiting(room);
}

void IrcCodec::topic(Session& session, const irc::Message& m) {
  if (m.params.empty()) return numeric(session, "461", "TOPIC :Not enough parameters");
  std::string room;
  if (!room_of(m.params[0], room)) {
    return numeric(session, "403", echoed(m.params[0], 65) + " :No such channel");
  }
  if (!session.in_room(room)) {
    // 403 if the channel does not exist, 442 if it does.
    session.hub().inspect(room, [alive = session.weak_from_this(), room, this](const RoomSnapshot& snap) {
      auto self = alive.lock();
      if (!self || !self->open()) return;
      self->send_answer(std::make_shared<const std::string>(
          snap.count == 0 ? numeric_line(*self, "403", channel(room) + " :No such channel")
                          : numeric_line(*self, "442", channel(room) + " :You're not on that channel")));
    });
    session.awaiting(room);
    return;
  }
  if (m.params.size() == 1) {
    session.hub().inspect(room, [alive = session.weak_from_this(), room, this](const RoomSnapshot& snap) {
      auto self = alive.lock();
      if (!self || !self->open()) return;
      std::string out;
      if (snap.topic.empty()) {
        out = numeric_line(*self, "331", channel(room) + " :No topic is set");
      } else {
        topic_reply(*self, room, snap.topic, snap.topic_by, snap.topic_at, out);
      }
      self->send_answer(std::make_shared<const std::string>(std::move(out)));
    });
    session.awaiting(room);
    return;
  }
  PolicyRequest req;
  req.kind = PolicyRequest::kTopic;
  req.text = m.params[1].substr(0, kTopicLength);
  ask_owner(session, room, std::move(req));
}

void IrcCodec::ask_owner(Session& session, const std::string& room, PolicyRequest req) {
  session.hub().policy(room, &session, std::move(req), [alive = session.weak_from_this(), room, this](const PolicyAnswer& a) {
    auto self = alive.lock();
    if (!self || !self->open() || a.refusals.empty()) return;
    std::string out;
    for (const PolicyAnswer::Refused& r : a.refusals) out += refusal(*self, r, room);
    self->send_answer(std::make_shared<const std::string>(std::move(out)));
  });
  session.awaiting(room);
}

void IrcCodec::kick(Session& session, const irc::Message& m) {
  if (m.params.size() < 2) return numeric(session, "461", "KICK :Not enough parameters");
  std::string room;
  if (!room_of(m.params[0], room)) {
    return numeric(session, "403", echoed(m.params[0], 65) + " :No such channel");
  }
  std::string reason = m.params.size() > 2 ? m.params[2].substr(0, 300) : std::string();
  std::string_view targets = m.params[1];
  size_t n = 0;
  while (!targets.empty() && n++ < kMaxTargets) {
    size_t comma = targets.find(',');
    std::string target(targets.substr(0, comma));
    targets = comma == std::string_view::npos ? std::string_view() : targets.substr(comma + 1);
    if (target.empty()) continue;
    PolicyRequest req;
    req.kind = PolicyRequest::kKick;
    req.target = target;
    req.text = reason;
    ask_owner(session, room, std::move(req));
  }
}

void IrcCodec::invite(Session& session, const irc::Message& m) {
  if (m.params.size() < 2) return numeric(session, "461", "INVITE :Not enough parameters");
  std::string target = m.params[0];
  std::string room;
  if (!room_of(m.params[1], room)) {
    return numeric(session, "403", echoed(m.params[1], 65) + " :No such channel");
  }
  if (!session.table().find_name(target)) return numeric(session, "401", echoed(target, 32) + " :No such nick/channel");
  PolicyRequest req;
  req.kind = PolicyRequest::kInvite;
  req.target = target;
  session.hub().policy(room, &session, std::move(req), [alive = session.weak_from_this(), room, target, this](const PolicyAnswer& a) {
    auto self = alive.lock();
    if (!self || !self->open()) return;
    std::string out;
    for (const PolicyAnswer::Refused& r : a.refusals) out += refusal(*self, r, room);
    if (!out.empty()) return self->send_answer(std::make_shared<const std::string>(std::move(out)));
    self->send_answer(std::make_shared<const std::string>(numeric_line(*self, "341", irc_display_nick(target) + " " + channel(room))));
    // The invitation itself, to the member invited (if it is on IRC).
    DirectMessage dm{.from = self->name(), .front = "irc", .to = target, .text = room, .automatic = false, .invite = true,
                     .ts_ms = now_ms()};
    self->hub().direct(std::move(dm), [](const DirectResult&) {});
  });
  session.awaiting(room);
}

// ---- History ------------------------------------------------------------------------------------

void IrcCodec::fail(Session& session, std::string_view command, std::string_view code, std::string_view context,
                    std::string_view text) {
  std::string line = ":" + options_.server_name + " FAIL ";
  line += command;
  line += ' ';
  line += code;
  if (!context.empty()) {
    line += ' ';
    line += context;
  }
  line += " :";
  line += text;
  line += "\r\n";
  send_line(session, std::move(line));
}

namespace {
// The number a msgid reference names in `room` ("msgid=ROOM~SEQ" or "msgid=ROOM~SEQ~K"), or 0.
uint64_t msgid_seq(std::string_view ref, std::string_view room) {
  if (ref.substr(0, 6) != "msgid=") return 0;
  ref.remove_prefix(6);
  size_t tilde = ref.find('~');
  if (tilde == std::string_view::npos || ref.substr(0, tilde) != room) return 0;
  ref.remove_prefix(tilde + 1);
  uint64_t seq = 0;
  for (char c : ref.substr(0, ref.find('~'))) {
    if (c < '0' || c > '9' || seq > (uint64_t{1} << 60)) return 0;
    seq = seq * 10 + static_cast<uint64_t>(c - '0');
  }
  return seq;
}
}  // namespace

void IrcCodec::chathistory(Session& session, const irc::Message& m) {
  if (m.params.size() < 4) return fail(session, "CHATHISTORY", "NEED_MORE_PARAMS", "", "Missing parameters");
  std::string sub = m.params[0];
  for (char& ch : sub) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  bool between = sub == "BETWEEN";
  if (sub != "LATEST" && sub != "BEFORE" && sub != "AFTER" && sub != "AROUND" && !between) {
    return fail(session, "CHATHISTORY", "INVALID_PARAMS", echoed(sub, 16), "Unknown subcommand");
  }
  if (between && m.params.size() < 5) return fail(session, "CHATHISTORY", "NEED_MORE_PARAMS", sub, "Missing parameters");
  const std::string& target = m.params[1];
  std::string room;
  if (!room_of(target, room) || !session.in_room(room)) {
    return fail(session, "CHATHISTORY", "INVALID_TARGET", sub + " " + echoed(target, 65),
                "Not a channel you are on");
  }
  size_t limit = 0;
  for (char c : m.params[between ? 4 : 3]) limit = (c >= '0' && c <= '9' && limit < 100000) ? limit * 10 + (c - '0') : 100001;
  if (limit == 0 || limit > 100000) return fail(session, "CHATHISTORY", "INVALID_PARAMS", sub, "Bad limit");
  limit = std::min(limit, kMaxHistory);
  const std::string& ref = m.params[2];
  uint64_t seq = msgid_seq(ref, room);
  // History costs by what it returns (--history-rate): past the budget, refused for now.
  auto ask = [&](uint64_t after, uint64_t before, size_t n, bool newest) {
    if (!session.history(room, after, before, n, newest)) {
      fail(session, "CHATHISTORY", "MESSAGE_ERROR", sub + " " + channel(room),
           "Too much history asked for in a short time (--history-rate): try again later");
    }
  };
  if (sub == "LATEST" && ref == "*") return ask(0, 0, limit, /*newest=*/true);
  if (seq == 0) {
    return fail(session, "CHATHISTORY", "INVALID_PARAMS", sub + " " + echoed(ref, 80),
                "Only msgid references of this channel (MSGREFTYPES=msgid), or * with LATEST");
  }
  if (sub == "LATEST") return ask(seq, 0, limit, true);
  if (sub == "BEFORE") return ask(0, seq, limit, true);
  if (sub == "AFTER") return ask(seq, 0, limit, false);
  if (sub == "AROUND") return ask(seq > limit / 2 + 1 ? seq - limit / 2 - 1 : 0, 0, limit, false);
  uint64_t other = msgid_seq(m.params[3], room);
  if (other == 0) return fail(session, "CHATHISTORY", "INVALID_PARAMS", sub, "Only msgid references of this channel");
  // BETWEEN: from the first reference towards the second.
  if (seq < other) return ask(seq, other, limit, false);
  ask(other, seq, limit, true);
}

reactor::SharedBytes IrcCodec::replay(Session&, const std::string& room, const std::vector<StoredMessage>& messages) {
  // A notice that what follows is history (each line with its own time: server-time), then the
  // messages in a chathistory batch where batch is negotiated.
  std::string out = ":" + options_.server_name + " NOTICE " + channel(room) + " :Playback: the last " +
                    std::to_string(messages.size()) + (messages.size() == 1 ? " message" : " messages") +
                    " said here before you joined (history, not live)\r\n";
  std::string id;
  if (caps_ & kBatch) {
    id = std::to_string(++batches_);
    out += ":" + options_.server_name + " BATCH +" + id + " chathistory " + channel(room) + "\r\n";
  }
  for (const StoredMessage& msg : messages) {
    out += message_lines(tags_, source_of(msg.user, msg.front), msg.automatic ? "NOTICE" : "PRIVMSG", channel(room),
                         msg.text, msg.ts_ms, room, msg.seq, id);
  }
  if (!id.empty()) out += ":" + options_.server_name + " BATCH -" + id + "\r\n";
  return std::make_shared<const std::string>(std::move(out));
}

reactor::SharedBytes IrcCodec::history(const std::string& room, const std::string&, const ReadResult& result) {
  std::string out;
  if (!result.ok) {
    out = ":" + options_.server_name + " FAIL CHATHISTORY MESSAGE_ERROR " + channel(room) + " :History could not be read\r\n";
    return std::make_shared<const std::string>(std::move(out));
  }
  std::string id;
  if (caps_ & kBatch) {
    id = std::to_string(++batches_);
    out = ":" + options_.server_name + " BATCH +" + id + " chathistory " + channel(room) + "\r\n";
  }
  for (const StoredMessage& msg : result.messages) {
    out += message_lines(tags_, source_of(msg.user, msg.front), msg.automatic ? "NOTICE" : "PRIVMSG", channel(room),
                         msg.text, msg.ts_ms, room, msg.seq, id);
  }
  if (!id.empty()) out += ":" + options_.server_name + " BATCH -" + id + "\r\n";
  if (out.empty()) return nullptr;
  return std::make_shared<const std::string>(std::move(out));
}

// ---- Hooks --------------------------------------------------------------------------------------

bool IrcCodec::accept(Session& session, const RoomEvent& e) {
  if (!pending_.empty() && pending(e.room)) return false;  // sent before this member was counted
  switch (e.kind) {
    case EventKind::kMessage:
      // The member's own message comes back only to clients that asked (echo-message).
      return (caps_ & kEchoMessage) || e.front != "irc" || e.user != session.name();
    case EventKind::kJoin:
    case EventKind::kTopic:
    case EventKind::kMode:
    case EventKind::kKick: return true;
    case EventKind::kLeave:
    case EventKind::kRename: {
      if (e.kind == EventKind::kLeave && !e.quit) return true;
      // One QUIT or NICK line per member, however many rooms it shares with this one.
      uint64_t key = e.member * 2 + (e.kind == EventKind::kRename ? 1 : 0);
      if (e.kind == EventKind::kRename) key ^= std::hash<std::string>{}(e.text) << 1;
      if (std::find(recent_.begin(), recent_.end(), key) != recent_.end()) return false;
      recent_[recent_next_++ % recent_.size()] = key;
      return true;
    }
  }
  return true;
}

bool IrcCodec::hold_input(Session& session, size_t buffered) {
  if (options_.flood_rate <= 0) return false;
  auto now = reactor::Clock::now();
  double elapsed = std::chrono::duration<double>(now - filled_).count();
  filled_ = now;
  tokens_ = static_cast<float>(std::min(options_.flood_burst, tokens_ + elapsed * options_.flood_rate));
  if (tokens_ >= 1) {
    tokens_ -= 1;
    return false;
  }
  // Over the rate: the lines wait (read no faster than the rate), unless too many pile up.
  if (buffered > options_.flood_backlog) {
    ++session.stats().irc_flood_closes;
    close_with_error(session, "Excess Flood", reactor::CloseCode::kProtocol);
    return true;
  }
  if (now >= retry_at_) {
    auto wait = std::chrono::duration_cast<reactor::Clock::duration>(
        std::chrono::duration<double>((1 - tokens_) / options_.flood_rate));
    retry_at_ = now + wait;
    session.redeliver_after(wait);
  }
  return true;
}

void IrcCodec::tick(Session& session, reactor::Clock::time_point now) {
  if (!session.open()) return;
  if (!registered_) {
    if (now - since_ > options_.registration_timeout) {
      ++session.stats().irc_timeouts;
      close_with_error(session, "Registration timed out", reactor::CloseCode::kProtocol);
    }
    return;
  }
  if (ping_sent_ != reactor::Clock::time_point{}) {
    if (now - ping_sent_ > options_.ping_timeout) {
      ++session.stats().irc_timeouts;
      auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - since_).count();
      close_with_error(session, "Ping timeout: " + std::to_string(secs) + " seconds", reactor::CloseCode::kProtocol);
    }
  } else if (now - since_ > options_.ping_interval) {
    ping_sent_ = now;
    send_line(session, "PING :" + options_.server_name + "\r\n");
  }
}

}  // namespace chat
