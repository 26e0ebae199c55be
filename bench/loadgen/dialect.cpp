#include "loadgen/dialect.h"

#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>

namespace loadgen {

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kEcho: return "echo";
    case Mode::kChat: return "chat";
    case Mode::kRecover: return "recover";
  }
  return "?";
}

const char* dialect_name(Dialect d) {
  switch (d) {
    case Dialect::kNative: return "native";
    case Dialect::kArticle: return "article";
    case Dialect::kRedis: return "redis";
    case Dialect::kNats: return "nats";
    case Dialect::kWs: return "ws";
    case Dialect::kIrc: return "irc";
  }
  return "?";
}

namespace {

void append_bulk(std::string& out, std::string_view s) {
  out += '$';
  out += std::to_string(s.size());
  out += "\r\n";
  out += s;
  out += "\r\n";
}

// Position of "\r\n" at or after `from`, or npos.
size_t find_crlf(std::string_view in, size_t from) {
  while (from < in.size()) {
    const void* p = std::memchr(in.data() + from, '\r', in.size() - from);
    if (p == nullptr) return std::string_view::npos;
    size_t at = static_cast<size_t>(static_cast<const char*>(p) - in.data());
    if (at + 1 >= in.size()) return std::string_view::npos;  // '\r' last: wait for '\n'
    if (in[at + 1] == '\n') return at;
    from = at + 1;
  }
  return std::string_view::npos;
}

bool parse_int(std::string_view s, int64_t& v) {
  if (s.empty() || s.size() > 18) return false;
  bool neg = s[0] == '-';
  size_t i = neg ? 1 : 0;
  if (i == s.size()) return false;
  v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  if (neg) v = -v;
  return true;
}

constexpr std::string_view kMessagePrefix = "{\"type\":\"message\"";
constexpr std::string_view kTextKey = "\"text\":\"";
constexpr std::string_view kAckPrefix = "{\"type\":\"ack\"";
constexpr std::string_view kIdKey = "\"id\":\"";

// The value of "id" in a line of ours (ids need no escaping), or empty.
std::string_view id_in(std::string_view line) {
  size_t k = line.find(kIdKey);
  if (k == std::string_view::npos) return {};
  size_t start = k + kIdKey.size();
  size_t close = line.find('"', start);
  return close == std::string_view::npos ? std::string_view{} : line.substr(start, close - start);
}

// IRC's CASEMAPPING=ascii comparison (a server that maps rfc1459 also equates []\~ with {}|^,
// which our room names never hold).
bool equal_ascii_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

// The next space-separated word of `s` from `pos` (pos moves past it and the spaces after it).
std::string_view next_word(std::string_view s, size_t& pos) {
  size_t end = s.find(' ', pos);
  if (end == std::string_view::npos) end = s.size();
  std::string_view w = s.substr(pos, end - pos);
  pos = end;
  while (pos < s.size() && s[pos] == ' ') ++pos;
  return w;
}

// irc: a server line without its end is still arriving; past this it never ends (the longest a
// server may send is 512 bytes plus 8,191 of tags).
constexpr size_t kIrcLineMax = 16 * 1024;

}  // namespace

Codec::Codec(const Config& cfg) : cfg_(cfg) {
  if (cfg_.dialect == Dialect::kIrc) channel_ = cfg_.room.front() == '#' ? cfg_.room : "#" + cfg_.room;
}

std::string Codec::greeting(bool publisher, const std::string& user) {
  switch (cfg_.dialect) {
    case Dialect::kNative: {
      // Both in one write: the server handles the hello, turns native, then frames the join as a line.
      nlohmann::json hello = {{"type", "hello"}, {"user", user}};
      nlohmann::json join = {{"type", "join"}, {"room", cfg_.room}};
      return hello.dump() + "\n" + join.dump() + "\n";
    }
    case Dialect::kArticle: return {};
    case Dialect::kRedis: {
      if (publisher) return {};
      std::string out = "*2\r\n";
      append_bulk(out, "SUBSCRIBE");
      append_bulk(out, cfg_.room);
      return out;
    }
    case Dialect::kNats: return {};
    case Dialect::kIrc:
      // No CAP LS: the server then registers at once and sends no echo of our own messages. The JOIN
      // waits for 001 (after_info): a server may drop commands sent before registration completes.
      return "NICK " + user + "\r\nUSER " + user + " 0 * :" + user + "\r\n";
    case Dialect::kWs: {
      // Two frames, one object each; sent only after the 101, as a browser's socket can.
      std::string out;
      ws::append_text(out, nlohmann::json({{"type", "hello"}, {"user", user}}).dump(), masker_);
      ws::append_text(out, nlohmann::json({{"type", "join"}, {"room", cfg_.room}}).dump(), masker_);
      return out;
    }
  }
  return {};
}

std::string Codec::ws_upgrade(std::string& accept) {
  std::string key = masker_.key();
  accept = ws::accept_for(key);
  return ws::upgrade_request(cfg_.host, cfg_.port, key);
}

std::string Codec::ws_pong(std::string_view payload) {
  std::string out;
  ws::append_frame(out, 0xA, payload, masker_);
  return out;
}

std::string Codec::ws_close(uint16_t code) {
  std::string out;
  const char payload[2] = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
  ws::append_frame(out, 0x8, code == 1005 ? std::string_view{} : std::string_view(payload, 2), masker_);
  return out;
}

std::string Codec::after_info(bool publisher) const {
  if (cfg_.dialect == Dialect::kIrc) return "JOIN " + channel_ + "\r\n";  // publishers too: +n
  std::string out = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
  if (!publisher) out += "SUB " + cfg_.room + " 1\r\n";
  out += "PING\r\n";  // its PONG says the SUB has been processed
  return out;
}

std::string Codec::pong(std::string_view token) const {
  if (cfg_.dialect == Dialect::kIrc) return "PONG :" + std::string(token) + "\r\n";
  return "PONG\r\n";
}

bool Codec::ready_at_connect(bool publisher) const {
  switch (cfg_.dialect) {
    case Dialect::kNative: return false;  // wait for "joined"
    case Dialect::kArticle: return true;  // a lobby member from connect
    case Dialect::kRedis: return publisher;  // members wait for the subscribe confirmation
    case Dialect::kNats: return false;   // wait for the PONG
    case Dialect::kWs: return false;     // wait for "joined"
    case Dialect::kIrc: return false;    // wait for 366 (end of NAMES): joined
  }
  return true;
}

void Codec::append_publish(std::string& out, const std::string& user, std::string_view text, std::string_view id) {
  switch (cfg_.dialect) {
    case Dialect::kNative:
      out += "{\"type\":\"message\",\"room\":\"";
      out += cfg_.room;  // checked at start-up: needs no escaping
      out += "\",\"text\":\"";
      out += text;  // needs no escaping by construction
      if (!id.empty()) {
        out += "\",\"id\":\"";
        out += id;
      }
      out += "\"}\n";
      break;
    case Dialect::kArticle:
      out += "{\"user\": \"";
      out += user;
      out += "\", \"text\": \"";
      out += text;
      out += "\"}";
      break;
    case Dialect::kRedis:
      out += "*3\r\n";
      append_bulk(out, "PUBLISH");
      append_bulk(out, cfg_.room);
      append_bulk(out, text);
      break;
    case Dialect::kNats:
      out += "PUB ";
      out += cfg_.room;
      out += ' ';
      out += std::to_string(text.size());
      out += "\r\n";
      out += text;
      out += "\r\n";
      break;
    case Dialect::kIrc:
      out += "PRIVMSG ";
      out += channel_;
      out += " :";
      out += text;  // no CR, LF or NUL by construction (message.h); at most 400 bytes (main.cpp)
      out += "\r\n";
      break;
    case Dialect::kWs:
      scratch_ = "{\"type\":\"message\",\"room\":\"";
      scratch_ += cfg_.room;
      scratch_ += "\",\"text\":\"";
      scratch_ += text;
      if (!id.empty()) {
        scratch_ += "\",\"id\":\"";
        scratch_ += id;
      }
      scratch_ += "\"}";
      ws::append_text(out, scratch_, masker_);
      break;
  }
}

ParseResult Codec::parse(std::string_view in, Sink& sink) const {
  switch (cfg_.dialect) {
    case Dialect::kNative: return parse_native(in, sink);
    case Dialect::kArticle: return parse_article(in, sink);
    case Dialect::kRedis: return parse_redis(in, sink);
    case Dialect::kNats: return parse_nats(in, sink);
    case Dialect::kIrc: return parse_irc(in, sink);
    case Dialect::kWs: break;  // framed: the worker unwraps the frames (parse_native_message)
  }
  return {};
}

// ---- native: JSON lines ------------------------------------------------------------------------

ParseResult Codec::parse_native(std::string_view in, Sink& sink) const {
  ParseResult r;
  size_t pos = 0;
  while (pos < in.size()) {
    const void* nl = std::memchr(in.data() + pos, '\n', in.size() - pos);
    if (nl == nullptr) break;
    size_t end = static_cast<size_t>(static_cast<const char*>(nl) - in.data());
    std::string_view line = in.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    parse_native_message(line, sink);
  }
  r.consumed = pos;
  return r;
}

void Codec::parse_native_message(std::string_view line, Sink& sink) const {
  if (line.empty() || line[0] != '{') return;  // a lobby line before "welcome", or noise
  if (line.substr(0, kMessagePrefix.size()) == kMessagePrefix) {
    // The hot path: no JSON parser. Our texts need no escaping, so the text ends at the next quote.
    size_t k = line.find(kTextKey);
    if (k != std::string_view::npos) {
      size_t start = k + kTextKey.size();
      size_t close = line.find('"', start);
      if (close != std::string_view::npos) {
        sink.on_text(line.substr(start, close - start));
        return;
      }
    }
    sink.on_error("a message line without a text");
    return;
  }
  if (line.substr(0, kAckPrefix.size()) == kAckPrefix) {  // --ids: as many as messages published
    sink.on_ack(id_in(line));
    return;
  }
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    sink.on_error("a line that is not a JSON object");
    return;
  }
  std::string type = j.value("type", "");
  if (type == "joined") {
    sink.on_ready();
  } else if (type == "error" && j.value("code", "") == "not_stored") {
    sink.on_not_stored(j.value("id", ""));
  } else if (type == "error") {
    sink.on_error(j.value("code", "?") + ": " + j.value("message", ""));
  }
  // welcome, presence (join/leave), pong: nothing to do.
}

// ---- article: "[user] text" with or without a newline ------------------------------------------

ParseResult Codec::parse_article(std::string_view in, Sink& sink) const {
  ParseResult r;
  const size_t text_size = static_cast<size_t>(cfg_.payload);
  size_t pos = 0;
  while (pos < in.size()) {
    char c = in[pos];
    if (c == '\n' || c == '\r') {
      ++pos;
      continue;
    }
    if (c != '[') {
      // Not ours (or garbled): skip to the next '[', which never occurs inside our texts.
      size_t next = in.find('[', pos);
      sink.on_error("bytes outside any \"[user] text\" message");
      pos = next == std::string_view::npos ? in.size() : next;
      continue;
    }
    // "[" user "] " text: users are at most 64 bytes, so "] " is within the next 66.
    constexpr size_t kPrefixMax = 1 + 64 + 2;
    size_t close = in.substr(0, std::min(in.size(), pos + kPrefixMax)).find("] ", pos + 1);
    if (close == std::string_view::npos) {
      if (in.size() - pos < kPrefixMax) break;  // the user may still be arriving
      sink.on_error("a \"[user]\" prefix that does not end");
      ++pos;
      continue;
    }
    size_t start = close + 2;
    if (in.size() - start < text_size) break;  // the text is still arriving
    sink.on_text(in.substr(start, text_size));
    pos = start + text_size;
  }
  r.consumed = pos;
  return r;
}

// ---- redis: RESP ---------------------------------------------------------------------------------

ParseResult Codec::parse_redis(std::string_view in, Sink& sink) const {
  ParseResult r;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t eol = find_crlf(in, pos);
    if (eol == std::string_view::npos) break;
    char type = in[pos];
    std::string_view head = in.substr(pos + 1, eol - pos - 1);
    if (type == ':' || type == '+') {  // a PUBLISH reply (receivers), a simple status
      pos = eol + 2;
      continue;
    }
    if (type == '-') {
      sink.on_error(head);
      pos = eol + 2;
      continue;
    }
    if (type != '*') {
      r.fatal = true;
      r.problem = "RESP: unexpected frame type '" + std::string(1, type) + "'";
      break;
    }
    int64_t n = 0;
    if (!parse_int(head, n) || n < 0 || n > 8) {
      r.fatal = true;
      r.problem = "RESP: bad array header";
      break;
    }
    // Elements: bulk strings or integers.
    std::string_view items[8];
    size_t p = eol + 2;
    bool complete = true;
    for (int64_t i = 0; i < n; ++i) {
      size_t e = find_crlf(in, p);
      if (e == std::string_view::npos) {
        complete = false;
        break;
      }
      char t = in[p];
      std::string_view h = in.substr(p + 1, e - p - 1);
      if (t == ':') {
        items[i] = h;
        p = e + 2;
      } else if (t == '$') {
        int64_t len = 0;
        if (!parse_int(h, len) || len < 0) {
          r.fatal = true;
          r.problem = "RESP: bad bulk length";
          break;
        }
        size_t body = e + 2;
        if (in.size() < body + static_cast<size_t>(len) + 2) {
          complete = false;
          break;
        }
        items[i] = in.substr(body, static_cast<size_t>(len));
        p = body + static_cast<size_t>(len) + 2;
      } else {
        r.fatal = true;
        r.problem = "RESP: unexpected element type";
        break;
      }
    }
    if (r.fatal || !complete) break;
    pos = p;
    if (n == 3 && items[0] == "message") {
      sink.on_text(items[2]);
    } else if (n >= 1 && items[0] == "subscribe") {
      sink.on_ready();
    }
  }
  r.consumed = pos;
  return r;
}

// ---- nats: core protocol ---------------------------------------------------------------------------

ParseResult Codec::parse_nats(std::string_view in, Sink& sink) const {
  ParseResult r;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t eol = find_crlf(in, pos);
    if (eol == std::string_view::npos) break;
    std::string_view line = in.substr(pos, eol - pos);
    if (line.substr(0, 4) == "MSG ") {
      // MSG <subject> <sid> [reply-to] <#bytes>
      size_t sp = line.rfind(' ');
      int64_t len = 0;
      if (!parse_int(line.substr(sp + 1), len) || len < 0) {
        r.fatal = true;
        r.problem = "NATS: bad MSG line";
        break;
      }
      size_t body = eol + 2;
      if (in.size() < body + static_cast<size_t>(len) + 2) break;
      sink.on_text(in.substr(body, static_cast<size_t>(len)));
      pos = body + static_cast<size_t>(len) + 2;
      continue;
    }
    pos = eol + 2;
    if (line == "PING") {
      sink.on_ping({});
    } else if (line == "PONG") {
      sink.on_ready();
    } else if (line.substr(0, 5) == "INFO ") {
      sink.on_info();
    } else if (line == "+OK") {
      // verbose is off; tolerated anyway
    } else if (line.substr(0, 4) == "-ERR") {
      sink.on_error(line);
    } else {
      r.fatal = true;
      r.problem = "NATS: unexpected line '" + std::string(line.substr(0, 40)) + "'";
      break;
    }
  }
  r.consumed = pos;
  return r;
}

// ---- irc: RFC 2812 lines ------------------------------------------------------------------------

ParseResult Codec::parse_irc(std::string_view in, Sink& sink) const {
  ParseResult r;
  size_t pos = 0;
  while (pos < in.size()) {
    const void* nl = std::memchr(in.data() + pos, '\n', in.size() - pos);
    if (nl == nullptr) {
      if (in.size() - pos > kIrcLineMax) {
        r.fatal = true;
        r.problem = "IRC: a line longer than " + std::to_string(kIrcLineMax) + " bytes";
      }
      break;
    }
    size_t end = static_cast<size_t>(static_cast<const char*>(nl) - in.data());
    std::string_view line = in.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) parse_irc_line(line, sink);
  }
  r.consumed = pos;
  return r;
}

void Codec::parse_irc_line(std::string_view line, Sink& sink) const {
  size_t pos = 0;
  if (line[0] == '@') next_word(line, pos);  // IRCv3 tags: nothing we need
  if (pos < line.size() && line[pos] == ':') next_word(line, pos);  // the source
  std::string_view command = next_word(line, pos);
  std::string_view params = line.substr(pos);
  if (command == "PRIVMSG") {  // the hot path: "#room :text"
    size_t at = 0;
    next_word(params, at);  // the target: our channel (a member is in no other)
    std::string_view text = params.substr(at);
    if (!text.empty() && text[0] == ':') text.remove_prefix(1);
    sink.on_text(text);
    return;
  }
  if (command == "PING") {
    if (!params.empty() && params[0] == ':') params.remove_prefix(1);
    sink.on_ping(params);
    return;
  }
  if (command == "ERROR") {
    sink.on_error(line);
    return;
  }
  if (command.size() != 3 || !std::isdigit(static_cast<unsigned char>(command[0])) ||
      !std::isdigit(static_cast<unsigned char>(command[1])) || !std::isdigit(static_cast<unsigned char>(command[2]))) {
    return;  // JOIN, MODE, NOTICE, another's PART or QUIT...: nothing to do
  }
  if (command == "001") {
    sink.on_info();
  } else if (command == "366") {  // "<nick> <channel> :End of NAMES list"
    size_t at = 0;
    next_word(params, at);
    if (equal_ascii_nocase(next_word(params, at), channel_)) sink.on_ready();
  } else if ((command[0] == '4' || command[0] == '5') && command != "422") {  // 422: no MOTD, not an error
    sink.on_error(line);
  }
}

}  // namespace loadgen
