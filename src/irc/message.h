// IRC messages: the wire format of the "Modern IRC Client Protocol" document with IRCv3
// message-tags, and the line framer the IRC codec reads them with.
//
//   [@tags SPACE] [:source SPACE] command [params] CRLF
//
// This is the self-contained bottom of the IRC front end: no sockets, no rooms, no chat types.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace irc {

struct Message {
  // In the order received; a key sent twice keeps its first place and its last value. Values are
  // unescaped; a key sent without a value (or with an empty one) has an empty value.
  std::vector<std::pair<std::string, std::string>> tags;
  std::string source;   // without the ':'; empty when the message has none
  std::string command;  // letters uppercased ("privmsg" -> "PRIVMSG"), or a 3-digit numeric
  std::vector<std::string> params;  // at most kMaxParams; a trailing param without its ':'

  bool operator==(const Message&) const = default;
};

inline constexpr size_t kMaxParams = 15;

enum class ParseError {
  kNone,
  kEmpty,          // nothing but spaces (clients send empty lines; servers ignore them)
  kNoCommand,      // tags and/or source with nothing after them
  kBadCommand,     // neither letters only nor exactly three digits
  kBadTags,        // "@" with nothing, an empty or malformed key
  kBadSource,      // ":" followed by a space
  kTooManyParams,  // more than kMaxParams parameters
  kNul,            // a NUL byte anywhere in the line
  kLineBreak,      // a CR or LF inside the line: a lone CR is refused, not taken as a line end
};

const char* to_string(ParseError error);

// Parses one line given WITHOUT its line ending. Several spaces between parts are one separator;
// spaces at the end of a line without a trailing parameter are ignored. On error `out` is left in
// an unspecified state.
ParseError parse(std::string_view line, Message& out);

// The message as a line, CRLF included, tag values escaped. The last parameter gets its ':' when it
// is empty, starts with ':' or contains a space. A message that cannot be written as a line that
// parses back to it is REFUSED (an empty string is returned, never a malformed line, in release
// builds as in debug ones): a command that is not letters or three digits, an empty or malformed
// tag key, a source containing a space, a parameter other than the last that is empty, contains a
// space or starts with ':', more than kMaxParams parameters, NUL anywhere, or CR or LF anywhere but
// in a tag value (tag values are escaped, so they may hold CR, LF, ';', ' ' and '\').
std::string serialize(const Message& message);

// Line framing. Limits as IRCv3 message-tags sets them:
//   - a line without tags is at most max_body bytes counting its CRLF (512 in IRC). A line that
//     ends with a bare LF is measured as if it ended with CRLF, so the same text is accepted or
//     refused whatever its line ending.
//   - with max_tags > 0 (message-tags negotiated), a line starting with '@' has its tags part (from
//     the '@' to the first space, that space included) measured against max_tags and the rest
//     against max_body. kMaxClientTags is the value for what clients send. With max_tags == 0 the
//     tags count against max_body like the rest of the line.
inline constexpr size_t kMaxBody = 512;
// '@', at most 4094 bytes of tag data (IRCv3's limit for clients), and the space after them.
inline constexpr size_t kMaxClientTags = 4094 + 2;

struct LineResult {
  enum Status {
    kLine,      // `line` is one line without its LF and without the CR before it (may be empty:
                // the codec ignores empty lines)
    kNeedMore,  // no complete line; keep the unconsumed bytes and call again when more arrive
    kTooLong,   // a line over the limits: reported once, as soon as it is known to be too long
  } status;
  // Bytes the caller must drop from the front of its input. May be > 0 with kNeedMore: the rest
  // of a line already reported too long is dropped as it arrives, so nothing is held for it.
  size_t consumed;
  std::string_view line;  // kLine only: a view into the caller's input
};

// What the framer remembers between calls: whether it is skipping the rest of an overlong line.
// Without it the end of an overlong line would be read as a line of its own, and a client could
// smuggle a command past the limit. One per connection; starts out not discarding.
struct LineState {
  bool discarding = false;
};

// The next line of `input` (the caller's unconsumed bytes). A lone CR is kept in the line, where
// parse() refuses it (kLineBreak). An overlong line is reported kTooLong the moment its bytes prove
// it too long, and everything up to its LF is dropped as it arrives, however long it goes on: the
// caller never holds more than the limits of one line.
LineResult next_line(std::string_view input, size_t max_body, size_t max_tags, LineState& state);

// `text` unchanged when it is valid UTF-8; otherwise read as Latin-1 (every byte >= 0x80 is the
// code point of that value) and returned as UTF-8. IRC clients still send Latin-1; the server relays
// it as text rather than dropping or mangling it.
std::string utf8_or_latin1(std::string_view text);

// True if `text` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view text);

}  // namespace irc
