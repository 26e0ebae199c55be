#include "irc/message.h"

namespace irc {

namespace {

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool valid_command(std::string_view command) {
  if (command.size() == 3 && is_digit(command[0]) && is_digit(command[1]) && is_digit(command[2])) return true;
  if (command.empty()) return false;
  for (char c : command) {
    if (!is_letter(c)) return false;
  }
  return true;
}

// IRCv3: key = [ '+' ] [ vendor '/' ] name, name of letters, digits and '-', vendor a host name.
bool valid_tag_key(std::string_view key) {
  if (!key.empty() && key.front() == '+') key.remove_prefix(1);
  if (key.empty()) return false;
  size_t slash = key.rfind('/');
  std::string_view name = slash == std::string_view::npos ? key : key.substr(slash + 1);
  std::string_view vendor = slash == std::string_view::npos ? std::string_view{} : key.substr(0, slash);
  if (name.empty()) return false;
  for (char c : name) {
    if (!is_letter(c) && !is_digit(c) && c != '-') return false;
  }
  if (slash != std::string_view::npos) {
    if (vendor.empty()) return false;
    for (char c : vendor) {
      if (!is_letter(c) && !is_digit(c) && c != '-' && c != '.') return false;
    }
  }
  return true;
}

std::string unescape_tag_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i == value.size()) break;  // a lone trailing backslash is dropped
    switch (value[i]) {
      case ':': out += ';'; break;
      case 's': out += ' '; break;
      case '\\': out += '\\'; break;
      case 'r': out += '\r'; break;
      case 'n': out += '\n'; break;
      default: out += value[i]; break;  // an unknown escape is the character itself
    }
  }
  return out;
}

void escape_tag_value(std::string_view value, std::string& out) {
  for (char c : value) {
    switch (c) {
      case ';': out += "\\:"; break;
      case ' ': out += "\\s"; break;
      case '\\': out += "\\\\"; break;
      case '\r': out += "\\r"; break;
      case '\n': out += "\\n"; break;
      default: out += c; break;
    }
  }
}

ParseError parse_tags(std::string_view tags, Message& out) {
  if (tags.empty()) return ParseError::kBadTags;
  while (true) {
    size_t end = tags.find(';');
    std::string_view tag = tags.substr(0, end);
    size_t eq = tag.find('=');
    std::string_view key = tag.substr(0, eq);
    if (!valid_tag_key(key)) return ParseError::kBadTags;
    std::string value = eq == std::string_view::npos ? std::string{} : unescape_tag_value(tag.substr(eq + 1));
    bool replaced = false;
    for (auto& [k, v] : out.tags) {
      if (k == key) {
        v = std::move(value);
        replaced = true;
        break;
      }
    }
    if (!replaced) out.tags.emplace_back(std::string(key), std::move(value));
    if (end == std::string_view::npos) break;
    tags.remove_prefix(end + 1);
  }
  return ParseError::kNone;
}

void skip_spaces(std::string_view& s) {
  size_t n = s.find_first_not_of(' ');
  s.remove_prefix(n == std::string_view::npos ? s.size() : n);
}

std::string_view take_word(std::string_view& s) {
  size_t n = s.find(' ');
  std::string_view word = s.substr(0, n);
  s.remove_prefix(word.size());
  return word;
}

bool has_any(std::string_view s, std::string_view chars) { return s.find_first_of(chars) != std::string_view::npos; }

const std::string_view kNulCrLf("\0\r\n", 3);

}  // namespace

const char* to_string(ParseError error) {
  switch (error) {
    case ParseError::kNone: return "none";
    case ParseError::kEmpty: return "empty line";
    case ParseError::kNoCommand: return "no command";
    case ParseError::kBadCommand: return "bad command";
    case ParseError::kBadTags: return "bad tags";
    case ParseError::kBadSource: return "bad source";
    case ParseError::kTooManyParams: return "too many parameters";
    case ParseError::kNul: return "NUL byte";
    case ParseError::kLineBreak: return "CR or LF inside the line";
  }
  return "unknown";
}

ParseError parse(std::string_view line, Message& out) {
  out = Message{};
  if (line.find('\0') != std::string_view::npos) return ParseError::kNul;
  if (has_any(line, "\r\n")) return ParseError::kLineBreak;
  skip_spaces(line);
  if (line.empty()) return ParseError::kEmpty;

  if (line.front() == '@') {
    line.remove_prefix(1);
    if (auto error = parse_tags(take_word(line), out); error != ParseError::kNone) return error;
    skip_spaces(line);
  }
  if (!line.empty() && line.front() == ':') {
    line.remove_prefix(1);
    std::string_view source = take_word(line);
    if (source.empty()) return ParseError::kBadSource;
    out.source = source;
    skip_spaces(line);
  }
  if (line.empty()) return ParseError::kNoCommand;
  std::string_view command = take_word(line);
  if (!valid_command(command)) return ParseError::kBadCommand;
  out.command = command;
  for (char& c : out.command) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }

  for (;;) {
    skip_spaces(line);
    if (line.empty()) break;
    if (out.params.size() == kMaxParams) return ParseError::kTooManyParams;
    if (line.front() == ':') {
      out.params.emplace_back(line.substr(1));
      break;
    }
    out.params.emplace_back(take_word(line));
  }
  return ParseError::kNone;
}

std::string serialize(const Message& message) {
  if (!valid_command(message.command) || message.params.size() > kMaxParams) return {};
  if (has_any(message.source, std::string_view(" \0\r\n", 4))) return {};
  std::string out;
  if (!message.tags.empty()) {
    out += '@';
    for (const auto& [key, value] : message.tags) {
      if (!valid_tag_key(key) || value.find('\0') != std::string::npos) return {};
      if (out.size() > 1) out += ';';
      out += key;
      if (!value.empty()) {
        out += '=';
        escape_tag_value(value, out);
      }
    }
    out += ' ';
  }
  if (!message.source.empty()) {
    out += ':';
    out += message.source;
    out += ' ';
  }
  out += message.command;
  for (size_t i = 0; i < message.params.size(); ++i) {
    const std::string& param = message.params[i];
    if (has_any(param, kNulCrLf)) return {};
    bool needs_colon = param.empty() || param.front() == ':' || param.find(' ') != std::string::npos;
    out += ' ';
    if (needs_colon) {
      if (i + 1 != message.params.size()) return {};
      out += ':';
    }
    out += param;
  }
  out += "\r\n";
  return out;
}

namespace {

// Whether `content` (a line, or the start of one, without its line ending) is already over the
// limits. Content only grows as bytes arrive, and each measure grows with it, so a start that is
// over means the whole line is.
bool over_limits(std::string_view content, size_t max_body, size_t max_tags) {
  const size_t body_limit = max_body >= 2 ? max_body - 2 : 0;  // the CRLF counts
  if (max_tags == 0 || content.empty() || content.front() != '@') return content.size() > body_limit;
  size_t space = content.find(' ');
  if (space == std::string_view::npos) return content.size() > max_tags;
  return space + 1 > max_tags || content.size() - (space + 1) > body_limit;
}

}  // namespace

LineResult next_line(std::string_view input, size_t max_body, size_t max_tags, LineState& state) {
  size_t skipped = 0;
  if (state.discarding) {
    size_t lf = input.find('\n');
    if (lf == std::string_view::npos) return {LineResult::kNeedMore, input.size(), {}};
    state.discarding = false;
    skipped = lf + 1;
    input.remove_prefix(skipped);
  }
  size_t lf = input.find('\n');
  if (lf != std::string_view::npos) {
    std::string_view line = input.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (over_limits(line, max_body, max_tags)) return {LineResult::kTooLong, skipped + lf + 1, {}};
    return {LineResult::kLine, skipped + lf + 1, line};
  }
  // No line end yet: a CR at the end may be the start of a CRLF, so it is not counted.
  std::string_view partial = input;
  if (!partial.empty() && partial.back() == '\r') partial.remove_suffix(1);
  if (over_limits(partial, max_body, max_tags)) {
    state.discarding = true;
    return {LineResult::kTooLong, skipped + input.size(), {}};
  }
  return {LineResult::kNeedMore, skipped, {}};
}

bool valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) < n) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (size_t i = 2; i < n; ++i) {
      if (p[i] < 0x80 || p[i] > 0xBF) return false;
    }
    p += n;
  }
  return true;
}

std::string utf8_or_latin1(std::string_view text) {
  if (valid_utf8(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() * 2);
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out += ch;
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

}  // namespace irc
